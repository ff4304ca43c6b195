//! A host that forgets the shutdown is told: dropping its `Audit` (and its app, with the
//! layer's handles) while events are still queued logs an error saying how many, and the
//! events are still written while the runtime runs.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use axum_audit::{Audit, AuditStore, EventFilter, TenantScope};
use tower::ServiceExt;

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn stored(store: &dyn AuditStore) -> usize {
    store
        .query(
            &EventFilter::default(),
            &TenantScope::All,
            &Default::default(),
        )
        .await
        .unwrap()
        .items
        .len()
}

// One thread: the subscriber installed for this thread sees the drop, which happens here.
#[tokio::test(flavor = "current_thread")]
async fn dropping_the_audit_with_events_queued_logs_how_many() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_target(true)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let audit = Audit::connect(&url).await.unwrap();
    let store = Arc::clone(audit.store());

    // Another process holds the database's write lock, so the writer cannot commit and the
    // events stay queued.
    let blocker = axum_audit::sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut lock = blocker.acquire().await.unwrap();
    axum_audit::sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *lock)
        .await
        .unwrap();

    let app = Router::new()
        .route("/api/models", post(|| async { StatusCode::CREATED }))
        .layer(audit.layer());
    for _ in 0..3 {
        let request = Request::post("/api/models").body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 201);
    }
    assert_eq!(audit.recorder().metrics().queue_depth, 3);

    // The host forgets `serve` and `shutdown`: the app and the audit go away.
    drop(app);
    drop(audit);
    let log = captured.text();
    assert!(
        log.contains("ERROR")
            && log.contains("audit_store::recorder")
            && log.contains("3 events were still unwritten"),
        "the drop was not reported:\n{log}"
    );

    // Nothing is given up while the runtime runs: once the lock is released, the writer
    // (still running) stores all three.
    axum_audit::sqlx::query("ROLLBACK")
        .execute(&mut *lock)
        .await
        .unwrap();
    drop(lock);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stored(&*store).await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queued events were never written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored(&*store).await, 3);
}
