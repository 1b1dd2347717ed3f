//! The detection stage: a consumer of the WAL with its own durable
//! position. It reads what ingest made durable, evaluates every rule on
//! every event on its own thread (never on the acknowledgement path),
//! groups matches into alerts (suppression), and appends each new version
//! of an alert back to the WAL as an event of `tripline.alerts`, where the
//! index picks it up like any event.
//!
//! Exactly once across crashes: the position and the open alerts are saved
//! together in `checkpoint.json` (temporary file, fsync, rename), only
//! after the alerts of every record before the position are fsynced in the
//! WAL. After a crash the stage replays from the saved position with the
//! saved state; the alerts it makes again have the same ids (derived from
//! rule, group and first event) and the same contents, so the index, which
//! keeps one document per id, holds each alert once. Status changes made
//! after the checkpoint are read back from the WAL as the replay passes
//! them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use schemas::Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use wal::{Batch, Consumer, Durable, Lsn, Read, Reader, Wal};

use crate::alert::{alert_id, Alert, Status, ALERTS_DATASET, MAX_EVENT_IDS};
use crate::correlation::{Caps, Correlation, Dropped, Fired, Windows};
use crate::detectors::{Finding, States, Summary};
use crate::rule::{Hit, Placeholders, Rule, RuleSet};
use crate::DetectError;

/// Most alert versions appended in one WAL record.
const MAX_ALERTS_PER_RECORD: usize = 10_000;

/// How the stage runs.
#[derive(Debug, Clone)]
pub struct DetectConfig {
    /// Where `checkpoint.json` is kept.
    pub state_dir: PathBuf,
    /// How long an alert takes further matches of its rule and group when
    /// the rule does not say (`suppression.duration`); zero makes an alert
    /// of every match.
    pub suppression: Duration,
    /// Most alerts kept open; past it the oldest are closed to new matches
    /// (counted in `tripline_detect_alerts_evicted_total`).
    pub max_open_alerts: usize,
    /// How often the position and state are saved (when they moved).
    pub checkpoint_interval: Duration,
    /// Bounds on the correlation windows.
    pub caps: Caps,
    /// Threads that find the rules matching a record's events (state is
    /// then updated in order, on the stage's thread).
    pub threads: usize,
}

