//! Rules against events: data-driven (rule, events that must match, events
//! that must not), and SigmaHQ's rules in `../shared/data/sigma` loaded.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use detect::rule::{parse_file, Document, Placeholders, Rule, RuleSet};
use schemas::Event;
use serde_json::{json, Value};

fn rule(detection: &str) -> Rule {
    let text = format!("title: t\nid: r\nlogsource: {{product: test}}\ndetection:\n{detection}");
    match parse_file(&text, "t.yml").remove(0) {
        Ok(Document::Rule(r)) => *r,
        other => panic!("{detection}\n=> {other:?}"),
    }
}

fn event(v: Value) -> Event {
    Event::from_json(v).unwrap()
}

/// (detection, events that match, events that do not)
fn cases() -> Vec<(&'static str, Vec<Value>, Vec<Value>)> {
    vec![
        // Maps AND, lists OR, case-insensitive by default.
        (
            "  sel:\n    EventLog: Security\n    EventID: [517, 1102]\n  condition: sel",
            vec![json!({"EventLog": "security", "EventID": 517}), json!({"EventLog": "Security", "EventID": "1102"})],
            vec![json!({"EventLog": "Security", "EventID": 4624}), json!({"EventID": 517})],
        ),
        // A list of maps is OR.
        (
            "  sel:\n    - Image|endswith: '\\example.exe'\n    - Description|contains: 'Test executable'\n  condition: sel",
            vec![json!({"Image": "C:\\x\\EXAMPLE.EXE"}), json!({"Description": "a test Executable here"})],
            vec![json!({"Image": "C:\\example.exe.bak"})],
        ),
        // Wildcards and escapes.
        (
            "  sel:\n    f: 'prog?.exe'\n    g: 'a\\*b*'\n  condition: sel",
            vec![json!({"f": "progA.exe", "g": "a*bcd"})],
            vec![json!({"f": "progAB.exe", "g": "a*b"}), json!({"f": "progA.exe", "g": "axbcd"})],
        ),
        // null: absent or null; '' is the empty string.
        (
            "  sel:\n    EventID: 4738\n  filter:\n    PasswordLastSet: null\n  condition: sel and not filter",
            vec![json!({"EventID": 4738, "PasswordLastSet": "x"})],
            vec![json!({"EventID": 4738}), json!({"EventID": 4738, "PasswordLastSet": null})],
        ),
        (
            "  sel:\n    f: ''\n  condition: sel",
            vec![json!({"f": ""})],
            vec![json!({"f": "x"}), json!({})],
        ),
        // Keywords: anywhere in any value; |all makes them AND.
        (
            "  keywords:\n    - 'event::clear'\n    - 'event::drop'\n  condition: keywords",
            vec![json!({"message": "mimikatz # EVENT::Clear"}), json!({"cmd": ["x", "event::drop"]})],
            vec![json!({"message": "event::list"})],
        ),
        (
            "  kw:\n    '|all':\n      - 'OabVirtualDirectory'\n      - ' -ExternalUrl '\n  condition: kw",
            vec![json!({"message": "Set-OabVirtualDirectory -ExternalUrl x"})],
            vec![json!({"message": "Set-OabVirtualDirectory"})],
        ),
        // contains|all, startswith, cased, neq, exists.
        (
            "  sel:\n    cmd|contains|all: [' -a ', ' -b ']\n    user|startswith: adm\n  condition: sel",
            vec![json!({"cmd": "x -b  -a y", "user": "ADMIN"}), json!({"cmd": "x -a -b -a  -b ", "user": "adm"})],
            vec![json!({"cmd": "x -a y", "user": "admin"}), json!({"cmd": " -a  -b ", "user": "root"})],
        ),
        (
            "  sel:\n    f|cased: Abc\n  condition: sel",
            vec![json!({"f": "Abc"})],
            vec![json!({"f": "abc"})],
        ),
        (
            "  sel:\n    f|neq: [a, b]\n    g|exists: true\n    h|exists: false\n  condition: sel",
            vec![json!({"f": "c", "g": null})],
            vec![json!({"f": "A", "g": 1}), json!({"f": "c"}), json!({"f": "c", "g": 1, "h": 1})],
        ),
        // Regular expressions: case-sensitive unless |i.
        (
            "  a:\n    f|re: '^ab+c$'\n  b:\n    g|re|i: '^X'\n  condition: a or b",
            vec![json!({"f": "abbc"}), json!({"g": "xyz"})],
            vec![json!({"f": "ABC"}), json!({"g": "yx"})],
        ),
        // Numbers, networks, time parts.
        (
            "  sel:\n    status|gte: 500\n    src|cidr: ['10.0.0.0/8', '2001:db8::/32']\n  condition: sel",
            vec![json!({"status": 503, "src": "10.2.3.4"}), json!({"status": "500", "src": "2001:db8::7"})],
            vec![json!({"status": 404, "src": "10.2.3.4"}), json!({"status": 503, "src": "192.168.0.1"})],
        ),
        (
            "  sel:\n    '@timestamp|hour|gte': 22\n  condition: sel",
            vec![json!({"@timestamp": "2026-12-02T23:00:00Z"})],
            vec![json!({"@timestamp": "2026-12-02T08:00:00Z"})],
        ),
        // Encodings: base64offset|contains over a base64 blob, utf16le|base64.
        (
            "  sel:\n    cmd|base64offset|contains: 'http://'\n  condition: sel",
            vec![
                json!({"cmd": "powershell -enc aHR0cDovL2V2aWwuY29t"}),
                json!({"cmd": "x IGh0dHA6Ly9ldmls"}),
                json!({"cmd": "x YWJodHRwOi8vZXZpbA=="}),
            ],
            vec![json!({"cmd": "http://evil.com"})],
        ),
        (
            "  sel:\n    cmd|utf16le|base64|contains: 'cmd'\n  condition: sel",
            vec![json!({"cmd": "x YwBtAGQA y"})],
            vec![json!({"cmd": "x Y21k y"})],
        ),
        // windash: any dash for any dash.
        (
            "  sel:\n    cmd|windash|contains: ' -enc '\n  condition: sel",
            vec![json!({"cmd": "ps /enc x"}), json!({"cmd": "ps \u{2013}enc x"}), json!({"cmd": "ps -enc x"})],
            vec![json!({"cmd": "ps enc x"})],
        ),
        // fieldref: one field equal to another.
        (
            "  sel:\n    user|fieldref: target\n  condition: sel",
            vec![json!({"user": "Bob", "target": "bob"})],
            vec![json!({"user": "bob", "target": "alice"}), json!({"user": "bob"})],
        ),
        // Conditions: 1 of / all of / them, _ excluded, lists of conditions.
        (
            "  selection_a:\n    a: 1\n  selection_b:\n    b: 1\n  _hidden:\n    c: 1\n  condition: all of selection_*",
            vec![json!({"a": 1, "b": 1})],
            vec![json!({"a": 1})],
        ),
        (
            "  a:\n    a: 1\n  _hidden:\n    c: 1\n  condition: all of them",
            vec![json!({"a": 1})],
            vec![json!({"c": 1})],
        ),
        (
            "  a:\n    a: 1\n  b:\n    b: 1\n  condition:\n    - a\n    - b",
            vec![json!({"a": 1}), json!({"b": 1})],
            vec![json!({"c": 1})],
        ),
        // Dotted fields reach nested JSON (flattened at ingest).
        (
            "  sel:\n    userIdentity.type: Root\n    eventName|startswith: Delete\n  condition: sel",
            vec![json!({"userIdentity": {"type": "Root"}, "eventName": "DeleteTrail"})],
            vec![json!({"userIdentity": {"type": "IAMUser"}, "eventName": "DeleteTrail"})],
        ),
    ]
}

