//! Give every event the fields the rest of Tripline relies on.

use std::time::Duration;

use schemas::{fields, tags, time as ts, Event};
use serde_json::Value;
use time::OffsetDateTime;

/// Field that keeps a sent `event.id` Tripline could not use (M11).
pub const ORIGINAL_ID: &str = "event.original_id";

/// Field that keeps a sent event time Tripline did not use.
pub const ORIGINAL_TIMESTAMP: &str = "event.original_timestamp";

/// The event times ingest accepts, relative to the ingest time. An event
/// time outside gets the ingest time instead (tagged
/// `_timestamp_out_of_range`), so day partitions stay within retention and
/// a far-future time cannot hide from every relative search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Oldest accepted age; `None` accepts any past time.
    pub max_age: Option<Duration>,
    /// Furthest accepted time ahead of the clock (as Splunk's
    /// `MAX_DAYS_HENCE`; clocks drift and time zones get mislabelled).
    pub max_future: Duration,
}

impl Default for TimeWindow {
    fn default() -> TimeWindow {
        TimeWindow {
            max_age: Some(Duration::from_secs(30 * 86_400)),
            max_future: Duration::from_secs(2 * 86_400),
        }
    }
}

/// The ingest time of one request and the window its event times must fall in.
#[derive(Debug, Clone)]
pub struct IngestClock {
    now_text: String,
    earliest: Option<OffsetDateTime>,
    latest: Option<OffsetDateTime>,
}

impl IngestClock {
    /// The clock at `now` with `window` around it.
    pub fn new(now: OffsetDateTime, window: TimeWindow) -> IngestClock {
        let earliest = window.max_age.and_then(|age| {
            let age = time::Duration::try_from(age).ok()?;
            now.checked_sub(age)
        });
        let latest = time::Duration::try_from(window.max_future)
            .ok()
            .and_then(|ahead| now.checked_add(ahead));
        IngestClock {
            now_text: ts::format(now),
            earliest,
            latest,
        }
    }

    /// The ingest time as RFC 3339.
    pub fn now_text(&self) -> &str {
        &self.now_text
    }

    fn accepts(&self, t: OffsetDateTime) -> bool {
        self.earliest.is_none_or(|e| t >= e) && self.latest.is_none_or(|l| t <= l)
    }
}

