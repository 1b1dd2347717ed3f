//! One ingest request, start to acknowledgement.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::decode::{decode, Encoding};
use crate::frame::frame;
use crate::normalize::{normalize, valid_source};
use crate::parse::{parse_item, Limits};
use crate::wal::{Batch, Wal};
use crate::{IngestError, IngestMetrics};

/// Limits of the ingest service.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Largest body after decompression.
    pub max_body_bytes: usize,
    /// Per-line limits.
    pub limits: Limits,
    /// Requests decoded and parsed at once; more wait up to `queue_timeout`.
    pub max_concurrent_requests: usize,
    /// How long a request waits for a slot before it gets 503.
    pub queue_timeout: Duration,
    /// Most per-line errors listed in a response.
    pub max_reported_errors: usize,
}

impl Default for IngestConfig {
    fn default() -> IngestConfig {
        IngestConfig {
            max_body_bytes: 64 << 20,
            limits: Limits::default(),
            max_concurrent_requests: 8,
            queue_timeout: Duration::from_secs(5),
            max_reported_errors: 100,
        }
    }
}

/// One item that was stored raw.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LineError {
    /// 1-based line (or array element) number in the decoded body.
    pub line: usize,
    /// Why it did not parse.
    pub reason: String,
}

/// The answer to an ingest request, sent once the batch is durable.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IngestReport {
    /// Events stored, raw ones included.
    pub accepted: usize,
    /// Items not stored. Always 0: what does not parse is stored raw.
    pub failed: usize,
    /// Items stored raw because they did not parse.
    pub parse_failures: usize,
    /// The first `max_reported_errors` of those, with their line.
    pub errors: Vec<LineError>,
}

/// A slot for one request, from [`Ingestor::admit`].
#[derive(Debug)]
pub struct Admission(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

/// Decodes, parses, normalizes and makes durable one request at a time.
#[derive(Debug, Clone)]
pub struct Ingestor {
    wal: Arc<Wal>,
    config: Arc<IngestConfig>,
    permits: Arc<Semaphore>,
    metrics: IngestMetrics,
}

impl Ingestor {
    /// An ingestor appending to `wal`.
    pub fn new(wal: Arc<Wal>, config: IngestConfig, metrics: IngestMetrics) -> Ingestor {
        let permits = Arc::new(Semaphore::new(config.max_concurrent_requests.max(1)));
        Ingestor {
            wal,
            config: Arc::new(config),
            permits,
            metrics,
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// Waits (up to `queue_timeout`) for a slot to take one request in. Take
    /// it before reading the body: at most `max_concurrent_requests` bodies
    /// are in memory at once.
    pub async fn admit(&self) -> Result<Admission, IngestError> {
        match tokio::time::timeout(self.config.queue_timeout, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(Admission(p)),
            _ => {
                self.metrics.overloaded.inc();
                Err(IngestError::Overloaded)
            }
        }
    }

    /// Ingests one body shipped as `source`; returns once it is fsynced.
    pub async fn ingest(
        &self,
        _admission: Admission,
        source: &str,
        content_encoding: Option<&str>,
        body: Bytes,
    ) -> Result<IngestReport, IngestError> {
        if !valid_source(source) {
            return Err(IngestError::BadSource {
                name: source.to_string(),
            });
        }
        let encoding = Encoding::from_header(content_encoding)?;
        let config = self.config.clone();
        let source = source.to_string();
        let prepared = tokio::task::spawn_blocking(move || prepare(&config, &source, encoding, &body))
            .await
            .map_err(|e| IngestError::WalFailed {
                reason: format!("ingest worker failed: {e}"),
            })??;
        let Prepared { batch, report, bytes } = prepared;
        let count = batch.len();
        if count == 0 {
            return Ok(report);
        }
        self.wal.append(batch).await.inspect_err(|e| {
            if matches!(e, IngestError::Overloaded) {
                self.metrics.overloaded.inc();
            }
        })?;
        self.metrics.events.inc_by(count as u64);
        self.metrics.bytes.inc_by(bytes as u64);
        self.metrics.parse_failures.inc_by(report.parse_failures as u64);
        Ok(report)
    }
}

struct Prepared {
    batch: Batch,
    report: IngestReport,
    bytes: usize,
}

fn prepare(config: &IngestConfig, source: &str, encoding: Encoding, body: &[u8]) -> Result<Prepared, IngestError> {
    let decoded = decode(encoding, body, config.max_body_bytes)?;
    let now = schemas::time::format(time::OffsetDateTime::now_utc());
    let items = frame(&decoded, config.limits.max_depth);
    let mut events = Vec::with_capacity(items.len());
    let mut report = IngestReport {
        accepted: 0,
        failed: 0,
        parse_failures: 0,
        errors: Vec::new(),
    };
    for item in items {
        let parsed = parse_item(item, &config.limits);
        let mut event = parsed.event;
        if let Some(f) = parsed.failure {
            report.parse_failures += 1;
            if report.errors.len() < config.max_reported_errors {
                report.errors.push(LineError {
                    line: f.line,
                    reason: f.reason,
                });
            }
        }
        normalize(&mut event, source, &now);
        events.push(event);
    }
    report.accepted = events.len();
    Ok(Prepared {
        batch: Batch::encode(events),
        report,
        bytes: decoded.len(),
    })
}
