//! The signed HTTP webhook sink, and the receiver's side of its signature.
//!
//! Each batch is one `POST` of NDJSON (`Content-Type: application/x-ndjson`): one event per
//! line, each with its `chain` link, then `{"checkpoint": {...}}` lines for the checkpoints
//! that became deliverable with them. Headers: the signature pair of [`signature`], plus
//! `Audit-Webhook-Id` (`seq-<first>-<last>`, or `checkpoints-<id>` for a batch of
//! checkpoints only; the same records delivered again carry the same id when batch
//! boundaries are the same, but deduplicate by event id to be safe) and
//! `Audit-Forwarder` (the sending instance). Any 2xx accepts the batch. 408, 429, 5xx, a
//! timeout or no connection are retried with backoff; every other status halts the sink
//! at that batch until an operator resumes it.

mod signature;

pub use signature::{
    DEFAULT_TOLERANCE, SIGNATURE_HEADER, SignatureError, TIMESTAMP_HEADER, sign, verify, verify_now,
};

#[cfg(feature = "webhook")]
mod sink;
#[cfg(feature = "webhook")]
pub use sink::{WebhookSetupError, WebhookSink, WebhookSinkBuilder};
