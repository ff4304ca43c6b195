//! The test bodies, each run against every backend.

use std::collections::HashSet;
use std::sync::Arc;

use audit_store::{
    Action, AuditEvent, AuditStore, ChainBreak, CheckpointKind, Cursor, EventFilter, HttpFacts,
    Limit, MatchCount, Outcome, PageRequest, StoreError, TenantScope,
};
use chrono::{Duration, TimeZone, Utc};
use futures_util::TryStreamExt;
use serde_json::json;

use audit_store::verify_chain;
use audit_store::{QuarantinedEvent, RecorderRun};

pub use crate::forwarding::*;
use crate::harness::Harness;
use crate::model::{self, expected, ids, varied_events, walk};

async fn seed(store: &dyn AuditStore, events: &[AuditEvent]) {
    for chunk in events.chunks(1000) {
        store.append(chunk).await.unwrap();
    }
}

async fn all(store: &dyn AuditStore, filter: &EventFilter, scope: &TenantScope) -> Vec<AuditEvent> {
    walk(store, filter, scope, 1000).await
}

fn filter() -> EventFilter {
    EventFilter::default()
}

/// The event as it was before the store gave it a place in the chain.
fn unchained(event: &AuditEvent) -> AuditEvent {
    AuditEvent {
        chain: None,
        ..event.clone()
    }
}

pub async fn round_trip_every_field(h: &Harness) {
    let long = "ℓ".repeat(40_000);
    let full = AuditEvent::builder("Dataset Rule ✓", Action::custom("change_model").unwrap())
        .occurred_at(Utc.timestamp_micros(1_767_225_600_123_456).unwrap())
        .http(HttpFacts::new(
            "PATCH",
            "/api/plans/{id}/model",
            "/api/plans/%E2%9C%93/model",
            599,
        ))
        .tenant("ácme")
        .request_id("r".repeat(128))
        .actor_id("id-😀")
        .actor_email("Zoë@Example.test")
        .actor_name("")
        .denied("blocked: \"quotes\", 'apostrophes', \\ and\nnewlines\t")
        .resource("", long.clone())
        // A double that needs all 17 significant digits must come back bit for bit.
        .duration_ms(0.1 + 0.2)
        .client_ip("2001:db8::1")
        .user_agent(long.clone())
        .attribute("changes", json!({"name": ["a", "b"], "n": [null, 3.5]}))
        .attribute("nested", json!({"deep": [1, {"x": "😀"}], "empty": {}}))
        .attribute("", "")
        .build();
    let minimal = AuditEvent::builder("", Action::Create)
        .occurred_at(Utc.timestamp_micros(1).unwrap())
        .internal("")
        .duration_ms(1e-7)
        .build();
    let mut events = vec![full, minimal];
    h.store.append(&events).await.unwrap();
    let mut back = all(&*h.store, &filter(), &TenantScope::All).await;
    model::sort_newest_first(&mut events);
    assert_eq!(back.len(), 2);
    for (stored, original) in back.iter().zip(&events) {
        assert_eq!(&unchained(stored), original);
        // The JSON form round-trips too, chain link included.
        let json = serde_json::to_string(stored).unwrap();
        assert_eq!(&serde_json::from_str::<AuditEvent>(&json).unwrap(), stored);
    }
    // Appended in the order given: the first event is the first link of the chain.
    let links: Vec<_> = back.iter().map(|e| e.chain.unwrap()).collect();
    assert_eq!(links[0].seq, 1);
    assert_eq!(links[0].prev_hash, audit_store::ChainHash::GENESIS);
    assert_eq!(links[1].seq, 2);
    assert_eq!(links[1].prev_hash, links[0].hash);
    assert_eq!(h.store.chain_head().await.unwrap().hash, links[1].hash);
    let minimal = back.pop().unwrap();
    assert_eq!(minimal.tenant, None);
    assert_eq!(minimal.actor_email, None);
    assert!(minimal.attributes.is_empty());
    assert_eq!(minimal.method, "INTERNAL");
    assert_eq!(minimal.status, 0);
}

/// Events with every kind of value the fast read paths must write exactly as the decoded
/// events are written: non-ASCII, escapes, long text, big and tiny numbers, NUL (stored as
/// U+FFFD), empty strings and absent fields.
fn tricky_events() -> Vec<AuditEvent> {
    let long = "ℓ".repeat(5_000);
    vec![
        AuditEvent::builder("Dataset Rule ✓", Action::custom("change_model").unwrap())
            .occurred_at(Utc.timestamp_micros(1_767_225_600_123_456).unwrap())
            .http(HttpFacts::new(
                "PATCH",
                "/api/plans/{id}",
                "/api/plans/%E2%9C%93",
                599,
            ))
            .tenant("ácme")
            .request_id("r".repeat(128))
            .actor_id("id-😀")
            .actor_email("Zoë@Example.test")
            .actor_name("")
            .denied("blocked: \"quotes\", \\ and\nnewlines\t\u{1}\u{7f}</script>")
            .resource("", long.clone())
            .duration_ms(0.1 + 0.2)
            .client_ip("2001:db8::1")
            .user_agent(long)
            .attribute(
                "changes",
                json!({"name": ["a", "b"], "n": [null, 3.5, 1e300]}),
            )
            .attribute(
                "nested",
                json!({"z": [1, {"y": "😀", "x": true}], "a": {}, "é": "\"\\"}),
            )
            .attribute("big", json!([u64::MAX, i64::MIN, 0.000_001, 12]))
            .attribute("", "")
            .build(),
        AuditEvent::builder("", Action::Create)
            .occurred_at(Utc.timestamp_micros(1).unwrap())
            .internal("")
            .duration_ms(1e-7)
            .build(),
        // NUL becomes U+FFFD in text and in attributes, keys included.
        AuditEvent::builder("Mo\0del", Action::Delete)
            .http(HttpFacts::new("POST", "/api/models", "/api/models\0", 201))
            .resource_name("nul\0name")
            .attribute("k\0", json!({"v": ["\0"]}))
            .duration_ms(3.0)
            .build(),
    ]
}

