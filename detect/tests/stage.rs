//! The detection stage on a real WAL: alerts appended back to the log,
//! suppression, status changes, and the same alerts after a replay.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use detect::rule::{parse_file, Document, RuleSet};
use detect::{Alert, Checkpoint, DetectConfig, DetectMetrics, Detector, Rules, Status, StatusChange};
use schemas::Event;
use serde_json::json;
use wal::{Batch, Consumer, Durable, Lsn, Wal, WalConfig, WalMetrics};

const RULES: &str = r#"
title: Failed login
id: 11111111-0000-0000-0000-000000000001
logsource: {product: test}
level: high
tags: [attack.t1110]
suppression: {group_by: [source.ip], duration: 10m}
detection:
    sel: {event.outcome: failure}
    condition: sel
---
title: Root shell
id: 11111111-0000-0000-0000-000000000002
logsource: {product: test}
level: critical
suppression: {duration: 0}
detection:
    sel: {process.name: sh, user.name: root}
    condition: sel
"#;

const BRUTE: &str = r#"
title: Brute force
id: 11111111-0000-0000-0000-0000000000c1
level: high
correlation:
    type: event_count
    rules: [failed]
    group-by: [source.ip]
    timespan: 1h
    condition: {gte: 3}
---
title: Failed, for the correlation
name: failed
logsource: {product: test}
detection:
    sel: {event.outcome: failure}
    condition: sel
"#;

fn rules() -> Rules {
    let (mut rules, mut correlations) = (Vec::new(), Vec::new());
    for d in parse_file(&format!("{RULES}---\n{BRUTE}"), "t.yml") {
        match d.unwrap() {
            Document::Rule(r) => rules.push(*r),
            Document::Correlation(c) => correlations.push(("t.yml".to_string(), *c)),
            other => panic!("{other:?}"),
        }
    }
    let (set, errors) = RuleSet::build(rules, correlations, Vec::new());
    assert!(errors.is_empty(), "{errors:?}");
    Rules::new(set, Vec::new(), None)
}

struct Running {
    wal: Arc<Wal>,
    detector: Detector,
    /// What the index would receive: every durable batch, alerts included.
    index: Receiver<Durable>,
}

fn start(dir: &Path) -> Running {
    start_with(dir, rules())
}

fn start_with(dir: &Path, rules: Rules) -> Running {
    let checkpoint = Checkpoint::load(&dir.join("detect")).unwrap();
    let consumer = Consumer::new("detect", Lsn(checkpoint.position));
    let (tx, rx) = sync_channel(100_000);
    let (wal, _) = Wal::open(
        WalConfig::new(dir.join("wal")),
        vec![Consumer::new("index", Lsn(0)), consumer.clone()],
        Lsn(0),
        WalMetrics::default(),
        tx,
    )
    .unwrap();
    // What recovery replayed is the index's business, not these tests'.
    rx.try_iter().for_each(drop);
    let wal = Arc::new(wal);
    let mut config = DetectConfig::new(dir.join("detect"));
    config.checkpoint_interval = Duration::from_secs(3600);
    let detector = Detector::spawn(
        wal.clone(),
        consumer,
        checkpoint,
        rules,
        config,
        DetectMetrics::default(),
        Vec::new(),
    )
    .unwrap();
    Running {
        wal,
        detector,
        index: rx,
    }
}

fn ev(minute: u32, ip: &str, outcome: &str, id: &str) -> Event {
    Event::from_json(json!({
        "@timestamp": format!("2026-11-30T10:{minute:02}:00Z"),
        "event": {"id": id, "outcome": outcome},
        "source": {"ip": ip},
    }))
    .unwrap()
}

fn append(wal: &Wal, events: Vec<Event>) {
    wal.append_blocking(Batch::encode(events)).unwrap();
}

/// Alert versions received so far, in log order.
fn versions(index: &Receiver<Durable>, into: &mut Vec<Alert>) {
    for d in index.try_iter() {
        into.extend(d.batch.events.iter().filter_map(Alert::from_event));
    }
}

