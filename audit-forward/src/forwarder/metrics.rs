//! What a forwarder reports per sink.

use std::sync::{Arc, Mutex, MutexGuard};

use audit_store::ForwardHalt;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What a sink's forwarding task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkState {
    /// Started, no lease yet.
    Starting,
    /// Another instance holds the lease; this one takes over if it lapses.
    Standby,
    /// Delivering events that are behind.
    Forwarding,
    /// Everything stored has been delivered.
    CaughtUp,
    /// The sink failed transiently; retrying with backoff.
    Retrying,
    /// The sink refused a batch permanently; waiting for the operator.
    Halted,
    /// Shut down.
    Stopped,
}

impl SinkState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkState::Starting => "starting",
            SinkState::Standby => "standby",
            SinkState::Forwarding => "forwarding",
            SinkState::CaughtUp => "caught_up",
            SinkState::Retrying => "retrying",
            SinkState::Halted => "halted",
            SinkState::Stopped => "stopped",
        }
    }
}

/// A snapshot of one sink's forwarding, from [`ForwarderHandle::metrics`](crate::ForwarderHandle::metrics).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkMetrics {
    /// The sink's name.
    pub sink: String,
    /// What its task is doing.
    pub state: SinkState,
    /// The last event seq the sink acknowledged.
    pub delivered_seq: u64,
    /// The chain head when last looked at.
    pub head_seq: u64,
    /// Events stored but not yet acknowledged (`head_seq - delivered_seq`).
    pub lag_events: u64,
    /// How long the oldest undelivered event has waited, in seconds (0 when caught up).
    pub lag_seconds: f64,
    /// Events delivered by this process (redeliveries included).
    pub events_delivered: u64,
    /// Checkpoints delivered by this process.
    pub checkpoints_delivered: u64,
    /// Batches acknowledged.
    pub batches_delivered: u64,
    /// Delivery attempts that failed (each retry counts).
    pub failed_attempts: u64,
    /// Records the sink said it already held.
    pub duplicates: u64,
    /// Events retention purged before they could be forwarded (a gap the receiver will
    /// see, vouched for by the purge checkpoint); never skipped otherwise.
    pub events_purged_before_delivery: u64,
    /// The lease holder when known (this instance while it forwards).
    pub holder: Option<String>,
    /// Set while halted by a permanent error.
    pub halt: Option<ForwardHalt>,
    /// The last delivery or database error.
    pub last_error: Option<String>,
    /// When a batch was last acknowledged.
    pub last_delivery_at: Option<DateTime<Utc>>,
    /// When the oldest undelivered event occurred (`lag_seconds` is computed from it).
    #[serde(skip)]
    pub(crate) oldest_pending_at: Option<DateTime<Utc>>,
}

impl SinkMetrics {
    pub(crate) fn new(sink: &str) -> SinkMetrics {
        SinkMetrics {
            sink: sink.to_owned(),
            state: SinkState::Starting,
            delivered_seq: 0,
            head_seq: 0,
            lag_events: 0,
            lag_seconds: 0.0,
            events_delivered: 0,
            checkpoints_delivered: 0,
            batches_delivered: 0,
            failed_attempts: 0,
            duplicates: 0,
            events_purged_before_delivery: 0,
            holder: None,
            halt: None,
            last_error: None,
            last_delivery_at: None,
            oldest_pending_at: None,
        }
    }
}

/// The live metrics of one sink, shared by its task and the handle.
#[derive(Debug, Clone)]
pub(crate) struct SharedMetrics(Arc<Mutex<SinkMetrics>>);

impl SharedMetrics {
    pub(crate) fn new(sink: &str) -> SharedMetrics {
        SharedMetrics(Arc::new(Mutex::new(SinkMetrics::new(sink))))
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut SinkMetrics)) {
        change(&mut self.lock());
    }

    /// A copy with the lag computed now.
    pub(crate) fn snapshot(&self) -> SinkMetrics {
        let mut metrics = self.lock().clone();
        metrics.lag_events = metrics.head_seq.saturating_sub(metrics.delivered_seq);
        metrics.lag_seconds = match (metrics.lag_events, metrics.oldest_pending_at) {
            (0, _) | (_, None) => 0.0,
            (_, Some(at)) => seconds_since(at),
        };
        metrics
    }

    fn lock(&self) -> MutexGuard<'_, SinkMetrics> {
        // Metrics are plain counters: a panic elsewhere cannot leave them inconsistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) fn seconds_since(at: DateTime<Utc>) -> f64 {
    ((Utc::now() - at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6).max(0.0)
}
