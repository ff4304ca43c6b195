//! The background task that turns queued events into batched, retried transactions.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::metrics::Counters;
use super::{DeliveryMode, Shared};
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

/// The events of one transaction and the capacity and waiters they release on commit.
#[derive(Default)]
struct Batch {
    events: Vec<AuditEvent>,
    /// Events in `events` that hold queue capacity (a gap record does not).
    reserved_events: usize,
    bytes: usize,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn push(&mut self, queued: Queued) {
        self.events.push(queued.event);
        self.reserved_events += 1;
        self.bytes += queued.bytes;
        self.waiters.extend(queued.commit);
    }
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    store: Arc<dyn AuditStore>,
    mut receiver: mpsc::UnboundedReceiver<Message>,
) {
    let max_batch = shared.config.max_batch_events;
    let mut stop = false;
    while !stop {
        let mut batch = Batch::default();
        let first = if shared.gap_pending() {
            match tokio::time::timeout(GAP_IDLE_CHECK, receiver.recv()).await {
                Ok(message) => message,
                Err(_) => {
                    write_gap_if_recovered(&shared, &*store).await;
                    continue;
                }
            }
        } else {
            receiver.recv().await
        };
        match first {
            Some(Message::Event(queued)) => batch.push(queued),
            Some(Message::Stop) | None => stop = true,
        }
        // Linger so that concurrent requests share one transaction. The writer does not
        // wait on the channel meanwhile: a pending receive would be woken (a cross-thread
        // unpark) by every single submission. Submitters wake it once, when a full batch is
        // waiting; otherwise the deadline does.
        if !stop && batch.events.len() < max_batch && !shared.config.max_batch_wait.is_zero() {
            let deadline = Instant::now() + shared.config.max_batch_wait;
            // `waiting` still counts the event just received.
            if shared.waiting.load(Ordering::Acquire) < max_batch && worth_lingering(&shared) {
                let full = shared.batch_full.notified();
                let _ = tokio::time::timeout_at(deadline, full).await;
            }
        }
        while !stop && batch.events.len() < max_batch {
            match receiver.try_recv() {
                Ok(Message::Event(queued)) => batch.push(queued),
                Ok(Message::Stop) | Err(TryRecvError::Disconnected) => stop = true,
                Err(TryRecvError::Empty) => break,
            }
        }
        if stop {
            // Shutdown waited until no capacity was held, so anything left is already here.
            while let Ok(Message::Event(queued)) = receiver.try_recv() {
                batch.push(queued);
            }
            if let Some(gap) = shared.take_gap() {
                batch.events.push(gap);
            }
        }
        shared
            .waiting
            .fetch_sub(batch.reserved_events, Ordering::AcqRel);
        if !batch.events.is_empty() {
            commit(&shared, &*store, batch).await;
        }
        if !stop {
            write_gap_if_recovered(&shared, &*store).await;
        }
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

/// Writes a pending gap record once the queue is at most half full: by then the overload
/// that caused the gap has passed, and one record covers the whole episode.
async fn write_gap_if_recovered(shared: &Shared, store: &dyn AuditStore) {
    if !shared.gap_pending() {
        return;
    }
    let (queued, _) = shared.capacity.in_use();
    if queued > shared.capacity.max_events() / 2 {
        return;
    }
    if let Some(gap) = shared.take_gap() {
        let batch = Batch {
            events: vec![gap],
            ..Batch::default()
        };
        commit(shared, store, batch).await;
    }
}

/// Appends `batch`, retrying with backoff until the store accepts it, then releases its
/// capacity and wakes its durable waiters.
async fn commit(shared: &Shared, store: &dyn AuditStore, batch: Batch) {
    let counters = &shared.counters;
    let mut failures: u32 = 0;
    loop {
        match store.append(&batch.events).await {
            Ok(()) => break,
            Err(error) => {
                Counters::add(&counters.failed_batches, 1);
                let delay = shared.config.retry.delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(
                    %error,
                    events = batch.events.len(),
                    attempt = failures,
                    retry_in_ms = delay.as_millis() as u64,
                    "audit batch write failed; retrying",
                );
                tokio::time::sleep(delay).await;
                Counters::add(&counters.retries, 1);
            }
        }
    }
    if failures > 0 {
        tracing::info!(
            events = batch.events.len(),
            attempts = failures + 1,
            "audit batch written after retries"
        );
    }
    Counters::add(&counters.recorded, batch.events.len() as u64);
    Counters::add(&counters.batches, 1);
    let gaps = batch.events.len() - batch.reserved_events;
    if gaps > 0 {
        Counters::add(&counters.gaps, gaps as u64);
    }
    shared.capacity.release(batch.reserved_events, batch.bytes);
    for waiter in batch.waiters {
        // A waiter that went away (client disconnected) no longer needs telling.
        let _ = waiter.send(());
    }
}
