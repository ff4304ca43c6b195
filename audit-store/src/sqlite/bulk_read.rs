//! Reads of many rows (export chunks, chain walks, pages) through SQLite's own API.
//!
//! sqlx runs each SQLite connection on a worker thread and copies every value of every row
//! into an owned value before handing it over. Selecting a whole page as one JSON text
//! (`ROW_JSON`) halves that cost but makes SQLite build and the store parse JSON. This reader
//! instead keeps its own read-only connections to the same database file and steps the
//! statement on a blocking thread, decoding each column in place: about four times the rows
//! per second (`cargo run --release -p audit-store --example export_profile`).
//!
//! It needs a file: an in-memory database is private to the connection that made it, so an
//! in-memory store keeps the JSON path. The SQL is the same shared SQL (`sql.rs`); only the
//! select list differs (typed columns), and the dialect records the bound values for it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, Row};
use uuid::Uuid;

use super::append::Location;
use crate::batch::{AttributesView, EventView};
use crate::batch::{BATCH_ROWS, EventBatch};
use crate::chain::{ChainHash, ChainLink, write_canonical_fields};
use crate::error::StoreError;
use crate::event::{AuditEvent, is_outcome, is_valid_action};
use crate::sql::{self, StoredRow};
use crate::verify::{LinkHasher, RowCheck};

/// Idle connections kept for the next read; more readers than this open their own.
const IDLE_CONNECTIONS: usize = 4;

/// Read-only connections to one database file, used on blocking threads.
#[derive(Debug, Clone)]
pub(super) struct BulkReader {
    inner: Arc<Connections>,
}

#[derive(Debug)]
struct Connections {
    location: Location,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    /// Connections for verification's chain walks, which read every page once: no memory
    /// map (mapped pages of a file count in the process's resident set, up to the map's
    /// 256 MiB per connection, however large the log) and a small page cache, so
    /// verification's memory stays flat whatever the size of the log.
    idle_walkers: Mutex<Vec<Connection>>,
}

/// The settings of a connection reading pages many times (pages, exports).
const READER_PRAGMAS: &str = "PRAGMA cache_size = -16384; PRAGMA mmap_size = 268435456;";

/// The settings of a connection reading every page once (verification's chain walks).
const WALKER_PRAGMAS: &str = "PRAGMA cache_size = -2048; PRAGMA mmap_size = 0;";

impl BulkReader {
    /// A reader of the database at `location` (opened on first use).
    pub(super) fn new(location: Location, busy_timeout: Duration) -> Self {
        BulkReader {
            inner: Arc::new(Connections {
                location,
                busy_timeout,
                idle: Mutex::new(Vec::new()),
                idle_walkers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Runs `sql` (selecting `sql::ROW_COLUMNS`) with `binds` and decodes every row.
    pub(super) async fn events(
        &self,
        sql: String,
        binds: Vec<Value>,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let connections = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            connections.read(&sql, binds, READER_PRAGMAS, read_events)
        })
        .await
        .map_err(|e| StoreError::Background(format!("a SQLite read failed to finish: {e}")))?
    }

    /// Runs `sql` (selecting `sql::ROW_COLUMNS`) with `binds` into one [`EventBatch`], each
    /// row's values copied from SQLite's column buffers ([`read_batch`]).
    pub(super) async fn batch(
        &self,
        sql: String,
        binds: Vec<Value>,
    ) -> Result<EventBatch, StoreError> {
        let connections = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            connections.read(&sql, binds, READER_PRAGMAS, read_batch)
        })
        .await
        .map_err(|e| StoreError::Background(format!("a SQLite read failed to finish: {e}")))?
    }

    /// Runs `sql` (selecting `sql::ROW_COLUMNS` in chain order) with `binds` and hashes every
    /// row from its column values ([`check_rows`]), on the same blocking thread.
    /// [`canonical_rows`] of `sql`.
    #[cfg(feature = "testing")]
    pub(super) async fn canonical(
        &self,
        sql: String,
        binds: Vec<Value>,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let connections = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            connections.read(&sql, binds, WALKER_PRAGMAS, canonical_rows)
        })
        .await
        .map_err(|e| StoreError::Background(format!("a SQLite read failed to finish: {e}")))?
    }

    pub(super) async fn checks(
        &self,
        sql: String,
        binds: Vec<Value>,
    ) -> Result<Vec<RowCheck>, StoreError> {
        let connections = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            connections.read(&sql, binds, WALKER_PRAGMAS, check_rows)
        })
        .await
        .map_err(|e| StoreError::Background(format!("a SQLite read failed to finish: {e}")))?
    }
}

