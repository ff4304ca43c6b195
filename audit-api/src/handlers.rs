//! The route handlers. Each takes its access guard first, then parses its own query string.

use std::collections::BTreeMap;

use audit_store::{AuditEvent, AuditStore, EventFilter, MatchCount, StoreError, TenantScope};
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, MatchedPath, OriginalUri, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use futures_util::{StreamExt, stream};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::ApiError;
use crate::export::{CHAIN_HEAD_HEADER, Column, ExportBody, ExportRecord, encoder, pin, pinned};
use crate::guard::{CanExport, CanView, CanViewPage};
use crate::page;
use crate::params::{Endpoint, PARAMETERS, ParsedQuery, parse_query};
use crate::router::AppState;
use crate::self_audit::export_event;

/// `GET /`: the Activity log page. It lives at the prefix with a trailing slash; a request
/// for the bare prefix is redirected there whenever that URL reaches this router
/// ([`crate::AuditRouter::mount`], or `Router::nest_service`, whose matched route then ends
/// in `/`). Under `Router::nest`, axum routes only the bare prefix here, so the page is served
/// there, with a `<base href>` that resolves its relative links under the prefix.
pub(crate) async fn page(
    CanViewPage(viewer): CanViewPage,
    State(state): State<AppState>,
    OriginalUri(original): OriginalUri,
    matched: Option<MatchedPath>,
    RawQuery(raw): RawQuery,
) -> Response {
    let path = original.path();
    if path.ends_with('/') {
        return page::activity_log(&viewer, None, state.sign_in_url.as_deref());
    }
    let trailing_slash_is_routed = state.page_at_trailing_slash
        || matched.is_some_and(|matched| matched.as_str().ends_with('/'));
    if trailing_slash_is_routed {
        let target = match raw {
            Some(query) => format!("{path}/?{query}"),
            None => format!("{path}/"),
        };
        return Redirect::permanent(&target).into_response();
    }
    page::activity_log(
        &viewer,
        Some(&format!("{path}/")),
        state.sign_in_url.as_deref(),
    )
}

/// The body of `GET /events`.
#[derive(Debug, Serialize)]
pub(crate) struct EventPage {
    items: Vec<AuditEvent>,
    next_cursor: Option<String>,
    /// How many events match the filters, exact up to the router's bound; `None` when the
    /// store cannot count.
    total: Option<MatchCount>,
}

