//! The indexer thread against real partitions on disk.
#![allow(clippy::unwrap_used)]

use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use index::{EventSchema, IndexMetrics, Indexer, IndexerConfig, Store};
use ingest::{Batch, Durable};
use schemas::{Catalog, Event};
use serde_json::json;

fn event(id: &str, ts: &str, client_id: bool) -> Event {
    let mut e = Event::from_json(json!({"event.id": id, "@timestamp": ts, "message": "m"})).unwrap();
    e.set_id_assigned(!client_id);
    e
}

fn open(dir: &std::path::Path) -> Arc<Store> {
    Arc::new(Store::open(dir, EventSchema::new(Catalog::builtin())).unwrap())
}

fn config(commit_ms: u64) -> IndexerConfig {
    IndexerConfig {
        commit_interval: Duration::from_millis(commit_ms),
        writer_memory_bytes: 32 << 20,
        writer_threads: 1,
        ..IndexerConfig::default()
    }
}

/// Runs an indexer over `batches`, then stops it (final commit).
fn index_batches(store: &Arc<Store>, cfg: IndexerConfig, batches: Vec<Durable>) {
    let (tx, rx) = sync_channel(4);
    let indexer = Indexer::spawn(store.clone(), cfg, rx, IndexMetrics::default(), Box::new(|_| {})).unwrap();
    for b in batches {
        tx.send(b).unwrap();
    }
    drop(tx);
    indexer.join();
}

fn docs(store: &Store) -> u64 {
    store.all().iter().map(|p| p.searcher().num_docs()).sum()
}

#[test]
fn replayed_records_are_skipped_by_partitions_that_committed_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = Durable {
        start: 0,
        end: 100,
        batch: Batch::encode(vec![
            event("a", "2026-11-01T00:00:00Z", false),
            event("b", "2026-11-02T00:00:00Z", false),
        ]),
    };
    index_batches(&store, config(1000), vec![first.clone()]);
    assert_eq!(store.checkpoint().unwrap(), 100);
    drop(store);

    // As after a crash whose checkpoint lagged: the record comes again.
    let store = open(dir.path());
    let second = Durable {
        start: 100,
        end: 180,
        batch: Batch::encode(vec![event("c", "2026-11-01T05:00:00Z", false)]),
    };
    index_batches(&store, config(1000), vec![first, second]);
    assert_eq!(docs(&store), 3, "the replayed record was indexed twice");
    assert_eq!(store.checkpoint().unwrap(), 180);
    assert_eq!(store.max_committed_lsn(), 180);
}

#[test]
fn backfilled_events_land_in_their_own_day_and_retention_deletes_old_days() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = time::OffsetDateTime::now_utc();
    let old = schemas::time::format(now - time::Duration::days(45));
    let recent = schemas::time::format(now - time::Duration::days(3));
    let batch = Durable {
        start: 0,
        end: 10,
        batch: Batch::encode(vec![event("old", &old, false), event("new", &recent, false)]),
    };
    let mut keep_all = config(1000);
    keep_all.retention_days = 0;
    index_batches(&store, keep_all, vec![batch]);
    let days: Vec<_> = store.all().iter().map(|p| p.day).collect();
    assert_eq!(
        days,
        vec![
            (now - time::Duration::days(45)).date(),
            (now - time::Duration::days(3)).date()
        ]
    );
    drop(store);

    let store = open(dir.path());
    index_batches(&store, config(1000), vec![]);
    let days: Vec<_> = store.all().iter().map(|p| p.day).collect();
    assert_eq!(days, vec![(now - time::Duration::days(3)).date()]);
    assert!(!dir
        .path()
        .join(index::partition::day_name((now - time::Duration::days(45)).date()))
        .exists());
}

#[test]
fn segment_count_stays_bounded_under_many_small_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (tx, rx) = sync_channel(4);
    let indexer = Indexer::spawn(store.clone(), config(5), rx, IndexMetrics::default(), Box::new(|_| {})).unwrap();
    // One commit per batch: wait for each to be checkpointed before the next.
    let commits = 200u64;
    for i in 0..commits {
        tx.send(Durable {
            start: i * 10,
            end: i * 10 + 10,
            batch: Batch::encode(vec![event(&format!("e{i}"), "2026-11-03T00:00:00Z", false)]),
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while store.checkpoint().unwrap() < i * 10 + 10 {
            assert!(Instant::now() < deadline, "commit {i} never happened");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(tx);
    indexer.join();
    let p = &store.all()[0];
    p.reload().unwrap();
    let segments = p.searcher().segment_readers().len();
    eprintln!("{segments} segments after {commits} commits");
    assert!(segments <= 30, "{segments} segments after {commits} commits");
    assert_eq!(p.searcher().num_docs(), 200);
}

#[test]
fn a_resent_client_id_replaces_the_earlier_copy_across_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let b = |start| Durable {
        start,
        end: start + 5,
        batch: Batch::encode(vec![event("dup", "2026-11-04T00:00:00Z", true)]),
    };
    index_batches(&store, config(1000), vec![b(0)]);
    index_batches(&store, config(1000), vec![b(5), b(10)]);
    assert_eq!(docs(&store), 1);
}
