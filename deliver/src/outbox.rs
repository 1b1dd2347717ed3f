//! The outbox: a WAL consumer turning alerts into deliveries, and one
//! worker per webhook sending them.
//!
//! - **Queueing** ([`Outbox::consume`], a thread): reads the WAL from the
//!   outbox's own position, picks the alert versions out of each record
//!   (a byte search first: most records hold none), and for each webhook
//!   whose filter wants the change queues a delivery. The deliveries and
//!   the position after the record are one redb transaction: an alert in
//!   the WAL is either not yet read (and will be) or queued, never lost.
//! - **Sending** (a tokio task per webhook): takes the due deliveries of
//!   its webhook, at most `max_in_flight` at once, signs and posts each,
//!   and records the try; a slow or dead receiver holds only its own
//!   worker. Memory holds the deliveries in flight and nothing else.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use detect::{Alert, ALERTS_DATASET};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use schemas::{Catalog, Event};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wal::{Consumer, Lsn, Read, Wal};

use crate::egress::{Guard, ResolveError};
use crate::payload::{render, Subject};
use crate::sign::{signature_header, Secret};
use crate::store::{Attempt, Delivery, State, Store};
use crate::webhook::{Disabled, EventType, Selector, Source, Stored, View, WebhookSpec};
use crate::DeliverError;

/// `[delivery]`: retries and bookkeeping, for every webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// How long a delivery is retried after it was queued.
    pub max_retry_hours: u64,
    /// The first retry's upper bound; each retry doubles it (full jitter:
    /// the wait is random below the bound).
    pub base_backoff_ms: u64,
    /// The bound stops doubling here.
    pub max_backoff_secs: u64,
    /// Tries answered with a 4xx (other than 410, 429) before giving up.
    pub max_client_error_attempts: u32,
    /// How long finished deliveries stay in the delivery log.
    pub retention_hours: u64,
    /// How long a rotated-out secret still signs (both signatures sent).
    pub rotation_overlap_secs: u64,
    /// Tripline's API as receivers reach it, for links in payloads.
    /// Default: `http://` and the listen address.
    pub public_url: Option<String>,
}

impl Default for DeliveryConfig {
    fn default() -> DeliveryConfig {
        DeliveryConfig {
            max_retry_hours: 24,
            base_backoff_ms: 1000,
            max_backoff_secs: 3600,
            max_client_error_attempts: 3,
            retention_hours: 24 * 7,
            rotation_overlap_secs: 24 * 3600,
            public_url: None,
        }
    }
}

/// Most webhooks (each has a worker task).
pub const MAX_WEBHOOKS: usize = 1000;

/// A label: the webhook's id.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabel {
    pub webhook: String,
}

/// Metrics, under `tripline_webhook_`.
#[derive(Debug, Clone)]
pub struct DeliverMetrics {
    pub attempts: Family<WebhookLabel, Counter>,
    pub attempt_errors: Family<WebhookLabel, Counter>,
    pub delivered: Family<WebhookLabel, Counter>,
    pub failed: Family<WebhookLabel, Counter>,
    pub outbox_depth: Gauge,
    pub outbox_oldest_age_seconds: Gauge,
    pub delivery_latency_seconds: Histogram,
}

impl Default for DeliverMetrics {
    fn default() -> DeliverMetrics {
        DeliverMetrics {
            attempts: Family::default(),
            attempt_errors: Family::default(),
            delivered: Family::default(),
            failed: Family::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_age_seconds: Gauge::default(),
            delivery_latency_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 24)),
        }
    }
}

impl DeliverMetrics {
    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tripline_webhook");
        r.register("attempts", "Requests sent to receivers", self.attempts.clone());
        r.register(
            "attempt_errors",
            "Requests that did not get a 2xx (each is retried or the delivery fails)",
            self.attempt_errors.clone(),
        );
        r.register(
            "delivered",
            "Deliveries a receiver answered with a 2xx",
            self.delivered.clone(),
        );
        r.register("failed", "Deliveries given up on", self.failed.clone());
        r.register(
            "outbox_depth",
            "Deliveries waiting to be sent",
            self.outbox_depth.clone(),
        );
        r.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest delivery waiting to be sent",
            self.outbox_oldest_age_seconds.clone(),
        );
        r.register(
            "delivery_latency_seconds",
            "From a delivery being queued (its alert durable) to the receiver's 2xx",
            self.delivery_latency_seconds.clone(),
        );
    }

    fn label(id: &str) -> WebhookLabel {
        WebhookLabel {
            webhook: id.to_string(),
        }
    }
}

