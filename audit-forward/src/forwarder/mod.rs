//! The forwarder: one task per sink, reading the store in chain order after the sink's
//! cursor and delivering batches at least once, under a lease so that one instance per
//! sink forwards at a time.

mod metrics;
mod run;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use audit_store::{AuditStore, ForwardingStatus, SinkStatus, StoreError};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use metrics::{SinkMetrics, SinkState};

use crate::sink::Sink;
use metrics::SharedMetrics;

/// Where a sink that has no cursor yet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// From the first stored event and checkpoint: the sink receives the whole log.
    #[default]
    Beginning,
    /// After the chain head at the moment the sink is first seen: only new events.
    Now,
}

/// Exponential backoff between failed delivery attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait; attempts go on at this pace for as long as the sink fails.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

/// The forwarder's settings; [`ForwarderBuilder`] sets them one by one.
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// Names this process in leases and status reports. Default: `pid-<pid>-<8 hex>`,
    /// different at every start.
    pub instance_id: String,
    /// How often the store is asked for new events once caught up (250 ms).
    pub poll_interval: Duration,
    /// Events per batch at most (500).
    pub max_batch_events: usize,
    /// Bytes of JSON per batch at most (1 MiB); a single larger event still goes alone.
    pub max_batch_bytes: usize,
    /// How long a lease lasts unless renewed (15 s); renewed every third of it. When a
    /// holder dies, another instance takes over after at most this long.
    pub lease_ttl: Duration,
    /// How long one delivery attempt may take before it counts as failed (30 s).
    pub attempt_timeout: Duration,
    /// Backoff between failed attempts (100 ms doubling to 30 s).
    pub retry: Backoff,
    /// Where a new sink starts.
    pub start_at: StartAt,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        ForwarderConfig {
            instance_id: format!(
                "pid-{}-{}",
                std::process::id(),
                &uuid::Uuid::now_v7().simple().to_string()[24..]
            ),
            poll_interval: Duration::from_millis(250),
            max_batch_events: 500,
            max_batch_bytes: 1024 * 1024,
            lease_ttl: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(30),
            retry: Backoff::default(),
            start_at: StartAt::Beginning,
        }
    }
}

/// The entry point: `Forwarder::builder(store).sink(...).start()`.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use audit_forward::{Forwarder, WebhookSink};
/// use audit_store::SqliteStore;
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// let forwarder = Forwarder::builder(store)
///     .sink(WebhookSink::builder("http://127.0.0.1:9/audit", "shared-secret").build()?)
///     .start()?;
/// println!("{:?}", forwarder.metrics()); // lag in events and seconds, per sink
/// forwarder.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug)]
pub struct Forwarder;

impl Forwarder {
    /// A builder forwarding the events of `store`.
    pub fn builder(store: impl AuditStore) -> ForwarderBuilder {
        Self::builder_shared(Arc::new(store))
    }

    /// Like [`Forwarder::builder`] for a store the host already shares.
    pub fn builder_shared(store: Arc<dyn AuditStore>) -> ForwarderBuilder {
        ForwarderBuilder {
            store,
            sinks: Vec::new(),
            config: ForwarderConfig::default(),
        }
    }
}

/// Configures and starts a forwarder; see [`Forwarder`].
pub struct ForwarderBuilder {
    store: Arc<dyn AuditStore>,
    sinks: Vec<Arc<dyn Sink>>,
    config: ForwarderConfig,
}

impl std::fmt::Debug for ForwarderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwarderBuilder")
            .field(
                "sinks",
                &self.sinks.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("config", &self.config)
            .finish()
    }
}

impl ForwarderBuilder {
    /// Adds a sink; each gets its own cursor, lease and task.
    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Adds a sink the host already shares.
    pub fn sink_shared(mut self, sink: Arc<dyn Sink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Replaces every setting at once.
    pub fn config(mut self, config: ForwarderConfig) -> Self {
        self.config = config;
        self
    }

    /// See [`ForwarderConfig::instance_id`].
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.config.instance_id = id.into();
        self
    }

