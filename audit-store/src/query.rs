//! The query model: filters, tenant scope, page size, keyset cursor and facets.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::InvalidQuery;
use crate::event::{Action, AuditEvent, Outcome};

/// How many values one repeatable filter accepts: enough for any UI, small enough that
/// no query runs into a backend's bind-parameter limit.
pub const MAX_FILTER_VALUES: usize = 100;
/// The longest filter value accepted, in bytes.
pub const MAX_FILTER_VALUE_LEN: usize = 1024;

/// Which events match: AND across fields, OR between the values of one field.
/// An empty list or `None` means "no condition on this field".
///
/// ```
/// use audit_store::{Action, EventFilter, Outcome};
/// let filter = EventFilter {
///     categories: vec!["Model".into()],
///     actions: vec![Action::Train, Action::Rescore],
///     outcomes: vec![Outcome::Deny],
///     ..EventFilter::default()
/// };
/// assert!(filter.validate().is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventFilter {
    /// `category` equals one of these.
    pub categories: Vec<String>,
    /// `action` equals one of these.
    pub actions: Vec<Action>,
    /// `outcome` equals one of these.
    pub outcomes: Vec<Outcome>,
    /// `actor_id` equals, or `actor_email` equals ignoring case, one of these.
    pub users: Vec<String>,
    /// `request_id` equals this.
    pub request_id: Option<String>,
    /// `resource_id` equals this.
    pub resource_id: Option<String>,
    /// `resource_name` contains this, ignoring case.
    pub resource_name: Option<String>,
    /// `tenant` equals one of these (always further restricted by the [`TenantScope`]).
    pub tenants: Vec<String>,
    /// `occurred_at >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `occurred_at < to`.
    pub to: Option<DateTime<Utc>>,
}

impl EventFilter {
    /// Checks bounds: value counts and lengths, and `from` not after `to`.
    pub fn validate(&self) -> Result<(), InvalidQuery> {
        check_values("category", &self.categories)?;
        check_values("user", &self.users)?;
        check_values("tenant", &self.tenants)?;
        if self.actions.len() > MAX_FILTER_VALUES {
            return Err(too_many("action"));
        }
        if self.outcomes.len() > MAX_FILTER_VALUES {
            return Err(too_many("status"));
        }
        for (name, value) in [
            ("request_id", &self.request_id),
            ("resource_id", &self.resource_id),
            ("resource_name", &self.resource_name),
        ] {
            if let Some(value) = value {
                check_value(name, value)?;
            }
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from > to
        {
            return Err(InvalidQuery::new(
                "from",
                "`from` is after `to`: the time range is empty",
            ));
        }
        Ok(())
    }

    /// The same filter with repeated values sorted and deduplicated, so equal queries
    /// have equal fingerprints.
    fn normalized(&self) -> EventFilter {
        fn set<T: Ord + Clone>(values: &[T]) -> Vec<T> {
            values
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        }
        EventFilter {
            categories: set(&self.categories),
            actions: set(&self.actions),
            outcomes: set(&self.outcomes),
            users: set(&self.users),
            request_id: self.request_id.clone(),
            resource_id: self.resource_id.clone(),
            resource_name: self.resource_name.clone(),
            tenants: set(&self.tenants),
            from: self.from,
            to: self.to,
        }
    }
}

fn too_many(parameter: &'static str) -> InvalidQuery {
    InvalidQuery::new(
        parameter,
        format!("at most {MAX_FILTER_VALUES} values are accepted"),
    )
}

fn check_values(parameter: &'static str, values: &[String]) -> Result<(), InvalidQuery> {
    if values.len() > MAX_FILTER_VALUES {
        return Err(too_many(parameter));
    }
    values.iter().try_for_each(|v| check_value(parameter, v))
}

fn check_value(parameter: &'static str, value: &str) -> Result<(), InvalidQuery> {
    if value.len() > MAX_FILTER_VALUE_LEN {
        return Err(InvalidQuery::new(
            parameter,
            format!("values are limited to {MAX_FILTER_VALUE_LEN} bytes"),
        ));
    }
    if value.contains('\0') {
        return Err(InvalidQuery::new(parameter, "values may not contain NUL"));
    }
    Ok(())
}

/// The tenants a viewer may see. Events without a tenant are visible only with
/// [`TenantScope::All`].
///
/// ```
/// use audit_store::TenantScope;
/// let scope = TenantScope::only(["acme"]);
/// assert!(scope.allows(Some("acme")));
/// assert!(!scope.allows(Some("globex")));
/// assert!(!scope.allows(None));
/// assert!(TenantScope::All.allows(None));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantScope {
    /// Every tenant, and events without one.
    All,
    /// Only these tenants.
    Only(BTreeSet<String>),
}