/// Verification hashes rows from their columns without building events (the fast path);
/// its bytes must be exactly `canonical_json` of the event read back, for every kind of value.
pub async fn fast_verification_path_writes_the_canonical_json(h: &Harness) {
    let mut events = tricky_events();
    events.extend(varied_events(13, 200));
    h.store.append(&events).await.unwrap();
    let stored: Vec<AuditEvent> = h.store.chain_after(0).try_collect().await.unwrap();
    let fast = h.fast_canonical_rows().await;
    assert_eq!(fast.len(), stored.len());
    for (event, fast) in stored.iter().zip(fast) {
        let expected = audit_store::canonical_json(event);
        assert_eq!(
            fast.as_deref().map(String::from_utf8_lossy),
            Some(String::from_utf8_lossy(&expected)),
            "seq {:?}",
            event.chain.map(|link| link.seq)
        );
    }
    let report = verify_chain(&*h.store, &signer().verifying_key())
        .await
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!(report.events_checked, stored.len() as u64);
}

pub async fn nul_characters_are_stored_as_replacement_characters(h: &Harness) {
    let event = AuditEvent::builder("Mo\0del", Action::Create)
        .http(HttpFacts::new("POST", "/api/models", "/api/models\0", 201))
        .resource_name("nul\0name")
        .attribute("k\0", json!({"v": ["\0"]}))
        .build();
    h.store.append(std::slice::from_ref(&event)).await.unwrap();
    let stored = h
        .store
        .get(event.id, &TenantScope::All)
        .await
        .unwrap()
        .unwrap();
    let r = audit_store::NUL_REPLACEMENT;
    assert_eq!(stored.category, format!("Mo{r}del"));
    assert_eq!(stored.path, format!("/api/models{r}"));
    assert_eq!(stored.resource_name, Some(format!("nul{r}name")));
    assert_eq!(
        stored.attributes[&format!("k{r}")],
        json!({"v": [r.to_string()]})
    );
}

pub async fn overlong_indexed_values_are_cut_not_refused(h: &Harness) {
    // On PostgreSQL an index entry this long is refused: the batch would fail forever.
    let long = "x".repeat(10_000);
    let event = AuditEvent::builder(long.clone(), Action::Create)
        .http(HttpFacts::new("POST", "/api/models", "/api/models", 201))
        .tenant(long.clone())
        .request_id(long.clone())
        .actor_id(long.clone())
        .actor_email(long.clone())
        .resource(long.clone(), long.clone())
        .build();
    h.store.append(std::slice::from_ref(&event)).await.unwrap();
    let stored = h
        .store
        .get(event.id, &TenantScope::All)
        .await
        .unwrap()
        .unwrap();
    let max = audit_store::MAX_INDEXED_TEXT;
    assert_eq!(stored.category.len(), max);
    assert_eq!(stored.request_id.len(), max);
    assert_eq!(
        stored.resource_name.as_deref(),
        Some(long.as_str()),
        "not B-tree indexed"
    );
    assert_eq!(
        stored.attributes[audit_store::TRUNCATED_ATTRIBUTE],
        json!([
            "tenant",
            "request_id",
            "actor_id",
            "actor_email",
            "category",
            "resource_id"
        ])
    );
}

pub async fn empty_batch_is_a_no_op(h: &Harness) {
    h.store.append(&[]).await.unwrap();
    assert!(
        all(&*h.store, &filter(), &TenantScope::All)
            .await
            .is_empty()
    );
}

/// Every filter field on its own, against the reference model.
fn single_filters() -> Vec<EventFilter> {
    let t = model::base_time();
    vec![
        EventFilter {
            categories: vec!["Model".into()],
            ..filter()
        },
        EventFilter {
            actions: vec![Action::Train],
            ..filter()
        },
        EventFilter {
            actions: vec![Action::custom("change_model").unwrap()],
            ..filter()
        },
        EventFilter {
            outcomes: vec![Outcome::Deny],
            ..filter()
        },
        EventFilter {
            outcomes: vec![Outcome::Allow],
            ..filter()
        },
        EventFilter {
            users: vec!["u-bob".into()],
            ..filter()
        },
        EventFilter {
            request_id: Some("req-5".into()),
            ..filter()
        },
        EventFilter {
            resource_id: Some("r-3".into()),
            ..filter()
        },
        EventFilter {
            resource_name: Some("churn".into()),
            ..filter()
        },
        EventFilter {
            tenants: vec!["globex".into()],
            ..filter()
        },
        EventFilter {
            from: Some(t + Duration::days(30)),
            ..filter()
        },
        EventFilter {
            to: Some(t + Duration::days(10)),
            ..filter()
        },
        EventFilter {
            categories: vec!["No such category".into()],
            ..filter()
        },
    ]
}

pub async fn every_filter_alone(h: &Harness) {
    let events = varied_events(1, 600);
    seed(&*h.store, &events).await;
    for f in single_filters() {
        let want = expected(&events, &f, &TenantScope::All);
        let got = all(&*h.store, &f, &TenantScope::All).await;
        assert_eq!(ids(&got), ids(&want), "filter {f:?}");
    }
    let total = all(&*h.store, &filter(), &TenantScope::All).await;
    assert_eq!(total.len(), 600);
}

pub async fn combined_filters_and_repeated_values(h: &Harness) {
    let events = varied_events(2, 800);
    seed(&*h.store, &events).await;
    let t = model::base_time();
    let filters = [
        EventFilter {
            categories: vec!["Model".into(), "Plan".into()],
            actions: vec![Action::Create, Action::Delete],
            ..filter()
        },
        EventFilter {
            users: vec!["u-alice".into(), "dave@globex.test".into()],
            outcomes: vec![Outcome::Allow],
            from: Some(t + Duration::days(5)),
            to: Some(t + Duration::days(40)),
            ..filter()
        },
        EventFilter {
            tenants: vec!["acme".into(), "globex".into()],
            resource_name: Some("PLAN".into()),
            categories: vec!["Plan".into(), "Field".into()],
            ..filter()
        },
        EventFilter {
            users: vec!["u-bob".into()],
            categories: vec!["Model".into()],
            from: Some(t + Duration::days(30)),
            outcomes: vec![Outcome::Allow, Outcome::Deny],
            actions: vec![Action::Train, Action::Update, Action::Create],
            tenants: vec!["acme".into()],
            ..filter()
        },
    ];
    for f in filters {
        let want = expected(&events, &f, &TenantScope::All);
        assert!(!want.is_empty(), "test data should match {f:?}");
        let got = all(&*h.store, &f, &TenantScope::All).await;
        assert_eq!(ids(&got), ids(&want), "filter {f:?}");
    }
}

