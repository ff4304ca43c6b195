//! The SQLite backend: the embedded default.
//!
//! A file database uses WAL, a busy timeout, one writer connection and a small pool of
//! read-only connections, so readers never wait for the writer; reads of many rows go through
//! the bulk reader (`bulk_read.rs`). An in-memory database uses one connection that is never
//! closed (closing it would discard the data).

mod append;
mod bulk_read;
mod checkpointer;
mod forwarding;
mod index;
mod terms;
mod write;
mod writer_thread;

use std::cell::RefCell;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, QueryBuilder, Row, SqlSafeStr, Sqlite};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::batch::{BatchStream, EventBatch};
use crate::chain::ChainHead;
use crate::checkpoint::{Checkpoint, CheckpointKind, CheckpointSigner, checkpoint_from_row};
use crate::error::StoreError;
use crate::event::AuditEvent;
use crate::forwarding::{ForwardLease, ForwardPosition, ForwardState, StoredCheckpoint};
use crate::query::{
    EventFilter, FacetUser, Facets, MatchCount, Page, PageRequest, Position, TenantScope,
};
use crate::reliability::{QuarantinedEvent, RecorderRun};
use crate::sql::{self, Dialect};
use crate::store::{self, AuditStore, Backend, EventStream};
use crate::term_plan::{Plan, TermGroups};
use crate::verify::{CheckStream, RowCheck};

use append::{Appender, Location};
use bulk_read::BulkReader;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "audit events",
        include_str!("../../migrations/sqlite/0001_events.sql"),
    ),
    (
        2,
        "quarantine and recorder runs",
        include_str!("../../migrations/sqlite/0002_reliability.sql"),
    ),
    (
        3,
        "forwarding cursors and leases",
        include_str!("../../migrations/sqlite/0003_forwarding.sql"),
    ),
    (
        4,
        "chain links of version 2",
        include_str!("../../migrations/sqlite/0004_chain_v2.sql"),
    ),
    (
        5,
        "a schema built for appends",
        include_str!("../../migrations/sqlite/0005_append_schema.sql"),
    ),
];

/// The table recording which of this crate's migrations ran; named apart from sqlx's
/// default `_sqlx_migrations` so it never collides with the host's own migrations.
const MIGRATIONS_TABLE: &str = "_audit_store_migrations";

/// How long the store's connections wait for another writer's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Rows deleted per purge transaction, so a large purge never holds the write lock long.
const PURGE_CHUNK: i64 = 10_000;

/// An [`AuditStore`] on SQLite.
///
/// ```
/// # async fn demo() -> Result<(), audit_store::StoreError> {
/// use audit_store::{Action, AuditEvent, AuditStore, HttpFacts, SqliteStore};
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// let event = AuditEvent::builder("Model", Action::Create)
///     .http(HttpFacts::new("POST", "/api/models", "/api/models", 201))
///     .build();
/// store.append(&[event]).await?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// sqlx: migrations and the low-rate statements (checkpoints, runs, quarantine, purge,
    /// forwarding, facets).
    writer: SqlitePool,
    reader: SqlitePool,
    /// The store's own connections (rusqlite): appends and reads of many rows. Decided at
    /// connect, or on first use for a store on the host's pool.
    own: Arc<OnceCell<Own>>,
    signer: Option<Arc<CheckpointSigner>>,
    /// How much lower than the process's the writer thread's priority is
    /// ([`SqliteStore::with_writer_niceness`]); shared with that thread.
    writer_niceness: Arc<AtomicU8>,
}

/// The store's own connections to its database.
#[derive(Debug)]
struct Own {
    bulk: BulkReader,
    appender: Arc<Appender>,
}

