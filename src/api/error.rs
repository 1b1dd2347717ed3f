//! The one place errors become HTTP responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ingest::IngestError;
use query::QueryError;
use schemas::ErrorCode;
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
    #[error(transparent)]
    Detect(#[from] detect::DetectError),
    #[error(transparent)]
    Deliver(#[from] deliver::DeliverError),
    #[error("detection is off: start with --rules DIR, set detect.rules_dir or configure [[detectors]]")]
    DetectionOff,
    #[error("{0}")]
    BadRequest(String),
    #[error("request body: {message}")]
    Body { status: StatusCode, message: String },
    #[error("request body not received within {seconds} s")]
    BodyTimeout { seconds: u64 },
    #[error("not ready: write-ahead log replay is running")]
    NotReady,
    #[error("indexing has failed; nothing is being acknowledged")]
    IndexFailed,
    #[error("indexing is {lag} bytes behind the log: retry later")]
    IndexBehind { lag: u64 },
    #[error("busy: too many searches running")]
    Busy,
    #[error("too many failed authentications from this address: retry in {seconds} s")]
    AuthThrottled { seconds: u64 },
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    /// The kind of error: each library error says its own.
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::Auth(e) => e.error_code(),
            ApiError::Ingest(e) => e.error_code(),
            ApiError::Query(e) => e.error_code(),
            ApiError::Token(e) => e.error_code(),
            ApiError::Detect(e) => e.error_code(),
            ApiError::Deliver(e) => e.error_code(),
            ApiError::DetectionOff => ErrorCode::NotFound,
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::Body { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            ApiError::Body { status, .. } if status.is_server_error() => ErrorCode::Internal,
            ApiError::Body { .. } => ErrorCode::BadRequest,
            ApiError::BodyTimeout { .. } => ErrorCode::RequestTimeout,
            ApiError::NotReady | ApiError::IndexFailed => ErrorCode::Unavailable,
            ApiError::IndexBehind { .. } | ApiError::Busy | ApiError::AuthThrottled { .. } => {
                ErrorCode::TooManyRequests
            }
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The one place codes become HTTP: status and `Retry-After`.
    fn status(code: ErrorCode) -> (StatusCode, Option<u64>) {
        use StatusCode as S;
        match code {
            ErrorCode::BadRequest => (S::BAD_REQUEST, None),
            ErrorCode::Unauthenticated => (S::UNAUTHORIZED, None),
            ErrorCode::Forbidden => (S::FORBIDDEN, None),
            ErrorCode::NotFound => (S::NOT_FOUND, None),
            ErrorCode::Conflict => (S::CONFLICT, None),
            ErrorCode::RequestTimeout => (S::REQUEST_TIMEOUT, None),
            ErrorCode::PayloadTooLarge => (S::PAYLOAD_TOO_LARGE, None),
            ErrorCode::UnsupportedMediaType => (S::UNSUPPORTED_MEDIA_TYPE, None),
            ErrorCode::TooManyRequests => (S::TOO_MANY_REQUESTS, Some(1)),
            ErrorCode::Timeout => (S::GATEWAY_TIMEOUT, None),
            ErrorCode::Unavailable => (S::SERVICE_UNAVAILABLE, Some(30)),
            ErrorCode::Internal => (S::INTERNAL_SERVER_ERROR, None),
        }
    }

    fn parts(&self) -> (StatusCode, Option<u64>, serde_json::Value) {
        let code = self.code();
        let (status, mut retry_after) = ApiError::status(code);
        match self {
            ApiError::NotReady | ApiError::Busy => retry_after = Some(1),
            ApiError::IndexBehind { .. } => retry_after = Some(5),
            ApiError::AuthThrottled { seconds } => retry_after = Some(*seconds),
            _ => {}
        }
        let message = match (code, self) {
            (ErrorCode::Internal, _) => "internal error".to_string(),
            (ErrorCode::Unavailable, ApiError::NotReady) => self.to_string(),
            (ErrorCode::Unavailable, _) => {
                "storage unavailable: nothing is being acknowledged; retry later".to_string()
            }
            _ => self.to_string(),
        };
        let body = match self {
            ApiError::Query(QueryError::Syntax {
                position,
                message: reason,
            }) => {
                json!({ "error": message, "position": position, "reason": reason })
            }
            _ => json!({ "error": message }),
        };
        (status, retry_after, body)
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
