//! `start` and `end` of a search: RFC 3339 (or any form
//! [`schemas::time::parse_str`] reads) or relative to now.
//!
//! Relative forms: `now`, `-15m`, `-24h`, `-7d`, `-30s`, `-2w` (also `now-1h`).

use nom::branch::alt;
use nom::bytes::complete::tag;
use nom::character::complete::{digit1, one_of};
use nom::combinator::{eof, map_res, opt};
use nom::sequence::{preceded, terminated, tuple};
use nom::IResult;
use time::{Duration, OffsetDateTime};

use crate::QueryError;

/// Parses a time bound relative to `now`.
pub fn parse_bound(s: &str, now: OffsetDateTime, which: &'static str) -> Result<OffsetDateTime, QueryError> {
    let s = s.trim();
    if let Ok((_, offset)) = relative(s) {
        return Ok(now - offset);
    }
    schemas::time::parse_str(s).ok_or_else(|| QueryError::BadTime {
        which,
        value: s.to_string(),
    })
}

fn relative(i: &str) -> IResult<&str, Duration> {
    let amount = tuple((map_res(digit1, str::parse::<i64>), one_of("smhdw")));
    let offset = preceded(nom::character::complete::char('-'), amount);
    alt((
        terminated(
            nom::combinator::map(preceded(opt(tag("now")), offset), |(n, unit)| match unit {
                's' => Duration::seconds(n),
                'm' => Duration::minutes(n),
                'h' => Duration::hours(n),
                'd' => Duration::days(n),
                _ => Duration::weeks(n),
            }),
            eof,
        ),
        nom::combinator::map(terminated(tag("now"), eof), |_| Duration::ZERO),
    ))(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_bounds() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let cases = [
            ("now", 1_800_000_000),
            ("-15m", 1_800_000_000 - 900),
            ("now-1h", 1_800_000_000 - 3600),
            ("-24h", 1_800_000_000 - 86_400),
            ("-7d", 1_800_000_000 - 7 * 86_400),
            ("2027-01-15T08:00:00Z", 1_800_000_000),
        ];
        for (s, want) in cases {
            assert_eq!(parse_bound(s, now, "start").unwrap().unix_timestamp(), want, "{s}");
        }
        assert!(matches!(
            parse_bound("-15x", now, "start"),
            Err(QueryError::BadTime { .. })
        ));
        assert!(parse_bound("yesterday", now, "end").is_err());
    }
}
