//! The ceiling: the same documents through serde_json alone, and straight
//! into tantivy with Tripline's schema (no HTTP, no WAL).
//!
//! `tripline-ceiling --input corpus.ndjson [--writer-threads 2] [--writer-memory-mb 128]`
//! prints one JSON object with events/s and MB/s for each. Raw tantivy
//! events/s counts until the final commit returns (the documents are
//! searchable, what Tripline's "searchable" is held to);
//! `events_per_s_merged` until its background merges have finished too.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use index::doc::to_document;
use index::EventSchema;
use schemas::{Catalog, Event};
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{Index, IndexSettings, TantivyDocument};

/// The daemon's allocator, so the ratio compares pipelines, not allocators.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
struct Args {
    /// NDJSON corpus (from tripline-gen).
    #[arg(long)]
    input: PathBuf,
    /// Indexing threads, as the daemon's `index.writer_threads`.
    #[arg(long, default_value_t = 2)]
    writer_threads: usize,
    /// Writer memory, as the daemon's `index.writer_memory_mb`.
    #[arg(long, default_value_t = 128)]
    writer_memory_mb: usize,
    /// Commit after this many documents (0: once at the end), to see what
    /// frequent commits and the merges they cause cost.
    #[arg(long, default_value_t = 0)]
    commit_every: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = std::fs::read(&args.input)?;
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let mb = data.len() as f64 / 1e6;

    let t = Instant::now();
    let mut n = 0usize;
    for l in &lines {
        let v: serde_json::Value = serde_json::from_slice(l)?;
        n += usize::from(v.is_object());
    }
    let serde_secs = t.elapsed().as_secs_f64();

    let dir = tempfile::tempdir()?;
    let schema = EventSchema::new(Catalog::builtin());
    let settings = IndexSettings {
        docstore_compression: Compressor::Zstd(ZstdCompressor {
            compression_level: Some(3),
        }),
        docstore_blocksize: 64 << 10,
        ..IndexSettings::default()
    };
    let index = Index::create(
        tantivy::directory::MmapDirectory::open(dir.path())?,
        schema.schema.clone(),
        settings,
    )?;
    EventSchema::register_tokenizers(&index);
    let mut writer =
        index.writer_with_num_threads::<TantivyDocument>(args.writer_threads, args.writer_memory_mb << 20)?;
    let now = ingest::normalize::IngestClock::new(
        time::OffsetDateTime::now_utc(),
        ingest::normalize::TimeWindow::default(),
    );
    let me = std::process::id();
    let cpu0 = bench::stats::cpu_seconds(me).unwrap_or(0.0);
    let t = Instant::now();
    for (i, l) in lines.iter().enumerate() {
        let mut e = Event::from_json_slice(l, schemas::DEPTH_LIMIT)?;
        ingest::normalize::normalize(&mut e, "bench", &now);
        let source = serde_json::to_vec(&e)?;
        writer.add_document(to_document(&schema, &e, &source))?;
        if args.commit_every > 0 && (i + 1) % args.commit_every == 0 {
            writer.commit()?;
        }
    }
    writer.commit()?;
    // Searchable from here: this is what Tripline's "searchable" is held to.
    let tantivy_secs = t.elapsed().as_secs_f64();
    let cpu = bench::stats::cpu_seconds(me).unwrap_or(0.0) - cpu0;
    writer.wait_merging_threads()?;
    let merged_secs = t.elapsed().as_secs_f64();
    let index_bytes = bench::stats::dir_size(dir.path());

    let report = serde_json::json!({
        "events": n,
        "commit_every": args.commit_every,
        "raw_bytes": data.len(),
        "serde_json": { "events_per_s": (n as f64 / serde_secs).round(), "mb_per_s": (mb / serde_secs * 10.0).round() / 10.0 },
        "raw_tantivy": {
            "events_per_s": (n as f64 / tantivy_secs).round(),
            "mb_per_s": (mb / tantivy_secs * 10.0).round() / 10.0,
            "events_per_s_merged": (n as f64 / merged_secs).round(),
            "cpu_seconds": (cpu * 100.0).round() / 100.0,
            "index_bytes": index_bytes,
            "index_fraction_of_raw": ((index_bytes as f64 / data.len() as f64) * 1000.0).round() / 1000.0,
        },
    });
    println!("{report}");
    Ok(())
}
