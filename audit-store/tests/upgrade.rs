//! A database as the last release left it (migration 0001 only, version 1 chain links, a
//! signed checkpoint) is upgraded in place by today's migrations: it verifies before and
//! after, reads back unchanged, and takes new (version 2) events on the same chain.
//!
//! SQLite always; PostgreSQL when `AUDIT_TEST_POSTGRES_URL` is set.

use std::str::FromStr;

use audit_store::{
    Action, AuditEvent, AuditStore, ChainHash, ChainHead, ChainVersion, Checkpoint, CheckpointKind,
    CheckpointSigner, EventFilter, PostgresStore, SqliteStore, TenantScope, chain_hash, testing,
    verify_chain,
};
use futures_util::TryStreamExt;
use sqlx::AssertSqlSafe;

/// The release before this one: only the first migration.
const RELEASED_MIGRATIONS: i64 = 1;

fn old_events(count: usize) -> Vec<AuditEvent> {
    (0..count)
        .map(|n| {
            AuditEvent::builder(
                if n % 3 == 0 { "Model" } else { "Dataset Rule" },
                Action::Update,
            )
            .occurred_at(chrono::Utc::now() - chrono::Duration::minutes(60 - n as i64))
            .internal(format!("before-upgrade-{n}"))
            .tenant(if n % 2 == 0 { "acme" } else { "globex" })
            .actor_id(format!("user-{}", n % 4))
            .actor_email(format!("User{}@Acme.test", n % 4))
            .resource(format!("r-{}", n % 5), format!("Resource {}", n % 5))
            .attribute("n", n)
            .build()
        })
        .collect()
}

/// The version 1 links the last release computed for `events` from the genesis.
fn v1_links(events: &[AuditEvent]) -> Vec<(u64, ChainHash, ChainHash)> {
    let mut prev = ChainHash::GENESIS;
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let seq = i as u64 + 1;
            let hash = chain_hash(&prev, seq, event);
            let link = (seq, prev, hash);
            prev = hash;
            link
        })
        .collect()
}

async fn everything(store: &dyn AuditStore) -> Vec<AuditEvent> {
    let mut events: Vec<AuditEvent> = store.chain_after(0).try_collect().await.unwrap();
    events.sort_by_key(|e| e.chain.map(|c| c.seq));
    events
}

/// Verification's fast path (canonical JSON from the stored columns) gives exactly
/// `canonical_json` of every event read back, version 1 and version 2 links alike.
async fn fast_path_is_canonical(fast: Vec<Option<Vec<u8>>>, store: &dyn AuditStore) {
    let stored = everything(store).await;
    assert_eq!(fast.len(), stored.len());
    assert!(
        stored
            .iter()
            .any(|e| e.chain.unwrap().version == ChainVersion::V1)
    );
    assert!(
        stored
            .iter()
            .any(|e| e.chain.unwrap().version == ChainVersion::V2)
    );
    for (event, fast) in stored.iter().zip(fast) {
        assert_eq!(fast, Some(audit_store::canonical_json(event)));
    }
}

