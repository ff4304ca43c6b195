//! The recorder under the faults real deployments meet, against real databases: a commit whose
//! acknowledgement is lost, a commit that never answers, events the database refuses, a full
//! disk (SQLite's `max_page_count`), killed connections (PostgreSQL's `pg_terminate_backend`),
//! the database down at shutdown, a runtime stopped without shutdown, and an unclean previous
//! run. Each test checks that every acknowledged event ends up stored exactly once (or in the
//! quarantine, reported by a gap record) and that the recorder recovers by itself.
//!
//! SQLite runs always; PostgreSQL when `AUDIT_TEST_POSTGRES_URL` is set.

mod faults;

use std::collections::HashMap;
use std::time::Duration;

use audit_store::{
    Action, AuditEvent, AuditStore, DeliveryMode, EventFilter, Recorder, RecorderRun, RetryPolicy,
    ShutdownError, TenantScope, verify_chain,
};
use futures_util::TryStreamExt;
use uuid::Uuid;

use faults::{CommitsThenFails, Database, HangsAfterCommit};

fn events(tag: &str, count: usize) -> Vec<AuditEvent> {
    (0..count)
        .map(|n| {
            AuditEvent::builder("Model", Action::Update)
                .internal(format!("{tag}-{n}"))
                .tenant(if n % 2 == 0 { "acme" } else { "globex" })
                .resource(n.to_string(), format!("model {n}"))
                .attribute("n", n)
                .build()
        })
        .collect()
}

/// Fast retries, so a test spends its time on the fault, not on backoff.
fn quick(recorder: audit_store::RecorderBuilder) -> audit_store::RecorderBuilder {
    recorder
        .retry(RetryPolicy::new(
            Duration::from_millis(5),
            Duration::from_millis(50),
        ))
        .max_batch_events(100)
}

/// How many times each id is stored.
async fn stored_ids(store: &dyn AuditStore) -> HashMap<Uuid, usize> {
    let mut ids = HashMap::new();
    let all: Vec<AuditEvent> = store
        .export(EventFilter::default(), TenantScope::All)
        .try_collect()
        .await
        .unwrap();
    for event in all {
        *ids.entry(event.id).or_default() += 1;
    }
    ids
}

/// Every one of `expected` is stored exactly once, the chain has no duplicate and verifies.
async fn assert_stored_exactly_once(store: &dyn AuditStore, expected: &[AuditEvent]) {
    let ids = stored_ids(store).await;
    for event in expected {
        assert_eq!(
            ids.get(&event.id),
            Some(&1),
            "event {} {}",
            event.id,
            event.path
        );
    }
    let head = store.chain_head().await.unwrap();
    assert_eq!(
        head.seq as usize,
        ids.values().sum::<usize>(),
        "chain length = rows"
    );
    let key = audit_store::CheckpointSigner::from_seed([1; 32]).verifying_key();
    let report = verify_chain(store, &key).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
}

async fn submit_all(recorder: &Recorder, events: &[AuditEvent]) {
    for event in events {
        recorder.record(event.clone()).await.unwrap();
    }
}

fn gap_records(store_events: &[AuditEvent]) -> Vec<&AuditEvent> {
    store_events
        .iter()
        .filter(|e| e.category == audit_store::GAP_CATEGORY && e.action.as_str() == "gap")
        .collect()
}

