//! The HTTP server: hyper's HTTP/1 under the limits `axum::serve` leaves
//! out. `axum::serve` builds its connections without a timer, so hyper's
//! header timeout is silently off, and it takes every connection the
//! process can open: a client sending half a header, or thousands of idle
//! sockets, could hold the node. Here:
//!
//! - at most `max_connections` connections; a connection past that is
//!   closed at once (counted), so health checks and shippers keep a way in
//!   once the slow ones are cut;
//! - `header_read_timeout` bounds the wait for a request's header, and with
//!   it the idle wait between keep-alive requests (hyper starts the timer
//!   whenever it waits for a head);
//! - body reads are bounded by the handlers ([`crate::api`]), which check
//!   the token before they read a byte of the body.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Connection limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Longest wait for a request header, and for the next request on an
    /// idle keep-alive connection.
    pub header_read_timeout: Duration,
    /// Longest wait for open connections to finish at shutdown.
    pub drain_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets open
/// connections finish their requests (up to `drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    refused: Counter,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused.inc();
            tracing::debug!(%peer, max_connections = limits.max_connections, "connection limit reached, closing a new connection");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone().map_request(
            move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(drain_timeout_s = limits.drain_timeout.as_secs(), "connections still open at shutdown were cut");
        }
    }
}
