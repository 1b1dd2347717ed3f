//! Idempotency across partitions: the day of the last copy of each
//! `(event.dataset, event.id)` a sender chose, for the dedup window.
//!
//! Inside one partition a resent event replaces its earlier copy
//! (`delete_term` on `_dedup_key`, then add). But an event sent again with
//! another time, or without one (so its time is the ingest time) after
//! midnight, lands in another day's partition. The indexer keeps, for the
//! window (24 h by default), the day each key was last written to, and
//! deletes the earlier copy there too.
//!
//! Keys are kept as 64-bit hashes in one map per hour of ingest time, so
//! the window slides by dropping whole hours. A hash collision costs only a
//! delete of an exact key that is not there: deletes use the whole key. At
//! start the maps are rebuilt from the partitions' `_dedup_hash` and
//! `event.ingested` columns.

use std::collections::{HashMap, VecDeque};

use time::{Date, OffsetDateTime};

use crate::partition::Store;
use crate::schema::{id_hash, DEDUP_HASH};

/// Keys of the window, by hour of ingest.
#[derive(Debug)]
pub struct DedupWindow {
    hours: i64,
    /// `(hour since the epoch, key hash -> day)`, oldest first.
    buckets: VecDeque<(i64, HashMap<u64, Date>)>,
}

fn hour_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(3600)
}

impl DedupWindow {
    /// A window of `hours` (0: no cross-partition deduplication).
    pub fn new(hours: u32) -> DedupWindow {
        DedupWindow {
            hours: i64::from(hours),
            buckets: VecDeque::new(),
        }
    }

    /// The hash a key is kept under.
    pub fn hash(key: &str) -> u64 {
        id_hash(key)
    }

    /// Keys kept.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|(_, m)| m.len()).sum()
    }

    /// True when no key is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The day the key was last written to, if within the window.
    pub fn get(&self, hash: u64) -> Option<Date> {
        self.buckets.iter().rev().find_map(|(_, m)| m.get(&hash).copied())
    }

    /// Records that the key was written to `day` at `ingested`.
    pub fn insert(&mut self, hash: u64, day: Date, ingested: OffsetDateTime) {
        if self.hours == 0 {
            return;
        }
        let hour = hour_of(ingested);
        match self.buckets.back_mut() {
            Some((h, m)) if *h == hour => {
                m.insert(hash, day);
            }
            Some((h, _)) if *h > hour => {
                // An older ingest time (a rebuild or a replay): its own hour.
                let at = self
                    .buckets
                    .iter()
                    .position(|(h, _)| *h >= hour)
                    .unwrap_or(self.buckets.len());
                match self.buckets.get_mut(at) {
                    Some((h, m)) if *h == hour => {
                        m.insert(hash, day);
                    }
                    _ => self.buckets.insert(at, (hour, HashMap::from([(hash, day)]))),
                }
            }
            _ => self.buckets.push_back((hour, HashMap::from([(hash, day)]))),
        }
    }

    /// Drops the hours that left the window.
    pub fn expire(&mut self, now: OffsetDateTime) {
        let oldest = hour_of(now) - self.hours;
        while self.buckets.front().is_some_and(|(h, _)| *h < oldest) {
            self.buckets.pop_front();
        }
    }

    /// Rebuilds the window from what the partitions hold: every document
    /// with a `_dedup_hash` ingested within the window.
    pub fn rebuild(&mut self, store: &Store, now: OffsetDateTime) {
        if self.hours == 0 {
            return;
        }
        let cutoff = (hour_of(now) - self.hours) * 3600;
        for p in store.all() {
            let searcher = p.searcher();
            for segment in searcher.segment_readers() {
                let fast = segment.fast_fields();
                let (Ok(hashes), Ok(ingested)) = (fast.u64(DEDUP_HASH), fast.date(schemas::fields::INGESTED)) else {
                    continue;
                };
                for doc in segment.doc_ids_alive() {
                    let (Some(hash), Some(at)) = (hashes.first(doc), ingested.first(doc)) else {
                        continue;
                    };
                    let secs = at.into_timestamp_secs();
                    if secs < cutoff {
                        continue;
                    }
                    if let Ok(t) = OffsetDateTime::from_unix_timestamp(secs) {
                        self.insert(hash, p.day, t);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_are_found_within_the_window_and_forgotten_after() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let day = |d: i64| (t0 + time::Duration::days(d)).date();
        let mut w = DedupWindow::new(24);
        w.insert(1, day(0), t0);
        w.insert(2, day(0), t0 + time::Duration::hours(3));
        w.insert(1, day(1), t0 + time::Duration::hours(5));
        assert_eq!(w.get(1), Some(day(1)), "the latest write wins");
        assert_eq!(w.get(2), Some(day(0)));
        w.insert(3, day(-1), t0 - time::Duration::hours(2));
        assert_eq!(w.get(3), Some(day(-1)), "an older ingest time goes in its own hour");
        w.expire(t0 + time::Duration::hours(27));
        assert_eq!(w.get(3), None);
        assert_eq!(w.get(2), Some(day(0)));
        w.expire(t0 + time::Duration::hours(30));
        assert_eq!(w.get(2), None);
        assert_eq!(w.get(1), None);
        assert!(w.is_empty());
        let mut off = DedupWindow::new(0);
        off.insert(1, day(0), t0);
        assert_eq!(off.get(1), None);
    }
}
