//! Metrics of the log, exposed on `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// WAL metrics. Cheap to clone: every field is a shared handle.
#[derive(Debug, Clone)]
pub struct WalMetrics {
    /// Bytes appended (headers included).
    pub bytes: Counter,
    /// Time of each fsync.
    pub fsync_seconds: Histogram,
    /// Requests acknowledged per fsync (group commit width).
    pub batch_requests: Histogram,
    /// Torn tails and damaged ranges found while recovering.
    pub corruptions: Counter,
    /// Records replayed at start.
    pub replayed_records: Counter,
    /// Segment files on disk.
    pub segments: Gauge,
}

impl Default for WalMetrics {
    fn default() -> WalMetrics {
        WalMetrics {
            bytes: Counter::default(),
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            batch_requests: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            corruptions: Counter::default(),
            replayed_records: Counter::default(),
            segments: Gauge::default(),
        }
    }
}

impl WalMetrics {
    /// Registers every metric under `tripline_wal_`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tripline_wal_bytes",
            "Bytes appended to the write-ahead log",
            self.bytes.clone(),
        );
        registry.register(
            "tripline_wal_fsync_seconds",
            "Latency of write-ahead log fsyncs",
            self.fsync_seconds.clone(),
        );
        registry.register(
            "tripline_wal_batch_requests",
            "Requests made durable by one fsync",
            self.batch_requests.clone(),
        );
        registry.register(
            "tripline_wal_corruptions",
            "Torn tails and damaged ranges found in the WAL at recovery",
            self.corruptions.clone(),
        );
        registry.register(
            "tripline_wal_replayed_records",
            "WAL records replayed at start",
            self.replayed_records.clone(),
        );
        registry.register(
            "tripline_wal_segments",
            "WAL segment files on disk",
            self.segments.clone(),
        );
    }
}
