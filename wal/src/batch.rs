//! What a record carries: a batch of normalized events, serialized once.

use std::path::Path;

use schemas::Event;

use crate::Lsn;

/// A batch that is durable in the log, on its way to a consumer.
#[derive(Debug, Clone)]
pub struct Durable {
    /// LSN of the record.
    pub start: Lsn,
    /// LSN just after the record.
    pub end: Lsn,
    /// The events, with the payload they were logged as.
    pub batch: Batch,
}

/// Normalized events and their record payload. Each event is serialized
/// once: the payload line is also what the index stores as its `_source`.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The events, in the order they were sent.
    pub events: Vec<Event>,
    payload: Vec<u8>,
    spans: Vec<std::ops::Range<usize>>,
}

/// The payload would pass the builder's byte limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget;

/// Builds a [`Batch`] one event at a time, refusing to grow the payload
/// past a byte limit.
#[derive(Debug)]
pub struct BatchBuilder {
    batch: Batch,
    max_bytes: usize,
}

impl BatchBuilder {
    /// A builder whose payload starts with `capacity` bytes (sized from
    /// something already bounded, such as the body) and may not pass
    /// `max_bytes`.
    pub fn new(capacity: usize, max_bytes: usize) -> BatchBuilder {
        BatchBuilder {
            batch: Batch {
                events: Vec::new(),
                payload: Vec::with_capacity(capacity.min(max_bytes)),
                spans: Vec::new(),
            },
            max_bytes,
        }
    }

    /// Serializes and adds one event: a marker byte (`a` Tripline assigned
    /// the id, `c` the client chose it), its JSON, a newline.
    pub fn push(&mut self, event: Event) -> Result<(), OverBudget> {
        let b = &mut self.batch;
        let line_start = b.payload.len();
        b.payload.push(if event.id_assigned() { b'a' } else { b'c' });
        let start = b.payload.len();
        serde_json::to_writer(&mut b.payload, &event).expect("serializing a JSON map to a Vec cannot fail");
        let end = b.payload.len();
        b.payload.push(b'\n');
        if b.payload.len() > self.max_bytes {
            b.payload.truncate(line_start);
            return Err(OverBudget);
        }
        b.spans.push(start..end);
        b.events.push(event);
        Ok(())
    }

    /// The batch.
    pub fn finish(self) -> Batch {
        self.batch
    }
}

impl Batch {
    /// Serializes `events` into a payload: one line an event, a marker byte
    /// (`a` Tripline assigned the id, `c` the client chose it) then JSON.
    pub fn encode(events: Vec<Event>) -> Batch {
        let mut builder = BatchBuilder::new(0, usize::MAX);
        for e in events {
            builder.push(e).expect("no byte limit, nothing is over it");
        }
        builder.finish()
    }

    /// Reads a payload back; an event that does not parse is logged and skipped.
    pub fn decode(payload: Vec<u8>, origin: &Path, offset: usize) -> Batch {
        let mut events = Vec::new();
        let mut spans = Vec::new();
        let mut pos = 0;
        for (i, line) in payload.split(|&b| b == b'\n').enumerate() {
            let line_start = pos;
            pos += line.len() + 1;
            let Some((&marker, rest)) = line.split_first() else {
                continue;
            };
            let (assigned, json, skip) = match marker {
                b'a' => (true, rest, 1),
                b'c' => (false, rest, 1),
                _ => (false, line, 0),
            };
            match serde_json::from_slice::<Event>(json) {
                Ok(mut e) => {
                    e.set_id_assigned(assigned);
                    events.push(e);
                    spans.push(line_start + skip..line_start + line.len());
                }
                Err(e) => tracing::error!(
                    segment = %origin.display(),
                    offset,
                    line = i + 1,
                    error = %e,
                    "wal record passed its checksum but an event does not parse, skipping the event"
                ),
            }
        }
        Batch { events, payload, spans }
    }

    /// The JSON of event `i`, as logged.
    pub fn source(&self, i: usize) -> &[u8] {
        self.spans
            .get(i)
            .and_then(|r| self.payload.get(r.clone()))
            .unwrap_or_default()
    }

    /// The record payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The record payload, the events dropped ([`Batch::decode`] reads them
    /// back).
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True without events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}
