//! The PostgreSQL backend, for services running many instances against one database.
//!
//! Tables live in a schema of their own (`audit` unless configured), so they never mix with
//! the host's tables, and the migrations table lives there too. Appends are one
//! `INSERT ... SELECT FROM UNNEST(...)` statement per batch.

mod forwarding;

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row, SqlSafeStr};
use uuid::Uuid;

use crate::batch::{AttributesView, BATCH_ROWS, BatchStream, EventBatch, EventView};
use crate::chain::{ChainHash, ChainHead, ChainLink, write_canonical_fields};
use crate::checkpoint::{Checkpoint, CheckpointKind, CheckpointSigner, checkpoint_from_row};
use crate::error::StoreError;
use crate::event::{Attributes, AuditEvent, is_outcome, is_valid_action};
use crate::forwarding::{ForwardLease, ForwardPosition, ForwardState, StoredCheckpoint};
use crate::query::{
    EventFilter, FacetUser, Facets, MatchCount, Page, PageRequest, Position, TenantScope,
};
use crate::reliability::{QuarantinedEvent, RecorderRun};
use crate::sql::{self, Dialect, StoredRow};
use crate::store::{self, AuditStore, Backend, EventStream};
use crate::term_plan::{Plan, TermGroups, TermKind};
use crate::verify::{CheckStream, LinkHasher, RowCheck};

mod privileges;
mod write;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "audit events",
        include_str!("../../migrations/postgres/0001_events.sql"),
    ),
    (
        2,
        "quarantine, recorder runs, retention function",
        include_str!("../../migrations/postgres/0002_reliability.sql"),
    ),
    (
        3,
        "forwarding cursors and leases",
        include_str!("../../migrations/postgres/0003_forwarding.sql"),
    ),
    (
        4,
        "chain links of version 2",
        include_str!("../../migrations/postgres/0004_chain_v2.sql"),
    ),
    (
        5,
        "a schema built for appends",
        include_str!("../../migrations/postgres/0005_append_schema.sql"),
    ),
    (
        6,
        "the store merges the terms index's pending list",
        include_str!("../../migrations/postgres/0006_merge_terms.sql"),
    ),
    (
        7,
        "the store's upkeep covers the resource names",
        include_str!("../../migrations/postgres/0007_merge_names.sql"),
    ),
    (
        8,
        "the terms function inlined",
        include_str!("../../migrations/postgres/0008_inline_terms.sql"),
    ),
    (
        9,
        "only the filtered columns analysed",
        include_str!("../../migrations/postgres/0009_analyse_filtered_columns.sql"),
    ),
    (
        10,
        "the upkeep analyses a table when it doubled",
        include_str!("../../migrations/postgres/0010_analyse_when_doubled.sql"),
    ),
];

/// The schema used when none is configured.
pub const DEFAULT_SCHEMA: &str = "audit";

/// An [`AuditStore`] on PostgreSQL.
///
/// ```no_run
/// # async fn demo() -> Result<(), audit_store::StoreError> {
/// use audit_store::PostgresStore;
/// let store = PostgresStore::connect("postgres://postgres@127.0.0.1/app").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: Arc<str>,
    events_table: Arc<str>,
    facets_table: Arc<str>,
    names_table: Arc<str>,
    signer: Option<Arc<CheckpointSigner>>,
    /// Facet values and resource names this store has written.
    written: Arc<std::sync::Mutex<crate::indexing::Written>>,
    /// When the terms index's pending list is merged next (`write.rs`).
    terms_merge: Arc<write::TermsMerge>,
}

/// Whether `name` is a plain lowercase SQL identifier of at most 63 characters: the only
/// names (schemas, roles) ever spliced into SQL.
pub(crate) fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A schema name is spliced into SQL, so only a plain lowercase identifier is accepted.
fn validate_schema(schema: &str) -> Result<(), StoreError> {
    if is_plain_identifier(schema) {
        Ok(())
    } else {
        Err(StoreError::Config(format!(
            "schema {schema:?} is not a lowercase SQL identifier of at most 63 characters"
        )))
    }
}

