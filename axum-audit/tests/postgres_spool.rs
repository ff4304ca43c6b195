//! On PostgreSQL the facade gives the recorder a spool directory of its own
//! (`audit-spool-{schema}` in the working directory): a shutdown that cannot reach the database
//! by its deadline spools there, and the next start writes the spooled events.
//!
//! A test binary of its own, because it changes the working directory.

use std::time::Duration;

use axum_audit::{Action, Audit, AuditEvent, EventFilter, TenantScope};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_that_cannot_write_spools_beside_the_service_and_the_next_start_replays() {
    let Some(url) = audit_store::testing::postgres_url("facade_postgres_spool") else {
        return;
    };
    let workdir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(workdir.path()).unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("audit_spool_{nanos:x}");
    let audit = Audit::builder()
        .schema(&schema)
        .shutdown_timeout(Duration::from_millis(500))
        .connect(&url)
        .await
        .unwrap();

    // Another session holds the chain head, so no batch can commit.
    let blocker = axum_audit::sqlx::PgPool::connect(&url).await.unwrap();
    let mut lock = blocker.begin().await.unwrap();
    let statement = format!("SELECT * FROM {schema}.audit_chain_head FOR UPDATE");
    axum_audit::sqlx::query(axum_audit::sqlx::AssertSqlSafe(statement))
        .execute(&mut *lock)
        .await
        .unwrap();

    for n in 0..3 {
        let event = AuditEvent::builder("Report", Action::Create)
            .internal("nightly")
            .resource_id(n.to_string())
            .build();
        audit.recorder().record(event).await.unwrap();
    }
    let error = audit.shutdown().await.unwrap_err();
    let expected_dir = workdir.path().join(format!("audit-spool-{schema}"));
    match &error {
        axum_audit::Error::Shutdown(audit_store::ShutdownError::Spooled { events, path }) => {
            assert_eq!(*events, 3);
            assert!(path.starts_with(&expected_dir), "{}", path.display());
            assert!(path.exists());
        }
        other => panic!("expected the events to be spooled, got {other}"),
    }
    lock.rollback().await.unwrap();
    // The process ends: its spool file is closed (and unlocked).
    drop(audit);

    // The next start of the same service (same schema, same working directory) replays them.
    let next = Audit::builder()
        .schema(&schema)
        .connect(&url)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let replayed = loop {
        let page = next
            .store()
            .query(
                &EventFilter {
                    categories: vec!["Report".to_owned()],
                    ..Default::default()
                },
                &TenantScope::All,
                &Default::default(),
            )
            .await
            .unwrap();
        if page.items.len() >= 3 || tokio::time::Instant::now() > deadline {
            break page.items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut ids: Vec<_> = replayed
        .iter()
        .filter_map(|e| e.resource_id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["0", "1", "2"]);
    next.shutdown().await.unwrap();

    let statement = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    axum_audit::sqlx::query(axum_audit::sqlx::AssertSqlSafe(statement))
        .execute(&blocker)
        .await
        .unwrap();
}
