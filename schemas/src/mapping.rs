//! Normalization as data: how each source format's own field names become
//! the catalog's (ECS) names.
//!
//! Parsers produce the fields of their format (`cef.extensions.src`,
//! `log.syslog.appname`, CloudTrail's `sourceIPAddress`); a mapping file in
//! `schemas/mappings/` renames them. The original fields stay beside the
//! ECS ones, so a rule written against either matches. Adding a vendor's
//! field names is a change to a data file, and a test checks that every
//! target exists in the catalog with a type its conversion can fill.
//!
//! A mapping file holds:
//!
//! - `format`: the format it applies to (`cef`, `cloudtrail`, ...);
//! - `[static]`: fields set on every event of the format (`event.kind`);
//! - `[[field]]` rules, applied in order: `from` a source field `to` a
//!   target, with an optional `convert` (`keyword`, `lowercase`, `long`,
//!   `double`, `ip`, `date`, `http_outcome`), an `otherwise` target for a
//!   value the conversion refuses (a CloudTrail `sourceIPAddress` that is a
//!   service name goes to `source.domain`), a fixed `value` written when the
//!   source is present, and an `if_absent` value written when it is not.
//!
//! `keep_originals = false` removes the source fields once mapped: only
//! for names a parser made up for what it read inside a message (sshd's),
//! never for a format's own fields.
//!
//! A target that already has a value keeps it: the first rule that fills a
//! field wins, and what the sender or the parser set explicitly is never
//! overwritten. A source holding an array is read through its first element.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use crate::catalog::{Catalog, FieldType};
use crate::{time as ts, Event, SchemaError};

/// The mapping files shipped with Tripline, by file name.
const BUILTIN: &[(&str, &str)] = &[
    ("syslog.toml", include_str!("../mappings/syslog.toml")),
    ("sshd.toml", include_str!("../mappings/sshd.toml")),
    ("cef.toml", include_str!("../mappings/cef.toml")),
    ("leef.toml", include_str!("../mappings/leef.toml")),
    ("logfmt.toml", include_str!("../mappings/logfmt.toml")),
    ("clf.toml", include_str!("../mappings/clf.toml")),
    ("cloudtrail.toml", include_str!("../mappings/cloudtrail.toml")),
    ("k8s_audit.toml", include_str!("../mappings/k8s_audit.toml")),
];

/// How a source value becomes the target's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Convert {
    /// A string as it is; a number or boolean as its text.
    #[default]
    Keyword,
    /// A string in lower case.
    Lowercase,
    /// A whole number (from a number or a string of digits).
    Long,
    /// A number.
    Double,
    /// An IPv4 or IPv6 address.
    Ip,
    /// A point in time, in any form [`crate::time::parse_value`] reads,
    /// written as RFC 3339.
    Date,
    /// An HTTP status code: below 400 is `success`, else `failure`.
    HttpOutcome,
}

impl Convert {
    /// Whether a catalog field of type `ty` can hold what this produces.
    fn fits(self, ty: FieldType) -> bool {
        match self {
            Convert::Keyword | Convert::Lowercase | Convert::HttpOutcome => {
                matches!(ty, FieldType::Keyword | FieldType::Text)
            }
            Convert::Long => ty == FieldType::Long,
            Convert::Double => ty == FieldType::Double,
            Convert::Ip => ty == FieldType::Ip,
            Convert::Date => ty == FieldType::Date,
        }
    }

    fn apply(self, v: &Value) -> Option<Value> {
        match self {
            Convert::Keyword => match v {
                Value::String(s) if !s.is_empty() => Some(Value::String(s.clone())),
                Value::Number(n) => Some(Value::String(n.to_string())),
                Value::Bool(b) => Some(Value::String(b.to_string())),
                _ => None,
            },
            Convert::Lowercase => v.as_str().filter(|s| !s.is_empty()).map(|s| s.to_lowercase().into()),
            Convert::Long => match v {
                Value::Number(n) => n.as_i64().map(Value::from),
                Value::String(s) => s.trim().parse::<i64>().ok().map(Value::from),
                _ => None,
            },
            Convert::Double => match v {
                Value::Number(n) => n.as_f64().map(Value::from),
                Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::from),
                _ => None,
            },
            Convert::Ip => v
                .as_str()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
                .map(|ip| Value::String(ip.to_string())),
            Convert::Date => ts::parse_value(v).and_then(ts::try_format).map(Value::String),
            Convert::HttpOutcome => {
                let code = match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    _ => None,
                }?;
                (100..600)
                    .contains(&code)
                    .then(|| Value::from(if code < 400 { "success" } else { "failure" }))
            }
        }
    }
}

/// One `[[field]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The source field (the format's own name).
    pub from: String,
    /// The target field (a catalog name).
    pub to: String,
    /// How the value is converted.
    #[serde(default)]
    pub convert: Convert,
    /// Where a value the conversion refuses goes, as a keyword.
    #[serde(default)]
    pub otherwise: Option<String>,
    /// A fixed value written when the source is present.
    #[serde(default)]
    pub value: Option<String>,
    /// A fixed value written when the source is absent.
    #[serde(default)]
    pub if_absent: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    format: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "yes")]
    keep_originals: bool,
    #[serde(default, rename = "static")]
    statics: BTreeMap<String, toml::Value>,
    #[serde(default)]
    field: Vec<Rule>,
}