impl PostgresStore {
    /// Connects to `url`, and applies the migrations in the `audit` schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_in_schema(url, DEFAULT_SCHEMA).await
    }

    /// Connects to `url`, and applies the migrations in `schema` (a lowercase SQL
    /// identifier, checked before connecting).
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        validate_schema(schema)?;
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        let store = Self::new(pool, schema)?;
        store.migrate().await?;
        Ok(store)
    }

    /// A store on the host's own pool, keeping its tables in `schema` (a lowercase SQL
    /// identifier). Call [`PostgresStore::migrate`] before first use.
    ///
    /// ```
    /// # async fn demo(pool: sqlx::PgPool) {
    /// use audit_store::PostgresStore;
    /// assert!(PostgresStore::new(pool.clone(), "audit").is_ok());
    /// assert!(PostgresStore::new(pool, "audit; DROP TABLE x").is_err());
    /// # }
    /// ```
    pub fn new(pool: PgPool, schema: &str) -> Result<Self, StoreError> {
        validate_schema(schema)?;
        Ok(Self {
            pool,
            events_table: format!("{schema}.audit_events").into(),
            facets_table: format!("{schema}.audit_facet_values").into(),
            names_table: format!("{schema}.audit_resource_names").into(),
            schema: schema.into(),
            signer: None,
            written: Arc::default(),
            terms_merge: Arc::default(),
        })
    }

    /// Signs checkpoints ([`AuditStore::checkpoint`], and the retention purge's) with this key.
    pub fn with_signer(mut self, signer: CheckpointSigner) -> Self {
        self.signer = Some(Arc::new(signer));
        self
    }

    /// Applies the store's embedded migrations in its schema (idempotent; safe to run from
    /// many instances at once: sqlx serialises them with an advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrate_through(i64::MAX).await
    }

    /// Applies the migrations up to `last_version` only: tests build a database as an earlier
    /// release left it, then upgrade it.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub async fn migrate_only_through(&self, last_version: i64) -> Result<(), StoreError> {
        self.migrate_through(last_version).await
    }

    async fn migrate_through(&self, last_version: i64) -> Result<(), StoreError> {
        let migrations: Vec<Migration> = MIGRATIONS
            .iter()
            .filter(|(version, _, _)| *version <= last_version)
            .map(|(version, description, sql)| {
                let sql = sql.replace("{schema}", &self.schema);
                Migration::new(
                    *version,
                    (*description).into(),
                    MigrationType::Simple,
                    AssertSqlSafe(sql).into_sql_str(),
                    false,
                )
            })
            .collect();
        if self.migrations_applied(&migrations).await? {
            return Ok(());
        }
        let mut migrator = Migrator::with_migrations(migrations);
        migrator.create_schema(self.schema.to_string());
        migrator.dangerous_set_table_name(format!("{}._audit_store_migrations", self.schema));
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Whether every migration already ran, unchanged. sqlx's migrator issues `CREATE SCHEMA
    /// IF NOT EXISTS` and `CREATE TABLE IF NOT EXISTS` even when there is nothing to do,
    /// which a least-privilege application role (no CREATE) may not run; so a store that is
    /// up to date is recognised with a read first.
    async fn migrations_applied(&self, migrations: &[Migration]) -> Result<bool, StoreError> {
        let table = format!("{}._audit_store_migrations", self.schema);
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&table)
            .fetch_one(&self.pool)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        let statement = format!("SELECT version, checksum FROM {table} WHERE success");
        let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as(AssertSqlSafe(statement))
            .fetch_all(&self.pool)
            .await?;
        Ok(migrations.iter().all(|migration| {
            applied.iter().any(|(version, checksum)| {
                *version == migration.version && checksum[..] == migration.checksum[..]
            })
        }))
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

struct PgDialect<'a> {
    events_table: &'a str,
    facets_table: &'a str,
    names_table: &'a str,
    schema: &'a str,
}

