//! Correlation rules, data-driven: each of the seven types with events
//! inside and outside the window, grouped and ungrouped, in order, out of
//! order and late; aliases, chains, `generate`; and filter documents.
#![allow(clippy::unwrap_used)]

use detect::correlation::{Caps, Dropped, Windows};
use detect::rule::{parse_file, Document, Hit, RuleSet};
use schemas::Event;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Base rules every case can refer to.
const BASE: &str = r#"
title: Failed login
id: 00000000-0000-0000-0000-0000000000f1
name: failed_login
logsource: {product: test}
detection:
    sel: {event.action: login, event.outcome: failure}
    condition: sel
---
title: Successful login
id: 00000000-0000-0000-0000-0000000000f2
name: successful_login
logsource: {product: test}
detection:
    sel: {event.action: login, event.outcome: success}
    condition: sel
---
title: Upload
name: upload
logsource: {product: test}
detection:
    sel: {event.action: upload}
    condition: sel
---
title: Process
name: process
logsource: {product: test}
detection:
    sel: {event.action: exec}
    condition: sel
"#;

fn set(extra: &str) -> RuleSet {
    let text = format!("{BASE}---\n{extra}");
    let (mut rules, mut correlations, mut filters) = (Vec::new(), Vec::new(), Vec::new());
    for d in parse_file(&text, "t.yml") {
        match d.unwrap() {
            Document::Rule(r) => rules.push(*r),
            Document::Correlation(c) => correlations.push(("t.yml".to_string(), *c)),
            Document::Filter(f) => filters.push(*f),
        }
    }
    let (set, errors) = RuleSet::build(rules, correlations, filters);
    assert!(errors.is_empty(), "{errors:?}");
    set
}

/// An event at `secs` seconds past 10:00.
fn ev(secs: i64, fields: Value) -> (OffsetDateTime, Event) {
    let t = OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap();
    let mut e = Event::from_json(fields).unwrap();
    e.insert("event.id", format!("e{secs}"));
    (t, e)
}

fn login(secs: i64, user: &str, outcome: &str) -> (OffsetDateTime, Event) {
    ev(
        secs,
        json!({"event": {"action": "login", "outcome": outcome}, "user": {"name": user}}),
    )
}

/// Titles of everything that alerted, per event, with the firing's
/// measure for correlations.
fn run(set: &RuleSet, events: &[(OffsetDateTime, Event)]) -> Vec<String> {
    let mut windows = Windows::default();
    let mut dropped = Dropped::default();
    let mut out = Vec::new();
    for (t, e) in events {
        for hit in set.evaluate(e, *t, &mut windows, Caps::default(), &mut dropped).hits {
            match hit {
                Hit::Rule(_, r) => out.push(format!("{}@{}", r.title, e.get_str("event.id").unwrap())),
                Hit::Correlation(_, c, f) => out.push(format!(
                    "{}@{}={}[{}]",
                    c.title,
                    e.get_str("event.id").unwrap(),
                    f.value,
                    f.group_key
                )),
            }
        }
    }
    out
}

const BRUTE: &str = r#"
title: Brute force
correlation:
    type: event_count
    rules: [failed_login]
    group-by: [user.name]
    timespan: 1m
    condition: {gte: 3}
"#;

