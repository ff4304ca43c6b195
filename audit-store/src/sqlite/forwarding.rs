//! The SQLite side of forwarding (`crate::forwarding`, which holds the statements and runs
//! them): how SQLite stores times. Writes go through the store's single writer connection,
//! reads through its readers.

use std::time::Duration;

use sqlx::{QueryBuilder, Sqlite};

use super::{SqliteDialect, SqliteStore};
use crate::forwarding::{ForwardDialect, Runs};

/// The current time in microseconds since the epoch (`julianday` keeps milliseconds, which
/// is ample for leases of seconds).
const NOW_MICROS: &str = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";

impl ForwardDialect for SqliteDialect {
    fn table(&self, name: &str) -> String {
        name.to_owned()
    }
    fn now(&self) -> &'static str {
        NOW_MICROS
    }
    fn push_now_plus(&self, qb: &mut QueryBuilder<Sqlite>, ttl: Duration) {
        qb.push(format!("({NOW_MICROS} + "));
        qb.push_bind(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX));
        qb.push(")");
    }
    fn micros(&self, expression: &str) -> String {
        expression.to_owned()
    }
}

impl SqliteStore {
    pub(super) fn forwarding(&self) -> Runs<'_, SqliteDialect> {
        Runs {
            dialect: SqliteDialect::default(),
            writer: &self.writer,
            reader: &self.reader,
        }
    }
}
