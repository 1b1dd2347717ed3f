//! Detection end to end: the daemon with `detect.rules_dir`, events over
//! HTTP, alerts through the API and the CLI, and SIGKILL while alerts are
//! being made.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn config(rules: &Path, extra: &str) -> String {
    format!(
        "{FAST_COMMITS}\n[detect]\nrules_dir = \"{}\"\nreload_interval_secs = 0\n{extra}",
        rules.display()
    )
}

fn get(d: &Daemon, path: &str, token: &str) -> (u16, Value) {
    let mut resp = agent()
        .get(&d.url(path))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

fn post(d: &Daemon, path: &str, token: &str, body: Value) -> (u16, Value) {
    let mut resp = agent()
        .post(&d.url(path))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(&body)
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

fn token(d: &Daemon, name: &str, scope: &str) -> String {
    let (status, body) = post(d, "/api/v1/tokens", ADMIN, json!({"name": name, "scopes": [scope]}));
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_string()
}

/// Polls `GET path` until `done` holds; panics after a minute.
fn wait_for(d: &Daemon, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(d, path, ADMIN);
        assert_eq!(status, 200, "{body}");
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path}: never done, last {body:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn login(ip: &str, outcome: &str) -> String {
    format!(
        "{{\"event\":{{\"outcome\":\"{outcome}\"}},\"source\":{{\"ip\":\"{ip}\"}},\"user\":{{\"name\":\"root\"}}}}\n"
    )
}

#[test]
fn alerts_from_live_events_are_listed_shown_triaged_and_rules_reload() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("failed_login.yml"), failed_login_rule("10m")).unwrap();
    let d = Daemon::start(&dir.path().join("data"), &config(&rules, ""));

    let body = [
        login("10.0.0.1", "failure"),
        login("10.0.0.1", "failure"),
        login("10.0.0.2", "failure"),
        login("10.0.0.1", "success"),
    ]
    .concat();
    let (status, report) = ingest(&d.base, "auth", Some(ADMIN), body.as_bytes(), None).unwrap();
    assert_eq!(status, 200, "{report}");
    ingest(
        &d.base,
        "auth",
        Some(ADMIN),
        login("10.0.0.1", "failure").as_bytes(),
        None,
    )
    .unwrap();

    // One alert per source address, counting its failures.
    let list = wait_for(&d, "/api/v1/alerts", |b| {
        let alerts = b["alerts"].as_array().unwrap();
        alerts.len() == 2 && alerts.iter().any(|a| a["count"] == 3)
    });
    let alerts = list["alerts"].as_array().unwrap();
    let a = alerts.iter().find(|a| a["group_key"] == "source.ip=10.0.0.1").unwrap();
    assert_eq!(a["rule_id"], "22222222-0000-0000-0000-000000000001");
    assert_eq!(a["rule_title"], "Failed login");
    assert_eq!(a["level"], "high");
    assert_eq!(a["status"], "open");
    assert_eq!(a["tags"], json!(["attack.credential-access", "attack.t1110"]));
    assert_eq!(a["group"], json!(["10.0.0.1"]));
    assert_eq!(a["matched"], json!({"event.outcome": "failure"}));
    assert_eq!(a["event_ids"].as_array().unwrap().len(), 3);
    let id = a["id"].as_str().unwrap().to_string();

    // Filters.
    let (_, high) = get(&d, "/api/v1/alerts?level=high&rule=Failed%20login&start=-1h", ADMIN);
    assert_eq!(high["total"], 2, "{high}");
    let (_, none) = get(&d, "/api/v1/alerts?level=low", ADMIN);
    assert_eq!(none["total"], 0, "{none}");
    let (status, bad) = get(&d, "/api/v1/alerts?status=maybe", ADMIN);
    assert_eq!(status, 400, "{bad}");

    // One alert with its events.
    let (status, one) = get(&d, &format!("/api/v1/alerts/{id}"), ADMIN);
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["alert"]["id"], id.as_str());
    let events = one["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{one:#}");
    assert!(events
        .iter()
        .all(|e| e["source.ip"] == "10.0.0.1" && e["event.outcome"] == "failure"));
    let (status, _) = get(&d, "/api/v1/alerts/00000000-0000-0000-0000-000000000000", ADMIN);
    assert_eq!(status, 404);

    // Triage: a search token reads but cannot change; an alerts token can.
    let analyst = token(&d, "analyst", "search");
    let triage = token(&d, "triage", "alerts");
    let change = json!({"status": "acknowledged", "comment": "looking at it"});
    let (status, _) = post(&d, &format!("/api/v1/alerts/{id}"), &analyst, change.clone());
    assert_eq!(status, 403);
    let (status, set) = post(&d, &format!("/api/v1/alerts/{id}"), &triage, change);
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["status"], "acknowledged");
    assert_eq!(set["updated_by"], "triage");
    assert_eq!(set["comment"], "looking at it");
    let (status, _) = post(
        &d,
        &format!("/api/v1/alerts/{id}"),
        &triage,
        json!({"status": "snoozed"}),
    );
    assert_eq!(status, 400);
    // A new failure counts on the acknowledged alert and keeps its status.
    ingest(
        &d.base,
        "auth",
        Some(ADMIN),
        login("10.0.0.1", "failure").as_bytes(),
        None,
    )
    .unwrap();
    let acked = wait_for(&d, "/api/v1/alerts?status=acknowledged", |b| {
        b["alerts"].as_array().unwrap().first().is_some_and(|a| a["count"] == 4)
    });
    assert_eq!(acked["total"], 1);
    let (_, analyst_view) = get(&d, "/api/v1/alerts", &analyst);
    assert_eq!(analyst_view["total"], 2);

    // The CLI's table.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["alerts", "--server", &d.base, "--token", ADMIN])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("FIRST"), "{table}");
    assert!(
        table.contains("Failed login") && table.contains("acknowledged") && table.contains(&id),
        "{table}"
    );

    // Rules: states and match counts; a reload picks up a new file and
    // names what it refuses.
    let (_, listed) = get(&d, "/api/v1/rules", &analyst);
    assert_eq!(
        (listed["loaded"].as_u64(), listed["refused"].as_u64()),
        (Some(1), Some(0)),
        "{listed}"
    );
    assert_eq!(listed["rules"][0]["matches"], 5);
    assert_eq!(listed["rules"][0]["state"], "loaded");
    std::fs::write(
        rules.join("more.yml"),
        "title: Admin console\nid: 22222222-0000-0000-0000-000000000002\nlogsource: {product: test}\n\
         detection:\n    sel: {url.path|startswith: /admin}\n    condition: sel\n---\n\
         title: Expands\nid: 22222222-0000-0000-0000-000000000003\nlogsource: {product: test}\n\
         detection:\n    sel: {user.name|expand: '%admins%'}\n    condition: sel\n",
    )
    .unwrap();
    let (status, _) = post(&d, "/api/v1/rules/reload", &analyst, json!({}));
    assert_eq!(status, 403);
    let (status, reloaded) = post(&d, "/api/v1/rules/reload", ADMIN, json!({}));
    assert_eq!(status, 200, "{reloaded}");
    assert_eq!(reloaded, json!({"loaded": 2, "refused": 1}));
    let (_, listed) = get(&d, "/api/v1/rules", ADMIN);
    let refused = listed["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["state"] == "refused")
        .unwrap();
    assert_eq!(refused["id"], "22222222-0000-0000-0000-000000000003");
    assert!(refused["reason"].as_str().unwrap().contains("admins"), "{refused}");

    // Nobody may write into Tripline's own dataset.
    let forged = json!({"event": {"dataset": "tripline.alerts"}, "alert": {"id": id, "status": "closed"}}).to_string();
    let (status, body) = ingest(&d.base, "tripline.alerts", Some(ADMIN), forged.as_bytes(), None).unwrap();
    assert_eq!(status, 400, "{body}");
}

