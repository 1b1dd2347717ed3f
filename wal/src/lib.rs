//! The write-ahead log, the spine of Tripline: nothing is acknowledged
//! before its record is fsynced, and every later stage reads from it.
//!
//! # Format
//! A directory of segment files named by the log sequence number ([`Lsn`])
//! of their first byte, `{lsn:020}.wal`. An LSN is a byte position in the
//! whole log: a segment starting at `s` holds bytes `s..s+len`. A record
//! ([`record`]) is `len | crc32c | payload`; a payload is one ingest
//! [`Batch`]: a line per event, a marker byte (`a` Tripline assigned the
//! `event.id`, `c` the client chose it, which the index deduplicates on)
//! and the event as JSON.
//!
//! # Group commit
//! One writer thread owns the files. Requests queue on a bounded channel;
//! the thread takes every request waiting (up to `max_group_bytes`), writes
//! them with one `write`, calls `fdatasync` once, then answers each request
//! with the LSN after its record and forwards the batch downstream, in LSN
//! order. A full queue is refused at once ([`WalError::Overloaded`]).
//!
//! # Failure
//! If a write or an fsync fails the log is *failed*: every request from then
//! on is refused with [`WalError::Failed`] until restart. An fsync is never
//! retried: after a failed fsync the kernel may have dropped the dirty
//! pages, so a retry that succeeds proves nothing.
//!
//! # Recovery
//! [`Wal::open`] reads every segment ([`recovery`]): a torn tail of the last
//! segment (a crash during a write) is cut off; damage anywhere else is
//! corruption, so the segment is copied to `corrupt/` first, the damaged
//! bytes are skipped and the records after them kept, and it is counted and
//! reported ([`Wal::damage`]). Records at or after the replay position go
//! downstream; new records start after the last intact byte.
//!
//! # Consumers
//! Every reader of the log (the indexer today; detection and the webhook
//! outbox next) registers as a [`Consumer`] with the position it has made
//! durable on its own (the index in `checkpoint.json`). A segment is deleted
//! only once every registered consumer is past all of it.
//!
//! ```
//! use wal::{Batch, Consumer, Lsn, Wal, WalConfig, WalMetrics};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (tx, rx) = std::sync::mpsc::sync_channel(16);
//! let index = Consumer::new("index", Lsn(0)); // its position, from its own checkpoint
//! let (log, recovered) = Wal::open(WalConfig::new(dir.path()), vec![index.clone()], Lsn(0), WalMetrics::default(), tx).unwrap();
//! assert_eq!(recovered.replayed, 0);
//! let event = schemas::Event::from_json(serde_json::json!({"message": "hi"})).unwrap();
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let end = rt.block_on(log.append(Batch::encode(vec![event]))).unwrap();
//! let durable = rx.recv().unwrap();
//! assert_eq!(durable.end, end);
//! index.advance(end); // everything before `end` is safe elsewhere now
//! log.close();
//! ```

mod batch;
mod metrics;
mod reader;
pub mod record;
pub mod recovery;
mod segment;
mod writer;

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use schemas::ErrorCode;
use tokio::sync::oneshot;

pub use batch::{Batch, BatchBuilder, Durable, OverBudget};
pub use metrics::WalMetrics;
pub use reader::{Raw, Read, Reader};
pub use record::MAX_RECORD_LEN;
pub use recovery::Recovered;
pub use segment::list_segments;

use segment::Segment;
use writer::{Msg, Request, Writer};

/// A position in the log: the byte offset of a record's start, or of the
/// byte after its end. Every consumer's progress is one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where and how the log is kept.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// The log's directory.
    pub dir: PathBuf,
    /// A new segment is started once the active one reaches this size.
    pub segment_bytes: u64,
    /// Requests that may wait for the writer before new ones are refused.
    pub queue_depth: usize,
    /// Most payload bytes made durable by one fsync.
    pub max_group_bytes: usize,
}

