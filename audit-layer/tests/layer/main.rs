//! The audit layer in real axum routers, against real SQLite and PostgreSQL.
//!
//! Every test body takes a [`Db`] and runs once per backend (`<test>::sqlite`,
//! `<test>::postgres`); PostgreSQL variants skip unless `AUDIT_TEST_POSTGRES_URL` is set
//! (and fail under `AUDIT_TEST_REQUIRE_ALL=1`).

mod app;
mod support;

use std::collections::HashSet;
use std::time::Duration;

use audit_layer::{AuditLayer, REDACTED, TrustedProxies};
use audit_store::{
    Action, AuditEvent, DeliveryMode, GAP_ACTION, GAP_CATEGORY, Outcome, OverloadPolicy,
};
use axum::body::Body;
use http::{HeaderName, Method, StatusCode};
use serde_json::json;
use tower::ServiceExt;

use app::{Calls, app, json_body, request, rules, send};
use support::{Db, Fixture, eventually};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Db::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Db::Postgres).await;
            }
        }
    )*};
}

on_both_backends!(
    records_rules_and_defaults,
    denied_requests_from_inner_auth_are_recorded,
    context_from_handlers_and_middleware,
    request_ids,
    client_ip_and_user_agent,
    redaction,
    panics_and_disconnects_still_leave_an_event,
    shutdown_drains_a_full_queue,
    buffered_mode_loses_nothing_while_the_database_is_down,
    durable_mode_holds_the_response_until_commit,
    reject_policy_answers_503_before_the_handler_runs,
    proceed_policy_writes_a_gap_record,
    ten_thousand_concurrent_requests,
    background_jobs_record_directly,
);

fn by_path<'a>(events: &'a [AuditEvent], method: &str, path: &str) -> &'a AuditEvent {
    let found: Vec<_> = events
        .iter()
        .filter(|e| e.method == method && e.path == path)
        .collect();
    assert_eq!(found.len(), 1, "{method} {path}: {events:#?}");
    found[0]
}

