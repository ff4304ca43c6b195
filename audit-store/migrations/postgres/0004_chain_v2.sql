-- Chain links of version 2 (see audit-store/src/chain.rs): every event appended from now on
-- says so; the events already stored keep version 1 and verify as before. A constant default
-- adds the column without rewriting the table.
ALTER TABLE {schema}.audit_events ADD COLUMN chain_version SMALLINT NOT NULL DEFAULT 1;
