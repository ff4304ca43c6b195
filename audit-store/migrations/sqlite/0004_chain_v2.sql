-- Chain links of version 2 (see audit-store/src/chain.rs): every event appended from now on
-- says so; the events already stored keep version 1 and verify as before.
ALTER TABLE audit_events ADD COLUMN chain_version INTEGER NOT NULL DEFAULT 1;