/// `count` agrees with the reference model for every filter and scope, exactly up to its
/// bound and "bound, not exact" past it.
pub async fn counts_are_exact_up_to_the_bound(h: &Harness) {
    let events = varied_events(11, 700);
    seed(&*h.store, &events).await;
    let t = model::base_time();
    let mut filters = single_filters();
    filters.push(filter());
    filters.push(EventFilter {
        users: vec!["ALICE@acme.test".into(), "u-dave".into()],
        outcomes: vec![Outcome::Allow],
        from: Some(t + Duration::days(5)),
        to: Some(t + Duration::days(40)),
        ..filter()
    });
    filters.push(EventFilter {
        resource_name: Some("PLAN".into()),
        categories: vec!["Plan".into(), "Field".into()],
        ..filter()
    });
    let scopes = [
        TenantScope::All,
        TenantScope::only(["acme"]),
        TenantScope::only(["globex", "acme"]),
        TenantScope::only(Vec::<String>::new()),
    ];
    for f in &filters {
        for scope in &scopes {
            let want = expected(&events, f, scope).len() as u64;
            let count = |bound| h.store.count(f, scope, bound);
            assert_eq!(
                count(10_000).await.unwrap(),
                MatchCount {
                    count: want,
                    exact: true
                },
                "{f:?} within {scope:?}"
            );
            assert_eq!(
                count(want).await.unwrap(),
                MatchCount {
                    count: want,
                    exact: true
                },
                "bound = matches: {f:?} within {scope:?}"
            );
            if want > 0 {
                assert_eq!(
                    count(want - 1).await.unwrap(),
                    MatchCount {
                        count: want - 1,
                        exact: false
                    },
                    "bound below the matches: {f:?} within {scope:?}"
                );
            }
        }
    }
    assert_eq!(
        h.store
            .count(&filter(), &TenantScope::All, 0)
            .await
            .unwrap(),
        MatchCount {
            count: 0,
            exact: false
        }
    );
    assert_eq!(
        h.store
            .count(&filter(), &TenantScope::All, u64::MAX)
            .await
            .unwrap(),
        MatchCount {
            count: 700,
            exact: true
        }
    );
    let backwards = EventFilter {
        from: Some(t + Duration::days(2)),
        to: Some(t),
        ..filter()
    };
    assert!(matches!(
        h.store.count(&backwards, &TenantScope::All, 10).await,
        Err(StoreError::InvalidQuery(_))
    ));
}

pub async fn user_filter_matches_id_or_email_ignoring_case(h: &Harness) {
    let events = varied_events(3, 300);
    seed(&*h.store, &events).await;
    for users in [
        vec!["alice@acme.test".to_owned()],
        vec!["ALICE@ACME.TEST".to_owned()],
        vec!["u-alice".to_owned()],
        vec!["U-ALICE".to_owned()], // ids are exact: matches nothing
        vec!["u-bob".to_owned(), "Erin@Acme.Test".to_owned()],
    ] {
        let f = EventFilter {
            users: users.clone(),
            ..filter()
        };
        let want = expected(&events, &f, &TenantScope::All);
        let got = all(&*h.store, &f, &TenantScope::All).await;
        assert_eq!(ids(&got), ids(&want), "users {users:?}");
    }
}

pub async fn resource_name_is_a_literal_case_insensitive_substring(h: &Harness) {
    let events = varied_events(4, 300);
    seed(&*h.store, &events).await;
    for needle in [
        "churn",
        "CHURN MOD",
        "100%",
        "0% p",
        "%",
        "_",
        "h_a",
        "north_am",
        "Ü",
        "ïcode ré",
        "\"quoted\"",
        "\"",
        "e",
        "zz",
        "no such name",
        "model",
    ] {
        let f = EventFilter {
            resource_name: Some(needle.into()),
            ..filter()
        };
        let want = expected(&events, &f, &TenantScope::All);
        let got = all(&*h.store, &f, &TenantScope::All).await;
        assert_eq!(ids(&got), ids(&want), "needle {needle:?}");
    }
    // `%` and `_` are literal: the only names containing them match, nothing else.
    let percent = EventFilter {
        resource_name: Some("%".into()),
        ..filter()
    };
    assert!(
        all(&*h.store, &percent, &TenantScope::All)
            .await
            .iter()
            .all(|e| e.resource_name.as_deref().unwrap().contains('%'))
    );
}

pub async fn time_range_edges(h: &Harness) {
    let t = model::base_time();
    let at = |micros: i64| t + Duration::microseconds(micros);
    let events: Vec<AuditEvent> = [-1, 0, 1, 999_999, 1_000_000, 1_000_001]
        .into_iter()
        .map(|m| {
            AuditEvent::builder("Model", Action::Create)
                .occurred_at(at(m))
                .internal("edge")
                .build()
        })
        .collect();
    h.store.append(&events).await.unwrap();
    let range = EventFilter {
        from: Some(at(0)),
        to: Some(at(1_000_000)),
        ..filter()
    };
    let got = all(&*h.store, &range, &TenantScope::All).await;
    let times: Vec<i64> = got
        .iter()
        .map(|e| (e.occurred_at - t).num_microseconds().unwrap())
        .collect();
    assert_eq!(times, vec![999_999, 1, 0], "from inclusive, to exclusive");
    let empty = EventFilter {
        from: Some(at(5)),
        to: Some(at(5)),
        ..filter()
    };
    assert!(all(&*h.store, &empty, &TenantScope::All).await.is_empty());
}

