//! The start-up handshake of `tripline serve`, read in one place by the
//! end-to-end tests, the smoke test and `tripline-load`.
//!
//! The daemon prints two lines on stdout (`src/daemon.rs`): [`LISTENING`]
//! and its base URL once the socket is bound (health answers from then on),
//! then [`READY`] once the WAL is replayed and ingest is open.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `tripline serve` on free ports with the syslog listener off; the data
/// directory follows.
pub const SERVE_ON_PORT_0: [&str; 6] = [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--syslog-listen",
    "off",
    "--data-dir",
];

/// Printed with the base URL once the socket is bound.
pub const LISTENING: &str = "tripline listening on ";
/// Printed once the WAL is replayed and ingest is open.
pub const READY: &str = "tripline ready";
/// Printed with the syslog address (TCP and UDP) before [`READY`], when
/// the syslog listener is on.
pub const SYSLOG: &str = "tripline syslog listening on ";

/// What a daemon said as it started.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Base URL of the HTTP API (`http://127.0.0.1:PORT`).
    pub base: String,
    /// The syslog listener's address, when it is on.
    pub syslog: Option<std::net::SocketAddr>,
}

/// Reads a starting daemon's stdout until it says it is ready, for at most
/// `timeout`; returns its base URL (`http://127.0.0.1:PORT`). The rest of
/// stdout is drained on a thread, so the daemon never blocks on a full pipe.
pub fn wait_ready(stdout: impl Read + Send + 'static, timeout: Duration) -> std::io::Result<String> {
    wait_handshake(stdout, timeout).map(|h| h.base)
}

/// [`wait_ready`], with the syslog address too.
pub fn wait_handshake(stdout: impl Read + Send + 'static, timeout: Duration) -> std::io::Result<Handshake> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + timeout;
    let mut base = None;
    let mut syslog = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).map_err(|e| {
            let why = match e {
                mpsc::RecvTimeoutError::Timeout => "did not become ready in time",
                mpsc::RecvTimeoutError::Disconnected => "exited before it was ready",
            };
            std::io::Error::other(format!("the daemon {why}"))
        })?;
        if let Some(addr) = line.strip_prefix(LISTENING) {
            base = Some(addr.trim().to_string());
        }
        if let Some(addr) = line.strip_prefix(SYSLOG) {
            syslog = addr.trim().parse().ok();
        }
        if line.trim() == READY {
            let base =
                base.ok_or_else(|| std::io::Error::other("the daemon was ready before it printed its address"))?;
            return Ok(Handshake { base, syslog });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_handshake_gives_the_address_once_ready() {
        let out = format!("admin token written to x\n{LISTENING}http://127.0.0.1:9\n{READY}\nmore\n");
        assert_eq!(
            wait_ready(std::io::Cursor::new(out.into_bytes()), Duration::from_secs(5)).unwrap(),
            "http://127.0.0.1:9"
        );
        let early_exit = format!("{LISTENING}http://127.0.0.1:9\n");
        assert!(wait_ready(std::io::Cursor::new(early_exit.into_bytes()), Duration::from_secs(5)).is_err());
    }
}
