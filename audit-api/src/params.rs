//! Query-string parsing: the one list of accepted parameters, and the parser built on it.
//!
//! The raw query string is split into pairs by hand (form-urlencoded) instead of through a
//! serde extractor so that repeated values, aliases and unknown names are all seen: an
//! unknown parameter is a 400, never silently ignored, because a typo must not widen an
//! audit query. The OpenAPI document is generated from [`PARAMETERS`], so the two cannot
//! drift apart.

use std::collections::BTreeMap;

use audit_store::{Action, Cursor, EventFilter, Limit, Outcome, PageRequest};
use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::error::ApiError;
use crate::export::{Column, ExportFormat};

/// The routes that take query parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /events`
    Events,
    /// `GET /export`
    Export,
    /// `GET /facets`: the filter parameters, which its counts are for.
    Facets,
    /// `GET /histogram`: the filter parameters and `interval`.
    Histogram,
    /// Routes taking no parameter at all (`/events/{id}`, `/openapi.json`).
    NoParameters,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Events => "/events",
            Endpoint::Export => "/export",
            Endpoint::Facets => "/facets",
            Endpoint::Histogram => "/histogram",
            Endpoint::NoParameters => "this route",
        }
    }
}

/// The type of a parameter's value, for validation and for the OpenAPI schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Free text matched exactly (or as a substring, see the description).
    Text,
    /// A snake_case action name.
    Action,
    /// `allow` or `deny`.
    Outcome,
    /// An RFC 3339 instant or a `YYYY-MM-DD` date.
    Instant,
    /// An integer 1..=1000.
    Limit,
    /// An opaque cursor.
    Cursor,
    /// `csv`, `json` or `ndjson`.
    Format,
    /// Comma-separated column names.
    Columns,
    /// A hash-chain sequence number (a non-negative integer).
    Seq,
    /// `hour` or `day`.
    Interval,
}

/// One accepted query parameter.
#[derive(Debug, Clone, Copy)]
pub struct ParameterSpec {
    /// The canonical name.
    pub name: &'static str,
    /// Another accepted spelling, treated exactly as `name`.
    pub alias: Option<&'static str>,
    /// Whether it may be given more than once (values are ORed).
    pub repeatable: bool,
    /// Accepted by `GET /events`.
    pub events: bool,
    /// Accepted by `GET /export`.
    pub export: bool,
    /// Accepted by `GET /facets` (the filters its counts are for).
    pub facets: bool,
    /// Accepted by `GET /histogram`.
    pub histogram: bool,
    /// The value's type.
    pub kind: ValueKind,
    /// What it matches, for the OpenAPI document.
    pub description: &'static str,
}

impl ParameterSpec {
    /// Whether `endpoint` accepts this parameter.
    pub fn accepted_by(&self, endpoint: Endpoint) -> bool {
        match endpoint {
            Endpoint::Events => self.events,
            Endpoint::Export => self.export,
            Endpoint::Facets => self.facets,
            Endpoint::Histogram => self.histogram,
            Endpoint::NoParameters => false,
        }
    }
}

const fn filter(
    name: &'static str,
    repeatable: bool,
    kind: ValueKind,
    description: &'static str,
) -> ParameterSpec {
    ParameterSpec {
        name,
        alias: None,
        repeatable,
        events: true,
        export: true,
        facets: true,
        histogram: true,
        kind,
        description,
    }
}

