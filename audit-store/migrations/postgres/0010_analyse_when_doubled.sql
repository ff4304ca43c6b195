-- The store's upkeep (0007) analysed a table whenever a fifth of it had changed since its last
-- analysis. While a table is young and fills fast that is an ANALYZE of the full 30,000-row
-- sample every few seconds: in the load harness (a fresh schema filling at ~17,000 events/s)
-- the upkeep's ANALYZE was 8 % of the whole machine's CPU, a fifth of the server's work.
-- The statistics only have to describe the rows' distribution (tenants, categories, actors,
-- terms), which a sample of the older half describes as well as one of the whole, and the
-- planner scales row counts to the table's current size and probes the time index's real
-- ends itself. So a table is now analysed when it was never analysed or has changed by as
-- many rows as it held at its last analysis (it doubled): after a bulk load the statistics
-- still cover at least half of the table. PostgreSQL's autovacuum goes on analysing on its
-- own schedule besides.
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
               OR s.n_mod_since_analyze > greatest(c.reltuples, 0)
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
