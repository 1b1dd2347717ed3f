//! The indexer thread: durable batches in, committed partitions out.
//!
//! It owns one tantivy writer per partition it is writing (at most
//! `max_open_writers`, least recently used closed first). Every
//! `commit_interval` it commits each writer that has new documents with the
//! payload `{"wal_end": N}` — N being the WAL position after the last batch
//! it took — reloads their readers, writes `checkpoint.json` with N and
//! advances its WAL [`Consumer`] to N: the log may delete what is below.
//!
//! **Invariant:** for every partition, every event of a WAL record that ends
//! at or before the partition's payload is committed in it, and no event of
//! a record ending after it is. So at replay a record is skipped by exactly
//! the partitions that already hold it, and a crash between an fsync and a
//! commit loses nothing and duplicates nothing.
//!
//! # Batches that span more days than there are writers
//! A batch is added one day at a time, days that already have a writer
//! first. A writer is therefore only ever closed between days: it holds
//! either all of the current batch's events for its day or none, so it is
//! committed with the current batch's end as its payload, which is true of
//! it. (Committing it at the previous batch's end would replay, and
//! duplicate, its share of the current batch after a crash; closing it
//! without a commit would lose it.)
//!
//! # Failure
//! The batches added since the last checkpoint are kept. When adding or
//! committing fails, every open writer is dropped uncommitted and those
//! batches are added again (partitions that already committed a batch skip
//! it), after a backoff that doubles; after `max_retries` the indexer fails
//! for good: [`IndexHealth::failure`] says why, the checkpoint stays where
//! it was, and the WAL keeps everything after it for the next start. A batch
//! is never skipped.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use schemas::fields;
use tantivy::indexer::LogMergePolicy;
use tantivy::{IndexWriter, TantivyDocument, Term};
use time::{Date, OffsetDateTime};
use wal::{Batch, Consumer, Durable, Lsn};

use crate::dedup::DedupWindow;
use crate::doc::{event_time, to_document};
use crate::partition::{commit_payload, utc_day, Partition, Store};
use crate::schema::dedup_key;

/// Keys whose earlier copy is to be deleted, by the day it is in.
type Deletes = HashMap<Date, Vec<String>>;

/// A batch added since the last checkpoint.
struct Pending {
    start: Lsn,
    end: Lsn,
    payload: Vec<u8>,
    deletes: Deletes,
}
use crate::{IndexError, IndexMetrics};

/// How the indexer writes and commits.
#[derive(Debug, Clone)]
pub struct IndexerConfig {
    /// Time between commits; bounds how long an acknowledged event takes to
    /// become searchable.
    pub commit_interval: Duration,
    /// Memory budget of one partition writer.
    pub writer_memory_bytes: usize,
    /// Indexing threads of one partition writer.
    pub writer_threads: usize,
    /// Writers open at once (backfills open more days).
    pub max_open_writers: usize,
    /// A writer untouched this long is committed and closed.
    pub writer_idle: Duration,
    /// Days kept; older partitions are deleted. 0 keeps everything.
    pub retention_days: u32,
    /// Segments of one size merged at once (tantivy's `LogMergePolicy`
    /// `min_num_segments`). Higher merges less often: less CPU under a
    /// commit per second, a few more segments per search.
    pub merge_fan_in: usize,
    /// Times a failed add or commit is retried before the indexer fails for good.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each next one.
    pub retry_backoff: Duration,
    /// Hours of ingest within which an event resent with the same
    /// `(event.dataset, event.id)` replaces its earlier copy in another
    /// day's partition too; 0 deduplicates within a partition only.
    pub dedup_window_hours: u32,
}

impl Default for IndexerConfig {
    fn default() -> IndexerConfig {
        IndexerConfig {
            commit_interval: Duration::from_secs(1),
            writer_memory_bytes: 128 << 20,
            writer_threads: 2,
            max_open_writers: 4,
            writer_idle: Duration::from_secs(300),
            retention_days: 30,
            merge_fan_in: 16,
            max_retries: 5,
            retry_backoff: Duration::from_millis(500),
            dedup_window_hours: 24,
        }
    }
}

