//! Choose the parser for a line, run it, and name its fields as the
//! catalog does (through the mappings in `schemas/mappings/`).
//!
//! A body or a listener declares a [`Format`]; [`Format::Auto`] recognizes
//! each line's format from its first bytes (`{` JSON, `<` syslog, `CEF:`,
//! `LEEF:`, a BSD time, an access log's `host - user [time] "request"`,
//! `key=value` pairs). JSON is then told apart as a CloudTrail record or a
//! Kubernetes audit event by its keys. A line no parser takes is stored
//! raw (`message`), tagged `_parse_failure`, with the reason; never dropped.

use std::borrow::Cow;
use std::str::FromStr;

use schemas::{fields, time as ts, Event, Mappings};
use time::OffsetDateTime;

use crate::parse::{raw, Limits, Parsed};
use crate::syslog::{rfc3164, rfc5424, sshd, FormatError};
use crate::{cef, clf, leef, logfmt};

/// The format of a body's lines (`?format=`) or of a listener's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// Recognize each line's format.
    Auto,
    /// A JSON object.
    Json,
    /// Syslog, RFC 5424 or RFC 3164 (with or without PRI).
    Syslog,
    /// ArcSight CEF, bare or after a syslog header.
    Cef,
    /// QRadar LEEF 1.0 or 2.0, bare or after a syslog header.
    Leef,
    /// logfmt / `key=value` pairs.
    Logfmt,
    /// Apache / nginx access log (common, combined and variants).
    Clf,
    /// AWS CloudTrail records (one a line, or a `{"Records": [...]}` envelope).
    Cloudtrail,
    /// Kubernetes audit events.
    K8sAudit,
    /// Stored as `message`, not parsed.
    Raw,
}

impl Format {
    /// Every format, in `?format=` order.
    pub const ALL: [Format; 10] = [
        Format::Json,
        Format::Syslog,
        Format::Cef,
        Format::Leef,
        Format::Logfmt,
        Format::Clf,
        Format::Cloudtrail,
        Format::K8sAudit,
        Format::Raw,
        Format::Auto,
    ];

    /// Its name in `?format=`, in config and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Json => "json",
            Format::Syslog => "syslog",
            Format::Cef => "cef",
            Format::Leef => "leef",
            Format::Logfmt => "logfmt",
            Format::Clf => "clf",
            Format::Cloudtrail => "cloudtrail",
            Format::K8sAudit => "k8s_audit",
            Format::Raw => "raw",
        }
    }

    /// Whether lines of this format may be JSON (arrays and multi-line
    /// objects are framed as such; other formats are read line by line).
    pub fn is_json_like(self) -> bool {
        matches!(
            self,
            Format::Auto | Format::Json | Format::Cloudtrail | Format::K8sAudit
        )
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name nobody knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl std::fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
        write!(f, "unknown format {:?}: use one of {}", self.0, names.join(", "))
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

impl serde::Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What parsing a line needs besides the line.
#[derive(Debug, Clone, Copy)]
pub struct LineContext<'a> {
    /// Per-line limits.
    pub limits: &'a Limits,
    /// The ingest time: the year of a BSD syslog time is inferred from it.
    pub now: OffsetDateTime,
}

