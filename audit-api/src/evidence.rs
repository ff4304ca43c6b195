//! Tamper-evidence routes: the latest signed checkpoint, and the signed manifest of an export.

use audit_store::Checkpoint;
use axum::Json;
use axum::extract::{RawQuery, State};

use crate::error::ApiError;
use crate::guard::CanView;
use crate::params::{Endpoint, parse_query};
use crate::router::AppState;

/// `GET /checkpoint`: the newest signed checkpoint, 404 when none was written yet.
pub(crate) async fn checkpoint(
    _: CanView,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Checkpoint>, ApiError> {
    parse_query(raw.as_deref(), Endpoint::NoParameters)?;
    state
        .store
        .checkpoints()
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("no checkpoint has been signed yet".into()))
}
