//! Alerts: what a rule's matches become, stored as events of the internal
//! dataset [`ALERTS_DATASET`] so they are durable (the WAL) and searchable
//! (the index) like any event.
//!
//! An alert's id is derived from its rule, its group and the first event
//! that opened it, so replaying the same events after a crash produces the
//! same ids; every new version of an alert (a count, a status) is stored
//! with the same `event.id`, and the index keeps the last one.

use std::collections::BTreeMap;

use schemas::Event;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The dataset alerts are stored as.
pub const ALERTS_DATASET: &str = "tripline.alerts";
/// Most event ids an alert keeps.
pub const MAX_EVENT_IDS: usize = 100;

/// Where an analyst has taken an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// New, nobody has looked.
    #[default]
    Open,
    /// Someone is on it; new matches still count on it.
    Acknowledged,
    /// Done; a new match opens a new alert.
    Closed,
}

impl Status {
    /// Reads `open`, `acknowledged` or `closed`.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "open" => Some(Status::Open),
            "acknowledged" => Some(Status::Acknowledged),
            "closed" => Some(Status::Closed),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::Closed => "closed",
        }
    }
}

/// One alert, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Derived from rule, group and first event: the same after a replay.
    pub id: String,
    /// What raised it: `sigma` (a rule or correlation) or `detector`.
    #[serde(default = "sigma")]
    pub source: String,
    /// The rule's (or detector's) id and title.
    pub rule_id: String,
    pub rule_title: String,
    /// The rule's level (`informational` when it has none).
    pub level: String,
    /// The rule's tags (ATT&CK techniques and others).
    pub tags: Vec<String>,
    /// The suppression fields and the values this alert groups on.
    pub group_by: Vec<String>,
    pub group: Vec<Value>,
    /// `field=value` pairs of the group, `,`-joined; empty without grouping.
    pub group_key: String,
    /// Event time of the earliest and latest contributing events.
    #[serde(with = "time::serde::rfc3339")]
    pub first_time: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_time: OffsetDateTime,
    /// Matching events counted on it.
    pub count: u64,
    /// Ids of the first [`MAX_EVENT_IDS`] contributing events.
    pub event_ids: Vec<String>,
    /// The fields the rule tests, with the values of the first event.
    pub matched: BTreeMap<String, Value>,
    pub status: Status,
    /// The last status change: comment, who, when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub updated_at: Option<OffsetDateTime>,
}

fn sigma() -> String {
    SIGMA.into()
}

/// [`Alert::source`] of an alert raised by a Sigma rule or correlation.
pub const SIGMA: &str = "sigma";
/// [`Alert::source`] of an alert raised by a detector.
pub const DETECTOR: &str = "detector";

