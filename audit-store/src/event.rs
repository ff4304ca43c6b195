//! The audit event: one row in the store, one JSON object on the wire.
//!
//! Field names and JSON shapes follow the DESIGN.md contract exactly.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::chain::ChainLink;

/// The JSON object holding action-specific detail of an event.
pub type Attributes = Map<String, Value>;

/// One recorded action: who did what, to which resource, when, and whether it was allowed.
///
/// Build one with [`AuditEvent::builder`], which will not produce an event until its origin
/// (an HTTP exchange or an internal job) is known.
///
/// ```
/// use audit_store::{Action, AuditEvent, HttpFacts, Outcome};
///
/// let event = AuditEvent::builder("Model", Action::Train)
///     .http(HttpFacts::new("POST", "/api/models/{id}/train", "/api/models/7/train", 202))
///     .tenant("acme")
///     .actor_email("alice@acme.test")
///     .resource("7", "Churn model")
///     .build();
/// assert_eq!(event.outcome, Outcome::Allow);
/// let json = serde_json::to_value(&event).unwrap();
/// assert_eq!(json["action"], "train");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// Unique, time-ordered identifier (UUIDv7) assigned at capture.
    pub id: Uuid,
    /// When the request arrived, UTC, microsecond precision.
    #[serde(with = "rfc3339_micros")]
    pub occurred_at: DateTime<Utc>,
    /// Workspace / organisation the action belongs to.
    pub tenant: Option<String>,
    /// The request's ID (incoming `x-request-id` if valid, else generated).
    pub request_id: String,
    /// Who acted: stable identifier.
    pub actor_id: Option<String>,
    /// Who acted: e-mail address.
    pub actor_email: Option<String>,
    /// Who acted: display name.
    pub actor_name: Option<String>,
    /// The resource type, e.g. `Model` or `Dataset Rule`.
    pub category: String,
    /// What was done.
    pub action: Action,
    /// Whether it was allowed.
    pub outcome: Outcome,
    /// Why it was denied, when known.
    pub reason: Option<String>,
    /// Identifier of the resource acted on.
    pub resource_id: Option<String>,
    /// Human-readable name of the resource acted on.
    pub resource_name: Option<String>,
    /// HTTP method (`INTERNAL` for events that did not come from a request).
    pub method: String,
    /// The matched route pattern (the job name for internal events).
    pub route: String,
    /// The request path (the job name for internal events).
    pub path: String,
    /// HTTP status of the response (`0` for internal events: there was no response).
    pub status: u16,
    /// Time taken to produce the response, in milliseconds.
    pub duration_ms: f64,
    /// Client IP, honouring forwarding headers only from trusted proxies.
    pub client_ip: Option<String>,
    /// The client's `User-Agent`, truncated.
    pub user_agent: Option<String>,
    /// Action-specific detail; field changes live under `changes` as `{"field": [before, after]}`.
    pub attributes: Attributes,
    /// Where the event sits in the store's hash chain: set on events read from a store,
    /// `None` on events not yet stored (and then absent from the JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainLink>,
}

impl AuditEvent {
    /// Starts an event for `category` and `action`, stamped now with a fresh UUIDv7.
    ///
    /// The builder only offers [`EventBuilder::build`] once [`EventBuilder::http`] or
    /// [`EventBuilder::internal`] has said where the event came from.
    pub fn builder(category: impl Into<String>, action: Action) -> EventBuilder<NeedsOrigin> {
        let occurred_at = truncate_to_micros(Utc::now());
        let id = uuid_v7_at(occurred_at);
        EventBuilder {
            event: AuditEvent {
                id,
                occurred_at,
                tenant: None,
                request_id: id.to_string(),
                actor_id: None,
                actor_email: None,
                actor_name: None,
                category: category.into(),
                action,
                outcome: Outcome::Allow,
                reason: None,
                resource_id: None,
                resource_name: None,
                method: String::new(),
                route: String::new(),
                path: String::new(),
                status: 0,
                duration_ms: 0.0,
                client_ip: None,
                user_agent: None,
                attributes: Attributes::new(),
                chain: None,
            },
            state: PhantomData,
        }
    }