/// Parses one line of the declared `format` (a line of text, a frame, or
/// a JSON value's text). The returned [`Parsed::format`] is the format the
/// line was recognized as (never `Auto`).
pub fn parse_line(format: Format, line: usize, bytes: &[u8], ctx: &LineContext<'_>) -> Parsed {
    if bytes.len() > ctx.limits.max_line_bytes {
        let cut = &bytes[..ctx.limits.max_line_bytes];
        let reason = format!(
            "event is {} bytes, over the limit of {}: stored truncated, unparsed",
            bytes.len(),
            ctx.limits.max_line_bytes
        );
        return raw(line, cut, reason, format_or_raw(format));
    }
    let result = match format {
        Format::Auto => return parse_auto(line, bytes, ctx),
        Format::Raw => {
            let mut event = Event::new();
            event.insert(fields::MESSAGE, String::from_utf8_lossy(bytes).into_owned());
            return Parsed {
                event,
                failure: None,
                format: Format::Raw,
            };
        }
        Format::Json => return crate::parse::parse_json(line, bytes, ctx.limits),
        Format::Cloudtrail | Format::K8sAudit => {
            let mut parsed = crate::parse::parse_json(line, bytes, ctx.limits);
            parsed.format = format;
            if parsed.failure.is_none() {
                map(format, &mut parsed.event);
            }
            return parsed;
        }
        Format::Syslog => syslog(bytes, ctx),
        Format::Cef | Format::Leef => embedded(format, bytes, ctx),
        Format::Logfmt => logfmt_event(bytes).map_err(|e| ("logfmt", e)),
        Format::Clf => clf_event(bytes).map_err(|e| ("access log", e)),
    };
    finish(line, bytes, format, result)
}

fn format_or_raw(format: Format) -> Format {
    if format == Format::Auto {
        Format::Raw
    } else {
        format
    }
}

/// A parser's answer made into [`Parsed`]: the event, or the raw line with
/// the reason (`not <format>: <error>`).
fn finish(line: usize, bytes: &[u8], format: Format, result: Result<Event, (&str, FormatError)>) -> Parsed {
    match result {
        Ok(mut event) => {
            crate::parse::keep_reserved_tags_out(&mut event);
            Parsed {
                event,
                failure: None,
                format,
            }
        }
        Err((what, e)) => raw(line, bytes, format!("not {what}: {e}"), format),
    }
}

fn parse_auto(line: usize, bytes: &[u8], ctx: &LineContext<'_>) -> Parsed {
    let trimmed = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match trimmed.first() {
        // `{` is JSON, or a JSON error; `[` may also open a text line
        // (`[Sun Dec 04 04:47:44 2005] [notice] ...`).
        Some(b'{') | Some(b'[') => {
            let mut parsed = crate::parse::parse_json(line, bytes, ctx.limits);
            if parsed.failure.is_none() {
                if let Some(format) = json_kind(&parsed.event) {
                    map(format, &mut parsed.event);
                    parsed.format = format;
                }
                return parsed;
            }
            if trimmed[0] == b'{' {
                return parsed;
            }
            parse_text(line, bytes, trimmed, ctx)
        }
        _ => parse_text(line, bytes, trimmed, ctx),
    }
}

fn parse_text(line: usize, bytes: &[u8], trimmed: &[u8], ctx: &LineContext<'_>) -> Parsed {
    match trimmed.first() {
        Some(b'<') => finish(line, bytes, Format::Syslog, syslog(bytes, ctx)),
        _ if trimmed.starts_with(b"CEF:") => finish(line, bytes, Format::Cef, embedded(Format::Cef, bytes, ctx)),
        _ if trimmed.starts_with(b"LEEF:") => finish(line, bytes, Format::Leef, embedded(Format::Leef, bytes, ctx)),
        _ if looks_like_bsd_time(trimmed) => finish(line, bytes, Format::Syslog, syslog(bytes, ctx)),
        _ => {
            if let Ok(event) = clf_event(bytes) {
                return finish(line, bytes, Format::Clf, Ok(event));
            }
            match logfmt::parse(bytes) {
                Ok(pairs) if mostly_pairs(&pairs) => finish(
                    line,
                    bytes,
                    Format::Logfmt,
                    logfmt_event(bytes).map_err(|e| ("logfmt", e)),
                ),
                _ => raw(
                    line,
                    bytes,
                    "no known format: not JSON, syslog, CEF, LEEF, an access log or logfmt".to_string(),
                    Format::Raw,
                ),
            }
        }
    }
}

/// A JSON event is a CloudTrail record or a Kubernetes audit event when
/// it has their keys.
fn json_kind(event: &Event) -> Option<Format> {
    if event.get("eventVersion").is_some() && event.get("eventSource").is_some() && event.get("eventName").is_some() {
        return Some(Format::Cloudtrail);
    }
    if event.get_str("kind") == Some("Event")
        && event
            .get_str("apiVersion")
            .is_some_and(|v| v.starts_with("audit.k8s.io/"))
    {
        return Some(Format::K8sAudit);
    }
    None
}

