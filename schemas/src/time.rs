//! Event time: which fields carry it and which formats are understood.
//!
//! Accepted: RFC 3339 (`2026-11-23T14:03:16.5Z`, also with a space for `T`
//! or without an offset, read as UTC), RFC 2822 (`Mon, 23 Nov 2026 14:03:16
//! +0000`), and epoch seconds, milliseconds, microseconds or nanoseconds,
//! as a JSON number or a string of digits. The epoch unit is told by
//! magnitude: below 1e11 seconds, below 1e14 milliseconds, below 1e17
//! microseconds, else nanoseconds.

use serde_json::Value;
use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Fields looked at for the event time, in order.
pub const TIMESTAMP_FIELDS: [&str; 6] = ["@timestamp", "timestamp", "time", "ts", "eventTime", "date"];

/// Parses a JSON value as a point in time.
pub fn parse_value(value: &Value) -> Option<OffsetDateTime> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                from_epoch_int(i128::from(i))
            } else if let Some(u) = n.as_u64() {
                from_epoch_int(i128::from(u))
            } else {
                n.as_f64().and_then(from_epoch_float)
            }
        }
        Value::String(s) => parse_str(s),
        _ => None,
    }
}

/// Parses a string as a point in time.
pub fn parse_str(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-') && s.bytes().any(|b| b.is_ascii_digit()) {
        if let Ok(i) = s.parse::<i128>() {
            return from_epoch_int(i);
        }
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return s.parse::<f64>().ok().and_then(from_epoch_float);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    if s.len() > 10 && s.as_bytes()[10] == b' ' {
        let with_t = format!("{}T{}", &s[..10], &s[11..]);
        if let Ok(t) = OffsetDateTime::parse(&with_t, &Rfc3339) {
            return Some(t);
        }
        return parse_naive(&with_t);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc2822) {
        return Some(t);
    }
    parse_naive(s).or_else(|| parse_device(s))
}

/// `YYYY-MM-DDThh:mm:ss[.f]` without an offset, read as UTC.
fn parse_naive(s: &str) -> Option<OffsetDateTime> {
    let with_frac = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]");
    let plain = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(s, &with_frac)
        .or_else(|_| PrimitiveDateTime::parse(s, &plain))
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// `Mmm dd yyyy hh:mm:ss[.fff]`, the device time CEF (`rt`) and LEEF
/// (`devTime`) default to, read as UTC.
fn parse_device(s: &str) -> Option<OffsetDateTime> {
    let with_frac = format_description!(
        "[month repr:short case_sensitive:false] [day padding:none] [year] [hour]:[minute]:[second].[subsecond]"
    );
    let plain = format_description!(
        "[month repr:short case_sensitive:false] [day padding:none] [year] [hour]:[minute]:[second]"
    );
    let s = s.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
    PrimitiveDateTime::parse(&s, &with_frac)
        .or_else(|_| PrimitiveDateTime::parse(&s, &plain))
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

fn from_epoch_int(i: i128) -> Option<OffsetDateTime> {
    let a = i.unsigned_abs();
    let nanos = if a < 100_000_000_000 {
        i * 1_000_000_000
    } else if a < 100_000_000_000_000 {
        i * 1_000_000
    } else if a < 100_000_000_000_000_000 {
        i * 1_000
    } else {
        i
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

fn from_epoch_float(f: f64) -> Option<OffsetDateTime> {
    if !f.is_finite() {
        return None;
    }
    let scale = if f.abs() < 1e11 {
        1e9
    } else if f.abs() < 1e14 {
        1e6
    } else if f.abs() < 1e17 {
        1e3
    } else {
        1.0
    };
    OffsetDateTime::from_unix_timestamp_nanos((f * scale) as i128).ok()
}

/// Formats a time as RFC 3339 in UTC (`2026-11-23T14:03:16.123456789Z`);
/// `None` when its UTC form falls outside the years 0 to 9999, which RFC
/// 3339 cannot write (a parsed event time can: `-99999999999` is year -1199).
pub fn try_format(t: OffsetDateTime) -> Option<String> {
    t.checked_to_offset(time::UtcOffset::UTC)?.format(&Rfc3339).ok()
}

/// Formats a time Tripline made itself (the clock, a time already checked
/// against the ingest window) as RFC 3339 in UTC. Untrusted times go
/// through [`try_format`].
pub fn format(t: OffsetDateTime) -> String {
    try_format(t).expect("a time from the clock or inside the ingest window is within years 0..=9999")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(v: Value) -> Option<i128> {
        parse_value(&v).map(|t| t.unix_timestamp_nanos())
    }

    #[test]
    fn formats_in_the_issue_all_parse_to_the_same_instant() {
        let want = Some(1_700_000_000_000_000_000i128);
        for v in [
            json!("2023-11-14T22:13:20Z"),
            json!("2023-11-14T23:13:20+01:00"),
            json!("2023-11-14 22:13:20Z"),
            json!("2023-11-14T22:13:20"),
            json!("Tue, 14 Nov 2023 22:13:20 +0000"),
            json!(1_700_000_000),
            json!("1700000000"),
            json!(1_700_000_000_000u64),
            json!("1700000000000"),
            json!(1_700_000_000_000_000u64),
            json!(1_700_000_000_000_000_000u64),
            json!("1700000000000000000"),
            json!(1_700_000_000.0),
            json!("Nov 14 2023 22:13:20"),
            json!("nov 14  2023 22:13:20"),
        ] {
            assert_eq!(ts(v.clone()), want, "{v}");
        }
        assert_eq!(ts(json!("2023-11-14T22:13:20.25Z")), Some(1_700_000_000_250_000_000));
        assert_eq!(ts(json!("Nov 14 2023 22:13:20.250")), Some(1_700_000_000_250_000_000));
    }

    #[test]
    fn garbage_is_not_a_time() {
        for v in [json!("yesterday"), json!(""), json!(true), json!(null), json!("12:00")] {
            assert_eq!(ts(v.clone()), None, "{v}");
        }
    }

    #[test]
    fn times_rfc_3339_cannot_write_are_not_formatted_and_do_not_panic() {
        for v in [
            json!(-99_999_999_999i64),
            json!("9999-12-31T23:59:59-01:00"),
            json!("0000-01-01T00:00:00+01:00"),
        ] {
            let t = parse_value(&v).unwrap_or_else(|| panic!("{v} parses"));
            assert_eq!(try_format(t), None, "{v}");
        }
        assert!(try_format(parse_str("9999-12-31T23:59:59Z").unwrap()).is_some());
    }

    #[test]
    fn format_round_trips() {
        let t = parse_str("2026-11-23T14:03:16.123456Z").unwrap();
        assert_eq!(format(t), "2026-11-23T14:03:16.123456Z");
    }
}
