//! Signed checkpoints on a schedule and at shutdown, handed to the host for publishing.
//!
//! The store signs (it holds the key, see `SqliteStore::with_signer`); the recorder decides
//! when: every `checkpoint_interval` while new events arrive, and once more at shutdown after
//! the last batch committed. A checkpoint kept only in the database proves little against
//! someone who can rewrite the database, so each one is also handed to a
//! [`CheckpointPublisher`] the host supplies (a log line, an object store, a transparency log).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::metrics::Counters;
use crate::checkpoint::{Checkpoint, CheckpointKind};
use crate::store::AuditStore;

/// Receives every checkpoint the recorder writes. Implemented for closures.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use audit_store::{Checkpoint, CheckpointSigner, Recorder, SqliteStore};
///
/// let store = SqliteStore::connect("sqlite::memory:").await?
///     .with_signer(CheckpointSigner::from_seed([9; 32]));
/// let recorder = Recorder::builder(store)
///     .on_checkpoint(|checkpoint: &Checkpoint| {
///         // Publish it somewhere the database's writers cannot reach.
///         println!("checkpoint seq {} head {}", checkpoint.seq, checkpoint.head);
///     })
///     .start()?;
/// recorder.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
pub trait CheckpointPublisher: Send + Sync + 'static {
    /// Called after `checkpoint` was stored. Must not block: spawn for slow work.
    fn publish(&self, checkpoint: &Checkpoint);
}

impl<F> CheckpointPublisher for F
where
    F: Fn(&Checkpoint) + Send + Sync + 'static,
{
    fn publish(&self, checkpoint: &Checkpoint) {
        self(checkpoint)
    }
}

/// Writes checkpoints through the store and tells the publisher.
pub(crate) struct Checkpointer {
    store: Arc<dyn AuditStore>,
    publisher: Option<Arc<dyn CheckpointPublisher>>,
    /// The head sequence number of the last checkpoint written (none yet: `u64::MAX`).
    last_seq: AtomicU64,
}

impl Checkpointer {
    pub(crate) fn new(
        store: Arc<dyn AuditStore>,
        publisher: Option<Arc<dyn CheckpointPublisher>>,
    ) -> Self {
        Self {
            store,
            publisher,
            last_seq: AtomicU64::new(u64::MAX),
        }
    }

    /// The store checkpoints are written to.
    pub(crate) fn store(&self) -> &Arc<dyn AuditStore> {
        &self.store
    }

    /// Writes a checkpoint of `kind`; a periodic one only when the chain grew since the last.
    /// Failures are logged and counted, never fatal: the events themselves are safe.
    pub(crate) async fn write(
        &self,
        kind: CheckpointKind,
        counters: &Counters,
    ) -> Option<Checkpoint> {
        if kind == CheckpointKind::Periodic {
            match self.store.chain_head().await {
                Ok(head) if head.seq == 0 || head.seq == self.last_seq.load(Ordering::Acquire) => {
                    return None;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "audit checkpoint: could not read the chain head");
                    Counters::add(&counters.failed_checkpoints, 1);
                    return None;
                }
            }
        }
        match self.store.checkpoint(kind).await {
            Ok(Some(checkpoint)) => {
                self.last_seq.store(checkpoint.seq, Ordering::Release);
                Counters::add(&counters.checkpoints, 1);
                if let Some(publisher) = &self.publisher {
                    publisher.publish(&checkpoint);
                }
                Some(checkpoint)
            }
            // The store has no signer: checkpoints are not configured.
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, kind = kind.as_str(), "audit checkpoint failed");
                Counters::add(&counters.failed_checkpoints, 1);
                None
            }
        }
    }
}

/// The periodic task; aborted at shutdown, which then writes the final checkpoint.
pub(crate) async fn run_periodic(shared: Arc<super::Shared>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        shared
            .checkpointer
            .write(CheckpointKind::Periodic, &shared.counters)
            .await;
    }
}
