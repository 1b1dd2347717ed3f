//! Web server access logs: Apache and nginx common (`%h %l %u %t "%r" %>s
//! %b`) and combined (`... "%{Referer}i" "%{User-agent}i"`) formats, with
//! the variants real servers are configured with:
//!
//! - a virtual host first (`%v` or `%v:%p`, Apache's `vhost_combined`);
//! - a request time last (Apache `%D` / `%T`, nginx `$request_time`,
//!   bare or as `rt=`), kept as written because its unit depends on the
//!   server's configuration;
//! - anything else after the combined fields is kept as `extra`.
//!
//! Quoted fields escape `\"` and `\\` as Apache does. Parsed on bytes;
//! total: a line, or an error with the byte position and whether the input
//! ended early or held a wrong byte.

use std::borrow::Cow;

use time::macros::format_description;
use time::OffsetDateTime;

use crate::syslog::{until_unescaped, FormatError};

/// One access log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog<'a> {
    /// The virtual host, when the line starts with one.
    pub vhost: Option<&'a str>,
    /// The port after the virtual host (`%v:%p`).
    pub vhost_port: Option<&'a str>,
    /// The client address (or its name, with `HostnameLookups`).
    pub remote_host: &'a str,
    /// The identd user (`%l`), when not `-`.
    pub ident: Option<&'a str>,
    /// The authenticated user (`%u`), when not `-`.
    pub user: Option<&'a str>,
    /// When the request was received.
    pub time: OffsetDateTime,
    /// The request line as sent.
    pub request: Cow<'a, str>,
    /// Method, target and protocol, when the request line has that shape.
    pub method: Option<&'a str>,
    /// The request target (`/path?query`).
    pub target: Option<&'a str>,
    /// The protocol (`HTTP/1.1`).
    pub protocol: Option<&'a str>,
    /// The final status (`%>s`).
    pub status: Option<u16>,
    /// Response bytes (`%b`), `None` for `-`.
    pub bytes: Option<u64>,
    /// The Referer header, when logged and not `-`.
    pub referrer: Option<Cow<'a, str>>,
    /// The User-Agent header, when logged and not `-`.
    pub user_agent: Option<Cow<'a, str>>,
    /// The request time, as written.
    pub request_time: Option<&'a str>,
    /// Whatever else follows.
    pub extra: Option<&'a str>,
}

impl<'a> AccessLog<'a> {
    /// The target's path (before `?`).
    pub fn path(&self) -> Option<&'a str> {
        self.target.map(|t| t.split_once('?').map_or(t, |(p, _)| p))
    }

    /// The target's query (after `?`), when it has one.
    pub fn query(&self) -> Option<&'a str> {
        self.target.and_then(|t| t.split_once('?')).map(|(_, q)| q)
    }

    /// The HTTP version (`1.1` from `HTTP/1.1`).
    pub fn http_version(&self) -> Option<&'a str> {
        self.protocol.and_then(|p| p.strip_prefix("HTTP/"))
    }
}

/// Parses one access log line.
pub fn parse(input: &[u8]) -> Result<AccessLog<'_>, FormatError> {
    let at = |rest: &[u8], expected: &'static str| FormatError::at(input, rest, expected);
    let line = std::str::from_utf8(input).map_err(|e| at(&input[e.valid_up_to()..], "UTF-8"))?;
    // The fields before `[time]`: host ident user, or vhost host ident user.
    let open = memchr::memchr(b'[', input).ok_or_else(|| at(&input[input.len()..], "[time]"))?;
    let head: Vec<&str> = line[..open].split(' ').filter(|t| !t.is_empty()).collect();
    if !line[..open].ends_with(' ') {
        return Err(at(&input[open..], "a space before [time]"));
    }
    let (vhost, host, ident, user) = match head.as_slice() {
        [host, ident, user] => (None, *host, *ident, *user),
        [vhost, host, ident, user] => (Some(*vhost), *host, *ident, *user),
        _ => return Err(at(input, "host, ident and user (after an optional virtual host)")),
    };
    if host.bytes().any(|b| b.is_ascii_control() || b == b'"') {
        return Err(at(input, "a client address"));
    }
    let (vhost, vhost_port) = match vhost.map(|v| v.rsplit_once(':')) {
        Some(Some((v, p))) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (Some(v), Some(p)),
        _ => (vhost, None),
    };
    let close =
        memchr::memchr(b']', &input[open..]).ok_or_else(|| at(&input[input.len()..], "] after the time"))? + open;
    let time = parse_time(&line[open + 1..close])
        .ok_or_else(|| at(&input[open + 1..], "a time as 10/Oct/2000:13:55:36 -0700"))?;
    let mut rest = &input[close + 1..];
    rest = rest.strip_prefix(b" ").ok_or_else(|| at(rest, "a space after ]"))?;
    let (after, request) = quoted(rest).map_err(|r| at(r, "a quoted request line"))?;
    rest = after;
    // Errors in a number point past the space before it.
    let past_space = |r: &'_ [u8]| r.strip_prefix(b" ").unwrap_or(r).len();
    let here = |r: &[u8]| &input[input.len() - past_space(r)..];
    let (status, after) = number_or_dash(rest).ok_or_else(|| at(here(rest), "a space and a status code"))?;
    let status = match status {
        Some(s) if (100..1000).contains(&s) => Some(s as u16),
        None => None,
        Some(_) => return Err(at(here(rest), "a three-digit status code")),
    };
    rest = after;
    let (bytes, after) = number_or_dash(rest).ok_or_else(|| at(here(rest), "a space and a byte count"))?;
    rest = after;
    let mut referrer = None;
    let mut user_agent = None;
    if rest.starts_with(b" \"") {
        let (after, r) = quoted(&rest[1..]).map_err(|r| at(r, "a quoted referrer"))?;
        referrer = Some(r);
        rest = after;
        if rest.starts_with(b" \"") {
            let (after, ua) = quoted(&rest[1..]).map_err(|r| at(r, "a quoted user agent"))?;
            user_agent = Some(ua);
            rest = after;
        }
    }
    let tail = line[input.len() - rest.len()..].trim();
    let (request_time, extra) = match tail {
        "" => (None, None),
        t => {
            let bare = t
                .strip_prefix("rt=")
                .or_else(|| t.strip_prefix("request_time="))
                .unwrap_or(t);
            if !bare.is_empty() && bare.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                (Some(bare), None)
            } else {
                (None, Some(t))
            }
        }
    };
    let (method, target, protocol) = split_request(&request);
    let dash = |s: &'static str| move |v: &&str| *v != s;
    Ok(AccessLog {
        vhost,
        vhost_port,
        remote_host: host,
        ident: Some(ident).filter(dash("-")),
        user: Some(user).filter(dash("-")),
        time,
        method,
        target,
        protocol,
        request,
        status,
        bytes,
        referrer: referrer.filter(|r| r != "-" && !r.is_empty()),
        user_agent: user_agent.filter(|u| u != "-" && !u.is_empty()),
        request_time,
        extra,
    })
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let fmt = format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    OffsetDateTime::parse(s, &fmt).ok()
}