    /// An estimate of the event's size in memory, used to bound queues by bytes.
    pub fn approximate_size(&self) -> usize {
        fn opt(s: &Option<String>) -> usize {
            s.as_ref().map_or(0, String::len)
        }
        std::mem::size_of::<Self>()
            + opt(&self.tenant)
            + self.request_id.len()
            + opt(&self.actor_id)
            + opt(&self.actor_email)
            + opt(&self.actor_name)
            + self.category.len()
            + self.action.as_str().len()
            + opt(&self.reason)
            + opt(&self.resource_id)
            + opt(&self.resource_name)
            + self.method.len()
            + self.route.len()
            + self.path.len()
            + opt(&self.client_ip)
            + opt(&self.user_agent)
            + attributes_size(&self.attributes)
    }
}

fn attributes_size(attributes: &Attributes) -> usize {
    fn value_size(value: &Value) -> usize {
        match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => 16,
            Value::String(s) => 24 + s.len(),
            Value::Array(items) => 24 + items.iter().map(value_size).sum::<usize>(),
            Value::Object(map) => attributes_size(map),
        }
    }
    48 + attributes
        .iter()
        .map(|(k, v)| 24 + k.len() + value_size(v))
        .sum::<usize>()
}

/// Truncates a timestamp to the microsecond precision every backend stores.
pub fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// A UUIDv7 whose embedded time is `at`, so ids stay ordered with `occurred_at`
/// even for events recorded with a past timestamp.
pub fn uuid_v7_at(at: DateTime<Utc>) -> Uuid {
    let seconds = u64::try_from(at.timestamp()).unwrap_or(0);
    let nanos = at.timestamp_subsec_nanos();
    Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, seconds, nanos))
}

/// The HTTP facts of an event: method, matched route pattern, path and status.
///
/// ```
/// use audit_store::HttpFacts;
/// let facts = HttpFacts::new("DELETE", "/api/fields/{id}", "/api/fields/3", 204);
/// assert_eq!(facts.status, 204);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFacts {
    /// HTTP method.
    pub method: String,
    /// Matched route pattern.
    pub route: String,
    /// Request path.
    pub path: String,
    /// Response status.
    pub status: u16,
}

impl HttpFacts {
    /// Groups the four HTTP facts.
    pub fn new(
        method: impl Into<String>,
        route: impl Into<String>,
        path: impl Into<String>,
        status: u16,
    ) -> Self {
        Self {
            method: method.into(),
            route: route.into(),
            path: path.into(),
            status,
        }
    }
}

/// Builder state: the event's origin is not known yet, so it cannot be built.
#[derive(Debug)]
pub struct NeedsOrigin;
/// Builder state: the event is complete and can be built.
#[derive(Debug)]
pub struct Ready;

/// Builds an [`AuditEvent`]; see [`AuditEvent::builder`].
#[derive(Debug)]
#[must_use = "an event builder does nothing until built"]
pub struct EventBuilder<State> {
    event: AuditEvent,
    state: PhantomData<State>,
}

impl EventBuilder<NeedsOrigin> {
    /// The event came from an HTTP exchange.
    pub fn http(mut self, facts: HttpFacts) -> EventBuilder<Ready> {
        self.event.method = facts.method;
        self.event.route = facts.route;
        self.event.path = facts.path;
        self.event.status = facts.status;
        EventBuilder {
            event: self.event,
            state: PhantomData,
        }
    }

    /// The event came from inside the application (a background job, a scheduled task):
    /// `method` is `INTERNAL`, `route` and `path` name the job, `status` is 0.
    pub fn internal(mut self, job: impl Into<String>) -> EventBuilder<Ready> {
        let job = job.into();
        self.event.method = "INTERNAL".to_owned();
        self.event.path = job.clone();
        self.event.route = job;
        self.event.status = 0;
        EventBuilder {
            event: self.event,
            state: PhantomData,
        }
    }
}