/// A secret Tripline generated for a webhook from `tripline.toml`,
/// written to a private file for the operator to hand to the receiver.
#[derive(Debug, Clone)]
pub struct GeneratedSecret {
    pub webhook: String,
    pub path: PathBuf,
}

/// The answer of a test send.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub delivery_id: String,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

/// A webhook the workers serve.
struct Active {
    stored: Stored,
    selector: Selector,
    notify: Arc<Notify>,
}

struct Inner {
    store: Store,
    config: DeliveryConfig,
    guard: Guard,
    client: reqwest::Client,
    catalog: Catalog,
    base_url: String,
    webhooks: RwLock<BTreeMap<String, Arc<Active>>>,
    metrics: DeliverMetrics,
    runtime: OnceLock<(tokio::runtime::Handle, CancellationToken)>,
    stop: AtomicBool,
    consumer_thread: Mutex<Option<JoinHandle<()>>>,
    /// Why the queueing thread stopped for good, if it did.
    failure: Mutex<Option<String>>,
}

/// The outbox; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(schemas::time::format)
        .unwrap_or_default()
}

/// A delivery id: `msg_` and 32 hex digits of SHA-256 over its parts.
fn delivery_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

impl Outbox {
    /// Opens the outbox in `dir` (`outbox.redb`), with the webhooks of
    /// `tripline.toml` (`specs`, already validated) in place of the ones
    /// the file had at the last start. Nothing is sent until
    /// [`Outbox::start`].
    pub fn open(
        dir: &Path,
        specs: Vec<WebhookSpec>,
        config: DeliveryConfig,
        guard: Guard,
        metrics: DeliverMetrics,
        base_url: String,
    ) -> Result<(Outbox, Vec<GeneratedSecret>), DeliverError> {
        std::fs::create_dir_all(dir).map_err(|e| DeliverError::Store(format!("{}: {e}", dir.display())))?;
        let store = Store::open(&dir.join("outbox.redb"))?;
        let catalog = Catalog::builtin();
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(guard.clone()))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("Tripline-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DeliverError::Internal(format!("http client: {e}")))?;
        let now = now_ms();
        let mut generated = Vec::new();
        let existing: BTreeMap<String, Stored> =
            store.webhooks()?.into_iter().map(|w| (w.spec.id.clone(), w)).collect();
        let in_file: HashSet<&str> = specs.iter().map(|s| s.id.as_str()).collect();
        // Webhooks the file no longer has go, with their deliveries.
        for (id, w) in &existing {
            if w.source == Source::Config && !in_file.contains(id.as_str()) {
                store.delete_webhook(id)?;
                tracing::info!(webhook = %id, "webhook removed from the configuration: deleted with its deliveries");
            }
        }
        for spec in specs {
            let before = existing.get(&spec.id);
            if before.is_some_and(|b| b.source == Source::Api) {
                tracing::warn!(webhook = %spec.id, "a webhook of the configuration replaces the one made through the API with the same id");
            }
            let secret = match (&spec.secret, before) {
                (Some(s), _) => s.clone(),
                (None, Some(b)) if b.source == Source::Config => b.secret.clone(),
                (None, _) => {
                    let s = Secret::generate()?.reveal();
                    let path = dir.join(format!("{}.secret", spec.id));
                    std::fs::write(&path, format!("{s}\n"))
                        .map_err(|e| DeliverError::Store(format!("{}: {e}", path.display())))?;
                    generated.push(GeneratedSecret {
                        webhook: spec.id.clone(),
                        path,
                    });
                    s
                }
            };
            let previous = spec.previous_secret.clone().map(|p| (p, i64::MAX));
            // A receiver's 410 holds for the URL it answered for.
            let disabled = before.and_then(|b| b.disabled.clone()).filter(|d| d.url == spec.url);
            let stored = Stored {
                secret,
                previous,
                disabled,
                source: Source::Config,
                created_ms: before.map_or(now, |b| b.created_ms),
                updated_ms: now,
                spec: WebhookSpec {
                    secret: None,
                    previous_secret: None,
                    ..spec
                },
            };
            store.put_webhook(&stored)?;
        }
        let inner = Inner {
            store,
            config,
            guard,
            client,
            catalog,
            base_url,
            webhooks: RwLock::new(BTreeMap::new()),
            metrics,
            runtime: OnceLock::new(),
            stop: AtomicBool::new(false),
            consumer_thread: Mutex::new(None),
            failure: Mutex::new(None),
        };
        for w in inner.store.webhooks()? {
            let selector = w.spec.validate(&inner.catalog)?;
            inner.webhooks_mut().insert(
                w.spec.id.clone(),
                Arc::new(Active {
                    stored: w,
                    selector,
                    notify: Arc::new(Notify::new()),
                }),
            );
        }
        Ok((Outbox { inner: Arc::new(inner) }, generated))
    }