impl DetectConfig {
    /// Defaults, with the state in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> DetectConfig {
        DetectConfig {
            state_dir: state_dir.into(),
            suppression: Duration::from_secs(300),
            max_open_alerts: 100_000,
            checkpoint_interval: Duration::from_secs(1),
            caps: Caps::default(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// A loaded rule set with what the API shows about it.
#[derive(Debug, Default)]
pub struct Rules {
    /// The compiled rules.
    pub set: RuleSet,
    /// Every document refused, with its file, rule and reason.
    pub refused: Vec<DetectError>,
    /// Matches per rule, by index in `set.rules()`.
    pub matches: Vec<AtomicU64>,
    /// Firings per correlation, by index in `set.correlations()`.
    pub correlation_matches: Vec<AtomicU64>,
    /// The directory the rules came from.
    pub dir: Option<PathBuf>,
}

impl Rules {
    /// Loads every rule file below `dir`.
    pub fn load(dir: &Path, placeholders: &Placeholders) -> Rules {
        let (set, refused) = RuleSet::load_dir(dir, placeholders);
        Rules::new(set, refused, Some(dir.to_path_buf()))
    }

    /// Rules already compiled.
    pub fn new(set: RuleSet, refused: Vec<DetectError>, dir: Option<PathBuf>) -> Rules {
        let matches = set.rules().iter().map(|_| AtomicU64::new(0)).collect();
        let correlation_matches = set.correlations().iter().map(|_| AtomicU64::new(0)).collect();
        Rules {
            set,
            refused,
            matches,
            correlation_matches,
            dir,
        }
    }

    /// Matches of rule `i` since it was loaded.
    pub fn match_count(&self, i: usize) -> u64 {
        self.matches.get(i).map_or(0, |m| m.load(Ordering::Relaxed))
    }

    /// Firings of correlation `i` since it was loaded.
    pub fn correlation_count(&self, i: usize) -> u64 {
        self.correlation_matches.get(i).map_or(0, |m| m.load(Ordering::Relaxed))
    }
}

/// Metrics of the stage, under `tripline_detect_`.
#[derive(Debug, Clone)]
pub struct DetectMetrics {
    pub events: Counter,
    pub matches: Counter,
    pub alerts_created: Counter,
    pub alerts_updated: Counter,
    pub alerts_evicted: Counter,
    pub open_alerts: Gauge,
    pub lag_bytes: Gauge,
    /// Correlation matches pushed out of a window by a cap.
    pub window_evictions: Counter,
    /// Matches too late for any correlation window (older than the
    /// newest match minus the timespan).
    pub window_too_late: Counter,
    /// Matches held in correlation windows.
    pub window_entries: Gauge,
    /// Detector findings (before suppression).
    pub detector_findings: Counter,
    /// Keys detectors dropped at their `max_keys` (least recently seen).
    pub detector_evictions: Counter,
    /// Keys held by every detector.
    pub detector_keys: Gauge,
    /// From an event's acknowledgement (`event.ingested`) to its alert
    /// being durable.
    pub alert_delay_seconds: Histogram,
}

impl Default for DetectMetrics {
    fn default() -> DetectMetrics {
        DetectMetrics {
            events: Counter::default(),
            matches: Counter::default(),
            alerts_created: Counter::default(),
            alerts_updated: Counter::default(),
            alerts_evicted: Counter::default(),
            open_alerts: Gauge::default(),
            lag_bytes: Gauge::default(),
            window_evictions: Counter::default(),
            window_too_late: Counter::default(),
            window_entries: Gauge::default(),
            detector_findings: Counter::default(),
            detector_evictions: Counter::default(),
            detector_keys: Gauge::default(),
            alert_delay_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        }
    }
}

impl DetectMetrics {
    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tripline_detect");
        r.register("events", "Events evaluated against the rules", self.events.clone());
        r.register("matches", "Rule matches", self.matches.clone());
        r.register("alerts_created", "Alerts opened", self.alerts_created.clone());
        r.register(
            "alerts_updated",
            "Matches counted on an open alert (suppressed)",
            self.alerts_updated.clone(),
        );
        r.register(
            "alerts_evicted",
            "Open alerts closed to new matches because max_open_alerts was reached",
            self.alerts_evicted.clone(),
        );
        r.register("open_alerts", "Alerts taking new matches", self.open_alerts.clone());
        r.register(
            "window_evictions",
            "Correlation matches pushed out of a window by max_groups or max_entries",
            self.window_evictions.clone(),
        );
        r.register(
            "window_too_late",
            "Matches older than a correlation's newest minus its timespan, not counted",
            self.window_too_late.clone(),
        );
        r.register(
            "window_entries",
            "Matches held in correlation windows",
            self.window_entries.clone(),
        );
        r.register(
            "detector_findings",
            "What detectors found (each counts on an alert, as matches do)",
            self.detector_findings.clone(),
        );
        r.register(
            "detector_evictions",
            "Keys detectors dropped at their max_keys, least recently seen first",
            self.detector_evictions.clone(),
        );
        r.register("detector_keys", "Keys held by detectors", self.detector_keys.clone());
        r.register(
            "lag_bytes",
            "Bytes of WAL after detection's position",
            self.lag_bytes.clone(),
        );
        r.register(
            "alert_delay_seconds",
            "From an event's acknowledgement to its alert being durable",
            self.alert_delay_seconds.clone(),
        );
    }
}

/// An alert taking new matches.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenAlert {
    alert: Alert,
    /// Event time of the match that opened it: the window is this, plus
    /// or minus `duration`.
    #[serde(with = "time::serde::rfc3339")]
    opened: OffsetDateTime,
    duration_ms: u64,
}

/// The stage's durable state: its WAL position and its open alerts.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every record before it has been evaluated and its alerts are in the WAL.
    pub position: u64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    watermark: Option<OffsetDateTime>,
    #[serde(default)]
    open: Vec<OpenAlert>,
    #[serde(default)]
    windows: Windows,
    /// Detectors' windows, seen terms and learning starts.
    #[serde(default)]
    detectors: States,
}

const CHECKPOINT: &str = "checkpoint.json";

impl Checkpoint {
    /// The detectors' state, to seed before the stage starts.
    pub fn detectors_mut(&mut self) -> &mut States {
        &mut self.detectors
    }