impl Dialect for PgDialect<'_> {
    type DB = Postgres;
    fn events_table(&self) -> &str {
        self.events_table
    }
    fn facets_table(&self) -> &str {
        self.facets_table
    }
    fn bind_text(&self, qb: &mut QueryBuilder<Postgres>, value: &str) {
        qb.push_bind(value.to_owned());
    }
    fn bind_time(&self, qb: &mut QueryBuilder<Postgres>, at: DateTime<Utc>) {
        qb.push_bind(at);
    }
    fn bind_uuid(&self, qb: &mut QueryBuilder<Postgres>, id: Uuid) {
        qb.push_bind(id);
    }
    fn bind_seq(&self, qb: &mut QueryBuilder<Postgres>, seq: u64) {
        qb.push_bind(seq_i64(seq));
    }
    fn names_table(&self) -> &str {
        self.names_table
    }
    fn push_name_match(&self, qb: &mut QueryBuilder<Postgres>, needle: &str) {
        // Served by the pg_trgm GIN index; backslash is ILIKE's default escape character.
        qb.push("name ILIKE ");
        qb.push_bind(format!("%{}%", sql::escape_like(needle)));
    }
    fn names_list(&self) -> (&'static str, &'static str) {
        // An array built once (an InitPlan) and compared row by row: the planner cannot turn
        // it into a join. Before the table has statistics (right after a bulk load) it
        // chose a hash join over every event for `IN (SELECT ...)`, seconds instead of the
        // time-ordered walk's milliseconds.
        ("= ANY (ARRAY(", "))")
    }
    fn push_candidate_seqs(&self, qb: &mut QueryBuilder<Postgres>, groups: &TermGroups) {
        qb.push(format!(
            "SELECT seq AS term_seq FROM {} WHERE ",
            self.events_table
        ));
        self.push_term_conditions(qb, groups);
    }
    fn push_candidates(&self, qb: &mut QueryBuilder<Postgres>, groups: &TermGroups) {
        // OFFSET 0 keeps the planner from merging the subquery into the outer one: the GIN
        // index finds the candidates, then the outer query filters and sorts them.
        qb.push(format!("(SELECT * FROM {} WHERE ", self.events_table));
        self.push_term_conditions(qb, groups);
        qb.push(" OFFSET 0) AS audit_events");
    }
}

impl PgDialect<'_> {
    /// `terms && ARRAY[...]` per group, ANDed: the server computes each term with the same
    /// function as the generated column (migration 0005), e-mails lowered as it lowers them.
    fn push_term_conditions(&self, qb: &mut QueryBuilder<Postgres>, groups: &TermGroups) {
        if groups.matches_nothing() {
            qb.push("false");
            return;
        }
        for (g, group) in groups.0.iter().enumerate() {
            if g > 0 {
                qb.push(" AND ");
            }
            qb.push("terms && ARRAY[");
            for (t, (kind, value)) in group.0.iter().enumerate() {
                if t > 0 {
                    qb.push(", ");
                }
                qb.push(format!("{}.audit_term('{}', ", self.schema, kind.letter()));
                if *kind == TermKind::ActorEmail {
                    qb.push("lower(");
                    qb.push_bind(value.clone());
                    qb.push(")");
                } else {
                    qb.push_bind(value.clone());
                }
                qb.push(")");
            }
            qb.push("]::bigint[]");
        }
    }
}

impl PostgresStore {
    /// The canonical JSON verification's fast path writes from the stored columns of the
    /// first `limit` rows after `after_seq`, in chain order (`None` where it would fall back
    /// to decoding the event). For tests holding it to `canonical_json`; not a stable API.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub async fn fast_canonical_rows(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut qb = sql::select_chain(&self.dialect(), after_seq, None, limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id: Uuid = row.try_get(3)?;
                let mut out = Vec::new();
                Ok(write_row_canonical(row, id, &mut out).then_some(out))
            })
            .collect()
    }

    fn dialect(&self) -> PgDialect<'_> {
        PgDialect {
            events_table: &self.events_table,
            facets_table: &self.facets_table,
            names_table: &self.names_table,
            schema: &self.schema,
        }
    }
}

