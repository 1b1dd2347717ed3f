//! `tripline query`: search a running daemon from the terminal.
//!
//! Event content is attacker-controlled: everything printed to the terminal
//! has its control characters escaped ([`escape`]), so a log line cannot
//! move the cursor, erase evidence, retitle the window or write the
//! clipboard.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// How to reach the daemon.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The daemon's base URL.
    #[arg(long, env = "TRIPLINE_SERVER", default_value = "http://127.0.0.1:7490")]
    server: String,
    /// API token with scope `search`. Every local user can read it in the
    /// process list: prefer --token-file, or TRIPLINE_TOKEN in the environment.
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// File holding the API token. Without --token or --token-file: the
    /// TRIPLINE_TOKEN environment variable, else ./tripline-data/admin.token.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
}

/// Arguments of `tripline query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Start of the time range: RFC 3339 or relative (-15m, -24h).
    #[arg(long, allow_hyphen_values = true)]
    start: Option<String>,
    /// End of the time range.
    #[arg(long, allow_hyphen_values = true)]
    end: Option<String>,
    /// Hits to print.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// The query, e.g. 'source.ip:10.0.0.0/8 AND http.response.status_code:>=500'.
    query: String,
}

/// The token: `--token`, `--token-file`, `TRIPLINE_TOKEN`, or the admin
/// token file of `./tripline-data`, in this order. (`TRIPLINE_TOKEN` is read
/// here rather than by clap, so that it does not conflict with `--token-file`.)
fn token(args: &ServerArgs) -> anyhow::Result<String> {
    if let Some(t) = &args.token {
        return Ok(t.clone());
    }
    let text = match &args.token_file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read the token file {}", path.display()))?
        }
        None if std::env::var_os("TRIPLINE_TOKEN").is_some_and(|t| !t.is_empty()) => {
            std::env::var("TRIPLINE_TOKEN").context("TRIPLINE_TOKEN is not UTF-8")?
        }
        None => {
            let path = crate::auth::admin_token_path(&PathBuf::from("./tripline-data"));
            std::fs::read_to_string(&path)
                .with_context(|| format!("no --token or --token-file given and cannot read {}", path.display()))?
        }
    };
    let token = text.trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("the token must be one word on one line");
    }
    Ok(token.to_string())
}

/// Runs the query and prints the hits.
pub fn query(args: QueryArgs) -> anyhow::Result<()> {
    let token = token(&args.server)?;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/api/v1/search", args.server.server.trim_end_matches('/'));
    let body = json!({ "query": args.query, "start": args.start, "end": args.end, "limit": args.limit });
    let mut response = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(&body)
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let answer: Value = response.body_mut().read_json().context("reading the response")?;
    if !status.is_success() {
        let msg = escape(answer.get("error").and_then(Value::as_str).unwrap_or("request failed"));
        if let Some(pos) = answer.get("position").and_then(Value::as_u64) {
            bail!("{status}: {msg}\n{}", caret(&args.query, pos));
        }
        bail!("{status}: {msg}");
    }
    let hits = answer
        .get("hits")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if args.json {
        for hit in &hits {
            println!("{}", json_line(hit));
        }
        return Ok(());
    }
    println!("{:<27}  {:<16}  EVENT", "@TIMESTAMP", "DATASET");
    for hit in &hits {
        println!("{}", row(hit));
    }
    let total = answer.get("total").and_then(Value::as_u64).unwrap_or(0);
    let took = answer.get("took_ms").and_then(Value::as_u64).unwrap_or(0);
    eprintln!("{} of {total} hits in {took} ms", hits.len());
    Ok(())
}

/// Arguments of `tripline alerts`.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Alerts whose first event is at or after this: RFC 3339 or relative (-24h).
    #[arg(long, allow_hyphen_values = true)]
    start: Option<String>,
    /// Alerts whose first event is before this.
    #[arg(long, allow_hyphen_values = true)]
    end: Option<String>,
    /// Only this rule (id or title).
    #[arg(long)]
    rule: Option<String>,
    /// Only this status: open, acknowledged, closed.
    #[arg(long)]
    status: Option<String>,
    /// Only this level: informational, low, medium, high, critical.
    #[arg(long)]
    level: Option<String>,
    /// Alerts to print.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// The JSON body of a successful answer; else the daemon's reason, escaped.
