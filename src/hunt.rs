//! Retro-hunts: a rule over indexed history, before (or after) it runs on
//! the live stream.
//!
//! What can be said of a rule as an index query is: its logsource's terms
//! (`cloud.provider:aws AND eventSource:*`), the fields it cannot match
//! without (one of them must exist), and its plain case-insensitive text
//! tests on catalog keyword fields (exact, prefix, suffix, contains, kept
//! under the condition's `and` / `or`; a `not` says nothing). That query
//! finds the candidates; the
//! same matcher the live stage uses decides on each, so a hunt and the
//! live stream agree on every event. A correlation rule hunts by replaying
//! the matches of the rules it refers to, oldest first, through the same
//! windows.
//!
//! A call scans at most [`MAX_SCAN`] candidates and stops once it has
//! `limit` matches; `next_cursor` (the search's cursor) resumes where it
//! stopped.

use std::time::Instant;

use detect::correlation::{Caps, Dropped, Windows};
use detect::matcher::{Cmp, TextNeed};
use detect::rule::{Hit, Need, Rule, RuleSet};
use query::lang::{Expr, Value as QValue};
use query::{Cursor, QueryError, Search};
use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Candidates one call examines at most.
pub const MAX_SCAN: u64 = 200_000;
/// Candidates fetched a page.
const PAGE: usize = 2_000;
/// Matches of referred rules a correlation hunt holds and replays at most
/// (each a whole event in memory).
pub const MAX_REPLAY: usize = 50_000;

/// What to hunt for.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// A single-event rule (its index in the set's rules).
    Rule(usize),
    /// A correlation (its index in the set's correlations).
    Correlation(usize),
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct Hunt {
    /// The rule's id and title.
    pub rule: String,
    pub title: String,
    /// The index query the candidates came from.
    pub candidates_query: String,
    /// Matching events (single-event rules), newest first.
    pub hits: Vec<Value>,
    /// Firings (correlation rules), oldest first.
    pub correlations: Vec<Value>,
    /// Candidates examined.
    pub scanned: u64,
    /// Candidates in the time range.
    pub candidates: u64,
    /// Resume here (single-event rules); null when the range is done.
    pub next_cursor: Option<String>,
    /// A correlation hunt stopped at [`MAX_SCAN`] candidates or
    /// [`MAX_REPLAY`] matches: narrow the time range to see the rest.
    pub truncated: bool,
    pub took_ms: u64,
}

fn is(field: &str, value: &str) -> Expr {
    Expr::Clause {
        field: Some(field.to_string()),
        value: QValue::Phrase(value.to_string()),
    }
}

fn exists(field: &str) -> Expr {
    Expr::Clause {
        field: Some(field.to_string()),
        value: QValue::Exists,
    }
}

/// A rule's plain text tests as index clauses, where the field is a
/// catalog keyword (indexed lowercased, as the matcher compares); `None`
/// where nothing safe can be said.
fn translate(need: &Need, catalog: &schemas::Catalog) -> Option<Expr> {
    match need {
        Need::Any => None,
        Need::All(v) => {
            let parts: Vec<Expr> = v.iter().filter_map(|n| translate(n, catalog)).collect();
            (!parts.is_empty()).then_some(Expr::And(parts))
        }
        Need::OneOf(v) => {
            let parts: Option<Vec<Expr>> = v.iter().map(|n| translate(n, catalog)).collect();
            parts.map(Expr::Or)
        }
        Need::Text { fields, how, value } => {
            // Every name the test may read must be a keyword field, or the
            // event could match through one the index cannot constrain.
            let keyword = |f: &String| catalog.get(f).is_some_and(|d| d.ty == schemas::FieldType::Keyword);
            if fields.is_empty() || !fields.iter().all(keyword) {
                return None;
            }
            let esc = regex::escape(value);
            let word = |pattern: Option<String>| {
                QValue::Word(query::lang::Word {
                    text: value.clone(),
                    pattern,
                })
            };
            let v = match how {
                // `(?s)`: a value with a line break matches as the
                // matcher's patterns do.
                TextNeed::Exact => QValue::Phrase(value.clone()),
                TextNeed::Prefix => word(Some(format!("(?s){esc}.*"))),
                TextNeed::Suffix => word(Some(format!("(?s).*{esc}"))),
                TextNeed::Contains => word(Some(format!("(?s).*{esc}.*"))),
                TextNeed::Pattern => word(Some(value.clone())),
            };
            Some(Expr::Or(
                fields
                    .iter()
                    .map(|f| Expr::Clause {
                        field: Some(f.clone()),
                        value: v.clone(),
                    })
                    .collect(),
            ))
        }
        Need::Number { fields, cmp, value } => {
            let mut parts = Vec::new();
            for f in fields {
                let ty = catalog.get(f).map(|d| d.ty)?;
                let range = Expr::Clause {
                    field: Some(f.clone()),
                    value: number_range(ty, *cmp, *value)?,
                };
                // A double field holds every value the matcher reads as a
                // number (both parse the same way); an integer field not
                // those with a fraction or an exponent ("4.5", "5e2"),
                // which indexing keeps outside it: such an event stays a
                // candidate. (Left out: an array mixing integers with such
                // values, whose integers alone are in the field.)
                parts.push(match ty {
                    schemas::FieldType::Long => Expr::Or(vec![range, Expr::Not(Box::new(exists(f)))]),
                    _ => range,
                });
            }
            (!parts.is_empty()).then_some(Expr::Or(parts))
        }
        Need::Network { fields, net } => {
            let mut parts = Vec::new();
            for f in fields {
                if catalog.get(f).map(|d| d.ty) != Some(schemas::FieldType::Ip) {
                    return None;
                }
                // Indexing and the matcher read an address the same way
                // (trimmed, parsed), so the IP field holds every address
                // the matcher could test.
                parts.push(Expr::Clause {
                    field: Some(f.clone()),
                    value: QValue::Word(query::lang::Word {
                        text: net.to_string(),
                        pattern: None,
                    }),
                });
            }
            (!parts.is_empty()).then_some(Expr::Or(parts))
        }
    }
}

