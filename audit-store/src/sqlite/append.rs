//! The SQLite store's appends, on a connection of its own (rusqlite) with prepared statements
//! that are reused batch after batch, on a blocking thread.
//!
//! The async side ([`encode`]) does everything that needs no lock: it sanitises the batch,
//! computes the content digests of its chain links side by side, and writes every value to
//! bind into one text buffer (no allocation per field), with the event's terms and the facet
//! values and resource names this store has not written yet. The blocking side
//! ([`Appender::append`]) takes the write lock (`BEGIN IMMEDIATE`), links the batch after the
//! stored head (the short sequential chaining steps), inserts, and commits; after any failure
//! it rolls back, or drops the connection when even that fails, so the next attempt starts
//! clean. The blocking side runs on the store's writer thread (`writer_thread.rs`).

use std::path::PathBuf;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, ffi, params};

use super::checkpointer::{Checkpointer, FALLBACK_PAGES};
use super::terms::Filterable;
use super::writer_thread::WriterThread;
use crate::batch::AttributesView;
use crate::chain::{ChainHead, ChainVersion, content_digests};
use crate::error::StoreError;
use crate::event::AuditEvent;
use crate::indexing::{NewValues, Written};

/// Where the store's own connections open the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Location {
    /// A database file.
    File(PathBuf),
    /// An in-memory database shared by name through SQLite's `memdb` VFS, so that sqlx's
    /// connection and the store's own see the same data.
    Memory(String),
}

impl Location {
    /// Opens a connection with `flags`.
    pub(super) fn open(&self, flags: OpenFlags) -> rusqlite::Result<Connection> {
        match self {
            Location::File(path) => Connection::open_with_flags(path, flags),
            Location::Memory(name) => Connection::open_with_flags_and_vfs(name, flags, "memdb"),
        }
    }
}

/// One text value of a row: a range of [`EncodedBatch::text`], or none (SQL NULL).
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    const NULL: Span = Span {
        start: u32::MAX,
        end: u32::MAX,
    };
}

/// The text columns of a row, in the order of [`INSERT_EVENT`] after its fixed columns.
const TEXT_COLUMNS: usize = 18;

struct EncodedRow {
    id: [u8; 16],
    occurred_at: i64,
    status: i64,
    duration_ms: f64,
    /// tenant, request_id, actor_id, actor_email, actor_name, category, action, outcome,
    /// reason, resource_id, resource_name, method, route, path, client_ip, user_agent,
    /// attributes, terms.
    text: [Span; TEXT_COLUMNS],
}

/// A batch ready to be written: every value the statements bind.
pub(super) struct EncodedBatch {
    text: String,
    rows: Vec<EncodedRow>,
    digests: Vec<[u8; 32]>,
    new: NewValues,
    /// `new.facets` and `new.names` as the JSON arrays [`INSERT_FACETS`] and
    /// [`INSERT_NAMES`] read; `None` when there are none.
    new_facets: Option<String>,
    new_names: Option<String>,
}

impl EncodedBatch {
    fn get(&self, span: Span) -> Option<&str> {
        (span.start != u32::MAX).then(|| &self.text[span.start as usize..span.end as usize])
    }
}

