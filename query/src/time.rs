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
    let bad = || QueryError::BadTime {
        which,
        value: s.to_string(),
    };
    if let Ok((_, offset)) = relative(s) {
        // Checked: `-9999999999d` is a valid form but no time.
        return offset.and_then(|o| now.checked_sub(o)).ok_or_else(bad);
    }
    schemas::time::parse_str(s).or_else(|| day_start(s)).ok_or_else(bad)
}

/// Midnight UTC of a `YYYY-MM-DD` day.
pub fn day_start(s: &str) -> Option<OffsetDateTime> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt).ok().map(|d| d.midnight().assume_utc())
}

/// The offset of a relative time; `None` when it overflows.
fn relative(i: &str) -> IResult<&str, Option<Duration>> {
    let amount = tuple((map_res(digit1, str::parse::<i64>), one_of("smhdw")));
    let offset = preceded(nom::character::complete::char('-'), amount);
    alt((
        terminated(
            nom::combinator::map(preceded(opt(tag("now")), offset), |(n, unit)| {
                let unit_seconds: i64 = match unit {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    'd' => 86_400,
                    _ => 7 * 86_400,
                };
                n.checked_mul(unit_seconds).map(Duration::seconds)
            }),
            eof,
        ),
        nom::combinator::map(terminated(tag("now"), eof), |_| Some(Duration::ZERO)),
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
            ("2027-01-15", 1_800_000_000 - 8 * 3600),
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

    /// L5: these panicked on the async thread and dropped the connection.
    #[test]
    fn huge_relative_times_are_errors_not_panics() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        for s in [
            "-999999999d",
            "-9999999999999999w",
            "-99999999999999999s",
            "now-999999999999h",
        ] {
            assert!(
                matches!(parse_bound(s, now, "start"), Err(QueryError::BadTime { .. })),
                "{s}"
            );
        }
    }
}