pub async fn invalid_filters_are_typed_errors(h: &Harness) {
    let t = model::base_time();
    let cases: Vec<(EventFilter, &str)> = vec![
        (
            EventFilter {
                from: Some(t),
                to: Some(t - Duration::seconds(1)),
                ..filter()
            },
            "from",
        ),
        (
            EventFilter {
                categories: vec!["x".into(); 101],
                ..filter()
            },
            "category",
        ),
        (
            EventFilter {
                resource_name: Some("x".repeat(5000)),
                ..filter()
            },
            "resource_name",
        ),
        (
            EventFilter {
                request_id: Some("a\0b".into()),
                ..filter()
            },
            "request_id",
        ),
    ];
    for (f, parameter) in cases {
        let err = h
            .store
            .query(&f, &TenantScope::All, &PageRequest::default())
            .await
            .unwrap_err();
        match err {
            StoreError::InvalidQuery(invalid) => assert_eq!(invalid.parameter(), parameter),
            other => panic!("expected InvalidQuery for {parameter}, got {other}"),
        }
        let export: Result<Vec<_>, _> = h.store.export(f, TenantScope::All).try_collect().await;
        assert!(matches!(export, Err(StoreError::InvalidQuery(_))));
    }
}

pub async fn pagination_walks_have_no_gap_or_duplicate(h: &Harness) {
    let events = varied_events(5, 700);
    seed(&*h.store, &events).await;
    let scope = TenantScope::only(["acme", "globex"]);
    let f = EventFilter {
        outcomes: vec![Outcome::Allow],
        ..filter()
    };
    let want = expected(&events, &f, &scope);
    for limit in [1, 7, 50, 333, 1000] {
        let got = walk(&*h.store, &f, &scope, limit).await;
        assert_eq!(ids(&got), ids(&want), "page size {limit}");
    }
}

pub async fn pagination_with_identical_timestamps(h: &Harness) {
    // Most events share one microsecond: order and paging rely on the id tiebreak.
    let same = model::base_time();
    let events: Vec<AuditEvent> = (0..250)
        .map(|i| {
            AuditEvent::builder("Model", Action::Update)
                .occurred_at(if i % 5 == 0 {
                    same + Duration::seconds(1)
                } else {
                    same
                })
                .internal("tie")
                .build()
        })
        .collect();
    seed(&*h.store, &events).await;
    let want = expected(&events, &filter(), &TenantScope::All);
    for limit in [1, 3, 10, 49, 250, 1000] {
        let got = walk(&*h.store, &filter(), &TenantScope::All, limit).await;
        assert_eq!(ids(&got), ids(&want), "page size {limit}");
    }
}

pub async fn events_inserted_while_paging(h: &Harness) {
    let events = varied_events(6, 300);
    seed(&*h.store, &events).await;
    let mut seen = Vec::new();
    let mut request = PageRequest {
        limit: Limit::new(20).unwrap(),
        cursor: None,
    };
    let mut round = 0u64;
    loop {
        let page = h
            .store
            .query(&filter(), &TenantScope::All, &request)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|e| e.id));
        // Between pages another writer adds events: newer ones, older ones and some at the
        // exact timestamp of the page boundary.
        let boundary = page
            .items
            .last()
            .map(|e| e.occurred_at)
            .unwrap_or_else(Utc::now);
        let mut extra = varied_events(100 + round, 5);
        extra[0].occurred_at = boundary;
        extra[1].occurred_at = Utc::now();
        h.store.append(&extra).await.unwrap();
        round += 1;
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no event is returned twice");
    for e in &events {
        assert!(
            unique.contains(&e.id),
            "pre-existing event {} was skipped",
            e.id
        );
    }
}

pub async fn cursor_cannot_change_query_or_scope(h: &Harness) {
    seed(&*h.store, &varied_events(7, 100)).await;
    let acme = TenantScope::only(["acme"]);
    let first = h
        .store
        .query(
            &filter(),
            &acme,
            &PageRequest {
                limit: Limit::new(5).unwrap(),
                cursor: None,
            },
        )
        .await
        .unwrap();
    let cursor = first.next_cursor.expect("more pages");
    let text = cursor.encode();
    let reuse = |scope: TenantScope, f: EventFilter| {
        let cursor = Cursor::decode(&text).unwrap();
        let store = h.store.clone();
        async move {
            store
                .query(
                    &f,
                    &scope,
                    &PageRequest {
                        limit: Limit::new(5).unwrap(),
                        cursor: Some(cursor),
                    },
                )
                .await
        }
    };
    for result in [
        reuse(TenantScope::All, filter()).await,
        reuse(TenantScope::only(["acme", "globex"]), filter()).await,
        reuse(
            acme.clone(),
            EventFilter {
                users: vec!["u-bob".into()],
                ..filter()
            },
        )
        .await,
    ] {
        match result {
            Err(StoreError::InvalidQuery(e)) => assert_eq!(e.parameter(), "cursor"),
            other => panic!("cursor reused for another query: {other:?}"),
        }
    }
    let same = reuse(acme, filter()).await.unwrap();
    assert!(
        same.items
            .iter()
            .all(|e| e.tenant.as_deref() == Some("acme"))
    );
}

pub async fn tenant_scope_applies_everywhere(h: &Harness) {
    let events = varied_events(8, 400);
    seed(&*h.store, &events).await;
    let acme = TenantScope::only(["acme"]);
    let nobody = TenantScope::Only(Default::default());
    // List: only acme, and asking for globex inside an acme scope gives nothing.
    let listed = all(&*h.store, &filter(), &acme).await;
    assert_eq!(ids(&listed), ids(&expected(&events, &filter(), &acme)));
    let escape = EventFilter {
        tenants: vec!["globex".into()],
        ..filter()
    };
    assert!(all(&*h.store, &escape, &acme).await.is_empty());
    assert!(all(&*h.store, &filter(), &nobody).await.is_empty());
    // Events without a tenant only with the all-tenants scope.
    let untenanted = events.iter().find(|e| e.tenant.is_none()).unwrap();
    assert!(h.store.get(untenanted.id, &acme).await.unwrap().is_none());
    assert!(
        h.store
            .get(untenanted.id, &TenantScope::All)
            .await
            .unwrap()
            .is_some()
    );
    let globex_event = events
        .iter()
        .find(|e| e.tenant.as_deref() == Some("globex"))
        .unwrap();
    assert!(h.store.get(globex_event.id, &acme).await.unwrap().is_none());
    // Export and facets.
    let exported: Vec<AuditEvent> = h
        .store
        .export(filter(), acme.clone())
        .try_collect()
        .await
        .unwrap();
    assert!(exported.iter().all(|e| e.tenant.as_deref() == Some("acme")));
    assert_eq!(exported.len(), listed.len());
    let facets = h.store.facets(&acme).await.unwrap();
    assert!(
        facets
            .users
            .iter()
            .all(|u| u.email.as_deref() != Some("dave@globex.test")
                || events.iter().any(|e| e.tenant.as_deref() == Some("acme")
                    && e.actor_id.as_deref() == Some("u-dave")))
    );
    assert!(h.store.facets(&nobody).await.unwrap().categories.is_empty());
}