impl Own {
    /// Connections to `location` that wait up to `busy_timeout` for another writer's lock.
    fn new(location: Location, busy_timeout: Duration, writer_niceness: Arc<AtomicU8>) -> Self {
        Own {
            bulk: BulkReader::new(location.clone(), busy_timeout),
            // `synchronous = FULL`: a committed event survives power loss.
            appender: Appender::new(location, busy_timeout, "FULL", writer_niceness),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://audit.db`,
    /// `sqlite::memory:`) and applies the store's migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?;
        Self::connect_with(options).await
    }

    /// Like [`SqliteStore::connect`] with explicit connect options; the store adds WAL, a
    /// 5 s busy timeout and `synchronous = FULL` (a committed event survives power loss).
    /// An in-memory database becomes one of SQLite's named `memdb` databases, which the
    /// store's own connections can share.
    pub async fn connect_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let memory = is_in_memory(&options)
            .then(|| format!("/audit-store-memory-{}", Uuid::now_v7().simple()));
        let options = match &memory {
            Some(name) => options
                .filename(name)
                .vfs("memdb")
                .in_memory(false)
                .shared_cache(false),
            None => options,
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(if memory.is_some() {
                // memdb keeps no write-ahead log.
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            // A 16 MiB page cache per connection and memory-mapped reads.
            .pragma("cache_size", "-16384")
            .pragma("mmap_size", "268435456")
            // Keeps the planner's statistics fresh (SQLite's recommended practice).
            .optimize_on_close(true, 1000);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // An in-memory database lives while a connection to it is open.
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        let (reader, location) = match memory {
            Some(name) => (writer.clone(), Location::Memory(name)),
            None => {
                let file = main_database_file(&writer).await?.ok_or_else(|| {
                    StoreError::Config("SQLite reports no file for this database".into())
                })?;
                let reader = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options.read_only(true))
                    .await?;
                (reader, Location::File(file))
            }
        };
        let writer_niceness = Arc::new(AtomicU8::new(writer_thread::DEFAULT_NICENESS));
        let own = Own::new(location, BUSY_TIMEOUT, writer_niceness.clone());
        let store = Self {
            writer,
            reader,
            own: Arc::new(OnceCell::new_with(Some(own))),
            signer: None,
            writer_niceness,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// A store on the host's own pool, used for the store's low-rate statements; appends and
    /// reads of many rows use connections of the store's own to the same database file.
    /// Call [`SqliteStore::migrate`] before first use. The pool must be on a file: a private
    /// in-memory database cannot be shared (use [`SqliteStore::connect`] with
    /// `sqlite::memory:`).
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            reader: pool.clone(),
            writer: pool,
            own: Arc::new(OnceCell::new()),
            signer: None,
            writer_niceness: Arc::new(AtomicU8::new(writer_thread::DEFAULT_NICENESS)),
        }
    }

    /// The store's own connections.
    async fn own(&self) -> Result<&Own, StoreError> {
        self.own
            .get_or_try_init(|| async {
                let file = main_database_file(&self.writer).await?.ok_or_else(|| {
                    StoreError::Config(
                        "the host's SQLite pool is on a private in-memory database, which \
                         the store's own connections cannot share; use \
                         SqliteStore::connect(\"sqlite::memory:\") or a database file"
                            .into(),
                    )
                })?;
                // The store's own connections wait for locks as long as the host's pool does.
                let busy_ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                    .fetch_one(&self.writer)
                    .await?;
                let busy_timeout = Duration::from_millis(busy_ms.try_into().unwrap_or(0));
                Ok::<_, StoreError>(Own::new(
                    Location::File(file),
                    busy_timeout,
                    self.writer_niceness.clone(),
                ))
            })
            .await
    }

    /// Runs a statement selecting whole rows (`sql::ROW_COLUMNS`) on the store's own read
    /// connections. `build` gets the dialect that records the binds.
    async fn read_rows(
        &self,
        build: impl Fn(&SqliteDialect) -> QueryBuilder<Sqlite>,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let own = self.own().await?;
        let dialect = SqliteDialect::default();
        let qb = build(&dialect);
        own.bulk
            .events(qb.into_string(), dialect.take_binds())
            .await
    }

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
        let own = self.own().await?;
        let dialect = SqliteDialect::default();
        let qb = sql::select_chain(&dialect, after_seq, None, limit);
        own.bulk
            .canonical(qb.into_string(), dialect.take_binds())
            .await
    }

    /// Signs checkpoints ([`AuditStore::checkpoint`], and the retention purge's) with this key.
    pub fn with_signer(mut self, signer: CheckpointSigner) -> Self {
        self.signer = Some(Arc::new(signer));
        self
    }

    /// How much lower than the rest of the process the store's writer thread runs: its nice
    /// value over the process's (Linux; elsewhere the thread keeps the process's priority).
    /// The default, 10, lets the kernel serve the host's requests first and write the audit
    /// log in the CPU time left over, so a burst of commits does not add to response times;
    /// events wait in the recorder's bounded queue instead. 0 runs the writer like any other
    /// thread (a host whose requests wait for durable commits may prefer that when its cores
    /// are saturated). Takes effect at the writer's next job, also for clones of this store,
    /// which share the writer. The store's checkpoint thread (which copies the write-ahead
    /// log into the database file) follows the same setting. Raising the priority back needs
    /// `CAP_SYS_NICE`; without it the thread stays where it is and the store logs a warning.
    ///
    /// ```
    /// # async fn demo() -> Result<(), audit_store::StoreError> {
    /// let store = audit_store::SqliteStore::connect("sqlite::memory:").await?.with_writer_niceness(5);
    /// # drop(store); Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn with_writer_niceness(self, niceness: u8) -> Self {
        // The thread caps its nice value at 19 itself.
        self.writer_niceness.store(niceness, Ordering::Relaxed);
        self
    }

