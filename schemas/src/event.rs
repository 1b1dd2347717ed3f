//! One event: a flat JSON object keyed by dotted field names.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{fields, SchemaError};

/// Deepest JSON nesting accepted at ingest; deeper input is stored raw.
pub const DEPTH_LIMIT: usize = 64;

/// An event, flattened: nested objects become dotted keys
/// (`{"source":{"ip":"1.2.3.4"}}` is `{"source.ip":"1.2.3.4"}`).
/// Arrays are kept as values (an array of objects stays one value).
///
/// Serialized, an event is just its map; whether Tripline assigned its
/// `event.id` ([`Event::id_assigned`]) is kept apart by whoever needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    fields: Map<String, Value>,
    id_assigned: bool,
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Event, D::Error> {
        Ok(Event {
            fields: Map::deserialize(deserializer)?,
            id_assigned: false,
        })
    }
}

impl Event {
    /// An empty event.
    pub fn new() -> Event {
        Event::default()
    }

    /// Flattens a JSON object into an event.
    pub fn from_json(value: Value) -> Result<Event, SchemaError> {
        match value {
            Value::Object(map) => {
                let mut event = Event::new();
                flatten_into(&mut event.fields, String::new(), map);
                Ok(event)
            }
            other => Err(SchemaError::NotAnObject {
                found: json_kind(&other),
            }),
        }
    }

    /// True when `event.id` was assigned by Tripline (unique by
    /// construction), false when the sender chose it (and may resend it).
    pub fn id_assigned(&self) -> bool {
        self.id_assigned
    }

    /// Records who chose `event.id`.
    pub fn set_id_assigned(&mut self, assigned: bool) {
        self.id_assigned = assigned;
    }

    /// The value of a dotted field.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// A string field's value.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// Sets a field, replacing any value it had.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        self.fields.insert(name.into(), value.into());
    }

    /// Removes a field.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.fields.remove(name)
    }

    /// Adds `tag` to `tags` (turning a lone string into an array) unless present.
    pub fn add_tag(&mut self, tag: &str) {
        let entry = self
            .fields
            .entry(fields::TAGS)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::String(s) = entry {
            *entry = Value::Array(vec![Value::String(std::mem::take(s))]);
        }
        if let Value::Array(items) = entry {
            if !items.iter().any(|v| v.as_str() == Some(tag)) {
                items.push(Value::String(tag.to_string()));
            }
        } else {
            // `tags` held a number or an object: keep it visible, add ours.
            let old = std::mem::take(entry);
            *entry = Value::Array(vec![old, Value::String(tag.to_string())]);
        }
    }

    /// True when `tags` contains `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        match self.fields.get(fields::TAGS) {
            Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(tag)),
            Some(Value::String(s)) => s == tag,
            _ => false,
        }
    }

    /// Iterates over `(dotted name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.fields.iter()
    }

    /// Number of top-level (dotted) fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the event has no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The flat map.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.fields
    }
}

fn flatten_into(out: &mut Map<String, Value>, prefix: String, map: Map<String, Value>) {
    for (key, value) in map {
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten_into(out, name, inner),
            other => {
                out.insert(name, other);
            }
        }
    }
}

/// What kind of JSON value `v` is ("a number", "an array"), for messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_and_dotted_keys_flatten_to_the_same_event() {
        let a = Event::from_json(json!({"source": {"ip": "1.2.3.4", "port": 22}})).unwrap();
        let b = Event::from_json(json!({"source.ip": "1.2.3.4", "source.port": 22})).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn arrays_of_objects_stay_one_value() {
        let e = Event::from_json(json!({"resources": [{"ARN": "x"}], "a": {}})).unwrap();
        assert_eq!(e.get("resources"), Some(&json!([{"ARN": "x"}])));
        assert_eq!(e.get("a"), Some(&json!({})));
    }

    #[test]
    fn tags_are_added_once_and_a_string_tag_is_kept() {
        let mut e = Event::from_json(json!({"tags": "prod"})).unwrap();
        e.add_tag("_parse_failure");
        e.add_tag("_parse_failure");
        assert_eq!(e.get("tags"), Some(&json!(["prod", "_parse_failure"])));
        assert!(e.has_tag("prod"));
    }

    #[test]
    fn non_objects_are_refused() {
        assert!(Event::from_json(json!([1])).is_err());
    }
}
