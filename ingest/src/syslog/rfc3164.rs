//! Syslog messages in the BSD format (RFC 3164) and the variants real
//! senders produce, parsed with nom on bytes.
//!
//! ```text
//! [<PRI>]TIMESTAMP SP [HOSTNAME SP] TAG["[" PID "]"] ":" [SP] MSG
//! TIMESTAMP = Mmm SP dd SP hh:mm:ss     (dd space-padded: "Oct  9")
//!           / an RFC 3339 time           (rsyslog's high-precision format)
//! ```
//!
//! No PRI is what log files hold. A missing host is told apart from a tag
//! by what follows the word: a tag ends in `:` or `[pid]:`. The BSD time
//! has no year and no zone: it is read as UTC, in the year that puts it
//! nearest to the ingest time, so a December line read in January lands in
//! last year (the New Year bug Filebeat users hit) and a January line from
//! a sender whose clock runs a little ahead lands in next year.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::{split_pri, FormatError};

/// A parsed BSD syslog message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfc3164<'a> {
    /// `(facility, severity)`, when the line has a PRI.
    pub priority: Option<(u8, u8)>,
    /// The time, its year inferred (BSD format) or as sent (RFC 3339).
    pub timestamp: OffsetDateTime,
    /// HOSTNAME, when present.
    pub hostname: Option<&'a str>,
    /// TAG (the program), when present.
    pub tag: Option<&'a str>,
    /// PID, from `tag[pid]`.
    pub pid: Option<&'a str>,
    /// MSG (after `tag:` and one space).
    pub msg: &'a [u8],
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Parses one line, inferring the year from `now` (the ingest time).
pub fn parse(input: &[u8], now: OffsetDateTime) -> Result<Rfc3164<'_>, FormatError> {
    let at = |rest: &[u8], expected: &'static str| FormatError::at(input, rest, expected);
    let (rest, priority) = if input.first() == Some(&b'<') {
        let (rest, prival) = super::rfc5424::pri(input).map_err(|_| at(&input[1..], "<PRI> with PRI from 0 to 191"))?;
        (rest, Some(split_pri(prival)))
    } else {
        (input, None)
    };
    let (rest, timestamp) = timestamp(rest, now).map_err(|(r, e)| at(r, e))?;
    let rest = rest
        .strip_prefix(b" ")
        .ok_or_else(|| at(rest, "a space after the timestamp"))?;
    // The next word is the host unless it is already the tag.
    let word_end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let word = &rest[..word_end];
    let (hostname, rest) = if is_tag(word) || word_end == rest.len() {
        (None, rest)
    } else {
        (
            Some(text(word).ok_or_else(|| at(rest, "a printable host name"))?),
            &rest[word_end + 1..],
        )
    };
    let (tag, pid, msg) = tag_and_msg(rest);
    Ok(Rfc3164 {
        priority,
        timestamp,
        hostname,
        tag,
        pid,
        msg,
    })
}

fn text(b: &[u8]) -> Option<&str> {
    (!b.is_empty() && b.iter().all(|&c| (33..=126).contains(&c)))
        .then(|| std::str::from_utf8(b).ok())
        .flatten()
}

/// A word that is a tag: `name:` or `name[pid]:`.
fn is_tag(word: &[u8]) -> bool {
    word.len() > 1 && word.ends_with(b":")
}

/// `tag[pid]: msg`, `tag: msg`, or (no tag) the whole rest as the message.
fn tag_and_msg(rest: &[u8]) -> (Option<&str>, Option<&str>, &[u8]) {
    let word_end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let word = &rest[..word_end];
    let Some(head) = word.strip_suffix(b":") else {
        return (None, None, rest);
    };
    let (name, pid) = match head.iter().position(|&b| b == b'[') {
        Some(open) if head.ends_with(b"]") => (&head[..open], Some(&head[open + 1..head.len() - 1])),
        _ => (head, None),
    };
    let (Some(tag), pid) = (text(name), pid.map(text)) else {
        return (None, None, rest);
    };
    let pid = match pid {
        Some(None) => return (None, None, rest),
        Some(Some(p)) => Some(p),
        None => None,
    };
    let msg = &rest[word_end..];
    (Some(tag), pid, msg.strip_prefix(b" ").unwrap_or(msg))
}

type Stop<'a> = (&'a [u8], &'static str);

