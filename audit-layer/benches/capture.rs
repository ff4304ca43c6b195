//! Capture cost of the audit layer per request, against the same router without it.
//!
//! The recorder writes to a store that discards batches, so the figures are the layer's
//! own CPU (classification, request ID, client IP, context, event assembly, reservation,
//! queueing) and not database throughput, which the end-to-end benchmarks measure.
//!
//! Run: `cargo bench -p audit-layer --bench capture`

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use audit_layer::{Actor, AuditContext, AuditLayer};
use audit_store::{
    AuditEvent, AuditStore, EventFilter, EventStream, Facets, Page, PageRequest, Recorder,
    StoreError, TenantScope,
};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::delete;
use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request};
use tower::ServiceExt;

/// Accepts every batch and keeps nothing: isolates the layer's cost from the database's.
#[derive(Debug)]
struct DiscardingStore;

#[async_trait]
impl AuditStore for DiscardingStore {
    async fn append(&self, _events: &[AuditEvent]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn query(
        &self,
        _: &EventFilter,
        _: &TenantScope,
        _: &PageRequest,
    ) -> Result<Page, StoreError> {
        Err(StoreError::Config("benchmark store keeps nothing".into()))
    }
    async fn get(&self, _: uuid::Uuid, _: &TenantScope) -> Result<Option<AuditEvent>, StoreError> {
        Ok(None)
    }
    fn export(&self, _: EventFilter, _: TenantScope) -> EventStream {
        Box::pin(futures_util::stream::empty())
    }
    async fn facets(&self, _: &TenantScope) -> Result<Facets, StoreError> {
        Err(StoreError::Config("benchmark store keeps nothing".into()))
    }
    async fn purge_before(&self, _: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(0)
    }
}

async fn handler() -> &'static str {
    "ok"
}

/// What a host's auth middleware typically adds on an audited route.
async fn handler_with_context(audit: AuditContext) -> &'static str {
    audit.set_actor(Actor::id("alice").email("alice@acme.test").tenant("acme"));
    audit.set_resource_name("Rule 42");
    "ok"
}

fn routes() -> Router {
    Router::new()
        .route("/api/dataset-rules/{id}", delete(handler).get(handler))
        .route("/api/models/{id}", delete(handler_with_context))
}

fn request(method: Method, uri: &'static str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench")
        .header("x-request-id", "bench-request-0001")
        .extension(ConnectInfo(SocketAddr::from(([203, 0, 113, 9], 40000))))
        .body(Body::empty())
        .expect("static request")
}

fn capture(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let recorder = runtime.block_on(async {
        Recorder::builder(Arc::new(DiscardingStore))
            .max_queue_events(1_000_000)
            .start()
            .expect("recorder")
    });
    let bare = routes();
    let audited = routes().layer(AuditLayer::new(recorder.clone()));

    let mut group = c.benchmark_group("capture");
    let rule = "/api/dataset-rules/r-42";
    let model = "/api/models/m-1";
    for (name, app, method, uri) in [
        ("bare_delete", &bare, Method::DELETE, rule),
        ("audited_delete", &audited, Method::DELETE, rule),
        (
            "audited_delete_with_context",
            &audited,
            Method::DELETE,
            model,
        ),
        ("bare_get", &bare, Method::GET, rule),
        ("audited_get_not_recorded", &audited, Method::GET, rule),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| {
                let app = app.clone();
                let method = method.clone();
                async move { app.oneshot(request(method, uri)).await }
            })
        });
    }
    group.finish();
    runtime.block_on(async {
        recorder.shutdown().await.expect("shutdown");
    });
}

criterion_group!(benches, capture);
criterion_main!(benches);
