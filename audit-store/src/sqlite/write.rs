//! The SQLite store's writes: batch appends (idempotent, with the connection left clean after
//! any failure), the quarantine and the recorder's run reports.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::{SqliteStore, read_head, seq_i64};
use crate::chain::{ChainLink, StoredLinkRow};
use crate::error::StoreError;
use crate::event::AuditEvent;
use crate::reliability::{QuarantinedEvent, RecorderRun, quarantine_json, quarantined_from_row};
use crate::sql;

/// Rows per INSERT statement: 24 columns × 500 rows stays well under SQLite's 32,766
/// bind-parameter limit.
const ROWS_PER_INSERT: usize = 500;

/// SQLite's primary result codes for content it will never accept: a string or blob over its
/// length limit, a constraint (NOT NULL, CHECK, UNIQUE), a datatype mismatch.
const SQLITE_TOOBIG: i32 = 18;
const SQLITE_CONSTRAINT: i32 = 19;
const SQLITE_MISMATCH: i32 = 20;

impl SqliteStore {
    /// [`AuditStore::append`](crate::AuditStore::append): one `BEGIN IMMEDIATE` transaction
    /// per batch. When ids of the batch are already taken, the events an earlier attempt
    /// stored are recognised and skipped ([`crate::store::remove_stored`]) and the rest is
    /// written in a second transaction.
    pub(super) async fn append_batch(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let events = crate::sanitize::storable(events);
        let mut conn = self.writer.acquire().await?;
        let error = match self.in_transaction(&mut conn, &events).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if !is_duplicate_id(&error) {
            return Err(classify(error));
        }
        let stored = stored_links(&mut conn, &events).await?;
        let unstored = crate::store::remove_stored(&events, &stored)?;
        if unstored.is_empty() {
            return Ok(());
        }
        self.in_transaction(&mut conn, &unstored)
            .await
            .map_err(classify)
    }

    /// Runs `insert_batch` between `BEGIN IMMEDIATE` and `COMMIT`, and on any failure rolls
    /// back before the connection is used again.
    ///
    /// The transaction is driven with plain statements rather than sqlx's `Transaction`:
    /// when `COMMIT` itself fails (SQLite answers `SQLITE_FULL` and keeps the transaction
    /// open), sqlx's transaction depth stays raised and every later `begin` on the
    /// connection fails, so one full disk stalled the writer for good. A connection whose
    /// rollback fails is closed, and the pool opens a fresh one (not for an in-memory
    /// database, whose single connection is the data).
    async fn in_transaction(
        &self,
        conn: &mut PoolConnection<Sqlite>,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        // IMMEDIATE takes the write lock up front, waiting out the busy timeout, instead of
        // failing with SQLITE_BUSY when another process writes to the same file.
        let written = async {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut **conn).await?;
            insert_batch(conn, events).await?;
            sqlx::query("COMMIT").execute(&mut **conn).await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if written.is_err() {
            self.roll_back(conn).await;
        }
        written
    }

    async fn roll_back(&self, conn: &mut PoolConnection<Sqlite>) {
        let rolled_back = sqlx::query("ROLLBACK").execute(&mut **conn).await;
        let in_transaction = match rolled_back {
            Ok(_) => false,
            // "cannot rollback - no transaction is active": already clean.
            Err(sqlx::Error::Database(ref db)) if db.message().contains("no transaction") => false,
            Err(_) => true,
        };
        // An in-memory database lives in its only connection: never close that one.
        let file_database = matches!(self.bulk.get(), Some(Some(_)));
        if in_transaction && file_database {
            tracing::warn!(
                "audit store: closing a SQLite writer connection that would not roll back"
            );
            conn.close_on_drop();
        }
    }

