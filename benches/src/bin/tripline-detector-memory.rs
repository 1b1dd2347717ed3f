//! Memory per key of each detector kind: feeds `--keys` distinct keys to
//! one detector and prints the growth of the process's resident set per
//! key, and the keys held (under the cap, `--cap`).
//!
//! `cargo run --release -p tripline-bench --bin tripline-detector-memory -- --keys 1000000`

use clap::Parser;
use detect::detectors::{DetectorSpec, States};
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// The detectors' `max_keys`.
    #[arg(long, default_value_t = 10_000_000)]
    cap: usize,
}

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let catalog = schemas::Catalog::builtin();
    let kinds = [
        (
            "new_terms",
            "kind = \"new_terms\"\nfields = [\"service.name\", \"url.path\"]\nhistory = \"14d\"\n",
        ),
        (
            "rate_spike",
            "kind = \"rate_spike\"\nkey = [\"service.name\", \"url.path\"]\n",
        ),
        (
            "threshold",
            "kind = \"threshold\"\ngroup_by = [\"service.name\", \"url.path\"]\nwindow = \"1h\"\ncount = 1000000\n",
        ),
    ];
    let mut out = Vec::new();
    for (name, kind) in kinds {
        let text = format!("id = \"m\"\ntitle = \"m\"\nmax_keys = {}\n{kind}", args.cap);
        let spec: DetectorSpec = toml::from_str(&text)?;
        let d = vec![spec.compile(&catalog)?];
        let mut states = States::default();
        let before = rss();
        let t0 = time::OffsetDateTime::now_utc();
        for i in 0..args.keys {
            let e = schemas::Event::from_json(
                json!({"service": {"name": format!("svc-{}", i % 50)}, "url": {"path": format!("/api/v1/items/{i}")}, "event": {"id": format!("e{i}")}}),
            )?;
            let t = t0 + time::Duration::milliseconds(i64::try_from(i).unwrap_or(0));
            states.evaluate(&d, &e, t);
        }
        let grown = rss().saturating_sub(before);
        out.push(json!({"kind": name, "keys_fed": args.keys, "keys_held": states.keys(), "rss_bytes_per_key": grown as f64 / states.keys().max(1) as f64}));
        drop(states);
    }
    println!("{}", serde_json::Value::Array(out));
    Ok(())
}
