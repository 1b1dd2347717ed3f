//! How Sigma rules meet events, as data (`schemas/sigma/logsources.toml`):
//! which events a rule's `logsource` selects, and the taxonomy's field
//! names in ours.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::SchemaError;

const BUILTIN: &str = include_str!("../sigma/logsources.toml");

/// One test an event must pass to be selected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// The field tested.
    pub field: String,
    /// It equals one of these (case-insensitively).
    #[serde(default)]
    pub values: Vec<String>,
    /// It is present.
    #[serde(default)]
    pub exists: bool,
}

/// One logsource: the events it selects, and its field names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSource {
    /// The logsource's category, product and service, as rules write them.
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    /// Tests all of which an event passes to be selected.
    #[serde(default)]
    pub select: Vec<Select>,
    /// Taxonomy field name -> Tripline field name.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    logsource: Vec<LogSource>,
}

/// Every logsource entry.
#[derive(Debug, Clone)]
pub struct LogSources {
    entries: Vec<LogSource>,
}

impl LogSources {
    /// The entries shipped in `schemas/sigma/logsources.toml`.
    pub fn builtin() -> &'static LogSources {
        static BUILT: OnceLock<LogSources> = OnceLock::new();
        BUILT.get_or_init(|| {
            LogSources::from_toml(BUILTIN, "schemas/sigma/logsources.toml")
                .expect("the builtin logsources parse: a unit test checks them")
        })
    }

    /// Parses entries from TOML; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<LogSources, SchemaError> {
        let file: File = toml::from_str(text).map_err(|e| SchemaError::Mapping {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        for e in &file.logsource {
            if let Some(s) = e.select.iter().find(|s| s.values.is_empty() != s.exists) {
                return Err(SchemaError::Mapping {
                    origin: origin.to_string(),
                    message: format!("select on {:?} needs exactly one of values or exists = true", s.field),
                });
            }
        }
        Ok(LogSources {
            entries: file.logsource,
        })
    }

    /// The entry for a rule's logsource: the one naming exactly its
    /// category, product and service.
    pub fn find(&self, category: Option<&str>, product: Option<&str>, service: Option<&str>) -> Option<&LogSource> {
        self.entries.iter().find(|e| {
            e.category.as_deref() == category && e.product.as_deref() == product && e.service.as_deref() == service
        })
    }

    /// Every entry.
    pub fn entries(&self) -> &[LogSource] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Catalog;

    #[test]
    fn builtin_logsources_parse_and_name_catalog_fields() {
        let l = LogSources::from_toml(BUILTIN, "t").unwrap();
        let catalog = Catalog::builtin();
        for e in l.entries() {
            for target in e.fields.values() {
                assert!(catalog.get(target).is_some(), "{e:?}: {target} is not in the catalog");
            }
            assert!(!e.select.is_empty(), "{e:?} selects every event");
        }
        assert!(l.find(None, Some("aws"), Some("cloudtrail")).is_some());
        assert!(l.find(Some("webserver"), None, None).is_some());
        assert!(l.find(None, Some("linux"), Some("auditd")).is_none());
    }

    #[test]
    fn a_select_needs_values_or_exists() {
        let bad = "[[logsource]]\nproduct = \"x\"\nselect = [{ field = \"a\" }]\n";
        assert!(LogSources::from_toml(bad, "t").is_err());
    }
}
