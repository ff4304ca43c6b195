//! The router end to end over real stores: every parameter, paging, tenant isolation,
//! access control with its self-audit, export formats parsed back, formula neutralisation,
//! and a matrix of bad input that must never produce a 5xx.

mod common;

use std::sync::Arc;

use audit_api::{Column, PARAMETERS};
use audit_store::{Action, AuditEvent, AuditStore, Outcome};
use common::{Answer, app, get, seed};
use serde_json::Value;

on_both_stores!(
    every_filter_parameter,
    cursor_paging,
    tenant_isolation,
    event_detail,
    access_is_checked_and_denials_are_recorded,
    export_formats_parse_back,
    export_columns_and_filters,
    formula_cells_are_neutralised,
    bad_input_never_fails_the_server,
    totals_and_facet_counts,
    exports_are_recorded_with_rows_bytes_and_duration,
    histogram_counts_allowed_and_denied_per_interval,
);

/// `/histogram`: per UTC hour or day, the allowed and denied events the filters match, every
/// bar present, within the viewer's tenants.
async fn histogram_counts_allowed_and_denied_per_interval(store: Arc<dyn AuditStore>) {
    use chrono::{DateTime, Utc};
    let seeded = seed(&store).await;
    let app = app(store);
    // The seed: one event an hour, back from base_time (2026-03-10T12:00Z).
    let histogram = |user: &'static str, query: String| {
        let app = app.clone();
        async move {
            let answer = get(&app, Some(user), &format!("/histogram?{query}")).await;
            assert_eq!(answer.status, 200, "{query}: {}", answer.text());
            answer.json()
        }
    };
    let from = "2026-03-08T00:00:00Z";
    let to = "2026-03-10T13:00:00Z";
    let answer = histogram("root", format!("interval=hour&from={from}&to={to}")).await;
    assert_eq!(answer["interval"], "hour");
    let buckets = answer["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 61, "every hour, empty ones too");
    let mut allowed = 0;
    for bucket in buckets {
        let start: DateTime<Utc> = bucket["start"].as_str().unwrap().parse().unwrap();
        let end: DateTime<Utc> = bucket["end"].as_str().unwrap().parse().unwrap();
        assert_eq!(end - start, chrono::Duration::hours(1));
        let within = |e: &AuditEvent| e.occurred_at >= start && e.occurred_at < end;
        assert_eq!(
            bucket["allow"]["count"],
            seeded
                .ids(|e| within(e) && e.outcome == Outcome::Allow)
                .len(),
            "{start}"
        );
        assert_eq!(
            bucket["deny"]["count"],
            seeded
                .ids(|e| within(e) && e.outcome == Outcome::Deny)
                .len(),
            "{start}"
        );
        assert_eq!(bucket["allow"]["exact"], true);
        allowed += bucket["allow"]["count"].as_u64().unwrap();
    }
    assert_eq!(
        allowed as usize,
        seeded.ids(|e| e.outcome == Outcome::Allow).len()
    );
    // Days, filtered, within alice's tenant.
    let answer = histogram(
        "alice",
        format!("interval=day&from={from}&to={to}&category=Model"),
    )
    .await;
    let buckets = answer["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 3);
    assert_eq!(buckets[0]["start"], "2026-03-08T00:00:00.000000Z");
    let total: u64 = buckets
        .iter()
        .map(|b| b["allow"]["count"].as_u64().unwrap() + b["deny"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        total as usize,
        seeded
            .ids(|e| e.category == "Model" && e.tenant.as_deref() == Some("acme"))
            .len()
    );
    // An outcome filter leaves the other outcome at zero.
    let answer = histogram("root", format!("from={from}&to={to}&status=deny")).await;
    assert!(
        answer["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["allow"]["count"] == 0)
    );
    // Bad input names the parameter.
    get(&app, Some("root"), "/histogram?interval=week")
        .await
        .assert_invalid("interval");
    get(
        &app,
        Some("root"),
        "/histogram?interval=hour&from=2025-01-01&to=2026-01-01",
    )
    .await
    .assert_invalid("interval");
    get(&app, Some("root"), "/histogram?limit=5")
        .await
        .assert_invalid("limit");
    get(&app, Some("root"), "/events?interval=day")
        .await
        .assert_invalid("interval");
    assert_eq!(get(&app, None, "/histogram").await.status, 401);
    assert_eq!(get(&app, Some("bob"), "/histogram").await.status, 403);
}

/// A download's own event says how many rows and bytes went out and how long the whole
/// stream took, recorded by the time the file is complete.
async fn exports_are_recorded_with_rows_bytes_and_duration(store: Arc<dyn AuditStore>) {
    let seeded = seed(&store).await;
    let app = app(store);
    let downloads = || {
        let app = app.clone();
        async move {
            let answer = get(
                &app,
                Some("root"),
                "/events?category=Audit%20Log&action=download",
            )
            .await;
            serde_json::from_value::<Vec<AuditEvent>>(answer.json()["items"].clone()).unwrap()
        }
    };
    for (query, rows) in [
        (
            "/export?category=Model",
            seeded.ids(|e| e.category == "Model").len(),
        ),
        // The first download's own event is in the log by now.
        ("/export?format=json", seeded.all.len() + 1),
        ("/export?format=ndjson&category=Nothing", 0),
    ] {
        let answer = get(&app, Some("root"), query).await;
        assert_eq!(answer.status, 200, "{query}");
        // Read right after the body ended: no waiting, the event is already stored.
        let latest = downloads().await.into_iter().next().unwrap();
        let attributes = &latest.attributes;
        assert_eq!(attributes["rows"], rows, "{query}");
        assert_eq!(attributes["bytes"], answer.body.len(), "{query}");
        assert_eq!(attributes["completed"], true, "{query}");
        assert_eq!(attributes["end"], "complete", "{query}");
        assert!(latest.duration_ms > 0.0, "{query}");
        assert_eq!(latest.status, 200);
        if let Some(format) = query.split("format=").nth(1) {
            assert_eq!(attributes["format"], format.split('&').next().unwrap());
        }
    }
    assert_eq!(downloads().await.len(), 3, "one event per download");
}

/// `/events` answers the number of matches and `/facets` the count per value for the
/// current filters, both within the viewer's tenants and exact up to the router's bound.
async fn totals_and_facet_counts(store: Arc<dyn AuditStore>) {
    let seeded = seed(&store).await;
    let app = app(store.clone());
    let total = |user: &'static str, query: &'static str| {
        let app = app.clone();
        async move {
            let answer = get(&app, Some(user), &format!("/events?limit=2&{query}")).await;
            assert_eq!(answer.status, 200, "{query}");
            answer.json()["total"].clone()
        }
    };
    let exact = |count: usize| serde_json::json!({"count": count, "exact": true});
    assert_eq!(total("root", "").await, exact(seeded.all.len()));
    assert_eq!(
        total("root", "category=Model&status=deny").await,
        exact(
            seeded
                .ids(|e| e.category == "Model" && e.outcome == Outcome::Deny)
                .len()
        )
    );
    assert_eq!(
        total("alice", "action=train").await,
        exact(
            seeded
                .ids(|e| e.action == Action::Train && e.tenant.as_deref() == Some("acme"))
                .len()
        )
    );
    assert_eq!(total("root", "category=Nothing").await, exact(0));
    // The total is of every page, whatever the page size and cursor.
    let first = get(&app, Some("root"), "/events?limit=2&category=Plan")
        .await
        .json();
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = get(
        &app,
        Some("root"),
        &format!("/events?limit=2&category=Plan&cursor={cursor}"),
    )
    .await
    .json();
    assert_eq!(first["total"], second["total"]);
    assert_eq!(
        first["total"],
        exact(seeded.ids(|e| e.category == "Plan").len())
    );

    // Past the bound: the bound, not exact.
    let bounded = axum::Router::new().nest(
        common::PREFIX,
        audit_api::AuditRouter::from_shared(store.clone(), common::test_policy)
            .count_bound(5)
            .into_router(),
    );
    let answer = get(&bounded, Some("root"), "/events").await.json();
    assert_eq!(
        answer["total"],
        serde_json::json!({"count": 5, "exact": false})
    );
    let answer = get(&bounded, Some("root"), "/events?request_id=req-3")
        .await
        .json();
    assert_eq!(answer["total"], exact(1));

    // Facet counts: per value, the current filters with that parameter set to the value.
    let facets = get(
        &app,
        Some("root"),
        "/facets?status=deny&resource_name=churn",
    )
    .await;
    assert_eq!(facets.status, 200);
    let facets = facets.json();
    let denied_churn = |e: &AuditEvent| {
        e.outcome == Outcome::Deny
            && e.resource_name
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains("churn"))
    };
    let churn = |e: &AuditEvent| {
        e.resource_name
            .as_deref()
            .is_some_and(|n| n.to_lowercase().contains("churn"))
    };
    for category in ["Model", "Dataset Rule", "Field", "Plan"] {
        assert_eq!(
            facets["counts"]["category"][category],
            exact(
                seeded
                    .ids(|e| denied_churn(e) && e.category == category)
                    .len()
            ),
            "{category}"
        );
    }
    // The outcome's own count ignores the outcome filter: what choosing it would give.
    assert_eq!(
        facets["counts"]["status"]["allow"],
        exact(
            seeded
                .ids(|e| churn(e) && e.outcome == Outcome::Allow)
                .len()
        )
    );
    assert_eq!(
        facets["counts"]["action"]["train"],
        exact(
            seeded
                .ids(|e| denied_churn(e) && e.action == Action::Train)
                .len()
        )
    );
    // Users are keyed by the value the page filters with (the e-mail), matched ignoring case.
    assert_eq!(
        facets["counts"]["user"]["Bob@Acme.test"],
        exact(
            seeded
                .ids(|e| denied_churn(e) && e.actor_id.as_deref() == Some("u-bob"))
                .len()
        )
    );
    // Within the viewer's tenants.
    let dave = get(&app, Some("dave"), "/facets").await.json();
    assert_eq!(
        dave["counts"]["category"]["Model"],
        exact(
            seeded
                .ids(|e| e.category == "Model" && e.tenant.as_deref() == Some("globex"))
                .len()
        )
    );
    assert_eq!(
        dave["counts"]["user"]["alice@acme.test"],
        exact(
            seeded
                .ids(|e| {
                    e.actor_id.as_deref() == Some("u-alice")
                        && e.tenant.as_deref() == Some("globex")
                })
                .len()
        )
    );
    // Bounded the same way, and filters are checked like everywhere else.
    let bounded_facets = get(&bounded, Some("root"), "/facets").await.json();
    assert_eq!(
        bounded_facets["counts"]["status"]["allow"],
        serde_json::json!({"count": 5, "exact": false})
    );
    get(&app, Some("root"), "/facets?categry=Model")
        .await
        .assert_invalid("categry");
    get(&app, Some("root"), "/facets?limit=5")
        .await
        .assert_invalid("limit");
    get(&app, Some("root"), "/facets?from=2026-13-45")
        .await
        .assert_invalid("from");
}

async fn every_filter_parameter(store: Arc<dyn AuditStore>) {
    let seeded = seed(&store).await;
    let app = app(store);
    let root = |query: &'static str| {
        let app = app.clone();
        async move {
            get(&app, Some("root"), &format!("/events?limit=1000&{query}"))
                .await
                .ids()
        }
    };
    let category = |e: &AuditEvent, c: &str| e.category == c;
    assert_eq!(
        root("category=Model").await,
        seeded.ids(|e| category(e, "Model"))
    );
    assert_eq!(
        root("resource_type=Field").await,
        seeded.ids(|e| category(e, "Field"))
    );
    assert_eq!(
        root("category=Model&resource_type=Plan").await,
        seeded.ids(|e| category(e, "Model") || category(e, "Plan"))
    );
    assert_eq!(
        root("action=train").await,
        seeded.ids(|e| e.action == Action::Train)
    );
    assert_eq!(
        root("action=train&action=delete").await,
        seeded.ids(|e| matches!(e.action, Action::Train | Action::Delete))
    );
    assert_eq!(
        root("status=deny").await,
        seeded.ids(|e| e.outcome == Outcome::Deny)
    );
    assert_eq!(
        root("status=allow").await,
        seeded.ids(|e| e.outcome == Outcome::Allow)
    );
    assert_eq!(root("status=allow&status=deny").await, seeded.ids(|_| true));
    let actor = |e: &AuditEvent, id: &str| e.actor_id.as_deref() == Some(id);
    assert_eq!(
        root("user=u-alice").await,
        seeded.ids(|e| actor(e, "u-alice"))
    );
    // An e-mail matches ignoring case (stored as Bob@Acme.test).
    assert_eq!(
        root("user=bob%40acme.TEST").await,
        seeded.ids(|e| actor(e, "u-bob"))
    );
    assert_eq!(
        root("user=u-alice&user=dave%40globex.test").await,
        seeded.ids(|e| actor(e, "u-alice") || actor(e, "u-dave"))
    );
    assert_eq!(
        root("request_id=req-3").await,
        seeded.ids(|e| e.request_id == "req-3")
    );
    assert_eq!(
        root("resource_id=res-2").await,
        seeded.ids(|e| e.resource_id.as_deref() == Some("res-2"))
    );
    assert_eq!(
        root("resource_name=cHURN").await,
        seeded.ids(|e| e
            .resource_name
            .as_deref()
            .is_some_and(|n| n.contains("Churn")))
    );
    let tenant = |e: &AuditEvent, t: &str| e.tenant.as_deref() == Some(t);
    assert_eq!(
        root("tenant=globex").await,
        seeded.ids(|e| tenant(e, "globex"))
    );
    assert_eq!(
        root("tenant=globex&tenant=acme").await,
        seeded.ids(|e| tenant(e, "globex") || tenant(e, "acme"))
    );
    // from inclusive, to exclusive; RFC 3339 with an offset and the YYYY-MM-DD form.
    let base = common::base_time();
    let from = base - chrono::Duration::minutes(14 * 60);
    let to = base - chrono::Duration::minutes(120);
    assert_eq!(
        root("from=2026-03-10T00:00:00%2B02:00&to=2026-03-10T10:00:00Z").await,
        seeded.ids(|e| e.occurred_at >= from && e.occurred_at < to)
    );
    let midnight = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 3, 10, 0, 0, 0).unwrap();
    assert_eq!(
        root("to=2026-03-10").await,
        seeded.ids(|e| e.occurred_at < midnight)
    );
    assert_eq!(
        root("from=2026-03-10").await,
        seeded.ids(|e| e.occurred_at >= midnight)
    );
    // AND across parameters.
    assert_eq!(
        root("category=Model&status=deny&tenant=acme").await,
        seeded.ids(|e| category(e, "Model") && e.outcome == Outcome::Deny && tenant(e, "acme"))
    );
    // limit
    let page = get(&app, Some("root"), "/events?limit=5").await;
    assert_eq!(page.ids(), seeded.ids(|_| true)[..5]);
    assert!(page.json()["next_cursor"].is_string());
    let default_page = get(&app, Some("root"), "/events").await;
    assert_eq!(default_page.ids().len(), 40);
    assert!(default_page.json()["next_cursor"].is_null());
}

