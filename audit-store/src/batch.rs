//! Events in bulk as borrowed values, for readers that only encode or hash them.
//!
//! An export writes each event's fields into a file and forgets them; building an owned
//! [`AuditEvent`] per row for that (a dozen strings and an attribute map) was most of an
//! export's cost. An [`EventBatch`] holds a chunk of rows in one text buffer, filled from the
//! database's column values, and lends each one out as an [`EventView`]: the same fields,
//! borrowed. The view is also what the canonical JSON is written from
//! ([`crate::chain`]), so the hash chain and the exports agree on one description of an
//! event's fields.

use chrono::{DateTime, Utc};
use futures_util::stream::{self, BoxStream, StreamExt};
use uuid::Uuid;

use crate::chain::ChainLink;
use crate::error::StoreError;
use crate::event::{Attributes, AuditEvent};
use crate::query::Position;
use crate::store::EventStream;

/// Chunks of exported events, newest first ([`AuditStore::export_batches`](crate::AuditStore::export_batches)).
pub type BatchStream = BoxStream<'static, Result<EventBatch, StoreError>>;

/// An event's attributes, borrowed.
///
/// ```
/// use audit_store::AttributesView;
/// let mut out = Vec::new();
/// AttributesView::Json(r#"{"a":1}"#).write_json(&mut out);
/// assert_eq!(out, br#"{"a":1}"#);
/// ```
#[derive(Debug, Clone, Copy)]
pub enum AttributesView<'a> {
    /// The decoded map.
    Map(&'a Attributes),
    /// The attributes' JSON text: a complete JSON object, compact with keys sorted when the
    /// store wrote it (as serde_json writes [`Attributes`]).
    Json(&'a str),
}

impl AttributesView<'_> {
    /// Appends the attributes as one JSON object to `out`: what serde_json writes for the
    /// map, or the text as it is.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            // Writing a map of JSON values into a Vec cannot fail.
            AttributesView::Map(map) => {
                let _ = serde_json::to_writer(&mut *out, map);
            }
            AttributesView::Json(text) => out.extend_from_slice(text.as_bytes()),
        }
    }

    /// [`AttributesView::write_json`] into text (the batches' and the SQLite appender's
    /// buffers).
    pub(crate) fn push_json(&self, out: &mut String) {
        match self {
            // Serialising a map of JSON values into a String cannot fail.
            AttributesView::Map(map) => {
                let _ = serde_json::to_writer(StringWriter(out), map);
            }
            AttributesView::Json(text) => out.push_str(text),
        }
    }
}

/// Appends what `serde_json::to_writer` writes to a `String`. serde_json writes only valid
/// UTF-8, so the lossy branch never runs.
struct StringWriter<'a>(&'a mut String);

impl std::io::Write for StringWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.0.push_str(text),
            Err(_) => self.0.push_str(&String::from_utf8_lossy(bytes)),
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One event's fields, borrowed from an [`AuditEvent`] or from an [`EventBatch`]; the field
/// meanings are [`AuditEvent`]'s.
///
/// ```
/// use audit_store::{Action, AuditEvent, EventView, HttpFacts};
/// let event = AuditEvent::builder("Model", Action::Train)
///     .http(HttpFacts::new("POST", "/api/models/{id}/train", "/api/models/7/train", 202))
///     .actor_email("alice@acme.test")
///     .build();
/// let view = EventView::of(&event);
/// assert_eq!(view.action, "train");
/// assert_eq!(view.actor_email, Some("alice@acme.test"));
/// ```
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)] // each field is the `AuditEvent` field of the same name
pub struct EventView<'a> {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub tenant: Option<&'a str>,
    pub request_id: &'a str,
    pub actor_id: Option<&'a str>,
    pub actor_email: Option<&'a str>,
    pub actor_name: Option<&'a str>,
    pub category: &'a str,
    /// The action's name ([`Action::as_str`](crate::Action::as_str)).
    pub action: &'a str,
    /// `allow` or `deny`.
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub resource_id: Option<&'a str>,
    pub resource_name: Option<&'a str>,
    pub method: &'a str,
    pub route: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub duration_ms: f64,
    pub client_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub attributes: AttributesView<'a>,
    pub chain: Option<ChainLink>,
}

