//! End to end: the daemon on port 0, a real HTTP client.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::{json, Value};

fn boot() -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"), FAST_COMMITS);
    (dir, d)
}

fn hits(body: &Value) -> Vec<Value> {
    body["hits"].as_array().cloned().unwrap_or_default()
}

#[test]
fn gzip_ndjson_is_found_by_field_phrase_time_range_and_cidr() {
    let (_dir, d) = boot();
    // Days before today: event times must fall inside the ingest window.
    let (d1, d2, d3) = (days_ago(3, 10), days_ago(2, 11), days_ago(1, 12));
    let lines = [
        json!({"@timestamp": d1, "message": "Failed password for root from 10.1.2.3 port 22", "source": {"ip": "10.1.2.3"}, "user": {"name": "root"}, "service.name": "sshd"}),
        json!({"@timestamp": d2, "message": "Accepted publickey for deploy", "source.ip": "192.168.7.9", "user.name": "deploy", "http": {"response": {"status_code": 200}}}),
        json!({"eventTime": d3, "eventName": "GetObject", "requestParameters": {"bucketName": "secret-bucket"}, "sourceIPAddress": "203.0.113.5", "http.response.status_code": 503}),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (status, report) = ingest(&d.base, "mixed", Some(ADMIN), &gzip(body.as_bytes()), Some("gzip")).unwrap();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 3);
    assert_eq!(report["failed"], 0);
    wait_total(&d.base, "*", 3);

    let one = |q: &str, extra: Value| -> Vec<Value> {
        let mut req = json!({ "query": q });
        if let Value::Object(m) = extra {
            for (k, v) in m {
                req[k] = v;
            }
        }
        let (status, body) = search(&d.base, ADMIN, req);
        assert_eq!(status, 200, "{q}: {body}");
        hits(&body)
    };
    assert_eq!(one("user.name:root", json!({}))[0]["service.name"], "sshd");
    assert_eq!(
        one("user.name:ROOT", json!({})).len(),
        1,
        "keywords match case-insensitively"
    );
    assert_eq!(one("\"failed password\"", json!({})).len(), 1);
    assert_eq!(one("\"password failed\"", json!({})).len(), 0);
    assert_eq!(one("message:\"publickey for deploy\"", json!({})).len(), 1);
    assert_eq!(one("source.ip:10.0.0.0/8", json!({}))[0]["user.name"], "root");
    assert_eq!(
        one("source.ip:192.168.0.0/16 OR source.ip:10.1.2.3", json!({})).len(),
        2
    );
    assert_eq!(
        one("requestParameters.bucketName:secret-bucket", json!({}))[0]["eventName"],
        "GetObject"
    );
    assert_eq!(one("requestParameters.bucketName:secret-*", json!({})).len(), 1);
    assert_eq!(one("requestParameters.bucketName:*", json!({})).len(), 1);
    assert_eq!(one("http.response.status_code:>=500", json!({})).len(), 1);
    assert_eq!(one("http.response.status_code:[200 TO 503]", json!({})).len(), 2);
    assert_eq!(one("user.name:* AND NOT user.name:deploy", json!({})).len(), 1);
    // Event time, not ingest time, decides the range; newest first.
    let range = one(
        "*",
        json!({"start": &d2[..10], "end": format!("{}T23:59:59Z", &d3[..10])}),
    );
    assert_eq!(range.len(), 2);
    assert_eq!(range[0]["@timestamp"], d3.as_str());
    assert_eq!(range[1]["@timestamp"], d2.as_str());
    assert_eq!(one("*", json!({"start": "-1h"})).len(), 0);
    // GET with a query string answers the same.
    let mut resp = agent()
        .get(&d.url("/api/v1/search?q=user.name:deploy&limit=5"))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .call()
        .unwrap();
    let body: Value = resp.body_mut().read_json().unwrap();
    assert_eq!(body["total"], 1);
}