/// Reads one row of `sql::ROW_COLUMNS`; the event is assembled by `sql::event_from`, as the
/// SQLite readers' rows are. A value that does not fit the model is a
/// [`StoreError::CorruptRow`] naming the row.
fn decode(row: &PgRow) -> Result<AuditEvent, StoreError> {
    let seq: i64 = row.try_get(0)?;
    let corrupt = |what: String| StoreError::CorruptRow(format!("seq {seq}: {what}"));
    let hash = |index: usize, name: &str| -> Result<ChainHash, StoreError> {
        let bytes: &[u8] = row.try_get(index)?;
        ChainHash::from_slice(bytes).ok_or_else(|| corrupt(format!("{name} is not 32 bytes")))
    };
    let action: &str = row.try_get(11)?;
    let outcome: &str = row.try_get(12)?;
    let status: i32 = row.try_get(19)?;
    let occurred_at: DateTime<Utc> = row.try_get(4)?;
    let Json(attributes): Json<Attributes> = row.try_get(23)?;
    sql::event_from(StoredRow {
        seq: u64::try_from(seq).map_err(|_| corrupt("seq is negative".into()))?,
        prev_hash: hash(1, "prev_hash")?,
        hash: hash(2, "hash")?,
        id: row.try_get(3)?,
        occurred_at: occurred_at.timestamp_micros(),
        tenant: row.try_get(5)?,
        request_id: row.try_get(6)?,
        actor_id: row.try_get(7)?,
        actor_email: row.try_get(8)?,
        actor_name: row.try_get(9)?,
        category: row.try_get(10)?,
        action: action.parse().map_err(|e| corrupt(format!("action {e}")))?,
        outcome: outcome
            .parse()
            .map_err(|e| corrupt(format!("outcome {e}")))?,
        reason: row.try_get(13)?,
        resource_id: row.try_get(14)?,
        resource_name: row.try_get(15)?,
        method: row.try_get(16)?,
        route: row.try_get(17)?,
        path: row.try_get(18)?,
        status: u16::try_from(status)
            .map_err(|_| corrupt(format!("status {status} is out of range")))?,
        duration_ms: row.try_get(20)?,
        client_ip: row.try_get(21)?,
        user_agent: row.try_get(22)?,
        attributes,
        chain_version: {
            let version: i16 = row.try_get(24)?;
            u8::try_from(version)
                .map_err(|_| corrupt(format!("chain_version {version} is out of range")))?
        },
    })
}

/// Each row's link and whether its content gives its hash, the canonical JSON written from
/// values borrowed from the rows (only the attributes are decoded: PostgreSQL's JSONB text
/// is not the canonical form). A row whose values do not fit counts as a mismatch; the
/// caller decodes it in full, which names the fault.
///
/// Rows are taken as they arrive, so the server sends the rest of a chunk while the first
/// rows are hashed, and a chunk's raw rows are never all in memory at once.
async fn check_rows(
    mut rows: futures_util::stream::BoxStream<'_, Result<PgRow, sqlx::Error>>,
    limit: usize,
) -> Result<Vec<RowCheck>, StoreError> {
    let mut hasher = LinkHasher::with_capacity(limit);
    while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
        check_row(&mut hasher, &row)?;
    }
    Ok(hasher.finish())
}

/// Rows as they arrive, each pushed into one batch with its text values borrowed from the
/// row ([`push_row`]).
async fn batch_rows(
    mut rows: futures_util::stream::BoxStream<'_, Result<PgRow, sqlx::Error>>,
    limit: usize,
) -> Result<EventBatch, StoreError> {
    let mut batch = EventBatch::with_capacity(limit.min(BATCH_ROWS), 720);
    while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
        push_row(&mut batch, &row)?;
    }
    Ok(batch)
}

