//! A least-privilege role for the application: it may append and read, never change or
//! remove what is stored.

use super::PostgresStore;
use crate::error::StoreError;

impl PostgresStore {
    /// The SQL that lets `app_role` use this store with no more rights than it needs: run it
    /// as the role that owns the store's schema (the one that ran the migrations), after
    /// [`PostgresStore::migrate`], and connect the application as `app_role`.
    ///
    /// The application role gets `SELECT` and `INSERT` on the events, checkpoints and the
    /// quarantine, no `UPDATE`, `DELETE` or `TRUNCATE` anywhere there; `UPDATE` only on the
    /// one-row chain head, the recorder's own run reports and the forwarder's cursors and
    /// leases (`audit-forward`); and `EXECUTE` on the
    /// retention function `audit_purge_through`, a `SECURITY DEFINER` function that removes
    /// only a prefix of the chain older than the cutoff it is given, and never events younger
    /// than `min_retention` (stored in `audit_retention_policy`, which only the owner can
    /// change). Without `DELETE`, no session of the application role can remove events,
    /// whatever variables it sets, and even a compromised application cannot purge the
    /// recent log. Migrations need the owner: a store opened by the application role finds
    /// them applied and runs no DDL.
    ///
    /// ```
    /// # fn demo(store: &audit_store::PostgresStore) -> Result<(), audit_store::StoreError> {
    /// use std::time::Duration;
    /// let sql = store.least_privilege_sql("audit_app", Duration::from_secs(400 * 86_400))?;
    /// assert!(sql.contains("GRANT SELECT, INSERT ON"));
    /// assert!(!sql.contains("GRANT DELETE"));
    /// assert!(store.least_privilege_sql("app; DROP TABLE x", Duration::ZERO).is_err());
    /// # Ok(()) }
    /// ```
    pub fn least_privilege_sql(
        &self,
        app_role: &str,
        min_retention: std::time::Duration,
    ) -> Result<String, StoreError> {
        if !super::is_plain_identifier(app_role) {
            return Err(StoreError::Config(format!(
                "role {app_role:?} is not a lowercase SQL identifier of at most 63 characters"
            )));
        }
        let s = &self.schema;
        Ok(format!(
            "REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {app_role};\n\
             GRANT USAGE ON SCHEMA {s} TO {app_role};\n\
             GRANT SELECT, INSERT ON {s}.audit_events, {s}.audit_checkpoints, \
             {s}.audit_quarantine TO {app_role};\n\
             GRANT SELECT, UPDATE ON {s}.audit_chain_head TO {app_role};\n\
             GRANT SELECT, INSERT, UPDATE ON {s}.audit_recorder_runs TO {app_role};\n\
             GRANT SELECT, INSERT ON {s}.audit_resource_names, {s}.audit_facet_values \
             TO {app_role};\n\
             GRANT EXECUTE ON FUNCTION {s}.audit_term(TEXT, TEXT) TO {app_role};\n\
             GRANT SELECT, INSERT, UPDATE ON {s}.audit_forward_cursors, \
             {s}.audit_forward_leases TO {app_role};\n\
             GRANT SELECT ON {s}._audit_store_migrations TO {app_role};\n\
             GRANT EXECUTE ON FUNCTION {s}.audit_purge_through(BIGINT, TIMESTAMPTZ) TO {app_role};\n\
             GRANT EXECUTE ON FUNCTION {s}.audit_merge_terms() TO {app_role};\n\
             UPDATE {s}.audit_retention_policy SET min_retention = INTERVAL '{seconds} seconds';\n",
            seconds = min_retention.as_secs()
        ))
    }
}
