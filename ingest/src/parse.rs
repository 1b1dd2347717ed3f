//! Turn one framed item into an event. Total: every item becomes an event;
//! what cannot be parsed is stored raw, tagged `_parse_failure`, with the
//! reason in `error.message` and in the ingest response. The format of the
//! item chooses the parser ([`crate::format`]); JSON is parsed here.

use schemas::{fields, tags, Event, SchemaError, DEPTH_LIMIT};

use crate::format::{parse_line, Format, LineContext};
use crate::frame::{nested_deeper_than, Item, ItemKind};

/// Per-item limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest line parsed as JSON; a longer one is stored truncated.
    pub max_line_bytes: usize,
    /// Deepest JSON nesting accepted.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line_bytes: 1 << 20,
            max_depth: DEPTH_LIMIT,
        }
    }
}

/// Why an item was stored raw.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// 1-based line (or array element) number.
    pub line: usize,
    /// What was wrong, with the position inside the line where known.
    pub reason: String,
}

/// The event an item became, and why it is raw if it is.
#[derive(Debug)]
pub struct Parsed {
    /// Always present: the parsed event, or the raw line as `message`.
    pub event: Event,
    /// Set when the item could not be parsed.
    pub failure: Option<Failure>,
    /// The format the item was recognized as (`raw` when none was).
    pub format: Format,
}

/// Parses one JSON item (the format `auto`, at the ingest time). Every
/// item, a line, an array element or a whole-body object, is held to
/// `max_line_bytes`: one over it is stored truncated, unparsed.
pub fn parse_item(item: Item<'_>, limits: &Limits) -> Parsed {
    let ctx = LineContext {
        limits,
        now: time::OffsetDateTime::now_utc(),
    };
    parse_item_as(Format::Auto, item, &ctx)
}

/// Parses one item as `format`.
pub fn parse_item_as(format: Format, item: Item<'_>, ctx: &LineContext<'_>) -> Parsed {
    let (ItemKind::Json(bytes) | ItemKind::Raw(bytes)) = item.kind;
    parse_line(format, item.line, bytes, ctx)
}

/// Parses one JSON text straight into the flat event, no `Value` tree.
/// serde_json stops at its own recursion limit, so the bytes are scanned
/// for depth only to explain a failure.
pub(crate) fn parse_json(line: usize, bytes: &[u8], limits: &Limits) -> Parsed {
    let raw = |line, bytes, reason| raw(line, bytes, reason, Format::Json);
    match Event::from_json_slice(bytes, limits.max_depth) {
        Ok(mut event) => {
            keep_reserved_tags_out(&mut event);
            Parsed {
                event,
                failure: None,
                format: Format::Json,
            }
        }
        Err(SchemaError::InvalidJson(_)) if nested_deeper_than(bytes, limits.max_depth) => {
            raw(line, bytes, too_deep(limits))
        }
        Err(SchemaError::InvalidJson(e)) => raw(
            line,
            bytes,
            format!("invalid JSON at column {}: {}", e.column(), strip_position(&e)),
        ),
        Err(SchemaError::TooDeep { .. }) => raw(line, bytes, too_deep(limits)),
        Err(e) => raw(line, bytes, e.to_string()),
    }
}

/// Field that keeps the reserved tags a sender tried to set.
pub const REJECTED_TAGS: &str = "event.rejected_tags";

/// Tags starting with `_` are Tripline's (`_parse_failure`, ...): a sender
/// cannot set them. They move to `event.rejected_tags`, so the attempt stays
/// visible.
pub(crate) fn keep_reserved_tags_out(event: &mut Event) {
    let rejected: Vec<serde_json::Value> = match event.get(fields::TAGS) {
        Some(serde_json::Value::String(t)) if tags::is_reserved(t) => vec![serde_json::Value::String(t.clone())],
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter(|v| v.as_str().is_some_and(tags::is_reserved))
            .cloned()
            .collect(),
        _ => return,
    };
    if rejected.is_empty() {
        return;
    }
    if let Some(serde_json::Value::Array(items)) = event.remove(fields::TAGS) {
        let kept: Vec<_> = items
            .into_iter()
            .filter(|v| !v.as_str().is_some_and(tags::is_reserved))
            .collect();
        if !kept.is_empty() {
            event.insert(fields::TAGS, kept);
        }
    }
    event.insert(REJECTED_TAGS, rejected);
}

fn too_deep(limits: &Limits) -> String {
    format!("JSON nested deeper than {} levels", limits.max_depth)
}

/// The item stored raw, tagged, with the reason; `format` is the one it
/// failed as (for the per-format counts).
pub(crate) fn raw(line: usize, bytes: &[u8], reason: String, format: Format) -> Parsed {
    let mut event = Event::new();
    event.insert(fields::MESSAGE, String::from_utf8_lossy(bytes).into_owned());
    event.insert("error.message", reason.clone());
    event.add_tag(tags::PARSE_FAILURE);
    Parsed {
        event,
        failure: Some(Failure { line, reason }),
        format,
    }
}

