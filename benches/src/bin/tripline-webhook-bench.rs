//! Webhook delivery, measured end to end: spawns the daemon with a rule
//! that makes one alert per event and a webhook to a local sink (a plain
//! HTTP/1.1 server in this process that answers 200 at once), then
//!
//! 1. **burst**: sends `--burst` events as fast as they are acknowledged
//!    and reports deliveries per second at the sink (first to last);
//! 2. **steady**: sends `--events` at `--rate` events/s and reports, per
//!    alert, the time from the acknowledgement of the event that raised it
//!    to the sink receiving its delivery (p50, p99, max).
//!
//! ```sh
//! tripline-webhook-bench --tripline target/release/tripline --burst 20000 --events 20000 --rate 500
//! ```
//! Prints one JSON object.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::stats::{ms, quantile};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
struct Args {
    /// The tripline binary.
    #[arg(long)]
    tripline: PathBuf,
    /// Events (one alert each) sent as fast as acknowledged.
    #[arg(long, default_value_t = 20_000)]
    burst: usize,
    /// Events sent at `--rate` for the latency phase.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Events per second in the latency phase.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Events per request in the latency phase.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// The webhook's `max_in_flight`.
    #[arg(long, default_value_t = 16)]
    in_flight: u32,
}

const RULE: &str = "title: Bench every call
id: 00000000-0000-0000-0000-00000000be02
level: high
logsource: {product: bench}
suppression: {duration: 0}
detection:
    sel:
        event.action: bench-call
    condition: sel
";

/// Arrival time of each delivery, by the id of the event that raised it.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

fn serve(stream: TcpStream, arrivals: Arrivals) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        let at = Instant::now();
        out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if let Some(first) = v["data"]["event_ids"][0].as_str() {
            arrivals.lock().expect("sink lock").insert(first.to_string(), at);
        }
    }
}

fn events(prefix: &str, from: usize, n: usize) -> (Vec<String>, Vec<u8>) {
    let now = schemas::time::format(time::OffsetDateTime::now_utc());
    let mut ids = Vec::with_capacity(n);
    let mut body = Vec::new();
    for i in from..from + n {
        let id = format!("{prefix}-{i}");
        let line =
            json!({"@timestamp": now, "event": {"id": id, "action": "bench-call"}, "source": {"ip": "10.9.0.1"}});
        body.extend_from_slice(line.to_string().as_bytes());
        body.push(b'\n');
        ids.push(id);
    }
    (ids, body)
}

fn send(base: &str, token: &str, body: &[u8]) -> anyhow::Result<()> {
    let resp = ureq::post(&format!("{base}/api/v1/ingest?source=bench"))
        .header("Authorization", &format!("Bearer {token}"))
        .send(body)?;
    if resp.status() != 200 {
        bail!("ingest answered {}", resp.status());
    }
    Ok(())
}

fn wait_for(arrivals: &Arrivals, ids: &[String], limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let got = {
            let a = arrivals.lock().expect("sink lock");
            ids.iter().filter(|i| a.contains_key(*i)).count()
        };
        if got == ids.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {got} of {} deliveries arrived", ids.len());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work = tempfile::tempdir()?;
    let sink = TcpListener::bind("127.0.0.1:0")?;
    let port = sink.local_addr()?.port();
    let arrivals: Arrivals = Arc::default();
    let a = arrivals.clone();
    std::thread::spawn(move || {
        for s in sink.incoming().map_while(Result::ok) {
            let a = a.clone();
            std::thread::spawn(move || serve(s, a));
        }
    });
    let rules = work.path().join("rules");
    std::fs::create_dir_all(&rules)?;
    std::fs::write(rules.join("bench.yml"), RULE)?;
    let config = work.path().join("tripline.toml");
    std::fs::write(
        &config,
        format!(
            "[detect]\nrules_dir = \"{}\"\n\n[egress]\nallow_private_networks = [\"127.0.0.0/8\"]\n\n\
             [[webhooks]]\nid = \"sink\"\nurl = \"http://127.0.0.1:{port}/\"\nallow_http = true\nmax_in_flight = {}\n",
            rules.display(),
            args.in_flight
        ),
    )?;
    let token = "bench-admin-token-0123456789abcdef";
    let mut child = Command::new(&args.tripline)
        .args(bench::daemon::SERVE_ON_PORT_0)
        .arg(work.path().join("data"))
        .arg("--config")
        .arg(&config)
        .env("TRIPLINE_ADMIN_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning tripline")?;
    let base = bench::daemon::wait_ready(child.stdout.take().context("stdout")?, Duration::from_secs(120))?;

    // Burst: as fast as acknowledged, 1000 per request.
    let started = Instant::now();
    let mut burst_ids = Vec::new();
    for from in (0..args.burst).step_by(1000) {
        let (ids, body) = events("burst", from, 1000.min(args.burst - from));
        send(&base, token, &body)?;
        burst_ids.extend(ids);
    }
    let acked = started.elapsed();
    wait_for(&arrivals, &burst_ids, Duration::from_secs(1800))?;
    let (first, last) = {
        let a = arrivals.lock().expect("sink lock");
        let times: Vec<Instant> = burst_ids.iter().filter_map(|i| a.get(i).copied()).collect();
        (
            times.iter().min().copied().unwrap_or(started),
            times.iter().max().copied().unwrap_or(started),
        )
    };
    let span = last.duration_since(first).as_secs_f64().max(1e-9);

    // Steady: one batch every batch/rate seconds; latency from its ack.
    let per_batch = Duration::from_secs_f64(args.batch as f64 / args.rate);
    let mut acks: Vec<(String, Instant)> = Vec::new();
    let t0 = Instant::now();
    for (k, from) in (0..args.events).step_by(args.batch).enumerate() {
        let due = t0 + per_batch * u32::try_from(k).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (ids, body) = events("steady", from, args.batch.min(args.events - from));
        send(&base, token, &body)?;
        let at = Instant::now();
        acks.extend(ids.into_iter().map(|i| (i, at)));
    }
    let ids: Vec<String> = acks.iter().map(|(i, _)| i.clone()).collect();
    wait_for(&arrivals, &ids, Duration::from_secs(600))?;
    let mut lat: Vec<Duration> = {
        let a = arrivals.lock().expect("sink lock");
        acks.iter()
            .filter_map(|(i, at)| a.get(i).map(|r| r.saturating_duration_since(*at)))
            .collect()
    };
    lat.sort();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "{}",
        json!({
            "burst": {
                "alerts": args.burst,
                "acked_s": acked.as_secs_f64(),
                "deliveries_per_s": burst_ids.len() as f64 / span,
            },
            "steady": {
                "rate": args.rate,
                "alerts": lat.len(),
                "ack_to_delivery_ms_p50": ms(quantile(&lat, 0.5)),
                "ack_to_delivery_ms_p99": ms(quantile(&lat, 0.99)),
                "ack_to_delivery_ms_max": ms(lat.last().copied().unwrap_or_default()),
            },
        })
    );
    Ok(())
}
