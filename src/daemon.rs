//! Wiring: data directory, token store, index, indexer thread, WAL, HTTP.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use index::{EventSchema, IndexMetrics, Indexer, IndexerConfig, Store};
use ingest::listener::{self as syslog_listener, SyslogMetrics};
use ingest::{IngestConfig, IngestMetrics, Ingestor};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use schemas::Catalog;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use wal::{Consumer, Lsn, Wal, WalConfig, WalMetrics};

use crate::api::{self, ApiLimits, AppState};
use crate::auth::TokenStore;
use crate::config::Config;
use crate::http::{self, HttpLimits};

/// The sockets the daemon serves, bound by the caller (port 0 in tests).
#[derive(Debug)]
pub struct Listeners {
    /// The HTTP API.
    pub http: TcpListener,
    /// Syslog over TCP and UDP, on one address, unless it is off.
    pub syslog: Option<(TcpListener, UdpSocket)>,
}

/// Runs the daemon on `listeners` until `shutdown` is cancelled, then stops
/// accepting, finishes in-flight requests, appends what the syslog
/// listeners have read, makes the WAL's queue durable and commits the index.
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Listeners { http: listener, syslog } = listeners;
    config.validate()?;
    let data = config.data_dir.clone();
    private_data_dir(&data)?;
    let env_admin = std::env::var("TRIPLINE_ADMIN_TOKEN").ok();
    let token_dir = data.clone();
    let (tokens, written) = tokio::task::spawn_blocking(move || TokenStore::open(&token_dir, env_admin.as_deref()))
        .await
        .context("token store task")??;
    if let Some(path) = written {
        println!("admin token written to {}", path.display());
    }

    let mut registry = Registry::default();
    let ingest_metrics = IngestMetrics::default();
    let wal_metrics = WalMetrics::default();
    let index_metrics = IndexMetrics::default();
    let syslog_metrics = SyslogMetrics::default();
    ingest_metrics.register(&mut registry);
    syslog_metrics.register(&mut registry);
    wal_metrics.register(&mut registry);
    index_metrics.register(&mut registry);

    let store = Arc::new(Store::open(&data.join("index"), EventSchema::new(Catalog::builtin()))?);
    index_metrics
        .partitions_quarantined
        .inc_by(store.quarantined().len() as u64);
    let (to_index, from_wal) = std::sync::mpsc::sync_channel(16);
    // The indexer's position in the log is its checkpoint; every consumer
    // of the log keeps its own, and a segment goes once all are past it.
    let index_consumer = Consumer::new("index", Lsn(store.checkpoint()?));
    let indexer = Indexer::spawn(
        store.clone(),
        IndexerConfig {
            commit_interval: config.commit_interval(),
            writer_memory_bytes: config.index.writer_memory_mb << 20,
            writer_threads: config.index.writer_threads,
            max_open_writers: config.index.max_open_writers,
            retention_days: config.index.retention_days,
            merge_fan_in: config.index.merge_fan_in,
            max_retries: config.index.max_retries,
            retry_backoff: Duration::from_millis(config.index.retry_backoff_ms),
            dedup_window_hours: config.index.dedup_window_hours,
            ..IndexerConfig::default()
        },
        from_wal,
        index_metrics,
        index_consumer.clone(),
    )?;

    let ready = Arc::new(AtomicBool::new(false));
    let ingestor_cell = Arc::new(OnceLock::new());
    let refused = Counter::default();
    registry.register(
        "tripline_http_connections_refused",
        "Connections closed at once because the connection limit was reached",
        refused.clone(),
    );
    // Detection reads the log from its own position, saved with its state.
    let detect_dir = data.join("detect");
    // It runs with a rules directory, or detectors, or both.
    let detectors = config.compile_detectors()?;
    let detect_start = if config.detect.rules_dir.is_none() && detectors.is_empty() {
        None
    } else {
        let mut checkpoint = detect::Checkpoint::load(&detect_dir)?;
        // A new new_terms detector learns its history from the index at
        // once instead of from the stream for its learning period.
        let (seed_store, seed_detectors) = (store.clone(), detectors.clone());
        checkpoint = tokio::task::spawn_blocking(move || {
            crate::detection::seed(&seed_store, &seed_detectors, &mut checkpoint);
            checkpoint
        })
        .await
        .context("detector seeding task")?;
        let consumer = Consumer::new("detect", Lsn(checkpoint.position));
        let rules = match &config.detect.rules_dir {
            Some(dir) => {
                let (dir, placeholders) = (dir.clone(), config.detect.placeholders.clone());
                tokio::task::spawn_blocking(move || crate::detection::load(&dir, &placeholders))
                    .await
                    .context("rules load task")?
            }
            None => detect::Rules::new(detect::rule::RuleSet::new(Vec::new()), Vec::new(), None),
        };
        Some((checkpoint, consumer, rules))
    };
    let detect_metrics = detect::DetectMetrics::default();
    if detect_start.is_some() {
        detect_metrics.register(&mut registry);
    }
    let detection_cell: Arc<OnceLock<Arc<crate::detection::Detection>>> = Arc::new(OnceLock::new());
    // The webhook outbox: its API works at once; it reads the WAL once
    // replay is done.
    let deliver_metrics = deliver::DeliverMetrics::default();
    deliver_metrics.register(&mut registry);
    let base_url = config
        .delivery
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", listener.local_addr().map_or(config.listen, |a| a)));
    let (outbox, generated) = {
        let (dir, specs, settings) = (data.join("webhooks"), config.webhooks.clone(), config.delivery.clone());
        let guard = deliver::Guard::new(&config.egress);
        tokio::task::spawn_blocking(move || {
            deliver::Outbox::open(&dir, specs, settings, guard, deliver_metrics, base_url)
        })
        .await
        .context("outbox task")??
    };
    for g in generated {
        println!(
            "webhook {}: secret generated and written to {} (mode 0600); give it to the receiver, then delete the file",
            g.webhook,
            g.path.display()
        );
    }
    let outbox_consumer = Consumer::new("webhooks", outbox.position(index_consumer.position())?);
    let secs = Duration::from_secs;
    let state = AppState {
        ingestor: ingestor_cell.clone(),
        store: store.clone(),
        index_health: indexer.health(),
        tokens: Arc::new(tokens),
        auth_throttle: Arc::new(api::AuthThrottle::new(
            config.http.max_auth_failures_per_minute,
            secs(60),
        )),
        registry: Arc::new(registry),
        metrics_public: config.metrics.public,
        search_permits: Arc::new(Semaphore::new(config.search.max_concurrent.max(1))),
        default_limit: config.search.default_limit,
        limits: ApiLimits {
            max_body_bytes: config.ingest.max_body_bytes,
            body_read_timeout: secs(config.http.body_read_timeout_secs),
            search_timeout: secs(config.search.timeout_secs),
            max_unindexed_bytes: config.wal.max_unindexed_bytes,
        },
        ready: ready.clone(),
        detection: detection_cell.clone(),
        outbox: Some(outbox.clone()),
    };
    let addr = listener.local_addr()?;
    println!("tripline listening on http://{addr}");
    tracing::info!(%addr, data_dir = %data.display(), "listening");
    let limits = HttpLimits {
        max_connections: config.http.max_connections,
        header_read_timeout: secs(config.http.header_read_timeout_secs),
        drain_timeout: secs(30),
    };
    let server = tokio::spawn(http::serve(
        listener,
        api::router(state),
        limits,
        refused,
        shutdown.clone(),
    ));

    // Replay the WAL into the index while /healthz already answers.
    let wal_dir = data.join("wal");
    let floor = Lsn(store.max_committed_lsn());
    let wal_config = WalConfig {
        segment_bytes: config.wal.segment_bytes,
        queue_depth: config.wal.queue_depth,
        ..WalConfig::new(&wal_dir)
    };
    let mut consumers = vec![index_consumer, outbox_consumer.clone()];
    if let Some((_, consumer, _)) = &detect_start {
        consumers.push(consumer.clone());
    }
    let (wal, recovered) =
        tokio::task::spawn_blocking(move || Wal::open(wal_config, consumers, floor, wal_metrics, to_index))
            .await
            .context("wal replay task")??;
    tracing::info!(
        replayed = recovered.replayed,
        skipped = recovered.skipped,
        torn_tails = recovered.torn_tails,
        damaged_ranges = recovered.damaged_ranges,
        next_lsn = %recovered.next_lsn,
        "write-ahead log recovered"
    );
    let wal = Arc::new(wal);
    outbox.start(tokio::runtime::Handle::current(), shutdown.clone());
    outbox.consume(wal.clone(), outbox_consumer)?;
    if let Some((checkpoint, consumer, rules)) = detect_start {
        let detector = detect::Detector::spawn(
            wal.clone(),
            consumer,
            checkpoint,
            rules,
            config.detect.stage_config(detect_dir),
            detect_metrics,
            detectors,
        )?;
        let detection = Arc::new(crate::detection::Detection::new(
            detector,
            config.detect.rules_dir.clone(),
            config.detect.placeholders.clone(),
        ));
        if config.detect.reload_interval_secs > 0 && config.detect.rules_dir.is_some() {
            detection.watch(secs(config.detect.reload_interval_secs), shutdown.clone());
        }
        let _ = detection_cell.set(detection);
    }
    let ingest_config = IngestConfig {
        max_body_bytes: config.ingest.max_body_bytes,
        limits: ingest::parse::Limits {
            max_line_bytes: config.ingest.max_line_bytes,
            max_depth: config.ingest.max_json_depth,
        },
        max_concurrent_requests: config.ingest.max_concurrent_requests,
        max_events_per_request: config.ingest.max_events_per_request,
        max_batch_bytes: config.ingest.max_batch_bytes,
        time_window: config.time_window(),
        ..IngestConfig::default()
    };
    let ingestor = Ingestor::new(wal.clone(), ingest_config, ingest_metrics);
    let _ = ingestor_cell.set(ingestor.clone());
    // Syslog senders have been queued by the kernel since the sockets were
    // bound; they are read from now on, through the same ingestor.
    let mut syslog_tasks = Vec::new();
    if let Some((tcp, udp)) = syslog {
        let addr = tcp.local_addr()?;
        let listener_config = Arc::new(config.syslog.listener_config(config.wal.max_unindexed_bytes));
        syslog_tasks.push(tokio::spawn(syslog_listener::run_tcp(
            tcp,
            ingestor.clone(),
            listener_config.clone(),
            syslog_metrics.clone(),
            shutdown.clone(),
        )));
        syslog_tasks.push(tokio::spawn(syslog_listener::run_udp(
            udp,
            ingestor.clone(),
            listener_config,
            syslog_metrics,
            shutdown.clone(),
        )));
        println!("tripline syslog listening on {addr}");
        tracing::info!(%addr, allow = ?config.syslog.allow, format = %config.syslog.format, "syslog listening (tcp, udp)");
    }
    ready.store(true, Ordering::SeqCst);
    println!("tripline ready");

    server.await.context("http server task")?;
    for task in syslog_tasks {
        task.await.context("syslog listener task")?;
    }
    tracing::info!("shutting down: flushing the write-ahead log and committing the index");
    let closing = wal.clone();
    let detection = detection_cell.get().cloned();
    tokio::task::spawn_blocking(move || {
        // Detection appends alerts to the log: it stops first.
        if let Some(d) = detection {
            d.detector.stop();
        }
        closing.close();
        // The outbox queues what the log holds, then stops.
        outbox.join(false);
        indexer.join();
    })
    .await
    .context("shutdown task")?;
    tracing::info!("stopped");
    Ok(())
}

/// Makes every file and directory the process creates from now on private
/// to its user (umask 0o077): WAL segments, index files, tokens, checkpoint.
/// Call before anything is created, before any thread is started.
pub fn private_umask() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates the data directory, or makes an existing one, mode 0700: the
/// security logs in it are for Tripline's user only. A shared directory
/// such as /tmp is refused rather than made private.
fn private_data_dir(data: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data).with_context(|| format!("creating data dir {}", data.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data)
            .with_context(|| format!("reading data dir {}", data.display()))?
            .permissions()
            .mode();
        if mode & 0o1002 == 0o1002 {
            anyhow::bail!(
                "data dir {} is a shared directory (world-writable with the sticky bit, like /tmp): \
                 give Tripline a directory of its own",
                data.display()
            );
        }
        if mode & 0o077 != 0 {
            std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making data dir {} private (mode 0700)", data.display()))?;
            tracing::info!(
                data_dir = %data.display(),
                old_mode = %format!("{:o}", mode & 0o7777),
                "made the data directory private (mode 0700)"
            );
        }
    }
    Ok(())
}
