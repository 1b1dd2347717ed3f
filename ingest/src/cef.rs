//! ArcSight Common Event Format, as firewalls, WAFs and gateways send it:
//!
//! ```text
//! CEF:Version|Device Vendor|Device Product|Device Version|Signature ID|Name|Severity|Extension
//! ```
//!
//! Header fields escape `\|` and `\\`. The extension is `key=value` pairs
//! separated by spaces; a value runs to the space before the next key, so
//! it may hold spaces, and escapes `\=`, `\\`, `\n` and `\r`. Parsed with
//! nom on bytes; total: a message, or an error with the byte position and
//! whether the input ended early or held a wrong byte.

use std::borrow::Cow;

use crate::syslog::FormatError;

/// A parsed CEF message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cef<'a> {
    /// The CEF version (0 or 1).
    pub version: Cow<'a, str>,
    /// Device vendor, product and version.
    pub device_vendor: Cow<'a, str>,
    /// Device product.
    pub device_product: Cow<'a, str>,
    /// Device version.
    pub device_version: Cow<'a, str>,
    /// Signature (event class) id.
    pub signature_id: Cow<'a, str>,
    /// Human-readable name.
    pub name: Cow<'a, str>,
    /// Severity: 0 to 10, or Low, Medium, High, Very-High.
    pub severity: Cow<'a, str>,
    /// Extension pairs, in order, values unescaped.
    pub extension: Vec<(&'a str, Cow<'a, str>)>,
}

/// Parses a CEF message (from `CEF:`; a syslog header before it is the
/// caller's to strip).
pub fn parse(input: &[u8]) -> Result<Cef<'_>, FormatError> {
    let at = |rest: &[u8], expected: &'static str| FormatError::at(input, rest, expected);
    let mut rest = FormatError::expect_prefix(input, "CEF:")?;
    let mut header: Vec<Cow<'_, str>> = Vec::with_capacity(7);
    for _ in 0..7 {
        let (after, field) =
            header_field(rest).ok_or_else(|| at(&rest[rest.len()..], "seven |-separated header fields"))?;
        header.push(field.map_err(|_| at(rest, "UTF-8 header fields"))?);
        rest = after;
    }
    let extension = extension(rest).map_err(|r| at(r, "key=value pairs"))?;
    let mut h = header.into_iter();
    let mut next = || h.next().unwrap_or_default();
    Ok(Cef {
        version: next(),
        device_vendor: next(),
        device_product: next(),
        device_version: next(),
        signature_id: next(),
        name: next(),
        severity: next(),
        extension,
    })
}

/// One header field up to an unescaped `|` (consumed); `None` when there
/// is no closing `|`.
#[allow(clippy::type_complexity)]
fn header_field(i: &[u8]) -> Option<(&[u8], Result<Cow<'_, str>, std::str::Utf8Error>)> {
    let (n, has_escape) = crate::syslog::until_unescaped(i, b'|')?;
    let raw = std::str::from_utf8(&i[..n]);
    let value = raw.map(|r| {
        if has_escape {
            Cow::Owned(unescape(r, &['|', '\\']))
        } else {
            Cow::Borrowed(r)
        }
    });
    Some((&i[n + 1..], value))
}

/// Undoes `\c` for each `c` in `chars`, and `\n`, `\r` as line breaks; any
/// other backslash is kept.
fn unescape(raw: &str, chars: &[char]) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some(e) if chars.contains(&e) => out.push(e),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'[' | b']')
}

