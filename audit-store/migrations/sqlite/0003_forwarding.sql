-- Forwarding (the audit-forward crate): per sink, how far delivery has got, and which
-- instance delivers. Times are microseconds since the Unix epoch, UTC.

-- One row per sink. `seq` is the last event the sink acknowledged, `checkpoint_id` the last
-- checkpoint (audit_checkpoints.id). A sink that refused a batch permanently is halted at
-- `halted_seq` (the first event of that batch) until an operator resumes it.
CREATE TABLE audit_forward_cursors (
    sink          TEXT    PRIMARY KEY,
    seq           INTEGER NOT NULL,
    checkpoint_id INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    halted_seq    INTEGER,
    halt_reason   TEXT,
    halted_at     INTEGER
);

-- Who forwards each sink: one holder at a time, until `expires_at` unless renewed.
-- `generation` grows at every change of holder; cursor moves are fenced by it.
CREATE TABLE audit_forward_leases (
    sink        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    generation  INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