impl WalConfig {
    /// Defaults for a log in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            queue_depth: 1024,
            max_group_bytes: 32 << 20,
        }
    }
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The request queue is full: retry later.
    #[error("the write-ahead log is busy: retry later")]
    Overloaded,
    /// A write or an fsync failed: nothing is acknowledged until restart.
    #[error("write-ahead log unavailable: {reason}")]
    Failed { reason: String },
    /// The log is shutting down.
    #[error("write-ahead log is closed")]
    Closed,
    /// A batch is larger than a record may be.
    #[error("a batch of {len} bytes is over the record limit of {limit}")]
    RecordTooLarge { len: usize, limit: usize },
    /// Reading or writing a file of the log failed.
    #[error("write-ahead log file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl WalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> WalError {
        WalError::Io {
            path: path.into(),
            source,
        }
    }

    /// The kind of error, for the API.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            WalError::Overloaded => ErrorCode::TooManyRequests,
            WalError::Failed { .. } | WalError::Closed => ErrorCode::Unavailable,
            WalError::RecordTooLarge { .. } => ErrorCode::PayloadTooLarge,
            WalError::Io { .. } => ErrorCode::Internal,
        }
    }
}

/// State shared by the handle, the consumers and the writer thread.
pub(crate) struct Shared {
    failure: Mutex<Option<String>>,
    /// LSN after the last fsynced record.
    end: AtomicU64,
    consumers: Mutex<Vec<(String, Arc<AtomicU64>)>>,
    damage: Mutex<Option<String>>,
    /// Signalled when `end` moves or the log closes, for pull readers.
    moved: Condvar,
    closed: Mutex<bool>,
}

impl Shared {
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn fail(&self, reason: String) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(reason);
        }
    }

    pub(crate) fn set_end(&self, end: Lsn) {
        let _guard = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        self.end.store(end.0, Ordering::SeqCst);
        self.moved.notify_all();
    }

    pub(crate) fn end(&self) -> Lsn {
        Lsn(self.end.load(Ordering::SeqCst))
    }

    pub(crate) fn set_closed(&self) {
        *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.moved.notify_all();
    }

    pub(crate) fn is_closed(&self) -> bool {
        *self.closed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits up to `timeout` for the durable end to pass `lsn`; whether it has.
    pub(crate) fn wait_past(&self, lsn: Lsn, timeout: std::time::Duration) -> bool {
        let guard = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        let (_guard, _) = self
            .moved
            .wait_timeout_while(guard, timeout, |closed| !*closed && self.end() <= lsn)
            .unwrap_or_else(|p| p.into_inner());
        self.end() > lsn
    }

    /// The lowest position over all consumers; `None` without consumers
    /// (then nothing may be deleted).
    pub(crate) fn released(&self) -> Option<Lsn> {
        let consumers = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        consumers.iter().map(|(_, p)| Lsn(p.load(Ordering::SeqCst))).min()
    }
}

/// A reader of the log with a durable position of its own.
#[derive(Debug, Clone)]
pub struct Consumer {
    name: String,
    position: Arc<AtomicU64>,
}

impl Consumer {
    /// A consumer that has made everything before `position` durable on its
    /// own (read back from its checkpoint); hand it to [`Wal::open`].
    pub fn new(name: &str, position: Lsn) -> Consumer {
        Consumer {
            name: name.to_string(),
            position: Arc::new(AtomicU64::new(position.0)),
        }
    }

    /// Everything before `lsn` is durable elsewhere for this consumer: the
    /// log may delete it once every other consumer agrees.
    pub fn advance(&self, lsn: Lsn) {
        self.position.fetch_max(lsn.0, Ordering::SeqCst);
    }

