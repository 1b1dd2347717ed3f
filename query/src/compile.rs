//! An [`Expr`] as a tantivy query for one partition's schema.

use std::net::Ipv6Addr;
use std::ops::Bound;

use index::doc::{parse_ip, to_tantivy_date};
use index::schema::{EventSchema, TEXT_TOKENIZER};
use schemas::FieldType;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, ExistsQuery, InvertedIndexRangeQuery, Occur, PhraseQuery, Query, RangeQuery,
    RegexQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
use tantivy::Term;

use crate::lang::{Expr, Value, Word};
use crate::QueryError;

/// Compiles `expr` against `schema`.
pub fn compile(expr: &Expr, schema: &EventSchema) -> Result<Box<dyn Query>, QueryError> {
    match expr {
        Expr::All => Ok(Box::new(AllQuery)),
        Expr::Not(inner) => Ok(Box::new(BooleanQuery::new(vec![
            (Occur::Must, Box::new(AllQuery) as Box<dyn Query>),
            (Occur::MustNot, compile(inner, schema)?),
        ]))),
        Expr::And(items) => {
            let mut clauses = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Expr::Not(inner) => clauses.push((Occur::MustNot, compile(inner, schema)?)),
                    other => clauses.push((Occur::Must, compile(other, schema)?)),
                }
            }
            if clauses.iter().all(|(o, _)| *o == Occur::MustNot) {
                clauses.push((Occur::Must, Box::new(AllQuery)));
            }
            Ok(Box::new(BooleanQuery::new(clauses)))
        }
        Expr::Or(items) => {
            let clauses = items
                .iter()
                .map(|i| Ok((Occur::Should, compile(i, schema)?)))
                .collect::<Result<Vec<_>, QueryError>>()?;
            Ok(Box::new(BooleanQuery::new(clauses)))
        }
        Expr::Clause { field: None, value } => {
            let message = schema
                .field(schemas::fields::MESSAGE)
                .ok_or_else(|| QueryError::Unsupported("this partition has no message field".into()))?;
            text_clause(schemas::fields::MESSAGE, message.field, value)
        }
        Expr::Clause {
            field: Some(name),
            value,
        } => match schema.field(name) {
            Some(indexed) => typed_clause(name, indexed.field, indexed.ty, indexed.fast, value),
            None => dynamic_clause(schema.dynamic, name, value),
        },
    }
}

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

fn regex(pattern: &str, field: Field) -> Result<Box<dyn Query>, QueryError> {
    RegexQuery::from_pattern(pattern, field)
        .map(|q| Box::new(q) as Box<dyn Query>)
        .map_err(|e| QueryError::Unsupported(format!("wildcard pattern: {e}")))
}

