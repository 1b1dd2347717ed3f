//! Request bodies, one per [`Format`]: Tripline's own, Alertmanager's
//! webhook JSON (version 4) and a Slack incoming-webhook message.

use detect::{Alert, Status};
use serde_json::{json, Value};

use crate::webhook::{EventType, Format};

/// What a delivery carries.
#[derive(Debug, Clone)]
pub enum Subject<'a> {
    /// An alert was created or changed.
    Alert(&'a Alert),
    /// A test from the API.
    Test,
}

/// The body for `webhook_id` in `format`, at `now` (RFC 3339). `base_url`
/// is where Tripline's API answers, for links back to the alert.
pub fn render(
    format: Format,
    kind: EventType,
    subject: &Subject,
    webhook_id: &str,
    now: &str,
    base_url: &str,
) -> Vec<u8> {
    let value = match format {
        Format::Tripline => tripline(kind, subject, now),
        Format::Alertmanager => alertmanager(subject, webhook_id, base_url),
        Format::Slack => slack(kind, subject, base_url),
    };
    serde_json::to_vec(&value).expect("a JSON value serializes")
}

fn tripline(kind: EventType, subject: &Subject, now: &str) -> Value {
    let data = match subject {
        Subject::Alert(a) => serde_json::to_value(a).expect("an alert serializes"),
        Subject::Test => json!({"message": "a test from Tripline: this webhook receives signed deliveries"}),
    };
    json!({"type": kind.as_str(), "timestamp": now, "data": data})
}

/// The alert's link in the API.
fn link(base_url: &str, id: &str) -> String {
    format!("{}/api/v1/alerts/{id}", base_url.trim_end_matches('/'))
}

