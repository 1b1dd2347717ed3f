//! `tripline.toml`: typed, unknown keys rejected, validated once at start.
//! Every key has a default, so no file at all is a working configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the WAL, the index and the tokens live.
    pub data_dir: PathBuf,
    /// The HTTP API's address. Loopback unless you mean otherwise.
    pub listen: SocketAddr,
    /// Ingest limits.
    pub ingest: IngestSection,
    /// Write-ahead log.
    pub wal: WalSection,
    /// Index.
    pub index: IndexSection,
    /// Search limits.
    pub search: SearchSection,
    /// `/metrics`.
    pub metrics: MetricsSection,
    /// HTTP connections.
    pub http: HttpSection,
    /// The syslog listener (TCP and UDP).
    pub syslog: SyslogSection,
    /// Sigma detection.
    pub detect: DetectSection,
    /// Where outbound connections may go (webhooks).
    pub egress: deliver::EgressConfig,
    /// Webhook retries and bookkeeping.
    pub delivery: deliver::DeliveryConfig,
    /// Webhooks receiving alerts (`[[webhooks]]`).
    pub webhooks: Vec<deliver::WebhookSpec>,
    /// Stateful detectors run beside the rules (`[[detectors]]`).
    pub detectors: Vec<detect::detectors::DetectorSpec>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("./tripline-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7490)),
            ingest: IngestSection::default(),
            wal: WalSection::default(),
            index: IndexSection::default(),
            search: SearchSection::default(),
            metrics: MetricsSection::default(),
            http: HttpSection::default(),
            syslog: SyslogSection::default(),
            detect: DetectSection::default(),
            egress: deliver::EgressConfig::default(),
            delivery: deliver::DeliveryConfig::default(),
            webhooks: Vec::new(),
            detectors: Vec::new(),
        }
    }
}

/// `[ingest]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// Largest request body, counted after decompression.
    pub max_body_bytes: usize,
    /// Longest line parsed as JSON.
    pub max_line_bytes: usize,
    /// Deepest JSON nesting parsed.
    pub max_json_depth: usize,
    /// Requests decoded at once.
    pub max_concurrent_requests: usize,
    /// Events (lines, array elements) one request may hold.
    pub max_events_per_request: usize,
    /// Bytes one request's events may take once normalized (its WAL record).
    pub max_batch_bytes: usize,
    /// Oldest event time accepted, in days before the ingest time; older
    /// times become the ingest time (tagged `_timestamp_out_of_range`).
    /// Default: `index.retention_days` (no bound when that is 0).
    pub max_event_age_days: Option<u32>,
    /// Latest event time accepted, in days after the ingest time.
    pub max_future_days: u32,
}

/// The defaults live with the stages they configure; these sections only
/// name them for `tripline.toml`.
impl Default for IngestSection {
    fn default() -> IngestSection {
        let d = ingest::IngestConfig::default();
        IngestSection {
            max_body_bytes: d.max_body_bytes,
            max_line_bytes: d.limits.max_line_bytes,
            max_json_depth: d.limits.max_depth,
            max_concurrent_requests: d.max_concurrent_requests,
            max_events_per_request: d.max_events_per_request,
            max_batch_bytes: d.max_batch_bytes,
            max_event_age_days: None,
            max_future_days: u32::try_from(d.time_window.max_future.as_secs() / 86_400).unwrap_or(u32::MAX),
        }
    }
}

/// `[wal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalSection {
    /// Size at which a new segment file is started.
    pub segment_bytes: u64,
    /// Requests waiting for the log before new ones get 429.
    pub queue_depth: usize,
    /// Log bytes the index may lag behind; past that, ingest answers 429 so
    /// the log cannot fill the disk.
    pub max_unindexed_bytes: u64,
}

impl Default for WalSection {
    fn default() -> WalSection {
        let d = wal::WalConfig::new("");
        WalSection {
            segment_bytes: d.segment_bytes,
            queue_depth: d.queue_depth,
            max_unindexed_bytes: 1 << 30,
        }
    }
}

/// `[index]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexSection {
    /// Milliseconds between commits (how soon events are searchable).
    pub commit_interval_ms: u64,
    /// Days of events kept; 0 keeps all.
    pub retention_days: u32,
    /// Memory budget of one partition writer, in MiB.
    pub writer_memory_mb: usize,
    /// Indexing threads of one partition writer.
    pub writer_threads: usize,
    /// Partitions written at once.
    pub max_open_writers: usize,
    /// Segments of one size merged at once.
    pub merge_fan_in: usize,
    /// Times a failed indexing is retried (from the checkpoint) before the
    /// indexer stops and ingest answers 503.
    pub max_retries: u32,
    /// Milliseconds before the first retry; doubled for each next one.
    pub retry_backoff_ms: u64,
    /// Hours of ingest within which an event resent with the same
    /// `(event.dataset, event.id)` replaces its earlier copy whatever day
    /// its time puts it in; 0: within one day's partition only.
    pub dedup_window_hours: u32,
}