/// Pushes one row into `batch`: the texts borrowed from the row and copied once, the
/// attributes decoded (PostgreSQL's JSONB text is not serde_json's compact form). A row
/// whose values do not fit is decoded in full, which names the fault as the ordinary read
/// does.
fn push_row(batch: &mut EventBatch, row: &PgRow) -> Result<(), StoreError> {
    let link = (|| {
        let seq: i64 = row.try_get(0).ok()?;
        let prev_hash: &[u8] = row.try_get(1).ok()?;
        let hash: &[u8] = row.try_get(2).ok()?;
        let version: i16 = row.try_get(24).ok()?;
        ChainLink::from_stored(seq, prev_hash, hash, i64::from(version)).ok()
    })();
    let id: Option<Uuid> = row.try_get(3).ok();
    let attributes = row.try_get::<Json<Attributes>, _>(23).ok();
    let fields = match (link, id, &attributes) {
        (Some(link), Some(id), Some(Json(attributes))) => {
            row_fields(row, id, attributes, Some(link))
        }
        _ => None,
    };
    match fields.filter(|fields| is_valid_action(fields.action) && is_outcome(fields.outcome)) {
        Some(fields) => batch.push(&fields),
        None => batch.push(&EventView::of(&decode(row)?)),
    }
    Ok(())
}

/// Pushes one row's link and canonical JSON into `hasher`.
fn check_row(hasher: &mut LinkHasher, row: &PgRow) -> Result<(), StoreError> {
    let seq: i64 = row.try_get(0)?;
    let prev_hash: &[u8] = row.try_get(1)?;
    let hash: &[u8] = row.try_get(2)?;
    let version: i16 = row.try_get(24)?;
    let link = ChainLink::from_stored(seq, prev_hash, hash, i64::from(version))?;
    let id: Uuid = row.try_get(3)?;
    hasher.push(link, id, |out| write_row_canonical(row, id, out));
    Ok(())
}

/// Appends the row's canonical JSON, written from its column values, to `out`; `false` (and
/// nothing written) when a value does not fit.
fn write_row_canonical(row: &PgRow, id: Uuid, out: &mut Vec<u8>) -> bool {
    let Ok(Json(attributes)) = row.try_get::<Json<Attributes>, _>(23) else {
        return false;
    };
    let Some(fields) = row_fields(row, id, &attributes, None) else {
        return false;
    };
    write_canonical_fields(&fields, out);
    true
}

/// The canonical JSON's fields borrowed from a row, with its decoded `attributes`.
fn row_fields<'a>(
    row: &'a PgRow,
    id: Uuid,
    attributes: &'a Attributes,
    chain: Option<ChainLink>,
) -> Option<EventView<'a>> {
    let occurred_at: DateTime<Utc> = row.try_get(4).ok()?;
    let status: i32 = row.try_get(19).ok()?;
    Some(EventView {
        action: row.try_get(11).ok()?,
        actor_email: row.try_get(8).ok()?,
        actor_id: row.try_get(7).ok()?,
        actor_name: row.try_get(9).ok()?,
        attributes: AttributesView::Map(attributes),
        chain,
        category: row.try_get(10).ok()?,
        client_ip: row.try_get(21).ok()?,
        duration_ms: row.try_get(20).ok()?,
        id,
        method: row.try_get(16).ok()?,
        occurred_at,
        outcome: row.try_get(12).ok()?,
        path: row.try_get(18).ok()?,
        reason: row.try_get(13).ok()?,
        request_id: row.try_get(6).ok()?,
        resource_id: row.try_get(14).ok()?,
        resource_name: row.try_get(15).ok()?,
        route: row.try_get(17).ok()?,
        status: u16::try_from(status).ok()?,
        tenant: row.try_get(5).ok()?,
        user_agent: row.try_get(22).ok()?,
    })
}

