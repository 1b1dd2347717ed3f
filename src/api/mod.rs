//! The HTTP API: thin handlers over the ingest, query and token services.
//!
//! | route | scope |
//! |---|---|
//! | `GET /healthz`, `GET /readyz` | none |
//! | `POST /api/v1/ingest?source=NAME&format=FORMAT` | ingest |
//! | `GET, POST /api/v1/search` | search |
//! | `GET, POST /api/v1/tokens` | admin |
//! | `DELETE /api/v1/tokens/{name}` | admin |
//! | `GET /api/v1/alerts`, `GET /api/v1/alerts/{id}` | search |
//! | `POST /api/v1/alerts/{id}` | alerts |
//! | `GET /api/v1/rules`, `GET /api/v1/detectors` | search |
//! | `GET /api/v1/detectors/{id}/baseline?key=` | search |
//! | `POST /api/v1/rules/reload` | admin |
//! | `POST /api/v1/rules/{id}/hunt`, `POST /api/v1/hunt` | search |
//! | `GET, POST /api/v1/webhooks` | admin |
//! | `GET, PUT, DELETE /api/v1/webhooks/{id}` | admin |
//! | `POST /api/v1/webhooks/{id}/test`, `POST .../rotate-secret` | admin |
//! | `GET /api/v1/webhooks/{id}/deliveries?status=&before=&limit=` | admin |
//! | `POST /api/v1/webhooks/{id}/deliveries/{delivery}/retry` | admin |
//! | `GET /metrics` | admin (or none with `metrics.public`) |

mod alerts;
mod error;
mod throttle;
mod webhooks;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use index::indexer::IndexHealth;
use ingest::{IngestReport, Ingestor};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

pub use error::ApiError;
pub use throttle::AuthThrottle;

use crate::auth::{Principal, Scope, TokenRequest, TokenStore};

/// Everything the handlers reach.
#[derive(Clone)]
pub struct AppState {
    /// Set once WAL replay is done.
    pub ingestor: Arc<OnceLock<Ingestor>>,
    /// The partitions searched.
    pub store: Arc<index::Store>,
    /// Whether the indexer has failed for good.
    pub index_health: Arc<IndexHealth>,
    pub tokens: Arc<TokenStore>,
    /// Failed authentications per client address.
    pub auth_throttle: Arc<AuthThrottle>,
    pub registry: Arc<Registry>,
    /// `/metrics` without a token.
    pub metrics_public: bool,
    /// Searches running at once; a permit is held until the search ends,
    /// even if its client has gone.
    pub search_permits: Arc<Semaphore>,
    /// Default page size.
    pub default_limit: usize,
    pub limits: ApiLimits,
    /// True once WAL replay is done.
    pub ready: Arc<AtomicBool>,
    /// The detection stage, set after WAL replay when rules are configured.
    pub detection: Arc<OnceLock<Arc<crate::detection::Detection>>>,
    /// The webhook outbox.
    pub outbox: Option<deliver::Outbox>,
}

/// Limits the handlers enforce.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Largest ingest body accepted on the wire.
    pub max_body_bytes: usize,
    /// Longest time to receive a whole request body.
    pub body_read_timeout: Duration,
    /// A search running longer is stopped (504).
    pub search_timeout: Duration,
    /// Log bytes the index may lag behind before ingest answers 429.
    pub max_unindexed_bytes: u64,
}

/// Largest body of a search or token request.
const SMALL_BODY: usize = 64 << 10;

