//! The outbox on disk: one redb database (`outbox.redb`) holding the
//! webhooks, every delivery with its attempts, the queue of deliveries
//! waiting for their next attempt, and the outbox's position in the WAL.
//! Every write is one transaction, fsynced before it returns, so a
//! delivery and the WAL position that produced it become durable together.
//!
//! Tables, all keyed so the work is a range scan:
//! - `deliveries`: id -> [`Delivery`] (JSON);
//! - `due`: (webhook, due ms, id): pending deliveries by next attempt;
//! - `by_webhook`: (webhook, created ms, id): the delivery log;
//! - `queued`: (created ms, id): pending deliveries by age (depth, oldest);
//! - `done`: (finished ms, id): finished deliveries, pruned after the
//!   retention;
//! - `webhooks`: id -> [`Stored`] (JSON); `meta`: `position`.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::webhook::{EventType, Stored};
use crate::DeliverError;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const WEBHOOKS: TableDefinition<&str, &[u8]> = TableDefinition::new("webhooks");
const DELIVERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("deliveries");
const DUE: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("due");
const BY_WEBHOOK: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("by_webhook");
const QUEUED: TableDefinition<(u64, &str), ()> = TableDefinition::new("queued");
const DONE: TableDefinition<(u64, &str), ()> = TableDefinition::new("done");

/// Attempts kept on a delivery (the count goes on).
pub const MAX_ATTEMPTS_KEPT: usize = 20;

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answered.
    Delivered,
    /// Given up: out of retries, a 4xx too often, a 410, or refused by the
    /// egress guard.
    Failed,
}

impl State {
    /// Reads `pending`, `delivered` or `failed`.
    pub fn parse(s: &str) -> Option<State> {
        match s {
            "pending" => Some(State::Pending),
            "delivered" => Some(State::Delivered),
            "failed" => Some(State::Failed),
            _ => None,
        }
    }
}

/// One try.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    pub at_ms: i64,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// When the next try is due, if there is one.
    pub next_retry_ms: Option<i64>,
}

/// One message to one webhook, with every try.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    /// `msg_` and 32 hex digits: the `webhook-id` header, the same on every
    /// try, derived from webhook, alert and change so a replay of the WAL
    /// makes the same id.
    pub id: String,
    pub webhook_id: String,
    pub event_type: EventType,
    pub alert_id: Option<String>,
    /// When it was queued (unix ms).
    pub created_ms: i64,
    /// The body, rendered once: every try sends the same bytes.
    pub body: String,
    pub state: State,
    /// The last [`MAX_ATTEMPTS_KEPT`] tries.
    pub attempts: Vec<Attempt>,
    pub attempt_count: u32,
    /// Tries answered with a 4xx (other than 410 and 429).
    pub client_errors: u32,
    pub next_attempt_ms: Option<i64>,
    pub done_ms: Option<i64>,
}

impl Delivery {
    /// A new delivery, due at once.
    pub fn new(
        id: String,
        webhook_id: &str,
        event_type: EventType,
        alert_id: Option<String>,
        body: Vec<u8>,
        now_ms: i64,
    ) -> Delivery {
        Delivery {
            id,
            webhook_id: webhook_id.to_string(),
            event_type,
            alert_id,
            created_ms: now_ms,
            body: String::from_utf8(body).expect("bodies are serde_json output, UTF-8"),
            state: State::Pending,
            attempts: Vec::new(),
            attempt_count: 0,
            client_errors: 0,
            next_attempt_ms: Some(now_ms),
            done_ms: None,
        }
    }

    /// Adds a try, keeping the last [`MAX_ATTEMPTS_KEPT`].
    pub fn push_attempt(&mut self, a: Attempt) {
        self.attempt_count = self.attempt_count.saturating_add(1);
        self.attempts.push(a);
        if self.attempts.len() > MAX_ATTEMPTS_KEPT {
            self.attempts.remove(0);
        }
    }
}