    /// The position it has made durable.
    pub fn position(&self) -> Lsn {
        Lsn(self.position.load(Ordering::SeqCst))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Handle to the log; appends from any task.
pub struct Wal {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    dir: PathBuf,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("failure", &self.shared.failure()).finish()
    }
}

impl Wal {
    /// Recovers the log in `config.dir`, sends every intact record whose
    /// start is at or after the position of the first of `consumers` (the
    /// one `downstream` feeds; the others read with [`Wal::reader`]) to
    /// `downstream`, then starts the writer. Every consumer's position
    /// holds back deletion. New records get LSNs at or
    /// above `lsn_floor` (the highest LSN any consumer has seen), so a
    /// record never reuses a position a consumer already counts.
    pub fn open(
        config: WalConfig,
        consumers: Vec<Consumer>,
        lsn_floor: Lsn,
        metrics: WalMetrics,
        downstream: SyncSender<Durable>,
    ) -> Result<(Wal, Recovered), WalError> {
        // The channel feeds the first consumer; the others read for themselves.
        let replay_from = consumers.first().map(Consumer::position).unwrap_or_default();
        let highest = consumers.iter().map(Consumer::position).max().unwrap_or_default();
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| WalError::io(&dir, e))?;
        let (mut closed, mut report) = recovery::recover(&dir, replay_from, &metrics, &downstream)?;
        let next_lsn = report.next_lsn.max(lsn_floor).max(highest);
        report.next_lsn = next_lsn;
        // An empty last segment at exactly next_lsn is reused as the active one.
        if closed.back().is_some_and(|(s, _)| *s == next_lsn) {
            closed.pop_back();
        }
        let active = Segment::create(&dir, next_lsn)?;
        metrics.segments.set(closed.len() as i64 + 1);
        let damage = (report.damaged_ranges > 0).then(|| {
            format!(
                "{} damaged range(s) skipped at recovery, {} bytes; segments copied to {}",
                report.damaged_ranges,
                report.bytes_dropped,
                dir.join(recovery::CORRUPT_DIR).display()
            )
        });
        let shared = Arc::new(Shared {
            failure: Mutex::new(None),
            end: AtomicU64::new(next_lsn.0),
            consumers: Mutex::new(consumers.into_iter().map(|c| (c.name, c.position)).collect()),
            damage: Mutex::new(damage),
            moved: Condvar::new(),
            closed: Mutex::new(false),
        });
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_depth.max(1));
        let writer = Writer {
            config,
            active,
            closed,
            shared: shared.clone(),
            metrics,
            downstream,
            buf: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("tripline-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| WalError::io(&dir, e))?;
        Ok((
            Wal {
                tx,
                shared,
                dir,
                thread: Mutex::new(Some(thread)),
            },
            report,
        ))
    }

    /// Registers a consumer that has made everything before `position`
    /// durable on its own. Register every consumer before relying on
    /// deletion: segments go only when all registered ones are past them.
    pub fn register(&self, name: &str, position: Lsn) -> Consumer {
        let consumer = Consumer::new(name, position);
        self.shared
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((consumer.name.clone(), consumer.position.clone()));
        consumer
    }

    /// Appends one batch; resolves once it is fsynced, to the LSN after it.
    pub async fn append(&self, batch: Batch) -> Result<Lsn, WalError> {
        self.submit(batch)?.await.map_err(|_| WalError::Closed)?
    }

    /// [`Wal::append`] for a thread outside the async runtime (a later
    /// stage writing back into the log, such as detection's alerts): waits
    /// for room in the queue instead of refusing, then for the fsync.
    pub fn append_blocking(&self, batch: Batch) -> Result<Lsn, WalError> {
        if let Some(reason) = self.shared.failure() {
            return Err(WalError::Failed { reason });
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Append(Request { batch, reply }))
            .map_err(|_| WalError::Closed)?;
        answer.blocking_recv().map_err(|_| WalError::Closed)?
    }

    fn submit(&self, batch: Batch) -> Result<oneshot::Receiver<Result<Lsn, WalError>>, WalError> {
        if let Some(reason) = self.shared.failure() {
            return Err(WalError::Failed { reason });
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Msg::Append(Request { batch, reply }))
            .map_err(|e| match e {
                TrySendError::Full(_) => WalError::Overloaded,
                TrySendError::Disconnected(_) => WalError::Closed,
            })?;
        Ok(answer)
    }

    /// A reader from `consumer`'s position, for a consumer that reads the
    /// log itself rather than from the writer's channel. It sees records
    /// once they are fsynced.
    pub fn reader(&self, consumer: &Consumer) -> Reader {
        Reader::new(self.dir.clone(), self.shared.clone(), consumer)
    }

    /// The LSN after the last durable record.
    pub fn end(&self) -> Lsn {
        self.shared.end()
    }

    /// Bytes of log the slowest consumer has not passed yet.
    pub fn unreleased_bytes(&self) -> u64 {
        let released = self.shared.released().unwrap_or_default();
        self.end().0.saturating_sub(released.0)
    }

    /// The reason the log refuses writes, if it does.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    /// What recovery found damaged inside the log, if anything.
    pub fn damage(&self) -> Option<String> {
        self.shared.damage.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Finishes queued appends, stops the writer and closes `downstream`.
    pub fn close(&self) {
        // A blocking send: the queue drains as the writer works.
        let _ = self.tx.send(Msg::Close);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!("wal writer thread panicked");
            }
        }
        self.shared.set_closed();
    }
}

#[cfg(test)]
mod tests;
