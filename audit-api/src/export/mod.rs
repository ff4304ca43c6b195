//! Streaming export: events pulled from the store one chunk at a time and encoded as CSV,
//! one JSON array, or NDJSON.
//!
//! # Backpressure
//!
//! [`ExportBody`] is a pull stream: it asks the store's [`BatchStream`] for the next chunk
//! of events only when hyper polls the body for the next frame and the current chunk is
//! encoded, and hyper only polls once the previous frame was written to the socket. A slow
//! client therefore slows the database reads; nothing is buffered beyond one frame (about
//! [`FRAME_BYTES`]) plus the store's read chunks (the one being encoded and the one read
//! ahead).
//!
//! # No event is built per row
//!
//! The store hands over each chunk as an [`EventBatch`] of borrowed column values
//! ([`AuditStore::export_batches`](audit_store::AuditStore::export_batches)), and the
//! encoders write each field from it straight into the frame's buffer.
//!
//! # A failure in the middle of a download
//!
//! Failures before the first byte (the database is down, the query is refused) are answered
//! with an ordinary JSON error and status. Once the `200` head is sent, a failing store
//! read ends the body with an error: hyper then closes the connection without sending the
//! terminating zero-length chunk of the HTTP/1.1 chunked encoding (on HTTP/2 the stream is
//! reset), so every HTTP client reports a truncated transfer rather than a complete file.
//! On top of that, per format:
//!
//! | format | what the bytes received so far look like |
//! |---|---|
//! | `csv` | complete rows up to the failure; nothing is appended, because any line would parse as a row. The transport error is the only signal. |
//! | `json` | the array is left unclosed (no `]`), so the document does not parse. |
//! | `ndjson` | a last line `{"error":"export_failed","message":"..."}`, an object without `id`, distinguishable from every event line, then the transport error. |
//!
//! The NDJSON error line is sent [`FLUSH_GRACE`] before the abort so the server can flush
//! it; a client too slow to take it within that time still sees the truncated transfer,
//! which is the signal every format guarantees.

mod columns;
mod csv;
mod json;
mod pin;

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::Instant;

use serde_json::Value;

use crate::self_audit::SinkSlot;

use audit_store::{AuditEvent, BatchStream, EventBatch, EventView, StoreError};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

pub use columns::Column;
pub use pin::CHAIN_HEAD_HEADER;
pub(crate) use pin::{pin, pinned};

/// Bytes gathered before a frame is handed to hyper: big enough to amortise the per-frame
/// cost, small enough to keep memory flat.
pub const FRAME_BYTES: usize = 64 * 1024;

/// How long a failing export waits, after its last bytes, before aborting the transfer:
/// hyper discards bytes it has not flushed yet when a body fails, and the NDJSON error line
/// is among them.
const FLUSH_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// The file format of an export.
///
/// ```
/// use audit_api::ExportFormat;
/// assert_eq!("ndjson".parse::<ExportFormat>().unwrap(), ExportFormat::Ndjson);
/// assert_eq!(ExportFormat::Csv.content_type(), "text/csv; charset=utf-8");
/// assert!("xml".parse::<ExportFormat>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFormat {
    /// Comma-separated values with a header row (the default).
    #[default]
    Csv,
    /// One JSON array of event objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl ExportFormat {
    /// `csv`, `json` or `ndjson`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
            ExportFormat::Ndjson => "ndjson",
        }
    }
    /// The `Content-Type` of the download.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Json => "application/json",
            ExportFormat::Ndjson => "application/x-ndjson",
        }
    }
    /// The file name extension.
    pub fn extension(self) -> &'static str {
        self.as_str()
    }
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "csv" => Ok(ExportFormat::Csv),
            "json" => Ok(ExportFormat::Json),
            "ndjson" => Ok(ExportFormat::Ndjson),
            _ => Err("must be `csv`, `json` or `ndjson`".into()),
        }
    }
}

