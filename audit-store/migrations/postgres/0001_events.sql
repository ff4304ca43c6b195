-- Audit events in the store's own schema ({schema} is replaced by the configured name).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE {schema}.audit_events (
    id            UUID             PRIMARY KEY,
    -- Position in the hash chain and the chain link (see audit-store/src/chain.rs).
    seq           BIGINT           NOT NULL UNIQUE,
    prev_hash     BYTEA            NOT NULL,
    hash          BYTEA            NOT NULL,
    occurred_at   TIMESTAMPTZ      NOT NULL,
    tenant        TEXT,
    request_id    TEXT             NOT NULL,
    actor_id      TEXT,
    actor_email   TEXT,
    actor_name    TEXT,
    category      TEXT             NOT NULL,
    action        TEXT             NOT NULL,
    outcome       TEXT             NOT NULL CHECK (outcome IN ('allow', 'deny')),
    reason        TEXT,
    resource_id   TEXT,
    resource_name TEXT,
    method        TEXT             NOT NULL,
    route         TEXT             NOT NULL,
    path          TEXT             NOT NULL,
    status        INTEGER          NOT NULL,
    duration_ms   DOUBLE PRECISION NOT NULL,
    client_ip     TEXT,
    user_agent    TEXT,
    attributes    JSONB            NOT NULL
);

CREATE INDEX audit_events_time     ON {schema}.audit_events (occurred_at DESC, id DESC);
CREATE INDEX audit_events_tenant   ON {schema}.audit_events (tenant, occurred_at DESC, id DESC);
CREATE INDEX audit_events_category ON {schema}.audit_events (category, occurred_at DESC, id DESC);
CREATE INDEX audit_events_action   ON {schema}.audit_events (action, occurred_at DESC, id DESC);
CREATE INDEX audit_events_outcome  ON {schema}.audit_events (outcome, occurred_at DESC, id DESC);
CREATE INDEX audit_events_actor_id ON {schema}.audit_events (actor_id, occurred_at DESC, id DESC);
CREATE INDEX audit_events_actor_email ON {schema}.audit_events (lower(actor_email), occurred_at DESC, id DESC);
CREATE INDEX audit_events_request  ON {schema}.audit_events (request_id, occurred_at DESC, id DESC);
CREATE INDEX audit_events_resource ON {schema}.audit_events (resource_id, occurred_at DESC, id DESC);
-- Case-insensitive substring search (ILIKE '%...%') served by a trigram GIN index.
CREATE INDEX audit_events_name     ON {schema}.audit_events USING gin (resource_name gin_trgm_ops);

-- Append-only: UPDATE and TRUNCATE are always rejected; DELETE only inside the retention
-- purge's transaction, which sets `audit.purge_before`, and only for rows older than it.
CREATE FUNCTION {schema}.audit_events_reject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % is not allowed', TG_OP;
END
$$;

CREATE FUNCTION {schema}.audit_events_guard_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.occurred_at < NULLIF(current_setting('audit.purge_before', true), '')::timestamptz THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: DELETE only through the retention purge';
END
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON {schema}.audit_events
    FOR EACH ROW EXECUTE FUNCTION {schema}.audit_events_reject();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON {schema}.audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.audit_events_reject();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON {schema}.audit_events
    FOR EACH ROW EXECUTE FUNCTION {schema}.audit_events_guard_delete();

-- The head of the hash chain. Appends lock this row, which serialises the batches of all
-- instances into one chain.
CREATE TABLE {schema}.audit_chain_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash BYTEA   NOT NULL
);
INSERT INTO {schema}.audit_chain_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Signed checkpoints of the chain head; append-only like the events.
CREATE TABLE {schema}.audit_checkpoints (
    id         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq        BIGINT      NOT NULL,
    head       BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    kind       TEXT        NOT NULL,
    public_key TEXT        NOT NULL,
    signature  TEXT        NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON {schema}.audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION {schema}.audit_events_reject();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON {schema}.audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.audit_events_reject();