async fn everything(store: &dyn AuditStore) -> Vec<AuditEvent> {
    store
        .export(EventFilter::default(), TenantScope::All)
        .try_collect()
        .await
        .unwrap()
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = crate::faults::Database::sqlite().await;
                    crate::$test(&db).await;
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(db) = crate::faults::Database::postgres(stringify!($test)).await else {
                        return;
                    };
                    crate::$test(&db).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

on_both_backends!(
    lost_commit_acknowledgements_are_recognised_on_retry,
    a_commit_that_never_answers_times_out_and_is_recognised,
    refused_events_are_quarantined_and_the_rest_written,
    shutdown_with_the_database_down_spools_and_the_next_start_replays,
    unclean_previous_run_is_reported_once,
);

async fn lost_commit_acknowledgements_are_recognised_on_retry(db: &Database) {
    for delivery in [DeliveryMode::Buffered, DeliveryMode::Durable] {
        let store = db.open().await;
        let wrapper = CommitsThenFails::new(store.clone(), 3);
        let recorder = quick(Recorder::builder(wrapper.clone()))
            .delivery(delivery)
            .start()
            .unwrap();
        let sent = events(&format!("lost-ack-{delivery:?}"), 1000);
        let submitters: Vec<_> = sent
            .chunks(100)
            .map(|chunk| {
                let recorder = recorder.clone();
                let chunk = chunk.to_vec();
                tokio::spawn(async move { submit_all(&recorder, &chunk).await })
            })
            .collect();
        for submitter in submitters {
            submitter.await.unwrap();
        }
        recorder.shutdown().await.unwrap();
        assert_eq!(
            wrapper.failures_left(),
            0,
            "every lost acknowledgement was exercised"
        );
        let metrics = recorder.metrics();
        assert!(metrics.retries >= 3, "{metrics:?}");
        assert_eq!(
            metrics.quarantined, 0,
            "a lost acknowledgement is no poison: {metrics:?}"
        );
        assert_stored_exactly_once(&*store, &sent).await;
    }
}

async fn a_commit_that_never_answers_times_out_and_is_recognised(db: &Database) {
    let store = db.open().await;
    let recorder = quick(Recorder::builder(HangsAfterCommit::new(store.clone(), 2)))
        .write_timeout(Duration::from_millis(300))
        .start()
        .unwrap();
    let sent = events("hangs", 300);
    submit_all(&recorder, &sent).await;
    tokio::time::timeout(Duration::from_secs(20), recorder.shutdown())
        .await
        .expect("shutdown is not held up by a commit that never answers")
        .unwrap();
    assert!(recorder.metrics().failed_batches >= 2);
    assert_stored_exactly_once(&*store, &sent).await;
}

async fn refused_events_are_quarantined_and_the_rest_written(db: &Database) {
    let store = db.open().await;
    let earlier = events("earlier", 5);
    store.append(&earlier).await.unwrap();
    let recorder = quick(Recorder::builder(store.clone()))
        .delivery(DeliveryMode::Durable)
        .start()
        .unwrap();
    // A host reusing ids for other events: the database can never store these.
    let mut sent = events("poison", 400);
    for (slot, stored) in [(17, 0), (150, 3), (399, 4)] {
        sent[slot].id = earlier[stored].id;
    }
    let submitters: Vec<_> = sent
        .chunks(50)
        .map(|chunk| {
            let recorder = recorder.clone();
            let chunk = chunk.to_vec();
            tokio::spawn(async move { submit_all(&recorder, &chunk).await })
        })
        .collect();
    for submitter in submitters {
        // Durable: each submitter's events are stored or quarantined when it returns.
        submitter.await.unwrap();
    }
    let metrics = recorder.metrics();
    assert_eq!(metrics.quarantined, 3, "{metrics:?}");
    assert_eq!(metrics.queue_depth, 0, "nothing is stuck: {metrics:?}");
    // Still writing normally afterwards.
    let after = events("after", 20);
    submit_all(&recorder, &after).await;
    recorder.shutdown().await.unwrap();

    let quarantined = store.quarantined().await.unwrap();
    let mut quarantined_paths: Vec<_> = quarantined.iter().map(|q| q.event.path.clone()).collect();
    quarantined_paths.sort();
    assert_eq!(quarantined_paths, ["poison-150", "poison-17", "poison-399"]);
    assert!(quarantined.iter().all(|q| !q.error.is_empty()));
    let all = everything(&*store).await;
    let good: Vec<AuditEvent> = sent
        .iter()
        .enumerate()
        .filter(|(i, _)| ![17, 150, 399].contains(i))
        .map(|(_, e)| e.clone())
        .chain(after)
        .chain(earlier)
        .collect();
    assert_stored_exactly_once(&*store, &good).await;
    let gaps = gap_records(&all);
    let reported: u64 = gaps
        .iter()
        .filter_map(|gap| gap.attributes.get("quarantined_events")?.as_u64())
        .sum();
    assert_eq!(
        reported, 3,
        "gap records name every quarantined event: {gaps:?}"
    );
    assert!(gaps.iter().all(|gap| {
        gap.attributes["quarantine"]
            .as_str()
            .is_some_and(|place| place.contains("audit_quarantine"))
    }));
}

async fn shutdown_with_the_database_down_spools_and_the_next_start_replays(db: &Database) {
    let spool = tempfile::tempdir().unwrap();
    let (store, outage) = db.open_interruptible().await;
    let recorder = quick(Recorder::builder(store))
        .spool_dir(spool.path())
        .instance("spool-test")
        .shutdown_timeout(Duration::from_secs(1))
        .start()
        .unwrap();
    recorder.recovered().await;
    let before = events("before-outage", 50);
    submit_all(&recorder, &before).await;
    // Let the writer catch up, then take the database away.
    tokio::time::sleep(Duration::from_millis(300)).await;
    outage.start().await;
    let during = events("during-outage", 200);
    submit_all(&recorder, &during).await;
    let started = std::time::Instant::now();
    let result = recorder.shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    let spooled = match result {
        Err(ShutdownError::Spooled { events, path }) => {
            assert!(path.starts_with(spool.path()), "{path:?}");
            events
        }
        other => panic!("expected a spool, got {other:?}"),
    };
    assert!(
        spooled >= 200 - 100,
        "at least what the outage held back: {spooled}"
    );
    assert_eq!(recorder.metrics().spooled, spooled);
    outage.end().await;
    // The process ends: its lock on the spool file goes with it.
    drop(recorder);

    // The next start replays the spool before anything else.
    let store = db.open().await;
    let next = quick(Recorder::builder(store.clone()))
        .spool_dir(spool.path())
        .instance("spool-test")
        .start()
        .unwrap();
    next.recovered().await;
    assert_eq!(next.metrics().replayed, spooled);
    assert!(
        !next.metrics().previous_run_unclean,
        "a run that spooled on purpose stopped cleanly"
    );
    let later = events("after-restart", 10);
    submit_all(&next, &later).await;
    next.shutdown().await.unwrap();
    let everything_sent: Vec<AuditEvent> = before.into_iter().chain(during).chain(later).collect();
    assert_stored_exactly_once(&*store, &everything_sent).await;
    let left: Vec<_> = std::fs::read_dir(spool.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name())
        .filter(|name| name.to_string_lossy().starts_with("spool-"))
        .collect();
    assert!(left.is_empty(), "replayed spools are removed: {left:?}");
}

async fn unclean_previous_run_is_reported_once(db: &Database) {
    let store = db.open().await;
    // A run of instance "web" whose process no longer exists, which never stopped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let died_at =
        audit_store::truncate_to_micros(chrono::Utc::now() - chrono::Duration::seconds(30));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    store
        .report_run(&RecorderRun {
            instance: "web".into(),
            run_id: Uuid::now_v7(),
            host,
            pid: dead_pid,
            durable: false,
            started_at: died_at - chrono::Duration::hours(1),
            reported_at: died_at,
            pending_events: 42,
            queue_capacity: 10_000,
            stopped_at: None,
        })
        .await
        .unwrap();
    let recorder = Recorder::builder(store.clone())
        .instance("web")
        .start()
        .unwrap();
    recorder.recovered().await;
    let metrics = recorder.metrics();
    assert!(metrics.previous_run_unclean, "{metrics:?}");
    assert_eq!(metrics.previous_run_possibly_missing, 42);
    recorder.shutdown().await.unwrap();
    let gaps: Vec<AuditEvent> = gap_records(&everything(&*store).await)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let gap = &gaps[0];
    assert_eq!(gap.occurred_at, died_at);
    assert_eq!(gap.attributes["possibly_missing_events"], 42);
    assert_eq!(gap.attributes["unclean_stop"], true);
    let reason = gap.attributes["reason"].as_str().unwrap();
    assert!(
        reason.contains("up to 42 acknowledged events may be missing"),
        "{reason}"
    );

    // That run stopped cleanly: the next start says nothing.
    let again = Recorder::builder(store.clone())
        .instance("web")
        .start()
        .unwrap();
    again.recovered().await;
    assert!(!again.metrics().previous_run_unclean);
    again.shutdown().await.unwrap();
    assert_eq!(gap_records(&everything(&*store).await).len(), 1);

    // A live run under the same name (this very process) is not mistaken for a crash.
    let first = Recorder::builder(store.clone())
        .instance("twin")
        .start()
        .unwrap();
    first.recovered().await;
    let second = Recorder::builder(store.clone())
        .instance("twin")
        .start()
        .unwrap();
    second.recovered().await;
    assert!(!second.metrics().previous_run_unclean);
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    assert_eq!(gap_records(&everything(&*store).await).len(), 1);
}

/// SQLite's "database or disk is full", made deterministic with `PRAGMA max_page_count` on
/// the writer connection: the recorder retries, its connection stays usable, and it recovers
/// by itself once there is room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full_recovers_when_space_returns() {
    let db = Database::sqlite().await;
    let store = db.sqlite_store().await;
    store.limit_append_pages(Some(5)).await.unwrap();
    let recorder = quick(Recorder::builder(store.clone())).start().unwrap();
    let sent = events("disk-full", 3000);
    submit_all(&recorder, &sent).await;
    // The disk is full: writes keep failing, nothing is dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while recorder.metrics().failed_batches < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            recorder.metrics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recorder.metrics().queue_depth > 0);
    assert_eq!(
        recorder.metrics().quarantined,
        0,
        "a full disk is no poison"
    );
    store.limit_append_pages(None).await.unwrap();
    recorder.shutdown().await.unwrap();
    assert_stored_exactly_once(&store, &sent).await;
    db.cleanup().await;
}

