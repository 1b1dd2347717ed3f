//! Syslog: the message formats real senders use, parsed with nom on bytes.
//!
//! - [`rfc5424`]: the IETF format (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`).
//! - [`octet`]: TCP framing (RFC 6587), octet-counted or line by line,
//!   with a bound on every frame.
//! - [`rfc3164`]: the BSD format and the variants rsyslog and files carry
//!   (`<PRI>Mmm dd hh:mm:ss host tag[pid]: msg`, no PRI, an RFC 3339 time,
//!   no host), with the missing year inferred.
//! - [`sshd`]: login events in sshd and PAM message bodies.
//!
//! Both are total: a message, or a [`FormatError`] with the byte position
//! where parsing stopped and whether the input ended early or held a wrong
//! byte.

pub mod octet;
pub mod rfc3164;
pub mod rfc5424;
pub mod sshd;

/// Why a message is not in its format (syslog, CEF, logfmt): where parsing
/// stopped and whether the input ended early or held a wrong byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// Byte offset where parsing stopped.
    pub position: usize,
    /// The input ended too early, or held a wrong byte.
    pub kind: ErrorKind,
    /// What was expected there.
    pub expected: &'static str,
}

/// Ran out of input, or met a wrong byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The message ends before it is complete.
    Incomplete,
    /// A byte that does not fit the grammar.
    Invalid,
}

impl FormatError {
    /// `input` after its `prefix` (`CEF:`, `LEEF:`), or an error at the
    /// first byte that differs (incomplete when the input is a part of it).
    pub(crate) fn expect_prefix<'a>(input: &'a [u8], prefix: &'static str) -> Result<&'a [u8], FormatError> {
        input.strip_prefix(prefix.as_bytes()).ok_or_else(|| {
            let matched = prefix.bytes().zip(input).take_while(|(a, b)| a == *b).count();
            FormatError {
                position: matched,
                kind: if matched == input.len() {
                    ErrorKind::Incomplete
                } else {
                    ErrorKind::Invalid
                },
                expected: prefix,
            }
        })
    }

    /// An error at `rest`, a suffix of `input`.
    pub(crate) fn at(input: &[u8], rest: &[u8], expected: &'static str) -> FormatError {
        FormatError {
            position: input.len() - rest.len(),
            kind: if rest.is_empty() {
                ErrorKind::Incomplete
            } else {
                ErrorKind::Invalid
            },
            expected,
        }
    }
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            ErrorKind::Incomplete => "ends early",
            ErrorKind::Invalid => "invalid",
        };
        write!(f, "{what} at byte {}: expected {}", self.position, self.expected)
    }
}

impl std::error::Error for FormatError {}

/// The position of the first `end` byte not escaped by a backslash, and
/// whether any backslash came before it; `None` when there is none. Shared
/// by every format whose values escape their own terminator.
pub(crate) fn until_unescaped(i: &[u8], end: u8) -> Option<(usize, bool)> {
    let mut escaped = false;
    let mut has_escape = false;
    for (n, &b) in i.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
            has_escape = true;
        } else if b == end {
            return Some((n, has_escape));
        }
    }
    None
}

/// Facility and severity from a PRI value (0 to 191).
pub(crate) fn split_pri(prival: u16) -> (u8, u8) {
    ((prival / 8) as u8, (prival % 8) as u8)
}

/// Checks a table of `(input, position, kind)` against a parser's errors.
#[cfg(test)]
pub(crate) fn assert_errors(error_of: impl Fn(&[u8]) -> Option<FormatError>, cases: &[(&[u8], usize, ErrorKind)]) {
    for (input, position, kind) in cases {
        let e = error_of(input).unwrap_or_else(|| panic!("{:?} parsed", String::from_utf8_lossy(input)));
        assert_eq!(
            (e.position, e.kind),
            (*position, *kind),
            "{:?}: {e}",
            String::from_utf8_lossy(input)
        );
    }
}