async fn records_rules_and_defaults(db: Db) {
    let Some(fx) = Fixture::new(db, "records_rules_and_defaults").await else {
        return;
    };
    let recorder = fx.recorder().start().unwrap();
    let calls = Calls::default();
    let app = app(rules(AuditLayer::new(recorder.clone())), calls.clone());

    let create = request(Method::POST, "/api/dataset-rules")
        .body(json_body(json!({"name": "EU only"})))
        .unwrap();
    assert_eq!(send(&app, create).await.0, StatusCode::CREATED);
    let update = request(Method::PUT, "/api/dataset-rules/r%2F1")
        .body(json_body(json!({"name": "Rule 1b"})))
        .unwrap();
    assert_eq!(send(&app, update).await.0, StatusCode::OK);
    for (method, uri) in [
        (Method::DELETE, "/api/dataset-rules/r-2"),
        (Method::POST, "/api/models/m-5/versions/3/train"),
        (Method::GET, "/api/models/m-5/metadata"),
        (Method::GET, "/api/dataset-rules"),
        (Method::GET, "/api/dataset-rules/r-2"),
        (Method::POST, "/api/preview"),
        (Method::POST, "/api/harmonization/sync"),
        (Method::POST, "/api/unknown-route"),
    ] {
        let status = send(
            &app,
            request(method.clone(), uri).body(Body::empty()).unwrap(),
        )
        .await
        .0;
        assert_ne!(status, StatusCode::SERVICE_UNAVAILABLE, "{method} {uri}");
    }
    let read = request(Method::GET, "/api/dataset-rules/r-2")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&app, read).await.0,
        StatusCode::OK,
        "AuditContext on an unaudited read"
    );
    recorder.shutdown().await.unwrap();

    let events = fx.events().await;
    assert_eq!(events.len(), 6, "{events:#?}");
    let created = by_path(&events, "POST", "/api/dataset-rules");
    assert_eq!(created.category, "Dataset Rule");
    assert_eq!(created.action, Action::Create);
    assert_eq!(created.route, "/api/dataset-rules");
    assert_eq!(created.status, 201);
    assert_eq!(
        created.resource_id.as_deref(),
        Some("r-77"),
        "from Location"
    );
    assert_eq!(created.resource_name.as_deref(), Some("EU only"));
    assert_eq!(created.outcome, Outcome::Allow);
    assert_eq!(created.actor_email.as_deref(), Some("alice@acme.test"));
    assert_eq!(created.tenant.as_deref(), Some("acme"));
    assert!(created.duration_ms >= 0.0);

    let updated = by_path(&events, "PUT", "/api/dataset-rules/r%2F1");
    assert_eq!(
        (updated.category.as_str(), &updated.action),
        ("Dataset Rule", &Action::Update)
    );
    assert_eq!(updated.route, "/api/dataset-rules/{id}");
    assert_eq!(
        updated.resource_id.as_deref(),
        Some("r/1"),
        "percent-decoded"
    );
    assert_eq!(
        updated.attributes["changes"]["name"],
        json!(["Rule one", "Rule 1b"])
    );

    let deleted = by_path(&events, "DELETE", "/api/dataset-rules/r-2");
    assert_eq!(deleted.action, Action::Delete);
    assert_eq!(deleted.resource_id.as_deref(), Some("r-2"));

    let trained = by_path(&events, "POST", "/api/models/m-5/versions/3/train");
    assert_eq!(
        (trained.category.as_str(), &trained.action),
        ("Model", &Action::Train)
    );
    assert_eq!(
        trained.resource_id.as_deref(),
        Some("m-5"),
        "named parameter"
    );

    let downloaded = by_path(&events, "GET", "/api/models/m-5/metadata");
    assert_eq!(downloaded.action, Action::Download);
    assert_eq!(downloaded.resource_id.as_deref(), Some("m-5"));

    let synced = by_path(&events, "POST", "/api/harmonization/sync");
    assert_eq!(
        (synced.category.as_str(), &synced.action),
        ("Data Harmonization", &Action::Create)
    );
    assert_eq!(calls.count(), 10, "every matched handler ran");
    fx.cleanup().await;
}

async fn denied_requests_from_inner_auth_are_recorded(db: Db) {
    let Some(fx) = Fixture::new(db, "denied_requests_from_inner_auth_are_recorded").await else {
        return;
    };
    let recorder = fx.recorder().start().unwrap();
    let calls = Calls::default();
    let app = app(rules(AuditLayer::new(recorder.clone())), calls.clone());

    let anonymous = http::Request::builder()
        .method(Method::DELETE)
        .uri("/api/dataset-rules/r-1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, anonymous).await.0, StatusCode::UNAUTHORIZED);
    let carol = app::request_as("carol-token", Method::PUT, "/api/dataset-rules/r-2")
        .body(json_body(json!({"name": "x"})))
        .unwrap();
    assert_eq!(send(&app, carol).await.0, StatusCode::FORBIDDEN);
    let quota = request(Method::POST, "/api/quota")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, quota).await.0, StatusCode::OK);
    recorder.shutdown().await.unwrap();

    let events = fx.events().await;
    assert_eq!(events.len(), 3);
    let anonymous = by_path(&events, "DELETE", "/api/dataset-rules/r-1");
    assert_eq!(anonymous.outcome, Outcome::Deny);
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.reason.as_deref(), Some("unauthenticated"));
    assert_eq!(anonymous.actor_id, None);
    assert_eq!(anonymous.tenant, None);
    assert_eq!(anonymous.resource_id.as_deref(), Some("r-1"));

    let carol = by_path(&events, "PUT", "/api/dataset-rules/r-2");
    assert_eq!((carol.outcome, carol.status), (Outcome::Deny, 403));
    assert_eq!(
        carol.actor_id.as_deref(),
        Some("carol"),
        "actor known to the middleware"
    );
    assert_eq!(carol.actor_email.as_deref(), Some("carol@acme.test"));
    assert_eq!(carol.tenant.as_deref(), Some("acme"));
    assert_eq!(
        carol.reason.as_deref(),
        Some("carol may not change anything")
    );

    let quota = by_path(&events, "POST", "/api/quota");
    assert_eq!((quota.outcome, quota.status), (Outcome::Deny, 200));
    assert_eq!(quota.reason.as_deref(), Some("quota exceeded"));
    assert_eq!(calls.count(), 1, "only the quota handler ran");
    fx.cleanup().await;
}