/// The words of a text as the index's tokenizer cuts them, lowercased.
pub(crate) fn words(text: &str) -> Vec<String> {
    let mut analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .build();
    debug_assert_eq!(
        TEXT_TOKENIZER, "default",
        "this analyzer mirrors tantivy's default tokenizer"
    );
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

fn text_clause(name: &str, field: Field, value: &Value) -> Result<Box<dyn Query>, QueryError> {
    let phrase_of = |text: &str| -> Box<dyn Query> {
        let terms: Vec<Term> = words(text).iter().map(|w| Term::from_field_text(field, w)).collect();
        match terms.len() {
            0 => Box::new(EmptyQuery),
            1 => term_query(terms.into_iter().next().expect("one term")),
            _ => Box::new(PhraseQuery::new(terms)),
        }
    };
    match value {
        Value::Word(Word { pattern: Some(p), .. }) => regex(p, field),
        Value::Word(Word { text, .. }) | Value::Phrase(text) => Ok(phrase_of(text)),
        Value::Exists => regex(".*", field),
        Value::Range { .. } => Err(QueryError::Unsupported(format!(
            "{name} is a text field: ranges work on keyword, number, date and ip fields"
        ))),
    }
}

fn typed_clause(
    name: &str,
    field: Field,
    ty: FieldType,
    fast: bool,
    value: &Value,
) -> Result<Box<dyn Query>, QueryError> {
    if ty == FieldType::Text {
        return text_clause(name, field, value);
    }
    if let Value::Exists = value {
        return Ok(if fast {
            Box::new(ExistsQuery::new(name.to_string(), false))
        } else {
            match ty {
                FieldType::Keyword => regex(".*", field)?,
                _ => range_query(name, field, ty, &Bound::Unbounded, &Bound::Unbounded)?,
            }
        });
    }
    if let Value::Range { lower, upper } = value {
        return range_query(name, field, ty, lower, upper);
    }
    let (text, pattern) = match value {
        Value::Word(w) => (w.text.as_str(), w.pattern.as_deref()),
        Value::Phrase(p) => (p.as_str(), None),
        _ => unreachable!("exists and ranges are handled above"),
    };
    match ty {
        FieldType::Keyword => match pattern {
            Some(p) => regex(p, field),
            None => Ok(term_query(Term::from_field_text(field, &lowercase(text)))),
        },
        FieldType::Ip if text.contains('/') => {
            let (lo, hi) = cidr(text).ok_or_else(|| bad_value(name, text, "an IP network such as 10.0.0.0/8"))?;
            Ok(Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_ip_addr(field, lo)),
                Bound::Included(Term::from_field_ip_addr(field, hi)),
            )))
        }
        FieldType::Date if is_day(text) => {
            let start = parse_typed(name, field, FieldType::Date, text)?;
            let end = day_start(text)
                .and_then(|t| t.checked_add(time::Duration::days(1)))
                .map(|t| Term::from_field_date(field, to_tantivy_date(t)))
                .ok_or_else(|| bad_value(name, text, "a date"))?;
            Ok(Box::new(RangeQuery::new(Bound::Included(start), Bound::Excluded(end))))
        }
        _ => {
            if pattern.is_some() {
                return Err(QueryError::Unsupported(format!(
                    "wildcards work on keyword and text fields; {name} is {ty:?} (use a range or, for IPs, CIDR)"
                )));
            }
            let term = parse_typed(name, field, ty, text)?;
            Ok(match ty {
                FieldType::Date => {
                    // The inverted index keeps dates to the second: match the
                    // exact instant through the fast column instead.
                    Box::new(RangeQuery::new(Bound::Included(term.clone()), Bound::Included(term)))
                }
                _ => term_query(term),
            })
        }
    }
}

/// Lowercases as tantivy's `LowerCaser` does at indexing, one char at a
/// time. `str::to_lowercase` applies the final-sigma rule, so a keyword
/// ending in `Σ` was indexed as `σ` but searched as `ς` and never found (L9).
pub fn lowercase(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

fn is_day(s: &str) -> bool {
    s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-'
}

/// Midnight UTC of a `YYYY-MM-DD` day.
fn day_start(s: &str) -> Option<time::OffsetDateTime> {
    is_day(s).then(|| crate::time::day_start(s)).flatten()
}

fn bad_value(name: &str, text: &str, want: &str) -> QueryError {
    QueryError::BadValue {
        field: name.to_string(),
        value: text.to_string(),
        expected: want.to_string(),
    }
}

/// A term of the field's type from the text of a query.
fn parse_typed(name: &str, field: Field, ty: FieldType, text: &str) -> Result<Term, QueryError> {
    match ty {
        FieldType::Keyword | FieldType::Text => Ok(Term::from_field_text(field, &lowercase(text))),
        FieldType::Long => text
            .parse::<i64>()
            .map(|v| Term::from_field_i64(field, v))
            .map_err(|_| bad_value(name, text, "an integer")),
        FieldType::Double => text
            .parse::<f64>()
            .map(|v| Term::from_field_f64(field, v))
            .map_err(|_| bad_value(name, text, "a number")),
        FieldType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" => Ok(Term::from_field_bool(field, true)),
            "false" => Ok(Term::from_field_bool(field, false)),
            _ => Err(bad_value(name, text, "true or false")),
        },
        FieldType::Ip => parse_ip(text)
            .map(|ip| Term::from_field_ip_addr(field, ip))
            .ok_or_else(|| bad_value(name, text, "an IP address")),
        FieldType::Date => schemas::time::parse_str(text)
            .or_else(|| day_start(text))
            .map(|t| Term::from_field_date(field, to_tantivy_date(t)))
            .ok_or_else(|| bad_value(name, text, "a time (RFC 3339, RFC 2822 or epoch)")),
    }
}

