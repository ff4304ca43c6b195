//! Pinning an export to a position of the hash chain, so the same export can be reproduced
//! (and its manifest recomputed) while new events keep arriving.

use audit_store::{AuditStore, BatchStream, StoreError};
use futures_util::{StreamExt, TryStreamExt};

use crate::error::ApiError;

/// The header carrying the chain position an export covers.
pub const CHAIN_HEAD_HEADER: &str = "x-audit-chain-head";

/// The chain position an export covers: `requested` (400 when beyond the current head), or
/// the current head. `None` for a store that keeps no chain (then `requested` is a 400).
pub(crate) async fn pin(
    store: &dyn AuditStore,
    requested: Option<u64>,
) -> Result<Option<u64>, ApiError> {
    match store.chain_head().await {
        Ok(head) => match requested {
            Some(seq) if seq > head.seq => Err(ApiError::invalid_parameter(
                "chain_head",
                format!("is beyond the chain's head (seq {})", head.seq),
            )),
            Some(seq) => Ok(Some(seq)),
            None => Ok(Some(head.seq)),
        },
        Err(StoreError::Unsupported(_)) if requested.is_some() => Err(ApiError::invalid_parameter(
            "chain_head",
            "this audit store keeps no hash chain",
        )),
        Err(StoreError::Unsupported(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// `batches` without the events after chain position `head`.
pub(crate) fn pinned(batches: BatchStream, head: Option<u64>) -> BatchStream {
    match head {
        None => batches,
        Some(head) => batches
            .map_ok(move |mut batch| {
                batch.retain(|event| event.chain.is_none_or(|link| link.seq <= head));
                batch
            })
            .boxed(),
    }
}