const BAD_KIND: &str = r#"
title: Bad kind
id: 22222222-0000-0000-0000-000000000009
level: medium
logsource: {product: test}
suppression: {duration: 0}
detection:
    sel: {kind: bad}
    condition: sel
"#;

/// A client sending batches (every third event matches the rule) and
/// retrying each until it is acknowledged.
fn client(name: &'static str, base: Arc<Mutex<String>>, stop: Arc<AtomicBool>) -> usize {
    let mut batches = 0;
    while !stop.load(Ordering::SeqCst) {
        let body: String = (0..30)
            .map(|i| {
                let kind = if i % 3 == 0 { "bad" } else { "good" };
                format!("{{\"uid\":\"{name}-{batches}-{i}\",\"kind\":\"{kind}\"}}\n")
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let url = base.lock().unwrap().clone();
            if let Ok((200, _)) = ingest(&url, "kinds", Some(ADMIN), body.as_bytes(), None) {
                break;
            }
            assert!(Instant::now() < deadline, "batch {batches} never acknowledged");
            std::thread::sleep(Duration::from_millis(20));
        }
        batches += 1;
    }
    batches
}

/// Every alert, paging through the API.
fn all_alerts(d: &Daemon) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = get(d, &format!("/api/v1/alerts?limit=1000&cursor={cursor}"), ADMIN);
        assert_eq!(status, 200, "{body}");
        out.extend(body["alerts"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return out,
        }
    }
}

