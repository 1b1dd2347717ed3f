//! The API in process: `router(state)` over real parts (a WAL, an indexer,
//! partitions and tokens in a temp dir), driven with `oneshot`, where a
//! socket is not the point.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use index::{EventSchema, IndexMetrics, Indexer, IndexerConfig, Store};
use ingest::{IngestConfig, IngestMetrics, Ingestor};
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tripline::api::{router, ApiLimits, AppState};
use tripline::auth::TokenStore;
use wal::{Consumer, Lsn, Wal, WalConfig, WalMetrics};

const ADMIN: &str = "router-test-admin-token-0123456789";

struct Node {
    state: AppState,
    wal: Arc<Wal>,
    indexer: Option<Indexer>,
    _dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node::with(IndexerConfig::default(), 1 << 30)
    }

    fn with(indexer_config: IndexerConfig, max_unindexed_bytes: u64) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(&dir.path().join("index"), EventSchema::new(schemas::Catalog::builtin())).unwrap());
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let consumer = Consumer::new("index", Lsn(0));
        let indexer = Indexer::spawn(
            store.clone(),
            indexer_config,
            rx,
            IndexMetrics::default(),
            consumer.clone(),
        )
        .unwrap();
        let (wal, _) = Wal::open(
            WalConfig::new(dir.path().join("wal")),
            vec![consumer],
            Lsn(0),
            WalMetrics::default(),
            tx,
        )
        .unwrap();
        let wal = Arc::new(wal);
        let ingestor = OnceLock::new();
        let _ = ingestor.set(Ingestor::new(
            wal.clone(),
            IngestConfig::default(),
            IngestMetrics::default(),
        ));
        let (tokens, _) = TokenStore::open(dir.path(), Some(ADMIN)).unwrap();
        let state = AppState {
            ingestor: Arc::new(ingestor),
            store,
            index_health: indexer.health(),
            tokens: Arc::new(tokens),
            auth_throttle: Arc::new(tripline::api::AuthThrottle::new(30, Duration::from_secs(60))),
            registry: Arc::new(Registry::default()),
            metrics_public: false,
            search_permits: Arc::new(Semaphore::new(2)),
            default_limit: 100,
            limits: ApiLimits {
                max_body_bytes: 1 << 20,
                body_read_timeout: Duration::from_secs(5),
                search_timeout: Duration::from_secs(5),
                max_unindexed_bytes,
            },
            ready: Arc::new(AtomicBool::new(true)),
            detection: Arc::new(OnceLock::new()),
            outbox: None,
        };
        Node {
            state,
            wal,
            indexer: Some(indexer),
            _dir: dir,
        }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.wal.close();
        if let Some(i) = self.indexer.take() {
            i.join();
        }
    }
}

fn ingest() -> axum::http::request::Builder {
    Request::post("/api/v1/ingest?source=t").header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
}

/// M4: the search body was read and parsed before the token was checked.
#[tokio::test]
async fn a_broken_search_body_without_a_token_gets_401_not_400() {
    let node = Node::new();
    let (status, _) = node
        .send(Request::post("/api/v1/search").body(Body::from("x")).unwrap())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = node
        .send(
            Request::post("/api/v1/search")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// L11: a Content-Encoding that is not visible ASCII, or several of them,
/// were read as no coding: a compressed body was stored as garbage lines.
#[tokio::test]
async fn an_unreadable_or_repeated_content_encoding_gets_415() {
    let node = Node::new();
    let bad = axum::http::HeaderValue::from_bytes(b"gzip\xff").unwrap();
    let (status, body) = node
        .send(
            ingest()
                .header(header::CONTENT_ENCODING, bad)
                .body(Body::from("{}\n"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, body) = node
        .send(
            ingest()
                .header(header::CONTENT_ENCODING, "gzip")
                .header(header::CONTENT_ENCODING, "identity")
                .body(Body::from("{}\n"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, body) = node.send(ingest().body(Body::from("{}\n")).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);
}

#[tokio::test]
async fn an_ingest_body_over_the_wire_limit_gets_413_naming_it() {
    let node = Node::new();
    let big = vec![b'x'; 2 << 20];
    let (status, body) = node.send(ingest().body(Body::from(big)).unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("1048576"), "{body}");
}

#[tokio::test]
async fn readyz_answers_json_naming_each_part() {
    let node = Node::new();
    let (status, body) = node.send(Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["wal"], "ok");
    assert_eq!(body["index"], "ok");
    assert_eq!(body["wal_damage"], Value::Null);
}

/// M6: nothing bounded how far the WAL could run ahead of the indexer, so a
/// stalled indexer let the log fill the disk.
#[tokio::test]
async fn ingest_answers_429_while_indexing_lags_the_log_past_the_limit() {
    let never_commits = IndexerConfig {
        commit_interval: Duration::from_secs(3600),
        ..IndexerConfig::default()
    };
    let node = Node::with(never_commits, 100);
    let (status, body) = node
        .send(ingest().body(Body::from("{\"message\":\"first\"}\n")).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = router(node.state.clone())
        .oneshot(ingest().body(Body::from("{}\n")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
}