/// Turns events into the bytes of one export format.
pub(crate) trait Encoder: Send {
    /// Whatever precedes the first event (a header row, `[`).
    fn begin(&mut self, out: &mut Vec<u8>);
    /// One event.
    fn event(&mut self, event: &EventView<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError>;
    /// Whatever follows the last event (`]`).
    fn finish(&mut self, out: &mut Vec<u8>);
    /// What the format appends when the export fails midway, if anything (see the module
    /// docs).
    fn fail(&mut self, message: &str, out: &mut Vec<u8>);
}

/// An event that could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("could not encode an event: {0}")]
pub(crate) struct EncodeError(String);

/// Why an export body ended early; hyper turns it into an aborted transfer.
#[derive(Debug, thiserror::Error)]
#[error("export aborted: {0}")]
pub struct ExportAborted(String);

/// The encoder for `format` writing `columns`.
pub(crate) fn encoder(format: ExportFormat, columns: Vec<Column>) -> Box<dyn Encoder> {
    match format {
        ExportFormat::Csv => Box::new(csv::CsvEncoder::new(columns)),
        ExportFormat::Json => Box::new(json::JsonEncoder::array(columns)),
        ExportFormat::Ndjson => Box::new(json::JsonEncoder::lines(columns)),
    }
}

enum State {
    /// Nothing written yet.
    Start,
    /// Streaming rows.
    Rows,
    /// The store failed; the buffered bytes go out first, then this error.
    Failing(String),
    /// The last bytes went out; the error follows once the server had a moment to flush
    /// them (hyper drops unflushed bytes when a body errors).
    Aborting(String, Pin<Box<tokio::time::Sleep>>),
    /// The export's own event is being recorded; then this last item goes out.
    Recording(RecordFuture, Option<Result<Bytes, ExportAborted>>),
    /// The body is complete or aborted.
    Done,
}

/// How an export's stream ended, as its own audit event records it (`attributes.end`).
#[derive(Debug, Clone, Copy)]
enum StreamEnd {
    /// Every matching row was sent.
    Complete,
    /// The store failed midway; the transfer was aborted.
    Failed,
    /// The body was dropped before its end: the client went away (or the server stopped).
    ClientGone,
}

impl StreamEnd {
    fn as_str(self) -> &'static str {
        match self {
            StreamEnd::Complete => "complete",
            StreamEnd::Failed => "failed",
            StreamEnd::ClientGone => "client_disconnected",
        }
    }
}

type RecordFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The export's own audit event, recorded when its stream ends, whichever way, with the
/// rows and bytes sent and the duration of the whole request.
pub(crate) struct ExportRecord {
    event: AuditEvent,
    slot: Box<dyn SinkSlot>,
    started: Instant,
}

impl ExportRecord {
    /// `event` to be completed and recorded in `slot`; `started` is when the request came.
    pub(crate) fn new(event: AuditEvent, slot: Box<dyn SinkSlot>, started: Instant) -> Self {
        ExportRecord {
            event,
            slot,
            started,
        }
    }
}

/// The body of an export response: a stream of byte frames pulled from the store's stream.
pub(crate) struct ExportBody {
    batches: BatchStream,
    /// The chunk being encoded, and the index of its next event.
    batch: EventBatch,
    next: usize,
    encoder: Box<dyn Encoder>,
    buffer: Vec<u8>,
    state: State,
    /// Rows encoded so far.
    rows: u64,
    /// Bytes handed to the server so far.
    bytes: u64,
    /// Taken when recorded.
    record: Option<ExportRecord>,
}

impl ExportBody {
    /// A body encoding `first` (already read, see [`crate::handlers`]) and then `batches`.
    pub(crate) fn new(
        first: Option<EventBatch>,
        batches: BatchStream,
        encoder: Box<dyn Encoder>,
    ) -> Self {
        ExportBody {
            batches,
            batch: first.unwrap_or_default(),
            next: 0,
            encoder,
            buffer: Vec::with_capacity(FRAME_BYTES + 4096),
            state: State::Start,
            rows: 0,
            bytes: 0,
            record: None,
        }
    }

    /// Records `record` when the stream ends (see [`ExportRecord`]).
    pub(crate) fn recorded(mut self, record: ExportRecord) -> Self {
        self.record = Some(record);
        self
    }

    fn take_frame(&mut self) -> Bytes {
        let frame = std::mem::replace(&mut self.buffer, Vec::with_capacity(FRAME_BYTES + 4096));
        self.bytes += frame.len() as u64;
        Bytes::from(frame)
    }