#[test]
fn each_modifier_and_condition_form_matches_what_it_should() {
    for (detection, yes, no) in cases() {
        let r = rule(detection);
        // Through a rule set too: the field prefilter must not lose a match.
        let set = detect::rule::RuleSet::new(vec![r.clone()]);
        for e in &yes {
            assert_eq!(
                set.matching(&event(e.clone())).count(),
                1,
                "{detection}\nset should match {e}"
            );
        }
        for e in yes {
            assert!(r.matches(&event(e.clone())), "{detection}\nshould match {e}");
        }
        for e in no {
            assert!(!r.matches(&event(e.clone())), "{detection}\nshould not match {e}");
        }
    }
}

/// (detection, words in the refusal)
const REFUSED: &[(&str, &str)] = &[
    (
        "  sel:\n    f|nosuch: x\n  condition: sel",
        "unknown modifier \"nosuch\"",
    ),
    (
        "  sel:\n    f|expand: '%Servers%'\n  condition: sel",
        "placeholder %Servers% is not defined",
    ),
    ("  sel:\n    f: x\n  condition: sel and other", "does not define"),
    (
        "  sel:\n    f: x\n  condition: 1 of filter*",
        "matches no search identifier",
    ),
    ("  sel:\n    f: x\n  condition: sel | count() > 5", "does not parse"),
    ("  sel:\n    f: x\n  timeframe: 5m\n  condition: sel", "timeframe"),
    ("  sel:\n    f|all: x\n  condition: sel", "all needs a list"),
    (
        "  sel:\n    f: ['', null]\n  condition: sel",
        "null must be a value of its own",
    ),
    ("  sel:\n    f|re: '(unclosed'\n  condition: sel", "regex"),
    ("  sel:\n    f|cidr: 'not/a/net'\n  condition: sel", "not a network"),
    ("  sel:\n    f|gt: many\n  condition: sel", "not a number"),
    ("  sel:\n    f|utf16le: x\n  condition: sel", "base64-encoded"),
];