pub async fn get_by_id(h: &Harness) {
    let events = varied_events(9, 20);
    seed(&*h.store, &events).await;
    for e in &events {
        let stored = h.store.get(e.id, &TenantScope::All).await.unwrap().unwrap();
        assert_eq!(&unchained(&stored), e);
    }
    assert!(
        h.store
            .get(uuid::Uuid::now_v7(), &TenantScope::All)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn export_equals_paged_results(h: &Harness) {
    // More than two export chunks, so chunk boundaries are crossed.
    let events = varied_events(10, 4_500);
    seed(&*h.store, &events).await;
    for (f, scope) in [
        (filter(), TenantScope::All),
        (
            EventFilter {
                categories: vec!["Model".into(), "Field".into()],
                ..filter()
            },
            TenantScope::only(["acme"]),
        ),
    ] {
        let exported: Vec<AuditEvent> = h
            .store
            .export(f.clone(), scope.clone())
            .try_collect()
            .await
            .unwrap();
        let paged = walk(&*h.store, &f, &scope, 1000).await;
        assert_eq!(exported, paged);
        assert_eq!(ids(&exported), ids(&expected(&events, &f, &scope)));
        assert_batches_hold(&*h.store, &f, &scope, &exported).await;
    }
}

/// The export's fast path (batches filled from the rows' column values) lends out exactly
/// the events of the ordinary export (rows decoded into events), field for field, the
/// attributes' JSON text and the chain links included; encoders write from these views, so
/// the files are byte-identical.
async fn assert_batches_hold(
    store: &dyn AuditStore,
    f: &EventFilter,
    scope: &TenantScope,
    exported: &[AuditEvent],
) {
    let fast: Vec<audit_store::EventBatch> = store
        .export_batches(f.clone(), scope.clone())
        .try_collect()
        .await
        .unwrap();
    let mut ordinary = audit_store::EventBatch::new();
    for event in exported {
        ordinary.push(&audit_store::EventView::of(event));
    }
    let fast: Vec<String> = fast
        .iter()
        .flat_map(|batch| {
            batch
                .iter()
                .map(|view| format!("{view:?}"))
                .collect::<Vec<_>>()
        })
        .collect();
    let ordinary: Vec<String> = ordinary.iter().map(|view| format!("{view:?}")).collect();
    assert_eq!(fast.len(), ordinary.len());
    for (fast, ordinary) in fast.iter().zip(&ordinary) {
        assert_eq!(fast, ordinary);
    }
}

/// The same for every kind of value, across chunk boundaries.
pub async fn export_batches_hold_every_kind_of_value(h: &Harness) {
    let mut events = tricky_events();
    events.extend(varied_events(14, 2_500));
    seed(&*h.store, &events).await;
    let exported: Vec<AuditEvent> = h
        .store
        .export(filter(), TenantScope::All)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(exported.len(), events.len());
    assert_batches_hold(&*h.store, &filter(), &TenantScope::All, &exported).await;
}

pub async fn facets_within_scope(h: &Harness) {
    let events = varied_events(11, 300);
    seed(&*h.store, &events).await;
    for scope in [TenantScope::All, TenantScope::only(["globex"])] {
        let visible = expected(&events, &filter(), &scope);
        let facets = h.store.facets(&scope).await.unwrap();
        let mut categories: Vec<String> = visible.iter().map(|e| e.category.clone()).collect();
        categories.sort();
        categories.dedup();
        assert_eq!(facets.categories, categories);
        let mut actions: Vec<String> = visible.iter().map(|e| e.action.to_string()).collect();
        actions.sort();
        actions.dedup();
        assert_eq!(
            facets
                .actions
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
            actions
        );
        let mut outcomes: Vec<Outcome> = visible.iter().map(|e| e.outcome).collect();
        outcomes.sort_by_key(|o| o.as_str());
        outcomes.dedup();
        assert_eq!(facets.outcomes, outcomes);
        let users: HashSet<(Option<String>, Option<String>)> = visible
            .iter()
            .map(|e| (e.actor_id.clone(), e.actor_email.clone()))
            .collect();
        let got: HashSet<(Option<String>, Option<String>)> = facets
            .users
            .iter()
            .map(|u| (u.id.clone(), u.email.clone()))
            .collect();
        assert_eq!(got, users);
        assert!(facets.users.iter().all(|u| u.name.is_some()));
    }
}

pub async fn purge_removes_only_older_events(h: &Harness) {
    // Written in time order, as a live service writes them.
    let mut events = varied_events(12, 500);
    events.sort_by_key(|e| (e.occurred_at, e.id));
    seed(&*h.store, &events).await;
    let cutoff = model::base_time() + Duration::days(20);
    // A backfilled old event written after newer ones stays until the chain before it goes.
    let backfill = AuditEvent::builder("Model", Action::Create)
        .occurred_at(model::base_time())
        .internal("backfill")
        .build();
    h.store
        .append(std::slice::from_ref(&backfill))
        .await
        .unwrap();
    let older = events.iter().filter(|e| e.occurred_at < cutoff).count() as u64;
    assert!(older > 0 && older < 500);
    assert_eq!(h.store.purge_before(cutoff).await.unwrap(), older);
    let left = all(&*h.store, &filter(), &TenantScope::All).await;
    assert_eq!(left.len() as u64, 500 - older + 1);
    assert!(
        left.iter().any(|e| e.id == backfill.id),
        "the backfilled event is kept"
    );
    assert!(
        left.iter()
            .filter(|e| e.id != backfill.id)
            .all(|e| e.occurred_at >= cutoff)
    );
    // The name index followed the purge.
    let f = EventFilter {
        resource_name: Some("churn".into()),
        ..filter()
    };
    assert_eq!(
        ids(&all(&*h.store, &f, &TenantScope::All).await),
        ids(&expected(&left, &f, &TenantScope::All))
    );
    assert_eq!(h.store.purge_before(cutoff).await.unwrap(), 0);
    // Once everything before it is old enough, the backfilled event goes too.
    let everything = Utc::now() + Duration::days(1);
    assert_eq!(
        h.store.purge_before(everything).await.unwrap(),
        500 - older + 1
    );
    assert!(
        all(&*h.store, &filter(), &TenantScope::All)
            .await
            .is_empty()
    );
    // The chain continues after a purge.
    h.store.append(&varied_events(13, 2)).await.unwrap();
    assert_eq!(h.store.chain_head().await.unwrap().seq, 503);
}

pub async fn update_and_delete_are_rejected_by_the_database(h: &Harness) {
    let events = varied_events(13, 10);
    seed(&*h.store, &events).await;
    let mut statements = vec![
        "UPDATE {events} SET category = 'tampered'",
        "UPDATE {events} SET outcome = 'allow' WHERE outcome = 'deny'",
        "DELETE FROM {events}",
        "DELETE FROM {events} WHERE occurred_at IS NOT NULL",
    ];
    if h.is_postgres() {
        statements.push("TRUNCATE {events}");
    }
    for statement in statements {
        let err = h.raw(statement).await.expect_err(statement);
        assert!(
            err.to_string().contains(audit_store::APPEND_ONLY_MESSAGE),
            "{statement}: unexpected error {err}"
        );
    }
    let left: Vec<AuditEvent> = all(&*h.store, &filter(), &TenantScope::All)
        .await
        .iter()
        .map(unchained)
        .collect();
    let mut want = events.clone();
    model::sort_newest_first(&mut want);
    assert_eq!(left, want, "nothing changed");
}

pub async fn concurrent_appends_lose_nothing(h: &Harness) {
    let tasks = 32;
    let batches = 20;
    let per_batch = 10;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store: Arc<dyn AuditStore> = h.store.clone();
        handles.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for batch in 0..batches {
                let events = varied_events((task * 1000 + batch + 1) as u64, per_batch);
                store.append(&events).await.unwrap();
                written.extend(events.into_iter().map(|e| e.id));
            }
            written
        }));
    }
    let mut written = HashSet::new();
    for handle in handles {
        written.extend(handle.await.unwrap());
    }
    let stored = all(&*h.store, &filter(), &TenantScope::All).await;
    assert_eq!(stored.len(), tasks * batches * per_batch);
    assert_eq!(stored.iter().map(|e| e.id).collect::<HashSet<_>>(), written);
}