/// serde_json appends " at line L column C"; the column is reported apart.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::frame;

    fn parse_all(body: &[u8]) -> Vec<Parsed> {
        let limits = Limits::default();
        let ctx = LineContext {
            limits: &limits,
            now: time::OffsetDateTime::now_utc(),
        };
        frame(body, 64)
            .into_iter()
            .map(|i| parse_item_as(Format::Json, i, &ctx))
            .collect()
    }

    /// (input line, expected failure reason fragment or None)
    const CASES: &[(&[u8], Option<&str>)] = &[
        (br#"{"message":"ok"}"#, None),
        (
            br#"{"a":1"#,
            Some("invalid JSON at column 6: EOF while parsing an object"),
        ),
        (b"plain text", Some("invalid JSON at column 1")),
        (b"42", Some("must be a JSON object, found a number")),
        (b"\"quoted\"", Some("must be a JSON object, found a string")),
        (b"{\"a\":\"\xff\xfe\"}", Some("invalid JSON")),
    ];

    #[test]
    fn each_case_parses_or_fails_with_its_reason() {
        for (input, want) in CASES {
            let mut parsed = parse_all(input);
            assert_eq!(parsed.len(), 1);
            let p = parsed.remove(0);
            match (want, &p.failure) {
                (None, None) => {}
                (Some(want), Some(f)) => {
                    assert!(
                        f.reason.contains(want),
                        "{:?}: {}",
                        String::from_utf8_lossy(input),
                        f.reason
                    );
                    assert!(p.event.has_tag(tags::PARSE_FAILURE));
                    assert!(p.event.get_str("message").is_some());
                }
                _ => panic!("{:?}: got {:?}", String::from_utf8_lossy(input), p.failure),
            }
        }
    }

    #[test]
    fn invalid_utf8_is_stored_lossily() {
        let p = parse_all(b"\xff\xfeabc").remove(0);
        assert_eq!(p.event.get_str("message"), Some("\u{fffd}\u{fffd}abc"));
    }

    #[test]
    fn deep_nesting_is_stored_raw_not_parsed() {
        let deep = format!("{}1{}", "[".repeat(65), "]".repeat(65));
        let line = format!("{{\"a\":{deep}}}");
        let p = parse_all(line.as_bytes()).remove(0);
        assert!(p.failure.unwrap().reason.contains("deeper than 64"));
        let very_deep = "[".repeat(100_000);
        let p = parse_all(very_deep.as_bytes()).remove(0);
        assert!(p.failure.is_some());
    }

    /// Regression: flattening wrote a long key once per leaf below it, so a
    /// 300 KB line could become gigabytes of field names.
    #[test]
    fn a_long_key_above_many_leaves_is_stored_raw_not_flattened() {
        let leaves: Vec<String> = (0..20_000).map(|i| format!("\"k{i}\":1")).collect();
        let line = format!("{{\"{}\":{{{}}}}}", "x".repeat(100_000), leaves.join(","));
        for body in [line.clone(), format!("[{line}]")] {
            let p = parse_all(body.as_bytes()).remove(0);
            assert!(p.failure.unwrap().reason.contains("field names would take over"));
            assert_eq!(p.event.get_str("message").map(str::len), Some(line.len()));
        }
    }

    #[test]
    fn array_elements_get_the_same_limits_and_keep_their_text() {
        let deep = format!("{}1{}", "[".repeat(65), "]".repeat(65));
        let body = format!("[{{\"ok\":1}}, {{\"a\":{deep}}}, 7]");
        let parsed = parse_all(body.as_bytes());
        assert!(parsed[0].failure.is_none());
        assert!(parsed[1].failure.as_ref().unwrap().reason.contains("deeper than 64"));
        assert_eq!(
            parsed[1].event.get_str("message"),
            Some(format!("{{\"a\":{deep}}}").as_str())
        );
        assert!(parsed[2].failure.as_ref().unwrap().reason.contains("found a number"));
    }

    #[test]
    fn an_overlong_line_is_stored_truncated() {
        let limits = Limits {
            max_line_bytes: 10,
            max_depth: 64,
        };
        let item = Item {
            line: 7,
            kind: ItemKind::Raw(b"{\"message\":\"far too long\"}"),
        };
        let p = parse_item(item, &limits);
        assert_eq!(p.failure.as_ref().map(|f| f.line), Some(7));
        assert_eq!(p.event.get_str("message"), Some("{\"message\""));
    }

    /// M3: only NDJSON lines were held to the limit; an array element or a
    /// whole-body object could be 64 MiB.
    #[test]
    fn array_elements_and_whole_objects_are_held_to_the_line_limit() {
        let limits = Limits {
            max_line_bytes: 64,
            max_depth: 64,
        };
        let long = format!("{{\"message\":\"{}\"}}", "x".repeat(100));
        let array = format!("[{long}, {{\"ok\":1}}]");
        let pretty = format!("{{\n  \"message\": \"{}\"\n}}", "y".repeat(100));
        for body in [array.as_str(), pretty.as_str()] {
            let parsed: Vec<Parsed> = frame(body.as_bytes(), 64)
                .into_iter()
                .map(|i| parse_item(i, &limits))
                .collect();
            let f = parsed[0].failure.as_ref().expect("over the limit");
            assert!(f.reason.contains("over the limit of 64"), "{}", f.reason);
            assert_eq!(parsed[0].event.get_str("message").map(str::len), Some(64));
        }
    }

    /// M7: a sender could mark its events `_parse_failure` (or any tag of
    /// Tripline's).
    #[test]
    fn senders_cannot_set_reserved_tags() {
        let p = parse_all(br#"{"tags":["_parse_failure","web","_x"]}"#).remove(0);
        assert!(p.failure.is_none());
        assert!(!p.event.has_tag(tags::PARSE_FAILURE));
        assert!(p.event.has_tag("web"));
        assert_eq!(
            p.event.get(REJECTED_TAGS),
            Some(&serde_json::json!(["_parse_failure", "_x"]))
        );
        let p = parse_all(br#"{"tags":"_timestamp_missing"}"#).remove(0);
        assert_eq!(p.event.get(fields::TAGS), None);
        assert_eq!(
            p.event.get(REJECTED_TAGS),
            Some(&serde_json::json!(["_timestamp_missing"]))
        );
    }
}
