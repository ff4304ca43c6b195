//! The background task that turns queued events into batched, retried transactions.
//!
//! One task, one loop: take the first queued event, linger briefly for more, write them as one
//! batch (`commit.rs`), and between batches report this run to the store and write any pending
//! gap record. Before the first batch it replays what earlier runs spooled and judges whether
//! the previous run stopped cleanly (`runs.rs`).
//!
//! The task keeps the batch it is writing in [`Writer`], not on the stack of an `await`: if
//! the task is dropped unfinished (the runtime stops before `Recorder::shutdown` ran), `Drop`
//! spools that batch and everything still queued instead of losing it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::commit::Outcome;
use super::metrics::Counters;
use super::runs::{self, Identity, Previous};
use super::spool;
use super::{DeliveryMode, Shared};
use crate::error::StoreError;
use crate::event::AuditEvent;
use crate::store::AuditStore;

/// How often an idle writer checks whether a pending gap record can be written.
const GAP_IDLE_CHECK: Duration = Duration::from_millis(100);

/// One submitted event on its way to the store.
pub(crate) struct Queued {
    pub(crate) event: AuditEvent,
    /// The bytes of queue capacity it holds.
    pub(crate) bytes: usize,
    /// Told when the event's batch commits (durable mode).
    pub(crate) commit: Option<oneshot::Sender<()>>,
}

// Boxing every event to shrink the rare `Stop` would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Message {
    Event(Queued),
    /// Sent by shutdown once no reservation is outstanding: write what is left and exit.
    Stop,
}

/// Where an event of a batch came from, which decides what writing it releases and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Submitted into a reservation: holds queue capacity and is an acknowledged event.
    Submitted,
    /// A gap record the recorder wrote itself.
    Gap,
    /// Replayed from an earlier run's spool.
    Replayed,
}

/// What one event of the batch releases once it is written (or quarantined).
pub(crate) struct Entry {
    pub(crate) origin: Origin,
    pub(crate) bytes: usize,
    pub(crate) waiter: Option<oneshot::Sender<()>>,
    pub(crate) settled: bool,
}

/// The events of the batch being written, with what each releases. Kept as two vectors so
/// that any range of the events can be handed to `AuditStore::append` as a slice.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) events: Vec<AuditEvent>,
    pub(crate) entries: Vec<Entry>,
}

impl Batch {
    fn push(
        &mut self,
        event: AuditEvent,
        origin: Origin,
        bytes: usize,
        waiter: Option<oneshot::Sender<()>>,
    ) {
        self.events.push(event);
        self.entries.push(Entry {
            origin,
            bytes,
            waiter,
            settled: false,
        });
    }

    fn push_queued(&mut self, queued: Queued) {
        self.push(queued.event, Origin::Submitted, queued.bytes, queued.commit);
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.events.clear();
        self.entries.clear();
    }
}

pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) store: Arc<dyn AuditStore>,
    receiver: mpsc::UnboundedReceiver<Message>,
    pub(crate) batch: Batch,
    identity: Identity,
    last_report: Instant,
    report_failing: bool,
    /// Set once the task ended on purpose; `Drop` spools whatever is left otherwise.
    finished: bool,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        store: Arc<dyn AuditStore>,
        receiver: mpsc::UnboundedReceiver<Message>,
        identity: Identity,
    ) -> Self {
        Self {
            shared,
            store,
            receiver,
            batch: Batch::default(),
            identity,
            last_report: Instant::now(),
            report_failing: false,
            finished: false,
        }
    }

    pub(crate) async fn run(mut self) {
        let outcome = match self.recover().await {
            Outcome::Written => self.serve().await,
            Outcome::Interrupted => Outcome::Interrupted,
        };
        self.shared.mark_recovered();
        match outcome {
            Outcome::Written => self.stopped_cleanly().await,
            Outcome::Interrupted => {
                self.spool_remaining("the shutdown deadline passed");
                self.seal_spool();
                self.report_stop(Duration::from_secs(1)).await;
            }
        }
        self.finished = true;
    }

    /// The main loop, until a `Stop` (everything written) or a spool request.
    async fn serve(&mut self) -> Outcome {
        let max_batch = self.shared.config.max_batch_events;
        let mut stop = false;
        while !stop {
            let Some(first) = self.next_message().await else {
                return Outcome::Interrupted;
            };
            match first {
                Some(Message::Event(queued)) => self.batch.push_queued(queued),
                Some(Message::Stop) => stop = true,
                // Nothing arrived in time: report, write a pending gap, wait again.
                None => {
                    if self.between_batches().await == Outcome::Interrupted {
                        return Outcome::Interrupted;
                    }
                    continue;
                }
            }
            // Linger so that concurrent requests share one transaction. The writer does not
            // wait on the channel meanwhile: a pending receive would be woken (a cross-thread
            // unpark) by every single submission. Submitters wake it once, when a full batch
            // is waiting; otherwise the deadline does.
            if !stop && self.batch.len() < max_batch && !self.shared.config.max_batch_wait.is_zero()
            {
                let deadline = Instant::now() + self.shared.config.max_batch_wait;
                // `waiting` still counts the event just received.
                if self.shared.waiting.load(Ordering::Acquire) < max_batch
                    && worth_lingering(&self.shared)
                {
                    let full = self.shared.batch_full.notified();
                    let _ = tokio::time::timeout_at(deadline, full).await;
                }
            }
            while !stop && self.batch.len() < max_batch {
                match self.receiver.try_recv() {
                    Ok(Message::Event(queued)) => self.batch.push_queued(queued),
                    Ok(Message::Stop) | Err(TryRecvError::Disconnected) => stop = true,
                    Err(TryRecvError::Empty) => break,
                }
            }
            if stop {
                // Shutdown waited until no capacity was held, so anything left is here.
                while let Ok(Message::Event(queued)) = self.receiver.try_recv() {
                    self.batch.push_queued(queued);
                }
                if let Some(gap) = self.shared.take_gap() {
                    self.batch.push(gap, Origin::Gap, 0, None);
                }
            }
            let taken = self
                .batch
                .entries
                .iter()
                .filter(|entry| entry.origin == Origin::Submitted)
                .count();
            self.shared.waiting.fetch_sub(taken, Ordering::AcqRel);
            if !self.batch.is_empty() && self.write_batch().await == Outcome::Interrupted {
                return Outcome::Interrupted;
            }
            if !stop && self.between_batches().await == Outcome::Interrupted {
                return Outcome::Interrupted;
            }
        }
        Outcome::Written
    }

    /// The next message, or `Some(None)` when it is time for the work between batches;
    /// `None` when a spool was requested.
    async fn next_message(&mut self) -> Option<Option<Message>> {
        let report_due = self.last_report + self.shared.config.report_interval;
        let wake = if self.shared.gap_pending() {
            report_due.min(Instant::now() + GAP_IDLE_CHECK)
        } else {
            report_due
        };
        let shared = self.shared.clone();
        let received = tokio::time::timeout_at(wake, self.receiver.recv());
        tokio::select! {
            biased;
            () = shared.spool_requested() => None,
            received = received => Some(match received {
                Ok(Some(message)) => Some(message),
                // Every sender is gone (cannot happen while `Shared` lives): stop.
                Ok(None) => Some(Message::Stop),
                Err(_elapsed) => None,
            }),
        }
    }

    /// Reports this run when it is due, and writes a pending gap record once the queue has
    /// recovered.
    async fn between_batches(&mut self) -> Outcome {
        if Instant::now() >= self.last_report + self.shared.config.report_interval {
            self.report(false).await;
        }
        if !self.shared.gap_pending() {
            return Outcome::Written;
        }
        // Once the queue is at most half full the overload that caused the gap has passed,
        // and one record covers the whole episode.
        let (queued, _) = self.shared.capacity.in_use();
        if queued > self.shared.capacity.max_events() / 2 {
            return Outcome::Written;
        }
        match self.shared.take_gap() {
            Some(gap) => {
                self.batch.push(gap, Origin::Gap, 0, None);
                self.write_batch().await
            }
            None => Outcome::Written,
        }
    }

    /// Replays earlier runs' spools, judges the previous run, and reports this one.
    async fn recover(&mut self) -> Outcome {
        let mut sealed = HashSet::new();
        if self.replay_spools(&mut sealed).await == Outcome::Interrupted {
            return Outcome::Interrupted;
        }
        let previous = loop {
            let read = self
                .shared
                .interruptible(self.store.recorder_run(&self.identity.instance))
                .await;
            match read {
                None => return Outcome::Interrupted,
                Some(Ok(previous)) => break previous,
                // A store without run reports: nothing to judge, nothing to report.
                Some(Err(StoreError::Unsupported(_))) => {
                    self.last_report = Instant::now() + Duration::from_secs(3600 * 24 * 365);
                    return Outcome::Written;
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "audit recorder: cannot read its previous run yet; retrying");
                    if self.shared.backoff(0).await == Outcome::Interrupted {
                        return Outcome::Interrupted;
                    }
                }
            }
        };
        match runs::judge(
            previous,
            &self.identity,
            &sealed,
            self.shared.config.report_interval,
        ) {
            Previous::Clean => {}
            Previous::Alive(other) => {
                let renamed = runs::distinct_instance(&self.identity.instance, self.identity.pid);
                tracing::warn!(
                    instance = %self.identity.instance,
                    other_host = %other.host,
                    other_pid = other.pid,
                    renamed = %renamed,
                    "audit recorder: another live recorder uses this instance name; give each \
                     process its own name (RecorderBuilder::instance) so unclean stops can be \
                     detected for each"
                );
                self.identity.instance = renamed;
            }
            Previous::Unclean(previous) => {
                let record = runs::unclean_stop_record(&previous);
                let missing = if previous.durable {
                    0
                } else {
                    previous.pending_events
                };
                tracing::warn!(
                    instance = %previous.instance,
                    last_report_at = %previous.reported_at,
                    possibly_missing_events = missing,
                    "audit recorder: the previous run ended without draining; a gap record \
                     says so in the log"
                );
                Counters::set(&self.shared.counters.previous_run_unclean, 1);
                Counters::set(&self.shared.counters.previous_run_possibly_missing, missing);
                self.batch.push(record, Origin::Gap, 0, None);
                if self.write_batch().await == Outcome::Interrupted {
                    return Outcome::Interrupted;
                }
            }
        }
        self.report(false).await;
        Outcome::Written
    }

    async fn replay_spools(&mut self, sealed: &mut HashSet<uuid::Uuid>) -> Outcome {
        let Some(spool) = self.shared.spool.as_ref() else {
            return Outcome::Written;
        };
        let left = match spool::left_spools(spool.dir(), &spool.path()) {
            Ok(left) => left,
            Err(error) => {
                tracing::error!(%error, dir = %spool.dir().display(),
                    "audit recorder: cannot read the spool directory; earlier spooled events stay there");
                return Outcome::Written;
            }
        };
        for mut file in left {
            if let Some(run) = file.sealed_by {
                sealed.insert(run);
            }
            let events = std::mem::take(&mut file.events);
            let count = events.len();
            if count > 0 {
                tracing::info!(path = %file.path.display(), events = count,
                    "audit recorder: replaying events spooled by an earlier run");
            }
            let max_batch = self.shared.config.max_batch_events;
            let mut events = events.into_iter().peekable();
            while events.peek().is_some() {
                for event in events.by_ref().take(max_batch) {
                    self.batch.push(event, Origin::Replayed, 0, None);
                }
                if self.write_batch().await == Outcome::Interrupted {
                    return Outcome::Interrupted;
                }
            }
            if let Err(error) = file.finish() {
                tracing::error!(%error, "audit recorder: a replayed spool file could not be removed; \
                    replaying it again later is harmless");
            }
        }
        Outcome::Written
    }

    /// Stores this run's report; failures are logged once until a report succeeds.
    async fn report(&mut self, stopped: bool) -> bool {
        self.last_report = Instant::now();
        let pending = if self.identity.durable {
            0
        } else {
            self.shared.counters.take_unwritten_peak()
        };
        let run = self.identity.report(pending, stopped);
        let written = tokio::time::timeout(
            self.shared.config.write_timeout,
            self.store.report_run(&run),
        )
        .await;
        match written {
            Ok(Ok(())) => {
                self.report_failing = false;
                true
            }
            Ok(Err(StoreError::Unsupported(_))) => false,
            Ok(Err(error)) => {
                if !self.report_failing {
                    tracing::warn!(%error, "audit recorder: cannot report its run to the store");
                }
                self.report_failing = true;
                false
            }
            Err(_) => {
                self.report_failing = true;
                false
            }
        }
    }

    /// Everything is written: record the clean stop (in the spool when the store cannot be
    /// told, so the next start does not mistake it for a crash).
    async fn stopped_cleanly(&mut self) {
        if !self.report_stop(self.shared.config.write_timeout).await {
            self.seal_spool();
        }
    }

    async fn report_stop(&mut self, limit: Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, self.report(true)).await,
            Ok(true)
        )
    }

    fn seal_spool(&self) {
        let Some(spool) = self.shared.spool.as_ref() else {
            return;
        };
        if let Err(error) = spool.seal() {
            tracing::error!(%error, path = %spool.path().display(),
                "audit recorder: cannot mark the spool as sealed; the next start will report \
                 this run as an unclean stop");
        }
    }

    /// Writes every event not yet written (the batch's unsettled ones and everything queued)
    /// to the spool, and closes the queue so that later submissions spool themselves.
    fn spool_remaining(&mut self, why: &str) {
        self.receiver.close();
        while let Ok(message) = self.receiver.try_recv() {
            if let Message::Event(queued) = message {
                self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
                self.batch.push_queued(queued);
            }
        }
        let batch = std::mem::take(&mut self.batch);
        let unsettled: Vec<usize> = (0..batch.len())
            .filter(|&i| !batch.entries[i].settled)
            .collect();
        if unsettled.is_empty() {
            return;
        }
        let events = unsettled.iter().map(|&i| &batch.events[i]);
        let spooled = match self.shared.spool.as_ref() {
            Some(spool) => match spool.write(events) {
                Ok(count) => {
                    tracing::warn!(events = count, path = %spool.path().display(), reason = why,
                        "audit recorder: events not yet written were spooled; the next start \
                         replays them");
                    true
                }
                Err(error) => {
                    tracing::error!(%error, path = %spool.path().display(),
                        "audit recorder: the spool file could not be written");
                    false
                }
            },
            None => false,
        };
        let mut reserved = 0;
        let mut bytes = 0;
        let mut batch = batch;
        for &i in &unsettled {
            let entry = &mut batch.entries[i];
            if !spooled {
                tracing::error!(event = %serde_json::to_string(&batch.events[i]).unwrap_or_default(),
                    reason = why, "audit recorder: an audit event could be neither written nor \
                    spooled (no spool directory configured?); here is its content");
            }
            if entry.origin == Origin::Submitted {
                reserved += 1;
                bytes += entry.bytes;
            }
            if let Some(waiter) = entry.waiter.take() {
                let _ = waiter.send(());
            }
            entry.settled = true;
        }
        let counter = if spooled {
            &self.shared.counters.spooled
        } else {
            &self.shared.counters.lost
        };
        Counters::add(counter, unsettled.len() as u64);
        self.shared.counters.written(reserved as u64);
        self.shared.capacity.release(reserved, bytes);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.spool_remaining(
            "the recorder's task stopped before Recorder::shutdown (was the runtime shut down \
             without it?)",
        );
        // Everything unwritten is in the spool now: not a crash, whatever the store says.
        self.seal_spool();
    }
}

/// Whether more events may join the batch soon enough to wait for them.
///
/// In durable mode every submitter is blocked until the commit, so when every reserved event
/// has already been submitted nobody else is about to join: lingering would only add
/// `max_batch_wait` to each response (profiling the load harness showed durable SQLite
/// spending most of each request's 10 ms in this wait). Group commit still happens: events
/// submitted while a batch is being written form the next one. Buffered submitters never
/// wait, so there the linger only trades latency nobody sees for fewer transactions.
fn worth_lingering(shared: &Shared) -> bool {
    if shared.config.delivery != DeliveryMode::Durable {
        return true;
    }
    let (held, _) = shared.capacity.in_use();
    held > shared.waiting.load(Ordering::Acquire)
}