fn timestamp(i: &[u8], now: OffsetDateTime) -> Result<(&[u8], OffsetDateTime), Stop<'_>> {
    if i.first().is_some_and(u8::is_ascii_digit) {
        // rsyslog's RFC 3339 time: up to the first space.
        let end = i.iter().position(|&b| b == b' ').unwrap_or(i.len());
        let t = std::str::from_utf8(&i[..end])
            .ok()
            .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
            .ok_or((i, "an RFC 3339 or BSD timestamp"))?;
        return Ok((&i[end..], t));
    }
    let month = i
        .get(..3)
        .and_then(|m| MONTHS.iter().position(|name| name.as_slice() == m))
        .ok_or((i, "a month name (Jan to Dec)"))?;
    let rest = &i[3..];
    let rest = rest.strip_prefix(b" ").ok_or((rest, "a space after the month"))?;
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let (rest, day) = digits(rest, 1, 2).ok_or((rest, "a day of the month"))?;
    let rest = rest.strip_prefix(b" ").ok_or((rest, "a space after the day"))?;
    let (rest, hour) = digits(rest, 2, 2).ok_or((rest, "hh:mm:ss"))?;
    let rest = rest.strip_prefix(b":").ok_or((rest, "hh:mm:ss"))?;
    let (rest, minute) = digits(rest, 2, 2).ok_or((rest, "hh:mm:ss"))?;
    let rest = rest.strip_prefix(b":").ok_or((rest, "hh:mm:ss"))?;
    let (rest, second) = digits(rest, 2, 2).ok_or((rest, "hh:mm:ss"))?;
    let month = Month::try_from(month as u8 + 1).map_err(|_| (i, "a month"))?;
    let clock = Time::from_hms(hour as u8, minute as u8, second as u8).map_err(|_| (i, "a valid time of day"))?;
    let t = infer_year(month, day as u8, clock, now).ok_or((i, "a valid date"))?;
    Ok((rest, t))
}

fn digits(i: &[u8], min: usize, max: usize) -> Option<(&[u8], u32)> {
    let n = i.iter().take(max).take_while(|b| b.is_ascii_digit()).count();
    if n < min {
        return None;
    }
    let value = i[..n].iter().fold(0u32, |v, &b| v * 10 + u32::from(b - b'0'));
    Some((&i[n..], value))
}

