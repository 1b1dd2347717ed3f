//! The tantivy schema derived from the field catalog.

use std::collections::HashMap;

use schemas::{Catalog, FieldType};
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, JsonObjectOptions, NumericOptions, Schema,
    TextFieldIndexing, TextOptions, FAST, INDEXED, STORED,
};
use tantivy::tokenizer::{LowerCaser, RawTokenizer, TextAnalyzer};

/// Tokenizer of keyword fields: the whole value, lowercased.
pub const KEYWORD_TOKENIZER: &str = "keyword";
/// Tokenizer of text fields: words, lowercased.
pub const TEXT_TOKENIZER: &str = "default";

/// The stored copy of the event (JSON), returned in search hits.
pub const SOURCE: &str = "_source";
/// Fields not in the catalog, searchable by dotted path.
pub const DYNAMIC: &str = "_dynamic";
/// Fast hash of `event.id`: the tie-break of the newest-first order.
pub const ID_HASH: &str = "_id_hash";
/// Name of the deduplication key of events whose sender chose `event.id`:
/// `event.dataset`, a unit separator, `event.id`, exact (not lowercased).
pub const DEDUP_KEY: &str = "_dedup_key";
/// Name of the 64-bit hash of `_dedup_key` (a fast column), read back to
/// rebuild the cross-partition dedup window at start.
pub const DEDUP_HASH: &str = "_dedup_hash";

/// A catalog field as indexed.
#[derive(Debug, Clone, Copy)]
pub struct Indexed {
    /// The tantivy field.
    pub field: Field,
    /// Its catalog type.
    pub ty: FieldType,
    /// Whether it has a fast (columnar) copy.
    pub fast: bool,
}

/// The schema every partition shares, with the catalog it came from.
#[derive(Debug, Clone)]
pub struct EventSchema {
    /// The tantivy schema.
    pub schema: Schema,
    /// The catalog.
    pub catalog: Catalog,
    fields: HashMap<String, Indexed>,
    /// `_source`.
    pub source: Field,
    /// `_dynamic`.
    pub dynamic: Field,
    /// `_id_hash`.
    pub id_hash: Field,
    /// `@timestamp`.
    pub timestamp: Field,
    /// `event.id`.
    pub event_id: Field,
    /// `_dedup_key`; absent in partitions made before it existed, which
    /// deduplicate on the lowercased `event.id` alone.
    pub dedup_key: Option<Field>,
    /// `_dedup_hash`; absent in partitions made before it existed.
    pub dedup_hash: Option<Field>,
}

/// The deduplication key of an event whose sender chose its id: scoped to
/// its dataset, so one source can never replace another's events, and
/// exact, so `ABC` does not replace `abc`.
pub fn dedup_key(dataset: &str, id: &str) -> String {
    format!("{dataset}\u{1f}{id}")
}

