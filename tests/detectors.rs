//! Detectors end to end: `[[detectors]]` in the configuration (no rules
//! directory), events over HTTP with their own times, alerts through the
//! alerts API with `detector` as their source, and a SIGKILL in the middle
//! of a window.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const DETECTORS: &str = r#"
[[detectors]]
id = "brute-force"
title = "Brute force"
level = "high"
tags = ["attack.t1110.001"]
kind = "threshold"
filter = "event.outcome:failure"
group_by = ["source.ip"]
window = "5m"
count = 5

[[detectors]]
id = "password-spray"
title = "Password spray"
kind = "threshold"
filter = "event.outcome:failure"
group_by = ["source.ip"]
window = "10m"
distinct = "user.name"
min_distinct = 4

[[detectors]]
id = "outside-caller"
title = "Call from outside the trusted ranges"
kind = "untrusted_source"
key = "service.name"
[detectors.trusted]
payments = ["10.20.0.0/16"]
"*" = ["10.0.0.0/8"]

[[detectors]]
id = "new-route"
title = "A service calls a route it never called"
kind = "new_terms"
fields = ["service.name", "url.path"]
history = "14d"
learning = "30m"
"#;

fn get(d: &Daemon, path: &str) -> Value {
    let mut resp = agent()
        .get(&d.url(path))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.body_mut().read_json().unwrap()
}

fn send(d: &Daemon, events: &[Value]) {
    let body: String = events.iter().map(|e| format!("{e}\n")).collect();
    let (status, report) = ingest(&d.base, "gateway", Some(ADMIN), body.as_bytes(), None).unwrap();
    assert_eq!(status, 200, "{report}");
}

fn at(minute: i64) -> String {
    let t = time::OffsetDateTime::now_utc()
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap()
        - time::Duration::hours(2)
        + time::Duration::minutes(minute);
    schemas::time::format(t)
}

fn login(minute: i64, ip: &str, user: &str, outcome: &str) -> Value {
    json!({"@timestamp": at(minute), "event": {"outcome": outcome}, "source": {"ip": ip}, "user": {"name": user}})
}

fn call(minute: i64, service: &str, path: &str, ip: &str) -> Value {
    json!({"@timestamp": at(minute), "service": {"name": service}, "url": {"path": path}, "source": {"ip": ip}})
}

/// The alerts once `done` holds; panics after a minute.
fn alerts_when(d: &Daemon, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = get(d, "/api/v1/alerts?start=-1d&limit=100")["alerts"]
            .as_array()
            .unwrap()
            .clone();
        if done(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "never: {list:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn each_detector_alerts_on_its_anomaly_and_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"), &format!("{FAST_COMMITS}{DETECTORS}"));
    let mut events = Vec::new();
    // Quiet: services call their usual routes from inside; a user mistypes.
    for m in 0..40 {
        events.push(call(m, "web", "/login", "10.1.0.5"));
        events.push(call(m, "payments", "/charge", "10.20.3.4"));
    }
    events.push(login(10, "10.1.0.9", "alice", "failure"));
    events.push(login(11, "10.1.0.9", "alice", "success"));
    // Anomalies, after the learning period of new_terms (30 minutes).
    for i in 0..6 {
        events.push(login(41 + i, "203.0.113.5", "root", "failure")); // brute force
    }
    for (i, u) in ["ann", "ben", "cat", "dan"].iter().enumerate() {
        events.push(login(45 + i as i64, "198.51.100.8", u, "failure")); // spray
    }
    events.push(call(50, "payments", "/charge", "10.9.9.9")); // inside 10/8, outside payments'
    events.push(call(52, "web", "/admin/export", "10.1.0.5")); // a new route
    send(&d, &events);

    alerts_when(&d, |a| a.len() >= 4);
    std::thread::sleep(Duration::from_millis(1500));
    let alerts = get(&d, "/api/v1/alerts?start=-1d&limit=100")["alerts"]
        .as_array()
        .unwrap()
        .clone();
    assert!(alerts.len() >= 4);
    let by = |id: &str| -> Vec<&Value> { alerts.iter().filter(|a| a["rule_id"] == id).collect() };
    let brute = by("brute-force");
    assert_eq!(brute.len(), 1, "{alerts:#?}");
    assert_eq!(brute[0]["source"], "detector");
    assert_eq!(brute[0]["group_key"], "source.ip=203.0.113.5");
    assert_eq!(brute[0]["level"], "high");
    assert_eq!(brute[0]["matched"]["count"], 5);
    let spray = by("password-spray");
    assert_eq!(spray.len(), 1, "{alerts:#?}");
    assert_eq!(spray[0]["group_key"], "source.ip=198.51.100.8");
    assert_eq!(
        spray[0]["matched"]["distinct_values"],
        json!(["ann", "ben", "cat", "dan"])
    );
    let outside = by("outside-caller");
    assert_eq!(outside.len(), 1, "{alerts:#?}");
    assert_eq!(outside[0]["group_key"], "service.name=payments,source.ip=10.9.9.9");
    assert_eq!(outside[0]["matched"]["trusted"], json!(["10.20.0.0/16"]));
    let new = by("new-route");
    assert_eq!(new.len(), 1, "{alerts:#?}");
    assert_eq!(new[0]["group_key"], "service.name=web,url.path=/admin/export");
    // The brute force's failures are no spray (one user), the spray's too
    // few for a brute force (4 < 5): nothing else fired.
    assert_eq!(alerts.len(), 4, "{alerts:#?}");

    let detectors = get(&d, "/api/v1/detectors")["detectors"].as_array().unwrap().clone();
    assert_eq!(detectors.len(), 4);
    let new_route = detectors.iter().find(|x| x["id"] == "new-route").unwrap();
    assert_eq!(
        (&new_route["kind"], &new_route["state"]),
        (&json!("new_terms"), &json!("active"))
    );
    assert_eq!(new_route["keys"], 3);
    assert_eq!(new_route["findings"], 1);
    assert!(new_route["memory_bytes"].as_u64().unwrap() > 3 * 64, "{new_route}");
    assert!(new_route["last_finding"].is_string(), "{new_route}");
    let m = metrics_text(&d);
    assert!(m.contains("tripline_detect_detector_findings_total"), "{m}");
}