async fn cursor_paging(store: Arc<dyn AuditStore>) {
    let seeded = seed(&store).await;
    let app = app(store);
    let mut collected = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("/events?status=allow&limit=7&cursor={c}"),
            None => "/events?status=allow&limit=7".to_owned(),
        };
        let answer = get(&app, Some("root"), &query).await;
        collected.extend(answer.ids());
        pages += 1;
        match answer.json()["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(collected, seeded.ids(|e| e.outcome == Outcome::Allow));
    assert!(pages > 2);
    let first = get(&app, Some("root"), "/events?status=allow&limit=7")
        .await
        .json();
    let cursor = first["next_cursor"].as_str().unwrap();
    // The cursor is bound to its filters and to the viewer's tenant scope.
    get(
        &app,
        Some("root"),
        &format!("/events?status=deny&limit=7&cursor={cursor}"),
    )
    .await
    .assert_invalid("cursor");
    get(
        &app,
        Some("alice"),
        &format!("/events?status=allow&limit=7&cursor={cursor}"),
    )
    .await
    .assert_invalid("cursor");
    get(
        &app,
        Some("root"),
        &format!("/events?status=allow&cursor={}x", &cursor[1..]),
    )
    .await
    .assert_invalid("cursor");
}

async fn tenant_isolation(store: Arc<dyn AuditStore>) {
    let seeded = seed(&store).await;
    let app = app(store.clone());
    let in_tenant = |t: &'static str| move |e: &AuditEvent| e.tenant.as_deref() == Some(t);
    let list = |user: &'static str, query: &'static str| {
        let app = app.clone();
        async move {
            get(&app, Some(user), &format!("/events?limit=1000{query}"))
                .await
                .ids()
        }
    };
    assert_eq!(list("alice", "").await, seeded.ids(in_tenant("acme")));
    assert_eq!(list("dave", "").await, seeded.ids(in_tenant("globex")));
    // Asking for another tenant widens nothing.
    assert_eq!(list("alice", "&tenant=globex").await, Vec::<String>::new());
    // Tenantless events: only for viewers allowed all tenants.
    assert_eq!(list("multi", "").await, seeded.ids(|e| e.tenant.is_some()));
    assert_eq!(list("root", "").await, seeded.ids(|_| true));

    // Detail: another tenant's event is a 404, exactly like an unknown one.
    let acme = seeded.all.iter().find(|e| in_tenant("acme")(e)).unwrap();
    let globex = seeded.all.iter().find(|e| in_tenant("globex")(e)).unwrap();
    let tenantless = seeded.all.iter().find(|e| e.tenant.is_none()).unwrap();
    assert_eq!(
        get(&app, Some("alice"), &format!("/events/{}", acme.id))
            .await
            .status,
        200
    );
    for hidden in [globex, tenantless] {
        let answer = get(&app, Some("alice"), &format!("/events/{}", hidden.id)).await;
        assert_eq!(answer.status, 404);
        assert_eq!(answer.json()["error"], "not_found");
    }
    assert_eq!(
        get(&app, Some("multi"), &format!("/events/{}", tenantless.id))
            .await
            .status,
        404
    );
    let seen = get(&app, Some("root"), &format!("/events/{}", tenantless.id)).await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        serde_json::from_slice::<AuditEvent>(&seen.body).unwrap(),
        *tenantless
    );

    // Facets: only what the viewer's tenants hold.
    let mut facets = get(&app, Some("dave"), "/facets").await.json();
    let expected = store
        .facets(&audit_store::TenantScope::only(["globex"]))
        .await
        .unwrap();
    // The counts are checked in `totals_and_facet_counts`.
    facets.as_object_mut().unwrap().remove("counts");
    assert_eq!(facets, serde_json::to_value(&expected).unwrap());
    let emails: Vec<&str> = facets["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["email"].as_str())
        .collect();
    let globex_emails: std::collections::BTreeSet<&str> = seeded
        .all
        .iter()
        .filter(|e| in_tenant("globex")(e))
        .filter_map(|e| e.actor_email.as_deref())
        .collect();
    assert_eq!(emails.len(), globex_emails.len());
    assert!(emails.iter().all(|e| globex_emails.contains(e)));
    let root_facets = get(&app, Some("root"), "/facets").await.json();
    assert_eq!(
        root_facets["outcomes"],
        serde_json::json!(["allow", "deny"])
    );

    // Export: only the viewer's tenant, even when asking for another.
    for query in ["format=ndjson", "format=ndjson&tenant=globex&tenant=acme"] {
        let export = get(&app, Some("alice"), &format!("/export?{query}")).await;
        assert_eq!(export.status, 200);
        let events: Vec<AuditEvent> = export
            .text()
            .lines()
            .map(|line| serde_json::from_str::<AuditEvent>(line).unwrap())
            .collect();
        assert!(events.iter().all(|e| e.tenant.as_deref() == Some("acme")));
        let ids: Vec<String> = events
            .iter()
            .filter(|e| e.category != audit_api::AUDIT_LOG_CATEGORY)
            .map(|e| e.id.to_string())
            .collect();
        assert_eq!(ids, seeded.ids(in_tenant("acme")));
    }
    // Dave's export sees neither acme's events nor alice's exports of them.
    let dave = get(&app, Some("dave"), "/export?format=json").await;
    let events: Vec<AuditEvent> = serde_json::from_slice(&dave.body).unwrap();
    assert_eq!(
        events.iter().map(|e| e.id.to_string()).collect::<Vec<_>>(),
        seeded.ids(in_tenant("globex"))
    );
}