#[test]
fn rules_using_what_is_not_implemented_are_refused_with_the_reason() {
    for (detection, want) in REFUSED {
        let text = format!("title: t\nid: r\ndetection:\n{detection}");
        match parse_file(&text, "t.yml").remove(0) {
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains(want) && e.contains("t.yml") && e.contains("rule r"),
                    "{detection}: {e}"
                );
            }
            Ok(d) => panic!("{detection} was accepted: {d:?}"),
        }
    }
}

#[test]
fn expand_fills_placeholders_from_configuration() {
    let mut ph = detect::rule::Placeholders::new();
    ph.insert("Servers".into(), vec!["srv*".into(), "db?".into()]);
    let text = "title: t\nid: r\ndetection:\n  sel:\n    host|expand: '%Servers%'\n    tag|expand: '\\%plain-%Servers%'\n  condition: sel";
    let Ok(Document::Rule(r)) = detect::rule::parse_file_with(text, "t.yml", &ph).remove(0) else {
        panic!("refused")
    };
    assert!(r.matches(&event(json!({"host": "SRV-01", "tag": "%plain-db1"}))));
    assert!(r.matches(&event(json!({"host": "db2", "tag": "%plain-srv9"}))));
    assert!(!r.matches(&event(json!({"host": "web1", "tag": "%plain-db1"}))));
    assert!(!r.matches(&event(json!({"host": "db2", "tag": "plain-db1"}))));
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// A logsource in `schemas/sigma/logsources.toml` selects its events, and
/// its taxonomy's field names reach ours; the rule's own names match too.
#[test]
fn logsources_select_events_and_map_taxonomy_fields() {
    let text = "title: t\nid: r\nlogsource:\n  category: webserver\ndetection:\n  sel:\n    cs-method: POST\n    sc-status: 403\n  condition: sel";
    let Ok(Document::Rule(r)) = parse_file(text, "t.yml").remove(0) else {
        panic!()
    };
    assert!(r.mapped);
    let web = json!({"event": {"category": "web"}, "http": {"request": {"method": "POST"}, "response": {"status_code": 403}}});
    assert!(r.matches(&event(web)));
    // Not selected: not a web event, although the fields match.
    let other = json!({"http": {"request": {"method": "POST"}, "response": {"status_code": 403}}});
    assert!(!r.matches(&event(other)));
    // The taxonomy's own names, as a sender may ship them.
    assert!(r.matches(&event(
        json!({"event": {"category": "web"}, "cs-method": "post", "sc-status": "403"})
    )));
    // An unknown logsource: every event, by field names alone.
    let text = "title: t\nid: r\nlogsource:\n  product: nosuch\ndetection:\n  sel:\n    a: 1\n  condition: sel";
    let Ok(Document::Rule(r)) = parse_file(text, "t.yml").remove(0) else {
        panic!()
    };
    assert!(!r.mapped && r.matches(&event(json!({"a": 1}))));
}

fn sigma_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/sigma")
}

/// Loads every SigmaHQ rule in the shared data and reports what loaded and
/// why the rest did not. The floor is what this engine loads today; the
/// issue's target is 97%.
#[test]
fn sigmahq_rules_load_and_every_refusal_has_a_reason() {
    let (set, errors) = RuleSet::load_dir(&sigma_dir(), &Placeholders::new());
    let loaded = set.rules().len();
    let refused: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(loaded + refused.len() >= 700, "{} rules", loaded + refused.len());
    let total = loaded + refused.len();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for r in &refused {
        let reason = r.split(" refused: ").nth(1).unwrap_or(r);
        let reason = reason.rsplit(':').next().unwrap_or(reason).trim().to_string();
        *reasons.entry(reason).or_default() += 1;
    }
    eprintln!("{loaded} of {total} rules loaded");
    for (reason, n) in &reasons {
        eprintln!("{n:>4}  {reason}");
    }
    for r in refused.iter().take(20) {
        eprintln!("  {r}");
    }
    assert!(loaded * 100 >= total * 97, "{loaded} of {total} loaded");
}

