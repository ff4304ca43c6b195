//! The OpenAPI 3.1 document, generated from the route table ([`crate::router`]) and the
//! parameter table ([`crate::PARAMETERS`]) with utoipa, so it lists exactly what the code
//! serves and parses. Response schemas are utoipa derives; tests check them against the
//! serde form of the store's types.

use bytes::Bytes;
use serde_json::json;
use utoipa::ToSchema;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
    ParameterStyle, PathItem,
};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::server::Server;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    RefOr, Required, ResponseBuilder,
};

use crate::access::Permission;
use crate::params::{Endpoint, PARAMETERS, ParameterSpec, ValueKind};
use crate::router::{Produces, ROUTES, RouteSpec};

/// Schemas of the JSON bodies, named as they appear in the document.
#[allow(dead_code)] // only their derived schemas are used
mod schemas {
    use utoipa::ToSchema;

    /// One audit event.
    #[derive(ToSchema)]
    pub(crate) struct AuditEvent {
        /// UUIDv7, time-ordered.
        #[schema(format = Uuid)]
        pub id: String,
        /// RFC 3339 UTC, microseconds.
        #[schema(format = DateTime)]
        pub occurred_at: String,
        pub tenant: Option<String>,
        pub request_id: String,
        pub actor_id: Option<String>,
        pub actor_email: Option<String>,
        pub actor_name: Option<String>,
        /// The resource type, e.g. `Model`.
        pub category: String,
        /// snake_case, e.g. `create`, `train`, `download`.
        pub action: String,
        #[schema(inline)]
        pub outcome: AuditOutcome,
        pub reason: Option<String>,
        pub resource_id: Option<String>,
        pub resource_name: Option<String>,
        pub method: String,
        /// The matched route pattern.
        pub route: String,
        pub path: String,
        pub status: u16,
        pub duration_ms: f64,
        pub client_ip: Option<String>,
        pub user_agent: Option<String>,
        /// Action-specific detail; field changes under `changes` as `{"field": [before, after]}`.
        #[schema(value_type = Object)]
        pub attributes: serde_json::Value,
        /// Where the event sits in the store's hash chain (tamper evidence); absent when the
        /// store keeps no chain.
        pub chain: Option<AuditChainLink>,
    }

    /// A stored event's link in the hash chain. Version 2 (`version: 2`):
    /// `hash = SHA-256("audit-chain-v2\0" ‖ prev_hash ‖ seq as 8 bytes big-endian ‖
    /// SHA-256("audit-event-v2\0" ‖ canonical JSON))`; version 1 (no `version`, events
    /// stored before version 2): `hash = SHA-256("audit-chain-v1\0" ‖ prev_hash ‖ seq ‖
    /// canonical JSON)`; the canonical JSON being the event without `chain`, keys sorted at
    /// every level, compact.
    #[derive(ToSchema)]
    pub(crate) struct AuditChainLink {
        /// Position in the chain, from 1, without gaps.
        #[schema(minimum = 1)]
        pub seq: u64,
        /// The previous event's hash (64 zeros before the first), 64 hex digits.
        pub prev_hash: String,
        /// This event's hash, 64 hex digits.
        pub hash: String,
        /// The hash recipe: 2, or absent for 1.
        #[schema(minimum = 2, maximum = 2)]
        pub version: Option<u8>,
    }

    /// An Ed25519-signed statement "the chain had `seq` events ending in `head` at
    /// `created_at`". The signed bytes are `"audit-checkpoint-v1\0" ‖ seq (8 bytes BE) ‖
    /// head (32 bytes) ‖ created_at in Unix microseconds (8 bytes BE) ‖ kind`.
    #[derive(ToSchema)]
    pub(crate) struct AuditCheckpoint {
        /// Sequence number of the chain head (for `purge`: of the last removed event).
        pub seq: u64,
        /// Hash of the chain head, 64 hex digits.
        pub head: String,
        /// RFC 3339 UTC, microseconds.
        #[schema(format = DateTime)]
        pub created_at: String,
        #[schema(inline)]
        pub kind: AuditCheckpointKind,
        /// The signer's Ed25519 public key, 64 hex digits.
        pub public_key: String,
        /// The Ed25519 signature, 128 hex digits.
        pub signature: String,
    }

