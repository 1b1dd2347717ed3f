//! Detectors: stateful checks for what no rule names in advance, run on
//! the stream beside the Sigma rules, with their state in detection's
//! checkpoint.
//!
//! - `threshold`: a count, or a distinct count of a field, per group over
//!   a sliding event-time window (brute force: failures per `source.ip`;
//!   password spray: distinct `user.name` per `source.ip`).
//! - `untrusted_source`: a call from an address outside the trusted ranges
//!   of its service (or user, or token): the allow lists users keep.
//! - `new_terms`: a combination of one to three fields not seen within a
//!   history window (a caller on an endpoint it never used), after a
//!   learning period.
//! - `rate_spike`: per key, the count in fixed event-time buckets (or the
//!   share of errors among them) against a learned baseline: an
//!   exponentially weighted mean and variance per key; it fires when the
//!   current bucket is `k` deviations above the mean and over a minimum
//!   count, after a learning period of buckets.
//!
//! Each is configured as `[[detectors]]` in `tripline.toml`; a detector's
//! state is bounded by `max_keys` (the least recently seen key goes first,
//! counted).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use schemas::{Catalog, Event};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::rule::{timespan, Suppression};
use crate::DetectError;

/// Most distinct values an alert's evidence lists.
const MAX_EVIDENCE_VALUES: usize = 20;

/// A detector as configured. (Unknown keys are refused by [`KindSpec`],
/// which receives every key this struct does not take.)
#[derive(Debug, Clone, Deserialize)]
pub struct DetectorSpec {
    /// Letters, digits, `-`, `_` and `.`; the alerts' `rule.id`.
    pub id: String,
    pub title: String,
    #[serde(default = "default_level")]
    pub level: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only events matching this query (the search syntax).
    #[serde(default)]
    pub filter: Option<String>,
    /// How long repeated firings for one group count on one alert
    /// (`"1h"`); default: `detect.suppression_secs`.
    #[serde(default)]
    pub suppression: Option<String>,
    /// Keys (groups, terms) kept at most; the least recently seen go.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    #[serde(flatten)]
    pub kind: KindSpec,
}

fn default_level() -> String {
    "medium".into()
}
fn default_max_keys() -> usize {
    100_000
}

/// What a detector looks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum KindSpec {
    /// `count` events (or `distinct` values of a field reaching
    /// `min_distinct`) per `group_by` within `window`.
    Threshold {
        group_by: Vec<String>,
        window: String,
        #[serde(default)]
        count: Option<u64>,
        #[serde(default)]
        distinct: Option<String>,
        #[serde(default)]
        min_distinct: Option<u64>,
    },
    /// A `source` address (default `source.ip`) outside the ranges trusted
    /// for the event's `key` value (`"*"`: every other value).
    UntrustedSource {
        key: String,
        #[serde(default = "default_source")]
        source: String,
        trusted: BTreeMap<String, Vec<IpNet>>,
    },
    /// `fields` (one to three) with values not seen within `history`,
    /// alerting only after `learning` from the first event seen.
    NewTerms {
        fields: Vec<String>,
        history: String,
        #[serde(default = "default_learning")]
        learning: String,
    },
    /// Per value of `key` (one to three fields), events per `bucket`
    /// against the key's baseline; with `errors` (a query), the share of
    /// events matching it instead.
    RateSpike {
        key: Vec<String>,
        #[serde(default = "default_bucket")]
        bucket: String,
        /// Deviations above the mean that fire.
        #[serde(default = "default_k")]
        k: f64,
        /// Fewer events (errors, with `errors`) in the bucket never fire.
        #[serde(default = "default_min_count")]
        min_count: u64,
        /// Buckets of a key seen before it may fire.
        #[serde(default = "default_learning_buckets")]
        learning_buckets: u32,
        /// The baseline's memory, in buckets (the EWMA's span: weight
        /// 2 / (span + 1)).
        #[serde(default = "default_span")]
        baseline_buckets: u32,
        #[serde(default)]
        errors: Option<String>,
    },
}

fn default_bucket() -> String {
    "1m".into()
}
fn default_k() -> f64 {
    6.0
}
fn default_min_count() -> u64 {
    20
}
fn default_learning_buckets() -> u32 {
    30
}
fn default_span() -> u32 {
    60
}

fn default_source() -> String {
    "source.ip".into()
}
fn default_learning() -> String {
    "1d".into()
}

/// A compiled detector.
#[derive(Debug, Clone)]
pub struct Detector {
    pub id: String,
    pub title: String,
    pub level: String,
    pub tags: Vec<String>,
    pub suppression: Option<Suppression>,
    pub max_keys: usize,
    filter: Option<query::filter::Filter>,
    /// The filter as written, for seeding from the index.
    filter_text: Option<String>,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Threshold {
        group_by: Vec<String>,
        window: Duration,
        count: Option<u64>,
        distinct: Option<(String, u64)>,
    },
    UntrustedSource {
        key: String,
        source: String,
        trusted: BTreeMap<String, Vec<IpNet>>,
    },
    NewTerms {
        fields: Vec<String>,
        history: Duration,
        learning: Duration,
    },
    RateSpike {
        key: Vec<String>,
        bucket: Duration,
        k: f64,
        min_count: u64,
        learning_buckets: u32,
        alpha: f64,
        errors: Option<Box<query::filter::Filter>>,
    },
}

