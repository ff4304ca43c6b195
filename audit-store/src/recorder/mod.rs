//! The recorder: a bounded, batching background writer in front of an [`AuditStore`].
//!
//! Capacity is reserved before an action runs ([`Recorder::try_reserve`],
//! [`Recorder::admit`]) and filled with the action's event afterwards
//! ([`Reservation::submit`]), so an accepted action always has room for its event. One
//! background task writes queued events in batches, retries failed batches with exponential
//! backoff (never dropping one), and on [`Recorder::shutdown`] writes everything that was
//! accepted before stopping.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use audit_store::{Action, AuditEvent, DeliveryMode, Recorder, SqliteStore};
//!
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! let recorder = Recorder::builder(store)
//!     .delivery(DeliveryMode::Durable)
//!     .max_queue_events(5_000)
//!     .admission_wait(Duration::from_millis(500))
//!     .start()?;
//!
//! // A background job records its own events; durable mode returns after the commit.
//! recorder
//!     .record(AuditEvent::builder("Data Harmonization", Action::Sync).internal("nightly-sync").build())
//!     .await?;
//! assert_eq!(recorder.metrics().recorded, 1);
//! recorder.shutdown().await?;
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```

mod capacity;
mod checkpoints;
mod config;
mod metrics;
mod permit;
mod writer;

#[cfg(all(test, feature = "sqlite"))]
mod tests;

use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::event::{Action, AuditEvent, rfc3339_micros};
use crate::store::AuditStore;
use capacity::{Capacity, Unavailable};
use metrics::Counters;
use writer::Message;

pub use checkpoints::CheckpointPublisher;
pub use config::{DeliveryMode, InvalidConfig, OverloadPolicy, RecorderConfig, RetryPolicy};
pub use metrics::RecorderMetrics;
pub use permit::{Delivery, DeliveryError, Reservation};

/// The category of gap records.
pub const GAP_CATEGORY: &str = "Audit Log";
/// The action name of gap records.
pub const GAP_ACTION: &str = "gap";
/// The `route`/`path` (job name) of gap records.
pub const GAP_SOURCE: &str = "audit-recorder";

/// The window of events missed under [`OverloadPolicy::Proceed`] not yet reported.
#[derive(Debug, Clone, Copy)]
struct GapWindow {
    missed: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

pub(crate) struct Shared {
    capacity: Capacity,
    counters: Counters,
    config: RecorderConfig,
    sender: mpsc::UnboundedSender<Message>,
    gap: Mutex<Option<GapWindow>>,
    writer: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    /// Events sent to the writer and not yet taken into a batch.
    waiting: AtomicUsize,
    /// Woken when `waiting` reaches a full batch, so a lingering writer starts at once.
    batch_full: tokio::sync::Notify,
    /// Writes signed checkpoints (when the store has a signer).
    checkpointer: checkpoints::Checkpointer,
    /// The periodic checkpoint task, aborted at shutdown.
    periodic: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn gap(&self) -> std::sync::MutexGuard<'_, Option<GapWindow>> {
        // Only plain data is written under this lock, so a poisoned one is still consistent.
        self.gap.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note_missed(&self) {
        let now = Utc::now();
        let mut gap = self.gap();
        let window = gap.get_or_insert(GapWindow {
            missed: 0,
            first: now,
            last: now,
        });
        window.missed += 1;
        window.last = now;
        drop(gap);
        Counters::add(&self.counters.missed, 1);
    }

    pub(crate) fn gap_pending(&self) -> bool {
        self.gap().is_some()
    }

    /// The gap record for every event missed since the last one, if any were.
    pub(crate) fn take_gap(&self) -> Option<AuditEvent> {
        let window = self.gap().take()?;
        let action = Action::custom(GAP_ACTION).unwrap_or(Action::View);
        let mut event = AuditEvent::builder(GAP_CATEGORY, action)
            .occurred_at(window.first)
            .internal(GAP_SOURCE)
            .attribute("missed_events", window.missed)
            .attribute(
                "first_missed_at",
                Value::String(rfc3339_micros::format(&window.first)),
            )
            .attribute(
                "last_missed_at",
                Value::String(rfc3339_micros::format(&window.last)),
            )
            .attribute(
                "reason",
                "the audit queue stayed full past the admission wait (overload policy: proceed)",
            )
            .build();
        event.reason = Some("audit pipeline overloaded".to_owned());
        Some(event)
    }
}

/// Why a reservation was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReserveError {
    /// The queue stayed full for the whole admission wait.
    #[error("the audit queue is full")]
    Full,
    /// The recorder is shutting down and accepts no new events.
    #[error("the audit recorder is shutting down")]
    ShuttingDown,
}

impl From<Unavailable> for ReserveError {
    fn from(unavailable: Unavailable) -> Self {
        match unavailable {
            Unavailable::Full => ReserveError::Full,
            Unavailable::Closed => ReserveError::ShuttingDown,
        }
    }
}

/// The decision for one action about to run; see [`Recorder::admit`].
#[derive(Debug)]
#[must_use = "an admission that is ignored either wastes a reservation or an overload decision"]
pub enum Admission {
    /// Room is reserved: run the action, then [`Reservation::submit`] its event.
    Reserved(Reservation),
    /// Overloaded under [`OverloadPolicy::Proceed`]: run the action without recording it;
    /// the miss is counted and reported by a gap record.
    Unrecorded,
    /// Do not run the action ([`OverloadPolicy::Reject`], or shutting down).
    Refused(ReserveError),
}

/// [`Recorder::record`] failed; the event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// No reservation could be made.
    #[error(transparent)]
    Reserve(#[from] ReserveError),
    /// The event was queued but its commit could not be confirmed.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

/// [`Recorder::shutdown_within`] ran out of time; the events still pending stay queued and
/// the writer keeps trying for as long as the runtime lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Events were still reserved or queued when the time ran out.
    #[error("audit recorder shutdown timed out with {pending} events not yet committed")]
    TimedOut {
        /// Events reserved or queued but not committed.
        pending: usize,
    },
    /// The writer task ended abnormally (it panicked or its runtime was shut down).
    #[error("the audit recorder's writer task failed")]
    WriterFailed,
}

/// Failure to start a recorder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting cannot work.
    #[error(transparent)]
    InvalidConfig(#[from] InvalidConfig),
    /// `start` was called outside a Tokio runtime, where the writer task cannot run.
    #[error("the audit recorder must be started inside a Tokio runtime")]
    NoRuntime,
}

/// Configures and starts a [`Recorder`]; see [`Recorder::builder`].
#[must_use = "a recorder builder does nothing until started"]
pub struct RecorderBuilder {
    store: Arc<dyn AuditStore>,
    config: RecorderConfig,
    publisher: Option<Arc<dyn CheckpointPublisher>>,
}

impl fmt::Debug for RecorderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecorderBuilder")
            .field("store", &self.store)
            .field("config", &self.config)
            .field("publisher", &self.publisher.is_some())
            .finish()
    }
}

impl RecorderBuilder {
    /// Most events reserved or queued at once (default 10,000).
    pub fn max_queue_events(mut self, events: usize) -> Self {
        self.config.max_queue_events = events;
        self
    }
    /// Most approximate bytes reserved or queued at once (default 64 MiB).
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.config.max_queue_bytes = bytes;
        self
    }
    /// Bytes reserved for an event before it is known (default 4 KiB). When the event turns
    /// out larger, the difference is still granted (the action was accepted) and delays later
    /// admissions instead.
    pub fn reserved_bytes_per_event(mut self, bytes: usize) -> Self {
        self.config.reserved_bytes_per_event = bytes;
        self
    }
    /// Most events per transaction (default 500).
    pub fn max_batch_events(mut self, events: usize) -> Self {
        self.config.max_batch_events = events;
        self
    }
    /// How long the writer lingers after the first event of a batch for more (default 5 ms).
    /// Events that arrive while a batch is being written never wait for this. In durable
    /// mode the linger also ends as soon as every reserved event has been submitted, since
    /// nobody else is about to join and every submitter is waiting for the commit.
    pub fn max_batch_wait(mut self, wait: Duration) -> Self {
        self.config.max_batch_wait = wait;
        self
    }
    /// How long an admission waits for capacity before the overload policy applies
    /// (default 2 s).
    pub fn admission_wait(mut self, wait: Duration) -> Self {
        self.config.admission_wait = wait;
        self
    }
    /// Buffered (default) or durable delivery.
    pub fn delivery(mut self, mode: DeliveryMode) -> Self {
        self.config.delivery = mode;
        self
    }
    /// Reject (default) or proceed when saturated.
    pub fn overload(mut self, policy: OverloadPolicy) -> Self {
        self.config.overload = policy;
        self
    }
    /// Backoff between failed writes (default 50 ms doubling to 5 s).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }
    /// How often a signed checkpoint of the hash chain is written while events arrive
    /// (default 60 s; zero writes one only at shutdown). Checkpoints need a store with a
    /// signer (`SqliteStore::with_signer`, `PostgresStore::with_signer`).
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.config.checkpoint_interval = interval;
        self
    }
    /// Hands every checkpoint written to `publisher` (a closure works), so it can be
    /// published where the database's writers cannot alter it.
    pub fn on_checkpoint(mut self, publisher: impl CheckpointPublisher) -> Self {
        self.publisher = Some(Arc::new(publisher));
        self
    }
    /// Replaces every setting at once.
    pub fn config(mut self, config: RecorderConfig) -> Self {
        self.config = config;
        self
    }

    /// Validates the settings and spawns the writer task on the current Tokio runtime.
    pub fn start(self) -> Result<Recorder, StartError> {
        self.config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let interval = self.config.checkpoint_interval;
        let shared = Arc::new(Shared {
            checkpointer: checkpoints::Checkpointer::new(self.store.clone(), self.publisher),
            periodic: Mutex::new(None),
            capacity: Capacity::new(self.config.max_queue_events, self.config.max_queue_bytes),
            counters: Counters::default(),
            config: self.config,
            sender,
            gap: Mutex::new(None),
            writer: tokio::sync::Mutex::new(None),
            waiting: AtomicUsize::new(0),
            batch_full: tokio::sync::Notify::new(),
        });
        let task = runtime.spawn(writer::run(shared.clone(), self.store, receiver));
        if let Ok(mut writer) = shared.writer.try_lock() {
            *writer = Some(task);
        }
        if !interval.is_zero() {
            let periodic = runtime.spawn(checkpoints::run_periodic(shared.clone(), interval));
            *shared
                .periodic
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(periodic);
        }
        Ok(Recorder { shared })
    }
}

/// A handle to a running recorder; cheap to clone, all clones share one queue and writer.
///
/// Create one with [`Recorder::builder`]. See the [module documentation](self) for the
/// lifecycle, and call [`Recorder::shutdown`] after the server stopped accepting requests.
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("config", &self.shared.config)
            .field("metrics", &self.metrics())
            .finish()
    }
}

impl Recorder {
    /// Starts configuring a recorder writing to `store` (any [`AuditStore`], including an
    /// `Arc<dyn AuditStore>`).
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use audit_store::{OverloadPolicy, Recorder, SqliteStore};
    /// let recorder = Recorder::builder(SqliteStore::connect("sqlite::memory:").await?)
    ///     .overload(OverloadPolicy::Proceed)
    ///     .start()?;
    /// assert_eq!(recorder.config().overload, OverloadPolicy::Proceed);
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn builder(store: impl AuditStore) -> RecorderBuilder {
        RecorderBuilder {
            store: Arc::new(store),
            config: RecorderConfig::default(),
            publisher: None,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &RecorderConfig {
        &self.shared.config
    }

    /// The current counters.
    pub fn metrics(&self) -> RecorderMetrics {
        RecorderMetrics::read(&self.shared.counters, self.shared.capacity.in_use())
    }

    /// Reserves room for one event if there is some right now; never waits, counts nothing.
    pub fn try_reserve(&self) -> Result<Reservation, ReserveError> {
        let bytes = self.shared.config.reserved_bytes_per_event;
        self.shared.capacity.try_reserve(bytes)?;
        Ok(Reservation::new(self.shared.clone(), bytes))
    }

    /// Reserves room for one event, waiting as long as it takes (until shutdown begins).
    /// Suited to background jobs, which can simply be slowed down.
    pub async fn reserve(&self) -> Result<Reservation, ReserveError> {
        let bytes = self.shared.config.reserved_bytes_per_event;
        self.shared.capacity.reserve(bytes, None).await?;
        Ok(Reservation::new(self.shared.clone(), bytes))
    }

    /// Decides whether an action about to run may run, and reserves room for its event:
    /// waits up to the admission wait for capacity, then applies the overload policy. A
    /// refusal and a miss are counted in [`Recorder::metrics`].
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use audit_store::{Action, Admission, AuditEvent, Recorder, SqliteStore};
    /// let recorder = Recorder::builder(SqliteStore::connect("sqlite::memory:").await?).start()?;
    /// match recorder.admit().await {
    ///     Admission::Reserved(reservation) => {
    ///         let event = AuditEvent::builder("Model", Action::Rescore).internal("rescore").build();
    ///         reservation.submit(event).await?;
    ///     }
    ///     Admission::Unrecorded => { /* run without an event; a gap record follows */ }
    ///     Admission::Refused(why) => return Err(why.into()),
    /// }
    /// recorder.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn admit(&self) -> Admission {
        let config = &self.shared.config;
        let deadline = Instant::now() + config.admission_wait;
        let bytes = config.reserved_bytes_per_event;
        match self.shared.capacity.reserve(bytes, Some(deadline)).await {
            Ok(()) => Admission::Reserved(Reservation::new(self.shared.clone(), bytes)),
            Err(Unavailable::Full) if config.overload == OverloadPolicy::Proceed => {
                self.shared.note_missed();
                Admission::Unrecorded
            }
            Err(unavailable) => {
                Counters::add(&self.shared.counters.refused, 1);
                Admission::Refused(unavailable.into())
            }
        }
    }

    /// Records an event that did not come from an HTTP request (a background job, a
    /// scheduled task): waits for room as long as needed, queues it, and in durable mode
    /// waits for its commit.
    pub async fn record(&self, event: AuditEvent) -> Result<(), RecordError> {
        let reservation = self.reserve().await?;
        reservation.submit(event).await?;
        Ok(())
    }

    /// Writes a signed checkpoint of the chain head now and hands it to the publisher;
    /// `None` when the store has no signer or writing failed (see the metrics).
    pub async fn checkpoint_now(&self) -> Option<crate::Checkpoint> {
        self.shared
            .checkpointer
            .write(crate::CheckpointKind::Manual, &self.shared.counters)
            .await
    }

    /// True once [`Recorder::shutdown`] has begun: no new reservation is granted.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.capacity.is_closed()
    }

    /// Stops admitting events, waits for every outstanding reservation to be submitted (or
    /// dropped) and every queued event to commit — however long the database needs — then
    /// writes any pending gap record and stops the writer. Call it after the server's
    /// graceful shutdown completed. Calling it again (from any clone) waits again and
    /// returns once everything is written.
    pub async fn shutdown(&self) -> Result<(), ShutdownError> {
        self.stop(None).await
    }

    /// Like [`Recorder::shutdown`], giving up after `limit`. On timeout the events not yet
    /// committed stay queued and the writer keeps trying while the runtime lives.
    pub async fn shutdown_within(&self, limit: Duration) -> Result<(), ShutdownError> {
        self.stop(Some(Instant::now() + limit)).await
    }

    async fn stop(&self, deadline: Option<Instant>) -> Result<(), ShutdownError> {
        let capacity = &self.shared.capacity;
        capacity.close();
        if !capacity.wait_empty(deadline).await {
            return Err(ShutdownError::TimedOut {
                pending: capacity.in_use().0,
            });
        }
        let mut writer = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, self.shared.writer.lock())
                .await
                .map_err(|_| ShutdownError::TimedOut { pending: 0 })?,
            None => self.shared.writer.lock().await,
        };
        let Some(task) = writer.as_mut() else {
            return Ok(());
        };
        // The writer may already have exited if the runtime is going away; then there is
        // nobody left to tell.
        let _ = self.shared.sender.send(Message::Stop);
        let joined = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, task).await.map_err(|_| {
                ShutdownError::TimedOut {
                    pending: usize::from(self.shared.gap_pending()),
                }
            })?,
            None => task.await,
        };
        *writer = None;
        joined.map_err(|_| ShutdownError::WriterFailed)?;
        // Everything is committed: vouch for the final head.
        let periodic = self
            .shared
            .periodic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(periodic) = periodic {
            periodic.abort();
        }
        self.shared
            .checkpointer
            .write(crate::CheckpointKind::Shutdown, &self.shared.counters)
            .await;
        Ok(())
    }
}
