//! The SQLite store's WAL checkpoints, on a thread of their own beside the writer.
//!
//! A commit in WAL mode only appends pages to the `-wal` file; a *checkpoint* copies them into
//! the database file. Left to SQLite, the committing connection does it itself once the log
//! holds 1,000 pages, inside its `COMMIT`: in a profile of appends into a 1,000,000-event
//! database that was a fifth of the writer thread's time, all of it spent while the next
//! batch waited (BENCHMARKS.md, "The write path"). Here the writer only *nudges* this thread
//! after each commit; it runs a passive checkpoint (one that never blocks the writer or a
//! reader) on its own connection, at most one per [`MIN_INTERVAL`], at the writer's lower
//! priority. The writer keeps SQLite's own checkpoint as a fallback at
//! [`FALLBACK_PAGES`], so the log stays bounded even if this thread falls behind or fails.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::append::Location;
use super::writer_thread::ThreadPriority;

/// The shortest time between two checkpoints: nudges meanwhile are merged into one, so each
/// checkpoint copies many commits' pages (a page written by several commits is copied once)
/// and the database file is synced at most this often.
const MIN_INTERVAL: Duration = Duration::from_millis(20);

/// Pages in the log at which the writer checkpoints by itself (SQLite's `wal_autocheckpoint`),
/// in case this thread does not keep up: about 40 MiB of log.
pub(super) const FALLBACK_PAGES: u32 = 10_000;

/// What the writer and the checkpoint thread share.
#[derive(Debug, Default)]
struct Signal {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// A commit happened since the last checkpoint began.
    due: bool,
    /// The store is gone: the thread ends.
    closed: bool,
    /// The thread was started.
    started: bool,
}

/// Checkpoints a database file's log in the background; the thread starts at the first
/// nudge and ends when this is dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    /// `None` for an in-memory database, which has no log to checkpoint.
    location: Option<Location>,
    synchronous: &'static str,
    niceness: Arc<AtomicU8>,
    signal: Arc<Signal>,
}

impl Checkpointer {
    pub(super) fn new(
        location: &Location,
        synchronous: &'static str,
        niceness: Arc<AtomicU8>,
    ) -> Self {
        Checkpointer {
            location: matches!(location, Location::File(_)).then(|| location.clone()),
            synchronous,
            niceness,
            signal: Arc::default(),
        }
    }

    /// Tells the thread that a commit added to the log (cheap, never blocks on a checkpoint).
    pub(super) fn nudge(&self) {
        let Some(location) = &self.location else {
            return;
        };
        let mut state = self
            .signal
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.due = true;
        if !state.started {
            let (signal, location, synchronous, niceness) = (
                self.signal.clone(),
                location.clone(),
                self.synchronous,
                self.niceness.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name("audit-sqlite-checkpoints".into())
                .spawn(move || serve(&signal, &location, synchronous, &niceness));
            match spawned {
                Ok(_) => state.started = true,
                // The writer's own checkpoints (FALLBACK_PAGES) keep the log bounded; the next
                // nudge tries again.
                Err(error) => tracing::warn!(
                    %error,
                    "audit store: could not start the SQLite checkpoint thread"
                ),
            }
        }
        drop(state);
        self.signal.changed.notify_one();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.signal
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.signal.changed.notify_one();
    }
}

/// The thread's loop: a checkpoint whenever one is due, at most one per [`MIN_INTERVAL`].
fn serve(signal: &Signal, location: &Location, synchronous: &str, niceness: &AtomicU8) {
    let mut priority = ThreadPriority::of_this_thread();
    let mut connection: Option<Connection> = None;
    loop {
        {
            let mut state = signal.state.lock().unwrap_or_else(PoisonError::into_inner);
            while !state.due && !state.closed {
                state = signal
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.closed {
                return;
            }
            state.due = false;
        }
        priority.lower_by(niceness.load(Ordering::Relaxed));
        if connection.is_none() {
            connection = open(location, synchronous)
                .inspect_err(|error| {
                    tracing::warn!(%error, "audit store: could not open the SQLite checkpoint connection");
                })
                .ok();
        }
        if let Some(open) = &connection
            && let Err(error) = open.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(%error, "audit store: a background SQLite checkpoint failed");
            // A fresh connection next time; the writer's own checkpoints cover the gap.
            connection = None;
        }
        // Waits out the interval unless the store closes meanwhile.
        let state = signal.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (state, _) = signal
            .changed
            .wait_timeout_while(state, MIN_INTERVAL, |state| !state.closed)
            .unwrap_or_else(PoisonError::into_inner);
        if state.closed {
            return;
        }
    }
}

fn open(location: &Location, synchronous: &str) -> rusqlite::Result<Connection> {
    let connection =
        location.open(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    // A checkpoint syncs the log and the database file as this connection's setting says.
    connection.execute_batch(&format!("PRAGMA synchronous = {synchronous};"))?;
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, AuditEvent, AuditStore, SqliteStore};

    fn file_size(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// With the writer's own checkpoint far away (FALLBACK_PAGES), committed pages reach the
    /// database file only through the checkpoint thread.
    #[tokio::test]
    async fn commits_reach_the_database_file_without_the_writers_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let events: Vec<AuditEvent> = (0..3000)
            .map(|n| {
                AuditEvent::builder("Model", Action::Create)
                    .internal(format!("job-{n}"))
                    .resource(format!("m-{n}"), format!("Model number {n}"))
                    .attribute("padding", "x".repeat(300))
                    .build()
            })
            .collect();
        let before = file_size(&path);
        for batch in events.chunks(500) {
            store.append(batch).await.unwrap();
        }
        let wal = dir.path().join("audit.db-wal");
        // Well below the writer's own threshold: without the thread the pages stay in the log.
        assert!(file_size(&wal) < u64::from(FALLBACK_PAGES) * 4096 / 4);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while file_size(&path) < before + 1_000_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes (was {before})",
                file_size(&path)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(store.chain_head().await.unwrap().seq, 3000);
    }

    #[test]
    fn the_thread_ends_with_its_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::File(dir.path().join("audit.db"));
        let checkpointer = Checkpointer::new(&location, "FULL", Arc::new(AtomicU8::new(0)));
        checkpointer.nudge();
        let signal = checkpointer.signal.clone();
        assert!(signal.state.lock().unwrap().started);
        drop(checkpointer);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // The thread holds the other handle to the signal until it returns.
        while Arc::strong_count(&signal) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the thread is still running"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn an_in_memory_database_gets_no_thread() {
        let checkpointer = Checkpointer::new(
            &Location::Memory("audit-test".into()),
            "FULL",
            Arc::new(AtomicU8::new(0)),
        );
        checkpointer.nudge();
        assert!(!checkpointer.signal.state.lock().unwrap().started);
    }
}
