//! Sigma rule documents: read from YAML, checked, compiled.
//!
//! A rule that uses anything this engine does not implement is refused
//! with the reason; it is never half-evaluated.

use std::collections::{BTreeMap, HashMap, HashSet};

use schemas::Event;
use serde_json::Value;
use yaml_serde::Value as Yaml;

use schemas::sigma::{LogSources, Select};

use crate::condition::{self, glob_match, Cond, Target};
use crate::correlation::{Caps, Correlation, Dropped, Fired, Windows};
use crate::matcher::{self, Cmp, Field, Matcher, Piece, Subject, TextMatch, TimePart};
use crate::DetectError;

/// Most variants `windash` may make of one value.
const MAX_WINDASH_VARIANTS: usize = 1024;

/// What an event must satisfy for a rule to match, as far as its plain
/// tests say (case-insensitive text without inner wildcards, numeric
/// comparisons, networks): never stricter than the rule (anything else,
/// and anything under `not`, is `Any`). For retro-hunts.
#[derive(Debug, Clone, PartialEq)]
pub enum Need {
    /// No constraint known.
    Any,
    All(Vec<Need>),
    OneOf(Vec<Need>),
    /// One of `fields` (the first the event has is tested) compares so
    /// with the lowercased `value`.
    Text {
        fields: Vec<String>,
        how: crate::matcher::TextNeed,
        value: String,
    },
    /// One of `fields` holds a number comparing so with `value` (`lt`,
    /// `lte`, `gt`, `gte`).
    Number {
        fields: Vec<String>,
        cmp: crate::matcher::Cmp,
        value: f64,
    },
    /// One of `fields` holds an address in `net` (`cidr`).
    Network {
        fields: Vec<String>,
        net: ipnet::IpNet,
    },
}

impl Need {
    fn all(v: Vec<Need>) -> Need {
        let v: Vec<Need> = v.into_iter().filter(|n| *n != Need::Any).collect();
        match v.len() {
            0 => Need::Any,
            1 => v.into_iter().next().unwrap_or(Need::Any),
            _ => Need::All(v),
        }
    }

    fn one_of(v: Vec<Need>) -> Need {
        if v.is_empty() || v.contains(&Need::Any) {
            return Need::Any;
        }
        if v.len() == 1 {
            return v.into_iter().next().unwrap_or(Need::Any);
        }
        Need::OneOf(v)
    }
}

/// A compiled single-event rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `id` (a UUID), or the title when the rule has none.
    pub id: String,
    /// `name`, for references from correlation rules.
    pub name: Option<String>,
    /// `title`.
    pub title: String,
    /// `level` (informational, low, medium, high, critical).
    pub level: Option<String>,
    /// `status`.
    pub status: Option<String>,
    /// `tags` (ATT&CK and others).
    pub tags: Vec<String>,
    /// `logsource`: category, product, service.
    pub logsource: LogSource,
    /// Whether `schemas/sigma/logsources.toml` knows the logsource (else
    /// the rule is evaluated on every event).
    pub mapped: bool,
    /// Tripline's own attribute `suppression: {group_by: [...], duration: 1h}`
    /// (Elastic's `alert_suppression`); `None` takes the configured default.
    pub suppression: Option<Suppression>,
    /// Filters AND-ed to the condition (filter documents naming the rule).
    filters: Vec<Rule>,
    select: Vec<Select>,
    condition: Vec<Cond>,
    selections: BTreeMap<String, Selection>,
}

/// How a rule's matches are grouped into alerts: matches with the same
/// values of `group_by` within `duration` of the first one count on one
/// alert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suppression {
    /// Fields whose values make the group (none: one group per rule).
    pub group_by: Vec<String>,
    /// How long an alert takes further matches; `None`: the default.
    pub duration: Option<std::time::Duration>,
}

/// Reads a Sigma timespan: a number and a unit, `s`, `m`, `h`, `d` (`30s`,
/// `5m`, `1h`, `2d`); `0` alone is zero.
pub fn timespan(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let (num, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        "w" => n.checked_mul(604_800),
        _ => None,
    }?;
    Some(std::time::Duration::from_secs(secs))
}

/// A rule's `logsource`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSource {
    pub category: Option<String>,
    pub product: Option<String>,
    pub service: Option<String>,
}

/// A search identifier, compiled.
#[derive(Debug, Clone)]
enum Selection {
    /// Maps, OR-ed; each map's tests AND-ed.
    Maps(Vec<Vec<FieldTest>>),
    /// Keywords over every value of the event, OR-ed (AND-ed with `|all`).
    Keywords { all: bool, matchers: Vec<Matcher> },
}

#[derive(Debug, Clone)]
struct FieldTest {
    /// The field's names: the logsource's mapping of it, then the name
    /// the rule wrote; the first the event has is tested.
    field: Vec<String>,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    /// `null`: absent or null.
    Null,
    /// `exists: true|false`.
    Exists(bool),
    /// Values OR-ed (AND-ed with `all`), negated with `neq`. Each value is
    /// a group: the variants a transformation made of it (`windash`,
    /// `base64offset`), any of which matches.
    Values {
        all: bool,
        negate: bool,
        groups: Vec<Vec<Matcher>>,
    },
    /// `fieldref`: equal to another field's value (or not, with `neq`).
    FieldRef {
        other: Vec<String>,
        negate: bool,
        cased: bool,
    },
}

impl FieldTest {
    fn need(&self) -> Need {
        let Test::Values {
            all,
            negate: false,
            groups,
        } = &self.test
        else {
            return Need::Any;
        };
        let each: Vec<Need> = groups
            .iter()
            .map(|variants| {
                Need::one_of(
                    variants
                        .iter()
                        .map(|m| match m {
                            Matcher::Text(t) => t.plain().map_or(Need::Any, |(how, value)| Need::Text {
                                fields: self.field.clone(),
                                how,
                                value: value.to_string(),
                            }),
                            Matcher::Number(cmp, value) => Need::Number {
                                fields: self.field.clone(),
                                cmp: *cmp,
                                value: *value,
                            },
                            Matcher::Cidr(net) => Need::Network {
                                fields: self.field.clone(),
                                net: *net,
                            },
                            _ => Need::Any,
                        })
                        .collect(),
                )
            })
            .collect();
        if *all {
            Need::all(each)
        } else {
            Need::one_of(each)
        }
    }
}