/// PostgreSQL connections killed with `pg_terminate_backend` while batches are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_connections_are_retried() {
    let Some(db) = Database::postgres("postgres_killed_connections_are_retried").await else {
        return;
    };
    let (store, application_name) = db.postgres_store_named().await;
    let recorder = quick(Recorder::builder(store.clone())).start().unwrap();
    let killer = {
        let admin = db.admin_pool().await;
        tokio::spawn(async move {
            let mut killed = 0u64;
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(15)).await;
                let n: Vec<bool> = sqlx::query_scalar(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1",
                )
                .bind(&application_name)
                .fetch_all(&admin)
                .await
                .unwrap();
                killed += n.len() as u64;
            }
            killed
        })
    };
    let sent = events("killed", 4000);
    submit_all(&recorder, &sent).await;
    let killed = killer.await.unwrap();
    assert!(killed > 0, "no connection was killed");
    recorder.shutdown().await.unwrap();
    assert!(
        recorder.metrics().failed_batches > 0,
        "{:?}",
        recorder.metrics()
    );
    assert_stored_exactly_once(&*store, &sent).await;
    db.cleanup().await;
}

/// A host whose runtime stops without `Recorder::shutdown`: the writer's task is dropped, and
/// spools its queue; the next start replays it.
#[test]
fn a_runtime_stopped_without_shutdown_spools_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let sent = events("dropped-runtime", 2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = audit_store::SqliteStore::connect(&url).await.unwrap();
        let recorder = Recorder::builder(store).start().unwrap();
        for event in &sent {
            recorder
                .try_reserve()
                .unwrap()
                .submit(event.clone())
                .await
                .unwrap();
        }
        // No shutdown: the host's main simply returns.
    });
    drop(runtime);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = audit_store::SqliteStore::connect(&url).await.unwrap();
        let recorder = Recorder::builder(store.clone()).start().unwrap();
        recorder.recovered().await;
        recorder.shutdown().await.unwrap();
        assert!(
            !recorder.metrics().previous_run_unclean,
            "everything unwritten was spooled: {:?}",
            recorder.metrics()
        );
        assert_stored_exactly_once(&store, &sent).await;
    });
}