/// A deterministic alert id: the first 128 bits of SHA-256 over the rule,
/// the group key and the first event's id, written as a UUID.
pub fn alert_id(rule_id: &str, group_key: &str, first_event: &str) -> String {
    let mut h = Sha256::new();
    for part in [rule_id, group_key, first_event] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let d = h.finalize();
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl Alert {
    /// The alert as an event of [`ALERTS_DATASET`]: `@timestamp` is the
    /// first event's time, `event.id` the alert's id (so a new version
    /// replaces the old one in the index), every attribute under `alert.`
    /// and the rule under ECS `rule.`.
    pub fn to_event(&self) -> Event {
        let mut v = json!({
            "@timestamp": schemas::time::format(self.first_time),
            "event": {"id": self.id, "dataset": ALERTS_DATASET, "kind": "alert", "severity": severity(&self.level)},
            "rule": {"id": self.rule_id, "name": self.rule_title},
            "alert": {
                "id": self.id,
                "level": self.level,
                "tags": self.tags,
                "group_by": self.group_by,
                "group": self.group,
                "group_key": self.group_key,
                "first_time": schemas::time::format(self.first_time),
                "last_time": schemas::time::format(self.last_time),
                "count": self.count,
                "event_ids": self.event_ids,
                "matched_fields": self.matched.keys().collect::<Vec<_>>(),
                "matched_values": self.matched.values().collect::<Vec<_>>(),
                "status": self.status.as_str(),
                "source": self.source,
            }
        });
        if let Some(a) = v.get_mut("alert").and_then(Value::as_object_mut) {
            if let Some(c) = &self.comment {
                a.insert("comment".into(), json!(c));
            }
            if let Some(b) = &self.updated_by {
                a.insert("updated_by".into(), json!(b));
            }
            if let Some(t) = self.updated_at {
                a.insert("updated_at".into(), json!(schemas::time::format(t)));
            }
        }
        let mut event = Event::from_json(v).expect("an alert is a JSON object of bounded depth");
        event.set_id_assigned(false);
        event
    }

    /// Reads an alert back from its event (as stored in the WAL or the
    /// index); `None` if the event is not a whole alert.
    pub fn from_event(event: &Event) -> Option<Alert> {
        if event.get_str("event.dataset") != Some(ALERTS_DATASET) {
            return None;
        }
        let s = |k: &str| event.get_str(k).map(str::to_string);
        let list = |k: &str| -> Vec<Value> {
            match event.get(k) {
                Some(Value::Array(a)) => a.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(other) => vec![other.clone()],
            }
        };
        let strings = |k: &str| -> Vec<String> {
            list(k)
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        let time = |k: &str| event.get(k).and_then(schemas::time::parse_value);
        let fields = strings("alert.matched_fields");
        let values = list("alert.matched_values");
        Some(Alert {
            id: s("alert.id")?,
            source: s("alert.source").unwrap_or_else(sigma),
            rule_id: s("rule.id")?,
            rule_title: s("rule.name").unwrap_or_default(),
            level: s("alert.level").unwrap_or_else(|| "informational".into()),
            tags: strings("alert.tags"),
            group_by: strings("alert.group_by"),
            group: list("alert.group"),
            group_key: s("alert.group_key").unwrap_or_default(),
            first_time: time("alert.first_time")?,
            last_time: time("alert.last_time")?,
            count: event.get("alert.count").and_then(Value::as_u64).unwrap_or(1),
            event_ids: strings("alert.event_ids"),
            matched: fields.into_iter().zip(values).collect(),
            status: s("alert.status").and_then(|s| Status::parse(&s)).unwrap_or_default(),
            comment: s("alert.comment"),
            updated_by: s("alert.updated_by"),
            updated_at: time("alert.updated_at"),
        })
    }
}

/// The order of Sigma levels (`informational` 0 to `critical` 4); `None`
/// for anything else.
pub fn level_rank(level: &str) -> Option<u8> {
    Some(match level.to_ascii_lowercase().as_str() {
        "informational" => 0,
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        _ => return None,
    })
}

/// ECS `event.severity` for a Sigma level.
fn severity(level: &str) -> u64 {
    match level {
        "low" => 21,
        "medium" => 47,
        "high" => 73,
        "critical" => 99,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_alert_survives_its_event_and_the_wal_encoding() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let a = Alert {
            id: alert_id("r1", "source.ip=10.0.0.1", "e1"),
            source: DETECTOR.into(),
            rule_id: "r1".into(),
            rule_title: "Rule one".into(),
            level: "high".into(),
            tags: vec!["attack.t1078".into()],
            group_by: vec!["source.ip".into()],
            group: vec![json!("10.0.0.1")],
            group_key: "source.ip=10.0.0.1".into(),
            first_time: t,
            last_time: t + time::Duration::seconds(5),
            count: 3,
            event_ids: vec!["e1".into(), "e2".into(), "e3".into()],
            matched: [("eventName".to_string(), json!("ConsoleLogin"))].into(),
            status: Status::Acknowledged,
            comment: Some("on it".into()),
            updated_by: Some("token:alice".into()),
            updated_at: Some(t),
        };
        let event = a.to_event();
        assert!(
            !event.id_assigned(),
            "the alert id is chosen, so the index replaces older versions"
        );
        assert_eq!(event.get_str("event.id"), Some(a.id.as_str()));
        let batch = wal::Batch::encode(vec![event]);
        let back = wal::Batch::decode(batch.into_payload(), std::path::Path::new("x"), 0);
        assert_eq!(Alert::from_event(&back.events[0]).unwrap(), a);
    }

    #[test]
    fn the_id_depends_on_rule_group_and_first_event_only() {
        assert_eq!(alert_id("r", "g", "e"), alert_id("r", "g", "e"));
        assert_ne!(alert_id("r", "g", "e"), alert_id("r", "g", "f"));
        assert_ne!(alert_id("r", "ge", ""), alert_id("r", "g", "e"));
        assert_eq!(alert_id("r", "g", "e").len(), 36);
    }
}
