//! What the recorder keeps in the store besides events: the events the database refused
//! (the quarantine) and the record of its own runs (to detect an unclean stop).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::StoreError;
use crate::event::AuditEvent;

/// An event the database refused, kept in the quarantine instead of being retried forever;
/// see [`AuditStore::quarantine`](crate::AuditStore::quarantine).
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantinedEvent {
    /// The event as the host submitted it.
    pub event: AuditEvent,
    /// What the database said when it refused it.
    pub error: String,
    /// When it was quarantined.
    pub quarantined_at: DateTime<Utc>,
}

/// One run of a recorder instance, as the recorder last reported it; see
/// [`AuditStore::report_run`](crate::AuditStore::report_run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderRun {
    /// The instance name (one row per instance).
    pub instance: String,
    /// This run.
    pub run_id: Uuid,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Whether its delivery is durable (then nothing acknowledged is ever uncommitted).
    pub durable: bool,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it last reported.
    pub reported_at: DateTime<Utc>,
    /// Acknowledged events not yet committed: the most there were since the previous report.
    pub pending_events: u64,
    /// When the run stopped after writing (or spooling) everything; `None` while it runs,
    /// and forever for a run that died.
    pub stopped_at: Option<DateTime<Utc>>,
}

/// The event's JSON for the quarantine. Serialising an event cannot fail; should it, the
/// quarantine still keeps its `Debug` form rather than nothing.
pub(crate) fn quarantine_json(event: &AuditEvent) -> String {
    serde_json::to_string(event).unwrap_or_else(|_| format!("{event:?}"))
}

/// A quarantine row read back.
pub(crate) fn quarantined_from_row(
    quarantined_at: DateTime<Utc>,
    error: String,
    event: &str,
) -> Result<QuarantinedEvent, StoreError> {
    Ok(QuarantinedEvent {
        event: serde_json::from_str(event)
            .map_err(|e| StoreError::CorruptRow(format!("quarantined event: {e}")))?,
        error,
        quarantined_at,
    })
}
