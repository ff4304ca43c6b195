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
    pub(crate) quarantined: AtomicU64,
    pub(crate) spooled: AtomicU64,
    pub(crate) replayed: AtomicU64,
    /// Acknowledged (submitted) events not yet committed, spooled or quarantined.
    pub(crate) unwritten: AtomicU64,
    /// The most `unwritten` reached since the recorder last reported its run.
    pub(crate) unwritten_peak: AtomicU64,
    /// 1 when the previous run of this instance ended without draining.
    pub(crate) previous_run_unclean: AtomicU64,
    pub(crate) previous_run_possibly_missing: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(counter: &AtomicU64, n: u64) {
        counter.store(n, Ordering::Relaxed);
    }

    /// One more acknowledged event waits to be written.
    pub(crate) fn acknowledge(&self) {
        let now = self.unwritten.fetch_add(1, Ordering::AcqRel) + 1;
        self.unwritten_peak.fetch_max(now, Ordering::AcqRel);
    }

    /// `n` acknowledged events were written (committed, quarantined or spooled).
    pub(crate) fn written(&self, n: u64) {
        let _ = self
            .unwritten
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// The peak of unwritten events since the last call, restarting from the current count.
    pub(crate) fn take_unwritten_peak(&self) -> u64 {
        let now = self.unwritten.load(Ordering::Acquire);
        self.unwritten_peak.swap(now, Ordering::AcqRel).max(now)
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
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
    /// Events that could be neither written nor spooled (the writer had stopped and there is
    /// no spool, or the spool file could not be written); each is logged with its content.
    /// Zero in a healthy process.
    pub lost: u64,
    /// Signed checkpoints written (periodic and at shutdown).
    pub checkpoints: u64,
    /// Checkpoints that could not be written (logged; the events are unaffected).
    pub failed_checkpoints: u64,
    /// Events the database refused, kept in the quarantine (and reported by a gap record)
    /// instead of the log.
    pub quarantined: u64,
    /// Events written to the local spool because the shutdown deadline passed (or the runtime
    /// stopped first); the next start replays them.
    pub spooled: u64,
    /// Events replayed from a previous run's spool at this start.
    pub replayed: u64,
    /// Acknowledged events not yet written (in durable mode, their requests are waiting).
    pub unwritten: u64,
    /// Whether the previous run of this instance ended without draining (kill -9, power
    /// loss); a gap record says so in the log.
    pub previous_run_unclean: bool,
    /// How many acknowledged events the previous, unclean run may have lost: what it last
    /// reported as acknowledged and unwritten (0 when it delivered durably).
    pub previous_run_possibly_missing: u64,
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
            quarantined: Counters::get(&counters.quarantined),
            spooled: Counters::get(&counters.spooled),
            replayed: Counters::get(&counters.replayed),
            unwritten: Counters::get(&counters.unwritten),
            previous_run_unclean: Counters::get(&counters.previous_run_unclean) != 0,
            previous_run_possibly_missing: Counters::get(&counters.previous_run_possibly_missing),
        }
    }
}