/// What both backends check once the old rows are in.
async fn upgrade_and_check(store: &dyn AuditStore, signer: &CheckpointSigner, old: &[AuditEvent]) {
    let key = signer.verifying_key();
    let before = verify_chain(store, &key).await.unwrap();
    assert!(before.is_intact(), "{before:?}");
    assert_eq!(before.events_checked, old.len() as u64);

    let stored = everything(store).await;
    for (read, written) in stored.iter().zip(old) {
        let mut read = read.clone();
        assert_eq!(read.chain.unwrap().version, ChainVersion::V1);
        read.chain = None;
        assert_eq!(&read, written);
    }

    let new: Vec<AuditEvent> = (0..7)
        .map(|n| {
            AuditEvent::builder("Model", Action::Train)
                .internal(format!("after-upgrade-{n}"))
                .tenant("acme")
                .build()
        })
        .collect();
    store.append(&new).await.unwrap();
    store.checkpoint(CheckpointKind::Manual).await.unwrap();
    let after = verify_chain(store, &key).await.unwrap();
    assert!(after.is_intact(), "{after:?}");
    assert_eq!(after.events_checked, (old.len() + new.len()) as u64);
    let stored = everything(store).await;
    assert_eq!(stored.len(), old.len() + new.len());
    assert!(
        stored[old.len()..]
            .iter()
            .all(|e| e.chain.unwrap().version == ChainVersion::V2)
    );
    // The filters still find old and new rows alike.
    let acme: Vec<AuditEvent> = store
        .export(EventFilter::default(), TenantScope::only(["acme"]))
        .try_collect()
        .await
        .unwrap();
    let expected = old
        .iter()
        .chain(&new)
        .filter(|e| e.tenant.as_deref() == Some("acme"))
        .count();
    assert_eq!(acme.len(), expected);
    let by_user: Vec<AuditEvent> = store
        .export(
            EventFilter {
                users: vec!["user1@acme.test".into()],
                ..EventFilter::default()
            },
            TenantScope::All,
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        by_user.len(),
        old.iter()
            .filter(|e| e.actor_id.as_deref() == Some("user-1"))
            .count()
    );
    let by_name: Vec<AuditEvent> = store
        .export(
            EventFilter {
                resource_name: Some("source 3".into()),
                ..EventFilter::default()
            },
            TenantScope::All,
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        by_name.len(),
        old.iter()
            .filter(|e| e.resource_name.as_deref() == Some("Resource 3"))
            .count()
    );
}

fn signed_checkpoint(signer: &CheckpointSigner, head: (u64, ChainHash)) -> Checkpoint {
    signer.sign(
        ChainHead {
            seq: head.0,
            hash: head.1,
        },
        CheckpointKind::Periodic,
    )
}

