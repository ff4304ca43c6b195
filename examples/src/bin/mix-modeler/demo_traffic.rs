//! `--demo-traffic N`: N realistic past events, recorded through the recorder like any
//! background job would, so a newcomer opens a populated activity log.

use audit_store::{Action, AuditEvent, HttpFacts, InvalidName, RecordError, Recorder};
use chrono::{Duration, Utc};
use serde_json::Value;

/// How far back the invented history goes.
const HISTORY_DAYS: i64 = 90;

/// Someone who acted in the past. Besides the users who can sign in (but olga, who only
/// audits), two colleagues at globex appear in the history, so both tenants have several
/// actors.
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

/// A resource of the invented history: one id and one name for its whole life, which
/// runs create → updates (and, for models, trainings, clones, rescores, downloads) →
/// sometimes delete, in time order.
struct PastResource {
    tenant: &'static str,
    category: &'static str,
    id: String,
    name: String,
    life: Life,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    /// Not created yet.
    Planned,
    Alive,
    Deleted,
}

/// The categories whose resources have names (all but Data Harmonization's sync).
const NAMED_CATEGORIES: [&str; 6] = [
    "Dataset Rule",
    "Field",
    "Marketing Touchpoint",
    "Conversion",
    "Model",
    "Plan",
];

/// Every resource the history may create, per tenant, with stable ids and names.
fn planned_resources() -> Vec<PastResource> {
    let mut resources = Vec::new();
    for tenant in ["acme", "globex"] {
        for category in NAMED_CATEGORIES {
            for name in names_of(category) {
                resources.push(PastResource {
                    tenant,
                    category,
                    id: (1000 + resources.len()).to_string(),
                    name: (*name).to_owned(),
                    life: Life::Planned,
                });
            }
        }
    }
    resources
}

fn operation(category: &str, action: &str) -> &'static Operation {
    OPERATIONS
        .iter()
        .find(|op| op.category == category && op.action == action)
        .unwrap_or(&OPERATIONS[OPERATIONS.len() - 1])
}

/// What happens to a live resource of `category` next (never `create`).
fn next_action(dice: &mut Dice, category: &str) -> &'static str {
    let options: &[&'static str] = match category {
        "Model" => &[
            "update", "update", "train", "train", "train", "clone", "rescore", "download",
            "update", "delete",
        ],
        // Plans have no delete route.
        "Plan" => &["update", "update", "change_model"],
        _ => &["update", "update", "update", "update", "update", "delete"],
    };
    options[dice.below(options.len())]
}

/// What one past request was about: the operation, the resource (if any) and whether it
/// goes into the events as named.
struct Happening<'a> {
    operation: &'static Operation,
    resource: Option<&'a PastResource>,
}

/// Records `count` past events: resources live through their lifecycles in time order,
/// read-only users are refused (403), and about one in thirty requests carries no
/// credentials at all (401, no tenant: only a platform auditor sees those).
pub async fn record(recorder: &Recorder, count: u32) -> Result<(), DemoTrafficError> {
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
    let now = Utc::now();
    let history_ms = HISTORY_DAYS * 24 * 3600 * 1000;
    let mut offsets: Vec<i64> = (0..count)
        .map(|_| (dice.next() % history_ms as u64) as i64)
        .collect();
    // Oldest first, so ids and times increase together as they would have.
    offsets.sort_unstable_by(|a, b| b.cmp(a));
    let mut resources = planned_resources();
    for offset in offsets {
        let at = now - Duration::milliseconds(offset);
        let actor = if dice.chance(3) {
            None
        } else {
            Some(dice.pick(ACTORS))
        };
        let event = match actor {
            None => anonymous_attempt(&mut dice, &resources, at)?,
            Some(actor) => {
                let (index, action) = choose(&mut dice, &resources, actor.tenant);
                let refused = !actor.may_mutate && action != "download";
                let (operation, clone) = match index {
                    Some(index) => {
                        let resource = &resources[index];
                        let operation = operation(resource.category, action);
                        let mut clone = None;
                        if !refused {
                            match action {
                                "create" => resources[index].life = Life::Alive,
                                "delete" => resources[index].life = Life::Deleted,
                                "clone" => clone = Some(index),
                                _ => {}
                            }
                        }
                        (operation, clone.map(|source| (source, resources.len())))
                    }
                    None => (operation("Data Harmonization", "sync"), None),
                };
                if let Some((source, new_index)) = clone {
                    let copy = PastResource {
                        tenant: resources[source].tenant,
                        category: resources[source].category,
                        id: (1000 + new_index).to_string(),
                        name: format!("{} (copy)", resources[source].name),
                        life: Life::Alive,
                    };
                    resources.push(copy);
                }
                let happening = Happening {
                    operation,
                    resource: index.map(|i| &resources[i]),
                };
                let clone_id = clone.map(|(_, new_index)| resources[new_index].id.clone());
                past_event(&mut dice, &happening, actor, refused, clone_id, at)?
            }
        };
        recorder.record(event).await?;
    }
    Ok(())
}

