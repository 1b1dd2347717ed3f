//! Crash safety: SIGKILL the daemon while clients stream events and retry
#![allow(clippy::unwrap_used)]
//! what was not acknowledged; every acknowledged event must be found exactly
//! once after restarts.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A client that sends batches of events with ids and retries each batch
/// until it is acknowledged. Returns the ids acknowledged.
fn client(name: &'static str, base: Arc<Mutex<String>>, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acked = Vec::new();
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let mut batch = 0;
    while !stop.load(Ordering::SeqCst) {
        let ids: Vec<String> = (0..100).map(|i| format!("{name}-{batch}-{i}")).collect();
        let body: String = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                // Two partitions: today and yesterday.
                let ts = if i % 2 == 0 {
                    yesterday.unix_timestamp()
                } else {
                    time::OffsetDateTime::now_utc().unix_timestamp()
                };
                format!("{{\"event\":{{\"id\":\"{id}\"}},\"@timestamp\":{ts},\"message\":\"crash test {name}\"}}\n")
            })
            .collect();
        let body = gzip(body.as_bytes());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let url = base.lock().unwrap().clone();
            match ingest(&url, "crash", Some(ADMIN), &body, Some("gzip")) {
                Ok((200, _)) => break,
                _ => {
                    assert!(Instant::now() < deadline, "batch {batch} never acknowledged");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        acked.extend(ids);
        batch += 1;
    }
    acked
}

#[test]
fn sigkill_while_streaming_loses_no_acknowledged_event_and_duplicates_none() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut daemon = Daemon::start(&data, FAST_COMMITS);
    let base = Arc::new(Mutex::new(daemon.base.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let (base, stop) = (base.clone(), stop.clone());
            std::thread::spawn(move || client(name, base, stop))
        })
        .collect();
    for round in 0..5u64 {
        std::thread::sleep(Duration::from_millis(300 + 150 * round));
        daemon.kill();
        daemon = Daemon::start(&data, FAST_COMMITS);
        *base.lock().unwrap() = daemon.base.clone();
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert!(
        acked.len() >= 400,
        "the clients made too little progress: {}",
        acked.len()
    );

    // One more kill with nothing in flight: replay alone must be exact.
    daemon.kill();
    let daemon = Daemon::start(&data, FAST_COMMITS);
    wait_total(&daemon.base, "*", acked.len() as u64);
    let found = all_ids(&daemon.base, "*", 5000);
    let unique: HashSet<&String> = found.iter().collect();
    assert_eq!(unique.len(), found.len(), "an event is stored twice");
    let want: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique, want, "found ids differ from acknowledged ids");

    // The kills did land between fsync and commit: some restart replayed.
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    let replays = log
        .lines()
        .filter_map(|l| l.split("replayed=").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .count();
    assert!(
        replays > 0,
        "no restart replayed anything: the test did not exercise recovery\n{log}"
    );
}
