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
