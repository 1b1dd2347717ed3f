//! One event: a flat JSON object keyed by dotted field names.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
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
        let limit = name_budget(json_size(&value));
        match value {
            Value::Object(map) => {
                let mut event = Event::new();
                let mut left = limit;
                if !flatten_into(&mut event.fields, String::new(), map, &mut left) {
                    return Err(SchemaError::NamesTooLong { limit });
                }
                Ok(event)
            }
            other => Err(SchemaError::NotAnObject {
                found: json_kind(&other),
            }),
        }
    }

    /// Parses JSON bytes holding one object straight into a flat event,
    /// without building the nested [`Value`] tree first (what
    /// `Event::from_json(serde_json::from_slice(bytes)?)` does, at about
    /// twice the cost). Objects and arrays nested deeper than `max_depth`
    /// (the event itself is level 1) are refused. When a key repeats, or a
    /// dotted key meets the same path nested, the later one wins.
    pub fn from_json_slice(bytes: &[u8], max_depth: usize) -> Result<Event, SchemaError> {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            let value: Value = serde_json::from_slice(bytes).map_err(SchemaError::InvalidJson)?;
            if json_depth(&value) > max_depth {
                return Err(SchemaError::TooDeep { limit: max_depth });
            }
            return Err(SchemaError::NotAnObject {
                found: json_kind(&value),
            });
        }
        let mut flat = Flattener {
            out: Map::new(),
            max_depth,
            too_deep: false,
            names_left: name_budget(bytes.len()),
            names_exhausted: false,
        };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let parsed = Field {
            flat: &mut flat,
            name: String::new(),
            depth: 0,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        match parsed {
            Ok(()) => Ok(Event {
                fields: flat.out,
                id_assigned: false,
            }),
            Err(_) if flat.too_deep => Err(SchemaError::TooDeep { limit: max_depth }),
            Err(_) if flat.names_exhausted => Err(SchemaError::NamesTooLong {
                limit: name_budget(bytes.len()),
            }),
            Err(e) => Err(SchemaError::InvalidJson(e)),
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

/// Flattens `map` under `prefix`; false when the names would take more
/// than `names_left` bytes.
fn flatten_into(out: &mut Map<String, Value>, prefix: String, map: Map<String, Value>, names_left: &mut usize) -> bool {
    for (key, value) in map {
        let name = if prefix.is_empty() {
            key
        } else {
            let len = prefix.len() + 1 + key.len();
            if len > *names_left {
                return false;
            }
            *names_left -= len;
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                if !flatten_into(out, name, inner, names_left) {
                    return false;
                }
            }
            other => {
                out.insert(name, other);
            }
        }
    }
    true
}

/// Nesting depth of a value: a scalar is 0, an object or array one more
/// than its deepest member.
fn json_depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Bytes of dotted names flattening may write for an input of `size`
/// bytes. A name repeats its parents' keys, so `{"<long key>":{"a":1,
/// "b":1,...}}` would otherwise turn a 1 MiB line into gigabytes of names;
/// real events stay far below 8x (a name is a few keys deep).
fn name_budget(size: usize) -> usize {
    size.saturating_mul(8).saturating_add(4096)
}

/// Roughly the bytes `v` takes as JSON (keys and strings; 8 per other value).
fn json_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(json_size).sum::<usize>(),
        Value::Object(map) => 2 + map.iter().map(|(k, v)| k.len() + 3 + json_size(v)).sum::<usize>(),
        _ => 8,
    }
}

/// The flat map being filled by [`Event::from_json_slice`].
struct Flattener {
    out: Map<String, Value>,
    max_depth: usize,
    too_deep: bool,
    /// Name bytes still allowed, and whether parsing stopped because they
    /// ran out.
    names_left: usize,
    names_exhausted: bool,
}

/// One JSON value to store under the dotted `name`, inside `depth` objects.
struct Field<'a> {
    flat: &'a mut Flattener,
    name: String,
    depth: usize,
}

impl Field<'_> {
    fn store(self, value: Value) {
        self.flat.out.insert(self.name, value);
    }

    fn too_deep<E: de::Error>(self) -> E {
        self.flat.too_deep = true;
        E::custom(format_args!("nested deeper than {} levels", self.flat.max_depth))
    }
}

