-- A schema built for appends (ARCHITECTURE.md, "Appending"). The eight B-tree indexes of the
-- filters and the per-event trigram index are replaced by:
--   * terms: every event's filterable values as hashed terms in one array, computed by the
--     server (a generated column) and indexed by one GIN index, whose fast-update pending list
--     absorbs appends and is merged in bulk (by autovacuum, asked to run every 100,000
--     inserts);
--   * audit_resource_names: each distinct resource name once, with the trigram index the
--     substring search uses;
--   * audit_facet_values: the distinct values the filter menus offer, per tenant.
-- The events keep their columns, the primary key, the unique seq and (occurred_at, id) for
-- newest-first pages. Adding the generated column rewrites the table once.
DROP INDEX {schema}.audit_events_tenant;
DROP INDEX {schema}.audit_events_category;
DROP INDEX {schema}.audit_events_action;
DROP INDEX {schema}.audit_events_outcome;
DROP INDEX {schema}.audit_events_actor_id;
DROP INDEX {schema}.audit_events_actor_email;
DROP INDEX {schema}.audit_events_request;
DROP INDEX {schema}.audit_events_resource;
DROP INDEX {schema}.audit_events_name;

-- The term of a value: hashtextextended (the hash PostgreSQL partitions by, stable across
-- releases for that reason) of a kind letter and the value; request ids are unique, so they
-- are hashed into 2^20 buckets to keep the index's vocabulary small. Terms only find
-- candidates: every query still compares the columns.
CREATE FUNCTION {schema}.audit_term(kind TEXT, value TEXT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$
    SELECT CASE WHEN kind = 'q' THEN hashtextextended(kind || value, 0) & 1048575
                ELSE hashtextextended(kind || value, 0) END
$$;

ALTER TABLE {schema}.audit_events ADD COLUMN terms BIGINT[] GENERATED ALWAYS AS (
    array_remove(ARRAY[
        {schema}.audit_term('t', tenant),
        {schema}.audit_term('c', category),
        {schema}.audit_term('a', action),
        {schema}.audit_term('o', outcome),
        {schema}.audit_term('u', actor_id),
        {schema}.audit_term('e', lower(actor_email)),
        {schema}.audit_term('r', resource_id),
        {schema}.audit_term('n', resource_name),
        {schema}.audit_term('q', request_id)
    ], NULL)
) STORED;
CREATE INDEX audit_events_terms ON {schema}.audit_events USING gin (terms)
    WITH (fastupdate = on, gin_pending_list_limit = 65536);
ALTER TABLE {schema}.audit_events SET (
    autovacuum_vacuum_insert_threshold = 100000,
    autovacuum_vacuum_insert_scale_factor = 0
);

CREATE TABLE {schema}.audit_resource_names (
    id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT   NOT NULL UNIQUE
);
CREATE INDEX audit_resource_names_trigram ON {schema}.audit_resource_names
    USING gin (name gin_trgm_ops);
INSERT INTO {schema}.audit_resource_names (name)
    SELECT DISTINCT resource_name FROM {schema}.audit_events WHERE resource_name IS NOT NULL;

-- kind: 'category', 'action', 'outcome' (value set), or 'user' (value = actor_id, email,
-- name; at least one of value and email set). NULL tenant: tenantless events. The unique
-- index tells NULL from '' on every release (NULLS NOT DISTINCT needs PostgreSQL 15).
CREATE TABLE {schema}.audit_facet_values (
    tenant TEXT,
    kind   TEXT NOT NULL,
    value  TEXT,
    email  TEXT,
    name   TEXT
);
CREATE UNIQUE INDEX audit_facet_values_key ON {schema}.audit_facet_values (
    kind, coalesce(tenant, ''), (tenant IS NULL), coalesce(value, ''), (value IS NULL),
    coalesce(email, ''), (email IS NULL), coalesce(name, ''), (name IS NULL)
);
INSERT INTO {schema}.audit_facet_values (tenant, kind, value)
    SELECT DISTINCT tenant, 'category', category FROM {schema}.audit_events
    UNION SELECT DISTINCT tenant, 'action', action FROM {schema}.audit_events
    UNION SELECT DISTINCT tenant, 'outcome', outcome FROM {schema}.audit_events
    ON CONFLICT DO NOTHING;
INSERT INTO {schema}.audit_facet_values (tenant, kind, value, email, name)
    SELECT DISTINCT tenant, 'user', actor_id, actor_email, actor_name FROM {schema}.audit_events
    WHERE actor_id IS NOT NULL OR actor_email IS NOT NULL
    ON CONFLICT DO NOTHING;

-- Retention also rebuilds the facet values, so the filter menus offer only what is still
-- there; inside the SECURITY DEFINER function, so the application role needs no DELETE.
CREATE OR REPLACE FUNCTION {schema}.audit_purge_through(boundary BIGINT, cutoff TIMESTAMPTZ)
RETURNS BIGINT
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    purged BIGINT;
    min_age INTERVAL;
BEGIN
    SELECT min_retention INTO min_age FROM {schema}.audit_retention_policy WHERE id = 1;
    -- A zero policy (the default) sets no bound, as on SQLite.
    IF min_age > INTERVAL '0' AND cutoff > now() - min_age THEN
        RAISE EXCEPTION 'audit retention: the policy keeps events for at least %; a cutoff of % would remove younger ones', min_age, cutoff;
    END IF;
    IF EXISTS (SELECT 1 FROM {schema}.audit_events WHERE seq <= boundary AND occurred_at >= cutoff) THEN
        RAISE EXCEPTION 'audit retention: events up to seq % are not all older than %', boundary, cutoff;
    END IF;
    PERFORM set_config('audit.purge_before', cutoff::text, true);
    DELETE FROM {schema}.audit_events WHERE seq <= boundary;
    GET DIAGNOSTICS purged = ROW_COUNT;
    PERFORM set_config('audit.purge_before', '', true);
    DELETE FROM {schema}.audit_facet_values;
    INSERT INTO {schema}.audit_facet_values (tenant, kind, value)
        SELECT DISTINCT tenant, 'category', category FROM {schema}.audit_events
        UNION SELECT DISTINCT tenant, 'action', action FROM {schema}.audit_events
        UNION SELECT DISTINCT tenant, 'outcome', outcome FROM {schema}.audit_events;
    INSERT INTO {schema}.audit_facet_values (tenant, kind, value, email, name)
        SELECT DISTINCT tenant, 'user', actor_id, actor_email, actor_name FROM {schema}.audit_events
        WHERE actor_id IS NOT NULL OR actor_email IS NOT NULL;
    RETURN purged;
END
$$;
REVOKE ALL ON FUNCTION {schema}.audit_purge_through(BIGINT, TIMESTAMPTZ) FROM PUBLIC;
