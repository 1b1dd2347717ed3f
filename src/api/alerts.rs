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