/// Prepares `events` (already sanitised) for [`Appender::append`].
pub(super) fn encode(events: &[AuditEvent], written: &Mutex<Written>) -> EncodedBatch {
    let mut text = String::with_capacity(events.len() * 600);
    let mut rows = Vec::with_capacity(events.len());
    let new = written
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .new_values(events);
    for event in events {
        let filterable = Filterable::of(event);
        let attributes = span_of(&mut text, |text| {
            AttributesView::Map(&event.attributes).push_json(text);
        });
        let terms = span_of(&mut text, |text| filterable.push_terms(text));
        let fields = [
            event.tenant.as_deref(),
            Some(event.request_id.as_str()),
            event.actor_id.as_deref(),
            event.actor_email.as_deref(),
            event.actor_name.as_deref(),
            Some(event.category.as_str()),
            Some(event.action.as_str()),
            Some(event.outcome.as_str()),
            event.reason.as_deref(),
            event.resource_id.as_deref(),
            event.resource_name.as_deref(),
            Some(event.method.as_str()),
            Some(event.route.as_str()),
            Some(event.path.as_str()),
            event.client_ip.as_deref(),
            event.user_agent.as_deref(),
        ];
        let mut spans = [Span::NULL; TEXT_COLUMNS];
        for (slot, value) in spans.iter_mut().zip(fields) {
            if let Some(value) = value {
                *slot = span_of(&mut text, |text| text.push_str(value));
            }
        }
        spans[16] = attributes;
        spans[17] = terms;
        rows.push(EncodedRow {
            id: *event.id.as_bytes(),
            occurred_at: event.occurred_at.timestamp_micros(),
            status: i64::from(event.status),
            duration_ms: event.duration_ms,
            text: spans,
        });
    }
    EncodedBatch {
        text,
        rows,
        digests: content_digests(events),
        new_facets: json_array(&new.facets),
        new_names: json_array(&new.names),
        new,
    }
}

/// `values` as a JSON array, or `None` if there are none.
fn json_array<T: serde::Serialize>(values: &[T]) -> Option<String> {
    // Strings and `None`s only: serialising them cannot fail.
    (!values.is_empty()).then(|| serde_json::to_string(values).unwrap_or_default())
}

/// Where in `text` what `write` appends lands.
fn span_of(text: &mut String, write: impl FnOnce(&mut String)) -> Span {
    let start = text.len() as u32;
    write(text);
    Span {
        start,
        end: text.len() as u32,
    }
}

const INSERT_EVENT: &str = "INSERT INTO audit_events (seq, prev_hash, hash, chain_version, id, \
     occurred_at, status, duration_ms, tenant, request_id, actor_id, actor_email, actor_name, \
     category, action, outcome, reason, resource_id, resource_name, method, route, path, \
     client_ip, user_agent, attributes) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
     ?19, ?20, ?21, ?22, ?23, ?24, ?25)";
/// All of a batch's terms in one statement, from a JSON array (`?2`) of each event's terms in
/// order, the first at seq `?1`. One statement matters: FTS5 flushes its in-memory index at
/// every statement's savepoint, so a statement per event turned the batch's one sorted write
/// into a write per event (a third of the append's time, in the profile).
const INSERT_TERMS: &str =
    "INSERT INTO audit_terms (rowid, terms) SELECT ?1 + key, value FROM json_each(?2)";
/// The batch's new facet values in one statement, from a JSON array (`?1`) of
/// `[tenant, kind, value, email, name]` arrays.
const INSERT_FACETS: &str = "INSERT OR IGNORE INTO audit_facet_values (tenant, kind, value, \
     email, name) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
     FROM json_each(?1)";
/// The batch's new resource names in one statement, from a JSON array (`?1`). One statement
/// for the same reason as [`INSERT_TERMS`]: each name's insert also writes the names' trigram
/// index (a trigger), and a statement per name flushed that index once per name; a service
/// that creates resources (a new name in every other event) spent more of its append in
/// FTS5 merging those one-name segments than in anything else.
const INSERT_NAMES: &str =
    "INSERT OR IGNORE INTO audit_resource_names (name) SELECT value FROM json_each(?1)";

/// How a write ended, short of an error.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Appended {
    Written,
    /// An event id of the batch is taken: nothing was written, the caller sorts out which.
    DuplicateId,
}

/// The store's write connection.
#[derive(Debug)]
pub(super) struct Appender {
    location: Location,
    connection: Mutex<Option<Connection>>,
    pub(super) written: Mutex<Written>,
    busy_timeout: Duration,
    synchronous: &'static str,
    /// Where everything touching `connection` runs.
    thread: WriterThread,
    /// Copies the committed log into the database file, off the writer thread.
    checkpoints: Checkpointer,
}

