-- Audit events. `seq` is the event's position in the hash chain (and the rowid);
-- `prev_hash`/`hash` are its chain link (32 bytes each);
-- `occurred_at` is microseconds since the Unix epoch, UTC; `id` is the 16-byte UUIDv7.
CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY,
    prev_hash     BLOB    NOT NULL,
    hash          BLOB    NOT NULL,
    id            BLOB    NOT NULL UNIQUE,
    occurred_at   INTEGER NOT NULL,
    tenant        TEXT,
    request_id    TEXT    NOT NULL,
    actor_id      TEXT,
    actor_email   TEXT,
    actor_name    TEXT,
    category      TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    outcome       TEXT    NOT NULL CHECK (outcome IN ('allow', 'deny')),
    reason        TEXT,
    resource_id   TEXT,
    resource_name TEXT,
    method        TEXT    NOT NULL,
    route         TEXT    NOT NULL,
    path          TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    duration_ms   REAL    NOT NULL,
    client_ip     TEXT,
    user_agent    TEXT,
    attributes    TEXT    NOT NULL
);

-- Newest-first order and keyset pagination, then one index per equality filter with the
-- order columns appended, so a filtered first page is an index range scan with no sort.
CREATE INDEX audit_events_time     ON audit_events (occurred_at DESC, id DESC);
CREATE INDEX audit_events_tenant   ON audit_events (tenant, occurred_at DESC, id DESC);
CREATE INDEX audit_events_category ON audit_events (category, occurred_at DESC, id DESC);
CREATE INDEX audit_events_action   ON audit_events (action, occurred_at DESC, id DESC);
CREATE INDEX audit_events_outcome  ON audit_events (outcome, occurred_at DESC, id DESC);
CREATE INDEX audit_events_actor_id ON audit_events (actor_id, occurred_at DESC, id DESC);
CREATE INDEX audit_events_actor_email ON audit_events (lower(actor_email), occurred_at DESC, id DESC);
CREATE INDEX audit_events_request  ON audit_events (request_id, occurred_at DESC, id DESC);
CREATE INDEX audit_events_resource ON audit_events (resource_id, occurred_at DESC, id DESC);

-- Case-insensitive substring search on resource_name: an external-content FTS5 table with
-- the trigram tokenizer, kept in step by triggers.
CREATE VIRTUAL TABLE audit_events_name USING fts5(
    resource_name, content = 'audit_events', content_rowid = 'seq', tokenize = 'trigram'
);
CREATE TRIGGER audit_events_name_insert AFTER INSERT ON audit_events
WHEN NEW.resource_name IS NOT NULL BEGIN
    INSERT INTO audit_events_name (rowid, resource_name) VALUES (NEW.seq, NEW.resource_name);
END;
CREATE TRIGGER audit_events_name_delete AFTER DELETE ON audit_events
WHEN OLD.resource_name IS NOT NULL BEGIN
    INSERT INTO audit_events_name (audit_events_name, rowid, resource_name)
    VALUES ('delete', OLD.seq, OLD.resource_name);
END;

-- Append-only. The retention purge inserts its cutoff here inside its own transaction;
-- a DELETE is allowed only for rows older than a cutoff present at that moment.
CREATE TABLE audit_purge_guard (before INTEGER NOT NULL);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only: UPDATE is not allowed');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_purge_guard WHERE OLD.occurred_at < before) BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only: DELETE only through the retention purge');
END;

-- The head of the hash chain: what the next append continues. One row.
CREATE TABLE audit_chain_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB    NOT NULL
);
INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

-- Signed checkpoints of the chain head; append-only like the events.
CREATE TABLE audit_checkpoints (
    id         INTEGER PRIMARY KEY,
    seq        INTEGER NOT NULL,
    head       BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    public_key TEXT    NOT NULL,
    signature  TEXT    NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only: checkpoints cannot be changed');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only: checkpoints cannot be deleted');
END;
