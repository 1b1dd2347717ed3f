//! Give every event the fields the rest of Tripline relies on.

use schemas::{fields, tags, time as ts, Event};
use serde_json::Value;

/// Sets `@timestamp` (from the first parsable of
/// [`schemas::time::TIMESTAMP_FIELDS`], else the ingest time with tag
/// `_timestamp_missing`), `event.ingested`, `event.id` (a UUIDv7 when absent)
/// and `event.dataset` (the source the event was shipped as).
pub fn normalize(event: &mut Event, dataset: &str, now_text: &str) {
    let found = ts::TIMESTAMP_FIELDS
        .iter()
        .find_map(|name| event.get(name).and_then(ts::parse_value));
    match found {
        Some(t) => event.insert(fields::TIMESTAMP, ts::format(t)),
        None => {
            if let Some(bad) = event.remove(fields::TIMESTAMP) {
                event.insert("event.original_timestamp", bad);
            }
            event.insert(fields::TIMESTAMP, now_text.to_string());
            event.add_tag(tags::TIMESTAMP_MISSING);
        }
    }
    event.insert(fields::INGESTED, now_text.to_string());
    let id = match event.get(fields::ID) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => None,
        Some(Value::Number(n)) => {
            let id = n.to_string();
            event.insert(fields::ID, id);
            event.set_id_assigned(false);
            None
        }
        _ => Some(uuid::Uuid::now_v7().to_string()),
    };
    match id {
        Some(id) => {
            event.insert(fields::ID, id);
            event.set_id_assigned(true);
        }
        None => event.set_id_assigned(false),
    }
    event.insert(fields::DATASET, dataset.to_string());
}

/// True for a usable source name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_source(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::OffsetDateTime;

    fn norm(v: Value) -> Event {
        let mut e = Event::from_json(v).unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        normalize(&mut e, "api", &ts::format(now));
        e
    }

    #[test]
    fn event_time_is_taken_from_the_first_known_field() {
        let e = norm(json!({"eventTime": "2020-09-14T01:19:40Z", "ts": "garbage"}));
        assert_eq!(e.get_str("@timestamp"), Some("2020-09-14T01:19:40Z"));
        assert_eq!(e.get_str("eventTime"), Some("2020-09-14T01:19:40Z"));
        assert!(!e.has_tag(tags::TIMESTAMP_MISSING));
    }

    #[test]
    fn no_time_means_ingest_time_and_a_tag() {
        let e = norm(json!({"@timestamp": "soon"}));
        assert_eq!(e.get_str("@timestamp"), Some("2027-01-15T08:00:00Z"));
        assert_eq!(e.get_str("event.original_timestamp"), Some("soon"));
        assert!(e.has_tag(tags::TIMESTAMP_MISSING));
    }

    #[test]
    fn ids_are_kept_or_assigned_and_dataset_is_the_source() {
        let e = norm(json!({"event": {"id": "abc", "dataset": "spoofed"}}));
        assert_eq!(e.get_str("event.id"), Some("abc"));
        assert_eq!(e.get_str("event.dataset"), Some("api"));
        assert_eq!(norm(json!({"event.id": 7})).get_str("event.id"), Some("7"));
        let a = norm(json!({}));
        let b = norm(json!({}));
        assert_ne!(a.get_str("event.id"), b.get_str("event.id"));
        assert_eq!(a.get_str("event.ingested"), Some("2027-01-15T08:00:00Z"));
    }

    #[test]
    fn source_names_are_checked() {
        assert!(valid_source("nginx.access-1"));
        assert!(!valid_source(""));
        assert!(!valid_source("a b"));
        assert!(!valid_source(&"a".repeat(65)));
    }
}
