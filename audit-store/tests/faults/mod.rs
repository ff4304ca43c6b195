//! Fault injection around real stores: wrappers whose commit acknowledgement is lost or never
//! comes, outages of a real database (a SQLite file locked by another connection, a
//! PostgreSQL server behind a proxy that is cut), and the databases the tests run on.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use audit_store::{
    AuditEvent, AuditStore, ChainHead, Checkpoint, CheckpointKind, EventFilter, EventStream,
    Facets, Page, PageRequest, PostgresStore, QuarantinedEvent, RecorderRun, SqliteStore,
    StoreError, TenantScope, testing,
};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use uuid::Uuid;

/// What a wrapper does after the real append committed.
#[derive(Debug)]
enum AfterCommit {
    /// Report a lost connection, as if the acknowledgement never arrived.
    Fail,
    /// Never answer, as if the server withheld the acknowledgement.
    Hang,
}

/// A real store whose first `n` appends commit and then fail (or hang).
#[derive(Debug, Clone)]
pub struct FaultyCommits {
    inner: Arc<dyn AuditStore>,
    left: Arc<AtomicUsize>,
    after: Arc<AfterCommit>,
}

/// Commits, then reports a connection reset: the acknowledgement was lost.
pub struct CommitsThenFails;
/// Commits, then never answers.
pub struct HangsAfterCommit;

impl CommitsThenFails {
    #[allow(clippy::new_ret_no_self)]
    pub fn new(inner: Arc<dyn AuditStore>, n: usize) -> FaultyCommits {
        FaultyCommits {
            inner,
            left: Arc::new(AtomicUsize::new(n)),
            after: Arc::new(AfterCommit::Fail),
        }
    }
}

impl HangsAfterCommit {
    #[allow(clippy::new_ret_no_self)]
    pub fn new(inner: Arc<dyn AuditStore>, n: usize) -> FaultyCommits {
        FaultyCommits {
            inner,
            left: Arc::new(AtomicUsize::new(n)),
            after: Arc::new(AfterCommit::Hang),
        }
    }
}

impl FaultyCommits {
    pub fn failures_left(&self) -> usize {
        self.left.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl AuditStore for FaultyCommits {
    async fn append(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.inner.append(events).await?;
        let faulty = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !faulty {
            return Ok(());
        }
        match *self.after {
            AfterCommit::Fail => Err(StoreError::Database(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset before the COMMIT was acknowledged (injected)",
            )))),
            AfterCommit::Hang => std::future::pending().await,
        }
    }
    async fn query(
        &self,
        filter: &EventFilter,
        scope: &TenantScope,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.inner.query(filter, scope, page).await
    }
    async fn get(&self, id: Uuid, scope: &TenantScope) -> Result<Option<AuditEvent>, StoreError> {
        self.inner.get(id, scope).await
    }
    fn export(&self, filter: EventFilter, scope: TenantScope) -> EventStream {
        self.inner.export(filter, scope)
    }
    async fn facets(&self, scope: &TenantScope) -> Result<Facets, StoreError> {
        self.inner.facets(scope).await
    }
    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.purge_before(cutoff).await
    }
    async fn chain_head(&self) -> Result<ChainHead, StoreError> {
        self.inner.chain_head().await
    }
    fn chain_after(&self, after_seq: u64) -> EventStream {
        self.inner.chain_after(after_seq)
    }
    async fn checkpoint(&self, kind: CheckpointKind) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.checkpoint(kind).await
    }
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.checkpoints().await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
    async fn quarantine(&self, events: &[QuarantinedEvent]) -> Result<(), StoreError> {
        self.inner.quarantine(events).await
    }
    async fn quarantined(&self) -> Result<Vec<QuarantinedEvent>, StoreError> {
        self.inner.quarantined().await
    }
    async fn recorder_run(&self, instance: &str) -> Result<Option<RecorderRun>, StoreError> {
        self.inner.recorder_run(instance).await
    }
    async fn report_run(&self, run: &RecorderRun) -> Result<(), StoreError> {
        self.inner.report_run(run).await
    }
    fn default_spool_dir(&self) -> Option<PathBuf> {
        self.inner.default_spool_dir()
    }
}

/// A database the tests run on.
pub enum Database {
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        url: String,
        store: PostgresStore,
    },
}

impl Database {
    pub async fn sqlite() -> Database {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        SqliteStore::connect(&url).await.unwrap();
        Database::Sqlite { _dir: dir, url }
    }

    pub async fn postgres(test: &str) -> Option<Database> {
        let url = testing::postgres_url(test)?;
        let store = testing::isolated_postgres_store(&url).await.unwrap();
        Some(Database::Postgres { url, store })
    }

