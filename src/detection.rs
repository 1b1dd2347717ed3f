//! Detection wiring: the rules directory, its reloads, and the handle the
//! API uses. The stage itself is `detect::Detector`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use detect::rule::Placeholders;
use detect::{Detector, Rules};
use serde::Serialize;

/// The running stage and where its rules come from.
pub struct Detection {
    /// The stage.
    pub detector: Detector,
    /// The rules directory; none when only detectors run.
    dir: Option<PathBuf>,
    placeholders: Placeholders,
    /// What the rule files looked like at the last load.
    seen: Mutex<Fingerprint>,
}

impl std::fmt::Debug for Detection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detection")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Every rule file's path, modification time and length.
type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// What a load found.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Rules evaluated from now on.
    pub loaded: usize,
    /// Documents refused, each with a reason (`GET /api/v1/rules`).
    pub refused: usize,
}

/// Loads the rules below `dir`, logging the totals and every refusal.
pub fn load(dir: &Path, placeholders: &Placeholders) -> Rules {
    let rules = Rules::load(dir, placeholders);
    for e in &rules.refused {
        tracing::debug!(reason = %e, "rule refused");
    }
    tracing::info!(
        dir = %dir.display(),
        loaded = rules.set.rules().len(),
        correlations = rules.set.correlations().len(),
        refused = rules.refused.len(),
        "rules loaded"
    );
    rules
}

impl Detection {
    /// The handle for a stage whose rules were loaded from `dir` (none:
    /// the stage runs detectors only).
    pub fn new(detector: Detector, dir: Option<PathBuf>, placeholders: Placeholders) -> Detection {
        let seen = Mutex::new(dir.as_deref().map(fingerprint).unwrap_or_default());
        Detection {
            detector,
            dir,
            placeholders,
            seen,
        }
    }

    /// The configured values of `expand` placeholders.
    pub fn placeholders(&self) -> &Placeholders {
        &self.placeholders
    }

    /// Loads the rules again and evaluates them from the next WAL record
    /// on. Blocking (reads and compiles every file).
    pub fn reload(&self) -> LoadReport {
        let Some(dir) = &self.dir else {
            return LoadReport { loaded: 0, refused: 0 };
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        *seen = fingerprint(dir);
        let rules = load(dir, &self.placeholders);
        let report = LoadReport {
            loaded: rules.set.rules().len() + rules.set.correlations().len(),
            refused: rules.refused.len(),
        };
        self.detector.replace_rules(rules);
        report
    }

    /// Reloads when a rule file was added, removed or changed since the
    /// last load.
    pub fn reload_if_changed(&self) -> Option<LoadReport> {
        let dir = self.dir.as_ref()?;
        let now = fingerprint(dir);
        let changed = *self.seen.lock().unwrap_or_else(|p| p.into_inner()) != now;
        changed.then(|| {
            tracing::info!(dir = %dir.display(), "rule files changed, reloading");
            self.reload()
        })
    }

    /// Looks at the directory every `interval` on a thread of its own
    /// until `stop` is cancelled.
    pub fn watch(self: &Arc<Self>, interval: Duration, stop: tokio_util::sync::CancellationToken) {
        let me = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("tripline-rules".into())
            .spawn(move || {
                while !stop.is_cancelled() {
                    std::thread::sleep(interval);
                    match me.upgrade() {
                        Some(d) => {
                            d.reload_if_changed();
                        }
                        None => return,
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the rules watcher: reload with POST /api/v1/rules/reload");
        }
    }
}

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                out.push((path, meta.modified().ok(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

/// Indexed events a `new_terms` detector is seeded from, at most.
pub const MAX_SEED_EVENTS: usize = 1_000_000;

/// Seeds every new `new_terms` detector (one without state in the
/// checkpoint) with the terms of the indexed events of its history window,
/// newest first, at most [`MAX_SEED_EVENTS`] each. Blocking.
pub fn seed(store: &index::Store, detectors: &[detect::detectors::Detector], checkpoint: &mut detect::Checkpoint) {
    let now = time::OffsetDateTime::now_utc();
    for d in detectors {
        let Some((expr, history)) = d.seed_query() else {
            continue;
        };
        if !checkpoint.detectors_mut().is_new(&d.id) {
            continue;
        }
        let since = time::Duration::try_from(history)
            .ok()
            .and_then(|h| now.checked_sub(h))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            .max(time::OffsetDateTime::UNIX_EPOCH);
        let mut events = Vec::new();
        let mut cursor = None;
        let mut truncated = false;
        loop {
            let search = query::Search {
                expr: expr.clone(),
                start: Some(since),
                end: None,
                limit: query::MAX_LIMIT,
                cursor,
                deadline: None,
            };
            let page = match query::exec::run(store, &search) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(detector = %d.id, error = %e, "seeding from the index failed: the detector learns from the stream");
                    break;
                }
            };
            for hit in page.hits {
                let Ok(e) = schemas::Event::from_json(hit) else {
                    continue;
                };
                let t = e.get("@timestamp").and_then(schemas::time::parse_value).unwrap_or(now);
                events.push((e, t));
            }
            if events.len() >= MAX_SEED_EVENTS {
                truncated = page.next_cursor.is_some();
                break;
            }
            cursor = match page.next_cursor.as_deref().map(query::Cursor::decode) {
                Some(Ok(c)) => Some(c),
                _ => break,
            };
        }
        if events.is_empty() {
            continue;
        }
        let oldest = events.iter().map(|(_, t)| *t).min().unwrap_or(now);
        let terms = checkpoint
            .detectors_mut()
            .seed(d, oldest, events.iter().map(|(e, t)| (e, *t)));
        tracing::info!(detector = %d.id, events = events.len(), terms, truncated, since = %schemas::time::format(oldest), "new_terms detector seeded from the index");
    }
}
