//! Terms for the events stored before the terms index existed (migration 0005), computed in
//! chunks when the store opens the database, before it answers anything.

use rusqlite::params;

use super::append::Appender;
use super::terms::Filterable;
use crate::error::StoreError;

/// Events indexed per transaction, so the write lock is never held long.
const CHUNK: i64 = 10_000;

/// Indexes every event up to the migration's boundary that is not indexed yet. Safe to run
/// from several processes at once: each chunk re-reads the progress inside its transaction.
pub(super) fn build_missing(appender: &Appender) -> Result<(), StoreError> {
    let mut reported = false;
    loop {
        let done = appender.in_transaction(|connection| {
            let (through, until): (i64, i64) = connection
                .query_row(
                    "SELECT backfilled_through, backfill_until FROM audit_index_state WHERE id = 1",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(super::append::write_error)?;
            if through >= until {
                return Ok(true);
            }
            if !reported {
                tracing::info!(
                    events = until - through,
                    "audit store: indexing the events stored before this release"
                );
            }
            let last = (through + CHUNK).min(until);
            let mut select = connection
                .prepare_cached(
                    "SELECT seq, tenant, category, action, outcome, actor_id, actor_email, \
                     actor_name, resource_id, resource_name, request_id FROM audit_events \
                     WHERE seq > ?1 AND seq <= ?2",
                )
                .map_err(super::append::write_error)?;
            // One statement per row is fine once: FTS5 flushes at each (see append.rs), but a
            // backfill runs once per database.
            let mut insert = connection
                .prepare_cached("INSERT INTO audit_terms (rowid, terms) VALUES (?1, ?2)")
                .map_err(super::append::write_error)?;
            let mut rows = select
                .query(params![through, last])
                .map_err(super::append::write_error)?;
            let mut terms = String::new();
            while let Some(row) = rows.next().map_err(super::append::write_error)? {
                let text = |index: usize| row.get_ref(index).ok().and_then(|v| v.as_str().ok());
                let seq: i64 = row.get(0).map_err(super::append::write_error)?;
                let filterable = Filterable {
                    tenant: text(1),
                    category: text(2).unwrap_or_default(),
                    action: text(3).unwrap_or_default(),
                    outcome: text(4).unwrap_or_default(),
                    actor_id: text(5),
                    actor_email: text(6),
                    actor_name: text(7),
                    resource_id: text(8),
                    resource_name: text(9),
                    request_id: text(10).unwrap_or_default(),
                };
                terms.clear();
                filterable.push_terms(&mut terms);
                insert
                    .execute(params![seq, terms])
                    .map_err(super::append::write_error)?;
            }
            connection
                .execute(
                    "UPDATE audit_index_state SET backfilled_through = ?1 WHERE id = 1",
                    params![last],
                )
                .map_err(super::append::write_error)?;
            Ok(false)
        })?;
        reported = true;
        if done {
            return Ok(());
        }
    }
}
