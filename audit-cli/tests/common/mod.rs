//! A real chained store on SQLite or PostgreSQL, raw SQL to tamper with it behind the store's
//! back, and a way to run the real `audit` binary.

#![allow(dead_code)] // each test file uses part of it

use std::process::Command;

use audit_store::{
    Action, AuditEvent, AuditStore, CheckpointKind, CheckpointSigner, HttpFacts, PostgresStore,
    SqliteStore, testing,
};
use sqlx::AssertSqlSafe;

pub fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed([42; 32])
}

pub fn public_key() -> String {
    signer().public_key_hex()
}

pub enum Db {
    Sqlite {
        store: SqliteStore,
        url: String,
        _dir: tempfile::TempDir,
    },
    Postgres {
        store: PostgresStore,
        url: String,
    },
}

pub fn events(seed: usize, n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            AuditEvent::builder(["Model", "Dataset", "User"][i % 3], Action::Update)
                .http(HttpFacts::new(
                    "PUT",
                    "/m/{id}",
                    format!("/m/{seed}-{i}"),
                    200,
                ))
                .tenant(["acme", "globex"][i % 2])
                .resource(format!("{seed}-{i}"), format!("resource {seed}-{i}"))
                .attribute("n", i)
                .build()
        })
        .collect()
}

impl Db {
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = SqliteStore::connect(&url)
            .await
            .expect("sqlite store")
            .with_signer(signer());
        Db::Sqlite {
            store,
            url,
            _dir: dir,
        }
    }

    /// `None` (after printing why) when no PostgreSQL is configured.
    pub async fn postgres(test: &str) -> Option<Db> {
        let url = testing::postgres_url(test)?;
        let store = testing::isolated_postgres_store(&url)
            .await
            .expect("postgres store")
            .with_signer(signer());
        Some(Db::Postgres { store, url })
    }

    pub fn store(&self) -> &dyn AuditStore {
        match self {
            Db::Sqlite { store, .. } => store,
            Db::Postgres { store, .. } => store,
        }
    }

    /// Twelve events in three batches and a signed checkpoint after the tenth.
    pub async fn chained_log(&self) {
        let store = self.store();
        store.append(&events(1, 4)).await.unwrap();
        store.append(&events(2, 6)).await.unwrap();
        store
            .checkpoint(CheckpointKind::Periodic)
            .await
            .unwrap()
            .unwrap();
        store.append(&events(3, 2)).await.unwrap();
    }

    /// Arguments naming this database for `audit verify`.
    pub fn database_args(&self) -> Vec<String> {
        match self {
            Db::Sqlite { url, .. } => vec!["--database".into(), url.clone()],
            Db::Postgres { store, url } => vec![
                "--database".into(),
                url.clone(),
                "--schema".into(),
                store.schema().to_owned(),
            ],
        }
    }

    /// Runs one statement with `{events}`, `{checkpoints}`, `{chain_head}` replaced by the
    /// tables.
    pub async fn raw(&self, statement: &str) {
        match self {
            Db::Sqlite { store, .. } => {
                let statement = statement
                    .replace("{events}", "audit_events")
                    .replace("{checkpoints}", "audit_checkpoints")
                    .replace("{chain_head}", "audit_chain_head");
                sqlx::query(AssertSqlSafe(statement.clone()))
                    .execute(store.writer_pool())
                    .await
                    .expect(&statement);
            }
            Db::Postgres { store, .. } => {
                let schema = store.schema();
                let statement = statement
                    .replace("{events}", &format!("{schema}.audit_events"))
                    .replace("{checkpoints}", &format!("{schema}.audit_checkpoints"))
                    .replace("{chain_head}", &format!("{schema}.audit_chain_head"));
                sqlx::query(AssertSqlSafe(statement.clone()))
                    .execute(store.pool())
                    .await
                    .expect(&statement);
            }
        }
    }

    /// Removes the append-only triggers, as someone with direct database access could.
    pub async fn disable_append_only_guards(&self) {
        let statements: &[&str] = match self {
            Db::Postgres { .. } => &[
                "ALTER TABLE {events} DISABLE TRIGGER USER",
                "ALTER TABLE {checkpoints} DISABLE TRIGGER USER",
            ],
            Db::Sqlite { .. } => &[
                "DROP TRIGGER audit_events_no_update",
                "DROP TRIGGER audit_events_no_delete",
                "DROP TRIGGER audit_checkpoints_no_update",
                "DROP TRIGGER audit_checkpoints_no_delete",
            ],
        };
        for statement in statements {
            self.raw(statement).await;
        }
    }

    pub async fn cleanup(self) {
        if let Db::Postgres { store, .. } = &self {
            testing::drop_postgres_schema(store)
                .await
                .expect("drop test schema");
        }
    }
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the real `audit` binary.
pub fn audit<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_audit"))
        .args(args)
        .env_remove("AUDIT_DATABASE_URL")
        .output()
        .expect("run the audit binary");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