impl Connections {
    fn read<T>(
        &self,
        sql: &str,
        binds: Vec<Value>,
        pragmas: &'static str,
        rows: fn(&Connection, &str, Vec<Value>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pool = if pragmas == WALKER_PRAGMAS {
            &self.idle_walkers
        } else {
            &self.idle
        };
        let idle = pool.lock().ok().and_then(|mut idle| idle.pop());
        let connection = match idle {
            Some(connection) => connection,
            None => self.open(pragmas)?,
        };
        // A connection that failed is dropped, not reused.
        let read = rows(&connection, sql, binds)?;
        if let Ok(mut idle) = pool.lock()
            && idle.len() < IDLE_CONNECTIONS
        {
            idle.push(connection);
        }
        Ok(read)
    }

    /// A read-only connection with the store's busy timeout and `pragmas`.
    fn open(&self, pragmas: &str) -> Result<Connection, StoreError> {
        let connection = self
            .location
            .open(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(read_error)?;
        connection
            .busy_timeout(self.busy_timeout)
            .map_err(read_error)?;
        connection.execute_batch(pragmas).map_err(read_error)?;
        Ok(connection)
    }
}

fn read_error(error: rusqlite::Error) -> StoreError {
    StoreError::DatabaseRead(error.to_string())
}

fn read_events(
    connection: &Connection,
    sql: &str,
    binds: Vec<Value>,
) -> Result<Vec<AuditEvent>, StoreError> {
    let mut statement = connection.prepare(sql).map_err(read_error)?;
    let mut rows = statement
        .query(rusqlite::params_from_iter(binds))
        .map_err(read_error)?;
    let mut events = Vec::new();
    while let Some(row) = rows.next().map_err(read_error)? {
        events.push(sql::event_from(stored_row(row)?)?);
    }
    Ok(events)
}

/// The rows of `sql` as one batch: each value borrowed from the row and copied once, into
/// the batch's buffer; the attributes as their stored text (the store writes serde_json's
/// compact form of the map, which is what decoding and re-encoding them would give). A row
/// whose values do not fit (a wrong type, an unknown action, attributes that are not a JSON
/// object) is decoded in full instead, which names the fault as the ordinary read does.
fn read_batch(
    connection: &Connection,
    sql: &str,
    binds: Vec<Value>,
) -> Result<EventBatch, StoreError> {
    let mut statement = connection.prepare(sql).map_err(read_error)?;
    let mut rows = statement
        .query(rusqlite::params_from_iter(binds))
        .map_err(read_error)?;
    let mut batch = EventBatch::with_capacity(BATCH_ROWS, 720);
    while let Some(row) = rows.next().map_err(read_error)? {
        let seq = Column::new(row, 0, "seq").integer()?;
        let link = stored_link(row, seq).ok();
        let fields = match (link, Column::new(row, 3, "id").of_seq(seq).uuid()) {
            (Some(link), Ok(id)) => row_fields(row, seq, id, Some(link)),
            _ => None,
        };
        match fields.filter(|fields| is_valid_action(fields.action) && is_outcome(fields.outcome)) {
            Some(fields) => batch.push(&fields),
            None => batch.push(&EventView::of(&sql::event_from(stored_row(row)?)?)),
        }
    }
    Ok(batch)
}

/// Each row's link and whether its content gives its hash, hashed from the column values
/// as SQLite hands them over: the canonical JSON is written from borrowed text
/// ([`row_fields`]), so no event, string or attributes map is built per row.
///
/// The attributes are taken as their stored text, which the store writes in canonical form.
/// That is sound only for a *match*: when the bytes written here give the stored hash, they
/// are the canonical JSON that was hashed at append time (SHA-256 admits no other), and the
/// attributes text, a complete JSON object at a fixed place between fixed keys, is then
/// exactly the canonical form of the decoded attributes, so the decoded event gives the same
/// hash. Text that is not canonical (written by other means) gives a mismatch, which the
/// caller decides on the decoded event ([`crate::store::chain_check_stream`]); so does a row
/// this path cannot read, whose decoding then reports what is wrong with it.
fn check_rows(
    connection: &Connection,
    sql: &str,
    binds: Vec<Value>,
) -> Result<Vec<RowCheck>, StoreError> {
    let mut statement = connection.prepare(sql).map_err(read_error)?;
    let mut rows = statement
        .query(rusqlite::params_from_iter(binds))
        .map_err(read_error)?;
    let mut hasher = LinkHasher::with_capacity(5000);
    while let Some(row) = rows.next().map_err(read_error)? {
        let seq = Column::new(row, 0, "seq").integer()?;
        let link = stored_link(row, seq)?;
        let id = Column::new(row, 3, "id").of_seq(seq).uuid()?;
        hasher.push(link, id, |out| write_row_canonical(row, seq, id, out));
    }
    Ok(hasher.finish())
}

/// The chain link of the row at `seq` (columns 1, 2 and 24 of `sql::ROW_COLUMNS`).
fn stored_link(row: &Row<'_>, seq: i64) -> Result<ChainLink, StoreError> {
    let column = |index: usize, name: &'static str| Column::new(row, index, name).of_seq(seq);
    ChainLink::from_stored(
        seq,
        column(1, "prev_hash").blob()?,
        column(2, "hash").blob()?,
        column(24, "chain_version").integer()?,
    )
}

/// Appends the row's canonical JSON, written from its column values, to `out`; `false` (and
/// nothing written) when a value does not fit.
fn write_row_canonical(row: &Row<'_>, seq: i64, id: Uuid, out: &mut Vec<u8>) -> bool {
    match row_fields(row, seq, id, None) {
        Some(fields) => {
            write_canonical_fields(&fields, out);
            true
        }
        None => false,
    }
}

/// The fast path's canonical JSON of each row (`None` where it falls back), for the test
/// holding it byte-identical to the decoded events' canonical JSON.
#[cfg(feature = "testing")]
pub(super) fn canonical_rows(
    connection: &Connection,
    sql: &str,
    binds: Vec<Value>,
) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    let mut statement = connection.prepare(sql).map_err(read_error)?;
    let mut rows = statement
        .query(rusqlite::params_from_iter(binds))
        .map_err(read_error)?;
    let mut canonical = Vec::new();
    while let Some(row) = rows.next().map_err(read_error)? {
        let seq = Column::new(row, 0, "seq").integer()?;
        let id = Column::new(row, 3, "id").of_seq(seq).uuid()?;
        let mut out = Vec::new();
        canonical.push(write_row_canonical(row, seq, id, &mut out).then_some(out));
    }
    Ok(canonical)
}

/// The canonical JSON's fields borrowed from a row; `None` when a value does not fit (the
/// row is then decoded in full, which names the fault).
fn row_fields<'r>(
    row: &'r Row<'_>,
    seq: i64,
    id: Uuid,
    chain: Option<ChainLink>,
) -> Option<EventView<'r>> {
    let text = |index: usize| -> Option<Option<&'r str>> {
        match row.get_ref(index).ok()? {
            ValueRef::Null => Some(None),
            ValueRef::Text(bytes) => std::str::from_utf8(bytes).ok().map(Some),
            _ => None,
        }
    };
    let required = |index: usize| text(index).flatten();
    let column = |index: usize, name: &'static str| Column::new(row, index, name).of_seq(seq);
    let attributes = required(23)?;
    // A complete JSON object (checked without building it): the soundness argument of
    // `check_rows` needs the text to end where an object ends.
    if !attributes.starts_with('{')
        || serde_json::from_str::<serde::de::IgnoredAny>(attributes).is_err()
    {
        return None;
    }
    Some(EventView {
        action: required(11)?,
        actor_email: text(8)?,
        actor_id: text(7)?,
        actor_name: text(9)?,
        attributes: AttributesView::Json(attributes),
        chain,
        category: required(10)?,
        client_ip: text(21)?,
        duration_ms: column(20, "duration_ms").real().ok()?,
        id,
        method: required(16)?,
        occurred_at: chrono::DateTime::from_timestamp_micros(
            column(4, "occurred_at").integer().ok()?,
        )?,
        outcome: required(12)?,
        path: required(18)?,
        reason: text(13)?,
        request_id: required(6)?,
        resource_id: text(14)?,
        resource_name: text(15)?,
        route: required(17)?,
        status: u16::try_from(column(19, "status").integer().ok()?).ok()?,
        tenant: text(5)?,
        user_agent: text(22)?,
    })
}

