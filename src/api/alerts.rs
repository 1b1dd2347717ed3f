//! Alerts and rules: thin handlers over the index (alerts are events of
//! `tripline.alerts`) and the detection stage.

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use detect::{Alert, DetectError, Status, StatusChange, ALERTS_DATASET};
use query::lang::{Expr, Value as QValue};
use serde::Deserialize;
use serde_json::json;

use super::{detection, execute, read_body, ApiError, AppState, SMALL_BODY};
use crate::auth::Principal;

/// Longest comment kept on a status change.
const MAX_COMMENT_CHARS: usize = 4096;

fn is(field: &str, value: &str) -> Expr {
    Expr::Clause {
        field: Some(field.to_string()),
        value: QValue::Phrase(value.to_string()),
    }
}

fn alerts_only() -> Expr {
    is("event.dataset", ALERTS_DATASET)
}

/// `GET /api/v1/alerts` parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertParams {
    start: Option<String>,
    end: Option<String>,
    rule: Option<String>,
    status: Option<String>,
    level: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// Alerts newest first (by their first event's time), filtered, paged
/// with the search's cursor.
pub(super) async fn list(
    State(state): State<AppState>,
    params: Result<Query<AlertParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut all = vec![alerts_only()];
    if let Some(r) = &p.rule {
        all.push(Expr::Or(vec![is("rule.id", r), is("rule.name", r)]));
    }
    if let Some(s) = &p.status {
        let s = Status::parse(s)
            .ok_or_else(|| ApiError::BadRequest(format!("status {s:?}: use open, acknowledged or closed")))?;
        all.push(is("alert.status", s.as_str()));
    }
    if let Some(l) = &p.level {
        all.push(is("alert.level", l));
    }
    let page = execute(
        &state,
        Expr::And(all),
        p.start.as_deref(),
        p.end.as_deref(),
        p.limit,
        p.cursor.as_deref(),
    )
    .await?;
    let alerts: Vec<Alert> = page.hits.iter().filter_map(alert_of).collect();
    Ok(Json(json!({"total": page.total, "alerts": alerts, "next_cursor": page.next_cursor})).into_response())
}

fn alert_of(hit: &serde_json::Value) -> Option<Alert> {
    Alert::from_event(&schemas::Event::from_json(hit.clone()).ok()?)
}

fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::Detect(DetectError::NotFound { id: id.to_string() }))
    }
}

/// The stored alert with this id, if the index has it.
async fn stored(state: &AppState, id: &str) -> Result<Option<Alert>, ApiError> {
    let page = execute(
        state,
        Expr::And(vec![alerts_only(), is("event.id", id)]),
        None,
        None,
        Some(1),
        None,
    )
    .await?;
    Ok(page.hits.first().and_then(alert_of))
}

/// One alert with the events it keeps the ids of.
pub(super) async fn get_one(
    State(state): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    check_id(&id)?;
    let alert = stored(&state, &id)
        .await?
        .ok_or_else(|| ApiError::Detect(DetectError::NotFound { id: id.clone() }))?;
    let events = if alert.event_ids.is_empty() {
        Vec::new()
    } else {
        let ids = alert.event_ids.iter().map(|e| is("event.id", e)).collect();
        let expr = Expr::And(vec![Expr::Or(ids), Expr::Not(Box::new(alerts_only()))]);
        execute(&state, expr, None, None, Some(detect::alert::MAX_EVENT_IDS), None)
            .await?
            .hits
    };
    Ok(Json(json!({"alert": alert, "events": events})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
    #[serde(default)]
    comment: Option<String>,
}

/// Sets an alert's status, with a comment and the token's name as who.
pub(super) async fn set_status(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    check_id(&id)?;
    let body = read_body(request, SMALL_BODY, state.limits.body_read_timeout).await?;
    let b: StatusBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("alert status body: {e}")))?;
    let status = Status::parse(&b.status)
        .ok_or_else(|| ApiError::BadRequest(format!("status {:?}: use open, acknowledged or closed", b.status)))?;
    if b.comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
    {
        return Err(ApiError::BadRequest(format!(
            "comment is over {MAX_COMMENT_CHARS} characters"
        )));
    }
    let detection = detection(&state)?;
    let stored = stored(&state, &id).await?;
    let change = StatusChange {
        status,
        comment: b.comment,
        by: by.name.clone(),
    };
    let alert = tokio::task::spawn_blocking(move || detection.detector.set_status(&id, change, stored))
        .await
        .map_err(|e| ApiError::Internal(format!("alert status task: {e}")))??;
    tracing::info!(alert = %alert.id, status = alert.status.as_str(), by = ?by.name, "alert status set");
    Ok(Json(alert).into_response())
}