fn ms(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

fn db_err(e: impl Into<redb::Error>) -> DeliverError {
    DeliverError::Store(e.into().to_string())
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("outbox records serialize")
}

fn parse<T: for<'a> Deserialize<'a>>(what: &str, bytes: &[u8]) -> Result<T, DeliverError> {
    serde_json::from_slice(bytes).map_err(|e| DeliverError::Store(format!("{what} does not parse: {e}")))
}

/// The outbox database.
pub struct Store {
    db: Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// How deep the queue is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub pending: u64,
    /// Creation time of the oldest pending delivery (unix ms).
    pub oldest_ms: Option<i64>,
}

impl Store {
    /// Opens (or creates) `path` with every table.
    pub fn open(path: &Path) -> Result<Store, DeliverError> {
        let db = Database::create(path).map_err(db_err)?;
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(META).map_err(db_err)?;
            tx.open_table(WEBHOOKS).map_err(db_err)?;
            tx.open_table(DELIVERIES).map_err(db_err)?;
            tx.open_table(DUE).map_err(db_err)?;
            tx.open_table(BY_WEBHOOK).map_err(db_err)?;
            tx.open_table(QUEUED).map_err(db_err)?;
            tx.open_table(DONE).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(Store { db })
    }

    /// The WAL position after the last record turned into deliveries;
    /// `None` for a new outbox.
    pub fn position(&self) -> Result<Option<u64>, DeliverError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(META).map_err(db_err)?;
        Ok(t.get("position").map_err(db_err)?.map(|v| v.value()))
    }

    /// Queues `deliveries` (those whose id is new: a replayed record makes
    /// the same ids) and moves the position, in one durable transaction.
    /// Returns the deliveries queued.
    pub fn enqueue(&self, deliveries: Vec<Delivery>, position: u64) -> Result<Vec<Delivery>, DeliverError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let mut queued = Vec::new();
        {
            let mut all = tx.open_table(DELIVERIES).map_err(db_err)?;
            let mut due = tx.open_table(DUE).map_err(db_err)?;
            let mut log = tx.open_table(BY_WEBHOOK).map_err(db_err)?;
            let mut age = tx.open_table(QUEUED).map_err(db_err)?;
            for d in deliveries {
                if all.get(d.id.as_str()).map_err(db_err)?.is_some() {
                    continue;
                }
                let at = ms(d.created_ms);
                all.insert(d.id.as_str(), json(&d).as_slice()).map_err(db_err)?;
                due.insert((d.webhook_id.as_str(), at, d.id.as_str()), ())
                    .map_err(db_err)?;
                log.insert((d.webhook_id.as_str(), at, d.id.as_str()), ())
                    .map_err(db_err)?;
                age.insert((at, d.id.as_str()), ()).map_err(db_err)?;
                queued.push(d);
            }
            tx.open_table(META)
                .map_err(db_err)?
                .insert("position", position)
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(queued)
    }

    /// Records a finished delivery that never queued (a test send).
    pub fn record_finished(&self, d: &Delivery) -> Result<(), DeliverError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            tx.open_table(DELIVERIES)
                .map_err(db_err)?
                .insert(d.id.as_str(), json(d).as_slice())
                .map_err(db_err)?;
            tx.open_table(BY_WEBHOOK)
                .map_err(db_err)?
                .insert((d.webhook_id.as_str(), ms(d.created_ms), d.id.as_str()), ())
                .map_err(db_err)?;
            tx.open_table(DONE)
                .map_err(db_err)?
                .insert((ms(d.done_ms.unwrap_or(d.created_ms)), d.id.as_str()), ())
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Up to `limit` pending deliveries of `webhook` due by `now_ms`, the
    /// earliest first: (due, id).
    pub fn due(&self, webhook: &str, now_ms: i64, limit: usize) -> Result<Vec<(u64, String)>, DeliverError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(DUE).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t
            .range((webhook, 0u64, "")..(webhook, ms(now_ms).saturating_add(1), ""))
            .map_err(db_err)?
        {
            let (k, _) = row.map_err(db_err)?;
            let (_, at, id) = k.value();
            out.push((at, id.to_string()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// When the earliest pending delivery of `webhook` not in `skip` is
    /// due.
    pub fn next_due(
        &self,
        webhook: &str,
        skip: &std::collections::HashSet<String>,
    ) -> Result<Option<i64>, DeliverError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(DUE).map_err(db_err)?;
        for row in t.range((webhook, 0u64, "")..=(webhook, u64::MAX, "")).map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            let (_, at, id) = k.value();
            if !skip.contains(id) {
                return Ok(Some(i64::try_from(at).unwrap_or(i64::MAX)));
            }
        }
        Ok(None)
    }

    /// One delivery.
    pub fn get(&self, id: &str) -> Result<Option<Delivery>, DeliverError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(DELIVERIES).map_err(db_err)?;
        match t.get(id).map_err(db_err)? {
            Some(v) => Ok(Some(parse("a delivery", v.value())?)),
            None => Ok(None),
        }
    }

    /// Saves `d` after a try: requeued at its next attempt, or finished.
    pub fn update(&self, d: &Delivery) -> Result<(), DeliverError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut all = tx.open_table(DELIVERIES).map_err(db_err)?;
            // Deleted meanwhile (its webhook was): nothing to save.
            let before: Delivery = match all.get(d.id.as_str()).map_err(db_err)? {
                Some(v) => parse("a delivery", v.value())?,
                None => return Ok(()),
            };
            all.insert(d.id.as_str(), json(d).as_slice()).map_err(db_err)?;
            let mut due = tx.open_table(DUE).map_err(db_err)?;
            if let (State::Pending, Some(at)) = (before.state, before.next_attempt_ms) {
                due.remove((d.webhook_id.as_str(), ms(at), d.id.as_str()))
                    .map_err(db_err)?;
            }
            let mut age = tx.open_table(QUEUED).map_err(db_err)?;
            let mut done = tx.open_table(DONE).map_err(db_err)?;
            match (d.state, d.next_attempt_ms, d.done_ms) {
                (State::Pending, Some(next), _) => {
                    due.insert((d.webhook_id.as_str(), ms(next), d.id.as_str()), ())
                        .map_err(db_err)?;
                    age.insert((ms(d.created_ms), d.id.as_str()), ()).map_err(db_err)?;
                }
                (_, _, finished) => {
                    age.remove((ms(d.created_ms), d.id.as_str())).map_err(db_err)?;
                    done.insert((ms(finished.unwrap_or(d.created_ms)), d.id.as_str()), ())
                        .map_err(db_err)?;
                }
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Makes `id` due at `now_ms` again, whatever its state: a replay with
    /// the same `webhook-id`. Returns it, or `None` if there is no such
    /// delivery for `webhook`.
    pub fn retry(&self, webhook: &str, id: &str, now_ms: i64) -> Result<Option<Delivery>, DeliverError> {
        let Some(mut d) = self.get(id)? else {
            return Ok(None);
        };
        if d.webhook_id != webhook {
            return Ok(None);
        }
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut due = tx.open_table(DUE).map_err(db_err)?;
            if let (State::Pending, Some(at)) = (d.state, d.next_attempt_ms) {
                due.remove((webhook, ms(at), id)).map_err(db_err)?;
            }
            if let Some(fin) = d.done_ms {
                tx.open_table(DONE)
                    .map_err(db_err)?
                    .remove((ms(fin), id))
                    .map_err(db_err)?;
            }
            d.state = State::Pending;
            d.next_attempt_ms = Some(now_ms);
            d.done_ms = None;
            d.client_errors = 0;
            due.insert((webhook, ms(now_ms), id), ()).map_err(db_err)?;
            tx.open_table(QUEUED)
                .map_err(db_err)?
                .insert((ms(d.created_ms), id), ())
                .map_err(db_err)?;
            tx.open_table(DELIVERIES)
                .map_err(db_err)?
                .insert(id, json(&d).as_slice())
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(Some(d))
    }

    /// The delivery log of `webhook`, newest first, of `state` if given:
    /// at most `limit`, created before `before_ms` if given.
    pub fn list(
        &self,
        webhook: &str,
        state: Option<State>,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Delivery>, DeliverError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let log = tx.open_table(BY_WEBHOOK).map_err(db_err)?;
        let all = tx.open_table(DELIVERIES).map_err(db_err)?;
        let end = before_ms.map_or(u64::MAX, ms);
        let mut out = Vec::new();
        for row in log
            .range((webhook, 0u64, "")..(webhook, end, ""))
            .map_err(db_err)?
            .rev()
        {
            let (k, _) = row.map_err(db_err)?;
            let (_, _, id) = k.value();
            let Some(v) = all.get(id).map_err(db_err)? else {
                continue;
            };
            let d: Delivery = parse("a delivery", v.value())?;
            if state.is_none_or(|s| s == d.state) {
                out.push(d);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Pending deliveries and the oldest one's creation time.
    pub fn depth(&self) -> Result<Depth, DeliverError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(QUEUED).map_err(db_err)?;
        let oldest = t.first().map_err(db_err)?.map(|(k, _)| k.value().0);
        Ok(Depth {
            pending: t.len().map_err(db_err)?,
            oldest_ms: oldest.map(|o| i64::try_from(o).unwrap_or(i64::MAX)),
        })
    }

    /// Deletes finished deliveries older than `before_ms`, at most `max`
    /// per call; returns how many.
    pub fn prune(&self, before_ms: i64, max: usize) -> Result<usize, DeliverError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let mut n = 0;
        {
            let mut done = tx.open_table(DONE).map_err(db_err)?;
            let mut all = tx.open_table(DELIVERIES).map_err(db_err)?;
            let mut log = tx.open_table(BY_WEBHOOK).map_err(db_err)?;
            let mut old = Vec::new();
            for row in done.range((0u64, "")..(ms(before_ms), "")).map_err(db_err)? {
                let (k, _) = row.map_err(db_err)?;
                let (at, id) = k.value();
                old.push((at, id.to_string()));
                if old.len() >= max {
                    break;
                }
            }
            for (at, id) in old {
                done.remove((at, id.as_str())).map_err(db_err)?;
                let removed = all.remove(id.as_str()).map_err(db_err)?;
                if let Some(v) = removed {
                    let d: Delivery = parse("a delivery", v.value())?;
                    log.remove((d.webhook_id.as_str(), ms(d.created_ms), id.as_str()))
                        .map_err(db_err)?;
                }
                n += 1;
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(n)
    }

    /// Every webhook.
    pub fn webhooks(&self) -> Result<Vec<Stored>, DeliverError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(WEBHOOKS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            out.push(parse("a webhook", v.value())?);
        }
        Ok(out)
    }

    /// Saves a webhook.
    pub fn put_webhook(&self, w: &Stored) -> Result<(), DeliverError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        tx.open_table(WEBHOOKS)
            .map_err(db_err)?
            .insert(w.spec.id.as_str(), json(w).as_slice())
            .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Deletes a webhook and its whole delivery log.
    pub fn delete_webhook(&self, id: &str) -> Result<bool, DeliverError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let existed;
        {
            existed = tx
                .open_table(WEBHOOKS)
                .map_err(db_err)?
                .remove(id)
                .map_err(db_err)?
                .is_some();
            let mut log = tx.open_table(BY_WEBHOOK).map_err(db_err)?;
            let mut all = tx.open_table(DELIVERIES).map_err(db_err)?;
            let mut due = tx.open_table(DUE).map_err(db_err)?;
            let mut age = tx.open_table(QUEUED).map_err(db_err)?;
            let mut done = tx.open_table(DONE).map_err(db_err)?;
            let mut ids = Vec::new();
            for row in log.range((id, 0u64, "")..=(id, u64::MAX, "")).map_err(db_err)? {
                let (k, _) = row.map_err(db_err)?;
                let (_, at, did) = k.value();
                ids.push((at, did.to_string()));
            }
            for (at, did) in ids {
                log.remove((id, at, did.as_str())).map_err(db_err)?;
                if let Some(v) = all.remove(did.as_str()).map_err(db_err)? {
                    let d: Delivery = parse("a delivery", v.value())?;
                    if let Some(next) = d.next_attempt_ms {
                        due.remove((id, ms(next), did.as_str())).map_err(db_err)?;
                    }
                    age.remove((ms(d.created_ms), did.as_str())).map_err(db_err)?;
                    if let Some(fin) = d.done_ms {
                        done.remove((ms(fin), did.as_str())).map_err(db_err)?;
                    }
                }
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str, webhook: &str, at: i64) -> Delivery {
        Delivery::new(id.into(), webhook, EventType::Created, None, b"{}".to_vec(), at)
    }

    #[test]
    fn a_delivery_moves_through_the_queue_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox.redb");
        {
            let s = Store::open(&path).expect("open");
            let queued = s
                .enqueue(vec![delivery("msg_a", "w1", 1000), delivery("msg_b", "w2", 1001)], 77)
                .expect("enqueue");
            assert_eq!(queued.len(), 2);
            // A replay of the same record queues nothing twice.
            assert!(s
                .enqueue(vec![delivery("msg_a", "w1", 5000)], 77)
                .expect("again")
                .is_empty());
            assert_eq!(s.position().expect("position"), Some(77));
            assert_eq!(s.due("w1", 999, 10).expect("due"), vec![]);
            assert_eq!(s.due("w1", 1000, 10).expect("due"), vec![(1000, "msg_a".to_string())]);
            let mut d = s.get("msg_a").expect("get").expect("there");
            d.push_attempt(Attempt {
                at_ms: 1000,
                status: Some(503),
                latency_ms: 3,
                error: None,
                next_retry_ms: Some(4000),
            });
            d.next_attempt_ms = Some(4000);
            s.update(&d).expect("update");
            assert_eq!(s.due("w1", 3999, 10).expect("due"), vec![]);
            assert_eq!(s.next_due("w1", &Default::default()).expect("next"), Some(4000));
            assert_eq!(s.depth().expect("depth").pending, 2);
        }
        let s = Store::open(&path).expect("reopen");
        let mut d = s.get("msg_a").expect("get").expect("there");
        assert_eq!(d.attempt_count, 1);
        d.state = State::Delivered;
        d.next_attempt_ms = None;
        d.done_ms = Some(4100);
        s.update(&d).expect("update");
        assert_eq!(s.next_due("w1", &Default::default()).expect("next"), None);
        assert_eq!(
            s.depth().expect("depth"),
            Depth {
                pending: 1,
                oldest_ms: Some(1001)
            }
        );
        let log = s.list("w1", Some(State::Delivered), None, 10).expect("list");
        assert_eq!(log.len(), 1);
        // A replay of a delivered one: due again with the same id.
        let again = s.retry("w1", "msg_a", 9000).expect("retry").expect("found");
        assert_eq!(again.state, State::Pending);
        assert_eq!(s.due("w1", 9000, 10).expect("due"), vec![(9000, "msg_a".to_string())]);
        assert!(s.retry("w2", "msg_a", 9000).expect("retry").is_none());
        // Pruning takes finished ones only; deleting a webhook takes its log.
        assert_eq!(s.prune(i64::MAX, 100).expect("prune"), 0);
        assert!(!s.delete_webhook("w1").expect("delete"));
        assert!(s.get("msg_a").expect("get").is_none());
        assert_eq!(s.depth().expect("depth").pending, 1);
    }
}
