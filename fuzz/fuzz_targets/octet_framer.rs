//! The syslog TCP framer (RFC 6587), driven like a connection reader: frame
//! after frame until it needs more bytes or refuses the stream, with the
//! production limit (64 KiB) and a small one (64 bytes).
//!
//! Asserts: every frame consumes at least one byte and no more than the
//! buffer holds (so the loop always progresses), its message lies inside
//! what it consumed and is no longer than the limit; an error names the
//! limit in force. And the same stream delivered in chunks (as TCP reads
//! deliver it, the chunk size taken from the last input byte) yields the
//! same frames and the same end as the whole buffer at once.
#![no_main]

use ingest::syslog::octet::{next_frame, Frame, FramingError};
use libfuzzer_sys::fuzz_target;

/// Frames of `buf` from its start: (message offsets and lengths, the end).
type Framed = (Vec<(usize, usize)>, Result<usize, FramingError>);

/// Reads frames from `data[start..end]` while whole ones are there; returns
/// the new start, or the stream's error.
fn drain(
    data: &[u8],
    mut start: usize,
    end: usize,
    max: usize,
    out: &mut Vec<(usize, usize)>,
) -> Result<usize, FramingError> {
    loop {
        let buf = &data[start..end];
        match next_frame(buf, max) {
            Ok(Frame::Message { msg, consumed }) => {
                assert!(consumed > 0, "a frame consumed 0 bytes: the reader loop would spin");
                assert!(
                    consumed <= buf.len(),
                    "consumed {consumed} of a {}-byte buffer",
                    buf.len()
                );
                let offset = (msg.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
                assert!(
                    offset <= consumed && msg.len() <= consumed - offset,
                    "message at {offset}+{} outside the {consumed} consumed bytes",
                    msg.len()
                );
                assert!(msg.len() <= max, "a {}-byte frame over the limit {max}", msg.len());
                out.push((start + offset, msg.len()));
                start += consumed;
            }
            Ok(Frame::Incomplete) => return Ok(start),
            Err(e) => {
                match e {
                    FramingError::TooLong { limit } | FramingError::LineTooLong { limit } => assert_eq!(limit, max),
                    FramingError::BadCount => {}
                }
                let _ = e.to_string();
                return Err(e);
            }
        }
    }
}

fn whole(data: &[u8], max: usize) -> Framed {
    let mut out = Vec::new();
    let end = drain(data, 0, data.len(), max, &mut out);
    (out, end)
}

fn chunked(data: &[u8], max: usize, chunk: usize) -> Framed {
    let mut out = Vec::new();
    let (mut start, mut fed) = (0, 0);
    loop {
        fed = (fed + chunk).min(data.len());
        start = match drain(data, start, fed, max, &mut out) {
            Ok(s) => s,
            Err(e) => return (out, Err(e)),
        };
        if fed == data.len() {
            return (out, Ok(start));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let last = data.last().copied().unwrap_or(0) as usize;
    // 1 to 4081 bytes a read; at least 64 on big inputs to bound the rescans.
    let mut chunk = 1 + last * 16;
    if data.len() > 8192 {
        chunk = chunk.max(64);
    }
    for max in [65536, 64] {
        let a = whole(data, max);
        let b = chunked(data, max, chunk);
        assert_eq!(
            a, b,
            "max {max}, chunk {chunk}: whole buffer and chunked reads disagree"
        );
    }
});