impl<'a> EventView<'a> {
    /// The fields of `event`.
    pub fn of(event: &'a AuditEvent) -> Self {
        EventView {
            id: event.id,
            occurred_at: event.occurred_at,
            tenant: event.tenant.as_deref(),
            request_id: &event.request_id,
            actor_id: event.actor_id.as_deref(),
            actor_email: event.actor_email.as_deref(),
            actor_name: event.actor_name.as_deref(),
            category: &event.category,
            action: event.action.as_str(),
            outcome: event.outcome.as_str(),
            reason: event.reason.as_deref(),
            resource_id: event.resource_id.as_deref(),
            resource_name: event.resource_name.as_deref(),
            method: &event.method,
            route: &event.route,
            path: &event.path,
            status: event.status,
            duration_ms: event.duration_ms,
            client_ip: event.client_ip.as_deref(),
            user_agent: event.user_agent.as_deref(),
            attributes: AttributesView::Map(&event.attributes),
            chain: event.chain,
        }
    }

    /// The keyset position of this event.
    pub fn position(&self) -> Position {
        Position {
            occurred_at: self.occurred_at,
            id: self.id,
        }
    }
}

/// The text fields of a row, in the order [`EventBatch`] keeps their places.
const TEXT_FIELDS: usize = 17;

/// Where one text value sits in the batch's buffer; `start == ABSENT` for null.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

const ABSENT: usize = usize::MAX;

#[derive(Debug, Clone)]
struct BatchRow {
    id: Uuid,
    occurred_at: DateTime<Utc>,
    status: u16,
    duration_ms: f64,
    chain: Option<ChainLink>,
    texts: [Span; TEXT_FIELDS],
}

/// A chunk of events in one text buffer, lent out as [`EventView`]s: no string or map is
/// allocated per event, and the buffer is reused when the batch is cleared.
///
/// ```
/// use audit_store::{Action, AuditEvent, EventBatch, EventView, HttpFacts};
/// let event = AuditEvent::builder("Model", Action::Create)
///     .http(HttpFacts::new("POST", "/api/models", "/api/models", 201))
///     .attribute("rows", 3)
///     .build();
/// let mut batch = EventBatch::new();
/// batch.push(&EventView::of(&event));
/// let view = batch.iter().next().unwrap();
/// assert_eq!(view.id, event.id);
/// let mut attributes = Vec::new();
/// view.attributes.write_json(&mut attributes);
/// assert_eq!(attributes, br#"{"rows":3}"#);
/// ```
#[derive(Debug, Clone, Default)]
pub struct EventBatch {
    text: String,
    rows: Vec<BatchRow>,
}

impl EventBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `rows` events of about `bytes_per_row` bytes of text.
    pub fn with_capacity(rows: usize, bytes_per_row: usize) -> Self {
        EventBatch {
            text: String::with_capacity(rows.saturating_mul(bytes_per_row)),
            rows: Vec::with_capacity(rows),
        }
    }

    /// How many events the batch holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.text.clear();
        self.rows.clear();
    }

    /// Copies `event`'s fields into the batch (its attributes as JSON text).
    pub fn push(&mut self, event: &EventView<'_>) {
        let text = &mut self.text;
        let mut place = |value: Option<&str>| match value {
            Some(value) => {
                let start = text.len();
                text.push_str(value);
                Span {
                    start,
                    end: text.len(),
                }
            }
            None => Span {
                start: ABSENT,
                end: ABSENT,
            },
        };
        let mut texts = [Span {
            start: ABSENT,
            end: ABSENT,
        }; TEXT_FIELDS];
        texts[0] = place(event.tenant);
        texts[1] = place(Some(event.request_id));
        texts[2] = place(event.actor_id);
        texts[3] = place(event.actor_email);
        texts[4] = place(event.actor_name);
        texts[5] = place(Some(event.category));
        texts[6] = place(Some(event.action));
        texts[7] = place(Some(event.outcome));
        texts[8] = place(event.reason);
        texts[9] = place(event.resource_id);
        texts[10] = place(event.resource_name);
        texts[11] = place(Some(event.method));
        texts[12] = place(Some(event.route));
        texts[13] = place(Some(event.path));
        texts[14] = place(event.client_ip);
        texts[15] = place(event.user_agent);
        let start = self.text.len();
        event.attributes.push_json(&mut self.text);
        texts[16] = Span {
            start,
            end: self.text.len(),
        };
        self.rows.push(BatchRow {
            id: event.id,
            occurred_at: event.occurred_at,
            status: event.status,
            duration_ms: event.duration_ms,
            chain: event.chain,
            texts,
        });
    }

    /// The events, in the order they were pushed.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EventView<'_>> + '_ {
        self.rows.iter().map(|row| view(&self.text, row))
    }

    /// The event at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<EventView<'_>> {
        self.rows.get(index).map(|row| view(&self.text, row))
    }

    /// The last event, if any.
    pub fn last(&self) -> Option<EventView<'_>> {
        self.rows.last().map(|row| view(&self.text, row))
    }

    /// Keeps only the events for which `keep` is true (their text stays where it is).
    pub fn retain(&mut self, mut keep: impl FnMut(&EventView<'_>) -> bool) {
        let text = &self.text;
        self.rows.retain(|row| keep(&view(text, row)));
    }
}