/// The CloudTrail records of the shared attack dataset against SigmaHQ's
/// AWS CloudTrail rules: which fire.
#[test]
fn sigmahq_aws_rules_over_the_shared_cloudtrail_records() {
    let (set, _) = RuleSet::load_dir(&sigma_dir().join("rules/cloud/aws"), &Placeholders::new());
    let rules: Vec<Rule> = set
        .rules()
        .iter()
        .filter(|r| r.logsource.service.as_deref() == Some("cloudtrail"))
        .cloned()
        .collect();
    assert!(rules.len() > 50, "{} AWS rules", rules.len());
    let records = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/cloudtrail/ec2_proxy_s3_exfiltration_2020-09-14011940.json"),
    )
    .unwrap();
    // As ingest stores them: recognized as CloudTrail, mapped.
    let limits = ingest::parse::Limits::default();
    let ctx = ingest::format::LineContext {
        limits: &limits,
        now: time_now(),
    };
    let events: Vec<Event> = records
        .lines()
        .map(|l| ingest::format::parse_line(ingest::format::Format::Auto, 1, l.as_bytes(), &ctx).event)
        .collect();
    let mut fired: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rules {
        let n = events.iter().filter(|e| r.matches(e)).count();
        if n > 0 {
            fired.insert(format!("{} ({})", r.title, r.id), n);
        }
    }
    eprintln!(
        "{} AWS CloudTrail rules over {} records; fired: {fired:#?}",
        rules.len(),
        events.len()
    );
    // The dataset is an EC2 instance-profile key abuse ending in S3 reads:
    // the stolen role's session is used from outside AWS.
    let want: BTreeMap<String, usize> = [(
        "AWS STS AssumeRole Misuse (905d389b-b853-46d0-9d3d-dea0d3a3cd49)".to_string(),
        11,
    )]
    .into();
    assert_eq!(fired, want);
}

/// A rule file is read from API clients too (`POST /api/v1/hunt`): a YAML
/// alias bomb is an error, not gigabytes of expanded nodes.
#[test]
fn a_yaml_alias_bomb_is_refused_not_expanded() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for name in 'b'..='j' {
        text.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        prev = name;
    }
    text.push_str("title: bomb\ndetection:\n  sel: {f: *j}\n  condition: sel\n");
    let docs = parse_file(&text, "bomb.yml");
    assert!(docs.iter().all(|d| d.is_err()), "{docs:?}");
}

/// A YAML syntax error used to make the document iterator yield the same
/// error forever: `rules check`, a reload and `POST /api/v1/hunt` hung
/// while memory grew. The file is one refusal with the parser's position.
#[test]
fn a_yaml_syntax_error_is_one_refusal_not_an_endless_stream_of_documents() {
    let text = "title: t\nid: 1\nlogsource: {product: test}\ndetection:\n    sel:\n        a: 1\nb|gte: 500\n    condition: sel\n";
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(parse_file(text, "bad.yml"));
    });
    let docs = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("parsing a broken file ends");
    assert_eq!(docs.len(), 1, "{docs:?}");
    let err = docs[0].as_ref().expect_err("refused").to_string();
    assert!(err.contains("bad.yml") && err.contains("line"), "{err}");
}

/// Each unclosed `not (` used to double the parse time (two branches of
/// `not` both parsed the group after it): 30 of them, 150 bytes of a rule
/// file or a hunt request, took minutes. Found by the `sigma_condition`
/// fuzz target.
#[test]
fn nested_unclosed_nots_are_refused_at_once_not_in_exponential_time() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let cond = format!("{}sel", "not (".repeat(30));
        let _ = tx.send(detect::condition::parse(&cond).is_err());
    });
    let refused = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the parse ends at once");
    assert!(refused);
    // Nested and closed, it parses.
    let ok = format!("{}sel{}", "not (".repeat(20), ")".repeat(20));
    assert!(detect::condition::parse(&ok).is_ok());
}

/// Nesting had no bound: 7,800 `(` overflowed the main thread's stack
/// (`tripline rules check` aborted), far fewer a worker thread's. The
/// depth is now checked before the parser recurses; 64 levels parse on a
/// 1 MiB stack (half a tokio worker's) in a debug build.
#[test]
fn a_condition_nested_deeper_than_the_limit_is_refused_not_a_stack_overflow() {
    let handle = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            let deep = format!("{}sel{}", "(".repeat(10_000), ")".repeat(10_000));
            let err = detect::condition::parse(&deep).expect_err("too deep");
            assert!(err.to_string().contains("nested deeper than 64"), "{err}");
            let nots = format!("{}sel", "not ".repeat(30_000));
            assert!(detect::condition::parse(&nots).is_err());
            let limit = format!("{}sel{}", "(".repeat(64), ")".repeat(64));
            assert!(detect::condition::parse(&limit).is_ok());
        })
        .expect("a thread");
    handle.join().expect("no overflow");
}
