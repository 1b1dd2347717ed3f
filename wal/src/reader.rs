//! A pull reader: one consumer reading the log from its own position, at
//! its own pace (Kafka's consumer, Vector's disk-buffer reader). It reads
//! only what is fsynced, waits for more, and never holds more than one
//! record in memory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::record::{scan, HEADER_LEN, MAX_RECORD_LEN};
use crate::segment::list_segments;
use crate::{Batch, Consumer, Durable, Lsn, Shared, WalError};

/// Reads the log from a consumer's position; see [`crate::Wal::reader`].
///
/// The reader's own place (the end of the last record it returned) moves
/// as it reads; the consumer's durable position moves only when its owner
/// calls [`Consumer::advance`], after making what it read durable on its
/// own. Segments before the consumer's position may be deleted, never
/// those after, so the reader always finds what it has not passed.
pub struct Reader {
    dir: PathBuf,
    shared: Arc<Shared>,
    next: Lsn,
    /// The segment being read: its start and file.
    segment: Option<(Lsn, PathBuf, File)>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("next", &self.next).finish()
    }
}

/// What [`Reader::next`] (a decoded [`Durable`]) or [`Reader::next_raw`]
/// (a [`Raw`] record) found.
#[derive(Debug)]
pub enum Read<T = Durable> {
    /// The next durable record.
    Record(T),
    /// Nothing new was fsynced within the wait.
    Idle,
    /// The log was closed and everything durable has been read.
    Closed,
}

/// A durable record as logged, not decoded: for a consumer that wants few
/// of the events and can tell them from the bytes (the webhook outbox
/// looks for alerts only).
#[derive(Debug)]
pub struct Raw {
    /// LSN of the record.
    pub start: Lsn,
    /// LSN just after the record.
    pub end: Lsn,
    /// The record's payload: one event per line, each `a` or `c` then its
    /// JSON (see [`Batch::decode`]).
    pub payload: Vec<u8>,
}

impl Reader {
    pub(crate) fn new(dir: PathBuf, shared: Arc<Shared>, consumer: &Consumer) -> Reader {
        Reader {
            dir,
            shared,
            next: consumer.position(),
            segment: None,
        }
    }

    /// The position after the last record returned.
    pub fn position(&self) -> Lsn {
        self.next
    }

    /// The next durable record at or after the reader's place, waiting up
    /// to `wait` for one to be fsynced.
    pub fn next(&mut self, wait: Duration) -> Result<Read, WalError> {
        Ok(match self.next_record(wait)? {
            Read::Record((raw, path, offset)) => Read::Record(Durable {
                start: raw.start,
                end: raw.end,
                batch: Batch::decode(raw.payload, &path, offset),
            }),
            Read::Idle => Read::Idle,
            Read::Closed => Read::Closed,
        })
    }

    /// As [`Reader::next`], without decoding the events.
    pub fn next_raw(&mut self, wait: Duration) -> Result<Read<Raw>, WalError> {
        Ok(match self.next_record(wait)? {
            Read::Record((raw, _, _)) => Read::Record(raw),
            Read::Idle => Read::Idle,
            Read::Closed => Read::Closed,
        })
    }

