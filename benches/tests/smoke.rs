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

    let report = report_of(
        Command::new(env!("CARGO_BIN_EXE_tripline-ceiling"))
            .arg("--input")
            .arg(&corpus),
    );
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

/// Stops the daemon however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a bench tool to completion and returns the JSON report it printed.
fn report_of(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Starts the daemon of this workspace (`cargo test --workspace` builds it)
/// on port 0; returns it and its base URL.
fn start_daemon(data: &std::path::Path, token: &str) -> (std::process::Child, String) {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_tripline-load"))
        .with_file_name(format!("tripline{}", std::env::consts::EXE_SUFFIX));
    assert!(
        exe.exists(),
        "{} is missing: run the workspace's tests (cargo test --workspace) or build it first",
        exe.display()
    );
    let mut child = Command::new(&exe)
        .args(bench::daemon::SERVE_ON_PORT_0)
        .arg(data)
        .env("TRIPLINE_ADMIN_TOKEN", token)
        .env("TRIPLINE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let base = bench::daemon::wait_ready(stdout, std::time::Duration::from_secs(120)).unwrap();
    (child, base)
}

#[test]
fn load_drives_a_daemon_and_query_bench_finds_the_needle() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.ndjson");
    let status = Command::new(env!("CARGO_BIN_EXE_tripline-gen"))
        .args([
            "--events",
            "2500",
            "--seed",
            "3",
            "--span-hours",
            "2",
            "--needle-every",
            "500",
            "--out",
        ])
        .arg(&corpus)
        .status()
        .unwrap();
    assert!(status.success());
    let token = "smoke-admin-token-0123456789";
    let (daemon, base) = start_daemon(&dir.path().join("data"), token);
    let _stop = KillOnDrop(daemon);

    // Open model at a rate it easily sustains, batches that do not divide
    // the corpus evenly: every event acknowledged, the needles then found.
    let report = report_of(
        Command::new(env!("CARGO_BIN_EXE_tripline-load"))
            .args([
                "--server",
                &base,
                "--token",
                token,
                "--connections",
                "2",
                "--batch",
                "300",
                "--rate",
                "20000",
            ])
            .arg("--input")
            .arg(&corpus),
    );
    assert_eq!(report["events"], 2500);
    assert_eq!(report["raw_bytes"], std::fs::metadata(&corpus).unwrap().len());
    assert!(report["acked"]["events_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["ack_latency_ms"]["p99"].as_f64().unwrap() > 0.0);

    let report = report_of(
        Command::new(env!("CARGO_BIN_EXE_tripline-query-bench"))
            .args(["--server", &base, "--token", token, "--runs", "2", "--skip-ripgrep"])
            .arg("--input")
            .arg(&corpus),
    );
    assert_eq!(report["needle, all time"]["total"], 5, "{report}");
    assert!(report["1-hour window + term"]["total"].as_u64().is_some());
}
