//! SQL shared by both backends: the filter, scope and keyset conditions and the statements
//! built from them. Only binding a timestamp and the substring search differ per backend,
//! and a [`Dialect`] supplies those.

use chrono::{DateTime, Utc};
use sqlx::{Database, QueryBuilder};
use uuid::Uuid;

use crate::chain::{ChainHash, ChainLink, ChainVersion};
use crate::error::StoreError;
use crate::event::{Action, Attributes, AuditEvent, Outcome};
use crate::query::{EventFilter, Position, TenantScope};
use crate::term_plan::{Plan, TermGroups};

/// Every stored column of an event, for backends that read typed columns, in the field order of
/// [`StoredRow`].
pub(crate) const ROW_COLUMNS: &str = "seq, prev_hash, hash, id, occurred_at, tenant, request_id, \
     actor_id, actor_email, actor_name, category, action, outcome, reason, resource_id, \
     resource_name, method, route, path, status, duration_ms, client_ip, user_agent, attributes, \
     chain_version";

/// The event columns in the order PostgreSQL's append binds them.
#[cfg(feature = "postgres")]
pub(crate) const EVENT_COLUMNS: &str = "id, occurred_at, tenant, request_id, actor_id, \
     actor_email, actor_name, category, action, outcome, reason, resource_id, resource_name, \
     method, route, path, status, duration_ms, client_ip, user_agent, attributes";

/// What differs between SQLite and PostgreSQL in the shared statements.
pub(crate) trait Dialect {
    /// The sqlx database.
    type DB: Database;
    /// The (schema-qualified) events table.
    fn events_table(&self) -> &str;
    /// The (schema-qualified) table of facet values.
    fn facets_table(&self) -> &str;
    /// Binds a text value.
    fn bind_text(&self, qb: &mut QueryBuilder<Self::DB>, value: &str);
    /// Binds a timestamp as the backend stores `occurred_at`.
    fn bind_time(&self, qb: &mut QueryBuilder<Self::DB>, at: DateTime<Utc>);
    /// Binds an event id.
    fn bind_uuid(&self, qb: &mut QueryBuilder<Self::DB>, id: Uuid);
    /// Binds a chain sequence number.
    fn bind_seq(&self, qb: &mut QueryBuilder<Self::DB>, seq: u64);
    /// The (schema-qualified) table of distinct resource names.
    fn names_table(&self) -> &str;
    /// Pushes a condition on the names table's `name`: "contains `needle`, ignoring case".
    fn push_name_match(&self, qb: &mut QueryBuilder<Self::DB>, needle: &str);
    /// How `resource_name` is compared with the names a subquery selects: the text before
    /// and after the subquery.
    fn names_list(&self) -> (&'static str, &'static str) {
        ("IN (", ")")
    }
    /// Pushes a query selecting the `seq` (as `term_seq`) of every event the terms of
    /// `groups` name.
    fn push_candidate_seqs(&self, qb: &mut QueryBuilder<Self::DB>, groups: &TermGroups);
    /// Pushes, as a FROM item named like the events table, only the events the terms of
    /// `groups` name, read first (the query's other conditions apply to these rows).
    fn push_candidates(&self, qb: &mut QueryBuilder<Self::DB>, groups: &TermGroups);
}

fn push_text_list<D: Dialect>(
    dialect: &D,
    qb: &mut QueryBuilder<D::DB>,
    expression: &str,
    values: &[String],
) {
    qb.push(expression);
    qb.push(" IN (");
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        dialect.bind_text(qb, value);
    }
    qb.push(")");
}