impl DetectorSpec {
    /// Checks and compiles; the error names the detector and why.
    pub fn compile(&self, catalog: &Catalog) -> Result<Detector, DetectError> {
        let bad = |why: String| DetectError::Refused {
            file: "tripline.toml [[detectors]]".into(),
            rule: self.id.clone(),
            reason: why,
        };
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(bad("the id must be 1 to 64 letters, digits, '-', '_' or '.'".into()));
        }
        if crate::alert::level_rank(&self.level).is_none() {
            return Err(bad(format!(
                "level {:?} is not informational, low, medium, high or critical",
                self.level
            )));
        }
        if self.max_keys == 0 {
            return Err(bad("max_keys must be positive".into()));
        }
        let span = |name: &str, s: &str| {
            timespan(s).ok_or_else(|| bad(format!("{name} {s:?} is not a timespan such as 30s, 5m, 1h or 14d")))
        };
        let suppression = match &self.suppression {
            None => None,
            Some(s) => Some(Suppression {
                group_by: Vec::new(),
                duration: Some(span("suppression", s)?),
            }),
        };
        let filter = match &self.filter {
            None => None,
            Some(q) => {
                let expr = query::lang::parse(q).map_err(|e| bad(format!("filter: {e}")))?;
                Some(query::filter::Filter::new(&expr, catalog).map_err(|e| bad(format!("filter: {e}")))?)
            }
        };
        let kind = match &self.kind {
            KindSpec::Threshold {
                group_by,
                window,
                count,
                distinct,
                min_distinct,
            } => {
                let window = span("window", window)?;
                if window.is_zero() {
                    return Err(bad("window must be positive".into()));
                }
                let distinct = match (distinct, min_distinct) {
                    (Some(f), Some(n)) if *n >= 1 => Some((f.clone(), *n)),
                    (None, None) => None,
                    _ => return Err(bad("distinct and min_distinct (at least 1) go together".into())),
                };
                if count.is_none() && distinct.is_none() {
                    return Err(bad("a threshold needs count, or distinct and min_distinct".into()));
                }
                if count == &Some(0) {
                    return Err(bad("count must be at least 1".into()));
                }
                Kind::Threshold {
                    group_by: group_by.clone(),
                    window,
                    count: *count,
                    distinct,
                }
            }
            KindSpec::UntrustedSource { key, source, trusted } => {
                if trusted.is_empty() {
                    return Err(bad("trusted must name at least one key (or \"*\")".into()));
                }
                Kind::UntrustedSource {
                    key: key.clone(),
                    source: source.clone(),
                    trusted: trusted.clone(),
                }
            }
            KindSpec::NewTerms {
                fields,
                history,
                learning,
            } => {
                if fields.is_empty() || fields.len() > 3 {
                    return Err(bad("new_terms takes one to three fields".into()));
                }
                let history = span("history", history)?;
                if history.is_zero() {
                    return Err(bad("history must be positive".into()));
                }
                Kind::NewTerms {
                    fields: fields.clone(),
                    history,
                    learning: span("learning", learning)?,
                }
            }
            KindSpec::RateSpike {
                key,
                bucket,
                k,
                min_count,
                learning_buckets,
                baseline_buckets,
                errors,
            } => {
                if key.is_empty() || key.len() > 3 {
                    return Err(bad("rate_spike takes one to three key fields".into()));
                }
                let bucket = span("bucket", bucket)?;
                if bucket < Duration::from_secs(1) {
                    return Err(bad("bucket must be at least 1s".into()));
                }
                if !(k.is_finite() && *k > 0.0) {
                    return Err(bad("k must be a positive number of deviations".into()));
                }
                if *baseline_buckets < 2 {
                    return Err(bad("baseline_buckets must be at least 2".into()));
                }
                let errors = match errors {
                    None => None,
                    Some(q) => {
                        let expr = query::lang::parse(q).map_err(|e| bad(format!("errors: {e}")))?;
                        Some(Box::new(
                            query::filter::Filter::new(&expr, catalog).map_err(|e| bad(format!("errors: {e}")))?,
                        ))
                    }
                };
                Kind::RateSpike {
                    key: key.clone(),
                    bucket,
                    k: *k,
                    min_count: *min_count,
                    learning_buckets: *learning_buckets,
                    alpha: 2.0 / (f64::from(*baseline_buckets) + 1.0),
                    errors,
                }
            }
        };
        Ok(Detector {
            id: self.id.clone(),
            title: self.title.clone(),
            level: self.level.to_lowercase(),
            tags: self.tags.clone(),
            suppression,
            max_keys: self.max_keys,
            filter,
            filter_text: self.filter.clone(),
            kind,
        })
    }
}

