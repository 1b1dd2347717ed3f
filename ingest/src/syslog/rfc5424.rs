//! Syslog messages in the RFC 5424 format, parsed with nom on bytes.
//!
//! ```text
//! SYSLOG-MSG      = HEADER SP STRUCTURED-DATA [SP MSG]
//! HEADER          = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID
//! PRI             = "<" 1*3DIGIT ">"                 0 to 191
//! STRUCTURED-DATA = "-" / 1*("[" SD-ID *(SP PARAM-NAME "=" DQUOTE PARAM-VALUE DQUOTE) "]")
//! MSG             = [BOM] *OCTET
//! ```
//!
//! Total: a message, or an error with the byte position where it stopped
//! and whether the input ended too early ([`super::ErrorKind::Incomplete`])
//! or held a wrong byte ([`super::ErrorKind::Invalid`]). Nothing is allocated but the
//! structured-data values that carry escapes.

use std::borrow::Cow;

use nom::bytes::complete::{tag, take_while1, take_while_m_n};
use nom::character::complete::char;
use nom::combinator::map_res;
use nom::sequence::delimited;
use nom::IResult;

use super::FormatError;

/// A parsed RFC 5424 message; `None` where the sender wrote the NILVALUE `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfc5424<'a> {
    /// Facility code, 0 to 23.
    pub facility: u8,
    /// Severity code, 0 (emergency) to 7 (debug).
    pub severity: u8,
    /// Protocol version (1).
    pub version: u16,
    /// The timestamp as sent (RFC 3339).
    pub timestamp: Option<&'a str>,
    /// HOSTNAME.
    pub hostname: Option<&'a str>,
    /// APP-NAME.
    pub app_name: Option<&'a str>,
    /// PROCID.
    pub procid: Option<&'a str>,
    /// MSGID.
    pub msgid: Option<&'a str>,
    /// STRUCTURED-DATA elements, in order.
    pub structured_data: Vec<SdElement<'a>>,
    /// MSG, without a leading BOM; empty when absent.
    pub msg: &'a [u8],
}

/// One STRUCTURED-DATA element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement<'a> {
    /// SD-ID, such as `exampleSDID@32473`.
    pub id: &'a str,
    /// `(PARAM-NAME, value)`, the value unescaped.
    pub params: Vec<(&'a str, Cow<'a, str>)>,
}

/// Where an inner parser stopped, and what it expected there.
type Stop<'a> = (&'a [u8], &'static str);

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn printusascii(b: u8) -> bool {
    (33..=126).contains(&b)
}

fn sd_name_char(b: u8) -> bool {
    printusascii(b) && !matches!(b, b'=' | b']' | b'"')
}

/// Parses one message (a frame's bytes, without the framing).
pub fn parse(input: &[u8]) -> Result<Rfc5424<'_>, FormatError> {
    let at = |rest: &[u8], expected: &'static str| FormatError::at(input, rest, expected);
    let (rest, prival) = pri(input).map_err(|_| at(after_prefix(input, b"<"), "<PRI> with PRI from 0 to 191"))?;
    let (rest, version) = version(rest).map_err(|_| at(rest, "a version number"))?;
    let rest = sp(rest).map_err(|r| at(r, "a space after the version"))?;
    let (rest, timestamp) = field(rest, 64).map_err(|r| at(r, "a timestamp or -"))?;
    let timestamp = match timestamp {
        Some(t) if !valid_timestamp(t) => return Err(at(rest, "an RFC 3339 timestamp")),
        t => t,
    };
    let rest = sp(rest).map_err(|r| at(r, "a space after the timestamp"))?;
    let (rest, hostname) = field(rest, 255).map_err(|r| at(r, "a hostname or -"))?;
    let rest = sp(rest).map_err(|r| at(r, "a space after the hostname"))?;
    let (rest, app_name) = field(rest, 48).map_err(|r| at(r, "an app-name or -"))?;
    let rest = sp(rest).map_err(|r| at(r, "a space after the app-name"))?;
    let (rest, procid) = field(rest, 128).map_err(|r| at(r, "a procid or -"))?;
    let rest = sp(rest).map_err(|r| at(r, "a space after the procid"))?;
    let (rest, msgid) = field(rest, 32).map_err(|r| at(r, "a msgid or -"))?;
    let rest = sp(rest).map_err(|r| at(r, "a space after the msgid"))?;
    let (rest, structured_data) = structured_data(rest).map_err(|(r, e)| at(r, e))?;
    let msg = match rest {
        [] => rest,
        [b' ', msg @ ..] => msg.strip_prefix(BOM).unwrap_or(msg),
        _ => return Err(at(rest, "a space before the message")),
    };
    let (facility, severity) = super::split_pri(prival);
    Ok(Rfc5424 {
        facility,
        severity,
        version,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        structured_data,
        msg,
    })
}

