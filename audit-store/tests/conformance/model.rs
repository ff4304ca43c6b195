//! Test data and the reference semantics of a query, written plainly in Rust: the store's
//! answers are compared with what this model says they must be.

use audit_store::{
    Action, AuditEvent, EventFilter, HttpFacts, Outcome, Page, PageRequest, TenantScope,
};
use chrono::{DateTime, Duration, TimeZone, Utc};

/// A small deterministic generator (xorshift), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

pub const TENANTS: [Option<&str>; 3] = [Some("acme"), Some("globex"), None];
pub const CATEGORIES: [&str; 4] = ["Model", "Dataset Rule", "Field", "Plan"];
pub const USERS: [(&str, &str); 4] = [
    ("u-alice", "Alice@Acme.test"),
    ("u-bob", "bob@acme.test"),
    ("u-dave", "dave@globex.test"),
    ("u-erin", "erin@acme.test"),
];
pub const NAMES: [&str; 5] = [
    "Churn model",
    "Revenue 100% plan",
    "north_america",
    "Ünïcode résumé",
    "Spend \"quoted\" rule",
];

pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// `count` varied events spread over about 60 days after [`base_time`].
pub fn varied_events(seed: u64, count: usize) -> Vec<AuditEvent> {
    let mut rng = Rng::new(seed);
    let actions = [
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Train,
        Action::custom("change_model").unwrap(),
    ];
    (0..count)
        .map(|i| {
            let at = base_time() + Duration::microseconds((rng.next() % 5_184_000_000_000) as i64);
            let (actor_id, email) = *rng.pick(&USERS);
            let outcome = if rng.next().is_multiple_of(5) {
                Outcome::Deny
            } else {
                Outcome::Allow
            };
            let mut builder =
                AuditEvent::builder(*rng.pick(&CATEGORIES), rng.pick(&actions).clone())
                    .occurred_at(at)
                    .http(HttpFacts::new(
                        "POST",
                        "/api/x/{id}",
                        format!("/api/x/{i}"),
                        201,
                    ))
                    .actor_id(actor_id)
                    .actor_email(email)
                    .actor_name(actor_id.trim_start_matches("u-"))
                    .outcome(outcome)
                    .request_id(format!("req-{}", i % 97))
                    .resource(format!("r-{}", i % 13), *rng.pick(&NAMES))
                    .duration_ms(1.5);
            if let Some(tenant) = rng.pick(&TENANTS) {
                builder = builder.tenant(*tenant);
            }
            builder.build()
        })
        .collect()
}

/// What the contract says: does `event` match `filter` within `scope`?
pub fn matches(event: &AuditEvent, filter: &EventFilter, scope: &TenantScope) -> bool {
    let tenant = event.tenant.as_deref();
    let any = |values: &[String], value: Option<&str>| {
        values.is_empty() || value.is_some_and(|v| values.iter().any(|x| x == v))
    };
    scope.allows(tenant)
        && any(&filter.tenants, tenant)
        && any(&filter.categories, Some(&event.category))
        && (filter.actions.is_empty() || filter.actions.contains(&event.action))
        && (filter.outcomes.is_empty() || filter.outcomes.contains(&event.outcome))
        && (filter.users.is_empty()
            || filter.users.iter().any(|u| {
                event.actor_id.as_deref() == Some(u)
                    || event
                        .actor_email
                        .as_deref()
                        .is_some_and(|e| e.to_lowercase() == u.to_lowercase())
            }))
        && filter
            .request_id
            .as_ref()
            .is_none_or(|r| &event.request_id == r)
        && filter
            .resource_id
            .as_ref()
            .is_none_or(|r| event.resource_id.as_ref() == Some(r))
        && filter.resource_name.as_ref().is_none_or(|needle| {
            event
                .resource_name
                .as_deref()
                .is_some_and(|name| name.to_lowercase().contains(&needle.to_lowercase()))
        })
        && filter.from.is_none_or(|from| event.occurred_at >= from)
        && filter.to.is_none_or(|to| event.occurred_at < to)
}

/// The expected answer: matching events, newest first (ties broken by id, descending).
pub fn expected(
    events: &[AuditEvent],
    filter: &EventFilter,
    scope: &TenantScope,
) -> Vec<AuditEvent> {
    let mut out: Vec<AuditEvent> = events
        .iter()
        .filter(|e| matches(e, filter, scope))
        .cloned()
        .collect();
    sort_newest_first(&mut out);
    out
}

pub fn sort_newest_first(events: &mut [AuditEvent]) {
    events.sort_by_key(|e| std::cmp::Reverse((e.occurred_at, e.id)));
}

/// Walks every page of a query and returns all items in order.
pub async fn walk(
    store: &dyn audit_store::AuditStore,
    filter: &EventFilter,
    scope: &TenantScope,
    limit: u64,
) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    let mut request = PageRequest {
        limit: audit_store::Limit::new(limit).unwrap(),
        cursor: None,
    };
    loop {
        let Page { items, next_cursor } = store.query(filter, scope, &request).await.unwrap();
        assert!(items.len() <= limit as usize);
        out.extend(items);
        match next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => return out,
        }
    }
}

pub fn ids(events: &[AuditEvent]) -> Vec<uuid::Uuid> {
    events.iter().map(|e| e.id).collect()
}
