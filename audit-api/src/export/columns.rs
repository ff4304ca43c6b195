//! The event fields an export can carry, by their contract names.

/// One event field as an export column, named as in the JSON contract.
///
/// ```
/// use audit_api::Column;
/// assert_eq!(Column::parse("actor_email"), Some(Column::ActorEmail));
/// assert_eq!(Column::ALL[0].name(), "id");
/// assert_eq!(Column::parse("password"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each variant is the field of the same name
pub enum Column {
    Id,
    OccurredAt,
    Tenant,
    RequestId,
    ActorId,
    ActorEmail,
    ActorName,
    Category,
    Action,
    Outcome,
    Reason,
    ResourceId,
    ResourceName,
    Method,
    Route,
    Path,
    Status,
    DurationMs,
    ClientIp,
    UserAgent,
    Attributes,
}

impl Column {
    /// Every column in the contract's field order: the default export layout.
    pub const ALL: [Column; 21] = [
        Column::Id,
        Column::OccurredAt,
        Column::Tenant,
        Column::RequestId,
        Column::ActorId,
        Column::ActorEmail,
        Column::ActorName,
        Column::Category,
        Column::Action,
        Column::Outcome,
        Column::Reason,
        Column::ResourceId,
        Column::ResourceName,
        Column::Method,
        Column::Route,
        Column::Path,
        Column::Status,
        Column::DurationMs,
        Column::ClientIp,
        Column::UserAgent,
        Column::Attributes,
    ];

    /// The field name.
    pub fn name(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::OccurredAt => "occurred_at",
            Column::Tenant => "tenant",
            Column::RequestId => "request_id",
            Column::ActorId => "actor_id",
            Column::ActorEmail => "actor_email",
            Column::ActorName => "actor_name",
            Column::Category => "category",
            Column::Action => "action",
            Column::Outcome => "outcome",
            Column::Reason => "reason",
            Column::ResourceId => "resource_id",
            Column::ResourceName => "resource_name",
            Column::Method => "method",
            Column::Route => "route",
            Column::Path => "path",
            Column::Status => "status",
            Column::DurationMs => "duration_ms",
            Column::ClientIp => "client_ip",
            Column::UserAgent => "user_agent",
            Column::Attributes => "attributes",
        }
    }

    /// The column of a field name, if it is one.
    pub fn parse(name: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.name() == name)
    }
}
