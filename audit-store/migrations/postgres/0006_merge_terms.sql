-- Upkeep of the terms index, done by the store (ARCHITECTURE.md, "Appending"), rather than
-- left to autovacuum, which comes round once a minute at best:
--   * the pending list: a GIN index in fast-update mode takes appends into an unsorted list
--     that every query scans in full; left to itself it grows to gin_pending_list_limit
--     (64 MB) before an insert merges it, and right after a bulk load a filtered page took
--     100 ms instead of 3;
--   * statistics: a table that has grown since it was last analysed is planned with guesses;
--     right after a bulk load of a million events the substring search was planned as a
--     scan of every event (seconds instead of milliseconds).
-- The store calls this every few thousand appended events. gin_clean_pending_list and
-- ANALYZE are for the table's owner: SECURITY DEFINER lets the application role
-- (least_privilege_sql) call it without owning anything. It analyses only when the table
-- has never been analysed or a fifth of it changed since, as autovacuum would.
CREATE FUNCTION {schema}.audit_merge_terms() RETURNS BIGINT
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    merged  BIGINT;
    stale   BOOLEAN;
BEGIN
    merged := gin_clean_pending_list('{schema}.audit_events_terms'::regclass);
    SELECT (s.last_analyze IS NULL AND s.last_autoanalyze IS NULL)
           OR s.n_mod_since_analyze > 0.2 * greatest(c.reltuples, 0)
      INTO stale
      FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
     WHERE s.relid = '{schema}.audit_events'::regclass;
    IF coalesce(stale, true) THEN
        ANALYZE {schema}.audit_events;
    END IF;
    RETURN merged;
END
$$;
REVOKE ALL ON FUNCTION {schema}.audit_merge_terms() FROM PUBLIC;
