//! Field tests: one `field|modifier...: values` entry of a selection,
//! compiled once (lowercased literals, regexes, networks, numbers), then
//! evaluated on events.

use std::net::IpAddr;

use base64::Engine;
use ipnet::IpNet;
use regex::{Regex, RegexBuilder};
use schemas::Event;
use serde_json::Value;

/// A value test, compiled.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// A string with `*` / `?` wildcards.
    Text(TextMatch),
    /// A regular expression (`re`).
    Regex(Regex),
    /// A network (`cidr`).
    Cidr(IpNet),
    /// A number compared (`lt`, `lte`, `gt`, `gte`).
    Number(Cmp, f64),
    /// A part of a time (`hour`, ...), then compared.
    TimePart(TimePart, Cmp, f64),
}

/// How a number compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// A part of a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePart {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// A string test with wildcards, case-insensitive unless `cased`.
#[derive(Debug, Clone)]
pub struct TextMatch {
    cased: bool,
    kind: TextKind,
}

#[derive(Debug, Clone)]
enum TextKind {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Glob(Regex),
}

/// A Sigma value split into its plain text and its wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Lit(String),
    /// `*`.
    Any,
    /// `?`.
    One,
}

/// Splits a Sigma string on its unescaped wildcards (`\*`, `\?` and `\\`
/// are escapes; a backslash before anything else is kept).
pub fn pieces(value: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('*' | '?' | '\\')) => {
                    lit.push(n);
                    chars.next();
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(if c == '*' { Piece::Any } else { Piece::One });
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

impl TextMatch {
    /// Compiles wildcard pieces.
    pub fn new(pieces: &[Piece], cased: bool) -> TextMatch {
        let fold = |s: &str| if cased { s.to_string() } else { s.to_lowercase() };
        let kind = match pieces {
            [] => TextKind::Exact(String::new()),
            [Piece::Lit(s)] => TextKind::Exact(fold(s)),
            [Piece::Lit(s), Piece::Any] => TextKind::Prefix(fold(s)),
            [Piece::Any, Piece::Lit(s)] => TextKind::Suffix(fold(s)),
            [Piece::Any, Piece::Lit(s), Piece::Any] => TextKind::Contains(fold(s)),
            [Piece::Any] | [Piece::Any, Piece::Any] => TextKind::Prefix(String::new()),
            _ => {
                let mut re = String::from("(?s)^");
                for p in pieces {
                    match p {
                        Piece::Lit(s) => re.push_str(&regex::escape(&fold(s))),
                        Piece::Any => re.push_str(".*"),
                        Piece::One => re.push('.'),
                    }
                }
                re.push('$');
                TextKind::Glob(Regex::new(&re).expect("an escaped literal with .* and . is a valid regex"))
            }
        };
        TextMatch { cased, kind }
    }

    fn is_match(&self, value: &str) -> bool {
        let lowered;
        let v = if self.cased {
            value
        } else {
            lowered = value.to_lowercase();
            &lowered
        };
        match &self.kind {
            TextKind::Exact(s) => v == s,
            TextKind::Prefix(s) => v.starts_with(s.as_str()),
            TextKind::Suffix(s) => v.ends_with(s.as_str()),
            TextKind::Contains(s) => v.contains(s.as_str()),
            TextKind::Glob(re) => re.is_match(v),
        }
    }
}

impl Matcher {
    /// Whether one field value matches.
    pub fn is_match(&self, value: &Value) -> bool {
        match value {
            Value::Array(items) => items.iter().any(|v| self.is_match(v)),
            Value::Null | Value::Object(_) => false,
            scalar => match self {
                Matcher::Text(t) => text_of(scalar).is_some_and(|s| t.is_match(&s)),
                Matcher::Regex(re) => text_of(scalar).is_some_and(|s| re.is_match(&s)),
                Matcher::Cidr(net) => scalar
                    .as_str()
                    .and_then(|s| s.trim().parse::<IpAddr>().ok())
                    .is_some_and(|ip| net.contains(&ip.to_canonical())),
                Matcher::Number(cmp, n) => number_of(scalar).is_some_and(|v| compare(*cmp, v, *n)),
                Matcher::TimePart(part, cmp, n) => schemas::time::parse_value(scalar)
                    .map(|t| time_part(*part, t))
                    .is_some_and(|v| compare(*cmp, v, *n)),
            },
        }
    }
}

fn text_of(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(std::borrow::Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn compare(cmp: Cmp, a: f64, b: f64) -> bool {
    match cmp {
        Cmp::Eq => a == b,
        Cmp::Lt => a < b,
        Cmp::Lte => a <= b,
        Cmp::Gt => a > b,
        Cmp::Gte => a >= b,
    }
}

fn time_part(part: TimePart, t: time::OffsetDateTime) -> f64 {
    let t = t.to_offset(time::UtcOffset::UTC);
    f64::from(match part {
        TimePart::Minute => u32::from(t.minute()),
        TimePart::Hour => u32::from(t.hour()),
        TimePart::Day => u32::from(t.day()),
        TimePart::Week => u32::from(t.iso_week()),
        TimePart::Month => u32::from(u8::from(t.month())),
        TimePart::Year => return f64::from(t.year()),
    })
}

/// Builds a regex for `re` with the sub-modifiers `i`, `m`, `s`.
pub fn regex(pattern: &str, insensitive: bool, multi_line: bool, dot_all: bool) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(insensitive)
        .multi_line(multi_line)
        .dot_matches_new_line(dot_all)
        .size_limit(1 << 20)
        .build()
}

/// The Windows command-line dashes `windash` makes interchangeable.
const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// Every variant of `value` with each dash replaced by each of the five
/// (at most `limit` variants: a value with many dashes is refused).
pub fn windash(value: &str, limit: usize) -> Option<Vec<String>> {
    let mut out = vec![String::new()];
    for c in value.chars() {
        if DASHES.contains(&c) {
            if out.len() * DASHES.len() > limit {
                return None;
            }
            out = out
                .into_iter()
                .flat_map(|s| {
                    DASHES.iter().map(move |d| {
                        let mut s = s.clone();
                        s.push(*d);
                        s
                    })
                })
                .collect();
        } else {
            for s in &mut out {
                s.push(c);
            }
        }
    }
    Some(out)
}

/// The three forms a value takes inside base64 depending on its offset
/// (pySigma's and the specification's `base64offset`).
pub fn base64_offsets(value: &[u8]) -> Vec<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let start_cut = [0usize, 2, 3];
    let end_cut = [0usize, 3, 2];
    (0..3)
        .map(|i| {
            let mut padded = vec![b' '; i];
            padded.extend_from_slice(value);
            let encoded = engine.encode(&padded);
            let end = encoded.len() - end_cut[(value.len() + i) % 3];
            encoded[start_cut[i]..end].to_string()
        })
        .collect()
}

/// Base64 of `value`.
pub fn base64(value: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(value)
}

/// Whether any value of `event`'s fields (strings and numbers, arrays
/// included) matches: a keyword search.
pub fn any_value_matches(event: &Event, m: &Matcher) -> bool {
    event.iter().any(|(_, v)| m.is_match(v))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_follow_the_specification() {
        use Piece::*;
        assert_eq!(
            pieces("a*b?c"),
            vec![Lit("a".into()), Any, Lit("b".into()), One, Lit("c".into())]
        );
        assert_eq!(pieces(r"a\*b"), vec![Lit("a*b".into())]);
        assert_eq!(pieces(r"C:\Windows\x"), vec![Lit(r"C:\Windows\x".into())]);
        assert_eq!(pieces(r"a\\*"), vec![Lit(r"a\".into()), Any]);
        assert_eq!(pieces(r"a\\\*"), vec![Lit(r"a\*".into())]);
        assert_eq!(pieces(r"\\\\"), vec![Lit(r"\\".into())]);
    }

    #[test]
    fn text_matches_are_case_insensitive_unless_cased() {
        let m = |v: &str, cased: bool| Matcher::Text(TextMatch::new(&pieces(v), cased));
        assert!(m("GetObject", false).is_match(&json!("getobject")));
        assert!(!m("GetObject", true).is_match(&json!("getobject")));
        assert!(m("*.EXE", false).is_match(&json!("C:\\x\\cmd.exe")));
        assert!(m("prog?.exe", false).is_match(&json!("progA.exe")));
        assert!(!m("prog?.exe", false).is_match(&json!("progAB.exe")));
        assert!(m("a*b*c", false).is_match(&json!("A-x-B-y-C")));
        assert!(m("4624", false).is_match(&json!(4624)));
        assert!(m("x", false).is_match(&json!(["y", "X"])));
        assert!(!m("x", false).is_match(&json!(null)));
    }

    #[test]
    fn windash_and_base64_offsets() {
        assert_eq!(windash("-a", 100).unwrap().len(), 5);
        assert_eq!(windash("-a -b", 100).unwrap().len(), 25);
        assert!(windash(&"-".repeat(10), 1000).is_none());
        // pySigma's documented example: "/c" -> the three offsets.
        let forms = base64_offsets(b"http://");
        assert_eq!(forms, vec!["aHR0cDovL", "h0dHA6Ly", "odHRwOi8v"]);
        assert_eq!(base64(b"cmd"), "Y21k");
    }

    #[test]
    fn numbers_networks_and_times() {
        assert!(Matcher::Number(Cmp::Gte, 400.0).is_match(&json!(403)));
        assert!(Matcher::Number(Cmp::Lt, 400.0).is_match(&json!("200")));
        assert!(!Matcher::Number(Cmp::Lt, 400.0).is_match(&json!("abc")));
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(Matcher::Cidr(net).is_match(&json!("10.1.2.3")));
        assert!(Matcher::Cidr(net).is_match(&json!("::ffff:10.1.2.3")));
        assert!(!Matcher::Cidr(net).is_match(&json!("11.1.2.3")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(Matcher::Cidr(v6).is_match(&json!("2001:db8::1")));
        let t = json!("2026-12-02T23:15:00Z");
        assert!(Matcher::TimePart(TimePart::Hour, Cmp::Eq, 23.0).is_match(&t));
        assert!(Matcher::TimePart(TimePart::Month, Cmp::Eq, 12.0).is_match(&t));
        assert!(Matcher::TimePart(TimePart::Week, Cmp::Eq, 49.0).is_match(&t));
        assert!(Matcher::TimePart(TimePart::Minute, Cmp::Gte, 15.0).is_match(&t));
    }
}