/// A numeric comparison as an index range on a number field; `None` where
/// the field is not a number or the bound has no exact form in it (an
/// equality with a fraction on an integer field).
fn number_range(ty: schemas::FieldType, cmp: Cmp, value: f64) -> Option<QValue> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    if !value.is_finite() {
        return None;
    }
    let (lower, upper) = match ty {
        schemas::FieldType::Double => {
            let v = value.to_string();
            match cmp {
                Cmp::Eq => (Included(v.clone()), Included(v)),
                Cmp::Lt => (Unbounded, Excluded(v)),
                Cmp::Lte => (Unbounded, Included(v)),
                Cmp::Gt => (Excluded(v), Unbounded),
                Cmp::Gte => (Included(v), Unbounded),
            }
        }
        schemas::FieldType::Long => {
            // Integers compared with a real bound: x > 2.5 is x >= 3.
            let int = |f: f64| (f.abs() < 9.0e18).then(|| format!("{}", f as i64));
            match cmp {
                Cmp::Eq if value.fract() != 0.0 => return None,
                Cmp::Eq => {
                    let v = int(value)?;
                    (Included(v.clone()), Included(v))
                }
                Cmp::Lt if value.fract() == 0.0 => (Unbounded, Excluded(int(value)?)),
                Cmp::Lt | Cmp::Lte => (Unbounded, Included(int(value.floor())?)),
                Cmp::Gt if value.fract() == 0.0 => (Excluded(int(value)?), Unbounded),
                Cmp::Gt | Cmp::Gte => (Included(int(value.ceil())?), Unbounded),
            }
        }
        _ => return None,
    };
    Some(QValue::Range { lower, upper })
}

/// The index query a rule's candidates satisfy: never stricter than the
/// rule (every event the rule matches is a candidate).
pub fn candidates(rule: &Rule, catalog: &schemas::Catalog) -> Expr {
    let mut all = vec![Expr::Not(Box::new(is("event.dataset", detect::ALERTS_DATASET)))];
    for (field, values) in rule.logsource_terms() {
        if values.is_empty() {
            all.push(exists(field));
        } else {
            all.push(Expr::Or(values.iter().map(|v| is(field, v)).collect()));
        }
    }
    if let Some(fields) = rule.needs_one_of().filter(|f| !f.is_empty()) {
        all.push(Expr::Or(fields.iter().map(|f| exists(f)).collect()));
    }
    if let Some(terms) = translate(&rule.need(), catalog) {
        all.push(terms);
    }
    Expr::And(all)
}

/// A readable form of a candidates query, for the answer.
fn show(e: &Expr) -> String {
    match e {
        Expr::All => "*".into(),
        Expr::And(v) => format!("({})", v.iter().map(show).collect::<Vec<_>>().join(" AND ")),
        Expr::Or(v) => format!("({})", v.iter().map(show).collect::<Vec<_>>().join(" OR ")),
        Expr::Not(e) => format!("NOT {}", show(e)),
        Expr::Clause { field, value } => {
            let f = field.as_deref().unwrap_or("message");
            match value {
                QValue::Exists => format!("{f}:*"),
                QValue::Phrase(p) => format!("{f}:{p:?}"),
                other => format!("{f}:{other:?}"),
            }
        }
    }
}

