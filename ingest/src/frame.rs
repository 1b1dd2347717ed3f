//! Split a decoded body into items: NDJSON lines, the elements of a JSON
//! array, or one (possibly pretty-printed) JSON object.

use serde::de::{DeserializeSeed, IgnoredAny};
use serde_json::value::RawValue;

/// One item of a body, with the 1-based line (or array element) it came from.
#[derive(Debug)]
pub struct Item<'a> {
    /// 1-based line number in the decoded body, or element number in an array.
    pub line: usize,
    /// The item.
    pub kind: ItemKind<'a>,
}

/// What an item holds.
#[derive(Debug)]
pub enum ItemKind<'a> {
    /// A line still to be parsed (no trailing `\r\n`); held to the line
    /// length limit.
    Raw(&'a [u8]),
    /// The text of a JSON value framing found whole (an array element, or
    /// the whole body as one object): valid JSON, bounded by the body limit.
    Json(&'a [u8]),
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A body holds more items than a request may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyItems {
    /// The limit.
    pub limit: usize,
}

/// Frames `body` with no limit on the number of items (tests, benchmarks).
pub fn frame(body: &[u8], max_depth: usize) -> Vec<Item<'_>> {
    frame_limited(body, max_depth, usize::MAX).unwrap_or_default()
}

/// Frames `body`. Blank lines are skipped. A body that starts with `[` and is
/// a valid JSON array yields its elements; one that is a single JSON object
/// spread over several lines yields it; anything else is read as lines, so
/// one bad line never hides the others. Values nested deeper than
/// `max_depth` are left to [`crate::parse`] to report.
///
/// More than `max_items` items is an error found before anything is
/// allocated for the excess: a small compressed body of tiny lines cannot
/// become tens of millions of events.
///
/// NDJSON, the common case, is recognised from its first line alone (an
/// object that closes on it), so the body is not scanned twice.
pub fn frame_limited(body: &[u8], max_depth: usize, max_items: usize) -> Result<Vec<Item<'_>>, TooManyItems> {
    let body = body.strip_prefix(BOM).unwrap_or(body);
    let start = body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(body.len());
    let rest = &body[start..];
    // Arrays and multi-line objects are validated without building values:
    // the elements are handed on as their own bytes, parsed once later.
    let guarded = || !nested_deeper_than(rest, max_depth.max(1) * 2);
    match rest.first() {
        Some(b'{') if closes_on_first_line(rest) => lines(body, max_items),
        Some(b'{') if guarded() && serde_json::from_slice::<IgnoredAny>(rest).is_ok() => Ok(vec![Item {
            line: 1,
            kind: ItemKind::Json(rest),
        }]),
        Some(b'[') if guarded() => {
            let overflow = std::cell::Cell::new(false);
            let mut de = serde_json::Deserializer::from_slice(rest);
            let bounded = BoundedElements {
                max: max_items,
                overflow: &overflow,
            };
            let elements = bounded.deserialize(&mut de).and_then(|e| {
                de.end()?;
                Ok(e)
            });
            match elements {
                Ok(elements) => Ok(elements
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Item {
                        line: i + 1,
                        kind: ItemKind::Json(v.get().as_bytes()),
                    })
                    .collect()),
                Err(_) if overflow.get() => Err(TooManyItems { limit: max_items }),
                Err(_) => lines(body, max_items),
            }
        }
        _ => lines(body, max_items),
    }
}

/// The elements of a JSON array as raw text, failing past `max` (and
/// saying so in `overflow`, apart from a syntax error).
struct BoundedElements<'f> {
    max: usize,
    overflow: &'f std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for BoundedElements<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for BoundedElements<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max).min(4096));
        while let Some(v) = seq.next_element::<&'de RawValue>()? {
            if out.len() == self.max {
                self.overflow.set(true);
                return Err(serde::de::Error::custom("too many array elements"));
            }
            out.push(v);
        }
        Ok(out)
    }
}

/// Frames `body` line by line only (formats that are not JSON): blank
/// lines skipped, at most `max_items`.
pub fn lines_limited(body: &[u8], max_items: usize) -> Result<Vec<Item<'_>>, TooManyItems> {
    lines(body.strip_prefix(BOM).unwrap_or(body), max_items)
}

