//! `--demo-traffic N`: N realistic past events, recorded through the recorder like any
//! background job would, so a newcomer opens a populated activity log.

use audit_store::{Action, AuditEvent, HttpFacts, InvalidName, RecordError, Recorder};
use chrono::{Duration, Utc};
use serde_json::Value;

/// How far back the invented history goes.
const HISTORY_DAYS: i64 = 90;

/// Someone who acted in the past. Besides the five users who can sign in, two colleagues
/// at globex appear in the history, so both tenants have several actors.
struct PastActor {
    id: &'static str,
    email: &'static str,
    name: &'static str,
    tenant: &'static str,
    may_mutate: bool,
}

const ACTORS: &[PastActor] = &[
    PastActor {
        id: "alice",
        email: "alice@acme.test",
        name: "Alice Archer",
        tenant: "acme",
        may_mutate: true,
    },
    PastActor {
        id: "bob",
        email: "bob@acme.test",
        name: "Bob Baker",
        tenant: "acme",
        may_mutate: true,
    },
    PastActor {
        id: "carol",
        email: "carol@acme.test",
        name: "Carol Chen",
        tenant: "acme",
        may_mutate: false,
    },
    PastActor {
        id: "erin",
        email: "erin@acme.test",
        name: "Erin Ellis",
        tenant: "acme",
        may_mutate: false,
    },
    PastActor {
        id: "dave",
        email: "dave@globex.test",
        name: "Dave Dunn",
        tenant: "globex",
        may_mutate: true,
    },
    PastActor {
        id: "frank",
        email: "frank@globex.test",
        name: "Frank Fischer",
        tenant: "globex",
        may_mutate: true,
    },
    PastActor {
        id: "grace",
        email: "grace@globex.test",
        name: "Grace Green",
        tenant: "globex",
        may_mutate: true,
    },
];

/// One kind of request the API audits.
struct Operation {
    category: &'static str,
    action: &'static str,
    method: &'static str,
    route: &'static str,
    status: u16,
}

const fn op(
    category: &'static str,
    action: &'static str,
    method: &'static str,
    route: &'static str,
    status: u16,
) -> Operation {
    Operation {
        category,
        action,
        method,
        route,
        status,
    }
}

/// Every audited route of DESIGN.md's table.
const OPERATIONS: &[Operation] = &[
    op("Dataset Rule", "create", "POST", "/api/dataset-rules", 201),
    op(
        "Dataset Rule",
        "update",
        "PUT",
        "/api/dataset-rules/{id}",
        200,
    ),
    op(
        "Dataset Rule",
        "delete",
        "DELETE",
        "/api/dataset-rules/{id}",
        204,
    ),
    op("Field", "create", "POST", "/api/fields", 201),
    op("Field", "update", "PUT", "/api/fields/{id}", 200),
    op("Field", "delete", "DELETE", "/api/fields/{id}", 204),
    op(
        "Marketing Touchpoint",
        "create",
        "POST",
        "/api/touchpoints",
        201,
    ),
    op(
        "Marketing Touchpoint",
        "update",
        "PUT",
        "/api/touchpoints/{id}",
        200,
    ),
    op(
        "Marketing Touchpoint",
        "delete",
        "DELETE",
        "/api/touchpoints/{id}",
        204,
    ),
    op("Conversion", "create", "POST", "/api/conversions", 201),
    op("Conversion", "update", "PUT", "/api/conversions/{id}", 200),
    op(
        "Conversion",
        "delete",
        "DELETE",
        "/api/conversions/{id}",
        204,
    ),
    op("Model", "create", "POST", "/api/models", 201),
    op("Model", "update", "PUT", "/api/models/{id}", 200),
    op("Model", "delete", "DELETE", "/api/models/{id}", 204),
    op("Model", "train", "POST", "/api/models/{id}/train", 202),
    op("Model", "clone", "POST", "/api/models/{id}/clone", 201),
    op("Model", "rescore", "POST", "/api/models/{id}/rescore", 202),
    op("Model", "download", "GET", "/api/models/{id}/metadata", 200),
    op("Plan", "create", "POST", "/api/plans", 201),
    op("Plan", "update", "PUT", "/api/plans/{id}", 200),
    op("Plan", "change_model", "PUT", "/api/plans/{id}/model", 200),
    op(
        "Data Harmonization",
        "sync",
        "POST",
        "/api/harmonization/sync",
        202,
    ),
];

fn names_of(category: &str) -> &'static [&'static str] {
    match category {
        "Dataset Rule" => &[
            "Exclude test orders",
            "Deduplicate sessions",
            "EU consent filter",
            "Map UTM sources",
            "Drop bot traffic",
        ],
        "Field" => &[
            "Revenue (net)",
            "Region",
            "Campaign ID",
            "Spend (EUR)",
            "Store format",
        ],
        "Marketing Touchpoint" => &[
            "Paid Search - Brand",
            "TV - Prime time",
            "Meta Prospecting",
            "Display Retargeting",
            "Podcast sponsorship",
        ],
        "Conversion" => &[
            "Online purchase",
            "Store visit",
            "Newsletter signup",
            "Trial start",
        ],
        "Model" => &[
            "Q3 Baseline MMM",
            "Holiday uplift model",
            "Brand vs Performance",
            "Regional MMM v2",
        ],
        "Plan" => &[
            "2025 H1 budget plan",
            "Black Friday plan",
            "Reallocation scenario B",
        ],
        _ => &[],
    }
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "mix-modeler-cli/2.3.1",
    "python-requests/2.32.3",
];