    /// See [`ForwarderConfig::poll_interval`].
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }

    /// See [`ForwarderConfig::max_batch_events`] and [`ForwarderConfig::max_batch_bytes`].
    pub fn max_batch(mut self, events: usize, bytes: usize) -> Self {
        self.config.max_batch_events = events;
        self.config.max_batch_bytes = bytes;
        self
    }

    /// See [`ForwarderConfig::lease_ttl`].
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.lease_ttl = ttl;
        self
    }

    /// See [`ForwarderConfig::attempt_timeout`].
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config.attempt_timeout = timeout;
        self
    }

    /// See [`ForwarderConfig::retry`].
    pub fn retry(mut self, backoff: Backoff) -> Self {
        self.config.retry = backoff;
        self
    }

    /// See [`ForwarderConfig::start_at`].
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.config.start_at = start;
        self
    }

    /// Starts one task per sink on the current Tokio runtime.
    pub fn start(self) -> Result<ForwarderHandle, StartError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let config = self.config;
        if self.sinks.is_empty() {
            return Err(StartError::Invalid("no sink was added".into()));
        }
        let mut names = HashSet::new();
        for sink in &self.sinks {
            let name = sink.name();
            if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(StartError::Invalid(format!(
                    "sink name {name:?} must be 1 to 128 visible ASCII characters"
                )));
            }
            if !names.insert(name.to_owned()) {
                return Err(StartError::Invalid(format!("two sinks are named {name:?}")));
            }
        }
        let invalid = |what: &str| Err(StartError::Invalid(what.to_owned()));
        if config.max_batch_events == 0 || config.max_batch_bytes == 0 {
            return invalid("batches need room for at least one event");
        }
        if config.lease_ttl < Duration::from_millis(300) {
            return invalid("lease_ttl must be at least 300 ms");
        }
        if config.poll_interval.is_zero() || config.retry.initial.is_zero() {
            return invalid("poll_interval and the retry backoff must be above zero");
        }
        if config.instance_id.is_empty() || config.instance_id.len() > 200 {
            return invalid("instance_id must be 1 to 200 characters");
        }
        let (stop, stopped) = watch::channel(false);
        let config = Arc::new(config);
        let sinks = self
            .sinks
            .into_iter()
            .map(|sink| {
                let metrics = SharedMetrics::new(sink.name());
                let wake = Arc::new(Notify::new());
                let task = run::SinkTask {
                    store: self.store.clone(),
                    sink: sink.clone(),
                    config: config.clone(),
                    metrics: metrics.clone(),
                    wake: wake.clone(),
                    stop: stopped.clone(),
                };
                RunningSink {
                    name: sink.name().to_owned(),
                    metrics,
                    wake,
                    task: std::sync::Mutex::new(Some(runtime.spawn(task.run()))),
                }
            })
            .collect();
        Ok(ForwarderHandle {
            inner: Arc::new(Inner {
                store: self.store,
                sinks,
                stop,
                instance_id: config.instance_id.clone(),
            }),
        })
    }
}

/// Why a forwarder could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// `start` was called outside a Tokio runtime.
    #[error("the forwarder must be started inside a Tokio runtime")]
    NoRuntime,
    /// A setting or sink is unusable.
    #[error("invalid forwarder configuration: {0}")]
    Invalid(String),
}

/// Why a shutdown did not complete cleanly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShutdownError {
    /// Some sink tasks were still busy at the deadline and were aborted; their leases
    /// lapse by themselves and nothing is lost (undelivered events stay behind the cursor).
    #[error("shutdown timed out; aborted the tasks of {0:?}")]
    TimedOut(Vec<String>),
}

struct RunningSink {
    name: String,
    metrics: SharedMetrics,
    wake: Arc<Notify>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    store: Arc<dyn AuditStore>,
    sinks: Vec<RunningSink>,
    stop: watch::Sender<bool>,
    instance_id: String,
}

