//! An independent check: every single-event SigmaHQ rule that the
//! `sigma-rust` crate can also evaluate is run by both engines over one
//! generated event set, and they must agree rule by rule. Where they do
//! not, the difference is explained below, with the specification's word.
//!
//! Both engines see the detection logic only: each rule's logsource is
//! replaced by one Tripline does not map, so neither selects events by
//! logsource nor renames fields.
//!
//! Two differences are the specification's, and the check states them by
//! giving sigma-rust what Tripline means rather than skipping the rules:
//! - Keywords: the specification searches them "across an entire event",
//!   and pySigma's backends turn them into full-text searches (a substring
//!   of the event); sigma-rust matches a keyword against each whole value.
//!   sigma-rust gets each keyword as `*keyword*`. Keyword lists with
//!   `'|all'` (every keyword somewhere in the event, not all in one value)
//!   sigma-rust cannot express: those rules are counted and left out.
//! - `null`: the specification leaves it to the backend; pySigma's
//!   Elasticsearch and Splunk backends make `field: null` "the field does
//!   not exist" (`NOT _exists_:field`, `NOT field=*`), and so does
//!   Tripline. sigma-rust only matches a field present with a null value,
//!   so its events get `field: null` for each absent field a rule tests
//!   against `null`.
//!
//! The events are made from the rules' own values (a map of a selection
//! becomes an event with those fields; `contains`, `startswith` and
//! `endswith` values are padded; wildcards filled), so that most rules
//! match some event and most events are near misses for other rules.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use detect::rule::{parse_file, Document};
use serde_json::{json, Map, Value};
use yaml_serde::Value as Yaml;

fn sigma_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/sigma")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yml") {
            out.push(p);
        }
    }
}

fn scalar(y: &Yaml) -> Option<Value> {
    match y {
        Yaml::String(s) => Some(json!(s)),
        Yaml::Number(n) => n.as_i64().map(|i| json!(i)).or_else(|| n.as_f64().map(|f| json!(f))),
        Yaml::Bool(b) => Some(json!(b)),
        _ => None,
    }
}

/// A value that the field test `key` (with modifiers) would accept.
fn sample(key: &str, v: &Value) -> Option<Value> {
    let mut parts = key.split('|');
    let _field = parts.next();
    let mods: Vec<&str> = parts.collect();
    let fill = |s: &str| s.replace('*', "abc").replace('?', "a");
    if mods.iter().any(|m| {
        matches!(
            *m,
            "re" | "cidr"
                | "base64"
                | "base64offset"
                | "utf16le"
                | "utf16be"
                | "utf16"
                | "wide"
                | "windash"
                | "expand"
                | "fieldref"
                | "lt"
                | "lte"
                | "gt"
                | "gte"
                | "exists"
                | "minute"
                | "hour"
                | "day"
                | "week"
                | "month"
                | "year"
        )
    }) {
        return None;
    }
    let Value::String(s) = v else { return Some(v.clone()) };
    let s = fill(s);
    Some(json!(if mods.contains(&"contains") {
        format!("x{s}x")
    } else if mods.contains(&"startswith") {
        format!("{s}x")
    } else if mods.contains(&"endswith") {
        format!("x{s}")
    } else {
        s
    }))
}

/// Puts `value` at the dotted `field` of a nested JSON object.
fn put(obj: &mut Map<String, Value>, field: &str, value: Value) {
    match field.split_once('.') {
        Some((head, tail)) => {
            let inner = obj.entry(head.to_string()).or_insert_with(|| json!({}));
            if let Value::Object(m) = inner {
                put(m, tail, value);
            }
        }
        None => {
            obj.insert(field.to_string(), value);
        }
    }
}

