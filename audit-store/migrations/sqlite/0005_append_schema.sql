-- A schema built for appends (ARCHITECTURE.md, "Appending"). The nine B-tree indexes of the
-- filters and the per-event trigram index made every append touch a dozen scattered places;
-- they are replaced by:
--   * audit_terms: one contentless FTS5 index of every event's filterable values (as hashed
--     terms, written by the store; rowid = seq), merged in sorted runs;
--   * audit_resource_names: each distinct resource name once, with the trigram index the
--     substring search uses;
--   * audit_facet_values: the distinct values the filter menus offer, per tenant.
-- The events keep their columns and their two ordered indexes (the unique id, and
-- (occurred_at, id) for newest-first pages). Names and facet values of the events already
-- stored are filled in below; their terms are computed by the store when it opens the
-- database (audit_index_state says how far it got), before it answers
-- anything.
DROP TRIGGER audit_events_name_insert;
DROP TRIGGER audit_events_name_delete;
DROP TABLE audit_events_name;
DROP INDEX audit_events_tenant;
DROP INDEX audit_events_category;
DROP INDEX audit_events_action;
DROP INDEX audit_events_outcome;
DROP INDEX audit_events_actor_id;
DROP INDEX audit_events_actor_email;
DROP INDEX audit_events_request;
DROP INDEX audit_events_resource;

-- columnsize=0: no per-row size table (contentless tables delete a row through the 'delete'
-- command with its terms, which the store recomputes; see purge_before). automerge=16: fewer,
-- larger merges of the index's segments (a quarter of the append's time at the default 4),
-- at the price of a few more segments to probe per query.
CREATE VIRTUAL TABLE audit_terms USING fts5(
    terms, content = '', detail = none, columnsize = 0, tokenize = 'ascii'
);
INSERT INTO audit_terms (audit_terms, rank) VALUES ('automerge', 16);

CREATE TABLE audit_resource_names (
    id   INTEGER PRIMARY KEY,
    name TEXT    NOT NULL UNIQUE
);
CREATE VIRTUAL TABLE audit_resource_names_trigram USING fts5(
    name, content = 'audit_resource_names', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TRIGGER audit_resource_names_insert AFTER INSERT ON audit_resource_names BEGIN
    INSERT INTO audit_resource_names_trigram (rowid, name) VALUES (NEW.id, NEW.name);
END;

-- kind: 'category', 'action', 'outcome' (value set), or 'user' (value = actor_id, email,
-- name; at least one of value and email set). NULL tenant: tenantless events.
CREATE TABLE audit_facet_values (
    tenant   TEXT,
    kind     TEXT NOT NULL,
    value    TEXT,
    email    TEXT,
    name     TEXT
);
CREATE UNIQUE INDEX audit_facet_values_key ON audit_facet_values (
    kind, ifnull(tenant, char(0)), ifnull(value, char(0)), ifnull(email, char(0)),
    ifnull(name, char(0))
);

INSERT OR IGNORE INTO audit_resource_names (name)
    SELECT DISTINCT resource_name FROM audit_events WHERE resource_name IS NOT NULL;
INSERT OR IGNORE INTO audit_facet_values (tenant, kind, value)
    SELECT DISTINCT tenant, 'category', category FROM audit_events;
INSERT OR IGNORE INTO audit_facet_values (tenant, kind, value)
    SELECT DISTINCT tenant, 'action', action FROM audit_events;
INSERT OR IGNORE INTO audit_facet_values (tenant, kind, value)
    SELECT DISTINCT tenant, 'outcome', outcome FROM audit_events;
INSERT OR IGNORE INTO audit_facet_values (tenant, kind, value, email, name)
    SELECT DISTINCT tenant, 'user', actor_id, actor_email, actor_name FROM audit_events
    WHERE actor_id IS NOT NULL OR actor_email IS NOT NULL;

-- The events stored before this migration (up to backfill_until) get their terms from the
-- store, in chunks; backfilled_through says how far it got. Later events are indexed as
-- they are appended.
CREATE TABLE audit_index_state (
    id                 INTEGER PRIMARY KEY CHECK (id = 1),
    backfilled_through INTEGER NOT NULL,
    backfill_until     INTEGER NOT NULL
);
INSERT INTO audit_index_state (id, backfilled_through, backfill_until)
    SELECT 1, 0, seq FROM audit_chain_head WHERE id = 1;