/// A window half full when the daemon is killed is still half full after
/// the restart: the next failures complete it, and it fires once.
#[test]
fn sigkill_in_the_middle_of_a_window_keeps_it_and_fires_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!("{FAST_COMMITS}{DETECTORS}");
    let mut d = Daemon::start(&data, &config);
    send(
        &d,
        &(0..3)
            .map(|i| login(i, "203.0.113.77", "root", "failure"))
            .collect::<Vec<_>>(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    d.kill();
    let d = Daemon::start(&data, &config);
    send(
        &d,
        &(3..5)
            .map(|i| login(i, "203.0.113.77", "root", "failure"))
            .collect::<Vec<_>>(),
    );
    alerts_when(&d, |a| !a.is_empty());
    std::thread::sleep(Duration::from_millis(1500));
    let alerts = get(&d, "/api/v1/alerts?start=-1d")["alerts"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["rule_id"], "brute-force");
    assert_eq!(alerts[0]["count"], 5);
}

/// A rate spike against a learned baseline, and the baseline an analyst
/// reads to see why it fired.
#[test]
fn a_rate_spike_fires_against_its_learned_baseline_and_the_baseline_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{FAST_COMMITS}\n[[detectors]]\nid = \"route-spike\"\ntitle = \"Calls spike on a route\"\nkind = \"rate_spike\"\n\
         key = [\"service.name\", \"url.path\"]\nbucket = \"1m\"\nlearning_buckets = 10\n"
    );
    let d = Daemon::start(&dir.path().join("data"), &config);
    let mut events = Vec::new();
    for m in 0..40 {
        let n = if m == 30 { 150 } else { 30 };
        for i in 0..n {
            let mut e = call(m, "search", "/q", "10.1.0.5");
            e["@timestamp"] = json!(at(m).replace(":00Z", &format!(":{:02}Z", i * 60 / n)));
            events.push(e);
        }
    }
    send(&d, &events);
    let alerts = alerts_when(&d, |a| !a.is_empty());
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a["rule_id"], "route-spike");
    assert_eq!(a["group_key"], "service.name=search,url.path=/q");
    assert_eq!(a["matched"]["baseline_mean"], 30.0);
    assert!(a["matched"]["score"].as_f64().unwrap() > 4.0, "{a:#}");
    let b = get(
        &d,
        "/api/v1/detectors/route-spike/baseline?key=service.name%3Dsearch%2Curl.path%3D%2Fq",
    );
    assert!(b["buckets_seen"].as_u64().unwrap() >= 38, "{b:#}");
    assert!((b["mean"].as_f64().unwrap() - 30.0).abs() < 1.0, "{b:#}");
    let (status, _) = {
        let mut r = agent()
            .get(&d.url("/api/v1/detectors/route-spike/baseline?key=nope"))
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default())
    };
    assert_eq!(status, 404);
}