/// Pushes ` WHERE ...` for a filter, its tenant scope and an optional keyset position.
pub(crate) fn push_where<D: Dialect>(
    dialect: &D,
    qb: &mut QueryBuilder<D::DB>,
    filter: &EventFilter,
    scope: &TenantScope,
    after: Option<Position>,
) {
    qb.push(" WHERE 1 = 1");
    match scope.effective_tenants(&filter.tenants) {
        None => {}
        Some(tenants) if tenants.is_empty() => {
            qb.push(" AND 1 = 0");
        }
        Some(tenants) => {
            qb.push(" AND ");
            push_text_list(dialect, qb, "tenant", &tenants);
        }
    }
    if !filter.categories.is_empty() {
        qb.push(" AND ");
        push_text_list(dialect, qb, "category", &filter.categories);
    }
    if !filter.actions.is_empty() {
        let actions: Vec<String> = filter
            .actions
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect();
        qb.push(" AND ");
        push_text_list(dialect, qb, "action", &actions);
    }
    if !filter.outcomes.is_empty() {
        let outcomes: Vec<String> = filter
            .outcomes
            .iter()
            .map(|o| o.as_str().to_owned())
            .collect();
        qb.push(" AND ");
        push_text_list(dialect, qb, "outcome", &outcomes);
    }
    if !filter.users.is_empty() {
        qb.push(" AND (");
        push_text_list(dialect, qb, "actor_id", &filter.users);
        qb.push(" OR lower(actor_email) IN (");
        for (i, user) in filter.users.iter().enumerate() {
            if i > 0 {
                qb.push(", ");
            }
            qb.push("lower(");
            dialect.bind_text(qb, user);
            qb.push(")");
        }
        qb.push("))");
    }
    for (column, value) in [
        ("request_id", &filter.request_id),
        ("resource_id", &filter.resource_id),
    ] {
        if let Some(value) = value {
            qb.push(" AND ");
            qb.push(column);
            qb.push(" = ");
            dialect.bind_text(qb, value);
        }
    }
    if let Some(needle) = filter.resource_name.as_deref().filter(|n| !n.is_empty()) {
        let (open, close) = dialect.names_list();
        qb.push(format!(
            " AND resource_name {open}SELECT name FROM {} WHERE ",
            dialect.names_table()
        ));
        dialect.push_name_match(qb, needle);
        qb.push(close);
    }
    if let Some(from) = filter.from {
        qb.push(" AND occurred_at >= ");
        dialect.bind_time(qb, from);
    }
    if let Some(to) = filter.to {
        qb.push(" AND occurred_at < ");
        dialect.bind_time(qb, to);
    }
    if let Some(after) = after {
        // A row-value comparison both backends can answer from the (occurred_at, id) index.
        qb.push(" AND (occurred_at, id) < (");
        dialect.bind_time(qb, after.occurred_at);
        qb.push(", ");
        dialect.bind_uuid(qb, after.id);
        qb.push(")");
    }
}

/// One stored row, the event with `occurred_at` as microseconds since the epoch, as every
/// reader produces it from typed columns (the SQLite store's own connections, PostgreSQL).
pub(crate) struct StoredRow {
    pub(crate) seq: u64,
    pub(crate) prev_hash: ChainHash,
    pub(crate) hash: ChainHash,
    pub(crate) id: Uuid,
    pub(crate) occurred_at: i64,
    pub(crate) tenant: Option<String>,
    pub(crate) request_id: String,
    pub(crate) actor_id: Option<String>,
    pub(crate) actor_email: Option<String>,
    pub(crate) actor_name: Option<String>,
    pub(crate) category: String,
    pub(crate) action: Action,
    pub(crate) outcome: Outcome,
    pub(crate) reason: Option<String>,
    pub(crate) resource_id: Option<String>,
    pub(crate) resource_name: Option<String>,
    pub(crate) method: String,
    pub(crate) route: String,
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) duration_ms: f64,
    pub(crate) client_ip: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) attributes: Attributes,
    pub(crate) chain_version: u8,
}

/// How the rows of a page are ordered.
#[derive(Clone, Copy)]
pub(crate) enum RowOrder {
    /// `occurred_at DESC, id DESC`: lists and exports.
    NewestFirst,
    /// `seq`: the chain.
    Chain,
}

