//! The NATS JetStream sink, and reading a forwarded stream back (for `audit verify-stream`).
//!
//! Events go to `{prefix}.events.{tenant}.{category}` and checkpoints to
//! `{prefix}.checkpoints` (the prefix is `audit` unless configured; the subject of an event
//! can be any function of it). Tenant and category become subject tokens by keeping
//! `A-Z a-z 0-9 _ -` and writing every other byte as `%XX`; a missing tenant is `~`. So
//! `Dataset Rule` is `Dataset%20Rule` and a consumer can subscribe to
//! `audit.events.acme.>` for one tenant. Every message carries `Nats-Msg-Id` (the event id,
//! or the checkpoint's signature prefix), so the stream's duplicate window drops
//! redeliveries, and `Audit-Seq`. Each batch is published pipelined and every publish
//! acknowledgement is awaited before the forwarder moves its cursor.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind};
use async_trait::async_trait;
use audit_store::AuditEvent;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::record::{Batch, Item};
use crate::sink::{Receipt, Sink, SinkError};

/// How an event's subject is chosen.
type SubjectFn = dyn Fn(&AuditEvent) -> String + Send + Sync;

/// Forwards to a JetStream stream; see the module documentation.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use audit_forward::NatsSink;
/// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let sink = NatsSink::builder(client).stream("AUDIT").subject_prefix("audit").build().await?;
/// # let _ = sink;
/// # Ok(()) }
/// ```
pub struct NatsSink {
    name: String,
    jetstream: jetstream::Context,
    subject: Box<SubjectFn>,
    checkpoint_subject: String,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("name", &self.name)
            .field("checkpoint_subject", &self.checkpoint_subject)
            .finish_non_exhaustive()
    }
}

/// Configures a [`NatsSink`].
pub struct NatsSinkBuilder {
    client: async_nats::Client,
    name: String,
    prefix: String,
    subject: Option<Box<SubjectFn>>,
    stream: Option<String>,
    duplicate_window: Duration,
}

impl NatsSink {
    /// A builder on a connected client.
    pub fn builder(client: async_nats::Client) -> NatsSinkBuilder {
        NatsSinkBuilder {
            client,
            name: "nats".into(),
            prefix: "audit".into(),
            subject: None,
            stream: Some("AUDIT".into()),
            duplicate_window: Duration::from_secs(120),
        }
    }
}

impl NatsSinkBuilder {
    /// The sink's name, which keys its cursor (default `nats`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The first subject token (default `audit`).
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Chooses each event's subject; it must lie under the stream's subjects.
    pub fn subject(
        mut self,
        subject: impl Fn(&AuditEvent) -> String + Send + Sync + 'static,
    ) -> Self {
        self.subject = Some(Box::new(subject));
        self
    }

    /// The stream created, when missing, for `{prefix}.>` (default `AUDIT`), with the
    /// duplicate window below. The stream is never changed if it exists.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = Some(name.into());
        self
    }

    /// Leaves creating the stream to the operator.
    pub fn existing_stream(mut self) -> Self {
        self.stream = None;
        self
    }

    /// The duplicate window of a stream this builder creates (2 minutes).
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Creates the stream if asked and missing, and returns the sink.
    pub async fn build(self) -> Result<NatsSink, NatsSetupError> {
        let jetstream = jetstream::new(self.client);
        if let Some(stream) = &self.stream {
            jetstream
                .get_or_create_stream(jetstream::stream::Config {
                    name: stream.clone(),
                    subjects: vec![format!("{}.>", self.prefix)],
                    duplicate_window: self.duplicate_window,
                    ..Default::default()
                })
                .await
                .map_err(|e| NatsSetupError(format!("stream {stream}: {e}")))?;
        }
        let prefix = self.prefix.clone();
        Ok(NatsSink {
            name: self.name,
            jetstream,
            subject: self.subject.unwrap_or_else(|| {
                Box::new(move |event: &AuditEvent| default_subject(&prefix, event))
            }),
            checkpoint_subject: format!("{}.checkpoints", self.prefix),
        })
    }
}

/// The stream could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("NATS JetStream setup failed: {0}")]
pub struct NatsSetupError(String);

/// `{prefix}.events.{tenant}.{category}`, each value made a subject token.
///
/// ```
/// use audit_store::{Action, AuditEvent};
/// let event = AuditEvent::builder("Dataset Rule", Action::Create).internal("job").tenant("acme").build();
/// assert_eq!(audit_forward::nats::default_subject("audit", &event), "audit.events.acme.Dataset%20Rule");
/// ```
pub fn default_subject(prefix: &str, event: &AuditEvent) -> String {
    format!(
        "{prefix}.events.{}.{}",
        event
            .tenant
            .as_deref()
            .map_or_else(|| "~".to_owned(), subject_token),
        subject_token(&event.category)
    )
}

/// A value as one subject token: `A-Z a-z 0-9 _ -` kept, every other byte `%XX`, so
/// distinct values give distinct tokens and none contains `.`, `*`, `>` or white space.
pub fn subject_token(value: &str) -> String {
    let mut token = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            token.push(char::from(byte));
        } else {
            token.push_str(&format!("%{byte:02X}"));
        }
    }
    if token.is_empty() {
        token.push('%');
    }
    token
}

#[async_trait]
impl Sink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, batch: &Batch) -> Result<Receipt, SinkError> {
        let mut acks = Vec::with_capacity(batch.len());
        for record in batch.records() {
            let subject = match record.item() {
                Item::Event(event) => (self.subject)(event),
                Item::Checkpoint(_) => self.checkpoint_subject.clone(),
            };
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", record.dedup_id().as_str());
            headers.insert("Audit-Seq", record.seq().to_string().as_str());
            let ack = self
                .jetstream
                .publish_with_headers(subject, headers, Bytes::copy_from_slice(record.json()))
                .await
                .map_err(classify)?;
            acks.push(ack);
        }
        let mut receipt = Receipt::default();
        for ack in acks {
            let ack = ack.await.map_err(classify)?;
            receipt.duplicates += u64::from(ack.duplicate);
        }
        Ok(receipt)
    }
}

fn classify(error: jetstream::context::PublishError) -> SinkError {
    match error.kind() {
        // The same message will never fit; retrying cannot help.
        PublishErrorKind::MaxPayloadExceeded => SinkError::permanent(error.to_string()),
        // Unreachable, timed out, no stream (yet), JetStream busy: retried.
        _ => SinkError::transient(format!("NATS JetStream: {error}")),
    }
}

/// Reads every message of `stream` (optionally only `filter_subject`) from the first to the
/// last present when called, handing each payload to `each`. An ordered consumer is
/// created for the read and removed by the server afterwards.
pub async fn read_stream(
    client: async_nats::Client,
    stream: &str,
    filter_subject: Option<&str>,
    mut each: impl FnMut(&[u8]),
) -> Result<u64, NatsSetupError> {
    let error = |e: &dyn std::fmt::Display| NatsSetupError(format!("stream {stream}: {e}"));
    let jetstream = jetstream::new(client);
    let mut handle = jetstream.get_stream(stream).await.map_err(|e| error(&e))?;
    let info = handle.info().await.map_err(|e| error(&e))?;
    if info.state.messages == 0 {
        return Ok(0);
    }
    let consumer = handle
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: filter_subject.unwrap_or_default().to_owned(),
            ..Default::default()
        })
        .await
        .map_err(|e| error(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| error(&e))?;
    let mut count = 0;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| error(&e))?;
        each(&message.payload);
        count += 1;
        let pending = message.info().map_err(|e| error(&e))?.pending;
        if pending == 0 {
            break;
        }
    }
    Ok(count)
}