/// A `"..."` field; `Err` holds where it went wrong.
fn quoted(i: &[u8]) -> Result<(&[u8], Cow<'_, str>), &[u8]> {
    let body = i.strip_prefix(b"\"").ok_or(i)?;
    let (n, has_escape) = until_unescaped(body, b'"').ok_or(&body[body.len()..])?;
    let raw = std::str::from_utf8(&body[..n]).map_err(|_| body)?;
    let value = if has_escape {
        Cow::Owned(raw.replace("\\\"", "\"").replace("\\\\", "\\"))
    } else {
        Cow::Borrowed(raw)
    };
    Ok((&body[n + 1..], value))
}

/// ` 123` or ` -`, with the rest after it.
fn number_or_dash(i: &[u8]) -> Option<(Option<u64>, &[u8])> {
    let i = i.strip_prefix(b" ")?;
    if let Some(rest) = i.strip_prefix(b"-") {
        return rest.first().is_none_or(|&b| b == b' ').then_some((None, rest));
    }
    let n = i.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 19 || i.get(n).is_some_and(|&b| b != b' ') {
        return None;
    }
    let v = std::str::from_utf8(&i[..n]).ok()?.parse().ok()?;
    Some((Some(v), &i[n..]))
}

/// `METHOD TARGET PROTOCOL`, when the request line has that shape.
fn split_request<'a>(request: &Cow<'a, str>) -> (Option<&'a str>, Option<&'a str>, Option<&'a str>) {
    // Only a borrowed line can lend its parts; one with escapes is odd
    // enough to keep whole.
    let Cow::Borrowed(r) = request else {
        return (None, None, None);
    };
    let mut parts = r.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(p), None)
            if !m.is_empty()
                && m.bytes().all(|b| b.is_ascii_uppercase())
                && p.starts_with("HTTP/")
                && !t.is_empty() =>
        {
            (Some(m), Some(t), Some(p))
        }
        (Some(m), Some(t), None, None)
            if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) && !t.is_empty() =>
        {
            (Some(m), Some(t), None)
        }
        _ => (None, None, None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::syslog::assert_errors;
    use crate::ErrorKind;
    use proptest::prelude::*;

    #[test]
    fn apache_common_log_format_example() {
        // The example of Apache's log documentation.
        let l =
            parse(b"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] \"GET /apache_pb.gif HTTP/1.0\" 200 2326").unwrap();
        assert_eq!(l.remote_host, "127.0.0.1");
        assert_eq!(l.ident, None);
        assert_eq!(l.user, Some("frank"));
        assert_eq!(l.time.unix_timestamp(), 971_211_336);
        assert_eq!(
            (l.method, l.target, l.protocol),
            (Some("GET"), Some("/apache_pb.gif"), Some("HTTP/1.0"))
        );
        assert_eq!(l.http_version(), Some("1.0"));
        assert_eq!((l.status, l.bytes), (Some(200), Some(2326)));
        assert_eq!((l.referrer, l.user_agent), (None, None));
    }

    #[test]
    fn combined_and_its_variants() {
        // (line, vhost, vhost port, host, user, path, query, status, bytes, referrer, user agent, request time, extra)
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, Option<&str>, Option<&str>, &str, Option<&str>, Option<&str>, Option<&str>, Option<u16>, Option<u64>, Option<&str>, Option<&str>, Option<&str>, Option<&str>)] = &[
            (
                "127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] \"GET /apache_pb.gif HTTP/1.0\" 200 2326 \"http://www.example.com/start.html\" \"Mozilla/4.08 [en] (Win98; I ;Nav)\"",
                None, None, "127.0.0.1", Some("frank"), Some("/apache_pb.gif"), None, Some(200), Some(2326),
                Some("http://www.example.com/start.html"), Some("Mozilla/4.08 [en] (Win98; I ;Nav)"), None, None,
            ),
            // nginx's default `combined`, a query, no body.
            (
                "203.0.113.9 - - [02/Dec/2026:06:25:24 +0000] \"POST /api/login?next=%2F&x=1 HTTP/1.1\" 401 - \"-\" \"curl/8.5.0\"",
                None, None, "203.0.113.9", None, Some("/api/login"), Some("next=%2F&x=1"), Some(401), None, None, Some("curl/8.5.0"), None, None,
            ),
            // Apache's vhost_combined.
            (
                "www.example.com:443 2001:db8::1 - alice [02/Dec/2026:06:25:24 +0100] \"GET / HTTP/2.0\" 304 0 \"-\" \"Go-http-client/2.0\"",
                Some("www.example.com"), Some("443"), "2001:db8::1", Some("alice"), Some("/"), None, Some(304), Some(0), None, Some("Go-http-client/2.0"), None, None,
            ),
            // A request time, bare (nginx $request_time) and as rt=, and an unknown tail.
            (
                "10.0.0.1 - - [02/Dec/2026:06:25:24 +0000] \"GET /x HTTP/1.1\" 200 12 \"-\" \"ua\" 0.012",
                None, None, "10.0.0.1", None, Some("/x"), None, Some(200), Some(12), None, Some("ua"), Some("0.012"), None,
            ),
            (
                "10.0.0.1 - - [02/Dec/2026:06:25:24 +0000] \"GET /x HTTP/1.1\" 200 12 rt=1234",
                None, None, "10.0.0.1", None, Some("/x"), None, Some(200), Some(12), None, None, Some("1234"), None,
            ),
            (
                "10.0.0.1 - - [02/Dec/2026:06:25:24 +0000] \"GET /x HTTP/1.1\" 200 12 \"-\" \"ua\" \"198.51.100.7\"",
                None, None, "10.0.0.1", None, Some("/x"), None, Some(200), Some(12), None, Some("ua"), None, Some("\"198.51.100.7\""),
            ),
            // A scanner's junk request line is kept whole; escaped quotes in the agent.
            (
                "192.0.2.1 - - [02/Dec/2026:06:25:24 +0000] \"\\x16\\x03\\x01\" 400 157 \"-\" \"say \\\"hi\\\"\"",
                None, None, "192.0.2.1", None, None, None, Some(400), Some(157), None, Some("say \"hi\""), None, None,
            ),
        ];
        for (line, vhost, port, host, user, path, query, status, bytes, referrer, ua, rt, extra) in cases {
            let l = parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(
                (l.vhost, l.vhost_port, l.remote_host, l.user),
                (*vhost, *port, *host, *user),
                "{line}"
            );
            assert_eq!((l.path(), l.query()), (*path, *query), "{line}");
            assert_eq!((l.status, l.bytes), (*status, *bytes), "{line}");
            assert_eq!(
                (l.referrer.as_deref(), l.user_agent.as_deref()),
                (*referrer, *ua),
                "{line}"
            );
            assert_eq!((l.request_time, l.extra), (*rt, *extra), "{line}");
        }
    }

    #[test]
    fn other_lines_are_errors_with_their_position() {
        use ErrorKind::{Incomplete, Invalid};
        assert_errors(
            |i| parse(i).err(),
            &[
                (b"", 0, Incomplete),
                (b"10.0.0.1 - -", 12, Incomplete),
                (b"just some words [x]", 17, Invalid),
                (b"10.0.0.1 - - [yesterday] \"GET / HTTP/1.1\" 200 1", 14, Invalid),
                (b"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] GET / 200 1", 42, Invalid),
                (
                    b"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1",
                    57,
                    Incomplete,
                ),
                (
                    b"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET /\" 2000 1",
                    50,
                    Invalid,
                ),
                (
                    b"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET /\" 200 x",
                    54,
                    Invalid,
                ),
                (
                    b"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET /\xff\" 200 1",
                    48,
                    Invalid,
                ),
                // The loghub Apache sample is the error log, not an access log.
                (b"[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok", 0, Invalid),
            ],
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
            let mut prefixed = b"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"".to_vec();
            prefixed.extend_from_slice(&bytes);
            if let Err(e) = parse(&prefixed) {
                prop_assert!(e.position <= prefixed.len());
            }
        }
    }
}
