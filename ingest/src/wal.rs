//! The write-ahead log: nothing is acknowledged before its record is fsynced.
//!
//! # Format
//! The log is a directory of segment files named by the log sequence number
//! (LSN) of their first byte, `{lsn:020}.wal`. An LSN is a byte position in
//! the whole log: a segment starting at LSN `s` holds bytes `s..s+len`.
//! Each record is `len: u32 LE | crc: u32 LE | payload`, where `crc` is the
//! CRC32C of the length bytes followed by the payload. A payload is one
//! ingest batch of normalized events, one a line: a marker byte (`a` when
//! Tripline assigned the `event.id`, `c` when the client chose it, which
//! the index deduplicates on) and the event as JSON.
//!
//! # Group commit
//! One writer thread owns the files. Requests queue on a bounded channel; the
//! thread takes every request waiting (up to `max_group_bytes`), writes them
//! with one `write`, calls `fdatasync` once, then answers each request with
//! the LSN after its record and forwards the batch downstream, in LSN order.
//! A full queue is refused at once ([`IngestError::Overloaded`]).
//!
//! # Failure
//! If a write or an fsync fails the log is *failed*: every request from then
//! on is refused with [`IngestError::WalFailed`] until restart. An fsync is
//! never retried: after a failed fsync the kernel may have dropped the dirty
//! pages, so a retry that succeeds proves nothing.
//!
//! # Recovery
//! [`Wal::open`] reads every segment, keeps the valid prefix of each (a torn
//! or corrupt record and all after it in that segment are cut off, logged and
//! counted), forwards the records at or after the checkpoint downstream, and
//! starts a new segment after the last valid byte.
//!
//! # Truncation
//! [`Wal::release`] tells the log that everything before an LSN is covered by
//! an index commit; whole segments below it are deleted.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use schemas::Event;
use tokio::sync::oneshot;

use crate::{IngestError, IngestMetrics};

/// Bytes before a record's payload.
pub const HEADER_LEN: usize = 8;
/// Largest payload a record may have; a larger length field is corruption.
pub const MAX_RECORD_LEN: usize = 1 << 30;

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

/// A batch that is durable in the log, on its way to the index.
#[derive(Debug, Clone)]
pub struct Durable {
    /// LSN of the record.
    pub start: u64,
    /// LSN just after the record.
    pub end: u64,
    /// The events, with the payload they were logged as.
    pub batch: Batch,
}

/// Normalized events and their record payload. Each event is serialized
/// once: the payload line is also what the index stores as its `_source`.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The events.
    pub events: Vec<Event>,
    payload: Vec<u8>,
    spans: Vec<std::ops::Range<usize>>,
}

/// The payload would pass the builder's byte limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget;

/// Builds a [`Batch`] one event at a time, refusing to grow the payload
/// past a byte limit.
#[derive(Debug)]
pub struct BatchBuilder {
    batch: Batch,
    max_bytes: usize,
}

impl BatchBuilder {
    /// A builder whose payload starts with `capacity` bytes (sized from
    /// something already bounded, such as the body) and may not pass
    /// `max_bytes`.
    pub fn new(capacity: usize, max_bytes: usize) -> BatchBuilder {
        BatchBuilder {
            batch: Batch {
                events: Vec::new(),
                payload: Vec::with_capacity(capacity.min(max_bytes)),
                spans: Vec::new(),
            },
            max_bytes,
        }
    }

    /// Serializes and adds one event: a marker byte (`a` Tripline assigned
    /// the id, `c` the client chose it), its JSON, a newline.
    pub fn push(&mut self, event: Event) -> Result<(), OverBudget> {
        let b = &mut self.batch;
        let line_start = b.payload.len();
        b.payload.push(if event.id_assigned() { b'a' } else { b'c' });
        let start = b.payload.len();
        serde_json::to_writer(&mut b.payload, &event).expect("serializing a JSON map to a Vec cannot fail");
        let end = b.payload.len();
        b.payload.push(b'\n');
        if b.payload.len() > self.max_bytes {
            b.payload.truncate(line_start);
            return Err(OverBudget);
        }
        b.spans.push(start..end);
        b.events.push(event);
        Ok(())
    }

    /// The batch.
    pub fn finish(self) -> Batch {
        self.batch
    }
}

