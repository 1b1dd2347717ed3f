//! IBM QRadar's Log Event Extended Format, versions 1.0 and 2.0:
//!
//! ```text
//! LEEF:1.0|Vendor|Product|Version|EventID|key=value<TAB>key=value
//! LEEF:2.0|Vendor|Product|Version|EventID|DelimiterCharacter|key=value^key=value
//! ```
//!
//! Version 1.0 separates attributes with a tab. Version 2.0 names its own
//! delimiter in a sixth header field: one character, or its code in hex
//! (`x09`, `0x09`, `^`); an empty or absent sixth field means a tab. A value
//! runs to the next delimiter, so it may hold spaces and `=`. Header fields
//! may escape `\|`. Parsed on bytes; total: a message, or an error with
//! the byte position and whether the input ended early or held a wrong byte.

use std::borrow::Cow;

use crate::syslog::{until_unescaped, FormatError};

/// A parsed LEEF message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leef<'a> {
    /// `1.0` or `2.0` (as written).
    pub version: &'a str,
    /// Vendor.
    pub vendor: Cow<'a, str>,
    /// Product.
    pub product: Cow<'a, str>,
    /// Product version.
    pub product_version: Cow<'a, str>,
    /// Event id.
    pub event_id: Cow<'a, str>,
    /// The attribute delimiter in force.
    pub delimiter: char,
    /// Attributes in order.
    pub attributes: Vec<(&'a str, &'a str)>,
}

/// Parses a LEEF message (from `LEEF:`; a syslog header before it is the
/// caller's to strip).
pub fn parse(input: &[u8]) -> Result<Leef<'_>, FormatError> {
    let at = |rest: &[u8], expected: &'static str| FormatError::at(input, rest, expected);
    let rest = FormatError::expect_prefix(input, "LEEF:")?;
    let (rest, version) = field(rest).ok_or_else(|| at(&input[input.len()..], "a version and |"))?;
    let version = match version {
        Cow::Borrowed(v @ ("1.0" | "2.0" | "1" | "2")) => v,
        _ => return Err(at(&input[5..], "version 1.0 or 2.0")),
    };
    let mut header = Vec::with_capacity(4);
    let mut rest = rest;
    for _ in 0..4 {
        let (after, f) = field(rest).ok_or_else(|| {
            at(
                &input[input.len()..],
                "vendor, product, version and event id, each ending in |",
            )
        })?;
        if f.chars().any(char::is_control) {
            return Err(at(rest, "header fields without control characters"));
        }
        header.push(f);
        rest = after;
    }
    let mut delimiter = '\t';
    if version.starts_with('2') {
        // The sixth field is the delimiter when it is one: a single
        // character, or hex. Otherwise the attributes start here.
        if let Some(end) = memchr::memchr(b'|', rest) {
            if let Some(d) = delimiter_of(&rest[..end]) {
                delimiter = d;
                rest = &rest[end + 1..];
            } else if end == 0 {
                rest = &rest[1..];
            } else if !rest[..end].contains(&b'=') {
                return Err(at(rest, "a delimiter: one character or its hex code (x09)"));
            }
        }
    }
    let text = std::str::from_utf8(rest).map_err(|e| at(&rest[e.valid_up_to()..], "UTF-8 attributes"))?;
    let mut attributes = Vec::new();
    for (n, pair) in text.split(delimiter).enumerate() {
        if pair.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = pair.split_once('=') else {
            let offset = text
                .split(delimiter)
                .take(n)
                .map(|p| p.len() + delimiter.len_utf8())
                .sum::<usize>();
            return Err(at(&rest[offset..], "key=value attributes"));
        };
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b'=') {
            let offset = text
                .split(delimiter)
                .take(n)
                .map(|p| p.len() + delimiter.len_utf8())
                .sum::<usize>();
            return Err(at(&rest[offset..], "an attribute key"));
        }
        attributes.push((k, v));
    }
    let mut h = header.into_iter();
    let mut next = || h.next().unwrap_or_default();
    Ok(Leef {
        version,
        vendor: next(),
        product: next(),
        product_version: next(),
        event_id: next(),
        delimiter,
        attributes,
    })
}

/// One header field up to an unescaped `|` (consumed).
fn field(i: &[u8]) -> Option<(&[u8], Cow<'_, str>)> {
    let (n, has_escape) = until_unescaped(i, b'|')?;
    let raw = String::from_utf8_lossy(&i[..n]);
    let value = if has_escape {
        Cow::Owned(raw.replace("\\|", "|"))
    } else {
        raw
    };
    Some((&i[n + 1..], value))
}