    /// The signed manifest of an export.
    #[derive(ToSchema)]
    pub(crate) struct AuditExportManifest {
        /// 1.
        pub version: u64,
        /// The filter parameters of the export, under their canonical names.
        #[schema(value_type = Object)]
        pub filters: serde_json::Value,
        /// `"all"` or the tenants the requesting viewer may see.
        #[schema(value_type = Object)]
        pub tenant_scope: serde_json::Value,
        /// `csv`, `json` or `ndjson`.
        pub format: String,
        pub columns: Vec<String>,
        /// The chain position the export is pinned to.
        pub chain_head: u64,
        /// The hash of the event at `chain_head` (64 zeros for 0), 64 hex digits.
        pub chain_head_hash: String,
        pub row_count: u64,
        /// SHA-256 of the export's bytes, 64 hex digits.
        pub sha256: String,
        /// The smallest and largest sequence number exported (null without rows).
        pub min_seq: Option<u64>,
        pub max_seq: Option<u64>,
        /// The latest checkpoint when the manifest was made, or null.
        pub checkpoint: Option<AuditCheckpoint>,
        /// RFC 3339 UTC, microseconds.
        #[schema(format = DateTime)]
        pub created_at: String,
        /// The signer's Ed25519 public key, 64 hex digits.
        pub public_key: String,
        /// Ed25519 over `"audit-export-manifest-v1" ‖ 0x00 ‖ canonical JSON of the rest`.
        pub signature: String,
    }

    /// How far the log has been forwarded, per sink.
    #[derive(ToSchema)]
    pub(crate) struct AuditForwarding {
        pub sinks: Vec<AuditSinkStatus>,
    }

    /// One forwarding sink.
    #[derive(ToSchema)]
    pub(crate) struct AuditSinkStatus {
        pub sink: String,
        /// `forwarding`, `caught_up`, `retrying`, `halted`, `standby`, `stopped`, `starting`
        /// or `unknown` (no live lease: no instance forwards it now).
        pub state: String,
        /// Events stored but not yet acknowledged by the sink.
        pub lag_events: u64,
        /// How long the oldest undelivered event has waited, in seconds.
        pub lag_seconds: f64,
        /// The last event seq the sink acknowledged.
        pub delivered_seq: u64,
        pub head_seq: u64,
        /// The instance holding the sink's lease, if live.
        pub holder: Option<String>,
        /// Whether that is the instance answering.
        pub this_instance: bool,
        /// Set while the sink is halted by a permanent refusal.
        pub halt: Option<AuditForwardHalt>,
        /// The last delivery error the answering instance saw.
        pub last_error: Option<String>,
        /// When the sink's position last moved, RFC 3339.
        #[schema(format = DateTime)]
        pub updated_at: String,
    }

    /// A sink halted at a batch it refused permanently, until an operator resumes it
    /// (`audit forward-retry`).
    #[derive(ToSchema)]
    pub(crate) struct AuditForwardHalt {
        /// The first event of the refused batch.
        pub seq: u64,
        /// What the sink answered.
        pub reason: String,
        #[schema(format = DateTime)]
        pub since: String,
    }

    /// Why a checkpoint was written.
    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub(crate) enum AuditCheckpointKind {
        Periodic,
        Shutdown,
        Purge,
        Manual,
    }

    /// Whether the action was allowed.
    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub(crate) enum AuditOutcome {
        Allow,
        Deny,
    }