impl RowOrder {
    fn sql(self) -> &'static str {
        match self {
            RowOrder::NewestFirst => "occurred_at DESC, id DESC",
            RowOrder::Chain => "seq",
        }
    }
}

/// The event a stored row holds, with its chain link.
pub(crate) fn event_from(row: StoredRow) -> Result<AuditEvent, StoreError> {
    let occurred_at = DateTime::from_timestamp_micros(row.occurred_at).ok_or_else(|| {
        StoreError::CorruptRow(format!("occurred_at {} out of range", row.occurred_at))
    })?;
    let version = ChainVersion::from_number(row.chain_version).ok_or_else(|| {
        StoreError::CorruptRow(format!(
            "seq {}: chain_version {} is unknown",
            row.seq, row.chain_version
        ))
    })?;
    Ok(AuditEvent {
        id: row.id,
        occurred_at,
        tenant: row.tenant,
        request_id: row.request_id,
        actor_id: row.actor_id,
        actor_email: row.actor_email,
        actor_name: row.actor_name,
        category: row.category,
        action: row.action,
        outcome: row.outcome,
        reason: row.reason,
        resource_id: row.resource_id,
        resource_name: row.resource_name,
        method: row.method,
        route: row.route,
        path: row.path,
        status: row.status,
        duration_ms: row.duration_ms,
        client_ip: row.client_ip,
        user_agent: row.user_agent,
        attributes: row.attributes,
        chain: Some(ChainLink {
            seq: row.seq,
            prev_hash: row.prev_hash,
            hash: row.hash,
            version,
        }),
    })
}

/// Pushes the rows a query reads: the events table, or only the events the terms name.
pub(crate) fn push_events<D: Dialect>(dialect: &D, qb: &mut QueryBuilder<D::DB>, plan: &Plan) {
    match plan {
        Plan::Walk => {
            qb.push(dialect.events_table());
        }
        Plan::Candidates(groups) => dialect.push_candidates(qb, groups),
        Plan::Recent(count) => {
            qb.push(format!(
                "(SELECT * FROM {} ORDER BY {} LIMIT {count}) AS audit_events",
                dialect.events_table(),
                RowOrder::NewestFirst.sql()
            ));
        }
    }
}

/// `SELECT count(*)` of the events the terms of `groups` name, counting at most `limit`.
pub(crate) fn select_candidate_count<D: Dialect>(
    dialect: &D,
    groups: &TermGroups,
    limit: u64,
) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new("SELECT count(*) FROM (");
    dialect.push_candidate_seqs(&mut qb, groups);
    qb.push(format!(" LIMIT {limit}) AS candidates"));
    qb
}

/// `SELECT count(*)` of the events matching a filter within a scope, read as `plan` says,
/// counting at most `limit`: the same FROM and WHERE as [`select_page`], so a count and the
/// list it describes can never disagree.
pub(crate) fn select_count<D: Dialect>(
    dialect: &D,
    plan: &Plan,
    filter: &EventFilter,
    scope: &TenantScope,
    limit: u64,
) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new("SELECT count(*) FROM (SELECT 1 FROM ");
    push_events(dialect, &mut qb, plan);
    push_where(dialect, &mut qb, filter, scope, None);
    qb.push(format!(" LIMIT {limit}) AS matches"));
    qb
}

/// The resource names containing `needle`, at most `limit`.
pub(crate) fn select_names<D: Dialect>(
    dialect: &D,
    needle: &str,
    limit: usize,
) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new(format!("SELECT name FROM {} WHERE ", dialect.names_table()));
    dialect.push_name_match(&mut qb, needle);
    qb.push(format!(" LIMIT {limit}"));
    qb
}

/// `SELECT <row columns> ... ORDER BY occurred_at DESC, id DESC LIMIT n`.
pub(crate) fn select_page<D: Dialect>(
    dialect: &D,
    plan: &Plan,
    filter: &EventFilter,
    scope: &TenantScope,
    after: Option<Position>,
    limit: usize,
) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new(format!("SELECT {ROW_COLUMNS} FROM "));
    push_events(dialect, &mut qb, plan);
    push_where(dialect, &mut qb, filter, scope, after);
    qb.push(format!(
        " ORDER BY {} LIMIT {limit}",
        RowOrder::NewestFirst.sql()
    ));
    qb
}