    pub(super) async fn insert_quarantined(
        &self,
        events: &[QuarantinedEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        for entry in events {
            sqlx::query(
                "INSERT INTO audit_quarantine (quarantined_at, event_id, error, event) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(entry.quarantined_at.timestamp_micros())
            .bind(entry.event.id.to_string())
            .bind(&entry.error)
            .bind(quarantine_json(&entry.event))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn read_quarantined(&self) -> Result<Vec<QuarantinedEvent>, StoreError> {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT quarantined_at, error, event FROM audit_quarantine ORDER BY id")
                .fetch_all(&self.reader)
                .await?;
        rows.into_iter()
            .map(|(at, error, event)| quarantined_from_row(micros(at)?, error, &event))
            .collect()
    }

    pub(super) async fn read_run(&self, instance: &str) -> Result<Option<RecorderRun>, StoreError> {
        type Row = (
            String,
            String,
            String,
            i64,
            String,
            i64,
            i64,
            i64,
            i64,
            Option<i64>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT instance, run_id, host, pid, delivery, started_at, reported_at, \
             pending_events, queue_capacity, stopped_at FROM audit_recorder_runs WHERE instance = ?",
        )
        .bind(instance)
        .fetch_optional(&self.writer)
        .await?;
        let Some((
            instance,
            run_id,
            host,
            pid,
            delivery,
            started,
            reported,
            pending,
            capacity,
            stopped,
        )) = row
        else {
            return Ok(None);
        };
        let corrupt =
            |what: &str| StoreError::CorruptRow(format!("recorder run {instance}: {what}"));
        Ok(Some(RecorderRun {
            run_id: run_id.parse().map_err(|_| corrupt("run_id"))?,
            host,
            pid: u32::try_from(pid).map_err(|_| corrupt("pid"))?,
            durable: delivery == "durable",
            started_at: micros(started)?,
            reported_at: micros(reported)?,
            pending_events: u64::try_from(pending).map_err(|_| corrupt("pending_events"))?,
            queue_capacity: u64::try_from(capacity).map_err(|_| corrupt("queue_capacity"))?,
            stopped_at: stopped.map(micros).transpose()?,
            instance,
        }))
    }

    pub(super) async fn write_run(&self, run: &RecorderRun) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_recorder_runs (instance, run_id, host, pid, delivery, started_at, \
             reported_at, pending_events, queue_capacity, stopped_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (instance) DO UPDATE SET run_id = excluded.run_id, host = excluded.host, \
             pid = excluded.pid, delivery = excluded.delivery, started_at = excluded.started_at, \
             reported_at = excluded.reported_at, pending_events = excluded.pending_events, \
             stopped_at = excluded.stopped_at",
        )
        .bind(&run.instance)
        .bind(run.run_id.to_string())
        .bind(&run.host)
        .bind(i64::from(run.pid))
        .bind(if run.durable { "durable" } else { "buffered" })
        .bind(run.started_at.timestamp_micros())
        .bind(run.reported_at.timestamp_micros())
        .bind(i64::try_from(run.pending_events).unwrap_or(i64::MAX))
        .bind(i64::try_from(run.queue_capacity).unwrap_or(i64::MAX))
        .bind(run.stopped_at.map(|at| at.timestamp_micros()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

/// Links the batch after the stored head, inserts it and moves the head.
async fn insert_batch(
    conn: &mut SqliteConnection,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    let head = read_head(conn).await?;
    let (links, new_head) = head.extend(events);
    for (chunk, links) in events
        .chunks(ROWS_PER_INSERT)
        .zip(links.chunks(ROWS_PER_INSERT))
    {
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO audit_events (seq, prev_hash, hash, chain_version, {}) ",
            sql::EVENT_COLUMNS
        ));
        qb.push_values(chunk.iter().zip(links), |mut row, (event, link)| {
            row.push_bind(seq_i64(link.seq))
                .push_bind(link.prev_hash.0.to_vec())
                .push_bind(link.hash.0.to_vec())
                .push_bind(i64::from(link.version.number()))
                .push_bind(event.id)
                .push_bind(event.occurred_at.timestamp_micros())
                .push_bind(event.tenant.as_deref())
                .push_bind(event.request_id.as_str())
                .push_bind(event.actor_id.as_deref())
                .push_bind(event.actor_email.as_deref())
                .push_bind(event.actor_name.as_deref())
                .push_bind(event.category.as_str())
                .push_bind(event.action.as_str())
                .push_bind(event.outcome.as_str())
                .push_bind(event.reason.as_deref())
                .push_bind(event.resource_id.as_deref())
                .push_bind(event.resource_name.as_deref())
                .push_bind(event.method.as_str())
                .push_bind(event.route.as_str())
                .push_bind(event.path.as_str())
                .push_bind(i64::from(event.status))
                .push_bind(event.duration_ms)
                .push_bind(event.client_ip.as_deref())
                .push_bind(event.user_agent.as_deref())
                .push_bind(serde_json::Value::Object(event.attributes.clone()).to_string());
        });
        qb.build().execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1")
        .bind(seq_i64(new_head.seq))
        .bind(new_head.hash.0.to_vec())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The chain links stored under the batch's ids.
async fn stored_links(
    conn: &mut SqliteConnection,
    events: &[AuditEvent],
) -> Result<HashMap<Uuid, ChainLink>, StoreError> {
    let mut stored = HashMap::new();
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT id, seq, prev_hash, hash, chain_version FROM audit_events WHERE id IN (",
        );
        let mut ids = qb.separated(", ");
        for event in chunk {
            ids.push_bind(event.id);
        }
        qb.push(")");
        let rows: Vec<StoredLinkRow> = qb.build_query_as().fetch_all(&mut *conn).await?;
        for (id, seq, prev_hash, hash, version) in rows {
            stored.insert(id, ChainLink::from_stored(seq, &prev_hash, &hash, version)?);
        }
    }
    Ok(stored)
}

/// A UNIQUE violation on the event id (not on `seq`: a taken `seq` means the stored chain
/// head is behind the rows, a fault of the database, not of the events).
fn is_duplicate_id(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(sqlx::Error::Database(db))
        if db.is_unique_violation() && db.message().contains("audit_events.id"))
}

/// Marks refusals of the events' content as [`StoreError::Rejected`]; everything else (disk
/// full, I/O, locks, a missing table) stays as it is, to be retried.
fn classify(error: StoreError) -> StoreError {
    let StoreError::Database(sqlx::Error::Database(db)) = &error else {
        return error;
    };
    let primary = db
        .code()
        .and_then(|code| code.parse::<i32>().ok())
        .map(|code| code & 0xff);
    let seq_taken = db.message().contains("audit_events.seq");
    let content_refused = matches!(
        primary,
        Some(SQLITE_TOOBIG | SQLITE_CONSTRAINT | SQLITE_MISMATCH)
    ) && !seq_taken;
    match error {
        StoreError::Database(error) if content_refused => StoreError::rejected(error),
        other => other,
    }
}

fn micros(at: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(at)
        .ok_or_else(|| StoreError::CorruptRow(format!("time {at} out of range")))
}
