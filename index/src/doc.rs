//! An event as a tantivy document.

use std::net::IpAddr;

use schemas::{fields, Event, FieldType};
use serde_json::Value;
use tantivy::schema::OwnedValue;
use tantivy::{DateTime, TantivyDocument};
use time::OffsetDateTime;

use crate::schema::{dedup_key, id_hash, EventSchema};

/// Builds the document for `event`: typed catalog fields, `_dynamic` for the
/// rest (and for catalog values of the wrong type, so nothing becomes
/// unsearchable), `source` (the event's JSON) as `_source`, `_id_hash`.
pub fn to_document(schema: &EventSchema, event: &Event, source: &[u8]) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    let mut dynamic: Vec<(String, OwnedValue)> = Vec::new();
    for (name, value) in event.iter() {
        match schema.field(name) {
            Some(indexed) => {
                if !add_typed(&mut doc, indexed.field, indexed.ty, value) {
                    dynamic.push((name.clone(), to_owned(value)));
                }
            }
            None => {
                if !value.is_null() {
                    dynamic.push((name.clone(), to_owned(value)));
                }
            }
        }
    }
    if !dynamic.is_empty() {
        doc.add_field_value(schema.dynamic, &OwnedValue::Object(dynamic));
    }
    let id = event.get_str(fields::ID).unwrap_or_default();
    doc.add_u64(schema.id_hash, id_hash(id));
    if let (Some(field), false) = (schema.dedup_key, event.id_assigned()) {
        let dataset = event.get_str(fields::DATASET).unwrap_or_default();
        let key = dedup_key(dataset, id);
        if let Some(hash) = schema.dedup_hash {
            doc.add_u64(hash, id_hash(&key));
        }
        doc.add_text(field, key);
    }
    doc.add_bytes(schema.source, source);
    doc
}

/// The event's time, from `@timestamp` (set by ingest); `None` if absent.
pub fn event_time(event: &Event) -> Option<OffsetDateTime> {
    event.get(fields::TIMESTAMP).and_then(schemas::time::parse_value)
}

/// Converts a time to tantivy's.
/// tantivy keeps nanoseconds in an i64 (1677 to 2262); times outside are
/// clamped to the nearer end.
pub fn to_tantivy_date(t: OffsetDateTime) -> DateTime {
    let nanos = t.unix_timestamp_nanos();
    let clamped = i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX });
    DateTime::from_timestamp_nanos(clamped)
}

/// Adds `value` to a typed field; false when (part of) it does not fit the type.
fn add_typed(doc: &mut TantivyDocument, field: tantivy::schema::Field, ty: FieldType, value: &Value) -> bool {
    if let Value::Array(items) = value {
        let mut all = true;
        for item in items {
            if !matches!(item, Value::Array(_)) {
                all &= add_typed(doc, field, ty, item);
            } else {
                all = false;
            }
        }
        return all;
    }
    match ty {
        FieldType::Keyword | FieldType::Text => match value {
            Value::String(s) => doc.add_text(field, s),
            Value::Number(n) => doc.add_text(field, n.to_string()),
            Value::Bool(b) => doc.add_text(field, b.to_string()),
            Value::Null => {}
            _ => return false,
        },
        FieldType::Long => match as_i64(value) {
            Some(i) => doc.add_i64(field, i),
            None => return value.is_null(),
        },
        FieldType::Double => match as_f64(value) {
            Some(f) => doc.add_f64(field, f),
            None => return value.is_null(),
        },
        FieldType::Boolean => match value {
            Value::Bool(b) => doc.add_bool(field, *b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => doc.add_bool(field, true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => doc.add_bool(field, false),
            Value::Null => {}
            _ => return false,
        },
        FieldType::Ip => match value.as_str().and_then(parse_ip) {
            Some(ip) => doc.add_ip_addr(field, ip),
            None => return value.is_null(),
        },
        FieldType::Date => match schemas::time::parse_value(value) {
            Some(t) => doc.add_date(field, to_tantivy_date(t)),
            None => return value.is_null(),
        },
    }
    true
}

/// Parses an IPv4 or IPv6 address as tantivy stores it (IPv6, v4-mapped).
pub fn parse_ip(s: &str) -> Option<std::net::Ipv6Addr> {
    match s.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => Some(v6),
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// JSON to tantivy's value; unlike tantivy's own conversion, strings stay
/// strings (never guessed to be dates), so a term query finds them as sent.
fn to_owned(v: &Value) -> OwnedValue {
    match v {
        Value::Null => OwnedValue::Null,
        Value::Bool(b) => OwnedValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                OwnedValue::I64(i)
            } else if let Some(u) = n.as_u64() {
                OwnedValue::U64(u)
            } else {
                OwnedValue::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => OwnedValue::Str(s.clone()),
        Value::Array(items) => OwnedValue::Array(items.iter().map(to_owned).collect()),
        Value::Object(map) => OwnedValue::Object(map.iter().map(|(k, v)| (k.clone(), to_owned(v))).collect()),
    }
}
