//! Counters a host reads to watch the recorder (and export to its own metrics system).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) recorded: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) failed_batches: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) missed: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) failed_checkpoints: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A snapshot of a recorder's counters; see [`Recorder::metrics`](super::Recorder::metrics).
///
/// Totals count since the recorder started.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use audit_store::{Recorder, SqliteStore};
///
/// let recorder = Recorder::builder(SqliteStore::connect("sqlite::memory:").await?).start()?;
/// let metrics = recorder.metrics();
/// assert_eq!((metrics.recorded, metrics.queue_depth, metrics.refused), (0, 0, 0));
/// recorder.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RecorderMetrics {
    /// Events committed to the store (gap records included).
    pub recorded: u64,
    /// Batches committed.
    pub batches: u64,
    /// Write attempts the store refused (each is retried).
    pub failed_batches: u64,
    /// Retries made after failed writes.
    pub retries: u64,
    /// Events reserved or queued but not yet committed.
    pub queue_depth: usize,
    /// Approximate bytes reserved or queued but not yet committed.
    pub queue_bytes: usize,
    /// Admissions refused because the queue stayed full (reject policy) or the recorder was
    /// shutting down.
    pub refused: u64,
    /// Events not captured because the queue stayed full under the proceed policy.
    pub missed: u64,
    /// Gap records written for missed events.
    pub gaps: u64,
    /// Events that could not be handed to the writer because it had stopped (the runtime
    /// was shutting down). Zero in a healthy process.
    pub lost: u64,
    /// Signed checkpoints written (periodic and at shutdown).
    pub checkpoints: u64,
    /// Checkpoints that could not be written (logged; the events are unaffected).
    pub failed_checkpoints: u64,
}

impl RecorderMetrics {
    pub(crate) fn read(counters: &Counters, (queue_depth, queue_bytes): (usize, usize)) -> Self {
        Self {
            recorded: Counters::get(&counters.recorded),
            batches: Counters::get(&counters.batches),
            failed_batches: Counters::get(&counters.failed_batches),
            retries: Counters::get(&counters.retries),
            queue_depth,
            queue_bytes,
            refused: Counters::get(&counters.refused),
            missed: Counters::get(&counters.missed),
            gaps: Counters::get(&counters.gaps),
            checkpoints: Counters::get(&counters.checkpoints),
            failed_checkpoints: Counters::get(&counters.failed_checkpoints),
            lost: Counters::get(&counters.lost),
        }
    }
}
