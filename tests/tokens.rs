//! End to end: the token lifecycle (list, revoke, expiry, dataset binding),
//! the admin token length rule, and the data directory's permissions.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn boot(config: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"), config);
    (dir, d)
}

fn read(mut resp: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `POST /api/v1/tokens` with a JSON body.
fn create(d: &Daemon, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = agent().post(&d.url("/api/v1/tokens"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    read(req.send_json(body).unwrap())
}

/// Creates a token as admin; returns its secret.
fn create_ok(d: &Daemon, body: Value) -> String {
    let (status, created) = create(d, Some(ADMIN), &body);
    assert_eq!(status, 201, "{created}");
    created["token"].as_str().unwrap().to_string()
}

fn list(d: &Daemon, token: Option<&str>) -> (u16, Value) {
    let mut req = agent().get(&d.url("/api/v1/tokens"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    read(req.call().unwrap())
}

fn revoke(d: &Daemon, token: &str, name: &str) -> u16 {
    let resp = agent()
        .delete(&d.url(&format!("/api/v1/tokens/{name}")))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    resp.status().as_u16()
}

#[test]
fn a_listed_token_shows_no_secret_and_a_revoked_token_gets_401_at_once() {
    let (_dir, d) = boot(FAST_COMMITS);
    let shipper = create_ok(&d, json!({"name": "shipper", "scopes": ["ingest"]}));
    assert_eq!(ingest(&d.base, "web", Some(&shipper), b"{}", None).unwrap().0, 200);

    let (status, listed) = list(&d, Some(ADMIN));
    assert_eq!(status, 200, "{listed}");
    let text = listed.to_string();
    assert!(!text.contains(&shipper), "the secret is never listed: {text}");
    assert!(!text.contains("sha256"), "nor the hash: {text}");
    let entry = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "shipper")
        .cloned()
        .unwrap();
    assert_eq!(entry["scopes"], json!(["ingest"]));
    assert_eq!(entry["datasets"], Value::Null);
    assert_eq!(entry["expires"], Value::Null);
    assert!(OffsetDateTime::parse(entry["created"].as_str().unwrap(), &Rfc3339).is_ok());
    let mut keys: Vec<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created", "datasets", "expires", "name", "scopes"]);

    // Admin only.
    assert_eq!(list(&d, Some(&shipper)).0, 403);
    assert_eq!(list(&d, None).0, 401);
    assert_eq!(revoke(&d, &shipper, "shipper"), 403);

    assert_eq!(revoke(&d, ADMIN, "shipper"), 204);
    let (status, body) = ingest(&d.base, "web", Some(&shipper), b"{}", None).unwrap();
    assert_eq!(status, 401, "revoked at once: {body}");
    assert_eq!(revoke(&d, ADMIN, "shipper"), 404);
    assert_eq!(revoke(&d, ADMIN, "never-was"), 404);
    let (_, listed) = list(&d, Some(ADMIN));
    assert_eq!(listed["tokens"], json!([]), "{listed}");
    let stored = std::fs::read_to_string(d.data.join("tokens.json")).unwrap();
    assert!(!stored.contains("shipper"), "{stored}");
}

#[test]
fn an_expired_token_gets_401_without_naming_it() {
    let (_dir, d) = boot(FAST_COMMITS);
    let expires = OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = create_ok(
        &d,
        json!({"name": "short-lived", "scopes": ["search"], "expires": expires.format(&Rfc3339).unwrap()}),
    );
    let (status, body) = search(&d.base, &soon, json!({"query": "*"}));
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = search(&d.base, &soon, json!({"query": "*"}));
        if status == 401 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        assert!(Instant::now() < deadline, "the token never expired");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(OffsetDateTime::now_utc() >= expires);
    assert_eq!(body["error"], "token expired");

    let (status, created) = create(
        &d,
        Some(ADMIN),
        &json!({"name": "month", "scopes": ["search"], "expires_in_days": 30}),
    );
    assert_eq!(status, 201, "{created}");
    let expires = OffsetDateTime::parse(created["expires"].as_str().unwrap(), &Rfc3339).unwrap();
    let days = (expires - OffsetDateTime::now_utc()).whole_hours();
    assert!((29 * 24..=30 * 24).contains(&days), "{created}");
}

/// The binding is checked before the body is read: a large body to a
/// dataset the token may not write gets 403, not 413.
#[test]
fn a_token_bound_to_a_dataset_gets_403_for_any_other_source_before_the_body_is_read() {
    let (_dir, d) = boot("[ingest]\nmax_body_bytes = 1024\n[index]\ncommit_interval_ms = 100\n");
    let payments = create_ok(
        &d,
        json!({"name": "payments-shipper", "scopes": ["ingest"], "datasets": ["payments", "refunds"]}),
    );
    let big = vec![b'x'; 4096];
    for (source, body, want) in [
        ("payments", &b"{\"message\":\"paid\"}"[..], 200),
        ("refunds", &b"{\"message\":\"refunded\"}"[..], 200),
        ("web", &b"{\"message\":\"spoofed\"}"[..], 403),
        ("web", &big[..], 403),
        ("Payments", &b"{}"[..], 403),
        ("payments", &big[..], 413),
    ] {
        let (status, report) = ingest(&d.base, source, Some(&payments), body, None).unwrap();
        assert_eq!(status, want, "source={source} ({} bytes): {report}", body.len());
    }
    // No ?source= at all is the default dataset, not one of the token's.
    let resp = agent()
        .post(&d.url("/api/v1/ingest"))
        .header("Authorization", &format!("Bearer {payments}"))
        .send(&b"{}"[..])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    wait_total(&d.base, "*", 2);
    let (_, found) = search(&d.base, ADMIN, json!({"query": "spoofed"}));
    assert_eq!(found["total"], 0, "{found}");
}

#[test]
fn token_names_scopes_expiry_and_duplicates_are_checked() {
    let (_dir, d) = boot(FAST_COMMITS);
    for (body, want) in [
        (json!({"name": "bad\nname", "scopes": ["ingest"]}), 400),
        (json!({"name": "bad\r", "scopes": ["ingest"]}), 400),
        (json!({"name": "n".repeat(65), "scopes": ["ingest"]}), 400),
        (json!({"name": "", "scopes": ["ingest"]}), 400),
        (json!({"name": "none", "scopes": []}), 400),
        (json!({"name": "x", "scopes": ["root"]}), 400),
        (json!({"name": "x", "scopes": ["ingest"], "extra": 1}), 400),
        (
            json!({"name": "x", "scopes": ["ingest"], "expires": "2001-01-01T00:00:00Z"}),
            400,
        ),
        (json!({"name": "x", "scopes": ["ingest"], "expires": "soon"}), 400),
        (json!({"name": "x", "scopes": ["ingest"], "expires_in_days": 0}), 400),
        (
            json!({"name": "x", "scopes": ["ingest"], "expires_in_days": 1, "expires": "2999-01-01T00:00:00Z"}),
            400,
        ),
        (json!({"name": "x", "scopes": ["search"], "datasets": ["a"]}), 400),
        (json!({"name": "x", "scopes": ["ingest"], "datasets": []}), 400),
        (
            json!({"name": "x", "scopes": ["ingest"], "datasets": ["no spaces"]}),
            400,
        ),
    ] {
        let (status, answer) = create(&d, Some(ADMIN), &body);
        assert_eq!(status, want, "{body}: {answer}");
    }
    let (status, created) = create(
        &d,
        Some(ADMIN),
        &json!({"name": "web-01.prod_x", "scopes": ["ingest", "search", "ingest"]}),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["scopes"], json!(["ingest", "search"]));
    let (status, answer) = create(&d, Some(ADMIN), &json!({"name": "web-01.prod_x", "scopes": ["search"]}));
    assert_eq!(status, 409, "{answer}");
    let (_, listed) = list(&d, Some(ADMIN));
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1, "{listed}");
}

/// The token used to be checked after the JSON body was parsed, so a bad
/// body without a token got 400 instead of 401.
#[test]
fn token_creation_checks_the_token_before_the_body() {
    let (_dir, d) = boot(FAST_COMMITS);
    let resp = agent()
        .post(&d.url("/api/v1/tokens"))
        .header("Content-Type", "application/json")
        .send(&b"x"[..])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

/// Runs `tripline serve` on `data`, which must fail; returns its stderr.
fn serve_fails(data: &Path, admin_token: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(bench::daemon::SERVE_ON_PORT_0)
        .arg(data)
        .env("TRIPLINE_ADMIN_TOKEN", admin_token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if line.starts_with("tripline listening") {
                let _ = tx.send(());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.try_recv().is_ok() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon started on {}", data.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    err
}

#[test]
fn an_admin_token_in_the_environment_shorter_than_24_characters_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let err = serve_fails(&dir.path().join("data"), "test-admin-token");
    assert!(
        err.contains("TRIPLINE_ADMIN_TOKEN") && err.contains("at least 24"),
        "{err}"
    );
}

/// Every path under `dir` (and `dir` itself) whose mode gives the group or
/// others any access.
#[cfg(unix)]
fn open_to_others(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            found.push(format!("{:o} {}", mode & 0o7777, path.display()));
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&path).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    found
}

/// Regression (M9): the data dir, WAL and index were created with the
/// umask (0755/0644), so every local user could read the security logs.
#[cfg(unix)]
#[test]
fn the_data_directory_and_everything_tripline_writes_in_it_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // As an operator (or an older Tripline) may have left it.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut d = Daemon::start(&data, FAST_COMMITS);
    create_ok(&d, json!({"name": "shipper", "scopes": ["ingest"]}));
    let body = b"{\"message\":\"at rest\",\"user.name\":\"root\"}\n";
    assert_eq!(ingest(&d.base, "sshd", Some(ADMIN), body, None).unwrap().0, 200);
    wait_total(&d.base, "\"at rest\"", 1);
    for name in ["wal", "index", "tokens.json"] {
        assert!(data.join(name).exists(), "{name} is written by now");
    }
    let open = open_to_others(&data);
    assert!(
        open.is_empty(),
        "readable by others while running:\n{}",
        open.join("\n")
    );
    assert!(d.stop().success());
    let open = open_to_others(&data);
    assert!(
        open.is_empty(),
        "readable by others after shutdown:\n{}",
        open.join("\n")
    );
}

/// Making the data dir 0700 must not take /tmp (or any shared sticky
/// directory) away from the other users.
#[cfg(unix)]
#[test]
fn a_shared_sticky_directory_is_refused_as_the_data_dir_and_left_as_it_was() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let err = serve_fails(&shared, ADMIN);
    assert!(err.contains("shared directory"), "{err}");
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o1777);
}