    /// Reads `dir/checkpoint.json`; an absent file is the start of the log.
    pub fn load(dir: &Path) -> Result<Checkpoint, DetectError> {
        let path = dir.join(CHECKPOINT);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DetectError::state(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Checkpoint::default()),
            Err(e) => Err(DetectError::state(&path, e)),
        }
    }

    fn store(&self, dir: &Path) -> Result<(), DetectError> {
        use std::io::Write;
        std::fs::create_dir_all(dir).map_err(|e| DetectError::state(dir, e))?;
        let path = dir.join(CHECKPOINT);
        let tmp = dir.join("checkpoint.json.tmp");
        let bytes = serde_json::to_vec(self).map_err(|e| DetectError::state(&tmp, e))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| DetectError::state(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| DetectError::state(&tmp, e))?;
        f.sync_all().map_err(|e| DetectError::state(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| DetectError::state(&path, e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| DetectError::state(dir, e))
    }
}

/// A status change asked for by an analyst.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub status: Status,
    pub comment: Option<String>,
    /// Who: the token's name.
    pub by: String,
}

enum Command {
    /// What the API shows of the detectors.
    Detectors { reply: mpsc::Sender<Vec<Summary>> },
    /// The rate baseline of one key of a detector.
    Baseline {
        detector: String,
        key: String,
        reply: mpsc::Sender<Option<crate::detectors::Rate>>,
    },
    SetStatus {
        id: String,
        change: StatusChange,
        stored: Option<Box<Alert>>,
        reply: mpsc::Sender<Result<Alert, DetectError>>,
    },
}

/// Handle to the running stage.
pub struct Detector {
    commands: SyncSender<Command>,
    rules: Arc<RwLock<Arc<Rules>>>,
    stop: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector").finish_non_exhaustive()
    }
}

impl Detector {
    /// Starts the stage reading `wal` from `consumer`'s position, with the
    /// state of `checkpoint` (read with [`Checkpoint::load`] before the
    /// consumer was handed to [`Wal::open`]).
    pub fn spawn(
        wal: Arc<Wal>,
        consumer: Consumer,
        checkpoint: Checkpoint,
        rules: Rules,
        config: DetectConfig,
        metrics: DetectMetrics,
        detectors: Vec<crate::detectors::Detector>,
    ) -> Result<Detector, DetectError> {
        let (tx, rx) = mpsc::sync_channel(64);
        let rules = Arc::new(RwLock::new(Arc::new(rules)));
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let reader = wal.reader(&consumer);
        let mut open = HashMap::new();
        let mut by_group = HashMap::new();
        for o in checkpoint.open {
            by_group.insert((o.alert.rule_id.clone(), o.alert.group_key.clone()), o.alert.id.clone());
            open.insert(o.alert.id.clone(), o);
        }
        metrics.open_alerts.set(open.len() as i64);
        let stage = Stage {
            position: Lsn(checkpoint.position).max(consumer.position()),
            checkpointed: consumer.position(),
            wal,
            reader,
            consumer,
            rules: rules.clone(),
            config,
            metrics,
            open,
            by_group,
            watermark: checkpoint.watermark,
            windows: checkpoint.windows,
            states: {
                let mut st = checkpoint.detectors;
                let ids: Vec<&str> = detectors.iter().map(|d| d.id.as_str()).collect();
                st.retain(&ids);
                st
            },
            detectors: Arc::new(detectors),
            evaluating: rules.read().unwrap_or_else(|p| p.into_inner()).clone(),
            last_checkpoint: Instant::now(),
            commands: rx,
            stop: stop.clone(),
            failure: failure.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tripline-detect".into())
            .spawn(move || stage.run())
            .map_err(|e| DetectError::state(Path::new("tripline-detect thread"), e))?;
        Ok(Detector {
            commands: tx,
            rules,
            stop,
            failure,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The rules being evaluated.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Evaluates `rules` from the next record on.
    pub fn replace_rules(&self, rules: Rules) {
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
    }

    /// Sets an alert's status, durably, and returns the new version. The
    /// stage's own copy is used while the alert is open; `stored` (read
    /// from the index) otherwise. Blocks until the version is fsynced.
    pub fn set_status(&self, id: &str, change: StatusChange, stored: Option<Alert>) -> Result<Alert, DetectError> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .send(Command::SetStatus {
                id: id.to_string(),
                change,
                stored: stored.map(Box::new),
                reply,
            })
            .map_err(|_| DetectError::Stopped)?;
        answer.recv().map_err(|_| DetectError::Stopped)?
    }

    /// The detectors: kind, learning or active, keys held, computed by
    /// the stage when asked (not on every checkpoint: it walks every key).
    pub fn detectors(&self) -> Result<Vec<Summary>, DetectError> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .send(Command::Detectors { reply })
            .map_err(|_| DetectError::Stopped)?;
        answer
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| DetectError::Stopped)
    }

    /// The learned rate baseline of `key` (a group key such as
    /// `service.name=web`) in a `rate_spike` detector, as of now.
    pub fn baseline(&self, detector: &str, key: &str) -> Result<Option<crate::detectors::Rate>, DetectError> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .send(Command::Baseline {
                detector: detector.to_string(),
                key: key.to_string(),
                reply,
            })
            .map_err(|_| DetectError::Stopped)?;
        answer
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| DetectError::Stopped)
    }

    /// Why the stage stopped for good, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Finishes the record in hand, saves the checkpoint and stops. Call
    /// before closing the WAL (the stage appends to it).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!("detection thread panicked");
            }
        }
    }
}