    /// The WAL position the outbox has queued everything before; a new
    /// outbox starts at `new` (alerts from before it existed are not
    /// sent).
    pub fn position(&self, new: Lsn) -> Result<Lsn, DeliverError> {
        Ok(self.inner.store.position()?.map_or(new, Lsn))
    }

    /// Starts one worker per webhook, and the upkeep (gauges, pruning) on
    /// `runtime`, until `shutdown`.
    pub fn start(&self, runtime: tokio::runtime::Handle, shutdown: CancellationToken) {
        if self.inner.runtime.set((runtime.clone(), shutdown.clone())).is_err() {
            return;
        }
        let ids: Vec<String> = self.inner.webhooks().keys().cloned().collect();
        for id in ids {
            self.spawn_worker(&id);
        }
        let inner = self.inner.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            let mut last_prune = Instant::now();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let i = inner.clone();
                let prune = last_prune.elapsed() >= Duration::from_secs(60);
                if prune {
                    last_prune = Instant::now();
                }
                let _ = tokio::task::spawn_blocking(move || i.upkeep(prune)).await;
            }
        });
    }

    fn spawn_worker(&self, id: &str) {
        let Some((rt, shutdown)) = self.inner.runtime.get() else {
            return;
        };
        let Some(active) = self.inner.active(id) else {
            return;
        };
        rt.spawn(work(
            self.inner.clone(),
            id.to_string(),
            active.notify.clone(),
            shutdown.clone(),
        ));
    }

    /// Starts queueing deliveries from `wal`, reading from `consumer`'s
    /// position (registered with [`Wal::open`] at [`Outbox::position`]).
    pub fn consume(&self, wal: Arc<Wal>, consumer: Consumer) -> Result<(), DeliverError> {
        let inner = self.inner.clone();
        let handle = std::thread::Builder::new()
            .name("tripline-outbox".into())
            .spawn(move || {
                if let Err(e) = inner.consume(&wal, &consumer) {
                    tracing::error!(error = %e, "webhook outbox stopped reading the write-ahead log");
                    *inner.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                }
            })
            .map_err(|e| DeliverError::Internal(format!("outbox thread: {e}")))?;
        *self.inner.consumer_thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(())
    }

    /// Waits for the queueing thread to finish what the WAL holds (call
    /// after closing the WAL), or stops it now with `now`.
    pub fn join(&self, now: bool) {
        if now {
            self.inner.stop.store(true, Ordering::SeqCst);
        }
        let handle = self
            .inner
            .consumer_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!("webhook outbox thread panicked");
            }
        }
    }

    /// Why the outbox stopped queueing deliveries for good, if it did
    /// (the log says more; alerts wait in the WAL until a restart).
    pub fn failure(&self) -> Option<String> {
        self.inner.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every webhook, as the API shows it.
    pub fn list(&self) -> Vec<View> {
        self.inner.webhooks().values().map(|a| a.stored.view()).collect()
    }

    /// One webhook.
    pub fn get(&self, id: &str) -> Result<View, DeliverError> {
        self.inner
            .active(id)
            .map(|a| a.stored.view())
            .ok_or_else(|| not_found(id))
    }

    /// Adds a webhook through the API; returns it and its secret (shown
    /// this once).
    pub fn create(&self, spec: WebhookSpec) -> Result<(View, String), DeliverError> {
        let selector = spec.validate(&self.inner.catalog)?;
        if self.inner.active(&spec.id).is_some() {
            return Err(DeliverError::Conflict(format!("webhook {} exists", spec.id)));
        }
        // Each webhook has a worker task: their number is bounded.
        if self.inner.webhooks().len() >= MAX_WEBHOOKS {
            return Err(DeliverError::BadWebhook(format!(
                "at most {MAX_WEBHOOKS} webhooks: delete one first"
            )));
        }
        let secret = match &spec.secret {
            Some(s) => s.clone(),
            None => Secret::generate()?.reveal(),
        };
        let now = now_ms();
        let stored = Stored {
            secret: secret.clone(),
            previous: None,
            disabled: None,
            source: Source::Api,
            created_ms: now,
            updated_ms: now,
            spec: WebhookSpec {
                secret: None,
                previous_secret: None,
                ..spec
            },
        };
        self.inner.store.put_webhook(&stored)?;
        let view = stored.view();
        let id = stored.spec.id.clone();
        self.inner.webhooks_mut().insert(
            id.clone(),
            Arc::new(Active {
                stored,
                selector,
                notify: Arc::new(Notify::new()),
            }),
        );
        self.spawn_worker(&id);
        tracing::info!(webhook = %id, "webhook created");
        Ok((view, secret))
    }

    /// Replaces a webhook made through the API (a PUT: the whole spec; the
    /// secret stays unless one is given). Enabling it again clears a 410.
    pub fn replace(&self, id: &str, spec: WebhookSpec) -> Result<View, DeliverError> {
        let old = self.inner.active(id).ok_or_else(|| not_found(id))?;
        if old.stored.source == Source::Config {
            return Err(from_config(id));
        }
        if spec.id != id {
            return Err(DeliverError::BadWebhook(format!(
                "the body's id {:?} is not the path's {id:?}",
                spec.id
            )));
        }
        let selector = spec.validate(&self.inner.catalog)?;
        let mut stored = old.stored.clone();
        if let Some(s) = &spec.secret {
            stored.secret = s.clone();
            stored.previous = None;
        }
        if spec.enabled {
            stored.disabled = None;
        }
        stored.updated_ms = now_ms();
        stored.spec = WebhookSpec {
            secret: None,
            previous_secret: None,
            ..spec
        };
        self.inner.store.put_webhook(&stored)?;
        let view = stored.view();
        self.inner.put_active(stored, selector, old.notify.clone());
        Ok(view)
    }

    /// Deletes a webhook made through the API, with its delivery log.
    pub fn delete(&self, id: &str) -> Result<(), DeliverError> {
        let old = self.inner.active(id).ok_or_else(|| not_found(id))?;
        if old.stored.source == Source::Config {
            return Err(from_config(id));
        }
        self.inner.webhooks_mut().remove(id);
        old.notify.notify_one();
        self.inner.store.delete_webhook(id)?;
        tracing::info!(webhook = %id, "webhook deleted");
        Ok(())
    }

    /// A new secret for a webhook; the old one keeps signing (both
    /// signatures are sent) for `rotation_overlap_secs`. Returns the new
    /// secret, shown this once.
    pub fn rotate(&self, id: &str) -> Result<String, DeliverError> {
        let old = self.inner.active(id).ok_or_else(|| not_found(id))?;
        if old.stored.source == Source::Config && old.stored.spec.secret.is_some() {
            return Err(from_config(id));
        }
        let secret = Secret::generate()?.reveal();
        let mut stored = old.stored.clone();
        let overlap = i64::try_from(self.inner.config.rotation_overlap_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        stored.previous = Some((stored.secret.clone(), now_ms().saturating_add(overlap)));
        stored.secret = secret.clone();
        stored.updated_ms = now_ms();
        self.inner.store.put_webhook(&stored)?;
        self.inner.put_active(stored, old.selector.clone(), old.notify.clone());
        tracing::info!(webhook = %id, "webhook secret rotated");
        Ok(secret)
    }

    /// Sends a signed `webhook.test` now and records it in the delivery
    /// log.
    pub async fn test(&self, id: &str) -> Result<TestResult, DeliverError> {
        let active = self.inner.active(id).ok_or_else(|| not_found(id))?;
        let now = now_ms();
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| DeliverError::Internal(format!("randomness: {e}")))?;
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let did = delivery_id(&[id, "webhook.test", &nonce]);
        let body = render(
            active.stored.spec.format,
            EventType::Test,
            &Subject::Test,
            id,
            &rfc3339_ms(now),
            &self.inner.base_url,
        );
        let mut d = Delivery::new(did.clone(), id, EventType::Test, None, body, now);
        let outcome = self.inner.send(&active.stored, &d).await;
        d.push_attempt(Attempt {
            at_ms: now,
            status: outcome.status,
            latency_ms: outcome.latency_ms,
            error: outcome.error.clone(),
            next_retry_ms: None,
        });
        d.state = if outcome.ok() { State::Delivered } else { State::Failed };
        d.next_attempt_ms = None;
        d.done_ms = Some(now_ms());
        let inner = self.inner.clone();
        let saved = d.clone();
        tokio::task::spawn_blocking(move || inner.store.record_finished(&saved))
            .await
            .map_err(|e| DeliverError::Internal(e.to_string()))??;
        Ok(TestResult {
            delivery_id: did,
            status: outcome.status,
            latency_ms: outcome.latency_ms,
            error: outcome.error,
        })
    }

    /// The delivery log of a webhook, newest first.
    pub fn deliveries(
        &self,
        id: &str,
        state: Option<State>,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeliveryView>, DeliverError> {
        if self.inner.active(id).is_none() {
            return Err(not_found(id));
        }
        Ok(self
            .inner
            .store
            .list(id, state, before_ms, limit)?
            .iter()
            .map(DeliveryView::of)
            .collect())
    }

    /// Sends a delivery again, with its `webhook-id`.
    pub fn retry(&self, id: &str, delivery: &str) -> Result<DeliveryView, DeliverError> {
        let active = self.inner.active(id).ok_or_else(|| not_found(id))?;
        let d = self
            .inner
            .store
            .retry(id, delivery, now_ms())?
            .ok_or_else(|| DeliverError::NotFound(format!("no delivery {delivery} for webhook {id}")))?;
        active.notify.notify_one();
        Ok(DeliveryView::of(&d))
    }
}

fn not_found(id: &str) -> DeliverError {
    DeliverError::NotFound(format!("no webhook {id}"))
}

fn from_config(id: &str) -> DeliverError {
    DeliverError::Conflict(format!(
        "webhook {id} is defined in tripline.toml: change it there and restart"
    ))
}

/// A delivery as the API shows it (times in RFC 3339, no body).
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub id: String,
    pub webhook_id: String,
    pub event_type: EventType,
    pub alert_id: Option<String>,
    pub created_at: String,
    pub status: State,
    pub attempt_count: u32,
    pub attempts: Vec<AttemptView>,
    pub next_attempt_at: Option<String>,
    pub finished_at: Option<String>,
}

