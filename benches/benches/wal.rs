//! The WAL's append + fsync path: one writer, and eight concurrent ones
//! sharing fsyncs (group commit).
//!
//! `cargo bench -p tripline-bench --bench wal`

use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wal::{Lsn, Wal, WalConfig, WalMetrics};

fn wal(c: &mut Criterion) {
    let mut g = bench::gen::Generator::new(3, 1_700_000_000_000_000_000);
    let events: Vec<schemas::Event> = (0..200)
        .map(|_| schemas::Event::from_json(g.next_json()).expect("generated events are objects"))
        .collect();
    let batch = wal::Batch::encode(events);
    let payload_len = batch.payload().len();
    let dir = tempfile::tempdir().expect("temp dir");
    let (tx, rx) = sync_channel(1 << 16);
    // Drain what the log forwards, as the indexer would.
    std::thread::spawn(move || for _ in rx {});
    let (log, _) = Wal::open(WalConfig::new(dir.path()), vec![], Lsn(0), WalMetrics::default(), tx).expect("open wal");
    let log = Arc::new(log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");

    let mut group = c.benchmark_group("wal");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(payload_len as u64));
    group.bench_function("append+fsync/1-writer", |b| {
        b.iter(|| rt.block_on(log.append(batch.clone())).expect("append"))
    });
    group.throughput(Throughput::Bytes(8 * payload_len as u64));
    group.bench_function("append+fsync/8-writers", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..8)
                    .map(|_| {
                        let (log, b) = (log.clone(), batch.clone());
                        tokio::spawn(async move { log.append(b).await })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("join").expect("append");
                }
            })
        })
    });
    group.finish();
    log.close();
}

criterion_group!(benches, wal);
criterion_main!(benches);
