//! Detection: Sigma rules (specification v2.1) compiled once and evaluated
//! on events.
//!
//! - [`condition`]: the condition language, parsed with nom.
//! - [`matcher`]: value tests (wildcards, regexes, networks, numbers, time
//!   parts) and the transformations (`windash`, `base64`, `base64offset`,
//!   `utf16*`).
//! - [`rule`]: rule documents read from YAML and compiled; a rule that uses
//!   anything not implemented is refused with its id, file and reason.
//! - [`alert`]: what matches become, stored as events of `tripline.alerts`.
//! - [`stage`]: the [`Detector`], a consumer of the WAL with its own
//!   durable position, evaluating every rule on every event off the
//!   acknowledgement path and appending alerts back to the log.
//!
//! ```
//! use detect::rule::{parse_file, Document};
//!
//! let text = r#"
//! title: Console login without MFA
//! id: 00000000-0000-0000-0000-000000000001
//! logsource: {product: aws, service: cloudtrail}
//! detection:
//!     selection:
//!         eventName: ConsoleLogin
//!         additionalEventData.MFAUsed: 'No'
//!     condition: selection
//! level: medium
//! "#;
//! let Ok(Document::Rule(rule)) = parse_file(text, "t.yml").remove(0) else { panic!() };
//! // The logsource selects CloudTrail events (`schemas/sigma/logsources.toml`).
//! let event = schemas::Event::from_json(serde_json::json!({
//!     "cloud": {"provider": "aws"}, "eventSource": "signin.amazonaws.com",
//!     "eventName": "ConsoleLogin", "additionalEventData": {"MFAUsed": "No"}})).unwrap();
//! assert!(rule.matches(&event));
//! ```

pub mod alert;
pub mod condition;
pub mod correlation;
pub mod detectors;
pub mod matcher;
pub mod rule;
pub mod stage;

pub use alert::{Alert, Status, ALERTS_DATASET};
pub use stage::{Checkpoint, DetectConfig, DetectMetrics, Detector, Rules, StatusChange};

use schemas::ErrorCode;

/// Errors of the detection crate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DetectError {
    /// The file is not YAML.
    #[error("{file}: not YAML: {reason}")]
    Yaml { file: String, reason: String },
    /// A rule this engine will not evaluate, and why.
    #[error("{file}: rule {rule} refused: {reason}")]
    Refused { file: String, rule: String, reason: String },
    /// The stage's checkpoint cannot be read or written.
    #[error("detection state {path}: {reason}")]
    State { path: String, reason: String },
    /// The WAL refused the stage's alerts.
    #[error("write-ahead log: {0}")]
    Wal(String),
    /// No alert has that id.
    #[error("no alert {id}")]
    NotFound { id: String },
    /// A detector has no baseline for that key (no such detector, or no
    /// event of that key yet).
    #[error("detector {detector} has no baseline for key {key}")]
    NoBaseline { detector: String, key: String },
    /// The stage is not running.
    #[error("detection is not running")]
    Stopped,
}

impl DetectError {
    /// The kind of error, for the API.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DetectError::Yaml { .. } | DetectError::Refused { .. } => ErrorCode::BadRequest,
            DetectError::State { .. } => ErrorCode::Internal,
            DetectError::Wal(_) | DetectError::Stopped => ErrorCode::Unavailable,
            DetectError::NotFound { .. } | DetectError::NoBaseline { .. } => ErrorCode::NotFound,
        }
    }

    pub(crate) fn state(path: &std::path::Path, e: impl std::fmt::Display) -> DetectError {
        DetectError::State {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }
}
