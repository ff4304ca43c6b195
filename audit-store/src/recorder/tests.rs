//! Recorder behaviour against a real (in-memory or file) SQLite store.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::{EventFilter, PageRequest, SqliteStore, TenantScope};

fn job_event(n: usize) -> AuditEvent {
    AuditEvent::builder("Model", Action::Rescore)
        .internal(format!("job-{n}"))
        .build()
}

async fn count(store: &SqliteStore) -> usize {
    let mut total = 0;
    let mut cursor = None;
    loop {
        let page = store
            .query(
                &EventFilter::default(),
                &TenantScope::All,
                &PageRequest {
                    cursor,
                    limit: crate::Limit::new(1000).unwrap(),
                },
            )
            .await
            .unwrap();
        total += page.items.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return total,
        }
    }
}

#[tokio::test]
async fn shutdown_drains_a_full_queue() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let recorder = Recorder::builder(store.clone())
        .max_queue_events(300)
        .max_batch_events(50)
        .start()
        .unwrap();
    let reservations: Vec<_> = (0..300).map(|_| recorder.try_reserve().unwrap()).collect();
    assert_eq!(recorder.try_reserve().unwrap_err(), ReserveError::Full);
    for (n, reservation) in reservations.into_iter().enumerate() {
        reservation.submit(job_event(n)).await.unwrap();
    }
    recorder.shutdown().await.unwrap();
    assert_eq!(count(&store).await, 300);
    let metrics = recorder.metrics();
    assert_eq!((metrics.recorded, metrics.queue_depth), (300, 0));
    assert!(metrics.batches >= 6, "batches of at most 50: {metrics:?}");
    assert_eq!(
        recorder.try_reserve().unwrap_err(),
        ReserveError::ShuttingDown
    );
}

#[tokio::test]
async fn shutdown_waits_for_outstanding_reservations() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let recorder = Recorder::builder(store.clone()).start().unwrap();
    let reservation = recorder.try_reserve().unwrap();
    let stopping = tokio::spawn({
        let recorder = recorder.clone();
        async move { recorder.shutdown().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!stopping.is_finished());
    reservation.submit(job_event(1)).await.unwrap();
    stopping.await.unwrap().unwrap();
    assert_eq!(count(&store).await, 1);
}

#[tokio::test]
async fn bounded_shutdown_reports_what_is_pending() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let recorder = Recorder::builder(store).start().unwrap();
    let _held = recorder.try_reserve().unwrap();
    let err = recorder
        .shutdown_within(Duration::from_millis(30))
        .await
        .unwrap_err();
    assert_eq!(err, ShutdownError::TimedOut { pending: 1 });
}

#[tokio::test]
async fn byte_bound_limits_admission() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let recorder = Recorder::builder(store)
        .reserved_bytes_per_event(1000)
        .max_queue_bytes(2500)
        .admission_wait(Duration::from_millis(10))
        .start()
        .unwrap();
    let _a = recorder.try_reserve().unwrap();
    let _b = recorder.try_reserve().unwrap();
    assert_eq!(recorder.try_reserve().unwrap_err(), ReserveError::Full);
    assert!(matches!(
        recorder.admit().await,
        Admission::Refused(ReserveError::Full)
    ));
    assert_eq!(recorder.metrics().refused, 1);
    assert_eq!(recorder.metrics().queue_bytes, 2000);
}