/// Splits every CloudTrail envelope (`{"Records": [...]}`, the form of
/// CloudTrail's files) among `items` into its records, each an item of
/// the envelope's line. At most `max_items` items in all.
pub fn split_records(items: Vec<Item<'_>>, max_items: usize) -> Result<Vec<Item<'_>>, TooManyItems> {
    if !items.iter().any(|i| envelope_start(i.bytes())) {
        return Ok(items);
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let bytes = item.bytes();
        if envelope_start(bytes) {
            let overflow = std::cell::Cell::new(false);
            let remaining = max_items.saturating_sub(out.len());
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let seed = EnvelopeSeed(BoundedElements {
                max: remaining,
                overflow: &overflow,
            });
            match seed.deserialize(&mut de).and_then(|r| de.end().map(|()| r)) {
                Ok(records) => {
                    out.extend(records.into_iter().map(|r| Item {
                        line: item.line,
                        kind: ItemKind::Json(r.get().as_bytes()),
                    }));
                    continue;
                }
                Err(_) if overflow.get() => return Err(TooManyItems { limit: max_items }),
                // Not an envelope after all: the item is parsed as it is.
                Err(_) => {}
            }
        }
        if out.len() == max_items {
            return Err(TooManyItems { limit: max_items });
        }
        out.push(item);
    }
    Ok(out)
}

/// `{` then `"Records"` as the first key.
fn envelope_start(bytes: &[u8]) -> bool {
    let mut rest = bytes.trim_ascii_start();
    let Some(r) = rest.strip_prefix(b"{") else {
        return false;
    };
    rest = r.trim_ascii_start();
    rest.starts_with(b"\"Records\"")
}

impl<'a> Item<'a> {
    /// The item's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        let (ItemKind::Json(b) | ItemKind::Raw(b)) = self.kind;
        b
    }
}

/// An object whose only key is `Records`, an array of objects.
struct EnvelopeSeed<'f>(BoundedElements<'f>);

impl<'de> serde::de::DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for EnvelopeSeed<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object with one key, Records")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let key: Option<std::borrow::Cow<'de, str>> = map.next_key()?;
        if key.as_deref() != Some("Records") {
            return Err(A::Error::custom("not an envelope"));
        }
        let records = map.next_value_seed(self.0)?;
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(A::Error::custom("an envelope holds Records only"));
        }
        if records.iter().any(|r| !r.get().starts_with('{')) {
            return Err(A::Error::custom("records are objects"));
        }
        Ok(records)
    }
}

fn lines(body: &[u8], max_items: usize) -> Result<Vec<Item<'_>>, TooManyItems> {
    let newlines = memchr::memchr_iter(b'\n', body).count();
    let mut items = Vec::with_capacity(newlines.saturating_add(1).min(max_items));
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if items.len() == max_items {
            return Err(TooManyItems { limit: max_items });
        }
        items.push(Item {
            line: line_no,
            kind: ItemKind::Raw(line),
        });
    }
    Ok(items)
}

/// True when JSON-ish bytes open more than `limit` nested brackets (strings
/// are skipped). A cheap guard run before handing a whole body to serde.
pub fn nested_deeper_than(bytes: &[u8], limit: usize) -> bool {
    walk_brackets(bytes, |depth, _| depth > limit)
}

/// True when the value `bytes` opens closes again before the first newline.
fn closes_on_first_line(bytes: &[u8]) -> bool {
    let line = memchr::memchr(b'\n', bytes).map_or(bytes, |n| &bytes[..n]);
    walk_brackets(line, |depth, closing| closing && depth == 0)
}