#[test]
fn event_count_inside_and_outside_the_window_grouped() {
    let s = set(BRUTE);
    // Three failures for alice within a minute; bob's do not count for her;
    // the referred rule does not alert on its own (generate: false).
    let got = run(
        &s,
        &[
            login(0, "alice", "failure"),
            login(10, "bob", "failure"),
            login(20, "alice", "failure"),
            login(50, "alice", "failure"),
        ],
    );
    assert_eq!(got, ["Brute force@e50=3[user.name=alice]"]);
    // Spread over more than a minute: nothing.
    let got = run(
        &s,
        &[
            login(0, "alice", "failure"),
            login(40, "alice", "failure"),
            login(100, "alice", "failure"),
        ],
    );
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn a_late_match_still_counts_within_the_timespan_and_one_too_late_does_not() {
    let s = set(BRUTE);
    // Out of order: the 5 s event arrives last but completes the window.
    let got = run(
        &s,
        &[
            login(30, "alice", "failure"),
            login(50, "alice", "failure"),
            login(5, "alice", "failure"),
        ],
    );
    assert_eq!(got, ["Brute force@e5=3[user.name=alice]"]);
    // Older than the newest match minus the timespan: too late.
    let mut windows = Windows::default();
    let mut dropped = Dropped::default();
    for (t, e) in [
        login(200, "alice", "failure"),
        login(210, "alice", "failure"),
        login(100, "alice", "failure"),
    ] {
        assert!(s
            .evaluate(&e, t, &mut windows, Caps::default(), &mut dropped)
            .hits
            .is_empty());
    }
    assert_eq!(dropped.too_late, 1);
}

#[test]
fn event_count_ungrouped_and_a_range_condition() {
    let s = set(
        "title: Some failures\ncorrelation:\n    type: event_count\n    rules: [00000000-0000-0000-0000-0000000000f1]\n    \
         timespan: 1h\n    condition: {gt: 1, lte: 2}\n",
    );
    let got = run(&s, &[login(0, "a", "failure"), login(1, "b", "failure")]);
    assert_eq!(got, ["Some failures@e1=2[]"]);
}

#[test]
fn value_count_counts_distinct_values() {
    let s = set(
        "title: Spray\ncorrelation:\n    type: value_count\n    rules: [failed_login]\n    group-by: [source.ip]\n    \
         timespan: 5m\n    condition: {field: user.name, gte: 3}\n",
    );
    let from = |secs, user: &str| {
        ev(
            secs,
            json!({"event": {"action": "login", "outcome": "failure"}, "user": {"name": user}, "source": {"ip": "10.0.0.9"}}),
        )
    };
    let got = run(&s, &[from(0, "a"), from(1, "a"), from(2, "b"), from(3, "b")]);
    assert!(got.is_empty(), "two distinct users only: {got:?}");
    let got = run(&s, &[from(0, "a"), from(1, "a"), from(2, "b"), from(3, "c")]);
    assert_eq!(got, ["Spray@e3=3[source.ip=10.0.0.9]"]);
}

#[test]
fn temporal_needs_every_rule_in_any_order() {
    let s = set(
        "title: Fail and succeed\ncorrelation:\n    type: temporal\n    rules: [failed_login, successful_login]\n    \
         group-by: [user.name]\n    timespan: 1m\n",
    );
    let got = run(&s, &[login(0, "alice", "success"), login(10, "alice", "failure")]);
    assert_eq!(got, ["Fail and succeed@e10=2[user.name=alice]"]);
    let got = run(&s, &[login(0, "alice", "success"), login(10, "bob", "failure")]);
    assert!(got.is_empty(), "{got:?}");
}

const FOLLOWED: &str = r#"
title: Brute force then success
level: high
correlation:
    type: temporal_ordered
    rules: [brute, successful_login]
    group-by: [user.name]
    timespan: 5m
---
title: Brute force
name: brute
correlation:
    type: event_count
    rules: [failed_login]
    group-by: [user.name]
    timespan: 1m
    condition: {gte: 3}
"#;

#[test]
fn temporal_ordered_needs_the_order_and_chains_correlations() {
    let s = set(FOLLOWED);
    // Three failures (the chained correlation fires, silently), then a success.
    let got = run(
        &s,
        &[
            login(0, "alice", "failure"),
            login(1, "alice", "failure"),
            login(2, "alice", "failure"),
            login(30, "alice", "success"),
        ],
    );
    assert_eq!(got, ["Brute force then success@e30=2[user.name=alice]"]);
    // The success first: not in order.
    let got = run(
        &s,
        &[
            login(0, "alice", "success"),
            login(1, "alice", "failure"),
            login(2, "alice", "failure"),
            login(3, "alice", "failure"),
        ],
    );
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn value_sum_and_value_avg_over_a_numeric_field() {
    let up = |secs, bytes: u64| {
        ev(
            secs,
            json!({"event": {"action": "upload"}, "user": {"name": "u"}, "bytes": bytes}),
        )
    };
    let s = set(
        "title: Exfil\ncorrelation:\n    type: value_sum\n    rules: [upload]\n    group-by: [user.name]\n    \
         timespan: 1h\n    condition: {field: bytes, gt: 1000}\n",
    );
    assert_eq!(
        run(&s, &[up(0, 400), up(60, 400), up(120, 400)]),
        ["Exfil@e120=1200[user.name=u]"]
    );
    assert!(run(&s, &[up(0, 400), up(4000, 400), up(8000, 400)]).is_empty());
    let s = set(
        "title: Big uploads\ncorrelation:\n    type: value_avg\n    rules: [upload]\n    group-by: [user.name]\n    \
         timespan: 1h\n    condition: {field: bytes, gt: 500}\n",
    );
    assert!(run(&s, &[up(0, 100), up(1, 800)]).is_empty(), "average 450");
    assert_eq!(run(&s, &[up(0, 300), up(1, 800)]), ["Big uploads@e1=550[user.name=u]"]);
}

#[test]
fn value_percentile_finds_a_rare_value_in_its_group() {
    let s = set(
        "title: Rare process\ncorrelation:\n    type: value_percentile\n    rules: [process]\n    group-by: [host.name]\n    \
         timespan: 1d\n    condition: {field: process.name, lte: 10}\n",
    );
    let mut events: Vec<_> = (0..20)
        .map(|i| {
            ev(
                i,
                json!({"event": {"action": "exec"}, "host": {"name": "h1"}, "process": {"name": "bash"}}),
            )
        })
        .collect();
    events.push(ev(
        30,
        json!({"event": {"action": "exec"}, "host": {"name": "h1"}, "process": {"name": "nc"}}),
    ));
    let got = run(&s, &events);
    // The first matches are each 100% (or less) of a small window; `nc` is
    // 1 of 21 (4.8%).
    assert_eq!(
        got.last().unwrap(),
        &format!("Rare process@e30={}[host.name=h1]", 100.0 / 21.0)
    );
    assert_eq!(got.len(), 1, "{got:?}");
}

#[test]
fn aliases_group_different_fields_of_different_rules() {
    let s = set(r#"title: Error then connection
correlation:
    type: temporal
    rules: [internal_error, new_connection]
    group-by: [internal_ip]
    timespan: 10s
    aliases:
        internal_ip:
            internal_error: destination.ip
            new_connection: source.ip
---
title: Internal error
name: internal_error
logsource: {product: test}
detection:
    sel: {http.response.status_code: 500}
    condition: sel
---
title: New connection
name: new_connection
logsource: {product: test}
detection:
    sel: {event.category: network}
    condition: sel
"#);
    let got = run(
        &s,
        &[
            ev(
                0,
                json!({"http": {"response": {"status_code": 500}}, "destination": {"ip": "10.1.1.1"}}),
            ),
            ev(
                3,
                json!({"event": {"category": "network"}, "source": {"ip": "10.1.1.1"}}),
            ),
        ],
    );
    assert_eq!(got, ["Error then connection@e3=2[internal_ip=10.1.1.1]"]);
}

#[test]
fn generate_true_keeps_the_referred_rules_alerting() {
    let s = set(&BRUTE.replace("    type: event_count", "    type: event_count\n    generate: true"));
    let got = run(&s, &[login(0, "a", "failure")]);
    assert_eq!(got, ["Failed login@e0"]);
}

#[test]
fn a_correlation_naming_an_unknown_rule_or_itself_is_refused() {
    let text = format!(
        "{BASE}---\ntitle: X\ncorrelation: {{type: event_count, rules: [nope], timespan: 1m, condition: {{gte: 1}}}}\n\
         ---\ntitle: Loop\nname: loop\ncorrelation: {{type: event_count, rules: [loop], timespan: 1m, condition: {{gte: 1}}}}\n\
         ---\ntitle: Bad\ncorrelation: {{type: event_sum, rules: [upload], timespan: 1m}}\n"
    );
    let (mut rules, mut correlations, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for d in parse_file(&text, "t.yml") {
        match d {
            Ok(Document::Rule(r)) => rules.push(*r),
            Ok(Document::Correlation(c)) => correlations.push(("t.yml".to_string(), *c)),
            Ok(Document::Filter(_)) => unreachable!(),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let (set, more) = RuleSet::build(rules, correlations, Vec::new());
    errors.extend(more.iter().map(ToString::to_string));
    assert!(set.correlations().is_empty());
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors.iter().any(|e| e.contains("\"nope\"")));
    assert!(errors.iter().any(|e| e.contains("itself")));
    assert!(errors.iter().any(|e| e.contains("event_sum")));
}

#[test]
fn a_filter_document_narrows_the_rules_it_names() {
    let s = set(
        "title: Not the service account\nlogsource: {product: test}\nfilter:\n    rules: [successful_login]\n    \
         svc:\n        user.name|startswith: svc_\n    condition: not svc\n",
    );
    let got = run(&s, &[login(0, "svc_backup", "success"), login(1, "alice", "success")]);
    assert_eq!(got, ["Successful login@e1"]);
    // `rules: any` applies to every rule of the logsource.
    let s = set("title: Nobody called bob\nlogsource: {product: test}\nfilter:\n    rules: any\n    b: {user.name: bob}\n    condition: not b\n");
    let got = run(
        &s,
        &[
            login(0, "bob", "success"),
            login(1, "bob", "failure"),
            login(2, "x", "success"),
        ],
    );
    assert_eq!(got, ["Successful login@e2"]);
}

#[test]
fn windows_are_bounded_and_evictions_counted() {
    let s = set(BRUTE);
    let mut windows = Windows::default();
    let mut dropped = Dropped::default();
    let caps = Caps {
        max_groups: 2,
        max_entries: 2,
    };
    for (i, user) in ["a", "b", "c", "d"].iter().enumerate() {
        let (t, e) = login(i as i64, user, "failure");
        s.evaluate(&e, t, &mut windows, caps, &mut dropped);
    }
    assert_eq!(windows.entries(), 2);
    assert_eq!(dropped.evicted, 2);
    // With two entries kept per group, three failures in a row never fire.
    let mut windows = Windows::default();
    for i in 0..5 {
        let (t, e) = login(i, "a", "failure");
        assert!(s.evaluate(&e, t, &mut windows, caps, &mut dropped).hits.is_empty());
    }
}
