//! The realistic log of the store's benchmarks (`benches/write_path.rs`) and figures
//! (`examples/verify_figures.rs`), one definition included by both with `#[path]`.

// Each includer uses a part (the bench no non-ASCII names).
#![allow(dead_code)]

use audit_store::{Action, AuditEvent, HttpFacts, Outcome};
use chrono::{DateTime, Utc};

const CATEGORIES: [&str; 7] = [
    "Dataset Rule",
    "Field",
    "Marketing Touchpoint",
    "Conversion",
    "Model",
    "Plan",
    "Data Harmonization",
];
const ACTIONS: [Action; 6] = [
    Action::Create,
    Action::Update,
    Action::Delete,
    Action::Train,
    Action::Clone,
    Action::Rescore,
];
const USERS: u64 = 300;
/// 90 days.
const SPAN_MICROS: i64 = 7_776_000_000_000;

/// A deterministic log (xorshift): 300 users, one resource per 100 events with one name each,
/// attributes of 100–300 bytes, two tenants, time order; one actor (`rare-auditor`) in
/// 0.01 % of the events.
pub struct Generator {
    state: u64,
    resources: u64,
    non_ascii: bool,
}

impl Generator {
    /// The generator of a log of `total` events.
    pub fn new(seed: u64, total: usize) -> Self {
        Generator {
            state: seed.max(1),
            resources: (total as u64 / 100).max(100),
            non_ascii: false,
        }
    }

    /// Names with non-ASCII letters and a numeric attribute too (for the canonical form's
    /// escaping paths).
    pub fn with_non_ascii(mut self) -> Self {
        self.non_ascii = true;
        self
    }

    /// The next pseudo-random number.
    fn next_u64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// Event `n` of a log of `total` ending at `end`, in time order.
    pub fn event(&mut self, n: usize, total: usize, end: DateTime<Utc>) -> AuditEvent {
        let r = self.next_u64();
        let tenant = if r.is_multiple_of(3) {
            "globex"
        } else {
            "acme"
        };
        let rare = r % 10_000 == 7;
        let user = if rare {
            "rare-auditor".to_owned()
        } else {
            format!("user-{}", (r >> 4) % USERS)
        };
        let category = CATEGORIES[(r >> 12) as usize % CATEGORIES.len()];
        let action = ACTIONS[(r >> 20) as usize % ACTIONS.len()].clone();
        let resource = (r >> 28) % self.resources;
        let at = end
            - chrono::Duration::microseconds(SPAN_MICROS - SPAN_MICROS * n as i64 / total as i64);
        let detail_len = 60 + (r >> 40) as usize % 200;
        let denied = r.is_multiple_of(23);
        let (name, resource_name) = if self.non_ascii {
            (format!("Usér {user}"), format!("{category} {resource} ✓"))
        } else {
            (format!("User {user}"), format!("{category} {resource}"))
        };
        let builder = AuditEvent::builder(category, action)
            .occurred_at(at)
            .http(HttpFacts::new(
                "PUT",
                "/api/models/{id}",
                format!("/api/models/{resource}"),
                if denied { 403 } else { 200 },
            ))
            .outcome(if denied { Outcome::Deny } else { Outcome::Allow })
            .tenant(tenant)
            .request_id(format!("{:032x}", u128::from(self.next_u64()) << 64 | u128::from(r)))
            .actor_id(user.clone())
            .actor_email(format!("{user}@{tenant}.test"))
            .actor_name(name)
            .resource(resource.to_string(), resource_name)
            .client_ip("10.1.2.3")
            .user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
            .duration_ms(2.5 + (r % 100) as f64 / 10.0)
            .attribute(
                "changes",
                serde_json::json!({"name": ["x".repeat(detail_len / 2), "y".repeat(detail_len / 2)]}),
            );
        if self.non_ascii {
            builder.attribute("count", r % 1000).build()
        } else {
            builder.build()
        }
    }
}