/// Every query parameter the router accepts, with where it is accepted.
///
/// ```
/// use audit_api::{Endpoint, PARAMETERS};
/// let export_only: Vec<&str> = PARAMETERS
///     .iter()
///     .filter(|p| p.accepted_by(Endpoint::Export) && !p.accepted_by(Endpoint::Events))
///     .map(|p| p.name)
///     .collect();
/// assert_eq!(export_only, ["format", "columns", "chain_head"]);
/// ```
pub const PARAMETERS: &[ParameterSpec] = &[
    ParameterSpec {
        alias: Some("resource_type"),
        ..filter(
            "category",
            true,
            ValueKind::Text,
            "Resource type, exact match (alias `resource_type`). Repeat to match any of several.",
        )
    },
    filter(
        "action",
        true,
        ValueKind::Action,
        "Action (snake_case), exact match. Repeat to match any of several.",
    ),
    filter(
        "status",
        true,
        ValueKind::Outcome,
        "Outcome: `allow` or `deny`. Repeat to match both.",
    ),
    filter(
        "user",
        true,
        ValueKind::Text,
        "Actor: equals `actor_id`, or `actor_email` ignoring case. Repeat to match any of several.",
    ),
    filter(
        "request_id",
        false,
        ValueKind::Text,
        "Request ID, exact match.",
    ),
    filter(
        "resource_id",
        false,
        ValueKind::Text,
        "Resource ID, exact match.",
    ),
    filter(
        "resource_name",
        false,
        ValueKind::Text,
        "Resource name, case-insensitive substring.",
    ),
    filter(
        "tenant",
        true,
        ValueKind::Text,
        "Tenant, exact match, further limited to the tenants the viewer may see.",
    ),
    filter(
        "from",
        false,
        ValueKind::Instant,
        "Earliest instant, inclusive: RFC 3339, or `YYYY-MM-DD` meaning 00:00 UTC.",
    ),
    filter(
        "to",
        false,
        ValueKind::Instant,
        "Latest instant, exclusive: RFC 3339, or `YYYY-MM-DD` meaning 00:00 UTC.",
    ),
    ParameterSpec {
        export: false,
        facets: false,
        histogram: false,
        ..filter(
            "limit",
            false,
            ValueKind::Limit,
            "Page size, 1 to 1000 (default 50).",
        )
    },
    ParameterSpec {
        export: false,
        facets: false,
        histogram: false,
        ..filter(
            "cursor",
            false,
            ValueKind::Cursor,
            "The `next_cursor` of the previous page, with the same filters.",
        )
    },
    ParameterSpec {
        events: false,
        facets: false,
        histogram: false,
        ..filter(
            "format",
            false,
            ValueKind::Format,
            "`csv` (default), `json` (one array) or `ndjson` (one object per line).",
        )
    },
    ParameterSpec {
        events: false,
        facets: false,
        histogram: false,
        ..filter(
            "columns",
            false,
            ValueKind::Columns,
            "Comma-separated event field names, in the order wanted (default: every field).",
        )
    },
    ParameterSpec {
        events: false,
        facets: false,
        histogram: false,
        ..filter(
            "chain_head",
            false,
            ValueKind::Seq,
            "Include only events up to this hash-chain sequence number (default: the chain's \
             head when the export starts, answered in `X-Audit-Chain-Head`). Pass that value \
             back to reproduce an export exactly; more than the current head is a 400.",
        )
    },
    ParameterSpec {
        name: "interval",
        alias: None,
        repeatable: false,
        events: false,
        export: false,
        facets: false,
        histogram: true,
        kind: ValueKind::Interval,
        description: "`/histogram` only: the width of a bar, `hour` or `day` (default `day`), \
                      aligned to UTC.",
    },
];

/// Everything a query string asked for, validated.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParsedQuery {
    pub(crate) filter: EventFilter,
    pub(crate) limit: Option<Limit>,
    pub(crate) cursor: Option<Cursor>,
    pub(crate) format: Option<ExportFormat>,
    pub(crate) columns: Option<Vec<Column>>,
    /// The chain position an export is pinned to, if the client gave one.
    pub(crate) chain_head: Option<u64>,
    /// The bar width of a histogram.
    pub(crate) interval: Option<crate::histogram::Interval>,
    /// The filter parameters under their canonical names, as given: recorded in the
    /// attributes of an export's own audit event.
    pub(crate) filters_given: BTreeMap<&'static str, Vec<String>>,
}

impl ParsedQuery {
    /// The page a list query asks for.
    pub(crate) fn page(&self) -> PageRequest {
        PageRequest {
            limit: self.limit.unwrap_or_default(),
            cursor: self.cursor.clone(),
        }
    }
}

/// Parses the raw query string of a request to `endpoint`.
pub(crate) fn parse_query(raw: Option<&str>, endpoint: Endpoint) -> Result<ParsedQuery, ApiError> {
    let mut parsed = ParsedQuery::default();
    let mut seen: Vec<&'static str> = Vec::new();
    for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let spec = PARAMETERS
            .iter()
            .find(|spec| spec.name == name || spec.alias == Some(&*name))
            .ok_or_else(|| unknown_parameter(&name, endpoint))?;
        if !spec.accepted_by(endpoint) {
            return Err(ApiError::invalid_parameter(
                name.as_ref(),
                format!("`{name}` is not accepted by {}", endpoint.path()),
            ));
        }
        if !spec.repeatable && seen.contains(&spec.name) {
            return Err(ApiError::invalid_parameter(
                name.as_ref(),
                "may be given only once",
            ));
        }
        seen.push(spec.name);
        if value.is_empty() {
            return Err(ApiError::invalid_parameter(
                name.as_ref(),
                "must not be empty (leave the parameter out instead)",
            ));
        }
        apply(&mut parsed, spec, &name, value.into_owned())?;
    }
    parsed.filter.validate()?;
    Ok(parsed)
}

