//! An [`Expr`] evaluated against one event in memory, with the index's
//! semantics: what a search for the same query would find among the
//! indexed events, this finds in a single event. Webhook filters use it to
//! choose the alerts a receiver gets, before any index has them.
//!
//! Keyword fields match a word or phrase as the whole value, case-folded;
//! text fields (and a clause without a field, over `message`) match the
//! words of a word or phrase in order; wildcards run over the case-folded
//! value; numbers, dates and IPs compare as such, IPs also by CIDR.

use std::net::IpAddr;
use std::ops::Bound;

use schemas::{Catalog, Event, FieldType};
use serde_json::Value as Json;

use crate::compile::{cidr, lowercase, words};
use crate::lang::{Expr, Value, Word};
use crate::QueryError;

/// A query compiled to test single events.
#[derive(Debug, Clone)]
pub struct Filter {
    node: Node,
}

#[derive(Debug, Clone)]
enum Node {
    All,
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Clause { field: String, ty: FieldType, test: Test },
}

#[derive(Debug, Clone)]
enum Test {
    Exists,
    /// Case-folded whole value (keyword fields).
    Equals(String),
    /// Case-folded words, in order (text fields).
    Words(Vec<String>),
    /// A wildcard pattern over the case-folded value.
    Pattern(regex::Regex),
    /// A number, date or IP; compared after conversion.
    Typed(String),
    Network(std::net::Ipv6Addr, std::net::Ipv6Addr),
    Range(Bound<String>, Bound<String>),
}

impl Filter {
    /// Compiles `expr`, typing each field from `catalog` (a field the
    /// catalog does not know is a keyword, as dynamic fields are).
    pub fn new(expr: &Expr, catalog: &Catalog) -> Result<Filter, QueryError> {
        Ok(Filter {
            node: node(expr, catalog)?,
        })
    }

    /// True if `event` matches.
    pub fn matches(&self, event: &Event) -> bool {
        eval(&self.node, event)
    }
}

fn node(expr: &Expr, catalog: &Catalog) -> Result<Node, QueryError> {
    Ok(match expr {
        Expr::All => Node::All,
        Expr::And(items) => Node::And(items.iter().map(|i| node(i, catalog)).collect::<Result<_, _>>()?),
        Expr::Or(items) => Node::Or(items.iter().map(|i| node(i, catalog)).collect::<Result<_, _>>()?),
        Expr::Not(inner) => Node::Not(Box::new(node(inner, catalog)?)),
        Expr::Clause { field, value } => {
            let name = field.as_deref().unwrap_or(schemas::fields::MESSAGE);
            let ty = catalog.get(name).map_or(FieldType::Keyword, |d| d.ty);
            Node::Clause {
                field: name.to_string(),
                ty,
                test: test(name, ty, value)?,
            }
        }
    })
}

fn test(name: &str, ty: FieldType, value: &Value) -> Result<Test, QueryError> {
    let pattern = |p: &str| {
        regex::Regex::new(&format!("^(?s:{p})$"))
            .map(Test::Pattern)
            .map_err(|e| QueryError::Unsupported(format!("wildcard pattern: {e}")))
    };
    Ok(match value {
        Value::Exists => Test::Exists,
        Value::Range { lower, upper } => {
            if ty == FieldType::Text {
                return Err(QueryError::Unsupported(format!(
                    "{name} is a text field: ranges work on keyword, number, date and ip fields"
                )));
            }
            Test::Range(lower.clone(), upper.clone())
        }
        Value::Word(Word { pattern: Some(p), .. }) => match ty {
            FieldType::Keyword | FieldType::Text => pattern(p)?,
            _ => {
                return Err(QueryError::Unsupported(format!(
                    "wildcards work on keyword and text fields; {name} is {ty:?}"
                )))
            }
        },
        Value::Word(Word { text, .. }) | Value::Phrase(text) => match ty {
            FieldType::Keyword => Test::Equals(lowercase(text)),
            FieldType::Text => Test::Words(words(text)),
            FieldType::Ip if text.contains('/') => {
                let (lo, hi) = cidr(text).ok_or_else(|| QueryError::BadValue {
                    field: name.to_string(),
                    value: text.clone(),
                    expected: "an IP network such as 10.0.0.0/8".into(),
                })?;
                Test::Network(lo, hi)
            }
            _ => Test::Typed(text.clone()),
        },
    })
}

fn eval(node: &Node, event: &Event) -> bool {
    match node {
        Node::All => true,
        Node::And(items) => items.iter().all(|i| eval(i, event)),
        Node::Or(items) => items.iter().any(|i| eval(i, event)),
        Node::Not(inner) => !eval(inner, event),
        Node::Clause { field, ty, test } => {
            let Some(value) = event.get(field) else {
                return false;
            };
            let values: Vec<&Json> = match value {
                Json::Array(items) => items.iter().collect(),
                one => vec![one],
            };
            values.into_iter().any(|v| !v.is_null() && holds(*ty, test, v))
        }
    }
}