async fn context_from_handlers_and_middleware(db: Db) {
    let Some(fx) = Fixture::new(db, "context_from_handlers_and_middleware").await else {
        return;
    };
    let recorder = fx.recorder().start().unwrap();
    let layer = AuditLayer::new(recorder.clone()).actor_resolver(
        |request: &audit_layer::RequestHead<'_>| {
            let via = request.headers.get("x-on-behalf-of")?.to_str().ok()?;
            Some(
                audit_layer::Actor::id("resolver")
                    .name(via)
                    .tenant("resolved-tenant"),
            )
        },
    );
    let app = app(rules(layer), Calls::default());
    let plan = request(Method::PUT, "/api/plans/p-1/model")
        .header("x-on-behalf-of", "Scheduler")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, plan).await.0, StatusCode::NO_CONTENT);
    let dry = request(Method::POST, "/api/dry-run")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, dry).await.0, StatusCode::NO_CONTENT);
    recorder.shutdown().await.unwrap();

    let events = fx.events().await;
    assert_eq!(events.len(), 1, "the dry run skipped itself: {events:#?}");
    let plan = &events[0];
    assert_eq!(plan.category, "Plan", "handler override");
    assert_eq!(plan.action.as_str(), "change_model");
    assert_eq!(
        plan.resource_id.as_deref(),
        Some("p-9"),
        "handler wins over path"
    );
    assert_eq!(
        plan.tenant.as_deref(),
        Some("globex"),
        "handler wins over middleware"
    );
    assert_eq!(
        plan.actor_id.as_deref(),
        Some("alice"),
        "middleware wins over resolver"
    );
    assert_eq!(plan.actor_name.as_deref(), Some("Alice"));
    fx.cleanup().await;
}