async fn event_detail(store: Arc<dyn AuditStore>) {
    let seeded = seed(&store).await;
    let app = app(store);
    let event = &seeded.all[0];
    let answer = get(&app, Some("alice"), &format!("/events/{}", event.id)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_slice::<AuditEvent>(&answer.body).unwrap(),
        *event
    );
    let unknown = get(
        &app,
        Some("alice"),
        &format!("/events/{}", uuid::Uuid::now_v7()),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"], "not_found");
    get(&app, Some("alice"), "/events/not-a-uuid")
        .await
        .assert_invalid("id");
    get(&app, Some("alice"), "/events/%FF%FE")
        .await
        .assert_invalid("id");
    get(
        &app,
        Some("alice"),
        &format!("/events/{}?limit=3", event.id),
    )
    .await
    .assert_invalid("limit");
}

/// (path, what a denied request is recorded as)
const GUARDED: &[(&str, &str)] = &[
    ("/events", "view"),
    ("/events/0190b6a4-5e2a-7000-8000-000000000000", "view"),
    ("/facets", "view"),
    ("/checkpoint", "view"),
    ("/openapi.json", "view"),
    ("/export", "download"),
    ("/export/manifest", "download"),
    ("/no-such-route", "view"),
];

async fn access_is_checked_and_denials_are_recorded(store: Arc<dyn AuditStore>) {
    let app = app(store.clone());
    for (path, _) in GUARDED {
        let anonymous = get(&app, None, path).await;
        assert_eq!(anonymous.status, 401, "{path}");
        assert_eq!(anonymous.json()["error"], "unauthenticated", "{path}");
        assert!(anonymous.json()["message"].is_string());
        let bob = get(&app, Some("bob"), path).await;
        assert_eq!(bob.status, 403, "{path}");
        assert_eq!(bob.json()["error"], "forbidden", "{path}");
    }
    // erin may view but not export.
    assert_eq!(get(&app, Some("erin"), "/events").await.status, 200);
    assert_eq!(get(&app, Some("erin"), "/facets").await.status, 200);
    let erin_export = get(&app, Some("erin"), "/export").await;
    assert_eq!(erin_export.status, 403);
    assert!(
        erin_export.json()["message"]
            .as_str()
            .unwrap()
            .contains("export")
    );
    // Access is checked before parameters: a denied request learns nothing about them.
    assert_eq!(get(&app, None, "/events?bogus=1").await.status, 401);
    // Unknown routes under the prefix are 404 only for viewers.
    assert_eq!(get(&app, Some("erin"), "/no-such-route").await.status, 404);

    // The page: denials are HTML pages saying why.
    let page = get(&app, None, "").await;
    assert_eq!(page.status, 401);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().contains("Sign in"));
    let page = get(&app, Some("bob"), "").await;
    assert_eq!(page.status, 403);
    assert!(page.text().contains("permission"));
    let page = get(&app, Some("erin"), "").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<title>Activity log</title>"));
    assert!(
        page.text()
            .contains("<script type=\"module\" src=\"assets/app.js\">")
    );
    // erin may view but not export: the page knows, and greets her.
    assert!(
        page.text()
            .contains("<meta name=\"audit-can-export\" content=\"false\">")
    );
    assert!(page.text().contains("content=\"erin@acme.test\""));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"));
    assert!(csp.contains("script-src 'self';"));
    assert!(!csp.contains("unsafe-inline"));
    // The page's files are guarded like every route.
    for (asset, media_type) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let served = get(&app, Some("erin"), asset).await;
        assert_eq!(served.status, 200, "{asset}");
        assert!(
            served.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(media_type),
            "{asset}"
        );
        assert!(!served.text().is_empty());
        assert_eq!(get(&app, Some("bob"), asset).await.status, 403, "{asset}");
    }

    // Every denial above was recorded: anonymous and bob on each guarded route, erin's
    // export, the anonymous parameter probe, the two page denials and bob's three asset
    // requests.
    let denials = get(
        &app,
        Some("root"),
        "/events?category=Audit%20Log&status=deny&limit=1000",
    )
    .await;
    let denials: Vec<AuditEvent> = serde_json::from_value(denials.json()["items"].clone()).unwrap();
    assert_eq!(denials.len(), GUARDED.len() * 2 + 1 + 1 + 2 + 3);
    for (path, action) in GUARDED {
        let on_path: Vec<&AuditEvent> = denials
            .iter()
            .filter(|e| e.path == format!("{}{path}", common::PREFIX))
            .collect();
        assert!(
            on_path.iter().all(|e| e.action.as_str() == *action),
            "{path}"
        );
        let statuses: Vec<u16> = on_path.iter().map(|e| e.status).collect();
        assert!(
            statuses.contains(&401) && statuses.contains(&403),
            "{path}: {statuses:?}"
        );
    }
    let bob_denial = denials
        .iter()
        .find(|e| e.actor_email.as_deref() == Some("bob@acme.test"))
        .unwrap();
    assert_eq!(bob_denial.tenant.as_deref(), Some("acme"));
    assert_eq!(bob_denial.method, "GET");
    assert!(bob_denial.reason.as_deref().unwrap().contains("view"));
    assert!(
        denials
            .iter()
            .all(|e| e.category == "Audit Log" && e.outcome == Outcome::Deny)
    );
    let anonymous = denials.iter().find(|e| e.status == 401).unwrap();
    assert_eq!(anonymous.actor_email, None);
    assert_eq!(anonymous.tenant, None);
    // The route is the matched pattern.
    assert!(
        denials
            .iter()
            .any(|e| e.route == format!("{}/events/{{id}}", common::PREFIX))
    );
    // Successful views are not recorded.
    let allowed = get(
        &app,
        Some("root"),
        "/events?category=Audit%20Log&status=allow",
    )
    .await;
    assert_eq!(allowed.ids().len(), 0);
}