/// SIGKILL while events stream and alerts are made, five times: every
/// matching event stored has exactly one alert (by rule, group and first
/// event), none is lost to a kill, none is made twice by a replay.
#[test]
fn sigkill_while_alerts_are_made_leaves_each_alert_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("bad.yml"), BAD_KIND).unwrap();
    let data = dir.path().join("data");
    let config = config(&rules, "");
    let mut daemon = Daemon::start(&data, &config);
    let base = Arc::new(Mutex::new(daemon.base.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let (base, stop) = (base.clone(), stop.clone());
            std::thread::spawn(move || client(name, base, stop))
        })
        .collect();
    for round in 0..5u64 {
        std::thread::sleep(Duration::from_millis(400 + 200 * round));
        daemon.kill();
        daemon = Daemon::start(&data, &config);
        *base.lock().unwrap() = daemon.base.clone();
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let batches: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(batches >= 10, "the clients made too little progress: {batches} batches");
    daemon.kill();
    let daemon = Daemon::start(&data, &config);
    wait_committed(&daemon.base);

    // Every stored matching event (a retried batch may be stored twice,
    // each copy with its own id: each copy is an event of its own).
    let matching: HashSet<String> = all_ids(&daemon.base, "kind:bad AND event.dataset:kinds", 5000)
        .into_iter()
        .collect();
    assert!(matching.len() >= 100, "{} matching events", matching.len());
    let per_event = |alerts: &[Value]| {
        let mut per_event: HashMap<String, usize> = HashMap::new();
        for a in alerts {
            let ids = a["event_ids"].as_array().unwrap();
            assert_eq!(ids.len(), 1, "{a}");
            *per_event.entry(ids[0].as_str().unwrap().to_string()).or_default() += 1;
        }
        per_event
    };
    // Until every matching event has an alert, then once more after the
    // next commit, so that a late duplicate would be seen.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = per_event(&all_alerts(&daemon));
        if matching.iter().all(|id| seen.contains_key(id)) {
            break;
        }
        assert!(Instant::now() < deadline, "some matching events never got an alert");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_committed(&daemon.base);
    let alerts = all_alerts(&daemon);
    let per_event = per_event(&alerts);
    for id in &matching {
        let n = per_event.get(id).copied().unwrap_or(0);
        assert_eq!(n, 1, "event {id} has {n} alerts");
    }
    assert_eq!(alerts.len(), matching.len(), "alerts for events that are not stored");
    // The kills did interrupt detection: some start resumed mid-log.
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(
        log.lines()
            .filter(|l| l.contains("detection started"))
            .any(|l| !l.contains("position=0")),
        "no restart resumed detection from a checkpoint"
    );
}

