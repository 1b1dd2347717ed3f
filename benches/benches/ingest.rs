//! Throughput of each ingest stage on real and generated samples.
//!
//! `cargo bench -p tripline-bench --bench ingest`

use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;

use bench::gen::Generator;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ingest::decode::{decode, Encoding};
use ingest::frame::frame;
use ingest::normalize::{normalize, IngestClock, TimeWindow};
use ingest::parse::{parse_item, Limits};

fn shared(rel: &str) -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    std::fs::read(path).ok()
}

fn generated(n: usize) -> Vec<u8> {
    let mut g = Generator::new(42, 1_700_000_000_000_000_000);
    let mut out = Vec::new();
    for _ in 0..n {
        out.extend_from_slice(g.next_line().as_bytes());
        out.push(b'\n');
    }
    out
}

fn frame_and_parse(body: &[u8]) -> usize {
    let limits = Limits::default();
    frame(body, 64)
        .into_iter()
        .map(|i| parse_item(i, &limits))
        .filter(|p| p.failure.is_none())
        .count()
}

fn parsers(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame+parse");
    let mut samples: Vec<(&str, Vec<u8>)> = vec![("generated-ndjson", generated(2000))];
    if let Some(ct) = shared("cloudtrail/ec2_proxy_s3_exfiltration_2020-09-14011940.json") {
        samples.push(("cloudtrail", ct));
    }
    for name in ["OpenSSH_2k.log", "Linux_2k.log", "Apache_2k.log", "OpenStack_2k.log"] {
        if let Some(raw) = shared(&format!("loghub/{name}")) {
            samples.push((name, raw));
        }
    }
    for (name, body) in &samples {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(*name, |b| b.iter(|| frame_and_parse(black_box(body))));
    }
    g.finish();

    let body = generated(2000);
    let mut g = c.benchmark_group("normalize");
    g.throughput(Throughput::Bytes(body.len() as u64));
    let parsed: Vec<_> = frame(&body, 64)
        .into_iter()
        .map(|i| parse_item(i, &Limits::default()).event)
        .collect();
    let clock = IngestClock::new(time::OffsetDateTime::now_utc(), TimeWindow::default());
    g.bench_function("generated", |b| {
        b.iter(|| {
            for e in parsed.iter().cloned() {
                let mut e = e;
                normalize(&mut e, "bench", &clock);
                black_box(e);
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(body.len() as u64));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&body).expect("gzip to memory");
    let gz = enc.finish().expect("gzip to memory");
    g.bench_function("gzip", |b| {
        b.iter(|| decode(Encoding::Gzip, black_box(&gz), 64 << 20).map(|v| v.len()))
    });
    g.finish();

    let mut g = c.benchmark_group("document");
    g.throughput(Throughput::Bytes(body.len() as u64));
    let schema = index::EventSchema::new(schemas::Catalog::builtin());
    g.bench_function("to_document", |b| {
        b.iter(|| {
            for e in &parsed {
                let source = serde_json::to_vec(e).expect("events serialize");
                black_box(index::doc::to_document(&schema, e, &source));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("query");
    let q = "source.ip:10.0.0.0/8 AND (http.response.status_code:>=500 OR \"failed password\") AND NOT user.name:svc-*";
    g.throughput(Throughput::Bytes(q.len() as u64));
    g.bench_function("parse", |b| b.iter(|| query::lang::parse(black_box(q)).map(|_| ())));
    g.finish();
}

criterion_group!(benches, parsers);
criterion_main!(benches);
