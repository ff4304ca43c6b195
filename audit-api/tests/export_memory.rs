//! An export's memory stays flat in the number of rows: the peak heap growth while a client
//! drains a 100,000-event export is no larger than for a 10,000-event one (plus slack),
//! measured with a counting global allocator. One test function, so nothing else in this
//! binary allocates concurrently.

#![allow(unsafe_code)] // the counting allocator: GlobalAlloc is an unsafe trait

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use audit_store::{Action, AuditStore};
use axum::body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;

#[path = "common/counting_allocator.rs"]
mod counting_allocator;
use counting_allocator::{CURRENT, PEAK};

/// Appends `count` realistic events tagged with `resource_id = tag`.
async fn seed(store: &Arc<dyn AuditStore>, count: usize, offset: usize, tag: &str) {
    for start in (0..count).step_by(10_000) {
        let batch: Vec<_> = (start..(start + 10_000).min(count))
            .map(|i| {
                let minutes = i64::try_from(offset + i).unwrap();
                let mut e = common::event(minutes, Some("acme"), "Model", Action::Update);
                e.actor_email = Some("alice@acme.test".into());
                e.resource_id = Some(tag.to_owned());
                e.resource_name = Some(format!("Churn model number {i}"));
                e.user_agent =
                    Some("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0".into());
                e.attributes.insert(
                    "changes".into(),
                    serde_json::json!({"name": ["old", "new"]}),
                );
                e
            })
            .collect();
        store.append(&batch).await.unwrap();
    }
}

/// Drains an export of `format` restricted to `resource_id`, returning (rows, peak growth).
async fn drain_export(app: &axum::Router, format: &str, resource_id: &str) -> (usize, usize) {
    let request = http::Request::get(format!(
        "{}/export?format={format}&resource_id={resource_id}",
        common::PREFIX
    ))
    .header("x-test-user", "root")
    .body(Body::empty())
    .unwrap();
    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut newlines = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        if let Some(data) = frame.data_ref() {
            newlines += data.iter().filter(|b| **b == b'\n').count();
        }
    }
    let growth = PEAK.load(Ordering::Relaxed).saturating_sub(baseline);
    (newlines, growth)
}

async fn memory_is_flat(store: Arc<dyn AuditStore>, backend: &str) {
    // Two populations told apart by resource_id, so both exports read the same table.
    seed(&store, 10_000, 0, "small").await;
    seed(&store, 100_000, 10_000, "large").await;
    let app = common::app(store);
    for format in ["csv", "ndjson", "json"] {
        // Warm up connection pools and caches so they are not counted against either run.
        drain_export(&app, format, "small").await;
        let (small_rows, small_peak) = drain_export(&app, format, "small").await;
        let (large_rows, large_peak) = drain_export(&app, format, "large").await;
        println!(
            "{backend} {format}: 10k rows peak +{} KiB, 100k rows peak +{} KiB",
            small_peak / 1024,
            large_peak / 1024
        );
        assert!(
            small_rows >= 10_000 && large_rows >= 100_000,
            "{small_rows} {large_rows}"
        );
        // Ten times the rows, not ten times the memory: allow 50% plus 1 MiB of noise.
        assert!(
            large_peak <= small_peak + small_peak / 2 + (1 << 20),
            "{backend} {format}: peak grew from {small_peak} to {large_peak} bytes"
        );
        assert!(
            large_peak < 32 << 20,
            "{backend} {format}: {large_peak} bytes"
        );
    }
}

#[test]
fn export_memory_stays_flat() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        memory_is_flat(common::sqlite_store().await, "sqlite").await;
        if let Some(url) = audit_store::testing::postgres_url("export_memory_stays_flat") {
            let store = audit_store::testing::isolated_postgres_store(&url)
                .await
                .unwrap();
            memory_is_flat(Arc::new(store.clone()), "postgres").await;
            audit_store::testing::drop_postgres_schema(&store)
                .await
                .unwrap();
        }
    });
}
