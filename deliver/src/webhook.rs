//! A webhook: where alerts go, which ones, in what shape.

use std::collections::BTreeMap;

use detect::alert::level_rank;
use detect::Alert;
use schemas::{Catalog, Event};
use serde::{Deserialize, Serialize};

use crate::sign::Secret;
use crate::DeliverError;

/// Longest webhook id.
const MAX_ID_LEN: usize = 64;
/// Most extra headers.
const MAX_HEADERS: usize = 32;
/// Most in-flight deliveries one webhook may have.
pub const MAX_IN_FLIGHT: u32 = 64;

/// What happened to an alert, as the webhook `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum EventType {
    /// A new alert.
    #[serde(rename = "alert.created")]
    Created,
    /// An alert's status changed (acknowledged, closed).
    #[serde(rename = "alert.updated")]
    Updated,
    /// `POST /api/v1/webhooks/{id}/test`.
    #[serde(rename = "webhook.test")]
    Test,
}

impl EventType {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "alert.created",
            EventType::Updated => "alert.updated",
            EventType::Test => "webhook.test",
        }
    }
}

/// The body's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{type, timestamp, data: alert}`, as Standard Webhooks suggests.
    #[default]
    Tripline,
    /// Alertmanager's webhook receiver JSON, version 4.
    Alertmanager,
    /// A Slack incoming-webhook message.
    Slack,
}

/// A webhook as configured (`[[webhooks]]`) or sent to the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Letters, digits, `-` and `_`.
    pub id: String,
    /// `https://`; `http://` only with `allow_http`.
    pub url: String,
    #[serde(default)]
    pub allow_http: bool,
    /// `whsec_` and base64; generated when absent. Never serialized back.
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
    /// The secret being rotated out: signed with too while it is set.
    #[serde(default, skip_serializing)]
    pub previous_secret: Option<String>,
    #[serde(default)]
    pub format: Format,
    /// Which changes are sent; default `["alert.created"]`.
    #[serde(default = "default_events")]
    pub events: Vec<EventType>,
    /// Alerts at this level or above (`informational`, `low`, `medium`,
    /// `high`, `critical`).
    #[serde(default)]
    pub min_level: Option<String>,
    /// Only alerts of these rule (or detector) ids or titles.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Only alerts with one of these tags (`attack.t1078`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// A query over the alert event, in the search syntax
    /// (`alert.group_key:*user.name=root*`).
    #[serde(default)]
    pub query: Option<String>,
    /// Sent with every request (an API key the receiver wants). Their
    /// values are never shown back.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Deliveries in flight at once to this receiver.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: u32,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_events() -> Vec<EventType> {
    vec![EventType::Created]
}
fn default_timeout() -> u64 {
    10
}
fn default_in_flight() -> u32 {
    4
}
fn default_true() -> bool {
    true
}

/// Where a webhook was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `tripline.toml`: changed by editing the file.
    Config,
    /// The API.
    Api,
}

/// A webhook as the outbox keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub spec: WebhookSpec,
    pub source: Source,
    /// The signing secret, `whsec_...` (the stored spec has none).
    pub secret: String,
    /// A rotated-out secret and until when (unix ms) it still signs.
    #[serde(default)]
    pub previous: Option<(String, i64)>,
    /// Why deliveries stopped (a 410 from the receiver), and when.
    #[serde(default)]
    pub disabled: Option<Disabled>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A webhook turned off by its receiver.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Disabled {
    pub reason: String,
    pub at_ms: i64,
    /// The URL it was disabled for: a new URL in the file enables it again.
    pub url: String,
}

/// The webhook as the API shows it: no secret, header values hidden.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    #[serde(flatten)]
    pub spec: WebhookSpec,
    pub source: Source,
    pub rotating: bool,
    pub disabled: Option<Disabled>,
    pub created_at: String,
    pub updated_at: String,
}

