-- The terms of every appended event are computed by the server (0005's generated column),
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