#[async_trait]
impl Backend for PostgresStore {
    async fn fetch_after(
        &self,
        plan: &Plan,
        filter: &EventFilter,
        scope: &TenantScope,
        after: Option<Position>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let mut qb = sql::select_page(&self.dialect(), plan, filter, scope, after, limit);
        let rows = self
            .read_on(matches!(plan, Plan::Candidates(_)), move |connection| {
                Box::pin(async move { Ok(qb.build().fetch_all(connection).await?) })
            })
            .await?;
        rows.iter().map(decode).collect()
    }

    async fn fetch_chain_checks(
        &self,
        after_seq: u64,
        through: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RowCheck>, StoreError> {
        let mut qb = sql::select_chain(&self.dialect(), after_seq, through, limit);
        check_rows(qb.build().fetch(&self.pool), limit).await
    }

    async fn fetch_batch_after(
        &self,
        plan: &Plan,
        filter: &EventFilter,
        scope: &TenantScope,
        after: Option<Position>,
        limit: usize,
    ) -> Result<EventBatch, StoreError> {
        let mut qb = sql::select_page(&self.dialect(), plan, filter, scope, after, limit);
        self.read_on(matches!(plan, Plan::Candidates(_)), move |connection| {
            Box::pin(async move { batch_rows(qb.build().fetch(connection), limit).await })
        })
        .await
    }

    async fn count_rows(
        &self,
        plan: &Plan,
        filter: &EventFilter,
        scope: &TenantScope,
        limit: u64,
    ) -> Result<u64, StoreError> {
        let qb = sql::select_count(&self.dialect(), plan, filter, scope, limit);
        self.fetch_count(qb, matches!(plan, Plan::Candidates(_)))
            .await
    }

    async fn candidate_count(&self, groups: &TermGroups, limit: u64) -> Result<u64, StoreError> {
        let qb = sql::select_candidate_count(&self.dialect(), groups, limit);
        self.fetch_count(qb, true).await
    }

    async fn matching_names(&self, needle: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut qb = sql::select_names(&self.dialect(), needle, limit);
        Ok(qb.build_query_scalar().fetch_all(&self.pool).await?)
    }

    async fn distinct(
        &self,
        column: &'static str,
        scope: &TenantScope,
    ) -> Result<Vec<String>, StoreError> {
        let mut qb = sql::select_distinct(&self.dialect(), column, scope);
        let rows = qb.build().fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    async fn users(&self, scope: &TenantScope) -> Result<Vec<FacetUser>, StoreError> {
        let mut qb = sql::select_users(&self.dialect(), scope);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(FacetUser {
                    id: row.try_get(0)?,
                    email: row.try_get(1)?,
                    name: row.try_get(2)?,
                })
            })
            .collect()
    }

