-- The store's upkeep (0006, 0007) analyses the events table as it grows, so that reads right
-- after a bulk load are planned from real statistics. ANALYZE sorts its sample of every
-- column, and in a profile of a loaded service it was a fifth of the server's work, half of
-- it sorting columns no query ever conditions on: the attributes (JSONB, compared key by key
-- after detoasting), the chain's hashes, the request's path, user agent and the like. The
-- planner only estimates the columns a filter or the chain compares (tenant, category,
-- action, outcome, actor id and e-mail, resource id and name, request id, time, id, seq and
-- the terms), so the others are no longer analysed. Their statistics were never used by a
-- plan; nothing is rewritten and no read changes plan.
ALTER TABLE {schema}.audit_events
    ALTER COLUMN prev_hash     SET STATISTICS 0,
    ALTER COLUMN hash          SET STATISTICS 0,
    ALTER COLUMN chain_version SET STATISTICS 0,
    ALTER COLUMN actor_name    SET STATISTICS 0,
    ALTER COLUMN reason        SET STATISTICS 0,
    ALTER COLUMN method        SET STATISTICS 0,
    ALTER COLUMN route         SET STATISTICS 0,
    ALTER COLUMN path          SET STATISTICS 0,
    ALTER COLUMN status        SET STATISTICS 0,
    ALTER COLUMN duration_ms   SET STATISTICS 0,
    ALTER COLUMN client_ip     SET STATISTICS 0,
    ALTER COLUMN user_agent    SET STATISTICS 0,
    ALTER COLUMN attributes    SET STATISTICS 0;
