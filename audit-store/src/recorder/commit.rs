//! Writing one batch: retried while the database is at fault, split while its content is.
//!
//! A failure the database can recover from (down, disk full, locked, timed out) is retried
//! with backoff, for as long as it takes or until shutdown asks for a spool; the overload
//! policy holds requests back meanwhile, since capacity stays taken. A failure of the content
//! ([`StoreError::is_permanent`]: a value or constraint the backend will never accept, an id
//! already stored with other content) cannot be cured by retrying: the batch is halved until
//! each refused event stands alone, the others are written, and the refused ones go to the
//! quarantine (the store's, else a local file), reported by one gap record per batch.

use std::ops::Range;

use chrono::Utc;
use serde_json::{Value, json};

use super::metrics::Counters;
use super::writer::{Origin, Writer};
use super::{GAP_ACTION, GAP_CATEGORY, GAP_SOURCE};
use crate::error::StoreError;
use crate::event::{Action, AuditEvent};
use crate::reliability::QuarantinedEvent;

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Everything is in the store (or the quarantine).
    Written,
    /// Shutdown asked for a spool before it was; what is unsettled stays in the batch.
    Interrupted,
}

/// How writing one range of the batch ended.
enum RangeOutcome {
    Written,
    Refused(StoreError),
    Interrupted,
}

/// The most event ids a quarantine gap record lists.
const LISTED_IDS: usize = 100;

impl Writer {
    /// Writes the whole batch, then clears it.
    pub(crate) async fn write_batch(&mut self) -> Outcome {
        // A stack of ranges still to write: the whole batch, then halves of refused ranges.
        let mut ranges: Vec<Range<usize>> = Vec::with_capacity(16);
        ranges.push(0..self.batch.len());
        let mut refused: Vec<(usize, String)> = Vec::new();
        while let Some(range) = ranges.pop() {
            match self.write_range(range.clone()).await {
                RangeOutcome::Written => self.settle(range, true),
                RangeOutcome::Refused(error) if range.len() == 1 => {
                    refused.push((range.start, error.to_string()));
                }
                RangeOutcome::Refused(error) => {
                    tracing::warn!(%error, events = range.len(),
                        "audit recorder: the database refused a batch; splitting it to isolate \
                         the events at fault");
                    let middle = range.start + range.len() / 2;
                    // The first half is written first, so the chain keeps submission order.
                    ranges.push(middle..range.end);
                    ranges.push(range.start..middle);
                }
                RangeOutcome::Interrupted => return Outcome::Interrupted,
            }
        }
        if !refused.is_empty() && self.quarantine(&refused).await == Outcome::Interrupted {
            return Outcome::Interrupted;
        }
        self.batch.clear();
        Outcome::Written
    }

    /// Appends `range` of the batch, retrying failures of the database until it succeeds.
    async fn write_range(&self, range: Range<usize>) -> RangeOutcome {
        let events = &self.batch.events[range];
        let counters = &self.shared.counters;
        let mut failures: u32 = 0;
        loop {
            let attempt =
                tokio::time::timeout(self.shared.config.write_timeout, self.store.append(events));
            let error = match self.shared.interruptible(attempt).await {
                None => return RangeOutcome::Interrupted,
                Some(Ok(Ok(()))) => {
                    if failures > 0 {
                        tracing::info!(
                            events = events.len(),
                            attempts = failures + 1,
                            "audit batch written after retries"
                        );
                    }
                    return RangeOutcome::Written;
                }
                Some(Ok(Err(error))) if error.is_permanent() => {
                    Counters::add(&counters.failed_batches, 1);
                    return RangeOutcome::Refused(error);
                }
                Some(Ok(Err(error))) => error.to_string(),
                Some(Err(_elapsed)) => format!(
                    "the write did not finish within {:?} (it may have committed; the retry \
                     recognises events already stored)",
                    self.shared.config.write_timeout
                ),
            };
            Counters::add(&counters.failed_batches, 1);
            tracing::warn!(
                %error,
                events = events.len(),
                attempt = failures + 1,
                retry_in_ms = self.shared.config.retry.delay(failures).as_millis() as u64,
                "audit batch write failed; retrying",
            );
            if self.shared.backoff(failures).await == Outcome::Interrupted {
                return RangeOutcome::Interrupted;
            }
            failures = failures.saturating_add(1);
            Counters::add(&counters.retries, 1);
        }
    }

    /// Releases what the written (or quarantined) events of `range` hold.
    fn settle(&mut self, range: Range<usize>, stored: bool) {
        let counters = &self.shared.counters;
        let mut reserved = 0;
        let mut bytes = 0;
        for entry in &mut self.batch.entries[range] {
            if entry.settled {
                continue;
            }
            entry.settled = true;
            match entry.origin {
                Origin::Submitted => {
                    reserved += 1;
                    bytes += entry.bytes;
                }
                Origin::Gap if stored => Counters::add(&counters.gaps, 1),
                Origin::Replayed if stored => Counters::add(&counters.replayed, 1),
                Origin::Gap | Origin::Replayed => {}
            }
            if stored {
                Counters::add(&counters.recorded, 1);
            } else {
                Counters::add(&counters.quarantined, 1);
            }
            if let Some(waiter) = entry.waiter.take() {
                // A waiter that went away (client disconnected) no longer needs telling.
                let _ = waiter.send(());
            }
        }
        if stored {
            Counters::add(&counters.batches, 1);
        }
        counters.written(reserved as u64);
        self.shared.capacity.release(reserved, bytes);
    }

