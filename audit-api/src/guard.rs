//! Access checks: extractors every handler takes first, so no route can skip the policy.

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::access::{Access, Permission, Viewer};
use crate::error::ApiError;
use crate::page;
use crate::router::AppState;
use crate::self_audit::{RequestFacts, denial_event};

/// How a denial is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rendering {
    Json,
    Html,
}

/// The policy's verdict for `permission`: the viewer, or the denial response after the
/// denial was recorded.
async fn authorize(
    parts: &Parts,
    state: &AppState,
    permission: Permission,
    rendering: Rendering,
) -> Result<(Viewer, RequestFacts), Response> {
    let facts = RequestFacts::of(parts);
    let (viewer, status, reason) = match state.policy.access(parts).await {
        Access::Viewer(viewer) if viewer.holds(permission) => return Ok((viewer, facts)),
        Access::Viewer(viewer) => (
            Some(viewer),
            StatusCode::FORBIDDEN,
            format!("lacks the audit {} permission", permission.as_str()),
        ),
        Access::Unauthenticated => (None, StatusCode::UNAUTHORIZED, "not signed in".to_owned()),
    };
    let event = denial_event(&facts, viewer.as_ref(), permission, status, &reason);
    if let Err(error) = state.sink.record(event).await {
        // The denial stands either way; losing its record is logged loudly.
        tracing::error!(%error, "could not record a denied access to the audit log");
    }
    let response = match (rendering, status) {
        (Rendering::Html, StatusCode::UNAUTHORIZED) => {
            page::sign_in_required(state.sign_in_url.as_deref())
        }
        (Rendering::Html, _) => page::permission_missing(state.sign_in_url.as_deref()),
        (Rendering::Json, StatusCode::UNAUTHORIZED) => {
            ApiError::Unauthenticated("sign in to see the audit log".into()).into_response()
        }
        (Rendering::Json, _) => ApiError::Forbidden(format!(
            "you do not hold the audit {} permission",
            permission.as_str()
        ))
        .into_response(),
    };
    Err(response)
}

/// A viewer holding `view`, for the JSON routes.
pub(crate) struct CanView(pub(crate) Viewer);

impl FromRequestParts<AppState> for CanView {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let (viewer, _) = authorize(parts, state, Permission::View, Rendering::Json).await?;
        Ok(CanView(viewer))
    }
}

/// A viewer holding `view`, for the HTML page: denials are HTML too.
pub(crate) struct CanViewPage(pub(crate) Viewer);

impl FromRequestParts<AppState> for CanViewPage {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let (viewer, _) = authorize(parts, state, Permission::View, Rendering::Html).await?;
        Ok(CanViewPage(viewer))
    }
}

/// A viewer holding `export`, with the request facts its export event needs.
pub(crate) struct CanExport(pub(crate) Viewer, pub(crate) RequestFacts);

impl FromRequestParts<AppState> for CanExport {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let (viewer, facts) = authorize(parts, state, Permission::Export, Rendering::Json).await?;
        Ok(CanExport(viewer, facts))
    }
}