fn csv_rows(answer: &Answer) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(answer.body.as_ref());
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

async fn export_formats_parse_back(store: Arc<dyn AuditStore>) {
    let seeded = seed(&store).await;
    let app = app(store);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let acme: Vec<&AuditEvent> = {
        let ids = seeded.ids(|e| e.tenant.as_deref() == Some("acme"));
        ids.iter()
            .map(|id| seeded.all.iter().find(|e| e.id.to_string() == *id).unwrap())
            .collect()
    };

    // CSV: header row, every field, RFC 4180, attributes as JSON text.
    let csv_answer = get(&app, Some("alice"), "/export").await;
    assert_eq!(csv_answer.status, 200);
    assert_eq!(
        csv_answer.headers["content-type"],
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        csv_answer.headers["content-disposition"],
        format!("attachment; filename=\"audit-log-{today}.csv\"").as_str()
    );
    let (header, rows) = csv_rows(&csv_answer);
    assert_eq!(
        header,
        Column::ALL.iter().map(|c| c.name()).collect::<Vec<_>>()
    );
    assert_eq!(rows.len(), acme.len());
    for (row, event) in rows.iter().zip(&acme) {
        let json = serde_json::to_value(event).unwrap();
        for (cell, column) in row.iter().zip(Column::ALL) {
            let expected = match &json[column.name()] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                Value::Object(_) => serde_json::to_string(&json[column.name()]).unwrap(),
                other => other.to_string(),
            };
            assert_eq!(cell, &expected, "{}", column.name());
        }
    }

    // JSON: one array, every event equal to what was stored.
    let json_answer = get(&app, Some("alice"), "/export?format=json").await;
    assert_eq!(json_answer.headers["content-type"], "application/json");
    assert_eq!(
        json_answer.headers["content-disposition"],
        format!("attachment; filename=\"audit-log-{today}.json\"").as_str()
    );
    let events: Vec<AuditEvent> = serde_json::from_slice(&json_answer.body).unwrap();
    // The CSV export just made is itself an acme event now, and the newest.
    assert_eq!(events[0].category, audit_api::AUDIT_LOG_CATEGORY);
    assert_eq!(events[1..].iter().collect::<Vec<_>>(), acme);

    // NDJSON: one event per line.
    let ndjson = get(&app, Some("alice"), "/export?format=ndjson").await;
    assert_eq!(ndjson.headers["content-type"], "application/x-ndjson");
    let events: Vec<AuditEvent> = ndjson
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        events[..2]
            .iter()
            .filter(|e| e.category == audit_api::AUDIT_LOG_CATEGORY)
            .count(),
        2
    );
    assert_eq!(events[2..].iter().collect::<Vec<_>>(), acme);

    // An empty result is still a well-formed file of each format.
    let empty = get(&app, Some("alice"), "/export?format=json&category=Nothing").await;
    assert_eq!(
        serde_json::from_slice::<Vec<Value>>(&empty.body).unwrap(),
        Vec::<Value>::new()
    );
    let empty = get(&app, Some("alice"), "/export?category=Nothing").await;
    let (header, rows) = csv_rows(&empty);
    assert_eq!(header.len(), Column::ALL.len());
    assert!(rows.is_empty());
    let empty = get(
        &app,
        Some("alice"),
        "/export?format=ndjson&category=Nothing",
    )
    .await;
    assert!(empty.body.is_empty());
}

