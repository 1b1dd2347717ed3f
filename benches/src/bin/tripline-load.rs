//! Drives a Tripline daemon over HTTP and reports what it sustained.
//!
//! ```text
//! tripline-load --spawn target/release/tripline --events 1000000 --connections 4 --batch 1000
//! tripline-load --server http://127.0.0.1:7490 --token $T --input corpus.ndjson --rate 20000
//! ```
//!
//! Closed model by default (each connection sends its next batch when the
//! last is acknowledged). With `--rate` the model is open: batch k is due at
//! `k * batch / rate` seconds and its latency counts from then, so a stall
//! shows in the tail instead of slowing the sender down.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::gen::Generator;
use bench::stats::{cpu_seconds, dir_size, ms, peak_rss, quantile};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
struct Args {
    /// URL of a running daemon.
    #[arg(long, conflicts_with = "spawn")]
    server: Option<String>,
    /// Start this `tripline` binary on a fresh data dir instead (measures RSS and disk too).
    #[arg(long)]
    spawn: Option<PathBuf>,
    /// Config file for the spawned daemon.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Token with ingest and search scopes (spawn mode sets its own).
    #[arg(long, env = "TRIPLINE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// NDJSON corpus; default: generate `--events` in memory.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Events to generate when no `--input`.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Seed of the generated events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Events per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Events per second to offer (open model); 0: as fast as acknowledged.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// The lines' format (`?format=`); default: the server's (auto).
    #[arg(long)]
    format: Option<String>,
}

struct Spawned {
    child: Child,
    data: tempfile::TempDir,
}

const SPAWN_TOKEN: &str = "tripline-load-admin-0123456789";