impl Appender {
    /// `niceness`: how much lower than the process's the writer thread's priority is.
    pub(super) fn new(
        location: Location,
        busy_timeout: Duration,
        synchronous: &'static str,
        niceness: Arc<AtomicU8>,
    ) -> Arc<Self> {
        Arc::new(Appender {
            checkpoints: Checkpointer::new(&location, synchronous, niceness.clone()),
            location,
            connection: Mutex::new(None),
            written: Mutex::new(Written::default()),
            busy_timeout,
            synchronous,
            thread: WriterThread::new(niceness),
        })
    }

    /// Runs `work` with this appender on the writer thread.
    pub(super) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Appender) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let appender = self.clone();
        self.thread.run(move || work(&appender)).await
    }

    pub(super) fn location(&self) -> &Location {
        &self.location
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let connection = self
            .location
            .open(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(write_error)?;
        connection
            .busy_timeout(self.busy_timeout)
            .map_err(write_error)?;
        // A 64 MiB page cache: an append touches the table's and two indexes' right edges
        // and the terms index's segments; keeping them in memory keeps appends flat as the
        // table grows. The log is checkpointed by `checkpoints`; this connection only does
        // it itself if the log reaches FALLBACK_PAGES.
        connection
            .execute_batch(&format!(
                "PRAGMA synchronous = {}; PRAGMA cache_size = -65536; \
                 PRAGMA wal_autocheckpoint = {FALLBACK_PAGES};",
                self.synchronous
            ))
            .map_err(write_error)?;
        connection.set_prepared_statement_cache_capacity(16);
        Ok(connection)
    }

    /// Runs `work` on the connection inside `BEGIN IMMEDIATE` … `COMMIT` (blocking). On any
    /// failure the transaction is rolled back before the connection is used again, and a
    /// connection that will not roll back is dropped (the next call opens a fresh one).
    pub(super) fn in_transaction<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut slot = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(self.open()?);
        }
        let Some(connection) = slot.as_ref() else {
            return Err(StoreError::DatabaseWrite("no connection".into()));
        };
        let result = connection
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(write_error)
            .and_then(|()| work(connection))
            .and_then(|value| {
                connection.execute_batch("COMMIT").map_err(write_error)?;
                self.checkpoints.nudge();
                Ok(value)
            });
        if result.is_err() && !connection.is_autocommit() {
            let rolled_back = connection.execute_batch("ROLLBACK");
            if rolled_back.is_err() || !connection.is_autocommit() {
                tracing::warn!(
                    "audit store: dropping a SQLite write connection that would not roll back"
                );
                *slot = None;
            }
        }
        result
    }

    /// `PRAGMA max_page_count` of the connection: `extra_pages` more than the database has
    /// now, or SQLite's maximum; returns the current page count.
    #[cfg(feature = "testing")]
    pub(super) fn limit_pages(&self, extra_pages: Option<i64>) -> Result<i64, StoreError> {
        let mut slot = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(self.open()?);
        }
        let Some(connection) = slot.as_ref() else {
            return Err(StoreError::DatabaseWrite("no connection".into()));
        };
        let pages: i64 = connection
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .map_err(write_error)?;
        let limit = extra_pages.map_or(i64::from(i32::MAX), |extra| pages + extra);
        connection
            .query_row(&format!("PRAGMA max_page_count = {limit}"), [], |_| Ok(()))
            .map_err(write_error)?;
        Ok(pages)
    }

    /// Writes `batch` (blocking).
    pub(super) fn append(&self, batch: &EncodedBatch) -> Result<Appended, StoreError> {
        let written = self.in_transaction(|connection| write_batch(connection, batch));
        match written {
            Ok(()) => {
                self.written
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remember(&batch.new);
                Ok(Appended::Written)
            }
            Err(StoreError::DatabaseWrite(message)) if is_duplicate_id(&message) => {
                Ok(Appended::DuplicateId)
            }
            Err(error) => Err(error),
        }
    }
}