fn success(mut response: ureq::http::Response<ureq::Body>) -> anyhow::Result<Value> {
    let status = response.status();
    let answer: Value = response.body_mut().read_json().context("reading the response")?;
    if !status.is_success() {
        let msg = escape(answer.get("error").and_then(Value::as_str).unwrap_or("request failed"));
        bail!("{status}: {msg}");
    }
    Ok(answer)
}

/// Lists alerts, newest first, as a table.
pub fn alerts(args: AlertsArgs) -> anyhow::Result<()> {
    let token = token(&args.server)?;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/api/v1/alerts", args.server.server.trim_end_matches('/'));
    let mut request = agent
        .get(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .query("limit", args.limit.to_string());
    for (k, v) in [
        ("start", &args.start),
        ("end", &args.end),
        ("rule", &args.rule),
        ("status", &args.status),
        ("level", &args.level),
    ] {
        if let Some(v) = v {
            request = request.query(k, v);
        }
    }
    let response = request.call().with_context(|| format!("cannot reach {url}"))?;
    let answer = success(response)?;
    let alerts = answer
        .get("alerts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if args.json {
        for a in &alerts {
            println!("{}", json_line(a));
        }
        return Ok(());
    }
    println!(
        "{:<20}  {:<13}  {:<12}  {:>6}  {:<36}  {:<40}  GROUP",
        "FIRST", "LEVEL", "STATUS", "COUNT", "ID", "RULE"
    );
    let text = |a: &Value, k: &str| escape(a.get(k).and_then(Value::as_str).unwrap_or(""));
    for a in &alerts {
        let first = text(a, "first_time");
        println!(
            "{:<20}  {:<13}  {:<12}  {:>6}  {:<36}  {:<40}  {}",
            first.get(..19).unwrap_or(&first),
            text(a, "level"),
            text(a, "status"),
            a.get("count").and_then(Value::as_u64).unwrap_or(0),
            text(a, "id"),
            escape_clipped(a.get("rule_title").and_then(Value::as_str).unwrap_or(""), 40),
            escape_clipped(a.get("group_key").and_then(Value::as_str).unwrap_or(""), 60),
        );
    }
    let total = answer.get("total").and_then(Value::as_u64).unwrap_or(0);
    eprintln!("{} of {total} alerts", alerts.len());
    Ok(())
}

/// Characters a terminal would act on rather than print: C0, DEL, C1, and
/// the bidirectional controls that reorder what is shown.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Appends `c` to `out`, escaped (`\n`, `\r`, `\t`, `\u{1b}`) if unsafe.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        c => out.push(c),
    }
}

/// `s` with every control character escaped, safe to print to a terminal.
pub fn escape(s: &str) -> String {
    escape_clipped(s, usize::MAX)
}

/// [`escape`], cut to at most `max` characters of output (never inside an
/// escape).
fn escape_clipped(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut piece = String::new();
    let mut width = 0usize;
    for c in s.chars() {
        piece.clear();
        push_escaped(&mut piece, c);
        let n = piece.chars().count();
        if width.saturating_add(n) > max {
            break;
        }
        out.push_str(&piece);
        width += n;
    }
    out
}