/// Where a failed PRI leaves the input: past the `<` if there is one, so
/// the position points at the digits.
fn after_prefix<'a>(input: &'a [u8], prefix: &[u8]) -> &'a [u8] {
    input.strip_prefix(prefix).unwrap_or(input)
}

pub(crate) fn pri(i: &[u8]) -> IResult<&[u8], u16> {
    delimited(
        char('<'),
        map_res(take_while_m_n(1, 3, |b: u8| b.is_ascii_digit()), |d: &[u8]| {
            let v: u16 = std::str::from_utf8(d).map_err(|_| ())?.parse().map_err(|_| ())?;
            if v <= 191 {
                Ok(v)
            } else {
                Err(())
            }
        }),
        char('>'),
    )(i)
}

fn version(i: &[u8]) -> IResult<&[u8], u16> {
    map_res(
        take_while_m_n(1, 3, |b: u8| b.is_ascii_digit()),
        |d: &[u8]| match std::str::from_utf8(d).map_err(|_| ())?.parse::<u16>() {
            Ok(v) if v > 0 && d[0] != b'0' => Ok(v),
            _ => Err(()),
        },
    )(i)
}

fn sp(i: &[u8]) -> Result<&[u8], &[u8]> {
    i.strip_prefix(b" ").ok_or(i)
}

/// A header field of printable ASCII (at most `max` bytes), or `-`.
fn field(i: &[u8], max: usize) -> Result<(&[u8], Option<&str>), &[u8]> {
    let r: IResult<&[u8], &[u8]> = take_while_m_n(1, max, printusascii)(i);
    let (rest, value) = r.map_err(|_| i)?;
    if rest.first().is_some_and(|&b| b != b' ') {
        return Err(rest);
    }
    // Printable ASCII is UTF-8.
    let text = std::str::from_utf8(value).map_err(|_| i)?;
    Ok((rest, (text != "-").then_some(text)))
}

/// `YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm)`, as RFC 5424 restricts RFC 3339.
fn valid_timestamp(t: &str) -> bool {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
        && t.as_bytes().get(10) == Some(&b'T')
}