impl Batch {
    /// Serializes `events` into a payload: one line an event, a marker byte
    /// (`a` Tripline assigned the id, `c` the client chose it) then JSON.
    pub fn encode(events: Vec<Event>) -> Batch {
        let mut builder = BatchBuilder::new(0, usize::MAX);
        for e in events {
            builder.push(e).expect("no byte limit, nothing is over it");
        }
        builder.finish()
    }

    /// Reads a payload back; an event that does not parse is logged and skipped.
    pub fn decode(payload: Vec<u8>, origin: &Path, offset: usize) -> Batch {
        let mut events = Vec::new();
        let mut spans = Vec::new();
        let mut pos = 0;
        for (i, line) in payload.split(|&b| b == b'\n').enumerate() {
            let line_start = pos;
            pos += line.len() + 1;
            if line.is_empty() {
                continue;
            }
            let (assigned, skip) = match line[0] {
                b'a' => (true, 1),
                b'c' => (false, 1),
                _ => (false, 0),
            };
            let json = &line[skip..];
            match serde_json::from_slice::<Event>(json) {
                Ok(mut e) => {
                    e.set_id_assigned(assigned);
                    events.push(e);
                    spans.push(line_start + skip..line_start + line.len());
                }
                Err(e) => tracing::error!(
                    segment = %origin.display(),
                    offset,
                    line = i + 1,
                    error = %e,
                    "wal record passed its checksum but an event does not parse, skipping the event"
                ),
            }
        }
        Batch { events, payload, spans }
    }

    /// The JSON of event `i`, as logged.
    pub fn source(&self, i: usize) -> &[u8] {
        self.spans
            .get(i)
            .and_then(|r| self.payload.get(r.clone()))
            .unwrap_or_default()
    }

    /// The record payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True without events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Records forwarded downstream (at or after the checkpoint).
    pub replayed: u64,
    /// Records before the checkpoint, skipped.
    pub skipped: u64,
    /// Segments whose tail was torn or corrupt and was cut off.
    pub corruptions: u64,
    /// Bytes cut off.
    pub bytes_dropped: u64,
    /// LSN the first new record gets.
    pub next_lsn: u64,
}

struct Request {
    batch: Batch,
    reply: oneshot::Sender<Result<u64, IngestError>>,
}

enum Msg {
    Append(Request),
    Close,
}

struct Shared {
    failure: Mutex<Option<String>>,
    released: AtomicU64,
    /// LSN after the last fsynced record.
    end: AtomicU64,
}

impl Shared {
    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn fail(&self, reason: String) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(reason);
        }
    }
}

/// Handle to the log; appends from any task.
pub struct Wal {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("failure", &self.shared.failure()).finish()
    }
}