impl Default for IndexSection {
    fn default() -> IndexSection {
        let d = index::IndexerConfig::default();
        let millis = |t: std::time::Duration| u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        IndexSection {
            commit_interval_ms: millis(d.commit_interval),
            retention_days: d.retention_days,
            writer_memory_mb: d.writer_memory_bytes >> 20,
            writer_threads: d.writer_threads,
            max_open_writers: d.max_open_writers,
            merge_fan_in: d.merge_fan_in,
            max_retries: d.max_retries,
            retry_backoff_ms: millis(d.retry_backoff),
            dedup_window_hours: d.dedup_window_hours,
        }
    }
}

/// `[search]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSection {
    /// Searches run at once; more wait.
    pub max_concurrent: usize,
    /// Default hits per page.
    pub default_limit: usize,
    /// Seconds a search may run before it is stopped (504).
    pub timeout_secs: u64,
}

impl Default for SearchSection {
    fn default() -> SearchSection {
        SearchSection {
            max_concurrent: 4,
            default_limit: 100,
            timeout_secs: 30,
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Serve `/metrics` without a token (for a scraper on a trusted network).
    pub public: bool,
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Connections open at once; more are closed at once.
    pub max_connections: usize,
    /// Seconds to receive a request header (and to wait on an idle
    /// keep-alive connection).
    pub header_read_timeout_secs: u64,
    /// Seconds to receive a whole request body.
    pub body_read_timeout_secs: u64,
    /// Failed authentications one client address may make in a minute;
    /// past that it gets 429 until the minute is over. 0: no limit.
    pub max_auth_failures_per_minute: u32,
}

impl Default for HttpSection {
    fn default() -> HttpSection {
        HttpSection {
            max_connections: 512,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 60,
            max_auth_failures_per_minute: 30,
        }
    }
}

/// Where a listener listens: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Not listening.
    Off,
    /// TCP and UDP on this address.
    On(SocketAddr),
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Listen, String> {
        if s == "off" {
            return Ok(Listen::Off);
        }
        s.parse()
            .map(Listen::On)
            .map_err(|_| format!("{s:?} is neither an address (127.0.0.1:5514) nor off"))
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Listen, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[syslog]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogSection {
    /// TCP and UDP address, or `off`.
    pub listen: Listen,
    /// Source networks allowed to send (syslog has no credential).
    pub allow: Vec<ipnet::IpNet>,
    /// The format of the frames.
    pub format: ingest::format::Format,
    /// The source (`event.dataset`) the events are stored as.
    pub source: String,
    /// TCP connections open at once; more are closed at once.
    pub max_connections: usize,
    /// Seconds a TCP connection may stay silent.
    pub idle_timeout_secs: u64,
    /// Longest frame: a longer octet count closes the connection, a longer
    /// line is stored cut.
    pub max_frame_bytes: usize,
    /// UDP datagrams queued for the WAL; more are dropped and counted.
    pub udp_queue: usize,
}

impl Default for SyslogSection {
    fn default() -> SyslogSection {
        let d = ingest::listener::SyslogConfig::default();
        SyslogSection {
            listen: Listen::On(SocketAddr::from(([127, 0, 0, 1], 5514))),
            allow: d.allow,
            format: d.format,
            source: d.source,
            max_connections: d.max_connections,
            idle_timeout_secs: d.idle_timeout.as_secs(),
            max_frame_bytes: d.max_frame_bytes,
            udp_queue: d.udp_queue,
        }
    }
}

impl SyslogSection {
    /// The listener's settings; `max_unindexed_bytes` is the WAL's.
    pub fn listener_config(&self, max_unindexed_bytes: u64) -> ingest::listener::SyslogConfig {
        ingest::listener::SyslogConfig {
            source: self.source.clone(),
            format: self.format,
            allow: self.allow.clone(),
            max_connections: self.max_connections,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_frame_bytes: self.max_frame_bytes,
            udp_queue: self.udp_queue,
            max_unindexed_bytes,
            ..ingest::listener::SyslogConfig::default()
        }
    }
}

/// `[detect]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSection {
    /// Directory of Sigma rules (`.yml`, `.yaml`, searched recursively);
    /// none: detection is off.
    pub rules_dir: Option<PathBuf>,
    /// Seconds between looks at `rules_dir` for changed files (then the
    /// rules are reloaded); 0: only on `POST /api/v1/rules/reload`.
    pub reload_interval_secs: u64,
    /// Seconds an alert takes further matches of its rule and group when
    /// the rule has no `suppression.duration`; 0: an alert per match.
    pub suppression_secs: u64,
    /// Alerts kept open at most; past it the oldest take no more matches.
    pub max_open_alerts: usize,
    /// Milliseconds between saves of detection's position and state.
    pub checkpoint_interval_ms: u64,
    /// Groups one correlation rule keeps windows for; past it the least
    /// recently matched group goes (counted).
    pub max_window_groups: usize,
    /// Matches one group's window keeps; past it the oldest go (counted).
    pub max_window_entries: usize,
    /// Threads that evaluate rules on a record's events; 0: one per core.
    pub threads: usize,
    /// Values of the placeholders the `expand` modifier fills, such as
    /// `admins = ["root", "admin*"]` for `%admins%`.
    pub placeholders: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for DetectSection {
    fn default() -> DetectSection {
        let d = detect::DetectConfig::new("");
        DetectSection {
            rules_dir: None,
            reload_interval_secs: 2,
            suppression_secs: d.suppression.as_secs(),
            max_open_alerts: d.max_open_alerts,
            checkpoint_interval_ms: u64::try_from(d.checkpoint_interval.as_millis()).unwrap_or(u64::MAX),
            max_window_groups: d.caps.max_groups,
            max_window_entries: d.caps.max_entries,
            threads: 0,
            placeholders: Default::default(),
        }
    }
}

impl DetectSection {
    /// The stage's settings, its state kept in `state_dir`.
    pub fn stage_config(&self, state_dir: PathBuf) -> detect::DetectConfig {
        detect::DetectConfig {
            state_dir,
            suppression: Duration::from_secs(self.suppression_secs),
            max_open_alerts: self.max_open_alerts,
            checkpoint_interval: Duration::from_millis(self.checkpoint_interval_ms),
            caps: detect::correlation::Caps {
                max_groups: self.max_window_groups,
                max_entries: self.max_window_entries,
            },
            threads: if self.threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                self.threads
            },
        }
    }
}

impl Config {
    /// Reads `path`; unknown keys are errors naming the key.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    /// Parses configuration text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        Ok(config)
    }

    /// The detectors, compiled (each error names the detector and why).
    pub fn compile_detectors(&self) -> anyhow::Result<Vec<detect::detectors::Detector>> {
        let catalog = schemas::Catalog::builtin();
        let mut ids = std::collections::HashSet::new();
        let mut out = Vec::new();
        for d in &self.detectors {
            if !ids.insert(d.id.as_str()) {
                bail!("[[detectors]]: id {:?} is used twice", d.id);
            }
            out.push(d.compile(&catalog)?);
        }
        Ok(out)
    }

    /// Checks the webhooks and their delivery settings.
    fn validate_delivery(&self) -> anyhow::Result<()> {
        let d = &self.delivery;
        if d.max_retry_hours == 0 || d.base_backoff_ms == 0 || d.max_backoff_secs == 0 || d.retention_hours == 0 {
            bail!("delivery.max_retry_hours, base_backoff_ms, max_backoff_secs and retention_hours must be positive");
        }
        if d.max_client_error_attempts == 0 {
            bail!("delivery.max_client_error_attempts must be at least 1");
        }
        if let Some(u) = &d.public_url {
            let url = url::Url::parse(u).with_context(|| format!("delivery.public_url {u:?}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                bail!("delivery.public_url must be an http or https URL");
            }
        }
        let catalog = schemas::Catalog::builtin();
        let mut ids = std::collections::HashSet::new();
        for w in &self.webhooks {
            w.validate(&catalog).map_err(|e| anyhow::anyhow!("[[webhooks]]: {e}"))?;
            if !ids.insert(w.id.as_str()) {
                bail!("[[webhooks]]: id {:?} is used twice", w.id);
            }
        }
        Ok(())
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.ingest.max_body_bytes == 0 || self.ingest.max_line_bytes == 0 {
            bail!("ingest limits must be positive");
        }
        if self.ingest.max_json_depth == 0 || self.ingest.max_json_depth > 128 {
            bail!("ingest.max_json_depth must be between 1 and 128");
        }
        if self.index.commit_interval_ms < 10 {
            bail!("index.commit_interval_ms must be at least 10");
        }
        if self.index.writer_threads == 0 || self.index.max_open_writers == 0 {
            bail!("index.writer_threads and index.max_open_writers must be positive");
        }
        if self.index.merge_fan_in < 2 {
            bail!("index.merge_fan_in must be at least 2");
        }
        if self.ingest.max_events_per_request == 0 {
            bail!("ingest.max_events_per_request must be positive");
        }
        if self.ingest.max_batch_bytes < 4096 || self.ingest.max_batch_bytes > wal::MAX_RECORD_LEN {
            bail!(
                "ingest.max_batch_bytes must be between 4096 and {}",
                wal::MAX_RECORD_LEN
            );
        }
        if self.http.max_connections == 0
            || self.http.header_read_timeout_secs == 0
            || self.http.body_read_timeout_secs == 0
            || self.search.timeout_secs == 0
        {
            bail!("http.max_connections, http.*_timeout_secs and search.timeout_secs must be positive");
        }
        if self.search.default_limit == 0 || self.search.default_limit > query::MAX_LIMIT {
            bail!("search.default_limit must be between 1 and {}", query::MAX_LIMIT);
        }
        if self.index.writer_memory_mb < 16 || self.index.writer_memory_mb > 4000 {
            bail!("index.writer_memory_mb must be between 16 and 4000");
        }
        if self.wal.segment_bytes < 4096 {
            bail!("wal.segment_bytes must be at least 4096");
        }
        let s = &self.syslog;
        if s.max_connections == 0 || s.idle_timeout_secs == 0 || s.udp_queue == 0 {
            bail!("syslog.max_connections, syslog.idle_timeout_secs and syslog.udp_queue must be positive");
        }
        if s.max_frame_bytes < 480 || s.max_frame_bytes > self.ingest.max_line_bytes {
            bail!("syslog.max_frame_bytes must be between 480 (RFC 5426's minimum) and ingest.max_line_bytes");
        }
        if !ingest::normalize::valid_source(&s.source) {
            bail!("syslog.source must be 1 to 64 of A-Z a-z 0-9 . _ -");
        }
        self.validate_delivery()?;
        self.compile_detectors()?;
        let d = &self.detect;
        if d.max_open_alerts == 0
            || d.checkpoint_interval_ms == 0
            || d.max_window_groups == 0
            || d.max_window_entries == 0
        {
            bail!("detect.max_open_alerts, checkpoint_interval_ms, max_window_groups and max_window_entries must be positive");
        }
        if let Some(dir) = &self.detect.rules_dir {
            if !dir.is_dir() {
                bail!("detect.rules_dir {} is not a directory", dir.display());
            }
        }
        if let Listen::On(addr) = s.listen {
            if addr == self.listen && addr.port() != 0 {
                bail!("syslog.listen and listen are the same address");
            }
        }
        Ok(())
    }

    /// The event times ingest accepts.
    pub fn time_window(&self) -> ingest::normalize::TimeWindow {
        let day = |d: u32| Duration::from_secs(u64::from(d) * 86_400);
        let age_days = self.ingest.max_event_age_days.unwrap_or(self.index.retention_days);
        ingest::normalize::TimeWindow {
            max_age: (age_days > 0).then(|| day(age_days)),
            max_future: day(self.ingest.max_future_days),
        }
    }

    /// The commit interval.
    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.index.commit_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_is_a_working_config_on_loopback() {
        let c = Config::parse("").unwrap();
        c.validate().unwrap();
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.listen.port(), 7490);
        assert_eq!(c.index.retention_days, 30);
    }

    /// The shipped detectors are a configuration that starts as it is.
    #[test]
    fn the_example_detectors_load() {
        let c = Config::parse(include_str!("../examples/detectors.toml")).unwrap();
        c.validate().unwrap();
        let kinds: Vec<String> = c.compile_detectors().unwrap().iter().map(|d| d.id.clone()).collect();
        assert_eq!(kinds.len(), 7, "{kinds:?}");
    }

    /// The README's configuration block is the defaults, and parses.
    #[test]
    fn the_readme_config_block_is_the_defaults() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\ndata_dir").expect("README has the config block") + "```toml\n".len();
        let len = readme[start..].find("```").expect("the block ends");
        let parsed = Config::parse(&readme[start..start + len]).unwrap();
        parsed.validate().unwrap();
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = format!("{:#}", Config::parse("[index]\nretention = 5\n").unwrap_err());
        assert!(err.contains("retention"), "{err}");
        let err = format!("{:#}", Config::parse("listen_addr = \"x\"\n").unwrap_err());
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn sections_override_defaults() {
        let c = Config::parse("listen = \"0.0.0.0:9000\"\n[index]\ncommit_interval_ms = 200\n").unwrap();
        assert_eq!(c.commit_interval(), Duration::from_millis(200));
        assert_eq!(c.listen.port(), 9000);
        assert!(Config::parse("[index]\ncommit_interval_ms = 1\n")
            .unwrap()
            .validate()
            .is_err());
    }
}