/// `Mmm dd` or an RFC 3339 date at the start: a syslog line without PRI,
/// as files hold them.
fn looks_like_bsd_time(b: &[u8]) -> bool {
    const MONTHS: [&[u8]; 12] = [
        b"Jan ", b"Feb ", b"Mar ", b"Apr ", b"May ", b"Jun ", b"Jul ", b"Aug ", b"Sep ", b"Oct ", b"Nov ", b"Dec ",
    ];
    MONTHS.iter().any(|m| b.starts_with(m))
        || (b.len() > 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T')
}

/// A free-text line is read as logfmt only when at least one pair has a
/// value and valued pairs are no fewer than bare words: "user logged in
/// from x=1" stays text.
fn mostly_pairs(pairs: &[(&str, logfmt::Value<'_>)]) -> bool {
    let valued = pairs
        .iter()
        .filter(|(_, v)| matches!(v, logfmt::Value::Text(_)))
        .count();
    valued > 0 && valued * 2 >= pairs.len()
}

fn map(format: Format, event: &mut Event) {
    if let Some(m) = Mappings::builtin().get(format.as_str()) {
        m.apply(event);
    }
}

const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

const SEVERITIES: [&str; 8] = [
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "informational",
    "debug",
];

fn set_priority(event: &mut Event, facility: u8, severity: u8) {
    event.insert("log.syslog.priority", u64::from(facility) * 8 + u64::from(severity));
    event.insert("log.syslog.facility.code", facility);
    event.insert("log.syslog.severity.code", severity);
    if let Some(name) = FACILITIES.get(usize::from(facility)) {
        event.insert("log.syslog.facility.name", *name);
    }
    if let Some(name) = SEVERITIES.get(usize::from(severity)) {
        event.insert("log.syslog.severity.name", *name);
    }
}

/// RFC 5424 when a version follows the PRI, else RFC 3164; then the
/// message body: sshd and PAM logins, embedded CEF, LEEF or JSON.
fn syslog(bytes: &[u8], ctx: &LineContext<'_>) -> Result<Event, (&'static str, FormatError)> {
    let mut event = Event::new();
    let msg = if is_rfc5424(bytes) {
        let m = rfc5424::parse(bytes).map_err(|e| ("RFC 5424 syslog", e))?;
        set_priority(&mut event, m.facility, m.severity);
        event.insert("log.syslog.version", m.version.to_string());
        if let Some(t) = m.timestamp {
            event.insert(fields::TIMESTAMP, t);
        }
        for (name, v) in [
            ("log.syslog.hostname", m.hostname),
            ("log.syslog.appname", m.app_name),
            ("log.syslog.procid", m.procid),
            ("log.syslog.msgid", m.msgid),
        ] {
            if let Some(v) = v {
                event.insert(name, v);
            }
        }
        for sd in &m.structured_data {
            for (param, value) in &sd.params {
                event.insert(format!("syslog.sd.{}.{}", sd.id, param), value.as_ref());
            }
        }
        m.msg
    } else {
        let m = rfc3164::parse(bytes, ctx.now).map_err(|e| ("syslog", e))?;
        if let Some((facility, severity)) = m.priority {
            set_priority(&mut event, facility, severity);
        }
        if let Some(t) = ts::try_format(m.timestamp) {
            event.insert(fields::TIMESTAMP, t);
        }
        for (name, v) in [
            ("log.syslog.hostname", m.hostname),
            ("log.syslog.appname", m.tag),
            ("log.syslog.procid", m.pid),
        ] {
            if let Some(v) = v {
                event.insert(name, v);
            }
        }
        m.msg
    };
    let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
    event.insert(fields::MESSAGE, String::from_utf8_lossy(msg).into_owned());
    // The header's fields first: what the body holds cannot replace them.
    map(Format::Syslog, &mut event);
    body(&mut event, msg, ctx);
    Ok(event)
}

/// `<PRI>` followed by a version digit and a space.
fn is_rfc5424(b: &[u8]) -> bool {
    let Some(close) = b.iter().take(5).position(|&c| c == b'>') else {
        return false;
    };
    let rest = &b[close + 1..];
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    (1..=3).contains(&digits) && rest.get(digits) == Some(&b' ') && rest[0] != b'0'
}

/// What a syslog message body holds besides text.
fn body(event: &mut Event, msg: &[u8], ctx: &LineContext<'_>) {
    if let Some(login) = sshd::parse(msg) {
        event.insert("sshd.action", login.action);
        event.insert(
            "sshd.outcome",
            match login.outcome {
                sshd::Outcome::Success => "success",
                sshd::Outcome::Failure => "failure",
            },
        );
        if let Some(u) = login.user {
            event.insert("sshd.user", u);
        }
        if let Some(ip) = login.source_ip {
            event.insert("sshd.source_ip", ip);
        }
        if let Some(port) = login.source_port {
            event.insert("sshd.source_port", port);
        }
        if login.invalid_user {
            event.insert("sshd.invalid_user", true);
        }
        map_named("sshd", event);
    } else if msg.starts_with(b"CEF:") {
        if let Ok(c) = cef::parse(msg) {
            cef_fields(event, &c);
            map(Format::Cef, event);
        }
    } else if msg.starts_with(b"LEEF:") {
        if let Ok(l) = leef::parse(msg) {
            leef_fields(event, &l);
            map(Format::Leef, event);
        }
    } else if msg.first() == Some(&b'{') {
        // Embedded JSON: its fields join the event; the header's stay.
        if let Ok(inner) = Event::from_json_slice(msg, ctx.limits.max_depth) {
            for (k, v) in inner.iter() {
                if event.get(k).is_none() {
                    event.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

fn map_named(name: &str, event: &mut Event) {
    if let Some(m) = Mappings::builtin().get(name) {
        m.apply(event);
    }
}

/// CEF or LEEF, bare or after a syslog header (as devices send them).
fn embedded(format: Format, bytes: &[u8], ctx: &LineContext<'_>) -> Result<Event, (&'static str, FormatError)> {
    let (what, prefix): (&'static str, &[u8]) = match format {
        Format::Cef => ("CEF", b"CEF:"),
        _ => ("LEEF", b"LEEF:"),
    };
    let trimmed = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if !trimmed.starts_with(prefix) && (trimmed.first() == Some(&b'<') || looks_like_bsd_time(trimmed)) {
        let event = syslog(bytes, ctx)?;
        let marker = if format == Format::Cef {
            "cef.version"
        } else {
            "leef.version"
        };
        if event.get(marker).is_none() {
            let at = memchr::memmem::find(bytes, prefix).unwrap_or(bytes.len());
            return Err((
                what,
                FormatError {
                    position: at,
                    kind: crate::ErrorKind::Invalid,
                    expected: if format == Format::Cef {
                        "a CEF message after the syslog header"
                    } else {
                        "a LEEF message after the syslog header"
                    },
                },
            ));
        }
        return Ok(event);
    }
    let mut event = Event::new();
    if format == Format::Cef {
        let c = cef::parse(trimmed).map_err(|e| (what, e))?;
        cef_fields(&mut event, &c);
    } else {
        let l = leef::parse(trimmed).map_err(|e| (what, e))?;
        leef_fields(&mut event, &l);
    }
    map(format, &mut event);
    Ok(event)
}

fn cef_fields(event: &mut Event, c: &cef::Cef<'_>) {
    for (name, v) in [
        ("cef.version", &c.version),
        ("cef.device_vendor", &c.device_vendor),
        ("cef.device_product", &c.device_product),
        ("cef.device_version", &c.device_version),
        ("cef.signature_id", &c.signature_id),
        ("cef.name", &c.name),
        ("cef.severity", &c.severity),
    ] {
        event.insert(name, v.as_ref());
    }
    for (k, v) in &c.extension {
        event.insert(format!("cef.extensions.{k}"), v.as_ref());
    }
}

fn leef_fields(event: &mut Event, l: &leef::Leef<'_>) {
    event.insert("leef.version", l.version);
    for (name, v) in [
        ("leef.vendor", &l.vendor),
        ("leef.product", &l.product),
        ("leef.product_version", &l.product_version),
        ("leef.event_id", &l.event_id),
    ] {
        event.insert(name, v.as_ref());
    }
    for (k, v) in &l.attributes {
        event.insert(format!("leef.attributes.{k}"), *v);
    }
}

fn logfmt_event(bytes: &[u8]) -> Result<Event, FormatError> {
    Ok(logfmt_pairs(bytes, logfmt::parse(bytes)?))
}

fn logfmt_pairs(bytes: &[u8], pairs: Vec<(&str, logfmt::Value<'_>)>) -> Event {
    let mut event = Event::new();
    for (k, v) in pairs {
        match v {
            logfmt::Value::Text(t) => event.insert(k, t.into_owned()),
            logfmt::Value::Flag => event.insert(k, true),
        }
    }
    map(Format::Logfmt, &mut event);
    if event.get(fields::MESSAGE).is_none() {
        event.insert(fields::MESSAGE, String::from_utf8_lossy(bytes).into_owned());
    }
    event
}

fn clf_event(bytes: &[u8]) -> Result<Event, FormatError> {
    let l = clf::parse(bytes)?;
    let mut event = Event::new();
    if let Some(t) = ts::try_format(l.time) {
        event.insert(fields::TIMESTAMP, t);
    }
    let strings = [
        ("clf.vhost", l.vhost),
        ("clf.vhost_port", l.vhost_port),
        ("clf.remote_host", Some(l.remote_host)),
        ("clf.ident", l.ident),
        ("clf.user", l.user),
        ("clf.request", Some(l.request.as_ref())),
        ("clf.method", l.method),
        ("clf.target", l.target),
        ("clf.path", l.path()),
        ("clf.query", l.query()),
        ("clf.protocol", l.protocol),
        ("clf.http_version", l.http_version()),
        ("clf.referrer", l.referrer.as_deref()),
        ("clf.user_agent", l.user_agent.as_deref()),
        ("clf.request_time", l.request_time),
        ("clf.extra", l.extra),
    ];
    for (name, v) in strings {
        if let Some(v) = v {
            event.insert(name, v);
        }
    }
    if let Some(s) = l.status {
        event.insert("clf.status", s);
    }
    if let Some(b) = l.bytes {
        event.insert("clf.bytes", b);
    }
    event.insert(fields::MESSAGE, String::from_utf8_lossy(bytes).into_owned());
    map(Format::Clf, &mut event);
    Ok(event)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn parse(format: Format, line: &str) -> Parsed {
        let limits = Limits::default();
        // 2026-01-03: a December line is last year's.
        let now = OffsetDateTime::from_unix_timestamp(1_767_398_400).unwrap();
        parse_line(format, 1, line.as_bytes(), &LineContext { limits: &limits, now })
    }

    /// (declared format, line, recognized as, expected fields)
    fn cases() -> Vec<(Format, &'static str, Format, serde_json::Value)> {
        vec![
            (
                Format::Auto,
                "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - BOM'su root' failed for lonvick on /dev/pts/8",
                Format::Syslog,
                json!({"@timestamp": "2003-10-11T22:14:15.003Z", "log.syslog.facility.code": 4, "log.syslog.facility.name": "auth",
                       "log.syslog.severity.code": 2, "log.level": "critical", "host.hostname": "mymachine.example.com",
                       "host.name": "mymachine.example.com", "process.name": "su", "log.syslog.msgid": "ID47",
                       "message": "BOM'su root' failed for lonvick on /dev/pts/8"}),
            ),
            (
                Format::Syslog,
                "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] An application event",
                Format::Syslog,
                json!({"syslog.sd.exampleSDID@32473.iut": "3", "syslog.sd.exampleSDID@32473.eventSource": "Application",
                       "log.syslog.severity.name": "notice", "log.syslog.facility.name": "local4", "message": "An application event"}),
            ),
            (
                Format::Auto,
                "Dec 31 23:59:58 LabSZ sshd[24200]: Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2",
                Format::Syslog,
                json!({"@timestamp": "2025-12-31T23:59:58Z", "host.hostname": "LabSZ", "process.name": "sshd", "process.pid": 24200,
                       "event.category": "authentication", "event.outcome": "failure", "user.name": "webmaster",
                       "source.ip": "173.234.31.186", "source.port": 38926, "sshd.invalid_user": true}),
            ),
            (
                Format::Auto,
                "<13>Jan  2 10:00:00 gw app: {\"user\":{\"name\":\"bob\"},\"action\":\"login\",\"host.hostname\":\"spoof\"}",
                Format::Syslog,
                json!({"@timestamp": "2026-01-02T10:00:00Z", "user.name": "bob", "action": "login", "host.hostname": "gw", "log.syslog.appname": "app"}),
            ),
            (
                Format::Auto,
                "CEF:0|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232 suser=jo smith act=blocked rt=1700000000000",
                Format::Cef,
                json!({"source.ip": "10.0.0.1", "destination.ip": "2.1.2.2", "source.port": 1232, "user.name": "jo smith",
                       "event.action": "blocked", "@timestamp": "2023-11-14T22:13:20Z", "observer.vendor": "Security",
                       "event.code": "100", "event.severity": 10, "message": "worm successfully stopped", "cef.extensions.suser": "jo smith"}),
            ),
            (
                Format::Cef,
                "<134>Feb 12 10:01:02 fw01 CEF:0|Palo|PAN-OS|9|THREAT|url|3|src=192.0.2.7 request=http://x/a?b requestMethod=GET outcome=Blocked",
                Format::Cef,
                json!({"host.hostname": "fw01", "source.ip": "192.0.2.7", "url.original": "http://x/a?b", "http.request.method": "GET",
                       "event.outcome": "blocked", "observer.product": "PAN-OS"}),
            ),
            (
                Format::Auto,
                "LEEF:2.0|Lancope|StealthWatch|1.0|41|^|src=192.0.2.0^dst=172.50.123.1^sev=5^srcPort=81^dstPort=21^usrName=joe.black^proto=TCP",
                Format::Leef,
                json!({"source.ip": "192.0.2.0", "destination.ip": "172.50.123.1", "event.severity": 5, "source.port": 81,
                       "destination.port": 21, "user.name": "joe.black", "network.transport": "tcp", "event.code": "41"}),
            ),
            (
                Format::Auto,
                "level=WARN msg=\"disk almost full\" host=db1 used=93.5 readonly",
                Format::Logfmt,
                json!({"log.level": "warn", "message": "disk almost full", "host": "db1", "used": "93.5", "readonly": true}),
            ),
            (
                Format::Auto,
                "www.example.com:443 203.0.113.9 - alice [02/Dec/2026:06:25:24 +0000] \"GET /admin/login.php?next=/ HTTP/1.1\" 403 512 \"https://example.com/\" \"sqlmap/1.7\"",
                Format::Clf,
                json!({"source.ip": "203.0.113.9", "user.name": "alice", "http.request.method": "GET",
                       "url.original": "/admin/login.php?next=/", "url.path": "/admin/login.php", "url.query": "next=/",
                       "http.version": "1.1", "http.response.status_code": 403, "http.response.body.bytes": 512,
                       "http.request.referrer": "https://example.com/", "user_agent.original": "sqlmap/1.7",
                       "event.outcome": "failure", "event.category": "web", "url.domain": "www.example.com",
                       "@timestamp": "2026-12-02T06:25:24Z"}),
            ),
            (
                Format::Auto,
                r#"{"eventVersion":"1.08","eventTime":"2026-12-01T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"eu-west-1","sourceIPAddress":"athena.amazonaws.com","userAgent":"aws-sdk","errorCode":"AccessDenied","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123:user/eve","userName":"eve","accessKeyId":"AKIAX"},"requestParameters":{"bucketName":"secrets"},"recipientAccountId":"123","eventID":"e-1"}"#,
                Format::Cloudtrail,
                json!({"event.action": "GetObject", "event.provider": "s3.amazonaws.com", "source.domain": "athena.amazonaws.com",
                       "user.name": "eve", "user.id": "arn:aws:iam::123:user/eve", "user.access_key_id": "AKIAX",
                       "event.outcome": "failure", "cloud.region": "eu-west-1", "cloud.account.id": "123", "cloud.provider": "aws",
                       "user_agent.original": "aws-sdk", "event.id": "e-1", "eventName": "GetObject",
                       "requestParameters.bucketName": "secrets", "@timestamp": "2026-12-01T10:00:00Z"}),
            ),
            (
                Format::Auto,
                r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets/db","verb":"get","user":{"username":"system:serviceaccount:prod:web"},"sourceIPs":["10.2.0.9"],"userAgent":"kubectl/v1.30","objectRef":{"resource":"secrets","namespace":"prod","name":"db"},"responseStatus":{"code":403},"requestReceivedTimestamp":"2026-12-01T10:00:00.123456Z"}"#,
                Format::K8sAudit,
                json!({"event.action": "get", "user.name": "system:serviceaccount:prod:web", "source.ip": "10.2.0.9",
                       "http.response.status_code": 403, "event.outcome": "failure", "orchestrator.resource.type": "secrets",
                       "orchestrator.namespace": "prod", "orchestrator.resource.name": "db", "orchestrator.type": "kubernetes",
                       "@timestamp": "2026-12-01T10:00:00.123456Z", "event.id": "a-1"}),
            ),
            (Format::Raw, "<34>1 anything at all", Format::Raw, json!({"message": "<34>1 anything at all"})),
            (Format::Json, r#"{"message":"hi"}"#, Format::Json, json!({"message": "hi"})),
        ]
    }

    #[test]
    fn each_format_yields_its_ecs_fields_and_keeps_the_originals() {
        for (format, line, recognized, want) in cases() {
            let p = parse(format, line);
            assert!(p.failure.is_none(), "{line}: {:?}", p.failure);
            assert_eq!(p.format, recognized, "{line}");
            for (k, v) in want.as_object().unwrap() {
                assert_eq!(p.event.get(k), Some(v), "{line}: field {k} in {:?}", p.event.as_map());
            }
        }
    }

    /// (declared format, line, reason fragment)
    const FAILURES: &[(Format, &str, &str)] = &[
        (Format::Auto, "just some free text", "no known format"),
        (Format::Auto, "user logged in from x=1", "no known format"),
        (Format::Syslog, "not syslog at all", "not syslog: invalid at byte 0"),
        (
            Format::Syslog,
            "<34>1 2003-10-11T22:14:15.003Z",
            "not RFC 5424 syslog: ends early at byte 30",
        ),
        (Format::Auto, "<999>x", "not syslog"),
        (Format::Cef, "CEF:0|a|b", "not CEF: ends early"),
        (
            Format::Cef,
            "<13>Jan  2 10:00:00 gw app: hello",
            "not CEF: invalid at byte 33: expected a CEF message",
        ),
        (Format::Leef, "LEEF:9.0|a|b|c|d|", "not LEEF: invalid at byte 5"),
        (Format::Logfmt, "a=\"unterminated", "not logfmt: ends early"),
        (
            Format::Clf,
            "10.0.0.1 - - [yesterday] \"GET / HTTP/1.1\" 200 1",
            "not access log: invalid at byte 14",
        ),
        (Format::Cloudtrail, "{\"eventName\":", "invalid JSON"),
        (Format::Json, "plain", "invalid JSON at column 1"),
    ];

    #[test]
    fn lines_not_in_their_format_are_stored_raw_with_the_reason() {
        for (format, line, want) in FAILURES {
            let p = parse(*format, line);
            let f = p.failure.unwrap_or_else(|| panic!("{line} parsed as {format}"));
            assert!(f.reason.contains(want), "{line}: {}", f.reason);
            assert_eq!(p.event.get_str("message"), Some(*line));
            assert!(p.event.has_tag(schemas::tags::PARSE_FAILURE));
        }
    }

    #[test]
    fn senders_cannot_set_reserved_tags_in_any_format() {
        for (format, line) in [
            (Format::Logfmt, "tags=_parse_failure msg=x"),
            (Format::Syslog, "<13>Jan  2 10:00:00 gw app: {\"tags\":[\"_x\",\"ok\"]}"),
        ] {
            let p = parse(format, line);
            assert!(!p.event.has_tag("_parse_failure") && !p.event.has_tag("_x"), "{line}");
            assert!(p.event.get(crate::parse::REJECTED_TAGS).is_some(), "{line}");
        }
    }

    #[test]
    fn format_names_round_trip_and_unknown_ones_are_listed() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        }
        let e = "xml".parse::<Format>().unwrap_err().to_string();
        assert!(e.contains("unknown format \"xml\"") && e.contains("k8s_audit"), "{e}");
    }

    #[test]
    fn an_overlong_line_is_stored_truncated_in_every_format() {
        let limits = Limits {
            max_line_bytes: 8,
            ..Limits::default()
        };
        let ctx = LineContext {
            limits: &limits,
            now: OffsetDateTime::now_utc(),
        };
        for f in Format::ALL {
            let p = parse_line(f, 3, b"<13>Jan  2 10:00:00 gw app: hi", &ctx);
            assert_eq!(p.event.get_str("message"), Some("<13>Jan "), "{f}");
            assert_eq!(p.failure.map(|f| f.line), Some(3));
        }
    }

    /// The issue's hostile cases, in every format: each line is an event
    /// (parsed, or raw with a reason), and nothing of it is lost.
    #[test]
    fn hostile_lines_in_every_format_become_events() {
        let mb = |prefix: &str| {
            let mut l = prefix.as_bytes().to_vec();
            l.resize(1_000_000, b'a');
            l
        };
        let lines: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"<".to_vec(),
            b"<34>1 2003-10-11T22:14:15.003Z host app - - [x a=\"".to_vec(),
            b"CEF:0|a|b|c|d|e|5|src=10.0.0.1 msg=a\x00b\r\nc".to_vec(),
            b"LEEF:2.0|V|P|1|E|^|a=\x00^b=\r\n".to_vec(),
            b"k=\"a\r\nb\x00\" j=\xff\xfe".to_vec(),
            b"\x00\x01\x02\xff\xfe\xfd binary".to_vec(),
            b"<13>Jan  2 10:00:00 gw app: nul \x00 inside, cr \r inside".to_vec(),
            b"9223372036854775808 <13>Jan  2 10:00:00 gw app: x".to_vec(),
            mb("<13>Jan  2 10:00:00 gw app: "),
            mb("CEF:0|a|b|c|d|e|5|msg="),
            mb("10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET /"),
            mb("k=\""),
        ];
        let limits = Limits::default();
        let ctx = LineContext {
            limits: &limits,
            now: OffsetDateTime::now_utc(),
        };
        for format in Format::ALL {
            for line in &lines {
                let p = parse_line(format, 1, line, &ctx);
                let show = String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
                match &p.failure {
                    Some(f) => {
                        let message = p
                            .event
                            .get_str("message")
                            .unwrap_or_else(|| panic!("{format} {show}: no message"));
                        assert_eq!(
                            message.len(),
                            String::from_utf8_lossy(line).len(),
                            "{format} {show}: {}",
                            f.reason
                        );
                        assert!(p.event.has_tag(schemas::tags::PARSE_FAILURE));
                    }
                    None => assert!(!p.event.is_empty() || line.is_empty(), "{format} {show}"),
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_in_any_format_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), i in 0usize..10) {
            let limits = Limits::default();
            let ctx = LineContext { limits: &limits, now: OffsetDateTime::now_utc() };
            let p = parse_line(Format::ALL[i], 1, &bytes, &ctx);
            proptest::prop_assert!(p.event.get("message").is_some() || p.failure.is_none());
        }
    }
}
