//! Sigma rule files, `detect::rule::parse_file`: any UTF-8 text (YAML,
//! `---`-separated documents) gives one result per document, compiled or
//! refused, without a panic, a hang or unbounded memory (`-timeout`,
//! `-rss_limit_mb` in the campaign); inputs that are not UTF-8 are skipped.
//!
//! Asserts: every error is `Yaml` or `Refused` and names the file; a YAML
//! error ends the list; at most 10,000 documents and the error past them.
//! The accessors of a compiled rule run.
#![no_main]

use detect::rule::{parse_file, Document};
use detect::DetectError;
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "fuzz.yml";
const MAX_DOCUMENTS: usize = 10_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let docs = parse_file(text, ORIGIN);
    assert!(docs.len() <= MAX_DOCUMENTS + 1, "{} results", docs.len());
    let last = docs.len().saturating_sub(1);
    for (i, d) in docs.iter().enumerate() {
        match d {
            Ok(Document::Rule(rule)) => {
                let _ = (
                    rule.logsource_terms(),
                    rule.filter_ids(),
                    rule.needs_one_of(),
                    rule.fields(),
                    rule.need(),
                );
            }
            Ok(Document::Correlation(c)) => assert!(!c.timespan.is_zero(), "a zero correlation timespan"),
            Ok(Document::Filter(_)) => {}
            Err(e @ DetectError::Yaml { file, .. }) => {
                assert_eq!(file, ORIGIN);
                assert_eq!(i, last, "documents after a YAML error: {e}");
                let _ = e.to_string();
            }
            Err(e @ DetectError::Refused { file, .. }) => {
                assert_eq!(file, ORIGIN);
                let _ = e.to_string();
            }
            Err(e) => panic!("not a YAML error nor a refusal: {e}"),
        }
    }
});
