//! Syslog over TCP and UDP from real senders: util-linux `logger` and
//! rsyslog (`omfwd`), installed by `.ci/run`. With
//! `TRIPLINE_REQUIRE_SHIPPERS=1` (CI) a missing sender fails the test;
//! elsewhere the test says it skipped.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// The path of `program`, or `None` (a failure in CI) when it is missing.
fn shipper(program: &str, candidates: &[&str]) -> Option<String> {
    for c in candidates {
        if Path::new(c).exists() {
            return Some(c.to_string());
        }
    }
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if found.is_none() {
        assert!(
            std::env::var_os("TRIPLINE_REQUIRE_SHIPPERS").is_none(),
            "{program} is not installed, and this run requires it (.ci/run installs it)"
        );
        eprintln!("skipped: {program} is not installed");
    }
    found
}

fn boot(config: &str) -> (tempfile::TempDir, Daemon, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"), config);
    let addr = d.syslog.expect("the syslog listener is on");
    (dir, d, addr)
}

fn logger(bin: &str, addr: SocketAddr, extra: &[&str], message: &str) {
    let status = Command::new(bin)
        .args(["--server", &addr.ip().to_string(), "--port", &addr.port().to_string()])
        .args(extra)
        .arg(message)
        .status()
        .unwrap();
    assert!(status.success(), "logger {extra:?} failed");
}

#[test]
fn logger_sends_rfc5424_over_tcp_with_and_without_octet_counting_and_over_udp() {
    let Some(bin) = shipper("logger", &["/usr/bin/logger"]) else {
        return;
    };
    let (_dir, d, addr) = boot("");
    let cases = [
        ("tcp-lf", vec!["--tcp", "--rfc5424"], "eve"),
        ("tcp-octet", vec!["--tcp", "--rfc5424", "--octet-count"], "mallory"),
        ("udp", vec!["--udp", "--rfc5424"], "trudy"),
    ];
    for (tag, args, user) in &cases {
        let mut args: Vec<&str> = args.clone();
        args.extend(["--tag", tag, "--priority", "auth.warning"]);
        let msg = format!("Failed password for invalid user {user} from 203.0.113.5 port 4242 ssh2");
        logger(&bin, addr, &args, &msg);
    }
    for (tag, _, user) in &cases {
        let found = wait_total(&d.base, &format!("user.name:{user}"), 1);
        let hit = &found["hits"][0];
        assert_eq!(hit["process.name"], *tag, "{hit}");
        assert_eq!(hit["source.ip"], "203.0.113.5", "{hit}");
        assert_eq!(hit["source.port"], 4242, "{hit}");
        assert_eq!(hit["event.category"], "authentication", "{hit}");
        assert_eq!(hit["event.outcome"], "failure", "{hit}");
        assert_eq!(hit["log.syslog.facility.name"], "auth", "{hit}");
        assert_eq!(hit["log.level"], "warning", "{hit}");
        assert_eq!(hit["event.dataset"], "syslog", "{hit}");
        assert!(hit["host.hostname"].as_str().is_some_and(|h| !h.is_empty()), "{hit}");
        // logger sends its time quality as structured data.
        assert_eq!(hit["syslog.sd.timeQuality.tzKnown"], "1", "{hit}");
    }
    let metrics = metrics_text(&d);
    assert!(
        metrics.contains("tripline_syslog_frames_total{transport=\"tcp\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tripline_syslog_frames_total{transport=\"udp\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tripline_ingested_events_by_format_total{source=\"syslog\",format=\"syslog\"} 3"),
        "{metrics}"
    );
}

#[test]
fn rsyslog_forwards_a_files_lines_with_omfwd_in_its_traditional_format() {
    let Some(bin) = shipper("rsyslogd", &["/usr/sbin/rsyslogd"]) else {
        return;
    };
    let (dir, d, addr) = boot("");
    let work = dir.path().join("rsyslog");
    std::fs::create_dir_all(&work).unwrap();
    // Every `Failed password` line of the loghub OpenSSH sample (`message
    // repeated N times: [ Failed password ...]` included), its syslog
    // header cut off: rsyslog adds its own.
    let sample =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/loghub/OpenSSH_2k.log"))
            .unwrap();
    let says_it = regex_lite_failed_password;
    let bodies: Vec<&str> = sample
        .lines()
        .filter(|l| says_it(l))
        .filter_map(|l| l.split_once("]: ").map(|(_, body)| body))
        .collect();
    assert!(bodies.len() > 100);
    let input = work.join("auth.log");
    std::fs::write(&input, bodies.join("\n") + "\n").unwrap();
    let conf = work.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}")