fn write_batch(connection: &Connection, batch: &EncodedBatch) -> Result<(), StoreError> {
    let (seq, hash): (i64, Vec<u8>) = connection
        .query_row(
            "SELECT seq, hash FROM audit_chain_head WHERE id = 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(write_error)?;
    let head = ChainHead::from_stored(seq, &hash)?;
    let (links, new_head) = head.extend_with(&batch.digests);
    let mut insert_event = connection
        .prepare_cached(INSERT_EVENT)
        .map_err(write_error)?;
    let version = i64::from(ChainVersion::default().number());
    // Terms hold only ASCII letters, digits and spaces: no JSON escaping needed.
    let mut terms = String::with_capacity(batch.rows.len() * 120);
    terms.push('[');
    for (row, link) in batch.rows.iter().zip(&links) {
        let seq = i64::try_from(link.seq).unwrap_or(i64::MAX);
        let s = &mut insert_event;
        s.raw_bind_parameter(1, seq).map_err(write_error)?;
        s.raw_bind_parameter(2, &link.prev_hash.0[..])
            .map_err(write_error)?;
        s.raw_bind_parameter(3, &link.hash.0[..])
            .map_err(write_error)?;
        s.raw_bind_parameter(4, version).map_err(write_error)?;
        s.raw_bind_parameter(5, &row.id[..]).map_err(write_error)?;
        s.raw_bind_parameter(6, row.occurred_at)
            .map_err(write_error)?;
        s.raw_bind_parameter(7, row.status).map_err(write_error)?;
        s.raw_bind_parameter(8, row.duration_ms)
            .map_err(write_error)?;
        for (offset, span) in row.text[..17].iter().enumerate() {
            s.raw_bind_parameter(9 + offset, batch.get(*span))
                .map_err(write_error)?;
        }
        s.raw_execute().map_err(write_error)?;
        if terms.len() > 1 {
            terms.push(',');
        }
        terms.push('"');
        terms.push_str(batch.get(row.text[17]).unwrap_or_default());
        terms.push('"');
    }
    terms.push(']');
    if let Some(first) = links.first() {
        let first = i64::try_from(first.seq).unwrap_or(i64::MAX);
        connection
            .prepare_cached(INSERT_TERMS)
            .map_err(write_error)?
            .execute(params![first, terms])
            .map_err(write_error)?;
    }
    for (statement, values) in [
        (INSERT_FACETS, &batch.new_facets),
        (INSERT_NAMES, &batch.new_names),
    ] {
        if let Some(values) = values {
            connection
                .prepare_cached(statement)
                .map_err(write_error)?
                .execute([values])
                .map_err(write_error)?;
        }
    }
    connection
        .execute(
            "UPDATE audit_chain_head SET seq = ?1, hash = ?2 WHERE id = 1",
            params![
                i64::try_from(new_head.seq).unwrap_or(i64::MAX),
                &new_head.hash.0[..]
            ],
        )
        .map_err(write_error)?;
    Ok(())
}

/// SQLite's primary result codes for content it will never accept: a string or blob over its
/// length limit, a constraint (NOT NULL, CHECK, UNIQUE), a datatype mismatch.
const CONTENT_REFUSED: [i32; 3] = [
    ffi::SQLITE_TOOBIG,
    ffi::SQLITE_CONSTRAINT,
    ffi::SQLITE_MISMATCH,
];

/// A rusqlite error as a store error: content the database refuses is
/// [`StoreError::Rejected`] (except a taken `seq`: the stored head is behind the rows, a fault
/// of the database); everything else (disk full, I/O, busy, a missing table) is a
/// [`StoreError::DatabaseWrite`], to be retried.
pub(super) fn write_error(error: rusqlite::Error) -> StoreError {
    let refused = match &error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let primary = failure.extended_code & 0xff;
            let seq_taken = message
                .as_deref()
                .is_some_and(|m| m.contains("audit_events.seq"));
            let id_taken = message.as_deref().is_some_and(is_duplicate_id);
            CONTENT_REFUSED.contains(&primary) && !seq_taken && !id_taken
        }
        _ => false,
    };
    if refused {
        StoreError::Rejected {
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    } else {
        StoreError::DatabaseWrite(error.to_string())
    }
}

fn is_duplicate_id(message: &str) -> bool {
    message.contains("UNIQUE constraint failed: audit_events.id")
}