    /// A fresh store on the database, as a restarted process opens it.
    pub async fn open(&self) -> Arc<dyn AuditStore> {
        match self {
            Database::Sqlite { url, .. } => Arc::new(SqliteStore::connect(url).await.unwrap()),
            Database::Postgres { url, store } => {
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .connect(url)
                    .await
                    .unwrap();
                let store = PostgresStore::new(pool, store.schema()).unwrap();
                store.migrate().await.unwrap();
                Arc::new(store)
            }
        }
    }

    pub async fn sqlite_store(&self) -> SqliteStore {
        match self {
            Database::Sqlite { url, .. } => SqliteStore::connect(url).await.unwrap(),
            Database::Postgres { .. } => unreachable!("a SQLite test"),
        }
    }

    /// A PostgreSQL store whose connections carry a unique `application_name`, so a test can
    /// find (and kill) exactly them.
    pub async fn postgres_store_named(&self) -> (Arc<dyn AuditStore>, String) {
        let Database::Postgres { url, store } = self else {
            unreachable!("a PostgreSQL test")
        };
        let name = format!("audit-test-{}", Uuid::now_v7().simple());
        let options = PgConnectOptions::from_str(url)
            .unwrap()
            .application_name(&name);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .unwrap();
        let named = PostgresStore::new(pool, store.schema()).unwrap();
        (Arc::new(named), name)
    }

    pub async fn admin_pool(&self) -> PgPool {
        let Database::Postgres { url, .. } = self else {
            unreachable!("a PostgreSQL test")
        };
        PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .unwrap()
    }

    /// A store on the database and a switch that takes the database away from it.
    pub async fn open_interruptible(&self) -> (Arc<dyn AuditStore>, Outage) {
        match self {
            Database::Sqlite { url, .. } => {
                let store = SqliteStore::connect(url).await.unwrap();
                let locker = SqliteStore::connect(url).await.unwrap();
                (
                    Arc::new(store),
                    Outage::SqliteLock {
                        locker,
                        held: Mutex::new(None),
                    },
                )
            }
            Database::Postgres { url, store } => {
                let options = PgConnectOptions::from_str(url).unwrap();
                let proxy = TcpProxy::start(options.get_host(), options.get_port()).await;
                let through_proxy = options.host("127.0.0.1").port(proxy.port);
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(std::time::Duration::from_secs(2))
                    .connect_with(through_proxy)
                    .await
                    .unwrap();
                let proxied = PostgresStore::new(pool, store.schema()).unwrap();
                (Arc::new(proxied), Outage::Proxy(proxy))
            }
        }
    }

    pub async fn cleanup(self) {
        if let Database::Postgres { store, .. } = &self {
            testing::drop_postgres_schema(store).await.unwrap();
        }
    }
}

/// Takes a database away from a store and gives it back.
pub enum Outage {
    /// Another connection holds SQLite's write lock: every write waits out the busy timeout
    /// and fails with SQLITE_BUSY.
    SqliteLock {
        locker: SqliteStore,
        held: Mutex<Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>>,
    },
    /// The proxy in front of PostgreSQL drops every connection and refuses new ones.
    Proxy(TcpProxy),
}

impl Outage {
    pub async fn start(&self) {
        match self {
            Outage::SqliteLock { locker, held } => {
                let mut conn = locker.writer_pool().acquire().await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                *held.lock().await = Some(conn);
            }
            Outage::Proxy(proxy) => proxy.cut(),
        }
    }

    pub async fn end(&self) {
        match self {
            Outage::SqliteLock { held, .. } => {
                if let Some(mut conn) = held.lock().await.take() {
                    sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();
                }
            }
            Outage::Proxy(proxy) => proxy.restore(),
        }
    }
}

/// A TCP proxy to a real server that can be cut: while cut, it closes every connection it
/// forwards and every new one at once.
pub struct TcpProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    generation: Arc<AtomicUsize>,
}

impl TcpProxy {
    pub async fn start(host: &str, port: u16) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap().port();
        let target = format!("{host}:{port}");
        let cut = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicUsize::new(0));
        let (cut_flag, generation_seen) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if cut_flag.load(Ordering::SeqCst) {
                    let _ = client.shutdown().await;
                    continue;
                }
                let target = target.clone();
                let born = generation_seen.load(Ordering::SeqCst);
                let generation = generation_seen.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                    let watch = async {
                        while generation.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        () = watch => {}
                    }
                });
            }
        });
        TcpProxy {
            port: local,
            cut,
            generation,
        }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}
