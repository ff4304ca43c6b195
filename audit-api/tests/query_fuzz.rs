//! Property test: arbitrary query strings, on every route, never produce a 5xx or a panic,
//! and every rejection is the contract's JSON error.

mod common;

use std::sync::{Arc, OnceLock};

use audit_store::AuditStore;
use axum::Router;
use proptest::prelude::*;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: Router,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let app = runtime.block_on(async {
            let store: Arc<dyn AuditStore> = common::sqlite_store().await;
            common::seed(&store).await;
            common::app(store)
        });
        Fixture { runtime, app }
    })
}

/// Parameter names: the real ones, near misses, and noise.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "category", "resource_type", "action", "status", "user", "request_id",
            "resource_id", "resource_name", "tenant", "from", "to", "limit", "cursor",
            "format", "columns",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_]{0,12}",
        1 => any::<String>(),
    ]
}

/// Values: plausible ones, edge cases, and arbitrary text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "0",
            "1",
            "1000",
            "1001",
            "-1",
            "99999999999999999999",
            "csv",
            "json",
            "ndjson",
            "xml",
            "allow",
            "deny",
            "train",
            "Train",
            "2026-03-01",
            "2026-02-30",
            "2026-03-01T00:00:00Z",
            "2026-03-01T00:00:00+14:00",
            "+275760-09-13T00:00:00Z",
            "0000-01-01",
            "9999-12-31T23:59:59.999999999Z",
            "id,action",
            "id,,x",
            "attributes",
            "acme",
            "globex",
            "%",
            "\0",
            "=cmd",
            "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
        "[ -~]{0,40}",
    ]
}

fn route() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/events",
        "/export",
        "/facets",
        "/openapi.json",
        "/events/0190b6a4-5e2a-7000-8000-000000000000",
        "/events/nope",
        "",
    ])
}

/// Raw query text of URI-safe characters, for malformed encodings and separators.
fn raw_query() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_=&%+,.:;~!*'()/?-]{0,80}"
}

fn check(route: &str, query: &str) -> Result<(), TestCaseError> {
    let fixture = fixture();
    let answer = fixture.runtime.block_on(common::get(
        &fixture.app,
        Some("root"),
        &format!("{route}?{query}"),
    ));
    prop_assert!(
        answer.status.as_u16() < 500,
        "{route}?{query} answered {}",
        answer.status
    );
    if answer.status.is_client_error() && !route.is_empty() {
        let body = answer.json();
        prop_assert!(body["error"].is_string(), "{body}");
        prop_assert!(body["message"].is_string(), "{body}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn structured_queries_never_fail_the_server(
        route in route(),
        pairs in prop::collection::vec((name(), value()), 0..6),
    ) {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        check(route, &query)?;
    }

    #[test]
    fn raw_queries_never_fail_the_server(route in route(), query in raw_query()) {
        check(route, &query)?;
    }
}