module(load="imfile")
input(type="imfile" file="{input}" tag="sshd[77]:" facility="authpriv" severity="info")
action(type="omfwd" target="{ip}" port="{port}" protocol="tcp" template="RSYSLOG_TraditionalForwardFormat")
"#,
            work = work.display(),
            input = input.display(),
            ip = addr.ip(),
            port = addr.port()
        ),
    )
    .unwrap();
    let mut rsyslog = Command::new(&bin)
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(work.join("rsyslogd.pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let n = bodies.len() as u64;
    let found = wait_total(
        &d.base,
        "process.name:sshd AND event.outcome:failure AND source.ip:*",
        n,
    );
    let _ = rsyslog.kill();
    let _ = rsyslog.wait();
    let hit = &found["hits"][0];
    assert_eq!(hit["log.syslog.facility.name"], "authpriv", "{hit}");
    assert_eq!(hit["process.pid"], 77, "{hit}");
    assert!(hit["user.name"].as_str().is_some(), "{hit}");
    // Nothing came in that did not parse.
    wait_total(&d.base, "tags:_parse_failure", 0);
}

/// The issue's count, kept apart from the parser: `Failed password for`
/// anywhere in the line.
fn regex_lite_failed_password(line: &str) -> bool {
    line.contains("Failed password for ")
}

#[test]
fn senders_outside_the_allow_list_are_dropped_and_counted() {
    let (_dir, d, addr) = boot("[syslog]\nallow = [\"10.0.0.0/8\"]\n");
    let mut tcp = TcpStream::connect(addr).unwrap();
    // The connection is closed without a byte read.
    let _ = tcp.write_all(b"<13>Jan  2 10:00:00 gw app: denied over tcp\n");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1];
    assert!(matches!(tcp.read(&mut buf), Ok(0) | Err(_)));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"<13>Jan  2 10:00:00 gw app: denied over udp", addr)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = metrics_text(&d);
        if m.contains("tripline_syslog_denied_total{transport=\"tcp\"} 1")
            && m.contains("tripline_syslog_denied_total{transport=\"udp\"} 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A marker over HTTP, searchable after anything sent before it.
    ingest(&d.base, "marker", Some(ADMIN), b"{\"message\":\"marker\"}\n", None).unwrap();
    wait_committed(&d.base);
    wait_total(&d.base, "denied", 0);
}

/// CVE-2022-24903 was a heap overflow on a huge octet count: here it
/// closes the connection, counted, and the listener goes on.
#[test]
fn a_huge_octet_count_closes_the_connection_and_others_go_on() {
    let (_dir, d, addr) = boot("");
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(b"12 <13>Jan  2 1\n9223372036854775808 <13>").unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1];
    assert!(
        matches!(tcp.read(&mut buf), Ok(0) | Err(_)),
        "the connection stays open"
    );
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(b"<13>Jan  2 10:00:00 gw app: after the bad one\n")
        .unwrap();
    drop(tcp);
    wait_total(&d.base, "\"after the bad one\"", 1);
    let m = metrics_text(&d);
    assert!(m.contains("tripline_syslog_framing_errors_total 1"), "{m}");
    // The frame before the bad count was whole: it is stored.
    wait_total(&d.base, "event.dataset:syslog", 2);
}

/// A line over the frame limit is stored cut, counted, and the rest of it
/// skipped; the next line is read as usual.
#[test]
fn a_line_over_the_frame_limit_is_stored_cut_and_the_next_one_whole() {
    let (_dir, d, addr) = boot("[syslog]\nmax_frame_bytes = 1024\n");
    let mut tcp = TcpStream::connect(addr).unwrap();
    let long = format!("<13>Jan  2 10:00:00 gw app: {}\n", "x".repeat(5000));
    tcp.write_all(long.as_bytes()).unwrap();
    tcp.write_all(b"<13>Jan  2 10:00:01 gw app: the next line\n").unwrap();
    drop(tcp);
    wait_total(&d.base, "\"the next line\"", 1);
    let found = wait_total(&d.base, "event.dataset:syslog", 2);
    let lens: Vec<usize> = found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["message"].as_str().unwrap().len())
        .collect();
    assert!(
        lens.contains(&(1024 - "<13>Jan  2 10:00:00 gw app: ".len())),
        "{lens:?}"
    );
    assert!(metrics_text(&d).contains("tripline_syslog_truncated_total 1"));
}

