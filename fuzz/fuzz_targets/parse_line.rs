//! The format dispatcher, `ingest::format::parse_line`: every format,
//! including JSON, CloudTrail and Kubernetes audit mapping, and `auto`
//! recognition.
//!
//! The first byte chooses the format (`Format::ALL[b % 10]`); from 250 up
//! it also sets a 256-byte line limit to reach the truncation path. The
//! rest is the line, parsed at a fixed ingest time (2026-01-03T00:00:00Z).
//!
//! Asserts: the recognized format is never `auto`; a failure carries the
//! line number, the `_parse_failure` tag and the raw `message`; a byte
//! position in the reason ("... at byte N") is inside the line.
#![no_main]

use ingest::format::{parse_line, Format, LineContext};
use ingest::parse::Limits;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

const NOW: i64 = 1_767_398_400; // 2026-01-03T00:00:00Z
const LINE: usize = 7;

/// Every `at byte N` in `reason`.
fn byte_positions(reason: &str) -> impl Iterator<Item = usize> + '_ {
    reason.match_indices(" at byte ").filter_map(|(i, m)| {
        let digits: String = reason[i + m.len()..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let format = Format::ALL[usize::from(selector) % Format::ALL.len()];
    let limits = if selector >= 250 {
        Limits {
            max_line_bytes: 256,
            ..Limits::default()
        }
    } else {
        Limits::default()
    };
    let ctx = LineContext {
        limits: &limits,
        now: OffsetDateTime::from_unix_timestamp(NOW).expect("a valid time"),
    };
    let p = parse_line(format, LINE, bytes, &ctx);
    assert_ne!(p.format, Format::Auto, "recognized as auto");
    if let Some(f) = &p.failure {
        assert_eq!(f.line, LINE);
        assert!(p.event.get("message").is_some(), "a failure without the raw message");
        assert!(p.event.has_tag("_parse_failure"), "a failure without the tag");
        for position in byte_positions(&f.reason) {
            assert!(
                position <= bytes.len(),
                "reason {:?} points past the {}-byte line",
                f.reason,
                bytes.len()
            );
        }
    }
});