/// Runs a hunt. Blocking: call it off the async threads.
#[allow(clippy::too_many_arguments)]
pub fn run(
    store: &index::Store,
    set: &RuleSet,
    target: Target,
    start: Option<OffsetDateTime>,
    end: Option<OffsetDateTime>,
    limit: usize,
    cursor: Option<Cursor>,
    deadline: Instant,
) -> Result<Hunt, QueryError> {
    let began = Instant::now();
    match target {
        Target::Rule(i) => {
            let rule = &set.rules()[i];
            let expr = candidates(rule, &store.schema().catalog);
            let mut hunt = Hunt {
                rule: rule.id.clone(),
                title: rule.title.clone(),
                candidates_query: show(&expr),
                hits: Vec::new(),
                correlations: Vec::new(),
                scanned: 0,
                candidates: 0,
                next_cursor: cursor.as_ref().map(Cursor::encode),
                truncated: false,
                took_ms: 0,
            };
            let mut cursor = cursor;
            loop {
                let page = query::exec::run(
                    store,
                    &Search {
                        expr: expr.clone(),
                        start,
                        end,
                        limit: PAGE,
                        cursor,
                        deadline: Some(deadline),
                    },
                )?;
                hunt.candidates = page.total;
                // Stop at `limit` matches, but never between hits that
                // share a key: a cursor resumes strictly after its key.
                let mut stop_after: Option<Cursor> = None;
                let mut more_in_page = false;
                for (hit, key) in page.hits.into_iter().zip(page.keys) {
                    if stop_after.is_some_and(|k| k != key) {
                        more_in_page = true;
                        break;
                    }
                    hunt.scanned += 1;
                    let matched = schemas::Event::from_json(hit.clone()).is_ok_and(|e| rule.matches(&e));
                    if matched {
                        hunt.hits.push(hit);
                    }
                    if stop_after.is_none() && hunt.hits.len() >= limit {
                        stop_after = Some(key);
                    }
                }
                if let Some(k) = stop_after {
                    // A later page may still hold matches: resume after `k`,
                    // unless it was the last hit of the range.
                    hunt.next_cursor = (more_in_page || page.next_cursor.is_some()).then(|| k.encode());
                    break;
                }
                hunt.next_cursor = page.next_cursor.clone();
                cursor = match page.next_cursor.as_deref().map(Cursor::decode).transpose()? {
                    Some(c) if hunt.scanned < MAX_SCAN => Some(c),
                    _ => break,
                };
            }
            hunt.took_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
            Ok(hunt)
        }
        Target::Correlation(ci) => {
            let c = &set.correlations()[ci];
            // Every referred rule's candidates, gathered, then replayed
            // oldest first through fresh windows.
            let mut events: Vec<(OffsetDateTime, schemas::Event)> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut queries = Vec::new();
            let mut scanned = 0u64;
            let mut truncated = false;
            // The correlations whose firings reach this one (itself too).
            let mut reach = std::collections::HashSet::from([ci]);
            loop {
                let before = reach.len();
                for j in 0..set.correlations().len() {
                    if set.chains(j).iter().any(|(k, _)| reach.contains(k)) {
                        reach.insert(j);
                    }
                }
                if reach.len() == before {
                    break;
                }
            }
            for (i, r) in set.rules().iter().enumerate() {
                if !set.feeds(i).iter().any(|(j, _)| reach.contains(j)) {
                    continue;
                }
                if events.len() >= MAX_REPLAY || scanned >= MAX_SCAN {
                    truncated = true;
                    break;
                }
                let expr = candidates(r, &store.schema().catalog);
                queries.push(show(&expr));
                let mut cursor = None;
                loop {
                    let page = query::exec::run(
                        store,
                        &Search {
                            expr: expr.clone(),
                            start,
                            end,
                            limit: PAGE,
                            cursor,
                            deadline: Some(deadline),
                        },
                    )?;
                    for hit in page.hits {
                        scanned += 1;
                        let Ok(event) = schemas::Event::from_json(hit) else {
                            continue;
                        };
                        if !r.matches(&event) {
                            continue;
                        }
                        let id = event.get_str("event.id").unwrap_or_default().to_string();
                        if seen.insert(id) {
                            let t = event
                                .get("@timestamp")
                                .and_then(schemas::time::parse_value)
                                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                            events.push((t, event));
                        }
                    }
                    cursor = match page.next_cursor.as_deref().map(Cursor::decode).transpose()? {
                        Some(c) if events.len() < MAX_REPLAY && scanned < MAX_SCAN => Some(c),
                        Some(_) => {
                            truncated = true;
                            break;
                        }
                        None => break,
                    };
                }
            }
            events.sort_by_key(|e| e.0);
            let mut windows = Windows::default();
            let mut dropped = Dropped::default();
            let mut fired = Vec::new();
            for (t, e) in &events {
                for hit in set.evaluate(e, *t, &mut windows, Caps::default(), &mut dropped).hits {
                    if let Hit::Correlation(j, _, f) = hit {
                        if j == ci && fired.len() < limit {
                            fired.push(json!({
                                "group_key": f.group_key,
                                "group": f.group,
                                "first_time": schemas::time::format(f.first),
                                "last_time": schemas::time::format(f.last),
                                "event_ids": f.event_ids,
                                "value": f.value,
                            }));
                        }
                    }
                }
            }
            Ok(Hunt {
                rule: c.id.clone(),
                title: c.title.clone(),
                candidates_query: queries.join(" ; "),
                hits: Vec::new(),
                correlations: fired,
                scanned,
                candidates: events.len() as u64,
                next_cursor: None,
                truncated,
                took_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            })
        }
    }
}