    /// Applies the store's embedded migrations (idempotent).
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
        let migrations = MIGRATIONS
            .iter()
            .filter(|(version, _, _)| *version <= last_version)
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    (*description).into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        let mut migrator = Migrator::with_migrations(migrations);
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator.run(&self.writer).await?;
        // On a host's pool, learn now where the database is, so a recorder started next finds
        // its default spool directory beside it.
        let own = self.own().await?;
        if last_version >= 5 {
            own.appender.run(index::build_missing).await?;
        }
        Ok(())
    }

    /// Sets `PRAGMA max_page_count` on the store's append connection (`None`: SQLite's
    /// maximum), so tests can make "database or disk is full" happen on demand. Returns the
    /// database's current page count.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub async fn limit_append_pages(&self, extra_pages: Option<i64>) -> Result<i64, StoreError> {
        let own = self.own().await?;
        own.appender
            .run(move |appender| appender.limit_pages(extra_pages))
            .await
    }

    /// The pool writes go through.
    pub fn writer_pool(&self) -> &SqlitePool {
        &self.writer
    }
}

/// Whether sqlx would open these options as an in-memory database (`sqlite::memory:`,
/// `mode=memory`: sqlx names those `file:sqlx-in-memory-N`).
fn is_in_memory(options: &SqliteConnectOptions) -> bool {
    let name = options.get_filename().to_string_lossy();
    name == ":memory:" || name.starts_with("file:sqlx-in-memory-")
}

/// The file of the connection's main database; `None` for an in-memory database (SQLite
/// reports an empty name for it).
async fn main_database_file(pool: &SqlitePool) -> Result<Option<PathBuf>, StoreError> {
    let file: String =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(pool)
            .await?;
    Ok((!file.is_empty()).then(|| PathBuf::from(file)))
}

/// The SQLite side of the shared SQL. It records every value it binds, so a statement built
/// with sqlx's builder can run on the store's own connections.
#[derive(Default)]
struct SqliteDialect {
    binds: RefCell<Vec<rusqlite::types::Value>>,
}

impl SqliteDialect {
    /// The values bound so far, in order.
    fn take_binds(&self) -> Vec<rusqlite::types::Value> {
        self.binds.take()
    }

    fn record(&self, value: rusqlite::types::Value) {
        self.binds.borrow_mut().push(value);
    }
}

