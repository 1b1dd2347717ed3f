//! Running a search over the partitions of a time range, newest first, with
//! a cursor that pages without skipping or repeating.
//!
//! Hits are ordered by (`@timestamp`, hash of `event.id`) descending. The
//! cursor is the key of the last hit returned; the next page holds the hits
//! strictly below it. The order does not depend on segments or doc ids, so
//! pages stay consistent while commits and merges happen between requests.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use index::doc::to_tantivy_date;
use index::schema::{ID_HASH, SOURCE};
use index::{Partition, Store};
use schemas::fields;
use serde::Serialize;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::schema::Value as _;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, TantivyDocument, Term};
use time::OffsetDateTime;

use crate::lang::Expr;
use crate::{compile, QueryError};

/// Most hits one page may ask for.
pub const MAX_LIMIT: usize = 10_000;

/// The sort key of a hit: event time in nanoseconds, then the id hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    ts: i64,
    hash: u64,
}

impl Cursor {
    /// The opaque text form handed to clients.
    pub fn encode(&self) -> String {
        format!("{}.{:016x}", self.ts, self.hash)
    }

    /// Reads a cursor from its text form.
    pub fn decode(s: &str) -> Result<Cursor, QueryError> {
        let bad = || QueryError::BadCursor(s.chars().take(64).collect());
        let (ts, hash) = s.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            ts: ts.parse().map_err(|_| bad())?,
            hash: u64::from_str_radix(hash, 16).map_err(|_| bad())?,
        })
    }
}

/// A search to run.
#[derive(Debug, Clone)]
pub struct Search {
    /// The parsed query.
    pub expr: Expr,
    /// Inclusive lower bound on `@timestamp`.
    pub start: Option<OffsetDateTime>,
    /// Exclusive upper bound on `@timestamp`.
    pub end: Option<OffsetDateTime>,
    /// Hits per page.
    pub limit: usize,
    /// Where the previous page stopped.
    pub cursor: Option<Cursor>,
    /// When to give up ([`QueryError::Timeout`]); checked before each
    /// partition and each segment.
    pub deadline: Option<Instant>,
}

/// A page of results.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResponse {
    /// Hits of the query in the time range (all pages).
    pub total: u64,
    /// This page's events, newest first.
    pub hits: Vec<serde_json::Value>,
    /// Time spent, in milliseconds.
    pub took_ms: u64,
    /// Pass back as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// Each hit's place in the order: a cursor made of one resumes after
    /// it (for callers that stop inside a page, such as hunts).
    #[serde(skip)]
    pub keys: Vec<Cursor>,
}