impl<'de> DeserializeSeed<'de> for Field<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Field<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.store(Value::Bool(v));
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.store(Value::from(v));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.store(Value::from(v));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.store(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.store(Value::String(v.to_owned()));
        Ok(())
    }

    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.store(Value::String(v));
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.store(Value::Null);
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        self.store(Value::Null);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        // Arrays stay one value, as in `Event::from_json`.
        let value = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        if self.depth + json_depth(&value) > self.flat.max_depth {
            return Err(self.too_deep());
        }
        self.store(value);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.depth + 1 > self.flat.max_depth {
            return Err(self.too_deep());
        }
        let mut empty = true;
        while let Some(key) = map.next_key::<String>()? {
            empty = false;
            let name = if self.name.is_empty() {
                key
            } else {
                let len = self.name.len() + 1 + key.len();
                if len > self.flat.names_left {
                    self.flat.names_exhausted = true;
                    return Err(de::Error::custom("flattened field names too long"));
                }
                self.flat.names_left -= len;
                format!("{}.{key}", self.name)
            };
            map.next_value_seed(Field {
                flat: &mut *self.flat,
                name,
                depth: self.depth + 1,
            })?;
        }
        if empty && self.depth > 0 {
            // An empty object is kept as a value, as in `Event::from_json`.
            self.store(Value::Object(Map::new()));
        }
        Ok(())
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

    /// Parsing bytes straight into the flat event gives what parsing into a
    /// `Value` and flattening gives.
    #[test]
    fn from_json_slice_matches_from_json() {
        let cases = [
            r#"{"source":{"ip":"1.2.3.4","port":22},"message":"x"}"#,
            r#"{"a":{},"b":[],"c":[{"d":{"e":1}}],"f":null,"g":true,"h":-1,"i":1.5,"j":18446744073709551615}"#,
            r#"{"requestParameters":{"bucketName":"s","tags":["a","b"]},"x.y":{"z":"w"}}"#,
            r#"  {"esc":"a\"b\\u00e9\n","deep":{"a":{"b":{"c":{"d":1}}}}}  "#,
            "{}",
        ];
        for case in cases {
            let want = Event::from_json(serde_json::from_str(case).unwrap()).unwrap();
            assert_eq!(Event::from_json_slice(case.as_bytes(), 64).unwrap(), want, "{case}");
        }
    }

    /// Regression: a long key above many leaves made flattening write the
    /// key once per leaf (a 1 MiB line could become gigabytes of names).
    #[test]
    fn a_long_key_above_many_leaves_cannot_blow_up_the_names() {
        let leaves: Vec<String> = (0..20_000).map(|i| format!("\"k{i}\":1")).collect();
        let line = format!("{{\"{}\":{{{}}}}}", "x".repeat(100_000), leaves.join(","));
        assert!(matches!(
            Event::from_json_slice(line.as_bytes(), 64),
            Err(SchemaError::NamesTooLong { .. })
        ));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert!(matches!(Event::from_json(value), Err(SchemaError::NamesTooLong { .. })));
        // Real events flatten as before.
        let nested = r#"{"a":{"b":{"c":{"d":{"e":1,"f":2,"g":3}}}},"userIdentity":{"sessionContext":{"attributes":{"mfaAuthenticated":"false"}}}}"#;
        assert_eq!(Event::from_json_slice(nested.as_bytes(), 64).unwrap().len(), 4);
    }

    #[test]
    fn from_json_slice_errors_name_the_problem() {
        let kind = |b: &[u8]| match Event::from_json_slice(b, 4) {
            Err(SchemaError::InvalidJson(_)) => "invalid",
            Err(SchemaError::TooDeep { limit: 4 }) => "deep",
            Err(SchemaError::NotAnObject { found }) => found,
            other => panic!("{other:?}"),
        };
        assert_eq!(kind(br#"{"a":1"#), "invalid");
        assert_eq!(kind(br#"{"a":1} {"b":2}"#), "invalid");
        assert_eq!(kind(b"{\"a\":\"\xff\"}"), "invalid");
        assert_eq!(kind(br#"{"a":{"b":{"c":{"d":{}}}}}"#), "deep");
        assert_eq!(kind(br#"{"a":{"b":{"c":[[1]]}}}"#), "deep");
        assert_eq!(kind(br#"[1]"#), "an array");
        assert_eq!(kind(br#"[[[[[1]]]]]"#), "deep");
        assert_eq!(kind(b"42"), "a number");
        assert!(Event::from_json_slice(br#"{"a":{"b":{"c":[1]}}}"#, 4).is_ok());
    }
}
