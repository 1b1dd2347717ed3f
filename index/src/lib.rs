//! Index: events in tantivy, one index per UTC day of event time.
//!
//! - [`schema`]: the tantivy schema derived from the field catalog.
//! - [`doc`]: an event as a tantivy document.
//! - [`partition`]: the day partitions on disk and the [`Store`] that finds
//!   them by time range for queries.
//! - [`indexer`]: the thread that takes durable batches from the WAL, writes
//!   them into partitions, commits every interval with the WAL position as
//!   the commit payload, and applies retention.
//!
//! ```
//! use index::{Store, EventSchema};
//! use schemas::Catalog;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), EventSchema::new(Catalog::builtin())).unwrap();
//! assert!(store.partitions_between(None, None).is_empty());
//! assert_eq!(store.checkpoint().unwrap(), 0);
//! ```

pub mod dedup;
pub mod doc;
pub mod indexer;
mod metrics;
pub mod partition;
pub mod schema;

pub use indexer::{Indexer, IndexerConfig};
pub use metrics::IndexMetrics;
pub use partition::{Partition, Store};
pub use schema::EventSchema;

/// Errors of the index stage.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// tantivy failed on a partition.
    #[error("partition {partition}: {source}")]
    Tantivy {
        partition: String,
        #[source]
        source: tantivy::TantivyError,
    },
    /// A file of the index could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint file is not what Tripline writes.
    #[error("checkpoint {path}: {reason}")]
    BadCheckpoint { path: std::path::PathBuf, reason: String },
}

impl IndexError {
    /// The kind of error, for the API: the index's failures are all internal.
    pub fn error_code(&self) -> schemas::ErrorCode {
        schemas::ErrorCode::Internal
    }

    pub(crate) fn tantivy(partition: impl std::fmt::Display, source: tantivy::TantivyError) -> IndexError {
        IndexError::Tantivy {
            partition: partition.to_string(),
            source,
        }
    }
    pub(crate) fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> IndexError {
        IndexError::Io {
            path: path.into(),
            source,
        }
    }
}
