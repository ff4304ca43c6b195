-- Events the database refused (a value or constraint it will never accept), kept instead of
-- retried forever. `event` is the event's JSON as the host submitted it (text, not jsonb, so
-- that what jsonb refused is kept too), `error` what the database said. Append-only.
CREATE TABLE {schema}.audit_quarantine (
    id             BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    quarantined_at TIMESTAMPTZ NOT NULL,
    event_id       TEXT        NOT NULL,
    error          TEXT        NOT NULL,
    event          TEXT        NOT NULL
);
CREATE TRIGGER audit_quarantine_no_change BEFORE UPDATE OR DELETE ON {schema}.audit_quarantine
    FOR EACH ROW EXECUTE FUNCTION {schema}.audit_events_reject();
CREATE TRIGGER audit_quarantine_no_truncate BEFORE TRUNCATE ON {schema}.audit_quarantine
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.audit_events_reject();

-- One row per recorder instance: its current (or last) run, as it last reported itself.
-- `stopped_at` stays NULL until the run stops cleanly.
CREATE TABLE {schema}.audit_recorder_runs (
    instance       TEXT        PRIMARY KEY,
    run_id         UUID        NOT NULL,
    host           TEXT        NOT NULL,
    pid            BIGINT      NOT NULL,
    delivery       TEXT        NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL,
    reported_at    TIMESTAMPTZ NOT NULL,
    pending_events BIGINT      NOT NULL,
    stopped_at     TIMESTAMPTZ
);

-- Retention through one function, so that the role the application connects with needs no
-- DELETE privilege at all (see PostgresStore::least_privilege_sql). SECURITY DEFINER: it runs
-- with the rights of the role that ran the migrations. It removes only a prefix of the chain
-- (seq <= boundary) and only if every event in it is older than the cutoff, so whoever may
-- call it can apply a retention policy and nothing else.
CREATE FUNCTION {schema}.audit_purge_through(boundary BIGINT, cutoff TIMESTAMPTZ)
RETURNS BIGINT
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    purged BIGINT;
BEGIN
    IF EXISTS (SELECT 1 FROM {schema}.audit_events WHERE seq <= boundary AND occurred_at >= cutoff) THEN
        RAISE EXCEPTION 'audit retention: events up to seq % are not all older than %', boundary, cutoff;
    END IF;
    PERFORM set_config('audit.purge_before', cutoff::text, true);
    DELETE FROM {schema}.audit_events WHERE seq <= boundary;
    GET DIAGNOSTICS purged = ROW_COUNT;
    PERFORM set_config('audit.purge_before', '', true);
    RETURN purged;
END
$$;
REVOKE ALL ON FUNCTION {schema}.audit_purge_through(BIGINT, TIMESTAMPTZ) FROM PUBLIC;
