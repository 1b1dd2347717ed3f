//! The review's findings, end to end against the binary: each test is named
//! after what broke, and failed on the commit the review read.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn boot(config: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"), config);
    (dir, d)
}

/// True when a read ended because the peer closed (EOF or reset), false when
/// it timed out with the connection still open.
fn closed(read: std::io::Result<usize>) -> bool {
    match read {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

fn metric(d: &Daemon, name: &str) -> f64 {
    let text = metrics_text(d);
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

/// C1: one request with events on six days was acknowledged `accepted: 6`
/// and four were searchable, before and after a restart; with one writer, a
/// two-day batch kept one event.
#[test]
fn a_multi_day_backfill_is_acknowledged_and_every_event_stays_searchable() {
    for config in [
        FAST_COMMITS.to_string(),
        format!("{FAST_COMMITS}max_open_writers = 1\n"),
    ] {
        let (_dir, mut d) = boot(&config);
        let body: String = (0..6)
            .map(|n| {
                format!(
                    "{}\n",
                    json!({"@timestamp": days_ago(n, 12), "message": format!("backfill {n}")})
                )
            })
            .collect();
        let (status, report) = ingest(&d.base, "backfill", Some(ADMIN), body.as_bytes(), None).unwrap();
        assert_eq!((status, report["accepted"].as_u64()), (200, Some(6)), "{report}");
        wait_total(&d.base, "backfill", 6);
        d.stop();
        let d = Daemon::start(&d.data.clone(), &config);
        wait_total(&d.base, "backfill", 6);
    }
}

/// H3: these got `503 storage unavailable, retry later`, forever.
#[test]
fn event_times_the_calendar_cannot_write_are_stored_tagged_not_refused() {
    let (_dir, d) = boot(FAST_COMMITS);
    let body = "{\"ts\": -99999999999, \"message\": \"calendar one\"}\n\
                {\"@timestamp\": \"9999-12-31T23:59:59-01:00\", \"message\": \"calendar two\"}\n";
    let (status, report) = ingest(&d.base, "cal", Some(ADMIN), body.as_bytes(), None).unwrap();
    assert_eq!(status, 200, "{report}");
    let found = wait_total(&d.base, "calendar AND tags:_timestamp_out_of_range", 2);
    assert!(
        found["hits"][0]["event.original_timestamp"].is_string()
            || found["hits"][0]["event.original_timestamp"].is_number()
    );
}

/// H2: 65 KB of gzip holding 33 million tiny lines aborted the process.
#[test]
fn millions_of_tiny_lines_in_a_small_gzip_body_get_413_naming_the_limit() {
    let (_dir, d) = boot(FAST_COMMITS);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&b"1\n".repeat(32 << 20)).unwrap();
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 200_000, "{} bytes", bomb.len());
    let (status, body) = ingest(&d.base, "tiny", Some(ADMIN), &bomb, Some("gzip")).unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("100000 events"), "{body}");
    let (status, _) = ingest(&d.base, "ok", Some(ADMIN), b"{\"message\":\"still up\"}\n", None).unwrap();
    assert_eq!(status, 200);
}

/// H5: 1,500 events on random days from 1980 to 2400 made 1,498 partitions,
/// and partitions in the future were never removed.
#[test]
fn random_event_days_do_not_make_partitions_outside_the_window() {
    let (_dir, d) = boot(FAST_COMMITS);
    let mut seed = 7u64;
    let body: String = (0..1500)
        .map(|i| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let t = 315_532_800 + (seed >> 33) as i64 % 13_250_000_000;
            format!("{}\n", json!({"ts": t, "n": i, "message": "random day"}))
        })
        .collect();
    let (status, _) = ingest(&d.base, "rand", Some(ADMIN), body.as_bytes(), None).unwrap();
    assert_eq!(status, 200);
    wait_total(&d.base, "\"random day\"", 1500);
    let partitions = metric(&d, "tripline_index_partitions");
    assert!(partitions <= 33.0, "{partitions} partitions");
    let (_, out) = search(
        &d.base,
        ADMIN,
        json!({"query": "\"random day\" AND -tags:_timestamp_out_of_range", "limit": 1}),
    );
    let inside = out["total"].as_u64().unwrap();
    let (_, out) = search(
        &d.base,
        ADMIN,
        json!({"query": "\"random day\" AND tags:_timestamp_out_of_range", "limit": 1}),
    );
    assert_eq!(inside + out["total"].as_u64().unwrap(), 1500);
    assert!(out["total"].as_u64().unwrap() > 1400, "{out}");
}

