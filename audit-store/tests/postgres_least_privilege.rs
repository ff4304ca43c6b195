//! The least-privilege setup of `PostgresStore::least_privilege_sql`, against the real server:
//! the application's role appends, reads, checkpoints and purges through the retention
//! function, and the database refuses it every other way to change or remove events.

use std::str::FromStr;
use std::time::Duration;

use audit_store::{
    Action, AuditEvent, AuditStore, CheckpointSigner, EventFilter, PostgresStore, Recorder,
    TenantScope, testing, verify_chain,
};
use chrono::Utc;
use futures_util::TryStreamExt;
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

fn event(n: usize, age: chrono::Duration) -> AuditEvent {
    AuditEvent::builder("Model", Action::Update)
        .occurred_at(Utc::now() - age)
        .internal(format!("job-{n}"))
        .tenant("acme")
        .build()
}

async fn pool_as(url: &str, role: &str) -> PgPool {
    let options = PgConnectOptions::from_str(url).unwrap().username(role);
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_application_role_can_append_and_purge_and_nothing_else() {
    let Some(url) =
        testing::postgres_url("the_application_role_can_append_and_purge_and_nothing_else")
    else {
        return;
    };
    // The owner (the test's superuser here) migrates and grants.
    let owner = testing::isolated_postgres_store(&url).await.unwrap();
    let schema = owner.schema().to_owned();
    let role = format!("audit_app_{}", &schema["audit_test_".len()..][..12]);
    sqlx::query(AssertSqlSafe(format!("CREATE ROLE {role} LOGIN")))
        .execute(owner.pool())
        .await
        .unwrap();
    let grants = owner
        .least_privilege_sql(&role, Duration::from_secs(30 * 86_400))
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(grants))
        .execute(owner.pool())
        .await
        .unwrap();

    // The application connects as its own role; opening the store runs no DDL.
    let app_pool = pool_as(&url, &role).await;
    let signer = CheckpointSigner::from_seed([3; 32]);
    let app = PostgresStore::new(app_pool.clone(), &schema)
        .unwrap()
        .with_signer(signer.clone());
    app.migrate()
        .await
        .expect("an up-to-date store opens without DDL rights");

    let recorder = Recorder::builder(app.clone()).start().unwrap();
    recorder.recovered().await;
    let old: Vec<_> = (0..5)
        .map(|n| event(n, chrono::Duration::days(90)))
        .collect();
    let recent: Vec<_> = (5..10)
        .map(|n| event(n, chrono::Duration::days(1)))
        .collect();
    for event in old.iter().chain(&recent) {
        recorder.record(event.clone()).await.unwrap();
    }
    recorder.shutdown().await.unwrap();
    let stored: Vec<AuditEvent> = app
        .export(EventFilter::default(), TenantScope::All)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(stored.len(), 10);

    // The forwarder's cursor and lease are the application's to move.
    let lease = app
        .acquire_forward_lease(
            "siem",
            "instance-a",
            Duration::from_secs(15),
            audit_store::ForwardPosition::BEGINNING,
        )
        .await
        .unwrap()
        .expect("a free lease");
    let to = audit_store::ForwardPosition {
        seq: 3,
        checkpoint_id: 0,
    };
    assert!(app.advance_forward_cursor(&lease, to).await.unwrap());

    // Retention works through the function, and only as far as the policy allows.
    let refused = app.purge_before(Utc::now()).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("the policy keeps events for at least"),
        "{refused}"
    );
    assert_eq!(
        app.purge_before(Utc::now() - chrono::Duration::days(60))
            .await
            .unwrap(),
        5
    );
    let report = verify_chain(&app, &signer.verifying_key()).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events_checked, 5);

    // The store merges its terms index's pending list as the application's role, which
    // owns nothing: through the function (migration 0006), and by itself after enough
    // appends. A merge that could not run would only be logged; here it must return.
    let merged: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT {schema}.audit_merge_terms()"
    )))
    .fetch_one(&app_pool)
    .await
    .expect("the application's role may merge the terms index");
    assert!(merged >= 0);
    let many: Vec<_> = (10..5_010)
        .map(|n| event(n, chrono::Duration::days(1)))
        .collect();
    for chunk in many.chunks(1_000) {
        app.append(chunk).await.unwrap();
    }
    let found = app
        .query(
            &EventFilter {
                request_id: Some(many[4_321].request_id.clone()),
                ..EventFilter::default()
            },
            &TenantScope::All,
            &audit_store::PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);

    // Every other way to change or remove events is refused to the application's role.
    let events = format!("{schema}.audit_events");
    let checkpoints = format!("{schema}.audit_checkpoints");
    let attempts = [
        format!("UPDATE {events} SET category = 'x'"),
        format!("DELETE FROM {events}"),
        format!("TRUNCATE {events}"),
        format!(
            "SELECT set_config('audit.purge_before', 'infinity', false), \
             (SELECT count(*) FROM {events})"
        ),
        format!("DELETE FROM {events} WHERE seq > 0"),
        format!("UPDATE {checkpoints} SET seq = 0"),
        format!("DELETE FROM {checkpoints}"),
        format!("DELETE FROM {schema}.audit_quarantine"),
        format!("ALTER TABLE {events} DISABLE TRIGGER USER"),
        format!("DROP TRIGGER audit_events_no_delete ON {events}"),
        format!("UPDATE {schema}.audit_retention_policy SET min_retention = INTERVAL '0'"),
        format!("DROP FUNCTION {schema}.audit_purge_through(BIGINT, TIMESTAMPTZ)"),
    ];
    for (n, attempt) in attempts.iter().enumerate() {
        // One connection, so the variable set by one attempt is in force for the next.
        let result = sqlx::raw_sql(AssertSqlSafe(attempt.clone()))
            .execute(&app_pool)
            .await;
        if n == 3 {
            // Setting a variable is allowed; it grants nothing (the next attempt shows it).
            result.unwrap();
            continue;
        }
        let error = result.expect_err(attempt);
        let message = error.to_string();
        assert!(
            message.contains("permission denied") || message.contains("must be owner"),
            "{attempt}: {message}"
        );
    }
    let left: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {events}")))
        .fetch_one(owner.pool())
        .await
        .unwrap();
    assert_eq!(left, 5 + 5_000);

    app_pool.close().await;
    testing::drop_postgres_schema(&owner).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(owner.pool())
        .await
        .unwrap();
}
