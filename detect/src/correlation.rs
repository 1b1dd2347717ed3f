//! Sigma correlation rules (specification v2.1): `event_count`,
//! `value_count`, `temporal`, `temporal_ordered`, `value_sum`,
//! `value_avg`, `value_percentile`, with `group-by`, `timespan`, a
//! `condition` of AND-ed ranges, `field`, `aliases`, `generate`, and
//! chains (a correlation referring to another).
//!
//! Windows slide in event time. Each group of each correlation keeps the
//! matches of its referenced rules, in event-time order, while they can
//! still fall in one window with an event not yet too late; when a match
//! arrives the windows of `timespan` that end at it and that start at it
//! are tested (so a late match completes a window with later ones). A
//! correlation that fires clears its group, so one burst is one match.
//! Memory is bounded: at most `max_groups` groups per correlation and
//! `max_entries` matches per group; what a cap pushes out is counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use schemas::Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use yaml_serde::Value as Yaml;

use crate::rule::{get, refuse, text, timespan};
use crate::DetectError;

/// The seven correlation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    EventCount,
    ValueCount,
    Temporal,
    TemporalOrdered,
    ValueSum,
    ValueAvg,
    ValuePercentile,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "event_count" => Kind::EventCount,
            "value_count" => Kind::ValueCount,
            "temporal" => Kind::Temporal,
            "temporal_ordered" => Kind::TemporalOrdered,
            "value_sum" => Kind::ValueSum,
            "value_avg" => Kind::ValueAvg,
            "value_percentile" => Kind::ValuePercentile,
            _ => return None,
        })
    }

    fn needs_field(self) -> bool {
        matches!(
            self,
            Kind::ValueCount | Kind::ValueSum | Kind::ValueAvg | Kind::ValuePercentile
        )
    }
}

/// A comparison of the condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Eq(f64),
    Neq(f64),
}

impl Bound {
    fn holds(self, x: f64) -> bool {
        match self {
            Bound::Gt(v) => x > v,
            Bound::Gte(v) => x >= v,
            Bound::Lt(v) => x < v,
            Bound::Lte(v) => x <= v,
            Bound::Eq(v) => x == v,
            Bound::Neq(v) => x != v,
        }
    }
}

/// A compiled correlation rule.
#[derive(Debug, Clone)]
pub struct Correlation {
    pub id: String,
    pub name: Option<String>,
    pub title: String,
    pub level: Option<String>,
    pub status: Option<String>,
    pub tags: Vec<String>,
    pub kind: Kind,
    /// The rules it refers to (id or name), in order.
    pub rules: Vec<String>,
    pub group_by: Vec<String>,
    /// alias -> (rule name -> field)
    pub aliases: BTreeMap<String, BTreeMap<String, String>>,
    pub timespan: Duration,
    /// AND-ed.
    pub condition: Vec<Bound>,
    pub field: Option<String>,
    /// Whether the referred rules also alert on their own.
    pub generate: bool,
    /// How long its firings for one group count on one alert
    /// (`suppression: {duration: 1h}`); `None` takes the configured
    /// default. Its alerts group by its `group-by`.
    pub suppression: Option<crate::rule::Suppression>,
}

