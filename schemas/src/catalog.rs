//! The field catalog: which ECS fields have a declared type.

use std::collections::HashMap;

use serde::Deserialize;

use crate::SchemaError;

/// The catalog shipped with Tripline.
const BUILTIN: &str = include_str!("../fields.toml");

/// The type of a catalog field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Exact value, matched case-insensitively.
    Keyword,
    /// Full text: words, phrases.
    Text,
    /// Signed 64-bit integer.
    Long,
    /// 64-bit float.
    Double,
    /// IPv4 or IPv6 address.
    Ip,
    /// Timestamp.
    Date,
    /// true / false.
    Boolean,
}

/// One field of the catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// Dotted ECS name; a trailing `.*` declares a family (`labels.*`).
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Columnar storage for sorting and aggregation.
    #[serde(default)]
    pub fast: bool,
    /// What the field holds.
    #[serde(default)]
    pub description: Option<String>,
}

impl FieldDef {
    /// True for a family such as `labels.*`.
    pub fn is_family(&self) -> bool {
        self.name.ends_with(".*")
    }

    /// The family prefix with its dot (`labels.`), for a family.
    pub fn family_prefix(&self) -> Option<&str> {
        self.name.strip_suffix('*')
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    field: Vec<FieldDef>,
}

/// The set of declared fields, looked up by dotted name.
#[derive(Debug, Clone)]
pub struct Catalog {
    fields: Vec<FieldDef>,
    by_name: HashMap<String, usize>,
}

impl Catalog {
    /// The catalog compiled into Tripline from `schemas/fields.toml`.
    pub fn builtin() -> Catalog {
        Catalog::from_toml(BUILTIN, "schemas/fields.toml").expect("the builtin catalog is valid: a unit test parses it")
    }

    /// Parses a catalog from TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Catalog, SchemaError> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| SchemaError::Catalog {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let mut by_name = HashMap::new();
        for (i, f) in file.field.iter().enumerate() {
            if by_name.insert(f.name.clone(), i).is_some() {
                return Err(SchemaError::DuplicateField {
                    origin: origin.to_string(),
                    name: f.name.clone(),
                });
            }
        }
        Ok(Catalog {
            fields: file.field,
            by_name,
        })
    }

    /// All declared fields, families included, in file order.
    pub fn fields(&self) -> &[FieldDef] {
        &self.fields
    }

    /// The definition that governs `name`: the field itself, or the family
    /// whose prefix it starts with (`labels.env` -> `labels.*`).
    pub fn get(&self, name: &str) -> Option<&FieldDef> {
        if let Some(&i) = self.by_name.get(name) {
            return Some(&self.fields[i]);
        }
        self.fields.iter().find(|f| {
            f.family_prefix()
                .is_some_and(|p| name.len() > p.len() && name.starts_with(p))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_has_the_siem_fields() {
        let c = Catalog::builtin();
        for name in [
            "@timestamp",
            "event.id",
            "event.dataset",
            "event.ingested",
            "message",
            "source.ip",
            "http.response.status_code",
            "cloud.account.id",
            "tags",
            "error.message",
        ] {
            assert!(c.get(name).is_some(), "{name} missing from the catalog");
        }
        assert_eq!(c.get("@timestamp").map(|f| f.fast), Some(true));
        assert_eq!(c.get("message").map(|f| f.ty), Some(FieldType::Text));
    }

    #[test]
    fn family_matches_only_below_its_prefix() {
        let c = Catalog::builtin();
        assert_eq!(c.get("labels.team").map(|f| f.name.as_str()), Some("labels.*"));
        assert!(c.get("labels").is_none());
        assert!(c.get("labelsx").is_none());
    }

    #[test]
    fn unknown_keys_and_duplicates_are_rejected() {
        let bad = "[[field]]\nname = \"a\"\ntype = \"keyword\"\nindexed = true\n";
        let err = Catalog::from_toml(bad, "t").unwrap_err().to_string();
        assert!(err.contains("indexed"), "{err}");
        let dup = "[[field]]\nname = \"a\"\ntype = \"long\"\n[[field]]\nname = \"a\"\ntype = \"long\"\n";
        assert!(matches!(
            Catalog::from_toml(dup, "t"),
            Err(SchemaError::DuplicateField { .. })
        ));
    }
}
