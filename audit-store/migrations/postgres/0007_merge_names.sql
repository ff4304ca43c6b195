-- The store's upkeep (0006) covers the names table too. Right after a bulk load of a million
-- events, the resource-name substring search took 27–31 ms (15 ms once analysed, the target
-- is 20): the names' trigram index had its own pending list of every name added since (a
-- name lookup read it in full: 3–4.6 ms instead of 1), and the names table and the facet
-- values had never been analysed, so the planner guessed their sizes. Same rules as for the
-- events: merge the pending list every call, analyse a table that was never analysed or
-- changed by a fifth since.
CREATE OR REPLACE FUNCTION {schema}.audit_merge_terms() RETURNS BIGINT
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    merged  BIGINT;
    stale   BOOLEAN;
    tbl     REGCLASS;
BEGIN
    merged := gin_clean_pending_list('{schema}.audit_events_terms'::regclass)
            + gin_clean_pending_list('{schema}.audit_resource_names_trigram'::regclass);
    FOREACH tbl IN ARRAY ARRAY[
        '{schema}.audit_events'::regclass,
        '{schema}.audit_resource_names'::regclass,
        '{schema}.audit_facet_values'::regclass
    ] LOOP
        SELECT (s.last_analyze IS NULL AND s.last_autoanalyze IS NULL)
               OR s.n_mod_since_analyze > 0.2 * greatest(c.reltuples, 0)
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