/// One try as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub at: String,
    pub http_status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub next_retry_at: Option<String>,
}

impl DeliveryView {
    fn of(d: &Delivery) -> DeliveryView {
        DeliveryView {
            id: d.id.clone(),
            webhook_id: d.webhook_id.clone(),
            event_type: d.event_type,
            alert_id: d.alert_id.clone(),
            created_at: rfc3339_ms(d.created_ms),
            status: d.state,
            attempt_count: d.attempt_count,
            attempts: d
                .attempts
                .iter()
                .map(|a| AttemptView {
                    at: rfc3339_ms(a.at_ms),
                    http_status: a.status,
                    latency_ms: a.latency_ms,
                    error: a.error.clone(),
                    next_retry_at: a.next_retry_ms.map(rfc3339_ms),
                })
                .collect(),
            next_attempt_at: d.next_attempt_ms.filter(|_| d.state == State::Pending).map(rfc3339_ms),
            finished_at: d.done_ms.map(rfc3339_ms),
        }
    }
}

/// What one request came to.
#[derive(Debug, Default)]
struct Outcome {
    status: Option<u16>,
    latency_ms: u64,
    error: Option<String>,
    /// The egress guard refused the target: retrying will not help.
    refused: bool,
    retry_after_ms: Option<i64>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

impl Inner {
    fn webhooks(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Active>>> {
        self.webhooks.read().unwrap_or_else(|p| p.into_inner())
    }

    fn webhooks_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Active>>> {
        self.webhooks.write().unwrap_or_else(|p| p.into_inner())
    }

    fn active(&self, id: &str) -> Option<Arc<Active>> {
        self.webhooks().get(id).cloned()
    }

    fn put_active(&self, stored: Stored, selector: Selector, notify: Arc<Notify>) {
        let id = stored.spec.id.clone();
        self.webhooks_mut().insert(
            id,
            Arc::new(Active {
                stored,
                selector,
                notify: notify.clone(),
            }),
        );
        notify.notify_one();
    }

    /// Reads the WAL, queueing deliveries, until it is closed (or `stop`).
    fn consume(&self, wal: &Wal, consumer: &Consumer) -> Result<(), DeliverError> {
        let mut reader = wal.reader(consumer);
        let mut unsaved: Option<Lsn> = None;
        let mut last_save = Instant::now();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let read = reader
                .next_raw(Duration::from_millis(200))
                .map_err(|e| DeliverError::Wal(e.to_string()))?;
            match read {
                Read::Record(raw) => {
                    let deliveries = self.deliveries_for(&raw.payload);
                    if deliveries.is_empty() {
                        unsaved = Some(raw.end);
                    } else {
                        let queued = self.store.enqueue(deliveries, raw.end.0)?;
                        consumer.advance(raw.end);
                        unsaved = None;
                        last_save = Instant::now();
                        let mut woken = HashSet::new();
                        for d in queued {
                            if woken.insert(d.webhook_id.clone()) {
                                if let Some(a) = self.active(&d.webhook_id) {
                                    a.notify.notify_one();
                                }
                            }
                        }
                    }
                }
                Read::Idle => {}
                Read::Closed => break,
            }
            // Records without alerts move the position lazily: replaying
            // them after a crash queues nothing.
            if let Some(p) = unsaved {
                if last_save.elapsed() >= Duration::from_secs(1) {
                    self.store.enqueue(Vec::new(), p.0)?;
                    consumer.advance(p);
                    unsaved = None;
                    last_save = Instant::now();
                }
            }
        }
        if let Some(p) = unsaved {
            self.store.enqueue(Vec::new(), p.0)?;
            consumer.advance(p);
        }
        Ok(())
    }

