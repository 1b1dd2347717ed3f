//! Syslog listeners: TCP (RFC 6587 framing, both kinds) and UDP (one
//! message a datagram, RFC 5426) on one address.
//!
//! Syslog carries no credential, so a listener takes connections and
//! datagrams only from its allow list of source networks (default:
//! loopback); anything else is dropped before a byte is read, and counted.
//!
//! What a listener reads goes through the same parse, normalize and WAL
//! path as an HTTP body ([`Ingestor::ingest_frames`]). A TCP connection is
//! read in rounds: the frames a read brings are appended to the WAL as one
//! batch, and the connection is not read again until that batch is
//! fsynced, so a fast sender is slowed by TCP's own flow control, never
//! buffered without bound. UDP has no flow control: datagrams wait in a
//! bounded queue, and those that find it full are dropped and counted.
//!
//! On shutdown a listener stops reading, appends the whole frames it has
//! read, and returns.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::format::Format;
use crate::syslog::octet::{next_frame, Frame, FramingError};
use crate::{IngestError, Ingestor};

/// A syslog listener's settings.
#[derive(Debug, Clone)]
pub struct SyslogConfig {
    /// The source (`event.dataset`) its events are stored as.
    pub source: String,
    /// The format of its frames.
    pub format: Format,
    /// Source networks allowed to send.
    pub allow: Vec<IpNet>,
    /// TCP connections open at once; more are closed at once.
    pub max_connections: usize,
    /// A TCP connection silent this long is closed.
    pub idle_timeout: Duration,
    /// Longest frame. An octet count over it closes the connection; a line
    /// over it is stored cut to this length, the rest of it skipped.
    pub max_frame_bytes: usize,
    /// Most bytes a connection reads before it appends them to the WAL.
    pub max_read_bytes: usize,
    /// UDP datagrams queued for the WAL; more are dropped and counted.
    pub udp_queue: usize,
    /// While the log holds more bytes than this that its consumers have
    /// not released (the indexer lags or has failed), the listener reads
    /// nothing more: the WAL cannot grow until the disk is full.
    pub max_unindexed_bytes: u64,
}

impl Default for SyslogConfig {
    fn default() -> SyslogConfig {
        SyslogConfig {
            source: "syslog".to_string(),
            format: Format::Syslog,
            allow: vec![loopback_v4(), loopback_v6()],
            max_connections: 256,
            idle_timeout: Duration::from_secs(600),
            max_frame_bytes: 64 << 10,
            max_read_bytes: 128 << 10,
            udp_queue: 16_384,
            max_unindexed_bytes: 1 << 30,
        }
    }
}

fn loopback_v4() -> IpNet {
    "127.0.0.0/8".parse().expect("a valid network literal")
}

fn loopback_v6() -> IpNet {
    "::1/128".parse().expect("a valid network literal")
}

impl SyslogConfig {
    /// Whether `addr` may send (an IPv4 address mapped into IPv6, as a
    /// dual-stack socket reports it, is checked as IPv4).
    pub fn allows(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.allow.iter().any(|net| net.contains(&addr))
    }
}

/// Labels: the transport.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Transport {
    /// `tcp` or `udp`.
    pub transport: &'static str,
}

/// Counters of the syslog listeners.
#[derive(Debug, Clone, Default)]
pub struct SyslogMetrics {
    /// Frames (TCP) and datagrams (UDP) appended to the WAL.
    pub frames: Family<Transport, Counter>,
    /// Connections and datagrams from addresses not on the allow list.
    pub denied: Family<Transport, Counter>,
    /// Connections closed at once because the connection limit was reached.
    pub refused: Counter,
    /// TCP connections open now.
    pub connections: Gauge,
    /// Connections closed for a bad or oversized octet count.
    pub framing_errors: Counter,
    /// Lines longer than the frame limit, stored cut.
    pub truncated: Counter,
    /// Connections closed after the idle timeout.
    pub idle_closed: Counter,
    /// Datagrams dropped because the queue to the WAL was full.
    pub udp_dropped: Counter,
    /// Frames read but not made durable (the WAL refused them); the
    /// connection was closed.
    pub lost: Family<Transport, Counter>,
    /// Frames read and not yet fsynced: what a crash now would lose of what
    /// Tripline has read.
    pub pending: Gauge,
}