/// A running forwarder: metrics, the operator's retry, shutdown. Cheap to clone; also a
/// [`ForwardingStatus`] for `audit-api`'s `/forwarding` route.
#[derive(Clone)]
pub struct ForwarderHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ForwarderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwarderHandle")
            .field("instance_id", &self.inner.instance_id)
            .field(
                "sinks",
                &self.inner.sinks.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ForwarderHandle {
    /// A snapshot per sink: state, position, lag in events and seconds, counters.
    pub fn metrics(&self) -> Vec<SinkMetrics> {
        self.inner
            .sinks
            .iter()
            .map(|s| s.metrics.snapshot())
            .collect()
    }

    /// This process's instance id, as leases show it.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// Asks every sink task to look for new events now instead of at its next poll (for
    /// example right after a bulk import).
    pub fn wake(&self) {
        for sink in &self.inner.sinks {
            sink.wake.notify_one();
        }
    }

    /// The operator's word for a halted sink: clears the halt in the audit database, so
    /// whichever instance forwards it retries the refused batch. `false` when the sink
    /// was not halted. Equivalent to `audit forward-retry --sink NAME` and to
    /// [`AuditStore::resume_forwarding`].
    pub async fn retry(&self, sink: &str) -> Result<bool, StoreError> {
        let resumed = self.inner.store.resume_forwarding(sink).await?;
        if let Some(running) = self.inner.sinks.iter().find(|s| s.name == sink) {
            running.wake.notify_one();
        }
        Ok(resumed)
    }

    /// Stops every sink task: in-flight deliveries are abandoned (their records stay behind
    /// the cursor and are delivered again later), leases are released so another instance
    /// can take over at once. Waits at most 10 s.
    pub async fn shutdown(&self) -> Result<(), ShutdownError> {
        self.shutdown_within(Duration::from_secs(10)).await
    }

    /// [`ForwarderHandle::shutdown`] with a deadline of your choosing.
    pub async fn shutdown_within(&self, limit: Duration) -> Result<(), ShutdownError> {
        let _ = self.inner.stop.send(true);
        let deadline = tokio::time::Instant::now() + limit;
        let mut late = Vec::new();
        for sink in &self.inner.sinks {
            let task = sink
                .task
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take();
            let Some(mut task) = task else { continue };
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                late.push(sink.name.clone());
            }
            sink.metrics.update(|m| m.state = SinkState::Stopped);
        }
        if late.is_empty() {
            Ok(())
        } else {
            Err(ShutdownError::TimedOut(late))
        }
    }
}

#[async_trait]
impl ForwardingStatus for ForwarderHandle {
    /// The database's view of every sink (fresh lag, the lease holder, halts: the same from
    /// every instance), with this process's state and last error for the sinks it runs.
    async fn forwarding_status(&self) -> Result<Vec<SinkStatus>, StoreError> {
        let states = self.inner.store.forward_states().await?;
        let mut report: Vec<SinkStatus> = states.iter().map(SinkStatus::from_state).collect();
        for sink in &self.inner.sinks {
            let local = sink.metrics.snapshot();
            let entry = match report.iter_mut().find(|s| s.sink == sink.name) {
                Some(entry) => entry,
                None => {
                    // No cursor yet (the task has not reached the database).
                    report.push(SinkStatus {
                        sink: sink.name.clone(),
                        state: local.state.as_str().to_owned(),
                        lag_events: local.lag_events,
                        lag_seconds: local.lag_seconds,
                        delivered_seq: local.delivered_seq,
                        head_seq: local.head_seq,
                        holder: None,
                        this_instance: false,
                        halt: None,
                        last_error: local.last_error,
                        updated_at: chrono::Utc::now(),
                    });
                    continue;
                }
            };
            entry.this_instance = entry.holder.as_deref() == Some(self.inner.instance_id.as_str());
            if entry.halt.is_none() {
                entry.state = local.state.as_str().to_owned();
            }
            entry.last_error = local.last_error;
        }
        report.sort_by(|a, b| a.sink.cmp(&b.sink));
        Ok(report)
    }
}