impl Stored {
    /// What the API shows.
    pub fn view(&self) -> View {
        let mut spec = self.spec.clone();
        for v in spec.headers.values_mut() {
            *v = "(hidden)".into();
        }
        let ms = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000)
                .map(schemas::time::format)
                .unwrap_or_default()
        };
        View {
            spec,
            source: self.source,
            rotating: self.previous.is_some(),
            disabled: self.disabled.clone(),
            created_at: ms(self.created_ms),
            updated_at: ms(self.updated_ms),
        }
    }

    /// The secrets that sign at `now_ms`: the current one, then one still
    /// in its rotation overlap.
    pub fn secrets(&self, now_ms: i64) -> Result<Vec<Secret>, DeliverError> {
        let mut out = vec![Secret::parse(&self.secret)?];
        if let Some((prev, until)) = &self.previous {
            if now_ms < *until {
                out.push(Secret::parse(prev)?);
            }
        }
        Ok(out)
    }

    /// True while deliveries go out.
    pub fn active(&self) -> bool {
        self.spec.enabled && self.disabled.is_none()
    }
}

impl WebhookSpec {
    /// Checks everything that can be checked without the network, and
    /// compiles the filter.
    pub fn validate(&self, catalog: &Catalog) -> Result<Selector, DeliverError> {
        let bad = |why: String| DeliverError::BadWebhook(format!("webhook {:?}: {why}", self.id));
        if self.id.is_empty()
            || self.id.len() > MAX_ID_LEN
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad(format!(
                "the id must be 1 to {MAX_ID_LEN} letters, digits, '-' or '_'"
            )));
        }
        let url = url::Url::parse(&self.url).map_err(|e| bad(format!("url: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(bad(
                    "url: https is required (set allow_http = true to send in clear)".into()
                ))
            }
            other => return Err(bad(format!("url: scheme {other} is not http or https"))),
        }
        if url.host().is_none() {
            return Err(bad("url: no host".into()));
        }
        for s in [&self.secret, &self.previous_secret].into_iter().flatten() {
            Secret::parse(s).map_err(|e| bad(e.to_string()))?;
        }
        if self.events.is_empty() {
            return Err(bad("events: name at least one of alert.created, alert.updated".into()));
        }
        if self.events.contains(&EventType::Test) {
            return Err(bad("events: webhook.test is sent by the test endpoint only".into()));
        }
        if self.timeout_secs == 0 || self.timeout_secs > 300 {
            return Err(bad("timeout_secs must be 1 to 300".into()));
        }
        if self.max_in_flight == 0 || self.max_in_flight > MAX_IN_FLIGHT {
            return Err(bad(format!("max_in_flight must be 1 to {MAX_IN_FLIGHT}")));
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(bad(format!("at most {MAX_HEADERS} headers")));
        }
        for (k, v) in &self.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| bad(format!("header {k:?} is not a valid name")))?;
            if name.as_str().starts_with("webhook-")
                || [
                    reqwest::header::CONTENT_TYPE,
                    reqwest::header::HOST,
                    reqwest::header::CONTENT_LENGTH,
                ]
                .contains(&name)
            {
                return Err(bad(format!("header {k} is set by Tripline")));
            }
            reqwest::header::HeaderValue::from_str(v).map_err(|_| bad(format!("header {k}: invalid value")))?;
        }
        let min_level = match &self.min_level {
            None => None,
            Some(l) => Some(level_rank(l).ok_or_else(|| {
                bad(format!(
                    "min_level {l:?} is not informational, low, medium, high or critical"
                ))
            })?),
        };
        let query = match &self.query {
            None => None,
            Some(q) => {
                let expr = query::lang::parse(q).map_err(|e| bad(format!("query: {e}")))?;
                Some(query::filter::Filter::new(&expr, catalog).map_err(|e| bad(format!("query: {e}")))?)
            }
        };
        Ok(Selector {
            events: self.events.clone(),
            min_level,
            rules: self.rules.iter().map(|r| r.to_lowercase()).collect(),
            tags: self.tags.iter().map(|t| t.to_lowercase()).collect(),
            query,
        })
    }
}

/// A webhook's filter, compiled.
#[derive(Debug, Clone)]
pub struct Selector {
    events: Vec<EventType>,
    min_level: Option<u8>,
    rules: Vec<String>,
    tags: Vec<String>,
    query: Option<query::filter::Filter>,
}

