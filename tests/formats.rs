//! Real logs over HTTP with `?format=auto` (the default): the loghub
//! samples and the CloudTrail records in `../shared/data` are all stored,
//! none lost, each line recognized as the format it is in.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

fn shared(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn lines(body: &[u8]) -> u64 {
    body.split(|&b| b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .count() as u64
}

/// (file, source, recognized formats and their counts)
#[allow(clippy::type_complexity)]
const FILES: &[(&str, &str, &[(&str, u64)])] = &[
    ("loghub/OpenSSH_2k.log", "openssh", &[("syslog", 2000)]),
    ("loghub/Linux_2k.log", "linux", &[("syslog", 2000)]),
    ("loghub/Apache_2k.log", "apache", &[("raw", 2000)]),
    ("loghub/OpenStack_2k.log", "openstack", &[("raw", 2000)]),
    ("loghub/Proxifier_2k.log", "proxifier", &[("raw", 2000)]),
    (
        "cloudtrail/ec2_proxy_s3_exfiltration_2020-09-14011940.json",
        "cloudtrail",
        &[("cloudtrail", 103)],
    ),
];

#[test]
fn every_shared_sample_is_stored_whole_and_counted_by_format() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"), "");
    let mut total = 0;
    for (file, source, want) in FILES {
        let body = shared(file);
        let n = lines(&body);
        let (status, report) = ingest(&d.base, source, Some(ADMIN), &gzip(&body), Some("gzip")).unwrap();
        assert_eq!(status, 200, "{file}: {report}");
        assert_eq!(report["accepted"], n, "{file}: a line was lost");
        let want: serde_json::Map<String, Value> = want.iter().map(|(f, c)| (f.to_string(), json!(c))).collect();
        assert_eq!(report["formats"], Value::Object(want), "{file}");
        total += n;
        let found = wait_total(&d.base, &format!("event.dataset:{source}"), n);
        assert_eq!(found["total"], n);
    }
    wait_total(&d.base, "*", total);
    // Every OpenSSH `Failed password` line yields the user and the
    // address; counted here apart from the parser.
    let ssh = String::from_utf8(shared("loghub/OpenSSH_2k.log")).unwrap();
    let failed = ssh.lines().filter(|l| l.contains("Failed password for ")).count() as u64;
    assert!(failed > 500);
    wait_total(
        &d.base,
        "event.dataset:openssh AND message:\"failed password for\" AND event.outcome:failure AND user.name:* AND source.ip:*",
        failed,
    );
    // CloudTrail's originals stay beside the ECS names.
    let found = wait_total(
        &d.base,
        "event.provider:\"s3.amazonaws.com\" AND eventSource:\"s3.amazonaws.com\"",
        count(
            &shared("cloudtrail/ec2_proxy_s3_exfiltration_2020-09-14011940.json"),
            "\"eventSource\":\"s3.amazonaws.com\"",
        ),
    );
    let hit = &found["hits"][0];
    assert_eq!(hit["cloud.provider"], "aws", "{hit}");
    assert_eq!(hit["event.action"], hit["eventName"], "{hit}");
    let metrics = metrics_text(&d);
    for line in [
        "tripline_ingested_events_by_format_total{source=\"openssh\",format=\"syslog\"} 2000",
        "tripline_ingested_events_by_format_total{source=\"cloudtrail\",format=\"cloudtrail\"} 103",
        "tripline_parse_failures_by_format_total{source=\"apache\",format=\"raw\"} 2000",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

fn count(body: &[u8], needle: &str) -> u64 {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| l.contains(needle))
        .count() as u64
}

#[test]
fn a_cloudtrail_file_envelope_is_split_into_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"), "");
    let records: Vec<Value> = String::from_utf8(shared("cloudtrail/ec2_proxy_s3_exfiltration_2020-09-14011940.json"))
        .unwrap()
        .lines()
        .take(20)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let body = serde_json::to_vec(&json!({ "Records": records })).unwrap();
    let (status, report) = ingest(&d.base, "ct", Some(ADMIN), &body, None).unwrap();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 20, "{report}");
    assert_eq!(report["formats"], json!({"cloudtrail": 20}));
    wait_total(&d.base, "event.dataset:ct AND cloud.provider:aws", 20);
}

#[test]
fn a_declared_format_is_used_and_an_unknown_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"), "");
    let (status, report) = ingest_with(&d.base, "format=xml", b"x\n");
    assert_eq!(status, 400, "{report}");
    assert!(
        report["error"].as_str().unwrap().contains("unknown format \"xml\""),
        "{report}"
    );
    // `raw` stores a syslog-looking line unparsed and untagged.
    let (status, report) = ingest_with(&d.base, "source=r&format=raw", b"<13>Jan  2 10:00:00 gw app: hi\n");
    assert_eq!((status, report["parse_failures"].as_u64()), (200, Some(0)), "{report}");
    // `cef` holds a line that is not CEF to it, stored raw with the reason.
    let (status, report) = ingest_with(&d.base, "source=c&format=cef", b"CEF:0|a|b\n");
    assert_eq!(status, 200);
    assert!(
        report["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("not CEF: ends early"),
        "{report}"
    );
    wait_total(&d.base, "event.dataset:r AND NOT log.syslog.priority:*", 1);
    wait_total(&d.base, "event.dataset:c AND tags:_parse_failure", 1);
}

fn ingest_with(base: &str, query: &str, body: &[u8]) -> (u16, Value) {
    let mut resp = agent()
        .post(&format!("{base}/api/v1/ingest?{query}"))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .send(body)
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
