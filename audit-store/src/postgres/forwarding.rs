//! The PostgreSQL side of forwarding (`crate::forwarding`, which holds the statements and
//! runs them): times are the server's `statement_timestamp()`, one clock for every instance.

use std::time::Duration;

use sqlx::{Postgres, QueryBuilder};

use super::{PgDialect, PostgresStore};
use crate::forwarding::{ForwardDialect, Runs};

impl ForwardDialect for PgDialect<'_> {
    fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.schema)
    }
    fn now(&self) -> &'static str {
        "statement_timestamp()"
    }
    fn push_now_plus(&self, qb: &mut QueryBuilder<Postgres>, ttl: Duration) {
        qb.push("(statement_timestamp() + make_interval(secs => ");
        qb.push_bind(ttl.as_secs_f64());
        qb.push("))");
    }
    fn micros(&self, expression: &str) -> String {
        format!("(extract(epoch from {expression}) * 1000000)::int8")
    }
}

impl PostgresStore {
    pub(super) fn forwarding(&self) -> Runs<'_, PgDialect<'_>> {
        Runs {
            dialect: self.dialect(),
            writer: &self.pool,
            reader: &self.pool,
        }
    }
}
