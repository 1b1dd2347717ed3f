//! Field tests: one `field|modifier...: values` entry of a selection,
//! compiled once (lowercased literals, regexes, networks, numbers), then
//! evaluated on events.

use std::borrow::Cow;
use std::collections::HashMap;
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
    /// Its literal's number in a rule set's keyword automaton, when it is
    /// a case-insensitive keyword looked for anywhere.
    pub(crate) literal_id: Option<usize>,
    /// For a wildcard pattern: its longest ASCII literal piece, lowercased,
    /// which any value it matches contains (lowercased); and that
    /// literal's number in the rule set's automaton. When the automaton
    /// found the literal nowhere in the event, the pattern's regex is not
    /// run.
    required: Option<String>,
    pub(crate) required_id: Option<usize>,
    /// For a wildcard pattern: a regular expression matching the whole
    /// (lowercased) value, as an index's regex query needs.
    whole: Option<String>,
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

/// How a plain text test compares, for translating it into an index query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextNeed {
    Exact,
    Prefix,
    Suffix,
    Contains,
    /// A wildcard pattern with inner wildcards: the text is a regular
    /// expression matching the whole lowercased value.
    Pattern,
}

impl TextMatch {
    /// A case-insensitive test without inner wildcards: how it compares
    /// and its lowercased literal. `None` for anything else.
    pub fn plain(&self) -> Option<(TextNeed, &str)> {
        if self.cased {
            return None;
        }
        match &self.kind {
            TextKind::Exact(s) => Some((TextNeed::Exact, s)),
            TextKind::Prefix(s) => Some((TextNeed::Prefix, s)),
            TextKind::Suffix(s) => Some((TextNeed::Suffix, s)),
            TextKind::Contains(s) => Some((TextNeed::Contains, s)),
            TextKind::Glob(_) => self.whole.as_deref().map(|p| (TextNeed::Pattern, p)),
        }
    }

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
                // A leading or trailing `*` is left out rather than written
                // `^.*` / `.*$`: an unanchored search means the same for a
                // yes/no answer, and lets the regex engine skip to its first
                // literal with a substring search instead of running its
                // automaton over every byte of every value.
                let start = usize::from(matches!(pieces.first(), Some(Piece::Any)));
                let end = pieces.len() - usize::from(matches!(pieces.last(), Some(Piece::Any)));
                let mut re = String::from("(?s)");
                if start == 0 {
                    re.push('^');
                }
                for p in &pieces[start..end.max(start)] {
                    match p {
                        Piece::Lit(s) => re.push_str(&regex::escape(&fold(s))),
                        Piece::Any => re.push_str(".*"),
                        Piece::One => re.push('.'),
                    }
                }
                if end == pieces.len() {
                    re.push('$');
                }
                TextKind::Glob(Regex::new(&re).expect("an escaped literal with .* and . is a valid regex"))
            }
        };
        let whole = matches!(kind, TextKind::Glob(_)).then(|| {
            let mut re = String::from("(?s)");
            for p in pieces {
                match p {
                    Piece::Lit(s) => re.push_str(&regex::escape(&fold(s))),
                    Piece::Any => re.push_str(".*"),
                    Piece::One => re.push('.'),
                }
            }
            re
        });
        let required = match kind {
            TextKind::Glob(_) => pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Lit(s) if s.is_ascii() => Some(s.to_ascii_lowercase()),
                    _ => None,
                })
                .max_by_key(String::len),
            _ => None,
        };
        TextMatch {
            cased,
            kind,
            literal_id: None,
            required,
            required_id: None,
            whole,
        }
    }

    /// The literal every value this wildcard pattern matches contains.
    pub(crate) fn required_literal(&self) -> Option<&str> {
        self.required.as_deref()
    }

    /// The literal a case-insensitive `*literal*` looks for.
    pub(crate) fn contains_literal(&self) -> Option<&str> {
        match &self.kind {
            TextKind::Contains(s) if !self.cased && !s.is_empty() => Some(s),
            _ => None,
        }
    }

    /// Matches a value given as written and lowercased.
    fn is_match(&self, original: &str, lower: &str) -> bool {
        let v = if self.cased { original } else { lower };
        match &self.kind {
            TextKind::Exact(s) => v == s,
            TextKind::Prefix(s) => v.starts_with(s.as_str()),
            TextKind::Suffix(s) => v.ends_with(s.as_str()),
            TextKind::Contains(s) => v.contains(s.as_str()),
            TextKind::Glob(re) => re.is_match(v),
        }
    }
}

/// One field of an event prepared for matching: its scalar values (an
/// array's elements too) as text, as written and lowercased, computed once
/// per event however many rules look at it.
#[derive(Debug)]
pub struct Field<'e> {
    /// The value as stored.
    pub raw: &'e Value,
    texts: Vec<(Cow<'e, str>, String)>,
}

impl<'e> Field<'e> {
    /// Prepares one value.
    pub fn of(raw: &'e Value) -> Field<'e> {
        let mut texts = Vec::new();
        let mut add = |v: &'e Value| {
            if let Some(t) = text_of(v) {
                let lower = t.to_lowercase();
                texts.push((t, lower));
            }
        };
        match raw {
            Value::Array(items) => items.iter().for_each(&mut add),
            v => add(v),
        }
        Field { raw, texts }
    }