impl Wal {
    /// Recovers the log in `config.dir`, sends every intact record whose
    /// start is at or after `replay_from` to `downstream`, then starts the
    /// writer. New records get LSNs at or above `lsn_floor` (the highest LSN
    /// the index has seen), so a record never reuses a position the index
    /// already counts as committed.
    pub fn open(
        config: WalConfig,
        replay_from: u64,
        lsn_floor: u64,
        metrics: IngestMetrics,
        downstream: SyncSender<Durable>,
    ) -> Result<(Wal, Recovered), IngestError> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| IngestError::io(&dir, e))?;
        let segments = list_segments(&dir)?;
        let mut report = Recovered::default();
        let mut closed = VecDeque::new();
        let mut next_lsn = 0u64;
        for (start, path) in segments {
            let bytes = fs::read(&path).map_err(|e| IngestError::io(&path, e))?;
            let scan = scan(&bytes);
            if let Some(problem) = &scan.problem {
                let dropped = bytes.len() - scan.valid_len;
                tracing::warn!(
                    segment = %path.display(),
                    offset = scan.valid_len,
                    bytes_dropped = dropped,
                    reason = %problem,
                    "wal segment has a bad tail, keeping its valid prefix"
                );
                report.corruptions += 1;
                report.bytes_dropped += dropped as u64;
                metrics.wal_corruptions.inc();
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| IngestError::io(&path, e))?;
                f.set_len(scan.valid_len as u64)
                    .map_err(|e| IngestError::io(&path, e))?;
                f.sync_all().map_err(|e| IngestError::io(&path, e))?;
            }
            for (offset, payload) in scan.records {
                let rec_start = start + offset as u64;
                let rec_end = rec_start + (HEADER_LEN + payload.len()) as u64;
                if rec_start < replay_from {
                    report.skipped += 1;
                    continue;
                }
                let batch = Batch::decode(payload.to_vec(), &path, offset);
                report.replayed += 1;
                metrics.wal_replayed_records.inc();
                if downstream
                    .send(Durable {
                        start: rec_start,
                        end: rec_end,
                        batch,
                    })
                    .is_err()
                {
                    return Err(IngestError::WalClosed);
                }
            }
            next_lsn = next_lsn.max(start + scan.valid_len as u64);
            closed.push_back((start, path));
        }
        next_lsn = next_lsn.max(lsn_floor).max(replay_from);
        report.next_lsn = next_lsn;
        // An empty last segment at exactly next_lsn is reused as the active one.
        if closed.back().is_some_and(|(s, _)| *s == next_lsn) {
            closed.pop_back();
        }
        let active = Segment::create(&dir, next_lsn)?;
        metrics.wal_segments.set(closed.len() as i64 + 1);
        let shared = Arc::new(Shared {
            failure: Mutex::new(None),
            released: AtomicU64::new(0),
            end: AtomicU64::new(next_lsn),
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
            .map_err(|e| IngestError::io(&dir, e))?;
        Ok((
            Wal {
                tx,
                shared,
                thread: Mutex::new(Some(thread)),
            },
            report,
        ))
    }

    /// Appends one batch; resolves once it is fsynced, to the LSN after it.
    pub async fn append(&self, batch: Batch) -> Result<u64, IngestError> {
        if let Some(reason) = self.shared.failure() {
            return Err(IngestError::WalFailed { reason });
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Msg::Append(Request { batch, reply }))
            .map_err(|e| match e {
                TrySendError::Full(_) => IngestError::Overloaded,
                TrySendError::Disconnected(_) => IngestError::WalClosed,
            })?;
        answer.await.map_err(|_| IngestError::WalClosed)?
    }

    /// Everything before `lsn` is committed to the index: segments wholly
    /// below it may be deleted.
    pub fn release(&self, lsn: u64) {
        self.shared.released.fetch_max(lsn, Ordering::SeqCst);
    }

    /// The LSN after the last durable record.
    pub fn end(&self) -> u64 {
        self.shared.end.load(Ordering::SeqCst)
    }

    /// Bytes of log not yet released by the index: how far indexing lags.
    pub fn unreleased_bytes(&self) -> u64 {
        self.end().saturating_sub(self.shared.released.load(Ordering::SeqCst))
    }

    /// The reason the log refuses writes, if it does.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
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
    }
}

/// Appends a framed record to `out`.
pub fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("payloads are below MAX_RECORD_LEN, checked by the writer");
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The records of a segment's bytes.
#[derive(Debug)]
pub struct Scan<'a> {
    /// `(offset in segment, payload)` of each intact record.
    pub records: Vec<(usize, &'a [u8])>,
    /// Bytes up to the end of the last intact record.
    pub valid_len: usize,
    /// Why reading stopped before the end, if it did.
    pub problem: Option<String>,
}

/// Reads records until the end or the first torn or corrupt one.
pub fn scan(bytes: &[u8]) -> Scan<'_> {
    let mut records = Vec::new();
    let mut pos = 0;
    let problem = loop {
        let rest = &bytes[pos..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < HEADER_LEN {
            break Some(format!("torn header: {} of {HEADER_LEN} bytes", rest.len()));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD_LEN {
            break Some(format!("corrupt length {len}"));
        }
        if rest.len() < HEADER_LEN + len {
            break Some(format!(
                "torn record: {} of {} payload bytes",
                rest.len() - HEADER_LEN,
                len
            ));
        }
        let payload = &rest[HEADER_LEN..HEADER_LEN + len];
        let actual = crc32c::crc32c_append(crc32c::crc32c(&rest[0..4]), payload);
        if actual != crc {
            break Some(format!("checksum mismatch: stored {crc:08x}, computed {actual:08x}"));
        }
        records.push((pos, payload));
        pos += HEADER_LEN + len;
    };
    Scan {
        records,
        valid_len: pos,
        problem,
    }
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}.wal"))
}