/// A small deterministic generator (xorshift64*): the same history every time, no
/// dependency for something this unimportant.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Failure to record the history.
#[derive(Debug, thiserror::Error)]
pub enum DemoTrafficError {
    #[error(transparent)]
    Action(#[from] InvalidName),
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Records `count` past events: the first ones cover every operation in both tenants, the
/// rest are random, with about one in ten denied.
pub async fn record(recorder: &Recorder, count: u32) -> Result<(), DemoTrafficError> {
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
    let now = Utc::now();
    let history_ms = HISTORY_DAYS * 24 * 3600 * 1000;
    let mut offsets: Vec<i64> = (0..count)
        .map(|_| (dice.next() % history_ms as u64) as i64)
        .collect();
    // Oldest first, so ids and times increase together as they would have.
    offsets.sort_unstable_by(|a, b| b.cmp(a));
    let acme_editor = &ACTORS[0];
    let globex_editor = &ACTORS[4];
    for (index, offset) in offsets.into_iter().enumerate() {
        let (operation, actor) = match index {
            i if i < OPERATIONS.len() => (&OPERATIONS[i], Some(acme_editor)),
            i if i < 2 * OPERATIONS.len() => {
                (&OPERATIONS[i - OPERATIONS.len()], Some(globex_editor))
            }
            _ => {
                let actor = if dice.chance(3) {
                    None
                } else {
                    Some(dice.pick(ACTORS))
                };
                (dice.pick(OPERATIONS), actor)
            }
        };
        let at = now - Duration::milliseconds(offset);
        let event = past_event(&mut dice, operation, actor, at)?;
        recorder.record(event).await?;
    }
    Ok(())
}

fn past_event(
    dice: &mut Dice,
    operation: &Operation,
    actor: Option<&PastActor>,
    at: chrono::DateTime<Utc>,
) -> Result<AuditEvent, InvalidName> {
    let resource_id = (1000 + dice.below(400)).to_string();
    let path = operation.route.replace("{id}", &resource_id);
    // Read-only users are refused anything but the metadata download.
    let forbidden = actor.is_some_and(|a| !a.may_mutate) && operation.method != "GET";
    let status = match actor {
        None => 401,
        Some(_) if forbidden => 403,
        Some(_) => operation.status,
    };
    let mut builder = AuditEvent::builder(operation.category, Action::custom(operation.action)?)
        .http(HttpFacts::new(
            operation.method,
            operation.route,
            path,
            status,
        ))
        .occurred_at(at)
        .duration_ms(2.0 + dice.below(250) as f64 + dice.below(1000) as f64 / 1000.0)
        .client_ip(format!("10.20.{}.{}", dice.below(8), 2 + dice.below(250)))
        .user_agent(*dice.pick(USER_AGENTS));
    if let Some(actor) = actor {
        builder = builder
            .tenant(actor.tenant)
            .actor_id(actor.id)
            .actor_email(actor.email)
            .actor_name(actor.name);
    }
    let names = names_of(operation.category);
    if !names.is_empty() && status != 401 {
        builder = builder.resource(resource_id, *dice.pick(names));
    } else if operation.route.contains("{id}") {
        builder = builder.resource_id(resource_id);
    }
    builder = match status {
        401 => builder.denied("no bearer token or session cookie"),
        403 => builder.denied("read-only user"),
        _ => match operation.action {
            "update" => with_change(dice, builder, operation.category),
            "change_model" => builder
                .change(
                    "model_id",
                    (1000 + dice.below(400)).to_string(),
                    (1000 + dice.below(400)).to_string(),
                )
                .attribute("model_name", *dice.pick(names_of("Model"))),
            "sync" => builder
                .attribute("touchpoints", dice.below(40))
                .attribute("conversions", dice.below(12)),
            _ => builder,
        },
    };
    Ok(builder.build())
}

/// A plausible field change for an update of `category`.
fn with_change(
    dice: &mut Dice,
    builder: audit_store::EventBuilder<audit_store::Ready>,
    category: &str,
) -> audit_store::EventBuilder<audit_store::Ready> {
    let (field, before, after): (&str, Value, Value) = match (category, dice.below(2)) {
        ("Model", 0) => ("adstock_decay", 0.3.into(), 0.45.into()),
        ("Model", _) => ("holdout_weeks", 8.into(), 12.into()),
        ("Plan", 0) => ("budget_eur", 120_000.into(), 150_000.into()),
        ("Plan", _) => ("status", "draft".into(), "approved".into()),
        ("Dataset Rule", _) => ("lookback_days", 7.into(), 14.into()),
        ("Conversion", _) => ("value_eur", 35.into(), 42.into()),
        (_, 0) => ("enabled", true.into(), false.into()),
        (_, _) => ("description", Value::Null, "Reviewed with finance".into()),
    };
    builder.change(field, before, after)
}