async fn request_ids(db: Db) {
    let Some(fx) = Fixture::new(db, "request_ids").await else {
        return;
    };
    let recorder = fx.recorder().start().unwrap();
    let app = app(rules(AuditLayer::new(recorder.clone())), Calls::default());
    let custom = app::app(
        rules(
            AuditLayer::new(recorder.clone()).request_id_header(HeaderName::from_static("x-trace")),
        ),
        Calls::default(),
    );
    let with_tower_http =
        app.clone()
            .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
                tower_http::request_id::MakeRequestUuid,
            ));

    let long = "a".repeat(129);
    let cases: Vec<(&axum::Router, &str, Option<&str>, &str)> = vec![
        (
            &app,
            "/api/dataset-rules/keep",
            Some("req-123_ABC:~!"),
            "kept",
        ),
        (
            &app,
            "/api/dataset-rules/space",
            Some("has space"),
            "replaced",
        ),
        (
            &app,
            "/api/dataset-rules/long",
            Some(long.as_str()),
            "replaced",
        ),
        (&app, "/api/dataset-rules/max", Some(&long[..128]), "kept"),
        (&app, "/api/dataset-rules/none", None, "generated"),
    ];
    let mut echoed = Vec::new();
    for (router, uri, incoming, _) in &cases {
        let mut builder = request(Method::DELETE, uri);
        if let Some(id) = incoming {
            builder = builder.header("x-request-id", *id);
        }
        let (_, headers, _) = send(router, builder.body(Body::empty()).unwrap()).await;
        echoed.push(headers["x-request-id"].to_str().unwrap().to_owned());
    }
    let (_, custom_headers, _) = send(
        &custom,
        request(Method::DELETE, "/api/dataset-rules/custom")
            .header("x-trace", "trace-1")
            .header("x-request-id", "ignored")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(custom_headers["x-trace"], "trace-1");
    let (_, tower_headers, _) = send(
        &with_tower_http,
        request(Method::DELETE, "/api/dataset-rules/tower")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let tower_id = tower_headers["x-request-id"].to_str().unwrap().to_owned();
    recorder.shutdown().await.unwrap();

    let events = fx.events().await;
    for ((_, uri, incoming, expect), echoed) in cases.iter().zip(&echoed) {
        let event = by_path(&events, "DELETE", uri);
        assert_eq!(
            &event.request_id, echoed,
            "{uri}: response echoes the stored ID"
        );
        match *expect {
            "kept" => assert_eq!(Some(event.request_id.as_str()), *incoming),
            _ => {
                let id = uuid::Uuid::parse_str(&event.request_id).unwrap();
                assert_eq!(id.get_version_num(), 7, "{uri}");
            }
        }
    }
    assert_eq!(
        by_path(&events, "DELETE", "/api/dataset-rules/custom").request_id,
        "trace-1"
    );
    assert_eq!(
        by_path(&events, "DELETE", "/api/dataset-rules/tower").request_id,
        tower_id,
        "tower-http's RequestId is the one recorded"
    );
    fx.cleanup().await;
}

async fn client_ip_and_user_agent(db: Db) {
    let Some(fx) = Fixture::new(db, "client_ip_and_user_agent").await else {
        return;
    };
    let recorder = fx.recorder().start().unwrap();
    let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
    let app = app(
        rules(AuditLayer::new(recorder.clone()).trusted_proxies(proxies)),
        Calls::default(),
    );
    let peer = |ip: [u8; 4]| axum::extract::ConnectInfo(std::net::SocketAddr::from((ip, 5555)));
    let cases = [
        ("direct", [198, 51, 100, 1], vec![], Some("198.51.100.1")),
        (
            "spoofed",
            [198, 51, 100, 2],
            vec![("x-forwarded-for", "1.1.1.1")],
            Some("198.51.100.2"),
        ),
        (
            "proxied",
            [10, 0, 0, 1],
            vec![("x-forwarded-for", "1.1.1.1, 192.0.2.44, 10.0.0.7")],
            Some("192.0.2.44"),
        ),
        (
            "forwarded",
            [10, 0, 0, 1],
            vec![("forwarded", "for=\"[2001:db8::5]:443\";proto=https")],
            Some("2001:db8::5"),
        ),
        ("proxy-only", [10, 0, 0, 1], vec![], Some("10.0.0.1")),
    ];
    for (name, ip, headers, _) in &cases {
        let mut builder = request(Method::DELETE, &format!("/api/dataset-rules/{name}"))
            .extension(peer(*ip))
            .header("user-agent", format!("{}é", "x".repeat(511)));
        for (header, value) in headers {
            builder = builder.header(*header, *value);
        }
        send(&app, builder.body(Body::empty()).unwrap()).await;
    }
    // No ConnectInfo at all (served without connect info): unknown, never a header's claim.
    let bare = http::Request::builder()
        .method(Method::DELETE)
        .uri("/api/dataset-rules/bare")
        .header("authorization", "Bearer alice-token")
        .header("x-forwarded-for", "1.1.1.1")
        .body(Body::empty())
        .unwrap();
    send(&app, bare).await;
    recorder.shutdown().await.unwrap();

    let events = fx.events().await;
    for (name, _, _, expected) in &cases {
        let event = by_path(&events, "DELETE", &format!("/api/dataset-rules/{name}"));
        assert_eq!(event.client_ip.as_deref(), *expected, "{name}");
        let agent = event.user_agent.as_deref().unwrap();
        assert_eq!(agent.len(), 511, "cut before the split 'é'");
    }
    let bare = by_path(&events, "DELETE", "/api/dataset-rules/bare");
    assert_eq!(
        (bare.client_ip.as_deref(), bare.user_agent.as_deref()),
        (None, None)
    );
    fx.cleanup().await;
}

async fn redaction(db: Db) {
    let Some(fx) = Fixture::new(db, "redaction").await else {
        return;
    };
    let recorder = fx.recorder().start().unwrap();
    let app = app(rules(AuditLayer::new(recorder.clone())), Calls::default());
    let update = request(Method::PUT, "/api/dataset-rules/r-1")
        .header("cookie", "session=cookie-value-xyz")
        .body(json_body(
            json!({"name": "Rule body-marker", "password": "body-secret"}),
        ))
        .unwrap();
    assert_eq!(send(&app, update).await.0, StatusCode::OK);
    let create = request(Method::POST, "/api/dataset-rules")
        .body(json_body(json!({"name": "n"})))
        .unwrap();
    send(&app, create).await;
    recorder.shutdown().await.unwrap();

    let events = fx.events().await;
    let updated = by_path(&events, "PUT", "/api/dataset-rules/r-1");
    let changes = &updated.attributes["changes"];
    assert_eq!(changes["password"], REDACTED, "inside changes");
    assert_eq!(changes["name"], json!(["Rule one", "Rule body-marker"]));
    assert_eq!(updated.attributes["connection"]["accessToken"], REDACTED);
    assert_eq!(updated.attributes["connection"]["host"], "db");
    assert_eq!(
        updated.attributes["connection"]["nested"][0]["client_secret"],
        REDACTED
    );
    let created = by_path(&events, "POST", "/api/dataset-rules");
    assert_eq!(created.attributes["api_key"], REDACTED);
    let stored = serde_json::to_string(&events).unwrap();
    for secret in [
        "alice-token",
        "cookie-value-xyz",
        "body-secret",
        "old-secret",
        "tok-123",
        "should-not-be-stored",
    ] {
        assert!(!stored.contains(secret), "{secret} was stored");
    }
    fx.cleanup().await;
}

async fn panics_and_disconnects_still_leave_an_event(db: Db) {
    let Some(fx) = Fixture::new(db, "panics_and_disconnects_still_leave_an_event").await else {
        return;
    };
    let recorder = fx.recorder().start().unwrap();
    let calls = Calls::default();
    let app = app(rules(AuditLayer::new(recorder.clone())), calls.clone());

    // Caught by tower-http's CatchPanicLayer inside the audit layer.
    let caught = request(Method::POST, "/api/panic")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&app, caught).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    // Not caught by anything inside: the audit future records while the panic unwinds.
    let uncaught_app = axum::Router::new()
        .route("/api/explode", axum::routing::post(explode))
        .layer(AuditLayer::new(recorder.clone()));
    let uncaught = tokio::spawn(
        uncaught_app.oneshot(
            request(Method::POST, "/api/explode")
                .body(Body::empty())
                .unwrap(),
        ),
    );
    assert!(uncaught.await.unwrap_err().is_panic());

    // The client goes away while the handler still works.
    let slow = request(Method::POST, "/api/slow")
        .body(Body::empty())
        .unwrap();
    let abandoned =
        tokio::time::timeout(Duration::from_millis(100), app.clone().oneshot(slow)).await;
    assert!(abandoned.is_err());
    recorder.shutdown().await.unwrap();

    let events = fx.events().await;
    let caught = by_path(&events, "POST", "/api/panic");
    assert_eq!(caught.status, 500);
    let uncaught = by_path(&events, "POST", "/api/explode");
    assert_eq!(
        (uncaught.status, &uncaught.attributes["panicked"]),
        (500, &json!(true))
    );
    let slow = by_path(&events, "POST", "/api/slow");
    assert_eq!(slow.status, 499);
    assert_eq!(slow.attributes["client_disconnected"], true);
    assert_eq!(slow.actor_id.as_deref(), Some("alice"));
    fx.cleanup().await;
}

