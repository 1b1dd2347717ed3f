//! Query latency against a running daemon, and the same needle answered by
//! ripgrep over the raw NDJSON, as a ratio.
//!
//! ```text
//! tripline-query-bench --server http://127.0.0.1:7490 --token $T --input corpus.ndjson --runs 20
//! ```
//! The corpus is from `tripline-gen` (the needle is its rare IP); the window
//! query takes the hour after the corpus's first event.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::gen::NEEDLE_IP;
use bench::stats::{ms, quantile};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
struct Args {
    /// URL of a daemon holding the corpus.
    #[arg(long)]
    server: String,
    /// Token with scope search.
    #[arg(long, env = "TRIPLINE_TOKEN", hide_env_values = true)]
    token: String,
    /// The raw NDJSON corpus, for ripgrep and for the time window.
    #[arg(long)]
    input: PathBuf,
    /// Repetitions of each query.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Leave out the ripgrep comparison (when `rg` is not installed).
    #[arg(long)]
    skip_ripgrep: bool,
}

fn summary(mut samples: Vec<Duration>) -> Value {
    samples.sort_unstable();
    json!({"p50_ms": ms(quantile(&samples, 0.5)), "p99_ms": ms(quantile(&samples, 0.99))})
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let first_line = std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&args.input)?))
        .next()
        .context("empty corpus")??;
    let first: Value = serde_json::from_str(&first_line)?;
    let t0 = first["@timestamp"]
        .as_str()
        .or_else(|| first["eventTime"].as_str())
        .and_then(schemas::time::parse_str)
        .context("first event has no time")?;
    let hour = |t: time::OffsetDateTime| schemas::time::format(t);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    let search = format!("{}/api/v1/search", args.server.trim_end_matches('/'));
    let queries = [
        (
            "needle, all time",
            json!({"query": format!("source.ip:{NEEDLE_IP}"), "limit": 100}),
        ),
        (
            "1-hour window + term",
            json!({"query": "http.response.status_code:503", "start": hour(t0 + time::Duration::hours(1)),
                   "end": hour(t0 + time::Duration::hours(2)), "limit": 100}),
        ),
        (
            "full text, all time",
            json!({"query": "\"failed password\" AND host.name:host-042", "limit": 100}),
        ),
    ];
    let mut report = serde_json::Map::new();
    let mut needle_p50 = Duration::ZERO;
    let mut needle_hits = 0;
    for (name, body) in &queries {
        let mut samples = Vec::with_capacity(args.runs);
        let mut total = 0;
        for _ in 0..args.runs.max(1) {
            let t = Instant::now();
            let mut r = agent
                .post(&search)
                .header("Authorization", &format!("Bearer {}", args.token))
                .send_json(body)?;
            let v: Value = r.body_mut().read_json()?;
            samples.push(t.elapsed());
            total = v["total"].as_u64().with_context(|| format!("{name}: {v}"))?;
        }
        let mut s = summary(samples.clone());
        s["total"] = json!(total);
        if *name == "needle, all time" {
            samples.sort_unstable();
            needle_p50 = quantile(&samples, 0.5);
            needle_hits = total;
        }
        report.insert(name.to_string(), s);
    }
    if args.skip_ripgrep {
        println!("{}", Value::Object(report));
        return Ok(());
    }
    // ripgrep over the raw file, the way people hunt without a SIEM.
    let mut rg = Vec::new();
    for _ in 0..args.runs.clamp(1, 5) {
        let t = Instant::now();
        let out = Command::new("rg")
            .args(["-c", "-F", NEEDLE_IP])
            .arg(&args.input)
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => bail!("ripgrep not found ({e}): cargo install ripgrep"),
        };
        rg.push(t.elapsed());
        let count: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
        if count != needle_hits {
            eprintln!("note: rg counted {count} lines, tripline {needle_hits} hits");
        }
    }
    rg.sort_unstable();
    let rg_p50 = quantile(&rg, 0.5);
    report.insert("ripgrep needle".into(), summary(rg.clone()));
    report.insert(
        "needle speedup vs ripgrep (p50)".into(),
        json!((rg_p50.as_secs_f64() / needle_p50.as_secs_f64().max(1e-6) * 10.0).round() / 10.0),
    );
    println!("{}", Value::Object(report));
    Ok(())
}
