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

/// `count` lines of `line`, for formats the shared data has no sample of
/// (CEF, LEEF, logfmt, access logs): varied by a counter so no two match.
fn repeated(line: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| line.replace("{i}", &i.to_string()).into_bytes())
        .collect()
}

fn lines_of(body: &[u8]) -> Vec<Vec<u8>> {
    body.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Each format parser alone, and through `parse_line` (parser plus the
/// mapping to ECS names), in MB/s of input on one core.
fn formats(c: &mut Criterion) {
    use ingest::format::{parse_line, Format, LineContext};
    let now = time::OffsetDateTime::now_utc();
    let openssh = shared("loghub/OpenSSH_2k.log")
        .map(|b| lines_of(&b))
        .unwrap_or_default();
    let linux = shared("loghub/Linux_2k.log").map(|b| lines_of(&b)).unwrap_or_default();
    // The OpenSSH sample again, as RFC 5424 with structured data.
    let rfc5424: Vec<Vec<u8>> = openssh
        .iter()
        .filter_map(|l| {
            let l = String::from_utf8_lossy(l);
            let (_, body) = l.split_once("]: ")?;
            Some(
                format!("<38>1 2026-12-02T06:25:24.123456+01:00 LabSZ sshd 24200 - [meta sequenceId=\"7\"] {body}")
                    .into_bytes(),
            )
        })
        .collect();
    let cloudtrail = shared("cloudtrail/ec2_proxy_s3_exfiltration_2020-09-14011940.json")
        .map(|b| lines_of(&b))
        .unwrap_or_default();
    let cef = repeated(
        "CEF:0|Palo Alto Networks|PAN-OS|10.1|url|THREAT|3|src=10.0.{i}.7 dst=203.0.113.9 spt={i} dpt=443 suser=alice act=blocked request=https://example.com/login?id={i} requestMethod=GET rt=1700000000000 msg=URL filtering \\= blocked",
        2000,
    );
    let leef = repeated(
        "LEEF:2.0|Lancope|StealthWatch|1.0|41|^|src=192.0.2.{i}^dst=172.50.123.1^sev=5^cat=anomaly^srcPort=81^dstPort=21^usrName=joe.black^msg=there are spaces in this message",
        2000,
    );
    let logfmt = repeated(
        "time=2026-12-02T06:25:24Z level=warn msg=\"login failed for user\" user=u{i} ip=10.1.2.3 attempts=3 mfa",
        2000,
    );
    let clf = repeated(
        "203.0.113.{i} - alice [02/Dec/2026:06:25:24 +0000] \"GET /api/v1/items/{i}?page=2 HTTP/1.1\" 200 5123 \"https://example.com/\" \"Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0\"",
        2000,
    );
    let bytes = |ls: &[Vec<u8>]| ls.iter().map(|l| l.len() as u64 + 1).sum::<u64>();

    let mut g = c.benchmark_group("parser");
    type Parser = fn(&[u8], time::OffsetDateTime) -> bool;
    let cases: Vec<(&str, &[Vec<u8>], Parser)> = vec![
        ("rfc3164/OpenSSH", &openssh, |l, now| {
            ingest::syslog::rfc3164::parse(l, now).is_ok()
        }),
        ("rfc3164/Linux", &linux, |l, now| {
            ingest::syslog::rfc3164::parse(l, now).is_ok()
        }),
        ("rfc5424/OpenSSH", &rfc5424, |l, _| {
            ingest::syslog::rfc5424::parse(l).is_ok()
        }),
        ("sshd/OpenSSH", &openssh, |l, _| {
            ingest::syslog::sshd::parse(l).is_some()
        }),
        ("cef", &cef, |l, _| ingest::cef::parse(l).is_ok()),
        ("leef", &leef, |l, _| ingest::leef::parse(l).is_ok()),
        ("logfmt", &logfmt, |l, _| ingest::logfmt::parse(l).is_ok()),
        ("clf", &clf, |l, _| ingest::clf::parse(l).is_ok()),
    ];
    for (name, ls, f) in &cases {
        if ls.is_empty() {
            continue;
        }
        g.throughput(Throughput::Bytes(bytes(ls)));
        g.bench_function(*name, |b| b.iter(|| ls.iter().filter(|l| f(black_box(l), now)).count()));
    }
    let framed: Vec<u8> = rfc5424
        .iter()
        .flat_map(|l| {
            format!("{} ", l.len())
                .into_bytes()
                .into_iter()
                .chain(l.iter().copied())
        })
        .collect();
    if !framed.is_empty() {
        g.throughput(Throughput::Bytes(framed.len() as u64));
        g.bench_function("octet-framer", |b| {
            b.iter(|| {
                let mut rest = &framed[..];
                let mut n = 0;
                while let Ok(ingest::syslog::octet::Frame::Message { consumed, .. }) =
                    ingest::syslog::octet::next_frame(rest, 65_536)
                {
                    rest = &rest[consumed..];
                    n += 1;
                }
                n
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("parse_line");
    let limits = Limits::default();
    let ctx = LineContext { limits: &limits, now };
    let cases: Vec<(&str, Format, &[Vec<u8>])> = vec![
        ("syslog/OpenSSH", Format::Syslog, &openssh),
        ("syslog-5424/OpenSSH", Format::Syslog, &rfc5424),
        ("cef", Format::Cef, &cef),
        ("leef", Format::Leef, &leef),
        ("logfmt", Format::Logfmt, &logfmt),
        ("clf", Format::Clf, &clf),
        ("cloudtrail", Format::Cloudtrail, &cloudtrail),
        ("auto/OpenSSH", Format::Auto, &openssh),
        ("auto/cloudtrail", Format::Auto, &cloudtrail),
    ];
    for (name, format, ls) in &cases {
        if ls.is_empty() {
            continue;
        }
        g.throughput(Throughput::Bytes(bytes(ls)));
        g.bench_function(*name, |b| {
            b.iter(|| {
                ls.iter()
                    .filter(|l| parse_line(*format, 1, black_box(l), &ctx).failure.is_none())
                    .count()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parsers, formats);
criterion_main!(benches);