#[test]
fn the_cursor_pages_through_ten_thousand_hits_without_skips_or_repeats() {
    let (_dir, d) = boot();
    let mut body = String::new();
    // A day ago, inside the ingest window.
    let base = time::OffsetDateTime::now_utc().unix_timestamp() - 86_400;
    for i in 0..10_000 {
        // Many events share a timestamp: the tie-break must hold.
        body.push_str(&format!(
            "{{\"@timestamp\": {}, \"n\": {i}, \"message\": \"page test\"}}\n",
            base + i / 7
        ));
    }
    let (status, report) = ingest(&d.base, "paging", Some(ADMIN), &gzip(body.as_bytes()), Some("gzip")).unwrap();
    assert_eq!(status, 200);
    assert_eq!(report["accepted"], 10_000);
    wait_total(&d.base, "page", 10_000);
    let ids = all_ids(&d.base, "page", 999);
    assert_eq!(ids.len(), 10_000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 10_000, "a hit was repeated");
    // Newest first across pages.
    let (_, first) = search(&d.base, ADMIN, json!({"query": "page", "limit": 1}));
    let newest = time::OffsetDateTime::from_unix_timestamp(base + 9_999 / 7).unwrap();
    assert_eq!(first["hits"][0]["@timestamp"], schemas::time::format(newest).as_str());
}

#[test]
fn malformed_lines_are_stored_tagged_and_reported() {
    let (_dir, d) = boot();
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(70), "]".repeat(70));
    let body = format!("{{\"message\":\"good\"}}\nthis is not json\n{deep}\n{{\"bad\": 1,}}\n");
    let mut bytes = body.into_bytes();
    bytes.extend_from_slice(b"{\"invalid utf8\": \"\xff\xfe\"}\n");
    let (status, report) = ingest(&d.base, "bad", Some(ADMIN), &bytes, None).unwrap();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 5);
    assert_eq!(report["parse_failures"], 4);
    let lines: Vec<u64> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 3, 4, 5]);
    assert!(report["errors"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("deeper than 64"));
    let found = wait_total(&d.base, "tags:_parse_failure", 4);
    assert_eq!(found["total"], 4);
    let (_, raw) = search(&d.base, ADMIN, json!({"query": "\"this is not json\""}));
    assert_eq!(raw["hits"][0]["message"], "this is not json");
    assert!(raw["hits"][0]["error.message"]
        .as_str()
        .unwrap()
        .starts_with("no known format"));
}

#[test]
fn a_gzip_bomb_is_refused_with_413() {
    let (_dir, d) = boot();
    let bomb = gzip(&vec![b'a'; 100 << 20]);
    assert!(bomb.len() < 1 << 20);
    let (status, body) = ingest(&d.base, "bomb", Some(ADMIN), &bomb, Some("gzip")).unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("after decompression"));
    // Still serving.
    let (status, _) = ingest(&d.base, "ok", Some(ADMIN), b"{}", None).unwrap();
    assert_eq!(status, 200);
}

#[test]
fn missing_invalid_and_wrong_scope_tokens_are_refused() {
    let (_dir, d) = boot();
    let (status, _) = ingest(&d.base, "x", None, b"{}", None).unwrap();
    assert_eq!(status, 401);
    let (status, _) = ingest(&d.base, "x", Some("wrong"), b"{}", None).unwrap();
    assert_eq!(status, 401);
    let mut resp = agent()
        .post(&d.url("/api/v1/tokens"))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .send_json(json!({"name": "shipper", "scopes": ["ingest"]}))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let created: Value = resp.body_mut().read_json().unwrap();
    let shipper = created["token"].as_str().unwrap().to_string();
    let (status, _) = ingest(&d.base, "x", Some(&shipper), b"{}", None).unwrap();
    assert_eq!(status, 200);
    let (status, body) = search(&d.base, &shipper, json!({"query": "*"}));
    assert_eq!(status, 403, "{body}");
    let resp = agent()
        .post(&d.url("/api/v1/tokens"))
        .header("Authorization", &format!("Bearer {shipper}"))
        .send_json(json!({"name": "escalate", "scopes": ["admin"]}))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let metrics = agent().get(&d.url("/metrics")).call().unwrap();
    assert_eq!(metrics.status().as_u16(), 401);
    // Health needs no token.
    assert_eq!(agent().get(&d.url("/healthz")).call().unwrap().status().as_u16(), 200);
    assert_eq!(agent().get(&d.url("/readyz")).call().unwrap().status().as_u16(), 200);
}

#[test]
fn a_resent_event_id_is_stored_once() {
    let (_dir, d) = boot();
    let body =
        b"{\"event\":{\"id\":\"retry-1\"},\"message\":\"once\"}\n{\"event.id\":\"retry-2\",\"message\":\"once\"}\n";
    for _ in 0..3 {
        assert_eq!(ingest(&d.base, "r", Some(ADMIN), body, None).unwrap().0, 200);
    }
    wait_total(&d.base, "event.id:retry-1 OR event.id:retry-2", 2);
    // A later commit must not bring a duplicate back. Commits follow the
    // log's order: once a marker sent after the resend is searchable, the
    // resend is committed too (a sleep could pass before the commit, T5).
    assert_eq!(ingest(&d.base, "r", Some(ADMIN), body, None).unwrap().0, 200);
    wait_committed(&d.base);
    let (_, found) = search(&d.base, ADMIN, json!({"query": "once"}));
    assert_eq!(found["total"], 2, "{found}");
}