/// What the rest of the daemon can see of the indexer: whether it has failed
/// for good, and the WAL position its last checkpoint covers.
#[derive(Debug, Default)]
pub struct IndexHealth {
    failure: Mutex<Option<String>>,
    checkpoint: std::sync::atomic::AtomicU64,
}

impl IndexHealth {
    /// Why the indexer stopped indexing, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The WAL position the last checkpoint covers.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn fail(&self, reason: String) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(reason);
        }
    }
}

/// A running indexer thread.
#[derive(Debug)]
pub struct Indexer {
    thread: JoinHandle<()>,
    health: Arc<IndexHealth>,
}

impl Indexer {
    /// Starts the indexer on `rx`. After each checkpoint it advances
    /// `consumer`, its position in the WAL, to the position the checkpoint
    /// covers, so the log may delete what is below.
    pub fn spawn(
        store: Arc<Store>,
        config: IndexerConfig,
        rx: Receiver<Durable>,
        metrics: IndexMetrics,
        consumer: Consumer,
    ) -> Result<Indexer, IndexError> {
        let checkpoint = store.checkpoint()?;
        let health = Arc::new(IndexHealth::default());
        health.checkpoint.store(checkpoint, std::sync::atomic::Ordering::SeqCst);
        let dedup = DedupWindow::new(config.dedup_window_hours);
        let newest_ingested = store.newest_ingested();
        let worker = Worker {
            dedup,
            newest_ingested,
            checkpoint,
            store,
            config,
            metrics,
            consumer,
            health: health.clone(),
            writers: HashMap::new(),
            uncommitted: Vec::new(),
            oldest_pending: None,
            last_retention: None,
        };
        let guard = PanicGuard(health.clone());
        let thread = std::thread::Builder::new()
            .name("tripline-indexer".into())
            .spawn(move || {
                let _guard = guard;
                worker.run(rx)
            })
            .map_err(|e| IndexError::io("tripline-indexer thread", e))?;
        Ok(Indexer { thread, health })
    }

    /// The indexer's health, shared with the API.
    pub fn health(&self) -> Arc<IndexHealth> {
        self.health.clone()
    }

    /// Waits for the thread to finish (after its channel closes and the
    /// final commit is done).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("indexer thread panicked");
        }
    }
}

/// Marks the indexer failed if its thread unwinds.
struct PanicGuard(Arc<IndexHealth>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail("the indexer thread panicked".into());
        }
    }
}

struct OpenWriter {
    partition: Arc<Partition>,
    writer: IndexWriter<TantivyDocument>,
    dirty: bool,
    last_used: Instant,
}