/// Events made from a rule's selections.
fn events_of(detection: &Yaml, out: &mut Vec<Value>) {
    let Some(m) = detection.as_mapping() else { return };
    for (name, sel) in m {
        if name.as_str() == Some("condition") {
            continue;
        }
        let maps: Vec<&Yaml> = match sel {
            Yaml::Sequence(items) if items.iter().all(|i| i.as_mapping().is_some()) => items.iter().collect(),
            Yaml::Mapping(_) => vec![sel],
            Yaml::Sequence(words) => {
                for w in words.iter().filter_map(scalar).take(3) {
                    if let Value::String(s) = w {
                        out.push(json!({"message": format!("x {} x", s.replace('*', "abc"))}));
                    }
                }
                continue;
            }
            _ => continue,
        };
        for map in maps {
            let mut event = Map::new();
            for (k, v) in map.as_mapping().into_iter().flatten() {
                let Some(key) = k.as_str() else { continue };
                let values: Vec<Value> = match v {
                    Yaml::Sequence(items) => items.iter().filter_map(scalar).collect(),
                    other => scalar(other).into_iter().collect(),
                };
                let chosen = if key.contains("|all") {
                    let joined: Vec<String> = values.iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
                    (!joined.is_empty()).then(|| json!(joined.join(" ")))
                } else {
                    values.first().cloned()
                };
                if let Some(s) = chosen.and_then(|v| sample(key, &v)) {
                    let field = key.split('|').next().unwrap_or(key);
                    let s = if key.contains("|all") && key.contains("contains") {
                        json!(format!("x {} x", s.as_str().unwrap_or_default()))
                    } else {
                        s
                    };
                    put(&mut event, field, s);
                }
            }
            if !event.is_empty() {
                out.push(Value::Object(event));
            }
        }
    }
}

/// Rules both engines take, as text with a neutral logsource.
struct Both {
    id: String,
    ours: detect::rule::Rule,
    theirs: sigma_rust::Rule,
    /// Fields the rule tests against `null`.
    nulls: Vec<String>,
}

/// Whether the detection has a keyword list with `'|all'`.
fn has_all_keywords(detection: &Yaml) -> bool {
    detection.as_mapping().into_iter().flatten().any(|(_, sel)| {
        sel.as_mapping()
            .is_some_and(|m| m.keys().any(|k| k.as_str() == Some("|all")))
    })
}

/// Keyword lists as sigma-rust reads substrings: `*keyword*`.
fn keywords_as_substrings(detection: &mut Yaml) {
    let Some(m) = detection.as_mapping_mut() else { return };
    for (name, sel) in m.iter_mut() {
        if name.as_str() == Some("condition") {
            continue;
        }
        if let Yaml::Sequence(items) = sel {
            if items.iter().all(|i| i.as_mapping().is_none()) {
                for i in items.iter_mut() {
                    if let Some(s) = scalar(i).map(|v| match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    }) {
                        let s = if s.starts_with('*') { s } else { format!("*{s}") };
                        let s = if s.ends_with('*') { s } else { format!("{s}*") };
                        *i = Yaml::String(s);
                    }
                }
            }
        }
    }
}

/// Fields tested against `null` (`field: null`).
fn null_fields(detection: &Yaml) -> Vec<String> {
    let mut out = Vec::new();
    let mut maps: Vec<&Yaml> = Vec::new();
    for (_, sel) in detection.as_mapping().into_iter().flatten() {
        match sel {
            Yaml::Mapping(_) => maps.push(sel),
            Yaml::Sequence(items) => maps.extend(items.iter().filter(|i| i.as_mapping().is_some())),
            _ => {}
        }
    }
    for m in maps {
        for (k, v) in m.as_mapping().into_iter().flatten() {
            if v.is_null() {
                if let Some(k) = k.as_str() {
                    out.push(k.split('|').next().unwrap_or(k).to_string());
                }
            }
        }
    }
    out
}

fn has(obj: &Value, field: &str) -> bool {
    let mut at = obj;
    for part in field.split('.') {
        match at.get(part) {
            Some(v) => at = v,
            None => return false,
        }
    }
    true
}