/// The year that puts `month day clock` (UTC) nearest to `now`: this year,
/// unless that is more than a day ahead (then last year) or more than 350
/// days behind (then next year).
fn infer_year(month: Month, day: u8, clock: Time, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let at = |year: i32| -> Option<OffsetDateTime> {
        Some(PrimitiveDateTime::new(Date::from_calendar_date(year, month, day).ok()?, clock).assume_utc())
    };
    let year = now.year();
    // Feb 29 exists only in some years: try the nearest that has it.
    let this = at(year).or_else(|| at(year - 1)).or_else(|| at(year + 1))?;
    if this > now + time::Duration::days(1) {
        return at(year - 1).or(Some(this));
    }
    if this < now - time::Duration::days(350) {
        return at(year + 1).or(Some(this));
    }
    Some(this)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::ErrorKind;
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-15 12:00 UTC);

    /// (line, priority, time, host, tag, pid, msg)
    #[allow(clippy::type_complexity)]
    const CASES: &[(
        &[u8],
        Option<(u8, u8)>,
        OffsetDateTime,
        Option<&str>,
        Option<&str>,
        Option<&str>,
        &[u8],
    )] = &[
        (
            b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
            Some((4, 2)),
            datetime!(2025-10-11 22:14:15 UTC),
            Some("mymachine"),
            Some("su"),
            None,
            b"'su root' failed for lonvick on /dev/pts/8",
        ),
        (
            b"Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; rhost=218.188.2.4 ",
            None,
            datetime!(2026-06-14 15:16:01 UTC),
            Some("combo"),
            Some("sshd(pam_unix)"),
            Some("19939"),
            b"authentication failure; rhost=218.188.2.4 ",
        ),
        (
            b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
            Some((1, 5)),
            datetime!(2026-02-05 17:32:18 UTC),
            Some("10.0.0.99"),
            None,
            None,
            b"Use the BFG!",
        ),
        (
            b"<30>Jun 15 11:59:00 sshd[42]: Accepted password for bob",
            Some((3, 6)),
            datetime!(2026-06-15 11:59:00 UTC),
            None,
            Some("sshd"),
            Some("42"),
            b"Accepted password for bob",
        ),
        (
            b"<86>2026-06-15T13:04:05.123456+01:00 web01 nginx: GET /",
            Some((10, 6)),
            datetime!(2026-06-15 12:04:05.123456 UTC),
            Some("web01"),
            Some("nginx"),
            None,
            b"GET /",
        ),
        (
            b"Jun 15 11:00:00 host-only",
            None,
            datetime!(2026-06-15 11:00:00 UTC),
            None,
            None,
            None,
            b"host-only",
        ),
    ];

    #[test]
    fn each_variant_parses_to_its_fields() {
        for (line, priority, time, host, tag, pid, msg) in CASES {
            let m = parse(line, NOW).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(line)));
            let got = (m.priority, m.timestamp, m.hostname, m.tag, m.pid, m.msg);
            assert_eq!(
                got,
                (*priority, *time, *host, *tag, *pid, *msg),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// The New Year: a December line read in January is last year's; a
    /// January line from a sender a little ahead on New Year's Eve is next
    /// year's.
    #[test]
    fn the_year_is_the_one_nearest_the_ingest_time() {
        let jan = datetime!(2027-01-01 00:05 UTC);
        assert_eq!(
            parse(b"Dec 31 23:59:00 h t: m", jan).unwrap().timestamp,
            datetime!(2026-12-31 23:59 UTC)
        );
        let eve = datetime!(2026-12-31 23:59 UTC);
        assert_eq!(
            parse(b"Jan  1 00:00:30 h t: m", eve).unwrap().timestamp,
            datetime!(2027-01-01 00:00:30 UTC)
        );
        assert_eq!(
            parse(b"Dec 31 23:58:00 h t: m", eve).unwrap().timestamp,
            datetime!(2026-12-31 23:58 UTC)
        );
        let leap = parse(b"Feb 29 10:00:00 h t: m", datetime!(2029-03-01 00:00 UTC)).unwrap();
        assert_eq!(leap.timestamp.day(), 29);
    }

    #[test]
    fn bad_lines_say_where_and_why() {
        let cases: &[(&[u8], usize, ErrorKind)] = &[
            (b"", 0, ErrorKind::Incomplete),
            (b"<999>Jun 14 15:16:01 h t: m", 1, ErrorKind::Invalid),
            (b"Foo 14 15:16:01 h t: m", 0, ErrorKind::Invalid),
            (b"Jun 14 25:16:01 h t: m", 0, ErrorKind::Invalid),
            (b"Jun 14 15:16", 12, ErrorKind::Incomplete),
            (b"Jun 31 15:16:01 h t: m", 0, ErrorKind::Invalid),
            (b"2026-13-01T00:00:00Z h t: m", 0, ErrorKind::Invalid),
        ];
        crate::syslog::assert_errors(|l| parse(l, NOW).err(), cases);
    }

    /// Every line of the shared loghub samples of Linux syslog and sshd
    /// parses, with a host; all but eight name their program the usual way
    /// (`syslogd 1.4.1: restart.` and a `-- root[2421]:` login line keep
    /// the whole rest as the message).
    #[test]
    fn every_loghub_syslog_line_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/loghub");
        for (name, want_tagged) in [("Linux_2k.log", 1992), ("OpenSSH_2k.log", 2000)] {
            let Ok(text) = std::fs::read(dir.join(name)) else {
                eprintln!("skipped: no {name} beside the project");
                continue;
            };
            let (mut lines, mut tagged) = (0, 0);
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let m = parse(line, NOW).unwrap_or_else(|e| panic!("{name}: {:?}: {e}", String::from_utf8_lossy(line)));
                assert!(m.hostname.is_some(), "{name}: {:?}", String::from_utf8_lossy(line));
                tagged += usize::from(m.tag.is_some());
                lines += 1;
            }
            assert_eq!((lines, tagged), (2000, want_tagged), "{name}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 1024, ..Default::default() })]

        /// Any bytes: a message or an error inside the input, never a panic.
        #[test]
        fn any_bytes_give_a_message_or_an_error_within_the_input(
            input in proptest::collection::vec(proptest::prop_oneof![
                3 => proptest::prelude::any::<u8>(),
                7 => proptest::sample::select(b"<>0123456789 :[]JanDecFeb-T.Z".to_vec()),
            ], 0..120),
        ) {
            match parse(&input, NOW) {
                Ok(m) => proptest::prop_assert!(m.msg.len() <= input.len()),
                Err(e) => proptest::prop_assert!(e.position <= input.len()),
            }
        }
    }
}