/// Every rule: loaded (with its match count) or refused (with the reason).
/// The detectors: kind, `learning` or `active`, keys held (as of the
/// stage's last checkpoint, at most `detect.checkpoint_interval_ms` old).
pub(super) async fn detectors(State(state): State<AppState>) -> Result<Response, ApiError> {
    let detection = detection(&state)?;
    let list = tokio::task::spawn_blocking(move || detection.detector.detectors())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(json!({"detectors": list})).into_response())
}

/// `GET /api/v1/detectors/{id}/baseline?key=service.name=web`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BaselineParams {
    key: String,
}

/// The learned baseline of one key of a `rate_spike` detector: why it
/// fired, or why it did not.
pub(super) async fn baseline(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<BaselineParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let detection = detection(&state)?;
    let key = p.key.clone();
    let detector = id.clone();
    let found = tokio::task::spawn_blocking(move || detection.detector.baseline(&detector, &key))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    match found {
        Some(r) => Ok(Json(json!({
            "key": p.key,
            "buckets_seen": r.buckets,
            "mean": r.mean,
            "deviation": r.var.max(0.0).sqrt(),
            "current_bucket_start": schemas::time::format(
                time::OffsetDateTime::from_unix_timestamp_nanos(r.bucket).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            ),
            "current_count": r.count,
            "current_errors": r.errors,
            "fired_in_current_bucket": r.fired,
        }))
        .into_response()),
        None => Err(DetectError::NoBaseline {
            detector: id,
            key: p.key,
        }
        .into()),
    }
}

pub(super) async fn rules(State(state): State<AppState>) -> Result<Response, ApiError> {
    let detection = detection(&state)?;
    let rules = detection.detector.rules();
    let mut out = Vec::new();
    for (i, r) in rules.set.rules().iter().enumerate() {
        out.push(json!({
            "id": r.id,
            "title": r.title,
            "level": r.level,
            "status": r.status,
            "tags": r.tags,
            "logsource": {"category": r.logsource.category, "product": r.logsource.product, "service": r.logsource.service},
            "logsource_mapped": r.mapped,
            "state": "loaded",
            "matches": rules.match_count(i),
        }));
    }
    for (i, c) in rules.set.correlations().iter().enumerate() {
        out.push(json!({
            "id": c.id,
            "title": c.title,
            "level": c.level,
            "status": c.status,
            "tags": c.tags,
            "correlation": format!("{:?}", c.kind),
            "rules": c.rules,
            "state": "loaded",
            "matches": rules.correlation_count(i),
        }));
    }
    for e in &rules.refused {
        out.push(match e {
            DetectError::Refused { file, rule, reason } => {
                json!({"id": rule, "file": file, "state": "refused", "reason": reason})
            }
            other => json!({"state": "refused", "reason": other.to_string()}),
        });
    }
    Ok(Json(json!({
        "dir": rules.dir,
        "loaded": rules.set.rules().len() + rules.set.correlations().len(),
        "refused": rules.refused.len(),
        "rules": out,
    }))
    .into_response())
}

/// Loads the rules directory again.
pub(super) async fn reload(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
) -> Result<Response, ApiError> {
    let detection = detection(&state)?;
    let report = tokio::task::spawn_blocking(move || detection.reload())
        .await
        .map_err(|e| ApiError::Internal(format!("rules reload task: {e}")))?;
    tracing::info!(loaded = report.loaded, refused = report.refused, by = ?by.name, "rules reloaded");
    Ok((StatusCode::OK, Json(report)).into_response())
}