async fn export_columns_and_filters(store: Arc<dyn AuditStore>) {
    let seeded = seed(&store).await;
    let app = app(store);
    let expected =
        seeded.ids(|e| e.tenant.as_deref() == Some("acme") && e.outcome == Outcome::Deny);

    let answer = get(
        &app,
        Some("alice"),
        "/export?status=deny&columns=action,id,occurred_at",
    )
    .await;
    let (header, rows) = csv_rows(&answer);
    assert_eq!(header, ["action", "id", "occurred_at"]);
    assert_eq!(
        rows.iter().map(|r| r[1].clone()).collect::<Vec<_>>(),
        expected
    );

    let answer = get(
        &app,
        Some("alice"),
        "/export?status=deny&format=json&columns=outcome,id",
    )
    .await;
    let text = answer.text();
    // Keys in the requested order, and only those.
    assert!(text.contains("{\"outcome\":\"deny\",\"id\":\""), "{text}");
    let objects: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&text).unwrap();
    assert_eq!(objects.len(), expected.len());
    assert!(
        objects
            .iter()
            .all(|o| o.len() == 2 && o["outcome"] == "deny")
    );
    let answer = get(
        &app,
        Some("alice"),
        "/export?status=deny&format=ndjson&columns=attributes,tenant",
    )
    .await;
    for line in answer.text().lines() {
        assert!(line.starts_with("{\"attributes\":{"), "{line}");
        let object: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
        assert_eq!(object["tenant"], "acme");
    }

    // Each export is recorded: action download, its filters, format and columns.
    let recorded = get(
        &app,
        Some("root"),
        "/events?category=Audit%20Log&action=download",
    )
    .await;
    let recorded: Vec<AuditEvent> =
        serde_json::from_value(recorded.json()["items"].clone()).unwrap();
    assert_eq!(recorded.len(), 3);
    let csv_export = recorded.last().unwrap();
    assert_eq!(csv_export.outcome, Outcome::Allow);
    assert_eq!(csv_export.actor_email.as_deref(), Some("alice@acme.test"));
    assert_eq!(csv_export.actor_id.as_deref(), Some("u-alice"));
    assert_eq!(csv_export.tenant.as_deref(), Some("acme"));
    assert_eq!(csv_export.status, 200);
    assert_eq!(csv_export.path, format!("{}/export", common::PREFIX));
    assert!(
        csv_export
            .resource_name
            .as_deref()
            .unwrap()
            .ends_with(".csv")
    );
    assert_eq!(
        csv_export.attributes["filters"]["status"],
        serde_json::json!(["deny"])
    );
    assert_eq!(csv_export.attributes["format"], "csv");
    assert_eq!(
        csv_export.attributes["columns"],
        serde_json::json!(["action", "id", "occurred_at"])
    );
    assert_eq!(
        csv_export.attributes["tenant_scope"],
        serde_json::json!(["acme"])
    );
    // Alice, limited to acme, sees her own exports too.
    assert_eq!(
        get(&app, Some("alice"), "/events?category=Audit%20Log")
            .await
            .ids()
            .len(),
        3
    );
}

