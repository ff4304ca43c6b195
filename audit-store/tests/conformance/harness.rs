//! Per-backend set-up: an isolated database, a way to open a second store on it, and raw
//! SQL for the tests that tamper with rows behind the store's back.

use std::sync::Arc;

use audit_store::{AuditStore, PostgresStore, SqliteStore, testing};
use sqlx::AssertSqlSafe;

pub enum Backend {
    Sqlite {
        store: SqliteStore,
        url: String,
        _dir: tempfile::TempDir,
    },
    Postgres {
        store: PostgresStore,
    },
}

pub struct Harness {
    pub store: Arc<dyn AuditStore>,
    backend: Backend,
}

pub async fn sqlite(test: &str) -> Option<Harness> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}",
        dir.path().join(format!("{test}.db")).display()
    );
    let store = SqliteStore::connect(&url).await.expect("open sqlite store");
    Some(Harness {
        store: Arc::new(store.clone()),
        backend: Backend::Sqlite {
            store,
            url,
            _dir: dir,
        },
    })
}

pub async fn postgres(test: &str) -> Option<Harness> {
    let url = testing::postgres_url(test)?;
    let store = testing::isolated_postgres_store(&url)
        .await
        .expect("open postgres store");
    Some(Harness {
        store: Arc::new(store.clone()),
        backend: Backend::Postgres { store },
    })
}

impl Harness {
    /// A second, independent store on the same database (another app instance).
    pub async fn second_instance(&self) -> Arc<dyn AuditStore> {
        match &self.backend {
            Backend::Sqlite { url, .. } => Arc::new(
                SqliteStore::connect(url)
                    .await
                    .expect("second sqlite store"),
            ),
            Backend::Postgres { store } => {
                let second =
                    PostgresStore::new(store.pool().clone(), store.schema()).expect("schema");
                second.migrate().await.expect("migrate again");
                Arc::new(second)
            }
        }
    }

    /// Runs one statement with `{events}`, `{checkpoints}`, `{quarantine}`, `{chain_head}` and
    /// `{runs}` replaced by the store's tables; returns rows affected.
    pub async fn raw(&self, statement: &str) -> Result<u64, sqlx::Error> {
        const TABLES: [(&str, &str); 5] = [
            ("{events}", "audit_events"),
            ("{checkpoints}", "audit_checkpoints"),
            ("{quarantine}", "audit_quarantine"),
            ("{chain_head}", "audit_chain_head"),
            ("{runs}", "audit_recorder_runs"),
        ];
        let mut statement = statement.to_owned();
        for (placeholder, table) in TABLES {
            let qualified = match &self.backend {
                Backend::Sqlite { .. } => table.to_owned(),
                Backend::Postgres { store } => format!("{}.{table}", store.schema()),
            };
            statement = statement.replace(placeholder, &qualified);
        }
        match &self.backend {
            Backend::Sqlite { store, .. } => sqlx::query(AssertSqlSafe(statement))
                .execute(store.writer_pool())
                .await
                .map(|r| r.rows_affected()),
            Backend::Postgres { store } => sqlx::query(AssertSqlSafe(statement))
                .execute(store.pool())
                .await
                .map(|r| r.rows_affected()),
        }
    }

    /// The same store, signing checkpoints with `signer`.
    pub fn signed(&self, signer: audit_store::CheckpointSigner) -> Arc<dyn AuditStore> {
        match &self.backend {
            Backend::Sqlite { store, .. } => Arc::new(store.clone().with_signer(signer)),
            Backend::Postgres { store } => Arc::new(store.clone().with_signer(signer)),
        }
    }

    /// Removes the append-only triggers, as someone with direct database access could.
    pub async fn disable_append_only_guards(&self) {
        let statements: &[&str] = if self.is_postgres() {
            &[
                "ALTER TABLE {events} DISABLE TRIGGER USER",
                "ALTER TABLE {checkpoints} DISABLE TRIGGER USER",
            ]
        } else {
            &[
                "DROP TRIGGER audit_events_no_update",
                "DROP TRIGGER audit_events_no_delete",
                "DROP TRIGGER audit_checkpoints_no_update",
                "DROP TRIGGER audit_checkpoints_no_delete",
            ]
        };
        for statement in statements {
            self.raw(statement).await.expect(statement);
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    /// The canonical JSON verification's fast path writes from each stored row, in chain
    /// order (`None` where it falls back to decoding the event).
    pub async fn fast_canonical_rows(&self) -> Vec<Option<Vec<u8>>> {
        match &self.backend {
            Backend::Sqlite { store, .. } => store.fast_canonical_rows(0, 100_000).await,
            Backend::Postgres { store } => store.fast_canonical_rows(0, 100_000).await,
        }
        .expect("fast path rows")
    }

    pub async fn cleanup(self) {
        if let Backend::Postgres { store } = &self.backend {
            testing::drop_postgres_schema(store)
                .await
                .expect("drop test schema");
        }
    }
}
