//! The SQLite store reads a file database through its bulk reader (typed columns on its own
//! connections) and an in-memory database through sqlx (one JSON value per page). The
//! conformance suite runs on files; this test holds the two paths to the same answers.

use audit_store::{
    Action, AuditEvent, AuditStore, CheckpointSigner, EventFilter, HttpFacts, Limit, PageRequest,
    SqliteStore, TenantScope, verify_chain,
};
use chrono::{TimeZone, Utc};
use futures_util::TryStreamExt;
use serde_json::json;

/// Events with every field exercised, and enough of them to cross the export (2,000) and
/// chain (5,000) chunk boundaries.
fn events() -> Vec<AuditEvent> {
    let long = "ℓ".repeat(5_000);
    let mut events = vec![
        AuditEvent::builder("Dataset Rule ✓", Action::custom("change_model").unwrap())
            .occurred_at(Utc.timestamp_micros(1_767_225_600_123_456).unwrap())
            .http(HttpFacts::new(
                "PATCH",
                "/api/plans/{id}/model",
                "/api/plans/%E2%9C%93/model",
                599,
            ))
            .tenant("ácme")
            .actor_id("id-😀")
            .actor_email("Zoë@Example.test")
            .actor_name("")
            .denied("blocked: \"quotes\", \\ and\nnewlines\t")
            .resource("", long.clone())
            .duration_ms(0.1 + 0.2)
            .client_ip("2001:db8::1")
            .user_agent(long)
            .attribute("changes", json!({"name": ["a", "b"], "n": [null, 3.5]}))
            .attribute("nested", json!({"deep": [1, {"x": "😀"}], "empty": {}}))
            .build(),
        AuditEvent::builder("", Action::Create)
            .occurred_at(Utc.timestamp_micros(1).unwrap())
            .internal("")
            .duration_ms(1e-7)
            .build(),
    ];
    let base = Utc.timestamp_micros(1_767_000_000_000_000).unwrap();
    events.extend((0..5_500).map(|i| {
        AuditEvent::builder(["Model", "Plan", "Field"][i % 3], Action::Update)
            // Many share a timestamp, so the keyset's id tie-break is exercised too.
            .occurred_at(base + chrono::Duration::milliseconds((i / 7) as i64))
            .http(HttpFacts::new(
                "PUT",
                "/api/m/{id}",
                format!("/api/m/{i}"),
                200,
            ))
            .tenant(if i % 2 == 0 { "acme" } else { "globex" })
            .actor_id(format!("user-{}", i % 11))
            .resource(i.to_string(), format!("Model {i}"))
            .duration_ms(i as f64 / 3.0)
            .attribute("i", i)
            .build()
    }));
    events
}

/// Asserts equality, reporting the first difference instead of two huge lists.
#[track_caller]
fn assert_same(left: &[AuditEvent], right: &[AuditEvent], what: &str) {
    assert_eq!(left.len(), right.len(), "{what}: lengths differ");
    if let Some(at) = (0..left.len()).find(|&i| left[i] != right[i]) {
        panic!(
            "{what}: first difference at {at}:\n{:?}\n{:?}",
            left[at], right[at]
        );
    }
}

async fn everything(store: &dyn AuditStore, filter: &EventFilter) -> Vec<AuditEvent> {
    let scope = TenantScope::All;
    let mut request = PageRequest {
        limit: Limit::new(137).unwrap(),
        cursor: None,
    };
    let mut events = Vec::new();
    loop {
        let page = store.query(filter, &scope, &request).await.unwrap();
        events.extend(page.items);
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => return events,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_in_memory_stores_read_alike() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("read-paths.db").display());
    let signer = CheckpointSigner::from_seed([9; 32]);
    let key = signer.verifying_key();
    let file = SqliteStore::connect(&url).await.unwrap();
    let memory = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let events = events();
    for chunk in events.chunks(1_000) {
        file.append(chunk).await.unwrap();
        memory.append(chunk).await.unwrap();
    }
    let filters = [
        EventFilter::default(),
        EventFilter {
            categories: vec!["Plan".into()],
            tenants: vec!["globex".into()],
            ..EventFilter::default()
        },
        EventFilter {
            resource_name: Some("model 1".into()),
            ..EventFilter::default()
        },
    ];
    for filter in &filters {
        let from_file = everything(&file, filter).await;
        assert!(!from_file.is_empty());
        assert_same(&from_file, &everything(&memory, filter).await, "pages");
        for (store, what) in [(&file, "file export"), (&memory, "in-memory export")] {
            let exported: Vec<AuditEvent> = store
                .export(filter.clone(), TenantScope::All)
                .try_collect()
                .await
                .unwrap();
            assert_same(&exported, &from_file, what);
        }
    }
    let chain: Vec<AuditEvent> = file.chain_after(0).try_collect().await.unwrap();
    assert_eq!(chain.len(), events.len());
    let memory_chain: Vec<AuditEvent> = memory.chain_after(0).try_collect().await.unwrap();
    assert_same(&chain, &memory_chain, "chain");
    for (stored, original) in chain.iter().zip(&events) {
        let mut unchained = stored.clone();
        unchained.chain = None;
        assert!(&unchained == original, "event {} changed", original.id);
    }
    for store in [file, memory] {
        let report = verify_chain(&store.with_signer(signer.clone()), &key)
            .await
            .unwrap();
        assert!(report.is_intact(), "{:?}", report.broken);
        assert_eq!(report.events_checked, events.len() as u64);
    }
}