/// A bounded count, or `None` from a store that cannot count (`Unsupported`).
pub(crate) async fn count_if_supported(
    store: &dyn AuditStore,
    filter: &EventFilter,
    scope: &TenantScope,
    bound: u64,
) -> Result<Option<MatchCount>, StoreError> {
    match store.count(filter, scope, bound).await {
        Ok(count) => Ok(Some(count)),
        Err(StoreError::Unsupported(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

/// `GET /events`
pub(crate) async fn list_events(
    CanView(viewer): CanView,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EventPage>, ApiError> {
    let query = parse_query(raw.as_deref(), Endpoint::Events)?;
    let page_request = query.page();
    let (page, total) = futures_util::future::try_join(
        state
            .store
            .query(&query.filter, &viewer.tenants, &page_request),
        count_if_supported(
            &*state.store,
            &query.filter,
            &viewer.tenants,
            state.count_bound,
        ),
    )
    .await?;
    Ok(Json(EventPage {
        items: page.items,
        next_cursor: page.next_cursor.map(|cursor| cursor.encode()),
        total,
    }))
}

/// `GET /events/{id}`
pub(crate) async fn get_event(
    CanView(viewer): CanView,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AuditEvent>, ApiError> {
    parse_query(raw.as_deref(), Endpoint::NoParameters)?;
    let Path(id) =
        id.map_err(|rejection| ApiError::invalid_parameter("id", rejection.body_text()))?;
    let id = Uuid::try_parse(&id)
        .map_err(|_| ApiError::invalid_parameter("id", "must be an event id (a UUID)"))?;
    state
        .store
        .get(id, &viewer.tenants)
        .await?
        .map(Json)
        // The same answer whether the event does not exist or belongs to a tenant the viewer
        // may not see: the response must not reveal other tenants' events.
        .ok_or_else(|| ApiError::NotFound(format!("no event {id}")))
}

/// The body of `GET /facets`: the values, and per value how many events match.
#[derive(Debug, Serialize)]
pub(crate) struct FacetsAnswer {
    #[serde(flatten)]
    facets: audit_store::Facets,
    /// `None` when the store cannot count.
    counts: Option<FacetCounts>,
}

/// Per filter parameter and value: the events the request's filters match with that
/// parameter set to that value alone (so a menu shows what ticking a value would give).
#[derive(Debug, Default, Serialize)]
pub(crate) struct FacetCounts {
    category: BTreeMap<String, MatchCount>,
    action: BTreeMap<String, MatchCount>,
    status: BTreeMap<String, MatchCount>,
    user: BTreeMap<String, MatchCount>,
}

/// Which parameter a facet count is for.
#[derive(Debug, Clone, Copy)]
enum FacetKind {
    Category,
    Action,
    Status,
    User,
}

/// How many counts of one `/facets` request run at the same time (the SQLite store reads on
/// four connections).
const PARALLEL_COUNTS: usize = 4;

/// `GET /facets`
pub(crate) async fn facets(
    CanView(viewer): CanView,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<FacetsAnswer>, ApiError> {
    let query = parse_query(raw.as_deref(), Endpoint::Facets)?;
    let facets = state.store.facets(&viewer.tenants).await?;
    let base = &query.filter;
    let mut jobs: Vec<(FacetKind, String, EventFilter)> = Vec::new();
    for category in &facets.categories {
        let filter = EventFilter {
            categories: vec![category.clone()],
            ..base.clone()
        };
        jobs.push((FacetKind::Category, category.clone(), filter));
    }
    for action in &facets.actions {
        let filter = EventFilter {
            actions: vec![action.clone()],
            ..base.clone()
        };
        jobs.push((FacetKind::Action, action.as_str().to_owned(), filter));
    }
    for outcome in &facets.outcomes {
        let filter = EventFilter {
            outcomes: vec![*outcome],
            ..base.clone()
        };
        jobs.push((FacetKind::Status, outcome.as_str().to_owned(), filter));
    }
    for user in &facets.users {
        // The value the page offers for a user: the e-mail, else the id.
        if let Some(value) = user.email.clone().or_else(|| user.id.clone()) {
            let filter = EventFilter {
                users: vec![value.clone()],
                ..base.clone()
            };
            jobs.push((FacetKind::User, value, filter));
        }
    }
    let bound = state.count_bound;
    let answers: Vec<_> = stream::iter(jobs)
        .map(|(kind, value, filter)| {
            let store = std::sync::Arc::clone(&state.store);
            let scope = viewer.tenants.clone();
            async move {
                let count = count_if_supported(&*store, &filter, &scope, bound).await;
                (kind, value, count)
            }
        })
        .buffered(PARALLEL_COUNTS)
        .collect()
        .await;
    let mut counts = Some(FacetCounts::default());
    for (kind, value, count) in answers {
        let Some(count) = count? else {
            counts = None;
            continue;
        };
        if let Some(counts) = counts.as_mut() {
            let map = match kind {
                FacetKind::Category => &mut counts.category,
                FacetKind::Action => &mut counts.action,
                FacetKind::Status => &mut counts.status,
                FacetKind::User => &mut counts.user,
            };
            map.insert(value, count);
        }
    }
    Ok(Json(FacetsAnswer { facets, counts }))
}

/// `GET /openapi.json`
pub(crate) async fn openapi(
    _: CanView,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    parse_query(raw.as_deref(), Endpoint::NoParameters)?;
    let mut response = Body::from(state.openapi_json.clone()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Any other path under the router: checked like every route, then 404.
///
/// Nested with axum 0.8's `Router::nest`, the router's `/` route answers the bare prefix
/// (`/admin/audit`) while the prefix with a trailing slash (`/admin/audit/`), where the
/// page lives, arrives here with an empty or `/` path; it gets the page.
pub(crate) async fn not_found(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let is_page = matches!(parts.uri.path(), "" | "/") && parts.method == http::Method::GET;
    if is_page {
        return match CanViewPage::from_request_parts(&mut parts, &state).await {
            Ok(CanViewPage(viewer)) => {
                page::activity_log(&viewer, None, state.sign_in_url.as_deref())
            }
            Err(denied) => denied,
        };
    }
    match CanView::from_request_parts(&mut parts, &state).await {
        Ok(_) => ApiError::NotFound("no such route in the audit API".into()).into_response(),
        Err(denied) => denied,
    }
}

/// `GET /export`: see [`crate::export`] for streaming, backpressure and failure signalling.
pub(crate) async fn export(
    CanExport(viewer, facts): CanExport,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = parse_query(raw.as_deref(), Endpoint::Export)?;
    let format = query.format.unwrap_or_default();
    let columns = query
        .columns
        .clone()
        .unwrap_or_else(|| Column::ALL.to_vec());
    let head = pin(&*state.store, query.chain_head).await?;
    let mut batches = pinned(
        state
            .store
            .export_batches(query.filter.clone(), viewer.tenants.clone()),
        head,
    );
    // Read the first chunk before answering, so a store that fails at once gets a proper
    // error status instead of a 200 with a broken body.
    let first = batches.next().await.transpose()?;
    let file_name = format!(
        "audit-log-{}.{}",
        Utc::now().format("%Y-%m-%d"),
        format.extension()
    );
    let mut attributes = export_attributes(&query, format.as_str(), &columns, &viewer.tenants);
    if let Some(head) = head {
        attributes.insert("chain_head".into(), Value::from(head));
    }
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
        .map_err(|_| ApiError::Internal)?;
    // An export that cannot be recorded does not happen: the audit log must know of every
    // copy of itself that left the building. Room for its event is taken now; the event is
    // written when the stream ends (or is cut short), with the rows, bytes and duration.
    let slot = std::sync::Arc::clone(&state.sink)
        .reserve()
        .await
        .map_err(|error| {
            tracing::error!(%error, "could not reserve the record of an export; refusing it");
            ApiError::SelfAuditUnavailable
        })?;
    let record = ExportRecord::new(
        export_event(&facts, &viewer, &file_name, attributes),
        slot,
        facts.started(),
    );
    let body = Body::from_stream(
        ExportBody::new(first, batches, encoder(format, columns)).recorded(record),
    );
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response();
    if let Some(head) = head {
        response
            .headers_mut()
            .insert(CHAIN_HEAD_HEADER, HeaderValue::from(head));
    }
    Ok(response)
}

/// `{"filters": {...}, "format": ..., "columns": [...], "tenant_scope": ...}` of an export.
pub(crate) fn export_attributes(
    query: &ParsedQuery,
    format: &str,
    columns: &[Column],
    scope: &TenantScope,
) -> Map<String, Value> {
    let filters: Map<String, Value> = query
        .filters_given
        .iter()
        .map(|(name, values)| {
            let repeatable = PARAMETERS
                .iter()
                .any(|spec| spec.name == *name && spec.repeatable);
            let value = match values.as_slice() {
                [single] if !repeatable => Value::from(single.clone()),
                many => Value::from(many.to_vec()),
            };
            ((*name).to_owned(), value)
        })
        .collect();
    let scope = match scope {
        TenantScope::All => Value::from("all"),
        TenantScope::Only(tenants) => Value::from(tenants.iter().cloned().collect::<Vec<_>>()),
    };
    let mut attributes = Map::new();
    attributes.insert("filters".into(), Value::Object(filters));
    attributes.insert("format".into(), Value::from(format));
    attributes.insert(
        "columns".into(),
        Value::from(columns.iter().map(|c| c.name()).collect::<Vec<_>>()),
    );
    attributes.insert("tenant_scope".into(), scope);
    attributes
}