pub async fn failed_batch_is_atomic(h: &Harness) {
    let events = varied_events(14, 3);
    h.store.append(&events).await.unwrap();
    // A batch reusing a stored id for other content fails as a whole, naming the id: none of
    // its events is stored.
    let mut batch = varied_events(15, 1200);
    batch[1100] = events[0].clone();
    batch[1100].path = "/somewhere/else".into();
    let error = h.store.append(&batch).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::IdConflict { ids } if ids == &[events[0].id]),
        "{error:?}"
    );
    assert!(error.is_permanent());
    // The same within one batch: two different events under one id.
    let mut twins = varied_events(16, 10);
    twins[7].id = twins[2].id;
    let error = h.store.append(&twins).await.unwrap_err();
    assert!(matches!(error, StoreError::IdConflict { .. }), "{error:?}");
    assert_eq!(all(&*h.store, &filter(), &TenantScope::All).await.len(), 3);
}

/// A batch whose earlier attempt committed (its acknowledgement lost) is retried: the events
/// already stored are recognised and not stored twice, the rest is written, and the chain
/// stays intact.
pub async fn retried_batches_are_idempotent(h: &Harness) {
    let first = varied_events(17, 700);
    h.store.append(&first).await.unwrap();
    let head = h.store.chain_head().await.unwrap();
    h.store.append(&first).await.unwrap();
    assert_eq!(
        h.store.chain_head().await.unwrap(),
        head,
        "nothing was appended twice"
    );
    // Part stored, part new, and an event repeated within the batch.
    let mut mixed = first[600..].to_vec();
    let new = varied_events(18, 300);
    mixed.extend(new.iter().cloned());
    mixed.push(new[5].clone());
    h.store.append(&mixed).await.unwrap();
    let stored = all(&*h.store, &filter(), &TenantScope::All).await;
    assert_eq!(stored.len(), 1000);
    let ids: HashSet<_> = stored.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 1000);
    assert!(new.iter().all(|e| ids.contains(&e.id)));
    let report = verify_chain(&*h.store, &signer().verifying_key())
        .await
        .unwrap();
    assert!(report.is_intact(), "{report:?}");
}

pub async fn two_stores_share_one_database(h: &Harness) {
    let second = h.second_instance().await;
    let stores = [h.store.clone(), second];
    let mut handles = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        for task in 0..8 {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                for batch in 0..10 {
                    let seed = (n * 10_000 + task * 100 + batch + 1) as u64;
                    store.append(&varied_events(seed, 25)).await.unwrap();
                }
            }));
        }
    }
    for handle in handles {
        handle.await.unwrap();
    }
    for store in &stores {
        assert_eq!(
            all(&**store, &filter(), &TenantScope::All).await.len(),
            2 * 8 * 10 * 25
        );
    }
}

// --- Tamper evidence -------------------------------------------------------------------

pub fn signer() -> audit_store::CheckpointSigner {
    audit_store::CheckpointSigner::from_seed([42; 32])
}

/// Twelve events in three batches and a checkpoint after the tenth.
async fn chained_log(h: &Harness) -> Arc<dyn AuditStore> {
    let store = h.signed(signer());
    store.append(&varied_events(21, 4)).await.unwrap();
    store.append(&varied_events(22, 6)).await.unwrap();
    store
        .checkpoint(CheckpointKind::Periodic)
        .await
        .unwrap()
        .unwrap();
    store.append(&varied_events(23, 2)).await.unwrap();
    store
}

async fn verdict(store: &dyn AuditStore) -> Option<ChainBreak> {
    let report = verify_chain(store, &signer().verifying_key())
        .await
        .unwrap();
    report.broken
}