async fn formula_cells_are_neutralised(store: Arc<dyn AuditStore>) {
    // NUL cannot be stored in PostgreSQL text; the encoder's own test covers it for both.
    let triggers = [
        "=HYPERLINK(\"http://evil\")",
        "+1+1",
        "-2+3",
        "@SUM(A1:A9)",
        "\tcmd",
        "\rcmd",
    ];
    let mut events = Vec::new();
    for (index, trigger) in triggers.iter().enumerate() {
        let mut e = common::event(
            i64::try_from(index).unwrap(),
            Some("acme"),
            trigger,
            Action::Create,
        );
        e.resource_name = Some((*trigger).to_owned());
        e.actor_name = Some(format!("{trigger} name"));
        e.user_agent = Some("a, \"quoted\"\nsecond line".into());
        e.attributes.insert("note".into(), Value::from(*trigger));
        events.push(e);
    }
    store.append(&events).await.unwrap();
    let app = app(store);
    let answer = get(
        &app,
        Some("alice"),
        "/export?columns=category,resource_name,actor_name,user_agent,attributes",
    )
    .await;
    let (_, rows) = csv_rows(&answer);
    assert_eq!(rows.len(), triggers.len());
    for row in &rows {
        let original = row[0].strip_prefix('\'').expect("category neutralised");
        assert!(triggers.contains(&original), "{row:?}");
        assert_eq!(row[1], format!("'{original}"));
        assert_eq!(row[2], format!("'{original} name"));
        // Quoting survives commas, quotes and newlines; attributes are JSON text.
        assert_eq!(row[3], "a, \"quoted\"\nsecond line");
        assert!(row[4].starts_with('{'));
    }
    // JSON formats carry the values unchanged: neutralisation is a CSV concern.
    let json = get(
        &app,
        Some("alice"),
        "/export?format=json&columns=category&action=create",
    )
    .await
    .json();
    let categories: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["category"].as_str().unwrap())
        .collect();
    assert!(categories.iter().all(|c| triggers.contains(c)));
}

