//! Streaming export: events pulled from the store one chunk at a time and encoded as CSV,
//! one JSON array, or NDJSON.
//!
//! # Backpressure
//!
//! [`ExportBody`] is a pull stream: it asks the store's [`EventStream`] for the next event
//! only when hyper polls the body for the next frame, and hyper only does that once the
//! previous frame was written to the socket. A slow client therefore slows the database
//! reads; nothing is buffered beyond one frame (about [`FRAME_BYTES`]) plus the store's own
//! read chunk.
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

use audit_store::{AuditEvent, EventStream, StoreError};
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
    fn event(&mut self, event: &AuditEvent, out: &mut Vec<u8>) -> Result<(), EncodeError>;
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
    /// The body is complete or aborted.
    Done,
}

/// The body of an export response: a stream of byte frames pulled from the store's stream.
pub(crate) struct ExportBody {
    events: EventStream,
    first: Option<AuditEvent>,
    encoder: Box<dyn Encoder>,
    buffer: Vec<u8>,
    state: State,
}

impl ExportBody {
    /// A body encoding `first` (already read, see [`crate::router`]) and then `events`.
    pub(crate) fn new(
        first: Option<AuditEvent>,
        events: EventStream,
        encoder: Box<dyn Encoder>,
    ) -> Self {
        ExportBody {
            events,
            first,
            encoder,
            buffer: Vec::with_capacity(FRAME_BYTES + 4096),
            state: State::Start,
        }
    }

    fn take_frame(&mut self) -> Bytes {
        let frame = std::mem::replace(&mut self.buffer, Vec::with_capacity(FRAME_BYTES + 4096));
        Bytes::from(frame)
    }

    fn fail(&mut self, error: &dyn std::fmt::Display) {
        tracing::error!(%error, "audit export failed midway; aborting the download");
        self.encoder
            .fail("the export failed before it was complete", &mut self.buffer);
        self.state = State::Failing(error.to_string());
    }

    fn encode(&mut self, event: &AuditEvent) {
        if let Err(error) = self.encoder.event(event, &mut self.buffer) {
            self.fail(&error);
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
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(error)));
                }
                State::Start => {
                    this.encoder.begin(&mut this.buffer);
                    this.state = State::Rows;
                    if let Some(first) = this.first.take() {
                        this.encode(&first);
                    }
                    continue;
                }
                State::Rows => {}
            }
            if this.buffer.len() >= FRAME_BYTES {
                return Poll::Ready(Some(Ok(this.take_frame())));
            }
            match this.events.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(event))) => this.encode(&event),
                Poll::Ready(Some(Err(error))) => this.fail(&StoreFailure(error)),
                Poll::Ready(None) => {
                    this.encoder.finish(&mut this.buffer);
                    this.state = State::Done;
                    return Poll::Ready(Some(Ok(this.take_frame())));
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
