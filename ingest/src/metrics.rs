//! Counters of the ingest stages, exposed on `/metrics`.

use prometheus_client::metrics::counter::Counter;

use prometheus_client::registry::Registry;

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
}

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
    }
}
