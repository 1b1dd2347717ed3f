//! End to end: `tripline query`, the built binary, against a booted daemon.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::{json, Value};

fn boot() -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"), FAST_COMMITS);
    (dir, d)
}

/// `tripline ARGS` in `cwd`, with no token from the test's environment.
fn tripline(cwd: &Path, server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tripline"))
        .current_dir(cwd)
        .env("TRIPLINE_SERVER", server)
        .env_remove("TRIPLINE_TOKEN")
        .env("RUST_BACKTRACE", "0")
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Regression: clap took `-1h` for a flag ("unexpected argument '-1'"), so
/// the README's own example failed. Run here exactly as the README prints
/// it, from a directory with `tripline-data/admin.token`.
#[test]
fn the_readme_query_with_a_relative_start_works_as_printed() {
    let (dir, d) = boot();
    let body =
        b"{\"message\":\"Failed password for root\",\"source\":{\"ip\":\"10.1.2.3\"},\"user\":{\"name\":\"root\"}}\n";
    assert_eq!(ingest(&d.base, "sshd", Some(ADMIN), body, None).unwrap().0, 200);
    wait_total(&d.base, "*", 1);
    let cwd = dir.path().join("analyst");
    std::fs::create_dir_all(cwd.join("tripline-data")).unwrap();
    std::fs::write(cwd.join("tripline-data/admin.token"), format!("{ADMIN}\n")).unwrap();

    let out = tripline(
        &cwd,
        &d.base,
        &["query", "source.ip:10.0.0.0/8 AND user.name:root", "--start", "-1h"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let row = stdout.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("sshd") && row.contains("Failed password for root"),
        "{stdout}"
    );
    assert!(stderr.contains("1 of 1 hits"), "{stderr}");

    // --end takes relative times too; a window that ended an hour ago is empty.
    let out = tripline(&cwd, &d.base, &["query", "*", "--start", "-2h", "--end", "-1h"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "the header only: {stdout}");
}

/// L4: `--token` puts the secret in argv, where `ps` shows it to every local
/// user; `--token-file` keeps it out.
#[test]
fn the_token_can_come_from_a_file_instead_of_argv() {
    let (dir, d) = boot();
    assert_eq!(
        ingest(&d.base, "app", Some(ADMIN), b"{\"message\":\"filed\"}\n", None)
            .unwrap()
            .0,
        200
    );
    wait_total(&d.base, "*", 1);
    let mut resp = agent()
        .post(&d.url("/api/v1/tokens"))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .send_json(json!({"name": "analyst", "scopes": ["search"]}))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let created: Value = resp.body_mut().read_json().unwrap();
    let secret = created["token"].as_str().unwrap();
    let file = dir.path().join("analyst.token");
    std::fs::write(&file, format!("{secret}\n")).unwrap();

    let out = tripline(
        dir.path(),
        &d.base,
        &[
            "query",
            "--token-file",
            file.to_str().unwrap(),
            "filed",
            "--start",
            "-1h",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("filed"), "{stdout}");

    std::fs::write(&file, "tl_not-a-token\n").unwrap();
    let out = tripline(
        dir.path(),
        &d.base,
        &["query", "--token-file", file.to_str().unwrap(), "*"],
    );
    assert!(!out.status.success());
    assert!(text(&out).1.contains("401"), "{}", text(&out).1);

    let missing = dir.path().join("missing.token");
    let out = tripline(
        dir.path(),
        &d.base,
        &["query", "--token-file", missing.to_str().unwrap(), "*"],
    );
    assert!(!out.status.success());
    assert!(text(&out).1.contains("missing.token"), "{}", text(&out).1);
}

/// M10: event content must not reach the analyst's terminal as escape
/// sequences (erase line, retitle, OSC 52 clipboard writes, 8-bit CSI).
#[test]
fn control_characters_in_events_are_escaped_in_the_table() {
    let (dir, d) = boot();
    let body = concat!(
        "{\"message\":\"evil\\u001b]0;pwned\\u0007\\u001b[2Khidden\\u009b2J\\u007f\"}\n",
        "{\"user.name\":\"x\\u001b[31mred\",\"tag\\u001bname\":\"v\"}\n",
    );
    assert_eq!(
        ingest(&d.base, "esc", Some(ADMIN), body.as_bytes(), None).unwrap().0,
        200
    );
    wait_total(&d.base, "*", 2);
    for args in [
        &["query", "--token", ADMIN, "*"][..],
        &["query", "--token", ADMIN, "--json", "*"][..],
    ] {
        let out = tripline(dir.path(), &d.base, args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        assert!(
            !stdout.chars().any(|c| c != '\n' && c.is_control()),
            "{args:?} printed a control character: {stdout:?}"
        );
        assert!(stdout.contains("evil"), "{stdout}");
    }
    let out = tripline(dir.path(), &d.base, &["query", "--token", ADMIN, "*"]);
    let stdout = text(&out).0;
    assert!(
        stdout.contains("evil\\u{1b}]0;pwned\\u{7}\\u{1b}[2Khidden\\u{9b}2J\\u{7f}"),
        "{stdout}"
    );
    assert!(stdout.contains("user.name=x\\u{1b}[31mred"), "{stdout}");
}

/// `tripline rules check DIR`: each rule's state, the totals, a histogram
/// of reasons; `--strict` fails when any rule is refused.
#[test]
fn rules_check_lists_each_rule_and_strict_fails_on_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.yml"),
        "title: Root login\nid: g1\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  sel:\n    userIdentity.type: Root\n  condition: sel\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("more")).unwrap();
    std::fs::write(
        dir.path().join("more/bad.yaml"),
        "title: Bad\nid: b1\ndetection:\n  sel:\n    f|nosuch: 1\n  condition: sel\n",
    )
    .unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let out = tripline(dir.path(), "http://127.0.0.1:1", &["rules", "check", dir_arg]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("loaded   g1  Root login\n"), "{stdout}");
    assert!(
        stdout.contains("rule b1 refused: sel: f|nosuch: unknown modifier \"nosuch\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 loaded (0 with a logsource not mapped, 0 correlations), 1 refused"),
        "{stdout}"
    );
    let strict = tripline(
        dir.path(),
        "http://127.0.0.1:1",
        &["rules", "check", "--strict", dir_arg],
    );
    assert_eq!(strict.status.code(), Some(1));
}

/// `tripline rules test RULE_FILE EVENTS`: the events parsed as ingest
/// would (`auto`), each match printed with its line.
#[test]
fn rules_test_prints_each_match_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("rule.yml");
    std::fs::write(
        &rule,
        "title: SSH root login failed\nid: s1\nlevel: high\nlogsource: {product: linux, service: sshd}\ndetection:\n  sel:\n    user.name: root\n    event.outcome: failure\n  condition: sel\n\
         ---\ntitle: Root guessing\nid: c1\nlevel: critical\ncorrelation:\n  type: event_count\n  rules: [s1]\n  generate: true\n  \
         group-by: [user.name]\n  timespan: 1h\n  condition: {gte: 2}\n",
    )
    .unwrap();
    let events = dir.path().join("auth.log");
    std::fs::write(
        &events,
        "Dec 10 06:55:46 LabSZ sshd[24200]: Failed password for root from 1.2.3.4 port 22 ssh2\n\
         Dec 10 06:55:47 LabSZ sshd[24201]: Accepted password for root from 1.2.3.4 port 22 ssh2\n\
         \n\
         Dec 10 06:55:48 LabSZ su[24202]: Failed password for root from 1.2.3.4 port 22 ssh2\n\
         {\"@timestamp\":\"2026-12-01T00:00:00Z\",\"process\":{\"name\":\"sshd\"},\"user\":{\"name\":\"root\"},\"event\":{\"outcome\":\"failure\"}}\n\
         {\"@timestamp\":\"2026-12-01T00:10:00Z\",\"process\":{\"name\":\"sshd\"},\"user\":{\"name\":\"root\"},\"event\":{\"outcome\":\"failure\"}}\n",
    )
    .unwrap();
    let out = tripline(
        dir.path(),
        "http://127.0.0.1:1",
        &["rules", "test", rule.to_str().unwrap(), events.to_str().unwrap()],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // Line 4 is not sshd's: the logsource does not select it.
    assert_eq!(
        stdout,
        "line 1  s1  high  SSH root login failed\nline 5  s1  high  SSH root login failed\n\
         line 6  s1  high  SSH root login failed\n\
         line 6  c1  critical  Root guessing  (correlation: 2 events, user.name=root)\n\
         4 matches in 5 events, 1 rules, 1 correlations\n"
    );
}