fn yes() -> bool {
    true
}

/// The mapping of one format.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The format it applies to.
    pub format: String,
    /// Whether the source fields stay beside their targets (the default).
    /// `false` only for names a parser made up for what it read inside a
    /// message (sshd's): the message is the original, and stays.
    pub keep_originals: bool,
    /// What it maps.
    pub description: Option<String>,
    /// Fields every event of the format gets.
    pub statics: Vec<(String, Value)>,
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

impl Mapping {
    /// Parses a mapping file; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Mapping, SchemaError> {
        let bad = |message: String| SchemaError::Mapping {
            origin: origin.to_string(),
            message,
        };
        let file: MappingFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut statics = Vec::new();
        for (name, v) in file.statics {
            let v = match v {
                toml::Value::String(s) => Value::String(s),
                toml::Value::Integer(i) => Value::from(i),
                toml::Value::Boolean(b) => Value::Bool(b),
                other => {
                    return Err(bad(format!(
                        "static {name:?}: {} is not a string, integer or boolean",
                        other.type_str()
                    )))
                }
            };
            statics.push((name, v));
        }
        for r in &file.field {
            if r.value.is_some() && r.convert != Convert::Keyword {
                return Err(bad(format!(
                    "rule {} -> {}: `value` and `convert` exclude each other",
                    r.from, r.to
                )));
            }
        }
        Ok(Mapping {
            format: file.format,
            keep_originals: file.keep_originals,
            description: file.description,
            statics,
            rules: file.field,
        })
    }

    /// Adds the mapped fields to `event`; no field it had is changed.
    pub fn apply(&self, event: &mut Event) {
        for rule in &self.rules {
            if event.get(&rule.to).is_some() {
                continue;
            }
            let source = match event.get(&rule.from) {
                Some(Value::Array(items)) => items.first(),
                other => other,
            };
            let out = match (source, &rule.value) {
                (None | Some(Value::Null), _) => rule.if_absent.clone().map(Value::String),
                (Some(_), Some(fixed)) => Some(Value::String(fixed.clone())),
                (Some(v), None) => match rule.convert.apply(v) {
                    Some(out) => Some(out),
                    None => {
                        if let (Some(other), Some(Value::String(s))) = (&rule.otherwise, Some(v)) {
                            if !s.is_empty() && event.get(other).is_none() {
                                let s = s.clone();
                                event.insert(other.clone(), s);
                            }
                        }
                        None
                    }
                },
            };
            if let Some(out) = out {
                event.insert(rule.to.clone(), out);
            }
        }
        for (name, v) in &self.statics {
            if event.get(name).is_none() {
                event.insert(name.clone(), v.clone());
            }
        }
        if !self.keep_originals {
            for rule in &self.rules {
                event.remove(&rule.from);
            }
        }
    }

    /// Every way this mapping does not fit `catalog`: a target it lacks, or
    /// one whose type the rule's conversion cannot fill.
    pub fn check(&self, catalog: &Catalog) -> Vec<String> {
        let mut problems = Vec::new();
        let mut need = |name: &str, fits: &dyn Fn(FieldType) -> bool, what: &str| match catalog.get(name) {
            None => problems.push(format!("{}: target {name:?} is not in the catalog", self.format)),
            Some(def) if !fits(def.ty) => problems.push(format!(
                "{}: target {name:?} is {:?} in the catalog, but the rule writes {what}",
                self.format, def.ty
            )),
            Some(_) => {}
        };
        let keyword = |ty: FieldType| matches!(ty, FieldType::Keyword | FieldType::Text);
        for r in &self.rules {
            if r.value.is_some() || r.if_absent.is_some() {
                need(&r.to, &keyword, "a fixed string");
            }
            if r.value.is_none() {
                need(&r.to, &|ty| r.convert.fits(ty), &format!("{:?}", r.convert));
            }
            if let Some(other) = &r.otherwise {
                need(other, &keyword, "the unconverted string");
            }
        }
        for (name, v) in &self.statics {
            match v {
                Value::String(_) => need(name, &keyword, "a string"),
                Value::Bool(_) => need(name, &|ty| ty == FieldType::Boolean, "a boolean"),
                _ => need(name, &|ty| ty == FieldType::Long, "an integer"),
            }
        }
        problems
    }
}

/// The mappings of every format, by format name.
#[derive(Debug, Clone)]
pub struct Mappings {
    by_format: BTreeMap<String, Mapping>,
}