/// The next thing `tenant` does: the index of a resource and its action, or `None` for a
/// data sync (no resource).
fn choose(
    dice: &mut Dice,
    resources: &[PastResource],
    tenant: &str,
) -> (Option<usize>, &'static str) {
    if dice.chance(5) {
        return (None, "sync");
    }
    let category = *dice.pick(&NAMED_CATEGORIES);
    let of = |life: Life| {
        resources
            .iter()
            .enumerate()
            .filter(|(_, r)| r.tenant == tenant && r.category == category && r.life == life)
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    let (planned, alive) = (of(Life::Planned), of(Life::Alive));
    match (planned.first(), alive.is_empty()) {
        (Some(&next), true) => (Some(next), "create"),
        (Some(&next), false) if dice.chance(20) => (Some(next), "create"),
        (_, false) => {
            let index = *dice.pick(&alive);
            (Some(index), next_action(dice, category))
        }
        (None, true) => (None, "sync"),
    }
}

/// A request without credentials, answered 401 by the host's auth: no actor, no tenant,
/// only the path's resource id.
fn anonymous_attempt(
    dice: &mut Dice,
    resources: &[PastResource],
    at: chrono::DateTime<Utc>,
) -> Result<AuditEvent, InvalidName> {
    let operation = dice.pick(OPERATIONS);
    let resource = resources
        .iter()
        .filter(|r| r.category == operation.category && r.life == Life::Alive)
        .nth(dice.below(4));
    let id = resource.map_or("1000", |r| r.id.as_str());
    let path = operation.route.replace("{id}", id);
    let mut builder = base_event(dice, operation, path, 401, at)?;
    if operation.route.contains("{id}") {
        builder = builder.resource_id(id);
    }
    Ok(builder.denied("no bearer token or session cookie").build())
}

fn base_event(
    dice: &mut Dice,
    operation: &Operation,
    path: String,
    status: u16,
    at: chrono::DateTime<Utc>,
) -> Result<audit_store::EventBuilder<audit_store::Ready>, InvalidName> {
    Ok(
        AuditEvent::builder(operation.category, Action::custom(operation.action)?)
            .http(HttpFacts::new(
                operation.method,
                operation.route,
                path,
                status,
            ))
            .occurred_at(at)
            .duration_ms(2.0 + dice.below(250) as f64 + dice.below(1000) as f64 / 1000.0)
            .client_ip(format!("10.20.{}.{}", dice.below(8), 2 + dice.below(250)))
            .user_agent(*dice.pick(USER_AGENTS)),
    )
}

fn past_event(
    dice: &mut Dice,
    happening: &Happening<'_>,
    actor: &PastActor,
    refused: bool,
    clone_id: Option<String>,
    at: chrono::DateTime<Utc>,
) -> Result<AuditEvent, InvalidName> {
    let operation = happening.operation;
    let id = happening.resource.map_or("", |r| r.id.as_str());
    let path = operation.route.replace("{id}", id);
    let status = if refused { 403 } else { operation.status };
    let mut builder = base_event(dice, operation, path, status, at)?
        .tenant(actor.tenant)
        .actor_id(actor.id)
        .actor_email(actor.email)
        .actor_name(actor.name);
    if let Some(resource) = happening.resource {
        // A refused create never reached the handler: there is no resource yet.
        if !(refused && operation.action == "create") {
            builder = builder.resource(resource.id.clone(), resource.name.clone());
        }
    }
    if refused {
        return Ok(builder.denied("read-only user").build());
    }
    let names = names_of("Model");
    builder = match operation.action {
        "update" => with_change(dice, builder, operation.category),
        "change_model" => builder
            .change(
                "model_id",
                (1000 + dice.below(60)).to_string(),
                (1000 + dice.below(60)).to_string(),
            )
            .attribute("model_name", *dice.pick(names)),
        "clone" => match clone_id {
            Some(clone_id) => builder.attribute("clone_id", clone_id),
            None => builder,
        },
        "sync" => builder
            .attribute("touchpoints", dice.below(40))
            .attribute("conversions", dice.below(12)),
        _ => builder,
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
