//! The one place errors become HTTP responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ingest::IngestError;
use query::QueryError;
use serde_json::json;

use crate::auth::{AuthError, TokenError};

/// An error as the API reports it. A 5xx body says nothing internal; the
/// log says everything.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("{0}")]
    BadRequest(String),
    #[error("request body: {message}")]
    Body { status: StatusCode, message: String },
    #[error("not ready: write-ahead log replay is running")]
    NotReady,
    #[error("busy: too many searches running")]
    Busy,
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, Option<u64>, serde_json::Value) {
        use StatusCode as S;
        let public = |status: S, msg: String| (status, None, json!({ "error": msg }));
        match self {
            ApiError::Auth(AuthError::Missing | AuthError::Invalid | AuthError::Expired) => {
                public(S::UNAUTHORIZED, self.to_string())
            }
            ApiError::Auth(AuthError::Forbidden { .. } | AuthError::Dataset { .. }) => {
                public(S::FORBIDDEN, self.to_string())
            }
            ApiError::Ingest(e) => match e {
                IngestError::BodyTooLarge { .. } => public(S::PAYLOAD_TOO_LARGE, e.to_string()),
                IngestError::UnsupportedEncoding(_) => public(S::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
                IngestError::BadEncoding { .. } | IngestError::BadSource { .. } => {
                    public(S::BAD_REQUEST, e.to_string())
                }
                IngestError::Overloaded => (S::TOO_MANY_REQUESTS, Some(1), json!({ "error": e.to_string() })),
                IngestError::WalFailed { .. } | IngestError::WalClosed => (
                    S::SERVICE_UNAVAILABLE,
                    Some(30),
                    json!({ "error": "storage unavailable: nothing is being acknowledged; retry later" }),
                ),
                IngestError::Io { .. } => public(S::INTERNAL_SERVER_ERROR, "internal error".into()),
            },
            ApiError::Query(e) => match e {
                QueryError::Syntax { position, message } => (
                    S::BAD_REQUEST,
                    None,
                    json!({ "error": e.to_string(), "position": position, "reason": message }),
                ),
                QueryError::Index(_) => public(S::INTERNAL_SERVER_ERROR, "internal error".into()),
                _ => public(S::BAD_REQUEST, e.to_string()),
            },
            ApiError::Token(e) => match e {
                TokenError::Invalid(_) => public(S::BAD_REQUEST, e.to_string()),
                TokenError::Exists(_) => public(S::CONFLICT, e.to_string()),
                TokenError::NotFound(_) => public(S::NOT_FOUND, e.to_string()),
                TokenError::Io { .. } | TokenError::Corrupt { .. } | TokenError::Randomness(_) => {
                    public(S::INTERNAL_SERVER_ERROR, "internal error".into())
                }
            },
            ApiError::BadRequest(m) => public(S::BAD_REQUEST, m.clone()),
            ApiError::Body { status, .. } if status.is_server_error() => public(*status, "internal error".into()),
            ApiError::Body { status, message } => public(*status, message.clone()),
            ApiError::NotReady => (S::SERVICE_UNAVAILABLE, Some(1), json!({ "error": self.to_string() })),
            ApiError::Busy => (S::TOO_MANY_REQUESTS, Some(1), json!({ "error": self.to_string() })),
            ApiError::Internal(_) => public(S::INTERNAL_SERVER_ERROR, "internal error".into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, retry_after, body) = self.parts();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        }
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