fn range_query(
    name: &str,
    field: Field,
    ty: FieldType,
    lower: &Bound<String>,
    upper: &Bound<String>,
) -> Result<Box<dyn Query>, QueryError> {
    let (min, max) = match ty {
        FieldType::Long => (
            Term::from_field_i64(field, i64::MIN),
            Term::from_field_i64(field, i64::MAX),
        ),
        FieldType::Double => (
            Term::from_field_f64(field, f64::NEG_INFINITY),
            Term::from_field_f64(field, f64::INFINITY),
        ),
        FieldType::Ip => (
            Term::from_field_ip_addr(field, Ipv6Addr::UNSPECIFIED),
            Term::from_field_ip_addr(field, Ipv6Addr::from(u128::MAX)),
        ),
        FieldType::Date => (
            Term::from_field_date(field, tantivy::DateTime::from_timestamp_nanos(i64::MIN)),
            Term::from_field_date(field, tantivy::DateTime::from_timestamp_nanos(i64::MAX)),
        ),
        FieldType::Boolean => (Term::from_field_bool(field, false), Term::from_field_bool(field, true)),
        FieldType::Keyword => {
            let conv = |b: &Bound<String>| -> Bound<Term> {
                match b {
                    Bound::Included(v) => Bound::Included(Term::from_field_text(field, &lowercase(v))),
                    Bound::Excluded(v) => Bound::Excluded(Term::from_field_text(field, &lowercase(v))),
                    Bound::Unbounded => Bound::Unbounded,
                }
            };
            let (lo, hi) = (conv(lower), conv(upper));
            if matches!((&lo, &hi), (Bound::Unbounded, Bound::Unbounded)) {
                return regex(".*", field);
            }
            return Ok(Box::new(InvertedIndexRangeQuery::new(lo, hi)));
        }
        FieldType::Text => {
            return Err(QueryError::Unsupported(format!(
                "{name} is a text field: ranges need another type"
            )));
        }
    };
    let conv = |b: &Bound<String>, open: &Term| -> Result<Bound<Term>, QueryError> {
        Ok(match b {
            Bound::Included(v) => Bound::Included(parse_typed(name, field, ty, v)?),
            Bound::Excluded(v) => Bound::Excluded(parse_typed(name, field, ty, v)?),
            Bound::Unbounded => Bound::Included(open.clone()),
        })
    };
    Ok(Box::new(RangeQuery::new(conv(lower, &min)?, conv(upper, &max)?)))
}

/// The first and last address of a CIDR network, IPv4 mapped to IPv6.
pub fn cidr(text: &str) -> Option<(Ipv6Addr, Ipv6Addr)> {
    let (addr, len) = text.split_once('/')?;
    let len: u32 = len.parse().ok()?;
    let (base, bits) = match addr.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            if len > 32 {
                return None;
            }
            (v4.to_ipv6_mapped(), 96 + len)
        }
        std::net::IpAddr::V6(v6) => {
            if len > 128 {
                return None;
            }
            (v6, len)
        }
    };
    let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
    let lo = u128::from(base) & mask;
    let hi = lo | !mask;
    Some((Ipv6Addr::from(lo), Ipv6Addr::from(hi)))
}