/// Reads a correlation document.
pub(crate) fn parse(y: &Yaml, origin: &str, shown: &str) -> Result<Correlation, DetectError> {
    let r = |reason: &str| refuse(origin, shown, reason.to_string());
    let title = get(y, "title").and_then(text).unwrap_or_default();
    if title.is_empty() {
        return Err(r("no title"));
    }
    let c = get(y, "correlation").ok_or_else(|| r("no correlation section"))?;
    let kind_text = get(c, "type")
        .and_then(text)
        .ok_or_else(|| r("correlation.type is missing"))?;
    let kind = Kind::parse(&kind_text).ok_or_else(|| {
        refuse(
            origin,
            shown,
            format!("correlation.type {kind_text:?} is not one of the seven Sigma types"),
        )
    })?;
    let list = |key: &str| -> Vec<String> {
        match get(c, key) {
            Some(Yaml::Sequence(s)) => s.iter().filter_map(text).collect(),
            Some(other) => text(other).into_iter().collect(),
            None => Vec::new(),
        }
    };
    let rules = list("rules");
    if rules.is_empty() {
        return Err(r("correlation.rules is empty"));
    }
    let group_by = list("group-by");
    let span = get(c, "timespan")
        .and_then(text)
        .ok_or_else(|| r("correlation.timespan is missing"))?;
    let timespan = timespan(&span).filter(|d| !d.is_zero()).ok_or_else(|| {
        refuse(
            origin,
            shown,
            format!("correlation.timespan {span:?} is not like 30s, 5m, 1h, 2d"),
        )
    })?;
    let mut aliases = BTreeMap::new();
    if let Some(Yaml::Mapping(m)) = get(c, "aliases") {
        for (alias, map) in m {
            let alias = text(alias).ok_or_else(|| r("an alias name is not a string"))?;
            let Yaml::Mapping(fields) = map else {
                return Err(refuse(
                    origin,
                    shown,
                    format!("alias {alias} is not a map of rule name to field"),
                ));
            };
            let mut by_rule = BTreeMap::new();
            for (rule, field) in fields {
                let (Some(rule), Some(field)) = (text(rule), text(field)) else {
                    return Err(refuse(origin, shown, format!("alias {alias} maps a non-string")));
                };
                by_rule.insert(rule, field);
            }
            aliases.insert(alias, by_rule);
        }
    }
    let mut condition = Vec::new();
    let mut field = None;
    match get(c, "condition") {
        None => {}
        Some(Yaml::Mapping(m)) => {
            for (k, v) in m {
                let key = k.as_str().unwrap_or_default();
                if key == "field" {
                    field = Some(text(v).ok_or_else(|| r("condition.field is not a string"))?);
                    continue;
                }
                let n: f64 = text(v)
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| refuse(origin, shown, format!("condition.{key} is not a number")))?;
                condition.push(match key {
                    "gt" => Bound::Gt(n),
                    "gte" => Bound::Gte(n),
                    "lt" => Bound::Lt(n),
                    "lte" => Bound::Lte(n),
                    "eq" => Bound::Eq(n),
                    "neq" => Bound::Neq(n),
                    other => {
                        return Err(refuse(
                            origin,
                            shown,
                            format!("condition.{other} is not gt, gte, lt, lte, eq, neq or field"),
                        ))
                    }
                });
            }
        }
        Some(_) => return Err(r("correlation.condition is not a map")),
    }
    let temporal = matches!(kind, Kind::Temporal | Kind::TemporalOrdered);
    if condition.is_empty() && !temporal {
        return Err(refuse(origin, shown, format!("{kind_text} needs a condition")));
    }
    if kind.needs_field() && field.is_none() {
        return Err(refuse(origin, shown, format!("{kind_text} needs condition.field")));
    }
    if kind == Kind::ValuePercentile
        && condition
            .iter()
            .any(|b| !matches!(b, Bound::Lt(_) | Bound::Lte(_) | Bound::Gt(_) | Bound::Gte(_)))
    {
        return Err(r("value_percentile takes lt, lte, gt or gte"));
    }
    let tags = match get(y, "tags") {
        Some(Yaml::Sequence(t)) => t.iter().filter_map(text).collect(),
        _ => Vec::new(),
    };
    let suppression = crate::rule::suppression(y, origin, shown)?;
    if suppression.as_ref().is_some_and(|s| !s.group_by.is_empty()) {
        return Err(r(
            "a correlation's alerts group by its group-by: its suppression takes a duration only",
        ));
    }
    Ok(Correlation {
        suppression,
        id: shown.to_string(),
        name: get(y, "name").and_then(text),
        title,
        level: get(y, "level").and_then(text),
        status: get(y, "status").and_then(text),
        tags,
        kind,
        rules,
        group_by,
        aliases,
        timespan,
        condition,
        field,
        generate: get(c, "generate").and_then(Yaml::as_bool).unwrap_or(false),
    })
}