fn wait_for(index: &Receiver<Durable>, into: &mut Vec<Alert>, done: impl Fn(&[Alert]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(into) {
        assert!(Instant::now() < deadline, "alerts so far: {into:#?}");
        std::thread::sleep(Duration::from_millis(10));
        versions(index, into);
    }
}

/// The last version of each alert: what the index keeps.
fn latest(all: &[Alert]) -> BTreeMap<String, Alert> {
    all.iter().map(|a| (a.id.clone(), a.clone())).collect()
}

fn feed(wal: &Wal) {
    append(
        wal,
        vec![ev(0, "10.0.0.1", "failure", "e1"), ev(1, "10.0.0.1", "failure", "e2")],
    );
    append(
        wal,
        vec![ev(2, "10.0.0.2", "failure", "e3"), ev(2, "10.0.0.9", "success", "e4")],
    );
    // Late, but within the window of 10.0.0.1's alert.
    append(wal, vec![ev(0, "10.0.0.1", "failure", "e0")]);
    // Past the window: a new alert for the same group.
    append(wal, vec![ev(30, "10.0.0.1", "failure", "e5")]);
    let root = Event::from_json(json!({"@timestamp": "2026-11-30T10:31:00Z", "event": {"id": "e6"}, "process": {"name": "sh"}, "user": {"name": "root"}})).unwrap();
    append(
        wal,
        vec![root.clone(), {
            let mut r = root;
            r.insert("event.id", "e7");
            r
        }],
    );
}

#[test]
fn matches_become_suppressed_alerts_appended_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path());
    feed(&r.wal);
    let mut all = Vec::new();
    wait_for(&r.index, &mut all, |a| latest(a).len() == 6);
    let latest = latest(&all);
    let by = |ip: &str, first: &str| {
        latest
            .values()
            .find(|a| {
                a.rule_title == "Failed login" && a.group_key == format!("source.ip={ip}") && a.event_ids[0] == first
            })
            .unwrap_or_else(|| panic!("no alert for {ip} opened by {first}: {latest:#?}"))
    };
    let a = by("10.0.0.1", "e1");
    assert_eq!(a.count, 3);
    assert_eq!(a.event_ids, ["e1", "e2", "e0"]);
    assert_eq!(a.first_time.minute(), 0);
    assert_eq!(a.last_time.minute(), 1);
    assert_eq!(a.level, "high");
    assert_eq!(a.tags, ["attack.t1110"]);
    assert_eq!(a.matched.get("event.outcome"), Some(&json!("failure")));
    assert_eq!(by("10.0.0.2", "e3").count, 1);
    assert_eq!(by("10.0.0.1", "e5").count, 1);
    // Without suppression, one alert a match.
    // The correlation: three failures from 10.0.0.1 within the hour.
    let brute: Vec<_> = latest.values().filter(|a| a.rule_title == "Brute force").collect();
    assert_eq!(brute.len(), 1, "{brute:#?}");
    assert_eq!((brute[0].count, brute[0].group_key.as_str()), (3, "source.ip=10.0.0.1"));
    let root: Vec<_> = latest.values().filter(|a| a.rule_title == "Root shell").collect();
    assert_eq!(root.len(), 2);
    assert!(root.iter().all(|a| a.count == 1 && a.level == "critical"));
    let counts = r.detector.rules();
    assert_eq!(counts.match_count(0), 5);
    assert_eq!(counts.match_count(1), 2);
    r.detector.stop();
    r.wal.close();
}

#[test]
fn a_status_change_is_durable_and_new_matches_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path());
    append(&r.wal, vec![ev(0, "10.0.0.1", "failure", "e1")]);
    let mut all = Vec::new();
    wait_for(&r.index, &mut all, |a| !a.is_empty());
    let id = all[0].id.clone();
    let change = |status| StatusChange {
        status,
        comment: Some("looking".into()),
        by: "alice".into(),
    };
    let acked = r.detector.set_status(&id, change(Status::Acknowledged), None).unwrap();
    assert_eq!(acked.status, Status::Acknowledged);
    append(&r.wal, vec![ev(1, "10.0.0.1", "failure", "e2")]);
    wait_for(&r.index, &mut all, |a| a.last().is_some_and(|a| a.count == 2));
    let last = all.last().unwrap();
    assert_eq!(last.id, id);
    assert_eq!(
        (last.status, last.updated_by.as_deref()),
        (Status::Acknowledged, Some("alice"))
    );
    // Closed: the next match opens a new alert.
    r.detector.set_status(&id, change(Status::Closed), None).unwrap();
    append(&r.wal, vec![ev(2, "10.0.0.1", "failure", "e3")]);
    wait_for(&r.index, &mut all, |a| {
        latest(a).values().filter(|a| a.rule_title == "Failed login").count() == 2
    });
    assert!(r.detector.set_status("nope", change(Status::Closed), None).is_err());
    r.detector.stop();
    r.wal.close();
}

