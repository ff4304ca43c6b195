//! The `Sink` trait: where forwarded batches go.

use async_trait::async_trait;

use crate::record::Batch;

/// A destination for forwarded records. Object-safe: the forwarder holds `Arc<dyn Sink>`,
/// so a host adds its own (Kafka, S3, ...) without forking.
///
/// `deliver` returns `Ok` only once the destination has durably accepted the whole batch;
/// then the cursor moves. It may be called again with records it already accepted (after
/// a crash or a timeout): at-least-once, so a destination deduplicates by
/// [`Record::dedup_id`](crate::Record::dedup_id).
///
/// ```
/// use audit_forward::{Batch, Receipt, Sink, SinkError};
/// use std::sync::Mutex;
///
/// /// Collects lines in memory (a test double; a real sink writes somewhere durable).
/// #[derive(Default)]
/// struct Lines(Mutex<Vec<u8>>);
///
/// #[async_trait::async_trait]
/// impl Sink for Lines {
///     fn name(&self) -> &str {
///         "lines"
///     }
///     async fn deliver(&self, batch: &Batch) -> Result<Receipt, SinkError> {
///         let mut lines = self.0.lock().map_err(|_| SinkError::transient("poisoned"))?;
///         lines.extend_from_slice(&batch.ndjson());
///         Ok(Receipt::default())
///     }
/// }
/// ```
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// The sink's stable name: its cursor in the audit database is kept under it, so
    /// renaming a sink starts it afresh. 1–128 visible ASCII characters.
    fn name(&self) -> &str;

    /// Delivers one batch; see the trait's documentation.
    async fn deliver(&self, batch: &Batch) -> Result<Receipt, SinkError>;
}

/// What a sink reports about an accepted batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Receipt {
    /// Records the destination recognised as already held (JetStream's duplicate window).
    pub duplicates: u64,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying: unreachable, timed out, overloaded (HTTP 408, 429, 5xx). The
    /// forwarder retries with backoff, forever; the lag grows meanwhile.
    #[error("{0}")]
    Transient(String),
    /// Retrying the same batch cannot help (HTTP 4xx other than 408/429, a message larger
    /// than the server accepts). The forwarder halts the sink at this batch and reports it
    /// until an operator resumes it.
    #[error("{0}")]
    Permanent(String),
}

impl SinkError {
    /// A transient failure.
    pub fn transient(message: impl Into<String>) -> SinkError {
        SinkError::Transient(message.into())
    }

    /// A permanent refusal.
    pub fn permanent(message: impl Into<String>) -> SinkError {
        SinkError::Permanent(message.into())
    }
}
