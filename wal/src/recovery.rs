//! Recovery: read every segment, replay what a consumer has not passed, and
//! tell a torn tail (a crash in the middle of a write, cut) from damage
//! inside the log (copied aside first, reported, its neighbours kept).

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use crate::record::{scan, HEADER_LEN};
use crate::segment::{list_segments, sync_dir};
use crate::{Batch, Durable, Lsn, WalError, WalMetrics};

/// Folder, inside the log's directory, where damaged segments are copied
/// before recovery touches them.
pub const CORRUPT_DIR: &str = "corrupt";

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Records forwarded downstream (at or after the replay position).
    pub replayed: u64,
    /// Records before the replay position, skipped.
    pub skipped: u64,
    /// Torn tails cut off the last segment (a crash during a write).
    pub torn_tails: u64,
    /// Ranges of damaged bytes inside the log, skipped; their segments were
    /// copied to `corrupt/` first.
    pub damaged_ranges: u64,
    /// Bytes cut off or skipped.
    pub bytes_dropped: u64,
    /// Copies of damaged segments.
    pub copies: Vec<PathBuf>,
    /// LSN the first new record gets.
    pub next_lsn: Lsn,
}

impl Recovered {
    /// Torn tails and damaged ranges together.
    pub fn corruptions(&self) -> u64 {
        self.torn_tails + self.damaged_ranges
    }
}

/// Reads the log in `dir`, sends each intact record starting at or after
/// `replay_from` to `downstream`, and returns the segments to keep.
pub(crate) fn recover(
    dir: &Path,
    replay_from: Lsn,
    metrics: &WalMetrics,
    downstream: &SyncSender<Durable>,
) -> Result<(VecDeque<(Lsn, PathBuf)>, Recovered), WalError> {
    let segments = list_segments(dir)?;
    let count = segments.len();
    let mut report = Recovered::default();
    let mut closed = VecDeque::new();
    let mut next_lsn = 0u64;
    for (i, (start, path)) in segments.into_iter().enumerate() {
        let last = i + 1 == count;
        let bytes = fs::read(&path).map_err(|e| WalError::io(&path, e))?;
        let scan = scan(&bytes);
        // A tail is torn only in the last segment: earlier ones were fsynced
        // whole before the next was started.
        let inside = !scan.damaged.is_empty() || (scan.tail.is_some() && !last);
        if inside {
            let copy = copy_aside(dir, &path, &bytes)?;
            for d in scan.damaged.iter().chain(scan.tail.iter().filter(|_| !last)) {
                tracing::error!(
                    segment = %path.display(),
                    offset = d.offset,
                    bytes = d.len,
                    damage = %d.damage,
                    copy = %copy.display(),
                    "wal segment is damaged inside the log: the damaged bytes are skipped, the records around them kept"
                );
                report.damaged_ranges += 1;
                report.bytes_dropped += d.len as u64;
                metrics.corruptions.inc();
            }
            report.copies.push(copy);
        }
        if let (true, Some(tail)) = (last, &scan.tail) {
            tracing::warn!(
                segment = %path.display(),
                offset = tail.offset,
                bytes_dropped = tail.len,
                damage = %tail.damage,
                "wal segment has a torn tail, cutting it off"
            );
            report.torn_tails += 1;
            report.bytes_dropped += tail.len as u64;
            metrics.corruptions.inc();
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| WalError::io(&path, e))?;
            f.set_len(scan.valid_len as u64).map_err(|e| WalError::io(&path, e))?;
            f.sync_all().map_err(|e| WalError::io(&path, e))?;
        }
        for (offset, payload) in scan.records {
            let rec_start = Lsn(start.0 + offset as u64);
            let rec_end = Lsn(rec_start.0 + (HEADER_LEN + payload.len()) as u64);
            if rec_start < replay_from {
                report.skipped += 1;
                continue;
            }
            let batch = Batch::decode(payload.to_vec(), &path, offset);
            report.replayed += 1;
            metrics.replayed_records.inc();
            let durable = Durable {
                start: rec_start,
                end: rec_end,
                batch,
            };
            if downstream.send(durable).is_err() {
                return Err(WalError::Closed);
            }
        }
        next_lsn = next_lsn.max(start.0 + scan.valid_len as u64);
        closed.push_back((start, path));
    }
    report.next_lsn = Lsn(next_lsn);
    Ok((closed, report))
}

/// Copies a damaged segment to `corrupt/<name>.<unix seconds>`, durably,
/// before recovery reads past its damage.
fn copy_aside(dir: &Path, path: &Path, bytes: &[u8]) -> Result<PathBuf, WalError> {
    let corrupt = dir.join(CORRUPT_DIR);
    fs::create_dir_all(&corrupt).map_err(|e| WalError::io(&corrupt, e))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path
        .file_name()
        .map_or_else(|| "segment".into(), |n| n.to_string_lossy().into_owned());
    let copy = corrupt.join(format!("{name}.{secs}"));
    {
        use std::io::Write;
        let mut f = fs::File::create(&copy).map_err(|e| WalError::io(&copy, e))?;
        f.write_all(bytes).map_err(|e| WalError::io(&copy, e))?;
        f.sync_all().map_err(|e| WalError::io(&copy, e))?;
    }
    sync_dir(&corrupt)?;
    sync_dir(dir)?;
    Ok(copy)
}
