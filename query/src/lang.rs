//! The query language, parsed with nom into an [`Expr`] without touching
//! any index.
//!
//! ```text
//! query    := or
//! or       := and ("OR" and)*
//! and      := unary (["AND"] unary)*          juxtaposition means AND
//! unary    := ("NOT" | "-") unary | primary
//! primary  := "(" or ")" | field ":" value | word | phrase
//! value    := phrase | range | compare | "*" | word
//! range    := ("[" | "{") bound "TO" bound ("]" | "}")     [ ] inclusive, { } exclusive
//! compare  := (">=" | "<=" | ">" | "<") word
//! word     := (char | "\" char)+  with * and ? as wildcards
//! ```
//!
//! Bare words and phrases search `message`. `field:*` means the field exists.

use std::ops::Bound;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while1};
use nom::character::complete::{char, multispace0, multispace1};
use nom::combinator::{cut, map, opt, peek, recognize};
use nom::error::{ContextError, ErrorKind, ParseError as NomParseError};
use nom::sequence::{delimited, preceded, terminated};
use nom::IResult;

use crate::QueryError;

/// Longest query accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 8 << 10;
/// Deepest nesting of parentheses and NOTs.
pub const MAX_DEPTH: usize = 32;
/// Most field clauses in one query.
pub const MAX_CLAUSES: usize = 256;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Matches every event.
    All,
    /// All must match.
    And(Vec<Expr>),
    /// Any may match.
    Or(Vec<Expr>),
    /// Must not match.
    Not(Box<Expr>),
    /// A condition on one field (`None`: full text over `message`).
    Clause { field: Option<String>, value: Value },
}

/// The right side of a clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A word, maybe with wildcards.
    Word(Word),
    /// A quoted phrase (exact value on keyword fields).
    Phrase(String),
    /// A range; an unbounded side is `Bound::Unbounded`.
    Range { lower: Bound<String>, upper: Bound<String> },
    /// `field:*`.
    Exists,
}

/// A word as typed (escapes removed), and its wildcard pattern if it has
/// unescaped `*` or `?`.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// The literal text.
    pub text: String,
    /// A regular expression over the lowercased value, when it has wildcards.
    pub pattern: Option<String>,
}

#[derive(Debug)]
struct PErr<'a> {
    input: &'a str,
    expected: Option<&'static str>,
}

impl<'a> NomParseError<&'a str> for PErr<'a> {
    fn from_error_kind(input: &'a str, _kind: ErrorKind) -> Self {
        PErr { input, expected: None }
    }
    fn append(_input: &'a str, _kind: ErrorKind, other: Self) -> Self {
        other
    }
    fn or(self, other: Self) -> Self {
        // Keep the error that got further.
        if other.input.len() < self.input.len() {
            other
        } else {
            self
        }
    }
}

impl<'a> ContextError<&'a str> for PErr<'a> {
    fn add_context(_input: &'a str, ctx: &'static str, mut other: Self) -> Self {
        if other.expected.is_none() {
            other.expected = Some(ctx);
        }
        other
    }
}

type Res<'a, T> = IResult<&'a str, T, PErr<'a>>;

fn expect<'a, T>(what: &'static str, mut p: impl FnMut(&'a str) -> Res<'a, T>) -> impl FnMut(&'a str) -> Res<'a, T> {
    move |i| {
        p(i).map_err(|e| {
            e.map(|mut pe| {
                // The outer expectation names the error best when nothing
                // was consumed; deeper errors keep their own.
                if pe.input.len() == i.len() || pe.expected.is_none() {
                    pe.expected = Some(what);
                }
                pe
            })
        })
    }
}

/// Parses a query. An empty query matches everything.
pub fn parse(input: &str) -> Result<Expr, QueryError> {
    if input.len() > MAX_QUERY_LEN {
        return Err(QueryError::Syntax {
            position: MAX_QUERY_LEN,
            message: format!(
                "query is {} bytes, longer than the limit of {MAX_QUERY_LEN}",
                input.len()
            ),
        });
    }
    if input.trim().is_empty() {
        return Ok(Expr::All);
    }
    let result = delimited(multispace0, |i| or_expr(i, 0), multispace0)(input);
    let (rest, expr) = match result {
        Ok(ok) => ok,
        Err(nom::Err::Error(e)) | Err(nom::Err::Failure(e)) => {
            let position = input.len() - e.input.len();
            let found = describe(e.input);
            return Err(QueryError::Syntax {
                position,
                message: format!("expected {}, found {found}", e.expected.unwrap_or("a term")),
            });
        }
        Err(nom::Err::Incomplete(_)) => {
            return Err(QueryError::Syntax {
                position: input.len(),
                message: "unexpected end of query".into(),
            })
        }
    };
    if !rest.is_empty() {
        return Err(QueryError::Syntax {
            position: input.len() - rest.len(),
            message: format!("unexpected {}", describe(rest)),
        });
    }
    let clauses = count_clauses(&expr);
    if clauses > MAX_CLAUSES {
        return Err(QueryError::TooCostly(format!(
            "{clauses} clauses, over the limit of {MAX_CLAUSES}"
        )));
    }
    Ok(expr)
}

fn describe(rest: &str) -> String {
    match rest.chars().next() {
        None => "end of query".into(),
        Some(c) => format!("{c:?}"),
    }
}

fn count_clauses(e: &Expr) -> usize {
    match e {
        Expr::All => 0,
        Expr::Clause { .. } => 1,
        Expr::Not(x) => count_clauses(x),
        Expr::And(xs) | Expr::Or(xs) => xs.iter().map(count_clauses).sum(),
    }
}

fn too_deep(i: &str) -> nom::Err<PErr<'_>> {
    nom::Err::Failure(PErr {
        input: i,
        expected: Some("less nesting (at most 32 levels)"),
    })
}