/// The target of a set read from one file: its one correlation that no
/// other refers to, else its one rule.
pub fn top(set: &RuleSet) -> Option<Target> {
    let correlations = set.correlations();
    let referred = |i: usize| !set.chains(i).is_empty();
    let tops: Vec<usize> = (0..correlations.len()).filter(|&i| !referred(i)).collect();
    match (tops.as_slice(), set.rules().len()) {
        ([i], _) => Some(Target::Correlation(*i)),
        ([], 1) => Some(Target::Rule(0)),
        _ => None,
    }
}

/// The loaded rule or correlation with this id or name.
pub fn find(set: &RuleSet, id: &str) -> Option<Target> {
    if let Some(i) = set
        .rules()
        .iter()
        .position(|r| r.id == id || r.name.as_deref() == Some(id))
    {
        return Some(Target::Rule(i));
    }
    set.correlations()
        .iter()
        .position(|c| c.id == id || c.name.as_deref() == Some(id))
        .map(Target::Correlation)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rule(detection: &str) -> Rule {
        let text = format!("title: t\nid: r\nlogsource: {{product: test}}\ndetection:\n{detection}");
        match detect::rule::parse_file(&text, "t.yml").remove(0).unwrap() {
            detect::rule::Document::Rule(r) => *r,
            _ => unreachable!(),
        }
    }

    /// What is translated, and what is left to the matcher.
    #[test]
    fn text_numbers_and_networks_on_typed_fields_constrain_the_candidates() {
        let cases = [
            // A contains on a keyword field; an IP (not a keyword field)
            // dropped; a `not` says nothing.
            (
                "  sel:\n    user.name|contains: ADM\n    source.ip: 10.0.0.1\n  f:\n    process.name: x\n  condition: sel and not f\n",
                r#"((user.name:Word(Word { text: "adm", pattern: Some("(?s).*adm.*") })))"#,
            ),
            // OR of selections: both translated, or nothing.
            (
                "  a:\n    event.action|startswith: Get\n  b:\n    event.outcome: failure\n  condition: a or b\n",
                r#"((event.action:Word(Word { text: "get", pattern: Some("(?s)get.*") })) OR (event.outcome:"failure"))"#,
            ),
            ("  a:\n    event.action: x\n  b:\n    eventName: y\n  condition: a or b\n", ""),
            // Regex and cased values: left to the matcher; inner
            // wildcards a regex over the lowercased value.
            ("  a:\n    user.name|re: ^adm\n  condition: a\n", ""),
            ("  a:\n    user.name|cased: Admin\n  condition: a\n", ""),
            (
                "  a:\n    user.name: Ad*m?n\n  condition: a\n",
                r#"(user.name:Word(Word { text: "(?s)ad.*m.n", pattern: Some("(?s)ad.*m.n") }))"#,
            ),
            // Numbers as ranges on number fields (integers: a real bound
            // rounded inward; an equality with a fraction says nothing),
            // CIDR on IP fields; an event whose value did not index as
            // an integer stays a candidate.
            (
                "  a:\n    http.response.status_code|gte: 500\n  condition: a\n",
                r#"((http.response.status_code:Range { lower: Included("500"), upper: Unbounded } OR NOT http.response.status_code:*))"#,
            ),
            (
                "  a:\n    http.response.status_code|lt: 399.5\n  condition: a\n",
                r#"((http.response.status_code:Range { lower: Unbounded, upper: Included("399") } OR NOT http.response.status_code:*))"#,
            ),
            ("  a:\n    http.response.status_code|gt: 1e300\n  condition: a\n", ""),
            (
                "  a:\n    source.ip|cidr: 10.0.0.0/8\n  condition: a\n",
                r#"(source.ip:Word(Word { text: "10.0.0.0/8", pattern: None }))"#,
            ),
            ("  a:\n    user.name|cidr: 10.0.0.0/8\n  condition: a\n", ""),
            ("  a:\n    user.name|gt: 3\n  condition: a\n", ""),
        ];
        for (detection, want) in cases {
            let r = rule(detection);
            let got = translate(&r.need(), &schemas::Catalog::builtin())
                .map(|e| show(&e))
                .unwrap_or_default();
            assert_eq!(got, want, "{detection}");
        }
    }
}