    /// One page of events, newest first.
    #[derive(ToSchema)]
    pub(crate) struct AuditEventPage {
        pub items: Vec<AuditEvent>,
        /// Pass back as `cursor` for the next page; null on the last page.
        pub next_cursor: Option<String>,
        /// How many events match the filters (all pages), exact up to a bound; null when the
        /// store cannot count.
        pub total: Option<AuditMatchCount>,
    }

    /// A number of matching events, counted exactly up to a bound (10,000 by default).
    #[derive(ToSchema)]
    pub(crate) struct AuditMatchCount {
        /// The number of matches, or the bound when there are more.
        pub count: u64,
        /// False when counting stopped at the bound: read `count` as "`count` or more".
        pub exact: bool,
    }

    /// Allowed and denied events per hour or day, for a chart.
    #[derive(ToSchema)]
    pub(crate) struct AuditHistogram {
        /// `hour` or `day`.
        pub interval: String,
        /// The first bar's start, RFC 3339 UTC (inclusive).
        #[schema(format = DateTime)]
        pub from: String,
        /// The last bar's end, RFC 3339 UTC (exclusive).
        #[schema(format = DateTime)]
        pub to: String,
        /// One per interval, oldest first, none skipped.
        pub buckets: Vec<AuditHistogramBucket>,
    }

    /// One bar of the histogram: `[start, end)`.
    #[derive(ToSchema)]
    pub(crate) struct AuditHistogramBucket {
        #[schema(format = DateTime)]
        pub start: String,
        #[schema(format = DateTime)]
        pub end: String,
        pub allow: AuditMatchCount,
        pub deny: AuditMatchCount,
    }

    /// Per filter parameter, per value: how many events the request's filters match with
    /// that parameter set to that value alone.
    #[derive(ToSchema)]
    pub(crate) struct AuditFacetCounts {
        pub category: std::collections::BTreeMap<String, AuditMatchCount>,
        pub action: std::collections::BTreeMap<String, AuditMatchCount>,
        pub status: std::collections::BTreeMap<String, AuditMatchCount>,
        /// Keyed by the user's e-mail, else their id.
        pub user: std::collections::BTreeMap<String, AuditMatchCount>,
    }

    /// The values the viewer may filter on.
    #[derive(ToSchema)]
    pub(crate) struct AuditFacets {
        pub categories: Vec<String>,
        pub actions: Vec<String>,
        pub users: Vec<AuditFacetUser>,
        #[schema(inline)]
        pub outcomes: Vec<AuditOutcome>,
        /// Counts for the request's filters; null when the store cannot count.
        pub counts: Option<AuditFacetCounts>,
    }

    /// One actor offered as a `user` filter value.
    #[derive(ToSchema)]
    pub(crate) struct AuditFacetUser {
        pub id: Option<String>,
        pub email: Option<String>,
        pub name: Option<String>,
    }

    /// Every error: 400, 401, 403, 404, 503.
    #[derive(ToSchema)]
    pub(crate) struct AuditError {
        /// `invalid_parameter`, `unauthenticated`, `forbidden`, `not_found`,
        /// `store_unavailable`, `audit_unavailable`, `not_configured` (501), `internal_error`.
        pub error: String,
        pub message: String,
        /// The parameter at fault (400 only).
        pub parameter: Option<String>,
    }
}

fn schema_ref<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

fn json_response(description: &str, schema: RefOr<Schema>) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
}

fn value_schema(kind: ValueKind) -> Schema {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let object = match kind {
        ValueKind::Text | ValueKind::Cursor => string(),
        ValueKind::Action => string().pattern(Some("^[a-z][a-z0-9_]*$")),
        ValueKind::Outcome => string().enum_values(Some(["allow", "deny"])),
        ValueKind::Instant => string().description(Some(
            "RFC 3339 instant (e.g. 2026-03-01T09:30:00Z) or YYYY-MM-DD (00:00 UTC)",
        )),
        ValueKind::Limit => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(1000))
            .default(Some(json!(50))),
        ValueKind::Format => string()
            .enum_values(Some(["csv", "json", "ndjson"]))
            .default(Some(json!("csv"))),
        ValueKind::Columns => string().examples([json!("occurred_at,actor_email,action")]),
        ValueKind::Seq => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0)),
        ValueKind::Interval => string()
            .enum_values(Some(["hour", "day"]))
            .default(Some(json!("day"))),
    };
    Schema::Object(object.build())
}