impl Dialect for SqliteDialect {
    type DB = Sqlite;
    fn events_table(&self) -> &str {
        "audit_events"
    }
    fn facets_table(&self) -> &str {
        "audit_facet_values"
    }
    fn bind_text(&self, qb: &mut QueryBuilder<Sqlite>, value: &str) {
        qb.push_bind(value.to_owned());
        self.record(value.to_owned().into());
    }
    fn bind_time(&self, qb: &mut QueryBuilder<Sqlite>, at: DateTime<Utc>) {
        qb.push_bind(at.timestamp_micros());
        self.record(at.timestamp_micros().into());
    }
    fn bind_uuid(&self, qb: &mut QueryBuilder<Sqlite>, id: Uuid) {
        // sqlx stores a UUID as its 16 bytes.
        qb.push_bind(id);
        self.record(id.as_bytes().to_vec().into());
    }
    fn bind_seq(&self, qb: &mut QueryBuilder<Sqlite>, seq: u64) {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        qb.push_bind(seq);
        self.record(seq.into());
    }
    fn names_table(&self) -> &str {
        "audit_resource_names"
    }
    fn push_name_match(&self, qb: &mut QueryBuilder<Sqlite>, needle: &str) {
        if needle.chars().count() >= 3 {
            // A quoted FTS5 phrase is matched literally; the trigram tokenizer folds case.
            let phrase = format!("\"{}\"", needle.replace('"', "\"\""));
            qb.push(
                "id IN (SELECT rowid FROM audit_resource_names_trigram \
                 WHERE audit_resource_names_trigram MATCH ",
            );
            self.bind_text(qb, &phrase);
            qb.push(")");
        } else {
            // Trigrams cannot serve one- or two-character needles: a literal search.
            qb.push("instr(lower(name), lower(");
            self.bind_text(qb, needle);
            qb.push(")) > 0");
        }
    }
    fn push_candidate_seqs(&self, qb: &mut QueryBuilder<Sqlite>, groups: &TermGroups) {
        if groups.matches_nothing() {
            qb.push("SELECT 0 AS term_seq WHERE 0");
            return;
        }
        qb.push("SELECT rowid AS term_seq FROM audit_terms WHERE audit_terms MATCH ");
        self.bind_text(qb, &terms::match_expression(groups));
    }
    fn push_candidates(&self, qb: &mut QueryBuilder<Sqlite>, groups: &TermGroups) {
        // CROSS JOIN keeps SQLite's join order: the candidates first, then each one's row
        // by its rowid, never the other way round.
        qb.push("(");
        self.push_candidate_seqs(qb, groups);
        qb.push(
            ") AS candidates CROSS JOIN audit_events \
             ON audit_events.seq = candidates.term_seq",
        );
    }
}

#[async_trait]
impl Backend for SqliteStore {
    async fn fetch_after(
        &self,
        plan: &Plan,
        filter: &EventFilter,
        scope: &TenantScope,
        after: Option<Position>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.read_rows(|dialect| sql::select_page(dialect, plan, filter, scope, after, limit))
            .await
    }

    async fn fetch_batch_after(
        &self,
        plan: &Plan,
        filter: &EventFilter,
        scope: &TenantScope,
        after: Option<Position>,
        limit: usize,
    ) -> Result<EventBatch, StoreError> {
        let own = self.own().await?;
        let dialect = SqliteDialect::default();
        let qb = sql::select_page(&dialect, plan, filter, scope, after, limit);
        own.bulk.batch(qb.into_string(), dialect.take_binds()).await
    }

    async fn count_rows(
        &self,
        plan: &Plan,
        filter: &EventFilter,
        scope: &TenantScope,
        limit: u64,
    ) -> Result<u64, StoreError> {
        let mut qb = sql::select_count(&SqliteDialect::default(), plan, filter, scope, limit);
        let count: i64 = qb.build_query_scalar().fetch_one(&self.reader).await?;
        Ok(count.unsigned_abs())
    }

    async fn candidate_count(&self, groups: &TermGroups, limit: u64) -> Result<u64, StoreError> {
        let mut qb = sql::select_candidate_count(&SqliteDialect::default(), groups, limit);
        let count: i64 = qb.build_query_scalar().fetch_one(&self.reader).await?;
        Ok(count.unsigned_abs())
    }