/// A clause on a field outside the catalog, inside `_dynamic`.
fn dynamic_clause(dynamic: Field, path: &str, value: &Value) -> Result<Box<dyn Query>, QueryError> {
    let str_term = |text: &str| {
        let mut t = Term::from_field_json_path(dynamic, path, true);
        t.append_type_and_str(&lowercase(text));
        t
    };
    let prefix_pattern = || {
        let t = str_term("");
        let mut pattern = String::new();
        // The path keeps its case (only values are lowercased).
        for c in String::from_utf8_lossy(t.serialized_value_bytes()).chars() {
            if c.is_control() {
                pattern.push_str(&format!("\\x{:02x}", c as u32));
            } else {
                if c.is_ascii_punctuation() || c == ' ' {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
        }
        pattern
    };
    match value {
        Value::Phrase(text) => Ok(term_query(str_term(text))),
        Value::Word(Word { pattern: Some(p), .. }) => regex(&format!("{}{p}", prefix_pattern()), dynamic),
        Value::Word(Word { text, .. }) => {
            let mut alternatives = vec![(Occur::Should, term_query(str_term(text)))];
            let mut numeric = |v| {
                let mut t = Term::from_field_json_path(dynamic, path, true);
                match v {
                    Num::I(i) => t.append_type_and_fast_value::<i64>(i),
                    Num::F(f) => t.append_type_and_fast_value::<f64>(f),
                    Num::B(b) => t.append_type_and_fast_value::<bool>(b),
                }
                alternatives.push((Occur::Should, term_query(t)));
            };
            if let Ok(i) = text.parse::<i64>() {
                numeric(Num::I(i));
            } else if let Ok(f) = text.parse::<f64>() {
                numeric(Num::F(f));
            } else if let Ok(b) = text.parse::<bool>() {
                numeric(Num::B(b));
            }
            Ok(Box::new(BooleanQuery::new(alternatives)))
        }
        Value::Exists => regex(&format!("{}.*", prefix_pattern()), dynamic),
        Value::Range { .. } => Err(QueryError::Unsupported(format!(
            "{path} is not in the field catalog: ranges need a catalog field (add it to schemas/fields.toml)"
        ))),
    }
}

enum Num {
    I(i64),
    F(f64),
    B(bool),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_bounds() {
        let (lo, hi) = cidr("10.0.0.0/8").unwrap();
        assert_eq!(lo, "10.0.0.0".parse::<std::net::Ipv4Addr>().unwrap().to_ipv6_mapped());
        assert_eq!(
            hi,
            "10.255.255.255".parse::<std::net::Ipv4Addr>().unwrap().to_ipv6_mapped()
        );
        let (lo, hi) = cidr("2001:db8::/32").unwrap();
        assert_eq!(lo, "2001:db8::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            hi,
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse::<Ipv6Addr>().unwrap()
        );
        assert!(cidr("10.0.0.0/33").is_none());
        assert!(cidr("nope/8").is_none());
    }

    /// L8: the day shorthand always answered 400 "is not a date".
    #[test]
    fn a_day_compiles_to_that_whole_day_and_the_last_day_does_not_panic() {
        let schema = index::EventSchema::new(schemas::Catalog::builtin());
        let q = crate::lang::parse("@timestamp:2026-11-24").unwrap();
        let compiled = compile(&q, &schema).unwrap();
        let text = format!("{compiled:?}");
        assert!(
            text.contains("2026-11-24T00:00:00Z") && text.contains("2026-11-25T00:00:00Z"),
            "{text}"
        );
        let last = crate::lang::parse("@timestamp:9999-12-31").unwrap();
        assert!(compile(&last, &schema).is_err());
    }

    #[test]
    fn queries_lowercase_as_the_index_does() {
        assert_eq!(lowercase("ΟΔΟΣ"), "οδοσ");
        assert_ne!("ΟΔΟΣ".to_lowercase(), lowercase("ΟΔΟΣ"), "str::to_lowercase ends in ς");
    }
}
