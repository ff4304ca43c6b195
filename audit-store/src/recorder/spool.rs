//! The local spool: events the recorder could not write to the store by its shutdown
//! deadline (or because its task was cancelled), kept in an fsynced NDJSON file that the next
//! start replays into the store before anything else. Replays are safe to repeat: appends are
//! idempotent, so an event that did reach the store before it was spooled is recognised.
//!
//! A spool file is `spool-{instance}-{run}.ndjson` in the spool directory: a header line, one
//! event (its contract JSON) per line, and, when the run ended on purpose, a trailer line
//! saying so. The writing process holds an exclusive lock on the file, so a replaying process
//! never takes a file that is still being written. Events the store refuses and cannot even
//! quarantine go to `quarantine-{instance}.ndjson` beside it, which nothing deletes.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use chrono::Utc;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::event::{AuditEvent, rfc3339_micros};
use crate::reliability::QuarantinedEvent;

const HEADER_KEY: &str = "audit_spool";
const TRAILER_KEY: &str = "audit_spool_end";

/// This run's spool file, created on first use.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    instance: String,
    run_id: Uuid,
    file: Mutex<Option<File>>,
}

impl Spool {
    pub(crate) fn new(dir: PathBuf, instance: &str, run_id: Uuid) -> Self {
        Self {
            dir,
            instance: instance.to_owned(),
            run_id,
            file: Mutex::new(None),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// This run's spool file.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir
            .join(format!("spool-{}-{}.ndjson", self.instance, self.run_id))
    }

    /// Appends `events` and syncs them to disk; returns how many were written.
    pub(crate) fn write<'a>(
        &self,
        events: impl IntoIterator<Item = &'a AuditEvent>,
    ) -> io::Result<usize> {
        let mut lines = Vec::new();
        let mut count = 0;
        for event in events {
            serde_json::to_writer(&mut lines, event).map_err(io::Error::other)?;
            lines.push(b'\n');
            count += 1;
        }
        if count > 0 {
            self.append(&lines)?;
        }
        Ok(count)
    }

    /// Records that this run ended on purpose, with everything either in the store or in
    /// this file: the next start then knows the run was not a crash, even if the store
    /// could not be told.
    pub(crate) fn seal(&self) -> io::Result<()> {
        let trailer = json!({
            TRAILER_KEY: {
                "run_id": self.run_id.to_string(),
                "at": rfc3339_micros::format(&Utc::now()),
            }
        });
        let mut line = serde_json::to_vec(&trailer).map_err(io::Error::other)?;
        line.push(b'\n');
        self.append(&line)
    }

    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if file.is_none() {
            *file = Some(self.create()?);
        }
        let Some(open) = file.as_mut() else {
            return Err(io::Error::other("spool file not open"));
        };
        open.write_all(bytes)?;
        open.sync_data()
    }

    fn create(&self) -> io::Result<File> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path();
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        // Held until the process exits: a replaying process skips a file being written.
        file.try_lock().map_err(io::Error::other)?;
        let header = json!({
            HEADER_KEY: 1,
            "instance": self.instance,
            "run_id": self.run_id.to_string(),
            "created_at": rfc3339_micros::format(&Utc::now()),
        });
        let mut line = serde_json::to_vec(&header).map_err(io::Error::other)?;
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_all()?;
        sync_dir(&self.dir);
        Ok(file)
    }

    /// Keeps events that neither the store nor its quarantine accepted; returns the file.
    pub(crate) fn write_quarantine(&self, entries: &[QuarantinedEvent]) -> io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self
            .dir
            .join(format!("quarantine-{}.ndjson", self.instance));
        let mut lines = Vec::new();
        for entry in entries {
            let line = json!({
                "quarantined_at": rfc3339_micros::format(&entry.quarantined_at),
                "error": entry.error,
                "event": entry.event,
            });
            serde_json::to_writer(&mut lines, &line).map_err(io::Error::other)?;
            lines.push(b'\n');
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.write_all(&lines)?;
        file.sync_data()?;
        sync_dir(&self.dir);
        Ok(path)
    }
}

/// A spool file left by an earlier run, locked for replay.
#[derive(Debug)]
pub(crate) struct LeftSpool {
    pub(crate) path: PathBuf,
    pub(crate) events: Vec<AuditEvent>,
    /// The run that sealed it (ended on purpose), if it did.
    pub(crate) sealed_by: Option<Uuid>,
    /// Lines that could not be read back as events (kept: the file is renamed, not deleted).
    pub(crate) unreadable: usize,
    /// Holds the lock while the replay runs.
    _file: File,
}

impl LeftSpool {
    /// Removes the replayed file, or renames it when some line could not be replayed.
    pub(crate) fn finish(self) -> io::Result<()> {
        if self.unreadable > 0 {
            let mut kept = self.path.clone().into_os_string();
            kept.push(".unreadable");
            std::fs::rename(&self.path, &kept)?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        if let Some(dir) = self.path.parent() {
            sync_dir(dir);
        }
        Ok(())
    }
}

/// The spool files in `dir` not being written by a live process, oldest name first.
/// `own` (this run's file) is never returned.
pub(crate) fn left_spools(dir: &Path, own: &Path) -> io::Result<Vec<LeftSpool>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("spool-") && name.ends_with(".ndjson"))
                && path != own
        })
        .collect();
    paths.sort();
    let mut left = Vec::new();
    for path in paths {
        let file = OpenOptions::new().read(true).append(true).open(&path)?;
        if file.try_lock().is_err() {
            // Another live process is writing (or replaying) it.
            continue;
        }
        left.push(read_spool(path, file)?);
    }
    Ok(left)
}

fn read_spool(path: PathBuf, file: File) -> io::Result<LeftSpool> {
    let mut events = Vec::new();
    let mut sealed_by = None;
    let mut unreadable = 0;
    let lines: Vec<String> = BufReader::new(&file).lines().collect::<Result<_, _>>()?;
    let last = lines.len().saturating_sub(1);
    for (number, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(line) {
            Ok(value) => value,
            // The process died in the middle of writing its last line, which it had not
            // acknowledged as spooled: nothing of value is lost.
            Err(_) if number == last => {
                tracing::warn!(path = %path.display(), "audit spool: skipping a torn last line");
                continue;
            }
            Err(error) => {
                tracing::error!(path = %path.display(), line = number + 1, %error, content = %line,
                    "audit spool: unreadable line kept in the file");
                unreadable += 1;
                continue;
            }
        };
        if value.get(HEADER_KEY).is_some() {
            continue;
        }
        if let Some(trailer) = value.get(TRAILER_KEY) {
            sealed_by = trailer
                .get("run_id")
                .and_then(Value::as_str)
                .and_then(|id| id.parse().ok());
            continue;
        }
        match serde_json::from_value::<AuditEvent>(value) {
            Ok(event) => events.push(event),
            Err(error) => {
                tracing::error!(path = %path.display(), line = number + 1, %error, content = %line,
                    "audit spool: a line that is no event kept in the file");
                unreadable += 1;
            }
        }
    }
    Ok(LeftSpool {
        path,
        events,
        sealed_by,
        unreadable,
        _file: file,
    })
}

/// Makes a file's creation or removal durable (the directory entry itself).
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}
