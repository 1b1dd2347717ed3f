//! Sigma conditions (`selection and not 1 of filter_*`), parsed with nom.
//!
//! Precedence, least to most binding, as the specification lists it: `or`,
//! `and`, `not`, `x of`, parentheses. `1 of` / `all of` take `them` (every
//! search identifier not starting with `_`) or a pattern with `*`
//! wildcards. Keywords are case-sensitive lower case, as the specification
//! writes them.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while1};
use nom::character::complete::{char, multispace0, multispace1};
use nom::combinator::{all_consuming, map, opt, recognize, verify};
use nom::multi::separated_list1;
use nom::sequence::{delimited, pair, preceded, terminated};
use nom::IResult;

/// A parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// Any of these.
    Or(Vec<Cond>),
    /// All of these.
    And(Vec<Cond>),
    /// Not this.
    Not(Box<Cond>),
    /// One search identifier.
    Ident(String),
    /// `1 of TARGET` (`all` false) or `all of TARGET` (`all` true).
    Of { all: bool, target: Target },
}

/// What `1 of` / `all of` ranges over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every search identifier not starting with `_`.
    Them,
    /// The identifiers matching a pattern with `*` wildcards.
    Pattern(String),
}

/// Why a condition does not parse: where, and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    /// Byte offset where parsing stopped.
    pub position: usize,
    /// The condition.
    pub condition: String,
    /// Why, when it is more than a syntax error (too deep).
    pub reason: Option<&'static str>,
}

impl std::fmt::Display for ConditionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reason {
            Some(why) => write!(f, "condition {:?}: {why} (at byte {})", self.condition, self.position),
            None => write!(
                f,
                "condition {:?} does not parse at byte {}",
                self.condition, self.position
            ),
        }
    }
}

/// Deepest nesting of parentheses and `not`s a condition may have: the
/// parser recurses once per level, and no rule needs more.
pub const MAX_DEPTH: usize = 64;

/// Parses one condition.
pub fn parse(input: &str) -> Result<Cond, ConditionError> {
    if let Some(position) = too_deep(input) {
        return Err(ConditionError {
            position,
            condition: input.to_string(),
            reason: Some("nested deeper than 64 levels of parentheses and not"),
        });
    }
    all_consuming(delimited(multispace0, or_expr, multispace0))(input)
        .map(|(_, c)| c)
        .map_err(|e| {
            let rest = match e {
                nom::Err::Error(e) | nom::Err::Failure(e) => e.input,
                nom::Err::Incomplete(_) => "",
            };
            ConditionError {
                position: input.len() - rest.len(),
                condition: input.to_string(),
                reason: None,
            }
        })
}

/// Where the nesting of `(` and `not` first passes [`MAX_DEPTH`], if it
/// does (counted before parsing, so the parser's recursion is bounded).
fn too_deep(input: &str) -> Option<usize> {
    let (mut parens, mut nots) = (0usize, 0usize);
    let mut word_start = None;
    for (i, c) in input.char_indices().chain(std::iter::once((input.len(), ' '))) {
        if ident_char(c) {
            word_start.get_or_insert(i);
            continue;
        }
        if let Some(start) = word_start.take() {
            if &input[start..i] == "not" {
                nots += 1;
            }
        }
        match c {
            '(' => parens += 1,
            ')' => parens = parens.saturating_sub(1),
            _ => {}
        }
        if parens + nots > MAX_DEPTH {
            return Some(i.min(input.len()));
        }
    }
    None
}

type Res<'a, T> = IResult<&'a str, T>;

fn keyword<'a>(word: &'static str) -> impl FnMut(&'a str) -> Res<'a, &'a str> {
    // A keyword is not the start of an identifier (`order`, `notes`).
    terminated(tag(word), nom::combinator::not(take_while1(ident_char)))
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

fn or_expr(i: &str) -> Res<'_, Cond> {
    map(
        separated_list1(delimited(multispace1, keyword("or"), multispace1), and_expr),
        |mut v| if v.len() == 1 { v.remove(0) } else { Cond::Or(v) },
    )(i)
}

fn and_expr(i: &str) -> Res<'_, Cond> {
    map(
        separated_list1(delimited(multispace1, keyword("and"), multispace1), not_expr),
        |mut v| if v.len() == 1 { v.remove(0) } else { Cond::And(v) },
    )(i)
}

fn not_expr(i: &str) -> Res<'_, Cond> {
    alt((
        // `not a`, `not (a)`, `not(a)`: one branch, so what follows a
        // `not` is parsed once (two branches both parsing `(...` made
        // nested unclosed `not (` exponential).
        map(preceded(pair(keyword("not"), multispace0), not_expr), |c| {
            Cond::Not(Box::new(c))
        }),
        of_expr,
        group,
        map(identifier, |s: &str| Cond::Ident(s.to_string())),
    ))(i)
}

