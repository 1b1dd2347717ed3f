//! The indexer thread against real partitions on disk.
#![allow(clippy::unwrap_used)]

use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use index::{EventSchema, IndexMetrics, Indexer, IndexerConfig, Store};
use schemas::{Catalog, Event};
use serde_json::json;
use wal::{Batch, Consumer, Durable, Lsn};

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

/// Runs an indexer over `batches`, then stops it (final commit); returns
/// why it failed, if it did.
fn index_batches(store: &Arc<Store>, cfg: IndexerConfig, batches: Vec<Durable>) -> Option<String> {
    let (tx, rx) = sync_channel(4);
    let indexer = Indexer::spawn(
        store.clone(),
        cfg,
        rx,
        IndexMetrics::default(),
        Consumer::new("index", Lsn(0)),
    )
    .unwrap();
    let health = indexer.health();
    for b in batches {
        tx.send(b).unwrap();
    }
    drop(tx);
    indexer.join();
    health.failure()
}

fn batch(start: u64, end: u64, events: Vec<Event>) -> Durable {
    Durable {
        start: Lsn(start),
        end: Lsn(end),
        batch: Batch::encode(events),
    }
}

/// Assigned ids (no delete on replay) on `days` days before today.
fn assigned_on_days(prefix: &str, days: std::ops::Range<i64>) -> Vec<Event> {
    let now = time::OffsetDateTime::now_utc();
    days.map(|d| {
        let at = schemas::time::format(now - time::Duration::days(d));
        event(&format!("{prefix}{d}"), &at, false)
    })
    .collect()
}

fn docs(store: &Store) -> u64 {
    store.all().iter().map(|p| p.searcher().num_docs()).sum()
}

#[test]
fn replayed_records_are_skipped_by_partitions_that_committed_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = Durable {
        start: Lsn(0),
        end: Lsn(100),
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
        start: Lsn(100),
        end: Lsn(180),
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
        start: Lsn(0),
        end: Lsn(10),
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
    let indexer = Indexer::spawn(
        store.clone(),
        config(5),
        rx,
        IndexMetrics::default(),
        Consumer::new("index", Lsn(0)),
    )
    .unwrap();
    // One commit per batch: wait for each to be checkpointed before the next.
    let commits = 200u64;
    for i in 0..commits {
        tx.send(Durable {
            start: Lsn(i * 10),
            end: Lsn(i * 10 + 10),
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
        start: Lsn(start),
        end: Lsn(start + 5),
        batch: Batch::encode(vec![event("dup", "2026-11-04T00:00:00Z", true)]),
    };
    index_batches(&store, config(1000), vec![b(0)]);
    index_batches(&store, config(1000), vec![b(5), b(10)]);
    assert_eq!(docs(&store), 1);
}

/// C1: the first batch after a start that spans more days than writers lost
/// the evicted days' events (closed without a commit), then the checkpoint
/// passed them.
#[test]
fn a_first_batch_over_more_days_than_writers_keeps_every_event() {
    for (writers, days) in [(1usize, 2i64), (4, 6)] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut cfg = config(60_000);
        cfg.max_open_writers = writers;
        assert_eq!(
            index_batches(&store, cfg, vec![batch(0, 10, assigned_on_days("e", 0..days))]),
            None
        );
        assert_eq!(docs(&store), days as u64, "{writers} writers, {days} days");
        assert_eq!(store.checkpoint().unwrap(), 10);
        drop(store);
        let store = open(dir.path());
        assert_eq!(docs(&store), days as u64, "after reopening");
    }
}

/// M1: an evicted writer holding part of the current batch was committed at
/// the previous batch's end, so a crash before the checkpoint replayed (and
/// duplicated) its share of the batch.
#[test]
fn an_evicted_writer_is_committed_at_the_end_of_the_batch_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut cfg = config(60_000);
    cfg.max_open_writers = 1;
    let first = batch(0, 10, assigned_on_days("a", 1..2));
    let mut both = assigned_on_days("b", 1..2);
    both.extend(assigned_on_days("c", 2..3));
    let second = batch(10, 20, both);
    assert_eq!(
        index_batches(&store, cfg.clone(), vec![first.clone(), second.clone()]),
        None
    );
    assert_eq!(docs(&store), 3);
    for p in store.all() {
        assert_eq!(p.committed_lsn(), 20, "partition {} holds part of [10, 20)", p.day);
    }
    // As if the process died before writing the checkpoint: both replay.
    store.write_checkpoint(0).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(index_batches(&store, cfg, vec![first, second]), None);
    assert_eq!(docs(&store), 3, "replay stored an event twice");
}

