//! How a [`Recorder`](super::Recorder) is sized and how it behaves under pressure.

use std::path::PathBuf;
use std::time::Duration;

/// When a request's response is released relative to the storage of its event.
///
/// ```
/// use audit_store::DeliveryMode;
/// assert_eq!(DeliveryMode::default(), DeliveryMode::Buffered);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryMode {
    /// The response is not delayed by the database: events are queued and batch-written in
    /// the background, failed batches are retried, and shutdown flushes the queue.
    #[default]
    Buffered,
    /// The caller waits until the batch holding its event has committed (group commit: one
    /// transaction serves every event that arrived while the previous one was writing).
    Durable,
}

impl DeliveryMode {
    /// The most events per transaction a recorder in this mode writes unless told otherwise:
    /// 2,000 buffered, 500 durable.
    ///
    /// ```
    /// use audit_store::DeliveryMode;
    /// assert_eq!(DeliveryMode::Buffered.default_max_batch_events(), 2_000);
    /// assert_eq!(DeliveryMode::Durable.default_max_batch_events(), 500);
    /// ```
    pub fn default_max_batch_events(self) -> usize {
        match self {
            DeliveryMode::Buffered => 2_000,
            DeliveryMode::Durable => 500,
        }
    }

    /// How long a recorder in this mode lingers for more events after the first of a batch
    /// unless told otherwise: 50 ms buffered, 5 ms durable.
    ///
    /// Buffered responses never wait for the linger, and each transaction costs the database
    /// the same fixed work (the commit, the index segments it flushes, the pages it rewrites)
    /// however few events it holds: in the load harness a 50 ms linger with batches of up
    /// to 2,000 served about 6 % (SQLite) and 14 % (PostgreSQL) more requests per second
    /// than 5 ms and 500 (BENCHMARKS.md, "What auditing costs a service"). Durable
    /// responses wait for the commit, so there the linger stays short.
    ///
    /// ```
    /// use std::time::Duration;
    /// use audit_store::DeliveryMode;
    /// assert_eq!(DeliveryMode::Buffered.default_max_batch_wait(), Duration::from_millis(50));
    /// assert_eq!(DeliveryMode::Durable.default_max_batch_wait(), Duration::from_millis(5));
    /// ```
    pub fn default_max_batch_wait(self) -> Duration {
        match self {
            DeliveryMode::Buffered => Duration::from_millis(50),
            DeliveryMode::Durable => Duration::from_millis(5),
        }
    }
}

/// What happens when no queue capacity frees up within
/// [`RecorderBuilder::admission_wait`](super::RecorderBuilder::admission_wait).
///
/// ```
/// use audit_store::OverloadPolicy;
/// assert_eq!(OverloadPolicy::default(), OverloadPolicy::Reject);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverloadPolicy {
    /// Refuse the action before it runs (the HTTP layer answers 503): nothing unaudited
    /// ever happens.
    #[default]
    Reject,
    /// Let the action run unaudited, count it, and write a gap record (category
    /// [`GAP_CATEGORY`](super::GAP_CATEGORY), action [`GAP_ACTION`](super::GAP_ACTION)) saying
    /// how many events were missed and when, once the pipeline has recovered.
    Proceed,
}

/// Exponential backoff between attempts to write a batch the database refused.
///
/// A batch that failed for a reason of the database (down, disk full, locked) is retried with
/// this backoff until the database accepts it or the shutdown deadline spools it; a batch the
/// database refuses for its content is split to isolate and quarantine the events at fault.
///
/// ```
/// use std::time::Duration;
/// use audit_store::RetryPolicy;
///
/// let policy = RetryPolicy::new(Duration::from_millis(10), Duration::from_secs(1));
/// assert_eq!(policy.delay(0), Duration::from_millis(10));
/// assert_eq!(policy.delay(3), Duration::from_millis(80));
/// assert_eq!(policy.delay(30), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    initial: Duration,
    max: Duration,
}

impl RetryPolicy {
    /// Waits `initial` after the first failure, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
        }
    }

    /// The wait after the `failures`-th consecutive failure (counting from 0).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

impl Default for RetryPolicy {
    /// 50 ms doubling up to 5 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(50), Duration::from_secs(5))
    }
}