/// H4: an event of source `other` with the same `event.id` erased the
/// `payments` event.
#[test]
fn one_source_cannot_replace_another_sources_event_by_reusing_its_id() {
    let (_dir, d) = boot(FAST_COMMITS);
    let at = days_ago(1, 9);
    let ev = |msg: &str| format!("{}\n", json!({"event.id": "k1", "@timestamp": at, "message": msg}));
    assert_eq!(
        ingest(&d.base, "payments", Some(ADMIN), ev("evidence").as_bytes(), None)
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        ingest(&d.base, "other", Some(ADMIN), ev("benign").as_bytes(), None)
            .unwrap()
            .0,
        200
    );
    let found = wait_total(&d.base, "event.id:k1", 2);
    let datasets: Vec<&str> = found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event.dataset"].as_str().unwrap())
        .collect();
    assert!(datasets.contains(&"payments") && datasets.contains(&"other"), "{found}");
}

/// L5 and L8: `start=-999999999d` dropped the connection (a panic on an
/// async thread); `@timestamp:YYYY-MM-DD` always answered 400.
#[test]
fn huge_relative_starts_get_400_and_the_day_shorthand_finds_that_day() {
    let (_dir, d) = boot(FAST_COMMITS);
    let mut resp = agent()
        .get(&d.url("/api/v1/search?q=*&start=-999999999d"))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .call()
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        400,
        "{}",
        resp.body_mut().read_to_string().unwrap()
    );
    let at = days_ago(2, 8);
    let body = format!("{}\n", json!({"@timestamp": at, "message": "on that day"}));
    assert_eq!(
        ingest(&d.base, "day", Some(ADMIN), body.as_bytes(), None).unwrap().0,
        200
    );
    wait_total(&d.base, &format!("@timestamp:{}", &at[..10]), 1);
}

/// M4: the body was read and parsed before the token was checked.
#[test]
fn an_unauthenticated_search_or_token_request_gets_401_whatever_its_body() {
    let (_dir, d) = boot(FAST_COMMITS);
    for path in ["/api/v1/search", "/api/v1/tokens"] {
        let resp = agent().post(&d.url(path)).send("x").unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path}");
    }
    let resp = agent().get(&d.url("/api/v1/search?bogus=1")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

/// H6: a client sending half a header was never disconnected.
#[test]
fn half_a_header_is_disconnected_after_the_header_timeout() {
    let (_dir, d) = boot(&format!("{FAST_COMMITS}[http]\nheader_read_timeout_secs = 1\n"));
    let addr = d.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Bounded so that a server that never closes fails the test.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    assert!(closed(s.read_to_end(&mut buf)), "the server kept the connection open");
}

/// H6: with every connection slot held by idle sockets, new clients were
/// stuck; now the surplus is closed at once and slots come back when the
/// idle ones time out.
#[test]
fn connections_past_the_cap_are_closed_and_slots_come_back() {
    let (_dir, d) = boot(&format!(
        "{FAST_COMMITS}[http]\nmax_connections = 4\nheader_read_timeout_secs = 2\n"
    ));
    let addr = d.base.trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(&addr).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 1];
    let read = extra.read(&mut buf);
    assert!(closed(read.map(|n| if n == 0 {
        0
    } else {
        panic!("a connection past the cap was served")
    })));
    // Once the idle ones time out, health answers again.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = agent().get(&d.url("/healthz")).call() {
            if r.status().as_u16() == 200 {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "health never answered again");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(metric(&d, "tripline_http_connections_refused_total") >= 1.0);
    drop(idle);
}