    async fn matching_names(&self, needle: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut qb = sql::select_names(&SqliteDialect::default(), needle, limit);
        Ok(qb.build_query_scalar().fetch_all(&self.reader).await?)
    }

    async fn distinct(
        &self,
        column: &'static str,
        scope: &TenantScope,
    ) -> Result<Vec<String>, StoreError> {
        let mut qb = sql::select_distinct(&SqliteDialect::default(), column, scope);
        let rows = qb.build().fetch_all(&self.reader).await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    async fn users(&self, scope: &TenantScope) -> Result<Vec<FacetUser>, StoreError> {
        let mut qb = sql::select_users(&SqliteDialect::default(), scope);
        let rows = qb.build().fetch_all(&self.reader).await?;
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
        self.read_rows(|dialect| sql::select_chain(dialect, after_seq, through, limit))
            .await
    }

    async fn fetch_chain_checks(
        &self,
        after_seq: u64,
        through: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RowCheck>, StoreError> {
        let own = self.own().await?;
        let dialect = SqliteDialect::default();
        let qb = sql::select_chain(&dialect, after_seq, through, limit);
        own.bulk
            .checks(qb.into_string(), dialect.take_binds())
            .await
    }

    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await?;
        insert_checkpoint(&mut conn, checkpoint).await
    }

    fn signer(&self) -> Option<&CheckpointSigner> {
        self.signer.as_deref()
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
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
        Ok(self
            .read_rows(|dialect| sql::select_one(dialect, id, scope))
            .await?
            .pop())
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
        let cutoff = cutoff.timestamp_micros();
        let mut purged = 0;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        // The chain's prefix older than the cutoff ends before the first event that is not.
        let first_kept: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM audit_events WHERE occurred_at >= ? ORDER BY seq LIMIT 1",
        )
        .bind(cutoff)
        .fetch_optional(&mut *tx)
        .await?;
        let last_removed: Option<(i64, Vec<u8>)> =
            match first_kept {
                Some(first_kept) => sqlx::query_as(
                    "SELECT seq, hash FROM audit_events WHERE seq < ? ORDER BY seq DESC LIMIT 1",
                )
                .bind(first_kept)
                .fetch_optional(&mut *tx)
                .await?,
                None => {
                    sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                        .fetch_optional(&mut *tx)
                        .await?
                }
            };
        let Some((boundary, boundary_hash)) = last_removed else {
            return Ok(0);
        };
        if let Some(signer) = &self.signer {
            let head = ChainHead::from_stored(boundary, &boundary_hash)?;
            insert_checkpoint(&mut tx, &signer.sign(head, CheckpointKind::Purge)).await?;
        }
        loop {
            sqlx::query("INSERT INTO audit_purge_guard (before) VALUES (?)")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
            forget_terms(&mut tx, boundary, PURGE_CHUNK).await?;
            let deleted = sqlx::query(
                "DELETE FROM audit_events WHERE seq IN \
                 (SELECT seq FROM audit_events WHERE seq <= ? ORDER BY seq LIMIT ?)",
            )
            .bind(boundary)
            .bind(PURGE_CHUNK)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM audit_purge_guard")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            purged += deleted;
            if deleted < PURGE_CHUNK.unsigned_abs() {
                // The filter menus offer only what is still there.
                let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
                for statement in sql::REBUILD_FACETS {
                    let statement = statement
                        .replace("{facets}", "audit_facet_values")
                        .replace("{events}", "audit_events");
                    sqlx::query(AssertSqlSafe(statement))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                return Ok(purged);
            }
            tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        }
    }

    async fn chain_head(&self) -> Result<ChainHead, StoreError> {
        let mut conn = self.reader.acquire().await?;
        read_head(&mut conn).await
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

    fn default_spool_dir(&self) -> Option<PathBuf> {
        match self.own.get().map(|own| own.appender.location()) {
            Some(Location::File(file)) => {
                let mut dir = file.as_os_str().to_owned();
                dir.push("-spool");
                Some(PathBuf::from(dir))
            }
            _ => None,
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // TRUNCATE waits for readers (up to the busy timeout) and leaves an empty WAL file.
        // An in-memory database has no WAL, and SQLite answers the pragma with a no-op. A
        // checkpoint running meanwhile (the store's background one, `checkpointer.rs`, takes
        // a few milliseconds) makes it give up at once, without waiting, so it is tried again
        // until BUSY_TIMEOUT has passed in all; an attempt that waited that long for a reader
        // is the last, as before.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let busy = loop {
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&self.writer)
                .await?;
            if busy == 0 || std::time::Instant::now() >= deadline {
                break busy;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if busy != 0 {
            tracing::warn!(
                "audit store: a reader kept the SQLite WAL from being checkpointed completely"
            );
        }
        Ok(())
    }
}

impl SqliteStore {
    /// Checkpoints in the order (and number) `order` gives.
    async fn read_checkpoints(&self, order: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let statement = format!(
            "SELECT seq, head, created_at, kind, public_key, signature \
             FROM audit_checkpoints {order}"
        );
        let rows: Vec<(i64, Vec<u8>, i64, String, String, String)> =
            sqlx::query_as(AssertSqlSafe(statement))
                .fetch_all(&self.reader)
                .await?;
        rows.into_iter()
            .map(|(seq, head, created_at, kind, public_key, signature)| {
                checkpoint_from_row(
                    seq,
                    &head,
                    DateTime::from_timestamp_micros(created_at),
                    &kind,
                    public_key,
                    signature,
                )
            })
            .collect()
    }
}

/// Removes the terms of the first `limit` events up to `boundary` from the terms index. It is
/// contentless, so it forgets a row only when told the row's exact terms: they are recomputed
/// from the row, as the append computed them.
async fn forget_terms(
    conn: &mut sqlx::SqliteConnection,
    boundary: i64,
    limit: i64,
) -> Result<(), StoreError> {
    type FilterableRow = (
        i64,
        Option<String>,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    );
    let rows: Vec<FilterableRow> = sqlx::query_as(
        "SELECT seq, tenant, category, action, outcome, actor_id, actor_email, resource_id, \
         resource_name, request_id FROM audit_events WHERE seq <= ? ORDER BY seq LIMIT ?",
    )
    .bind(boundary)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(());
    }
    // [[seq, "terms"], ...]; terms need no JSON escaping (ASCII letters, digits, spaces).
    let mut pairs = String::from("[");
    let mut terms = String::new();
    for (
        seq,
        tenant,
        category,
        action,
        outcome,
        actor_id,
        actor_email,
        resource_id,
        name,
        request,
    ) in &rows
    {
        let filterable = terms::Filterable {
            tenant: tenant.as_deref(),
            category,
            action,
            outcome,
            actor_id: actor_id.as_deref(),
            actor_email: actor_email.as_deref(),
            actor_name: None,
            resource_id: resource_id.as_deref(),
            resource_name: name.as_deref(),
            request_id: request,
        };
        terms.clear();
        filterable.push_terms(&mut terms);
        if pairs.len() > 1 {
            pairs.push(',');
        }
        pairs.push_str(&format!("[{seq},\"{terms}\"]"));
    }
    pairs.push(']');
    sqlx::query(
        "INSERT INTO audit_terms (audit_terms, rowid, terms) \
         SELECT 'delete', value ->> 0, value ->> 1 FROM json_each(?)",
    )
    .bind(pairs)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

async fn read_head(conn: &mut sqlx::SqliteConnection) -> Result<ChainHead, StoreError> {
    let (seq, hash): (i64, Vec<u8>) =
        sqlx::query_as("SELECT seq, hash FROM audit_chain_head WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
    ChainHead::from_stored(seq, &hash)
}

async fn insert_checkpoint(
    conn: &mut sqlx::SqliteConnection,
    checkpoint: &Checkpoint,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_checkpoints (seq, head, created_at, kind, public_key, signature) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(seq_i64(checkpoint.seq))
    .bind(checkpoint.head.0.to_vec())
    .bind(checkpoint.created_at.timestamp_micros())
    .bind(checkpoint.kind.as_str())
    .bind(&checkpoint.public_key)
    .bind(&checkpoint.signature)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
