//! Who this recorder is, and whether its previous run stopped cleanly.
//!
//! Each instance (by name; the host name unless configured) keeps one row in the store: its
//! current run and, every `report_interval`, how many acknowledged events were still
//! unwritten (the peak since the previous report). A clean stop fills in `stopped_at`. At the
//! next start, a row without `stopped_at`, whose run left no sealed spool and is not still
//! alive, is a run that died: the recorder writes a gap record saying when and how many
//! acknowledged events may be missing, logs a warning and shows it in its metrics.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{DeliveryMode, GAP_ACTION, GAP_CATEGORY, GAP_SOURCE};
use crate::event::{Action, AuditEvent, rfc3339_micros};
use crate::reliability::RecorderRun;

/// This process's run of a recorder instance.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) instance: String,
    pub(crate) run_id: Uuid,
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) durable: bool,
}

impl Identity {
    pub(crate) fn new(instance: Option<&str>, delivery: DeliveryMode) -> Self {
        let host = host_name();
        Self {
            instance: instance.map_or_else(|| file_safe(&host), str::to_owned),
            run_id: Uuid::now_v7(),
            host,
            pid: std::process::id(),
            started_at: Utc::now(),
            durable: delivery == DeliveryMode::Durable,
        }
    }

    /// The report of this run now.
    pub(crate) fn report(&self, pending_events: u64, stopped: bool) -> RecorderRun {
        let now = Utc::now();
        RecorderRun {
            instance: self.instance.clone(),
            run_id: self.run_id,
            host: self.host.clone(),
            pid: self.pid,
            durable: self.durable,
            started_at: self.started_at,
            reported_at: now,
            pending_events,
            stopped_at: stopped.then_some(now),
        }
    }
}

/// What the previous run of this instance left behind, judged at start.
#[derive(Debug)]
pub(crate) enum Previous {
    /// None, or it stopped cleanly.
    Clean,
    /// It died without draining.
    Unclean(RecorderRun),
    /// A run of the same instance name that still seems alive: another process (or another
    /// recorder in this one) uses the name.
    Alive(RecorderRun),
}

/// Judges the stored report of the previous run.
pub(crate) fn judge(
    previous: Option<RecorderRun>,
    me: &Identity,
    sealed_runs: &HashSet<Uuid>,
    report_interval: Duration,
) -> Previous {
    let Some(previous) = previous else {
        return Previous::Clean;
    };
    if previous.stopped_at.is_some() || sealed_runs.contains(&previous.run_id) {
        return Previous::Clean;
    }
    let alive = if previous.host == me.host {
        // On the same host the process table decides (Linux); elsewhere a recent report
        // is the only sign of life.
        match process_exists(previous.pid) {
            Some(exists) => exists && (previous.pid != me.pid || previous.run_id != me.run_id),
            None => reported_recently(&previous, report_interval),
        }
    } else {
        reported_recently(&previous, report_interval)
    };
    if alive {
        Previous::Alive(previous)
    } else {
        Previous::Unclean(previous)
    }
}

fn reported_recently(run: &RecorderRun, report_interval: Duration) -> bool {
    let age = Utc::now().signed_duration_since(run.reported_at);
    age.to_std()
        .map_or(true, |age| age < report_interval.saturating_mul(3))
}

/// The gap record for a previous run that died.
pub(crate) fn unclean_stop_record(previous: &RecorderRun) -> AuditEvent {
    let missing = if previous.durable {
        0
    } else {
        previous.pending_events
    };
    let last_report = rfc3339_micros::format(&previous.reported_at);
    let reason = if previous.durable {
        format!(
            "the previous run of recorder instance {} ended without draining at about \
             {last_report}; it delivered durably, so no acknowledged event can be missing",
            previous.instance
        )
    } else {
        format!(
            "the previous run of recorder instance {} ended without draining at about \
             {last_report}; up to {missing} acknowledged events may be missing",
            previous.instance
        )
    };
    let action = Action::custom(GAP_ACTION).unwrap_or(Action::View);
    let mut event = AuditEvent::builder(GAP_CATEGORY, action)
        .occurred_at(previous.reported_at)
        .internal(GAP_SOURCE)
        .attribute("unclean_stop", true)
        .attribute("instance", previous.instance.clone())
        .attribute("previous_run_id", previous.run_id.to_string())
        .attribute("previous_host", previous.host.clone())
        .attribute("last_report_at", Value::String(last_report))
        .attribute("possibly_missing_events", missing)
        .attribute(
            "delivery",
            if previous.durable {
                "durable"
            } else {
                "buffered"
            },
        )
        .attribute("reason", reason)
        .build();
    event.reason = Some("previous recorder run ended without draining".to_owned());
    event
}

/// The host name (Linux: the kernel's), or `localhost`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `name` with every character a file name or instance name may not hold replaced.
fn file_safe(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if safe.is_empty() {
        "localhost".to_owned()
    } else {
        safe
    }
}

/// Whether a process with this id exists; `None` where the platform cannot say cheaply.
fn process_exists(pid: u32) -> Option<bool> {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}

/// A distinct name for a recorder whose configured name is in use by a live run.
pub(crate) fn distinct_instance(instance: &str, pid: u32) -> String {
    let suffix = Uuid::now_v7().simple().to_string();
    let mut name = format!("{instance}-{pid}-{}", &suffix[suffix.len() - 6..]);
    name.truncate(128);
    name
}
