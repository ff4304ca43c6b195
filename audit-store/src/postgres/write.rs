//! The PostgreSQL store's writes: batch appends (idempotent; a failed transaction is rolled
//! back, or its connection closed, before the next attempt), the quarantine and the
//! recorder's run reports.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use super::{PostgresStore, seq_i64};
use crate::chain::{ChainLink, StoredLinkRow, content_digests};
use crate::error::StoreError;
use crate::event::AuditEvent;
use crate::indexing::NewValues;
use crate::reliability::{QuarantinedEvent, RecorderRun, quarantine_json, quarantined_from_row};
use crate::sql;

/// Appended events between two merges of the terms index's pending list: small enough that
/// a query's scan of the list stays short, large enough for the merge to work in bulk.
const MERGE_TERMS_EVERY: u64 = 5_000;

/// What [`PostgresStore::prepare`] computes for a batch before its transaction.
struct Prepared {
    digests: Vec<[u8; 32]>,
    new: NewValues,
}

/// The store's count of events appended since the last merge of the terms index's pending
/// list (migration 0006), and whether a merge is running.
#[derive(Debug, Default)]
pub(super) struct TermsMerge {
    appended: AtomicU64,
    running: AtomicBool,
}

impl PostgresStore {
    /// Counts `count` appended events and, every [`MERGE_TERMS_EVERY`], merges the terms
    /// index's pending list in a task of its own (on another connection, so appends go on
    /// meanwhile), one merge at a time. A failed merge is logged and retried at the next
    /// count: the pending list then only grows until PostgreSQL merges it itself.
    fn appended(&self, count: usize) {
        let merge = &self.terms_merge;
        let total = merge.appended.fetch_add(count as u64, Ordering::Relaxed) + count as u64;
        if total < MERGE_TERMS_EVERY
            || merge
                .running
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        merge.appended.store(0, Ordering::Relaxed);
        let (pool, merge, sql) = (
            self.pool.clone(),
            self.terms_merge.clone(),
            format!("SELECT {}.audit_merge_terms()", self.schema),
        );
        tokio::spawn(async move {
            if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await {
                tracing::warn!(%error, "merging the audit terms index's pending list failed");
            }
            merge.running.store(false, Ordering::Release);
        });
    }

    /// [`AuditStore::append`](crate::AuditStore::append): one transaction per batch, which
    /// locks the chain head row and so serialises appends from every instance into one
    /// chain. When ids of the batch are already taken, the events an earlier attempt stored
    /// are recognised and skipped ([`crate::store::remove_stored`]) and the rest is written
    /// in a second transaction.
    pub(super) async fn append_batch(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // The batch's CPU-heavy part, sanitising and digesting: see `runtime.rs`.
        let (events, prepared) = crate::runtime::off_the_workers(|| {
            let events = crate::sanitize::storable(events);
            let prepared = self.prepare(&events);
            (events, prepared)
        });
        let error = match self.in_transaction(&events, prepared).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if !is_duplicate_id(&error) {
            return Err(classify(error));
        }
        let stored = self.stored_links(&events).await?;
        let unstored = crate::store::remove_stored(&events, &stored)?;
        if unstored.is_empty() {
            return Ok(());
        }
        let prepared = crate::runtime::off_the_workers(|| self.prepare(&unstored));
        self.in_transaction(&unstored, prepared)
            .await
            .map_err(classify)
    }

    /// The batch's content digests and the facet values and names this store has not
    /// written yet: what [`PostgresStore::insert_batch`] needs besides the events.
    fn prepare(&self, events: &[AuditEvent]) -> Prepared {
        let new = self
            .written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .new_values(events);
        Prepared {
            digests: content_digests(events),
            new,
        }
    }

