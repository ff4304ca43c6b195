-- Two costs of the server's work per appended event, found in a profile of a loaded service.
--
-- 1. The terms of every appended event are computed by the server (0005's generated column),
-- nine calls of audit_term per row. 0005 declared it STRICT, and PostgreSQL inlines a SQL
-- function only when a STRICT one's body is provably strict, which a CASE is not: every call
-- ran as a separate SQL function (fmgr_sql starting a small executor each time), the
-- largest part of the server's work per appended row in a profile of a loaded service.
-- Without STRICT the function is inlined into the generated column's expression (and into
-- queries) and then folded per kind letter. Its values are the same for every input: a NULL
-- value gives NULL either way (`||` and hashtextextended are strict), and the kind is never
-- NULL. So the stored terms stay valid and nothing is rewritten.
CREATE OR REPLACE FUNCTION {schema}.audit_term(kind TEXT, value TEXT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN kind = 'q' THEN hashtextextended(kind || value, 0) & 1048575
                ELSE hashtextextended(kind || value, 0) END
$$;

-- 2. The store's upkeep (0006, 0007; called every 5,000 appended events) analysed the events
-- table whenever a fifth of it had changed since the last analysis. While a table grows from
-- empty that is every 1.2-fold: some 30 analyses by a million events, each sampling 30,000
-- rows (array statistics of the terms, the attributes detoasted), a fifth of the server's
-- CPU in a loaded service's first minutes. Now the events table is analysed when it never
-- was, or when a fifth of it and at least 100,000 rows changed (about ten analyses by a
-- million events; the planner scales the row count by the table's current size in between).
-- The small tables keep the one-fifth rule, with at least 1,000 rows changed.
CREATE OR REPLACE FUNCTION {schema}.audit_merge_terms() RETURNS BIGINT
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    merged  BIGINT;
    stale   BOOLEAN;
    tbl     REGCLASS;
    least_changed DOUBLE PRECISION;
BEGIN
    merged := gin_clean_pending_list('{schema}.audit_events_terms'::regclass)
            + gin_clean_pending_list('{schema}.audit_resource_names_trigram'::regclass);
    FOREACH tbl IN ARRAY ARRAY[
        '{schema}.audit_events'::regclass,
        '{schema}.audit_resource_names'::regclass,
        '{schema}.audit_facet_values'::regclass
    ] LOOP
        least_changed := CASE WHEN tbl = '{schema}.audit_events'::regclass THEN 100000
                              ELSE 1000 END;
        SELECT (s.last_analyze IS NULL AND s.last_autoanalyze IS NULL)
               OR s.n_mod_since_analyze > greatest(0.2 * c.reltuples, least_changed)
          INTO stale
          FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
         WHERE s.relid = tbl;
        IF coalesce(stale, true) THEN
            EXECUTE format('ANALYZE %s', tbl);
        END IF;
    END LOOP;
    RETURN merged;
END
$$;
REVOKE ALL ON FUNCTION {schema}.audit_merge_terms() FROM PUBLIC;