/// A keyword: the word followed by a delimiter.
fn keyword<'a>(kw: &'static str) -> impl FnMut(&'a str) -> Res<'a, &'a str> {
    terminated(
        tag(kw),
        peek(alt((multispace1, tag("("), tag("-"), tag("\""), nom::combinator::eof))),
    )
}

fn or_expr(i: &str, depth: usize) -> Res<'_, Expr> {
    if depth > MAX_DEPTH {
        return Err(too_deep(i));
    }
    let (mut i, first) = and_expr(i, depth)?;
    let mut items = vec![first];
    loop {
        let attempt: Res<'_, &str> = preceded(multispace0, keyword("OR"))(i);
        match attempt {
            Ok((rest, _)) => {
                let (rest, e) = cut(preceded(multispace0, expect("a term after OR", |x| and_expr(x, depth))))(rest)?;
                items.push(e);
                i = rest;
            }
            Err(_) => break,
        }
    }
    Ok((
        i,
        if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        },
    ))
}

fn and_expr(i: &str, depth: usize) -> Res<'_, Expr> {
    let (mut i, first) = unary(i, depth)?;
    let mut items = vec![first];
    loop {
        // Stop before OR and before a closing parenthesis.
        let probe = multispace0::<&str, PErr<'_>>(i).map(|(r, _)| r).unwrap_or(i);
        if probe.is_empty() || probe.starts_with(')') || keyword("OR")(probe).is_ok() {
            break;
        }
        if let Ok((rest, _)) = keyword("AND")(probe) {
            let (rest, e) = cut(preceded(multispace0, expect("a term after AND", |x| unary(x, depth))))(rest)?;
            items.push(e);
            i = rest;
            continue;
        }
        if probe.len() == i.len() {
            // Two terms must be separated by white space.
            break;
        }
        let (rest, e) = unary(probe, depth)?;
        items.push(e);
        i = rest;
    }
    Ok((
        i,
        if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        },
    ))
}

fn unary(i: &str, depth: usize) -> Res<'_, Expr> {
    if depth > MAX_DEPTH {
        return Err(too_deep(i));
    }
    if let Ok((rest, _)) = keyword("NOT")(i) {
        let (rest, e) = cut(preceded(
            multispace0,
            expect("a term after NOT", |x| unary(x, depth + 1)),
        ))(rest)?;
        return Ok((rest, Expr::Not(Box::new(e))));
    }
    if let Some(rest) = i.strip_prefix('-') {
        if rest.starts_with(|c: char| !c.is_whitespace()) {
            let (rest, e) = cut(expect("a term after -", |x| unary(x, depth + 1)))(rest)?;
            return Ok((rest, Expr::Not(Box::new(e))));
        }
    }
    primary(i, depth)
}

fn primary(i: &str, depth: usize) -> Res<'_, Expr> {
    if let Some(rest) = i.strip_prefix('(') {
        let (rest, e) = cut(preceded(
            multispace0,
            expect("a term after (", |x| or_expr(x, depth + 1)),
        ))(rest)?;
        let (rest, _) = cut(preceded(multispace0, expect("')'", char(')'))))(rest)?;
        return Ok((rest, e));
    }
    if let Ok((rest, field)) = terminated(field_name, char(':'))(i) {
        let (rest, value) = cut(expect("a value after ':'", value))(rest)?;
        return Ok((
            rest,
            Expr::Clause {
                field: Some(field.to_string()),
                value,
            },
        ));
    }
    if i.starts_with('"') {
        let (rest, p) = phrase(i)?;
        return Ok((
            rest,
            Expr::Clause {
                field: None,
                value: Value::Phrase(p),
            },
        ));
    }
    let (rest, w) = expect("a term", word)(i)?;
    if w.text == "*" {
        return Ok((rest, Expr::All));
    }
    Ok((
        rest,
        Expr::Clause {
            field: None,
            value: Value::Word(w),
        },
    ))
}

