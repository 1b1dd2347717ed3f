//! Boots the real `tripline` binary on port 0 and talks to it over HTTP.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const ADMIN: &str = "test-admin-token-0123456789";

pub struct Daemon {
    child: Child,
    pub base: String,
    pub data: PathBuf,
    /// The syslog listener's address (TCP and UDP).
    pub syslog: Option<std::net::SocketAddr>,
}

impl Daemon {
    /// Starts the daemon on `data` with extra config TOML.
    pub fn start(data: &Path, config: &str) -> Daemon {
        Daemon::start_on(data, config, "127.0.0.1:0")
    }

    pub fn start_on(data: &Path, config: &str, listen: &str) -> Daemon {
        std::fs::create_dir_all(data).unwrap();
        let config_path = data.with_extension("toml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.with_extension("log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tripline"))
            .args([
                "serve",
                "--listen",
                listen,
                "--syslog-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data)
            .arg("--config")
            .arg(&config_path)
            .env("TRIPLINE_ADMIN_TOKEN", ADMIN)
            .env("TRIPLINE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn tripline");
        let stdout = child.stdout.take().unwrap();
        let hs = bench::daemon::wait_handshake(stdout, Duration::from_secs(120)).unwrap_or_else(|e| {
            let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
            panic!("{e}; log:\n{log}")
        });
        Daemon {
            child,
            base: hs.base,
            data: data.to_path_buf(),
            syslog: hs.syslog,
        }
    }

    /// SIGKILL: no flush, no commit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// POSTs a body to the ingest API; returns (status, JSON body or null).
pub fn ingest(
    base: &str,
    source: &str,
    token: Option<&str>,
    body: &[u8],
    encoding: Option<&str>,
) -> Result<(u16, Value), ureq::Error> {
    let mut req = agent().post(&format!("{base}/api/v1/ingest?source={source}"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    if let Some(e) = encoding {
        req = req.header("Content-Encoding", e);
    }
    let mut resp = req.send(body)?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

pub fn search(base: &str, token: &str, body: Value) -> (u16, Value) {
    let mut resp = agent()
        .post(&format!("{base}/api/v1/search"))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(&body)
        .expect("search request");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

/// Searches until `total` reaches `want` (events become searchable after a
/// commit); panics after a minute.
pub fn wait_total(base: &str, query: &str, want: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = search(base, ADMIN, json!({ "query": query, "limit": 10 }));
        assert_eq!(status, 200, "{body}");
        if body["total"].as_u64() == Some(want) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "query {query:?}: total {} never reached {want}",
            body["total"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every event id matching `query`, paging with the cursor.
pub fn all_ids(base: &str, query: &str, page: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (status, body) = search(base, ADMIN, json!({ "query": query, "limit": page, "cursor": cursor }));
        assert_eq!(status, 200, "{body}");
        for hit in body["hits"].as_array().unwrap() {
            ids.push(hit["event.id"].as_str().unwrap().to_string());
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
}

/// The daemon's `/metrics` text (admin token).
pub fn metrics_text(d: &Daemon) -> String {
    let mut resp = agent()
        .get(&d.url("/metrics"))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .call()
        .unwrap();
    resp.body_mut().read_to_string().unwrap()
}

/// Waits until everything acknowledged so far is searchable: commits follow
/// the log's order (replayed records first), so once a marker sent now is
/// searchable, so is every record before it. No sleep can promise that.
pub fn wait_committed(base: &str) {
    let marker = format!("marker-{}", uuid_like());
    let body = format!("{{\"message\":\"{marker}\"}}\n");
    let (status, report) = ingest(base, "marker", Some(ADMIN), body.as_bytes(), None).unwrap();
    assert_eq!(status, 200, "{report}");
    wait_total(base, &format!("event.dataset:marker AND \"{marker}\""), 1);
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// `HH:00:00Z` on the day `n` days before today, RFC 3339.
pub fn days_ago(n: i64, hour: u8) -> String {
    let day = (time::OffsetDateTime::now_utc() - time::Duration::days(n)).date();
    format!("{}T{hour:02}:00:00Z", day)
}

pub const FAST_COMMITS: &str = "[index]\ncommit_interval_ms = 100\n";

/// A Sigma rule alerting on every failed login (`event.outcome: failure`),
/// one alert per source address within `suppression`.
pub fn failed_login_rule(suppression: &str) -> String {
    format!(
        r#"
title: Failed login
id: 22222222-0000-0000-0000-000000000001
status: test
level: high
tags: [attack.credential-access, attack.t1110]
logsource: {{product: test}}
suppression: {{group_by: [source.ip], duration: {suppression}}}
detection:
    sel:
        event.outcome: failure
    condition: sel
"#
    )
}