/// Runs `search` over `store`. Blocking: call it off the async threads.
pub fn run(store: &Store, search: &Search) -> Result<SearchResponse, QueryError> {
    let began = Instant::now();
    let limit = search.limit.clamp(1, MAX_LIMIT);
    let mut total = 0u64;
    let mut below = 0u64;
    let mut top: Vec<(Cursor, usize, DocAddress)> = Vec::new();
    // Compile once against the current schema so that a bad query is an
    // error even when no partition is in range.
    compile::compile(&search.expr, store.schema())?;
    // One snapshot: every partition as of the same commit round.
    let (partitions, snapshot): (Vec<Arc<Partition>>, Vec<tantivy::Searcher>) =
        store.snapshot(search.start, search.end).into_iter().unzip();
    let mut searchers = Vec::with_capacity(partitions.len());
    let mut queries: Vec<Box<dyn Query>> = Vec::with_capacity(partitions.len());
    let timeout = || QueryError::Timeout {
        seconds: search
            .deadline
            .map_or(0, |d| d.saturating_duration_since(began).as_secs()),
    };
    for (pi, partition) in partitions.iter().enumerate() {
        if search.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(timeout());
        }
        let schema = &partition.schema;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, compile::compile(&search.expr, schema)?)];
        if search.start.is_some() || search.end.is_some() {
            let bound = |t: Option<OffsetDateTime>, inclusive: bool| match t {
                Some(t) => {
                    let term = Term::from_field_date(schema.timestamp, to_tantivy_date(t));
                    if inclusive {
                        Bound::Included(term)
                    } else {
                        Bound::Excluded(term)
                    }
                }
                None => Bound::Unbounded,
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(bound(search.start, true), bound(search.end, false))),
            ));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = snapshot[pi].clone();
        let fruit = searcher
            .search(
                &query,
                &TopByTime {
                    limit,
                    cursor: search.cursor,
                    deadline: search.deadline,
                },
            )
            .map_err(|e| {
                if search.deadline.is_some_and(|d| Instant::now() >= d) {
                    timeout()
                } else {
                    QueryError::Index(format!("partition {}: {e}", partition.day))
                }
            })?;
        total += fruit.total;
        below += fruit.below;
        top.extend(fruit.top.into_iter().map(|(k, a)| (k, pi, a)));
        top.sort_unstable_by_key(|t| Reverse(t.0));
        top.truncate(limit);
        searchers.push(searcher);
        queries.push(Box::new(query));
    }
    if below > limit as u64 {
        if let Some(&(last, _, _)) = top.last() {
            // Hits sharing the last key (two ids whose hashes collide, at the
            // same instant) all go on this page: the next page starts
            // strictly below the key and would skip them (L15).
            for (pi, query) in queries.iter().enumerate() {
                let at = Term::from_field_date(
                    partitions[pi].schema.timestamp,
                    tantivy::DateTime::from_timestamp_nanos(last.ts),
                );
                let same_instant = BooleanQuery::new(vec![
                    (Occur::Must, query.box_clone()),
                    (
                        Occur::Must,
                        Box::new(RangeQuery::new(Bound::Included(at.clone()), Bound::Included(at))),
                    ),
                ]);
                let ties = searchers[pi]
                    .search(&same_instant, &Ties { key: last })
                    .map_err(|e| QueryError::Index(format!("partition {}: {e}", partitions[pi].day)))?;
                for addr in ties {
                    if !top.iter().any(|(_, p, a)| *p == pi && *a == addr) {
                        top.push((last, pi, addr));
                    }
                }
            }
        }
    }
    let mut hits = Vec::with_capacity(top.len());
    for (_, pi, addr) in &top {
        let searcher = &searchers[*pi];
        let schema = &partitions[*pi].schema;
        let doc: TantivyDocument = searcher
            .doc(*addr)
            .map_err(|e| QueryError::Index(format!("partition {}: {e}", partitions[*pi].day)))?;
        let source = doc
            .get_first(schema.source)
            .and_then(|v| v.as_bytes())
            .unwrap_or_default();
        let event = serde_json::from_slice(source)
            .unwrap_or_else(|e| serde_json::json!({ "error.message": format!("stored {SOURCE} is unreadable: {e}") }));
        hits.push(event);
    }
    let next_cursor = if below > limit as u64 {
        top.last().map(|(k, _, _)| k.encode())
    } else {
        None
    };
    Ok(SearchResponse {
        total,
        hits,
        took_ms: began.elapsed().as_millis() as u64,
        next_cursor,
        keys: top.iter().map(|(k, _, _)| *k).collect(),
    })
}

/// The documents whose sort key is exactly `key`.
struct Ties {
    key: Cursor,
}

struct SegmentTies {
    segment: SegmentOrdinal,
    key: Cursor,
    ts: Column<tantivy::DateTime>,
    hash: Column<u64>,
    found: Vec<DocAddress>,
}