fn field_name(i: &str) -> Res<'_, &str> {
    recognize(preceded(
        take_while1(|c: char| c.is_alphanumeric() || c == '_' || c == '@'),
        opt(take_while1(|c: char| {
            c.is_alphanumeric() || matches!(c, '_' | '@' | '.' | '-')
        })),
    ))(i)
}

fn value(i: &str) -> Res<'_, Value> {
    alt((
        map(phrase, Value::Phrase),
        range,
        compare,
        map(
            terminated(char('*'), peek(alt((multispace1, tag(")"), nom::combinator::eof)))),
            |_| Value::Exists,
        ),
        map(word, Value::Word),
    ))(i)
}

fn phrase(i: &str) -> Res<'_, String> {
    let (i, _) = char('"')(i)?;
    let mut out = String::new();
    let mut chars = i.char_indices();
    while let Some((pos, c)) = chars.next() {
        match c {
            '"' => return Ok((&i[pos + 1..], out)),
            '\\' => match chars.next() {
                Some((_, e)) => out.push(e),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(nom::Err::Failure(PErr {
        input: &i[i.len()..],
        expected: Some("a closing '\"'"),
    }))
}

fn range(i: &str) -> Res<'_, Value> {
    let (i, open) = alt((char('['), char('{')))(i)?;
    let (i, lower) = cut(preceded(multispace0, expect("a lower bound", bound)))(i)?;
    let (i, _) = cut(preceded(multispace1, expect("TO", tag("TO"))))(i)?;
    let (i, upper) = cut(preceded(multispace1, expect("an upper bound", bound)))(i)?;
    let (i, close) = cut(preceded(multispace0, expect("']' or '}'", alt((char(']'), char('}'))))))(i)?;
    let make = |b: Option<String>, inclusive: bool| match b {
        None => Bound::Unbounded,
        Some(v) if inclusive => Bound::Included(v),
        Some(v) => Bound::Excluded(v),
    };
    Ok((
        i,
        Value::Range {
            lower: make(lower, open == '['),
            upper: make(upper, close == ']'),
        },
    ))
}

fn bound(i: &str) -> Res<'_, Option<String>> {
    alt((
        map(phrase, Some),
        map(
            take_while1(|c: char| !c.is_whitespace() && !matches!(c, ']' | '}' | '[' | '{')),
            |s: &str| {
                if s == "*" {
                    None
                } else {
                    Some(s.to_string())
                }
            },
        ),
    ))(i)
}

fn compare(i: &str) -> Res<'_, Value> {
    let (i, op) = alt((tag(">="), tag("<="), tag(">"), tag("<")))(i)?;
    let (i, w) = cut(expect(
        "a value after the comparison",
        alt((phrase, map(word, |w| w.text))),
    ))(i)?;
    let v = match op {
        ">=" => Value::Range {
            lower: Bound::Included(w),
            upper: Bound::Unbounded,
        },
        ">" => Value::Range {
            lower: Bound::Excluded(w),
            upper: Bound::Unbounded,
        },
        "<=" => Value::Range {
            lower: Bound::Unbounded,
            upper: Bound::Included(w),
        },
        _ => Value::Range {
            lower: Bound::Unbounded,
            upper: Bound::Excluded(w),
        },
    };
    Ok((i, v))
}

/// Characters that end a word.
fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '"')
}

fn word(i: &str) -> Res<'_, Word> {
    let mut text = String::new();
    let mut pattern = String::new();
    let mut wild = false;
    let mut end = i.len();
    let mut chars = i.char_indices();
    while let Some((pos, c)) = chars.next() {
        match c {
            c if ends_word(c) => {
                end = pos;
                break;
            }
            '\\' => match chars.next() {
                Some((_, e)) => {
                    text.push(e);
                    push_literal(&mut pattern, e);
                }
                None => {
                    return Err(nom::Err::Failure(PErr {
                        input: &i[pos..],
                        expected: Some("a character after '\\'"),
                    }))
                }
            },
            '*' => {
                wild = true;
                text.push('*');
                pattern.push_str(".*");
            }
            '?' => {
                wild = true;
                text.push('?');
                pattern.push('.');
            }
            c => {
                text.push(c);
                push_literal(&mut pattern, c);
            }
        }
    }
    if end == 0 {
        return Err(nom::Err::Error(PErr {
            input: i,
            expected: None,
        }));
    }
    Ok((
        &i[end..],
        Word {
            text,
            pattern: wild.then_some(pattern),
        },
    ))
}