    /// Keeps the refused events in the quarantine and records a gap event about them.
    async fn quarantine(&mut self, refused: &[(usize, String)]) -> Outcome {
        let now = Utc::now();
        let entries: Vec<QuarantinedEvent> = refused
            .iter()
            .map(|(index, error)| QuarantinedEvent {
                event: self.batch.events[*index].clone(),
                error: error.clone(),
                quarantined_at: now,
            })
            .collect();
        let Some(place) = self.keep_quarantined(&entries).await else {
            return Outcome::Interrupted;
        };
        tracing::error!(
            events = entries.len(),
            quarantine = %place,
            error = %entries[0].error,
            "audit recorder: the database refused events; they are kept in the quarantine and a \
             gap record in the log says so"
        );
        let record = quarantine_record(&entries, &place);
        loop {
            let attempt = tokio::time::timeout(
                self.shared.config.write_timeout,
                self.store.append(std::slice::from_ref(&record)),
            );
            match self.shared.interruptible(attempt).await {
                None => return Outcome::Interrupted,
                Some(Ok(Ok(()))) => {
                    Counters::add(&self.shared.counters.gaps, 1);
                    Counters::add(&self.shared.counters.recorded, 1);
                    break;
                }
                Some(Ok(Err(error))) if error.is_permanent() => {
                    // Our own record refused: keep it beside the events it describes.
                    tracing::error!(%error, "audit recorder: the quarantine's gap record was refused too");
                    self.quarantine_file(&[QuarantinedEvent {
                        event: record,
                        error: error.to_string(),
                        quarantined_at: now,
                    }]);
                    break;
                }
                Some(_) => {
                    if self.shared.backoff(0).await == Outcome::Interrupted {
                        return Outcome::Interrupted;
                    }
                }
            }
        }
        for (index, _) in refused {
            self.settle(*index..*index + 1, false);
        }
        Outcome::Written
    }

    /// Stores quarantined events where they can be kept: the store's quarantine, else a local
    /// file. Returns where they went; `None` when interrupted.
    async fn keep_quarantined(&self, entries: &[QuarantinedEvent]) -> Option<String> {
        loop {
            let attempt = tokio::time::timeout(
                self.shared.config.write_timeout,
                self.store.quarantine(entries),
            );
            match self.shared.interruptible(attempt).await? {
                Ok(Ok(())) => return Some("the store's audit_quarantine table".to_owned()),
                Ok(Err(error))
                    if error.is_permanent() || matches!(error, StoreError::Unsupported(_)) =>
                {
                    tracing::warn!(%error, "audit recorder: the store's quarantine refused the events");
                    return Some(self.quarantine_file(entries));
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "audit recorder: cannot write to the quarantine yet; retrying");
                }
                Err(_elapsed) => {}
            }
            if self.shared.backoff(0).await == Outcome::Interrupted {
                return None;
            }
        }
    }

    /// Writes quarantined events to the local quarantine file; returns a description of where
    /// they are (or that they are only in the log, when there is no spool directory).
    fn quarantine_file(&self, entries: &[QuarantinedEvent]) -> String {
        let written = self
            .shared
            .spool
            .as_ref()
            .map(|spool| spool.write_quarantine(entries));
        match written {
            Some(Ok(path)) => format!("the file {}", path.display()),
            Some(Err(error)) => {
                tracing::error!(%error, "audit recorder: the quarantine file could not be written");
                log_content(entries);
                "the error log only (the quarantine file could not be written)".to_owned()
            }
            None => {
                log_content(entries);
                "the error log only (no spool directory configured)".to_owned()
            }
        }
    }
}

fn log_content(entries: &[QuarantinedEvent]) {
    for entry in entries {
        tracing::error!(
            event = %serde_json::to_string(&entry.event).unwrap_or_default(),
            error = %entry.error,
            "audit recorder: quarantined event kept only in this log line"
        );
    }
}

/// The gap record for events moved to the quarantine.
fn quarantine_record(entries: &[QuarantinedEvent], place: &str) -> AuditEvent {
    let ids: Vec<Value> = entries
        .iter()
        .take(LISTED_IDS)
        .map(|entry| Value::String(entry.event.id.to_string()))
        .collect();
    let action = Action::custom(GAP_ACTION).unwrap_or(Action::View);
    let mut event = AuditEvent::builder(GAP_CATEGORY, action)
        .internal(GAP_SOURCE)
        .attribute("quarantined_events", entries.len())
        .attribute("quarantine", place)
        .attribute("event_ids", Value::Array(ids))
        .attribute("error", entries[0].error.clone())
        .attribute(
            "reason",
            json!(
                "the database refused these events; they are kept in the quarantine, not in the log"
            ),
        )
        .build();
    event.reason = Some("events refused by the database were quarantined".to_owned());
    event
}