impl TenantScope {
    /// A scope of the given tenants.
    pub fn only<I, S>(tenants: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TenantScope::Only(tenants.into_iter().map(Into::into).collect())
    }

    /// Whether an event with this tenant is visible.
    pub fn allows(&self, tenant: Option<&str>) -> bool {
        match (self, tenant) {
            (TenantScope::All, _) => true,
            (TenantScope::Only(set), Some(tenant)) => set.contains(tenant),
            (TenantScope::Only(_), None) => false,
        }
    }

    /// The tenant condition a query must apply: `None` for no condition, otherwise the
    /// tenants allowed by both the filter and this scope (possibly none at all).
    pub fn effective_tenants(&self, requested: &[String]) -> Option<Vec<String>> {
        match self {
            TenantScope::All if requested.is_empty() => None,
            TenantScope::All => Some(requested.to_vec()),
            TenantScope::Only(set) if requested.is_empty() => Some(set.iter().cloned().collect()),
            TenantScope::Only(set) => Some(
                requested
                    .iter()
                    .filter(|t| set.contains(*t))
                    .cloned()
                    .collect(),
            ),
        }
    }
}

/// Page size of a list query: 1..=1000, default 50.
///
/// ```
/// use audit_store::Limit;
/// assert_eq!(Limit::default().get(), 50);
/// assert!(Limit::new(1001).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u16);

impl Limit {
    /// The largest page.
    pub const MAX: u16 = 1000;

    /// A page size, rejected outside 1..=1000.
    pub fn new(limit: u64) -> Result<Self, InvalidQuery> {
        match u16::try_from(limit) {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Limit(n)),
            _ => Err(InvalidQuery::new(
                "limit",
                format!("must be between 1 and {}", Self::MAX),
            )),
        }
    }
    /// The page size.
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

impl Default for Limit {
    fn default() -> Self {
        Limit(50)
    }
}

/// Where a page starts: strictly after this event in newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The `occurred_at` of the last event of the previous page.
    pub occurred_at: DateTime<Utc>,
    /// The `id` of the last event of the previous page.
    pub id: Uuid,
}

impl Position {
    /// The position of an event.
    pub fn of(event: &AuditEvent) -> Self {
        Position {
            occurred_at: event.occurred_at,
            id: event.id,
        }
    }
}

/// Which page of a query to fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// How many events at most.
    pub limit: Limit,
    /// Continue after this cursor (from [`Page::next_cursor`]); `None` for the first page.
    pub cursor: Option<Cursor>,
}

/// One page of events, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The events.
    pub items: Vec<AuditEvent>,
    /// The cursor of the next page, `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// An opaque keyset cursor.
///
/// It carries the position of the last event of a page and a fingerprint of the filter and
/// tenant scope that produced it. The store applies the filter and scope of the *current*
/// request and refuses a cursor whose fingerprint does not match, so editing a cursor can
/// neither widen a query nor escape a tenant scope; a checksum catches edited or truncated
/// cursors before they reach the database.
///
/// A cursor also remembers how the store read the page it continues (from the terms
/// index's candidates, or by walking the time index), so the next page reads the same way
/// without counting candidates again. Either way gives the same rows; a cursor edited to say
/// otherwise fails its checksum, and could only change the speed, never the answer.
///
/// ```
/// use audit_store::{Cursor, EventFilter, TenantScope};
/// assert_eq!(Cursor::decode("not-a-cursor").unwrap_err().parameter(), "cursor");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    position: Position,
    fingerprint: [u8; FINGERPRINT_LEN],
    read: Option<PlanKind>,
}