#[test]
fn tripline_and_sigma_rust_agree_rule_by_rule() {
    let dir = sigma_dir();
    assert!(dir.is_dir(), "{} is missing", dir.display());
    let mut paths = Vec::new();
    files(&dir, &mut paths);
    paths.sort();
    let mut both = Vec::new();
    let mut events = vec![json!({"unrelated": "x"})];
    let (mut theirs_refused, mut ours_refused, mut all_keywords) = (0, 0, 0);
    for p in &paths {
        let text = std::fs::read_to_string(p).unwrap();
        let Ok(mut doc) = yaml_serde::from_str::<Yaml>(&text) else {
            continue;
        };
        if doc.get("correlation").is_some() || doc.get("filter").is_some() {
            continue;
        }
        if let Some(m) = doc.as_mapping_mut() {
            m.insert(
                Yaml::String("logsource".into()),
                yaml_serde::from_str("{product: crosscheck}").unwrap(),
            );
        }
        let Some(detection) = doc.get("detection").cloned() else {
            continue;
        };
        events_of(&detection, &mut events);
        let neutral = yaml_serde::to_string(&doc).unwrap();
        if has_all_keywords(&detection) {
            all_keywords += 1;
            continue;
        }
        let mut theirs_doc = doc.clone();
        if let Some(d) = theirs_doc.get_mut("detection") {
            keywords_as_substrings(d);
        }
        let Ok(theirs) = sigma_rust::rule_from_yaml(&yaml_serde::to_string(&theirs_doc).unwrap()) else {
            theirs_refused += 1;
            continue;
        };
        let ours = match parse_file(&neutral, &p.display().to_string()).remove(0) {
            Ok(Document::Rule(r)) => *r,
            _ => {
                ours_refused += 1;
                continue;
            }
        };
        both.push(Both {
            id: ours.id.clone(),
            ours,
            theirs,
            nulls: null_fields(&detection),
        });
    }
    assert!(both.len() >= 500, "only {} rules in common", both.len());
    let ours_events: Vec<schemas::Event> = events
        .iter()
        .map(|e| schemas::Event::from_json(e.clone()).unwrap())
        .collect();
    let theirs_events: Vec<sigma_rust::Event> = events
        .iter()
        .map(|e| sigma_rust::event_from_json(&e.to_string()).unwrap())
        .collect();
    let mut differ = Vec::new();
    let mut matches_total = 0;
    for b in &both {
        let ours: BTreeSet<usize> = (0..events.len()).filter(|&i| b.ours.matches(&ours_events[i])).collect();
        let theirs: BTreeSet<usize> = (0..events.len())
            .filter(|&i| {
                let absent: Vec<&String> = b.nulls.iter().filter(|f| !has(&events[i], f)).collect();
                if absent.is_empty() {
                    return b.theirs.is_match(&theirs_events[i]);
                }
                let mut e = events[i].clone();
                if let Value::Object(m) = &mut e {
                    for f in absent {
                        put(m, f, Value::Null);
                    }
                }
                b.theirs.is_match(&sigma_rust::event_from_json(&e.to_string()).unwrap())
            })
            .collect();
        matches_total += ours.len();
        if ours != theirs {
            let only_ours: Vec<&Value> = ours.difference(&theirs).take(2).map(|&i| &events[i]).collect();
            let only_theirs: Vec<&Value> = theirs.difference(&ours).take(2).map(|&i| &events[i]).collect();
            differ.push(format!(
                "{}: only tripline {only_ours:?}; only sigma-rust {only_theirs:?}",
                b.id
            ));
        }
    }
    eprintln!(
        "{} rules in common, {} events, {} matches; left out: {all_keywords} with '|all' keywords, \
         sigma-rust refused {theirs_refused}, tripline {ours_refused}",
        both.len(),
        events.len(),
        matches_total
    );
    assert!(
        matches_total >= both.len(),
        "the events match too little to compare: {matches_total}"
    );
    assert!(
        differ.is_empty(),
        "{} rules differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
    // The rule set's shared prefilters (field presence, one automaton pass
    // for keyword and wildcard literals) decide as each rule alone does.
    let set = detect::rule::RuleSet::new(both.iter().map(|b| b.ours.clone()).collect());
    for (i, e) in ours_events.iter().enumerate() {
        let from_set: BTreeSet<&str> = set.matching(e).map(|r| r.id.as_str()).collect();
        let alone: BTreeSet<&str> = both
            .iter()
            .filter(|b| b.ours.matches(e))
            .map(|b| b.id.as_str())
            .collect();
        assert_eq!(from_set, alone, "event {i}: {}", events[i]);
    }
}
