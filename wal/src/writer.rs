//! The writer thread: group commit, segment roll, garbage collection.

use std::collections::VecDeque;
use std::fs;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::record::{encode_record, MAX_RECORD_LEN};
use crate::segment::{sync_dir, Segment};
use crate::{Batch, Durable, Lsn, Shared, WalConfig, WalError, WalMetrics};

pub(crate) struct Request {
    pub(crate) batch: Batch,
    pub(crate) reply: oneshot::Sender<Result<Lsn, WalError>>,
}

pub(crate) enum Msg {
    Append(Request),
    Close,
}

pub(crate) struct Writer {
    pub(crate) config: WalConfig,
    pub(crate) active: Segment,
    pub(crate) closed: VecDeque<(Lsn, PathBuf)>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) metrics: WalMetrics,
    pub(crate) downstream: SyncSender<Durable>,
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
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
            let mut bytes = group[0].batch.payload().len();
            while bytes < self.config.max_group_bytes {
                match rx.try_recv() {
                    Ok(Msg::Append(r)) => {
                        bytes += r.batch.payload().len();
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
                let _ = r.reply.send(Err(WalError::Failed { reason: reason.clone() }));
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
        let base = self.active.end().0;
        let mut accepted = Vec::with_capacity(group.len());
        for r in group {
            let len = r.batch.payload().len();
            if len > MAX_RECORD_LEN {
                let _ = r.reply.send(Err(WalError::RecordTooLarge {
                    len,
                    limit: MAX_RECORD_LEN,
                }));
                continue;
            }
            let start = base + self.buf.len() as u64;
            encode_record(r.batch.payload(), &mut self.buf);
            spans.push((Lsn(start), Lsn(base + self.buf.len() as u64)));
            accepted.push(r);
        }
        if accepted.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        let written = self.active.write_all(&buf);
        let began = Instant::now();
        let synced = written.and_then(|()| self.active.sync_data());
        self.buf = buf;
        if let Err(e) = synced {
            let reason = format!("{}: {e}", self.active.path.display());
            tracing::error!(segment = %self.active.path.display(), error = %e, "wal write or fsync failed, refusing all writes until restart");
            self.shared.fail(reason.clone());
            for r in accepted {
                let _ = r.reply.send(Err(WalError::Failed { reason: reason.clone() }));
            }
            return;
        }
        self.metrics.fsync_seconds.observe(began.elapsed().as_secs_f64());
        self.metrics.batch_requests.observe(accepted.len() as f64);
        self.metrics.bytes.inc_by(self.buf.len() as u64);
        self.active.len += self.buf.len() as u64;
        self.shared.set_end(self.active.end());
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

    fn roll(&mut self) -> Result<(), WalError> {
        let segment = Segment::create(&self.config.dir, self.active.end())?;
        let old = std::mem::replace(&mut self.active, segment);
        self.closed.push_back((old.start, old.path));
        self.metrics.segments.set(self.closed.len() as i64 + 1);
        Ok(())
    }

    /// Deletes closed segments every registered consumer has passed.
    fn collect_garbage(&mut self) {
        let Some(released) = self.shared.released() else {
            return;
        };
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
            self.metrics.segments.set(self.closed.len() as i64 + 1);
        }
    }
}