/// How the page a cursor continues was read (`term_plan::Plan`), without its terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanKind {
    /// The time-ordered walk.
    Walk,
    /// The terms' candidates.
    Candidates,
}

/// Version 1: position and fingerprint. Version 2 adds a byte saying how the page was read
/// (0 unknown, 1 walk, 2 candidates); version 1 cursors are still accepted.
const CURSOR_VERSION: u8 = 2;
const FINGERPRINT_LEN: usize = 16;
const CHECK_LEN: usize = 4;
const CURSOR_V1_LEN: usize = 1 + 8 + 16 + FINGERPRINT_LEN + CHECK_LEN;
const CURSOR_LEN: usize = CURSOR_V1_LEN + 1;

impl Cursor {
    /// The cursor continuing `filter` within `scope` after `position`.
    pub fn new(position: Position, filter: &EventFilter, scope: &TenantScope) -> Self {
        Cursor {
            position,
            fingerprint: fingerprint(filter, scope),
            read: None,
        }
    }

    /// The same cursor, remembering how its page was read.
    pub(crate) fn read_by(mut self, kind: PlanKind) -> Self {
        self.read = Some(kind);
        self
    }

    /// How the page this cursor continues was read, when the cursor says.
    pub(crate) fn read(&self) -> Option<PlanKind> {
        self.read
    }

    /// Where the next page starts, provided the cursor was issued for this same filter and
    /// scope.
    pub fn position_for(
        &self,
        filter: &EventFilter,
        scope: &TenantScope,
    ) -> Result<Position, InvalidQuery> {
        if self.fingerprint == fingerprint(filter, scope) {
            Ok(self.position)
        } else {
            Err(InvalidQuery::new(
                "cursor",
                "the cursor belongs to a query with other filters or another tenant scope",
            ))
        }
    }