fn alertmanager(subject: &Subject, webhook_id: &str, base_url: &str) -> Value {
    let (status, labels, annotations, starts, ends, url, fingerprint) = match subject {
        Subject::Alert(a) => {
            let mut labels = serde_json::Map::new();
            labels.insert("alertname".into(), json!(a.rule_title));
            labels.insert("severity".into(), json!(a.level));
            labels.insert("rule_id".into(), json!(a.rule_id));
            labels.insert("alert_id".into(), json!(a.id));
            for (k, v) in a.group_by.iter().zip(&a.group) {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                labels.insert(label_name(k), json!(text));
            }
            let resolved = a.status == Status::Closed;
            let annotations = json!({
                "summary": format!("{} ({} matching events)", a.rule_title, a.count),
                "description": format!("{} level {} alert{}", a.rule_title, a.level,
                    if a.group_key.is_empty() { String::new() } else { format!(" for {}", a.group_key) }),
                "tags": a.tags.join(","),
                "status": a.status.as_str(),
            });
            let ends = match (resolved, a.updated_at) {
                (true, Some(t)) => schemas::time::format(t),
                _ => "0001-01-01T00:00:00Z".to_string(),
            };
            (
                if resolved { "resolved" } else { "firing" },
                Value::Object(labels),
                annotations,
                schemas::time::format(a.first_time),
                ends,
                link(base_url, &a.id),
                a.id.chars().filter(|c| *c != '-').take(16).collect(),
            )
        }
        Subject::Test => (
            "firing",
            json!({"alertname": "TriplineWebhookTest", "severity": "informational"}),
            json!({"summary": "a test from Tripline"}),
            schemas::time::format(time::OffsetDateTime::now_utc()),
            "0001-01-01T00:00:00Z".to_string(),
            format!("{}/api/v1/webhooks/{webhook_id}", base_url.trim_end_matches('/')),
            "0000000000000000".to_string(),
        ),
    };
    let alertname = labels.get("alertname").cloned().unwrap_or(Value::Null);
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", alertname.as_str().unwrap_or_default()),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": webhook_id,
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": base_url,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": starts,
            "endsAt": ends,
            "generatorURL": url,
            "fingerprint": fingerprint,
        }],
    })
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn label_name(field: &str) -> String {
    let mut out: String = field
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// Slack's mrkdwn escapes `&`, `<` and `>` and nothing else.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn slack(kind: EventType, subject: &Subject, base_url: &str) -> Value {
    let text = match subject {
        Subject::Test => "Tripline webhook test: deliveries to this channel work.".to_string(),
        Subject::Alert(a) => {
            let what = match kind {
                EventType::Updated => format!("alert {}", a.status.as_str()),
                _ => "new alert".to_string(),
            };
            let mut t = format!(
                "*[{}] {}* ({what})\n{} matching events, first {}",
                escape(&a.level.to_uppercase()),
                escape(&a.rule_title),
                a.count,
                schemas::time::format(a.first_time),
            );
            if !a.group_key.is_empty() {
                t.push_str(&format!("\ngroup: `{}`", escape(&a.group_key)));
            }
            if !a.tags.is_empty() {
                t.push_str(&format!("\ntags: {}", escape(&a.tags.join(", "))));
            }
            if let Some(c) = &a.comment {
                t.push_str(&format!("\ncomment: {}", escape(c)));
            }
            t.push_str(&format!("\n<{}|open in Tripline>", escape(&link(base_url, &a.id))));
            t
        }
    };
    json!({
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(status: Status) -> Alert {
        Alert {
            id: "0123abcd-0000-0000-0000-000000000000".into(),
            source: detect::alert::SIGMA.into(),
            rule_id: "r-1".into(),
            rule_title: "Root <login> & more".into(),
            level: "high".into(),
            tags: vec!["attack.t1078".into()],
            group_by: vec!["source.ip".into(), "http.response.status_code".into()],
            group: vec![json!("10.0.0.1"), json!(403)],
            group_key: "source.ip=10.0.0.1,http.response.status_code=403".into(),
            first_time: time::OffsetDateTime::UNIX_EPOCH,
            last_time: time::OffsetDateTime::UNIX_EPOCH,
            count: 2,
            event_ids: vec![],
            matched: Default::default(),
            status,
            comment: Some("done".into()),
            updated_by: Some("analyst".into()),
            updated_at: Some(time::OffsetDateTime::UNIX_EPOCH + time::Duration::hours(1)),
        }
    }

    fn body(format: Format, kind: EventType, a: &Alert) -> Value {
        let bytes = render(
            format,
            kind,
            &Subject::Alert(a),
            "hook",
            "2026-12-02T00:00:00Z",
            "http://t:7490/",
        );
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[test]
    fn alertmanager_bodies_have_string_labels_and_resolve_when_closed() {
        let open = body(Format::Alertmanager, EventType::Created, &alert(Status::Open));
        assert_eq!(open["version"], "4");
        assert_eq!(open["status"], "firing");
        let a = &open["alerts"][0];
        assert_eq!(a["labels"]["http_response_status_code"], "403");
        assert_eq!(a["labels"]["source_ip"], "10.0.0.1");
        assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(
            a["generatorURL"],
            "http://t:7490/api/v1/alerts/0123abcd-0000-0000-0000-000000000000"
        );
        assert_eq!(a["fingerprint"], "0123abcd00000000");
        let closed = body(Format::Alertmanager, EventType::Updated, &alert(Status::Closed));
        assert_eq!(closed["status"], "resolved");
        assert_eq!(closed["alerts"][0]["endsAt"], "1970-01-01T01:00:00Z");
    }

    #[test]
    fn slack_text_escapes_what_mrkdwn_reads() {
        let b = body(Format::Slack, EventType::Updated, &alert(Status::Acknowledged));
        let text = b["text"].as_str().expect("text");
        assert!(text.contains("Root &lt;login&gt; &amp; more"), "{text}");
        assert!(text.contains("alert acknowledged"), "{text}");
        assert_eq!(b["blocks"][0]["text"]["type"], "mrkdwn");
    }

    #[test]
    fn tripline_bodies_carry_the_type_and_the_alert() {
        let b = body(Format::Tripline, EventType::Created, &alert(Status::Open));
        assert_eq!(b["type"], "alert.created");
        assert_eq!(b["data"]["rule_id"], "r-1");
    }
}