fn group(i: &str) -> Res<'_, Cond> {
    delimited(pair(char('('), multispace0), or_expr, pair(multispace0, char(')')))(i)
}

fn of_expr(i: &str) -> Res<'_, Cond> {
    let quantifier = alt((
        map(keyword("all"), |_| true),
        map(
            verify(take_while1(|c: char| c.is_ascii_digit()), |d: &str| d == "1"),
            |_| false,
        ),
        map(keyword("any"), |_| false),
    ));
    map(
        pair(
            terminated(quantifier, delimited(multispace1, keyword("of"), multispace1)),
            alt((
                map(keyword("them"), |_| Target::Them),
                map(pattern, |p: &str| Target::Pattern(p.to_string())),
            )),
        ),
        |(all, target)| Cond::Of { all, target },
    )(i)
}

fn identifier(i: &str) -> Res<'_, &str> {
    verify(take_while1(ident_char), |s: &str| {
        !matches!(s, "and" | "or" | "not" | "of" | "them" | "all")
    })(i)
}

fn pattern(i: &str) -> Res<'_, &str> {
    recognize(pair(
        take_while1(|c: char| ident_char(c) || c == '*'),
        opt(take_while1(|c: char| ident_char(c) || c == '*')),
    ))(i)
}

/// Whether `name` matches a `*` pattern.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(at) => rest = &rest[at + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(s: &str) -> Cond {
        Cond::Ident(s.to_string())
    }

    #[test]
    fn the_specifications_forms_parse_with_its_precedence() {
        let cases = [
            ("selection", id("selection")),
            (
                "keywords1 or keywords2",
                Cond::Or(vec![id("keywords1"), id("keywords2")]),
            ),
            (
                "1 of them",
                Cond::Of {
                    all: false,
                    target: Target::Them,
                },
            ),
            (
                "all of them",
                Cond::Of {
                    all: true,
                    target: Target::Them,
                },
            ),
            (
                "all of selection*",
                Cond::Of {
                    all: true,
                    target: Target::Pattern("selection*".into()),
                },
            ),
            (
                "1 of selection* and keywords",
                Cond::And(vec![
                    Cond::Of {
                        all: false,
                        target: Target::Pattern("selection*".into()),
                    },
                    id("keywords"),
                ]),
            ),
            (
                "1 of selection* and not 1 of filter*",
                Cond::And(vec![
                    Cond::Of {
                        all: false,
                        target: Target::Pattern("selection*".into()),
                    },
                    Cond::Not(Box::new(Cond::Of {
                        all: false,
                        target: Target::Pattern("filter*".into()),
                    })),
                ]),
            ),
            (
                "keywords and not filters",
                Cond::And(vec![id("keywords"), Cond::Not(Box::new(id("filters")))]),
            ),
            (
                "selection1 and (keywords1 or keywords2)",
                Cond::And(vec![id("selection1"), Cond::Or(vec![id("keywords1"), id("keywords2")])]),
            ),
            // and binds tighter than or; not tighter than and.
            (
                "a or b and not c",
                Cond::Or(vec![id("a"), Cond::And(vec![id("b"), Cond::Not(Box::new(id("c")))])]),
            ),
            ("not (a or b)", Cond::Not(Box::new(Cond::Or(vec![id("a"), id("b")])))),
            ("not not a", Cond::Not(Box::new(Cond::Not(Box::new(id("a")))))),
            ("  ( a )  ", id("a")),
            (
                "selection_main and 1 of selection_empty*",
                Cond::And(vec![
                    id("selection_main"),
                    Cond::Of {
                        all: false,
                        target: Target::Pattern("selection_empty*".into()),
                    },
                ]),
            ),
            ("order or notes", Cond::Or(vec![id("order"), id("notes")])),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn malformed_conditions_say_where() {
        for (text, position) in [
            // Where the unparsed rest starts.
            ("", 0),
            ("a and", 2),
            ("(a or b", 0),
            ("a b", 2),
            ("2 of them", 2),
            ("a | count() > 5", 2),
            ("a and or b", 2),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.position, position, "{text}: {e}");
        }
    }

    #[test]
    fn patterns_match_identifiers() {
        assert!(glob_match("selection*", "selection_a"));
        assert!(glob_match("selection*", "selection"));
        assert!(glob_match("*_main_*", "filter_main_x"));
        assert!(glob_match("a*b*c", "a_x_b_y_c"));
        assert!(!glob_match("a*b*c", "a_x_c"));
        assert!(!glob_match("filter*", "selection"));
        assert!(glob_match("exact", "exact") && !glob_match("exact", "exactly"));
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_errors_within_it(s in "\\PC{0,60}") {
            if let Err(e) = parse(&s) {
                proptest::prop_assert!(e.position <= s.len());
            }
        }
    }
}
