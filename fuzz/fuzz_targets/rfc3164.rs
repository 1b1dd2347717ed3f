//! RFC 3164 (BSD) syslog: any bytes give a message or an error inside the
//! input.
//!
//! The ingest time is fixed (2026-01-03T00:00:00Z), unless the input starts
//! with a NUL byte: then the next two bytes (little endian) move it by
//! -32768..=32767 hours (about 3.7 years either way, so the New Year and the
//! leap years 2024 and 2028 are in reach) and the line is what follows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use time::{Duration, OffsetDateTime};

const NOW: i64 = 1_767_398_400; // 2026-01-03T00:00:00Z

fuzz_target!(|data: &[u8]| {
    let base = OffsetDateTime::from_unix_timestamp(NOW).expect("a valid time");
    let (now, line) = match data {
        [0, a, b, line @ ..] => {
            let hours = i64::from(u16::from_le_bytes([*a, *b])) - 32768;
            (base + Duration::hours(hours), line)
        }
        _ => (base, data),
    };
    match ingest::syslog::rfc3164::parse(line, now) {
        Ok(m) => {
            if let Some((facility, severity)) = m.priority {
                assert!(facility <= 23 && severity <= 7, "priority {facility}/{severity}");
            }
            assert!(m.msg.len() <= line.len());
            assert!(m.hostname.is_none_or(|h| !h.is_empty()));
            assert!(m.tag.is_none_or(|t| !t.is_empty()));
        }
        Err(e) => {
            assert!(
                e.position <= line.len(),
                "position {} past input of {} bytes",
                e.position,
                line.len()
            );
            let _ = e.to_string();
        }
    }
});