fn spawn(bin: &PathBuf, config: Option<&PathBuf>) -> anyhow::Result<(Spawned, String)> {
    let data = tempfile::tempdir()?;
    let mut cmd = Command::new(bin);
    cmd.args(bench::daemon::SERVE_ON_PORT_0).arg(data.path().join("data"));
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd
        .env("TRIPLINE_ADMIN_TOKEN", SPAWN_TOKEN)
        .env("TRIPLINE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("daemon stdout")?;
    let base = bench::daemon::wait_ready(stdout, std::time::Duration::from_secs(600))?;
    Ok((Spawned { child, data }, base))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip into memory");
    e.finish().expect("gzip into memory")
}

/// NDJSON lines gathered into gzipped request bodies of `batch` events.
struct Bodies {
    batch: usize,
    raw_bytes: usize,
    events: usize,
    body: String,
    in_body: usize,
    gzipped: Vec<Vec<u8>>,
}

impl Bodies {
    fn new(batch: usize) -> Bodies {
        Bodies {
            batch: batch.max(1),
            raw_bytes: 0,
            events: 0,
            body: String::new(),
            in_body: 0,
            gzipped: Vec::new(),
        }
    }

    fn push(&mut self, line: &str) {
        if line.is_empty() {
            return;
        }
        self.raw_bytes += line.len() + 1;
        self.events += 1;
        self.body.push_str(line);
        self.body.push('\n');
        self.in_body += 1;
        if self.in_body == self.batch {
            self.gzipped.push(gzip(self.body.as_bytes()));
            self.body.clear();
            self.in_body = 0;
        }
    }

    fn finish(mut self) -> Bodies {
        if self.in_body > 0 {
            self.gzipped.push(gzip(self.body.as_bytes()));
            self.in_body = 0;
        }
        self.body = String::new();
        self
    }
}

/// The daemon's `/metrics`, if the token may read it.
fn metrics(agent: &ureq::Agent, base: &str, auth: &str) -> Option<String> {
    let mut r = agent
        .get(&format!("{base}/metrics"))
        .header("Authorization", auth)
        .call()
        .ok()?;
    if r.status().as_u16() != 200 {
        return None;
    }
    r.body_mut().read_to_string().ok()
}

/// One unlabelled sample of the metrics text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Bodies are gzipped before the clock starts (compression is the
    // shippers' work, not the daemon's), streaming so that only the
    // compressed bodies are held in memory.
    let mut bodies = Bodies::new(args.batch);
    match &args.input {
        Some(p) => {
            let file = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            for line in BufReader::with_capacity(1 << 20, file).lines() {
                bodies.push(&line?);
            }
        }
        None => {
            let start = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
            let mut g = Generator::new(args.seed, start.unix_timestamp_nanos())
                .with_step_nanos(3_600_000_000_000 / args.events.max(1) as i128);
            for _ in 0..args.events {
                bodies.push(&g.next_line());
            }
        }
    }
    let Bodies {
        raw_bytes,
        events: total_events,
        gzipped: batches,
        ..
    } = bodies.finish();

    let (spawned, base, token) = match (&args.spawn, &args.server) {
        (Some(bin), _) => {
            let (s, base) = spawn(bin, args.config.as_ref())?;
            (Some(s), base, SPAWN_TOKEN.to_string())
        }
        (None, Some(url)) => (
            None,
            url.trim_end_matches('/').to_string(),
            args.token.clone().context("--token")?,
        ),
        (None, None) => bail!("give --server URL or --spawn BINARY"),
    };

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let url = match &args.format {
        Some(f) => format!("{base}/api/v1/ingest?source=load&format={f}"),
        None => format!("{base}/api/v1/ingest?source=load"),
    };
    let marker_url = format!("{base}/api/v1/ingest?source=load");
    let auth = format!("Bearer {token}");
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(batches.len())));
    let retries = Arc::new(AtomicUsize::new(0));
    let batches = Arc::new(batches);
    let per_batch = if args.rate > 0.0 {
        Some(Duration::from_secs_f64(args.batch as f64 / args.rate))
    } else {
        None
    };
    let daemon_pid = spawned.as_ref().map(|s| s.child.id());
    let cpu0 = daemon_pid.and_then(cpu_seconds);
    let detected0 = metrics(&agent, &base, &auth)
        .and_then(|m| metric(&m, "tripline_detect_events_total"))
        .map(|n| n as u64);
    let t0 = Instant::now();
    let workers: Vec<_> = (0..args.connections.max(1))
        .map(|_| {
            let (next, latencies, retries, batches) =
                (next.clone(), latencies.clone(), retries.clone(), batches.clone());
            let (agent, url, auth) = (agent.clone(), url.clone(), auth.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(body) = batches.get(k) else { return Ok(()) };
                    let due = match per_batch {
                        Some(d) => {
                            let due = t0 + d * k as u32;
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                            due
                        }
                        None => Instant::now(),
                    };
                    loop {
                        let resp = agent
                            .post(&url)
                            .header("Authorization", &auth)
                            .header("Content-Encoding", "gzip")
                            .send(&body[..])?;
                        match resp.status().as_u16() {
                            200 => break,
                            429 | 503 => {
                                retries.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            s => bail!("ingest answered {s}"),
                        }
                    }
                    latencies
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push(due.elapsed());
                }
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a connection thread panicked"))??;
    }
    let acked = t0.elapsed();

    // Ack-to-searchable: a marker sent last, polled until found.
    let marker = format!("load-marker-{}", t0.elapsed().as_nanos());
    let marker_body = json!({"event": {"id": marker}, "message": "load marker"}).to_string();
    let sent = Instant::now();
    let resp = agent
        .post(&marker_url)
        .header("Authorization", &auth)
        .send(marker_body.as_bytes())?;
    if resp.status().as_u16() != 200 {
        bail!("marker answered {}", resp.status());
    }
    let acked_marker = Instant::now();
    let search = format!("{base}/api/v1/search");
    loop {
        let mut r = agent
            .post(&search)
            .header("Authorization", &auth)
            .send_json(json!({"query": format!("event.id:\"{marker}\""), "limit": 1}))?;
        let v: Value = r.body_mut().read_json()?;
        if v["total"].as_u64() == Some(1) {
            break;
        }
        if sent.elapsed() > Duration::from_secs(600) {
            bail!("the marker never became searchable");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let searchable = t0.elapsed();
    let lag = acked_marker.elapsed();
    let cpu = daemon_pid.and_then(cpu_seconds).zip(cpu0).map(|(b, a)| b - a);
    // Detection (when the daemon runs rules): until every event sent, and
    // the marker, has been evaluated; alert delay from the histogram.
    let mut detection = Value::Null;
    if let Some(start) = detected0 {
        let want = start + total_events as u64 + 1;
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let m = metrics(&agent, &base, &auth).unwrap_or_default();
            if metric(&m, "tripline_detect_events_total").is_some_and(|n| n as u64 >= want) {
                let detected = t0.elapsed();
                let buckets: Vec<(f64, f64)> = m
                    .lines()
                    .filter_map(|l| l.strip_prefix("tripline_detect_alert_delay_seconds_bucket{le=\""))
                    .filter_map(|l| {
                        let (le, rest) = l.split_once("\"}")?;
                        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                        Some((le, rest.trim().parse().ok()?))
                    })
                    .collect();
                let count = buckets.last().map_or(0.0, |b| b.1);
                let q = |q: f64| buckets.iter().find(|b| b.1 >= q * count).map(|b| b.0);
                detection = json!({
                    "seconds": detected.as_secs_f64(),
                    "events_per_s": (total_events as f64 / detected.as_secs_f64()).round(),
                    "cpu_seconds": daemon_pid.and_then(cpu_seconds).zip(cpu0).map(|(b, a)| ((b - a) * 100.0).round() / 100.0),
                    "matches": metric(&m, "tripline_detect_matches_total"),
                    "alerts_created": metric(&m, "tripline_detect_alerts_created_total"),
                    "records_with_matches": count,
                    "alert_delay_s_p50_at_most": q(0.5),
                    "alert_delay_s_p99_at_most": q(0.99),
                });
                break;
            }
            if Instant::now() > deadline {
                bail!("detection never caught up");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let mut lat = latencies.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    lat.sort_unstable();
    let mb = raw_bytes as f64 / 1e6;
    let mut report = json!({
        "events": total_events,
        "raw_bytes": raw_bytes,
        "connections": args.connections,
        "batch": args.batch,
        "offered_rate": args.rate,
        "acked": {
            "seconds": acked.as_secs_f64(),
            "events_per_s": (total_events as f64 / acked.as_secs_f64()).round(),
            "mb_per_s": (mb / acked.as_secs_f64() * 10.0).round() / 10.0,
        },
        "searchable": {
            "seconds": searchable.as_secs_f64(),
            "events_per_s": (total_events as f64 / searchable.as_secs_f64()).round(),
            "mb_per_s": (mb / searchable.as_secs_f64() * 10.0).round() / 10.0,
        },
        "ack_latency_ms": {"p50": ms(quantile(&lat, 0.5)), "p99": ms(quantile(&lat, 0.99)), "p99.9": ms(quantile(&lat, 0.999)), "max": ms(quantile(&lat, 1.0))},
        "ack_to_searchable_ms": ms(lag),
        "retries": retries.load(Ordering::Relaxed),
        "detection": detection,
    });
    if let Some(mut s) = spawned {
        report["daemon_peak_rss_mb"] = json!(peak_rss(s.child.id()).map(|b| b / (1 << 20)));
        // Until searchable, like the ceiling's until its commit.
        report["daemon_cpu_seconds"] = json!(cpu.map(|c| (c * 100.0).round() / 100.0));
        let data = s.data.path().join("data");
        let index_bytes = dir_size(&data.join("index"));
        report["index_bytes"] = json!(index_bytes);
        report["index_fraction_of_raw"] = json!(((index_bytes as f64 / raw_bytes as f64) * 1000.0).round() / 1000.0);
        let _ = Command::new("kill").arg("-TERM").arg(s.child.id().to_string()).status();
        let _ = s.child.wait();
        let _ = &s.data;
    }
    println!("{report}");
    Ok(())
}
