//! `GET /forwarding`: how far each forwarding sink has got (the `audit-forward` crate), from
//! the [`ForwardingStatus`] the host passed to [`AuditRouter::forwarding`](crate::AuditRouter::forwarding),
//! or else from the store's cursors alone.

use audit_store::{SinkStatus, StoreError};
use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;

use crate::error::ApiError;
use crate::guard::CanView;
use crate::params::{Endpoint, parse_query};
use crate::router::AppState;

/// The body of `GET /forwarding`.
#[derive(Serialize)]
pub(crate) struct ForwardingBody {
    sinks: Vec<SinkStatus>,
}

/// `GET /forwarding`: one entry per sink with its state, lag in events and seconds, the
/// instance forwarding it and any halt. 501 when the store keeps no forwarding cursors.
pub(crate) async fn forwarding(
    _: CanView,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ForwardingBody>, ApiError> {
    parse_query(raw.as_deref(), Endpoint::NoParameters)?;
    match state.forwarding.forwarding_status().await {
        Ok(sinks) => Ok(Json(ForwardingBody { sinks })),
        Err(StoreError::Unsupported(what)) => Err(ApiError::NotConfigured(what.to_owned())),
        Err(error) => Err(error.into()),
    }
}