    /// The opaque text form (URL-safe base64).
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(CURSOR_LEN);
        bytes.push(CURSOR_VERSION);
        bytes.extend_from_slice(&self.position.occurred_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.position.id.as_bytes());
        bytes.extend_from_slice(&self.fingerprint);
        bytes.push(match self.read {
            None => 0,
            Some(PlanKind::Walk) => 1,
            Some(PlanKind::Candidates) => 2,
        });
        let check = checksum(&bytes);
        bytes.extend_from_slice(&check);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Parses the text form, rejecting anything not produced by [`Cursor::encode`].
    pub fn decode(text: &str) -> Result<Cursor, InvalidQuery> {
        let invalid = |why: &str| InvalidQuery::new("cursor", format!("not a valid cursor: {why}"));
        if text.len() > 128 {
            return Err(invalid("too long"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| invalid("not base64url"))?;
        if bytes.len() != CURSOR_LEN && bytes.len() != CURSOR_V1_LEN {
            return Err(invalid("wrong length"));
        }
        let (body, check) = bytes.split_at(bytes.len() - CHECK_LEN);
        if checksum(body) != check {
            return Err(invalid("checksum mismatch"));
        }
        let read = match (body[0], bytes.len(), body.get(CURSOR_V1_LEN - CHECK_LEN)) {
            (1, CURSOR_V1_LEN, _) => None,
            (CURSOR_VERSION, CURSOR_LEN, Some(0)) => None,
            (CURSOR_VERSION, CURSOR_LEN, Some(1)) => Some(PlanKind::Walk),
            (CURSOR_VERSION, CURSOR_LEN, Some(2)) => Some(PlanKind::Candidates),
            (1 | CURSOR_VERSION, _, _) => return Err(invalid("wrong length")),
            _ => return Err(invalid("unknown version")),
        };
        let micros = i64::from_be_bytes(body[1..9].try_into().map_err(|_| invalid("length"))?);
        let occurred_at =
            DateTime::from_timestamp_micros(micros).ok_or_else(|| invalid("time out of range"))?;
        let id = Uuid::from_slice(&body[9..25]).map_err(|_| invalid("bad id"))?;
        let fingerprint = body[25..25 + FINGERPRINT_LEN]
            .try_into()
            .map_err(|_| invalid("length"))?;
        Ok(Cursor {
            position: Position { occurred_at, id },
            fingerprint,
            read,
        })
    }
}

fn checksum(body: &[u8]) -> [u8; CHECK_LEN] {
    let digest = Sha256::new()
        .chain_update(b"audit-cursor-check\0")
        .chain_update(body)
        .finalize();
    let mut out = [0; CHECK_LEN];
    out.copy_from_slice(&digest[..CHECK_LEN]);
    out
}

fn fingerprint(filter: &EventFilter, scope: &TenantScope) -> [u8; FINGERPRINT_LEN] {
    // serde_json of plain structs and BTreeSets is deterministic, which is all a fingerprint
    // needs; serialising these types cannot fail.
    let canonical = serde_json::to_vec(&(filter.normalized(), scope)).unwrap_or_default();
    let digest = Sha256::new()
        .chain_update(b"audit-cursor-query\0")
        .chain_update(canonical)
        .finalize();
    let mut out = [0; FINGERPRINT_LEN];
    out.copy_from_slice(&digest[..FINGERPRINT_LEN]);
    out
}

/// How many events match a filter, counted exactly up to a bound ([`AuditStore::count`]).
///
/// Past the bound counting stops: `count` is the bound and `exact` is false, to be read as
/// "`count` or more" (the page shows `10,000+`).
///
/// ```
/// use audit_store::MatchCount;
/// assert_eq!(MatchCount::bounded(7, 10), MatchCount { count: 7, exact: true });
/// assert_eq!(MatchCount::bounded(11, 10), MatchCount { count: 10, exact: false });
/// ```
///
/// [`AuditStore::count`]: crate::AuditStore::count
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchCount {
    /// The number of matching events, or `bound` when there are more.
    pub count: u64,
    /// Whether `count` is the exact number (false: there are more than `count`).
    pub exact: bool,
}

impl MatchCount {
    /// The answer for `counted` rows found when counting stopped after `bound + 1`.
    pub fn bounded(counted: u64, bound: u64) -> Self {
        MatchCount {
            count: counted.min(bound),
            exact: counted <= bound,
        }
    }
}

/// The distinct values a viewer may filter on, within their tenant scope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facets {
    /// Distinct categories, sorted.
    pub categories: Vec<String>,
    /// Distinct actions, sorted by name.
    pub actions: Vec<Action>,
    /// Distinct actors, sorted by e-mail then id.
    pub users: Vec<FacetUser>,
    /// Distinct outcomes.
    pub outcomes: Vec<Outcome>,
}

/// One actor offered as a `user` filter value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FacetUser {
    /// The actor id, when recorded.
    pub id: Option<String>,
    /// The actor e-mail, when recorded.
    pub email: Option<String>,
    /// A display name recorded for this actor.
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position() -> Position {
        Position {
            occurred_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        }
    }

    #[test]
    fn cursor_round_trip() {
        let filter = EventFilter {
            categories: vec!["b".into(), "a".into()],
            ..Default::default()
        };
        let scope = TenantScope::only(["acme"]);
        let cursor = Cursor::new(position(), &filter, &scope);
        let decoded = Cursor::decode(&cursor.encode()).unwrap();
        assert_eq!(decoded, cursor);
        // Order of repeated values does not matter.
        let reordered = EventFilter {
            categories: vec!["a".into(), "b".into(), "a".into()],
            ..Default::default()
        };
        assert_eq!(
            decoded.position_for(&reordered, &scope).unwrap(),
            cursor.position
        );
    }

