//! Webhooks end to end: the daemon with rules and webhooks, alerts made
//! from events over HTTP, and real receivers (`webhook_receiver.py`) that
//! verify every signature with the official `standardwebhooks` Python
//! library and check each body against its format's documented schema.
//! Every receiver listens on 127.0.0.1; no test sends anything elsewhere.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A running `webhook_receiver.py`.
struct Receiver {
    child: Child,
    port: u16,
    log: PathBuf,
    secrets: PathBuf,
}

impl Receiver {
    /// Starts a receiver in `dir` (its log and secrets there) on `port`
    /// (0: any), with extra arguments.
    fn start(dir: &Path, port: u16, args: &[&str]) -> Receiver {
        let secrets = dir.join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        let log = dir.join("received.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhook_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--log"])
            .arg(&log)
            .arg("--secrets")
            .arg(&secrets)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "the receiver did not start ({line:?}): is the standardwebhooks Python package installed? \
                     (.ci/run installs it: pip install standardwebhooks)"
                )
            });
        Receiver {
            child,
            port,
            log,
            secrets,
        }
    }

    fn secret(&self, name: &str, secret: &str) {
        std::fs::write(self.secrets.join(name), secret).unwrap();
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// Every request received so far.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn on(&self, name: &str) -> Vec<Value> {
        let path = format!("/{name}");
        self.received().into_iter().filter(|r| r["path"] == path).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn call(d: &Daemon, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {ADMIN}");
    let url = d.url(path);
    let a = agent();
    let resp = match (method, body) {
        ("GET", _) => a.get(&url).header("Authorization", &auth).call(),
        ("DELETE", _) => a.delete(&url).header("Authorization", &auth).call(),
        ("PUT", Some(b)) => a.put(&url).header("Authorization", &auth).send_json(&b),
        ("POST", Some(b)) => a.post(&url).header("Authorization", &auth).send_json(&b),
        ("POST", None) => a.post(&url).header("Authorization", &auth).send_empty(),
        _ => unreachable!(),
    };
    let mut resp = resp.unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

/// Waits until `done` holds; panics after two minutes with `what`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn failures(ips: &[&str]) -> String {
    ips.iter()
        .map(|ip| format!("{{\"event\":{{\"outcome\":\"failure\"}},\"source\":{{\"ip\":\"{ip}\"}}}}\n"))
        .collect()
}

fn send_failures(d: &Daemon, ips: &[&str]) {
    let (status, report) = ingest(&d.base, "auth", Some(ADMIN), failures(ips).as_bytes(), None).unwrap();
    assert_eq!(status, 200, "{report}");
}

fn rules_dir(dir: &Path) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("failed_login.yml"), failed_login_rule("1h")).unwrap();
    rules
}

fn config(rules: &Path, extra: &str) -> String {
    format!(
        "{FAST_COMMITS}\n[detect]\nrules_dir = \"{}\"\nreload_interval_secs = 0\n\n{extra}",
        rules.display()
    )
}

const ALLOW_LOOPBACK: &str = "[egress]\nallow_private_networks = [\"127.0.0.0/8\"]\n";