/// A LEEF 2.0 delimiter field: one character, or `x..` / `0x..` in hex.
fn delimiter_of(f: &[u8]) -> Option<char> {
    let s = std::str::from_utf8(f).ok()?;
    let mut chars = s.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return (c != '=').then_some(c);
    }
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .or_else(|| s.strip_prefix('x'))
        .or_else(|| s.strip_prefix('X'))?;
    if hex.is_empty() || hex.len() > 4 {
        return None;
    }
    u32::from_str_radix(hex, 16)
        .ok()
        .and_then(char::from_u32)
        .filter(|&c| c != '=')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::syslog::assert_errors;
    use crate::ErrorKind;
    use proptest::prelude::*;

    /// (input, vendor, event id, delimiter, attributes)
    #[allow(clippy::type_complexity)]
    const CASES: &[(&str, &str, &str, char, &[(&str, &str)])] = &[
        // The LEEF 1.0 example of IBM's documentation.
        (
            "LEEF:1.0|Microsoft|MSExchange|4.0 SP1|15345|src=192.0.2.0\tdst=172.50.123.1\tsev=5\tcat=anomaly\tsrcPort=81\tdstPort=21\tusrName=joe.black",
            "Microsoft",
            "15345",
            '\t',
            &[("src", "192.0.2.0"), ("dst", "172.50.123.1"), ("sev", "5"), ("cat", "anomaly"), ("srcPort", "81"), ("dstPort", "21"), ("usrName", "joe.black")],
        ),
        // The LEEF 2.0 examples: a caret, and a tab given in hex.
        (
            "LEEF:2.0|Lancope|StealthWatch|1.0|41|^|src=192.0.2.0^dst=172.50.123.1^sev=5^cat=anomaly^msg=there are spaces in this message",
            "Lancope",
            "41",
            '^',
            &[("src", "192.0.2.0"), ("dst", "172.50.123.1"), ("sev", "5"), ("cat", "anomaly"), ("msg", "there are spaces in this message")],
        ),
        (
            "LEEF:2.0|Vendor|Product|Version|EventID|x09|src=10.0.0.1\tusrName=a b",
            "Vendor",
            "EventID",
            '\t',
            &[("src", "10.0.0.1"), ("usrName", "a b")],
        ),
        (
            "LEEF:2.0|Vendor|Product|Version|EventID|0x7C|src=10.0.0.1|dst=10.0.0.2",
            "Vendor",
            "EventID",
            '|',
            &[("src", "10.0.0.1"), ("dst", "10.0.0.2")],
        ),
        // 2.0 without a delimiter field: a tab.
        (
            "LEEF:2.0|V|P|1|E|src=10.0.0.1\tdst=10.0.0.2",
            "V",
            "E",
            '\t',
            &[("src", "10.0.0.1"), ("dst", "10.0.0.2")],
        ),
        // An empty delimiter field, a value holding `=`, an escaped pipe in the header.
        (
            "LEEF:2.0|V\\|X|P|1|E||url=/a?b=c\tsev=1",
            "V|X",
            "E",
            '\t',
            &[("url", "/a?b=c"), ("sev", "1")],
        ),
        ("LEEF:1.0|V|P|1|E|", "V", "E", '\t', &[]),
    ];

    #[test]
    fn the_documented_examples_parse() {
        for (input, vendor, event_id, delim, attrs) in CASES {
            let m = parse(input.as_bytes()).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(m.vendor, *vendor, "{input}");
            assert_eq!(m.event_id, *event_id, "{input}");
            assert_eq!(m.delimiter, *delim, "{input}");
            assert_eq!(m.attributes, attrs.to_vec(), "{input}");
        }
    }

    #[test]
    fn malformed_messages_are_errors_with_their_position() {
        use ErrorKind::{Incomplete, Invalid};
        assert_errors(
            |i| parse(i).err(),
            &[
                (b"", 0, Incomplete),
                (b"LEE", 3, Incomplete),
                (b"LEEX:1.0|", 3, Invalid),
                (b"LEEF:3.0|V|P|1|E|", 5, Invalid),
                (b"LEEF:1.0|V|P|1", 14, Incomplete),
                (b"LEEF:1.0|V|P|1|E|novalue", 17, Invalid),
                (b"LEEF:1.0|V|P|1|E|a=1\t=2", 21, Invalid),
                (b"LEEF:2.0|V|P|1|E|xyz|a=1", 17, Invalid),
                (b"LEEF:1.0|V|P|1|E|a=\xff", 19, Invalid),
                (b"LEEF:1.0|V\x00|P|1|E|a=1", 9, Invalid),
            ],
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
            let mut prefixed = b"LEEF:2.0|V|P|1|E|".to_vec();
            prefixed.extend_from_slice(&bytes);
            if let Err(e) = parse(&prefixed) {
                prop_assert!(e.position <= prefixed.len());
            }
        }
    }
}