#[test]
fn query_syntax_errors_get_400_with_the_position() {
    let (_dir, d) = boot();
    let (status, body) = search(
        &d.base,
        ADMIN,
        json!({"query": "user.name:alice AND (source.ip:1.2.3.4"}),
    );
    assert_eq!(status, 400);
    assert_eq!(body["position"], 38, "{body}");
    let (status, body) = search(&d.base, ADMIN, json!({"query": "*", "start": "yesterday"}));
    assert_eq!(status, 400, "{body}");
    let (status, body) = search(&d.base, ADMIN, json!({"query": "source.ip:not-an-ip"}));
    assert_eq!(status, 400, "{body}");
}

#[test]
fn metrics_expose_ingest_wal_and_index_figures() {
    let (_dir, d) = boot();
    assert_eq!(
        ingest(&d.base, "m", Some(ADMIN), b"{\"a\":1}\nnope\n", None).unwrap().0,
        200
    );
    wait_total(&d.base, "*", 2);
    // The index's gauges are set just after a commit is published: a search
    // can see the events a moment before them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut text = metrics_text(&d);
    while !text.contains("tripline_index_docs 2") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        text = metrics_text(&d);
    }
    for name in [
        "tripline_ingested_events_total 2",
        "tripline_parse_failures_total 1",
        "tripline_wal_bytes_total",
        "tripline_wal_fsync_seconds_bucket",
        "tripline_index_docs 2",
        "tripline_index_commit_seconds_bucket",
        "tripline_ack_to_searchable_seconds_bucket",
        "tripline_ingested_bytes_total",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

#[test]
fn sigterm_flushes_and_a_restart_finds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A long commit interval: only the shutdown commit makes them searchable.
    let mut d = Daemon::start(&data, "[index]\ncommit_interval_ms = 600000\n");
    let body: String = (0..100).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    assert_eq!(ingest(&d.base, "s", Some(ADMIN), body.as_bytes(), None).unwrap().0, 200);
    assert!(d.stop().success());
    let d = Daemon::start(&data, FAST_COMMITS);
    wait_total(&d.base, "*", 100);
    // The log file is shared by both starts and the first one (an empty data
    // dir) always replays nothing: only the last recovery line counts (T1).
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    let last = log
        .lines()
        .rev()
        .find(|l| l.contains("write-ahead log recovered"))
        .expect("the restart logged its recovery");
    assert!(
        last.contains("replayed=0"),
        "a clean shutdown leaves nothing to replay: {last}"
    );
}

#[test]
fn an_unknown_config_key_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[index]\nretention = 3\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["serve", "--listen", "127.0.0.1:0", "--syslog-listen", "off", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retention"), "{err}");
}

#[test]
fn the_cli_prints_a_table_json_lines_and_syntax_errors() {
    let (_dir, d) = boot();
    let at = days_ago(3, 10);
    let body = format!("{{\"@timestamp\":\"{at}\",\"message\":\"Failed password for root\",\"user.name\":\"root\"}}\n");
    assert_eq!(
        ingest(&d.base, "sshd", Some(ADMIN), body.as_bytes(), None).unwrap().0,
        200
    );
    wait_total(&d.base, "*", 1);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tripline"))
            .args(["query", "--server", &d.base, "--token", ADMIN])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["user.name:root"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .take(2)
            .eq([at.as_str(), "sshd"]),
        "{table}"
    );
    assert!(table.contains("Failed password for root"));
    let out = run(&["--json", "password"]);
    let hit: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hit["user.name"], "root");
    let out = run(&["user.name:(root"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("400"));
}

/// Regression: the body used to be read (up to 64 MiB) before the token was
/// checked, so an unauthenticated client could make the server buffer it.
#[test]
fn an_unauthenticated_oversized_body_is_refused_with_401_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"), "[ingest]\nmax_body_bytes = 1024\n");
    let big = vec![b'x'; 4096];
    let (status, _) = ingest(&d.base, "x", None, &big, None).unwrap();
    assert_eq!(status, 401, "the token must be checked before the body");
    let (status, _) = ingest(&d.base, "x", Some(ADMIN), &big, None).unwrap();
    assert_eq!(status, 413);
}