impl Rule {
    /// Whether the rule matches `event`.
    pub fn matches(&self, event: &Event) -> bool {
        self.matches_subject(&Subject::new(event))
    }

    /// Whether the rule matches an event already prepared (once for every
    /// rule of a [`RuleSet`]).
    pub fn matches_subject(&self, event: &Subject<'_>) -> bool {
        self.selects(event)
            && self.condition.iter().any(|c| self.eval(c, event))
            && self
                .filters
                .iter()
                .all(|f| f.condition.iter().any(|c| f.eval(c, event)))
    }

    /// What the rule's logsource selects: each field with the values it
    /// must equal (any, case-insensitively), or none when it must only be
    /// present. For translating a rule into an index query.
    pub fn logsource_terms(&self) -> Vec<(&str, &[String])> {
        self.select
            .iter()
            .map(|s| (s.field.as_str(), if s.exists { &[][..] } else { s.values.as_slice() }))
            .collect()
    }

    /// Every text test of the rule's own selections (not its filters').
    fn for_each_text_mut(&mut self, f: &mut dyn FnMut(&mut crate::matcher::TextMatch)) {
        for sel in self.selections.values_mut() {
            match sel {
                Selection::Keywords { matchers, .. } => {
                    for m in matchers {
                        if let Matcher::Text(t) = m {
                            f(t);
                        }
                    }
                }
                Selection::Maps(maps) => {
                    for test in maps.iter_mut().flatten() {
                        if let Test::Values { groups, .. } = &mut test.test {
                            for m in groups.iter_mut().flatten() {
                                if let Matcher::Text(t) = m {
                                    f(t);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Ids of the filters applied to the rule.
    pub fn filter_ids(&self) -> Vec<&str> {
        self.filters.iter().map(|f| f.id.as_str()).collect()
    }

    /// Field names at least one of which an event must have for the rule
    /// to match (`None`: no such set, e.g. a keyword search or a `not`):
    /// the prefilter that lets a rule set skip most rules on most events.
    pub fn needs_one_of(&self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for c in &self.condition {
            out.extend(self.needs(c)?);
        }
        out.sort();
        out.dedup();
        Some(out)
    }

    fn needs(&self, c: &Cond) -> Option<Vec<String>> {
        let union = |sets: Vec<Option<Vec<String>>>| -> Option<Vec<String>> {
            let mut out = Vec::new();
            for s in sets {
                out.extend(s?);
            }
            Some(out)
        };
        let smallest = |sets: Vec<Option<Vec<String>>>| sets.into_iter().flatten().min_by_key(Vec::len);
        match c {
            Cond::Ident(name) => self.selections.get(name)?.needs(),
            Cond::Not(_) => None,
            Cond::Or(v) => union(v.iter().map(|c| self.needs(c)).collect()),
            Cond::And(v) => smallest(v.iter().map(|c| self.needs(c)).collect()),
            Cond::Of { all, target } => {
                let sets: Vec<_> = self
                    .selections
                    .iter()
                    .filter(|(name, _)| match target {
                        Target::Them => !name.starts_with('_'),
                        Target::Pattern(p) => glob_match(p, name),
                    })
                    .map(|(_, s)| s.needs())
                    .collect();
                if *all {
                    smallest(sets)
                } else {
                    union(sets)
                }
            }
        }
    }

    /// Every field the rule's detection tests, as the event names it
    /// (the logsource's mapping first), in order, without repeats.
    pub fn fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for sel in self.selections.values() {
            if let Selection::Maps(maps) = sel {
                for test in maps.iter().flatten() {
                    if let Some(f) = test.field.first() {
                        if !out.contains(&f.as_str()) {
                            out.push(f);
                        }
                    }
                }
            }
        }
        out
    }

    /// The values the event has for the fields the rule tests (under the
    /// first name of each field the event has).
    pub fn matched_values(&self, event: &Event) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for sel in self.selections.values() {
            if let Selection::Maps(maps) = sel {
                for test in maps.iter().flatten() {
                    if let Some((name, v)) = test.field.iter().find_map(|f| event.get(f).map(|v| (f, v))) {
                        out.entry(name.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
        out
    }

    /// What an event must satisfy for the rule to match (see [`Need`]).
    pub fn need(&self) -> Need {
        Need::one_of(self.condition.iter().map(|c| self.need_of(c)).collect())
    }

    fn need_of(&self, c: &Cond) -> Need {
        match c {
            Cond::Ident(name) => self.selections.get(name).map_or(Need::Any, Selection::need),
            Cond::Not(_) => Need::Any,
            Cond::And(v) => Need::all(v.iter().map(|c| self.need_of(c)).collect()),
            Cond::Or(v) => Need::one_of(v.iter().map(|c| self.need_of(c)).collect()),
            Cond::Of { all, target } => {
                let each: Vec<Need> = self
                    .selections
                    .iter()
                    .filter(|(name, _)| match target {
                        Target::Them => !name.starts_with('_'),
                        Target::Pattern(p) => glob_match(p, name),
                    })
                    .map(|(_, s)| s.need())
                    .collect();
                if *all {
                    Need::all(each)
                } else {
                    Need::one_of(each)
                }
            }
        }
    }

    /// Whether the rule's logsource selects `event`.
    pub fn selects(&self, event: &Subject<'_>) -> bool {
        self.select.iter().all(|s| match event.get(&s.field) {
            None => false,
            Some(_) if s.exists => true,
            Some(f) => s
                .values
                .iter()
                .any(|w| f.raw.as_str().is_some_and(|v| v.eq_ignore_ascii_case(w))),
        })
    }

    fn eval(&self, c: &Cond, event: &Subject<'_>) -> bool {
        match c {
            Cond::Or(v) => v.iter().any(|c| self.eval(c, event)),
            Cond::And(v) => v.iter().all(|c| self.eval(c, event)),
            Cond::Not(c) => !self.eval(c, event),
            Cond::Ident(name) => self.selections.get(name).is_some_and(|s| s.matches(event)),
            Cond::Of { all, target } => {
                let mut chosen = self.selections.iter().filter(|(name, _)| match target {
                    Target::Them => !name.starts_with('_'),
                    Target::Pattern(p) => glob_match(p, name),
                });
                if *all {
                    chosen.all(|(_, s)| s.matches(event))
                } else {
                    chosen.any(|(_, s)| s.matches(event))
                }
            }
        }
    }
}

impl Selection {
    fn need(&self) -> Need {
        match self {
            Selection::Keywords { .. } => Need::Any,
            Selection::Maps(maps) => Need::one_of(
                maps.iter()
                    .map(|tests| Need::all(tests.iter().map(FieldTest::need).collect()))
                    .collect(),
            ),
        }
    }

    /// Fields one of which an event needs for this selection to match.
    fn needs(&self) -> Option<Vec<String>> {
        match self {
            Selection::Keywords { .. } => None,
            Selection::Maps(maps) => {
                let mut out = Vec::new();
                for tests in maps {
                    // One positive test of the map suffices: its names.
                    let t = tests.iter().find(|t| t.is_positive())?;
                    out.extend(t.field.iter().cloned());
                }
                Some(out)
            }
        }
    }

    fn matches(&self, event: &Subject<'_>) -> bool {
        match self {
            Selection::Maps(maps) => maps.iter().any(|tests| tests.iter().all(|t| t.matches(event))),
            Selection::Keywords { all: true, matchers } => matchers.iter().all(|m| event.any_value_matches(m)),
            Selection::Keywords { all: false, matchers } => matchers.iter().any(|m| event.any_value_matches(m)),
        }
    }
}

impl FieldTest {
    /// Whether the test fails on an event without the field.
    fn is_positive(&self) -> bool {
        match &self.test {
            Test::Null | Test::Exists(false) => false,
            Test::Exists(true) | Test::FieldRef { negate: false, .. } => true,
            Test::FieldRef { negate: true, .. } => false,
            Test::Values { negate, .. } => !negate,
        }
    }

    fn matches(&self, event: &Subject<'_>) -> bool {
        let value = self.field.iter().find_map(|f| event.get(f));
        match &self.test {
            Test::Null => value.is_none_or(|f| f.raw.is_null()),
            Test::Exists(want) => value.is_some() == *want,
            Test::Values { all, negate, groups } => {
                let group = |g: &Vec<Matcher>, v: &Field<'_>| g.iter().any(|m| event.may_match(m) && m.is_match(v));
                let hit = match value {
                    None => false,
                    Some(v) if *all => groups.iter().all(|g| group(g, v)),
                    Some(v) => groups.iter().any(|g| group(g, v)),
                };
                hit != *negate
            }
            Test::FieldRef { other, negate, cased } => {
                let eq = |a: &Value, b: &Value| match (a, b) {
                    (Value::String(x), Value::String(y)) if !cased => x.to_lowercase() == y.to_lowercase(),
                    (x, y) => x == y,
                };
                let hit = match value {
                    None => false,
                    Some(v) => other.iter().any(|o| event.get(o).is_some_and(|w| eq(v.raw, w.raw))),
                };
                hit != *negate
            }
        }
    }
}

/// One document of a rule file, as read.
#[derive(Debug)]
pub enum Document {
    /// A single-event detection rule.
    Rule(Box<Rule>),
    /// A correlation rule.
    Correlation(Box<Correlation>),
    /// A filter document: a condition AND-ed to the rules it names.
    Filter(Box<Filter>),
}

/// A filter document (Sigma filters, v2.1): its detection is AND-ed to
/// the condition of each rule it names (`rules: any`: every rule) whose
/// logsource it covers; correlation rules are not filtered.
#[derive(Debug, Clone)]
pub struct Filter {
    pub id: String,
    pub title: String,
    /// Ids or names of the rules; `None`: any.
    pub rules: Option<Vec<String>>,
    pub logsource: LogSource,
    /// The filter's detection, compiled as a rule.
    detection: Rule,
}

/// What compiling a rule needs besides the rule.
struct Ctx<'a> {
    placeholders: &'a Placeholders,
    /// The rule's logsource's field names (taxonomy -> ours).
    fields: Option<&'a BTreeMap<String, String>>,
}

/// Values of the placeholders the `expand` modifier fills (`%Servers%` ->
/// `srv*`, `db*`), from configuration.
pub type Placeholders = BTreeMap<String, Vec<String>>;

/// Reads every document of a rule file (YAML, `---`-separated), with no
/// placeholders: a rule using `expand` is refused.
pub fn parse_file(text: &str, origin: &str) -> Vec<Result<Document, DetectError>> {
    parse_file_with(text, origin, &Placeholders::new())
}

/// [`parse_file`], with placeholder values for `expand`.
pub fn parse_file_with(text: &str, origin: &str, placeholders: &Placeholders) -> Vec<Result<Document, DetectError>> {
    let mut out = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(text) {
        if out.len() >= MAX_DOCUMENTS {
            out.push(Err(DetectError::Yaml {
                file: origin.to_string(),
                reason: format!("more than {MAX_DOCUMENTS} documents in one file"),
            }));
            break;
        }
        let yaml = match <Yaml as serde::Deserialize>::deserialize(doc) {
            Ok(y) => y,
            Err(e) => {
                // After a syntax error the parser cannot find the next
                // document: it would yield the same error forever.
                out.push(Err(DetectError::Yaml {
                    file: origin.to_string(),
                    reason: e.to_string(),
                }));
                break;
            }
        };
        out.push(document(&yaml, origin, placeholders));
    }
    out
}

/// Tripline's `suppression: {group_by, duration}` attribute of a rule or
/// correlation document, if it has one.
pub(crate) fn suppression(y: &Yaml, origin: &str, shown: &str) -> Result<Option<Suppression>, DetectError> {
    let Some(sup) = get(y, "suppression") else {
        return Ok(None);
    };
    let group_by = match get(sup, "group_by") {
        None => Vec::new(),
        Some(Yaml::Sequence(f)) => f.iter().filter_map(text).collect(),
        Some(other) => text(other).into_iter().collect(),
    };
    let duration = match get(sup, "duration") {
        None => None,
        Some(d) => Some(text(d).as_deref().and_then(timespan).ok_or_else(|| {
            refuse(
                origin,
                shown,
                "suppression.duration is not a timespan such as 30s, 5m, 1h or 2d",
            )
        })?),
    };
    Ok(Some(Suppression { group_by, duration }))
}

/// Most documents read from one rule file.
const MAX_DOCUMENTS: usize = 10_000;

pub(crate) fn refuse(origin: &str, id: &str, reason: impl Into<String>) -> DetectError {
    DetectError::Refused {
        file: origin.to_string(),
        rule: id.to_string(),
        reason: reason.into(),
    }
}

pub(crate) fn text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn get<'a>(y: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    y.as_mapping()?.get(Yaml::String(key.to_string()))
}

fn document(y: &Yaml, origin: &str, placeholders: &Placeholders) -> Result<Document, DetectError> {
    let title = get(y, "title").and_then(text).unwrap_or_default();
    let id = get(y, "id").and_then(text);
    let shown = id.clone().unwrap_or_else(|| title.clone());
    if get(y, "correlation").is_some() {
        return Ok(Document::Correlation(Box::new(crate::correlation::parse(
            y, origin, &shown,
        )?)));
    }
    if let Some(f) = get(y, "filter") {
        return filter(y, f, origin, &shown, placeholders);
    }
    if title.is_empty() {
        return Err(refuse(origin, &shown, "no title"));
    }
    let detection = get(y, "detection")
        .and_then(Yaml::as_mapping)
        .ok_or_else(|| refuse(origin, &shown, "no detection"))?;
    let logsource = get(y, "logsource").map_or_else(LogSource::default, |l| LogSource {
        category: get(l, "category").and_then(text),
        product: get(l, "product").and_then(text),
        service: get(l, "service").and_then(text),
    });
    let entry = LogSources::builtin().find(
        logsource.category.as_deref(),
        logsource.product.as_deref(),
        logsource.service.as_deref(),
    );
    let ctx = Ctx {
        placeholders,
        fields: entry.map(|e| &e.fields),
    };
    let select = entry.map(|e| e.select.clone()).unwrap_or_default();
    let mut condition = Vec::new();
    let mut selections = BTreeMap::new();
    for (k, v) in detection {
        let Some(name) = k.as_str() else {
            return Err(refuse(origin, &shown, "a search identifier that is not a string"));
        };
        if name == "condition" {
            let texts: Vec<String> = match v {
                Yaml::Sequence(items) => items.iter().filter_map(text).collect(),
                other => text(other).into_iter().collect(),
            };
            for t in texts {
                condition.push(condition::parse(&t).map_err(|e| refuse(origin, &shown, e.to_string()))?);
            }
            continue;
        }
        if name == "timeframe" {
            return Err(refuse(
                origin,
                &shown,
                "timeframe (Sigma 1 aggregation) is not supported: use a correlation rule",
            ));
        }
        let sel = selection(v, &ctx).map_err(|reason| refuse(origin, &shown, format!("{name}: {reason}")))?;
        selections.insert(name.to_string(), sel);
    }
    if condition.is_empty() {
        return Err(refuse(origin, &shown, "no condition"));
    }
    for c in &condition {
        check_identifiers(c, &selections).map_err(|reason| refuse(origin, &shown, reason))?;
    }
    let tags = match get(y, "tags") {
        Some(Yaml::Sequence(t)) => t.iter().filter_map(text).collect(),
        _ => Vec::new(),
    };
    let suppression = suppression(y, origin, &shown)?;
    Ok(Document::Rule(Box::new(Rule {
        id: shown,
        name: get(y, "name").and_then(text),
        title,
        level: get(y, "level").and_then(text),
        status: get(y, "status").and_then(text),
        tags,
        logsource,
        mapped: entry.is_some(),
        suppression,
        filters: Vec::new(),
        select,
        condition,
        selections,
    })))
}

fn filter(y: &Yaml, f: &Yaml, origin: &str, shown: &str, placeholders: &Placeholders) -> Result<Document, DetectError> {
    let Yaml::Mapping(m) = f else {
        return Err(refuse(origin, shown, "filter is not a map"));
    };
    let rules = match m.get(Yaml::String("rules".into())) {
        Some(Yaml::String(s)) if s.eq_ignore_ascii_case("any") => None,
        Some(Yaml::Sequence(items)) => Some(items.iter().filter_map(text).collect::<Vec<_>>()),
        Some(other) => Some(text(other).into_iter().collect()),
        None => return Err(refuse(origin, shown, "filter.rules is missing")),
    };
    let mut detection = m.clone();
    detection.remove(Yaml::String("rules".into()));
    let mut doc = yaml_serde::Mapping::new();
    doc.insert(Yaml::String("title".into()), Yaml::String(shown.to_string()));
    if let Some(l) = get(y, "logsource") {
        doc.insert(Yaml::String("logsource".into()), l.clone());
    }
    doc.insert(Yaml::String("detection".into()), Yaml::Mapping(detection));
    let Document::Rule(rule) = document(&Yaml::Mapping(doc), origin, placeholders)? else {
        return Err(refuse(origin, shown, "filter detection is not a detection"));
    };
    Ok(Document::Filter(Box::new(Filter {
        id: shown.to_string(),
        title: get(y, "title").and_then(text).unwrap_or_default(),
        rules,
        logsource: rule.logsource.clone(),
        detection: *rule,
    })))
}

fn check_identifiers(c: &Cond, selections: &BTreeMap<String, Selection>) -> Result<(), String> {
    match c {
        Cond::Or(v) | Cond::And(v) => v.iter().try_for_each(|c| check_identifiers(c, selections)),
        Cond::Not(c) => check_identifiers(c, selections),
        Cond::Ident(name) if !selections.contains_key(name) => Err(format!(
            "the condition names {name:?}, which the detection does not define"
        )),
        Cond::Of {
            target: Target::Pattern(p),
            ..
        } if !selections.keys().any(|k| glob_match(p, k)) => {
            Err(format!("the condition's pattern {p:?} matches no search identifier"))
        }
        _ => Ok(()),
    }
}

fn selection(v: &Yaml, ph: &Ctx<'_>) -> Result<Selection, String> {
    match v {
        Yaml::Mapping(m) if m.len() == 1 && m.keys().next().and_then(Yaml::as_str) == Some("|all") => {
            let values = m.values().next().map(values_of).unwrap_or_default();
            Ok(Selection::Keywords {
                all: true,
                matchers: keyword_matchers(&values)?,
            })
        }
        Yaml::Mapping(m) => Ok(Selection::Maps(vec![map_tests(m, ph)?])),
        Yaml::Sequence(items) if items.iter().all(|i| matches!(i, Yaml::Mapping(_))) => Ok(Selection::Maps(
            items
                .iter()
                .filter_map(Yaml::as_mapping)
                .map(|m| map_tests(m, ph))
                .collect::<Result<_, _>>()?,
        )),
        Yaml::Sequence(items) if items.iter().all(|i| text(i).is_some()) => Ok(Selection::Keywords {
            all: false,
            matchers: keyword_matchers(items)?,
        }),
        other => text(other).map_or_else(
            || Err("a search identifier must be a map, a list of maps or a list of values".to_string()),
            |_| {
                Ok(Selection::Keywords {
                    all: false,
                    matchers: keyword_matchers(std::slice::from_ref(other))?,
                })
            },
        ),
    }
}

fn values_of(v: &Yaml) -> Vec<Yaml> {
    match v {
        Yaml::Sequence(items) => items.clone(),
        other => vec![other.clone()],
    }
}

fn keyword_matchers(values: &[Yaml]) -> Result<Vec<Matcher>, String> {
    values
        .iter()
        .map(|v| {
            let s = text(v).ok_or("keywords must be strings or numbers")?;
            // A keyword matches anywhere in a value.
            let mut p = vec![Piece::Any];
            p.extend(matcher::pieces(&s));
            p.push(Piece::Any);
            Ok(Matcher::Text(TextMatch::new(&p, false)))
        })
        .collect()
}

fn map_tests(m: &yaml_serde::Mapping, ph: &Ctx<'_>) -> Result<Vec<FieldTest>, String> {
    m.iter()
        .map(|(k, v)| {
            let key = k.as_str().ok_or("a field name that is not a string")?;
            field_test(key, v, ph)
        })
        .collect()
}

/// Compiles `field|mod|mod: values`.
fn field_test(key: &str, v: &Yaml, ctx: &Ctx<'_>) -> Result<FieldTest, String> {
    let ph = ctx.placeholders;
    let mut parts = key.split('|');
    let name = parts.next().unwrap_or_default();
    // The logsource's name for the field first, then the name as written.
    let mut field: Vec<String> = ctx.fields.and_then(|f| f.get(name)).into_iter().cloned().collect();
    field.push(name.to_string());
    let mods: Vec<&str> = parts.collect();
    if name.is_empty() {
        return Err(format!("{key}: a field test needs a field name"));
    }
    let has = |m: &str| mods.contains(&m);
    let known = [
        "contains",
        "startswith",
        "endswith",
        "all",
        "exists",
        "cased",
        "neq",
        "windash",
        "re",
        "i",
        "m",
        "s",
        "base64",
        "base64offset",
        "utf16le",
        "utf16be",
        "utf16",
        "wide",
        "lt",
        "lte",
        "gt",
        "gte",
        "cidr",
        "expand",
        "fieldref",
        "minute",
        "hour",
        "day",
        "week",
        "month",
        "year",
    ];
    if let Some(m) = mods.iter().find(|m| !known.contains(m)) {
        return Err(format!("{key}: unknown modifier {m:?}"));
    }
    let mut values = values_of(v);
    if has("expand") {
        values = values
            .iter()
            .map(|v| text(v).ok_or_else(|| format!("{key}: expand takes strings")))
            .map(|t| {
                expand(&t?, ph)
                    .map_err(|name| format!("{key}: placeholder %{name}% is not defined in the configuration"))
            })
            .collect::<Result<Vec<Vec<String>>, String>>()?
            .into_iter()
            .flatten()
            .map(Yaml::String)
            .collect();
    }
    if values.iter().any(|v| matches!(v, Yaml::Null)) {
        if values.len() > 1 || !mods.is_empty() {
            return Err(format!("{key}: null must be a value of its own, without modifiers"));
        }
        return Ok(FieldTest {
            field,
            test: Test::Null,
        });
    }
    if has("exists") {
        return match (values.as_slice(), mods.len()) {
            ([Yaml::Bool(b)], 1) => Ok(FieldTest {
                field,
                test: Test::Exists(*b),
            }),
            _ => Err(format!("{key}: exists takes one boolean and no other modifier")),
        };
    }
    let negate = has("neq");
    let cased = has("cased");
    if has("fieldref") {
        let other = values
            .iter()
            .map(text)
            .collect::<Option<Vec<_>>>()
            .ok_or("fieldref takes field names")?;
        return Ok(FieldTest {
            field,
            test: Test::FieldRef { other, negate, cased },
        });
    }
    let all = has("all");
    if all && values.len() < 2 {
        return Err(format!("{key}: all needs a list of at least two values"));
    }
    let strings: Vec<String> = values
        .iter()
        .map(|v| text(v).ok_or_else(|| format!("{key}: values must be strings, numbers or booleans")))
        .collect::<Result<_, _>>()?;
    let cmp = [("lt", Cmp::Lt), ("lte", Cmp::Lte), ("gt", Cmp::Gt), ("gte", Cmp::Gte)]
        .into_iter()
        .find(|(m, _)| has(m))
        .map(|(_, c)| c);
    let part = [
        ("minute", TimePart::Minute),
        ("hour", TimePart::Hour),
        ("day", TimePart::Day),
        ("week", TimePart::Week),
        ("month", TimePart::Month),
        ("year", TimePart::Year),
    ]
    .into_iter()
    .find(|(m, _)| has(m))
    .map(|(_, p)| p);
    let number = |s: &str| {
        s.trim()
            .parse::<f64>()
            .map_err(|_| format!("{key}: {s:?} is not a number"))
    };
    let one = |m: Matcher| vec![m];
    let groups: Vec<Vec<Matcher>> = if let Some(part) = part {
        strings
            .iter()
            .map(|s| Ok(one(Matcher::TimePart(part, cmp.unwrap_or(Cmp::Eq), number(s)?))))
            .collect::<Result<_, String>>()?
    } else if let Some(cmp) = cmp {
        strings
            .iter()
            .map(|s| Ok(one(Matcher::Number(cmp, number(s)?))))
            .collect::<Result<_, String>>()?
    } else if has("cidr") {
        strings
            .iter()
            .map(|s| {
                s.parse()
                    .map(|n| one(Matcher::Cidr(n)))
                    .map_err(|_| format!("{key}: {s:?} is not a network"))
            })
            .collect::<Result<_, String>>()?
    } else if has("re") {
        strings
            .iter()
            .map(|s| {
                matcher::regex(s, has("i"), has("m"), has("s"))
                    .map(|r| one(Matcher::Regex(r)))
                    .map_err(|e| format!("{key}: regex {s:?}: {e}"))
            })
            .collect::<Result<_, String>>()?
    } else {
        text_matchers(key, &mods, &strings, cased)?
    };
    Ok(FieldTest {
        field,
        test: Test::Values { all, negate, groups },
    })
}

/// Every value `text` stands for once its `%name%` placeholders are
/// replaced by each of their configured values (`\%` is a plain `%`);
/// `Err(name)` for an undefined one.
fn expand(text: &str, ph: &Placeholders) -> Result<Vec<String>, String> {
    let mut out = vec![String::new()];
    let push = |out: &mut Vec<String>, s: &str| out.iter_mut().for_each(|o| o.push_str(s));
    let mut rest = text;
    while !rest.is_empty() {
        let Some(at) = rest.find(['%', '\\']) else {
            push(&mut out, rest);
            break;
        };
        push(&mut out, &rest[..at]);
        rest = &rest[at..];
        if let Some(r) = rest.strip_prefix("\\%") {
            push(&mut out, "%");
            rest = r;
        } else if let Some(r) = rest.strip_prefix('\\') {
            push(&mut out, "\\");
            rest = r;
        } else if let Some(end) = rest[1..].find('%') {
            let name = &rest[1..=end];
            let values = ph.get(name).filter(|v| !v.is_empty()).ok_or_else(|| name.to_string())?;
            out = out
                .iter()
                .flat_map(|o| values.iter().map(move |v| format!("{o}{v}")))
                .collect();
            rest = &rest[end + 2..];
        } else {
            push(&mut out, rest);
            break;
        }
    }
    Ok(out)
}

/// The string path: transformations in the order written, then the
/// wildcards of `contains` / `startswith` / `endswith`.
fn text_matchers(key: &str, mods: &[&str], strings: &[String], cased: bool) -> Result<Vec<Vec<Matcher>>, String> {
    let mut out = Vec::new();
    for s in strings {
        let mut group = Vec::new();
        // Values as bytes (UTF-16 makes non-UTF-8), each possibly several.
        let mut values: Vec<Vec<u8>> = vec![s.clone().into_bytes()];
        let mut transformed = false;
        let mut utf16_pending = false;
        for m in mods {
            match *m {
                "windash" => {
                    let mut next = Vec::new();
                    for v in &values {
                        let text = String::from_utf8_lossy(v);
                        let variants = matcher::windash(&text, MAX_WINDASH_VARIANTS)
                            .ok_or_else(|| format!("{key}: windash would make too many variants"))?;
                        next.extend(variants.into_iter().map(String::into_bytes));
                    }
                    values = next;
                }
                "utf16le" | "wide" | "utf16be" | "utf16" => {
                    transformed = true;
                    utf16_pending = true;
                    values = values
                        .iter()
                        .map(|v| {
                            let text = String::from_utf8_lossy(v);
                            let units = text.encode_utf16();
                            let mut b = Vec::new();
                            if *m == "utf16" {
                                b.extend_from_slice(&[0xFF, 0xFE]);
                            }
                            for u in units {
                                if *m == "utf16be" {
                                    b.extend_from_slice(&u.to_be_bytes());
                                } else {
                                    b.extend_from_slice(&u.to_le_bytes());
                                }
                            }
                            b
                        })
                        .collect();
                }
                "base64" => {
                    transformed = true;
                    utf16_pending = false;
                    values = values.iter().map(|v| matcher::base64(v).into_bytes()).collect();
                }
                "base64offset" => {
                    transformed = true;
                    utf16_pending = false;
                    values = values
                        .iter()
                        .flat_map(|v| matcher::base64_offsets(v))
                        .map(String::into_bytes)
                        .collect();
                }
                _ => {}
            }
        }
        if utf16_pending {
            return Err(format!(
                "{key}: a UTF-16 value must be base64-encoded to be matched against text"
            ));
        }
        let wrap_start = mods.iter().any(|m| matches!(*m, "contains" | "endswith"));
        let wrap_end = mods.iter().any(|m| matches!(*m, "contains" | "startswith"));
        for v in values {
            let text = String::from_utf8(v)
                .map_err(|_| format!("{key}: a UTF-16 value must be base64-encoded to be matched against text"))?;
            let mut p = Vec::new();
            if wrap_start {
                p.push(Piece::Any);
            }
            if transformed {
                p.push(Piece::Lit(text));
            } else {
                p.extend(matcher::pieces(&text));
            }
            if wrap_end {
                p.push(Piece::Any);
            }
            // base64 text is case-sensitive by nature.
            group.push(Matcher::Text(TextMatch::new(&p, cased || transformed)));
        }
        out.push(group);
    }
    Ok(out)
}

/// What raised an alert.
#[derive(Debug)]
pub enum Hit<'a> {
    /// A single-event rule (its index in [`RuleSet::rules`]).
    Rule(usize, &'a Rule),
    /// A correlation rule that fired (its index in [`RuleSet::correlations`]).
    Correlation(usize, &'a Correlation, Fired),
}

/// The outcome of [`RuleSet::evaluate`] on one event.
#[derive(Debug, Default)]
pub struct Evaluation<'a> {
    /// Every rule that matched, silent ones included.
    pub matched: Vec<usize>,
    /// What raises an alert.
    pub hits: Vec<Hit<'a>>,
}

/// Rules loaded from files, evaluated together: each event is prepared
/// once, and only the rules it could match are evaluated (those with no
/// field prefilter, and those needing a field the event has).
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Rules with no field prefilter.
    always: Vec<usize>,
    /// Field name -> the rules needing one of their fields.
    by_field: HashMap<String, Vec<usize>>,
    /// Every case-insensitive keyword literal of every rule, found in an
    /// event's values in one pass.
    keywords: Option<aho_corasick::AhoCorasick>,
    /// Correlation rules, their references resolved, without cycles.
    correlations: Vec<Correlation>,
    /// For each rule: the correlations it feeds, as (correlation, index
    /// of the rule in the correlation's `rules`).
    feeds: Vec<Vec<(usize, usize)>>,
    /// The same for each correlation (chains).
    chains: Vec<Vec<(usize, usize)>>,
    /// Rules that only feed correlations (`generate: false`): no alert of
    /// their own.
    silent: Vec<bool>,
    /// The same for correlations.
    silent_correlations: Vec<bool>,
}

impl RuleSet {
    /// Loads every `.yml` / `.yaml` file below `dir`; returns the rules and
    /// every refusal (with its file, rule and reason).
    pub fn load_dir(dir: &std::path::Path, placeholders: &Placeholders) -> (RuleSet, Vec<DetectError>) {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        collect_files(dir, &mut files, &mut errors);
        files.sort();
        let mut rules = Vec::new();
        let mut correlations = Vec::new();
        let mut filters = Vec::new();
        for f in files {
            let origin = f.display().to_string();
            let text = match std::fs::read_to_string(&f) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(DetectError::Yaml {
                        file: origin,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            for doc in parse_file_with(&text, &origin, placeholders) {
                match doc {
                    Ok(Document::Rule(r)) => rules.push(*r),
                    Ok(Document::Correlation(c)) => correlations.push((origin.clone(), *c)),
                    Ok(Document::Filter(f)) => filters.push(*f),
                    Err(e) => errors.push(e),
                }
            }
        }
        let (set, more) = RuleSet::build(rules, correlations, filters);
        errors.extend(more);
        (set, errors)
    }

    /// A set of rules, correlations (with the file each came from) and
    /// filters: filters are applied to the rules they name, correlations'
    /// references resolved by id or name. A correlation that names an
    /// unknown rule, or takes part in a cycle, is refused.
    pub fn build(
        mut rules: Vec<Rule>,
        correlations: Vec<(String, Correlation)>,
        filters: Vec<Filter>,
    ) -> (RuleSet, Vec<DetectError>) {
        let mut errors = Vec::new();
        for f in &filters {
            for r in &mut rules {
                let named = match &f.rules {
                    None => true,
                    Some(names) => names
                        .iter()
                        .any(|n| *n == r.id || r.name.as_deref() == Some(n.as_str())),
                };
                let covers = |a: &Option<String>, b: &Option<String>| a.is_none() || a == b;
                let fits = covers(&f.logsource.category, &r.logsource.category)
                    && covers(&f.logsource.product, &r.logsource.product)
                    && covers(&f.logsource.service, &r.logsource.service);
                if named && fits {
                    r.filters.push(f.detection.clone());
                }
            }
        }
        // Resolve references; refuse correlations naming nothing, until
        // no more are refused (a refusal can orphan another).
        let mut kept: Vec<(String, Correlation)> = correlations;
        loop {
            let before = kept.len();
            let known = |name: &str, kept: &[(String, Correlation)]| {
                rules.iter().any(|r| r.id == name || r.name.as_deref() == Some(name))
                    || kept
                        .iter()
                        .any(|(_, c)| c.id == name || c.name.as_deref() == Some(name))
            };
            let mut next = Vec::new();
            for (origin, c) in &kept {
                match c.rules.iter().find(|n| !known(n, &kept)) {
                    Some(missing) => errors.push(refuse(
                        origin,
                        &c.id,
                        format!("correlation refers to {missing:?}, which no loaded rule has as id or name"),
                    )),
                    None => next.push((origin.clone(), c.clone())),
                }
            }
            kept = next;
            if kept.len() == before {
                break;
            }
        }
        // Cycles: a correlation reaching itself through its references.
        let index = |name: &str, kept: &[(String, Correlation)]| {
            kept.iter()
                .position(|(_, c)| c.id == name || c.name.as_deref() == Some(name))
        };
        let mut cyclic = vec![false; kept.len()];
        for (i, flag) in cyclic.iter_mut().enumerate() {
            let mut stack: Vec<usize> = vec![i];
            let mut seen = HashSet::new();
            while let Some(j) = stack.pop() {
                for n in &kept[j].1.rules {
                    if let Some(k) = index(n, &kept) {
                        if k == i {
                            *flag = true;
                        }
                        if seen.insert(k) {
                            stack.push(k);
                        }
                    }
                }
            }
        }
        let mut correlations = Vec::new();
        for ((origin, c), cyc) in kept.into_iter().zip(cyclic) {
            if cyc {
                errors.push(refuse(&origin, &c.id, "correlation refers to itself through a chain"));
            } else {
                correlations.push(c);
            }
        }
        let mut set = RuleSet::new(rules);
        let mut feeds = vec![Vec::new(); set.rules.len()];
        let mut chains = vec![Vec::new(); correlations.len()];
        let mut silent = vec![false; set.rules.len()];
        let mut alerting = vec![false; set.rules.len()];
        let mut silent_correlations = vec![false; correlations.len()];
        let mut alerting_correlations = vec![false; correlations.len()];
        for (ci, c) in correlations.iter().enumerate() {
            for (si, name) in c.rules.iter().enumerate() {
                for (ri, r) in set.rules.iter().enumerate() {
                    if r.id == *name || r.name.as_deref() == Some(name.as_str()) {
                        feeds[ri].push((ci, si));
                        if c.generate {
                            alerting[ri] = true;
                        } else {
                            silent[ri] = true;
                        }
                    }
                }
                for (oi, o) in correlations.iter().enumerate() {
                    if o.id == *name || o.name.as_deref() == Some(name.as_str()) {
                        chains[oi].push((ci, si));
                        if c.generate {
                            alerting_correlations[oi] = true;
                        } else {
                            silent_correlations[oi] = true;
                        }
                    }
                }
            }
        }
        for (s, a) in silent.iter_mut().zip(&alerting) {
            *s &= !a;
        }
        for (s, a) in silent_correlations.iter_mut().zip(&alerting_correlations) {
            *s &= !a;
        }
        set.correlations = correlations;
        set.feeds = feeds;
        set.chains = chains;
        set.silent = silent;
        set.silent_correlations = silent_correlations;
        (set, errors)
    }

    /// Every rule on `event` (at event time `time`), then the correlations
    /// their matches feed, and the chains those feed.
    pub fn evaluate<'a>(
        &'a self,
        event: &'a Event,
        time: time::OffsetDateTime,
        windows: &mut Windows,
        caps: Caps,
        dropped: &mut Dropped,
    ) -> Evaluation<'a> {
        let matched: Vec<usize> = self.matching_indexed(event).map(|(i, _)| i).collect();
        self.correlate(event, matched, time, windows, caps, dropped)
    }

    /// The second half of [`RuleSet::evaluate`]: given the rules that
    /// matched `event` (found by [`RuleSet::matching_indexed`], which
    /// needs no state and may run on any thread), the hits and the
    /// correlations their matches feed, in order.
    pub fn correlate<'a>(
        &'a self,
        event: &'a Event,
        matched: Vec<usize>,
        time: time::OffsetDateTime,
        windows: &mut Windows,
        caps: Caps,
        dropped: &mut Dropped,
    ) -> Evaluation<'a> {
        let mut out = Evaluation::default();
        // (correlation, index in its rules, name of what matched)
        let mut queue: Vec<(usize, usize, Option<&str>)> = Vec::new();
        for i in matched {
            let Some(rule) = self.rules.get(i) else { continue };
            out.matched.push(i);
            if !self.is_silent(i) {
                out.hits.push(Hit::Rule(i, rule));
            }
            for &(ci, si) in self.feeds(i) {
                queue.push((ci, si, rule.name.as_deref()));
            }
        }
        while let Some((ci, si, name)) = queue.pop() {
            let Some(c) = self.correlations.get(ci) else { continue };
            if let Some(fired) = windows.observe(c, (si, name), event, time, caps, dropped) {
                for &(next, nsi) in self.chains(ci) {
                    queue.push((next, nsi, c.name.as_deref()));
                }
                if !self.is_silent_correlation(ci) {
                    out.hits.push(Hit::Correlation(ci, c, fired));
                }
            }
        }
        out
    }

    /// The correlation rules.
    pub fn correlations(&self) -> &[Correlation] {
        &self.correlations
    }

    /// The correlations rule `i` feeds: (correlation, its index in the
    /// correlation's `rules`).
    pub fn feeds(&self, i: usize) -> &[(usize, usize)] {
        self.feeds.get(i).map_or(&[], Vec::as_slice)
    }

    /// The correlations correlation `i` feeds.
    pub fn chains(&self, i: usize) -> &[(usize, usize)] {
        self.chains.get(i).map_or(&[], Vec::as_slice)
    }

    /// Whether rule `i` only feeds correlations and raises no alert itself.
    pub fn is_silent(&self, i: usize) -> bool {
        self.silent.get(i).copied().unwrap_or(false)
    }

    /// Whether correlation `i` only feeds other correlations.
    pub fn is_silent_correlation(&self, i: usize) -> bool {
        self.silent_correlations.get(i).copied().unwrap_or(false)
    }

    /// A set of compiled rules, indexed for the prefilter.
    pub fn new(mut rules: Vec<Rule>) -> RuleSet {
        let mut literals: Vec<String> = Vec::new();
        let mut ids: HashMap<String, usize> = HashMap::new();
        for r in &mut rules {
            for sel in r.selections.values_mut() {
                if let Selection::Keywords { matchers, .. } = sel {
                    for m in matchers {
                        if let Matcher::Text(t) = m {
                            if let Some(lit) = t.contains_literal().map(str::to_string) {
                                let next = literals.len();
                                let id = *ids.entry(lit.clone()).or_insert_with(|| {
                                    literals.push(lit);
                                    next
                                });
                                t.literal_id = Some(id);
                            }
                        }
                    }
                }
            }
        }
        // Wildcard patterns anywhere: the literal each needs joins the same
        // automaton, so one pass over the event rules most of them out.
        for r in &mut rules {
            r.for_each_text_mut(&mut |t| {
                if let Some(lit) = t.required_literal().map(str::to_string) {
                    let next = literals.len();
                    let id = *ids.entry(lit.clone()).or_insert_with(|| {
                        literals.push(lit);
                        next
                    });
                    t.required_id = Some(id);
                }
            });
        }
        let keywords = (!literals.is_empty())
            .then(|| {
                // A DFA: the fastest overlapping search, for a one-time build.
                aho_corasick::AhoCorasick::builder()
                    .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                    .build(&literals)
                    .ok()
            })
            .flatten();
        if keywords.is_none() {
            // Without the automaton every keyword is scanned for and every
            // pattern run.
            for r in &mut rules {
                r.for_each_text_mut(&mut |t| {
                    t.literal_id = None;
                    t.required_id = None;
                });
            }
        }
        let mut always = Vec::new();
        let mut by_field: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            match r.needs_one_of() {
                Some(fields) if !fields.is_empty() => {
                    for f in fields {
                        by_field.entry(f).or_default().push(i);
                    }
                }
                _ => always.push(i),
            }
        }
        let n = rules.len();
        RuleSet {
            rules,
            always,
            by_field,
            keywords,
            correlations: Vec::new(),
            feeds: vec![Vec::new(); n],
            chains: Vec::new(),
            silent: vec![false; n],
            silent_correlations: Vec::new(),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules that match `event`.
    pub fn matching<'a>(&'a self, event: &'a Event) -> impl Iterator<Item = &'a Rule> + 'a {
        self.matching_indexed(event).map(|(_, r)| r)
    }

    /// The rules that match `event`, each with its index in [`RuleSet::rules`].
    pub fn matching_indexed<'a>(&'a self, event: &'a Event) -> impl Iterator<Item = (usize, &'a Rule)> + 'a {
        let mut subject = Subject::new(event);
        if let Some(ac) = &self.keywords {
            subject.find_keywords(ac);
        }
        let mut candidates: Vec<usize> = self.always.clone();
        for (name, _) in event.iter() {
            if let Some(rules) = self.by_field.get(name.as_str()) {
                candidates.extend_from_slice(rules);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .map(|i| (i, &self.rules[i]))
            .filter(|(_, r)| r.matches_subject(&subject))
            .collect::<Vec<_>>()
            .into_iter()
    }
}

fn collect_files(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>, errors: &mut Vec<DetectError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(DetectError::Yaml {
                file: dir.display().to_string(),
                reason: e.to_string(),
            });
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, files, errors);
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            files.push(path);
        }
    }
}
