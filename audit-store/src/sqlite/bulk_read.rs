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
use crate::chain::ChainHash;
use crate::error::StoreError;
use crate::event::AuditEvent;
use crate::sql::{self, StoredRow};

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
}

impl BulkReader {
    /// A reader of the database at `location` (opened on first use).
    pub(super) fn new(location: Location, busy_timeout: Duration) -> Self {
        BulkReader {
            inner: Arc::new(Connections {
                location,
                busy_timeout,
                idle: Mutex::new(Vec::new()),
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
        tokio::task::spawn_blocking(move || connections.read(&sql, binds))
            .await
            .map_err(|e| StoreError::Background(format!("a SQLite read failed to finish: {e}")))?
    }
}

impl Connections {
    fn read(&self, sql: &str, binds: Vec<Value>) -> Result<Vec<AuditEvent>, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let connection = match idle {
            Some(connection) => connection,
            None => self.open()?,
        };
        // A connection that failed is dropped, not reused.
        let events = read_events(&connection, sql, binds)?;
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_CONNECTIONS
        {
            idle.push(connection);
        }
        Ok(events)
    }

    /// A read-only connection with the store's busy timeout and cache settings.
    fn open(&self) -> Result<Connection, StoreError> {
        let connection = self
            .location
            .open(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(read_error)?;
        connection
            .busy_timeout(self.busy_timeout)
            .map_err(read_error)?;
        connection
            .execute_batch("PRAGMA cache_size = -16384; PRAGMA mmap_size = 268435456;")
            .map_err(read_error)?;
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
