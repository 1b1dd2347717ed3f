//! One ingest request, start to acknowledgement.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::decode::{decode, Encoding};
use crate::format::{Format, LineContext};
use crate::frame::{frame_limited, lines_limited, split_records, Item, TooManyItems};
use crate::metrics::FormatCounts;
use crate::normalize::{normalize, valid_source, IngestClock, TimeWindow};
use crate::parse::{parse_item_as, Limits};
use crate::{IngestError, IngestMetrics};
use wal::{BatchBuilder, Wal};

/// Limits of the ingest service.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Largest body after decompression.
    pub max_body_bytes: usize,
    /// Per-line limits.
    pub limits: Limits,
    /// Requests decoded and parsed at once; more wait up to `queue_timeout`.
    pub max_concurrent_requests: usize,
    /// How long a request waits for a slot before it gets 429 with `Retry-After`.
    pub queue_timeout: Duration,
    /// Most per-line errors listed in a response.
    pub max_reported_errors: usize,
    /// Most events (lines, array elements) one request may hold.
    pub max_events_per_request: usize,
    /// Most bytes one request's events may take once normalized and
    /// serialized (the WAL record): escaping and added fields can make a
    /// body grow, and this bounds what a request holds in memory.
    pub max_batch_bytes: usize,
    /// Event times accepted; others become the ingest time.
    pub time_window: TimeWindow,
}

impl Default for IngestConfig {
    fn default() -> IngestConfig {
        IngestConfig {
            max_body_bytes: 64 << 20,
            limits: Limits::default(),
            max_concurrent_requests: 8,
            queue_timeout: Duration::from_secs(5),
            max_reported_errors: 100,
            max_events_per_request: 100_000,
            max_batch_bytes: 256 << 20,
            time_window: TimeWindow::default(),
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
    /// Events by the format they were recognized as (`raw`: none).
    pub formats: std::collections::BTreeMap<&'static str, usize>,
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

    /// The log this ingestor appends to.
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
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

    /// Waits as long as it takes for a slot: for a listener, whose sender
    /// waits meanwhile (TCP flow control), not for an HTTP client, which is
    /// better told to retry. Not counted as overload.
    pub async fn admit_waiting(&self) -> Result<Admission, IngestError> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map(Admission)
            .map_err(|_| IngestError::Internal {
                reason: "the ingest slots were closed".to_string(),
            })
    }

    /// Ingests one body shipped as `source`, its lines in `format`;
    /// returns once it is fsynced.
    ///
    /// The work runs in a task of its own that holds the admission until the
    /// WAL has answered: a client that disconnects frees its slot only when
    /// the work it started is over, so disconnecting cannot bypass the limit.
    pub async fn ingest(
        &self,
        admission: Admission,
        source: &str,
        format: Format,
        content_encoding: Option<&str>,
        body: Bytes,
    ) -> Result<IngestReport, IngestError> {
        check_source(source)?;
        let encoding = Encoding::from_header(content_encoding)?;
        let this = self.clone();
        let source = source.to_string();
        tokio::spawn(async move {
            let config = this.config.clone();
            let src = source.clone();
            let work = move || {
                let decoded = decode(encoding, &body, config.max_body_bytes)?;
                let items = frame_for(&config, format, &decoded)?;
                prepare(&config, &src, format, items, decoded.len())
            };
            this.run(admission, source, work).await
        })
        .await
        .map_err(|e| IngestError::Internal {
            reason: format!("ingest task: {e}"),
        })?
    }

    /// Ingests frames already split (a syslog listener's), shipped as
    /// `source` in `format`; returns once they are fsynced. The caller
    /// bounds how many frames, and how long each, it hands in at once.
    pub async fn ingest_frames(
        &self,
        admission: Admission,
        source: &str,
        format: Format,
        frames: Vec<Bytes>,
    ) -> Result<IngestReport, IngestError> {
        check_source(source)?;
        let config = self.config.clone();
        let bytes: usize = frames.iter().map(Bytes::len).sum();
        let source = source.to_string();
        let src = source.clone();
        let work = move || {
            let items = frames.iter().enumerate().map(|(i, f)| Item {
                line: i + 1,
                kind: crate::frame::ItemKind::Raw(f),
            });
            prepare(&config, &src, format, items, bytes)
        };
        let this = self.clone();
        tokio::spawn(async move { this.run(admission, source, work).await })
            .await
            .map_err(|e| IngestError::Internal {
                reason: format!("ingest task: {e}"),
            })?
    }

    async fn run(
        &self,
        admission: Admission,
        source: String,
        work: impl FnOnce() -> Result<Prepared, IngestError> + Send + 'static,
    ) -> Result<IngestReport, IngestError> {
        let prepared = tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| IngestError::Internal {
                reason: format!("ingest worker: {e}"),
            })??;
        let Prepared {
            batch,
            report,
            bytes,
            formats,
        } = prepared;
        let count = batch.len();
        if count == 0 {
            return Ok(report);
        }
        self.wal.append(batch).await.inspect_err(|e| {
            if matches!(e, wal::WalError::Overloaded) {
                self.metrics.overloaded.inc();
            }
        })?;
        drop(admission);
        self.metrics.events.inc_by(count as u64);
        self.metrics.bytes.inc_by(bytes as u64);
        self.metrics.parse_failures.inc_by(report.parse_failures as u64);
        self.metrics.record_formats(&source, &formats);
        Ok(report)
    }

