//! Sends a file of syslog lines to a spawned Tripline over TCP (line
//! framed, as rsyslog and `logger` do) and reports how fast they became
//! searchable.
//!
//! ```text
//! tripline-gen --raw --events 1000000 --out corpus.syslog
//! tripline-syslog-load --spawn target/release/tripline --input corpus.syslog --connections 4
//! ```
//!
//! Syslog has no acknowledgement: the clock runs from the first byte sent
//! until a search counts every line, and the report gives lines per second
//! to searchable, the daemon's CPU seconds and its peak RSS.

use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::stats::{cpu_seconds, peak_rss};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
struct Args {
    /// The `tripline` binary to start on a fresh data dir.
    #[arg(long)]
    spawn: PathBuf,
    /// Syslog lines, one a line.
    #[arg(long)]
    input: PathBuf,
    /// Concurrent TCP connections (the file is cut into as many runs of lines).
    #[arg(long, default_value_t = 4)]
    connections: usize,
}

const TOKEN: &str = "tripline-syslog-load-admin-0123456789";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let total = lines.len();
    if total == 0 {
        bail!("{} holds no lines", args.input.display());
    }
    let data = tempfile::tempdir()?;
    let mut child = Command::new(&args.spawn)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--syslog-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path().join("data"))
        .env("TRIPLINE_ADMIN_TOKEN", TOKEN)
        .env("TRIPLINE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", args.spawn.display()))?;
    let stdout = child.stdout.take().context("daemon stdout")?;
    let hs = bench::daemon::wait_handshake(stdout, Duration::from_secs(600))?;
    let addr: SocketAddr = hs.syslog.context("the daemon printed no syslog address")?;

    let per = total.div_ceil(args.connections.max(1));
    let chunks: Vec<Vec<u8>> = lines
        .chunks(per)
        .map(|c| {
            let mut b = Vec::with_capacity(c.iter().map(|l| l.len() + 1).sum());
            for l in c {
                b.extend_from_slice(l);
                b.push(b'\n');
            }
            b
        })
        .collect();
    let cpu0 = cpu_seconds(child.id());
    let t0 = Instant::now();
    let senders: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut w = BufWriter::with_capacity(256 << 10, TcpStream::connect(addr)?);
                w.write_all(&chunk)?;
                w.flush()
            })
        })
        .collect();
    for s in senders {
        s.join().map_err(|_| anyhow::anyhow!("a sender panicked"))??;
    }
    let sent = t0.elapsed();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let search = format!("{}/api/v1/search", hs.base);
    loop {
        let mut r = agent
            .post(&search)
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .send_json(json!({"query": "event.dataset:syslog", "limit": 1}))?;
        let v: Value = r.body_mut().read_json()?;
        if v["total"].as_u64() == Some(total as u64) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(1800) {
            bail!("only {} of {total} lines became searchable", v["total"]);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let searchable = t0.elapsed();
    let cpu = cpu_seconds(child.id()).zip(cpu0).map(|(b, a)| b - a);
    // How the lines were batched: WAL records (one per read round) and
    // fsyncs (group commits).
    let metrics = agent
        .get(&format!("{}/metrics", hs.base))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()?
        .body_mut()
        .read_to_string()?;
    let metric = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let records = metric("tripline_wal_batch_requests_sum ");
    let fsyncs = metric("tripline_wal_batch_requests_count ");
    let rss = peak_rss(child.id()).map(|b| b / (1 << 20));
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    let mb = text.len() as f64 / 1e6;
    println!(
        "{}",
        json!({
            "lines": total,
            "raw_bytes": text.len(),
            "connections": args.connections,
            "sent_seconds": sent.as_secs_f64(),
            "searchable": {
                "seconds": searchable.as_secs_f64(),
                "events_per_s": (total as f64 / searchable.as_secs_f64()).round(),
                "mb_per_s": (mb / searchable.as_secs_f64() * 10.0).round() / 10.0,
            },
            "daemon_cpu_seconds": cpu.map(|c| (c * 100.0).round() / 100.0),
            "daemon_peak_rss_mb": rss,
            "wal_records": records,
            "wal_fsyncs": fsyncs,
            "lines_per_record": (total as f64 / records).round(),
        })
    );
    Ok(())
}
