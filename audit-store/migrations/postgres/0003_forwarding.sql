-- Forwarding (the audit-forward crate): per sink, how far delivery has got, and which
-- instance delivers ({schema} is replaced by the configured name).

-- One row per sink. `seq` is the last event the sink acknowledged, `checkpoint_id` the last
-- checkpoint (audit_checkpoints.id). A sink that refused a batch permanently is halted at
-- `halted_seq` (the first event of that batch) until an operator resumes it.
CREATE TABLE {schema}.audit_forward_cursors (
    sink          TEXT        PRIMARY KEY,
    seq           BIGINT      NOT NULL,
    checkpoint_id BIGINT      NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    halted_seq    BIGINT,
    halt_reason   TEXT,
    halted_at     TIMESTAMPTZ
);

-- Who forwards each sink: one holder at a time, until `expires_at` unless renewed.
-- `generation` grows at every change of holder; cursor moves are fenced by it. Times come
-- from the database's clock, so instances with skewed clocks agree on expiry.
CREATE TABLE {schema}.audit_forward_leases (
    sink        TEXT        PRIMARY KEY,
    holder      TEXT        NOT NULL,
    generation  BIGINT      NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
