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
mod commit;
mod config;
mod metrics;
mod permit;
mod runs;
mod spool;
mod writer;

#[cfg(all(test, feature = "sqlite"))]
mod tests;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
use commit::Outcome;
use metrics::Counters;
use spool::Spool;
use writer::{Message, Writer};

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
    /// This run's spool, when a spool directory is known.
    spool: Option<Spool>,
    /// Set when shutdown's deadline passed: the writer stops writing and spools.
    spool_now: AtomicBool,
    spool_wakeup: tokio::sync::Notify,
    /// Set once the writer replayed earlier spools and judged the previous run.
    recovered: AtomicBool,
    recovered_wakeup: tokio::sync::Notify,
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

    /// Asks the writer to stop writing and spool what is left.
    fn request_spool(&self) {
        self.spool_now.store(true, Ordering::Release);
        self.spool_wakeup.notify_waiters();
    }

    /// Resolves once a spool has been requested.
    pub(crate) async fn spool_requested(&self) {
        loop {
            let wakeup = self.spool_wakeup.notified();
            tokio::pin!(wakeup);
            wakeup.as_mut().enable();
            if self.spool_now.load(Ordering::Acquire) {
                return;
            }
            wakeup.await;
        }
    }

    /// Runs `work` unless a spool is requested first (then `None`).
    pub(crate) async fn interruptible<F: Future>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = self.spool_requested() => None,
            output = work => Some(output),
        }
    }

    /// Waits out the backoff after the `failures`-th consecutive failure.
    pub(crate) async fn backoff(&self, failures: u32) -> Outcome {
        let delay = self.config.retry.delay(failures);
        match self.interruptible(tokio::time::sleep(delay)).await {
            Some(()) => Outcome::Written,
            None => Outcome::Interrupted,
        }
    }

    pub(crate) fn mark_recovered(&self) {
        self.recovered.store(true, Ordering::Release);
        self.recovered_wakeup.notify_waiters();
    }

    /// Keeps an event submitted after the writer stopped: in the spool when there is one,
    /// else in the error log (counted as lost). True when spooled.
    pub(crate) fn spool_late(&self, event: &AuditEvent) -> bool {
        self.counters.written(1);
        let spooled = match &self.spool {
            Some(spool) => match spool.write(std::iter::once(event)) {
                Ok(_) => true,
                Err(error) => {
                    tracing::error!(%error, path = %spool.path().display(),
                        "audit recorder: the spool file could not be written");
                    false
                }
            },
            None => false,
        };
        if spooled {
            Counters::add(&self.counters.spooled, 1);
        } else {
            Counters::add(&self.counters.lost, 1);
            tracing::error!(
                event = %serde_json::to_string(event).unwrap_or_default(),
                "audit recorder: an audit event arrived after the writer stopped and there is                  no spool to keep it in; here is its content"
            );
        }
        spooled
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

/// A shutdown that could not write everything to the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// The deadline passed with events unwritten (the database was down or slow); they were
    /// written to the local spool, which the next start replays into the store first.
    #[error(
        "audit recorder shutdown deadline passed: {events} events were spooled to {} and will \
         be written at the next start",
        path.display()
    )]
    Spooled {
        /// Events spooled by this shutdown.
        events: u64,
        /// The spool file.
        path: PathBuf,
    },
    /// The deadline passed with events unwritten and there is no spool directory: they are
    /// in the error log, and lost to the store if the process exits now.
    #[error(
        "audit recorder shutdown deadline passed with {pending} events not written and no \
         spool directory to keep them in"
    )]
    TimedOut {
        /// Events reserved or queued but not written.
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
    /// Whether the batch shape was chosen (`max_batch_events`, `max_batch_wait`, `config`):
    /// otherwise [`RecorderBuilder::delivery`] gives the mode's own.
    batch_events_chosen: bool,
    batch_wait_chosen: bool,
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
    /// Most events per transaction (default 2,000 buffered, 500 durable:
    /// [`DeliveryMode::default_max_batch_events`]), whichever is set first.
    pub fn max_batch_events(mut self, events: usize) -> Self {
        self.config.max_batch_events = events;
        self.batch_events_chosen = true;
        self
    }
    /// How long the writer lingers after the first event of a batch for more (default 50 ms
    /// buffered, 5 ms durable: [`DeliveryMode::default_max_batch_wait`]), whichever is set
    /// first. Events that arrive while a batch is being written never wait for this. In
    /// durable mode the linger also ends as soon as every reserved event has been submitted,
    /// since nobody else is about to join and every submitter is waiting for the commit.
    pub fn max_batch_wait(mut self, wait: Duration) -> Self {
        self.config.max_batch_wait = wait;
        self.batch_wait_chosen = true;
        self
    }
    /// How long an admission waits for capacity before the overload policy applies
    /// (default 2 s).
    pub fn admission_wait(mut self, wait: Duration) -> Self {
        self.config.admission_wait = wait;
        self
    }
    /// Buffered (default) or durable delivery. The batch shape follows the mode unless
    /// [`max_batch_events`](Self::max_batch_events) or
    /// [`max_batch_wait`](Self::max_batch_wait) chose it.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use audit_store::{DeliveryMode, Recorder, SqliteStore};
    /// let recorder = Recorder::builder(SqliteStore::connect("sqlite::memory:").await?)
    ///     .max_batch_events(100)
    ///     .delivery(DeliveryMode::Durable)
    ///     .start()?;
    /// assert_eq!(recorder.config().max_batch_events, 100);
    /// assert_eq!(recorder.config().max_batch_wait, Duration::from_millis(5));
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn delivery(mut self, mode: DeliveryMode) -> Self {
        self.config.delivery = mode;
        if !self.batch_events_chosen {
            self.config.max_batch_events = mode.default_max_batch_events();
        }
        if !self.batch_wait_chosen {
            self.config.max_batch_wait = mode.default_max_batch_wait();
        }
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
    /// How long [`Recorder::shutdown`] may take (default 30 s). Whatever is still unwritten
    /// when it passes (the database is down or slow) is written to the spool, and the next
    /// start replays it into the store before anything else.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }
    /// How long one attempt to write a batch may take before it is abandoned and retried
    /// (default 30 s). An attempt abandoned after its commit went through is recognised on
    /// retry: appends are idempotent.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.config.write_timeout = timeout;
        self
    }
    /// How often the recorder reports its run to the store (default 1 s, and at once when
    /// the count of unwritten events doubled since the last report): the next start
    /// judges an unclean stop, and how many acknowledged events it may have cost, by the
    /// last report.
    pub fn report_interval(mut self, interval: Duration) -> Self {
        self.config.report_interval = interval;
        self
    }
    /// The name of this recorder instance (default: the host name). Processes writing to
    /// one database need distinct names, so that each one's runs are told apart.
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.config.instance = Some(name.into());
        self
    }
    /// Where events that cannot be written by the shutdown deadline are spooled (an
    /// fsynced NDJSON file per run), and replayed from at the next start. The default is
    /// the store's (`audit.db-spool` beside a SQLite file `audit.db`); a store that is not a
    /// local file has none, so set one (on a persistent disk) for PostgreSQL.
    pub fn spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.spool_dir = Some(dir.into());
        self
    }
    /// Hands every checkpoint written to `publisher` (a closure works), so it can be
    /// published where the database's writers cannot alter it.
    pub fn on_checkpoint(mut self, publisher: impl CheckpointPublisher) -> Self {
        self.publisher = Some(Arc::new(publisher));
        self
    }
    /// Replaces every setting at once (the batch shape included: a later
    /// [`delivery`](Self::delivery) keeps it).
    pub fn config(mut self, config: RecorderConfig) -> Self {
        self.config = config;
        self.batch_events_chosen = true;
        self.batch_wait_chosen = true;
        self
    }

    /// Validates the settings and spawns the writer task on the current Tokio runtime.
    ///
    /// Before the first new event, the writer replays what earlier runs spooled and checks
    /// whether the previous run of this instance stopped cleanly (a gap record says so when
    /// it did not); [`Recorder::recovered`] waits for that.
    pub fn start(self) -> Result<Recorder, StartError> {
        self.config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let interval = self.config.checkpoint_interval;
        let identity = runs::Identity::new(
            self.config.instance.as_deref(),
            self.config.delivery,
            self.config.max_queue_events,
        );
        let spool_dir = self
            .config
            .spool_dir
            .clone()
            .or_else(|| self.store.default_spool_dir());
        if spool_dir.is_none() {
            tracing::warn!(
                "audit recorder: no spool directory (RecorderBuilder::spool_dir); events still \
                 unwritten at the shutdown deadline will be logged, not kept"
            );
        }
        let spool = spool_dir.map(|dir| Spool::new(dir, &identity.instance, identity.run_id));
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
            spool,
            spool_now: AtomicBool::new(false),
            spool_wakeup: tokio::sync::Notify::new(),
            recovered: AtomicBool::new(false),
            recovered_wakeup: tokio::sync::Notify::new(),
        });
        let writer = Writer::new(shared.clone(), self.store, receiver, identity);
        let task = runtime.spawn(writer.run());
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
        Ok(Recorder {
            _handle: Arc::new(Handle {
                shared: shared.clone(),
            }),
            shared,
        })
    }
}

