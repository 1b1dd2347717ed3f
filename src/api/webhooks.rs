//! Webhooks: thin handlers over the outbox (scope `admin` for all).

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use deliver::store::State as DeliveryState;
use deliver::{Outbox, WebhookSpec};
use serde::Deserialize;
use serde_json::json;

use super::{read_body, ApiError, AppState, SMALL_BODY};

/// Most deliveries one page lists.
const MAX_DELIVERIES_PAGE: usize = 1000;

fn outbox(state: &AppState) -> Result<Outbox, ApiError> {
    state.outbox.clone().ok_or(ApiError::NotReady)
}

/// Runs a blocking outbox call (redb fsyncs) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, deliver::DeliverError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("webhook task: {e}")))?
        .map_err(ApiError::from)
}

async fn spec_of(state: &AppState, request: Request) -> Result<WebhookSpec, ApiError> {
    let body = read_body(request, SMALL_BODY, state.limits.body_read_timeout).await?;
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("webhook: {e}")))
}

pub(super) async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(json!({"webhooks": outbox(&state)?.list()})).into_response())
}

pub(super) async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(outbox(&state)?.get(&id)?).into_response())
}

/// Creates a webhook; the answer holds its secret, shown this once.
pub(super) async fn create(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let spec = spec_of(&state, request).await?;
    let o = outbox(&state)?;
    let (view, secret) = blocking(move || o.create(spec)).await?;
    let mut body = serde_json::to_value(view).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(m) = body.as_object_mut() {
        m.insert("secret".into(), json!(secret));
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(super) async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let spec = spec_of(&state, request).await?;
    let o = outbox(&state)?;
    Ok(Json(blocking(move || o.replace(&id, spec)).await?).into_response())
}

pub(super) async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let o = outbox(&state)?;
    blocking(move || o.delete(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A new secret; the old one still signs for the rotation overlap.
pub(super) async fn rotate(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let o = outbox(&state)?;
    let secret = blocking(move || o.rotate(&id)).await?;
    Ok(Json(json!({"secret": secret})).into_response())
}

/// Sends a signed test event now: the receiver's status and latency.
pub(super) async fn test(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(outbox(&state)?.test(&id).await?).into_response())
}

/// `GET /api/v1/webhooks/{id}/deliveries` parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveryParams {
    status: Option<String>,
    /// Deliveries queued before this time (RFC 3339 or relative): the
    /// next page.
    before: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<DeliveryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let status = match p.status.as_deref() {
        None => None,
        Some(s) => Some(
            DeliveryState::parse(s)
                .ok_or_else(|| ApiError::BadRequest(format!("status {s:?}: use pending, delivered or failed")))?,
        ),
    };
    let before = match p.before.as_deref() {
        None => None,
        Some(b) => {
            let t = query::time::parse_bound(b, time::OffsetDateTime::now_utc(), "before")?;
            Some(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
        }
    };
    let limit = p.limit.unwrap_or(100).clamp(1, MAX_DELIVERIES_PAGE);
    let o = outbox(&state)?;
    let list = blocking(move || o.deliveries(&id, status, before, limit)).await?;
    Ok(Json(json!({"deliveries": list})).into_response())
}

/// Sends a delivery again, with the same `webhook-id`.
pub(super) async fn retry(
    State(state): State<AppState>,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let o = outbox(&state)?;
    let d = blocking(move || o.retry(&id, &delivery)).await?;
    Ok((StatusCode::ACCEPTED, Json(d)).into_response())
}