/// A hit as one JSON line. serde_json escapes C0 but not DEL, C1 or the
/// bidirectional controls: those are written as `\uXXXX` too, which is the
/// same JSON.
fn json_line(hit: &Value) -> String {
    let mut out = String::new();
    for c in hit.to_string().chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The query, and a caret under byte `position` of it. The position comes
/// from the server: it is clamped to the query.
fn caret(query: &str, position: u64) -> String {
    let mut pos = usize::try_from(position).unwrap_or(usize::MAX).min(query.len());
    while !query.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = escape(query.get(..pos).unwrap_or(query)).chars().count();
    format!("  {}\n  {}^", escape(query), " ".repeat(before))
}

/// One table row: time, dataset, and the message or the other fields, all
/// escaped.
pub fn row(hit: &Value) -> String {
    let get = |k: &str| escape(hit.get(k).and_then(Value::as_str).unwrap_or("-"));
    let summary = match hit.get("message").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => {
            let mut parts = Vec::new();
            if let Some(map) = hit.as_object() {
                for (k, v) in map {
                    if k == "@timestamp" || k.starts_with("event.") {
                        continue;
                    }
                    let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                    parts.push(format!("{k}={v}"));
                }
            }
            parts.join(" ")
        }
    };
    let summary = escape_clipped(&summary, 160);
    format!("{:<27}  {:<16}  {summary}", get("@timestamp"), get("event.dataset"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every C0 and C1 control and DEL.
    fn controls() -> impl Iterator<Item = char> {
        (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32)
    }

    #[test]
    fn a_row_shows_the_message_or_the_fields() {
        let with_message = json!({"@timestamp": "2026-11-23T10:00:00Z", "event.dataset": "api", "message": "a\nb"});
        assert!(row(&with_message).ends_with("a\\nb"), "{}", row(&with_message));
        let fields = json!({"@timestamp": "t", "event.dataset": "ct", "event.id": "x", "user.name": "bob", "n": 1});
        assert!(row(&fields).ends_with("n=1 user.name=bob"), "{}", row(&fields));
    }

    /// Regression (M10): only CR and LF were removed from the message, and
    /// field names and values were printed raw.
    #[test]
    fn a_row_escapes_terminal_escapes_in_the_message() {
        let line = row(&json!({"message": "a\u{1b}[2Kb\u{1b}]52;c;ZXZpbA==\u{7}"}));
        assert!(!line.contains('\u{1b}') && !line.contains('\u{7}'), "{line:?}");
        assert!(line.ends_with("a\\u{1b}[2Kb\\u{1b}]52;c;ZXZpbA==\\u{7}"), "{line:?}");
    }

    #[test]
    fn a_row_escapes_every_c0_and_c1_control_and_del_in_names_and_values() {
        for c in controls() {
            for hit in [
                json!({ "message": format!("x{c}y") }),
                json!({ format!("user{c}.name"): "bob" }),
                json!({ "user.name": format!("b{c}ob") }),
                json!({ "tags": [format!("t{c}")] }),
                json!({ "@timestamp": format!("2026{c}"), "event.dataset": format!("d{c}"), "message": "m" }),
            ] {
                let line = row(&hit);
                assert!(
                    !line.chars().any(|ch| ch.is_control()),
                    "U+{:04X} in {line:?}",
                    u32::from(c)
                );
            }
        }
        assert!(row(&json!({"message": "\u{9b}2J"})).ends_with("\\u{9b}2J"));
        assert!(row(&json!({"message": "x\u{202e}y"})).ends_with("x\\u{202e}y"));
    }

    #[test]
    fn a_row_is_cut_at_160_characters_but_never_inside_an_escape() {
        let line = row(&json!({ "message": format!("{}\u{1b}", "a".repeat(155)) }));
        assert!(line.ends_with(&"a".repeat(155)), "{line:?}");
        let line = row(&json!({ "message": "\u{1b}".repeat(100) }));
        assert!(line.ends_with(&"\\u{1b}".repeat(26)), "{line:?}");
    }

    #[test]
    fn json_lines_escape_del_and_c1_and_stay_the_same_json() {
        let hit = json!({"message": "a\u{1b}b\u{7f}c\u{9b}d\u{202e}e"});
        let line = json_line(&hit);
        assert!(!line.chars().any(|c| c.is_control() || c == '\u{202e}'), "{line:?}");
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), hit);
    }

    /// Regression (L16): the caret was indented by the server's position,
    /// unbounded: a huge allocation from a malicious server.
    #[test]
    fn the_caret_is_clamped_to_the_query() {
        assert_eq!(caret("a AND (b", 8), "  a AND (b\n          ^");
        assert_eq!(caret("a AND (b", u64::MAX), "  a AND (b\n          ^");
        assert_eq!(caret("é:(", 1), "  é:(\n  ^", "a position inside a character");
        assert_eq!(caret("\u{1b}x", 1), "  \\u{1b}x\n        ^");
    }

    #[test]
    fn escape_keeps_printable_text_and_backslashes() {
        assert_eq!(escape("C:\\Users\\bob ünïcödé"), "C:\\Users\\bob ünïcödé");
        assert_eq!(escape("a\tb\r\n"), "a\\tb\\r\\n");
    }
}