async fn bad_input_never_fails_the_server(store: Arc<dyn AuditStore>) {
    seed(&store).await;
    let app = app(store);
    let named: &[(&str, &str)] = &[
        ("/events?catgory=Model", "catgory"),
        ("/events?format=csv", "format"),
        ("/events?columns=id", "columns"),
        ("/events?limit=0", "limit"),
        ("/events?limit=1001", "limit"),
        ("/events?limit=-1", "limit"),
        ("/events?limit=99999999999999999999999", "limit"),
        ("/events?limit=5&limit=6", "limit"),
        ("/events?status=maybe", "status"),
        ("/events?action=Not%20Snake", "action"),
        ("/events?from=yesterday", "from"),
        ("/events?from=2026-02-30", "from"),
        ("/events?from=99999-01-01T00:00:00Z", "from"),
        ("/events?to=0000-01-01", "to"),
        ("/events?from=2026-03-02&to=2026-03-01", "from"),
        ("/events?from=2026-03-01&from=2026-03-02", "from"),
        ("/events?cursor=garbage", "cursor"),
        ("/events?cursor=", "cursor"),
        ("/events?request_id=a&request_id=b", "request_id"),
        ("/events?user=a%00b", "user"),
        ("/events?=x", ""),
        ("/export?cursor=x", "cursor"),
        ("/export?limit=5", "limit"),
        ("/export?format=xlsx", "format"),
        ("/export?format=csv&format=json", "format"),
        ("/export?columns=id,password", "columns"),
        ("/export?columns=", "columns"),
        ("/export?columns=id,,action", "columns"),
        ("/export?columns=id,id", "columns"),
        ("/facets?tenant=", "tenant"),
        ("/facets?cursor=x", "cursor"),
        ("/openapi.json?x=1", "x"),
        ("/events/not-a-uuid", "id"),
    ];
    for (path, parameter) in named {
        get(&app, Some("root"), path)
            .await
            .assert_invalid(parameter);
    }
    let long_value = format!("/events?resource_name={}", "x".repeat(5000));
    get(&app, Some("root"), &long_value)
        .await
        .assert_invalid("resource_name");
    let many = format!("/events?{}", "category=a&".repeat(101));
    get(&app, Some("root"), &many)
        .await
        .assert_invalid("category");
    // Odd but harmless input: never a 5xx.
    let odd = [
        "/events?%FF%FE=%C0",
        "/events?category=%FF",
        "/events?resource_name=%25_%5C",
        "/events?resource_name=%27%3B%20DROP%20TABLE%20audit_events%3B--",
        "/events?user=%E2%80%AE",
        "/events?&&&",
        "/events?category=%",
        "/export?resource_name=%22%2C%0A",
        "/events?from=1970-01-01T00:00:00Z&to=9999-12-31T23:59:59.999999Z",
        "/events?from=0001-01-01",
    ];
    for path in odd {
        let answer = get(&app, Some("root"), path).await;
        assert!(
            answer.status.is_success() || answer.status == 400,
            "{path}: {}",
            answer.status
        );
    }
}

