//! How a query uses the terms index (ARCHITECTURE.md, "Reading").
//!
//! Every filterable value of an event is also a *term* in one inverted index (SQLite: a
//! contentless FTS5 table, `sqlite/terms.rs`; PostgreSQL: a GIN index over a generated
//! array, migration 0005). A filter becomes an AND of *groups*, each an OR of terms (the
//! values of one parameter). Before it reads rows, a store counts the candidates the terms
//! give, up to [`SELECTIVE`] (a tenant or outcome group only counts alone, see [`TermGroups::of`]):
//!
//! * fewer: the query reads just those candidates (and sorts them), whatever else it asks;
//! * that many or more: the filter matches densely, so the newest-first walk of the
//!   `(occurred_at, id)` index with the filter's conditions on each row finds a page quickly,
//!   and the terms are not used.
//!
//! Terms only name candidates: every query compares the columns as well, so a hash
//! collision can cost a row read, never a wrong answer.

use crate::query::{EventFilter, TenantScope};

/// Candidate counts below this use the terms; at or above, the time-ordered walk. At the
/// boundary both cost about the same: this many row reads (and a sort), or a walk that meets
/// a match every (table size / this) rows.
pub(crate) const SELECTIVE: u64 = 10_000;

/// The most resource names a substring may match for its group to be used; more, and the
/// substring is treated as broad.
pub(crate) const MAX_NAMES: usize = 500;

/// What a term is of, by the letter both backends prefix it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TermKind {
    Tenant,
    Category,
    Action,
    Outcome,
    ActorId,
    ActorEmail,
    ResourceId,
    ResourceName,
    RequestId,
}

impl TermKind {
    pub(crate) fn letter(self) -> char {
        match self {
            TermKind::Tenant => 't',
            TermKind::Category => 'c',
            TermKind::Action => 'a',
            TermKind::Outcome => 'o',
            TermKind::ActorId => 'u',
            TermKind::ActorEmail => 'e',
            TermKind::ResourceId => 'r',
            TermKind::ResourceName => 'n',
            TermKind::RequestId => 'q',
        }
    }
}

/// One parameter's values as terms: a row matches when it has any of them. An e-mail value
/// is given as the user typed it; each backend folds its case as its index does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TermGroup(pub(crate) Vec<(TermKind, String)>);

impl TermGroup {
    /// True for the kinds whose values each cover a large share of the log.
    fn is_broad(&self) -> bool {
        self.0
            .iter()
            .all(|(kind, _)| matches!(kind, TermKind::Tenant | TermKind::Outcome))
    }
}

/// The groups of a filter, all of which a row must match; empty when no term applies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TermGroups(pub(crate) Vec<TermGroup>);

impl TermGroups {
    /// The groups of `filter` within `scope`. `names` are the resource names a substring
    /// filter matched (`None`: the substring is broad, or there is none).
    pub(crate) fn of(
        filter: &EventFilter,
        scope: &TenantScope,
        names: Option<Vec<String>>,
    ) -> Self {
        let mut groups = Vec::new();
        let mut group = |kind: TermKind, values: Vec<String>| {
            if !values.is_empty() {
                groups.push(TermGroup(values.into_iter().map(|v| (kind, v)).collect()));
            }
        };
        if let Some(tenants) = scope.effective_tenants(&filter.tenants) {
            group(TermKind::Tenant, tenants);
        }
        group(TermKind::Category, filter.categories.clone());
        group(
            TermKind::Action,
            filter
                .actions
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
        );
        group(
            TermKind::Outcome,
            filter
                .outcomes
                .iter()
                .map(|o| o.as_str().to_owned())
                .collect(),
        );
        group(
            TermKind::RequestId,
            filter.request_id.iter().cloned().collect(),
        );
        group(
            TermKind::ResourceId,
            filter.resource_id.iter().cloned().collect(),
        );
        if !filter.users.is_empty() {
            let mut terms = Vec::with_capacity(filter.users.len() * 2);
            for user in &filter.users {
                terms.push((TermKind::ActorId, user.clone()));
                terms.push((TermKind::ActorEmail, user.clone()));
            }
            groups.push(TermGroup(terms));
        }
        if let Some(names) = names {
            // No name at all matches: the group is an empty OR, and nothing matches.
            groups.push(TermGroup(
                names
                    .into_iter()
                    .map(|n| (TermKind::ResourceName, n))
                    .collect(),
            ));
        }
        // A tenant or an outcome has few values, so its term's posting list holds a large
        // share of all events; intersecting it with a narrower group costs more (SQLite
        // seeks every segment of a long doclist; PostgreSQL reads the whole posting list
        // into its bitmap) than comparing the column on the narrower group's few
        // candidates, which every query does anyway. So they name candidates only alone.
        if groups.iter().any(|group| !group.is_broad()) {
            groups.retain(|group| !group.is_broad());
        }
        TermGroups(groups)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when some group has no term: no row can match.
    pub(crate) fn matches_nothing(&self) -> bool {
        self.0.iter().any(|group| group.0.is_empty())
    }
}

/// The newest events a first page with only broad conditions looks at before anything
/// else (see [`Plan::Recent`]).
pub(crate) const RECENT: usize = 2_000;

/// What a query reads: candidates from the terms, or the time-ordered walk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Plan {
    /// Walk `(occurred_at, id)` newest first with the filter's conditions.
    #[default]
    Walk,
    /// Read only the rows these terms name.
    Candidates(TermGroups),
    /// Only the newest this many events. A first page whose conditions are all broad (a
    /// tenant, an outcome, a start time) usually finds its rows there: when it does, they
    /// are the page (the newest matches overall), at the cost of a short walk and no count;
    /// when it does not, the store plans as usual.
    Recent(usize),
}

/// True when a first page of `filter` may try [`Plan::Recent`]: no condition but tenants,
/// outcomes and a start time, each of which a large share of events tends to meet.
pub(crate) fn only_broad_conditions(filter: &EventFilter) -> bool {
    filter.categories.is_empty()
        && filter.actions.is_empty()
        && filter.users.is_empty()
        && filter.request_id.is_none()
        && filter.resource_id.is_none()
        && filter.resource_name.is_none()
        && filter.to.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Action;

    #[test]
    fn groups_follow_the_filter_and_the_scope() {
        let filter = EventFilter {
            categories: vec!["Model".into(), "Plan".into()],
            actions: vec![Action::Train],
            users: vec!["Alice@Acme.test".into()],
            ..EventFilter::default()
        };
        let groups = TermGroups::of(&filter, &TenantScope::only(["acme"]), None);
        // The tenant's term is left to the column comparison: other groups are narrower.
        assert_eq!(groups.0.len(), 3);
        assert_eq!(groups.0[0].0.len(), 2);
        assert_eq!(
            groups.0[2].0,
            vec![
                (TermKind::ActorId, "Alice@Acme.test".to_owned()),
                (TermKind::ActorEmail, "Alice@Acme.test".to_owned())
            ]
        );
        assert!(TermGroups::of(&EventFilter::default(), &TenantScope::All, None).is_empty());
        // Alone, the tenant and the outcome do name the candidates (a small tenant, rare
        // denials).
        let denied = EventFilter {
            outcomes: vec![crate::event::Outcome::Deny],
            ..EventFilter::default()
        };
        let groups = TermGroups::of(&denied, &TenantScope::only(["acme"]), None);
        assert_eq!(groups.0.len(), 2);
        let nothing = TermGroups::of(&EventFilter::default(), &TenantScope::All, Some(vec![]));
        assert!(nothing.matches_nothing());
    }
}
