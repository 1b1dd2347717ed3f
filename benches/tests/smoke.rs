//! Keeps the bench tools from rotting: each runs on a tiny input.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn gen_writes_a_deterministic_corpus_and_ceiling_indexes_it() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.ndjson");
    let gen = |out: &std::path::Path| {
        let status = Command::new(env!("CARGO_BIN_EXE_tripline-gen"))
            .args([
                "--events",
                "300",
                "--seed",
                "9",
                "--start",
                "2026-01-01T00:00:00Z",
                "--needle-every",
                "100",
                "--out",
            ])
            .arg(out)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read_to_string(out).unwrap()
    };
    let a = gen(&corpus);
    let b = gen(&dir.path().join("again.ndjson"));
    assert_eq!(a, b, "the same seed must give the same corpus");
    assert_eq!(a.lines().count(), 300);
    assert_eq!(a.matches(bench::gen::NEEDLE_IP).count(), 3);

    let out = Command::new(env!("CARGO_BIN_EXE_tripline-ceiling"))
        .arg("--input")
        .arg(&corpus)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], 300);
    assert!(report["raw_tantivy"]["index_bytes"].as_u64().unwrap() > 0);

    let raw = Command::new(env!("CARGO_BIN_EXE_tripline-gen"))
        .args(["--events", "5", "--raw"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(raw.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("<38>"))
            .count(),
        5
    );
}