/// Appends `c`, lowercased and escaped, to a regex.
pub(crate) fn push_literal(pattern: &mut String, c: char) {
    for l in c.to_lowercase() {
        if l.is_ascii_punctuation() || l == ' ' {
            pattern.push('\\');
        }
        pattern.push(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clause(field: &str, value: Value) -> Expr {
        Expr::Clause {
            field: Some(field.into()),
            value,
        }
    }
    fn w(s: &str) -> Value {
        Value::Word(Word {
            text: s.into(),
            pattern: None,
        })
    }
    fn bare(s: &str) -> Expr {
        Expr::Clause {
            field: None,
            value: w(s),
        }
    }

    /// (query, expected expression)
    #[test]
    fn queries_parse_to_their_expressions() {
        let cases: Vec<(&str, Expr)> = vec![
            ("user.name:alice", clause("user.name", w("alice"))),
            (
                "url.path:\"/api/v1\"",
                clause("url.path", Value::Phrase("/api/v1".into())),
            ),
            ("failed password", Expr::And(vec![bare("failed"), bare("password")])),
            (
                "a OR b c",
                Expr::Or(vec![bare("a"), Expr::And(vec![bare("b"), bare("c")])]),
            ),
            (
                "a AND (b OR c)",
                Expr::And(vec![bare("a"), Expr::Or(vec![bare("b"), bare("c")])]),
            ),
            ("NOT a", Expr::Not(Box::new(bare("a")))),
            ("-a b", Expr::And(vec![Expr::Not(Box::new(bare("a"))), bare("b")])),
            ("source.ip:10.0.0.0/8", clause("source.ip", w("10.0.0.0/8"))),
            ("destination.ip:::1", clause("destination.ip", w("::1"))),
            (
                "@timestamp:2026-11-23T10:00:00Z",
                clause("@timestamp", w("2026-11-23T10:00:00Z")),
            ),
            (
                "http.response.status_code:>=500",
                clause(
                    "http.response.status_code",
                    Value::Range {
                        lower: Bound::Included("500".into()),
                        upper: Bound::Unbounded,
                    },
                ),
            ),
            (
                "x:[1 TO 5}",
                clause(
                    "x",
                    Value::Range {
                        lower: Bound::Included("1".into()),
                        upper: Bound::Excluded("5".into()),
                    },
                ),
            ),
            (
                "x:[* TO 5]",
                clause(
                    "x",
                    Value::Range {
                        lower: Bound::Unbounded,
                        upper: Bound::Included("5".into()),
                    },
                ),
            ),
            ("user.name:*", clause("user.name", Value::Exists)),
            ("*", Expr::All),
            ("", Expr::All),
            (
                "user.name:adm*n",
                clause(
                    "user.name",
                    Value::Word(Word {
                        text: "adm*n".into(),
                        pattern: Some("adm.*n".into()),
                    }),
                ),
            ),
            ("a\\*b", bare("a*b")),
            (
                "\"failed password\"",
                Expr::Clause {
                    field: None,
                    value: Value::Phrase("failed password".into()),
                },
            ),
            (
                "requestParameters.bucketName:secret-bucket",
                clause("requestParameters.bucketName", w("secret-bucket")),
            ),
            ("ORACLE", bare("ORACLE")),
        ];
        for (q, want) in cases {
            assert_eq!(parse(q).unwrap(), want, "{q}");
        }
    }

    /// (query, position of the error)
    #[test]
    fn syntax_errors_have_a_position() {
        let cases = [
            ("user.name:", 10),
            ("(a OR b", 7),
            ("a OR", 4),
            ("x:[1 TO", 7),
            ("\"open phrase", 12),
            ("a)", 1),
            ("NOT", 3),
        ];
        for (q, pos) in cases {
            match parse(q) {
                Err(QueryError::Syntax { position, message }) => {
                    assert_eq!(position, pos, "{q}: {message}")
                }
                other => panic!("{q}: {other:?}"),
            }
        }
    }

    #[test]
    fn costly_queries_are_refused() {
        let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).is_err());
        let wide = vec!["f:x"; 300].join(" OR ");
        assert!(matches!(parse(&wide), Err(QueryError::TooCostly(_))));
        assert!(parse(&"a".repeat(MAX_QUERY_LEN + 1)).is_err());
    }
}