fn view<'a>(text: &'a str, row: &BatchRow) -> EventView<'a> {
    let optional = |index: usize| {
        let span = row.texts[index];
        (span.start != ABSENT).then(|| text.get(span.start..span.end).unwrap_or_default())
    };
    let required = |index: usize| optional(index).unwrap_or_default();
    EventView {
        id: row.id,
        occurred_at: row.occurred_at,
        tenant: optional(0),
        request_id: required(1),
        actor_id: optional(2),
        actor_email: optional(3),
        actor_name: optional(4),
        category: required(5),
        action: required(6),
        outcome: required(7),
        reason: optional(8),
        resource_id: optional(9),
        resource_name: optional(10),
        method: required(11),
        route: required(12),
        path: required(13),
        status: row.status,
        duration_ms: row.duration_ms,
        client_ip: optional(14),
        user_agent: optional(15),
        attributes: AttributesView::Json(required(16)),
        chain: row.chain,
    }
}

/// Rows per batch an export reads at a time (the store's export chunk).
pub(crate) const BATCH_ROWS: usize = crate::store::EXPORT_CHUNK;

/// `events` in batches of up to 2,000 (the store's export chunk), for a store without a
/// batch reader of its own: what is ready is batched, so a batch never waits for more rows;
/// an error ends the batch before it and follows it.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use audit_store::{Action, AuditEvent, HttpFacts, batches_of};
/// use futures_util::{StreamExt, stream};
/// let events = (0..3).map(|_| {
///     Ok(AuditEvent::builder("Model", Action::Create)
///         .http(HttpFacts::new("POST", "/api/models", "/api/models", 201))
///         .build())
/// });
/// let mut batches = batches_of(stream::iter(events.collect::<Vec<_>>()).boxed());
/// let batch = batches.next().await.unwrap().unwrap();
/// assert_eq!(batch.len(), 3);
/// # });
/// ```
pub fn batches_of(events: EventStream) -> BatchStream {
    events
        .ready_chunks(BATCH_ROWS)
        .flat_map(|items| {
            let mut out = Vec::with_capacity(2);
            let mut batch = EventBatch::with_capacity(items.len(), 640);
            for item in items {
                match item {
                    Ok(event) => batch.push(&EventView::of(&event)),
                    Err(error) => {
                        if !batch.is_empty() {
                            out.push(Ok(std::mem::take(&mut batch)));
                        }
                        out.push(Err(error));
                    }
                }
            }
            if !batch.is_empty() {
                out.push(Ok(batch));
            }
            stream::iter(out)
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, HttpFacts};

    #[test]
    fn a_batch_lends_out_what_was_pushed() {
        let full = AuditEvent::builder("Model", Action::Train)
            .http(HttpFacts::new("POST", "/m/{id}", "/m/1", 202))
            .tenant("acme")
            .actor_id("u1")
            .actor_email("a@acme.test")
            .actor_name("Alíce")
            .resource("1", "Churn ✓")
            .client_ip("10.0.0.1")
            .user_agent("curl")
            .attribute("n", 1)
            .build();
        let bare = AuditEvent::builder("Plan", Action::Delete)
            .http(HttpFacts::new("DELETE", "/p/{id}", "/p/2", 204))
            .build();
        let mut batch = EventBatch::new();
        batch.push(&EventView::of(&full));
        batch.push(&EventView::of(&bare));
        let views: Vec<EventView<'_>> = batch.iter().collect();
        for (view, event) in views.iter().zip([&full, &bare]) {
            let original = EventView::of(event);
            assert_eq!(
                format!(
                    "{:?}",
                    EventView {
                        attributes: AttributesView::Json(""),
                        ..*view
                    }
                ),
                format!(
                    "{:?}",
                    EventView {
                        attributes: AttributesView::Json(""),
                        ..original
                    }
                ),
            );
            let (mut a, mut b) = (Vec::new(), Vec::new());
            view.attributes.write_json(&mut a);
            original.attributes.write_json(&mut b);
            assert_eq!(a, b);
        }
        batch.retain(|view| view.category == "Plan");
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.last().map(|v| v.id), Some(bare.id));
    }
}