    /// Inserts the batch in one transaction. On any failure the transaction is rolled back
    /// explicitly, and a connection that cannot even do that is closed rather than returned
    /// to the pool, so the next attempt starts on a clean connection.
    async fn in_transaction(
        &self,
        events: &[AuditEvent],
        prepared: Prepared,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let written = async {
            sqlx::query("BEGIN").execute(&mut *conn).await?;
            let new = self.insert_batch(&mut conn, events, prepared).await?;
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok::<_, StoreError>(new)
        }
        .await;
        match written {
            Ok(new) => {
                self.written
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remember(&new);
                drop(conn);
                self.appended(events.len());
                Ok(())
            }
            Err(error) => {
                if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                    conn.close_on_drop();
                }
                Err(error)
            }
        }
    }

    /// Inserts the facet values and resource names of a batch that may be new.
    async fn insert_new_values(
        &self,
        conn: &mut PgConnection,
        new: &NewValues,
    ) -> Result<(), StoreError> {
        if !new.names.is_empty() {
            let statement = format!(
                "INSERT INTO {}.audit_resource_names (name) SELECT * FROM UNNEST($1::text[]) \
                 ON CONFLICT DO NOTHING",
                self.schema
            );
            sqlx::query(AssertSqlSafe(statement))
                .bind(&new.names)
                .execute(&mut *conn)
                .await?;
        }
        if !new.facets.is_empty() {
            let column = |i: usize| -> Vec<Option<&str>> {
                new.facets.iter().map(|f| f[i].as_deref()).collect()
            };
            let statement = format!(
                "INSERT INTO {}.audit_facet_values (tenant, kind, value, email, name) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                 $5::text[]) ON CONFLICT DO NOTHING",
                self.schema
            );
            sqlx::query(AssertSqlSafe(statement))
                .bind(column(0))
                .bind(column(1))
                .bind(column(2))
                .bind(column(3))
                .bind(column(4))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Links the batch after the locked head, inserts it (one `INSERT ... SELECT FROM
    /// UNNEST` of one array per column) and moves the head.
    async fn insert_batch(
        &self,
        conn: &mut PgConnection,
        events: &[AuditEvent],
        Prepared { digests, new }: Prepared,
    ) -> Result<NewValues, StoreError> {
        let head = self.read_head(conn, true).await?;
        let (links, new_head) = head.extend_with(&digests);
        let c = Columns::of(events, &links);
        let statement = format!(
            "INSERT INTO {} (seq, prev_hash, hash, chain_version, {}) SELECT seq, prev_hash, hash, {}, id, \
         occurred_at, tenant, request_id, actor_id, \
         actor_email, actor_name, category, action, outcome, reason, resource_id, \
         resource_name, method, route, path, status, duration_ms, client_ip, user_agent, \
         attributes::jsonb FROM UNNEST($1::int8[], $2::bytea[], $3::bytea[], \
         $4::uuid[], $5::timestamptz[], $6::text[], \
         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
         $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], \
         $19::text[], $20::int4[], $21::float8[], $22::text[], $23::text[], $24::text[]) \
         AS u(seq, prev_hash, hash, id, occurred_at, tenant, request_id, actor_id, \
         actor_email, actor_name, category, action, outcome, reason, resource_id, \
         resource_name, method, route, path, status, duration_ms, client_ip, user_agent, \
         attributes)",
            self.events_table,
            sql::EVENT_COLUMNS,
            // Every link `extend` makes has the current version.
            crate::chain::ChainVersion::default().number()
        );
        sqlx::query(AssertSqlSafe(statement))
            .bind(c.seq)
            .bind(c.prev_hash)
            .bind(c.hash)
            .bind(c.id)
            .bind(c.occurred_at)
            .bind(c.tenant)
            .bind(c.request_id)
            .bind(c.actor_id)
            .bind(c.actor_email)
            .bind(c.actor_name)
            .bind(c.category)
            .bind(c.action)
            .bind(c.outcome)
            .bind(c.reason)
            .bind(c.resource_id)
            .bind(c.resource_name)
            .bind(c.method)
            .bind(c.route)
            .bind(c.path)
            .bind(c.status)
            .bind(c.duration_ms)
            .bind(c.client_ip)
            .bind(c.user_agent)
            .bind(c.attributes)
            .execute(&mut *conn)
            .await?;
        self.insert_new_values(conn, &new).await?;
        let statement = format!(
            "UPDATE {}.audit_chain_head SET seq = $1, hash = $2 WHERE id = 1",
            self.schema
        );
        sqlx::query(AssertSqlSafe(statement))
            .bind(seq_i64(new_head.seq))
            .bind(new_head.hash.0.to_vec())
            .execute(&mut *conn)
            .await?;
        Ok(new)
    }

    /// The chain links stored under the batch's ids.
    async fn stored_links(
        &self,
        events: &[AuditEvent],
    ) -> Result<HashMap<Uuid, ChainLink>, StoreError> {
        let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
        let statement = format!(
            "SELECT id, seq, prev_hash, hash, chain_version::int8 FROM {} WHERE id = ANY($1)",
            self.events_table
        );
        let rows: Vec<StoredLinkRow> = sqlx::query_as(AssertSqlSafe(statement))
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(id, seq, prev_hash, hash, version)| {
                Ok((id, ChainLink::from_stored(seq, &prev_hash, &hash, version)?))
            })
            .collect()
    }

    pub(super) async fn insert_quarantined(
        &self,
        events: &[QuarantinedEvent],
    ) -> Result<(), StoreError> {
        let statement = format!(
            "INSERT INTO {}.audit_quarantine (quarantined_at, event_id, error, event) \
             SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[])",
            self.schema
        );
        sqlx::query(AssertSqlSafe(statement))
            .bind(events.iter().map(|e| e.quarantined_at).collect::<Vec<_>>())
            .bind(
                events
                    .iter()
                    .map(|e| e.event.id.to_string())
                    .collect::<Vec<_>>(),
            )
            // NUL cannot be stored in PostgreSQL text; in JSON it is escaped, but not in the
            // database's own error message, which may quote the refused value.
            .bind(
                events
                    .iter()
                    .map(|e| e.error.replace('\0', "\u{FFFD}"))
                    .collect::<Vec<_>>(),
            )
            .bind(
                events
                    .iter()
                    .map(|e| quarantine_json(&e.event))
                    .collect::<Vec<_>>(),
            )
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn read_quarantined(&self) -> Result<Vec<QuarantinedEvent>, StoreError> {
        let statement = format!(
            "SELECT quarantined_at, error, event FROM {}.audit_quarantine ORDER BY id",
            self.schema
        );
        let rows: Vec<(DateTime<Utc>, String, String)> = sqlx::query_as(AssertSqlSafe(statement))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(at, error, event)| quarantined_from_row(at, error, &event))
            .collect()
    }

    pub(super) async fn read_run(&self, instance: &str) -> Result<Option<RecorderRun>, StoreError> {
        type Row = (
            String,
            Uuid,
            String,
            i64,
            String,
            DateTime<Utc>,
            DateTime<Utc>,
            i64,
            i64,
            Option<DateTime<Utc>>,
        );
        let statement = format!(
            "SELECT instance, run_id, host, pid, delivery, started_at, reported_at, \
             pending_events, queue_capacity, stopped_at FROM {}.audit_recorder_runs WHERE instance = $1",
            self.schema
        );
        let row: Option<Row> = sqlx::query_as(AssertSqlSafe(statement))
            .bind(instance)
            .fetch_optional(&self.pool)
            .await?;
        let Some((
            instance,
            run_id,
            host,
            pid,
            delivery,
            started_at,
            reported_at,
            pending,
            capacity,
            stopped_at,
        )) = row
        else {
            return Ok(None);
        };
        let corrupt =
            |what: &str| StoreError::CorruptRow(format!("recorder run {instance}: {what}"));
        Ok(Some(RecorderRun {
            run_id,
            host,
            pid: u32::try_from(pid).map_err(|_| corrupt("pid"))?,
            durable: delivery == "durable",
            started_at,
            reported_at,
            pending_events: u64::try_from(pending).map_err(|_| corrupt("pending_events"))?,
            queue_capacity: u64::try_from(capacity).map_err(|_| corrupt("queue_capacity"))?,
            stopped_at,
            instance,
        }))
    }

    pub(super) async fn write_run(&self, run: &RecorderRun) -> Result<(), StoreError> {
        let statement = format!(
            "INSERT INTO {}.audit_recorder_runs (instance, run_id, host, pid, delivery, \
             started_at, reported_at, pending_events, queue_capacity, stopped_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (instance) DO UPDATE SET run_id = excluded.run_id, \
             host = excluded.host, pid = excluded.pid, delivery = excluded.delivery, \
             started_at = excluded.started_at, reported_at = excluded.reported_at, \
             pending_events = excluded.pending_events, queue_capacity = excluded.queue_capacity, stopped_at = excluded.stopped_at",
            self.schema
        );
        sqlx::query(AssertSqlSafe(statement))
            .bind(&run.instance)
            .bind(run.run_id)
            .bind(&run.host)
            .bind(i64::from(run.pid))
            .bind(if run.durable { "durable" } else { "buffered" })
            .bind(run.started_at)
            .bind(run.reported_at)
            .bind(i64::try_from(run.pending_events).unwrap_or(i64::MAX))
            .bind(i64::try_from(run.queue_capacity).unwrap_or(i64::MAX))
            .bind(run.stopped_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Column-wise arrays of a batch, bound as one array per column.
#[derive(Default)]
struct Columns {
    seq: Vec<i64>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
    id: Vec<Uuid>,
    occurred_at: Vec<DateTime<Utc>>,
    tenant: Vec<Option<String>>,
    request_id: Vec<String>,
    actor_id: Vec<Option<String>>,
    actor_email: Vec<Option<String>>,
    actor_name: Vec<Option<String>>,
    category: Vec<String>,
    action: Vec<String>,
    outcome: Vec<String>,
    reason: Vec<Option<String>>,
    resource_id: Vec<Option<String>>,
    resource_name: Vec<Option<String>>,
    method: Vec<String>,
    route: Vec<String>,
    path: Vec<String>,
    status: Vec<i32>,
    duration_ms: Vec<f64>,
    client_ip: Vec<Option<String>>,
    user_agent: Vec<Option<String>>,
    attributes: Vec<String>,
}

impl Columns {
    fn of(events: &[AuditEvent], links: &[ChainLink]) -> Self {
        let mut c = Columns::default();
        for (e, link) in events.iter().zip(links) {
            c.seq.push(seq_i64(link.seq));
            c.prev_hash.push(link.prev_hash.0.to_vec());
            c.hash.push(link.hash.0.to_vec());
            c.id.push(e.id);
            c.occurred_at.push(e.occurred_at);
            c.tenant.push(e.tenant.clone());
            c.request_id.push(e.request_id.clone());
            c.actor_id.push(e.actor_id.clone());
            c.actor_email.push(e.actor_email.clone());
            c.actor_name.push(e.actor_name.clone());
            c.category.push(e.category.clone());
            c.action.push(e.action.as_str().to_owned());
            c.outcome.push(e.outcome.as_str().to_owned());
            c.reason.push(e.reason.clone());
            c.resource_id.push(e.resource_id.clone());
            c.resource_name.push(e.resource_name.clone());
            c.method.push(e.method.clone());
            c.route.push(e.route.clone());
            c.path.push(e.path.clone());
            c.status.push(i32::from(e.status));
            c.duration_ms.push(e.duration_ms);
            c.client_ip.push(e.client_ip.clone());
            c.user_agent.push(e.user_agent.clone());
            c.attributes
                .push(serde_json::Value::Object(e.attributes.clone()).to_string());
        }
        c
    }
}

/// A unique violation on the event id (the primary key). A taken `seq` is not one: it means
/// the stored chain head is behind the rows, a fault of the database, not of the events.
fn is_duplicate_id(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(sqlx::Error::Database(db))
        if db.is_unique_violation() && db.constraint() == Some("audit_events_pkey"))
}

/// Marks refusals of the events' content as [`StoreError::Rejected`]: SQLSTATE classes 22
/// (data exception: a value the type refuses), 23 (integrity constraint) and 54 (program
/// limit exceeded: an index row too large). Everything else (connection lost, disk full,
/// lock or statement timeout, serialization failure, a missing privilege) is about the
/// database and stays as it is, to be retried.
fn classify(error: StoreError) -> StoreError {
    let StoreError::Database(sqlx::Error::Database(db)) = &error else {
        return error;
    };
    let class = db
        .code()
        .map(|code| code.chars().take(2).collect::<String>());
    let seq_taken = db.constraint() == Some("audit_events_seq_key");
    let content_refused = matches!(class.as_deref(), Some("22" | "23" | "54")) && !seq_taken;
    match error {
        StoreError::Database(error) if content_refused => StoreError::rejected(error),
        other => other,
    }
}
