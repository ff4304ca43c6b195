//! A local, append-only file of checkpoints: the simplest place to publish them.
//!
//! Each line is one [`Checkpoint`] as JSON. The recorder hands every checkpoint it writes to
//! a [`CheckpointLog`] (it is a [`CheckpointPublisher`]), and `audit verify --checkpoints FILE`
//! checks the stored chain against the file. A file on the same disk as the database protects
//! against someone who can rewrite the database's rows but not this file (another account,
//! an append-only attribute, a log shipper reading it); ship it off the machine for more.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::checkpoint::Checkpoint;
use crate::recorder::CheckpointPublisher;

/// Appends every published checkpoint to a file, one JSON object per line, synced to disk.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use audit_store::{CheckpointLog, CheckpointSigner, Recorder, SqliteStore, read_checkpoint_log};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("checkpoints.ndjson");
/// let store = SqliteStore::connect("sqlite::memory:").await?
///     .with_signer(CheckpointSigner::from_seed([5; 32]));
/// let recorder = Recorder::builder(store).on_checkpoint(CheckpointLog::open(&path)?).start()?;
/// recorder.checkpoint_now().await;
/// recorder.shutdown().await?;
/// assert_eq!(read_checkpoint_log(&path)?.len(), 2); // the manual one and the shutdown one
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug)]
pub struct CheckpointLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl CheckpointLog {
    /// Opens `path` for appending, creating it if missing.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_owned();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one checkpoint and syncs the file.
    pub fn append(&self, checkpoint: &Checkpoint) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(checkpoint).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // A poisoned lock only means another append panicked; the file is still appendable.
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&line)?;
        file.sync_data()
    }
}

impl CheckpointPublisher for CheckpointLog {
    /// Appends the checkpoint (one short write and an fsync, about once a minute). A failure
    /// is logged: the checkpoint is still in the database.
    fn publish(&self, checkpoint: &Checkpoint) {
        if let Err(error) = self.append(checkpoint) {
            tracing::error!(
                %error,
                path = %self.path.display(),
                seq = checkpoint.seq,
                "could not append the audit checkpoint to its log file"
            );
        }
    }
}

/// Every checkpoint in a file written by [`CheckpointLog`], in file order. A torn last line
/// (the process died mid-write) is skipped; any other unreadable line is an error naming it.
pub fn read_checkpoint_log(path: impl AsRef<Path>) -> std::io::Result<Vec<Checkpoint>> {
    let path = path.as_ref();
    let reader = BufReader::new(File::open(path)?);
    let mut checkpoints = Vec::new();
    let mut lines = reader.lines().enumerate().peekable();
    while let Some((number, line)) = lines.next() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(checkpoint) => checkpoints.push(checkpoint),
            Err(_) if lines.peek().is_none() && !line.ends_with('}') => {
                tracing::warn!(path = %path.display(), line = number + 1, "skipping a torn last line");
            }
            Err(error) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} line {}: {error}", path.display(), number + 1),
                ));
            }
        }
    }
    Ok(checkpoints)
}