/// Walks the brackets of JSON-ish bytes outside strings, calling
/// `stop(depth after the bracket, is a closing bracket)`; true when it stopped.
fn walk_brackets(bytes: &[u8], mut stop: impl FnMut(usize, bool) -> bool) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        let closing = match b {
            b'"' => {
                in_string = true;
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                false
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                true
            }
            _ => continue,
        };
        if stop(depth, closing) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(items: &[Item<'_>]) -> Vec<usize> {
        items.iter().map(|i| i.line).collect()
    }

    #[test]
    fn ndjson_keeps_line_numbers_and_skips_blanks() {
        let items = frame(b"{\"a\":1}\r\n\n  \n{\"b\":2}\nnot json", 64);
        assert_eq!(lines_of(&items), vec![1, 4, 5]);
        assert!(matches!(items[2].kind, ItemKind::Raw(b"not json")));
    }

    #[test]
    fn an_array_yields_its_elements() {
        let items = frame(b" [{\"a\":1}, 2, {\"b\":3}]", 64);
        assert_eq!(lines_of(&items), vec![1, 2, 3]);
        assert!(matches!(items[1].kind, ItemKind::Json(b"2")));
    }

    #[test]
    fn a_pretty_printed_object_is_one_item() {
        let items = frame(b"{\n  \"a\": 1,\n  \"b\": {\"c\": 2}\n}\n", 64);
        assert_eq!(items.len(), 1);
        assert!(matches!(
            items[0].kind,
            ItemKind::Json(b"{\n  \"a\": 1,\n  \"b\": {\"c\": 2}\n}\n")
        ));
    }

    #[test]
    fn an_invalid_array_falls_back_to_lines() {
        let items = frame(b"[1,\n{\"a\":1}\n", 64);
        assert_eq!(lines_of(&items), vec![1, 2]);
    }

    #[test]
    fn a_single_line_object_and_ndjson_are_read_as_lines() {
        let items = frame(b"{\"a\":\"}\\\"{\"}\n{\"b\":2}\n", 64);
        assert_eq!(lines_of(&items), vec![1, 2]);
        assert!(matches!(items[0].kind, ItemKind::Raw(_)));
        let items = frame(b"{\"a\":{\"b\":1}}", 64);
        assert_eq!(lines_of(&items), vec![1]);
    }

    #[test]
    fn a_single_line_array_still_yields_its_elements() {
        let items = frame(b"[{\"a\":1},{\"b\":2}]\n", 64);
        assert_eq!(lines_of(&items), vec![1, 2]);
        assert!(matches!(items[0].kind, ItemKind::Json(b"{\"a\":1}")));
    }

    /// H2: a 65 KB gzip body of "1\n" lines used to become 33 million events.
    #[test]
    fn more_items_than_the_limit_is_an_error_for_lines_and_arrays() {
        let lines = b"1\n".repeat(11);
        assert_eq!(frame_limited(&lines, 64, 10).unwrap_err(), TooManyItems { limit: 10 });
        assert_eq!(frame_limited(&lines, 64, 11).unwrap().len(), 11);
        let with_blanks = b"1\n\n\n".repeat(10);
        assert_eq!(
            frame_limited(&with_blanks, 64, 10).unwrap().len(),
            10,
            "blank lines do not count"
        );
        let array = format!("[{}1]", "1,".repeat(10));
        assert_eq!(
            frame_limited(array.as_bytes(), 64, 10).unwrap_err(),
            TooManyItems { limit: 10 }
        );
        assert_eq!(frame_limited(array.as_bytes(), 64, 11).unwrap().len(), 11);
    }

    #[test]
    fn a_cloudtrail_envelope_is_split_into_its_records() {
        let body = b"{\"Records\": [{\"eventName\":\"A\"}, {\"eventName\":\"B\"}]}\n{\"eventName\":\"C\"}\n";
        let items = split_records(frame(body, 64), 10).unwrap();
        let texts: Vec<&[u8]> = items.iter().map(Item::bytes).collect();
        assert_eq!(
            texts,
            vec![
                &b"{\"eventName\":\"A\"}"[..],
                b"{\"eventName\":\"B\"}",
                b"{\"eventName\":\"C\"}"
            ]
        );
        assert_eq!(lines_of(&items), vec![1, 1, 2]);
        // Pretty-printed, as CloudTrail's console downloads are.
        let pretty = b"{\n  \"Records\": [\n    {\"a\": 1},\n    {\"b\": 2}\n  ]\n}\n";
        assert_eq!(split_records(frame(pretty, 64), 10).unwrap().len(), 2);
        // Not envelopes: another key, a non-object record, bad JSON.
        for other in [
            &b"{\"Records\": [{\"a\":1}], \"x\": 1}"[..],
            b"{\"Records\": [1]}",
            b"{\"Records\": [{\"a\":1}",
        ] {
            let items = split_records(frame(other, 64), 10).unwrap();
            assert_eq!(items.len(), 1, "{}", String::from_utf8_lossy(other));
            assert_eq!(items[0].bytes(), other);
        }
        // The limit counts records.
        let many = format!("{{\"Records\": [{}{{}}]}}", "{},".repeat(10));
        assert_eq!(
            split_records(frame(many.as_bytes(), 64), 10).unwrap_err(),
            TooManyItems { limit: 10 }
        );
    }

    #[test]
    fn depth_guard_ignores_brackets_in_strings() {
        assert!(!nested_deeper_than(br#"{"a":"[[[[[[[[[[[[\"["}"#, 2));
        assert!(nested_deeper_than(b"[[[", 2));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::parse::{parse_item, Limits};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any body: framing and parsing never panic, respect the item cap,
        /// and every item becomes an event.
        #[test]
        fn framing_and_parsing_are_total(
            body in proptest::collection::vec(prop_oneof![
                4 => any::<u8>(),
                6 => proptest::sample::select(b"{}[]\",:\n\\ 1a".to_vec()),
            ], 0..400),
            max in 1usize..8,
        ) {
            match frame_limited(&body, 8, max) {
                Ok(items) => {
                    prop_assert!(items.len() <= max);
                    let limits = Limits { max_line_bytes: 64, max_depth: 8 };
                    for item in items {
                        let parsed = parse_item(item, &limits);
                        // Parsed, or stored raw with its text and reason.
                        prop_assert!(
                            parsed.failure.is_none()
                                || (parsed.event.get("message").is_some() && parsed.event.get("error.message").is_some())
                        );
                    }
                }
                Err(e) => prop_assert_eq!(e.limit, max),
            }
        }
    }
}