/// `tripline rules ...`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Load every rule below DIR and print each one's state: loaded, or
    /// refused with the reason; then the totals.
    Check {
        /// Directory of Sigma rule files (`.yml`, `.yaml`), read recursively.
        dir: PathBuf,
        /// Exit with status 1 if any rule is refused.
        #[arg(long)]
        strict: bool,
    },
    /// Run the rules of RULE_FILE over the events of a file (one a line,
    /// any format ingest reads, parsed as ingest would with `auto`) and
    /// print each match.
    Test {
        /// A Sigma rule file (one or more documents).
        rule_file: PathBuf,
        /// The events: NDJSON, syslog, CEF, ... one a line.
        events: PathBuf,
    },
    /// Run the rule of RULE_FILE (one rule, or correlations and their
    /// rules) over a running daemon's indexed events, and print what it
    /// would have matched.
    Hunt(HuntArgs),
}

/// Arguments of `tripline rules hunt`.
#[derive(Debug, Args)]
pub struct HuntArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Start of the time range: RFC 3339 or relative (-30d).
    #[arg(long, allow_hyphen_values = true)]
    start: Option<String>,
    /// End of the time range.
    #[arg(long, allow_hyphen_values = true)]
    end: Option<String>,
    /// Matches to print at most.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// A Sigma rule file.
    rule_file: PathBuf,
}

/// `tripline rules hunt`: pages through the hunt until `limit` matches.
fn rules_hunt(args: HuntArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&args.rule_file).with_context(|| format!("reading {}", args.rule_file.display()))?;
    let token = token(&args.server)?;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/api/v1/hunt", args.server.server.trim_end_matches('/'));
    let (mut printed, mut scanned) = (0usize, 0u64);
    let mut cursor: Option<String> = None;
    let mut header = false;
    loop {
        let body = json!({"rule": text, "start": args.start, "end": args.end, "limit": args.limit - printed, "cursor": cursor});
        let response = agent
            .post(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(&body)
            .with_context(|| format!("cannot reach {url}"))?;
        let answer = success(response)?;
        scanned += answer.get("scanned").and_then(Value::as_u64).unwrap_or(0);
        let list = |k: &str| answer.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
        for firing in list("correlations") {
            if args.json {
                println!("{}", json_line(&firing));
            } else {
                let s = |k: &str| escape(firing.get(k).and_then(Value::as_str).unwrap_or(""));
                let n = firing.get("event_ids").and_then(Value::as_array).map_or(0, Vec::len);
                println!(
                    "{}  {}  {n} events  {}",
                    s("first_time"),
                    s("last_time"),
                    s("group_key")
                );
            }
            printed += 1;
        }
        for hit in list("hits") {
            if args.json {
                println!("{}", json_line(&hit));
            } else {
                if !header {
                    println!("{:<27}  {:<16}  EVENT", "@TIMESTAMP", "DATASET");
                    header = true;
                }
                println!("{}", row(&hit));
            }
            printed += 1;
        }
        cursor = answer.get("next_cursor").and_then(Value::as_str).map(str::to_string);
        if cursor.is_none() || printed >= args.limit {
            let q = answer.get("candidates_query").and_then(Value::as_str).unwrap_or("");
            eprintln!("{printed} matches, {scanned} candidates examined ({})", escape(q));
            return Ok(());
        }
    }
}

