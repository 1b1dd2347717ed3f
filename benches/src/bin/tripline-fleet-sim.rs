//! Precision and recall of `examples/detectors.toml` on a seeded fleet
//! (`bench::fleet`): 50 services for a week by default, fed in process
//! faster than real time by their own timestamps.
//!
//! `cargo run --release -p tripline-bench --bin tripline-fleet-sim -- [--days 7] [--services 50] [--seed 1]`

use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 7)]
    days: u32,
    #[arg(long, default_value_t = 50)]
    services: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Incidents of each kind a day, after the first (learning) day.
    #[arg(long, default_value_t = 4)]
    incidents_per_day: usize,
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/detectors.toml"))]
    config: std::path::PathBuf,
}

#[derive(serde::Deserialize)]
struct File {
    detectors: Vec<detect::detectors::DetectorSpec>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let file: File = toml::from_str(&std::fs::read_to_string(&args.config)?)?;
    let catalog = schemas::Catalog::builtin();
    let detectors = file
        .detectors
        .iter()
        .map(|d| d.compile(&catalog))
        .collect::<Result<Vec<_>, _>>()?;
    let fleet = bench::fleet::Fleet {
        services: args.services,
        routes: 4,
        callees: 3,
        days: args.days,
        peak_rate: 30.0,
        incidents_per_day: args.incidents_per_day,
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    let (scores, fed) = bench::fleet::score(&fleet, &detectors, std::time::Duration::from_secs(300));
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"events": fed, "seconds": secs, "events_per_s": fed as f64 / secs, "scores": scores})
    );
    Ok(())
}
