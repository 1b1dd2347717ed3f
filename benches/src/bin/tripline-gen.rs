//! Writes a deterministic corpus of fleet events.
//!
//! `tripline-gen --events 1000000 --out corpus.ndjson [--gzip] [--raw]`

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use bench::gen::Generator;
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// Events to write.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Seed; the same seed gives the same corpus.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Time of the first event (RFC 3339); default: `--span-hours` before now.
    #[arg(long)]
    start: Option<String>,
    /// Hours the events are spread over.
    #[arg(long, default_value_t = 24.0)]
    span_hours: f64,
    /// One event in this many carries the needle IP (198.51.100.77).
    #[arg(long, default_value_t = 1_000_000)]
    needle_every: u64,
    /// Raw syslog lines instead of NDJSON.
    #[arg(long)]
    raw: bool,
    /// gzip the output.
    #[arg(long)]
    gzip: bool,
    /// Output file (default stdout).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let span = (args.span_hours * 3600e9) as i128;
    let start = match &args.start {
        Some(s) => schemas::time::parse_str(s).ok_or_else(|| anyhow::anyhow!("--start: not a time: {s}"))?,
        None => time::OffsetDateTime::now_utc() - time::Duration::nanoseconds(span as i64),
    };
    let mut g =
        Generator::new(args.seed, start.unix_timestamp_nanos()).with_step_nanos(span / i128::from(args.events.max(1)));
    g.needle_every = args.needle_every.max(1);
    let sink: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::fs::File::create(p)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out: Box<dyn Write> = if args.gzip {
        Box::new(flate2::write::GzEncoder::new(sink, flate2::Compression::fast()))
    } else {
        sink
    };
    let mut w = BufWriter::with_capacity(1 << 20, &mut out);
    for _ in 0..args.events {
        let line = if args.raw { g.next_raw() } else { g.next_line() };
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    drop(w);
    out.flush()?;
    Ok(())
}
