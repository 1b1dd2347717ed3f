//! Day partitions: one tantivy index per UTC day of event time, under
//! `<root>/<YYYY-MM-DD>/`. A time-range query opens only the days it covers;
//! retention deletes whole days.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tantivy::directory::MmapDirectory;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{Index, IndexReader, IndexSettings, ReloadPolicy, Searcher};
use time::{Date, OffsetDateTime};

use crate::schema::EventSchema;
use crate::IndexError;

/// Name of the file holding the global checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

/// One day's index.
pub struct Partition {
    /// The UTC day its events happened on.
    pub day: Date,
    /// Its directory.
    pub dir: PathBuf,
    /// The tantivy index.
    pub index: Index,
    /// Its schema mapped onto the catalog (may be older than the catalog).
    pub schema: Arc<EventSchema>,
    reader: IndexReader,
    committed: AtomicU64,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition").field("day", &self.day).finish()
    }
}

impl Partition {
    fn open(root: &Path, day: Date, schema: &EventSchema) -> Result<Partition, IndexError> {
        let dir = root.join(day_name(day));
        let name = day_name(day);
        let exists = dir.join("meta.json").exists();
        fs::create_dir_all(&dir).map_err(|e| IndexError::io(&dir, e))?;
        let index = if exists {
            Index::open_in_dir(&dir).map_err(|e| IndexError::tantivy(&name, e))?
        } else {
            let settings = IndexSettings {
                docstore_compression: Compressor::Zstd(ZstdCompressor {
                    compression_level: Some(3),
                }),
                docstore_blocksize: 64 << 10,
                ..IndexSettings::default()
            };
            let directory = MmapDirectory::open(&dir).map_err(|e| IndexError::tantivy(&name, e.into()))?;
            Index::create(directory, schema.schema.clone(), settings).map_err(|e| IndexError::tantivy(&name, e))?
        };
        EventSchema::register_tokenizers(&index);
        let own = EventSchema::from_schema(index.schema(), schema.catalog.clone()).ok_or_else(|| {
            IndexError::tantivy(
                &name,
                tantivy::TantivyError::SchemaError(
                    "not a Tripline partition: its schema lacks Tripline's fields".into(),
                ),
            )
        })?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| IndexError::tantivy(&name, e))?;
        let meta = index.load_metas().map_err(|e| IndexError::tantivy(&name, e))?;
        let committed = meta.payload.as_deref().and_then(parse_payload).unwrap_or(0);
        Ok(Partition {
            day,
            dir,
            index,
            schema: Arc::new(own),
            reader,
            committed: AtomicU64::new(committed),
        })
    }

    /// A searcher over the last commit.
    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    /// Makes the last commit visible to new searchers.
    pub fn reload(&self) -> Result<(), IndexError> {
        self.reader.reload().map_err(|e| IndexError::tantivy(self.day, e))
    }

    /// WAL position up to which this partition has committed its events.
    pub fn committed_lsn(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    pub(crate) fn set_committed_lsn(&self, lsn: u64) {
        self.committed.store(lsn, Ordering::SeqCst);
    }
}

/// The commit payload: the WAL position the commit covers.
pub fn commit_payload(lsn: u64) -> String {
    format!("{{\"wal_end\":{lsn}}}")
}

fn parse_payload(s: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(s)
        .ok()?
        .get("wal_end")?
        .as_u64()
}

/// The UTC day of `t`; a time whose UTC form leaves the calendar (9999-12-31
/// at -01:00) is clamped to its end.
pub fn utc_day(t: OffsetDateTime) -> Date {
    match t.checked_to_offset(time::UtcOffset::UTC) {
        Some(utc) => utc.date(),
        None if t.offset().is_negative() => Date::MAX,
        None => Date::MIN,
    }
}

/// `YYYY-MM-DD`.
pub fn day_name(day: Date) -> String {
    format!("{:04}-{:02}-{:02}", day.year(), u8::from(day.month()), day.day())
}

fn parse_day(name: &str) -> Option<Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(name, &fmt).ok()
}

/// All partitions, found by day; shared by the indexer and the queries.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    schema: Arc<EventSchema>,
    partitions: RwLock<BTreeMap<Date, Arc<Partition>>>,
    quarantined: Vec<PathBuf>,
    /// Held (write) while a commit round's partitions are made visible, and
    /// (read) while a search takes its searchers: a search sees a commit
    /// round in every partition or in none.
    visibility: RwLock<()>,
}

/// Folder, under the index root, of partitions that could not be opened.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Moves `path` to `quarantine/<name>.<unix seconds>` under `root`.
fn quarantine(root: &Path, path: &Path) -> Result<PathBuf, IndexError> {
    let dir = root.join(QUARANTINE_DIR);
    fs::create_dir_all(&dir).map_err(|e| IndexError::io(&dir, e))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path
        .file_name()
        .map_or_else(|| "partition".into(), |n| n.to_string_lossy().into_owned());
    let to = dir.join(format!("{name}.{secs}"));
    fs::rename(path, &to).map_err(|e| IndexError::io(path, e))?;
    fs::File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(|e| IndexError::io(root, e))?;
    Ok(to)
}