/// H6: eight slow bodies held every ingest slot forever.
#[test]
fn a_body_that_trickles_is_cut_with_408_and_frees_its_slot() {
    let (_dir, d) = boot(&format!(
        "{FAST_COMMITS}[ingest]\nmax_concurrent_requests = 1\n[http]\nbody_read_timeout_secs = 1\n"
    ));
    let addr = d.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /api/v1/ingest?source=slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: 1000\r\n\r\n{{"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 408");
    let (status, _) = ingest(&d.base, "fast", Some(ADMIN), b"{}\n", None).unwrap();
    assert_eq!(status, 200);
}

#[test]
fn readyz_reports_each_part_and_is_ready_after_replay() {
    let (_dir, d) = boot(FAST_COMMITS);
    let mut resp = agent().get(&d.url("/readyz")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.body_mut().read_json().unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["wal"], "ok");
    assert_eq!(body["index"], "ok");
}

fn readyz(d: &Daemon) -> (u16, Value) {
    let mut resp = agent().get(&d.url("/readyz")).call().unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

/// H1 and M6: a batch that could not be indexed was skipped for good (the
/// next one moved the checkpoint past it), and /readyz stayed 200 while
/// nothing was indexed.
#[test]
fn an_indexer_that_keeps_failing_stops_ingest_and_loses_nothing() {
    let config = format!("{FAST_COMMITS}max_retries = 1\nretry_backoff_ms = 50\n");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data, &config);
    let at = days_ago(1, 6);
    // A file where that day's partition directory must go.
    let blocker = data.join("index").join(&at[..10]);
    std::fs::write(&blocker, b"not a partition").unwrap();
    let body = format!("{}\n", json!({"@timestamp": at, "message": "blocked day"}));
    assert_eq!(ingest(&d.base, "b", Some(ADMIN), body.as_bytes(), None).unwrap().0, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = readyz(&d);
        if status == 503 {
            assert_eq!(body["index"], "failed: indexing stopped, see the log", "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never reported the failed indexer"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = ingest(&d.base, "b", Some(ADMIN), b"{\"message\":\"after\"}\n", None).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(d.stop().success());
    std::fs::remove_file(&blocker).unwrap();
    let d = Daemon::start(&data, &config);
    wait_total(&d.base, "\"blocked day\"", 1);
    assert_eq!(readyz(&d).0, 200);
}

/// A full disk under the WAL: the failing write gets 503 and no
/// acknowledgement, and a restart on the freed disk finds every
/// acknowledged event. Needs root to mount a small tmpfs; skipped otherwise.
#[test]
fn a_full_disk_gets_503_acknowledges_nothing_and_restarts_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    // Room to free before the restart.
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![0u8; 3 << 20]).unwrap();
    let data = mnt.join("data");
    let config = format!("{FAST_COMMITS}[wal]\nsegment_bytes = 65536\n");
    let mut d = Daemon::start(&data, &config);
    let mut acked = 0u64;
    let mut refused = None;
    for batch in 0..2000 {
        let body: String = (0..50)
            .map(|i| {
                format!(
                    "{}\n",
                    json!({"message": format!("disk fill {batch} {i} {}", "x".repeat(200))})
                )
            })
            .collect();
        let (status, report) = ingest(&d.base, "fill", Some(ADMIN), body.as_bytes(), None).unwrap();
        match status {
            200 => acked += report["accepted"].as_u64().unwrap(),
            429 => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                refused = Some((status, report));
                break;
            }
        }
    }
    let (status, report) = refused.expect("an 8 MiB disk never filled");
    assert_eq!(status, 503, "{report}");
    assert!(acked > 0);
    // The log or the indexer has failed for good: nothing more is acknowledged.
    let (status, _) = ingest(&d.base, "fill", Some(ADMIN), b"{\"message\":\"more\"}\n", None).unwrap();
    assert_eq!(status, 503);
    assert_eq!(readyz(&d).0, 503);
    d.kill();
    // Free the disk and restart: the log replays what the index lacks.
    std::fs::remove_file(&ballast).unwrap();
    let d = Daemon::start(&data, &config);
    let found = wait_total(&d.base, "fill", acked);
    assert_eq!(found["total"].as_u64(), Some(acked));
}

/// M11: dedup held inside one day's partition: the same event resent with
/// another time (or, without one, after midnight) was stored twice.
#[test]
fn an_event_resent_with_another_day_is_stored_once() {
    let (_dir, d) = boot(FAST_COMMITS);
    for n in [2, 1] {
        let body = format!(
            "{}\n",
            json!({"event.id": "resent-1", "@timestamp": days_ago(n, 12), "message": "resent"})
        );
        assert_eq!(ingest(&d.base, "r", Some(ADMIN), body.as_bytes(), None).unwrap().0, 200);
    }
    wait_committed(&d.base);
    let (_, found) = search(&d.base, ADMIN, json!({"query": "event.id:resent-1"}));
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["hits"][0]["@timestamp"], days_ago(1, 12).as_str());
}

/// L1: failed authentications were not limited: a weak admin secret could
/// be guessed online at full speed.
#[test]
fn an_address_that_keeps_failing_to_authenticate_gets_429() {
    let (_dir, d) = boot(&format!("{FAST_COMMITS}[http]\nmax_auth_failures_per_minute = 3\n"));
    for _ in 0..3 {
        let (status, _) = search(&d.base, "tl_guess", json!({"query": "*"}));
        assert_eq!(status, 401);
    }
    let (status, body) = search(&d.base, "tl_guess", json!({"query": "*"}));
    assert_eq!(status, 429, "{body}");
    // The address waits out the minute, whatever token it shows now.
    let (status, _) = search(&d.base, ADMIN, json!({"query": "*"}));
    assert_eq!(status, 429);
    // Health needs no token and is not throttled.
    assert_eq!(agent().get(&d.url("/healthz")).call().unwrap().status().as_u16(), 200);
}
