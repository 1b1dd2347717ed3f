//! Index metrics, exposed on `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Index metrics; clones share the same counters.
#[derive(Debug, Clone)]
pub struct IndexMetrics {
    /// Events added to partitions.
    pub events_indexed: Counter,
    /// Events skipped at replay because their partition had committed them.
    pub events_skipped: Counter,
    /// Live documents over all partitions (after the last commit).
    pub docs: Gauge,
    /// Partitions on disk.
    pub partitions: Gauge,
    /// Time of a commit round.
    pub commit_seconds: Histogram,
    /// From a batch reaching the indexer (it is acknowledged by then) to it
    /// being searchable.
    pub ack_to_searchable_seconds: Histogram,
    /// Failed commits.
    pub commit_failures: Counter,
    /// Batches that failed to index (a partition could not be opened or a
    /// document not added).
    pub index_failures: Counter,
    /// Retries of the batches since the checkpoint after a failure.
    pub retries: Counter,
    /// Partitions that could not be opened at start, moved aside.
    pub partitions_quarantined: Counter,
    /// Retention runs skipped because the clock is past every ingest time.
    pub retention_skipped: Counter,
    /// Partitions deleted by retention.
    pub partitions_expired: Counter,
}

impl Default for IndexMetrics {
    fn default() -> IndexMetrics {
        IndexMetrics {
            events_indexed: Counter::default(),
            events_skipped: Counter::default(),
            docs: Gauge::default(),
            partitions: Gauge::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            ack_to_searchable_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            commit_failures: Counter::default(),
            index_failures: Counter::default(),
            retries: Counter::default(),
            partitions_quarantined: Counter::default(),
            retention_skipped: Counter::default(),
            partitions_expired: Counter::default(),
        }
    }
}

impl IndexMetrics {
    /// Registers every metric under `tripline_`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tripline_index_events",
            "Events added to the index",
            self.events_indexed.clone(),
        );
        registry.register(
            "tripline_index_replay_skipped_events",
            "Events skipped at replay, already committed",
            self.events_skipped.clone(),
        );
        registry.register(
            "tripline_index_docs",
            "Live documents in all partitions",
            self.docs.clone(),
        );
        registry.register(
            "tripline_index_partitions",
            "Day partitions on disk",
            self.partitions.clone(),
        );
        registry.register(
            "tripline_index_commit_seconds",
            "Latency of an index commit round",
            self.commit_seconds.clone(),
        );
        registry.register(
            "tripline_ack_to_searchable_seconds",
            "Lag from acknowledgement to searchable",
            self.ack_to_searchable_seconds.clone(),
        );
        registry.register(
            "tripline_index_commit_failures",
            "Failed index commits",
            self.commit_failures.clone(),
        );
        registry.register(
            "tripline_index_failures",
            "Batches that failed to index (retried from the checkpoint)",
            self.index_failures.clone(),
        );
        registry.register(
            "tripline_index_retries",
            "Retries of the batches since the checkpoint after a failure",
            self.retries.clone(),
        );
        registry.register(
            "tripline_index_partitions_quarantined",
            "Partitions that could not be opened at start and were moved aside",
            self.partitions_quarantined.clone(),
        );
        registry.register(
            "tripline_index_retention_skipped",
            "Retention runs skipped: the clock is past every ingest time (a clock jump?)",
            self.retention_skipped.clone(),
        );
        registry.register(
            "tripline_index_partitions_expired",
            "Partitions deleted by retention",
            self.partitions_expired.clone(),
        );
    }
}