    /// The next record, with the segment and offset it was read at.
    fn next_record(&mut self, wait: Duration) -> Result<Read<(Raw, PathBuf, usize)>, WalError> {
        if self.next >= self.shared.end() && !self.shared.wait_past(self.next, wait) {
            return Ok(if self.shared.is_closed() {
                Read::Closed
            } else {
                Read::Idle
            });
        }
        let end = self.shared.end();
        loop {
            if self.next >= end {
                return Ok(Read::Idle);
            }
            if self.segment.is_none() && !self.open_segment()? {
                return Ok(Read::Idle);
            }
            let Some((start, path, file)) = &self.segment else {
                continue;
            };
            let offset = self.next.0 - start.0;
            match read_record(file, offset) {
                Ok(Some(payload)) => {
                    let rec_start = self.next;
                    let rec_end = Lsn(rec_start.0 + (HEADER_LEN + payload.len()) as u64);
                    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
                    self.next = rec_end;
                    let raw = Raw {
                        start: rec_start,
                        end: rec_end,
                        payload,
                    };
                    return Ok(Read::Record((raw, path.clone(), offset)));
                }
                // The end of this segment: on to the next one.
                Ok(None) => {
                    let exhausted = *start;
                    self.segment = None;
                    if !self.open_after(self.next, Some(exhausted))? {
                        return Ok(Read::Idle);
                    }
                }
                // Damage recovery reported and kept: skip to the next intact
                // record, as recovery did.
                Err(()) => {
                    let (start, path) = (*start, path.clone());
                    let bytes = std::fs::read(&path).map_err(|e| WalError::io(&path, e))?;
                    let limit = usize::try_from(end.0.saturating_sub(start.0)).unwrap_or(usize::MAX);
                    let bytes = &bytes[..bytes.len().min(limit)];
                    let from = usize::try_from(offset).unwrap_or(usize::MAX).saturating_add(1);
                    let rest = bytes.get(from..).unwrap_or_default();
                    match scan(rest).records.first() {
                        Some((at, _)) => {
                            tracing::warn!(segment = %path.display(), offset, skipped = at + 1, "wal reader skipped damaged bytes");
                            self.next = Lsn(start.0 + (from + at) as u64);
                        }
                        None => {
                            self.segment = None;
                            self.next = Lsn(start.0 + bytes.len() as u64);
                            if !self.open_after(self.next, Some(start))? {
                                return Ok(Read::Idle);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Opens the segment holding the reader's place, or the first one after
    /// it (a gap left by a cut tail or a raised floor).
    fn open_segment(&mut self) -> Result<bool, WalError> {
        let segments = list_segments(&self.dir)?;
        let holding = segments.iter().rev().find(|(s, _)| *s <= self.next);
        if let Some((start, path)) = holding {
            let file = File::open(path).map_err(|e| WalError::io(path, e))?;
            let len = file.metadata().map_err(|e| WalError::io(path, e))?.len();
            if self.next.0 < start.0 + len {
                self.segment = Some((*start, path.clone(), file));
                return Ok(true);
            }
            let exhausted = *start;
            return self.open_after(self.next, Some(exhausted));
        }
        self.open_after(self.next, None)
    }

    /// Moves to the first segment starting at or after `lsn`, other than
    /// `exhausted` (one read to its end).
    fn open_after(&mut self, lsn: Lsn, exhausted: Option<Lsn>) -> Result<bool, WalError> {
        let segments = list_segments(&self.dir)?;
        let Some((start, path)) = segments.into_iter().find(|(s, _)| *s >= lsn && Some(*s) != exhausted) else {
            return Ok(false);
        };
        let file = File::open(&path).map_err(|e| WalError::io(&path, e))?;
        self.next = start;
        self.segment = Some((start, path, file));
        Ok(true)
    }
}

/// The payload of the record at `offset`: `Ok(None)` at the end of the
/// file, `Err(())` for bytes that are not an intact record.
fn read_record(file: &File, offset: u64) -> Result<Option<Vec<u8>>, ()> {
    let mut header = [0u8; HEADER_LEN];
    match read_full(file, &mut header, offset) {
        Ok(0) => return Ok(None),
        Ok(n) if n == HEADER_LEN => {}
        _ => return Err(()),
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD_LEN {
        return Err(());
    }
    let mut payload = vec![0u8; len];
    match read_full(file, &mut payload, offset + HEADER_LEN as u64) {
        Ok(n) if n == len => {}
        _ => return Err(()),
    }
    if crc32c::crc32c_append(crc32c::crc32c(&header[..4]), &payload) != crc {
        return Err(());
    }
    Ok(Some(payload))
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