pub async fn clean_chain_verifies(h: &Harness) {
    let store = chained_log(h).await;
    let report = verify_chain(&*store, &signer().verifying_key())
        .await
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!(report.events_checked, 12);
    assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(12)));
    assert_eq!(report.checkpoints_checked, 1);
    // The newest checkpoint, read alone, is the last of them all.
    store.checkpoint(CheckpointKind::Manual).await.unwrap();
    let all = store.checkpoints().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        store.latest_checkpoint().await.unwrap().as_ref(),
        all.last()
    );
    assert_eq!(all[1].kind, CheckpointKind::Manual);
    // Another key does not vouch for these checkpoints.
    let other = audit_store::CheckpointSigner::from_seed([1; 32]).verifying_key();
    let report = verify_chain(&*store, &other).await.unwrap();
    assert!(matches!(
        report.broken,
        Some(ChainBreak::ForgedCheckpoint { .. })
    ));
}

pub async fn modified_row_is_detected(h: &Harness) {
    let store = chained_log(h).await;
    h.disable_append_only_guards().await;
    h.raw("UPDATE {events} SET category = 'Tampered' WHERE seq = 5")
        .await
        .unwrap();
    let broken = verdict(&*store).await.unwrap();
    assert!(
        matches!(broken, ChainBreak::ModifiedRow { seq: 5, .. }),
        "{broken}"
    );
    assert!(broken.to_string().contains("seq 5"), "{broken}");
}

/// Attributes rewritten in another JSON form (white space, key order) are the same event:
/// the fast path's bytes no longer give the hash, and the decoded event decides (intact).
/// A changed value in the attributes is a modified row.
pub async fn attributes_in_another_json_form_verify_and_changed_ones_do_not(h: &Harness) {
    let store = chained_log(h).await;
    h.disable_append_only_guards().await;
    let stored: Vec<AuditEvent> = store.chain_after(4).try_collect().await.unwrap();
    let mut attributes: Vec<_> = stored[0].attributes.iter().collect();
    attributes.reverse();
    let reordered: Vec<String> = attributes
        .iter()
        .map(|(key, value)| format!("{} : {}", json!(key), value))
        .collect();
    let text = format!("{{ {} }}", reordered.join(" ,\n "));
    assert!(!text.contains('\''));
    h.raw(&format!(
        "UPDATE {{events}} SET attributes = '{text}' WHERE seq = 5"
    ))
    .await
    .unwrap();
    assert_eq!(verdict(&*store).await, None);
    h.raw("UPDATE {events} SET attributes = '{\"n\": 1}' WHERE seq = 6")
        .await
        .unwrap();
    let broken = verdict(&*store).await.unwrap();
    assert!(
        matches!(broken, ChainBreak::ModifiedRow { seq: 6, .. }),
        "{broken}"
    );
}

pub async fn deleted_middle_row_is_detected(h: &Harness) {
    let store = chained_log(h).await;
    h.disable_append_only_guards().await;
    h.raw("DELETE FROM {events} WHERE seq = 5").await.unwrap();
    let broken = verdict(&*store).await.unwrap();
    assert_eq!(
        broken,
        ChainBreak::MissingRows {
            after_seq: 4,
            next_seq: 6
        },
        "{broken}"
    );
}

pub async fn deleted_newest_rows_are_detected(h: &Harness) {
    let store = chained_log(h).await;
    h.disable_append_only_guards().await;
    // Cut back to before the checkpoint at seq 10.
    h.raw("DELETE FROM {events} WHERE seq > 8").await.unwrap();
    let broken = verdict(&*store).await.unwrap();
    assert!(
        matches!(
            broken,
            ChainBreak::TruncatedTail {
                last_seq: 8,
                expected_seq: 10,
                ..
            }
        ),
        "{broken}"
    );
}

pub async fn swapped_rows_are_detected(h: &Harness) {
    let store = chained_log(h).await;
    h.disable_append_only_guards().await;
    for statement in [
        "UPDATE {events} SET seq = -4 WHERE seq = 4",
        "UPDATE {events} SET seq = 4 WHERE seq = 6",
        "UPDATE {events} SET seq = 6 WHERE seq = -4",
    ] {
        h.raw(statement).await.unwrap();
    }
    let broken = verdict(&*store).await.unwrap();
    assert!(
        matches!(
            broken,
            ChainBreak::ReorderedRow {
                seq: 4,
                written_at: 6,
                ..
            }
        ),
        "{broken}"
    );
}

pub async fn edited_checkpoint_is_detected(h: &Harness) {
    let store = chained_log(h).await;
    h.disable_append_only_guards().await;
    h.raw("UPDATE {checkpoints} SET seq = 12").await.unwrap();
    let broken = verdict(&*store).await.unwrap();
    assert!(
        matches!(broken, ChainBreak::ForgedCheckpoint { seq: 12, .. }),
        "{broken}"
    );
}

pub async fn purge_keeps_the_chain_verifiable(h: &Harness) {
    let store = h.signed(signer());
    let mut events = varied_events(24, 50);
    events.sort_by_key(|e| (e.occurred_at, e.id));
    store.append(&events).await.unwrap();
    let cutoff = events[20].occurred_at;
    assert_eq!(store.purge_before(cutoff).await.unwrap(), 20);
    let report = verify_chain(&*store, &signer().verifying_key())
        .await
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!((report.first_seq, report.events_checked), (Some(21), 30));
    assert_eq!(
        report.latest_checkpoint.unwrap().kind,
        CheckpointKind::Purge
    );
    // Without a signer nothing vouches for the new start.
    let unsigned = h.store.clone();
    unsigned.purge_before(events[30].occurred_at).await.unwrap();
    // The purge checkpoint of the signed purge still says seq 20: rows 21..30 now look deleted.
    let broken = verdict(&*unsigned).await.unwrap();
    assert_eq!(
        broken,
        ChainBreak::MissingRows {
            after_seq: 20,
            next_seq: 31
        },
        "{broken}"
    );
}

pub async fn concurrent_writers_keep_one_valid_chain(h: &Harness) {
    let first = h.signed(signer());
    let second = h.second_instance().await;
    let mut handles = Vec::new();
    for (n, store) in [first.clone(), second].into_iter().enumerate() {
        for task in 0..4 {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                for batch in 0..10 {
                    let seed = (n * 1000 + task * 100 + batch + 1) as u64;
                    store.append(&varied_events(seed, 7)).await.unwrap();
                }
            }));
        }
    }
    for handle in handles {
        handle.await.unwrap();
    }
    first.checkpoint(CheckpointKind::Manual).await.unwrap();
    let report = verify_chain(&*first, &signer().verifying_key())
        .await
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!(report.events_checked, 2 * 4 * 10 * 7);
}

