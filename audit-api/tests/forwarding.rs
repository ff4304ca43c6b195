//! `GET /forwarding` and the page's forwarding status line.

mod common;

use std::sync::Arc;
use std::time::Duration;

use audit_api::AuditRouter;
use audit_store::{Action, AuditStore, ForwardPosition, ForwardingStatus, SinkStatus, StoreError};
use axum::Router;

use common::{PREFIX, app, get, test_policy};

#[tokio::test]
async fn forwarding_reports_the_stored_cursors_to_viewers() {
    let store = common::sqlite_store().await;
    let events: Vec<_> = (0..10)
        .map(|i| common::event(60 - i, Some("acme"), "Model", Action::Create))
        .collect();
    store.append(&events).await.unwrap();
    let app = app(store.clone());

    let empty = get(&app, Some("erin"), "/forwarding").await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json(), serde_json::json!({"sinks": []}));

    // A forwarder elsewhere holds the lease and delivered four events.
    let lease = store
        .acquire_forward_lease(
            "siem",
            "pod-7",
            Duration::from_secs(30),
            ForwardPosition::BEGINNING,
        )
        .await
        .unwrap()
        .unwrap();
    let to = ForwardPosition {
        seq: 4,
        checkpoint_id: 0,
    };
    assert!(store.advance_forward_cursor(&lease, to).await.unwrap());
    let body = get(&app, Some("erin"), "/forwarding").await.json();
    let sink = &body["sinks"][0];
    assert_eq!(sink["sink"], "siem");
    assert_eq!(sink["state"], "forwarding");
    assert_eq!(sink["lag_events"], 6);
    assert_eq!(sink["delivered_seq"], 4);
    assert_eq!(sink["head_seq"], 10);
    assert_eq!(sink["holder"], "pod-7");
    assert_eq!(sink["this_instance"], false);
    // How long the oldest undelivered event (the fifth) has waited.
    let lag = sink["lag_seconds"].as_f64().unwrap();
    let waited = (chrono::Utc::now() - events[4].occurred_at).num_seconds() as f64;
    assert!((lag - waited).abs() < 60.0, "{lag} vs {waited}");

    assert!(
        store
            .halt_forwarding(&lease, 5, "HTTP 400: bad")
            .await
            .unwrap()
    );
    let body = get(&app, Some("erin"), "/forwarding").await.json();
    assert_eq!(body["sinks"][0]["state"], "halted");
    assert_eq!(body["sinks"][0]["halt"]["seq"], 5);
    assert_eq!(body["sinks"][0]["halt"]["reason"], "HTTP 400: bad");

    // Guarded like every route, and strict about parameters.
    assert_eq!(get(&app, None, "/forwarding").await.status, 401);
    assert_eq!(get(&app, Some("bob"), "/forwarding").await.status, 403);
    get(&app, Some("erin"), "/forwarding?sink=siem")
        .await
        .assert_invalid("sink");

    // The page loads the status line's own script, guarded like the other assets.
    let page = get(&app, Some("erin"), "").await;
    assert!(
        page.text()
            .contains("<script type=\"module\" src=\"assets/forwarding.js\">")
    );
    let script = get(&app, Some("erin"), "/assets/forwarding.js").await;
    assert_eq!(script.status, 200);
    assert!(
        script.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(script.text().contains("fetch(\"forwarding\""));
    assert_eq!(
        get(&app, Some("bob"), "/assets/forwarding.js").await.status,
        403
    );

    // The OpenAPI document lists the route from the same table.
    let document = get(&app, Some("erin"), "/openapi.json").await.json();
    let operation = &document["paths"]["/forwarding"]["get"];
    assert_eq!(operation["operationId"], "getForwarding");
    assert!(
        document["components"]["schemas"]["AuditSinkStatus"]["properties"]["lag_seconds"]
            .is_object()
    );
}

/// A host's status source: what a forwarder in the process would report.
struct Fixed(Result<Vec<SinkStatus>, &'static str>);

#[async_trait::async_trait]
impl ForwardingStatus for Fixed {
    async fn forwarding_status(&self) -> Result<Vec<SinkStatus>, StoreError> {
        self.0.clone().map_err(StoreError::Unsupported)
    }
}

fn with_status(store: Arc<dyn AuditStore>, status: Fixed) -> Router {
    Router::new().nest(
        PREFIX,
        AuditRouter::from_shared(store, test_policy)
            .forwarding(status)
            .into_router(),
    )
}

#[tokio::test]
async fn forwarding_asks_the_host_status_source() {
    let store = common::sqlite_store().await;
    let status = SinkStatus {
        sink: "nats".into(),
        state: "retrying".into(),
        lag_events: 12,
        lag_seconds: 3.5,
        delivered_seq: 30,
        head_seq: 42,
        holder: Some("me".into()),
        this_instance: true,
        halt: None,
        last_error: Some("NATS JetStream: timed out".into()),
        updated_at: chrono::Utc::now(),
    };
    let app = with_status(store.clone(), Fixed(Ok(vec![status])));
    let body = get(&app, Some("erin"), "/forwarding").await.json();
    assert_eq!(body["sinks"][0]["state"], "retrying");
    assert_eq!(body["sinks"][0]["last_error"], "NATS JetStream: timed out");
    assert_eq!(body["sinks"][0]["this_instance"], true);

    // A source that cannot report says so with a JSON 501, never a 5xx crash.
    let app = with_status(store, Fixed(Err("this store keeps no forwarding cursors")));
    let answer = get(&app, Some("erin"), "/forwarding").await;
    assert_eq!(answer.status, 501);
    assert_eq!(answer.json()["error"], "not_configured");
}