/// One row of `sql::ROW_COLUMNS`. A value of the wrong type (changed behind the store's back)
/// is a [`StoreError::CorruptRow`] naming the row and the column.
fn stored_row(row: &Row<'_>) -> Result<StoredRow, StoreError> {
    let seq = Column::new(row, 0, "seq").integer()?;
    let column = |index: usize, name: &'static str| Column::new(row, index, name).of_seq(seq);
    Ok(StoredRow {
        seq: u64::try_from(seq).map_err(|_| corrupt(seq, "seq", "is negative"))?,
        prev_hash: column(1, "prev_hash").hash()?,
        hash: column(2, "hash").hash()?,
        id: column(3, "id").uuid()?,
        occurred_at: column(4, "occurred_at").integer()?,
        tenant: column(5, "tenant").optional_text()?,
        request_id: column(6, "request_id").text()?,
        actor_id: column(7, "actor_id").optional_text()?,
        actor_email: column(8, "actor_email").optional_text()?,
        actor_name: column(9, "actor_name").optional_text()?,
        category: column(10, "category").text()?,
        action: column(11, "action")
            .text()?
            .parse()
            .map_err(|e| corrupt(seq, "action", &format!("{e}")))?,
        outcome: column(12, "outcome")
            .text()?
            .parse()
            .map_err(|e| corrupt(seq, "outcome", &format!("{e}")))?,
        reason: column(13, "reason").optional_text()?,
        resource_id: column(14, "resource_id").optional_text()?,
        resource_name: column(15, "resource_name").optional_text()?,
        method: column(16, "method").text()?,
        route: column(17, "route").text()?,
        path: column(18, "path").text()?,
        status: {
            let status = column(19, "status").integer()?;
            u16::try_from(status).map_err(|_| corrupt(seq, "status", "is out of range"))?
        },
        duration_ms: column(20, "duration_ms").real()?,
        client_ip: column(21, "client_ip").optional_text()?,
        user_agent: column(22, "user_agent").optional_text()?,
        attributes: serde_json::from_str(&column(23, "attributes").text()?)
            .map_err(|e| corrupt(seq, "attributes", &format!("is not a JSON object: {e}")))?,
        chain_version: {
            let version = column(24, "chain_version").integer()?;
            u8::try_from(version).map_err(|_| corrupt(seq, "chain_version", "is out of range"))?
        },
    })
}

