//! Counters of the ingest stages, exposed on `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Ingest and WAL metrics. Cheap to clone: every field is a shared handle.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    /// Events accepted (acknowledged).
    pub events: Counter,
    /// Decompressed body bytes accepted.
    pub bytes: Counter,
    /// Items stored raw because they could not be parsed.
    pub parse_failures: Counter,
    /// Requests refused for overload.
    pub overloaded: Counter,
    /// Bytes appended to the WAL (headers included).
    pub wal_bytes: Counter,
    /// Time of each WAL fsync.
    pub wal_fsync_seconds: Histogram,
    /// Requests acknowledged per fsync (group commit width).
    pub wal_batch_requests: Histogram,
    /// Corrupt or torn records found (and cut off) while recovering.
    pub wal_corruptions: Counter,
    /// Records replayed at start.
    pub wal_replayed_records: Counter,
    /// WAL segment files on disk.
    pub wal_segments: Gauge,
}

impl Default for IngestMetrics {
    fn default() -> IngestMetrics {
        IngestMetrics {
            events: Counter::default(),
            bytes: Counter::default(),
            parse_failures: Counter::default(),
            overloaded: Counter::default(),
            wal_bytes: Counter::default(),
            wal_fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            wal_batch_requests: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            wal_corruptions: Counter::default(),
            wal_replayed_records: Counter::default(),
            wal_segments: Gauge::default(),
        }
    }
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
        registry.register(
            "tripline_wal_bytes",
            "Bytes appended to the write-ahead log",
            self.wal_bytes.clone(),
        );
        registry.register(
            "tripline_wal_fsync_seconds",
            "Latency of write-ahead log fsyncs",
            self.wal_fsync_seconds.clone(),
        );
        registry.register(
            "tripline_wal_batch_requests",
            "Requests made durable by one fsync",
            self.wal_batch_requests.clone(),
        );
        registry.register(
            "tripline_wal_corruptions",
            "Corrupt or torn WAL records cut off at recovery",
            self.wal_corruptions.clone(),
        );
        registry.register(
            "tripline_wal_replayed_records",
            "WAL records replayed at start",
            self.wal_replayed_records.clone(),
        );
        registry.register(
            "tripline_wal_segments",
            "WAL segment files on disk",
            self.wal_segments.clone(),
        );
    }
}