fn query_parameter(spec: &ParameterSpec) -> Parameter {
    let schema = if spec.repeatable {
        Schema::Array(
            ArrayBuilder::new()
                .items(RefOr::T(value_schema(spec.kind)))
                .build(),
        )
    } else {
        value_schema(spec.kind)
    };
    let description = match spec.alias {
        Some(alias) => format!("{} Also accepted as `{alias}`.", spec.description),
        None => spec.description.to_owned(),
    };
    ParameterBuilder::new()
        .name(spec.name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .style(Some(ParameterStyle::Form))
        .explode(Some(true))
        .build()
}

fn operation(route: &RouteSpec) -> Operation {
    let mut parameters: Vec<Parameter> = PARAMETERS
        .iter()
        .filter(|spec| route.endpoint != Endpoint::NoParameters && spec.accepted_by(route.endpoint))
        .map(query_parameter)
        .collect();
    if route.path.contains("{id}") {
        parameters.push(
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("The event id"))
                .schema(Some(Schema::Object(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                        .build(),
                )))
                .build(),
        );
    }
    let ok = match route.produces {
        Produces::Html => ResponseBuilder::new()
            .description("The web page")
            .content("text/html", ContentBuilder::new().build())
            .build(),
        Produces::EventPage => json_response(
            "One page of events",
            schema_ref::<schemas::AuditEventPage>(),
        ),
        Produces::Event => json_response("The event", schema_ref::<schemas::AuditEvent>()),
        Produces::Facets => json_response("The facets", schema_ref::<schemas::AuditFacets>()),
        Produces::Histogram => json_response(
            "Allowed and denied events per interval",
            schema_ref::<schemas::AuditHistogram>(),
        ),
        Produces::Manifest => json_response(
            "The signed manifest",
            schema_ref::<schemas::AuditExportManifest>(),
        ),
        Produces::Checkpoint => json_response(
            "The latest checkpoint",
            schema_ref::<schemas::AuditCheckpoint>(),
        ),
        Produces::Forwarding => json_response(
            "The forwarding status",
            schema_ref::<schemas::AuditForwarding>(),
        ),
        Produces::OpenApi => json_response(
            "This document",
            RefOr::T(Schema::Object(
                ObjectBuilder::new().schema_type(Type::Object).build(),
            )),
        ),
        Produces::Export => ResponseBuilder::new()
            .description("The download (streamed; `Content-Disposition: attachment`)")
            .content(
                "text/csv",
                ContentBuilder::new()
                    .schema(Some(RefOr::T(Schema::Object(
                        ObjectBuilder::new().schema_type(Type::String).build(),
                    ))))
                    .build(),
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::T(Schema::Array(
                        ArrayBuilder::new()
                            .items(schema_ref::<schemas::AuditEvent>())
                            .build(),
                    ))))
                    .build(),
            )
            .content(
                "application/x-ndjson",
                ContentBuilder::new()
                    .schema(Some(schema_ref::<schemas::AuditEvent>()))
                    .build(),
            )
            .build(),
    };
    let error = |description: &str| json_response(description, schema_ref::<schemas::AuditError>());
    let mut builder = OperationBuilder::new()
        .operation_id(Some(route.operation_id))
        .summary(Some(route.summary))
        .description(Some(route.description))
        .tag("audit log")
        .parameters(Some(parameters))
        .request_body(None::<RequestBody>)
        .response("200", ok);
    if route.endpoint != Endpoint::NoParameters || route.path.contains("{id}") {
        builder = builder.response("400", error("A parameter is unknown or malformed"));
    } else {
        builder = builder.response("400", error("This route takes no query parameters"));
    }
    builder = builder.response("401", error("Not signed in")).response(
        "403",
        error(match route.permission {
            Permission::View => "Lacks the audit view permission",
            Permission::Export => "Lacks the audit export permission",
        }),
    );
    if route.produces == Produces::Event {
        builder = builder.response("404", error("No such event among the viewer's tenants"));
    }
    if route.produces == Produces::Manifest {
        builder = builder.response("501", error("The host configured no signing key"));
    }
    if route.produces == Produces::Forwarding {
        builder = builder.response("501", error("The store keeps no forwarding cursors"));
    }
    if route.produces == Produces::Checkpoint {
        builder = builder.response("404", error("No checkpoint was signed yet"));
    }
    if route.produces != Produces::Html && route.produces != Produces::OpenApi {
        builder = builder.response("503", error("The audit store is unavailable"));
    }
    builder.build()
}

