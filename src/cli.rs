//! `tripline query`: search a running daemon from the terminal.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

/// Arguments of `tripline query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The daemon's base URL.
    #[arg(long, env = "TRIPLINE_SERVER", default_value = "http://127.0.0.1:7490")]
    server: String,
    /// API token with scope `search` (default: ./tripline-data/admin.token).
    #[arg(long, env = "TRIPLINE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Start of the time range: RFC 3339 or relative (-15m, -24h).
    #[arg(long)]
    start: Option<String>,
    /// End of the time range.
    #[arg(long)]
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

fn token(args: &QueryArgs) -> anyhow::Result<String> {
    if let Some(t) = &args.token {
        return Ok(t.clone());
    }
    let path = crate::daemon::admin_token_path(&PathBuf::from("./tripline-data"));
    let t = std::fs::read_to_string(&path)
        .with_context(|| format!("no --token given and cannot read {}", path.display()))?;
    Ok(t.trim().to_string())
}

/// Runs the query and prints the hits.
pub fn query(args: QueryArgs) -> anyhow::Result<()> {
    let token = token(&args)?;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/api/v1/search", args.server.trim_end_matches('/'));
    let body = json!({ "query": args.query, "start": args.start, "end": args.end, "limit": args.limit });
    let mut response = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(&body)
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let answer: Value = response.body_mut().read_json().context("reading the response")?;
    if !status.is_success() {
        let msg = answer.get("error").and_then(Value::as_str).unwrap_or("request failed");
        if let Some(pos) = answer.get("position").and_then(Value::as_u64) {
            bail!("{status}: {msg}\n  {}\n  {}^", args.query, " ".repeat(pos as usize));
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
            println!("{hit}");
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

/// One table row: time, dataset, and the message or the other fields.
pub fn row(hit: &Value) -> String {
    let get = |k: &str| hit.get(k).and_then(Value::as_str).unwrap_or("-");
    let summary = match hit.get("message").and_then(Value::as_str) {
        Some(m) => m.replace(['\n', '\r'], " "),
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
    let summary: String = summary.chars().take(160).collect();
    format!("{:<27}  {:<16}  {summary}", get("@timestamp"), get("event.dataset"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_shows_the_message_or_the_fields() {
        let with_message = json!({"@timestamp": "2026-11-23T10:00:00Z", "event.dataset": "api", "message": "a\nb"});
        assert!(row(&with_message).ends_with("a b"));
        let fields = json!({"@timestamp": "t", "event.dataset": "ct", "event.id": "x", "user.name": "bob", "n": 1});
        assert!(row(&fields).ends_with("n=1 user.name=bob"), "{}", row(&fields));
    }
}