#[tokio::test]
async fn openapi_lists_every_route_and_parameter() {
    let app = app(common::sqlite_store().await);
    let document = get(&app, Some("erin"), "/openapi.json").await;
    assert_eq!(document.status, 200);
    let document = document.json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    let documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    for route in [
        "/",
        "/events",
        "/events/{id}",
        "/facets",
        "/export",
        "/checkpoint",
        "/export/manifest",
        "/openapi.json",
    ] {
        assert!(documented.contains(&route), "{route} missing");
    }
    // Every documented path answers (not 404/405) through the real router.
    for path in &documented {
        // Nested, the page's `/` is the bare prefix.
        let concrete = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let concrete = if concrete == "/" {
            String::new()
        } else {
            concrete
        };
        let status = get(&app, Some("root"), &concrete).await.status;
        // No event with a fresh id, and no checkpoint in an unsigned store.
        let may_be_absent = path.contains("{id}") || *path == "/checkpoint";
        // Manifests need a signer, which this router was not given.
        let needs_signer = *path == "/export/manifest";
        assert!(
            status == 200 || (may_be_absent && status == 404) || (needs_signer && status == 501),
            "{path}: {status}"
        );
    }
    let names = |path: &str| -> Vec<String> {
        let mut names: Vec<String> = paths[path]["get"]["parameters"]
            .as_array()
            .map(|params| {
                params
                    .iter()
                    .filter(|p| p["in"] == "query")
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let accepted = |endpoint: audit_api::Endpoint| -> Vec<String> {
        let mut names: Vec<String> = PARAMETERS
            .iter()
            .filter(|p| p.accepted_by(endpoint))
            .map(|p| p.name.to_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("/events"), accepted(audit_api::Endpoint::Events));
    assert_eq!(names("/export"), accepted(audit_api::Endpoint::Export));
    assert_eq!(
        names("/export/manifest"),
        accepted(audit_api::Endpoint::Export)
    );
    assert!(names("/export").contains(&"chain_head".to_owned()));
    assert_eq!(names("/facets"), accepted(audit_api::Endpoint::Facets));
    assert_eq!(
        names("/histogram"),
        accepted(audit_api::Endpoint::Histogram)
    );
    assert!(names("/histogram").contains(&"interval".to_owned()));
    assert!(names("/facets").contains(&"category".to_owned()));
    for path in ["/events/{id}", "/checkpoint", "/openapi.json", "/"] {
        assert!(names(path).is_empty(), "{path}");
    }
    // And the parser accepts every documented parameter (the table is the parser's own).
    for name in names("/events") {
        let spec = PARAMETERS.iter().find(|p| p.name == name).unwrap();
        assert!(spec.events);
    }
    // The event schema has exactly the fields of a stored event's JSON (`chain` is set on
    // events read from a store).
    let mut event = common::event(0, None, "Model", Action::Create);
    event.chain = Some(audit_store::ChainLink {
        seq: 1,
        prev_hash: audit_store::ChainHash::GENESIS,
        hash: audit_store::ChainHash([1; 32]),
        version: audit_store::ChainVersion::V2,
    });
    let mut event_keys: Vec<String> = serde_json::to_value(&event)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    event_keys.sort();
    let mut schema_keys: Vec<String> =
        document["components"]["schemas"]["AuditEvent"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
    schema_keys.sort();
    assert_eq!(schema_keys, event_keys);
    let mut facet_keys: Vec<String> =
        document["components"]["schemas"]["AuditFacets"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
    facet_keys.sort();
    assert_eq!(
        facet_keys,
        ["actions", "categories", "counts", "outcomes", "users"]
    );
    let page_keys = document["components"]["schemas"]["AuditEventPage"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(page_keys, ["items", "next_cursor", "total"]);
    let count_keys = document["components"]["schemas"]["AuditMatchCount"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(count_keys, ["count", "exact"]);
    // The column names are the event's fields, but for its chain link.
    let mut columns: Vec<String> = Column::ALL.iter().map(|c| c.name().to_owned()).collect();
    columns.sort();
    event_keys.retain(|key| key != "chain");
    assert_eq!(columns, event_keys);
    let link = &document["components"]["schemas"]["AuditChainLink"]["properties"];
    for key in ["seq", "prev_hash", "hash"] {
        assert!(link[key].is_object(), "ChainLink.{key}");
    }
    let checkpoint = &document["components"]["schemas"]["AuditCheckpoint"]["properties"];
    for key in [
        "seq",
        "head",
        "created_at",
        "kind",
        "public_key",
        "signature",
    ] {
        assert!(checkpoint[key].is_object(), "Checkpoint.{key}");
    }
}

#[tokio::test]
async fn mounted_page_lives_at_the_trailing_slash_and_the_bare_prefix_redirects() {
    let mounted = axum::Router::new().merge(
        audit_api::AuditRouter::from_shared(common::sqlite_store().await, common::test_policy)
            .mount(common::PREFIX),
    );
    page_lives_at_the_trailing_slash(&mounted).await;
}

/// The DESIGN.md layout: the page at `{prefix}/`, the bare prefix redirecting there with its
/// query, the page's assets, access and the API beside it.
async fn page_lives_at_the_trailing_slash(app: &axum::Router) {
    let redirect = get(app, Some("erin"), "?x=1").await;
    assert_eq!(redirect.status, 308);
    assert_eq!(
        redirect.headers["location"],
        format!("{}/?x=1", common::PREFIX).as_str()
    );
    let page = get(app, Some("erin"), "/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("src=\"assets/app.js\""));
    assert!(!page.text().contains("<base"));
    assert_eq!(page.headers["cache-control"], "no-store");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(get(app, Some("erin"), "/assets/app.css").await.status, 200);
    assert_eq!(get(app, None, "/").await.status, 401);
    assert_eq!(get(app, Some("bob"), "/").await.status, 403);
    assert_eq!(get(app, Some("erin"), "/events").await.status, 200);
    let unknown = get(app, Some("erin"), "/nothing").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"], "not_found");
}

#[tokio::test]
async fn nested_page_lives_at_the_bare_prefix_with_a_base_href() {
    let nested = app(common::sqlite_store().await);
    let page = get(&nested, Some("erin"), "").await;
    assert_eq!(page.status, 200);
    assert!(
        page.text()
            .contains(&format!("<base href=\"{}/\">", common::PREFIX))
    );
    assert_eq!(get(&nested, None, "").await.status, 401);
    // axum's `nest` never hands `{prefix}/` to the nested router: the host's fallback (here
    // axum's default, an empty 404) answers it. This is what the docs say `nest` does.
    let slash = get(&nested, Some("erin"), "/").await;
    assert_eq!(slash.status, 404);
    assert!(slash.body.is_empty());
    assert_eq!(get(&nested, Some("erin"), "/events").await.status, 200);
}

#[tokio::test]
async fn page_nested_as_a_service_lives_at_the_trailing_slash_like_mount() {
    let store = common::sqlite_store().await;
    // A host router with state of its own: `nest_service` takes the router whatever it is.
    let nested: axum::Router = axum::Router::<u8>::new()
        .nest_service(
            common::PREFIX,
            audit_api::AuditRouter::from_shared(store.clone(), common::test_policy).into_router(),
        )
        .with_state(7);
    page_lives_at_the_trailing_slash(&nested).await;
    // A denied visit to the page is recorded under the page's own route, once slashed.
    let denials = store
        .query(
            &audit_store::EventFilter {
                outcomes: vec![Outcome::Deny],
                ..Default::default()
            },
            &audit_store::TenantScope::All,
            &Default::default(),
        )
        .await
        .unwrap();
    let page_denial = &denials.items[0];
    assert_eq!(page_denial.route, format!("{}/", common::PREFIX));
    assert_eq!(page_denial.path, format!("{}/", common::PREFIX));
}

#[tokio::test]
async fn responses_are_not_cached() {
    let app = app(common::sqlite_store().await);
    let answer = get(&app, Some("erin"), "/events").await;
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(answer.headers["x-content-type-options"], "nosniff");
    let denied = get(&app, None, "/events").await;
    assert_eq!(denied.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn denial_pages_are_styled_and_link_to_sign_in() {
    let store = common::sqlite_store().await;
    let with_link = axum::Router::new().merge(
        audit_api::AuditRouter::from_shared(store.clone(), common::test_policy)
            .sign_in_url("/login?next=/admin/audit/")
            .mount(common::PREFIX),
    );
    let signed_out = get(&with_link, None, "/").await;
    assert_eq!(signed_out.status, 401);
    let html = signed_out.text();
    assert!(
        html.contains("<h1>Sign in to see the activity log</h1>"),
        "{html}"
    );
    assert!(
        html.contains("id=\"sign-in\" href=\"/login?next=/admin/audit/\""),
        "{html}"
    );
    // Styled like the page, by one inline style the policy names by its hash.
    assert!(html.contains("<style>") && html.contains("class=\"notice\""));
    let policy = signed_out.headers["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(policy.contains("style-src 'sha256-"), "{policy}");
    assert!(!policy.contains("unsafe"));
    assert!(policy.contains("script-src 'self'"));
    let forbidden = get(&with_link, Some("bob"), "/").await;
    assert_eq!(forbidden.status, 403);
    assert!(forbidden.text().contains("Sign in as someone else"));
    assert!(
        forbidden
            .text()
            .contains("you do not hold the audit permission")
    );
    // The page itself knows the link, for a session that ends while it is open.
    let page = get(&with_link, Some("erin"), "/").await;
    assert!(
        page.text()
            .contains("<meta name=\"audit-sign-in-url\" content=\"/login?next=/admin/audit/\">")
    );
    // Without a sign-in URL: no link, still styled.
    let without = app(store);
    let plain = get(&without, None, "").await;
    assert_eq!(plain.status, 401);
    assert!(!plain.text().contains("id=\"sign-in\""));
    assert!(plain.text().contains("Sign in to the application"));
    // The JSON routes keep their JSON errors.
    let json = get(&with_link, None, "/events").await;
    assert_eq!(json.status, 401);
    assert_eq!(json.json()["error"], "unauthenticated");
}
