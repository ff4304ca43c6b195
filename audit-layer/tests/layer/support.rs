//! Real databases for the layer's tests: SQLite in a temporary file, PostgreSQL in an
//! isolated schema reached through a TCP proxy the test can cut — so an outage is a real
//! one (SQLite: the file locked by another connection's `BEGIN EXCLUSIVE`; PostgreSQL: every
//! connection dropped and new ones refused).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use audit_store::{
    AuditEvent, AuditStore, EventFilter, PostgresStore, Recorder, RecorderBuilder, RetryPolicy,
    SqliteStore, TenantScope,
};
use futures_util::TryStreamExt;
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

enum Outage {
    Sqlite {
        options: Box<sqlx::sqlite::SqliteConnectOptions>,
        locker: Option<sqlx::SqliteConnection>,
    },
    Postgres {
        up: watch::Sender<bool>,
    },
}

pub struct Fixture {
    /// What the recorder writes to (short lock timeout / through the proxy).
    pub store: Arc<dyn AuditStore>,
    reader: Arc<dyn AuditStore>,
    outage: Outage,
    postgres: Option<PostgresStore>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    /// `None` when the backend is not available here (PostgreSQL without a URL).
    pub async fn new(db: Db, test: &str) -> Option<Self> {
        match db {
            Db::Sqlite => Some(Self::sqlite().await),
            Db::Postgres => {
                let url = audit_store::testing::postgres_url(test)?;
                Some(Self::postgres(&url).await)
            }
        }
    }

    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let reader = SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(Duration::from_millis(50));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .unwrap();
        Self {
            store: Arc::new(SqliteStore::new(pool)),
            reader: Arc::new(reader),
            outage: Outage::Sqlite {
                options: Box::new(options),
                locker: None,
            },
            postgres: None,
            _dir: Some(dir),
        }
    }

    async fn postgres(url: &str) -> Self {
        let direct = audit_store::testing::isolated_postgres_store(url)
            .await
            .unwrap();
        let options = sqlx::postgres::PgConnectOptions::from_str(url).unwrap();
        let target = tokio::net::lookup_host((options.get_host(), options.get_port()))
            .await
            .unwrap()
            .next()
            .unwrap();
        let (proxy, up) = proxy(target).await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_millis(500))
            .connect_lazy_with(options.host("127.0.0.1").port(proxy.port()));
        let store = PostgresStore::new(pool, direct.schema()).unwrap();
        Self {
            store: Arc::new(store),
            reader: Arc::new(direct.clone()),
            outage: Outage::Postgres { up },
            postgres: Some(direct),
            _dir: None,
        }
    }

    /// A recorder on this fixture's store with quick retries.
    pub fn recorder(&self) -> RecorderBuilder {
        Recorder::builder(self.store.clone()).retry(RetryPolicy::new(
            Duration::from_millis(10),
            Duration::from_millis(100),
        ))
    }

    /// Makes the database unavailable to the recorder's store.
    pub async fn break_database(&mut self) {
        match &mut self.outage {
            Outage::Sqlite { options, locker } => {
                let mut connection = sqlx::SqliteConnection::connect_with(options).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut connection)
                    .await
                    .unwrap();
                *locker = Some(connection);
            }
            Outage::Postgres { up } => {
                up.send_replace(false);
            }
        }
    }

    /// Makes it available again.
    pub async fn restore_database(&mut self) {
        match &mut self.outage {
            Outage::Sqlite { locker, .. } => {
                if let Some(mut connection) = locker.take() {
                    sqlx::query("ROLLBACK")
                        .execute(&mut connection)
                        .await
                        .unwrap();
                }
            }
            Outage::Postgres { up } => {
                up.send_replace(true);
            }
        }
    }

    /// Every stored event, newest first.
    pub async fn events(&self) -> Vec<AuditEvent> {
        self.reader
            .export(EventFilter::default(), TenantScope::All)
            .try_collect()
            .await
            .unwrap()
    }

    pub async fn cleanup(self) {
        if let Some(store) = &self.postgres {
            audit_store::testing::drop_postgres_schema(store)
                .await
                .unwrap();
        }
    }
}

/// A TCP proxy to `target` that, while `up` is false, cuts every tunnel and drops every new
/// connection at once.
async fn proxy(target: SocketAddr) -> (SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (up, watcher) = watch::channel(true);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let mut watcher = watcher.clone();
            if !*watcher.borrow() {
                drop(client);
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = watcher.wait_for(|up| !*up) => {}
                }
            });
        }
    });
    (address, up)
}

/// Waits until `condition` holds, failing the test after `limit`.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(limit, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("condition not reached in time");
}
