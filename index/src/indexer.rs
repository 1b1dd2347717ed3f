//! The indexer thread: durable batches in, committed partitions out.
//!
//! It owns one tantivy writer per partition it is writing (at most
//! `max_open_writers`, least recently used closed first). Every
//! `commit_interval` it commits each writer that has new documents with the
//! payload `{"wal_end": N}` — N being the WAL position after the last batch
//! it took — reloads their readers, writes `checkpoint.json` with N and tells
//! the WAL (through `on_commit`) that everything before N may be deleted.
//!
//! **Invariant:** for every partition, every event of a WAL record that ends
//! at or before the partition's payload is committed in it. So at replay a
//! record is skipped by exactly the partitions that already hold it, and a
//! crash between an fsync and a commit loses nothing and duplicates nothing.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ingest::Durable;
use schemas::fields;
use tantivy::indexer::LogMergePolicy;
use tantivy::{IndexWriter, TantivyDocument, Term};
use time::{Date, OffsetDateTime};

use crate::doc::{event_time, to_document};
use crate::partition::{commit_payload, Partition, Store};
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
        }
    }
}

/// A running indexer thread.
#[derive(Debug)]
pub struct Indexer {
    thread: JoinHandle<()>,
}

impl Indexer {
    /// Starts the indexer on `rx`; `on_commit(n)` is called after each
    /// checkpoint with the WAL position it covers.
    pub fn spawn(
        store: Arc<Store>,
        config: IndexerConfig,
        rx: Receiver<Durable>,
        metrics: IndexMetrics,
        on_commit: Box<dyn Fn(u64) + Send>,
    ) -> Result<Indexer, IndexError> {
        let worker = Worker {
            checkpoint: store.checkpoint()?,
            store,
            config,
            metrics,
            on_commit,
            writers: HashMap::new(),
            pending_end: None,
            oldest_pending: None,
            last_retention: None,
        };
        let thread = std::thread::Builder::new()
            .name("tripline-indexer".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| IndexError::io("tripline-indexer thread", e))?;
        Ok(Indexer { thread })
    }

    /// Waits for the thread to finish (after its channel closes and the
    /// final commit is done).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("indexer thread panicked");
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
    on_commit: Box<dyn Fn(u64) + Send>,
    writers: HashMap<Date, OpenWriter>,
    checkpoint: u64,
    pending_end: Option<u64>,
    oldest_pending: Option<Instant>,
    last_retention: Option<Instant>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Durable>) {
        self.apply_retention();
        self.refresh_gauges();
        let mut next_commit = Instant::now() + self.config.commit_interval;
        loop {
            let wait = next_commit.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(batch) => {
                    if let Err(e) = self.add(batch) {
                        // The batch stays in the WAL: the checkpoint cannot
                        // pass it until a restart replays it.
                        tracing::error!(error = %e, "cannot index a durable batch, it stays in the wal");
                        self.metrics.commit_failures.inc();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_commit {
                self.commit();
                self.close_idle();
                if self
                    .last_retention
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(3600))
                {
                    self.apply_retention();
                }
                next_commit = Instant::now() + self.config.commit_interval;
            }
        }
        self.commit();
        for (_, w) in self.writers.drain() {
            if let Err(e) = w.writer.wait_merging_threads() {
                tracing::warn!(error = %e, "merge did not finish at shutdown");
            }
        }
        tracing::debug!("indexer stopped");
    }

    fn add(&mut self, batch: Durable) -> Result<(), IndexError> {
        let now = OffsetDateTime::now_utc();
        let mut by_day: HashMap<Date, Vec<usize>> = HashMap::new();
        for (i, event) in batch.batch.events.iter().enumerate() {
            let day = event_time(event).unwrap_or(now).to_offset(time::UtcOffset::UTC).date();
            by_day.entry(day).or_default().push(i);
        }
        for (day, events) in by_day {
            let partition = self.store.get_or_create(day)?;
            if batch.start < partition.committed_lsn() {
                self.metrics.events_skipped.inc_by(events.len() as u64);
                continue;
            }
            let count = events.len() as u64;
            let w = self.writer(day, partition)?;
            let schema = w.partition.schema.clone();
            for i in events {
                let event = &batch.batch.events[i];
                if !event.id_assigned() {
                    if let Some(id) = event.get_str(fields::ID) {
                        // Upsert: a resent event replaces the earlier copy.
                        w.writer
                            .delete_term(Term::from_field_text(schema.event_id, &id.to_lowercase()));
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
        self.pending_end = Some(batch.end);
        self.oldest_pending.get_or_insert_with(Instant::now);
        Ok(())
    }

    fn writer(&mut self, day: Date, partition: Arc<Partition>) -> Result<&mut OpenWriter, IndexError> {
        if !self.writers.contains_key(&day) {
            while self.writers.len() >= self.config.max_open_writers.max(1) {
                let lru = self
                    .writers
                    .iter()
                    .min_by_key(|(_, w)| w.last_used)
                    .map(|(d, _)| *d)
                    .expect("writers is not empty inside this loop");
                self.close_writer(lru);
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

    /// Commits one writer's documents (if any) at the current position.
    fn commit_writer(w: &mut OpenWriter, lsn: u64) -> Result<(), IndexError> {
        if !w.dirty {
            return Ok(());
        }
        let day = w.partition.day;
        let mut prepared = w.writer.prepare_commit().map_err(|e| IndexError::tantivy(day, e))?;
        prepared.set_payload(&commit_payload(lsn));
        prepared.commit().map_err(|e| IndexError::tantivy(day, e))?;
        w.partition.set_committed_lsn(lsn);
        w.partition.reload()?;
        w.dirty = false;
        Ok(())
    }

    fn close_writer(&mut self, day: Date) {
        let Some(mut w) = self.writers.remove(&day) else {
            return;
        };
        if let Some(lsn) = self.pending_end {
            if let Err(e) = Self::commit_writer(&mut w, lsn) {
                // Its documents stay in the WAL (the checkpoint does not move
                // past them while this partition lags).
                tracing::error!(partition = %day, error = %e, "commit before closing a writer failed");
                self.metrics.commit_failures.inc();
            }
        }
        if let Err(e) = w.writer.wait_merging_threads() {
            tracing::warn!(partition = %day, error = %e, "merge did not finish while closing a writer");
        }
    }

    fn commit(&mut self) {
        let Some(lsn) = self.pending_end else {
            return;
        };
        if lsn <= self.checkpoint {
            return;
        }
        let began = Instant::now();
        let mut ok = true;
        for w in self.writers.values_mut() {
            if let Err(e) = Self::commit_writer(w, lsn) {
                tracing::error!(partition = %w.partition.day, error = %e, "index commit failed");
                self.metrics.commit_failures.inc();
                ok = false;
            }
        }
        if !ok {
            return;
        }
        if let Err(e) = self.store.write_checkpoint(lsn) {
            tracing::error!(error = %e, "cannot write the index checkpoint");
            self.metrics.commit_failures.inc();
            return;
        }
        self.checkpoint = lsn;
        self.metrics.commit_seconds.observe(began.elapsed().as_secs_f64());
        if let Some(t) = self.oldest_pending.take() {
            self.metrics
                .ack_to_searchable_seconds
                .observe(t.elapsed().as_secs_f64());
        }
        (self.on_commit)(lsn);
        self.refresh_gauges();
    }

    fn close_idle(&mut self) {
        let idle: Vec<Date> = self
            .writers
            .iter()
            .filter(|(_, w)| w.last_used.elapsed() > self.config.writer_idle)
            .map(|(d, _)| *d)
            .collect();
        for day in idle {
            self.close_writer(day);
        }
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
