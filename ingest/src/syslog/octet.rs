//! Syslog over TCP (RFC 6587): each frame is either octet-counted
//! (`LEN SP MSG`) or ends at a line feed, told apart from its first byte as
//! rsyslog does: a digit starts an octet count, anything else a line.
//!
//! [`next_frame`] reads one frame from the front of a buffer. It needs more
//! bytes ([`Frame::Incomplete`]) until a frame is whole, and never trusts
//! a length prefix past `max_len`: a lying or huge prefix is an error
//! before anything is allocated for it (rsyslog's CVE-2022-24903 was a heap
//! overflow on exactly this), and the caller closes the connection.

/// What the front of the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole message, and how many bytes of the buffer it took.
    Message { msg: &'a [u8], consumed: usize },
    /// More bytes are needed.
    Incomplete,
}

/// Why the stream cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// An octet count over the frame limit (or past any number).
    TooLong { limit: usize },
    /// A line longer than the frame limit with no line feed.
    LineTooLong { limit: usize },
    /// An octet count not followed by a space.
    BadCount,
}

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FramingError::TooLong { limit } => write!(f, "syslog frame length over the limit of {limit} bytes"),
            FramingError::LineTooLong { limit } => write!(f, "syslog line over the limit of {limit} bytes"),
            FramingError::BadCount => f.write_str("syslog octet count not followed by a space"),
        }
    }
}

impl std::error::Error for FramingError {}

/// Reads the first frame of `buf`. Frames longer than `max_len` are errors.
/// A line frame excludes its `\n` (and a `\r` before it); blank lines are
/// frames of zero bytes.
pub fn next_frame(buf: &[u8], max_len: usize) -> Result<Frame<'_>, FramingError> {
    match buf.first() {
        None => Ok(Frame::Incomplete),
        Some(b) if b.is_ascii_digit() => octet_counted(buf, max_len),
        Some(_) => match memchr::memchr(b'\n', buf) {
            Some(end) if end > max_len => Err(FramingError::LineTooLong { limit: max_len }),
            Some(end) => {
                let line = &buf[..end];
                Ok(Frame::Message {
                    msg: line.strip_suffix(b"\r").unwrap_or(line),
                    consumed: end + 1,
                })
            }
            None if buf.len() > max_len => Err(FramingError::LineTooLong { limit: max_len }),
            None => Ok(Frame::Incomplete),
        },
    }
}

fn octet_counted(buf: &[u8], max_len: usize) -> Result<Frame<'_>, FramingError> {
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut len: usize = 0;
    for &d in &buf[..digits] {
        len = len
            .checked_mul(10)
            .and_then(|l| l.checked_add(usize::from(d - b'0')))
            .filter(|&l| l <= max_len)
            .ok_or(FramingError::TooLong { limit: max_len })?;
    }
    match buf.get(digits) {
        None => Ok(Frame::Incomplete),
        Some(b' ') => {
            let start = digits + 1;
            match buf.get(start..start + len) {
                Some(msg) => Ok(Frame::Message {
                    msg,
                    consumed: start + len,
                }),
                None => Ok(Frame::Incomplete),
            }
        }
        Some(_) => Err(FramingError::BadCount),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn frames(mut buf: &[u8], max: usize) -> (Vec<&[u8]>, Result<Frame<'_>, FramingError>) {
        let mut out = Vec::new();
        loop {
            match next_frame(buf, max) {
                Ok(Frame::Message { msg, consumed }) => {
                    out.push(msg);
                    buf = &buf[consumed..];
                }
                other => return (out, other),
            }
        }
    }

    #[test]
    fn octet_counted_and_line_frames_mix_on_one_stream() {
        let stream = b"11 <13>1 - - a5 hello<14>Feb  5 17:32:18 h t: m\r\n0 \n";
        let (got, rest) = frames(stream, 1024);
        assert_eq!(
            got,
            vec![&b"<13>1 - - a"[..], b"hello", b"<14>Feb  5 17:32:18 h t: m", b"", b""]
        );
        assert_eq!(rest, Ok(Frame::Incomplete));
    }

    #[test]
    fn a_partial_frame_waits_for_more_bytes() {
        for partial in [&b"12"[..], b"12 <13>1", b"<13>1 no newline yet"] {
            assert_eq!(next_frame(partial, 1024), Ok(Frame::Incomplete), "{partial:?}");
        }
    }

    /// CVE-2022-24903: a length prefix was trusted. Here a prefix past the
    /// limit, or past any number (2^63 and more), is an error at once.
    #[test]
    fn a_huge_or_lying_length_prefix_is_an_error_not_an_allocation() {
        for prefix in [
            &b"65537 x"[..],
            b"9223372036854775808 x",
            b"99999999999999999999999999999 x",
            b"65537",
        ] {
            assert_eq!(
                next_frame(prefix, 65536),
                Err(FramingError::TooLong { limit: 65536 }),
                "{prefix:?}"
            );
        }
        assert_eq!(next_frame(b"12x <13>", 1024), Err(FramingError::BadCount));
        assert_eq!(
            next_frame(&[b'a'; 100], 64),
            Err(FramingError::LineTooLong { limit: 64 })
        );
    }

    proptest::proptest! {
        /// Any bytes: frames lie inside the buffer and no frame is longer
        /// than the limit; never a panic.
        #[test]
        fn any_bytes_frame_within_the_buffer_and_the_limit(
            buf in proptest::collection::vec(proptest::prop_oneof![
                3 => proptest::prelude::any::<u8>(),
                7 => proptest::sample::select(b"0123456789 \n\ra<".to_vec()),
            ], 0..300),
            max in 1usize..64,
        ) {
            let (got, _) = frames(&buf, max);
            let total: usize = got.iter().map(|m| m.len()).sum();
            proptest::prop_assert!(total <= buf.len());
            proptest::prop_assert!(got.iter().all(|m| m.len() <= max));
        }
    }
}