/// The chain walk reads chunks of 5,000 positions two at a time up to the stored head, then
/// walks on by key: a gap wider than a chunk must cost neither rows nor order, and the rows
/// appended after the walk began must still be read.
pub async fn chain_walk_crosses_gaps_wider_than_a_chunk(h: &Harness) {
    let store = h.signed(signer());
    for chunk in varied_events(31, 16_000).chunks(2_000) {
        store.append(chunk).await.unwrap();
    }
    let whole: Vec<u64> = store
        .chain_after(0)
        .map_ok(|event| event.chain.unwrap().seq)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(whole, (1..=16_000).collect::<Vec<u64>>());
    // From the middle of a chunk, too.
    let tail: Vec<u64> = store
        .chain_after(12_345)
        .map_ok(|event| event.chain.unwrap().seq)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(tail, (12_346..=16_000).collect::<Vec<u64>>());

    h.disable_append_only_guards().await;
    h.raw("DELETE FROM {events} WHERE seq > 4000 AND seq <= 11000")
        .await
        .unwrap();
    let seqs: Vec<u64> = store
        .chain_after(0)
        .map_ok(|event| event.chain.unwrap().seq)
        .try_collect()
        .await
        .unwrap();
    let expected: Vec<u64> = (1..=4000).chain(11_001..=16_000).collect();
    assert_eq!(seqs, expected);
    assert_eq!(
        verdict(&*store).await,
        Some(ChainBreak::MissingRows {
            after_seq: 4000,
            next_seq: 11_001
        })
    );
}

/// Refused events are kept in an append-only quarantine, exactly as submitted.
pub async fn quarantine_keeps_refused_events(h: &Harness) {
    let mut events = varied_events(19, 2);
    events[0]
        .attributes
        .insert("note".into(), "NUL \u{0} inside".into());
    events[1].resource_name = Some("x".repeat(5000));
    let at = audit_store::truncate_to_micros(chrono::Utc::now());
    let entries: Vec<QuarantinedEvent> = events
        .iter()
        .map(|event| QuarantinedEvent {
            event: event.clone(),
            error: "refused: value \u{0} not allowed".into(),
            quarantined_at: at,
        })
        .collect();
    h.store.quarantine(&entries).await.unwrap();
    let kept = h.store.quarantined().await.unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(
        kept[0].event, events[0],
        "kept exactly as submitted, NUL included"
    );
    assert_eq!(kept[1].event, events[1]);
    assert_eq!(kept[0].quarantined_at, at);
    for statement in [
        "UPDATE {quarantine} SET error = 'x'",
        "DELETE FROM {quarantine}",
    ] {
        let refused = h.raw(statement).await.unwrap_err();
        assert!(
            refused
                .to_string()
                .contains(audit_store::APPEND_ONLY_MESSAGE),
            "{statement}: {refused}"
        );
    }
    // Not in the log: nothing a reader sees changes.
    assert!(
        all(&*h.store, &filter(), &TenantScope::All)
            .await
            .is_empty()
    );
}

/// One report row per recorder instance, replaced by each report.
pub async fn recorder_runs_are_kept_per_instance(h: &Harness) {
    assert_eq!(h.store.recorder_run("web-1").await.unwrap(), None);
    let at = audit_store::truncate_to_micros(chrono::Utc::now());
    let mut run = RecorderRun {
        instance: "web-1".into(),
        run_id: uuid::Uuid::now_v7(),
        host: "host-a".into(),
        pid: 4242,
        durable: false,
        started_at: at,
        reported_at: at,
        pending_events: 17,
        queue_capacity: 10_000,
        stopped_at: None,
    };
    h.store.report_run(&run).await.unwrap();
    let other = RecorderRun {
        instance: "web-2".into(),
        durable: true,
        ..run.clone()
    };
    h.store.report_run(&other).await.unwrap();
    run.pending_events = 3;
    run.reported_at = at + chrono::Duration::seconds(2);
    run.stopped_at = Some(run.reported_at);
    h.store.report_run(&run).await.unwrap();
    assert_eq!(h.store.recorder_run("web-1").await.unwrap(), Some(run));
    assert_eq!(h.store.recorder_run("web-2").await.unwrap(), Some(other));
}

/// Every way a store may read a page (the newest events first for broad conditions, the
/// terms' candidates, the time-ordered walk, a continuation reading as its first page did)
/// gives the model's answer: on a log larger than the window of newest events, for a dense
/// tenant, a tiny one whose events are all old, rare and common outcomes, and narrow filters.
pub async fn every_plan_gives_the_same_answer(h: &Harness) {
    let mut events = varied_events(77, 4_500);
    let mut tiny = varied_events(78, 30);
    for event in &mut tiny {
        event.tenant = Some("tiny".into());
        event.occurred_at = model::base_time() - Duration::days(400);
    }
    events.extend(tiny);
    seed(&*h.store, &events).await;
    let recent = model::base_time() + Duration::days(50);
    let filters = [
        EventFilter::default(),
        EventFilter {
            tenants: vec!["tiny".into()],
            ..filter()
        },
        EventFilter {
            tenants: vec!["acme".into()],
            outcomes: vec![Outcome::Deny],
            ..filter()
        },
        EventFilter {
            outcomes: vec![Outcome::Allow],
            from: Some(recent),
            ..filter()
        },
        EventFilter {
            users: vec!["u-bob".into()],
            categories: vec!["Model".into()],
            ..filter()
        },
        EventFilter {
            resource_id: Some("r-3".into()),
            tenants: vec!["acme".into()],
            ..filter()
        },
    ];
    let scopes = [
        TenantScope::All,
        TenantScope::only(["acme"]),
        TenantScope::only(["tiny"]),
    ];
    for filter in &filters {
        for scope in &scopes {
            let want = expected(&events, filter, scope);
            for limit in [7, 50, 1000] {
                let got = walk(&*h.store, filter, scope, limit).await;
                assert_eq!(
                    ids(&got),
                    ids(&want),
                    "{filter:?} within {scope:?}, pages of {limit}"
                );
            }
        }
    }
}
