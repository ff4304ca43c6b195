//! Reservations: queue capacity taken before an action runs, filled with its event after.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::writer::{Message, Queued};
use super::{DeliveryMode, Shared};
use crate::event::AuditEvent;

/// Room for one event in a recorder's queue, reserved before the action it describes runs.
///
/// Holding a `Reservation` guarantees that [`Reservation::submit`] will find room, so an
/// accepted request never loses its event to a full queue. Dropping it unsubmitted gives the
/// room back.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use audit_store::{Action, AuditEvent, Recorder, SqliteStore};
///
/// let recorder = Recorder::builder(SqliteStore::connect("sqlite::memory:").await?).start()?;
/// let reservation = recorder.try_reserve()?;        // before the work
/// // ... do the work ...
/// let event = AuditEvent::builder("Model", Action::Train).internal("nightly-retrain").build();
/// reservation.submit(event).await?;                 // buffered: resolves at once
/// recorder.shutdown().await?;                       // flushes the queue
/// assert_eq!(recorder.metrics().recorded, 1);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[must_use = "a reservation holds queue capacity until it is submitted or dropped"]
pub struct Reservation {
    shared: Option<Arc<Shared>>,
    bytes: usize,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes)
            .field("submitted", &self.shared.is_none())
            .finish()
    }
}

impl Reservation {
    pub(crate) fn new(shared: Arc<Shared>, bytes: usize) -> Self {
        Self {
            shared: Some(shared),
            bytes,
        }
    }

    /// Queues `event` in the reserved slot.
    ///
    /// The returned [`Delivery`] resolves at once in [`DeliveryMode::Buffered`], and once the
    /// batch holding the event has committed in [`DeliveryMode::Durable`]. It may be dropped
    /// without changing what is stored: the event is queued either way.
    pub fn submit(mut self, event: AuditEvent) -> Delivery {
        let Some(shared) = self.shared.take() else {
            return Delivery::failed();
        };
        let actual = event.approximate_size();
        shared.capacity.resize(self.bytes, actual);
        let (commit, receiver) = match shared.config.delivery {
            DeliveryMode::Durable => {
                let (sender, receiver) = oneshot::channel();
                (Some(sender), Some(receiver))
            }
            DeliveryMode::Buffered => (None, None),
        };
        let queued = Queued {
            event,
            bytes: actual,
            commit,
        };
        // Counted before sending so the writer, which subtracts what it takes, never sees
        // the count go below zero.
        let waiting = shared.waiting.fetch_add(1, Ordering::AcqRel) + 1;
        shared.counters.acknowledge();
        match shared.sender.send(Message::Event(queued)) {
            Ok(()) => {
                // In durable mode the writer also lingers only while reserved events are
                // still to come; the last of them ends the linger (see `worth_lingering`).
                let all_in = shared.config.delivery == DeliveryMode::Durable
                    && waiting >= shared.capacity.in_use().0;
                if waiting == shared.config.max_batch_events || all_in {
                    shared.batch_full.notify_one();
                }
                match receiver {
                    Some(receiver) => Delivery::waiting(receiver),
                    None => Delivery::done(),
                }
            }
            Err(unsent) => {
                // The writer has stopped (shutdown passed its deadline, or the runtime is
                // going away): keep the event in the spool, for the next start to replay.
                shared.waiting.fetch_sub(1, Ordering::AcqRel);
                shared.capacity.release(1, actual);
                let Message::Event(queued) = unsent.0 else {
                    return Delivery::failed();
                };
                if shared.spool_late(&queued.event) {
                    Delivery::done()
                } else {
                    Delivery::failed()
                }
            }
        }
    }

    /// The delivery mode the event will be written with.
    pub fn delivery_mode(&self) -> DeliveryMode {
        self.shared
            .as_ref()
            .map_or(DeliveryMode::Buffered, |shared| shared.config.delivery)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.capacity.release(1, self.bytes);
        }
    }
}

/// The event could not be confirmed as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The background writer stopped (the runtime is shutting down) before the event's
    /// batch committed.
    #[error("the audit recorder's writer stopped before the event was committed")]
    WriterStopped,
}

/// Completion of a [`Reservation::submit`]: resolves when the event is as safe as the
/// recorder's [`DeliveryMode`] promises (queued, or committed).
#[derive(Debug)]
#[must_use = "in durable mode, await the delivery to know the event is committed"]
pub struct Delivery {
    state: DeliveryState,
}

#[derive(Debug)]
enum DeliveryState {
    Done,
    Failed,
    Waiting(oneshot::Receiver<()>),
}

impl Delivery {
    fn done() -> Self {
        Self {
            state: DeliveryState::Done,
        }
    }
    fn failed() -> Self {
        Self {
            state: DeliveryState::Failed,
        }
    }
    fn waiting(receiver: oneshot::Receiver<()>) -> Self {
        Self {
            state: DeliveryState::Waiting(receiver),
        }
    }

    /// True when awaiting this delivery will wait for a commit (durable mode).
    pub fn is_pending(&self) -> bool {
        matches!(self.state, DeliveryState::Waiting(_))
    }
}

impl Future for Delivery {
    type Output = Result<(), DeliveryError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = match &mut self.state {
            DeliveryState::Done => Ok(()),
            DeliveryState::Failed => Err(DeliveryError::WriterStopped),
            DeliveryState::Waiting(receiver) => match Pin::new(receiver).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => Ok(()),
                Poll::Ready(Err(_)) => Err(DeliveryError::WriterStopped),
            },
        };
        self.state = if result.is_ok() {
            DeliveryState::Done
        } else {
            DeliveryState::Failed
        };
        Poll::Ready(result)
    }
}