impl SyslogMetrics {
    /// Registers every metric under `tripline_syslog_`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tripline_syslog_frames",
            "Syslog frames and datagrams appended to the WAL",
            self.frames.clone(),
        );
        registry.register(
            "tripline_syslog_denied",
            "Syslog connections and datagrams dropped: source not on the allow list",
            self.denied.clone(),
        );
        registry.register(
            "tripline_syslog_connections_refused",
            "Syslog TCP connections closed at once: connection limit reached",
            self.refused.clone(),
        );
        registry.register(
            "tripline_syslog_connections",
            "Syslog TCP connections open",
            self.connections.clone(),
        );
        registry.register(
            "tripline_syslog_framing_errors",
            "Syslog TCP connections closed for a bad or oversized octet count",
            self.framing_errors.clone(),
        );
        registry.register(
            "tripline_syslog_truncated",
            "Syslog lines over the frame limit, stored cut to it",
            self.truncated.clone(),
        );
        registry.register(
            "tripline_syslog_idle_closed",
            "Syslog TCP connections closed after the idle timeout",
            self.idle_closed.clone(),
        );
        registry.register(
            "tripline_syslog_udp_dropped",
            "Syslog UDP datagrams dropped: the queue to the WAL was full",
            self.udp_dropped.clone(),
        );
        registry.register(
            "tripline_syslog_frames_pending",
            "Syslog frames read and not yet fsynced in the WAL",
            self.pending.clone(),
        );
        registry.register(
            "tripline_syslog_lost",
            "Syslog frames read but refused by the WAL (the connection was closed)",
            self.lost.clone(),
        );
    }
}

const TCP: Transport = Transport { transport: "tcp" };
const UDP: Transport = Transport { transport: "udp" };