/// What a detector found in one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Index of the detector.
    pub detector: usize,
    /// The fields and values the alert groups on.
    pub group_by: Vec<String>,
    pub group: Vec<Value>,
    /// First and last event time of the evidence.
    pub first: OffsetDateTime,
    pub last: OffsetDateTime,
    /// The events behind it (the window's, for a threshold).
    pub event_ids: Vec<String>,
    /// What a responder needs: counts, values, ranges.
    pub evidence: BTreeMap<String, Value>,
}

impl Detector {
    /// For a `new_terms` detector: the query (its filter, every field
    /// present) and the history window whose indexed events seed its seen
    /// terms at its first start.
    pub fn seed_query(&self) -> Option<(query::Expr, Duration)> {
        let Kind::NewTerms { fields, history, .. } = &self.kind else {
            return None;
        };
        let mut all: Vec<query::Expr> = fields
            .iter()
            .map(|f| query::Expr::Clause {
                field: Some(f.clone()),
                value: query::lang::Value::Exists,
            })
            .collect();
        if let Some(f) = &self.filter_text {
            all.push(query::lang::parse(f).ok()?);
        }
        Some((query::Expr::And(all), *history))
    }
}

/// One entry of a threshold window.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// Event time, unix nanoseconds.
    t: i128,
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<String>,
}

/// A key's rate baseline and its current bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Rate {
    /// Start of the current bucket (unix nanoseconds).
    pub bucket: i128,
    /// Events (and errors, in ratio mode) in it so far.
    pub count: u64,
    pub errors: u64,
    /// Whether it fired in the current bucket.
    pub fired: bool,
    /// The baseline: EWMA mean and variance of past buckets' counts (or
    /// error shares), and how many buckets it has seen.
    pub mean: f64,
    pub var: f64,
    pub buckets: u32,
}

/// Empty buckets folded into a baseline at most when a key comes back.
const MAX_GAP_BUCKETS: u32 = 10_000;

impl Rate {
    /// Folds one closed bucket's value into the baseline; a value above
    /// the firing line counts as that line, so a spike does not teach the
    /// baseline that spikes are normal.
    fn learn(&mut self, value: f64, alpha: f64, cap: f64) {
        let v = value.min(cap);
        if self.buckets == 0 {
            self.mean = v;
            self.var = 0.0;
        } else {
            let d = v - self.mean;
            self.mean += alpha * d;
            self.var = (1.0 - alpha) * (self.var + alpha * d * d);
        }
        self.buckets = self.buckets.saturating_add(1);
    }

    /// The deviation the firing line uses: the learned one, but never
    /// below the noise a count (Poisson) or a share (binomial, over `n`
    /// events) has by chance, so a flat series does not fire on +1.
    fn deviation(&self, ratio: Option<u64>) -> f64 {
        let noise = match ratio {
            None => self.mean.max(1.0).sqrt(),
            Some(n) => {
                let p = self.mean.clamp(0.01, 0.99);
                (p * (1.0 - p) / (n.max(1) as f64)).sqrt()
            }
        };
        self.var.max(0.0).sqrt().max(noise)
    }
}

/// A detector's state, saved in detection's checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DetectorState {
    /// Threshold windows by group key.
    #[serde(default)]
    windows: HashMap<String, VecDeque<Entry>>,
    /// New terms: each term and when it was last seen (unix nanoseconds).
    #[serde(default)]
    seen: HashMap<String, i128>,
    /// When the detector saw its first event (learning starts).
    #[serde(default)]
    started: Option<i128>,
    /// Last time each key was touched, for eviction (unix nanoseconds).
    #[serde(default)]
    touched: HashMap<String, i128>,
    /// Rate baselines by key.
    #[serde(default)]
    rates: HashMap<String, Rate>,
    /// Findings so far, and the event time of the last.
    #[serde(default)]
    findings: u64,
    #[serde(default)]
    last_finding: Option<i128>,
}

/// The state of every detector, by id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct States {
    #[serde(default)]
    by_id: BTreeMap<String, DetectorState>,
}

/// What the API shows of a detector.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub id: String,
    pub title: String,
    pub kind: &'static str,
    /// `learning` (new terms, before the learning period ends) or
    /// `active`.
    pub state: &'static str,
    pub keys: usize,
    pub max_keys: usize,
    /// An estimate of the memory its state takes: keys, entries and the
    /// maps' overhead (`tripline-detector-memory` measures the real one).
    pub memory_bytes: usize,
    /// Findings since the state began (before suppression), and the
    /// event time of the last.
    pub findings: u64,
    pub last_finding: Option<String>,
}

