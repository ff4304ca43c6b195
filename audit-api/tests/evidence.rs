//! Tamper evidence over HTTP: the latest checkpoint, pinned exports and signed manifests.

mod common;

use std::sync::Arc;

use audit_store::{Action, AuditStore, Checkpoint, CheckpointKind, CheckpointSigner, SqliteStore};
use common::get;

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed([7; 32])
}

/// A signed SQLite store with a few events of tenant `acme`.
async fn signed_store() -> Arc<dyn AuditStore> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    std::mem::forget(dir);
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
        .with_signer(signer());
    let events: Vec<_> = (0..5)
        .map(|i| common::event(i, Some("acme"), "Model", Action::Update))
        .collect();
    store.append(&events).await.unwrap();
    Arc::new(store)
}

#[tokio::test]
async fn checkpoint_route_serves_the_latest_signed_checkpoint() {
    let store = signed_store().await;
    let app = common::app(store.clone());
    let none = get(&app, Some("erin"), "/checkpoint").await;
    assert_eq!(none.status, 404, "{}", none.text());
    assert_eq!(none.json()["error"], "not_found");

    store.checkpoint(CheckpointKind::Manual).await.unwrap();
    store
        .append(&[common::event(0, Some("acme"), "Model", Action::Create)])
        .await
        .unwrap();
    let newest = store
        .checkpoint(CheckpointKind::Periodic)
        .await
        .unwrap()
        .unwrap();
    // `erin` may view but not export: the checkpoint needs `view` only.
    let answer = get(&app, Some("erin"), "/checkpoint").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let served: Checkpoint = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(served, newest);
    assert_eq!(served.seq, 6);
    served.verify(&signer().verifying_key()).unwrap();
    get(&app, Some("erin"), "/checkpoint?x=1")
        .await
        .assert_invalid("x");
}

fn signed_app(store: Arc<dyn AuditStore>) -> axum::Router {
    axum::Router::new().nest(
        common::PREFIX,
        audit_api::AuditRouter::from_shared(store, common::test_policy)
            .signer(signer())
            .into_router(),
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    audit_store::ChainHash(sha2::Sha256::digest(bytes).into()).to_hex()
}

#[tokio::test]
async fn exports_are_pinned_to_the_chain_head_and_reproducible() {
    let store = signed_store().await;
    let app = signed_app(store.clone());
    let first = get(&app, Some("alice"), "/export?format=json").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.headers["x-audit-chain-head"], "5");
    // The export itself was recorded (seq 6) and more events arrive.
    store
        .append(&[common::event(0, Some("acme"), "Model", Action::Delete)])
        .await
        .unwrap();
    let later = get(&app, Some("alice"), "/export?format=json").await;
    assert_eq!(later.headers["x-audit-chain-head"], "7");
    assert_ne!(later.body, first.body);
    let again = get(&app, Some("alice"), "/export?format=json&chain_head=5").await;
    assert_eq!(again.headers["x-audit-chain-head"], "5");
    assert_eq!(
        again.body, first.body,
        "the same pinned export, byte for byte"
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter()
            .all(|r| r["chain"]["seq"].as_u64().unwrap() <= 5)
    );

    get(&app, Some("alice"), "/export?chain_head=99")
        .await
        .assert_invalid("chain_head");
    get(&app, Some("alice"), "/export?chain_head=-1")
        .await
        .assert_invalid("chain_head");
    get(&app, Some("alice"), "/events?chain_head=1")
        .await
        .assert_invalid("chain_head");
}

#[tokio::test]
async fn manifests_describe_the_exported_bytes_and_are_signed() {
    let store = signed_store().await;
    store.checkpoint(CheckpointKind::Manual).await.unwrap();
    let app = signed_app(store.clone());
    for format in ["json", "ndjson", "csv"] {
        let export = get(
            &app,
            Some("alice"),
            &format!("/export?format={format}&category=Model"),
        )
        .await;
        let head = export.headers["x-audit-chain-head"]
            .to_str()
            .unwrap()
            .to_owned();
        let answer = get(
            &app,
            Some("alice"),
            &format!("/export/manifest?format={format}&category=Model&chain_head={head}"),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let manifest = answer.json();
        audit_api::manifest::verify(&manifest, &signer().verifying_key()).unwrap();
        assert_eq!(manifest["sha256"], sha256_hex(&export.body), "{format}");
        assert_eq!(manifest["row_count"], 5);
        assert_eq!(manifest["format"], format);
        assert_eq!(manifest["chain_head"].to_string(), head);
        assert_eq!(
            manifest["filters"]["category"],
            serde_json::json!(["Model"])
        );
        assert_eq!(manifest["tenant_scope"], serde_json::json!(["acme"]));
        assert_eq!(
            (manifest["min_seq"].as_u64(), manifest["max_seq"].as_u64()),
            (Some(1), Some(5))
        );
        let checkpoint: Checkpoint =
            serde_json::from_value(manifest["checkpoint"].clone()).unwrap();
        checkpoint.verify(&signer().verifying_key()).unwrap();
    }
    // `export` permission, like the export itself.
    assert_eq!(
        get(&app, Some("erin"), "/export/manifest").await.status,
        403
    );
    assert_eq!(get(&app, None, "/export/manifest").await.status, 401);
    get(&app, Some("alice"), "/export/manifest?chain_head=999")
        .await
        .assert_invalid("chain_head");
    // Without a signer: 501 with the JSON error body.
    let unsigned = common::app(store);
    let answer = get(&unsigned, Some("alice"), "/export/manifest").await;
    assert_eq!(answer.status, 501);
    assert_eq!(answer.json()["error"], "not_configured");
}
