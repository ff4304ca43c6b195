//! The route handlers. Each takes its access guard first, then parses its own query string.

use audit_store::{AuditEvent, TenantScope};
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, MatchedPath, OriginalUri, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::ApiError;
use crate::export::{CHAIN_HEAD_HEADER, Column, ExportBody, encoder, pin, pinned};
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
        return page::activity_log(&viewer, None);
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
    page::activity_log(&viewer, Some(&format!("{path}/")))
}

/// The body of `GET /events`.
#[derive(Debug, Serialize)]
pub(crate) struct EventPage {
    items: Vec<AuditEvent>,
    next_cursor: Option<String>,
}

/// `GET /events`
pub(crate) async fn list_events(
    CanView(viewer): CanView,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EventPage>, ApiError> {
    let query = parse_query(raw.as_deref(), Endpoint::Events)?;
    let page = state
        .store
        .query(&query.filter, &viewer.tenants, &query.page())
        .await?;
    Ok(Json(EventPage {
        items: page.items,
        next_cursor: page.next_cursor.map(|cursor| cursor.encode()),
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

/// `GET /facets`
pub(crate) async fn facets(
    CanView(viewer): CanView,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<audit_store::Facets>, ApiError> {
    parse_query(raw.as_deref(), Endpoint::NoParameters)?;
    Ok(Json(state.store.facets(&viewer.tenants).await?))
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
            Ok(CanViewPage(viewer)) => page::activity_log(&viewer, None),
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
    let mut events = pinned(
        state
            .store
            .export(query.filter.clone(), viewer.tenants.clone()),
        head,
    );
    // Read the first event before answering, so a store that fails at once gets a proper
    // error status instead of a 200 with a broken body.
    let first = events.next().await.transpose()?;
    let file_name = format!(
        "audit-log-{}.{}",
        Utc::now().format("%Y-%m-%d"),
        format.extension()
    );
    let mut attributes = export_attributes(&query, format.as_str(), &columns, &viewer.tenants);
    if let Some(head) = head {
        attributes.insert("chain_head".into(), Value::from(head));
    }
    // An export that cannot be recorded does not happen: the audit log must know of every
    // copy of itself that left the building.
    state
        .sink
        .record(export_event(&facts, &viewer, &file_name, attributes))
        .await
        .map_err(|error| {
            tracing::error!(%error, "could not record an export; refusing it");
            ApiError::SelfAuditUnavailable
        })?;
    let body = Body::from_stream(ExportBody::new(first, events, encoder(format, columns)));
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
        .map_err(|_| ApiError::Internal)?;
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