#[tokio::test]
async fn a_released_sqlite_database_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let released = SqliteStore::new(pool.clone());
    released
        .migrate_only_through(RELEASED_MIGRATIONS)
        .await
        .unwrap();
    let old = old_events(40);
    let links = v1_links(&old);
    for (event, (seq, prev, hash)) in old.iter().zip(&links) {
        sqlx::query(
            "INSERT INTO audit_events (seq, prev_hash, hash, id, occurred_at, tenant, request_id, \
             actor_id, actor_email, actor_name, category, action, outcome, reason, resource_id, \
             resource_name, method, route, path, status, duration_ms, client_ip, user_agent, \
             attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(*seq as i64)
        .bind(prev.0.to_vec())
        .bind(hash.0.to_vec())
        .bind(event.id)
        .bind(event.occurred_at.timestamp_micros())
        .bind(&event.tenant)
        .bind(&event.request_id)
        .bind(&event.actor_id)
        .bind(&event.actor_email)
        .bind(&event.actor_name)
        .bind(&event.category)
        .bind(event.action.as_str())
        .bind(event.outcome.as_str())
        .bind(&event.reason)
        .bind(&event.resource_id)
        .bind(&event.resource_name)
        .bind(&event.method)
        .bind(&event.route)
        .bind(&event.path)
        .bind(i64::from(event.status))
        .bind(event.duration_ms)
        .bind(&event.client_ip)
        .bind(&event.user_agent)
        .bind(serde_json::Value::Object(event.attributes.clone()).to_string())
        .execute(&pool)
        .await
        .unwrap();
    }
    let (seq, _, hash) = *links.last().unwrap();
    sqlx::query("UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1")
        .bind(seq as i64)
        .bind(hash.0.to_vec())
        .execute(&pool)
        .await
        .unwrap();
    let signer = CheckpointSigner::from_seed([8; 32]);
    let checkpoint = signed_checkpoint(&signer, (seq, hash));
    sqlx::query(
        "INSERT INTO audit_checkpoints (seq, head, created_at, kind, public_key, signature) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(checkpoint.seq as i64)
    .bind(checkpoint.head.0.to_vec())
    .bind(checkpoint.created_at.timestamp_micros())
    .bind(checkpoint.kind.as_str())
    .bind(&checkpoint.public_key)
    .bind(&checkpoint.signature)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    // Today's code opens it: every later migration runs.
    let store = SqliteStore::connect(&url)
        .await
        .unwrap()
        .with_signer(signer.clone());
    upgrade_and_check(&store, &signer, &old).await;
    fast_path_is_canonical(store.fast_canonical_rows(0, 10_000).await.unwrap(), &store).await;
}

#[tokio::test]
async fn a_released_postgres_database_is_upgraded_in_place() {
    let Some(url) = testing::postgres_url("a_released_postgres_database_is_upgraded_in_place")
    else {
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let schema = format!("audit_test_{}", uuid::Uuid::now_v7().simple());
    let released = PostgresStore::new(pool.clone(), &schema).unwrap();
    released
        .migrate_only_through(RELEASED_MIGRATIONS)
        .await
        .unwrap();
    let old = old_events(40);
    let links = v1_links(&old);
    for (event, (seq, prev, hash)) in old.iter().zip(&links) {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {schema}.audit_events (seq, prev_hash, hash, id, occurred_at, tenant, \
             request_id, actor_id, actor_email, actor_name, category, action, outcome, reason, \
             resource_id, resource_name, method, route, path, status, duration_ms, client_ip, \
             user_agent, attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24::jsonb)"
        )))
        .bind(*seq as i64)
        .bind(prev.0.to_vec())
        .bind(hash.0.to_vec())
        .bind(event.id)
        .bind(event.occurred_at)
        .bind(&event.tenant)
        .bind(&event.request_id)
        .bind(&event.actor_id)
        .bind(&event.actor_email)
        .bind(&event.actor_name)
        .bind(&event.category)
        .bind(event.action.as_str())
        .bind(event.outcome.as_str())
        .bind(&event.reason)
        .bind(&event.resource_id)
        .bind(&event.resource_name)
        .bind(&event.method)
        .bind(&event.route)
        .bind(&event.path)
        .bind(i32::from(event.status))
        .bind(event.duration_ms)
        .bind(&event.client_ip)
        .bind(&event.user_agent)
        .bind(serde_json::Value::Object(event.attributes.clone()).to_string())
        .execute(&pool)
        .await
        .unwrap();
    }
    let (seq, _, hash) = *links.last().unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {schema}.audit_chain_head SET seq = $1, hash = $2 WHERE id = 1"
    )))
    .bind(seq as i64)
    .bind(hash.0.to_vec())
    .execute(&pool)
    .await
    .unwrap();
    let signer = CheckpointSigner::from_seed([8; 32]);
    let checkpoint = signed_checkpoint(&signer, (seq, hash));
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {schema}.audit_checkpoints (seq, head, created_at, kind, public_key, \
         signature) VALUES ($1, $2, $3, $4, $5, $6)"
    )))
    .bind(checkpoint.seq as i64)
    .bind(checkpoint.head.0.to_vec())
    .bind(checkpoint.created_at)
    .bind(checkpoint.kind.as_str())
    .bind(&checkpoint.public_key)
    .bind(&checkpoint.signature)
    .execute(&pool)
    .await
    .unwrap();

    let store = PostgresStore::new(pool.clone(), &schema)
        .unwrap()
        .with_signer(signer.clone());
    store.migrate().await.unwrap();
    upgrade_and_check(&store, &signer, &old).await;
    fast_path_is_canonical(store.fast_canonical_rows(0, 10_000).await.unwrap(), &store).await;
    testing::drop_postgres_schema(&store).await.unwrap();
}