    fn scalars(&self) -> impl Iterator<Item = &'e Value> {
        let raw: &'e Value = self.raw;
        let items: &'e [Value] = match raw {
            Value::Array(items) => items,
            v => std::slice::from_ref(v),
        };
        items.iter()
    }
}

/// An event prepared for matching: each field once, by name, and which
/// keyword literals of a rule set occur in its values.
#[derive(Debug)]
pub struct Subject<'e> {
    fields: HashMap<&'e str, Field<'e>>,
    found: Option<Vec<bool>>,
}

impl<'e> Subject<'e> {
    /// Prepares every field of `event`.
    pub fn new(event: &'e Event) -> Subject<'e> {
        Subject {
            fields: event.iter().map(|(k, v)| (k.as_str(), Field::of(v))).collect(),
            found: None,
        }
    }

    /// Runs a keyword automaton over every value once: afterwards a
    /// keyword with a literal number is a lookup, not a scan.
    pub fn find_keywords(&mut self, automaton: &aho_corasick::AhoCorasick) {
        let mut found = vec![false; automaton.patterns_len()];
        for f in self.fields.values() {
            for (_, lower) in &f.texts {
                for m in automaton.find_overlapping_iter(lower.as_str()) {
                    found[m.pattern().as_usize()] = true;
                }
            }
        }
        self.found = Some(found);
    }

    /// A field by name.
    pub fn get(&self, name: &str) -> Option<&Field<'e>> {
        self.fields.get(name)
    }

    /// Whether any value of any field matches: a keyword search.
    pub fn any_value_matches(&self, m: &Matcher) -> bool {
        if let (Matcher::Text(t), Some(found)) = (m, &self.found) {
            if let Some(id) = t.literal_id {
                return found.get(id).copied().unwrap_or(false);
            }
        }
        self.may_match(m) && self.fields.values().any(|f| m.is_match(f))
    }

    /// False when `m` cannot match any value of this event: its required
    /// literal is nowhere in it (known from the keyword automaton's pass).
    pub fn may_match(&self, m: &Matcher) -> bool {
        match (m, &self.found) {
            (Matcher::Text(t), Some(found)) => t.required_id.is_none_or(|id| found.get(id).copied().unwrap_or(true)),
            _ => true,
        }
    }
}

impl Matcher {
    /// Whether one of a field's values matches.
    pub fn is_match(&self, f: &Field<'_>) -> bool {
        match self {
            Matcher::Text(t) => f.texts.iter().any(|(o, l)| t.is_match(o, l)),
            Matcher::Regex(re) => f.texts.iter().any(|(o, _)| re.is_match(o)),
            Matcher::Cidr(net) => f.texts.iter().any(|(o, _)| {
                o.trim()
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| net.contains(&ip.to_canonical()))
            }),
            Matcher::Number(cmp, n) => f.scalars().filter_map(number_of).any(|v| compare(*cmp, v, *n)),
            Matcher::TimePart(part, cmp, n) => f
                .scalars()
                .filter_map(schemas::time::parse_value)
                .any(|t| compare(*cmp, time_part(*part, t), *n)),
        }
    }
}

fn text_of(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    trait On {
        fn on(&self, v: &Value) -> bool;
    }

    impl On for Matcher {
        fn on(&self, v: &Value) -> bool {
            self.is_match(&Field::of(v))
        }
    }

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
        assert!(m("GetObject", false).on(&json!("getobject")));
        assert!(!m("GetObject", true).on(&json!("getobject")));
        assert!(m("*.EXE", false).on(&json!("C:\\x\\cmd.exe")));
        assert!(m("prog?.exe", false).on(&json!("progA.exe")));
        assert!(!m("prog?.exe", false).on(&json!("progAB.exe")));
        assert!(m("a*b*c", false).on(&json!("A-x-B-y-C")));
        assert!(m("4624", false).on(&json!(4624)));
        assert!(m("x", false).on(&json!(["y", "X"])));
        assert!(!m("x", false).on(&json!(null)));
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
        assert!(Matcher::Number(Cmp::Gte, 400.0).on(&json!(403)));
        assert!(Matcher::Number(Cmp::Lt, 400.0).on(&json!("200")));
        assert!(!Matcher::Number(Cmp::Lt, 400.0).on(&json!("abc")));
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(Matcher::Cidr(net).on(&json!("10.1.2.3")));
        assert!(Matcher::Cidr(net).on(&json!("::ffff:10.1.2.3")));
        assert!(!Matcher::Cidr(net).on(&json!("11.1.2.3")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(Matcher::Cidr(v6).on(&json!("2001:db8::1")));
        let t = json!("2026-12-02T23:15:00Z");
        assert!(Matcher::TimePart(TimePart::Hour, Cmp::Eq, 23.0).on(&t));
        assert!(Matcher::TimePart(TimePart::Month, Cmp::Eq, 12.0).on(&t));
        assert!(Matcher::TimePart(TimePart::Week, Cmp::Eq, 49.0).on(&t));
        assert!(Matcher::TimePart(TimePart::Minute, Cmp::Gte, 15.0).on(&t));
    }
}