fn unknown_parameter(name: &str, endpoint: Endpoint) -> ApiError {
    let accepted: Vec<&str> = PARAMETERS
        .iter()
        .filter(|spec| spec.accepted_by(endpoint))
        .map(|spec| spec.name)
        .collect();
    let message = if accepted.is_empty() {
        format!(
            "unknown parameter `{name}`: {} takes no parameters",
            endpoint.path()
        )
    } else {
        format!(
            "unknown parameter `{name}`; accepted: {}",
            accepted.join(", ")
        )
    };
    // Echo at most a short prefix of the name: it came from the client.
    let shown: String = name.chars().take(64).collect();
    ApiError::invalid_parameter(shown, message)
}

fn apply(
    parsed: &mut ParsedQuery,
    spec: &ParameterSpec,
    given_name: &str,
    value: String,
) -> Result<(), ApiError> {
    let invalid = |message: String| ApiError::invalid_parameter(given_name, message);
    let filter = &mut parsed.filter;
    let is_filter = spec.events && spec.export;
    if is_filter {
        parsed
            .filters_given
            .entry(spec.name)
            .or_default()
            .push(value.clone());
    }
    match spec.name {
        "category" => filter.categories.push(value),
        "action" => filter.actions.push(
            value
                .parse::<Action>()
                .map_err(|e| invalid(e.to_string()))?,
        ),
        "status" => filter.outcomes.push(
            value
                .parse::<Outcome>()
                .map_err(|e| invalid(e.to_string()))?,
        ),
        "user" => filter.users.push(value),
        "request_id" => filter.request_id = Some(value),
        "resource_id" => filter.resource_id = Some(value),
        "resource_name" => filter.resource_name = Some(value),
        "tenant" => filter.tenants.push(value),
        "from" => filter.from = Some(parse_instant(&value).map_err(invalid)?),
        "to" => filter.to = Some(parse_instant(&value).map_err(invalid)?),
        "limit" => {
            let number: u64 = value
                .parse()
                .map_err(|_| invalid("must be an integer between 1 and 1000".into()))?;
            parsed.limit = Some(Limit::new(number)?);
        }
        "cursor" => parsed.cursor = Some(Cursor::decode(&value)?),
        "format" => parsed.format = Some(value.parse().map_err(invalid)?),
        "columns" => parsed.columns = Some(parse_columns(&value).map_err(invalid)?),
        "interval" => parsed.interval = Some(value.parse().map_err(invalid)?),
        "chain_head" => {
            let seq = value
                .parse::<u64>()
                .ok()
                .filter(|seq| i64::try_from(*seq).is_ok())
                .ok_or_else(|| invalid("must be a non-negative integer".into()))?;
            parsed.chain_head = Some(seq);
        }
        other => {
            // Every name in PARAMETERS is handled above; reaching here is a bug in this file,
            // reported as a 400 rather than a panic so bad input can never cause a 5xx.
            return Err(invalid(format!("parameter `{other}` is not supported")));
        }
    }
    Ok(())
}

/// Parses an RFC 3339 instant, or a `YYYY-MM-DD` date meaning 00:00 UTC.
///
/// Years are limited to 1..=9999, the range every backend can store and compare.
pub(crate) fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    let at = if text.len() == 10 {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| format!("`{text}` is not a valid YYYY-MM-DD date"))?
            .and_hms_opt(0, 0, 0)
            .map(|naive| naive.and_utc())
            .ok_or_else(|| format!("`{text}` is not a valid date"))?
    } else {
        DateTime::parse_from_rfc3339(text)
            .map_err(|_| {
                let shown: String = text.chars().take(64).collect();
                format!("`{shown}` is neither an RFC 3339 instant nor a YYYY-MM-DD date")
            })?
            .with_timezone(&Utc)
    };
    if !(1..=9999).contains(&at.year()) {
        return Err("years must be between 0001 and 9999".into());
    }
    Ok(audit_store::truncate_to_micros(at))
}