/// The extension's pairs. A key is a run of key characters right before an
/// unescaped `=`, at the start or after a space; a value runs to the space
/// before the next key.
#[allow(clippy::type_complexity)]
fn extension(i: &[u8]) -> Result<Vec<(&str, Cow<'_, str>)>, &[u8]> {
    // Positions of the `=` that end a key.
    let mut keys: Vec<(usize, usize)> = Vec::new(); // (key start, '=' position)
    let mut escaped = false;
    for (n, &b) in i.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'=' => {
                let start = i[..n].iter().rposition(|&c| !key_char(c)).map_or(0, |p| p + 1);
                let starts_pair = start < n && (start == 0 || i[start - 1] == b' ');
                if starts_pair {
                    keys.push((start, n));
                }
            }
            _ => {}
        }
    }
    fn text<'b>(r: &'b [u8], whole: &'b [u8]) -> Result<&'b str, &'b [u8]> {
        std::str::from_utf8(r).map_err(|_| whole)
    }
    if keys.is_empty() {
        return match i.iter().all(u8::is_ascii_whitespace) {
            true => Ok(Vec::new()),
            false => Err(i),
        };
    }
    if i[..keys[0].0].iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(i);
    }
    let mut pairs = Vec::with_capacity(keys.len());
    for (k, &(start, eq)) in keys.iter().enumerate() {
        let value_end = keys.get(k + 1).map_or(i.len(), |&(next, _)| next.saturating_sub(1));
        let value_end = value_end.max(eq + 1);
        let key = text(&i[start..eq], i)?;
        let raw = text(&i[eq + 1..value_end], i)?;
        let raw = if k + 1 == keys.len() {
            raw.trim_end_matches(['\r', '\n'])
        } else {
            raw
        };
        let value = if raw.contains('\\') {
            Cow::Owned(unescape(raw, &['=', '\\']))
        } else {
            Cow::Borrowed(raw)
        };
        pairs.push((key, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn the_spec_examples_parse() {
        let m = parse(
            b"CEF:0|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232",
        )
        .unwrap();
        assert_eq!(
            (m.version.as_ref(), m.device_vendor.as_ref(), m.severity.as_ref()),
            ("0", "Security", "10")
        );
        assert_eq!(m.name, "worm successfully stopped");
        assert_eq!(
            m.extension,
            vec![
                ("src", Cow::Borrowed("10.0.0.1")),
                ("dst", Cow::Borrowed("2.1.2.2")),
                ("spt", Cow::Borrowed("1232"))
            ]
        );
        let m = parse(br"CEF:0|security|threatmanager|1.0|100|detected a \| in message|10|src=10.0.0.1 act=blocked a \= dst=1.1.1.1").unwrap();
        assert_eq!(m.name, "detected a | in message");
        assert_eq!(m.extension[1], ("act", Cow::Owned("blocked a =".to_string())));
        let m = parse(br"CEF:0|security|threatmanager|1.0|100|detected a \\ in packet|10|src=10.0.0.1 act=blocked a \\ dst=1.1.1.1").unwrap();
        assert_eq!(m.name, r"detected a \ in packet");
        assert_eq!(m.extension[1].1, r"blocked a \");
        let m = parse(br"CEF:0|security|threatmanager|1.0|100|Detected a threat. No action needed.|10|src=10.0.0.1 msg=Detected a threat.\n No action needed.").unwrap();
        assert_eq!(m.extension[1].1, "Detected a threat.\n No action needed.");
    }

    #[test]
    fn values_with_spaces_and_an_empty_extension() {
        let m = parse(b"CEF:1|Fortinet|FortiGate|7.2|0000000013|traffic forward close|3|request=GET /a b requestMethod=GET suser=alice smith").unwrap();
        assert_eq!(m.extension[0].1, "GET /a b");
        assert_eq!(m.extension[2], ("suser", Cow::Borrowed("alice smith")));
        assert!(parse(b"CEF:0|a|b|c|d|e|5|").unwrap().extension.is_empty());
    }

    #[test]
    fn bad_messages_say_where_and_why() {
        let cases: &[(&[u8], usize, ErrorKind)] = &[
            (b"", 0, ErrorKind::Incomplete),
            (b"CE", 2, ErrorKind::Incomplete),
            (b"LEEF:1.0|x", 0, ErrorKind::Invalid),
            (b"CEF:0|a|b|c", 11, ErrorKind::Incomplete),
            (b"CEF:0|a|b|c|d|e|5|no pairs here", 18, ErrorKind::Invalid),
        ];
        crate::syslog::assert_errors(|i| parse(i).err(), cases);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_a_message_or_an_error_within_the_input(
            tail in proptest::collection::vec(proptest::prop_oneof![
                3 => proptest::prelude::any::<u8>(),
                7 => proptest::sample::select(b"|=\\ ab0n".to_vec()),
            ], 0..200),
        ) {
            let mut input = b"CEF:".to_vec();
            input.extend_from_slice(&tail);
            match parse(&input) {
                Ok(m) => proptest::prop_assert!(m.extension.iter().all(|(k, _)| !k.is_empty())),
                Err(e) => proptest::prop_assert!(e.position <= input.len()),
            }
        }
    }
}