impl EventBuilder<Ready> {
    /// Finishes the event.
    pub fn build(self) -> AuditEvent {
        self.event
    }
}

impl<State> EventBuilder<State> {
    /// Sets when the action happened (truncated to microseconds); the id is re-derived so it
    /// stays time-ordered.
    pub fn occurred_at(mut self, at: DateTime<Utc>) -> Self {
        self.event.occurred_at = truncate_to_micros(at);
        let regenerate_request_id = self.event.request_id == self.event.id.to_string();
        self.event.id = uuid_v7_at(self.event.occurred_at);
        if regenerate_request_id {
            self.event.request_id = self.event.id.to_string();
        }
        self
    }
    /// Sets the event id (normally generated).
    pub fn id(mut self, id: Uuid) -> Self {
        self.event.id = id;
        self
    }
    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.event.tenant = Some(tenant.into());
        self
    }
    /// Sets the request ID (defaults to the event id).
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.event.request_id = request_id.into();
        self
    }
    /// Sets the actor's identifier.
    pub fn actor_id(mut self, actor_id: impl Into<String>) -> Self {
        self.event.actor_id = Some(actor_id.into());
        self
    }
    /// Sets the actor's e-mail address.
    pub fn actor_email(mut self, email: impl Into<String>) -> Self {
        self.event.actor_email = Some(email.into());
        self
    }
    /// Sets the actor's display name.
    pub fn actor_name(mut self, name: impl Into<String>) -> Self {
        self.event.actor_name = Some(name.into());
        self
    }
    /// Sets the outcome (defaults to allow).
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.event.outcome = outcome;
        self
    }
    /// Marks the event denied with a reason.
    pub fn denied(mut self, reason: impl Into<String>) -> Self {
        self.event.outcome = Outcome::Deny;
        self.event.reason = Some(reason.into());
        self
    }
    /// Sets the resource id and name.
    pub fn resource(mut self, id: impl Into<String>, name: impl Into<String>) -> Self {
        self.event.resource_id = Some(id.into());
        self.event.resource_name = Some(name.into());
        self
    }
    /// Sets the resource id.
    pub fn resource_id(mut self, id: impl Into<String>) -> Self {
        self.event.resource_id = Some(id.into());
        self
    }
    /// Sets the resource name.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.event.resource_name = Some(name.into());
        self
    }
    /// Sets the response time in milliseconds.
    pub fn duration_ms(mut self, duration_ms: f64) -> Self {
        self.event.duration_ms = duration_ms;
        self
    }
    /// Sets the client IP.
    pub fn client_ip(mut self, ip: impl Into<String>) -> Self {
        self.event.client_ip = Some(ip.into());
        self
    }
    /// Sets the user agent.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.event.user_agent = Some(user_agent.into());
        self
    }
    /// Adds one attribute.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.event.attributes.insert(key.into(), value.into());
        self
    }
    /// Replaces all attributes.
    pub fn attributes(mut self, attributes: Attributes) -> Self {
        self.event.attributes = attributes;
        self
    }
    /// Records a field change as `attributes.changes.<field> = [before, after]`.
    pub fn change(
        mut self,
        field: impl Into<String>,
        before: impl Into<Value>,
        after: impl Into<Value>,
    ) -> Self {
        record_change(&mut self.event.attributes, field, before, after);
        self
    }
}