    /// The ingest metrics.
    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// Requests being worked on now (holding an admission).
    pub fn in_flight(&self) -> usize {
        self.config.max_concurrent_requests.max(1) - self.permits.available_permits()
    }
}

fn check_source(source: &str) -> Result<(), IngestError> {
    if valid_source(source) {
        Ok(())
    } else {
        Err(IngestError::BadSource {
            name: source.to_string(),
        })
    }
}

struct Prepared {
    batch: wal::Batch,
    report: IngestReport,
    bytes: usize,
    formats: FormatCounts,
}

/// Splits a decoded body into items: JSON-aware framing for the formats
/// that may be JSON (with CloudTrail envelopes split into records), lines
/// for the others.
fn frame_for<'a>(config: &IngestConfig, format: Format, body: &'a [u8]) -> Result<Vec<Item<'a>>, IngestError> {
    let max = config.max_events_per_request;
    let too_many = |e: TooManyItems| IngestError::TooManyEvents { limit: e.limit };
    if !format.is_json_like() {
        return lines_limited(body, max).map_err(too_many);
    }
    let items = frame_limited(body, config.limits.max_depth, max).map_err(too_many)?;
    if matches!(format, Format::Auto | Format::Cloudtrail) {
        split_records(items, max).map_err(too_many)
    } else {
        Ok(items)
    }
}

/// Parses and normalizes `items` into one WAL batch.
fn prepare<'a>(
    config: &IngestConfig,
    source: &str,
    format: Format,
    items: impl IntoIterator<Item = Item<'a>>,
    bytes: usize,
) -> Result<Prepared, IngestError> {
    let now = time::OffsetDateTime::now_utc();
    let clock = IngestClock::new(now, config.time_window);
    let ctx = LineContext {
        limits: &config.limits,
        now,
    };
    // Sized from the body, which the body limit bounds, not from a count.
    let mut batch = BatchBuilder::new(bytes.min(config.max_batch_bytes), config.max_batch_bytes);
    let mut report = IngestReport {
        accepted: 0,
        failed: 0,
        parse_failures: 0,
        errors: Vec::new(),
        formats: Default::default(),
    };
    let mut formats = FormatCounts::new();
    for item in items {
        let parsed = parse_item_as(format, item, &ctx);
        let counts = formats.entry(parsed.format).or_default();
        counts.0 += 1;
        let mut event = parsed.event;
        if let Some(f) = parsed.failure {
            counts.1 += 1;
            report.parse_failures += 1;
            if report.errors.len() < config.max_reported_errors {
                report.errors.push(LineError {
                    line: f.line,
                    reason: f.reason,
                });
            }
        }
        normalize(&mut event, source, &clock);
        batch.push(event).map_err(|_| IngestError::BatchTooLarge {
            limit: config.max_batch_bytes,
        })?;
    }
    let batch = batch.finish();
    report.accepted = batch.len();
    report.formats = formats.iter().map(|(f, c)| (f.as_str(), c.0 as usize)).collect();
    Ok(Prepared {
        batch,
        report,
        bytes,
        formats,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wal::{Lsn, WalConfig, WalMetrics};

    /// H7: the slot lived in the handler's future, so a client that hung up
    /// freed it while its work went on: unbounded parallel work.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_hangs_up_keeps_its_slot_until_its_work_ends() {
        let dir = tempfile::tempdir().unwrap();
        // Nobody reads the index channel: after the first batch the log's
        // writer blocks handing it on, so later appends never finish.
        let (tx, _rx) = std::sync::mpsc::sync_channel(0);
        let (wal, _) = Wal::open(WalConfig::new(dir.path()), vec![], Lsn(0), WalMetrics::default(), tx).unwrap();
        let ingestor = Ingestor::new(
            Arc::new(wal),
            IngestConfig {
                max_concurrent_requests: 2,
                queue_timeout: Duration::from_millis(50),
                ..IngestConfig::default()
            },
            IngestMetrics::default(),
        );
        let first = {
            let i = ingestor.clone();
            tokio::spawn(async move {
                let a = i.admit().await.unwrap();
                i.ingest(a, "t", Format::Auto, None, Bytes::from_static(b"{}\n")).await
            })
        };
        let second = {
            let i = ingestor.clone();
            tokio::spawn(async move {
                let a = i.admit().await.unwrap();
                i.ingest(a, "t", Format::Auto, None, Bytes::from_static(b"{}\n")).await
            })
        };
        // Let both reach the log, then hang up on both.
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.abort();
        second.abort();
        let _ = first.await;
        let _ = second.await;
        assert!(
            ingestor.in_flight() >= 1,
            "a hung-up request gave its slot back while its work went on"
        );
    }
}