struct Stage {
    wal: Arc<Wal>,
    reader: Reader,
    consumer: Consumer,
    rules: Arc<RwLock<Arc<Rules>>>,
    config: DetectConfig,
    metrics: DetectMetrics,
    open: HashMap<String, OpenAlert>,
    /// (rule id, group key) -> the open alert's id.
    by_group: HashMap<(String, String), String>,
    /// Latest event time seen: alerts whose window ends before it close.
    watermark: Option<OffsetDateTime>,
    /// Correlation windows.
    windows: Windows,
    /// Detectors, and their state.
    detectors: Arc<Vec<crate::detectors::Detector>>,
    states: States,
    /// The rules the windows were made with.
    evaluating: Arc<Rules>,
    /// After the last record evaluated (its alerts are durable).
    position: Lsn,
    checkpointed: Lsn,
    last_checkpoint: Instant,
    commands: Receiver<Command>,
    stop: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
}

/// Matches to count on an alert.
struct Counted {
    first: OffsetDateTime,
    last: OffsetDateTime,
    event_ids: Vec<String>,
}

/// Alerts made or changed by one record, in order, each once.
#[derive(Default)]
struct Changed {
    ids: Vec<String>,
    seen: HashSet<String>,
    /// Alerts of rules without suppression, never open.
    single: HashMap<String, Alert>,
}

impl Changed {
    fn touch(&mut self, id: &str) {
        if self.seen.insert(id.to_string()) {
            self.ids.push(id.to_string());
        }
    }
}