/// Records a field change in `attributes` as `changes.<field> = [before, after]` (replacing a
/// non-object `changes`). The builder and the layer's `AuditContext` both record through it.
///
/// ```
/// let mut attributes = audit_store::Attributes::new();
/// audit_store::record_change(&mut attributes, "name", "old", "new");
/// assert_eq!(attributes["changes"]["name"], serde_json::json!(["old", "new"]));
/// ```
pub fn record_change(
    attributes: &mut Attributes,
    field: impl Into<String>,
    before: impl Into<Value>,
    after: impl Into<Value>,
) {
    let changes = attributes
        .entry("changes")
        .or_insert_with(|| Value::Object(Map::new()));
    if !changes.is_object() {
        *changes = Value::Object(Map::new());
    }
    if let Value::Object(changes) = changes {
        changes.insert(
            field.into(),
            Value::Array(vec![before.into(), after.into()]),
        );
    }
}

/// Whether the action was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action was allowed.
    Allow,
    /// The action was denied (401/403 or an explicit denial).
    Deny,
}

impl Outcome {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Outcome::Allow),
            "deny" => Ok(Outcome::Deny),
            _ => Err(InvalidName {
                kind: "outcome",
                value: s.to_owned(),
                expected: "`allow` or `deny`",
            }),
        }
    }
}

/// A name that is not a valid action or outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: expected {expected}")]
pub struct InvalidName {
    kind: &'static str,
    value: String,
    expected: &'static str,
}

/// What was done. The well-known actions have variants; applications add their own with
/// [`Action::custom`], which accepts snake_case names only.
///
/// ```
/// use audit_store::Action;
/// assert_eq!(Action::custom("change_model").unwrap().as_str(), "change_model");
/// assert_eq!(Action::custom("train").unwrap(), Action::Train);
/// assert!(Action::custom("Change Model").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// `create`
    Create,
    /// `update`
    Update,
    /// `delete`
    Delete,
    /// `clone`
    Clone,
    /// `train`
    Train,
    /// `rescore`
    Rescore,
    /// `download`
    Download,
    /// `sync`
    Sync,
    /// `view` (used for denied reads of the audit log itself)
    View,
    /// An application-defined snake_case action.
    Custom(CustomAction),
}

/// The well-known actions in their canonical order.
const WELL_KNOWN: [Action; 9] = [
    Action::Create,
    Action::Update,
    Action::Delete,
    Action::Clone,
    Action::Train,
    Action::Rescore,
    Action::Download,
    Action::Sync,
    Action::View,
];

impl Action {
    /// The longest action name accepted.
    pub const MAX_LEN: usize = 64;

    /// An application-defined action. Returns the well-known variant when `name` is one, so
    /// equal names always compare equal.
    pub fn custom(name: &str) -> Result<Action, InvalidName> {
        name.parse()
    }

    /// The snake_case name.
    pub fn as_str(&self) -> &str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Clone => "clone",
            Action::Train => "train",
            Action::Rescore => "rescore",
            Action::Download => "download",
            Action::Sync => "sync",
            Action::View => "view",
            Action::Custom(custom) => &custom.0,
        }
    }
}

/// The name of an application-defined action; obtain one through [`Action::custom`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomAction(Box<str>);

