//! Ingest: from request bytes to durable, normalized events.
//!
//! The stages, in the order data flows through them:
//!
//! - [`decode`]: undo `Content-Encoding` (gzip, deflate, zstd) under a limit
//!   on the *decompressed* size, so a compression bomb is refused, not obeyed.
//! - [`frame`]: split a body into items (NDJSON lines, JSON array elements,
//!   or one object).
//! - [`parse`]: turn one item into an event, or into a raw event tagged
//!   `_parse_failure` with the reason; never drop a line.
//! - [`normalize`]: set `@timestamp`, `event.ingested`, `event.id`,
//!   `event.dataset`.
//!
//! [`Ingestor`] runs them for one request and appends the batch to the
//! write-ahead log (the `wal` crate), answering once it is fsynced.
//!
//! ```
//! use ingest::{frame, parse};
//!
//! let body = b"{\"message\":\"hi\"}\nnot json\n";
//! let items = frame::frame(body, 64);
//! let parsed: Vec<_> = items.into_iter().map(|item| parse::parse_item(item, &parse::Limits::default())).collect();
//! assert!(parsed[0].failure.is_none());
//! assert_eq!(parsed[1].failure.as_ref().map(|f| f.line), Some(2));
//! ```

pub mod cef;
pub mod clf;
pub mod decode;
pub mod format;
pub mod frame;
pub mod leef;
pub mod listener;
pub mod logfmt;
pub mod metrics;
pub mod normalize;
pub mod parse;
mod service;
pub mod syslog;

pub use metrics::IngestMetrics;
use schemas::ErrorCode;
pub use service::{Admission, IngestConfig, IngestReport, Ingestor, LineError};
pub use syslog::{ErrorKind, FormatError};

/// Errors of the ingest stages.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body, after decompression, is larger than the limit.
    #[error("request body exceeds the limit of {limit} bytes after decompression")]
    BodyTooLarge { limit: usize },
    /// `Content-Encoding` names a coding this server does not speak.
    #[error("unsupported content-encoding {0:?}: use gzip, deflate, zstd or identity")]
    UnsupportedEncoding(String),
    /// The compressed stream is corrupt.
    #[error("cannot decode {encoding} body at compressed byte {offset}: {reason}")]
    BadEncoding {
        encoding: &'static str,
        offset: u64,
        reason: String,
    },
    /// The body holds more events than one request may.
    #[error("request holds more than {limit} events: split it into smaller requests")]
    TooManyEvents { limit: usize },
    /// The events, normalized and serialized, take more than one request may.
    #[error("request's events take more than {limit} bytes once normalized: split it into smaller requests")]
    BatchTooLarge { limit: usize },
    /// A bug: a worker panicked. Not a storage failure, and not worth a retry
    /// of the same body.
    #[error("internal error: {reason}")]
    Internal { reason: String },
    /// The `source` name is not usable.
    #[error("invalid source name {name:?}: use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with tripline. (Tripline's own datasets)")]
    BadSource { name: String },
    /// Too much is in flight: the client should retry later.
    #[error("ingest is overloaded: retry later")]
    Overloaded,
    /// The write-ahead log refused the batch.
    #[error(transparent)]
    Wal(#[from] wal::WalError),
}

impl IngestError {
    /// The kind of error, for the API.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            IngestError::BodyTooLarge { .. }
            | IngestError::TooManyEvents { .. }
            | IngestError::BatchTooLarge { .. } => ErrorCode::PayloadTooLarge,
            IngestError::UnsupportedEncoding(_) => ErrorCode::UnsupportedMediaType,
            IngestError::BadEncoding { .. } | IngestError::BadSource { .. } => ErrorCode::BadRequest,
            IngestError::Internal { .. } => ErrorCode::Internal,
            IngestError::Overloaded => ErrorCode::TooManyRequests,
            IngestError::Wal(e) => e.error_code(),
        }
    }
}