    /// The deliveries the alert versions in a record's payload make.
    fn deliveries_for(&self, payload: &[u8]) -> Vec<Delivery> {
        let needle = ALERTS_DATASET.as_bytes();
        if memchr::memmem::find(payload, needle).is_none() {
            return Vec::new();
        }
        let webhooks: Vec<Arc<Active>> = self.webhooks().values().cloned().collect();
        if webhooks.is_empty() {
            return Vec::new();
        }
        let now = now_ms();
        let stamp = rfc3339_ms(now);
        let mut out = Vec::new();
        for line in payload.split(|&b| b == b'\n') {
            if memchr::memmem::find(line, needle).is_none() {
                continue;
            }
            let json = match line.first() {
                Some(b'a' | b'c') => &line[1..],
                _ => line,
            };
            let Ok(event) = serde_json::from_slice::<Event>(json) else {
                continue;
            };
            let Some(alert) = Alert::from_event(&event) else {
                continue;
            };
            let mut kinds = vec![(EventType::Created, String::new())];
            if let Some(t) = alert.updated_at {
                kinds.push((
                    EventType::Updated,
                    format!("{}:{}", schemas::time::format(t), alert.status.as_str()),
                ));
            }
            for w in &webhooks {
                for (kind, version) in &kinds {
                    if !w.selector.wants(*kind, &alert, &event) {
                        continue;
                    }
                    let id = delivery_id(&[&w.stored.spec.id, &alert.id, kind.as_str(), version]);
                    let body = render(
                        w.stored.spec.format,
                        *kind,
                        &Subject::Alert(&alert),
                        &w.stored.spec.id,
                        &stamp,
                        &self.base_url,
                    );
                    out.push(Delivery::new(
                        id,
                        &w.stored.spec.id,
                        *kind,
                        Some(alert.id.clone()),
                        body,
                        now,
                    ));
                }
            }
        }
        out
    }