/// The router's OpenAPI document, to nest into a host's own utoipa document at the prefix the
/// router is mounted at. Paths are relative to that prefix (`/`, `/events`, ...), operations
/// are tagged `audit log`, and the schemas are named `Audit…` so they do not collide with
/// the host's. Unlike the `/openapi.json` the router serves, it names no server: the host's
/// document says where the API lives. Needs utoipa 6, the release this crate builds with.
///
/// ```
/// use utoipa::OpenApi;
///
/// #[derive(OpenApi)]
/// #[openapi(info(title = "Mix Modeler"))]
/// struct HostApi;
///
/// let document = HostApi::openapi().nest("/admin/audit", audit_api::openapi());
/// assert!(document.paths.paths.contains_key("/admin/audit/events"));
/// ```
#[cfg(feature = "utoipa")]
pub fn openapi() -> OpenApi {
    let mut document = document();
    document.servers = None;
    document
}

/// The document as a value.
pub(crate) fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in ROUTES {
        paths = paths.path(route.path, PathItem::new(HttpMethod::Get, operation(route)));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Audit log API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Browse, filter and export the audit log. Paths are relative to where the \
                     host mounts the router; every route is subject to the host's access policy.",
                ))
                .build(),
        )
        // Relative to the document's own URL, i.e. the mount prefix, whatever it is.
        .servers(Some([Server::new(".")]))
        .paths(paths.build())
        .components(Some(
            ComponentsBuilder::new()
                .schema_from::<schemas::AuditEvent>()
                .schema_from::<schemas::AuditChainLink>()
                .schema_from::<schemas::AuditCheckpoint>()
                .schema_from::<schemas::AuditExportManifest>()
                .schema_from::<schemas::AuditEventPage>()
                .schema_from::<schemas::AuditFacets>()
                .schema_from::<schemas::AuditFacetUser>()
                .schema_from::<schemas::AuditMatchCount>()
                .schema_from::<schemas::AuditFacetCounts>()
                .schema_from::<schemas::AuditHistogram>()
                .schema_from::<schemas::AuditHistogramBucket>()
                .schema_from::<schemas::AuditForwarding>()
                .schema_from::<schemas::AuditSinkStatus>()
                .schema_from::<schemas::AuditForwardHalt>()
                .schema_from::<schemas::AuditError>()
                .build(),
        ))
        .build()
}

/// The document serialised once, at router construction.
pub(crate) fn document_json() -> Bytes {
    match document().to_json() {
        Ok(text) => Bytes::from(text),
        Err(error) => {
            // Serialising utoipa's own types does not fail; if it ever did, answer a
            // document that says so rather than refuse to build the router.
            tracing::error!(%error, "could not serialise the OpenAPI document");
            Bytes::from_static(b"{\"openapi\":\"3.1.0\",\"info\":{\"title\":\"unavailable\",\"version\":\"0\"},\"paths\":{}}")
        }
    }
}