/// Runs a `tripline rules` command.
pub fn rules(cmd: RulesCommand) -> anyhow::Result<()> {
    let (dir, strict) = match cmd {
        RulesCommand::Check { dir, strict } => (dir, strict),
        RulesCommand::Test { rule_file, events } => return rules_test(&rule_file, &events),
        RulesCommand::Hunt(args) => return rules_hunt(args),
    };
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let (set, refused) = detect::rule::RuleSet::load_dir(&dir, &detect::rule::Placeholders::new());
    for r in set.rules() {
        let scope = if r.mapped {
            ""
        } else {
            "  (logsource not mapped: every event)"
        };
        println!("loaded   {}  {}{}", r.id, escape(&r.title), scope);
    }
    for c in set.correlations() {
        println!(
            "loaded   {}  {}  (correlation {:?})",
            escape(&c.id),
            escape(&c.title),
            c.kind
        );
    }
    let mut reasons: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for e in &refused {
        println!("refused  {}", escape(&e.to_string()));
        if let detect::DetectError::Refused { reason, .. } = e {
            let kind = reason.rsplit(": ").next().unwrap_or(reason);
            *reasons.entry(kind.to_string()).or_default() += 1;
        }
    }
    let unmapped = set.rules().iter().filter(|r| !r.mapped).count();
    println!(
        "{} loaded ({} with a logsource not mapped, {} correlations), {} refused",
        set.rules().len() + set.correlations().len(),
        unmapped,
        set.correlations().len(),
        refused.len()
    );
    for (reason, n) in reasons {
        println!("{n:>6}  {}", escape(&reason));
    }
    if strict && !refused.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

/// `tripline rules test RULE_FILE EVENTS`.
fn rules_test(rule_file: &std::path::Path, events: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(rule_file).with_context(|| format!("reading {}", rule_file.display()))?;
    let origin = rule_file.display().to_string();
    let (mut rules, mut correlations, mut filters) = (Vec::new(), Vec::new(), Vec::new());
    for doc in detect::rule::parse_file(&text, &origin) {
        match doc {
            Ok(detect::rule::Document::Rule(r)) => rules.push(*r),
            Ok(detect::rule::Document::Correlation(c)) => correlations.push((origin.clone(), *c)),
            Ok(detect::rule::Document::Filter(f)) => filters.push(*f),
            Err(e) => bail!("{e}"),
        }
    }
    let (set, refused) = detect::rule::RuleSet::build(rules, correlations, filters);
    if let Some(e) = refused.first() {
        bail!("{e}");
    }
    let mut windows = detect::correlation::Windows::default();
    let mut dropped = detect::correlation::Dropped::default();
    let lines = std::fs::read(events).with_context(|| format!("reading {}", events.display()))?;
    let limits = ingest::parse::Limits::default();
    let ctx = ingest::format::LineContext {
        limits: &limits,
        now: time::OffsetDateTime::now_utc(),
    };
    let (mut seen, mut matched) = (0usize, 0usize);
    for (n, line) in lines.split(|&b| b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        seen += 1;
        let parsed = ingest::format::parse_line(ingest::format::Format::Auto, n + 1, line, &ctx);
        let event = &parsed.event;
        let at = event
            .get("@timestamp")
            .and_then(schemas::time::parse_value)
            .unwrap_or(ctx.now);
        let caps = detect::correlation::Caps::default();
        for hit in set.evaluate(event, at, &mut windows, caps, &mut dropped).hits {
            matched += 1;
            match hit {
                detect::rule::Hit::Rule(_, r) => {
                    let level = r.level.as_deref().unwrap_or("-");
                    println!("line {}  {}  {}  {}", n + 1, r.id, level, escape(&r.title));
                }
                detect::rule::Hit::Correlation(_, c, fired) => {
                    let level = c.level.as_deref().unwrap_or("-");
                    println!(
                        "line {}  {}  {}  {}  (correlation: {} events, {})",
                        n + 1,
                        escape(&c.id),
                        level,
                        escape(&c.title),
                        fired.event_ids.len(),
                        escape(&fired.group_key)
                    );
                }
            }
        }
    }
    println!(
        "{matched} matches in {seen} events, {} rules, {} correlations",
        set.rules().len(),
        set.correlations().len()
    );
    Ok(())
}