/// Sets `@timestamp` (from the first parsable of
/// [`schemas::time::TIMESTAMP_FIELDS`], else the ingest time with tag
/// `_timestamp_missing`; a time outside the clock's window, or one RFC 3339
/// cannot write, also becomes the ingest time, tagged
/// `_timestamp_out_of_range`), `event.ingested`, `event.id` (a UUIDv7 when
/// absent) and `event.dataset` (the source the event was shipped as).
pub fn normalize(event: &mut Event, dataset: &str, clock: &IngestClock) {
    let found = ts::TIMESTAMP_FIELDS
        .iter()
        .find_map(|name| event.get(name).and_then(|v| Some((*name, ts::parse_value(v)?))));
    let formatted = found.map(|(name, t)| (name, clock.accepts(t).then(|| ts::try_format(t)).flatten()));
    match formatted {
        Some((_, Some(text))) => event.insert(fields::TIMESTAMP, text),
        Some((name, None)) => {
            if let Some(sent) = event.get(name).cloned() {
                event.insert(ORIGINAL_TIMESTAMP, sent);
            }
            event.insert(fields::TIMESTAMP, clock.now_text().to_string());
            event.add_tag(tags::TIMESTAMP_OUT_OF_RANGE);
        }
        None => {
            if let Some(bad) = event.remove(fields::TIMESTAMP) {
                event.insert(ORIGINAL_TIMESTAMP, bad);
            }
            event.insert(fields::TIMESTAMP, clock.now_text().to_string());
            event.add_tag(tags::TIMESTAMP_MISSING);
        }
    }
    event.insert(fields::INGESTED, clock.now_text().to_string());
    let id = match event.get(fields::ID) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => None,
        Some(Value::Number(n)) => {
            let id = n.to_string();
            event.insert(fields::ID, id);
            event.set_id_assigned(false);
            None
        }
        None => Some(uuid::Uuid::now_v7().to_string()),
        Some(_) => {
            // Empty, over 256 bytes, or not a string or number: the id is
            // Tripline's, and what was sent stays visible.
            if let Some(sent) = event.remove(fields::ID) {
                event.insert(ORIGINAL_ID, sent);
            }
            Some(uuid::Uuid::now_v7().to_string())
        }
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

/// Prefix of the datasets Tripline writes itself.
pub const RESERVED_SOURCE_PREFIX: &str = "tripline.";

/// A usable source (dataset) name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
/// Names starting with `tripline.` are Tripline's own datasets (its alerts
/// are `tripline.alerts`): no sender may write into them.
pub fn valid_source(name: &str) -> bool {
    !name.is_empty()
        && !name.to_ascii_lowercase().starts_with(RESERVED_SOURCE_PREFIX)
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000; // 2027-01-15T08:00:00Z

    fn clock() -> IngestClock {
        IngestClock::new(OffsetDateTime::from_unix_timestamp(NOW).unwrap(), TimeWindow::default())
    }

    fn norm(v: Value) -> Event {
        let mut e = Event::from_json(v).unwrap();
        normalize(&mut e, "api", &clock());
        e
    }

    #[test]
    fn event_time_is_taken_from_the_first_known_field() {
        let e = norm(json!({"eventTime": "2027-01-14T01:19:40Z", "ts": "garbage"}));
        assert_eq!(e.get_str("@timestamp"), Some("2027-01-14T01:19:40Z"));
        assert_eq!(e.get_str("eventTime"), Some("2027-01-14T01:19:40Z"));
        assert!(!e.has_tag(tags::TIMESTAMP_MISSING));
        assert!(!e.has_tag(tags::TIMESTAMP_OUT_OF_RANGE));
    }

    #[test]
    fn no_time_means_ingest_time_and_a_tag() {
        let e = norm(json!({"@timestamp": "soon"}));
        assert_eq!(e.get_str("@timestamp"), Some("2027-01-15T08:00:00Z"));
        assert_eq!(e.get_str("event.original_timestamp"), Some("soon"));
        assert!(e.has_tag(tags::TIMESTAMP_MISSING));
    }

    /// H3: these panicked in `format` and the request got 503 "retry".
    #[test]
    fn times_the_calendar_cannot_write_do_not_panic_and_become_the_ingest_time() {
        let cases = [
            (json!({"ts": -99_999_999_999i64}), json!(-99_999_999_999i64)),
            (
                json!({"@timestamp": "9999-12-31T23:59:59-01:00"}),
                json!("9999-12-31T23:59:59-01:00"),
            ),
            (
                json!({"date": "0000-01-01T00:00:00+01:00"}),
                json!("0000-01-01T00:00:00+01:00"),
            ),
        ];
        for (input, sent) in cases {
            let e = norm(input.clone());
            assert_eq!(e.get_str("@timestamp"), Some("2027-01-15T08:00:00Z"), "{input}");
            assert_eq!(e.get("event.original_timestamp"), Some(&sent), "{input}");
            assert!(e.has_tag(tags::TIMESTAMP_OUT_OF_RANGE), "{input}");
        }
    }

    /// H5/M2: far-past and far-future times no longer make partitions that
    /// retention deletes at once or never.
    #[test]
    fn times_outside_the_window_become_the_ingest_time_and_keep_the_original() {
        let inside = [NOW - 29 * 86_400, NOW + 86_400, NOW - 30 * 86_400, NOW + 2 * 86_400];
        for t in inside {
            let e = norm(json!({ "ts": t }));
            assert!(!e.has_tag(tags::TIMESTAMP_OUT_OF_RANGE), "{t}");
            assert_ne!(e.get_str("@timestamp"), Some("2027-01-15T08:00:00Z"), "{t}");
        }
        for t in [42, NOW - 31 * 86_400, NOW + 3 * 86_400, 32_503_680_000] {
            let e = norm(json!({ "time": t }));
            assert!(e.has_tag(tags::TIMESTAMP_OUT_OF_RANGE), "{t}");
            assert_eq!(e.get_str("@timestamp"), Some("2027-01-15T08:00:00Z"), "{t}");
            assert_eq!(e.get("event.original_timestamp"), Some(&json!(t)));
            assert_eq!(e.get("time"), Some(&json!(t)), "the sent field stays as sent");
        }
        let unbounded = IngestClock::new(
            OffsetDateTime::from_unix_timestamp(NOW).unwrap(),
            TimeWindow {
                max_age: None,
                ..TimeWindow::default()
            },
        );
        let mut e = Event::from_json(json!({"ts": 1})).unwrap();
        normalize(&mut e, "api", &unbounded);
        assert_eq!(e.get_str("@timestamp"), Some("1970-01-01T00:00:01Z"));
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

    /// M11: a client id over 256 bytes was silently replaced.
    #[test]
    fn an_id_tripline_cannot_use_is_replaced_but_kept_visible() {
        let long = "k".repeat(300);
        let e = norm(json!({ "event.id": long }));
        assert!(e.id_assigned());
        assert_eq!(e.get_str("event.original_id"), Some(long.as_str()));
        assert_ne!(e.get_str("event.id"), Some(long.as_str()));
        assert_eq!(norm(json!({})).get("event.original_id"), None);
    }

    #[test]
    fn source_names_are_checked() {
        assert!(valid_source("nginx.access-1"));
        assert!(!valid_source(""));
        assert!(!valid_source("a b"));
        assert!(!valid_source(&"a".repeat(65)));
        assert!(!valid_source("tripline.alerts"), "a sender could forge alerts");
        assert!(!valid_source("Tripline.Alerts"));
        assert!(valid_source("triplinex"));
    }
}