/// The validated settings of a recorder; see [`RecorderBuilder`](super::RecorderBuilder) for
/// each field's meaning and default.
#[derive(Debug, Clone, PartialEq)]
pub struct RecorderConfig {
    /// Most events reserved or queued but not yet committed.
    pub max_queue_events: usize,
    /// Most bytes (by [`AuditEvent::approximate_size`](crate::AuditEvent::approximate_size))
    /// reserved or queued but not yet committed.
    pub max_queue_bytes: usize,
    /// Bytes reserved for an event before it is known.
    pub reserved_bytes_per_event: usize,
    /// Most events written in one transaction (default: the delivery mode's,
    /// [`DeliveryMode::default_max_batch_events`]).
    pub max_batch_events: usize,
    /// How long the writer waits for more events after the first one of a batch (default:
    /// the delivery mode's, [`DeliveryMode::default_max_batch_wait`]).
    pub max_batch_wait: Duration,
    /// How long an admission may wait for capacity before the overload policy applies.
    pub admission_wait: Duration,
    /// Buffered or durable delivery.
    pub delivery: DeliveryMode,
    /// Reject or proceed when saturated.
    pub overload: OverloadPolicy,
    /// Backoff between failed writes.
    pub retry: RetryPolicy,
    /// How often a signed checkpoint is written while events arrive (zero: only at
    /// shutdown). Only stores with a signer write checkpoints.
    pub checkpoint_interval: Duration,
    /// How long [`Recorder::shutdown`](super::Recorder::shutdown) may take before whatever is
    /// still unwritten goes to the spool.
    pub shutdown_timeout: Duration,
    /// How long one attempt to write a batch may take before it is abandoned and retried (a
    /// commit whose answer never comes must not hold the writer forever).
    pub write_timeout: Duration,
    /// How often the recorder reports itself (its run, and how many acknowledged events are
    /// not yet committed) to the store, for the next start to judge an unclean stop by.
    pub report_interval: Duration,
    /// The name of this recorder instance; `None`: the host name. Several processes writing
    /// to one database need distinct names for their runs to be told apart.
    pub instance: Option<String>,
    /// Where events not written by the shutdown deadline are spooled and replayed from at the
    /// next start; `None`: the store's default (beside a SQLite file), else no spool.
    pub spool_dir: Option<PathBuf>,
}

impl Default for RecorderConfig {
    /// Buffered delivery with its batch shape; see [`RecorderConfig::for_delivery`].
    fn default() -> Self {
        Self::for_delivery(DeliveryMode::default())
    }
}

impl RecorderConfig {
    /// The default settings for `delivery`, with that mode's batch shape.
    ///
    /// ```
    /// use std::time::Duration;
    /// use audit_store::{DeliveryMode, RecorderConfig};
    /// let durable = RecorderConfig::for_delivery(DeliveryMode::Durable);
    /// assert_eq!(durable.max_batch_wait, Duration::from_millis(5));
    /// assert_eq!(RecorderConfig::default().max_batch_events, 2_000);
    /// ```
    pub fn for_delivery(delivery: DeliveryMode) -> Self {
        Self {
            max_queue_events: 10_000,
            max_queue_bytes: 64 * 1024 * 1024,
            reserved_bytes_per_event: 4 * 1024,
            max_batch_events: delivery.default_max_batch_events(),
            max_batch_wait: delivery.default_max_batch_wait(),
            admission_wait: Duration::from_secs(2),
            delivery,
            overload: OverloadPolicy::Reject,
            retry: RetryPolicy::default(),
            checkpoint_interval: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            report_interval: Duration::from_secs(1),
            instance: None,
            spool_dir: None,
        }
    }
}

/// A recorder setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid recorder setting `{setting}`: {message}")]
pub struct InvalidConfig {
    setting: &'static str,
    message: &'static str,
}

impl InvalidConfig {
    /// The setting at fault.
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}

impl RecorderConfig {
    pub(crate) fn validate(&self) -> Result<(), InvalidConfig> {
        let fail = |setting, message| Err(InvalidConfig { setting, message });
        if self.max_queue_events == 0 {
            return fail("max_queue_events", "must be at least 1");
        }
        if self.max_batch_events == 0 {
            return fail("max_batch_events", "must be at least 1");
        }
        if self.reserved_bytes_per_event == 0 {
            return fail("reserved_bytes_per_event", "must be at least 1");
        }
        if self.write_timeout.is_zero() {
            return fail("write_timeout", "must be more than zero");
        }
        if self.report_interval.is_zero() {
            return fail("report_interval", "must be more than zero");
        }
        if let Some(instance) = &self.instance {
            let valid = !instance.is_empty()
                && instance.len() <= 128
                && instance
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return fail(
                    "instance",
                    "must be 1 to 128 ASCII letters, digits, '-', '_' or '.' (it names local files)",
                );
            }
        }
        if self.reserved_bytes_per_event > self.max_queue_bytes {
            return fail(
                "max_queue_bytes",
                "must be at least reserved_bytes_per_event, or no event could ever be admitted",
            );
        }
        Ok(())
    }
}