    /// Completes the export's event with what was sent; the future records it. `None` once
    /// taken.
    fn end(&mut self, end: StreamEnd) -> Option<RecordFuture> {
        let record = self.record.take()?;
        let mut event = record.event;
        event.duration_ms = record.started.elapsed().as_secs_f64() * 1000.0;
        let attributes = &mut event.attributes;
        attributes.insert("rows".into(), Value::from(self.rows));
        attributes.insert("bytes".into(), Value::from(self.bytes));
        attributes.insert(
            "completed".into(),
            Value::from(matches!(end, StreamEnd::Complete)),
        );
        attributes.insert("end".into(), Value::from(end.as_str()));
        let id = event.id;
        let slot = record.slot;
        Some(Box::pin(async move {
            if let Err(error) = slot.record(event).await {
                tracing::error!(%error, %id, "could not record an export's own event");
            }
        }))
    }

    /// Makes `item` the stream's last, after the export's event is recorded.
    fn last(&mut self, end: StreamEnd, item: Result<Bytes, ExportAborted>) {
        self.state = match self.end(end) {
            Some(recording) => State::Recording(recording, Some(item)),
            None => State::Recording(Box::pin(std::future::ready(())), Some(item)),
        };
    }

    fn fail(&mut self, error: &dyn std::fmt::Display) {
        tracing::error!(%error, "audit export failed midway; aborting the download");
        self.encoder
            .fail("the export failed before it was complete", &mut self.buffer);
        self.state = State::Failing(error.to_string());
    }

    /// Encodes the current chunk's events until the frame is full or the chunk is done;
    /// `false` when an event could not be encoded (the body is then failing).
    fn encode_some(&mut self) -> bool {
        while self.buffer.len() < FRAME_BYTES {
            let Some(event) = self.batch.get(self.next) else {
                return true;
            };
            self.next += 1;
            if let Err(error) = self.encoder.event(&event, &mut self.buffer) {
                self.fail(&error);
                return false;
            }
            self.rows += 1;
        }
        true
    }
}

impl Drop for ExportBody {
    /// A body dropped before its end: the client went away. The export is still recorded,
    /// with what was sent until then.
    fn drop(&mut self) {
        let recording = match std::mem::replace(&mut self.state, State::Done) {
            State::Recording(recording, _) => Some(recording),
            _ => self.end(StreamEnd::ClientGone),
        };
        let Some(recording) = recording else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(recording);
            }
            Err(_) => tracing::error!("no runtime left to record an export's own event"),
        }
    }
}

impl Stream for ExportBody {
    type Item = Result<Bytes, ExportAborted>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Failing(message) => {
                    let message = message.clone();
                    this.state =
                        State::Aborting(message, Box::pin(tokio::time::sleep(FLUSH_GRACE)));
                    if !this.buffer.is_empty() {
                        return Poll::Ready(Some(Ok(this.take_frame())));
                    }
                    continue;
                }
                State::Aborting(message, grace) => {
                    if grace.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let error = ExportAborted(message.clone());
                    this.last(StreamEnd::Failed, Err(error));
                    continue;
                }
                State::Recording(recording, item) => {
                    if recording.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let item = item.take();
                    this.state = State::Done;
                    return Poll::Ready(item);
                }
                State::Start => {
                    this.encoder.begin(&mut this.buffer);
                    this.state = State::Rows;
                    continue;
                }
                State::Rows => {}
            }
            if !this.encode_some() {
                continue;
            }
            if this.buffer.len() >= FRAME_BYTES {
                return Poll::Ready(Some(Ok(this.take_frame())));
            }
            match this.batches.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(batch))) => {
                    this.batch = batch;
                    this.next = 0;
                }
                Poll::Ready(Some(Err(error))) => this.fail(&StoreFailure(error)),
                Poll::Ready(None) => {
                    this.encoder.finish(&mut this.buffer);
                    let frame = this.take_frame();
                    this.last(StreamEnd::Complete, Ok(frame));
                    continue;
                }
                // The store is fetching its next chunk: send what is ready rather than hold it.
                Poll::Pending if !this.buffer.is_empty() => {
                    return Poll::Ready(Some(Ok(this.take_frame())));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

struct StoreFailure(StoreError);

impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