#[tokio::test]
async fn durable_record_returns_after_commit() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let recorder = Recorder::builder(store.clone())
        .delivery(DeliveryMode::Durable)
        .start()
        .unwrap();
    let handles: Vec<_> = (0..50)
        .map(|n| {
            let recorder = recorder.clone();
            tokio::spawn(async move { recorder.record(job_event(n)).await })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    // Every record() returned after its commit, before any shutdown.
    assert_eq!(count(&store).await, 50);
    let metrics = recorder.metrics();
    assert!(
        metrics.batches < 50,
        "group commit shares transactions: {metrics:?}"
    );
    recorder.shutdown().await.unwrap();
}

#[tokio::test]
async fn proceed_policy_writes_one_gap_record_after_recovery() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let recorder = Recorder::builder(store.clone())
        .max_queue_events(2)
        .admission_wait(Duration::from_millis(5))
        .overload(OverloadPolicy::Proceed)
        .start()
        .unwrap();
    let a = recorder.try_reserve().unwrap();
    let b = recorder.try_reserve().unwrap();
    for _ in 0..3 {
        assert!(matches!(recorder.admit().await, Admission::Unrecorded));
    }
    a.submit(job_event(1)).await.unwrap();
    b.submit(job_event(2)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while recorder.metrics().gaps == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let page = store
        .query(
            &EventFilter {
                categories: vec![GAP_CATEGORY.to_owned()],
                ..EventFilter::default()
            },
            &TenantScope::All,
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let gap = &page.items[0];
    assert_eq!(gap.action.as_str(), GAP_ACTION);
    assert_eq!(gap.attributes["missed_events"], 3);
    assert!(gap.attributes["first_missed_at"].is_string());
    assert!(gap.attributes["last_missed_at"].is_string());
    let metrics = recorder.metrics();
    assert_eq!((metrics.missed, metrics.gaps, metrics.refused), (3, 1, 0));
    recorder.shutdown().await.unwrap();
    assert_eq!(count(&store).await, 3);
}

#[tokio::test]
async fn locked_database_is_retried_until_it_frees() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let url = format!("sqlite://{}", path.display());
    SqliteStore::connect(&url).await.unwrap();
    // A store whose writer gives up on a lock quickly, so the recorder's own retries show.
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .busy_timeout(Duration::from_millis(20));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .unwrap();
    let store = SqliteStore::new(pool);
    store.migrate().await.unwrap();
    let recorder = Recorder::builder(Arc::new(store.clone()))
        .retry(RetryPolicy::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
        ))
        .start()
        .unwrap();
    // Locked once the recorder is running (a lock from the start only delays its recovery).
    recorder.recovered().await;
    let mut locker = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    for n in 0..20 {
        recorder.record(job_event(n)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = recorder.metrics();
    assert_eq!(during.recorded, 0);
    assert!(
        during.failed_batches >= 2 && during.retries >= 1,
        "{during:?}"
    );
    assert_eq!(during.queue_depth, 20);
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    recorder.shutdown().await.unwrap();
    assert_eq!(count(&store).await, 20);
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    let builder = Recorder::builder(Arc::new(NoStore));
    assert_eq!(builder.start().unwrap_err(), StartError::NoRuntime);
    let invalid = Recorder::builder(Arc::new(NoStore))
        .max_batch_events(0)
        .start();
    assert!(matches!(invalid, Err(StartError::InvalidConfig(_))));
}

#[test]
fn the_batch_shape_follows_the_delivery_mode_unless_chosen() {
    let shape = |builder: RecorderBuilder| {
        (
            builder.config.max_batch_events,
            builder.config.max_batch_wait,
        )
    };
    let builder = || Recorder::builder(Arc::new(NoStore));
    let ms = Duration::from_millis;
    assert_eq!(shape(builder()), (2_000, ms(50)));
    assert_eq!(
        shape(builder().delivery(DeliveryMode::Durable)),
        (500, ms(5))
    );
    // Back and forth: each mode's own shape.
    let round_trip = builder()
        .delivery(DeliveryMode::Durable)
        .delivery(DeliveryMode::Buffered);
    assert_eq!(shape(round_trip), (2_000, ms(50)));
    // A chosen value stays, before or after the mode; the other follows the mode.
    let before = builder()
        .max_batch_wait(ms(50))
        .delivery(DeliveryMode::Durable);
    assert_eq!(shape(before), (500, ms(50)));
    let after = builder()
        .delivery(DeliveryMode::Durable)
        .max_batch_events(2_000);
    assert_eq!(shape(after), (2_000, ms(5)));
    // A whole configuration is taken as it is.
    let config = RecorderConfig::for_delivery(DeliveryMode::Buffered);
    let replaced = builder().config(config).delivery(DeliveryMode::Durable);
    assert_eq!(shape(replaced), (2_000, ms(50)));
}

/// Only for the runtime check above: never reached.
#[derive(Debug)]
struct NoStore;

#[async_trait::async_trait]
impl AuditStore for NoStore {
    async fn append(&self, _: &[AuditEvent]) -> Result<(), crate::StoreError> {
        Err(crate::StoreError::Config("unused".into()))
    }
    async fn query(
        &self,
        _: &EventFilter,
        _: &TenantScope,
        _: &PageRequest,
    ) -> Result<crate::Page, crate::StoreError> {
        Err(crate::StoreError::Config("unused".into()))
    }
    async fn get(
        &self,
        _: uuid::Uuid,
        _: &TenantScope,
    ) -> Result<Option<AuditEvent>, crate::StoreError> {
        Ok(None)
    }
    fn export(&self, _: EventFilter, _: TenantScope) -> crate::EventStream {
        Box::pin(futures_util::stream::empty())
    }
    async fn facets(&self, _: &TenantScope) -> Result<crate::Facets, crate::StoreError> {
        Err(crate::StoreError::Config("unused".into()))
    }
    async fn purge_before(&self, _: DateTime<Utc>) -> Result<u64, crate::StoreError> {
        Ok(0)
    }
}

#[tokio::test]
async fn checkpoints_periodically_and_at_shutdown_and_publishes_them() {
    let signer = crate::CheckpointSigner::from_seed([8; 32]);
    let key = signer.verifying_key();
    let store = SqliteStore::connect("sqlite::memory:")
        .await
        .unwrap()
        .with_signer(signer);
    let published = Arc::new(Mutex::new(Vec::<crate::Checkpoint>::new()));
    let sink = published.clone();
    let recorder = Recorder::builder(store.clone())
        .checkpoint_interval(Duration::from_millis(50))
        .on_checkpoint(move |checkpoint: &crate::Checkpoint| {
            sink.lock().unwrap().push(checkpoint.clone());
        })
        .start()
        .unwrap();
    for n in 0..5 {
        recorder.record(job_event(n)).await.unwrap();
    }
    // A periodic checkpoint follows once the chain grew (to all five, whatever the batching).
    tokio::time::timeout(Duration::from_secs(10), async {
        while !published.lock().unwrap().iter().any(|c| c.seq == 5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a periodic checkpoint of the whole chain");
    // No new events: no new periodic checkpoint, however many ticks pass.
    let before = published.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        published.lock().unwrap().len(),
        before,
        "an unchanged head is not checkpointed again"
    );
    assert!(
        published
            .lock()
            .unwrap()
            .iter()
            .all(|c| c.kind == crate::CheckpointKind::Periodic)
    );
    for n in 5..8 {
        recorder.record(job_event(n)).await.unwrap();
    }
    recorder.shutdown().await.unwrap();
    let published = published.lock().unwrap().clone();
    let last = published.last().unwrap();
    assert_eq!(last.kind, crate::CheckpointKind::Shutdown);
    assert_eq!(
        last.seq, 8,
        "the shutdown checkpoint vouches for every event"
    );
    assert_eq!(store.checkpoints().await.unwrap(), published);
    assert_eq!(recorder.metrics().checkpoints, published.len() as u64);
    let report = crate::verify_chain(&store, &key).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!(report.events_checked, 8);
}

#[tokio::test]
async fn stores_without_a_signer_write_no_checkpoints() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let recorder = Recorder::builder(store.clone())
        .checkpoint_interval(Duration::from_millis(10))
        .start()
        .unwrap();
    recorder.record(job_event(1)).await.unwrap();
    assert!(recorder.checkpoint_now().await.is_none());
    recorder.shutdown().await.unwrap();
    assert!(store.checkpoints().await.unwrap().is_empty());
    assert_eq!(recorder.metrics().failed_checkpoints, 0);
}
