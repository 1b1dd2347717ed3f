//! Delivery: alerts sent to webhooks, signed (Standard Webhooks), from a
//! durable outbox, with retries, per receiver, never to a forbidden
//! address.
//!
//! - [`egress`]: the guard every outbound connection passes (SSRF).
//! - [`sign`]: secrets and `webhook-signature`.
//! - [`webhook`]: a webhook's definition and its filter over alerts.
//! - [`payload`]: the bodies: Tripline's, Alertmanager's, Slack's.
//! - [`store`]: the outbox on disk (redb): deliveries, their tries, the
//!   retry queue, the WAL position.
//! - [`outbox`]: the [`Outbox`], a WAL consumer queueing deliveries, and
//!   a worker per webhook sending them.
//!
//! ```
//! use deliver::sign::Secret;
//!
//! let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! // `webhook-signature` for message `msg_1` sent at unix time 1614265330.
//! let sig = secret.sign("msg_1", 1614265330, br#"{"type":"alert.created"}"#);
//! assert!(sig.starts_with("v1,"));
//! // The guard refuses what a webhook URL must never reach.
//! let guard = deliver::egress::Guard::default();
//! assert!(guard.check("169.254.169.254".parse().unwrap()).is_err());
//! ```

pub mod egress;
pub mod outbox;
pub mod payload;
pub mod sign;
pub mod store;
pub mod webhook;

pub use egress::{EgressConfig, Guard};
pub use outbox::{DeliverMetrics, DeliveryConfig, Outbox};
pub use webhook::WebhookSpec;

use schemas::ErrorCode;

/// Errors of the delivery crate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliverError {
    /// A webhook definition that cannot work, and why.
    #[error("{0}")]
    BadWebhook(String),
    /// No webhook or delivery by that id.
    #[error("{0}")]
    NotFound(String),
    /// It exists, or it belongs to the configuration file.
    #[error("{0}")]
    Conflict(String),
    /// The outbox database failed.
    #[error("outbox: {0}")]
    Store(String),
    /// The WAL could not be read.
    #[error("write-ahead log: {0}")]
    Wal(String),
    /// Anything else that should not happen.
    #[error("{0}")]
    Internal(String),
}

impl DeliverError {
    /// The kind of error, for the API.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DeliverError::BadWebhook(_) => ErrorCode::BadRequest,
            DeliverError::NotFound(_) => ErrorCode::NotFound,
            DeliverError::Conflict(_) => ErrorCode::Conflict,
            DeliverError::Wal(_) => ErrorCode::Unavailable,
            DeliverError::Store(_) | DeliverError::Internal(_) => ErrorCode::Internal,
        }
    }
}
