//! What is forwarded: events with their chain links and signed checkpoints, each serialised
//! once, in batches.

use audit_store::{AuditEvent, Checkpoint, StoredCheckpoint};
use serde::Serialize;

/// One forwarded item.
// Events dominate a batch; boxing them would cost an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A stored event, carrying its [`AuditEvent::chain`] link.
    Event(AuditEvent),
    /// A signed checkpoint of the chain, forwarded after the events it vouches for.
    Checkpoint(StoredCheckpoint),
}

/// An item and its JSON: an event is its contract JSON with `chain`; a checkpoint is
/// `{"checkpoint": {...}}`, so a line never reads as the other kind.
///
/// ```
/// use audit_forward::Record;
/// use audit_store::{Action, AuditEvent};
///
/// let event = AuditEvent::builder("Model", Action::Create).internal("seed").build();
/// let record = Record::event(event.clone());
/// assert_eq!(record.dedup_id(), event.id.to_string());
/// let back: AuditEvent = serde_json::from_slice(record.json()).unwrap();
/// assert_eq!(back, event);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    item: Item,
    json: Vec<u8>,
}

/// The JSON wrapper of a forwarded checkpoint.
#[derive(Serialize)]
struct CheckpointLine<'a> {
    checkpoint: &'a Checkpoint,
}

impl Record {
    /// A record of a stored event.
    pub fn event(event: AuditEvent) -> Record {
        // Serialising the store's own types into a Vec cannot fail (string keys only).
        let json = serde_json::to_vec(&event).unwrap_or_default();
        Record {
            item: Item::Event(event),
            json,
        }
    }

    /// A record of a stored checkpoint.
    pub fn checkpoint(checkpoint: StoredCheckpoint) -> Record {
        let json = serde_json::to_vec(&CheckpointLine {
            checkpoint: &checkpoint.checkpoint,
        })
        .unwrap_or_default();
        Record {
            item: Item::Checkpoint(checkpoint),
            json,
        }
    }

    /// The item.
    pub fn item(&self) -> &Item {
        &self.item
    }

    /// The event, if this is one.
    pub fn as_event(&self) -> Option<&AuditEvent> {
        match &self.item {
            Item::Event(event) => Some(event),
            Item::Checkpoint(_) => None,
        }
    }

    /// The serialised JSON (one line, no newline).
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// An id that is the same every time this item is delivered: the event id, or
    /// `checkpoint-` and the first 32 hex digits of the checkpoint's signature. Sinks that
    /// deduplicate (JetStream's `Nats-Msg-Id`) use it.
    pub fn dedup_id(&self) -> String {
        match &self.item {
            Item::Event(event) => event.id.to_string(),
            Item::Checkpoint(stored) => {
                let signature = &stored.checkpoint.signature;
                format!("checkpoint-{}", &signature[..signature.len().min(32)])
            }
        }
    }

    /// The chain position the item is about: the event's `seq`, or the seq a checkpoint
    /// vouches for.
    pub fn seq(&self) -> u64 {
        match &self.item {
            Item::Event(event) => event.chain.map_or(0, |link| link.seq),
            Item::Checkpoint(stored) => stored.checkpoint.seq,
        }
    }
}

/// Events in chain order, then the checkpoints that became deliverable with them. A sink
/// acknowledges a batch as a whole; only then does the cursor move.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    records: Vec<Record>,
    bytes: usize,
}

impl Batch {
    /// A batch of these records, in this order.
    pub fn new(records: Vec<Record>) -> Batch {
        let bytes = records.iter().map(|r| r.json.len() + 1).sum();
        Batch { records, bytes }
    }

    pub(crate) fn push(&mut self, record: Record) {
        self.bytes += record.json.len() + 1;
        self.records.push(record);
    }

    /// The records, events first in chain order, then checkpoints in store order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True without records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The events' sequence range, `None` for a batch of checkpoints only.
    pub fn event_range(&self) -> Option<(u64, u64)> {
        let mut seqs = self
            .records
            .iter()
            .filter_map(|r| r.as_event())
            .map(|e| e.chain.map_or(0, |link| link.seq));
        let first = seqs.next()?;
        Some((first, seqs.next_back().unwrap_or(first)))
    }

    /// The size of [`Batch::ndjson`] in bytes.
    pub fn ndjson_len(&self) -> usize {
        self.bytes
    }

    /// The batch as NDJSON: one record per line, each line ending in `\n`.
    pub fn ndjson(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes);
        for record in &self.records {
            out.extend_from_slice(&record.json);
            out.push(b'\n');
        }
        out
    }
}
