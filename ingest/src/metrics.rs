//! Counters of the ingest stages, exposed on `/metrics`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::format::Format;

/// Most distinct sources counted apart in the per-format counters; events
/// of further sources are counted under `source="_other"`, so a client
/// inventing names cannot grow `/metrics` without bound.
pub const MAX_SOURCES_IN_METRICS: usize = 256;

/// Labels of the per-source, per-format counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceFormat {
    /// The source (`event.dataset`) the events were shipped as.
    pub source: String,
    /// The format they were recognized as (`raw` when none).
    pub format: String,
}

/// Ingest metrics. Cheap to clone: every field is a shared handle.
#[derive(Debug, Clone, Default)]
pub struct IngestMetrics {
    /// Events accepted (acknowledged).
    pub events: Counter,
    /// Decompressed body bytes accepted.
    pub bytes: Counter,
    /// Items stored raw because they could not be parsed.
    pub parse_failures: Counter,
    /// Requests refused for overload.
    pub overloaded: Counter,
    /// Events acknowledged, by source and recognized format.
    pub events_by_format: Family<SourceFormat, Counter>,
    /// Events stored raw, by source and the format they failed as.
    pub failures_by_format: Family<SourceFormat, Counter>,
    sources: Arc<Mutex<HashSet<String>>>,
}

/// Per-format counts of one batch: (events, failures) by format.
pub type FormatCounts = BTreeMap<Format, (u64, u64)>;

impl IngestMetrics {
    /// Registers every metric under `tripline_`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("tripline_ingested_events", "Events acknowledged", self.events.clone());
        registry.register(
            "tripline_ingested_bytes",
            "Decompressed body bytes acknowledged",
            self.bytes.clone(),
        );
        registry.register(
            "tripline_parse_failures",
            "Items stored raw because they did not parse",
            self.parse_failures.clone(),
        );
        registry.register(
            "tripline_ingest_overloaded",
            "Ingest requests refused for overload",
            self.overloaded.clone(),
        );
        registry.register(
            "tripline_ingested_events_by_format",
            "Events acknowledged, by source and the format they were recognized as",
            self.events_by_format.clone(),
        );
        registry.register(
            "tripline_parse_failures_by_format",
            "Events stored raw, by source and the format they failed to parse as",
            self.failures_by_format.clone(),
        );
    }

    /// Adds one acknowledged batch's per-format counts.
    pub fn record_formats(&self, source: &str, counts: &FormatCounts) {
        let source = {
            let mut known = self.sources.lock().unwrap_or_else(|p| p.into_inner());
            if known.contains(source) || known.len() < MAX_SOURCES_IN_METRICS {
                known.insert(source.to_string());
                source.to_string()
            } else {
                "_other".to_string()
            }
        };
        for (format, &(events, failures)) in counts {
            let labels = SourceFormat {
                source: source.clone(),
                format: format.as_str().to_string(),
            };
            self.events_by_format.get_or_create(&labels).inc_by(events);
            if failures > 0 {
                self.failures_by_format.get_or_create(&labels).inc_by(failures);
            }
        }
    }
}