/// `SELECT <row columns> ... WHERE id = ? AND <scope>`.
pub(crate) fn select_one<D: Dialect>(
    dialect: &D,
    id: Uuid,
    scope: &TenantScope,
) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new(format!(
        "SELECT {ROW_COLUMNS} FROM {}",
        dialect.events_table()
    ));
    push_where(dialect, &mut qb, &EventFilter::default(), scope, None);
    qb.push(" AND id = ");
    dialect.bind_uuid(&mut qb, id);
    qb
}

/// Events in chain order after `after_seq`, up to `through` (inclusive) when given
/// (verification walks the chain with this).
pub(crate) fn select_chain<D: Dialect>(
    dialect: &D,
    after_seq: u64,
    through: Option<u64>,
    limit: usize,
) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new(format!(
        "SELECT {ROW_COLUMNS} FROM {} WHERE seq > ",
        dialect.events_table()
    ));
    dialect.bind_seq(&mut qb, after_seq);
    if let Some(through) = through {
        qb.push(" AND seq <= ");
        dialect.bind_seq(&mut qb, through);
    }
    qb.push(format!(" ORDER BY {} LIMIT {limit}", RowOrder::Chain.sql()));
    qb
}

/// The facet values of `kind` (`category`, `action`, `outcome`) within a scope, from the
/// table of facet values the appends keep.
pub(crate) fn select_distinct<D: Dialect>(
    dialect: &D,
    kind: &str,
    scope: &TenantScope,
) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new(format!(
        "SELECT DISTINCT value FROM {}",
        dialect.facets_table()
    ));
    push_where(dialect, &mut qb, &EventFilter::default(), scope, None);
    qb.push(" AND kind = ");
    dialect.bind_text(&mut qb, kind);
    qb.push(" ORDER BY value");
    qb
}

/// Distinct actors: one row per (actor_id, actor_email) with the latest-sorting name.
pub(crate) fn select_users<D: Dialect>(dialect: &D, scope: &TenantScope) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new(format!(
        "SELECT value, email, MAX(name) FROM {}",
        dialect.facets_table()
    ));
    push_where(dialect, &mut qb, &EventFilter::default(), scope, None);
    qb.push(" AND kind = 'user' GROUP BY value, email ORDER BY email, value");
    qb
}

/// Statements that rebuild the table of facet values from the events, after a purge removed
/// some of them (`{facets}` and `{events}` are the tables). PostgreSQL's retention function
/// runs the same statements (migration 0005), with the rights of the schema's owner.
#[cfg(feature = "sqlite")]
pub(crate) const REBUILD_FACETS: [&str; 3] = [
    "DELETE FROM {facets}",
    "INSERT INTO {facets} (tenant, kind, value) \
     SELECT DISTINCT tenant, 'category', category FROM {events} \
     UNION SELECT DISTINCT tenant, 'action', action FROM {events} \
     UNION SELECT DISTINCT tenant, 'outcome', outcome FROM {events}",
    "INSERT INTO {facets} (tenant, kind, value, email, name) \
     SELECT DISTINCT tenant, 'user', actor_id, actor_email, actor_name FROM {events} \
     WHERE actor_id IS NOT NULL OR actor_email IS NOT NULL",
];

/// Escapes `%`, `_` and `\` so a user's text is matched literally by `LIKE ... ESCAPE '\'`.
#[cfg(any(feature = "postgres", test))]
pub(crate) fn escape_like(needle: &str) -> String {
    let mut escaped = String::with_capacity(needle.len() + 2);
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_escaping() {
        assert_eq!(escape_like(r"50%_a\b"), r"50\%\_a\\b");
    }
}