    async fn fetch_chain_after(
        &self,
        after_seq: u64,
        through: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let mut qb = sql::select_chain(&self.dialect(), after_seq, through, limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.insert_checkpoint_in(&mut conn, checkpoint).await
    }

    fn signer(&self) -> Option<&CheckpointSigner> {
        self.signer.as_deref()
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.append_batch(events).await
    }

    async fn query(
        &self,
        filter: &EventFilter,
        scope: &TenantScope,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        store::query_page(self, filter, scope, page).await
    }

    async fn get(&self, id: Uuid, scope: &TenantScope) -> Result<Option<AuditEvent>, StoreError> {
        let mut qb = sql::select_one(&self.dialect(), id, scope);
        let row = qb.build().fetch_optional(&self.pool).await?;
        row.as_ref().map(decode).transpose()
    }

    fn export(&self, filter: EventFilter, scope: TenantScope) -> EventStream {
        store::export_stream(self.clone(), filter, scope)
    }

    fn export_batches(&self, filter: EventFilter, scope: TenantScope) -> BatchStream {
        store::export_batch_stream(self.clone(), filter, scope)
    }

    async fn facets(&self, scope: &TenantScope) -> Result<Facets, StoreError> {
        store::collect_facets(self, scope).await
    }

    async fn count(
        &self,
        filter: &EventFilter,
        scope: &TenantScope,
        bound: u64,
    ) -> Result<MatchCount, StoreError> {
        store::count_matches(self, filter, scope, bound).await
    }

    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Appends wait while the prefix is cut, so the boundary cannot move under us.
        self.read_head(&mut tx, true).await?;
        // The chain's prefix older than the cutoff ends before the first event that is not.
        let statement = format!(
            "SELECT seq, hash FROM {t} WHERE seq < COALESCE( \
             (SELECT seq FROM {t} WHERE occurred_at >= $1 ORDER BY seq LIMIT 1), \
             9223372036854775807) ORDER BY seq DESC LIMIT 1",
            t = self.events_table
        );
        let last_removed: Option<(i64, Vec<u8>)> = sqlx::query_as(AssertSqlSafe(statement))
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((boundary, boundary_hash)) = last_removed else {
            return Ok(0);
        };
        if let Some(signer) = &self.signer {
            let head = ChainHead::from_stored(boundary, &boundary_hash)?;
            self.insert_checkpoint_in(&mut tx, &signer.sign(head, CheckpointKind::Purge))
                .await?;
        }
        // The deletion itself runs in the schema's SECURITY DEFINER function, so the role
        // the application connects with needs no DELETE privilege (`least_privilege_sql`).
        let statement = format!("SELECT {}.audit_purge_through($1, $2)", self.schema);
        let purged: i64 = sqlx::query_scalar(AssertSqlSafe(statement))
            .bind(boundary)
            .bind(cutoff)
            .fetch_one(&mut *tx)
            .await?;
        // The function also rebuilds the facet values (sql::REBUILD_FACETS on SQLite).
        tx.commit().await?;
        Ok(purged.unsigned_abs())
    }

    async fn chain_head(&self) -> Result<ChainHead, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.read_head(&mut conn, false).await
    }

    fn chain_after(&self, after_seq: u64) -> EventStream {
        store::chain_stream(self.clone(), after_seq)
    }

    fn chain_checks_after(&self, after_seq: u64) -> CheckStream {
        store::chain_check_stream(self.clone(), after_seq)
    }

    async fn checkpoint(&self, kind: CheckpointKind) -> Result<Option<Checkpoint>, StoreError> {
        store::sign_checkpoint(self, kind).await
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.read_checkpoints("ORDER BY id").await
    }

    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self
            .read_checkpoints("ORDER BY id DESC LIMIT 1")
            .await?
            .pop())
    }

    // Forwarding: the statements are shared (`crate::forwarding`), their runs in
    // `forwarding.rs` beside this file.
    async fn checkpoints_after(
        &self,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.forwarding().checkpoints_after(after_id, limit).await
    }
    async fn forward_states(&self) -> Result<Vec<ForwardState>, StoreError> {
        self.forwarding().states().await
    }
    async fn acquire_forward_lease(
        &self,
        sink: &str,
        holder: &str,
        ttl: std::time::Duration,
        start: ForwardPosition,
    ) -> Result<Option<ForwardLease>, StoreError> {
        self.forwarding().acquire(sink, holder, ttl, start).await
    }
    async fn release_forward_lease(&self, lease: &ForwardLease) -> Result<(), StoreError> {
        self.forwarding().release(lease).await
    }
    async fn advance_forward_cursor(
        &self,
        lease: &ForwardLease,
        to: ForwardPosition,
    ) -> Result<bool, StoreError> {
        self.forwarding().advance(lease, to).await
    }
    async fn halt_forwarding(
        &self,
        lease: &ForwardLease,
        seq: u64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.forwarding().halt(lease, seq, reason).await
    }
    async fn resume_forwarding(&self, sink: &str) -> Result<bool, StoreError> {
        self.forwarding().resume(sink).await
    }

    async fn quarantine(&self, events: &[QuarantinedEvent]) -> Result<(), StoreError> {
        self.insert_quarantined(events).await
    }

    async fn quarantined(&self) -> Result<Vec<QuarantinedEvent>, StoreError> {
        self.read_quarantined().await
    }

    async fn recorder_run(&self, instance: &str) -> Result<Option<RecorderRun>, StoreError> {
        self.read_run(instance).await
    }

    async fn report_run(&self, run: &RecorderRun) -> Result<(), StoreError> {
        self.write_run(run).await
    }
}

