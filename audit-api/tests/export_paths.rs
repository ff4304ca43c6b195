//! The export's fast path (each chunk read as borrowed column values, `export_batches`) and
//! the ordinary path (rows decoded into events, batched by `batches_of`) give byte-identical
//! files through the router, in every format and for chosen columns, on both backends.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use audit_store::{
    Action, AuditEvent, AuditStore, ChainHead, EventFilter, EventStream, Facets, HttpFacts,
    MatchCount, Page, PageRequest, StoreError, TenantScope,
};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use uuid::Uuid;

/// A store read only through `export`: `export_batches` is the trait's default, which
/// batches the decoded events.
#[derive(Debug)]
struct OrdinaryPath(Arc<dyn AuditStore>);

#[async_trait]
impl AuditStore for OrdinaryPath {
    async fn append(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.0.append(events).await
    }
    async fn query(
        &self,
        filter: &EventFilter,
        scope: &TenantScope,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.0.query(filter, scope, page).await
    }
    async fn get(&self, id: Uuid, scope: &TenantScope) -> Result<Option<AuditEvent>, StoreError> {
        self.0.get(id, scope).await
    }
    fn export(&self, filter: EventFilter, scope: TenantScope) -> EventStream {
        self.0.export(filter, scope)
    }
    async fn facets(&self, scope: &TenantScope) -> Result<Facets, StoreError> {
        self.0.facets(scope).await
    }
    async fn count(
        &self,
        filter: &EventFilter,
        scope: &TenantScope,
        bound: u64,
    ) -> Result<MatchCount, StoreError> {
        self.0.count(filter, scope, bound).await
    }
    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.0.purge_before(cutoff).await
    }
    async fn chain_head(&self) -> Result<ChainHead, StoreError> {
        self.0.chain_head().await
    }
}

/// Every kind of value: non-ASCII, quotes, commas and line breaks (CSV quoting), formula
/// triggers, escapes and control characters (JSON), big and tiny numbers, NUL (stored as
/// U+FFFD), empty and absent fields; then enough ordinary events to cross chunks.
fn events() -> Vec<AuditEvent> {
    let mut events = vec![
        AuditEvent::builder("Dataset Rule ✓", Action::custom("change_model").unwrap())
            .occurred_at(Utc.timestamp_micros(1_767_225_600_123_456).unwrap())
            .http(HttpFacts::new(
                "PATCH",
                "/api/plans/{id}",
                "/api/plans/a,b",
                599,
            ))
            .tenant("acme")
            .request_id("r".repeat(64))
            .actor_id("=cmd|' /C calc'!A0")
            .actor_email("Zoë@Example.test")
            .actor_name("")
            .denied("blocked: \"quotes\", \\ and\nnewlines\t\u{1}\u{7f}</script>")
            .resource("-1", "ℓ".repeat(300))
            .duration_ms(0.1 + 0.2)
            .client_ip("2001:db8::1")
            .user_agent("@evil")
            .attribute(
                "changes",
                json!({"name": ["a", "b"], "n": [null, 3.5, 1e300]}),
            )
            .attribute(
                "nested",
                json!({"z": [1, {"y": "😀"}], "a": {}, "é": "\"\\"}),
            )
            .attribute("big", json!([u64::MAX, i64::MIN, 0.000_001]))
            .build(),
        AuditEvent::builder("Model", Action::Create)
            .occurred_at(Utc.timestamp_micros(1_767_225_500_000_000).unwrap())
            .internal("")
            .tenant("acme")
            .duration_ms(1e-7)
            .build(),
        AuditEvent::builder("Mo\0del", Action::Delete)
            .occurred_at(Utc.timestamp_micros(1_767_225_400_000_000).unwrap())
            .http(HttpFacts::new("POST", "/api/models", "/api/models\0", 201))
            .tenant("acme")
            .resource_name("nul\0name")
            .attribute("k\0", json!({"v": ["\0"]}))
            .build(),
    ];
    let categories = ["Model", "Plan", "Field"];
    let actions = [Action::Create, Action::Update, Action::Train];
    events.extend((0..4_500).map(|i: usize| {
        let mut event = common::event(
            i as i64,
            Some("acme"),
            categories[i % 3],
            actions[i % 3].clone(),
        );
        event.resource_name = Some(format!("model \"{i}\", v{}", i % 7));
        event.attributes.insert("n".into(), json!(i));
        event
    }));
    events
}

async fn fast_and_ordinary_exports_are_byte_identical(store: Arc<dyn AuditStore>) {
    for chunk in events().chunks(1000) {
        store.append(chunk).await.unwrap();
    }
    let head = store.chain_head().await.unwrap().seq;
    let fast = common::app(store.clone());
    let ordinary = common::app(Arc::new(OrdinaryPath(store)));
    for query in [
        "format=csv",
        "format=json",
        "format=ndjson",
        "format=csv&columns=actor_id,attributes,resource_name,status,duration_ms",
        "format=csv&columns=actor_name",
        "format=json&columns=attributes,id,occurred_at",
        "format=ndjson&category=Model",
    ] {
        let path = format!("/export?{query}&chain_head={head}");
        let a = common::get(&fast, Some("alice"), &path).await;
        let b = common::get(&ordinary, Some("alice"), &path).await;
        assert_eq!(a.status, 200, "{query}");
        assert_eq!(b.status, 200, "{query}");
        assert!(a.body.len() > 1000, "{query}: {} bytes", a.body.len());
        if a.body != b.body {
            let at = a
                .body
                .iter()
                .zip(b.body.iter())
                .position(|(x, y)| x != y)
                .unwrap_or(a.body.len().min(b.body.len()));
            let around = |body: &[u8]| {
                String::from_utf8_lossy(&body[at.saturating_sub(200)..(at + 200).min(body.len())])
                    .into_owned()
            };
            panic!(
                "{query}: the files differ at byte {at}:\nfast:     {}\nordinary: {}",
                around(&a.body),
                around(&b.body)
            );
        }
    }
}

on_both_stores!(fast_and_ordinary_exports_are_byte_identical);
