//! Crash safety: SIGKILL the daemon while clients stream events and retry
//! what was not acknowledged; every acknowledged event must be found exactly
//! once after restarts.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// One batch a client sent: its unique `uid`s, and whether it was
/// acknowledged at the first attempt.
struct Sent {
    uids: Vec<String>,
    first_try: bool,
}

/// A client that sends batches and retries each until it is acknowledged.
/// Its events spread over six days (more than the writers the daemon may
/// keep open, so eviction happens inside batches), and half of them carry
/// no `event.id` (Tripline assigns one, so nothing deduplicates a replayed
/// copy): an indexer that replays or drops part of a batch is visible.
fn client(name: &'static str, base: Arc<Mutex<String>>, stop: Arc<AtomicBool>) -> Vec<Sent> {
    let mut sent = Vec::new();
    let now = time::OffsetDateTime::now_utc();
    let mut batch = 0;
    while !stop.load(Ordering::SeqCst) {
        let uids: Vec<String> = (0..60).map(|i| format!("{name}-{batch}-{i}")).collect();
        let body: String = uids
            .iter()
            .enumerate()
            .map(|(i, uid)| {
                let ts = (now - time::Duration::days((i % 6) as i64)).unix_timestamp();
                if i % 2 == 0 {
                    format!("{{\"uid\":\"{uid}\",\"@timestamp\":{ts},\"message\":\"crash test {name}\"}}\n")
                } else {
                    format!("{{\"event\":{{\"id\":\"{uid}\"}},\"uid\":\"{uid}\",\"@timestamp\":{ts},\"message\":\"crash test {name}\"}}\n")
                }
            })
            .collect();
        let body = gzip(body.as_bytes());
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let url = base.lock().unwrap().clone();
            match ingest(&url, "crash", Some(ADMIN), &body, Some("gzip")) {
                Ok((200, _)) => break,
                _ => {
                    assert!(Instant::now() < deadline, "batch {batch} never acknowledged");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        sent.push(Sent {
            uids,
            first_try: attempts == 1,
        });
        batch += 1;
    }
    sent
}

/// Every value of `field` in the hits of `query`, paging with the cursor.
fn all_values(base: &str, query: &str, field: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (status, body) = search(
            base,
            ADMIN,
            serde_json::json!({ "query": query, "limit": 5000, "cursor": cursor }),
        );
        assert_eq!(status, 200, "{body}");
        for hit in body["hits"].as_array().unwrap() {
            out.push(hit[field].as_str().unwrap().to_string());
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

#[test]
fn sigkill_while_streaming_loses_no_acknowledged_event_and_duplicates_none() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!("{FAST_COMMITS}max_open_writers = 2\n");
    let mut daemon = Daemon::start(&data, &config);
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
        daemon = Daemon::start(&data, &config);
        *base.lock().unwrap() = daemon.base.clone();
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let sent: Vec<Sent> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    let acked: usize = sent.iter().map(|b| b.uids.len()).sum();
    assert!(acked >= 400, "the clients made too little progress: {acked}");

    // One more kill with nothing in flight: replay alone must be exact.
    daemon.kill();
    let daemon = Daemon::start(&data, &config);
    // Replayed records come before any new one, and commits follow the log:
    // once a marker sent now is searchable, the replay is committed.
    wait_committed(&daemon.base);
    let found = all_values(&daemon.base, "uid:*", "uid");
    let mut count: HashMap<&str, usize> = HashMap::new();
    for uid in &found {
        *count.entry(uid.as_str()).or_default() += 1;
    }
    for b in &sent {
        for (i, uid) in b.uids.iter().enumerate() {
            let n = count.get(uid.as_str()).copied().unwrap_or(0);
            assert!(n >= 1, "acknowledged event {uid} is lost");
            // A batch acknowledged at its first attempt was sent once: any
            // second copy is the pipeline's. A retried one may have been
            // written before the kill cut its answer: its events without an
            // id can be there twice (at least once), those with one cannot.
            if b.first_try || i % 2 == 1 {
                assert_eq!(n, 1, "event {uid} is stored {n} times");
            }
        }
    }
    let all: HashSet<&str> = sent.iter().flat_map(|b| b.uids.iter().map(String::as_str)).collect();
    assert!(count.keys().all(|k| all.contains(k)), "an event nobody sent was found");

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