/// The API router; testable without a socket. Every route but health checks
/// the token (in a layer, before any extractor reads the body).
pub fn router(state: AppState) -> Router {
    let need = |scope: Scope| middleware::from_fn_with_state((state.clone(), scope), require);
    let metrics_route = if state.metrics_public {
        get(metrics)
    } else {
        get(metrics).route_layer(need(Scope::Admin))
    };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/ingest", post(ingest).route_layer(need(Scope::Ingest)))
        .route(
            "/api/v1/search",
            get(search_get).post(search_post).route_layer(need(Scope::Search)),
        )
        .route(
            "/api/v1/tokens",
            get(list_tokens).post(create_token).route_layer(need(Scope::Admin)),
        )
        .route(
            "/api/v1/tokens/{name}",
            delete(revoke_token).route_layer(need(Scope::Admin)),
        )
        .route("/api/v1/alerts", get(alerts::list).route_layer(need(Scope::Search)))
        .route(
            "/api/v1/alerts/{id}",
            get(alerts::get_one)
                .route_layer(need(Scope::Search))
                .merge(post(alerts::set_status).route_layer(need(Scope::Alerts))),
        )
        .route("/api/v1/rules", get(alerts::rules).route_layer(need(Scope::Search)))
        .route(
            "/api/v1/detectors",
            get(alerts::detectors).route_layer(need(Scope::Search)),
        )
        .route(
            "/api/v1/detectors/{id}/baseline",
            get(alerts::baseline).route_layer(need(Scope::Search)),
        )
        .route(
            "/api/v1/rules/{id}/hunt",
            post(alerts::hunt_loaded).route_layer(need(Scope::Search)),
        )
        .route("/api/v1/hunt", post(alerts::hunt_file).route_layer(need(Scope::Search)))
        .route(
            "/api/v1/rules/reload",
            post(alerts::reload).route_layer(need(Scope::Admin)),
        )
        .route(
            "/api/v1/webhooks",
            get(webhooks::list)
                .post(webhooks::create)
                .route_layer(need(Scope::Admin)),
        )
        .route(
            "/api/v1/webhooks/{id}",
            get(webhooks::get_one)
                .merge(put(webhooks::replace))
                .merge(delete(webhooks::remove))
                .route_layer(need(Scope::Admin)),
        )
        .route(
            "/api/v1/webhooks/{id}/test",
            post(webhooks::test).route_layer(need(Scope::Admin)),
        )
        .route(
            "/api/v1/webhooks/{id}/rotate-secret",
            post(webhooks::rotate).route_layer(need(Scope::Admin)),
        )
        .route(
            "/api/v1/webhooks/{id}/deliveries",
            get(webhooks::deliveries).route_layer(need(Scope::Admin)),
        )
        .route(
            "/api/v1/webhooks/{id}/deliveries/{delivery}/retry",
            post(webhooks::retry).route_layer(need(Scope::Admin)),
        )
        .route("/metrics", metrics_route)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// A handler panic is a 500 that says nothing internal, never a dropped
/// connection.
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("a request handler panicked".into()).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks the bearer token for the route's scope before anything reads the
/// request body.
/// An address over the failed-authentication limit gets 429 before its
/// token is even looked at.
async fn require(
    State((state, scope)): State<(AppState, Scope)>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(seconds) = peer.and_then(|ip| state.auth_throttle.blocked(ip)) {
        return Err(ApiError::AuthThrottled { seconds });
    }
    let principal: Principal = match state.tokens.authorize(bearer(request.headers()), scope) {
        Ok(p) => p,
        Err(e) => {
            if let (Some(ip), schemas::ErrorCode::Unauthenticated) = (peer, e.error_code()) {
                state.auth_throttle.failed(ip);
            }
            return Err(e.into());
        }
    };
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// Reads a whole body, up to `limit` bytes and within `timeout`.
async fn read_body(request: Request, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let request = request.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, limit)));
    match tokio::time::timeout(timeout, Bytes::from_request(request, &())).await {
        Err(_) => Err(ApiError::BodyTimeout {
            seconds: timeout.as_secs(),
        }),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(r)) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::Body {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("request body is over the limit of {limit} bytes"),
        }),
        Ok(Err(r)) => Err(ApiError::Body {
            status: r.status(),
            message: r.body_text(),
        }),
    }
}

