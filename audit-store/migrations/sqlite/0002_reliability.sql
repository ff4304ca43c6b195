-- Events the database refused (a value or constraint it will never accept), kept instead of
-- retried forever. `event` is the event's JSON as the host submitted it, `error` what the
-- database said. Append-only, like the events: nothing deletes from the quarantine.
CREATE TABLE audit_quarantine (
    id             INTEGER PRIMARY KEY,
    quarantined_at INTEGER NOT NULL,
    event_id       TEXT    NOT NULL,
    error          TEXT    NOT NULL,
    event          TEXT    NOT NULL
);
CREATE TRIGGER audit_quarantine_no_update BEFORE UPDATE ON audit_quarantine BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only: the quarantine cannot be changed');
END;
CREATE TRIGGER audit_quarantine_no_delete BEFORE DELETE ON audit_quarantine BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only: the quarantine cannot be deleted from');
END;

-- One row per recorder instance: its current (or last) run, as it last reported itself.
-- `stopped_at` stays NULL until the run stops cleanly, so a row still NULL at the next start
-- of the same instance is a run that ended without draining (kill -9, power loss).
-- Times are microseconds since the Unix epoch.
CREATE TABLE audit_recorder_runs (
    instance       TEXT    PRIMARY KEY,
    run_id         TEXT    NOT NULL,
    host           TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    delivery       TEXT    NOT NULL,
    started_at     INTEGER NOT NULL,
    reported_at    INTEGER NOT NULL,
    pending_events INTEGER NOT NULL,
    stopped_at     INTEGER
);