/// SigmaHQ's CloudTrail rules loaded, the shared EC2-proxy S3 exfiltration
/// capture ingested: exactly the rules that fire are named here.
#[test]
fn sigmahq_cloudtrail_rules_on_the_shared_exfiltration_capture() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let rules = shared.join("sigma/rules/cloud/aws/cloudtrail");
    assert!(rules.is_dir(), "{} is missing", rules.display());
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"), &config(&rules, ""));
    let (_, listed) = get(&d, "/api/v1/rules", ADMIN);
    assert_eq!(listed["refused"], 0, "{listed}");
    let loaded = listed["loaded"].as_u64().unwrap();
    assert!(loaded >= 50, "{loaded} rules loaded");
    let body = std::fs::read(shared.join("cloudtrail/ec2_proxy_s3_exfiltration_2020-09-14011940.json")).unwrap();
    let mut resp = agent()
        .post(&d.url("/api/v1/ingest?source=cloudtrail&format=cloudtrail"))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .send(&body[..])
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.body_mut().read_to_string().unwrap()
    );
    wait_committed(&d.base);
    // Detection is past the capture once a marker sent after it has been
    // evaluated: the metric counts it.
    let events_before = 103 + 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = metrics_text(&d);
        let evaluated = m
            .lines()
            .find_map(|l| l.strip_prefix("tripline_detect_events_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if evaluated >= events_before {
            break;
        }
        assert!(Instant::now() < deadline, "detection evaluated {evaluated} events");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_committed(&d.base);
    let alerts = all_alerts(&d);
    let fired: HashSet<(String, String)> = alerts
        .iter()
        .map(|a| {
            (
                a["rule_id"].as_str().unwrap().to_string(),
                a["rule_title"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        fired,
        HashSet::from([(
            "905d389b-b853-46d0-9d3d-dea0d3a3cd49".to_string(),
            "AWS STS AssumeRole Misuse".to_string()
        )]),
        "{alerts:#?}"
    );
    let count: u64 = alerts.iter().map(|a| a["count"].as_u64().unwrap()).sum();
    assert_eq!(count, 11, "{alerts:#?}");
    // A retro-hunt of the same rule finds the same events in the index.
    let (status, hunt) = post(
        &d,
        "/api/v1/rules/905d389b-b853-46d0-9d3d-dea0d3a3cd49/hunt",
        ADMIN,
        json!({"start": "-1d", "limit": 100}),
    );
    assert_eq!(status, 200, "{hunt}");
    let hunted: HashSet<&str> = hunt["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event.id"].as_str().unwrap())
        .collect();
    let alerted: HashSet<&str> = alerts
        .iter()
        .flat_map(|a| a["event_ids"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()))
        .collect();
    assert_eq!(hunted, alerted, "{hunt:#}");
}

fn post_hunt(d: &Daemon, path: &str, body: Value) -> Value {
    let (status, answer) = post(d, path, ADMIN, body);
    assert_eq!(status, 200, "{answer}");
    answer
}

/// A retro-hunt finds in history exactly what the rule matches, pages with
/// the search's cursor, takes a rule file that is not loaded, and hunts a
/// correlation by replaying its rules' matches oldest first.
#[test]
fn a_hunt_finds_in_history_what_the_rule_matches() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("failed_login.yml"), failed_login_rule("10m")).unwrap();
    let d = Daemon::start(&dir.path().join("data"), &config(&rules, ""));
    // History: three days ago, before anyone thought of the rule... and
    // events the candidates query finds that the rule does not match.
    let mut body = String::new();
    for (i, (user, outcome)) in [
        ("alice", "failure"),
        ("alice", "failure"),
        ("bob", "success"),
        ("carol", "failure"),
        ("alice", "failure"),
        ("dave", "unknown"),
    ]
    .iter()
    .enumerate()
    {
        body.push_str(&format!(
            "{{\"@timestamp\":\"{}\",\"event\":{{\"outcome\":\"{outcome}\",\"action\":\"login\"}},\"user\":{{\"name\":\"{user}\"}},\"n\":{i}}}\n",
            days_ago(3, 10 + i as u8)
        ));
    }
    body.push_str(&format!(
        "{{\"@timestamp\":\"{}\",\"message\":\"unrelated\"}}\n",
        days_ago(3, 9)
    ));
    let (status, report) = ingest(&d.base, "auth", Some(ADMIN), body.as_bytes(), None).unwrap();
    assert_eq!(status, 200, "{report}");
    wait_committed(&d.base);

    let hunt = post_hunt(
        &d,
        "/api/v1/rules/22222222-0000-0000-0000-000000000001/hunt",
        json!({"start": "-7d"}),
    );
    let ns: Vec<u64> = hunt["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, [4, 3, 1, 0], "{hunt:#}");
    // The index finds the failures itself (event.outcome is a catalog
    // keyword): no other event is fetched.
    assert_eq!(hunt["scanned"], 4, "{hunt:#}");
    assert!(
        hunt["candidates_query"]
            .as_str()
            .unwrap()
            .contains("event.outcome:\"failure\""),
        "{hunt}"
    );
    assert!(hunt["next_cursor"].is_null());
    // Paging: two at a time, nothing skipped or repeated.
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let page = post_hunt(
            &d,
            "/api/v1/rules/22222222-0000-0000-0000-000000000001/hunt",
            json!({"start": "-7d", "limit": 2, "cursor": cursor}),
        );
        seen.extend(
            page["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["n"].as_u64().unwrap()),
        );
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(seen, [4, 3, 1, 0]);
    // Numeric comparisons and networks narrow the candidates in the index
    // too; a status that did not index as an integer ("5e2") is still
    // examined, and matched.
    let mut web = String::new();
    for (i, (ip, status)) in [
        ("10.1.1.1", json!(503)),
        ("192.168.1.1", json!(503)),
        ("10.2.2.2", json!(200)),
        ("10.3.3.3", json!("5e2")),
    ]
    .iter()
    .enumerate()
    {
        web.push_str(&format!(
            "{}\n",
            json!({"@timestamp": days_ago(3, 2 + i as u8), "source": {"ip": ip},
                   "http": {"response": {"status_code": status}}})
        ));
    }
    let (status, report) = ingest(&d.base, "web", Some(ADMIN), web.as_bytes(), None).unwrap();
    assert_eq!(status, 200, "{report}");
    wait_committed(&d.base);
    let rule = [
        "title: Server errors from inside",
        "id: 33333333-0000-0000-0000-000000000001",
        "logsource: {product: test}",
        "detection:",
        "    sel:",
        "        source.ip|cidr: 10.0.0.0/8",
        "        http.response.status_code|gte: 500",
        "    condition: sel",
    ]
    .join("\n");
    let hunt = post_hunt(&d, "/api/v1/hunt", json!({"rule": rule, "start": "-7d"}));
    let ips: Vec<&str> = hunt["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["source.ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["10.3.3.3", "10.1.1.1"], "{hunt:#}");
    assert_eq!(hunt["scanned"], 2, "{hunt:#}");
    // An inner wildcard is a regex query over the lowercased keyword.
    let rule = [
        "title: Alice",
        "id: 33333333-0000-0000-0000-000000000002",
        "logsource: {product: test}",
        "detection:",
        "    sel:",
        "        user.name: A*c?",
        "    condition: sel",
    ]
    .join("\n");
    let hunt = post_hunt(&d, "/api/v1/hunt", json!({"rule": rule, "start": "-7d"}));
    let ns: Vec<u64> = hunt["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, [4, 1, 0], "{hunt:#}");
    assert_eq!(hunt["scanned"], 3, "{hunt:#}");
    // A rule file that is not YAML is a 400 at once (it used to hang the
    // request while the parser repeated its error).
    let broken = "title: t\ndetection:\n    sel:\n        a: 1\nb|gte: 500\n    condition: sel\n";
    let (status, body) = post(&d, "/api/v1/hunt", ADMIN, json!({"rule": broken, "start": "-7d"}));
    assert_eq!(status, 400, "{body}");
    // Out of the range: nothing.
    let none = post_hunt(
        &d,
        "/api/v1/rules/22222222-0000-0000-0000-000000000001/hunt",
        json!({"start": "-1d"}),
    );
    assert_eq!(none["hits"], json!([]));

    // A rule file not loaded, with a correlation: three failures of one user.
    let file = format!(
        "{}---\ntitle: Guessing\nid: 22222222-0000-0000-0000-0000000000c9\ncorrelation:\n    type: event_count\n    \
         rules: [22222222-0000-0000-0000-000000000001]\n    group-by: [user.name]\n    timespan: 6h\n    condition: {{gte: 3}}\n",
        failed_login_rule("10m")
    );
    let hunt = post_hunt(&d, "/api/v1/hunt", json!({"rule": file, "start": "-7d"}));
    let fired = hunt["correlations"].as_array().unwrap();
    assert_eq!(fired.len(), 1, "{hunt:#}");
    assert_eq!(fired[0]["group_key"], "user.name=alice");
    assert_eq!(fired[0]["event_ids"].as_array().unwrap().len(), 3);
    // The CLI pages through the same API.
    let rule_file = dir.path().join("guessing.yml");
    std::fs::write(&rule_file, failed_login_rule("10m")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args([
            "rules", "hunt", "--server", &d.base, "--token", ADMIN, "--start", "-7d", "--limit", "3",
        ])
        .arg(&rule_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(table.lines().count(), 4, "a header and three matches:\n{table}");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("3 matches"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Bad input is told, not guessed.
    let (status, bad) = post(
        &d,
        "/api/v1/hunt",
        ADMIN,
        json!({"rule": "title: x\ndetection: {condition: nope}\n"}),
    );
    assert_eq!(status, 400, "{bad}");
    let (status, _) = post(&d, "/api/v1/rules/no-such-rule/hunt", ADMIN, json!({}));
    assert_eq!(status, 404);
}

/// With `reload_interval_secs`, a rule file added to the directory is
/// loaded without anyone asking.
#[test]
fn a_changed_rules_directory_is_reloaded_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("failed_login.yml"), failed_login_rule("10m")).unwrap();
    let config = format!(
        "{FAST_COMMITS}\n[detect]\nrules_dir = \"{}\"\nreload_interval_secs = 1\n",
        rules.display()
    );
    let d = Daemon::start(&dir.path().join("data"), &config);
    let (_, listed) = get(&d, "/api/v1/rules", ADMIN);
    assert_eq!(listed["loaded"], 1, "{listed}");
    std::fs::write(rules.join("new.yml"), BAD_KIND).unwrap();
    wait_for(&d, "/api/v1/rules", |b| b["loaded"] == 2);
    // And the new rule runs on what arrives next.
    ingest(&d.base, "kinds", Some(ADMIN), b"{\"kind\":\"bad\"}\n", None).unwrap();
    wait_for(&d, "/api/v1/alerts?rule=Bad%20kind", |b| b["total"] == 1);
}
