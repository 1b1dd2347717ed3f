//! Rule evaluation: every SigmaHQ rule of the shared data that loads, over
//! real events as ingest stores them, in MB/s of the events' source lines
//! per core.
//!
//! `cargo bench -p tripline-bench --bench detect`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use detect::rule::{Placeholders, RuleSet};
use ingest::format::{parse_line, Format, LineContext};
use ingest::parse::Limits;

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel)
}

fn rules(c: &mut Criterion) {
    let (set, refused) = RuleSet::load_dir(&shared("sigma"), &Placeholders::new());
    eprintln!("{} rules loaded, {} refused", set.rules().len(), refused.len());
    let limits = Limits::default();
    let ctx = LineContext {
        limits: &limits,
        now: time::OffsetDateTime::now_utc(),
    };
    let mut g = c.benchmark_group("detect");
    for file in [
        "loghub/OpenSSH_2k.log",
        "loghub/Linux_2k.log",
        "cloudtrail/ec2_proxy_s3_exfiltration_2020-09-14011940.json",
    ] {
        let Ok(text) = std::fs::read_to_string(shared(file)) else {
            continue;
        };
        let events: Vec<_> = text
            .lines()
            .map(|l| parse_line(Format::Auto, 1, l.as_bytes(), &ctx).event)
            .collect();
        g.throughput(Throughput::Bytes(text.len() as u64));
        let name = format!("all-rules/{}", file.rsplit('/').next().unwrap_or(file));
        g.bench_function(name, |b| {
            b.iter(|| events.iter().map(|e| set.matching(black_box(e)).count()).sum::<usize>())
        });
    }
    g.finish();
}

criterion_group!(benches, rules);
criterion_main!(benches);