/// A hunt's parameters; `rule` (a rule file's YAML) only for `/api/v1/hunt`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HuntBody {
    #[serde(default)]
    rule: Option<String>,
    start: Option<String>,
    end: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// Runs a loaded rule (by id or name) over indexed history.
pub(super) async fn hunt_loaded(
    State(state): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let body = read_body(request, SMALL_BODY, state.limits.body_read_timeout).await?;
    let b: HuntBody = if body.is_empty() {
        HuntBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("hunt body: {e}")))?
    };
    if b.rule.is_some() {
        return Err(ApiError::BadRequest("rule is for POST /api/v1/hunt".into()));
    }
    let rules = detection(&state)?.detector.rules();
    let target = crate::hunt::find(&rules.set, &id).ok_or(ApiError::Detect(DetectError::NotFound { id }))?;
    run_hunt(&state, rules, target, b).await
}

/// Runs the rule file in the body (not loaded) over indexed history.
pub(super) async fn hunt_file(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let body = read_body(request, SMALL_BODY, state.limits.body_read_timeout).await?;
    let b: HuntBody = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("hunt body: {e}")))?;
    let text = b
        .rule
        .clone()
        .ok_or_else(|| ApiError::BadRequest("hunt body needs rule (a rule file's YAML)".into()))?;
    let placeholders = state
        .detection
        .get()
        .map(|d| d.placeholders().clone())
        .unwrap_or_default();
    // Parsing and compiling (regexes, the automaton) is CPU work: off the
    // async threads.
    let compiled = tokio::task::spawn_blocking(move || {
        let (mut rules, mut correlations, mut filters) = (Vec::new(), Vec::new(), Vec::new());
        for doc in detect::rule::parse_file_with(&text, "request", &placeholders) {
            match doc? {
                detect::rule::Document::Rule(r) => rules.push(*r),
                detect::rule::Document::Correlation(c) => correlations.push(("request".to_string(), *c)),
                detect::rule::Document::Filter(f) => filters.push(*f),
            }
        }
        Ok::<_, DetectError>(detect::rule::RuleSet::build(rules, correlations, filters))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("hunt compile task: {e}")))?;
    let (set, refused) = compiled?;
    if let Some(e) = refused.into_iter().next() {
        return Err(e.into());
    }
    let target = crate::hunt::top(&set).ok_or_else(|| {
        ApiError::BadRequest("the file must hold one rule, or correlations with one that no other refers to".into())
    })?;
    run_hunt(
        &state,
        std::sync::Arc::new(detect::Rules::new(set, Vec::new(), None)),
        target,
        b,
    )
    .await
}

async fn run_hunt(
    state: &AppState,
    rules: std::sync::Arc<detect::Rules>,
    target: crate::hunt::Target,
    b: HuntBody,
) -> Result<Response, ApiError> {
    let now = time::OffsetDateTime::now_utc();
    let start = b
        .start
        .as_deref()
        .map(|s| query::time::parse_bound(s, now, "start"))
        .transpose()?;
    let end = b
        .end
        .as_deref()
        .map(|s| query::time::parse_bound(s, now, "end"))
        .transpose()?;
    let cursor = b
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(query::Cursor::decode)
        .transpose()?;
    let limit = b.limit.unwrap_or(state.default_limit).clamp(1, query::MAX_LIMIT);
    let permit = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        state.search_permits.clone().acquire_owned(),
    )
    .await
    .map_err(|_| ApiError::Busy)?
    .map_err(|_| ApiError::Busy)?;
    let deadline = std::time::Instant::now() + state.limits.search_timeout;
    let store = state.store.clone();
    let hunt = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        crate::hunt::run(&store, &rules.set, target, start, end, limit, cursor, deadline)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("hunt task: {e}")))??;
    Ok(Json(hunt).into_response())
}
