//! What can go wrong setting up, serving or stopping the audit log.

use std::path::PathBuf;

use audit_store::{KeyFileError, ShutdownError, StartError, StoreError};

/// An error of [`crate::Audit`]: opening the store, starting the recorder, serving, or
/// draining at shutdown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database URL names no backend this build can open.
    #[error(
        "unsupported audit database URL {url:?}: use sqlite://FILE (or sqlite::memory:) or postgres://..."
    )]
    UnsupportedUrl {
        /// The URL, as given.
        url: String,
    },
    /// The URL names a backend whose cargo feature is off in this build.
    #[error("the audit database URL {url:?} needs the `{feature}` feature of axum-audit")]
    BackendNotCompiled {
        /// The URL, as given.
        url: String,
        /// The cargo feature that would enable it.
        feature: &'static str,
    },
    /// The store could not be opened or migrated.
    #[error("cannot open the audit store: {0}")]
    Store(#[from] StoreError),
    /// The signing key file could not be read or created.
    #[error("cannot load the audit signing key: {0}")]
    SigningKey(#[from] KeyFileError),
    /// The checkpoint log could not be opened.
    #[error("cannot open the checkpoint log {}: {source}", path.display())]
    CheckpointLog {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The working directory, where a PostgreSQL log spools by default, is unknown.
    #[error("cannot find the working directory for the audit spool: {0}")]
    SpoolDir(#[source] std::io::Error),
    /// The recorder could not start.
    #[error("cannot start the audit recorder: {0}")]
    Start(#[from] StartError),
    /// Serving HTTP failed (the listener broke); the recorder was still drained.
    #[error("serving failed: {0}")]
    Serve(#[source] std::io::Error),
    /// The recorder could not write every queued event by its shutdown deadline.
    #[error("audit shutdown: {0}")]
    Shutdown(#[from] ShutdownError),
}
