//! Tamper-evidence routes: the latest signed checkpoint, and the signed manifest of an export.

use audit_store::{AuditEvent, ChainHash, Checkpoint, rfc3339_micros, truncate_to_micros};
use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::Utc;
use futures_util::TryStreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::export::{Column, encoder, pin, pinned};
use crate::guard::{CanExport, CanView};
use crate::handlers::export_attributes;
use crate::manifest::MANIFEST_VERSION;
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
        .latest_checkpoint()
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("no checkpoint has been signed yet".into()))
}

/// `GET /export/manifest`: re-runs the export the same parameters describe, pinned to the
/// same chain position, through the same encoder, hashing its bytes instead of sending
/// them, and answers the signed manifest (see [`crate::manifest`]).
///
/// Needs the `export` permission (it describes an export) but is not itself recorded as an
/// export: no event content leaves the server. 501 when the router has no signer.
pub(crate) async fn export_manifest(
    CanExport(viewer, _): CanExport,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = parse_query(raw.as_deref(), Endpoint::Export)?;
    let Some(signer) = state.signer.clone() else {
        return Err(ApiError::NotConfigured(
            "export manifests need a signing key: the host did not configure one".into(),
        ));
    };
    let head = pin(&*state.store, query.chain_head)
        .await?
        .ok_or_else(|| ApiError::NotConfigured("this audit store keeps no hash chain".into()))?;
    let format = query.format.unwrap_or_default();
    let columns = query
        .columns
        .clone()
        .unwrap_or_else(|| Column::ALL.to_vec());
    let mut manifest = export_attributes(&query, format.as_str(), &columns, &viewer.tenants);

    let mut batches = pinned(
        state
            .store
            .export_batches(query.filter.clone(), viewer.tenants.clone()),
        Some(head),
    );
    let mut encoder = encoder(format, columns);
    let mut hasher = Sha256::new();
    let mut buffer = Vec::with_capacity(64 * 1024);
    let (mut rows, mut min_seq, mut max_seq) = (0u64, None::<u64>, None::<u64>);
    encoder.begin(&mut buffer);
    while let Some(batch) = batches.try_next().await? {
        for event in batch.iter() {
            encoder.event(&event, &mut buffer).map_err(|error| {
                tracing::error!(%error, "could not encode an event for a manifest");
                ApiError::Internal
            })?;
            if buffer.len() >= 64 * 1024 {
                hasher.update(&buffer);
                buffer.clear();
            }
            rows += 1;
            if let Some(link) = event.chain {
                min_seq = Some(min_seq.map_or(link.seq, |s| s.min(link.seq)));
                max_seq = Some(max_seq.map_or(link.seq, |s| s.max(link.seq)));
            }
        }
    }
    encoder.finish(&mut buffer);
    hasher.update(&buffer);

    let head_hash = match head.checked_sub(1) {
        None => ChainHash::GENESIS,
        Some(before) => match state.store.chain_after(before).try_next().await? {
            Some(AuditEvent {
                chain: Some(link), ..
            }) if link.seq == head => link.hash,
            // Purged since: the position is no longer in the store.
            _ => {
                return Err(ApiError::invalid_parameter(
                    "chain_head",
                    format!("seq {head} is no longer in the log (purged by retention)"),
                ));
            }
        },
    };
    let checkpoint = state.store.latest_checkpoint().await?;
    manifest.insert("version".into(), Value::from(MANIFEST_VERSION));
    manifest.insert("chain_head".into(), Value::from(head));
    manifest.insert("chain_head_hash".into(), Value::from(head_hash.to_hex()));
    manifest.insert("row_count".into(), Value::from(rows));
    manifest.insert(
        "sha256".into(),
        Value::from(ChainHash(hasher.finalize().into()).to_hex()),
    );
    manifest.insert("min_seq".into(), Value::from(min_seq));
    manifest.insert("max_seq".into(), Value::from(max_seq));
    manifest.insert(
        "checkpoint".into(),
        serde_json::to_value(checkpoint).map_err(|_| ApiError::Internal)?,
    );
    manifest.insert(
        "created_at".into(),
        Value::from(rfc3339_micros::format(&truncate_to_micros(Utc::now()))),
    );
    crate::manifest::sign(manifest, &signer)
        .map(Json)
        .ok_or(ApiError::Internal)
}