    /// Gauges, and pruning of the delivery log.
    fn upkeep(&self, prune: bool) {
        match self.store.depth() {
            Ok(d) => {
                self.metrics
                    .outbox_depth
                    .set(i64::try_from(d.pending).unwrap_or(i64::MAX));
                let age = d.oldest_ms.map_or(0, |o| now_ms().saturating_sub(o) / 1000);
                self.metrics.outbox_oldest_age_seconds.set(age.max(0));
            }
            Err(e) => tracing::warn!(error = %e, "reading the outbox depth failed"),
        }
        if prune {
            let keep = i64::try_from(self.config.retention_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX);
            let before = now_ms().saturating_sub(keep);
            loop {
                match self.store.prune(before, 1000) {
                    Ok(1000) => continue,
                    Ok(n) => {
                        if n > 0 {
                            tracing::info!(deliveries = n, "pruned finished deliveries past the retention");
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "pruning the delivery log failed");
                        break;
                    }
                }
            }
        }
    }

    /// Posts `d` to the webhook, signed with its secrets.
    async fn send(&self, stored: &Stored, d: &Delivery) -> Outcome {
        let started = Instant::now();
        let elapsed = |s: Instant| u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX);
        let url = match url::Url::parse(&stored.spec.url) {
            Ok(u) => u,
            Err(e) => {
                return Outcome {
                    error: Some(format!("url: {e}")),
                    refused: true,
                    ..Outcome::default()
                }
            }
        };
        if let Err(r) = self.guard.check_url(&url) {
            return Outcome {
                error: Some(format!("refused by the egress guard: {r}")),
                refused: true,
                ..Outcome::default()
            };
        }
        let now = now_ms();
        let secrets = match stored.secrets(now) {
            Ok(s) => s,
            Err(e) => {
                return Outcome {
                    error: Some(e.to_string()),
                    refused: true,
                    ..Outcome::default()
                }
            }
        };
        let timestamp = now / 1000;
        let refs: Vec<&Secret> = secrets.iter().collect();
        let signature = signature_header(&refs, &d.id, timestamp, d.body.as_bytes());
        let mut req = self
            .client
            .post(url)
            .timeout(Duration::from_secs(stored.spec.timeout_secs))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature);
        for (k, v) in &stored.spec.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.body(d.body.clone()).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after_ms(v, now));
                let error = (!resp.status().is_success()).then(|| {
                    let location = resp
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .filter(|_| resp.status().is_redirection())
                        .map(|l| format!(" to {l} (redirects are not followed)"))
                        .unwrap_or_default();
                    format!("the receiver answered {status}{location}")
                });
                Outcome {
                    status: Some(status),
                    latency_ms: elapsed(started),
                    error,
                    refused: false,
                    retry_after_ms: retry_after,
                }
            }
            Err(e) => {
                let mut refused = false;
                let mut chain = vec![e.to_string()];
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    if let Some(ResolveError::Refused { .. }) = s.downcast_ref::<ResolveError>() {
                        refused = true;
                    }
                    chain.push(s.to_string());
                    source = s.source();
                }
                chain.dedup();
                let what = if e.is_timeout() {
                    format!("timed out after {} s", stored.spec.timeout_secs)
                } else {
                    chain.join(": ")
                };
                Outcome {
                    latency_ms: elapsed(started),
                    error: Some(if refused {
                        format!(
                            "refused by the egress guard: {}",
                            chain.last().cloned().unwrap_or_default()
                        )
                    } else {
                        what
                    }),
                    refused,
                    ..Outcome::default()
                }
            }
        }
    }

    /// The wait before try `n` (1 = the first retry): random below
    /// `base * 2^(n-1)`, capped (full jitter).
    fn backoff_ms(&self, n: u32) -> i64 {
        let cap = self.config.max_backoff_secs.saturating_mul(1000).max(1);
        let bound = self
            .config
            .base_backoff_ms
            .saturating_mul(1u64.checked_shl(n.saturating_sub(1).min(62)).unwrap_or(u64::MAX))
            .min(cap)
            .max(1);
        let r = getrandom::u64().unwrap_or(bound / 2);
        i64::try_from((r % bound).max(50)).unwrap_or(i64::MAX)
    }

    /// One try of delivery `id`, recorded.
    async fn attempt(self: Arc<Inner>, active: Arc<Active>, id: String) -> String {
        let i = self.clone();
        let did = id.clone();
        let loaded = tokio::task::spawn_blocking(move || i.store.get(&did)).await;
        let mut d = match loaded {
            Ok(Ok(Some(d))) => d,
            Ok(Ok(None)) => return id,
            Ok(Err(e)) => {
                tracing::error!(delivery = %id, error = %e, "reading a delivery failed");
                return id;
            }
            Err(_) => return id,
        };
        let now = now_ms();
        if d.state != State::Pending || d.next_attempt_ms.is_some_and(|n| n > now.saturating_add(1000)) {
            return id;
        }
        let label = DeliverMetrics::label(&d.webhook_id);
        self.metrics.attempts.get_or_create(&label).inc();
        let outcome = self.send(&active.stored, &d).await;
        let at = now_ms();
        let deadline = d
            .created_ms
            .saturating_add(i64::try_from(self.config.max_retry_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX));
        let mut disable = None;
        let next = if outcome.ok() {
            None
        } else {
            self.metrics.attempt_errors.get_or_create(&label).inc();
            match outcome.status {
                _ if outcome.refused => None,
                Some(410) => {
                    disable = Some(format!("the receiver answered 410 Gone to delivery {}", d.id));
                    None
                }
                Some(s @ (429 | 503)) if outcome.retry_after_ms.is_some() => {
                    let _ = s;
                    outcome.retry_after_ms.map(|w| at.saturating_add(w))
                }
                Some(s) if s < 500 && s != 429 && s != 408 => {
                    d.client_errors = d.client_errors.saturating_add(1);
                    (d.client_errors < self.config.max_client_error_attempts)
                        .then(|| at.saturating_add(self.backoff_ms(d.attempt_count.saturating_add(1))))
                }
                _ => Some(at.saturating_add(self.backoff_ms(d.attempt_count.saturating_add(1)))),
            }
        };
        let next = next.filter(|n| *n <= deadline);
        d.push_attempt(Attempt {
            at_ms: at,
            status: outcome.status,
            latency_ms: outcome.latency_ms,
            error: outcome.error.clone(),
            next_retry_ms: next,
        });
        if outcome.ok() {
            d.state = State::Delivered;
            d.next_attempt_ms = None;
            d.done_ms = Some(at);
            self.metrics.delivered.get_or_create(&label).inc();
            let secs = at.saturating_sub(d.created_ms).max(0) as f64 / 1000.0;
            self.metrics.delivery_latency_seconds.observe(secs);
        } else if let Some(n) = next {
            d.next_attempt_ms = Some(n);
            tracing::debug!(webhook = %d.webhook_id, delivery = %d.id, error = ?outcome.error, retry_in_ms = n - at, "delivery will be retried");
        } else {
            d.state = State::Failed;
            d.next_attempt_ms = None;
            d.done_ms = Some(at);
            self.metrics.failed.get_or_create(&label).inc();
            tracing::warn!(webhook = %d.webhook_id, delivery = %d.id, error = ?outcome.error, attempts = d.attempt_count, "delivery failed for good");
        }
        let i = self.clone();
        let saved = tokio::task::spawn_blocking(move || i.store.update(&d)).await;
        if let Ok(Err(e)) | Err(e) = saved.map_err(|e| DeliverError::Internal(e.to_string())) {
            tracing::error!(delivery = %id, error = %e, "recording a delivery attempt failed");
        }
        if let Some(reason) = disable {
            let i = self.clone();
            let _ = tokio::task::spawn_blocking(move || i.disable(&active, reason)).await;
        }
        id
    }

    fn disable(&self, active: &Active, reason: String) {
        let mut stored = active.stored.clone();
        tracing::warn!(webhook = %stored.spec.id, %reason, "webhook disabled");
        stored.disabled = Some(Disabled {
            reason,
            at_ms: now_ms(),
            url: stored.spec.url.clone(),
        });
        if let Err(e) = self.store.put_webhook(&stored) {
            tracing::error!(webhook = %stored.spec.id, error = %e, "saving a disabled webhook failed");
        }
        self.put_active(stored, active.selector.clone(), active.notify.clone());
    }
}