impl Selector {
    /// True if this change of `alert` (stored as `event`) is sent.
    pub fn wants(&self, kind: EventType, alert: &Alert, event: &Event) -> bool {
        if !self.events.contains(&kind) {
            return false;
        }
        if let Some(min) = self.min_level {
            if level_rank(&alert.level).unwrap_or(0) < min {
                return false;
            }
        }
        if !self.rules.is_empty()
            && !self
                .rules
                .iter()
                .any(|r| *r == alert.rule_id.to_lowercase() || *r == alert.rule_title.to_lowercase())
        {
            return false;
        }
        if !self.tags.is_empty() && !alert.tags.iter().any(|t| self.tags.contains(&t.to_lowercase())) {
            return false;
        }
        self.query.as_ref().is_none_or(|q| q.matches(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> Result<WebhookSpec, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn webhook_definitions_are_checked_before_anything_is_sent() {
        let catalog = Catalog::builtin();
        let cases = [
            (json!({"id": "ok", "url": "https://h.example/x"}), None),
            (
                json!({"id": "ok", "url": "http://h.example/x", "allow_http": true}),
                None,
            ),
            (
                json!({"id": "ok", "url": "http://h.example/x"}),
                Some("https is required"),
            ),
            (
                json!({"id": "bad id", "url": "https://h.example/x"}),
                Some("the id must be"),
            ),
            (json!({"id": "ok", "url": "ftp://h.example/x"}), Some("scheme ftp")),
            (
                json!({"id": "ok", "url": "https://h.example/x", "secret": "nope"}),
                Some("whsec_"),
            ),
            (
                json!({"id": "ok", "url": "https://h.example/x", "min_level": "severe"}),
                Some("min_level"),
            ),
            (
                json!({"id": "ok", "url": "https://h.example/x", "events": []}),
                Some("events"),
            ),
            (
                json!({"id": "ok", "url": "https://h.example/x", "events": ["webhook.test"]}),
                Some("test endpoint"),
            ),
            (
                json!({"id": "ok", "url": "https://h.example/x", "query": "a:("}),
                Some("query"),
            ),
            (
                json!({"id": "ok", "url": "https://h.example/x", "headers": {"webhook-id": "x"}}),
                Some("set by Tripline"),
            ),
            (
                json!({"id": "ok", "url": "https://h.example/x", "headers": {"bad header": "x"}}),
                Some("not a valid name"),
            ),
            (
                json!({"id": "ok", "url": "https://h.example/x", "timeout_secs": 0}),
                Some("timeout_secs"),
            ),
            (
                json!({"id": "ok", "url": "https://h.example/x", "max_in_flight": 1000}),
                Some("max_in_flight"),
            ),
        ];
        for (v, want) in cases {
            let s = spec(v.clone()).expect("parses");
            match (s.validate(&catalog), want) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => assert!(e.to_string().contains(w), "{v}: {e}"),
                (got, want) => panic!("{v}: got {:?}, want {want:?}", got.map(|_| ())),
            }
        }
        assert!(spec(json!({"id": "ok", "url": "https://h.example/x", "colour": "red"})).is_err());
    }

    #[test]
    fn a_selector_takes_level_rules_tags_and_query_together() {
        let alert = |level: &str, tags: &[&str]| Alert {
            id: "a".into(),
            source: detect::alert::SIGMA.into(),
            rule_id: "r-1".into(),
            rule_title: "Root login".into(),
            level: level.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            group_by: vec!["user.name".into()],
            group: vec![json!("root")],
            group_key: "user.name=root".into(),
            first_time: time::OffsetDateTime::UNIX_EPOCH,
            last_time: time::OffsetDateTime::UNIX_EPOCH,
            count: 1,
            event_ids: vec![],
            matched: Default::default(),
            status: detect::Status::Open,
            comment: None,
            updated_by: None,
            updated_at: None,
        };
        let s: WebhookSpec = spec(json!({"id": "w", "url": "https://h.example/", "min_level": "high",
            "rules": ["Root Login"], "tags": ["attack.T1078"], "query": "alert.group_key:*root"}))
        .expect("parses");
        let sel = s.validate(&Catalog::builtin()).expect("valid");
        let wants = |a: &Alert, kind| sel.wants(kind, a, &a.to_event());
        assert!(wants(&alert("critical", &["attack.t1078"]), EventType::Created));
        assert!(!wants(&alert("critical", &["attack.t1078"]), EventType::Updated));
        assert!(!wants(&alert("medium", &["attack.t1078"]), EventType::Created));
        assert!(!wants(&alert("high", &["attack.t1110"]), EventType::Created));
        let mut other = alert("high", &["attack.t1078"]);
        other.group_key = "user.name=alice".into();
        assert!(!wants(&other, EventType::Created));
    }
}