fn is_snake_case(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= Action::MAX_LEN
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'_'
        && !name.contains("__")
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// Whether `name` parses as an [`Action`], without building one.
pub(crate) fn is_valid_action(name: &str) -> bool {
    WELL_KNOWN.iter().any(|known| known.as_str() == name) || is_snake_case(name)
}

/// Whether `name` parses as an [`Outcome`].
pub(crate) fn is_outcome(name: &str) -> bool {
    matches!(name, "allow" | "deny")
}

impl FromStr for Action {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(known) = WELL_KNOWN.iter().find(|a| a.as_str() == s) {
            return Ok(known.clone());
        }
        if is_snake_case(s) {
            Ok(Action::Custom(CustomAction(s.into())))
        } else {
            Err(InvalidName {
                kind: "action",
                value: s.chars().take(80).collect(),
                expected: "a snake_case name of at most 64 characters",
            })
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde for RFC 3339 UTC timestamps with exactly six fractional digits.
pub mod rfc3339_micros {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Formats `at` as `2026-11-22T10:00:00.123456Z`.
    pub fn format(at: &DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// Appends [`format`]'s text to `out`, byte for byte, without its allocation and format
    /// parsing (exports and chain hashing write a timestamp for every event).
    ///
    /// ```
    /// use audit_store::rfc3339_micros;
    /// let at = chrono::DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap();
    /// let mut out = Vec::new();
    /// rfc3339_micros::write(&at, &mut out);
    /// assert_eq!(out, rfc3339_micros::format(&at).as_bytes());
    /// ```
    pub fn write(at: &DateTime<Utc>, out: &mut Vec<u8>) {
        use chrono::{Datelike, Timelike};
        /// `value` in exactly `width` decimal digits, zero-padded, followed by `then`.
        fn digits(out: &mut Vec<u8>, value: u32, width: usize, then: u8) {
            let start = out.len();
            let mut value = value;
            out.resize(start + width, b'0');
            for slot in out[start..].iter_mut().rev() {
                // `value % 10` is below 10, so the cast cannot truncate.
                *slot = b'0' + (value % 10) as u8;
                value /= 10;
            }
            out.push(then);
        }
        let year = at.year();
        let nanos = at.nanosecond();
        // Leap seconds (nanosecond ≥ 1e9) and years outside 0..=9999 take chrono's own path.
        if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
            out.extend_from_slice(format(at).as_bytes());
            return;
        }
        digits(out, year.unsigned_abs(), 4, b'-');
        digits(out, at.month(), 2, b'-');
        digits(out, at.day(), 2, b'T');
        digits(out, at.hour(), 2, b':');
        digits(out, at.minute(), 2, b':');
        digits(out, at.second(), 2, b'.');
        digits(out, nanos / 1000, 6, b'Z');
    }

    /// Serialises a timestamp.
    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(at))
    }

    /// Deserialises any RFC 3339 timestamp, converted to UTC.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_contract_names() {
        let event = AuditEvent::builder("Dataset Rule", Action::Update)
            .http(HttpFacts::new(
                "PUT",
                "/api/dataset-rules/{id}",
                "/api/dataset-rules/1",
                200,
            ))
            .change("name", "a", "b")
            .build();
        let json = serde_json::to_value(&event).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "id",
            "occurred_at",
            "tenant",
            "request_id",
            "actor_id",
            "actor_email",
            "actor_name",
            "category",
            "action",
            "outcome",
            "reason",
            "resource_id",
            "resource_name",
            "method",
            "route",
            "path",
            "status",
            "duration_ms",
            "client_ip",
            "user_agent",
            "attributes",
        ];
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys_sorted, expected);
        assert_eq!(
            json["attributes"]["changes"]["name"],
            serde_json::json!(["a", "b"])
        );
        assert_eq!(json["outcome"], "allow");
        let text = json["occurred_at"].as_str().unwrap();
        assert!(text.ends_with('Z') && text.len() == "2026-11-22T10:00:00.123456Z".len());
        let back: AuditEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn action_names() {
        for known in &WELL_KNOWN {
            assert_eq!(&known.as_str().parse::<Action>().unwrap(), known);
        }
        for bad in [
            "",
            "Create",
            "change-model",
            "_x",
            "x_",
            "a__b",
            "1x",
            &"a".repeat(65),
        ] {
            assert!(bad.parse::<Action>().is_err(), "{bad:?} accepted");
        }
        assert!("change_model2".parse::<Action>().is_ok());
    }

    #[test]
    fn past_events_keep_time_ordered_ids() {
        let past = Utc::now() - chrono::Duration::days(30);
        let event = AuditEvent::builder("Model", Action::Create)
            .occurred_at(past)
            .internal("seed")
            .build();
        assert_eq!(event.request_id, event.id.to_string());
        let (secs, _) = event.id.get_timestamp().unwrap().to_unix();
        assert_eq!(secs as i64, past.timestamp());
    }
}
