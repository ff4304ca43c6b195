//! Streams the audit log out of the service: every stored event, in chain order, at least
//! once to each sink (NATS JetStream, a signed HTTP webhook, or the host's own [`Sink`]),
//! and every signed checkpoint after the events it vouches for.
//!
//! * **Resumable.** Each sink has a cursor in the audit database (the last event and
//!   checkpoint it acknowledged); the cursor moves only after the sink acknowledged a whole
//!   batch, so a crash, a restart or an outage causes redeliveries, never a gap. Receivers
//!   deduplicate by event id (JetStream does it itself, by `Nats-Msg-Id`).
//! * **One forwarder per sink.** Instances sharing a database take a lease per sink (a row
//!   with an expiry on the database's clock, renewed every third of its time to live);
//!   when the holder dies another instance takes over once it lapses, and a holder that
//!   lost its lease can no longer move the cursor (the write is fenced by the lease).
//! * **Never silent, never stuck.** A sink that is down is retried with backoff while the
//!   lag grows ([`ForwarderHandle::metrics`], `GET /forwarding` of `audit-api`); requests
//!   are never slowed, since the forwarder only reads the store. A sink that refuses a
//!   batch permanently (an HTTP 4xx other than 408/429) halts at that batch, reported with
//!   its reason, until an operator resumes it: [`ForwarderHandle::retry`], or
//!   `audit forward-retry --database URL --sink NAME` from any machine.
//! * **Verifiable.** Every event carries its `chain` link; [`receive::StreamVerifier`] (and
//!   `audit verify-stream`) checks a receiver's copy for altered events and gaps and proves
//!   it complete up to the newest forwarded checkpoint.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use audit_forward::{Forwarder, NatsSink, WebhookSink};
//! use audit_store::SqliteStore;
//!
//! let store = SqliteStore::connect("sqlite://audit.db").await?;
//! let nats = audit_forward::async_nats::connect("nats://127.0.0.1:4222").await?;
//! let forwarder = Forwarder::builder(store.clone())
//!     .sink(NatsSink::builder(nats).build().await?)
//!     .sink(WebhookSink::builder("http://siem.internal/ingest", std::env::var("SIEM_SECRET")?).name("siem").build()?)
//!     .start()?;
//! // ... serve requests; the recorder writes, the forwarder reads ...
//! forwarder.shutdown().await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod forwarder;
#[cfg(feature = "nats")]
pub mod nats;
pub mod receive;
mod record;
mod sink;
pub mod webhook;

/// The NATS client the JetStream sink is built on, re-exported so a host needs no
/// dependency of its own to connect.
#[cfg(feature = "nats")]
pub use async_nats;
pub use forwarder::{
    Backoff, Forwarder, ForwarderBuilder, ForwarderConfig, ForwarderHandle, ShutdownError,
    SinkMetrics, SinkState, StartAt, StartError,
};
#[cfg(feature = "nats")]
pub use nats::{NatsSetupError, NatsSink, NatsSinkBuilder};
pub use record::{Batch, Item, Record};
pub use sink::{Receipt, Sink, SinkError};
#[cfg(feature = "webhook")]
pub use webhook::{WebhookSetupError, WebhookSink, WebhookSinkBuilder};