/// `Retry-After` as milliseconds from `now_ms`: delay-seconds or an
/// HTTP-date.
fn retry_after_ms(v: &str, now_ms: i64) -> Option<i64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return i64::try_from(secs.saturating_mul(1000)).ok();
    }
    let t = schemas::time::parse_str(v)?;
    let at = i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()?;
    Some(at.saturating_sub(now_ms).max(0))
}

/// A webhook's worker: sends its due deliveries, at most `max_in_flight`
/// at once, until the webhook is deleted or the daemon stops.
async fn work(inner: Arc<Inner>, id: String, notify: Arc<Notify>, shutdown: CancellationToken) {
    let mut running: JoinSet<String> = JoinSet::new();
    let mut busy: HashSet<String> = HashSet::new();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let Some(active) = inner.active(&id) else {
            break;
        };
        let mut wake = Duration::from_secs(60);
        if active.stored.active() {
            let room = (active.stored.spec.max_in_flight as usize).saturating_sub(busy.len());
            let i = inner.clone();
            let (wid, skip) = (id.clone(), busy.clone());
            let found = tokio::task::spawn_blocking(move || -> Result<_, DeliverError> {
                let due = if room > 0 {
                    i.store.due(&wid, now_ms(), room + skip.len())?
                } else {
                    Vec::new()
                };
                let next = i.store.next_due(&wid, &skip)?;
                Ok((due, next))
            })
            .await;
            match found {
                Ok(Ok((due, next))) => {
                    let mut started = 0;
                    for (_, did) in due {
                        if started < room && busy.insert(did.clone()) {
                            started += 1;
                            running.spawn(inner.clone().attempt(active.clone(), did));
                        }
                    }
                    if busy.len() < active.stored.spec.max_in_flight as usize {
                        if let Some(n) = next {
                            let ms = n.saturating_sub(now_ms()).max(0);
                            wake = wake.min(Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
                        }
                    }
                    if started > 0 {
                        continue;
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(webhook = %id, error = %e, "reading the outbox failed");
                    wake = Duration::from_secs(5);
                }
                Err(_) => break,
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = notify.notified() => {}
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok(did) = done {
                    busy.remove(&did);
                } else {
                    // A panicked or cancelled try: its id is unknown here.
                    busy.clear();
                }
            }
            _ = tokio::time::sleep(wake) => {}
        }
    }
    // Tries in flight are cancelled: their deliveries stay pending and are
    // sent again, with the same webhook-id, after the restart.
    running.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(retry_after_ms("3", 0), Some(3000));
        let now = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(30_000));
        assert_eq!(retry_after_ms("soon", now), None);
    }

    #[test]
    fn delivery_ids_depend_on_every_part() {
        let a = delivery_id(&["w", "alert", "alert.created", ""]);
        assert_eq!(a, delivery_id(&["w", "alert", "alert.created", ""]));
        assert_ne!(a, delivery_id(&["w2", "alert", "alert.created", ""]));
        assert_ne!(delivery_id(&["ab", "c"]), delivery_id(&["a", "bc"]));
        assert!(a.starts_with("msg_") && a.len() == 36);
    }
}