impl Stage {
    fn run(mut self) {
        tracing::info!(position = %self.position, open_alerts = self.open.len(), "detection started");
        loop {
            while let Ok(cmd) = self.commands.try_recv() {
                if let Err(e) = self.command(cmd) {
                    return self.fail(e);
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            match self.reader.next(Duration::from_millis(50)) {
                Ok(Read::Record(d)) => {
                    if let Err(e) = self.process(d) {
                        return self.fail(e);
                    }
                }
                Ok(Read::Idle) => {}
                Ok(Read::Closed) => break,
                Err(e) => return self.fail(DetectError::Wal(e.to_string())),
            }
            self.metrics
                .lag_bytes
                .set(i64::try_from(self.wal.end().0.saturating_sub(self.position.0)).unwrap_or(i64::MAX));
            if self.position != self.checkpointed && self.last_checkpoint.elapsed() >= self.config.checkpoint_interval {
                self.checkpoint();
            }
        }
        self.checkpoint();
        tracing::info!(position = %self.position, "detection stopped");
    }

    fn fail(&mut self, e: DetectError) {
        tracing::error!(error = %e, position = %self.position, "detection stopped for good: restart replays from its checkpoint");
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        // Answer status changes that are waiting, and any sent later, until
        // `stop` (which joins this thread) is asked.
        while !self.stop.load(Ordering::SeqCst) {
            match self.commands.recv_timeout(Duration::from_millis(100)) {
                Ok(Command::SetStatus { reply, .. }) => {
                    let _ = reply.send(Err(DetectError::Stopped));
                }
                Ok(Command::Baseline { reply, .. }) => {
                    let _ = reply.send(None);
                }
                Ok(Command::Detectors { reply }) => {
                    let _ = reply.send(Vec::new());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        let mut open: Vec<OpenAlert> = self.open.values().cloned().collect();
        open.sort_by(|a, b| a.alert.id.cmp(&b.alert.id));
        let cp = Checkpoint {
            position: self.position.0,
            watermark: self.watermark,
            open,
            windows: self.windows.clone(),
            detectors: self.states.clone(),
        };
        self.metrics
            .detector_keys
            .set(i64::try_from(self.states.keys()).unwrap_or(i64::MAX));
        match cp.store(&self.config.state_dir) {
            Ok(()) => {
                self.checkpointed = self.position;
                self.consumer.advance(self.position);
            }
            Err(e) => tracing::error!(error = %e, "cannot save the detection checkpoint, will retry"),
        }
    }

    fn process(&mut self, d: Durable) -> Result<(), DetectError> {
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner()).clone();
        if !Arc::ptr_eq(&rules, &self.evaluating) {
            // Reloaded: windows of correlations that are gone go too.
            let ids: HashSet<&str> = rules.set.correlations().iter().map(|c| c.id.as_str()).collect();
            self.windows.retain(&ids);
            self.evaluating = rules.clone();
        }
        let mut changed = Changed::default();
        let now = OffsetDateTime::now_utc();
        let mut oldest_ingested: Option<OffsetDateTime> = None;
        // Which rules match each event needs no state: on every thread.
        let matched = match_all(&rules.set, &d.batch.events, self.config.threads);
        for (event, matched) in d.batch.events.iter().zip(matched) {
            if event.get_str("event.dataset") == Some(ALERTS_DATASET) {
                self.merge_stored(event);
                continue;
            }
            self.metrics.events.inc();
            let time = event_time(event).unwrap_or(now);
            self.watermark = Some(self.watermark.map_or(time, |w| w.max(time)));
            let mut dropped = Dropped::default();
            let evaluation =
                rules
                    .set
                    .correlate(event, matched, time, &mut self.windows, self.config.caps, &mut dropped);
            self.metrics.window_evictions.inc_by(dropped.evicted);
            self.metrics.window_too_late.inc_by(dropped.too_late);
            for &i in &evaluation.matched {
                if let Some(m) = rules.matches.get(i) {
                    m.fetch_add(1, Ordering::Relaxed);
                }
                self.metrics.matches.inc();
            }
            for hit in evaluation.hits {
                match hit {
                    Hit::Rule(_, rule) => self.count(rule, event, time, &mut changed),
                    Hit::Correlation(ci, c, fired) => {
                        if let Some(m) = rules.correlation_matches.get(ci) {
                            m.fetch_add(1, Ordering::Relaxed);
                        }
                        self.count_correlation(c, fired, &mut changed);
                    }
                }
                if let Some(t) = event.get("event.ingested").and_then(schemas::time::parse_value) {
                    oldest_ingested = Some(oldest_ingested.map_or(t, |o| o.min(t)));
                }
            }
            if !self.detectors.is_empty() {
                let detectors = self.detectors.clone();
                let (findings, evicted) = self.states.evaluate(&detectors, event, time);
                self.metrics.detector_evictions.inc_by(evicted);
                for f in findings {
                    self.metrics.detector_findings.inc();
                    if let Some(d) = detectors.get(f.detector) {
                        self.count_finding(d, f, &mut changed);
                    }
                    if let Some(t) = event.get("event.ingested").and_then(schemas::time::parse_value) {
                        oldest_ingested = Some(oldest_ingested.map_or(t, |o| o.min(t)));
                    }
                }
            }
        }
        self.metrics
            .window_entries
            .set(i64::try_from(self.windows.entries()).unwrap_or(i64::MAX));
        self.emit(changed)?;
        if let Some(t) = oldest_ingested {
            self.metrics
                .alert_delay_seconds
                .observe((OffsetDateTime::now_utc() - t).as_seconds_f64().max(0.0));
        }
        self.evict();
        self.position = d.end;
        Ok(())
    }

    /// Counts one match of `rule` on an alert: the open one of its group,
    /// or a new one.
    fn count(&mut self, rule: &Rule, event: &Event, time: OffsetDateTime, changed: &mut Changed) {
        let sup = rule.suppression.clone().unwrap_or_default();
        let duration = sup.duration.unwrap_or(self.config.suppression);
        let group: Vec<Value> = sup
            .group_by
            .iter()
            .map(|f| event.get(f).cloned().unwrap_or(Value::Null))
            .collect();
        let group_key = crate::correlation::group_key(&sup.group_by, &group);
        let event_id = event.get_str("event.id").unwrap_or_default().to_string();
        let key = (rule.id.clone(), group_key.clone());
        let counted = Counted {
            first: time,
            last: time,
            event_ids: vec![event_id.clone()],
        };
        if self.count_on_open(&key, duration, counted, changed) {
            return;
        }
        let id = alert_id(&rule.id, &group_key, &event_id);
        let alert = Alert {
            id: id.clone(),
            source: crate::alert::SIGMA.into(),
            rule_id: rule.id.clone(),
            rule_title: rule.title.clone(),
            level: rule.level.clone().unwrap_or_else(|| "informational".into()),
            tags: rule.tags.clone(),
            group_by: sup.group_by.clone(),
            group,
            group_key,
            first_time: time,
            last_time: time,
            count: 1,
            event_ids: vec![event_id],
            matched: rule.matched_values(event),
            status: Status::Open,
            comment: None,
            updated_by: None,
            updated_at: None,
        };
        self.open_alert(key, duration, alert, changed);
    }

    /// Counts matches on the open alert of `key` if they fall in its
    /// window; false when a new alert is needed.
    fn count_on_open(
        &mut self,
        key: &(String, String),
        duration: Duration,
        counted: Counted,
        changed: &mut Changed,
    ) -> bool {
        if duration.is_zero() {
            return false;
        }
        let Some(id) = self.by_group.get(key) else { return false };
        let Some(o) = self.open.get_mut(id) else { return false };
        let window = time::Duration::try_from(duration).unwrap_or(time::Duration::MAX);
        if (counted.first - o.opened).abs() > window {
            return false;
        }
        let a = &mut o.alert;
        a.count = a.count.saturating_add(counted.event_ids.len() as u64);
        a.first_time = a.first_time.min(counted.first);
        a.last_time = a.last_time.max(counted.last);
        let room = MAX_EVENT_IDS.saturating_sub(a.event_ids.len());
        a.event_ids.extend(counted.event_ids.into_iter().take(room));
        self.metrics.alerts_updated.inc();
        changed.touch(id);
        true
    }

    /// A new alert: open for `duration` (keyed by rule and group), or a
    /// one-off when the duration is zero.
    fn open_alert(&mut self, key: (String, String), duration: Duration, alert: Alert, changed: &mut Changed) {
        self.metrics.alerts_created.inc();
        let id = alert.id.clone();
        changed.touch(&id);
        if duration.is_zero() {
            changed.single.insert(id, alert);
            return;
        }
        if let Some(old) = self.by_group.insert(key, id.clone()) {
            self.open.remove(&old);
        }
        let opened = alert.first_time;
        self.open.insert(
            id,
            OpenAlert {
                alert,
                opened,
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            },
        );
    }

    /// Counts a detector's finding on an alert: the open one of its
    /// group, or a new one carrying the finding's evidence.
    fn count_finding(&mut self, d: &crate::detectors::Detector, f: Finding, changed: &mut Changed) {
        let duration = d
            .suppression
            .as_ref()
            .and_then(|s| s.duration)
            .unwrap_or(self.config.suppression);
        let group_key = crate::correlation::group_key(&f.group_by, &f.group);
        let first_event = f.event_ids.first().cloned().unwrap_or_default();
        let key = (d.id.clone(), group_key.clone());
        let counted = Counted {
            first: f.first,
            last: f.last,
            event_ids: f.event_ids.clone(),
        };
        if self.count_on_open(&key, duration, counted, changed) {
            return;
        }
        let alert = Alert {
            id: alert_id(&d.id, &group_key, &first_event),
            source: crate::alert::DETECTOR.into(),
            rule_id: d.id.clone(),
            rule_title: d.title.clone(),
            level: d.level.clone(),
            tags: d.tags.clone(),
            group_by: f.group_by,
            group: f.group,
            group_key,
            first_time: f.first,
            last_time: f.last,
            count: f.event_ids.len() as u64,
            event_ids: f.event_ids.into_iter().take(MAX_EVENT_IDS).collect(),
            matched: f.evidence,
            status: Status::Open,
            comment: None,
            updated_by: None,
            updated_at: None,
        };
        self.open_alert(key, duration, alert, changed);
    }

    /// Counts a correlation's firing on an alert, suppressed as rules are
    /// (by the correlation's group, for its `suppression.duration` or the
    /// default).
    fn count_correlation(&mut self, c: &Correlation, fired: Fired, changed: &mut Changed) {
        let duration = c
            .suppression
            .as_ref()
            .and_then(|s| s.duration)
            .unwrap_or(self.config.suppression);
        let first_event = fired.event_ids.first().cloned().unwrap_or_default();
        let key = (c.id.clone(), fired.group_key.clone());
        let n = fired.event_ids.len() as u64;
        let counted = Counted {
            first: fired.first,
            last: fired.last,
            event_ids: fired.event_ids.clone(),
        };
        if self.count_on_open(&key, duration, counted, changed) {
            return;
        }
        let id = alert_id(&c.id, &fired.group_key, &first_event);
        let mut matched = std::collections::BTreeMap::new();
        matched.insert(
            format!("correlation.{}", correlation_measure(c)),
            serde_json::json!(fired.value),
        );
        let alert = Alert {
            id: id.clone(),
            source: crate::alert::SIGMA.into(),
            rule_id: c.id.clone(),
            rule_title: c.title.clone(),
            level: c.level.clone().unwrap_or_else(|| "informational".into()),
            tags: c.tags.clone(),
            group_by: fired.group_by,
            group: fired.group,
            group_key: fired.group_key,
            first_time: fired.first,
            last_time: fired.last,
            count: n,
            event_ids: fired.event_ids.into_iter().take(MAX_EVENT_IDS).collect(),
            matched,
            status: Status::Open,
            comment: None,
            updated_by: None,
            updated_at: None,
        };
        self.open_alert(key, duration, alert, changed);
    }

    /// Appends the new version of every changed alert to the WAL.
    fn emit(&mut self, mut changed: Changed) -> Result<(), DetectError> {
        let mut events = Vec::new();
        for id in &changed.ids {
            let alert = match changed.single.remove(id) {
                Some(a) => Some(a),
                None => self.open.get(id).map(|o| o.alert.clone()),
            };
            if let Some(a) = alert {
                events.push(a.to_event());
            }
        }
        for chunk in events.chunks(MAX_ALERTS_PER_RECORD) {
            self.wal
                .append_blocking(Batch::encode(chunk.to_vec()))
                .map_err(|e| DetectError::Wal(e.to_string()))?;
        }
        self.metrics.open_alerts.set(self.open.len() as i64);
        Ok(())
    }

    /// An alert version read back from the WAL: a status change made after
    /// the checkpoint, applied again as the replay passes it.
    fn merge_stored(&mut self, event: &Event) {
        let Some(stored) = Alert::from_event(event) else {
            return;
        };
        let Some(o) = self.open.get_mut(&stored.id) else {
            return;
        };
        if stored.updated_at.is_some() && stored.updated_at > o.alert.updated_at {
            o.alert.status = stored.status;
            o.alert.comment = stored.comment;
            o.alert.updated_by = stored.updated_by;
            o.alert.updated_at = stored.updated_at;
            if stored.status == Status::Closed {
                self.close(&stored.id);
            }
        }
    }

    fn close(&mut self, id: &str) {
        if let Some(o) = self.open.remove(id) {
            let key = (o.alert.rule_id, o.alert.group_key);
            if self.by_group.get(&key).is_some_and(|g| g == id) {
                self.by_group.remove(&key);
            }
        }
    }

    /// Closes alerts whose window the event time has passed, and the
    /// oldest ones past `max_open_alerts`.
    fn evict(&mut self) {
        if let Some(w) = self.watermark {
            let expired: Vec<String> = self
                .open
                .values()
                .filter(|o| {
                    let d = time::Duration::milliseconds(i64::try_from(o.duration_ms).unwrap_or(i64::MAX));
                    o.opened.checked_add(d).is_some_and(|end| end < w)
                })
                .map(|o| o.alert.id.clone())
                .collect();
            for id in expired {
                self.close(&id);
            }
        }
        let cap = self.config.max_open_alerts.max(1);
        if self.open.len() > cap {
            let mut by_age: Vec<(OffsetDateTime, String)> =
                self.open.values().map(|o| (o.opened, o.alert.id.clone())).collect();
            by_age.sort();
            // Down to 90% of the cap, so a flood does not sort on every match.
            let excess = self.open.len() - cap * 9 / 10;
            for (_, id) in by_age.into_iter().take(excess) {
                self.close(&id);
                self.metrics.alerts_evicted.inc();
            }
        }
        self.metrics.open_alerts.set(self.open.len() as i64);
    }

    fn command(&mut self, cmd: Command) -> Result<(), DetectError> {
        match cmd {
            Command::Detectors { reply } => {
                let now = self.watermark.unwrap_or_else(OffsetDateTime::now_utc);
                let _ = reply.send(self.states.summaries(&self.detectors, now));
                Ok(())
            }
            Command::Baseline { detector, key, reply } => {
                let _ = reply.send(self.states.baseline(&detector, &key));
                Ok(())
            }
            Command::SetStatus {
                id,
                change,
                stored,
                reply,
            } => {
                let mut alert = match (self.open.get(&id), stored) {
                    (Some(o), _) => o.alert.clone(),
                    (None, Some(s)) => *s,
                    (None, None) => {
                        let _ = reply.send(Err(DetectError::NotFound { id }));
                        return Ok(());
                    }
                };
                alert.status = change.status;
                alert.comment = change.comment;
                alert.updated_by = Some(change.by);
                // Strictly after the previous change, so replay orders them.
                let now = OffsetDateTime::now_utc();
                alert.updated_at = Some(match alert.updated_at {
                    Some(prev) if prev >= now => prev + time::Duration::microseconds(1),
                    _ => now,
                });
                let appended = self.wal.append_blocking(Batch::encode(vec![alert.to_event()]));
                if let Err(e) = appended {
                    let _ = reply.send(Err(DetectError::Wal(e.to_string())));
                    return Err(DetectError::Wal(e.to_string()));
                }
                if let Some(o) = self.open.get_mut(&id) {
                    o.alert = alert.clone();
                }
                if alert.status == Status::Closed {
                    self.close(&id);
                }
                // Saved now, so a replay re-making this alert's versions
                // from records before the change carries the new status.
                self.checkpoint();
                let _ = reply.send(Ok(alert));
                Ok(())
            }
        }
    }
}

/// The rules matching each event (none for alerts), on up to `threads`
/// threads, each taking a contiguous share of the events.
fn match_all(set: &RuleSet, events: &[Event], threads: usize) -> Vec<Vec<usize>> {
    let one = |e: &Event| -> Vec<usize> {
        if e.get_str("event.dataset") == Some(ALERTS_DATASET) {
            return Vec::new();
        }
        set.matching_indexed(e).map(|(i, _)| i).collect()
    };
    let threads = threads.max(1).min(events.len() / 64 + 1);
    if threads == 1 {
        return events.iter().map(one).collect();
    }
    let chunk = events.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = events
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// What a correlation alert's `matched` names the measured quantity.
fn correlation_measure(c: &Correlation) -> &'static str {
    use crate::correlation::Kind;
    match c.kind {
        Kind::EventCount => "event_count",
        Kind::ValueCount => "value_count",
        Kind::Temporal | Kind::TemporalOrdered => "rules_matched",
        Kind::ValueSum => "value_sum",
        Kind::ValueAvg => "value_avg",
        Kind::ValuePercentile => "value_percentile",
    }
}

fn event_time(event: &Event) -> Option<OffsetDateTime> {
    event.get("@timestamp").and_then(schemas::time::parse_value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Threads split a record's events but the matches come back in the
    /// events' order.
    #[test]
    fn matching_on_several_threads_keeps_the_events_order() {
        let text = "title: t\nid: r\nlogsource: {product: x}\ndetection:\n  sel: {n|gt: 500}\n  condition: sel\n";
        let rules = crate::rule::parse_file(text, "t.yml")
            .into_iter()
            .map(|d| match d.unwrap() {
                crate::rule::Document::Rule(r) => *r,
                _ => unreachable!(),
            })
            .collect();
        let set = RuleSet::new(rules);
        let events: Vec<Event> = (0..1000)
            .map(|n| Event::from_json(serde_json::json!({"n": n})).unwrap())
            .collect();
        let one = match_all(&set, &events, 1);
        let four = match_all(&set, &events, 4);
        assert_eq!(one, four);
        assert_eq!(four.iter().position(|m| !m.is_empty()), Some(501));
        assert_eq!(four.iter().filter(|m| !m.is_empty()).count(), 499);
    }
}