/// SIGKILL in the middle of a learning period: after the restart the
/// baseline is the one an uninterrupted run learns from the same events,
/// to the last bit, and the spike after it fires exactly once.
#[test]
fn sigkill_while_learning_leaves_the_baseline_an_uninterrupted_run_has() {
    let config = format!(
        "{FAST_COMMITS}\n[[detectors]]\nid = \"route-spike\"\ntitle = \"Calls spike on a route\"\nkind = \"rate_spike\"\n\
         key = [\"service.name\", \"url.path\"]\nbucket = \"1m\"\nlearning_buckets = 20\n"
    );
    let minute = |m: i64| -> Vec<Value> {
        let n = if m == 35 { 200 } else { 20 + (m % 7) as usize };
        (0..n)
            .map(|i| {
                let mut e = call(m, "search", "/q", "10.1.0.5");
                e["@timestamp"] = json!(at(m).replace(":00Z", &format!(":{:02}Z", i * 60 / n)));
                e
            })
            .collect()
    };
    let baseline = |d: &Daemon| {
        let b = get(
            d,
            "/api/v1/detectors/route-spike/baseline?key=service.name%3Dsearch%2Curl.path%3D%2Fq",
        );
        (b["buckets_seen"].clone(), b["mean"].clone(), b["deviation"].clone())
    };
    let dir = tempfile::tempdir().unwrap();
    // Uninterrupted.
    let straight = Daemon::start(&dir.path().join("straight"), &config);
    for m in 0..40 {
        send(&straight, &minute(m));
    }
    // Killed twice while learning (minutes 8 and 15), once after.
    let data = dir.path().join("killed");
    let mut d = Daemon::start(&data, &config);
    for m in 0..40 {
        if m == 8 || m == 15 || m == 30 {
            std::thread::sleep(Duration::from_millis(300 * (m as u64 % 4 + 1)));
            d.kill();
            d = Daemon::start(&data, &config);
        }
        send(&d, &minute(m));
    }
    let want = alerts_when(&straight, |a| !a.is_empty());
    let got = alerts_when(&d, |a| !a.is_empty());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(baseline(&d), baseline(&straight));
    let got_now = get(&d, "/api/v1/alerts?start=-1d")["alerts"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(want.len(), 1, "{want:#?}");
    assert_eq!(got_now.len(), 1, "{got_now:#?}");
    // Event ids are assigned at ingest, so the alert ids differ; what
    // the detector saw does not.
    assert_eq!(got[0]["group_key"], want[0]["group_key"]);
    assert_eq!(got[0]["matched"], want[0]["matched"]);
}

/// A new `new_terms` detector learns its history from the index at its
/// first start: a term already in the history window is not new, one
/// that is not alerts at once, with no learning period on the stream.
#[test]
fn a_new_terms_detector_added_later_seeds_its_history_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data, FAST_COMMITS);
    send(
        &d,
        &[
            call(0, "web", "/login", "10.1.0.5"),
            call(1, "payments", "/charge", "10.20.3.4"),
        ],
    );
    wait_committed(&d.base);
    d.stop();
    let config = format!(
        "{FAST_COMMITS}\n[[detectors]]\nid = \"new-route\"\ntitle = \"New route\"\nkind = \"new_terms\"\n\
         fields = [\"service.name\", \"url.path\"]\nhistory = \"14d\"\nlearning = \"1h\"\n"
    );
    let d = Daemon::start(&data, &config);
    let summary = get(&d, "/api/v1/detectors")["detectors"][0].clone();
    assert_eq!(
        (&summary["state"], &summary["keys"]),
        (&json!("active"), &json!(2)),
        "{summary}"
    );
    send(
        &d,
        &[
            call(100, "web", "/login", "10.1.0.5"),
            call(101, "web", "/export", "10.1.0.5"),
        ],
    );
    let alerts = alerts_when(&d, |a| !a.is_empty());
    std::thread::sleep(Duration::from_millis(1000));
    let alerts_now = get(&d, "/api/v1/alerts?start=-1d")["alerts"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(alerts_now.len(), 1, "{alerts_now:#?}");
    assert_eq!(alerts[0]["group_key"], "service.name=web,url.path=/export");
}