    #[test]
    fn cursor_remembers_how_its_page_was_read() {
        let scope = TenantScope::All;
        let filter = EventFilter::default();
        for kind in [PlanKind::Walk, PlanKind::Candidates] {
            let cursor = Cursor::new(position(), &filter, &scope).read_by(kind);
            let decoded = Cursor::decode(&cursor.encode()).unwrap();
            assert_eq!(decoded.read(), Some(kind));
            assert_eq!(decoded, cursor);
        }
        // A version 1 cursor (issued before version 2) still continues its query.
        let cursor = Cursor::new(position(), &filter, &scope);
        let mut bytes = Vec::new();
        bytes.push(1);
        bytes.extend_from_slice(&cursor.position.occurred_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(cursor.position.id.as_bytes());
        bytes.extend_from_slice(&cursor.fingerprint);
        let check = checksum(&bytes);
        bytes.extend_from_slice(&check);
        let decoded = Cursor::decode(&URL_SAFE_NO_PAD.encode(&bytes)).unwrap();
        assert_eq!(decoded.read(), None);
        assert_eq!(
            decoded.position_for(&filter, &scope).unwrap(),
            cursor.position
        );
        // An unknown plan byte is refused (the checksum recomputed, as an attacker could).
        let mut bytes = URL_SAFE_NO_PAD
            .decode(cursor.read_by(PlanKind::Walk).encode())
            .unwrap();
        bytes.truncate(CURSOR_LEN - CHECK_LEN);
        bytes[CURSOR_V1_LEN - CHECK_LEN] = 9;
        let check = checksum(&bytes);
        bytes.extend_from_slice(&check);
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode(&bytes)).is_err());
    }

    #[test]
    fn cursor_refuses_other_query_or_scope() {
        let filter = EventFilter::default();
        let scope = TenantScope::only(["acme"]);
        let cursor = Cursor::new(position(), &filter, &scope);
        let wider = TenantScope::only(["acme", "globex"]);
        assert_eq!(
            cursor
                .position_for(&filter, &wider)
                .unwrap_err()
                .parameter(),
            "cursor"
        );
        let other = EventFilter {
            users: vec!["bob".into()],
            ..Default::default()
        };
        assert!(cursor.position_for(&other, &scope).is_err());
    }

    #[test]
    fn edited_cursor_is_rejected() {
        let cursor = Cursor::new(position(), &EventFilter::default(), &TenantScope::All).encode();
        let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            assert!(
                Cursor::decode(&URL_SAFE_NO_PAD.encode(&bytes)).is_err(),
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        for bad in [
            "",
            "x",
            "!!!!",
            &cursor[..cursor.len() - 1],
            &"A".repeat(500),
        ] {
            assert!(Cursor::decode(bad).is_err());
        }
    }

    #[test]
    fn effective_tenants() {
        let acme = TenantScope::only(["acme"]);
        assert_eq!(acme.effective_tenants(&[]), Some(vec!["acme".to_owned()]));
        assert_eq!(acme.effective_tenants(&["globex".into()]), Some(vec![]));
        assert_eq!(TenantScope::All.effective_tenants(&[]), None);
    }

    #[test]
    fn validation() {
        let bad_range = EventFilter {
            from: Some(Utc::now()),
            to: Some(Utc::now() - chrono::Duration::days(1)),
            ..Default::default()
        };
        assert_eq!(bad_range.validate().unwrap_err().parameter(), "from");
        let too_many = EventFilter {
            users: vec!["u".into(); MAX_FILTER_VALUES + 1],
            ..Default::default()
        };
        assert_eq!(too_many.validate().unwrap_err().parameter(), "user");
        let long = EventFilter {
            resource_name: Some("x".repeat(MAX_FILTER_VALUE_LEN + 1)),
            ..Default::default()
        };
        assert_eq!(long.validate().unwrap_err().parameter(), "resource_name");
    }
}
