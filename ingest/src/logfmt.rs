//! logfmt and `key=value` lines (`level=info msg="user logged in" user=bob
//! ok`), parsed with nom on bytes.
//!
//! A pair is `key=value` or `key="quoted value"` (with `\"`, `\\`, `\n`,
//! `\t` escapes); a key with no `=` is a flag and gets `true`. Total: the
//! pairs, or an error with the byte position (an unterminated quote ends
//! the input early; a key with a byte no key may hold is invalid).

use std::borrow::Cow;

use crate::syslog::FormatError;

/// A value of a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `key=value` or `key="value"`, unescaped.
    Text(Cow<'a, str>),
    /// A bare `key`.
    Flag,
}

fn key_char(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'=' | b'"')
}

/// Parses one line into its pairs, in order.
pub fn parse(input: &[u8]) -> Result<Vec<(&str, Value<'_>)>, FormatError> {
    let at = |rest: &[u8], expected: &'static str| FormatError::at(input, rest, expected);
    // Sized once from the `=` signs (a pair each, flags aside), so a long
    // line is not copied at each doubling.
    let mut pairs = Vec::with_capacity(memchr::memchr_iter(b'=', input).count().min(input.len() / 2 + 1));
    let mut rest = input;
    loop {
        rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
        if rest.is_empty() {
            return Ok(pairs);
        }
        let key_len = rest.iter().take_while(|&&b| key_char(b)).count();
        if key_len == 0 {
            return Err(at(rest, "a key"));
        }
        let key = std::str::from_utf8(&rest[..key_len]).map_err(|_| at(rest, "an ASCII key"))?;
        rest = &rest[key_len..];
        match rest.first() {
            Some(b'=') => {
                rest = &rest[1..];
                if rest.first() == Some(&b'"') {
                    let (after, value) = quoted(&rest[1..]).map_err(|r| at(r, "a closing \""))?;
                    pairs.push((key, Value::Text(value)));
                    rest = after;
                } else {
                    let end = rest.iter().position(u8::is_ascii_whitespace).unwrap_or(rest.len());
                    let value = std::str::from_utf8(&rest[..end]).map_err(|_| at(rest, "a UTF-8 value"))?;
                    pairs.push((key, Value::Text(Cow::Borrowed(value))));
                    rest = &rest[end..];
                }
            }
            None => pairs.push((key, Value::Flag)),
            Some(b) if b.is_ascii_whitespace() => pairs.push((key, Value::Flag)),
            Some(_) => return Err(at(rest, "=, a space or the end after a key")),
        }
    }
}

/// A quoted value after its opening quote; returns what follows the
/// closing quote, or where the input ended.
fn quoted(i: &[u8]) -> Result<(&[u8], Cow<'_, str>), &[u8]> {
    let (n, has_escape) = crate::syslog::until_unescaped(i, b'"').ok_or(&i[i.len()..])?;
    let raw = std::str::from_utf8(&i[..n]).map_err(|_| i)?;
    if !has_escape {
        return Ok((&i[n + 1..], Cow::Borrowed(raw)));
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Ok((&i[n + 1..], Cow::Owned(out)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::syslog::ErrorKind;
    use super::*;

    fn text(s: &str) -> Value<'_> {
        Value::Text(Cow::Borrowed(s))
    }

    #[test]
    fn pairs_quotes_escapes_and_flags() {
        let pairs =
            parse(br#"level=info msg="user \"bob\" logged in\n" user=bob dur=1.5ms ok empty= at=2026-11-23T10:00:00Z"#)
                .unwrap();
        assert_eq!(pairs[0], ("level", text("info")));
        assert_eq!(
            pairs[1],
            ("msg", Value::Text(Cow::Owned("user \"bob\" logged in\n".into())))
        );
        assert_eq!(pairs[2], ("user", text("bob")));
        assert_eq!(pairs[4], ("ok", Value::Flag));
        assert_eq!(pairs[5], ("empty", text("")));
        assert_eq!(pairs[6], ("at", text("2026-11-23T10:00:00Z")));
        assert!(parse(b"   ").unwrap().is_empty());
    }

    #[test]
    fn bad_lines_say_where_and_why() {
        let cases: &[(&[u8], usize, ErrorKind)] = &[
            (br#"a=1 msg="unterminated"#, 21, ErrorKind::Incomplete),
            (b"a=1 =2", 4, ErrorKind::Invalid),
            (b"a\"b=1", 1, ErrorKind::Invalid),
        ];
        crate::syslog::assert_errors(|i| parse(i).err(), cases);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_pairs_or_an_error_within_the_input(
            input in proptest::collection::vec(proptest::prop_oneof![
                3 => proptest::prelude::any::<u8>(),
                7 => proptest::sample::select(b"a= \"\\bn1".to_vec()),
            ], 0..200),
        ) {
            match parse(&input) {
                Ok(pairs) => proptest::prop_assert!(pairs.iter().all(|(k, _)| !k.is_empty())),
                Err(e) => proptest::prop_assert!(e.position <= input.len()),
            }
        }
    }
}