/// Ready when the WAL is replayed, the WAL can write and the indexer works;
/// the body says which part is not.
/// The detection stage, or why there is none.
fn detection(state: &AppState) -> Result<Arc<crate::detection::Detection>, ApiError> {
    match state.detection.get() {
        Some(d) => Ok(d.clone()),
        None if !state.ready.load(Ordering::SeqCst) => Err(ApiError::NotReady),
        None => Err(ApiError::DetectionOff),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let replayed = state.ready.load(Ordering::SeqCst);
    let wal = state.ingestor.get().and_then(|i| i.wal().failure());
    let damage = state.ingestor.get().and_then(|i| i.wal().damage());
    let index = state.index_health.failure();
    let ready = replayed && wal.is_none() && index.is_none();
    let body = serde_json::json!({
        "ready": ready,
        "replayed": replayed,
        "wal": wal.map_or_else(|| "ok".to_string(), |_| "failed: writes are refused until restart".to_string()),
        "index": index.map_or_else(|| "ok".to_string(), |_| "failed: indexing stopped, see the log".to_string()),
        "wal_damage": damage,
        // Later stages: a failure holds their WAL position, so ingest
        // slows (429) once they are `max_unindexed_bytes` behind.
        "detect": match state.detection.get() {
            None => "off",
            Some(d) if d.detector.failure().is_some() => "failed: see the log",
            Some(_) => "ok",
        },
        "webhooks": match &state.outbox {
            Some(o) if o.failure().is_some() => "failed: see the log",
            _ => "ok",
        },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
struct IngestParams {
    source: Option<String>,
    format: Option<String>,
}

/// The token was checked by the route's layer; here a slot is taken before
/// the body is read, so an unauthenticated or surplus client cannot make the
/// server buffer a body. Ingest is refused while the indexer has failed, and
/// slowed (429) while it lags the log by more than the limit: the WAL cannot
/// grow until the disk is full.
async fn ingest(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<IngestReport>, ApiError> {
    let source = params.source.as_deref().unwrap_or("http");
    let format = match params.format.as_deref() {
        None => ingest::format::Format::Auto,
        Some(f) => f
            .parse()
            .map_err(|e: ingest::format::UnknownFormat| ApiError::BadRequest(e.to_string()))?,
    };
    principal.check_dataset(source)?;
    let ingestor = state.ingestor.get().ok_or(ApiError::NotReady)?;
    if state.index_health.failure().is_some() {
        return Err(ApiError::IndexFailed);
    }
    let lag = ingestor.wal().unreleased_bytes();
    if lag > state.limits.max_unindexed_bytes {
        return Err(ApiError::IndexBehind { lag });
    }
    let admission = ingestor.admit().await?;
    let body = read_body(request, state.limits.max_body_bytes, state.limits.body_read_timeout).await?;
    let encoding = content_encoding(&headers)?;
    Ok(Json(ingestor.ingest(admission, source, format, encoding, body).await?))
}

/// The one `Content-Encoding` of a request. Several, or one that is not
/// visible ASCII, are refused (415): read as absent, a compressed body would
/// be stored as garbage lines.
fn content_encoding(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => v
            .to_str()
            .map(Some)
            .map_err(|_| ingest::IngestError::UnsupportedEncoding("(not visible ASCII)".into()).into()),
        (Some(_), Some(_)) => {
            Err(ingest::IngestError::UnsupportedEncoding("(several content-encoding headers)".into()).into())
        }
    }
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
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    search(state, params).await
}

async fn search_post(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let body = read_body(request, SMALL_BODY, state.limits.body_read_timeout).await?;
    let params: SearchParams =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("search body: {e}")))?;
    search(state, params).await
}

async fn search(state: AppState, p: SearchParams) -> Result<Response, ApiError> {
    let expr = query::lang::parse(p.query.as_deref().unwrap_or(""))?;
    let result = execute(
        &state,
        expr,
        p.start.as_deref(),
        p.end.as_deref(),
        p.limit,
        p.cursor.as_deref(),
    )
    .await?;
    Ok(Json(result).into_response())
}

/// Runs a search under the search limits (concurrency, time) off the
/// async threads.
async fn execute(
    state: &AppState,
    expr: query::lang::Expr,
    start: Option<&str>,
    end: Option<&str>,
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<query::exec::SearchResponse, ApiError> {
    let now = OffsetDateTime::now_utc();
    let mut spec = query::Search {
        expr,
        start: start.map(|s| query::time::parse_bound(s, now, "start")).transpose()?,
        end: end.map(|s| query::time::parse_bound(s, now, "end")).transpose()?,
        limit: limit.unwrap_or(state.default_limit),
        cursor: cursor
            .filter(|c| !c.is_empty())
            .map(query::Cursor::decode)
            .transpose()?,
        deadline: None,
    };
    if spec.limit > query::MAX_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit {} is over the maximum of {}",
            spec.limit,
            query::MAX_LIMIT
        )));
    }
    let permit = tokio::time::timeout(Duration::from_secs(10), state.search_permits.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::Busy)?
        .map_err(|_| ApiError::Busy)?;
    spec.deadline = Some(Instant::now() + state.limits.search_timeout);
    let store = state.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        // Held until the search ends, even if the client has gone.
        let _permit = permit;
        query::exec::run(&store, &spec)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("search task: {e}")))??;
    Ok(result)
}

async fn list_tokens(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(serde_json::json!({ "tokens": state.tokens.list() })).into_response())
}

/// The file is written on a blocking thread.
async fn create_token(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    request: Request,
) -> Result<Response, ApiError> {
    let body = read_body(request, SMALL_BODY, state.limits.body_read_timeout).await?;
    let req: TokenRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("token body: {e}")))?;
    let tokens = state.tokens.clone();
    let created = tokio::task::spawn_blocking(move || tokens.create(req, OffsetDateTime::now_utc()))
        .await
        .map_err(|e| ApiError::Internal(format!("token task: {e}")))??;
    // The name is checked to be 1 to 64 of A-Z a-z 0-9 . _ - by now.
    tracing::info!(name = %created.info.name, scopes = ?created.info.scopes, by = ?by.name, "created token");
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn revoke_token(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let tokens = state.tokens.clone();
    let revoked = name.clone();
    tokio::task::spawn_blocking(move || tokens.revoke(&revoked))
        .await
        .map_err(|e| ApiError::Internal(format!("token task: {e}")))??;
    // A name from a hand-edited file may hold anything: logged escaped.
    tracing::info!(name = ?name, by = ?by.name, "revoked token");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
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
