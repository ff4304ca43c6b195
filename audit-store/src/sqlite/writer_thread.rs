//! The thread the SQLite store's writes run on: one OS thread of its own, at a lower CPU
//! priority than the rest of the process (Linux: `nice` 10 higher by default).
//!
//! Why its own thread rather than Tokio's blocking pool: a write (encode is done; this is the
//! insert, the terms index and the commit) keeps a core busy for milliseconds. On a machine
//! whose cores also serve the requests, a request that arrives meanwhile waits for the
//! scheduler to hand its worker a slice. At a lower priority the kernel runs the request
//! handling first and the writer in what is left; buffered events wait in the recorder's
//! bounded queue instead of requests waiting for the writer (measured in BENCHMARKS.md, "What
//! auditing costs a service"). The priority of a pool thread could not be lowered for one
//! job and raised again without privileges, so the writes get a thread that keeps it.
//!
//! Jobs run one at a time in the order they were sent; the queue in front of the thread is
//! bounded ([`QUEUED_JOBS`]), so a caller waits for room instead of piling work up. A job that
//! panics fails its own call only: the thread goes on with the next.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;

/// Jobs waiting for the thread at most; one more caller waits for room.
const QUEUED_JOBS: usize = 4;

/// How much lower than the rest of the process the writer runs unless the host says
/// otherwise ([`crate::SqliteStore::with_writer_niceness`]).
pub(super) const DEFAULT_NICENESS: u8 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A handle to the writer thread; the thread starts on the first job and ends when the last
/// handle is dropped.
#[derive(Debug)]
pub(super) struct WriterThread {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// Niceness over the process's own, read before every job (the host may change it after
    /// the thread started).
    niceness: Arc<AtomicU8>,
}

impl WriterThread {
    pub(super) fn new(niceness: Arc<AtomicU8>) -> Self {
        WriterThread {
            jobs: Mutex::new(None),
            niceness,
        }
    }

    /// Runs `work` on the writer thread and waits for its result.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
                Err(StoreError::Background(
                    "a SQLite write panicked on the writer thread".into(),
                ))
            });
            // The caller may have stopped waiting (its future was dropped): nothing to tell.
            let _ = reply.send(outcome);
        });
        self.sender()?
            .send(job)
            .await
            .map_err(|_| StoreError::Background("the SQLite writer thread is gone".into()))?;
        result.await.map_err(|_| {
            StoreError::Background("the SQLite writer thread dropped a write unfinished".into())
        })?
    }

    /// The sending side of the thread's queue, starting the thread if it is not running.
    fn sender(&self) -> Result<mpsc::Sender<Job>, StoreError> {
        let mut slot = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = slot.as_ref().filter(|sender| !sender.is_closed()) {
            return Ok(sender.clone());
        }
        let (sender, receiver) = mpsc::channel(QUEUED_JOBS);
        let niceness = self.niceness.clone();
        std::thread::Builder::new()
            .name("audit-sqlite-writer".into())
            .spawn(move || serve(receiver, &niceness))
            .map_err(|e| {
                StoreError::Background(format!("could not start the SQLite writer thread: {e}"))
            })?;
        *slot = Some(sender.clone());
        Ok(sender)
    }
}

/// The thread's loop: each job in turn until every handle is gone.
fn serve(mut jobs: mpsc::Receiver<Job>, niceness: &AtomicU8) {
    let mut priority = ThreadPriority::of_this_thread();
    while let Some(job) = jobs.blocking_recv() {
        priority.lower_by(niceness.load(Ordering::Relaxed));
        job();
    }
}

/// A store thread's scheduling priority, relative to the one it started with (the writer's
/// and the checkpoint thread's, `checkpointer.rs`).
pub(super) struct ThreadPriority {
    /// The thread's nice value when it started (the process's), if it could be read.
    base: Option<i32>,
    /// The niceness over `base` set last.
    applied: u8,
}

impl ThreadPriority {
    #[cfg(target_os = "linux")]
    pub(super) fn of_this_thread() -> Self {
        let base = rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok();
        ThreadPriority { base, applied: 0 }
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn of_this_thread() -> Self {
        ThreadPriority {
            base: None,
            applied: 0,
        }
    }

    /// Makes the thread's nice value `niceness` above the base (at most 19), if it is not so
    /// already. Lowering works for any user; raising it again needs `CAP_SYS_NICE`, so a
    /// refusal is logged and tried again at the next change only.
    pub(super) fn lower_by(&mut self, niceness: u8) {
        if niceness == self.applied {
            return;
        }
        let Some(base) = self.base else {
            return;
        };
        let target = (base + i32::from(niceness)).min(19);
        match set_nice(target) {
            Ok(()) => {}
            Err(error) => tracing::warn!(
                "audit store: could not set the SQLite writer thread's nice value to {target}: {error}"
            ),
        }
        self.applied = niceness;
    }
}

/// Sets this thread's nice value. Linux keeps a nice value per thread, and `setpriority`
/// with a thread id sets that thread's only (elsewhere the call would change the whole
/// process's, so it is not made there).
#[cfg(target_os = "linux")]
fn set_nice(value: i32) -> std::io::Result<()> {
    rustix::process::setpriority_process(Some(rustix::thread::gettid()), value)
        .map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn set_nice(_value: i32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_order_and_a_panic_fails_only_its_own() {
        let thread = WriterThread::new(Arc::new(AtomicU8::new(DEFAULT_NICENESS)));
        let name = thread
            .run(|| Ok(std::thread::current().name().map(str::to_owned)))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("audit-sqlite-writer"));
        let panicked = thread.run::<()>(|| panic!("boom")).await;
        assert!(
            matches!(panicked, Err(StoreError::Background(_))),
            "{panicked:?}"
        );
        let order = Arc::new(Mutex::new(Vec::new()));
        let runs = (0..20).map(|n| {
            let order = order.clone();
            thread.run(move || {
                order.lock().unwrap().push(n);
                Ok(())
            })
        });
        for run in runs {
            run.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_thread_runs_nicer_than_the_process_and_follows_changes() {
        let niceness = Arc::new(AtomicU8::new(DEFAULT_NICENESS));
        let thread = WriterThread::new(niceness.clone());
        let process = rustix::process::getpriority_process(None).unwrap();
        let nice_now =
            || Ok(rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap());
        let nice = thread.run(nice_now).await.unwrap();
        assert_eq!(nice, (process + i32::from(DEFAULT_NICENESS)).min(19));
        niceness.store(15, Ordering::Relaxed);
        assert_eq!(thread.run(nice_now).await.unwrap(), (process + 15).min(19));
        // The process itself is untouched.
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), process);
    }
}