async fn explode() -> &'static str {
    panic!("uncaught")
}

async fn shutdown_drains_a_full_queue(db: Db) {
    let Some(mut fx) = Fixture::new(db, "shutdown_drains_a_full_queue").await else {
        return;
    };
    let recorder = fx
        .recorder()
        .max_queue_events(200)
        .max_batch_events(25)
        .admission_wait(Duration::from_millis(20))
        .start()
        .unwrap();
    let app = app(rules(AuditLayer::new(recorder.clone())), Calls::default());
    // The outage begins once the recorder is running (it replayed its spool and judged its
    // previous run); an outage from the very start only delays that.
    recorder.recovered().await;
    fx.break_database().await;
    for n in 0..200 {
        let uri = format!("/api/dataset-rules/r-{n}");
        let status = send(
            &app,
            request(Method::DELETE, &uri).body(Body::empty()).unwrap(),
        )
        .await
        .0;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(recorder.metrics().queue_depth, 200, "the queue is full");
    let overflow = request(Method::DELETE, "/api/dataset-rules/overflow")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&app, overflow).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let stopping = tokio::spawn({
        let recorder = recorder.clone();
        async move { recorder.shutdown().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stopping.is_finished(), "shutdown waits for the database");
    fx.restore_database().await;
    stopping.await.unwrap().unwrap();

    let events = fx.events().await;
    assert_eq!(events.len(), 200);
    let metrics = recorder.metrics();
    assert_eq!(
        (metrics.recorded, metrics.queue_depth, metrics.refused),
        (200, 0, 1)
    );
    assert!(
        metrics.failed_batches > 0 && metrics.retries > 0,
        "{metrics:?}"
    );
    fx.cleanup().await;
}

async fn buffered_mode_loses_nothing_while_the_database_is_down(db: Db) {
    let Some(mut fx) =
        Fixture::new(db, "buffered_mode_loses_nothing_while_the_database_is_down").await
    else {
        return;
    };
    let recorder = fx.recorder().start().unwrap();
    let app = app(rules(AuditLayer::new(recorder.clone())), Calls::default());
    // The outage begins once the recorder is running (it replayed its spool and judged its
    // previous run); an outage from the very start only delays that.
    recorder.recovered().await;
    fx.break_database().await;
    let started = std::time::Instant::now();
    for n in 0..50 {
        let uri = format!("/api/dataset-rules/r-{n}");
        let status = send(
            &app,
            request(Method::DELETE, &uri).body(Body::empty()).unwrap(),
        )
        .await
        .0;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "responses are not delayed by the database: {:?}",
        started.elapsed()
    );
    eventually(Duration::from_secs(10), || {
        recorder.metrics().failed_batches >= 2
    })
    .await;
    assert_eq!(recorder.metrics().recorded, 0);
    fx.restore_database().await;
    eventually(Duration::from_secs(20), || {
        recorder.metrics().recorded == 50
    })
    .await;
    recorder.shutdown().await.unwrap();
    let events = fx.events().await;
    assert_eq!(events.len(), 50);
    let paths: HashSet<_> = events.iter().map(|e| e.path.clone()).collect();
    assert_eq!(paths.len(), 50);
    fx.cleanup().await;
}

async fn durable_mode_holds_the_response_until_commit(db: Db) {
    let Some(mut fx) = Fixture::new(db, "durable_mode_holds_the_response_until_commit").await
    else {
        return;
    };
    let recorder = fx
        .recorder()
        .delivery(DeliveryMode::Durable)
        .start()
        .unwrap();
    let calls = Calls::default();
    let app = app(rules(AuditLayer::new(recorder.clone())), calls.clone());

    // Healthy: the response comes after the event is readable.
    let first = request(Method::DELETE, "/api/dataset-rules/first")
        .body(Body::empty())
        .unwrap();
    send(&app, first).await;
    assert_eq!(fx.events().await.len(), 1, "committed before the response");

    // The outage begins once the recorder is running (it replayed its spool and judged its
    // previous run); an outage from the very start only delays that.
    recorder.recovered().await;
    fx.break_database().await;
    let pending: Vec<_> = (0..5)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move {
                let uri = format!("/api/dataset-rules/held-{n}");
                send(
                    &app,
                    request(Method::DELETE, &uri).body(Body::empty()).unwrap(),
                )
                .await
                .0
            })
        })
        .collect();
    eventually(Duration::from_secs(5), || calls.count() == 6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pending.iter().all(|task| !task.is_finished()),
        "handlers ran, responses held"
    );
    fx.restore_database().await;
    for task in pending {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        fx.events().await.len(),
        6,
        "every released response was committed"
    );
    let metrics = recorder.metrics();
    assert!(metrics.batches < 6, "group commit: {metrics:?}");
    recorder.shutdown().await.unwrap();
    fx.cleanup().await;
}

