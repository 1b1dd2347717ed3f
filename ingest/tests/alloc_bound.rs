//! No parser allocates more than its input justifies: the heap's peak
//! while parsing one line, in every format, stays within a constant factor
//! of the line's length (plus a small constant). A length prefix, a count
//! or a delimiter a sender chooses cannot make Tripline allocate more.
//!
//! Measured with dhat's heap profiler as the global allocator, so this
//! file holds one test: the profiler is one per process.
#![allow(clippy::unwrap_used)]

use ingest::format::{parse_line, Format, LineContext};
use ingest::parse::Limits;
use ingest::syslog::octet::{next_frame, Frame};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Peak heap bytes allocated while `f` runs, above what was live before.
fn peak_during(f: impl FnOnce()) -> u64 {
    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get().curr_bytes as u64;
    f();
    dhat::HeapStats::get().max_bytes as u64 - before
}

/// What a line of `len` bytes may cost: linear in the line. The event
/// holds the line (as `message`) and its fields beside it, and a field of
/// two bytes (`a b c`, logfmt flags) costs a map entry of tens of bytes;
/// so the factor is large, but no count or prefix in the input can raise
/// it (the line itself is bounded by `max_line_bytes`).
fn allowance(len: usize) -> u64 {
    64 * len as u64 + (64 << 10)
}

fn inputs() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![
        b"9223372036854775808 <13>Jan  2 10:00:00 gw app: x".to_vec(),
        b"99999999999999999999999999999999".to_vec(),
        b"<13>Jan  2 10:00:00 gw app: {\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}".to_vec(),
        b"LEEF:2.0|V|P|1|E|x7C|".to_vec(),
        b"CEF:0|a|b|c|d|e|5|".to_vec(),
        b"{\"Records\":[{},{},{},{},{}]}".to_vec(),
    ];
    // Many tiny pairs: the worst case for per-field overhead.
    for (prefix, pair, sep) in [
        ("", "a=", " "),
        ("", "f", " "),
        ("CEF:0|a|b|c|d|e|5|", "k=", " "),
        ("LEEF:1.0|a|b|c|d|", "k=", "\t"),
        ("<13>1 - h a - - ", "[x", ""),
    ] {
        for n in [10usize, 1_000, 20_000] {
            let mut l = prefix.as_bytes().to_vec();
            for i in 0..n {
                l.extend_from_slice(pair.as_bytes());
                l.extend_from_slice(i.to_string().as_bytes());
                l.extend_from_slice(sep.as_bytes());
            }
            out.push(l);
        }
    }
    // Pseudo-random bytes of several sizes (a fixed seed: repeatable).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for len in [1usize, 100, 10_000, 1_000_000] {
        let mut l = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            l.push((x >> 32) as u8);
        }
        out.push(l);
    }
    out
}

#[test]
fn no_parser_allocates_more_than_its_input_justifies() {
    let limits = Limits::default();
    let ctx = LineContext {
        limits: &limits,
        now: time::OffsetDateTime::from_unix_timestamp(1_767_398_400).unwrap(),
    };
    // The mappings are parsed once, on first use: not a per-line cost.
    for format in Format::ALL {
        parse_line(format, 1, b"<13>Jan  2 10:00:00 gw app: warm-up", &ctx);
    }
    let mut worst = (0.0f64, String::new());
    for line in inputs() {
        for format in Format::ALL {
            let peak = peak_during(|| {
                std::hint::black_box(parse_line(format, 1, &line, &ctx));
            });
            let show = format!("{format} on {:?}", String::from_utf8_lossy(&line[..line.len().min(40)]));
            assert!(
                peak <= allowance(line.len()),
                "{show} ({} bytes) peaked at {peak} bytes",
                line.len()
            );
            let ratio = peak as f64 / line.len().max(1) as f64;
            if line.len() > 1000 && ratio > worst.0 {
                worst = (ratio, show);
            }
        }
        // The framer allocates nothing, whatever the prefix says.
        let peak = peak_during(|| {
            let mut rest = &line[..];
            while let Ok(Frame::Message { consumed, .. }) = next_frame(rest, 65_536) {
                rest = &rest[consumed..];
            }
        });
        assert_eq!(
            peak,
            0,
            "the framer allocated on {:?}",
            String::from_utf8_lossy(&line[..line.len().min(40)])
        );
    }
    eprintln!(
        "worst peak per input byte on lines over 1 KB: {:.1} ({})",
        worst.0, worst.1
    );
}