fn deliveries(d: &Daemon, webhook: &str, query: &str) -> Vec<Value> {
    let (status, body) = call(d, "GET", &format!("/api/v1/webhooks/{webhook}/deliveries{query}"), None);
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

fn body_of(r: &Value) -> Value {
    serde_json::from_str(r["body"].as_str().unwrap()).unwrap()
}

#[test]
fn alerts_reach_receivers_signed_in_each_format_and_the_official_library_verifies_them() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(
        dir.path(),
        0,
        &[
            "--format",
            "am=alertmanager",
            "--format",
            "slack=slack",
            "--format",
            "native=tripline",
        ],
    );
    rx.secret("native", SECRET);
    let extra = format!(
        "{ALLOW_LOOPBACK}\n\
         [[webhooks]]\nid = \"native\"\nurl = \"{}\"\nallow_http = true\nsecret = \"{SECRET}\"\n\
         events = [\"alert.created\", \"alert.updated\"]\nmin_level = \"medium\"\n\n\
         [[webhooks]]\nid = \"critical-only\"\nurl = \"{}\"\nallow_http = true\nmin_level = \"critical\"\n",
        rx.url("native"),
        rx.url("critical")
    );
    let d = Daemon::start(&dir.path().join("data"), &config(&rules_dir(dir.path()), &extra));
    // The secret the file did not give was generated into a private file.
    let generated = d.data.join("webhooks/critical-only.secret");
    assert!(std::fs::read_to_string(&generated).unwrap().starts_with("whsec_"));

    // Two more through the API; each secret is shown once, in the answer.
    let (status, am) = call(
        &d,
        "POST",
        "/api/v1/webhooks",
        Some(
            json!({"id": "am", "url": rx.url("am"), "allow_http": true, "format": "alertmanager",
                    "tags": ["attack.t1110"], "headers": {"X-Api-Key": "receiver-key-1"}}),
        ),
    );
    assert_eq!(status, 201, "{am}");
    let am_secret = am["secret"].as_str().unwrap().to_string();
    assert!(am_secret.starts_with("whsec_"));
    rx.secret("am", &am_secret);
    let (status, slack) = call(
        &d,
        "POST",
        "/api/v1/webhooks",
        Some(
            json!({"id": "slack", "url": rx.url("slack"), "allow_http": true, "format": "slack",
                    "query": "alert.group_key:\"source.ip=10.0.0.1\""}),
        ),
    );
    assert_eq!(status, 201, "{slack}");
    rx.secret("slack", slack["secret"].as_str().unwrap());
    let (status, list) = call(&d, "GET", "/api/v1/webhooks", None);
    assert_eq!(status, 200);
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 4);
    let listed = list.to_string();
    for hidden in [SECRET, &am_secret, "receiver-key-1"] {
        assert!(!listed.contains(hidden), "the list shows a secret: {listed}");
    }
    // Refusals: an id taken, plain http without allow_http, a file's webhook.
    let (status, _) = call(
        &d,
        "POST",
        "/api/v1/webhooks",
        Some(json!({"id": "am", "url": rx.url("x"), "allow_http": true})),
    );
    assert_eq!(status, 409);
    let (status, body) = call(
        &d,
        "POST",
        "/api/v1/webhooks",
        Some(json!({"id": "plain", "url": rx.url("x")})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("https is required"), "{body}");
    let (status, _) = call(&d, "DELETE", "/api/v1/webhooks/native", None);
    assert_eq!(status, 409);

    // The test endpoint: a signed webhook.test, the receiver's answer.
    let (status, test) = call(&d, "POST", "/api/v1/webhooks/am/test", None);
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["status"], 200, "{test}");
    assert!(test["latency_ms"].is_u64());

    send_failures(&d, &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"]);
    wait_until("every alert delivered to every webhook that wants it", || {
        rx.on("native").len() == 3 && rx.on("am").len() == 4 && !rx.on("slack").is_empty()
    });
    // Deliveries can arrive before the alerts are searchable (the index
    // commits every 100 ms here).
    let mut alerts = Vec::new();
    wait_until("the three alerts are searchable", || {
        let (_, body) = call(&d, "GET", "/api/v1/alerts", None);
        alerts = body["alerts"].as_array().unwrap().clone();
        alerts.len() == 3
    });

    let all = rx.received();
    let mut ids = HashSet::new();
    for r in &all {
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(r["tamper_rejected"], true, "a changed body still verified: {r}");
        assert_eq!(r["schema_error"], Value::Null, "{r}");
        assert!(ids.insert(r["headers"]["webhook-id"].as_str().unwrap().to_string()));
        r["headers"]["webhook-timestamp"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap();
    }
    for r in rx.on("am") {
        assert_eq!(r["headers"]["x-api-key"], "receiver-key-1");
    }
    // Native bodies are the alerts; the Alertmanager ones name the rule.
    let native: HashSet<String> = rx
        .on("native")
        .iter()
        .map(|r| body_of(r)["data"]["id"].as_str().unwrap().to_string())
        .collect();
    let stored: HashSet<String> = alerts.iter().map(|a| a["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(native, stored);
    let am_bodies: Vec<Value> = rx.on("am").iter().map(body_of).collect();
    assert_eq!(
        am_bodies
            .iter()
            .filter(|b| b["alerts"][0]["labels"]["alertname"] == "Failed login")
            .count(),
        3
    );
    // The query filter let one group through; the level filter none.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.on("slack").len(), 1);
    assert!(body_of(&rx.on("slack")[0])["text"]
        .as_str()
        .unwrap()
        .contains("Failed login"));
    assert!(rx.on("critical").is_empty());

    // A status change goes to the webhook that asked for alert.updated.
    let a1 = alerts.iter().find(|a| a["group_key"] == "source.ip=10.0.0.1").unwrap();
    let (status, _) = call(
        &d,
        "POST",
        &format!("/api/v1/alerts/{}", a1["id"].as_str().unwrap()),
        Some(json!({"status": "acknowledged", "comment": "on it"})),
    );
    assert_eq!(status, 200);
    wait_until("the status change delivered", || rx.on("native").len() == 4);
    let update = body_of(rx.on("native").last().unwrap());
    assert_eq!(update["type"], "alert.updated");
    assert_eq!(update["data"]["status"], "acknowledged");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.on("am").len(), 4, "am asked for alert.created only");

    // The delivery log and the metrics say the same.
    wait_until("the log shows four delivered", || {
        deliveries(&d, "native", "?status=delivered").len() == 4
    });
    assert!(deliveries(&d, "native", "?status=failed").is_empty());
    let m = metrics_text(&d);
    assert!(
        m.contains("tripline_webhook_delivered_total{webhook=\"native\"} 4"),
        "{m}"
    );
    assert!(m.contains("tripline_webhook_outbox_depth"), "{m}");
    assert!(m.contains("tripline_webhook_delivery_latency_seconds_count"), "{m}");

    // A rotation: both signatures are sent during the overlap, so the
    // receiver verifies with the old secret, then with the new one.
    let (status, rotated) = call(&d, "POST", "/api/v1/webhooks/am/rotate-secret", None);
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, am_secret);
    for secret in [&am_secret, &new_secret] {
        rx.secret("am", secret);
        let before = rx.on("am").len();
        let (status, test) = call(&d, "POST", "/api/v1/webhooks/am/test", None);
        assert_eq!((status, &test["status"]), (200, &json!(200)), "{test}");
        let r = rx.on("am")[before].clone();
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(
            r["headers"]["webhook-signature"].as_str().unwrap().split(' ').count(),
            2
        );
    }
    let (_, view) = call(&d, "GET", "/api/v1/webhooks/am", None);
    assert_eq!(view["rotating"], true);
    assert!(!view.to_string().contains(&new_secret));

    let (_, ready) = call(&d, "GET", "/readyz", None);
    assert_eq!(
        (&ready["detect"], &ready["webhooks"]),
        (&json!("ok"), &json!("ok")),
        "{ready}"
    );

    // Deleting an API webhook takes its log with it.
    let (status, _) = call(&d, "DELETE", "/api/v1/webhooks/slack", None);
    assert_eq!(status, 204);
    let (status, _) = call(&d, "GET", "/api/v1/webhooks/slack/deliveries", None);
    assert_eq!(status, 404);
}

#[test]
fn a_receiver_down_then_up_gets_everything_retry_after_is_honoured_and_a_stuck_one_delays_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let (late_dir, limited_dir, stuck_dir, gone_dir) = (
        dir.path().join("late"),
        dir.path().join("limited"),
        dir.path().join("stuck"),
        dir.path().join("gone"),
    );
    let late_port = free_port();
    let limited = Receiver::start(
        &limited_dir,
        0,
        &["--fail-first", "1", "--fail-status", "429", "--retry-after", "2"],
    );
    let stuck = Receiver::start(&stuck_dir, 0, &["--delay", "60"]);
    let gone = Receiver::start(&gone_dir, 0, &["--status", "410"]);
    let moved = Receiver::start(&dir.path().join("moved"), 0, &["--status", "302"]);
    for r in [&limited, &stuck, &gone, &moved] {
        r.secret("hook", SECRET);
    }
    let hook = |id: &str, url: String, extra: &str| {
        format!("[[webhooks]]\nid = \"{id}\"\nurl = \"{url}\"\nallow_http = true\nsecret = \"{SECRET}\"\n{extra}\n")
    };
    let extra = format!(
        "{ALLOW_LOOPBACK}\n[delivery]\nbase_backoff_ms = 300\nmax_backoff_secs = 2\n\n{}{}{}{}",
        hook("late", format!("http://127.0.0.1:{late_port}/hook"), ""),
        hook("limited", limited.url("hook"), "max_in_flight = 1"),
        hook("stuck", stuck.url("hook"), "timeout_secs = 120\nmax_in_flight = 1"),
        hook("gone", gone.url("hook"), "max_in_flight = 1"),
    ) + &hook("moved", moved.url("hook"), "max_in_flight = 1");
    let d = Daemon::start(&dir.path().join("data"), &config(&rules_dir(dir.path()), &extra));
    send_failures(&d, &["10.1.0.1", "10.1.0.2", "10.1.0.3"]);

    // The stuck receiver holds its first request; the others go on.
    wait_until("the rate-limited receiver got all three", || {
        deliveries(&d, "limited", "?status=delivered").len() == 3
    });
    assert!(deliveries(&d, "stuck", "?status=delivered").is_empty());
    assert_eq!(stuck.received().len(), 0, "the stuck receiver answers after a minute");
    // Retry-After: 2 on the 429: the next try waited for it.
    let limited_log = deliveries(&d, "limited", "");
    let retried = limited_log
        .iter()
        .find(|l| l["attempt_count"] == 2)
        .unwrap_or_else(|| panic!("no delivery was tried twice: {limited_log:#?}"));
    let attempts = retried["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["http_status"], 429);
    let t = |v: &Value| {
        time::OffsetDateTime::parse(v.as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap()
    };
    let waited = t(&attempts[1]["at"]) - t(&attempts[0]["at"]);
    assert!(waited >= time::Duration::milliseconds(1990), "retried after {waited}");
    assert_eq!(
        t(&attempts[0]["next_retry_at"]),
        t(&attempts[0]["at"]) + time::Duration::seconds(2)
    );

    // The receiver that is down: tries back off, each recorded.
    wait_until("the down receiver's deliveries were tried three times", || {
        deliveries(&d, "late", "")
            .iter()
            .all(|l| l["attempt_count"].as_u64().unwrap() >= 3)
    });
    for l in deliveries(&d, "late", "") {
        assert_eq!(l["status"], "pending");
        let a = &l["attempts"][0];
        assert!(a["http_status"].is_null());
        assert!(a["error"].as_str().unwrap().contains("onnect"), "{a}");
        assert!(a["next_retry_at"].is_string());
    }
    // It comes up: everything arrives.
    let late = Receiver::start(&late_dir, late_port, &[]);
    late.secret("hook", SECRET);
    wait_until("the receiver that came up got all three", || {
        deliveries(&d, "late", "?status=delivered").len() == 3
    });
    assert_eq!(late.on("hook").iter().filter(|r| r["verified"] == true).count(), 3);

    // 410 Gone disabled its webhook, with the reason.
    wait_until("the 410 webhook is disabled", || {
        call(&d, "GET", "/api/v1/webhooks/gone", None).1["disabled"].is_object()
    });
    let (_, gone_view) = call(&d, "GET", "/api/v1/webhooks/gone", None);
    assert!(
        gone_view["disabled"]["reason"].as_str().unwrap().contains("410"),
        "{gone_view}"
    );
    let answered = gone.received().len();
    assert_eq!(answered, 1, "nothing more after the 410");
    assert_eq!(deliveries(&d, "gone", "?status=failed").len(), 1);
    assert_eq!(
        deliveries(&d, "gone", "?status=pending").len(),
        2,
        "the rest wait for the webhook"
    );

    // A redirect is not followed: a client error, failed after the
    // configured tries (3), never sent to the Location.
    wait_until("the redirected deliveries failed", || {
        deliveries(&d, "moved", "?status=failed").len() == 3
    });
    for l in deliveries(&d, "moved", "") {
        assert_eq!(l["attempt_count"], 3, "{l}");
        let e = l["attempts"][2]["error"].as_str().unwrap();
        assert!(e.contains("302") && e.contains("redirects are not followed"), "{e}");
    }
    assert_eq!(moved.received().len(), 9);
}

/// SIGKILL while deliveries wait in the outbox, four times: every alert is
/// delivered after the restarts, and an alert delivered more than once
/// carries the same webhook-id each time.
#[test]
fn sigkill_with_undelivered_alerts_in_the_outbox_still_delivers_every_alert_once_per_webhook_id() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(&dir.path().join("rx"), 0, &["--delay", "0.05"]);
    rx.secret("hook", SECRET);
    let extra = format!(
        "{ALLOW_LOOPBACK}\n[[webhooks]]\nid = \"hook\"\nurl = \"{}\"\nallow_http = true\nsecret = \"{SECRET}\"\nmax_in_flight = 1\n",
        rx.url("hook")
    );
    let data = dir.path().join("data");
    let cfg = config(&rules_dir(dir.path()), &extra);
    let mut d = Daemon::start(&data, &cfg);
    for round in 0..4u32 {
        let ips: Vec<String> = (0..8).map(|i| format!("10.2.{round}.{i}")).collect();
        let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
        send_failures(&d, &ips);
        std::thread::sleep(Duration::from_millis(150 + 100 * u64::from(round)));
        d.kill();
        d = Daemon::start(&data, &cfg);
    }
    let mut expected: HashSet<String> = HashSet::new();
    wait_until("all 32 alerts are searchable", || {
        let (_, alerts) = call(&d, "GET", "/api/v1/alerts?limit=100", None);
        expected = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        expected.len() == 32
    });
    wait_until("every alert delivered", || {
        let got: HashSet<String> = rx
            .on("hook")
            .iter()
            .map(|r| body_of(r)["data"]["id"].as_str().unwrap().to_string())
            .collect();
        got == expected
    });
    let mut by_alert: HashMap<String, HashSet<String>> = HashMap::new();
    for r in rx.on("hook") {
        assert_eq!(r["verified"], true);
        by_alert
            .entry(body_of(&r)["data"]["id"].as_str().unwrap().to_string())
            .or_default()
            .insert(r["headers"]["webhook-id"].as_str().unwrap().to_string());
    }
    for (alert, ids) in by_alert {
        assert_eq!(ids.len(), 1, "alert {alert} came with several webhook-ids: {ids:?}");
    }
}

/// Without an allow list, every loopback spelling is refused before a
/// connection: the receiver on 127.0.0.1 hears nothing, and the delivery
/// log says why.
#[test]
fn webhook_urls_to_loopback_in_every_form_are_refused_without_an_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(dir.path(), 0, &[]);
    let p = rx.port;
    let mut targets = vec![
        ("name", format!("http://localhost:{p}/t")),
        ("v6", format!("http://[::1]:{p}/t")),
        ("mapped", format!("http://[::ffff:127.0.0.1]:{p}/t")),
        ("zero", format!("http://0.0.0.0:{p}/t")),
        ("decimal", format!("http://2130706433:{p}/t")),
    ];
    // A name this machine's /etc/hosts points at loopback (.ci/run adds
    // it); without it the test cannot show a resolved name refused.
    let hosts_name = "webhook-loopback.tripline.test";
    let resolved: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(hosts_name, p))
        .map(|a| a.collect())
        .unwrap_or_default();
    match resolved.is_empty() || !resolved.iter().all(|a| a.ip().is_loopback()) {
        false => targets.push(("hosts", format!("http://{hosts_name}:{p}/t"))),
        true => assert!(
            std::env::var_os("TRIPLINE_REQUIRE_SHIPPERS").is_none(),
            "{hosts_name} does not resolve to loopback: add `127.0.0.1 {hosts_name}` to /etc/hosts"
        ),
    }
    rx.secret("t", SECRET);
    let d = Daemon::start(&dir.path().join("data"), &config(&rules_dir(dir.path()), ""));
    for (id, url) in &targets {
        let (status, body) = call(
            &d,
            "POST",
            "/api/v1/webhooks",
            Some(json!({"id": id, "url": url, "allow_http": true, "secret": SECRET})),
        );
        assert_eq!(status, 201, "{body}");
        let (status, test) = call(&d, "POST", &format!("/api/v1/webhooks/{id}/test"), None);
        assert_eq!(status, 200, "{test}");
        assert!(test["status"].is_null(), "{id}: {test}");
        let error = test["error"].as_str().unwrap();
        assert!(error.contains("refused by the egress guard"), "{id}: {error}");
        assert!(
            error.contains("loopback") || error.contains("unspecified"),
            "{id}: {error}"
        );
    }
    send_failures(&d, &["10.3.0.1"]);
    for (id, _) in &targets {
        wait_until("the alert's delivery failed for good", || {
            deliveries(&d, id, "")
                .iter()
                .any(|l| l["event_type"] == "alert.created" && l["status"] == "failed")
        });
        let log = deliveries(&d, id, "?status=failed");
        let alert = log.iter().find(|l| l["event_type"] == "alert.created").unwrap();
        assert_eq!(alert["attempt_count"], 1, "a refusal is not retried: {alert}");
        assert!(alert["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("refused by the egress guard"));
    }
    // A replay through the API tries again, with the same id, and is
    // refused again.
    let failed = deliveries(&d, "decimal", "?status=failed");
    let alert = failed.iter().find(|l| l["event_type"] == "alert.created").unwrap();
    let id = alert["id"].as_str().unwrap();
    let (status, replay) = call(
        &d,
        "POST",
        &format!("/api/v1/webhooks/decimal/deliveries/{id}/retry"),
        None,
    );
    assert_eq!(status, 202, "{replay}");
    assert_eq!(replay["status"], "pending");
    wait_until("the replay was tried", || {
        deliveries(&d, "decimal", "?status=failed")
            .iter()
            .any(|l| l["id"] == id && l["attempt_count"] == 2)
    });
    let (status, _) = call(&d, "POST", "/api/v1/webhooks/decimal/deliveries/msg_nope/retry", None);
    assert_eq!(status, 404);
    assert!(
        rx.received().is_empty(),
        "a refused target was reached: {:?}",
        rx.received()
    );
}