/// Most entries one threshold group keeps.
const MAX_ENTRIES: usize = 10_000;

fn nanos(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos()
}

use crate::correlation::from_nanos;

fn dur_nanos(d: Duration) -> i128 {
    i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl States {
    /// Keeps the state of the detectors in `ids` only (after a reload).
    pub fn retain(&mut self, ids: &[&str]) {
        self.by_id.retain(|k, _| ids.contains(&k.as_str()));
    }

    /// Keys held in every detector.
    pub fn keys(&self) -> usize {
        self.by_id
            .values()
            .map(|s| s.windows.len() + s.seen.len() + s.rates.len())
            .sum()
    }

    /// What the API shows of each detector.
    pub fn summaries(&self, detectors: &[Detector], now: OffsetDateTime) -> Vec<Summary> {
        detectors
            .iter()
            .map(|d| {
                let s = self.by_id.get(&d.id);
                let keys = s.map_or(0, |s| s.windows.len() + s.seen.len() + s.rates.len());
                let (kind, learning) = match &d.kind {
                    Kind::Threshold { .. } => ("threshold", false),
                    Kind::UntrustedSource { .. } => ("untrusted_source", false),
                    Kind::RateSpike { .. } => ("rate_spike", false),
                    Kind::NewTerms { learning, .. } => (
                        "new_terms",
                        s.and_then(|s| s.started)
                            .is_none_or(|st| nanos(now) < st.saturating_add(dur_nanos(*learning))),
                    ),
                };
                Summary {
                    id: d.id.clone(),
                    title: d.title.clone(),
                    kind,
                    state: if learning { "learning" } else { "active" },
                    keys,
                    max_keys: d.max_keys,
                    memory_bytes: s.map_or(0, DetectorState::approx_bytes),
                    findings: s.map_or(0, |s| s.findings),
                    last_finding: s
                        .and_then(|s| s.last_finding)
                        .map(|t| schemas::time::format(from_nanos(t))),
                }
            })
            .collect()
    }

    /// Whether `detector` has no state yet (new, or its state was lost).
    pub fn is_new(&self, detector: &str) -> bool {
        !self.by_id.contains_key(detector)
    }

    /// Seeds a `new_terms` detector's seen terms from history (indexed
    /// events since `since`, each with its time): its learning counts from
    /// `since`, so history that covers the learning period ends it.
    pub fn seed<'a>(
        &mut self,
        detector: &Detector,
        since: OffsetDateTime,
        events: impl IntoIterator<Item = (&'a Event, OffsetDateTime)>,
    ) -> usize {
        let Kind::NewTerms { fields, .. } = &detector.kind else {
            return 0;
        };
        let state = self.by_id.entry(detector.id.clone()).or_default();
        state.started = Some(nanos(since));
        for (event, time) in events {
            if detector.filter.as_ref().is_some_and(|f| !f.matches(event)) {
                continue;
            }
            let Some(group) = fields.iter().map(|f| event.get(f).cloned()).collect::<Option<Vec<_>>>() else {
                continue;
            };
            let term = crate::correlation::group_key(fields, &group);
            let t = nanos(time);
            let last = state.seen.get(&term).copied().unwrap_or(i128::MIN).max(t);
            state.seen.insert(term.clone(), last);
            state.touched.insert(term, last);
        }
        state.bound(detector.max_keys);
        state.seen.len()
    }

    /// The rate baseline of one key of a `rate_spike` detector (`key` as
    /// an alert's group key: `service.name=web`).
    pub fn baseline(&self, detector: &str, key: &str) -> Option<Rate> {
        self.by_id.get(detector)?.rates.get(key).cloned()
    }

    /// Runs every detector on `event` (at event time `time`), in order;
    /// returns what they found and how many keys caps pushed out.
    pub fn evaluate(&mut self, detectors: &[Detector], event: &Event, time: OffsetDateTime) -> (Vec<Finding>, u64) {
        let mut found = Vec::new();
        let mut evicted = 0;
        for (i, d) in detectors.iter().enumerate() {
            if d.filter.as_ref().is_some_and(|f| !f.matches(event)) {
                continue;
            }
            // No key allocation per event once the detector has state.
            if !self.by_id.contains_key(&d.id) {
                self.by_id.insert(d.id.clone(), DetectorState::default());
            }
            let Some(state) = self.by_id.get_mut(&d.id) else {
                continue;
            };
            if let Some(f) = d.run(i, state, event, time) {
                state.findings = state.findings.saturating_add(1);
                state.last_finding = Some(nanos(f.last));
                found.push(f);
            }
            evicted += state.bound(d.max_keys);
        }
        (found, evicted)
    }
}

impl DetectorState {
    /// Bytes its keys, entries and maps take, roughly: each key twice (its
    /// map and the eviction map) with a hash table slot each, plus the
    /// value.
    fn approx_bytes(&self) -> usize {
        const SLOT: usize = 48;
        let key = |k: &String| 2 * (k.len() + SLOT);
        let windows: usize = self
            .windows
            .iter()
            .map(|(k, v)| {
                key(k)
                    + v.iter()
                        .map(|e| std::mem::size_of::<Entry>() + e.id.len() + e.v.as_ref().map_or(0, String::len))
                        .sum::<usize>()
            })
            .sum();
        let seen: usize = self.seen.keys().map(|k| key(k) + 16).sum();
        let rates: usize = self.rates.keys().map(|k| key(k) + std::mem::size_of::<Rate>()).sum();
        windows + seen + rates
    }

    /// Evicts the least recently touched keys above `max`; returns how many.
    fn bound(&mut self, max: usize) -> u64 {
        let held = self.windows.len() + self.seen.len() + self.rates.len();
        if held <= max {
            return 0;
        }
        // Sort once and drop a tenth more than needed, so a full detector
        // does not sort on every new key.
        let target = max - max / 10;
        let mut by_age: Vec<(i128, String)> = self.touched.iter().map(|(k, t)| (*t, k.clone())).collect();
        by_age.sort_unstable();
        let mut n = 0;
        for (_, k) in by_age.into_iter().take(held.saturating_sub(target)) {
            self.touched.remove(&k);
            if self.windows.remove(&k).is_some() || self.seen.remove(&k).is_some() || self.rates.remove(&k).is_some() {
                n += 1;
            }
        }
        n
    }
}

impl Detector {
    fn run(&self, index: usize, state: &mut DetectorState, event: &Event, time: OffsetDateTime) -> Option<Finding> {
        let t = nanos(time);
        let event_id = event.get_str("event.id").unwrap_or_default().to_string();
        match &self.kind {
            Kind::Threshold {
                group_by,
                window,
                count,
                distinct,
            } => {
                let group: Vec<Value> = group_by.iter().map(|f| event.get(f).cloned()).collect::<Option<_>>()?;
                let value = match distinct {
                    Some((f, _)) => Some(event.get(f).and_then(text_of)?),
                    None => None,
                };
                let key = crate::correlation::group_key(group_by, &group);
                let entries = state.windows.entry(key.clone()).or_default();
                let at = entries.partition_point(|e| e.t <= t);
                entries.insert(
                    at,
                    Entry {
                        t,
                        id: event_id,
                        v: value,
                    },
                );
                if entries.len() > MAX_ENTRIES {
                    entries.pop_front();
                }
                let newest = entries.back().map_or(t, |e| e.t);
                let span = dur_nanos(*window);
                while entries.front().is_some_and(|e| e.t < newest.saturating_sub(span)) {
                    entries.pop_front();
                }
                state.touched.insert(key.clone(), newest);
                let n = entries.len() as u64;
                let mut values: Vec<&str> = entries.iter().filter_map(|e| e.v.as_deref()).collect();
                values.sort_unstable();
                values.dedup();
                let count_ok = count.is_none_or(|c| n >= c);
                let distinct_ok = distinct.as_ref().is_none_or(|(_, m)| values.len() as u64 >= *m);
                if !(count_ok && distinct_ok) {
                    return None;
                }
                let mut evidence = BTreeMap::new();
                evidence.insert("count".into(), json!(n));
                evidence.insert("window".into(), json!(format!("{}s", window.as_secs())));
                if let Some((f, _)) = distinct {
                    evidence.insert("distinct_field".into(), json!(f));
                    evidence.insert("distinct_count".into(), json!(values.len()));
                    evidence.insert(
                        "distinct_values".into(),
                        json!(values.iter().take(MAX_EVIDENCE_VALUES).collect::<Vec<_>>()),
                    );
                }
                let finding = Finding {
                    detector: index,
                    group_by: group_by.clone(),
                    group,
                    first: from_nanos(entries.front().map_or(t, |e| e.t)),
                    last: from_nanos(newest),
                    event_ids: entries.iter().map(|e| e.id.clone()).collect(),
                    evidence,
                };
                // One burst, one firing: the group starts over.
                state.windows.remove(&key);
                state.touched.remove(&key);
                Some(finding)
            }
            Kind::UntrustedSource { key, source, trusted } => {
                let key_value = event.get(key).and_then(text_of)?;
                let ranges = trusted.get(&key_value).or_else(|| trusted.get("*"))?;
                let addr = event.get_str(source)?.trim().parse::<IpAddr>().ok()?.to_canonical();
                if ranges.iter().any(|net| net.contains(&addr)) {
                    return None;
                }
                let mut evidence = BTreeMap::new();
                evidence.insert("source".into(), json!(addr.to_string()));
                evidence.insert(
                    "trusted".into(),
                    json!(ranges.iter().map(ToString::to_string).collect::<Vec<_>>()),
                );
                Some(Finding {
                    detector: index,
                    group_by: vec![key.clone(), source.clone()],
                    group: vec![json!(key_value), json!(addr.to_string())],
                    first: time,
                    last: time,
                    event_ids: vec![event_id],
                    evidence,
                })
            }
            Kind::RateSpike {
                key,
                bucket,
                k,
                min_count,
                learning_buckets,
                alpha,
                errors,
            } => {
                let group: Vec<Value> = key.iter().map(|f| event.get(f).cloned()).collect::<Option<_>>()?;
                let name = crate::correlation::group_key(key, &group);
                let width = dur_nanos(*bucket).max(1);
                let start = t.div_euclid(width) * width;
                let rate = state.rates.entry(name.clone()).or_default();
                let ratio = errors.is_some();
                let line = |r: &Rate, n: u64| r.mean + k * r.deviation(ratio.then_some(n));
                if rate.buckets == 0 && rate.count == 0 {
                    rate.bucket = start;
                } else if start > rate.bucket {
                    // Close the current bucket, and the empty ones after it.
                    let closed = if ratio {
                        rate.errors as f64 / (rate.count.max(1) as f64)
                    } else {
                        rate.count as f64
                    };
                    // Once learned, a spike counts as the firing line.
                    let cap = if rate.buckets >= *learning_buckets {
                        line(rate, rate.count)
                    } else {
                        f64::INFINITY
                    };
                    rate.learn(closed, *alpha, cap);
                    if !ratio {
                        let gap = (start - rate.bucket) / width - 1;
                        for _ in 0..u32::try_from(gap).unwrap_or(u32::MAX).min(MAX_GAP_BUCKETS) {
                            rate.learn(0.0, *alpha, f64::INFINITY);
                        }
                    }
                    rate.bucket = start;
                    rate.count = 0;
                    rate.errors = 0;
                    rate.fired = false;
                } else if start < rate.bucket {
                    // Before the current bucket: its bucket is closed.
                    return None;
                }
                rate.count += 1;
                let is_error = errors.as_ref().is_some_and(|f| f.matches(event));
                if is_error {
                    rate.errors += 1;
                }
                state.touched.insert(name, t);
                let (observed, hits) = if ratio {
                    (rate.errors as f64 / rate.count as f64, rate.errors)
                } else {
                    (rate.count as f64, rate.count)
                };
                let threshold = line(rate, rate.count);
                if rate.fired || rate.buckets < *learning_buckets || hits < *min_count || observed <= threshold {
                    return None;
                }
                rate.fired = true;
                let deviation = rate.deviation(ratio.then_some(rate.count));
                let mut evidence = BTreeMap::new();
                evidence.insert(if ratio { "error_share" } else { "count" }.into(), json!(observed));
                if ratio {
                    evidence.insert("errors".into(), json!(rate.errors));
                    evidence.insert("count".into(), json!(rate.count));
                }
                evidence.insert("baseline_mean".into(), json!(rate.mean));
                evidence.insert("baseline_deviation".into(), json!(deviation));
                evidence.insert("score".into(), json!((observed - rate.mean) / deviation));
                evidence.insert(
                    "bucket_start".into(),
                    json!(schemas::time::format(from_nanos(rate.bucket))),
                );
                evidence.insert("bucket".into(), json!(format!("{}s", bucket.as_secs())));
                Some(Finding {
                    detector: index,
                    group_by: key.clone(),
                    group,
                    first: from_nanos(rate.bucket),
                    last: time,
                    event_ids: vec![event_id],
                    evidence,
                })
            }
            Kind::NewTerms {
                fields,
                history,
                learning,
            } => {
                let group: Vec<Value> = fields.iter().map(|f| event.get(f).cloned()).collect::<Option<_>>()?;
                let term = crate::correlation::group_key(fields, &group);
                let started = *state.started.get_or_insert(t);
                let since = t.saturating_sub(dur_nanos(*history));
                let known = state.seen.get(&term).is_some_and(|last| *last >= since);
                let last = state.seen.get(&term).copied().unwrap_or(i128::MIN).max(t);
                state.seen.insert(term.clone(), last);
                state.touched.insert(term, last);
                let learned = t >= started.saturating_add(dur_nanos(*learning));
                if known || !learned {
                    return None;
                }
                let mut evidence = BTreeMap::new();
                evidence.insert(
                    "history_since".into(),
                    json!(schemas::time::format(from_nanos(since.max(started)))),
                );
                Some(Finding {
                    detector: index,
                    group_by: fields.clone(),
                    group,
                    first: time,
                    last: time,
                    event_ids: vec![event_id],
                    evidence,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(toml_text: &str) -> Detector {
        let spec: DetectorSpec = toml::from_str(toml_text).expect("a detector");
        spec.compile(&Catalog::builtin()).expect("valid")
    }

    fn ev(minute: i64, v: Value) -> (Event, OffsetDateTime) {
        let t = OffsetDateTime::from_unix_timestamp(1_764_000_000 + minute * 60).expect("a time");
        let mut e = Event::from_json(v).expect("an event");
        e.insert("event.id", format!("e{minute}"));
        (e, t)
    }

    /// Feeds (minute, event) in order; returns the minutes that fired.
    fn fired(d: &Detector, events: &[(i64, Value)]) -> Vec<i64> {
        let mut states = States::default();
        let detectors = std::slice::from_ref(d);
        events
            .iter()
            .filter_map(|(m, v)| {
                let (e, t) = ev(*m, v.clone());
                (!states.evaluate(detectors, &e, t).0.is_empty()).then_some(*m)
            })
            .collect()
    }

    #[test]
    fn a_threshold_fires_once_per_burst_in_event_time() {
        let brute = compile(
            "id = \"brute\"\ntitle = \"Brute force\"\nkind = \"threshold\"\ngroup_by = [\"source.ip\"]\n\
             window = \"5m\"\ncount = 3\nfilter = \"event.outcome:failure\"\n",
        );
        let fail = |ip: &str| json!({"event": {"outcome": "failure"}, "source": {"ip": ip}});
        let ok = json!({"event": {"outcome": "success"}, "source": {"ip": "10.0.0.1"}});
        let events = vec![
            (0, fail("10.0.0.1")),
            (1, fail("10.0.0.1")),
            (1, ok.clone()),
            (2, fail("10.0.0.2")),
            (3, fail("10.0.0.1")), // third within 5 minutes: fires
            (4, fail("10.0.0.1")),
            (20, fail("10.0.0.1")),
            (30, fail("10.0.0.1")), // 10 minutes apart: never three in a window
            (31, fail("10.0.0.1")),
            (29, fail("10.0.0.1")), // late, inside the window: fires
        ];
        assert_eq!(fired(&brute, &events), vec![3, 29]);
    }

    #[test]
    fn a_distinct_threshold_finds_a_password_spray_and_says_which_users() {
        let spray = compile(
            "id = \"spray\"\ntitle = \"Password spray\"\nkind = \"threshold\"\ngroup_by = [\"source.ip\"]\n\
             window = \"10m\"\ndistinct = \"user.name\"\nmin_distinct = 3\n",
        );
        let try_user = |u: &str| json!({"source": {"ip": "203.0.113.9"}, "user": {"name": u}});
        let events: Vec<(i64, Value)> = vec![
            (0, try_user("alice")),
            (1, try_user("alice")),
            (2, try_user("bob")),
            (3, try_user("alice")),
            (4, try_user("carol")),
        ];
        assert_eq!(fired(&spray, &events), vec![4]);
        let mut states = States::default();
        let mut last = Vec::new();
        for (m, v) in &events {
            let (e, t) = ev(*m, v.clone());
            last = states.evaluate(std::slice::from_ref(&spray), &e, t).0;
        }
        assert_eq!(last[0].evidence["distinct_values"], json!(["alice", "bob", "carol"]));
        assert_eq!(last[0].evidence["count"], json!(5));
    }

    #[test]
    fn an_untrusted_source_is_checked_against_its_services_ranges() {
        let d = compile(
            "id = \"outside\"\ntitle = \"Call from outside\"\nkind = \"untrusted_source\"\nkey = \"service.name\"\n\
             [trusted]\npayments = [\"10.20.0.0/16\"]\n\"*\" = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n",
        );
        let call = |svc: &str, ip: &str| json!({"service": {"name": svc}, "source": {"ip": ip}});
        let events = vec![
            (0, call("payments", "10.20.1.1")),
            (1, call("payments", "10.30.1.1")), // inside 10/8 but not payments' range
            (2, call("orders", "10.30.1.1")),
            (3, call("orders", "198.51.100.7")),
            (4, call("orders", "::ffff:192.168.1.1")), // a mapped IPv4 address
            (5, json!({"service": {"name": "orders"}})),
        ];
        assert_eq!(fired(&d, &events), vec![1, 3]);
    }

    #[test]
    fn new_terms_learn_then_alert_on_a_first_use_and_forget_past_history() {
        let d = compile(
            "id = \"new-route\"\ntitle = \"New caller on a route\"\nkind = \"new_terms\"\n\
             fields = [\"service.name\", \"url.path\"]\nhistory = \"1h\"\nlearning = \"10m\"\n",
        );
        let call = |svc: &str, path: &str| json!({"service": {"name": svc}, "url": {"path": path}});
        let events = vec![
            (0, call("web", "/login")),
            (5, call("web", "/admin")), // new, but still learning
            (15, call("web", "/login")),
            (16, call("web", "/export")), // new after learning: alert
            (17, call("web", "/export")),
            (18, call("api", "/login")),  // a new caller for a known path
            (100, call("web", "/admin")), // last seen 95 minutes ago: new again
            (101, json!({"service": {"name": "web"}})),
        ];
        assert_eq!(fired(&d, &events), vec![16, 18, 100]);
    }

    /// A seeded stream of calls: `per_minute(m)` events in minute `m`,
    /// each an error when `error(m, i)`; returns the minutes that fired.
    fn rate_scenario(
        d: &Detector,
        minutes: i64,
        per_minute: impl Fn(i64) -> u64,
        error: impl Fn(i64, u64) -> bool,
    ) -> Vec<i64> {
        let mut states = States::default();
        let mut out = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for m in 0..minutes {
            let n = per_minute(m);
            for i in 0..n {
                // Spread over the minute, in order.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let secs = i64::try_from(i * 60 / n.max(1)).unwrap_or(0);
                let t = OffsetDateTime::from_unix_timestamp(1_764_000_000 + m * 60 + secs).expect("a time");
                let status = if error(m, i) { 503 } else { 200 };
                let e = Event::from_json(json!({"service": {"name": "web"}, "http": {"response": {"status_code": status}}, "event": {"id": format!("{m}-{i}")}}))
                    .expect("an event");
                if !states.evaluate(std::slice::from_ref(d), &e, t).0.is_empty() {
                    out.push(m);
                }
            }
        }
        out
    }

    #[test]
    fn a_rate_spike_fires_once_in_its_bucket_after_learning_and_not_on_noise() {
        let d = compile(
            "id = \"spike\"\ntitle = \"Spike\"\nkind = \"rate_spike\"\nkey = [\"service.name\"]\n\
             bucket = \"1m\"\nlearning_buckets = 30\n",
        );
        // 100 a minute give or take 10 (a slow wave), a 5x burst at
        // minute 70, a burst during learning at minute 10.
        let load = |m: i64| -> u64 {
            let wave = (m as f64 / 9.0).sin() * 10.0;
            let base = (100.0 + wave) as u64;
            match m {
                10 | 70 => base * 5,
                _ => base,
            }
        };
        assert_eq!(rate_scenario(&d, 120, load, |_, _| false), vec![70]);
    }

    #[test]
    fn an_error_share_spike_fires_where_a_count_would_not() {
        let d = compile(
            "id = \"errors\"\ntitle = \"Error burst\"\nkind = \"rate_spike\"\nkey = [\"service.name\"]\n\
             errors = \"http.response.status_code:>=500\"\nmin_count = 10\nlearning_buckets = 20\n",
        );
        // 200 calls a minute throughout; 1% errors, 40% in minute 50.
        let fired = rate_scenario(&d, 80, |_| 200, |m, i| if m == 50 { i % 5 < 2 } else { i % 100 == 0 });
        assert_eq!(fired, vec![50]);
    }

    #[test]
    fn keys_above_the_cap_go_least_recent_first_and_are_counted() {
        let d = compile(
            "id = \"n\"\ntitle = \"n\"\nkind = \"new_terms\"\nfields = [\"user.name\"]\nhistory = \"1d\"\n\
             learning = \"0\"\nmax_keys = 100\n",
        );
        let mut states = States::default();
        let mut evicted = 0;
        for i in 0..10_000i64 {
            let (e, t) = ev(i, json!({"user": {"name": format!("u{i}")}}));
            evicted += states.evaluate(std::slice::from_ref(&d), &e, t).1;
            assert!(states.keys() <= 100);
        }
        assert!(evicted >= 9_900, "{evicted}");
    }

    #[test]
    fn detector_definitions_are_checked() {
        for (text, why) in [
            ("id = \"x\"\ntitle = \"x\"\nkind = \"threshold\"\ngroup_by = []\nwindow = \"5m\"\n", "needs count"),
            ("id = \"x\"\ntitle = \"x\"\nkind = \"threshold\"\ngroup_by = []\nwindow = \"soon\"\ncount = 2\n", "timespan"),
            ("id = \"x\"\ntitle = \"x\"\nkind = \"new_terms\"\nfields = []\nhistory = \"1d\"\n", "one to three"),
            ("id = \"x y\"\ntitle = \"x\"\nkind = \"new_terms\"\nfields = [\"a\"]\nhistory = \"1d\"\n", "the id"),
            ("id = \"x\"\ntitle = \"x\"\nlevel = \"dire\"\nkind = \"new_terms\"\nfields = [\"a\"]\nhistory = \"1d\"\n", "level"),
            ("id = \"x\"\ntitle = \"x\"\nfilter = \"a:(\"\nkind = \"new_terms\"\nfields = [\"a\"]\nhistory = \"1d\"\n", "filter"),
        ] {
            let spec: DetectorSpec = toml::from_str(text).expect("parses");
            let err = spec.compile(&Catalog::builtin()).expect_err(text).to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        let typo = "id = \"x\"\ntitle = \"x\"\nkind = \"new_terms\"\nfields = [\"a\"]\nhistroy = \"1d\"\n";
        assert!(toml::from_str::<DetectorSpec>(typo).is_err());
    }
}
