//! Sigma conditions, `detect::condition::parse`: any text gives a condition
//! or an error inside it, without a panic (stack overflow included), a
//! hang or unbounded memory; inputs that are not UTF-8 are skipped.
//!
//! Asserts: an error's position is a char boundary of the input and it
//! carries the input; a parsed condition has no empty identifier, no
//! keyword as identifier and no empty `of` pattern. Every pattern is
//! matched (`glob_match`) against every identifier of the condition.
#![no_main]

use detect::condition::{glob_match, parse, Cond, Target};
use libfuzzer_sys::fuzz_target;

const KEYWORDS: [&str; 6] = ["and", "or", "not", "of", "them", "all"];

fn walk<'a>(c: &'a Cond, idents: &mut Vec<&'a str>, patterns: &mut Vec<&'a str>) {
    match c {
        Cond::Or(v) | Cond::And(v) => {
            assert!(v.len() >= 2, "a one-item list: {c:?}");
            v.iter().for_each(|c| walk(c, idents, patterns));
        }
        Cond::Not(c) => walk(c, idents, patterns),
        Cond::Ident(s) => {
            assert!(!s.is_empty() && !KEYWORDS.contains(&s.as_str()), "identifier {s:?}");
            idents.push(s);
        }
        Cond::Of {
            target: Target::Pattern(p),
            ..
        } => {
            assert!(!p.is_empty(), "an empty pattern");
            patterns.push(p);
        }
        Cond::Of {
            target: Target::Them, ..
        } => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Ok(c) => {
            let (mut idents, mut patterns) = (Vec::new(), Vec::new());
            walk(&c, &mut idents, &mut patterns);
            for p in &patterns {
                for i in &idents {
                    let _ = glob_match(p, i);
                }
                let _ = glob_match(p, p);
            }
        }
        Err(e) => {
            assert!(
                e.position <= text.len() && text.is_char_boundary(e.position),
                "position {} in input of {} bytes",
                e.position,
                text.len()
            );
            assert_eq!(e.condition, text);
            let _ = e.to_string();
        }
    }
});