/// Segment files in `dir`, by starting LSN.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, IngestError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| IngestError::io(dir, e))? {
        let entry = entry.map_err(|e| IngestError::io(dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(start) = stem.parse::<u64>() {
                out.push((start, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), IngestError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| IngestError::io(dir, e))
}

struct Segment {
    start: u64,
    len: u64,
    path: PathBuf,
    file: File,
}

impl Segment {
    /// Creates (or empties) the segment starting at `start` and makes its
    /// directory entry durable.
    fn create(dir: &Path, start: u64) -> Result<Segment, IngestError> {
        let path = segment_path(dir, start);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| IngestError::io(&path, e))?;
        file.sync_all().map_err(|e| IngestError::io(&path, e))?;
        sync_dir(dir)?;
        Ok(Segment {
            start,
            len: 0,
            path,
            file,
        })
    }
}

struct Writer {
    config: WalConfig,
    active: Segment,
    closed: VecDeque<(u64, PathBuf)>,
    shared: Arc<Shared>,
    metrics: IngestMetrics,
    downstream: SyncSender<Durable>,
    buf: Vec<u8>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut closing = false;
        while !closing {
            let first = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(Msg::Append(r)) => r,
                Ok(Msg::Close) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.collect_garbage();
                    continue;
                }
            };
            let mut group = vec![first];
            let mut bytes = group[0].batch.payload.len();
            while bytes < self.config.max_group_bytes {
                match rx.try_recv() {
                    Ok(Msg::Append(r)) => {
                        bytes += r.batch.payload.len();
                        group.push(r);
                    }
                    Ok(Msg::Close) => {
                        closing = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
            self.collect_garbage();
        }
        tracing::debug!("wal writer stopped");
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        if let Some(reason) = self.shared.failure() {
            for r in group {
                let _ = r.reply.send(Err(IngestError::WalFailed { reason: reason.clone() }));
            }
            return;
        }
        if self.active.len >= self.config.segment_bytes {
            if let Err(e) = self.roll() {
                self.shared.fail(format!("cannot start a new segment: {e}"));
                return self.commit_group(group);
            }
        }
        self.buf.clear();
        let mut spans = Vec::with_capacity(group.len());
        let base = self.active.start + self.active.len;
        let mut accepted = Vec::with_capacity(group.len());
        for r in group {
            if r.batch.payload.len() > MAX_RECORD_LEN {
                let _ = r.reply.send(Err(IngestError::BodyTooLarge { limit: MAX_RECORD_LEN }));
                continue;
            }
            let start = base + self.buf.len() as u64;
            encode_record(&r.batch.payload, &mut self.buf);
            spans.push((start, base + self.buf.len() as u64));
            accepted.push(r);
        }
        if accepted.is_empty() {
            return;
        }
        let written = self.active.file.write_all(&self.buf);
        let began = Instant::now();
        let synced = written.and_then(|()| self.active.file.sync_data());
        if let Err(e) = synced {
            let reason = format!("{}: {e}", self.active.path.display());
            tracing::error!(segment = %self.active.path.display(), error = %e, "wal write or fsync failed, refusing all writes until restart");
            self.shared.fail(reason.clone());
            for r in accepted {
                let _ = r.reply.send(Err(IngestError::WalFailed { reason: reason.clone() }));
            }
            return;
        }
        self.metrics.wal_fsync_seconds.observe(began.elapsed().as_secs_f64());
        self.metrics.wal_batch_requests.observe(accepted.len() as f64);
        self.metrics.wal_bytes.inc_by(self.buf.len() as u64);
        self.active.len += self.buf.len() as u64;
        self.shared
            .end
            .store(self.active.start + self.active.len, Ordering::SeqCst);
        for (r, (start, end)) in accepted.into_iter().zip(spans) {
            let _ = r.reply.send(Ok(end));
            // Blocks while the index is behind: back-pressure reaches the
            // request queue, which then refuses new requests.
            if self
                .downstream
                .send(Durable {
                    start,
                    end,
                    batch: r.batch,
                })
                .is_err()
            {
                tracing::warn!("index stage is gone, durable batches are only in the wal now");
            }
        }
    }

    fn roll(&mut self) -> Result<(), IngestError> {
        let next = self.active.start + self.active.len;
        let segment = Segment::create(&self.config.dir, next)?;
        let old = std::mem::replace(&mut self.active, segment);
        self.closed.push_back((old.start, old.path));
        self.metrics.wal_segments.set(self.closed.len() as i64 + 1);
        Ok(())
    }

    fn collect_garbage(&mut self) {
        let released = self.shared.released.load(Ordering::SeqCst);
        let mut removed = false;
        while let Some((_, path)) = self.closed.front() {
            let next_start = self.closed.get(1).map_or(self.active.start, |(s, _)| *s);
            if next_start > released {
                break;
            }
            if let Err(e) = fs::remove_file(path) {
                tracing::warn!(segment = %path.display(), error = %e, "cannot delete a released wal segment");
                break;
            }
            tracing::debug!(segment = %path.display(), "deleted released wal segment");
            self.closed.pop_front();
            removed = true;
        }
        if removed {
            if let Err(e) = sync_dir(&self.config.dir) {
                tracing::warn!(error = %e, "cannot fsync the wal directory after deleting segments");
            }
            self.metrics.wal_segments.set(self.closed.len() as i64 + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::sync::mpsc::{sync_channel, Receiver};

    fn event(n: usize) -> Event {
        Event::from_json(json!({"n": n, "message": "x".repeat(n % 50)})).unwrap()
    }

    struct Opened {
        wal: Wal,
        rx: Receiver<Durable>,
        recovered: Recovered,
    }

    fn open(dir: &Path, from: u64, segment_bytes: u64) -> Opened {
        let (tx, rx) = sync_channel(100_000);
        let mut config = WalConfig::new(dir);
        config.segment_bytes = segment_bytes;
        let (wal, recovered) = Wal::open(config, from, 0, IngestMetrics::default(), tx).unwrap();
        Opened { wal, rx, recovered }
    }

    fn append(wal: &Wal, n: usize) -> u64 {
        let events = vec![event(n)];
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(wal.append(Batch::encode(events))).unwrap()
    }

    fn drain(rx: &Receiver<Durable>) -> Vec<usize> {
        rx.try_iter()
            .flat_map(|d| d.batch.events)
            .map(|e| e.get("n").and_then(|v| v.as_u64()).unwrap() as usize)
            .collect()
    }

    fn last_segment(dir: &Path) -> PathBuf {
        list_segments(dir).unwrap().last().unwrap().1.clone()
    }

    fn append_raw(path: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_to_the_valid_prefix_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let o = open(dir.path(), 0, 1 << 20);
        for n in 0..3 {
            append(&o.wal, n);
        }
        o.wal.close();
        assert_eq!(drain(&o.rx), vec![0, 1, 2]);
        // A crash in the middle of writing a fourth record.
        let mut rec = Vec::new();
        encode_record(Batch::encode(vec![event(3)]).payload(), &mut rec);
        append_raw(&last_segment(dir.path()), &rec[..rec.len() / 2]);

        let o = open(dir.path(), 0, 1 << 20);
        assert_eq!(o.recovered.corruptions, 1);
        assert_eq!(drain(&o.rx), vec![0, 1, 2]);
        append(&o.wal, 4);
        o.wal.close();
        let o = open(dir.path(), 0, 1 << 20);
        assert_eq!(o.recovered.corruptions, 0);
        assert_eq!(drain(&o.rx), vec![0, 1, 2, 4]);
        o.wal.close();
    }

    #[test]
    fn a_corrupt_record_keeps_the_records_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let o = open(dir.path(), 0, 1 << 20);
        let first_end = append(&o.wal, 0);
        append(&o.wal, 1);
        append(&o.wal, 2);
        o.wal.close();
        let path = last_segment(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let start = list_segments(dir.path()).unwrap().last().unwrap().0;
        bytes[(first_end - start) as usize + HEADER_LEN + 3] ^= 0x55;
        fs::write(&path, &bytes).unwrap();
        let o = open(dir.path(), 0, 1 << 20);
        assert_eq!(o.recovered.corruptions, 1);
        assert_eq!(drain(&o.rx), vec![0]);
        o.wal.close();
    }

    #[test]
    fn replay_starts_at_the_checkpoint_and_new_lsns_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let o = open(dir.path(), 0, 1 << 20);
        append(&o.wal, 0);
        let checkpoint = append(&o.wal, 1);
        append(&o.wal, 2);
        o.wal.close();
        let o = open(dir.path(), checkpoint, 1 << 20);
        assert_eq!(drain(&o.rx), vec![2]);
        assert_eq!(o.recovered.skipped, 2);
        o.wal.close();
        // With every segment gone, new records still start at the floor.
        for (_, p) in list_segments(dir.path()).unwrap() {
            fs::remove_file(p).unwrap();
        }
        let (tx, _rx) = sync_channel(10);
        let (wal, rec) = Wal::open(WalConfig::new(dir.path()), 0, 10_000, IngestMetrics::default(), tx).unwrap();
        assert_eq!(rec.next_lsn, 10_000);
        assert!(append(&wal, 5) > 10_000);
        wal.close();
    }

    #[test]
    fn released_segments_are_deleted_and_the_rest_replays() {
        let dir = tempfile::tempdir().unwrap();
        let o = open(dir.path(), 0, 100);
        let mut ends = Vec::new();
        for n in 0..20 {
            ends.push(append(&o.wal, n));
        }
        let before = list_segments(dir.path()).unwrap().len();
        assert!(before >= 5, "{before} segments");
        o.wal.release(ends[9]);
        append(&o.wal, 20); // the writer collects garbage after each group
        o.wal.close();
        let after = list_segments(dir.path()).unwrap();
        assert!(after.len() < before);
        assert!(
            after[0].0 <= ends[9],
            "a segment holding unreleased records was deleted"
        );
        let o = open(dir.path(), ends[9], 100);
        assert_eq!(drain(&o.rx), (10..=20).collect::<Vec<_>>());
        o.wal.close();
    }

    #[cfg(unix)]
    #[test]
    fn a_failed_write_or_fsync_fails_the_log_until_restart() {
        let dir = tempfile::tempdir().unwrap();
        let o = open(dir.path(), 0, 16);
        let end = append(&o.wal, 100);
        // The next segment lands on a full disk.
        std::os::unix::fs::symlink("/dev/full", segment_path(dir.path(), end)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let try_append = |n| {
            let events = vec![event(n)];
            rt.block_on(o.wal.append(Batch::encode(events)))
        };
        assert!(matches!(try_append(1), Err(IngestError::WalFailed { .. })));
        assert!(o.wal.failure().is_some());
        // Never retried: later appends fail too, even if the disk came back.
        fs::remove_file(segment_path(dir.path(), end)).unwrap();
        assert!(matches!(try_append(2), Err(IngestError::WalFailed { .. })));
        o.wal.close();
        assert_eq!(drain(&o.rx), vec![100]);
        let o = open(dir.path(), 0, 16);
        assert_eq!(drain(&o.rx), vec![100]);
        append(&o.wal, 3);
        o.wal.close();
    }

    #[test]
    fn the_assigned_id_marker_survives_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let o = open(dir.path(), 0, 1 << 20);
        let mut a = event(1);
        a.set_id_assigned(true);
        let b = event(2);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(o.wal.append(Batch::encode(vec![a, b]))).unwrap();
        o.wal.close();
        let o = open(dir.path(), 0, 1 << 20);
        let replayed: Vec<bool> =
            o.rx.try_iter()
                .flat_map(|d| d.batch.events)
                .map(|e| e.id_assigned())
                .collect();
        assert_eq!(replayed, vec![true, false]);
        o.wal.close();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(usize),
        /// Crash while writing a record: a prefix of it reaches the disk.
        TornWrite(usize, u8),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0usize..400).prop_map(Op::Append),
            1 => (0usize..400, any::<u8>()).prop_map(|(n, cut)| Op::TornWrite(n, cut)),
            2 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Every acknowledged append is replayed, once, in order, whatever
        /// crashes happened between them.
        #[test]
        fn acknowledged_appends_survive_crashes(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let mut model: Vec<usize> = Vec::new();
            let mut o = open(dir.path(), 0, 600);
            let _ = drain(&o.rx);
            for op in ops {
                match op {
                    Op::Append(n) => { append(&o.wal, n); model.push(n); }
                    Op::TornWrite(n, cut) => {
                        o.wal.close();
                        let mut rec = Vec::new();
                        encode_record(Batch::encode(vec![event(n)]).payload(), &mut rec);
                        let keep = (cut as usize * rec.len() / 256).min(rec.len() - 1);
                        append_raw(&last_segment(dir.path()), &rec[..keep]);
                        o = open(dir.path(), 0, 600);
                        prop_assert_eq!(drain(&o.rx), model.clone());
                    }
                    Op::Reopen => {
                        o.wal.close();
                        o = open(dir.path(), 0, 600);
                        prop_assert_eq!(drain(&o.rx), model.clone());
                    }
                }
            }
            o.wal.close();
            let o = open(dir.path(), 0, 600);
            prop_assert_eq!(drain(&o.rx), model);
            o.wal.close();
        }
    }
}