/// A crash before any checkpoint: the restarted stage replays the whole
/// log and makes exactly the alerts it had made, with the same ids.
#[test]
fn a_replay_from_an_older_checkpoint_makes_the_same_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path());
    feed(&r.wal);
    let mut first = Vec::new();
    wait_for(&r.index, &mut first, |a| latest(a).len() == 6);
    r.detector.stop();
    r.wal.close();
    drop(r);
    std::fs::remove_file(dir.path().join("detect/checkpoint.json")).unwrap();
    let r = start(dir.path());
    let mut second = Vec::new();
    wait_for(&r.index, &mut second, |a| latest(a).len() == 6);
    // Give the stage time to pass its own alert records too.
    std::thread::sleep(Duration::from_millis(300));
    versions(&r.index, &mut second);
    assert_eq!(latest(&first), latest(&second));
    // And from its checkpoint, nothing is made again.
    r.detector.stop();
    r.wal.close();
    drop(r);
    let r = start(dir.path());
    std::thread::sleep(Duration::from_millis(300));
    let mut third = Vec::new();
    versions(&r.index, &mut third);
    assert!(third.is_empty(), "{third:#?}");
    r.detector.stop();
    r.wal.close();
}

/// A correlation's window is part of the checkpoint: two failures before
/// a restart and one after make the brute-force alert.
#[test]
fn correlation_windows_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path());
    append(
        &r.wal,
        vec![ev(0, "10.0.0.7", "failure", "f1"), ev(1, "10.0.0.7", "failure", "f2")],
    );
    let mut all = Vec::new();
    wait_for(&r.index, &mut all, |a| a.iter().any(|a| a.count == 2));
    r.detector.stop();
    r.wal.close();
    drop(r);
    let r = start(dir.path());
    append(&r.wal, vec![ev(2, "10.0.0.7", "failure", "f3")]);
    let mut all = Vec::new();
    wait_for(&r.index, &mut all, |a| a.iter().any(|a| a.rule_title == "Brute force"));
    let brute = all.iter().find(|a| a.rule_title == "Brute force").unwrap();
    assert_eq!(brute.event_ids, ["f1", "f2", "f3"]);
    r.detector.stop();
    r.wal.close();
}

/// A correlation's own `suppression.duration` decides how its firings for
/// one group count on one alert, as a rule's does; without it, the
/// configured default (5 minutes) does.
#[test]
fn a_correlation_takes_its_own_suppression_duration() {
    for (suppression, alerts) in [("", 1), ("suppression: {duration: 0}\n", 2)] {
        let text = format!(
            "title: Pairs\nid: 11111111-0000-0000-0000-0000000000c2\nlevel: medium\n{suppression}\
             correlation:\n    type: event_count\n    rules: [failed]\n    group-by: [source.ip]\n\
             \x20   timespan: 1h\n    condition: {{gte: 2}}\n---\n\
             title: Failed\nname: failed\nlogsource: {{product: test}}\n\
             detection:\n    sel: {{event.outcome: failure}}\n    condition: sel\n"
        );
        let (mut rules, mut correlations) = (Vec::new(), Vec::new());
        for d in parse_file(&text, "pairs.yml") {
            match d.unwrap() {
                Document::Rule(r) => rules.push(*r),
                Document::Correlation(c) => correlations.push(("pairs.yml".to_string(), *c)),
                other => panic!("{other:?}"),
            }
        }
        let (set, errors) = RuleSet::build(rules, correlations, Vec::new());
        assert!(errors.is_empty(), "{errors:?}");
        let dir = tempfile::tempdir().unwrap();
        let r = start_with(dir.path(), Rules::new(set, Vec::new(), None));
        // Two pairs within three minutes: two firings.
        append(
            &r.wal,
            (0..4).map(|m| ev(m, "10.0.0.1", "failure", &format!("p{m}"))).collect(),
        );
        let mut all = Vec::new();
        wait_for(&r.index, &mut all, |a| {
            latest(a).values().map(|x| x.count).sum::<u64>() == 4
        });
        let pairs: Vec<Alert> = latest(&all).into_values().filter(|a| a.rule_title == "Pairs").collect();
        assert_eq!(pairs.len(), alerts, "{suppression:?}: {pairs:#?}");
        r.detector.stop();
        r.wal.close();
    }
}

#[test]
fn a_correlation_suppression_with_its_own_group_by_is_refused() {
    let text = "title: P\nid: c3\nsuppression: {group_by: [user.name], duration: 1h}\n\
                correlation:\n    type: event_count\n    rules: [x]\n    timespan: 1h\n    condition: {gte: 2}\n";
    let err = parse_file(text, "p.yml").remove(0).unwrap_err().to_string();
    assert!(err.contains("group-by"), "{err}");
}