/// Binds TCP and UDP on one address. With port 0, both get the same free
/// port (tried a few times, as the UDP port may be taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, UdpSocket)> {
    let mut last = None;
    for _ in 0..16 {
        let tcp = TcpListener::bind(addr).await?;
        let port = tcp.local_addr()?.port();
        match UdpSocket::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(udp) => return Ok((tcp, udp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port for both TCP and UDP")))
}

/// Accepts syslog connections on `listener` until `shutdown`, then waits
/// for every connection to append what it has read.
pub async fn run_tcp(
    listener: TcpListener,
    ingestor: Ingestor,
    config: Arc<SyslogConfig>,
    metrics: SyslogMetrics,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "syslog accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !config.allows(peer.ip()) {
            metrics.denied.get_or_create(&TCP).inc();
            tracing::debug!(%peer, "syslog connection from outside the allow list dropped");
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.refused.inc();
            continue;
        };
        let conn = Connection {
            ingestor: ingestor.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
            peer,
        };
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            conn.metrics.connections.inc();
            conn.serve(stream, shutdown).await;
            conn.metrics.connections.dec();
            drop(slot);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

struct Connection {
    ingestor: Ingestor,
    config: Arc<SyslogConfig>,
    metrics: SyslogMetrics,
    peer: SocketAddr,
}

/// Why a connection stops.
enum Stop {
    /// The sender closed it.
    Eof,
    /// Shutdown, idle timeout, or a read error.
    Closed,
}

impl Connection {
    async fn serve(&self, mut stream: TcpStream, shutdown: CancellationToken) {
        let max = self.config.max_frame_bytes;
        let mut buf = BytesMut::with_capacity(64 << 10);
        // Skipping the rest of a line that was over the limit.
        let mut skipping = false;
        loop {
            let stop = self.read_round(&mut stream, &mut buf, &shutdown).await;
            let mut frames = Vec::new();
            let mut fatal = None;
            loop {
                if skipping {
                    match memchr::memchr(b'\n', &buf) {
                        Some(end) => {
                            let _ = buf.split_to(end + 1);
                            skipping = false;
                        }
                        None => {
                            buf.clear();
                            break;
                        }
                    }
                }
                match next_frame(&buf, max) {
                    Ok(Frame::Message { msg, consumed }) => {
                        let start = msg.as_ptr() as usize - buf.as_ptr() as usize;
                        let len = msg.len();
                        let taken = buf.split_to(consumed).freeze();
                        if len > 0 {
                            frames.push(taken.slice(start..start + len));
                        }
                    }
                    Ok(Frame::Incomplete) => break,
                    Err(FramingError::LineTooLong { .. }) => {
                        self.metrics.truncated.inc();
                        frames.push(buf.split_to(max).freeze());
                        skipping = true;
                    }
                    Err(e) => {
                        fatal = Some(e);
                        break;
                    }
                }
            }
            if let Some(Stop::Eof) = stop {
                // The last line need not end in a line feed; an octet-counted
                // frame cut short by the close is stored as sent (raw,
                // tagged), not dropped.
                if fatal.is_none() && !skipping && !buf.is_empty() {
                    let rest = buf.split().freeze();
                    let rest = rest.strip_suffix(b"\r").map_or(rest.clone(), |r| rest.slice(..r.len()));
                    if !rest.is_empty() {
                        frames.push(rest);
                    }
                }
            }
            if !frames.is_empty() && !self.append(frames).await {
                return;
            }
            if let Some(e) = fatal {
                self.metrics.framing_errors.inc();
                tracing::warn!(peer = %self.peer, error = %e, "syslog connection closed");
                return;
            }
            if stop.is_some() {
                return;
            }
        }
    }

    /// Reads until at least one byte came and the socket has no more
    /// ready, or `max_read_bytes` are buffered. `Some` when the connection
    /// is over (after what was read is appended).
    async fn read_round(
        &self,
        stream: &mut TcpStream,
        buf: &mut BytesMut,
        shutdown: &CancellationToken,
    ) -> Option<Stop> {
        buf.reserve(64 << 10);
        let read = tokio::select! {
            _ = shutdown.cancelled() => return Some(Stop::Closed),
            r = tokio::time::timeout(self.config.idle_timeout, stream.read_buf(buf)) => r,
        };
        match read {
            Err(_) => {
                self.metrics.idle_closed.inc();
                return Some(Stop::Closed);
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "syslog read failed");
                return Some(Stop::Closed);
            }
            Ok(Ok(0)) => return Some(Stop::Eof),
            Ok(Ok(_)) => {}
        }
        // Take what else is ready now, so a fast sender's frames go to the
        // WAL in large batches.
        while buf.len() < self.config.max_read_bytes {
            buf.reserve(64 << 10);
            match stream.try_read_buf(buf) {
                Ok(0) => return Some(Stop::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return Some(Stop::Closed),
            }
        }
        None
    }

    /// Appends `frames`, waiting for a slot; false when they could not be
    /// made durable (the connection is then closed).
    async fn append(&self, frames: Vec<Bytes>) -> bool {
        let n = frames.len() as u64;
        self.metrics.pending.inc_by(n as i64);
        let appended = append(&self.ingestor, &self.config, frames).await;
        self.metrics.pending.dec_by(n as i64);
        match appended {
            Ok(()) => {
                self.metrics.frames.get_or_create(&TCP).inc_by(n);
                true
            }
            Err(e) => {
                self.metrics.lost.get_or_create(&TCP).inc_by(n);
                tracing::warn!(peer = %self.peer, error = %e, frames = n, "syslog frames not stored; connection closed");
                false
            }
        }
    }
}

/// Appends frames through the ingestor, waiting for an ingest slot while
/// ingest is busy (the sender waits meanwhile: nothing more is read).
async fn append(ingestor: &Ingestor, config: &SyslogConfig, frames: Vec<Bytes>) -> Result<(), IngestError> {
    while ingestor.wal().unreleased_bytes() > config.max_unindexed_bytes {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admission = ingestor.admit_waiting().await?;
    ingestor
        .ingest_frames(admission, &config.source, config.format, frames)
        .await
        .map(|_| ())
}

/// Receives syslog datagrams on `socket` until `shutdown`, then appends
/// those queued.
pub async fn run_udp(
    socket: UdpSocket,
    ingestor: Ingestor,
    config: Arc<SyslogConfig>,
    metrics: SyslogMetrics,
    shutdown: CancellationToken,
) {
    let (tx, rx) = mpsc::channel::<Bytes>(config.udp_queue.max(1));
    let writer = tokio::spawn(write_datagrams(rx, ingestor, config.clone(), metrics.clone()));
    let mut buf = BytesMut::with_capacity(64 << 10);
    loop {
        buf.reserve(65_536);
        let (len, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.recv_buf_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "syslog datagram receive failed");
                    continue;
                }
            },
        };
        let datagram = buf.split_to(len).freeze();
        if !config.allows(peer.ip()) {
            metrics.denied.get_or_create(&UDP).inc();
            continue;
        }
        let end = datagram.len() - trailing_newlines(&datagram);
        if end == 0 {
            continue;
        }
        let datagram = datagram.slice(..end.min(config.max_frame_bytes));
        if end > config.max_frame_bytes {
            metrics.truncated.inc();
        }
        if tx.try_send(datagram).is_err() {
            metrics.udp_dropped.inc();
        }
    }
    drop(tx);
    let _ = writer.await;
}