struct Worker {
    store: Arc<Store>,
    config: IndexerConfig,
    metrics: IndexMetrics,
    consumer: Consumer,
    health: Arc<IndexHealth>,
    writers: HashMap<Date, OpenWriter>,
    checkpoint: u64,
    /// Batches added since the last checkpoint, in LSN order, with the
    /// deletes planned for them: what a retry adds again. Kept as their
    /// payload only (a retry parses it again), a fraction of the events'
    /// memory.
    uncommitted: Vec<Pending>,
    dedup: DedupWindow,
    /// The latest ingest time of any event indexed: what retention checks
    /// the wall clock against.
    newest_ingested: Option<OffsetDateTime>,
    oldest_pending: Option<Instant>,
    last_retention: Option<Instant>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Durable>) {
        self.apply_retention();
        self.refresh_gauges();
        self.dedup.rebuild(&self.store, OffsetDateTime::now_utc());
        tracing::info!(keys = self.dedup.len(), "dedup window rebuilt");
        let mut next_commit = Instant::now() + self.config.commit_interval;
        loop {
            if self.health.failure().is_some() {
                // Failed for good: what arrives is in the WAL, past the
                // checkpoint, and will be replayed at the next start.
                match rx.recv() {
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
            let wait = next_commit.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(batch) => {
                    let deletes = self.plan(&batch);
                    let added = self.add(&batch, &deletes);
                    self.uncommitted.push(Pending {
                        start: batch.start,
                        end: batch.end,
                        payload: batch.batch.into_payload(),
                        deletes,
                    });
                    self.oldest_pending.get_or_insert_with(Instant::now);
                    if let Err(e) = added {
                        self.metrics.index_failures.inc();
                        self.retry(e);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_commit {
                if let Err(e) = self.commit().and_then(|()| self.close_idle()) {
                    self.metrics.commit_failures.inc();
                    self.retry(e);
                }
                if self
                    .last_retention
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(3600))
                {
                    self.apply_retention();
                }
                self.dedup.expire(OffsetDateTime::now_utc());
                next_commit = Instant::now() + self.config.commit_interval;
            }
        }
        if self.health.failure().is_none() {
            if let Err(e) = self.commit() {
                self.metrics.commit_failures.inc();
                tracing::error!(error = %e, "final index commit failed, the wal keeps the batches for the next start");
            }
        }
        for (_, w) in self.writers.drain() {
            if let Err(e) = w.writer.wait_merging_threads() {
                tracing::warn!(error = %e, "merge did not finish at shutdown");
            }
        }
        tracing::debug!("indexer stopped");
    }

    /// Drops every writer uncommitted and adds the batches since the last
    /// checkpoint again, with a doubling backoff, until that and a commit
    /// work or the retries run out (then the indexer fails for good).
    fn retry(&mut self, mut error: IndexError) {
        let mut backoff = self.config.retry_backoff;
        for attempt in 1..=self.config.max_retries {
            tracing::warn!(error = %error, attempt, backoff_ms = backoff.as_millis() as u64, "indexing failed, retrying the batches since the checkpoint");
            self.metrics.retries.inc();
            self.drop_writers();
            std::thread::sleep(backoff);
            backoff = backoff.saturating_mul(2);
            let pending = std::mem::take(&mut self.uncommitted);
            let readded = pending.iter().try_for_each(|p| {
                let batch = Durable {
                    start: p.start,
                    end: p.end,
                    batch: Batch::decode(p.payload.clone(), std::path::Path::new("retry"), 0),
                };
                self.add(&batch, &p.deletes)
            });
            self.uncommitted = pending;
            match readded.and_then(|()| self.commit()) {
                Ok(()) => {
                    tracing::info!(attempt, "indexing recovered");
                    return;
                }
                Err(e) => error = e,
            }
        }
        self.drop_writers();
        tracing::error!(error = %error, checkpoint = self.checkpoint, "indexing failed for good: the checkpoint stays, the wal keeps every batch after it; fix the cause and restart");
        self.health.fail(format!("indexing failed: {error}"));
    }

    /// Drops every writer without committing: tantivy discards what it held.
    fn drop_writers(&mut self) {
        self.writers.clear();
    }

    /// Plans the deletes of earlier copies in other days' partitions that
    /// `batch` needs, and records its keys in the dedup window. Done once per
    /// batch: a retry reuses the plan, since the window has moved on.
    fn plan(&mut self, batch: &Durable) -> Deletes {
        let mut deletes = Deletes::new();
        let now = OffsetDateTime::now_utc();
        for event in &batch.batch.events {
            if event.id_assigned() {
                continue;
            }
            let Some(id) = event.get_str(fields::ID) else {
                continue;
            };
            let key = dedup_key(event.get_str(fields::DATASET).unwrap_or_default(), id);
            let hash = DedupWindow::hash(&key);
            let day = utc_day(event_time(event).unwrap_or(now));
            if let Some(before) = self.dedup.get(hash).filter(|d| *d != day) {
                deletes.entry(before).or_default().push(key);
            }
            let ingested = event
                .get(fields::INGESTED)
                .and_then(schemas::time::parse_value)
                .unwrap_or(now);
            self.dedup.insert(hash, day, ingested);
        }
        deletes
    }

    fn add(&mut self, batch: &Durable, deletes: &Deletes) -> Result<(), IndexError> {
        let now = OffsetDateTime::now_utc();
        // Every event of a batch has the batch's ingest time.
        if let Some(t) = batch
            .batch
            .events
            .first()
            .and_then(|e| e.get(fields::INGESTED))
            .and_then(schemas::time::parse_value)
        {
            self.newest_ingested = Some(self.newest_ingested.map_or(t, |n| n.max(t)));
        }
        let mut by_day: HashMap<Date, Vec<usize>> = HashMap::new();
        for (i, event) in batch.batch.events.iter().enumerate() {
            let day = utc_day(event_time(event).unwrap_or(now));
            by_day.entry(day).or_default().push(i);
        }
        for day in deletes.keys() {
            by_day.entry(*day).or_default();
        }
        // Days with an open writer first: once a writer must be opened, no
        // open writer waits for more of this batch, so any may be closed.
        let mut days: Vec<(Date, Vec<usize>)> = by_day.into_iter().collect();
        days.sort_by_key(|(day, _)| (!self.writers.contains_key(day), *day));
        for (day, events) in days {
            let partition = self.store.get_or_create(day)?;
            if batch.start.0 < partition.committed_lsn() {
                self.metrics.events_skipped.inc_by(events.len() as u64);
                continue;
            }
            let count = events.len() as u64;
            let w = self.writer(day, partition, batch.end.0)?;
            let schema = w.partition.schema.clone();
            if let (Some(field), Some(keys)) = (schema.dedup_key, deletes.get(&day)) {
                // Earlier copies of events this batch puts in other days.
                for key in keys {
                    w.writer.delete_term(Term::from_field_text(field, key));
                }
                w.dirty = true;
            }
            for i in events {
                let event = &batch.batch.events[i];
                if !event.id_assigned() {
                    if let Some(id) = event.get_str(fields::ID) {
                        // Upsert: a resent event replaces the earlier copy
                        // of the same dataset.
                        let term = match schema.dedup_key {
                            Some(field) => {
                                let dataset = event.get_str(fields::DATASET).unwrap_or_default();
                                Term::from_field_text(field, &dedup_key(dataset, id))
                            }
                            None => Term::from_field_text(schema.event_id, &id.to_lowercase()),
                        };
                        w.writer.delete_term(term);
                    }
                }
                w.writer
                    .add_document(to_document(&schema, event, batch.batch.source(i)))
                    .map_err(|e| IndexError::tantivy(day, e))?;
            }
            w.dirty = true;
            w.last_used = Instant::now();
            self.metrics.events_indexed.inc_by(count);
        }
        Ok(())
    }

    /// The writer of `day`, opened if needed; to make room, least recently
    /// used writers are committed at `batch_end` (the end of the batch being
    /// added, true of every open writer then: see the module docs) and closed.
    fn writer(&mut self, day: Date, partition: Arc<Partition>, batch_end: u64) -> Result<&mut OpenWriter, IndexError> {
        if !self.writers.contains_key(&day) {
            while self.writers.len() >= self.config.max_open_writers.max(1) {
                let Some(lru) = self.writers.iter().min_by_key(|(_, w)| w.last_used).map(|(d, _)| *d) else {
                    break;
                };
                self.close_writer(lru, batch_end)?;
            }
            let budget = self
                .config
                .writer_memory_bytes
                .max((16 << 20) * self.config.writer_threads.max(1));
            let writer = partition
                .index
                .writer_with_num_threads(self.config.writer_threads.max(1), budget)
                .map_err(|e| IndexError::tantivy(day, e))?;
            let mut merge = LogMergePolicy::default();
            merge.set_min_num_segments(self.config.merge_fan_in.max(2));
            writer.set_merge_policy(Box::new(merge));
            self.writers.insert(
                day,
                OpenWriter {
                    partition,
                    writer,
                    dirty: false,
                    last_used: Instant::now(),
                },
            );
        }
        Ok(self.writers.get_mut(&day).expect("inserted above when absent"))
    }

    /// Commits one writer's documents (if any) with payload `lsn`; true if
    /// it did. The caller publishes the partition ([`Store::publish`]).
    fn commit_writer(w: &mut OpenWriter, lsn: u64) -> Result<bool, IndexError> {
        if !w.dirty {
            return Ok(false);
        }
        let day = w.partition.day;
        let mut prepared = w.writer.prepare_commit().map_err(|e| IndexError::tantivy(day, e))?;
        prepared.set_payload(&commit_payload(lsn));
        prepared.commit().map_err(|e| IndexError::tantivy(day, e))?;
        w.partition.set_committed_lsn(lsn);
        w.dirty = false;
        Ok(true)
    }

    /// Commits a writer at `lsn` and closes it. On a failed commit the
    /// writer is dropped with what it held, and the error makes the caller
    /// add the batches since the checkpoint again.
    fn close_writer(&mut self, day: Date, lsn: u64) -> Result<(), IndexError> {
        let Some(mut w) = self.writers.remove(&day) else {
            return Ok(());
        };
        if Self::commit_writer(&mut w, lsn)? {
            self.store.publish([&w.partition])?;
        }
        if let Err(e) = w.writer.wait_merging_threads() {
            tracing::warn!(partition = %day, error = %e, "merge did not finish while closing a writer");
        }
        Ok(())
    }

    /// The end of the last batch added, if any was since the checkpoint.
    fn pending_end(&self) -> Option<u64> {
        self.uncommitted.last().map(|p| p.end.0)
    }

    fn commit(&mut self) -> Result<(), IndexError> {
        let Some(lsn) = self.pending_end() else {
            return Ok(());
        };
        if lsn <= self.checkpoint {
            self.uncommitted.clear();
            return Ok(());
        }
        let began = Instant::now();
        let mut committed = Vec::new();
        let mut failed = None;
        for w in self.writers.values_mut() {
            match Self::commit_writer(w, lsn) {
                Ok(true) => committed.push(w.partition.clone()),
                Ok(false) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // What did commit becomes visible at once, even if another writer
        // failed: a search sees this round in every partition or in none.
        self.store.publish(&committed)?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.store.write_checkpoint(lsn)?;
        self.checkpoint = lsn;
        self.uncommitted.clear();
        self.health.checkpoint.store(lsn, std::sync::atomic::Ordering::SeqCst);
        self.metrics.commit_seconds.observe(began.elapsed().as_secs_f64());
        if let Some(t) = self.oldest_pending.take() {
            self.metrics
                .ack_to_searchable_seconds
                .observe(t.elapsed().as_secs_f64());
        }
        self.consumer.advance(Lsn(lsn));
        self.refresh_gauges();
        Ok(())
    }

    /// Closes writers untouched for `writer_idle`, committed at the end of
    /// the last batch added (no batch is half added between batches).
    fn close_idle(&mut self) -> Result<(), IndexError> {
        let idle: Vec<Date> = self
            .writers
            .iter()
            .filter(|(_, w)| w.last_used.elapsed() > self.config.writer_idle)
            .map(|(d, _)| *d)
            .collect();
        let lsn = self.pending_end().unwrap_or(self.checkpoint);
        for day in idle {
            self.close_writer(day, lsn)?;
        }
        Ok(())
    }

    fn apply_retention(&mut self) {
        self.last_retention = Some(Instant::now());
        if self.config.retention_days == 0 {
            return;
        }
        let today = OffsetDateTime::now_utc().date();
        let Some(cutoff) = today.checked_sub(time::Duration::days(i64::from(self.config.retention_days))) else {
            return;
        };
        // A wall clock that jumped forward (NTP, a restored VM) would expire
        // every partition at once. If nothing was ingested since the cutoff,
        // deleting would take everything: wait for the clock to be confirmed
        // by new events instead (L12).
        if let Some(newest) = self.newest_ingested {
            if newest.date() < cutoff {
                tracing::error!(
                    newest_ingested = %newest,
                    cutoff = %cutoff,
                    "retention skipped: nothing was ingested since the retention cutoff, so it would delete every partition; check the clock"
                );
                self.metrics.retention_skipped.inc();
                return;
            }
        }
        for p in self.store.all() {
            if p.day >= cutoff {
                continue;
            }
            if let Some(w) = self.writers.remove(&p.day) {
                drop(w.writer);
            }
            match self.store.remove(p.day) {
                Ok(()) => {
                    tracing::info!(partition = %p.day, retention_days = self.config.retention_days, "deleted expired partition");
                    self.metrics.partitions_expired.inc();
                }
                Err(e) => {
                    tracing::warn!(partition = %p.day, error = %e, "cannot delete expired partition")
                }
            }
        }
        self.refresh_gauges();
    }

    fn refresh_gauges(&self) {
        let all = self.store.all();
        self.metrics.partitions.set(all.len() as i64);
        let docs: u64 = all.iter().map(|p| p.searcher().num_docs()).sum();
        self.metrics.docs.set(i64::try_from(docs).unwrap_or(i64::MAX));
    }
}