fn corrupt(seq: i64, column: &str, what: &str) -> StoreError {
    StoreError::CorruptRow(format!("seq {seq}: {column} {what}"))
}

/// One column of one row, read with the type the schema gives it.
struct Column<'a, 'r> {
    row: &'a Row<'r>,
    index: usize,
    name: &'static str,
    seq: i64,
}

impl<'a, 'r> Column<'a, 'r> {
    fn new(row: &'a Row<'r>, index: usize, name: &'static str) -> Self {
        Column {
            row,
            index,
            name,
            seq: 0,
        }
    }

    fn of_seq(mut self, seq: i64) -> Self {
        self.seq = seq;
        self
    }

    fn value(&self) -> Result<ValueRef<'a>, StoreError> {
        self.row.get_ref(self.index).map_err(read_error)
    }

    fn wrong(&self, expected: &str) -> StoreError {
        corrupt(self.seq, self.name, &format!("is not {expected}"))
    }

    fn integer(&self) -> Result<i64, StoreError> {
        match self.value()? {
            ValueRef::Integer(value) => Ok(value),
            _ => Err(self.wrong("an integer")),
        }
    }

    fn real(&self) -> Result<f64, StoreError> {
        match self.value()? {
            ValueRef::Real(value) => Ok(value),
            // A REAL column holds integral values as integers when it can do so exactly.
            ValueRef::Integer(value) => Ok(value as f64),
            _ => Err(self.wrong("a number")),
        }
    }

    fn optional_text(&self) -> Result<Option<String>, StoreError> {
        match self.value()? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                .map(|text| Some(text.to_owned()))
                .map_err(|_| self.wrong("UTF-8 text")),
            _ => Err(self.wrong("text")),
        }
    }

    fn text(&self) -> Result<String, StoreError> {
        self.optional_text()?.ok_or_else(|| self.wrong("text"))
    }

    fn blob(&self) -> Result<&'a [u8], StoreError> {
        match self.value()? {
            ValueRef::Blob(bytes) => Ok(bytes),
            _ => Err(self.wrong("a blob")),
        }
    }

    fn hash(&self) -> Result<ChainHash, StoreError> {
        ChainHash::from_slice(self.blob()?).ok_or_else(|| self.wrong("32 bytes"))
    }

    fn uuid(&self) -> Result<Uuid, StoreError> {
        Uuid::from_slice(self.blob()?).map_err(|_| self.wrong("16 bytes"))
    }
}