impl Mappings {
    /// The mappings compiled into Tripline from `schemas/mappings/`.
    pub fn builtin() -> &'static Mappings {
        static BUILT: OnceLock<Mappings> = OnceLock::new();
        BUILT.get_or_init(|| {
            let mut by_format = BTreeMap::new();
            for (file, text) in BUILTIN {
                let m = Mapping::from_toml(text, file).expect("the builtin mappings parse: a unit test checks each");
                by_format.insert(m.format.clone(), m);
            }
            Mappings { by_format }
        })
    }

    /// The mapping of `format`, if it has one.
    pub fn get(&self, format: &str) -> Option<&Mapping> {
        self.by_format.get(format)
    }

    /// Every mapping, by format name.
    pub fn iter(&self) -> impl Iterator<Item = &Mapping> {
        self.by_format.values()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn event(v: Value) -> Event {
        Event::from_json(v).unwrap()
    }

    #[test]
    fn every_builtin_mapping_fits_the_catalog() {
        let catalog = Catalog::builtin();
        let mut problems = Vec::new();
        for (file, text) in BUILTIN {
            let m = Mapping::from_toml(text, file).unwrap();
            assert!(!m.rules.is_empty(), "{file} maps nothing");
            problems.extend(m.check(&catalog));
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn every_file_in_the_mappings_directory_is_built_in() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut built: Vec<String> = BUILTIN.iter().map(|(f, _)| f.to_string()).collect();
        built.sort();
        assert_eq!(on_disk, built);
    }

    #[test]
    fn a_mapping_that_does_not_fit_the_catalog_is_reported() {
        let text = r#"
            format = "t"
            [static]
            "event.kind" = 3
            [[field]]
            from = "a"
            to = "source.ip"
            [[field]]
            from = "b"
            to = "no.such.field"
            convert = "long"
        "#;
        let problems = Mapping::from_toml(text, "t").unwrap().check(&Catalog::builtin());
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("\"source.ip\" is Ip"), "{}", problems[0]);
        assert!(problems[1].contains("\"no.such.field\" is not in the catalog"));
        assert!(problems[2].contains("\"event.kind\" is Keyword"));
        let unknown = "format = \"t\"\n[[field]]\nfrom = \"a\"\nto = \"b\"\nrename = true\n";
        assert!(Mapping::from_toml(unknown, "t")
            .unwrap_err()
            .to_string()
            .contains("rename"));
    }

    #[test]
    fn a_mapping_that_does_not_keep_originals_removes_its_sources() {
        let text = "format = \"t\"\nkeep_originals = false\n[[field]]\nfrom = \"x.user\"\nto = \"user.name\"\n";
        let m = Mapping::from_toml(text, "t").unwrap();
        let mut e = event(json!({"x": {"user": "bob", "other": 1}}));
        m.apply(&mut e);
        assert_eq!(e.get("user.name"), Some(&json!("bob")));
        assert_eq!(e.get("x.user"), None);
        assert_eq!(e.get("x.other"), Some(&json!(1)));
    }

    /// (rule, source event, expected target values)
    #[test]
    fn rules_convert_fall_back_and_never_overwrite() {
        let text = r#"
            format = "t"
            [static]
            "event.kind" = "event"
            [[field]]
            from = "ip"
            to = "source.ip"
            convert = "ip"
            otherwise = "source.domain"
            [[field]]
            from = "port"
            to = "source.port"
            convert = "long"
            [[field]]
            from = "err"
            to = "event.outcome"
            value = "failure"
            if_absent = "success"
            [[field]]
            from = "code"
            to = "event.outcome"
            convert = "http_outcome"
            [[field]]
            from = "when"
            to = "@timestamp"
            convert = "date"
            [[field]]
            from = "ips"
            to = "destination.ip"
            convert = "ip"
        "#;
        let m = Mapping::from_toml(text, "t").unwrap();
        let cases = [
            (
                json!({"ip": "10.0.0.1", "port": "22", "when": 1_700_000_000_000_i64, "ips": ["::1", "10.0.0.2"]}),
                json!({"source.ip": "10.0.0.1", "source.port": 22, "event.outcome": "success",
                       "@timestamp": "2023-11-14T22:13:20Z", "destination.ip": "::1", "event.kind": "event"}),
            ),
            (
                json!({"ip": "s3.amazonaws.com", "port": "x", "err": "AccessDenied"}),
                json!({"source.domain": "s3.amazonaws.com", "event.outcome": "failure"}),
            ),
            (
                json!({"ip": "10.0.0.1", "source.ip": "10.9.9.9", "event.kind": "alert", "code": 503}),
                json!({"source.ip": "10.9.9.9", "event.kind": "alert", "event.outcome": "success"}),
            ),
        ];
        for (input, want) in cases {
            let mut e = event(input.clone());
            m.apply(&mut e);
            for (k, v) in want.as_object().unwrap() {
                assert_eq!(e.get(k), Some(v), "{input}: {k}");
            }
            for (k, v) in input.as_object().unwrap() {
                if !want.as_object().unwrap().contains_key(k) {
                    assert_eq!(e.get(k), Some(v), "{input}: original {k} kept");
                }
            }
            assert!(e.get("source.port").is_none() || input.get("port") == Some(&json!("22")));
        }
    }
}