impl Collector for Ties {
    type Fruit = Vec<DocAddress>;
    type Child = SegmentTies;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<SegmentTies> {
        Ok(SegmentTies {
            segment,
            key: self.key,
            ts: reader.fast_fields().date(fields::TIMESTAMP)?,
            hash: reader.fast_fields().u64(ID_HASH)?,
            found: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<DocAddress>>) -> tantivy::Result<Vec<DocAddress>> {
        Ok(fruits.into_iter().flatten().collect())
    }
}

impl SegmentCollector for SegmentTies {
    type Fruit = Vec<DocAddress>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let key = Cursor {
            ts: self.ts.first(doc).map_or(i64::MIN, |d| d.into_timestamp_nanos()),
            hash: self.hash.first(doc).unwrap_or(0),
        };
        if key == self.key {
            self.found.push(DocAddress::new(self.segment, doc));
        }
    }

    fn harvest(self) -> Vec<DocAddress> {
        self.found
    }
}

/// Counts every hit and keeps the `limit` newest below the cursor.
struct TopByTime {
    limit: usize,
    cursor: Option<Cursor>,
    deadline: Option<Instant>,
}

struct Fruit {
    total: u64,
    below: u64,
    top: Vec<(Cursor, DocAddress)>,
}

struct SegmentTop {
    segment: SegmentOrdinal,
    limit: usize,
    cursor: Option<Cursor>,
    ts: Column<tantivy::DateTime>,
    hash: Column<u64>,
    total: u64,
    below: u64,
    heap: BinaryHeap<Reverse<(Cursor, DocId)>>,
}

impl Collector for TopByTime {
    type Fruit = Fruit;
    type Child = SegmentTop;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<SegmentTop> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(tantivy::TantivyError::SystemError("search deadline passed".into()));
        }
        Ok(SegmentTop {
            segment,
            limit: self.limit,
            cursor: self.cursor,
            ts: reader.fast_fields().date(fields::TIMESTAMP)?,
            hash: reader.fast_fields().u64(ID_HASH)?,
            total: 0,
            below: 0,
            heap: BinaryHeap::with_capacity(self.limit + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Fruit>) -> tantivy::Result<Fruit> {
        let mut out = Fruit {
            total: 0,
            below: 0,
            top: Vec::new(),
        };
        for f in fruits {
            out.total += f.total;
            out.below += f.below;
            out.top.extend(f.top);
        }
        out.top.sort_unstable_by_key(|t| Reverse(t.0));
        out.top.truncate(self.limit);
        Ok(out)
    }
}

impl SegmentCollector for SegmentTop {
    type Fruit = Fruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.total += 1;
        let key = Cursor {
            ts: self.ts.first(doc).map_or(i64::MIN, |d| d.into_timestamp_nanos()),
            hash: self.hash.first(doc).unwrap_or(0),
        };
        if self.cursor.is_some_and(|c| key >= c) {
            return;
        }
        self.below += 1;
        if self.heap.len() < self.limit {
            self.heap.push(Reverse((key, doc)));
        } else if self.heap.peek().is_some_and(|Reverse(min)| (key, doc) > *min) {
            self.heap.pop();
            self.heap.push(Reverse((key, doc)));
        }
    }

    fn harvest(self) -> Fruit {
        let segment = self.segment;
        Fruit {
            total: self.total,
            below: self.below,
            top: self
                .heap
                .into_iter()
                .map(|Reverse((k, d))| (k, DocAddress::new(segment, d)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use index::EventSchema;
    use tantivy::TantivyDocument;

    /// L15: two hits with the same time and colliding id hashes have the
    /// same key; a page boundary between them skipped one for good.
    #[test]
    fn hits_sharing_a_key_are_not_skipped_at_a_page_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), EventSchema::new(schemas::Catalog::builtin())).unwrap();
        let at = time::macros::datetime!(2026-11-04 10:00 UTC);
        let partition = store.get_or_create(at.date()).unwrap();
        let schema = partition.schema.clone();
        let mut writer = partition
            .index
            .writer_with_num_threads::<TantivyDocument>(1, 15_000_000)
            .unwrap();
        for n in 0..3 {
            let mut doc = TantivyDocument::new();
            doc.add_date(schema.timestamp, to_tantivy_date(at));
            // The same hash for all three: a collision, as crafted ids give.
            doc.add_u64(schema.id_hash, 42);
            doc.add_bytes(schema.source, format!("{{\"n\":{n}}}").as_bytes());
            writer.add_document(doc).unwrap();
        }
        writer.commit().unwrap();
        partition.reload().unwrap();
        let mut seen = Vec::new();
        let mut cursor = None;
        for _ in 0..4 {
            let page = run(
                &store,
                &Search {
                    expr: crate::lang::parse("*").unwrap(),
                    start: None,
                    end: None,
                    limit: 1,
                    cursor,
                    deadline: None,
                },
            )
            .unwrap();
            seen.extend(page.hits.iter().map(|h| h["n"].as_u64().unwrap()));
            match page.next_cursor {
                Some(c) => cursor = Some(Cursor::decode(&c).unwrap()),
                None => break,
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2], "a hit was skipped or repeated");
    }
}
