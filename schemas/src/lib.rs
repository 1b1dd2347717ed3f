//! The Tripline event model and field catalog.
//!
//! An event is one JSON object whose keys are dotted ECS field names
//! (`source.ip`, `http.response.status_code`). Nested input objects are
//! flattened into dotted keys at ingest, so every stage downstream sees one
//! shape. The [`Catalog`] says which fields have a declared type; it is loaded
//! from `fields.toml`, a data file, so adding a field is not a code change.
//!
//! ```
//! use schemas::{Catalog, Event, FieldType};
//!
//! let catalog = Catalog::builtin();
//! assert_eq!(catalog.get("source.ip").map(|f| f.ty), Some(FieldType::Ip));
//! assert_eq!(catalog.get("labels.env").map(|f| f.ty), Some(FieldType::Keyword));
//! assert!(catalog.get("requestParameters.bucketName").is_none());
//!
//! let event = Event::from_json(serde_json::json!({"source": {"ip": "10.1.2.3"}})).unwrap();
//! assert_eq!(event.get("source.ip"), Some(&serde_json::json!("10.1.2.3")));
//! ```

mod catalog;
mod event;
pub mod mapping;
pub mod sigma;
pub mod time;

pub use catalog::{Catalog, FieldDef, FieldType};
pub use event::{json_kind, Event, DEPTH_LIMIT};
pub use mapping::{Mapping, Mappings};

/// Well-known field names every event carries after ingest.
pub mod fields {
    /// Event time.
    pub const TIMESTAMP: &str = "@timestamp";
    /// Ingest time.
    pub const INGESTED: &str = "event.ingested";
    /// Unique id (assigned when absent).
    pub const ID: &str = "event.id";
    /// The source stream's name.
    pub const DATASET: &str = "event.dataset";
    /// The message; for raw lines, the line itself.
    pub const MESSAGE: &str = "message";
    /// Tags, an array of keywords.
    pub const TAGS: &str = "tags";
}

/// Tags Tripline adds to events.
pub mod tags {
    /// The line was not valid JSON (or too deep, too long, not UTF-8): stored raw.
    pub const PARSE_FAILURE: &str = "_parse_failure";
    /// No timestamp field was found: `@timestamp` is the ingest time.
    pub const TIMESTAMP_MISSING: &str = "_timestamp_missing";
    /// The event time was outside the accepted window (older than
    /// `max_event_age`, later than `max_future`, or not a calendar date):
    /// `@timestamp` is the ingest time, the sent value is in
    /// `event.original_timestamp`.
    pub const TIMESTAMP_OUT_OF_RANGE: &str = "_timestamp_out_of_range";

    /// True for a tag only Tripline may set: one starting with `_`.
    pub fn is_reserved(tag: &str) -> bool {
        tag.starts_with('_')
    }
}

/// The closed set of error kinds every crate's error maps to
/// (`error_code()`), and the API maps to HTTP once (Quickwit's
/// `ServiceErrorCode`). Add a variant only for a new kind of answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is wrong and will be wrong again (400).
    BadRequest,
    /// No usable credentials (401).
    Unauthenticated,
    /// Credentials without the right (403).
    Forbidden,
    /// Nothing by that name (404).
    NotFound,
    /// It exists already (409).
    Conflict,
    /// The request took too long to arrive (408).
    RequestTimeout,
    /// Over a size or count limit (413).
    PayloadTooLarge,
    /// A `Content-Encoding` Tripline does not speak (415).
    UnsupportedMediaType,
    /// Too much at once: retry later (429).
    TooManyRequests,
    /// The work ran out of time (504).
    Timeout,
    /// Storage cannot make data durable: retry much later (503).
    Unavailable,
    /// A bug or an I/O failure; says nothing outside (500).
    Internal,
}

/// Errors of the schema crate.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The field catalog file could not be parsed.
    #[error("field catalog {origin}: {message}")]
    Catalog { origin: String, message: String },
    /// A mapping file could not be parsed.
    #[error("mapping {origin}: {message}")]
    Mapping { origin: String, message: String },
    /// A field is declared twice in the catalog.
    #[error("field catalog {origin}: field {name:?} is declared twice")]
    DuplicateField { origin: String, name: String },
    /// An event is not a JSON object.
    #[error("an event must be a JSON object, found {found}")]
    NotAnObject { found: &'static str },
    /// The bytes are not JSON (serde_json's error has the line and column).
    #[error("invalid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// The JSON nests objects and arrays deeper than the limit.
    #[error("JSON nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    /// Flattening would write more bytes of dotted field names than the
    /// event's own size allows (long keys above many leaves).
    #[error("flattened field names would take over {limit} bytes")]
    NamesTooLong { limit: usize },
}

impl SchemaError {
    /// The kind of error, for the API.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            SchemaError::Catalog { .. } | SchemaError::Mapping { .. } | SchemaError::DuplicateField { .. } => {
                ErrorCode::Internal
            }
            SchemaError::NotAnObject { .. }
            | SchemaError::InvalidJson(_)
            | SchemaError::TooDeep { .. }
            | SchemaError::NamesTooLong { .. } => ErrorCode::BadRequest,
        }
    }
}