fn parse_columns(text: &str) -> Result<Vec<Column>, String> {
    let mut columns = Vec::new();
    for name in text.split(',').map(str::trim) {
        if name.is_empty() {
            return Err("column names are separated by single commas".into());
        }
        let column = Column::parse(name).ok_or_else(|| {
            let shown: String = name.chars().take(64).collect();
            let known: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
            format!("unknown column `{shown}`; known: {}", known.join(", "))
        })?;
        if columns.contains(&column) {
            return Err(format!("column `{name}` is listed twice"));
        }
        columns.push(column);
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(raw: &str) -> Result<ParsedQuery, ApiError> {
        parse_query(Some(raw), Endpoint::Events)
    }

    fn parameter_of(result: Result<ParsedQuery, ApiError>) -> String {
        match result {
            Err(ApiError::InvalidParameter { parameter, .. }) => parameter,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn repeated_values_and_alias_are_ored() {
        let parsed =
            events("category=Model&resource_type=Field&action=train&action=clone").unwrap();
        assert_eq!(parsed.filter.categories, ["Model", "Field"]);
        assert_eq!(parsed.filter.actions, [Action::Train, Action::Clone]);
        assert_eq!(parsed.filters_given["category"], ["Model", "Field"]);
    }

    #[test]
    fn dates_mean_midnight_utc() {
        let parsed = events("from=2026-03-01&to=2026-03-02T10:00:00%2B02:00").unwrap();
        assert_eq!(
            parsed.filter.from.unwrap().to_rfc3339(),
            "2026-03-01T00:00:00+00:00"
        );
        assert_eq!(
            parsed.filter.to.unwrap().to_rfc3339(),
            "2026-03-02T08:00:00+00:00"
        );
    }

    #[test]
    fn rejections_name_the_parameter() {
        assert_eq!(parameter_of(events("catgory=Model")), "catgory");
        assert_eq!(parameter_of(events("format=csv")), "format");
        assert_eq!(parameter_of(events("limit=0")), "limit");
        assert_eq!(parameter_of(events("limit=1001")), "limit");
        assert_eq!(parameter_of(events("limit=ten")), "limit");
        assert_eq!(
            parameter_of(events("request_id=a&request_id=b")),
            "request_id"
        );
        assert_eq!(parameter_of(events("status=maybe")), "status");
        assert_eq!(parameter_of(events("action=Train")), "action");
        assert_eq!(parameter_of(events("from=yesterday")), "from");
        assert_eq!(parameter_of(events("from=2026-02-30")), "from");
        assert_eq!(parameter_of(events("cursor=abc")), "cursor");
        assert_eq!(parameter_of(events("user=")), "user");
        assert_eq!(parameter_of(events("resource_type=")), "resource_type");
        assert_eq!(
            parameter_of(events("from=2026-03-02&to=2026-03-01")),
            "from"
        );
        let export = |raw| parse_query(Some(raw), Endpoint::Export);
        assert_eq!(parameter_of(export("cursor=x")), "cursor");
        assert_eq!(parameter_of(export("columns=id,nope")), "columns");
        assert_eq!(parameter_of(export("columns=id,,action")), "columns");
        assert_eq!(parameter_of(export("columns=id,id")), "columns");
        assert_eq!(parameter_of(export("format=xml")), "format");
        let none = parse_query(Some("limit=5"), Endpoint::NoParameters);
        assert_eq!(parameter_of(none), "limit");
    }

    #[test]
    fn columns_keep_their_order() {
        let parsed = parse_query(Some("columns=action, id"), Endpoint::Export).unwrap();
        assert_eq!(parsed.columns.unwrap(), [Column::Action, Column::Id]);
    }

    #[test]
    fn every_parameter_is_handled_by_the_parser() {
        let sample = |spec: &ParameterSpec| match spec.kind {
            ValueKind::Text => "x",
            ValueKind::Action => "train",
            ValueKind::Outcome => "deny",
            ValueKind::Instant => "2026-01-01",
            ValueKind::Limit => "10",
            ValueKind::Cursor => "",
            ValueKind::Format => "json",
            ValueKind::Columns => "id",
            ValueKind::Seq => "12",
            ValueKind::Interval => "hour",
        };
        for spec in PARAMETERS.iter().filter(|s| s.kind != ValueKind::Cursor) {
            let endpoint = if spec.events {
                Endpoint::Events
            } else if spec.export {
                Endpoint::Export
            } else {
                Endpoint::Histogram
            };
            let raw = format!("{}={}", spec.name, sample(spec));
            assert!(parse_query(Some(&raw), endpoint).is_ok(), "{raw}");
        }
    }
}