/// A handle to a running recorder; cheap to clone, all clones share one queue and writer.
///
/// Create one with [`Recorder::builder`]. See the [module documentation](self) for the
/// lifecycle, and call [`Recorder::shutdown`] after the server stopped accepting requests.
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
    /// Shared by the clones a host holds (not by reservations or the writer), so its `Drop`
    /// runs when the host lets go of the last one.
    _handle: Arc<Handle>,
}

/// Says so, loudly, when a host drops its last [`Recorder`] without shutting it down while
/// events are still unwritten. The writer keeps writing them while the runtime runs, and
/// spools the rest if the runtime stops first.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.shared.capacity.is_closed() {
            return;
        }
        let (queued, _) = self.shared.capacity.in_use();
        if queued > 0 {
            tracing::error!(
                target: "audit_store::recorder",
                queued,
                "audit recorder dropped without Recorder::shutdown while {queued} events were \
                 still unwritten; they are written while the runtime runs and spooled if it \
                 stops first — call shutdown (or Audit::serve) after the server stops"
            );
        }
    }
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
            batch_events_chosen: false,
            batch_wait_chosen: false,
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

    /// Waits until the writer has replayed what earlier runs spooled and judged whether the
    /// previous run stopped cleanly (see [`RecorderMetrics::previous_run_unclean`]).
    pub async fn recovered(&self) {
        loop {
            let wakeup = self.shared.recovered_wakeup.notified();
            tokio::pin!(wakeup);
            wakeup.as_mut().enable();
            if self.shared.recovered.load(Ordering::Acquire) {
                return;
            }
            wakeup.await;
        }
    }

    /// Stops admitting events, waits for every outstanding reservation to be submitted (or
    /// dropped) and every queued event to be written, writes any pending gap record, a final
    /// checkpoint, and makes the store's files complete ([`AuditStore::flush`]). Call it after
    /// the server's graceful shutdown completed.
    ///
    /// It takes at most the shutdown timeout ([`RecorderBuilder::shutdown_timeout`], 30 s by
    /// default). Whatever is still unwritten then (the database is down or slow) is written
    /// to the spool and [`ShutdownError::Spooled`] says how many; the next start replays them
    /// into the store first. Events submitted later still go to the spool. Calling it again
    /// (from any clone) waits again.
    pub async fn shutdown(&self) -> Result<(), ShutdownError> {
        self.stop(Instant::now() + self.shared.config.shutdown_timeout)
            .await
    }

    /// Like [`Recorder::shutdown`], with a deadline of `limit` from now instead of the
    /// configured timeout.
    pub async fn shutdown_within(&self, limit: Duration) -> Result<(), ShutdownError> {
        self.stop(Instant::now() + limit).await
    }

    async fn stop(&self, deadline: Instant) -> Result<(), ShutdownError> {
        let capacity = &self.shared.capacity;
        capacity.close();
        let drained = capacity.wait_empty(Some(deadline)).await;
        // Reserved or queued events still unwritten at the deadline.
        let unwritten = if drained { 0 } else { capacity.in_use().0 };
        let mut writer = match tokio::time::timeout_at(deadline, self.shared.writer.lock()).await {
            Ok(writer) => writer,
            // Another shutdown holds the writer: it reports; ask the writer to spool.
            Err(_) => {
                self.shared.request_spool();
                return Err(self.unwritten_error(0, unwritten as u64));
            }
        };
        let Some(task) = writer.as_mut() else {
            return Ok(());
        };
        let counters = &self.shared.counters;
        let spooled_before = counters.spooled.load(Ordering::Acquire);
        let lost_before = counters.lost.load(Ordering::Acquire);
        if drained {
            // The writer may already have exited if the runtime is going away; then there is
            // nobody left to tell.
            let _ = self.shared.sender.send(Message::Stop);
        } else {
            self.shared.request_spool();
        }
        let joined = match tokio::time::timeout_at(deadline, &mut *task).await {
            Ok(joined) => joined,
            Err(_) => {
                // Writing the last batch outlived the deadline: spool it instead. The writer
                // only writes local files from here, so this takes moments.
                self.shared.request_spool();
                task.await
            }
        };
        *writer = None;
        joined.map_err(|_| ShutdownError::WriterFailed)?;
        let periodic = self
            .shared
            .periodic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(periodic) = periodic {
            periodic.abort();
        }
        let spooled = counters.spooled.load(Ordering::Acquire) - spooled_before;
        let lost = counters.lost.load(Ordering::Acquire) - lost_before;
        if spooled > 0 || lost > 0 || self.shared.spool_now.load(Ordering::Acquire) {
            return Err(self.unwritten_error(spooled, lost.max(unwritten as u64)));
        }
        // Everything is written: vouch for the final head, and leave complete files behind.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let finish = async {
            self.shared
                .checkpointer
                .write(crate::CheckpointKind::Shutdown, &self.shared.counters)
                .await;
            if let Err(error) = self.shared.checkpointer.store().flush().await {
                tracing::warn!(%error, "audit store: could not flush at shutdown");
            }
        };
        if tokio::time::timeout(remaining.max(Duration::from_secs(1)), finish)
            .await
            .is_err()
        {
            tracing::warn!("audit recorder: the final checkpoint did not finish by the deadline");
        }
        Ok(())
    }

    /// The error for a shutdown that spooled `spooled` events and left `unwritten` (without
    /// a spool: unkept).
    fn unwritten_error(&self, spooled: u64, unwritten: u64) -> ShutdownError {
        match &self.shared.spool {
            Some(spool) => ShutdownError::Spooled {
                events: spooled,
                path: spool.path(),
            },
            None => ShutdownError::TimedOut {
                pending: usize::try_from(unwritten).unwrap_or(usize::MAX),
            },
        }
    }
}