/// Migration 0008 replaces the STRICT terms function that computed the terms of every event
/// stored before it: those stored terms must equal what the new (inlined) function computes,
/// and the filters must find old and new events alike.
#[tokio::test]
async fn postgres_terms_stored_before_0008_match_the_inlined_function() {
    let Some(url) =
        testing::postgres_url("postgres_terms_stored_before_0008_match_the_inlined_function")
    else {
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let schema = format!("audit_test_{}", uuid::Uuid::now_v7().simple());
    let before = PostgresStore::new(pool.clone(), &schema).unwrap();
    before.migrate_only_through(7).await.unwrap();
    let strict = format!(
        "SELECT p.proisstrict FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = '{schema}' AND p.proname = 'audit_term'"
    );
    let is_strict = || sqlx::query_scalar::<_, bool>(AssertSqlSafe(strict.clone()));
    assert!(is_strict().fetch_one(&pool).await.unwrap());
    let old = old_events(40);
    before.append(&old).await.unwrap();

    let store = PostgresStore::new(pool.clone(), &schema).unwrap();
    store.migrate().await.unwrap();
    assert!(!is_strict().fetch_one(&pool).await.unwrap());
    // The same events again under new ids, now with terms from the inlined function.
    let new: Vec<AuditEvent> = old
        .iter()
        .cloned()
        .map(|mut event| {
            event.id = uuid::Uuid::now_v7();
            event
        })
        .collect();
    store.append(&new).await.unwrap();

    let recomputed = format!(
        "SELECT count(*) FROM {schema}.audit_events WHERE terms IS DISTINCT FROM array_remove(ARRAY[\
         {schema}.audit_term('t', tenant), {schema}.audit_term('c', category), \
         {schema}.audit_term('a', action), {schema}.audit_term('o', outcome), \
         {schema}.audit_term('u', actor_id), {schema}.audit_term('e', lower(actor_email)), \
         {schema}.audit_term('r', resource_id), {schema}.audit_term('n', resource_name), \
         {schema}.audit_term('q', request_id)], NULL)"
    );
    let differing: i64 = sqlx::query_scalar(AssertSqlSafe(recomputed))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        differing, 0,
        "stored terms differ from the inlined function's"
    );

    for (filter, per_copy) in [
        (
            EventFilter {
                tenants: vec!["acme".into()],
                ..EventFilter::default()
            },
            20,
        ),
        (
            EventFilter {
                users: vec!["user-1".into()],
                resource_id: Some("r-1".into()),
                ..EventFilter::default()
            },
            2,
        ),
        (
            EventFilter {
                request_id: Some(old[7].request_id.clone()),
                ..EventFilter::default()
            },
            1,
        ),
        (
            EventFilter {
                users: vec!["User2@Acme.test".into()],
                categories: vec!["Dataset Rule".into()],
                resource_name: Some("source 2".into()),
                ..EventFilter::default()
            },
            // n % 4 == 2, n % 3 != 0, n % 5 == 2: 2, 22.
            2,
        ),
    ] {
        let found: Vec<AuditEvent> = store
            .export(filter.clone(), TenantScope::All)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(found.len(), 2 * per_copy, "{filter:?}");
    }
    testing::drop_postgres_schema(&store).await.unwrap();
}

