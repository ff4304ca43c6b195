//! The SQLite store's writes: idempotent batch appends (written by `append.rs`), the
//! quarantine and the recorder's run reports.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::SqliteStore;
use super::append::{self, Appended, Appender, EncodedBatch};
use crate::chain::{ChainLink, StoredLinkRow};
use crate::error::StoreError;
use crate::event::AuditEvent;
use crate::reliability::{QuarantinedEvent, RecorderRun, quarantine_json, quarantined_from_row};

/// Ids looked up per statement (SQLite's bind-parameter limit is 32,766).
const IDS_PER_LOOKUP: usize = 500;

impl SqliteStore {
    /// [`AuditStore::append`](crate::AuditStore::append): one `BEGIN IMMEDIATE` transaction
    /// per batch on the store's own write connection (`append.rs`). When ids of the batch are
    /// already taken, the events an earlier attempt stored are recognised and skipped
    /// ([`crate::store::remove_stored`]) and the rest is written in a second transaction.
    pub(super) async fn append_batch(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let appender = self.own().await?.appender.clone();
        // The batch's CPU-heavy part, sanitising and encoding: see `runtime.rs`.
        let (events, batch) = crate::runtime::off_the_workers(|| {
            let events = crate::sanitize::storable(events);
            let batch = append::encode(&events, &appender.written);
            (events, batch)
        });
        if write(&appender, batch).await? == Appended::Written {
            return Ok(());
        }
        let mut conn = self.writer.acquire().await?;
        let stored = stored_links(&mut conn, &events).await?;
        drop(conn);
        let unstored = crate::store::remove_stored(&events, &stored)?;
        if unstored.is_empty() {
            return Ok(());
        }
        let batch =
            crate::runtime::off_the_workers(|| append::encode(&unstored, &appender.written));
        match write(&appender, batch).await? {
            Appended::Written => Ok(()),
            // Another writer stored some of them meanwhile: the next attempt sorts it out.
            Appended::DuplicateId => Err(StoreError::DatabaseWrite(
                "event ids of the batch were taken while it was being retried".into(),
            )),
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

/// Writes an encoded batch on the writer thread.
async fn write(appender: &Arc<Appender>, batch: EncodedBatch) -> Result<Appended, StoreError> {
    appender.run(move |appender| appender.append(&batch)).await
}

/// The chain links stored under the batch's ids.
async fn stored_links(
    conn: &mut SqliteConnection,
    events: &[AuditEvent],
) -> Result<HashMap<Uuid, ChainLink>, StoreError> {
    let mut stored = HashMap::new();
    for chunk in events.chunks(IDS_PER_LOOKUP) {
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

fn micros(at: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(at)
        .ok_or_else(|| StoreError::CorruptRow(format!("time {at} out of range")))
}