fn trailing_newlines(b: &[u8]) -> usize {
    b.iter()
        .rev()
        .take_while(|&&c| c == b'\n' || c == b'\r' || c == 0)
        .count()
}

/// Appends queued datagrams in batches until the queue is closed and empty.
async fn write_datagrams(
    mut rx: mpsc::Receiver<Bytes>,
    ingestor: Ingestor,
    config: Arc<SyslogConfig>,
    metrics: SyslogMetrics,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 10_000).await > 0 {
        let n = batch.len() as u64;
        match append(&ingestor, &config, std::mem::take(&mut batch)).await {
            Ok(()) => {
                metrics.frames.get_or_create(&UDP).inc_by(n);
            }
            Err(e) => {
                metrics.lost.get_or_create(&UDP).inc_by(n);
                tracing::warn!(error = %e, datagrams = n, "syslog datagrams not stored");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::IngestConfig;
    use tokio::io::AsyncWriteExt;
    use wal::{Lsn, Wal, WalConfig, WalMetrics};

    /// Shutdown while frames are read but wait for ingest: they are
    /// appended to the WAL before the listener returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_read_before_shutdown_reach_the_wal_before_the_listener_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let (wal, _) = Wal::open(WalConfig::new(dir.path()), vec![], Lsn(0), WalMetrics::default(), tx).unwrap();
        let ingestor = Ingestor::new(
            Arc::new(wal),
            IngestConfig {
                max_concurrent_requests: 1,
                queue_timeout: Duration::from_millis(20),
                ..IngestConfig::default()
            },
            crate::IngestMetrics::default(),
        );
        // Ingest is busy: the listener will read, then wait for a slot.
        let busy = ingestor.admit().await.unwrap();
        let (tcp, _udp) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let metrics = SyslogMetrics::default();
        let listener = tokio::spawn(run_tcp(
            tcp,
            ingestor.clone(),
            Arc::new(SyslogConfig::default()),
            metrics.clone(),
            shutdown.clone(),
        ));
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let frames: String = (0..500)
            .map(|i| format!("<13>Jan  2 10:00:00 gw app: frame {i}\n"))
            .collect();
        conn.write_all(frames.as_bytes()).await.unwrap();
        // The listener has read the frames and waits for a slot.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while metrics.pending.get() < 500 {
            assert!(
                std::time::Instant::now() < deadline,
                "the listener holds {} frames, not all 500",
                metrics.pending.get()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
        drop(busy);
        tokio::time::timeout(Duration::from_secs(30), listener)
            .await
            .unwrap()
            .unwrap();
        // The log hands a batch on after it acknowledges it.
        let mut stored = 0;
        while stored < 500 {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(d) => stored += d.batch.len(),
                Err(_) => break,
            }
        }
        assert_eq!(stored, 500, "frames read before shutdown were lost");
        assert_eq!(metrics.pending.get(), 0);
        // Waiting for a slot is not an HTTP overload.
        assert_eq!(ingestor.metrics().overloaded.get(), 0);
        drop(conn);
    }

    #[test]
    fn the_default_allow_list_is_loopback_only() {
        let c = SyslogConfig::default();
        for ok in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(c.allows(ok.parse().unwrap()), "{ok}");
        }
        for no in ["10.0.0.1", "192.168.1.1", "::2", "::ffff:10.0.0.1", "fe80::1"] {
            assert!(!c.allows(no.parse().unwrap()), "{no}");
        }
    }

    #[test]
    fn an_allow_list_of_networks_admits_their_addresses_only() {
        let c = SyslogConfig {
            allow: vec!["10.1.0.0/16".parse().unwrap(), "2001:db8::/32".parse().unwrap()],
            ..SyslogConfig::default()
        };
        assert!(c.allows("10.1.200.3".parse().unwrap()));
        assert!(c.allows("2001:db8:1::5".parse().unwrap()));
        assert!(!c.allows("10.2.0.1".parse().unwrap()));
        assert!(!c.allows("127.0.0.1".parse().unwrap()));
    }
}