/// Migration 0009 leaves the columns no query conditions on out of ANALYZE (its sorts were
/// half of the upkeep's work): a schema migrated through 0008 with events and statistics of
/// every column is migrated in place, reads the same, and an ANALYZE afterwards gathers
/// statistics of exactly the columns the filters and the chain compare (`sql::push_where`,
/// the chain's `seq` walks, the terms).
#[tokio::test]
async fn postgres_analyses_only_the_filtered_columns_after_0009() {
    let Some(url) = testing::postgres_url("postgres_analyses_only_the_filtered_columns_after_0009")
    else {
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let schema = format!("audit_test_{}", uuid::Uuid::now_v7().simple());
    let before = PostgresStore::new(pool.clone(), &schema).unwrap();
    before.migrate_only_through(8).await.unwrap();
    let old = old_events(60);
    before.append(&old).await.unwrap();
    let analyse = format!("ANALYZE {schema}.audit_events");
    sqlx::query(AssertSqlSafe(analyse.clone()))
        .execute(&pool)
        .await
        .unwrap();
    let analysed = || async {
        let mut columns: Vec<String> = sqlx::query_scalar(
            "SELECT attname::text FROM pg_stats WHERE schemaname = $1 AND tablename = 'audit_events'",
        )
        .bind(&schema)
        .fetch_all(&pool)
        .await
        .unwrap();
        columns.sort();
        columns
    };
    assert!(analysed().await.contains(&"attributes".to_owned()));
    let stored_before = everything(&before).await;

    let store = PostgresStore::new(pool.clone(), &schema).unwrap();
    store.migrate().await.unwrap();
    assert_eq!(everything(&store).await, stored_before);
    // Statistics already gathered stay until the next ANALYZE; a fresh schema's first one
    // shows the columns it covers.
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM pg_statistic WHERE starelid = '{schema}.audit_events'::regclass"
    )))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(AssertSqlSafe(analyse))
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        analysed().await,
        [
            "action",
            "actor_email",
            "actor_id",
            "category",
            "id",
            "occurred_at",
            "outcome",
            "request_id",
            "resource_id",
            "resource_name",
            "seq",
            "tenant",
            "terms",
        ]
    );
    let found: Vec<AuditEvent> = store
        .export(
            EventFilter {
                users: vec!["user-1".into()],
                resource_id: Some("r-1".into()),
                ..EventFilter::default()
            },
            TenantScope::All,
        )
        .try_collect()
        .await
        .unwrap();
    // n % 4 == 1 and n % 5 == 1 among 0..60: 1, 21, 41.
    assert_eq!(found.len(), 3);
    testing::drop_postgres_schema(&store).await.unwrap();
}

/// Migration 0010: the upkeep analyses a table once it changed by as many rows as it held
/// at its last analysis (it doubled), not by a fifth. A schema migrated through 0009 and
/// analysed is migrated in place and reads the same; then 150 more events on 200 analysed
/// ones leave the statistics alone (0009 would have analysed: 150 > 40), and 100 more (250
/// in all) renew them. Autovacuum is off for the table, so only the upkeep analyses it.
#[tokio::test]
async fn postgres_upkeep_analyses_a_table_when_it_doubled_after_0010() {
    let Some(url) =
        testing::postgres_url("postgres_upkeep_analyses_a_table_when_it_doubled_after_0010")
    else {
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let schema = format!("audit_test_{}", uuid::Uuid::now_v7().simple());
    let before = PostgresStore::new(pool.clone(), &schema).unwrap();
    before.migrate_only_through(9).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "ALTER TABLE {schema}.audit_events SET (autovacuum_enabled = false)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let upkeep = format!("SELECT {schema}.audit_merge_terms()");
    // The cumulative statistics reach pg_stat_user_tables up to a second after a commit.
    let events_table_stats = || async {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT analyze_count, n_mod_since_analyze FROM pg_stat_user_tables \
             WHERE schemaname = $1 AND relname = 'audit_events'",
        )
        .bind(&schema)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let upkeep_once_modified = |modified: i64| {
        let (upkeep, events_table_stats) = (upkeep.clone(), &events_table_stats);
        let pool = pool.clone();
        async move {
            for _ in 0..100 {
                if events_table_stats().await.1 >= modified {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert_eq!(events_table_stats().await.1, modified);
            sqlx::query(AssertSqlSafe(upkeep))
                .execute(&pool)
                .await
                .unwrap();
            events_table_stats().await.0
        }
    };

    before.append(&old_events(200)).await.unwrap();
    assert_eq!(
        upkeep_once_modified(200).await,
        1,
        "never analysed: analysed"
    );
    let stored_before = everything(&before).await;

    let store = PostgresStore::new(pool.clone(), &schema).unwrap();
    store.migrate().await.unwrap();
    assert_eq!(everything(&store).await, stored_before);

    store.append(&old_events(150)).await.unwrap();
    assert_eq!(
        upkeep_once_modified(150).await,
        1,
        "150 of 200 changed: kept"
    );
    store.append(&old_events(100)).await.unwrap();
    assert_eq!(
        upkeep_once_modified(250).await,
        2,
        "250 of 200 changed: analysed"
    );
    testing::drop_postgres_schema(&store).await.unwrap();
}