async fn reject_policy_answers_503_before_the_handler_runs(db: Db) {
    let Some(mut fx) = Fixture::new(db, "reject_policy_answers_503_before_the_handler_runs").await
    else {
        return;
    };
    let recorder = fx
        .recorder()
        .max_queue_events(3)
        .admission_wait(Duration::from_millis(100))
        .start()
        .unwrap();
    let calls = Calls::default();
    let app = app(rules(AuditLayer::new(recorder.clone())), calls.clone());
    // The outage begins once the recorder is running (it replayed its spool and judged its
    // previous run); an outage from the very start only delays that.
    recorder.recovered().await;
    fx.break_database().await;
    for n in 0..3 {
        let uri = format!("/api/dataset-rules/r-{n}");
        let status = send(
            &app,
            request(Method::DELETE, &uri).body(Body::empty()).unwrap(),
        )
        .await
        .0;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, headers, _) = send(
        &app,
        request(Method::DELETE, "/api/dataset-rules/refused")
            .header("x-request-id", "refused-1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["x-request-id"], "refused-1");
    assert_eq!(calls.count(), 3, "the refused request's handler never ran");
    // Reads are not audited, so they never need room and keep working.
    let read = request(Method::GET, "/api/dataset-rules")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, read).await.0, StatusCode::OK);
    assert_eq!(recorder.metrics().refused, 1);

    fx.restore_database().await;
    eventually(Duration::from_secs(20), || {
        recorder.metrics().queue_depth == 0
    })
    .await;
    let again = request(Method::DELETE, "/api/dataset-rules/after")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, again).await.0, StatusCode::OK);
    recorder.shutdown().await.unwrap();
    let events = fx.events().await;
    assert_eq!(events.len(), 4);
    assert!(
        events
            .iter()
            .all(|e| e.path != "/api/dataset-rules/refused")
    );
    fx.cleanup().await;
}