impl PostgresStore {
    /// A transaction for reading the terms' candidates, in which the planner does not scan
    /// the events table sequentially. Its estimate for `terms && ARRAY[...]` grows with the
    /// number of terms (a substring's 111 names were estimated at 40 % of the table, 4,440
    /// rows really), and under the count's `LIMIT` it then chose a sequential scan hoping to
    /// stop early: 0.5 s instead of 15 ms. The count is bounded, and the store reads
    /// candidates only when that count found them few, so the index is the right way in.
    async fn candidates_transaction(
        &self,
    ) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL enable_seqscan = off")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Runs `read` on one connection: in a [`Self::candidates_transaction`] when it reads
    /// the terms' candidates, else on a connection of the pool. The one place that decides
    /// how a page, a batch or a count is read.
    async fn read_on<T, F>(&self, reads_candidates: bool, read: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, StoreError>>,
    {
        if reads_candidates {
            let mut tx = self.candidates_transaction().await?;
            let value = read(&mut tx).await?;
            tx.commit().await?;
            Ok(value)
        } else {
            let mut connection = self.pool.acquire().await?;
            read(&mut connection).await
        }
    }

    /// Runs a `SELECT count(*)` query ([`Self::read_on`]).
    async fn fetch_count(
        &self,
        mut qb: QueryBuilder<Postgres>,
        reads_candidates: bool,
    ) -> Result<u64, StoreError> {
        let count: i64 = self
            .read_on(reads_candidates, move |connection| {
                Box::pin(async move { Ok(qb.build_query_scalar().fetch_one(connection).await?) })
            })
            .await?;
        Ok(count.unsigned_abs())
    }
}

/// `seq, head, created_at, kind, public_key, signature` of a stored checkpoint.
type CheckpointRow = (i64, Vec<u8>, DateTime<Utc>, String, String, String);

impl PostgresStore {
    /// Checkpoints in the order (and number) `order` gives.
    async fn read_checkpoints(&self, order: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let statement = format!(
            "SELECT seq, head, created_at, kind, public_key, signature \
             FROM {}.audit_checkpoints {order}",
            self.schema
        );
        let rows: Vec<CheckpointRow> = sqlx::query_as(AssertSqlSafe(statement))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(seq, head, created_at, kind, public_key, signature)| {
                checkpoint_from_row(seq, &head, Some(created_at), &kind, public_key, signature)
            })
            .collect()
    }
}

fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

impl PostgresStore {
    async fn read_head(
        &self,
        conn: &mut sqlx::PgConnection,
        lock: bool,
    ) -> Result<ChainHead, StoreError> {
        let statement = format!(
            "SELECT seq, hash FROM {}.audit_chain_head WHERE id = 1{}",
            self.schema,
            if lock { " FOR UPDATE" } else { "" }
        );
        let (seq, hash): (i64, Vec<u8>) = sqlx::query_as(AssertSqlSafe(statement))
            .fetch_one(&mut *conn)
            .await?;
        ChainHead::from_stored(seq, &hash)
    }

    async fn insert_checkpoint_in(
        &self,
        conn: &mut sqlx::PgConnection,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        let statement = format!(
            "INSERT INTO {}.audit_checkpoints (seq, head, created_at, kind, public_key, signature) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            self.schema
        );
        sqlx::query(AssertSqlSafe(statement))
            .bind(seq_i64(checkpoint.seq))
            .bind(checkpoint.head.0.to_vec())
            .bind(checkpoint.created_at)
            .bind(checkpoint.kind.as_str())
            .bind(&checkpoint.public_key)
            .bind(&checkpoint.signature)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