fn text_of(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn holds(ty: FieldType, test: &Test, v: &Json) -> bool {
    let Some(text) = text_of(v) else {
        return matches!(test, Test::Exists);
    };
    match test {
        Test::Exists => true,
        Test::Equals(want) => lowercase(&text) == *want,
        Test::Words(want) => {
            let have = words(&text);
            !want.is_empty() && have.windows(want.len()).any(|w| w == want.as_slice())
        }
        Test::Pattern(re) => match ty {
            FieldType::Text => words(&text).iter().any(|w| re.is_match(w)),
            _ => re.is_match(&lowercase(&text)),
        },
        Test::Typed(want) => compare(ty, &text, want) == Some(std::cmp::Ordering::Equal),
        Test::Network(lo, hi) => ip(&text).is_some_and(|a| *lo <= a && a <= *hi),
        Test::Range(lower, upper) => {
            let above = match lower {
                Bound::Unbounded => true,
                Bound::Included(b) => compare(ty, &text, b).is_some_and(|o| o.is_ge()),
                Bound::Excluded(b) => compare(ty, &text, b).is_some_and(|o| o.is_gt()),
            };
            let below = match upper {
                Bound::Unbounded => true,
                Bound::Included(b) => compare(ty, &text, b).is_some_and(|o| o.is_le()),
                Bound::Excluded(b) => compare(ty, &text, b).is_some_and(|o| o.is_lt()),
            };
            above && below
        }
    }
}

fn ip(text: &str) -> Option<std::net::Ipv6Addr> {
    Some(match text.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    })
}

/// `have` against `want` in the field's type; `None` if either does not
/// convert.
fn compare(ty: FieldType, have: &str, want: &str) -> Option<std::cmp::Ordering> {
    match ty {
        FieldType::Long | FieldType::Double => have.parse::<f64>().ok()?.partial_cmp(&want.parse::<f64>().ok()?),
        FieldType::Date => {
            let t = |s: &str| schemas::time::parse_str(s).or_else(|| crate::time::day_start(s));
            Some(t(have)?.cmp(&t(want)?))
        }
        FieldType::Ip => Some(ip(have)?.cmp(&ip(want)?)),
        FieldType::Boolean => Some(have.eq_ignore_ascii_case(want).then_some(std::cmp::Ordering::Equal)?),
        FieldType::Keyword | FieldType::Text => Some(lowercase(have).cmp(&lowercase(want))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::parse;
    use serde_json::json;

    fn alert() -> Event {
        Event::from_json(json!({
            "@timestamp": "2026-12-02T10:00:00Z",
            "message": "Failed password for root from 10.1.2.3",
            "event": {"dataset": "tripline.alerts", "severity": 73},
            "rule": {"id": "905d389b-b853-46d0-9d3d-dea0d3a3cd49", "name": "AWS STS AssumeRole Misuse"},
            "source": {"ip": "10.1.2.3"},
            "alert": {"level": "High", "tags": ["attack.t1548", "attack.privilege-escalation"], "count": 3},
        }))
        .expect("a test event")
    }

    #[test]
    fn filters_match_as_a_search_would() {
        let cases = [
            ("", true),
            ("alert.level:high", true),
            ("alert.level:HIGH", true),
            ("alert.level:medium", false),
            ("(alert.level:low OR alert.level:high)", true),
            ("alert.tags:attack.t1548", true),
            ("alert.tags:attack.t15*", true),
            ("alert.tags:attack.t9*", false),
            ("rule.name:assumerole", false),
            ("rule.name:*assumerole*", true),
            ("rule.name:\"aws sts assumerole misuse\"", true),
            ("message:\"password for root\"", true),
            ("message:\"root for password\"", false),
            ("rule.id:905d389b-b853-46d0-9d3d-dea0d3a3cd49", true),
            ("password AND root", true),
            ("\"failed password\"", true),
            ("source.ip:10.0.0.0/8", true),
            ("source.ip:192.168.0.0/16", false),
            ("source.ip:10.1.2.3", true),
            ("event.severity:>=70", true),
            ("event.severity:[80 TO 100]", false),
            ("alert.count:3", true),
            ("alert.group_key:*", false),
            ("alert.level:* AND NOT alert.tags:attack.t1548", false),
            ("@timestamp:>=2026-12-02", true),
            ("@timestamp:<2026-12-02", false),
        ];
        let catalog = Catalog::builtin();
        let event = alert();
        for (q, want) in cases {
            let expr = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
            let filter = Filter::new(&expr, &catalog).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(filter.matches(&event), want, "{q}");
        }
    }

    #[test]
    fn a_range_on_a_text_field_is_refused() {
        let expr = parse("message:[a TO b]").expect("parses");
        assert!(Filter::new(&expr, &Catalog::builtin()).is_err());
    }
}