/// One match kept in a window.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// Event time, unix nanoseconds.
    t: i128,
    /// Which of the correlation's rules matched (index in `rules`).
    s: usize,
    /// The value of `field`, for the value types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<Value>,
    /// The event's id.
    e: String,
}

/// A correlation that fired.
#[derive(Debug, Clone)]
pub struct Fired {
    pub group_by: Vec<String>,
    pub group: Vec<Value>,
    pub group_key: String,
    pub first: OffsetDateTime,
    pub last: OffsetDateTime,
    /// Events in the window, in time order.
    pub event_ids: Vec<String>,
    /// The measure the condition held for (count, distinct values, sum...).
    pub value: f64,
}

/// Bounds on the windows' memory.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub max_groups: usize,
    pub max_entries: usize,
}

impl Default for Caps {
    fn default() -> Caps {
        Caps {
            max_groups: 100_000,
            max_entries: 10_000,
        }
    }
}

/// The windows of every correlation, by correlation id and group key:
/// part of detection's checkpoint.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Windows {
    groups: HashMap<String, HashMap<String, Vec<Entry>>>,
    /// Latest event time seen per correlation (unix nanoseconds).
    #[serde(default)]
    newest: HashMap<String, i128>,
}

/// What the caps pushed out, and matches too late to count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub evicted: u64,
    pub too_late: u64,
}

impl Windows {
    /// Matches held in all windows.
    pub fn entries(&self) -> usize {
        self.groups.values().flat_map(|g| g.values()).map(Vec::len).sum()
    }

    /// Forgets correlations no longer loaded.
    pub fn retain(&mut self, ids: &HashSet<&str>) {
        self.groups.retain(|k, _| ids.contains(k.as_str()));
        self.newest.retain(|k, _| ids.contains(k.as_str()));
    }

    /// A match of `c`'s rule number `source` (named `source_name`) on
    /// `event` at `time`; the correlation's firing, if this completes it.
    pub fn observe(
        &mut self,
        c: &Correlation,
        (source, source_name): (usize, Option<&str>),
        event: &Event,
        time: OffsetDateTime,
        caps: Caps,
        dropped: &mut Dropped,
    ) -> Option<Fired> {
        let span = i128::try_from(c.timespan.as_nanos()).unwrap_or(i128::MAX / 4);
        let t = time.unix_timestamp_nanos();
        let newest = self.newest.entry(c.id.clone()).or_insert(t);
        *newest = (*newest).max(t);
        let newest = *newest;
        if t < newest.saturating_sub(span) {
            dropped.too_late += 1;
            return None;
        }
        let group: Vec<Value> = c
            .group_by
            .iter()
            .map(|g| {
                let field = c
                    .aliases
                    .get(g)
                    .and_then(|m| source_name.and_then(|n| m.get(n)))
                    .map_or(g.as_str(), String::as_str);
                event.get(field).cloned().unwrap_or(Value::Null)
            })
            .collect();
        let group_key = group_key(&c.group_by, &group);
        let groups = self.groups.entry(c.id.clone()).or_default();
        let cap = caps.max_groups.max(1);
        if !groups.contains_key(&group_key) && groups.len() >= cap {
            // Out of room: the groups whose newest match is oldest go, down
            // to 90% of the cap, so a flood of new groups sorts once per
            // tenth of the cap rather than on every match.
            let mut by_age: Vec<(i128, String)> = groups
                .iter()
                .map(|(k, e)| (e.last().map_or(i128::MIN, |x| x.t), k.clone()))
                .collect();
            by_age.sort_unstable();
            let excess = groups.len() + 1 - cap * 9 / 10;
            for (_, k) in by_age.into_iter().take(excess.max(1)) {
                dropped.evicted += groups.remove(&k).map_or(0, |e| e.len() as u64);
            }
        }
        let entries = groups.entry(group_key.clone()).or_default();
        // Matches that can no longer share a window with an acceptable one.
        let horizon = newest.saturating_sub(span.saturating_mul(2));
        entries.retain(|e| e.t >= horizon);
        let value = c.field.as_ref().and_then(|f| event.get(f).cloned());
        let at = entries.partition_point(|e| e.t <= t);
        entries.insert(
            at,
            Entry {
                t,
                s: source,
                v: value.clone(),
                e: event.get_str("event.id").unwrap_or_default().to_string(),
            },
        );
        if entries.len() > caps.max_entries.max(1) {
            let excess = entries.len() - caps.max_entries.max(1);
            entries.drain(..excess);
            dropped.evicted += excess as u64;
        }
        // The window ending at this match, then, for a match arriving late
        // (later ones are already held), the one starting at it.
        let late = entries.last().is_some_and(|e| e.t > t);
        let windows = [(t.saturating_sub(span), t), (t, t.saturating_add(span))];
        for &(lo, hi) in windows.iter().take(if late { 2 } else { 1 }) {
            let window: Vec<&Entry> = entries.iter().filter(|e| e.t >= lo && e.t <= hi).collect();
            if let Some(measure) = measure(c, &window, value.as_ref()) {
                if c.condition.iter().all(|b| b.holds(measure)) && temporal_complete(c, &window, measure) {
                    let fired = Fired {
                        group_by: c.group_by.clone(),
                        group,
                        group_key: group_key.clone(),
                        first: from_nanos(window.first().map_or(t, |e| e.t)),
                        last: from_nanos(window.last().map_or(t, |e| e.t)),
                        event_ids: window.iter().map(|e| e.e.clone()).collect(),
                        value: measure,
                    };
                    groups.remove(&group_key);
                    return Some(fired);
                }
            }
        }
        None
    }
}

