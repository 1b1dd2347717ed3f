//! Query: the search language and its execution over index partitions.
//!
//! - [`lang`]: the nom parser, from text to an [`Expr`]; it never touches
//!   an index.
//! - [`compile`]: an [`Expr`] as a tantivy query for one partition's schema.
//! - [`filter`]: an [`Expr`] tested against one event in memory (webhook
//!   filters over alerts), with the index's semantics.
//! - [`time`]: `start`/`end` bounds, absolute or relative (`-15m`).
//! - [`exec`]: runs a search over the partitions of a time range, newest
//!   first, with a cursor.
//!
//! ```
//! use query::lang::{parse, Expr};
//!
//! let expr = parse("source.ip:10.0.0.0/8 AND NOT user.name:svc-*").unwrap();
//! assert!(matches!(expr, Expr::And(_)));
//! let err = parse("user.name:alice OR").unwrap_err();
//! assert_eq!(err.to_string(), "syntax error at position 18: expected a term after OR, found end of query");
//! ```

pub mod compile;
pub mod exec;
pub mod filter;
pub mod lang;
pub mod time;

pub use exec::{Cursor, Search, SearchResponse, MAX_LIMIT};
pub use lang::Expr;

/// Errors of parsing and running a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query text is not valid; `position` is a byte offset into it.
    #[error("syntax error at position {position}: {message}")]
    Syntax { position: usize, message: String },
    /// A value does not fit its field's type.
    #[error("{field}: {value:?} is not {expected}")]
    BadValue {
        field: String,
        value: String,
        expected: String,
    },
    /// The query asks for something the field cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// The query is over a cost limit.
    #[error("query too costly: {0}")]
    TooCostly(String),
    /// `start` or `end` is not a time.
    #[error("{which}: {value:?} is not a time (use RFC 3339 or a relative time such as -15m, -24h, now)")]
    BadTime { which: &'static str, value: String },
    /// The cursor is not one this server handed out.
    #[error("invalid cursor {0:?}")]
    BadCursor(String),
    /// The search ran past its deadline.
    #[error("the search ran past its deadline of {seconds} s: narrow the time range or the query")]
    Timeout { seconds: u64 },
    /// The index failed while searching.
    #[error("index error: {0}")]
    Index(String),
}

impl QueryError {
    /// The kind of error, for the API.
    pub fn error_code(&self) -> schemas::ErrorCode {
        use schemas::ErrorCode;
        match self {
            QueryError::Syntax { .. }
            | QueryError::BadValue { .. }
            | QueryError::Unsupported(_)
            | QueryError::TooCostly(_)
            | QueryError::BadTime { .. }
            | QueryError::BadCursor(_) => ErrorCode::BadRequest,
            QueryError::Timeout { .. } => ErrorCode::Timeout,
            QueryError::Index(_) => ErrorCode::Internal,
        }
    }
}
