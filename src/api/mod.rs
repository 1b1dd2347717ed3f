//! The HTTP API: thin handlers over the ingest, query and token services.
//!
//! | route | scope |
//! |---|---|
//! | `GET /healthz`, `GET /readyz` | none |
//! | `POST /api/v1/ingest?source=NAME` | ingest |
//! | `GET, POST /api/v1/search` | search |
//! | `GET, POST /api/v1/tokens` | admin |
//! | `DELETE /api/v1/tokens/{name}` | admin |
//! | `GET /metrics` | admin (or none with `metrics.public`) |

mod error;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ingest::{IngestReport, Ingestor};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

pub use error::ApiError;

use crate::auth::{Principal, Scope, TokenRequest, TokenStore};

/// The largest token request body: a name, scopes and up to 256 datasets.
const MAX_TOKEN_BODY_BYTES: usize = 64 * 1024;

/// Everything the handlers reach.
#[derive(Clone)]
pub struct AppState {
    /// Set once WAL replay is done.
    pub ingestor: Arc<OnceLock<Ingestor>>,
    /// The partitions.
    pub store: Arc<index::Store>,
    /// Tokens.
    pub tokens: Arc<TokenStore>,
    /// Metrics registry.
    pub registry: Arc<Registry>,
    /// `/metrics` without a token.
    pub metrics_public: bool,
    /// Searches running at once.
    pub search_permits: Arc<Semaphore>,
    /// Default page size.
    pub default_limit: usize,
    /// Largest request body accepted on the wire.
    pub max_body_bytes: usize,
    /// True once WAL replay is done.
    pub ready: Arc<AtomicBool>,
}

/// The API router; testable without a socket.
pub fn router(state: AppState) -> Router {
    let body_limit = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/ingest", post(ingest).layer(DefaultBodyLimit::max(body_limit)))
        .route("/api/v1/search", get(search_get).post(search_post))
        .route(
            "/api/v1/tokens",
            get(list_tokens)
                .post(create_token)
                .layer(DefaultBodyLimit::max(MAX_TOKEN_BODY_BYTES)),
        )
        .route("/api/v1/tokens/{name}", delete(revoke_token))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn authorize(state: &AppState, headers: &HeaderMap, need: Scope) -> Result<Principal, ApiError> {
    Ok(state.tokens.authorize(bearer(headers), need)?)
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "replaying write-ahead log\n").into_response()
    }
}

#[derive(Debug, Deserialize)]
struct IngestParams {
    source: Option<String>,
}

/// The token and its datasets are checked, and a slot taken, before the body
/// is read: an unauthenticated, unentitled or surplus client cannot make the
/// server buffer a body.
async fn ingest(
    State(state): State<AppState>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<IngestReport>, ApiError> {
    let principal = authorize(&state, &headers, Scope::Ingest)?;
    let source = params.source.as_deref().unwrap_or("http");
    principal.check_dataset(source)?;
    let ingestor = state.ingestor.get().ok_or(ApiError::NotReady)?;
    let admission = ingestor.admit().await?;
    let body = Bytes::from_request(request, &()).await.map_err(|r| ApiError::Body {
        status: r.status(),
        message: r.body_text(),
    })?;
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    Ok(Json(ingestor.ingest(admission, source, encoding, body).await?))
}

/// A search as the API takes it (JSON body or query string).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    #[serde(alias = "q")]
    query: Option<String>,
    start: Option<String>,
    end: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn search_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    search(state, headers, params).await
}

async fn search_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Json<SearchParams>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    search(state, headers, params).await
}

async fn search(state: AppState, headers: HeaderMap, p: SearchParams) -> Result<Response, ApiError> {
    authorize(&state, &headers, Scope::Search)?;
    let now = OffsetDateTime::now_utc();
    let spec = query::Search {
        expr: query::lang::parse(p.query.as_deref().unwrap_or(""))?,
        start: p
            .start
            .as_deref()
            .map(|s| query::time::parse_bound(s, now, "start"))
            .transpose()?,
        end: p
            .end
            .as_deref()
            .map(|s| query::time::parse_bound(s, now, "end"))
            .transpose()?,
        limit: p.limit.unwrap_or(state.default_limit),
        cursor: p
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(query::Cursor::decode)
            .transpose()?,
    };
    if spec.limit > query::MAX_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit {} is over the maximum of {}",
            spec.limit,
            query::MAX_LIMIT
        )));
    }
    let _permit = tokio::time::timeout(Duration::from_secs(10), state.search_permits.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::Busy)?
        .map_err(|_| ApiError::Busy)?;
    let store = state.store.clone();
    let result = tokio::task::spawn_blocking(move || query::exec::run(&store, &spec))
        .await
        .map_err(|e| ApiError::Internal(format!("search task: {e}")))??;
    Ok(Json(result).into_response())
}

async fn list_tokens(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers, Scope::Admin)?;
    Ok(Json(serde_json::json!({ "tokens": state.tokens.list() })).into_response())
}

/// The token is checked before the body is read; the file is written on a
/// blocking thread.
async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Scope::Admin)?;
    let Json(req) = Json::<TokenRequest>::from_request(request, &())
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let tokens = state.tokens.clone();
    let created = tokio::task::spawn_blocking(move || tokens.create(req, OffsetDateTime::now_utc()))
        .await
        .map_err(|e| ApiError::Internal(format!("token task: {e}")))??;
    // The name is checked to be 1 to 64 of A-Z a-z 0-9 . _ - by now.
    tracing::info!(name = %created.info.name, scopes = ?created.info.scopes, "created token");
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Scope::Admin)?;
    let Path(name) = name.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let tokens = state.tokens.clone();
    let revoked = name.clone();
    tokio::task::spawn_blocking(move || tokens.revoke(&revoked))
        .await
        .map_err(|e| ApiError::Internal(format!("token task: {e}")))??;
    // A name from a hand-edited file may hold anything: logged escaped.
    tracing::info!(name = ?name, "revoked token");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !state.metrics_public {
        authorize(&state, &headers, Scope::Admin)?;
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &state.registry)
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