impl Store {
    /// Opens every partition under `root` (creating `root`). One that
    /// cannot be opened is moved to `quarantine/` (logged, and listed by
    /// [`Store::quarantined`]) rather than stopping the daemon: one bad day
    /// must not take ingest down.
    pub fn open(root: &Path, schema: EventSchema) -> Result<Store, IndexError> {
        fs::create_dir_all(root).map_err(|e| IndexError::io(root, e))?;
        let mut partitions = BTreeMap::new();
        let mut quarantined = Vec::new();
        for entry in fs::read_dir(root).map_err(|e| IndexError::io(root, e))? {
            let entry = entry.map_err(|e| IndexError::io(root, e))?;
            let Some(day) = entry.file_name().to_str().and_then(parse_day) else {
                continue;
            };
            match Partition::open(root, day, &schema) {
                Ok(p) => {
                    partitions.insert(day, Arc::new(p));
                }
                Err(e) => {
                    let moved = quarantine(root, &entry.path())?;
                    tracing::error!(partition = %day, error = %e, moved_to = %moved.display(), "cannot open a partition, moved it aside");
                    quarantined.push(moved);
                }
            }
        }
        Ok(Store {
            root: root.to_path_buf(),
            schema: Arc::new(schema),
            partitions: RwLock::new(partitions),
            quarantined,
            visibility: RwLock::new(()),
        })
    }

    /// Partitions moved aside at open, because they could not be opened.
    pub fn quarantined(&self) -> &[PathBuf] {
        &self.quarantined
    }

    /// The schema new partitions get.
    pub fn schema(&self) -> &Arc<EventSchema> {
        &self.schema
    }

    /// The partition of `day`, created if needed.
    pub fn get_or_create(&self, day: Date) -> Result<Arc<Partition>, IndexError> {
        if let Some(p) = self.read().get(&day) {
            return Ok(p.clone());
        }
        let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = map.get(&day) {
            return Ok(p.clone());
        }
        let p = Arc::new(Partition::open(&self.root, day, &self.schema)?);
        map.insert(day, p.clone());
        Ok(p)
    }

    /// Partitions that may hold events in `[start, end]`, newest first.
    pub fn partitions_between(
        &self,
        start: Option<OffsetDateTime>,
        end: Option<OffsetDateTime>,
    ) -> Vec<Arc<Partition>> {
        let lo = start.map(utc_day).unwrap_or(Date::MIN);
        let hi = end.map(utc_day).unwrap_or(Date::MAX);
        if lo > hi {
            return Vec::new();
        }
        self.read().range(lo..=hi).rev().map(|(_, p)| p.clone()).collect()
    }

    /// The partitions that may hold events in `[start, end]`, newest first,
    /// each with a searcher, all taken between two commit rounds.
    pub fn snapshot(
        &self,
        start: Option<OffsetDateTime>,
        end: Option<OffsetDateTime>,
    ) -> Vec<(Arc<Partition>, Searcher)> {
        let _visible = self.visibility.read().unwrap_or_else(|p| p.into_inner());
        self.partitions_between(start, end)
            .into_iter()
            .map(|p| {
                let s = p.searcher();
                (p, s)
            })
            .collect()
    }

    /// Makes the last commit of each of `partitions` visible to searches at
    /// once (see [`Store::snapshot`]).
    pub fn publish<'a>(&self, partitions: impl IntoIterator<Item = &'a Arc<Partition>>) -> Result<(), IndexError> {
        let _visible = self.visibility.write().unwrap_or_else(|p| p.into_inner());
        for p in partitions {
            p.reload()?;
        }
        Ok(())
    }

    /// The latest `event.ingested` of any document, if any has one.
    pub fn newest_ingested(&self) -> Option<OffsetDateTime> {
        let mut newest: Option<i64> = None;
        for p in self.all() {
            for segment in p.searcher().segment_readers() {
                let Ok(column) = segment.fast_fields().date(schemas::fields::INGESTED) else {
                    continue;
                };
                if column.values.num_vals() == 0 {
                    continue;
                }
                let max = column.max_value().into_timestamp_secs();
                newest = Some(newest.map_or(max, |n| n.max(max)));
            }
        }
        newest.and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
    }

    /// Every partition, oldest first.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.read().values().cloned().collect()
    }

    /// Removes a partition from the store and deletes its files. Searches
    /// already running keep their open files until they finish.
    pub fn remove(&self, day: Date) -> Result<(), IndexError> {
        let removed = self.partitions.write().unwrap_or_else(|p| p.into_inner()).remove(&day);
        if let Some(p) = removed {
            fs::remove_dir_all(&p.dir).map_err(|e| IndexError::io(&p.dir, e))?;
        }
        Ok(())
    }

    /// The WAL position every partition has committed up to (0 if none).
    pub fn checkpoint(&self) -> Result<u64, IndexError> {
        let path = self.root.join(CHECKPOINT_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => parse_payload(&text).ok_or_else(|| IndexError::BadCheckpoint {
                path,
                reason: format!("expected {{\"wal_end\": N}}, found {text:?}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(IndexError::io(path, e)),
        }
    }

    /// The highest WAL position any partition has committed.
    pub fn max_committed_lsn(&self) -> u64 {
        self.read().values().map(|p| p.committed_lsn()).max().unwrap_or(0)
    }

    /// Writes the checkpoint durably (temp file, fsync, rename, fsync dir).
    pub fn write_checkpoint(&self, lsn: u64) -> Result<(), IndexError> {
        let path = self.root.join(CHECKPOINT_FILE);
        let tmp = self.root.join("checkpoint.json.tmp");
        let io = |p: &Path, e| IndexError::io(p, e);
        {
            use std::io::Write;
            let mut f = fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
            f.write_all(commit_payload(lsn).as_bytes()).map_err(|e| io(&tmp, e))?;
            f.sync_all().map_err(|e| io(&tmp, e))?;
        }
        fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        fs::File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.root, e))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Date, Arc<Partition>>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner())
    }
}