impl EventSchema {
    /// Builds the schema: each non-family catalog field becomes a tantivy
    /// field of the same dotted name; families (`labels.*`) and unknown
    /// fields go to `_dynamic`.
    pub fn new(catalog: Catalog) -> EventSchema {
        let mut b = Schema::builder();
        for def in catalog.fields().iter().filter(|d| !d.is_family()) {
            let name = def.name.as_str();
            match def.ty {
                FieldType::Keyword => {
                    let mut o = TextOptions::default().set_indexing_options(
                        TextFieldIndexing::default()
                            .set_tokenizer(KEYWORD_TOKENIZER)
                            .set_index_option(IndexRecordOption::Basic),
                    );
                    if def.fast {
                        o = o.set_fast("raw");
                    }
                    b.add_text_field(name, o)
                }
                FieldType::Text => b.add_text_field(
                    name,
                    TextOptions::default().set_indexing_options(
                        TextFieldIndexing::default()
                            .set_tokenizer(TEXT_TOKENIZER)
                            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
                    ),
                ),
                FieldType::Long => b.add_i64_field(name, numeric(def.fast)),
                FieldType::Double => b.add_f64_field(name, numeric(def.fast)),
                FieldType::Boolean => b.add_bool_field(name, numeric(def.fast)),
                FieldType::Ip => {
                    if def.fast {
                        b.add_ip_addr_field(name, INDEXED | FAST)
                    } else {
                        b.add_ip_addr_field(name, INDEXED)
                    }
                }
                FieldType::Date => {
                    let mut o = DateOptions::default()
                        .set_indexed()
                        .set_precision(DateTimePrecision::Microseconds);
                    if def.fast {
                        o = o.set_fast();
                    }
                    b.add_date_field(name, o)
                }
            };
        }
        b.add_bytes_field(SOURCE, STORED);
        b.add_json_field(
            DYNAMIC,
            JsonObjectOptions::default()
                .set_expand_dots_enabled()
                .set_indexing_options(
                    TextFieldIndexing::default()
                        .set_tokenizer(KEYWORD_TOKENIZER)
                        .set_index_option(IndexRecordOption::Basic),
                ),
        );
        b.add_u64_field(ID_HASH, FAST);
        b.add_text_field(
            DEDUP_KEY,
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("raw")
                    .set_index_option(IndexRecordOption::Basic),
            ),
        );
        b.add_u64_field(DEDUP_HASH, FAST);
        EventSchema::from_schema(b.build(), catalog)
            .expect("a schema built from the catalog has Tripline's fields: checked by a unit test")
    }

    /// Maps an existing partition's schema onto the catalog. A catalog field
    /// the partition lacks (added to the catalog later), or whose type there
    /// differs, is treated as not in the catalog for that partition: its
    /// values went to `_dynamic`. `None` if the schema is not Tripline's.
    pub fn from_schema(schema: Schema, catalog: Catalog) -> Option<EventSchema> {
        let mut fields = HashMap::new();
        for def in catalog.fields().iter().filter(|d| !d.is_family()) {
            let Ok(field) = schema.get_field(&def.name) else {
                continue;
            };
            let entry = schema.get_field_entry(field);
            let ft = entry.field_type();
            let tokenizer = match ft {
                tantivy::schema::FieldType::Str(o) => o.get_indexing_options().map(|i| i.tokenizer().to_string()),
                _ => None,
            };
            let fits = match def.ty {
                FieldType::Keyword => tokenizer.as_deref() == Some(KEYWORD_TOKENIZER),
                FieldType::Text => tokenizer.as_deref() == Some(TEXT_TOKENIZER),
                FieldType::Long => matches!(ft, tantivy::schema::FieldType::I64(_)),
                FieldType::Double => matches!(ft, tantivy::schema::FieldType::F64(_)),
                FieldType::Boolean => matches!(ft, tantivy::schema::FieldType::Bool(_)),
                FieldType::Ip => matches!(ft, tantivy::schema::FieldType::IpAddr(_)),
                FieldType::Date => matches!(ft, tantivy::schema::FieldType::Date(_)),
            };
            if fits {
                fields.insert(
                    def.name.clone(),
                    Indexed {
                        field,
                        ty: def.ty,
                        fast: entry.is_fast(),
                    },
                );
            }
        }
        let timestamp = fields
            .get(schemas::fields::TIMESTAMP)
            .filter(|f| f.ty == FieldType::Date && f.fast)?
            .field;
        let event_id = fields
            .get(schemas::fields::ID)
            .filter(|f| f.ty == FieldType::Keyword)?
            .field;
        Some(EventSchema {
            source: schema.get_field(SOURCE).ok()?,
            dynamic: schema.get_field(DYNAMIC).ok()?,
            id_hash: schema.get_field(ID_HASH).ok()?,
            dedup_key: schema.get_field(DEDUP_KEY).ok(),
            dedup_hash: schema.get_field(DEDUP_HASH).ok(),
            schema,
            catalog,
            fields,
            timestamp,
            event_id,
        })
    }

    /// The indexed catalog field of this exact name (families excluded).
    pub fn field(&self, name: &str) -> Option<Indexed> {
        self.fields.get(name).copied()
    }

    /// Registers Tripline's tokenizers on an index (they are not persisted).
    pub fn register_tokenizers(index: &tantivy::Index) {
        index.tokenizers().register(
            KEYWORD_TOKENIZER,
            TextAnalyzer::builder(RawTokenizer::default())
                .filter(LowerCaser)
                .build(),
        );
    }
}

fn numeric(fast: bool) -> NumericOptions {
    let o = NumericOptions::default().set_indexed();
    if fast {
        o.set_fast()
    } else {
        o
    }
}

/// FNV-1a, 64 bits: stable across builds (the order of hits depends on it).
pub fn id_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_partition_lacks_a_field_added_to_the_catalog_later() {
        let old = EventSchema::new(Catalog::builtin());
        let text = "[[field]]\nname = \"@timestamp\"\ntype = \"date\"\nfast = true\n\
                    [[field]]\nname = \"event.id\"\ntype = \"keyword\"\n\
                    [[field]]\nname = \"new.field\"\ntype = \"long\"\n\
                    [[field]]\nname = \"source.ip\"\ntype = \"keyword\"\n";
        let newer = Catalog::from_toml(text, "t").unwrap();
        let mapped = EventSchema::from_schema(old.schema.clone(), newer).unwrap();
        assert!(mapped.field("new.field").is_none());
        assert!(mapped.field("source.ip").is_none(), "type changed: not used");
        assert!(mapped.field("event.id").is_some());
    }

    #[test]
    fn builtin_catalog_makes_a_schema() {
        let s = EventSchema::new(Catalog::builtin());
        assert!(s.field("source.ip").is_some());
        assert!(s.field("labels.*").is_none());
        assert_eq!(s.field("message").map(|f| f.ty), Some(FieldType::Text));
        assert_eq!(
            s.field("user.name").map(|f| (f.ty, f.fast)),
            Some((FieldType::Keyword, true))
        );
        assert_eq!(id_hash("abc"), 0xe71f_a219_0541_574b);
    }
}