fn failing(retries: u32) -> IndexerConfig {
    let mut cfg = config(60_000);
    cfg.retention_days = 0;
    cfg.max_retries = retries;
    cfg.retry_backoff = Duration::from_millis(100);
    cfg
}

/// H1: a batch that failed to index was skipped for good: the next good
/// batch moved the checkpoint past it and the WAL deleted it.
#[test]
fn a_batch_that_cannot_be_indexed_holds_the_checkpoint_and_fails_the_indexer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // A file where the 2026-11-05 partition's directory should be.
    std::fs::write(dir.path().join("2026-11-05"), b"not a partition").unwrap();
    let batches = vec![
        batch(0, 10, vec![event("x", "2026-11-05T10:00:00Z", false)]),
        batch(10, 20, vec![event("y", "2026-11-06T10:00:00Z", false)]),
    ];
    let failure = index_batches(&store, failing(2), batches.clone());
    assert!(failure.is_some_and(|f| f.contains("2026-11-05")));
    assert_eq!(
        store.checkpoint().unwrap(),
        0,
        "the checkpoint passed a batch that was not indexed"
    );
    // Once the cause is gone, a start replays both and finds everything.
    std::fs::remove_file(dir.path().join("2026-11-05")).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(index_batches(&store, failing(2), batches), None);
    assert_eq!(docs(&store), 2);
    assert_eq!(store.checkpoint().unwrap(), 20);
}

#[test]
fn a_failure_that_clears_is_retried_and_nothing_is_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let blocker = dir.path().join("2026-11-05");
    std::fs::write(&blocker, b"not a partition").unwrap();
    let clear = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        std::fs::remove_file(blocker).unwrap();
    });
    let batches = vec![
        batch(0, 10, vec![event("w", "2026-11-06T10:00:00Z", false)]),
        batch(
            10,
            20,
            vec![
                event("x", "2026-11-05T10:00:00Z", false),
                event("z", "2026-11-07T10:00:00Z", false),
            ],
        ),
        batch(20, 30, vec![event("y", "2026-11-06T11:00:00Z", false)]),
    ];
    assert_eq!(index_batches(&store, failing(6), batches), None);
    clear.join().unwrap();
    assert_eq!(docs(&store), 4);
    assert_eq!(store.checkpoint().unwrap(), 30);
}

/// H4: any ingest token could erase another dataset's event by resending
/// its id (and `ABC` replaced `abc`).
#[test]
fn a_client_id_replaces_only_the_same_datasets_event_with_the_exact_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let in_dataset = |id: &str, dataset: &str, msg: &str| {
        let mut e = Event::from_json(
            json!({"event.id": id, "event.dataset": dataset, "@timestamp": "2026-11-04T00:00:00Z", "message": msg}),
        )
        .unwrap();
        e.set_id_assigned(false);
        e
    };
    let batches = vec![
        batch(0, 5, vec![in_dataset("k1", "payments", "evidence")]),
        batch(5, 10, vec![in_dataset("k1", "web", "benign")]),
        batch(10, 15, vec![in_dataset("K1", "payments", "other case")]),
        batch(15, 20, vec![in_dataset("k1", "payments", "evidence, resent")]),
    ];
    assert_eq!(index_batches(&store, config(1000), batches), None);
    assert_eq!(docs(&store), 3, "payments/k1 (resent), web/k1, payments/K1");
}