fn structured_data(i: &[u8]) -> Result<(&[u8], Vec<SdElement<'_>>), Stop<'_>> {
    if let Some(rest) = i.strip_prefix(b"-") {
        return Ok((rest, Vec::new()));
    }
    let mut elements = Vec::new();
    let mut rest = i;
    loop {
        let Some(r) = rest.strip_prefix(b"[") else {
            if elements.is_empty() {
                return Err((rest, "structured data ([...]) or -"));
            }
            return Ok((rest, elements));
        };
        let (r, id) = sd_name(r).ok_or((r, "an SD-ID"))?;
        let mut params = Vec::new();
        let mut r = r;
        loop {
            if let Some(after) = r.strip_prefix(b"]") {
                r = after;
                break;
            }
            let after_sp = r.strip_prefix(b" ").ok_or((r, "a space or ] in structured data"))?;
            let (after_name, name) = sd_name(after_sp).ok_or((after_sp, "a PARAM-NAME"))?;
            let after_eq: IResult<&[u8], &[u8]> = tag("=\"")(after_name);
            let (after_eq, _) = after_eq.map_err(|_| (after_name, "=\" after a PARAM-NAME"))?;
            let (after_value, value) = param_value(after_eq)?;
            params.push((name, value));
            r = after_value;
        }
        elements.push(SdElement { id, params });
        rest = r;
    }
}

fn sd_name(i: &[u8]) -> Option<(&[u8], &str)> {
    let r: IResult<&[u8], &[u8]> = take_while1(sd_name_char)(i);
    let (rest, name) = r.ok()?;
    if name.len() > 32 {
        return None;
    }
    Some((rest, std::str::from_utf8(name).ok()?))
}

/// A PARAM-VALUE up to its closing quote; `\"`, `\\` and `\]` unescaped (a
/// backslash before any other byte is kept, as the RFC says).
fn param_value(i: &[u8]) -> Result<(&[u8], Cow<'_, str>), Stop<'_>> {
    let (end, has_escape) = super::until_unescaped(i, b'"').ok_or((&i[i.len()..], "a closing \" of a PARAM-VALUE"))?;
    let raw = std::str::from_utf8(&i[..end]).map_err(|_| (i, "a UTF-8 PARAM-VALUE"))?;
    let rest = &i[end + 1..];
    if !has_escape {
        return Ok((rest, Cow::Borrowed(raw)));
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('"' | '\\' | ']')) => out.push(e),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Ok((rest, Cow::Owned(out)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::ErrorKind;
    use super::*;

    /// The examples of RFC 5424 section 6.5.
    #[test]
    fn the_rfc_examples_parse() {
        let m = parse(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8").unwrap();
        assert_eq!((m.facility, m.severity, m.version), (4, 2, 1));
        assert_eq!(m.timestamp, Some("2003-10-11T22:14:15.003Z"));
        assert_eq!(m.hostname, Some("mymachine.example.com"));
        assert_eq!((m.app_name, m.procid, m.msgid), (Some("su"), None, Some("ID47")));
        assert!(m.structured_data.is_empty());
        assert_eq!(m.msg, b"'su root' failed for lonvick on /dev/pts/8");

        let m = parse(
            b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
        )
        .unwrap();
        assert_eq!((m.facility, m.severity), (20, 5));
        assert_eq!(m.procid, Some("8710"));
        assert_eq!(m.msg, b"%% It's time to make the do-nuts.");

        let m = parse(br#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry..."#).unwrap();
        assert_eq!(m.structured_data.len(), 1);
        assert_eq!(m.structured_data[0].id, "exampleSDID@32473");
        assert_eq!(
            m.structured_data[0].params[1],
            ("eventSource", Cow::Borrowed("Application"))
        );
        assert_eq!(m.msg, b"An application event log entry...");

        let m = parse(br#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#).unwrap();
        assert_eq!(m.structured_data.len(), 2);
        assert_eq!(m.structured_data[1].params, vec![("class", Cow::Borrowed("high"))]);
        assert!(m.msg.is_empty());
    }

    #[test]
    fn escapes_in_param_values_are_undone() {
        let m = parse(br#"<13>1 - - - - - [a b="q\"u\\o\]te\x"] m"#).unwrap();
        assert_eq!(m.structured_data[0].params[0].1, r#"q"u\o]te\x"#);
        assert_eq!(m.timestamp, None);
        assert_eq!(m.msg, b"m");
    }

    /// (input, position, kind): where a bad message stops, and whether it
    /// ended early or held a wrong byte.
    #[test]
    fn bad_messages_say_where_and_why() {
        let cases: &[(&[u8], usize, ErrorKind)] = &[
            (b"", 0, ErrorKind::Incomplete),
            (b"<34", 1, ErrorKind::Invalid),
            (b"<192>1 - - - - - -", 1, ErrorKind::Invalid),
            (b"<34>", 4, ErrorKind::Incomplete),
            (b"<34>0 - - - - - -", 4, ErrorKind::Invalid),
            (b"<34>1 2003-10-11 host a - - -", 16, ErrorKind::Invalid),
            (b"<34>1 - host", 12, ErrorKind::Incomplete),
            (b"<34>1 - - - - - [id a=\"unterminated", 35, ErrorKind::Incomplete),
            (b"<34>1 - - - - - x", 16, ErrorKind::Invalid),
            (b"<34>1 - - - - - [x", 18, ErrorKind::Incomplete),
            (b"<34>1 - - - - - [x y]", 20, ErrorKind::Invalid),
        ];
        crate::syslog::assert_errors(|i| parse(i).err(), cases);
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        for input in [
            &b"<1>1 - - - - - [\xff a=\"\"] x"[..],
            b"\0\0\0",
            &[b'<'; 1 << 16],
            b"<0>999 - - - - - -",
        ] {
            let _ = parse(input);
        }
        let nul = parse(b"<0>1 - - - - - - a\0b\r\nc").unwrap();
        assert_eq!(nul.msg, b"a\0b\r\nc");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 1024, ..Default::default() })]

        /// Any bytes: a message or an error inside the input, never a panic.
        #[test]
        fn any_bytes_give_a_message_or_an_error_within_the_input(
            input in proptest::collection::vec(proptest::prop_oneof![
                3 => proptest::prelude::any::<u8>(),
                7 => proptest::sample::select(b"<>0123456789 -[]=\"\\TZ:.a".to_vec()),
            ], 0..200),
        ) {
            match parse(&input) {
                Ok(m) => proptest::prop_assert!(m.facility <= 23 && m.severity <= 7),
                Err(e) => proptest::prop_assert!(e.position <= input.len()),
            }
        }
    }
}