/// `field=value` pairs of a group, `,`-joined (empty without grouping).
pub fn group_key(fields: &[String], values: &[Value]) -> String {
    fields
        .iter()
        .zip(values)
        .map(|(f, v)| match v {
            Value::String(s) => format!("{f}={s}"),
            other => format!("{f}={other}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn from_nanos(t: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(t).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The quantity a correlation type compares, over one window; `None` when
/// the window has nothing to measure.
fn measure(c: &Correlation, window: &[&Entry], current: Option<&Value>) -> Option<f64> {
    if window.is_empty() {
        return None;
    }
    Some(match c.kind {
        Kind::EventCount => window.len() as f64,
        Kind::ValueCount => {
            let distinct: HashSet<String> = window
                .iter()
                .filter_map(|e| e.v.as_ref())
                .filter(|v| !v.is_null())
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            distinct.len() as f64
        }
        Kind::Temporal | Kind::TemporalOrdered => {
            let distinct: HashSet<usize> = window.iter().map(|e| e.s).collect();
            distinct.len() as f64
        }
        Kind::ValueSum => window.iter().filter_map(|e| e.v.as_ref().and_then(number)).sum(),
        Kind::ValueAvg => {
            let nums: Vec<f64> = window.iter().filter_map(|e| e.v.as_ref().and_then(number)).collect();
            if nums.is_empty() {
                return None;
            }
            nums.iter().sum::<f64>() / nums.len() as f64
        }
        Kind::ValuePercentile => {
            // The share, in percent, of the window's matches that have the
            // current match's value: `lte: 1` finds a value that is at most
            // 1% of what the group did (the specification's example, a
            // process name rarer than 1% of a computer's processes).
            let current = current.filter(|v| !v.is_null())?;
            let same = window.iter().filter(|e| e.v.as_ref() == Some(current)).count();
            100.0 * same as f64 / window.len() as f64
        }
    })
}

/// Temporal types need every referred rule (or the condition's count of
/// them), in order for `temporal_ordered`.
fn temporal_complete(c: &Correlation, window: &[&Entry], distinct: f64) -> bool {
    match c.kind {
        Kind::Temporal if c.condition.is_empty() => distinct as usize == c.rules.len(),
        Kind::TemporalOrdered => {
            let mut next = 0;
            for e in window {
                if next < c.rules.len() && e.s == next {
                    next += 1;
                }
            }
            next == c.rules.len()
        }
        _ => true,
    }
}
