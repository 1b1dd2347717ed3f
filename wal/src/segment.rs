//! Segment files: `{lsn:020}.wal`, named by the LSN of their first byte.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Lsn, WalError};

pub(crate) fn segment_path(dir: &Path, start: Lsn) -> PathBuf {
    dir.join(format!("{:020}.wal", start.0))
}

/// Segment files in `dir`, by starting LSN.
pub fn list_segments(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, WalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| WalError::io(dir, e))? {
        let entry = entry.map_err(|e| WalError::io(dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(start) = stem.parse::<u64>() {
                out.push((Lsn(start), entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}

/// The segment being appended to.
pub(crate) struct Segment {
    pub(crate) start: Lsn,
    pub(crate) len: u64,
    pub(crate) path: PathBuf,
    file: File,
}

impl Segment {
    /// Creates (or empties) the segment starting at `start` and makes its
    /// directory entry durable.
    pub(crate) fn create(dir: &Path, start: Lsn) -> Result<Segment, WalError> {
        let path = segment_path(dir, start);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| WalError::io(&path, e))?;
        file.sync_all().map_err(|e| WalError::io(&path, e))?;
        sync_dir(dir)?;
        Ok(Segment {
            start,
            len: 0,
            path,
            file,
        })
    }

    /// The LSN after the segment's last byte.
    pub(crate) fn end(&self) -> Lsn {
        Lsn(self.start.0 + self.len)
    }

    pub(crate) fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        faults::before_write(&self.path)?;
        self.file.write_all(buf)
    }

    pub(crate) fn sync_data(&mut self) -> std::io::Result<()> {
        faults::before_sync(&self.path)?;
        self.file.sync_data()?;
        #[cfg(test)]
        faults::synced(&self.path, self.file.metadata()?.len());
        Ok(())
    }
}

/// Failpoints for tests: fail a segment's next write or fsync, and record
/// how much of each segment an fsync made durable, so a test can drop what
/// was written but not synced, as a power loss would. Compiled out of
/// non-test builds.
#[cfg(test)]
pub(crate) mod faults {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    #[derive(Default)]
    pub(crate) struct Faults {
        pub(crate) fail_write: bool,
        pub(crate) fail_sync: bool,
        pub(crate) synced: HashMap<PathBuf, u64>,
    }

    static FAULTS: Mutex<Option<HashMap<PathBuf, Faults>>> = Mutex::new(None);

    /// Runs `f` on the faults of the log in `dir`.
    pub(crate) fn with<R>(dir: &Path, f: impl FnOnce(&mut Faults) -> R) -> R {
        let mut all = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
        f(all
            .get_or_insert_with(HashMap::new)
            .entry(dir.to_path_buf())
            .or_default())
    }

    fn of<R>(segment: &Path, f: impl FnOnce(&mut Faults) -> R) -> R {
        with(segment.parent().unwrap_or(segment), f)
    }

    pub(crate) fn before_write(segment: &Path) -> std::io::Result<()> {
        if of(segment, |f| f.fail_write) {
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }

    pub(crate) fn before_sync(segment: &Path) -> std::io::Result<()> {
        if of(segment, |f| f.fail_sync) {
            return Err(std::io::Error::from_raw_os_error(5)); // EIO
        }
        Ok(())
    }

    pub(crate) fn synced(segment: &Path, len: u64) {
        of(segment, |f| f.synced.insert(segment.to_path_buf(), len));
    }
}

#[cfg(not(test))]
mod faults {
    use std::path::Path;

    #[inline]
    pub(crate) fn before_write(_: &Path) -> std::io::Result<()> {
        Ok(())
    }

    #[inline]
    pub(crate) fn before_sync(_: &Path) -> std::io::Result<()> {
        Ok(())
    }
}