/// M6: one partition that could not be opened stopped the daemon at start.
#[test]
fn a_partition_that_cannot_be_opened_is_quarantined_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(
        index_batches(
            &store,
            config(1000),
            vec![batch(0, 10, vec![event("ok", "2026-11-06T10:00:00Z", false)])]
        ),
        None
    );
    drop(store);
    let bad = dir.path().join("2026-11-05");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("meta.json"), b"{ not tantivy").unwrap();
    let store = open(dir.path());
    assert_eq!(store.quarantined().len(), 1);
    assert!(!bad.exists());
    assert!(store.quarantined()[0].starts_with(dir.path().join("quarantine")));
    assert_eq!(docs(&store), 1, "the good partition is still there");
}

/// M11: dedup held inside one day's partition only: an event resent with
/// another time (or, without one, after midnight) was stored twice.
#[test]
fn a_client_id_resent_on_another_day_replaces_the_earlier_copy_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = schemas::time::format(time::OffsetDateTime::now_utc());
    let sent = |dataset: &str, day: &str| {
        let mut e = Event::from_json(json!({"event.id": "k1", "event.dataset": dataset, "event.ingested": now, "@timestamp": format!("{day}T10:00:00Z"), "message": "m"})).unwrap();
        e.set_id_assigned(false);
        e
    };
    let batches = vec![
        batch(0, 5, vec![sent("payments", "2026-11-04")]),
        batch(5, 10, vec![sent("payments", "2026-11-05")]),
        batch(10, 15, vec![sent("web", "2026-11-03")]),
    ];
    assert_eq!(index_batches(&store, failing(0), batches), None);
    assert_eq!(docs(&store), 2, "payments/k1 once (on 11-05), web/k1 once");
    drop(store);
    // The window is rebuilt from the partitions at start.
    let store = open(dir.path());
    assert_eq!(
        index_batches(
            &store,
            failing(0),
            vec![batch(15, 20, vec![sent("payments", "2026-11-06")])]
        ),
        None
    );
    assert_eq!(docs(&store), 2);
    let days: Vec<(String, u64)> = store
        .all()
        .iter()
        .map(|p| (p.day.to_string(), p.searcher().num_docs()))
        .collect();
    assert!(
        days.contains(&("2026-11-06".to_string(), 1)) && days.contains(&("2026-11-03".to_string(), 1)),
        "{days:?}"
    );
}

/// L12: a wall clock that jumped forward made retention delete every
/// partition at its next run.
#[test]
fn retention_does_not_delete_everything_when_nothing_was_ingested_since_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = time::OffsetDateTime::now_utc();
    let at = |days: i64| schemas::time::format(now - time::Duration::days(days));
    let ingested_then = |days: i64, id: &str| {
        let mut e = Event::from_json(
            json!({"event.id": id, "@timestamp": at(days), "event.ingested": at(days), "message": "m"}),
        )
        .unwrap();
        e.set_id_assigned(true);
        e
    };
    let mut keep_all = config(1000);
    keep_all.retention_days = 0;
    assert_eq!(
        index_batches(&store, keep_all, vec![batch(0, 10, vec![ingested_then(45, "old")])]),
        None
    );
    drop(store);
    // As if the clock had jumped 45 days: everything is past retention.
    let store = open(dir.path());
    assert_eq!(index_batches(&store, config(1000), vec![]), None);
    assert_eq!(docs(&store), 1, "retention deleted every partition");
    // New events confirm the clock: retention goes on.
    assert_eq!(
        index_batches(&store, config(1000), vec![batch(10, 20, vec![ingested_then(0, "new")])]),
        None
    );
    drop(store);
    let store = open(dir.path());
    assert_eq!(index_batches(&store, config(1000), vec![]), None);
    assert_eq!(docs(&store), 1);
    assert_eq!(store.all().len(), 1, "the 45-day-old partition is gone");
}