async fn proceed_policy_writes_a_gap_record(db: Db) {
    let Some(mut fx) = Fixture::new(db, "proceed_policy_writes_a_gap_record").await else {
        return;
    };
    let recorder = fx
        .recorder()
        .max_queue_events(2)
        .admission_wait(Duration::from_millis(20))
        .overload(OverloadPolicy::Proceed)
        .start()
        .unwrap();
    let calls = Calls::default();
    let app = app(rules(AuditLayer::new(recorder.clone())), calls.clone());
    // The outage begins once the recorder is running (it replayed its spool and judged its
    // previous run); an outage from the very start only delays that.
    recorder.recovered().await;
    fx.break_database().await;
    for n in 0..5 {
        let uri = format!("/api/dataset-rules/r-{n}");
        let status = send(
            &app,
            request(Method::DELETE, &uri).body(Body::empty()).unwrap(),
        )
        .await
        .0;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(calls.count(), 5, "every request ran");
    assert_eq!(recorder.metrics().missed, 3);
    fx.restore_database().await;
    eventually(Duration::from_secs(20), || recorder.metrics().gaps == 1).await;
    recorder.shutdown().await.unwrap();

    let events = fx.events().await;
    assert_eq!(events.len(), 3, "two events and one gap record");
    let gap = events
        .iter()
        .find(|e| e.category == GAP_CATEGORY)
        .expect("gap record");
    assert_eq!(gap.action.as_str(), GAP_ACTION);
    assert_eq!(gap.attributes["missed_events"], 3);
    let first = gap.attributes["first_missed_at"].as_str().unwrap();
    let last = gap.attributes["last_missed_at"].as_str().unwrap();
    assert!(first <= last);
    fx.cleanup().await;
}

async fn ten_thousand_concurrent_requests(db: Db) {
    let Some(fx) = Fixture::new(db, "ten_thousand_concurrent_requests").await else {
        return;
    };
    let recorder = fx
        .recorder()
        .admission_wait(Duration::from_secs(30))
        .start()
        .unwrap();
    let app = app(rules(AuditLayer::new(recorder.clone())), Calls::default());
    let tasks: Vec<_> = (0..10_000)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move {
                let uri = format!("/api/dataset-rules/r-{n}");
                app.oneshot(
                    request(Method::DELETE, &uri)
                        .header("x-request-id", format!("load-{n}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap()
                .status()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    recorder.shutdown().await.unwrap();
    let events = fx.events().await;
    assert_eq!(events.len(), 10_000);
    let ids: HashSet<_> = events.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(ids.len(), 10_000);
    assert_eq!(recorder.metrics().recorded, 10_000);
    fx.cleanup().await;
}

async fn background_jobs_record_directly(db: Db) {
    let Some(fx) = Fixture::new(db, "background_jobs_record_directly").await else {
        return;
    };
    let recorder = fx
        .recorder()
        .delivery(DeliveryMode::Durable)
        .start()
        .unwrap();
    let event = AuditEvent::builder("Model", Action::Rescore)
        .internal("nightly-rescore")
        .tenant("acme")
        .resource_id("m-1")
        .build();
    recorder.record(event.clone()).await.unwrap();
    let mut events = fx.events().await;
    assert_eq!(events.len(), 1);
    // Stored events carry their place in the hash chain; the rest is what was recorded.
    assert_eq!(events[0].chain.map(|link| link.seq), Some(1));
    events[0].chain = None;
    assert_eq!(events, vec![event]);
    recorder.shutdown().await.unwrap();
    fx.cleanup().await;
}

#[test]
fn coverage_helper_lists_mutating_routes_without_rules() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = audit_store::SqliteStore::connect("sqlite::memory:")
            .await
            .unwrap();
        let recorder = audit_store::Recorder::builder(store).start().unwrap();
        let layer = rules(AuditLayer::new(recorder));
        let routes = [
            (Method::GET, "/api/models"),
            (Method::POST, "/api/models"),
            (
                Method::POST,
                "/api/models/{model_id}/versions/{version}/train",
            ),
            (Method::GET, "/api/models/{id}/metadata"),
            (Method::POST, "/api/preview"),
            (Method::PATCH, "/api/fields/{id}"),
        ];
        assert_eq!(
            layer.unruled_routes(routes.iter().cloned()),
            vec![
                (Method::POST, "/api/models".to_owned()),
                (Method::PATCH, "/api/fields/{id}".to_owned())
            ]
        );
        assert!(layer.is_audited(&Method::GET, "/api/models/{id}/metadata"));
        assert!(!layer.is_audited(&Method::GET, "/api/models"));
        assert!(!layer.is_audited(&Method::POST, "/api/preview"));
        assert!(layer.is_audited(&Method::PATCH, "/api/fields/{id}"));
    });
}