/// Frames of every format the listener is told to expect, over one TCP
/// connection in one write: each is an event with its fields.
#[test]
fn a_listener_in_auto_format_parses_each_frame_by_its_own_format() {
    let (_dir, d, addr) = boot("[syslog]\nformat = \"auto\"\nsource = \"edge\"\n");
    let frames = [
        "<134>Feb 12 10:01:02 fw01 CEF:0|Palo|PAN-OS|9|THREAT|url|3|src=192.0.2.7 act=blocked",
        "LEEF:2.0|Lancope|StealthWatch|1.0|41|^|src=192.0.2.8^usrName=joe",
        "203.0.113.9 - alice [02/Dec/2026:06:25:24 +0000] \"GET /admin HTTP/1.1\" 403 512 \"-\" \"sqlmap/1.7\"",
        "level=warn msg=\"disk almost full\" host=db1",
    ];
    let mut body = String::new();
    for f in frames {
        body.push_str(&format!("{} {f}", f.len()));
    }
    TcpStream::connect(addr).unwrap().write_all(body.as_bytes()).unwrap();
    wait_total(&d.base, "event.dataset:edge", 4);
    for (q, n) in [
        ("source.ip:192.0.2.7 AND event.action:blocked", 1),
        ("source.ip:192.0.2.8 AND user.name:joe", 1),
        (
            "http.response.status_code:403 AND user.name:alice AND url.path:\"/admin\"",
            1,
        ),
        ("log.level:warn AND message:\"disk almost full\"", 1),
    ] {
        wait_total(&d.base, q, n);
    }
    let (_, all) = search(&d.base, ADMIN, json!({"query": "tags:_parse_failure"}));
    assert_eq!(all["total"], 0, "{all}");
}

/// A silent connection is closed after the idle timeout; one over the
/// connection limit is closed at once; both are counted.
#[test]
fn idle_and_surplus_connections_are_closed_and_counted() {
    let (_dir, d, addr) = boot("[syslog]\nidle_timeout_secs = 3\nmax_connections = 1\n");
    let mut first = TcpStream::connect(addr).unwrap();
    first.write_all(b"<13>Jan  2 10:00:00 gw app: first\n").unwrap();
    // The only slot is taken: the second connection is closed unread.
    let mut second = TcpStream::connect(addr).unwrap();
    second.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1];
    assert!(matches!(second.read(&mut buf), Ok(0) | Err(_)));
    // The first goes silent and is closed after the timeout.
    first.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    assert!(matches!(first.read(&mut buf), Ok(0) | Err(_)));
    assert!(started.elapsed() < Duration::from_secs(10));
    let m = metrics_text(&d);
    assert!(m.contains("tripline_syslog_connections_refused_total 1"), "{m}");
    assert!(m.contains("tripline_syslog_idle_closed_total 1"), "{m}");
    wait_total(&d.base, "first", 1);
    // Its slot is free again.
    TcpStream::connect(addr)
        .unwrap()
        .write_all(b"<13>Jan  2 10:00:00 gw app: third\n")
        .unwrap();
    wait_total(&d.base, "third", 1);
}

/// A sender that closes in the middle of an octet-counted frame: what it
/// sent is stored raw and tagged, not dropped.
#[test]
fn a_frame_cut_short_by_the_close_is_stored_raw_not_dropped() {
    let (_dir, d, addr) = boot("");
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(b"40 <13>Jan  2 10:00:00 gw app: cut short").unwrap();
    drop(tcp);
    let found = wait_total(&d.base, "event.dataset:syslog AND tags:_parse_failure", 1);
    assert_eq!(found["hits"][0]["message"], "40 <13>Jan  2 10:00:00 gw app: cut short");
}
