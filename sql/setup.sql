-- setup: create the extension once for the whole regress run (and again, for a
-- second make installcheck on the same database), and a helper
-- that runs a statement and returns its error with the Redis address masked
-- (the sandbox picks a free port each run).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS redis_sync;
RESET client_min_messages;
SELECT extname, extversion, extnamespace::regnamespace FROM pg_extension WHERE extname = 'redis_sync';
SELECT redis_sync.command('FLUSHDB');

CREATE OR REPLACE FUNCTION public.rs_error(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    msg text; det text; st text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, st = RETURNED_SQLSTATE;
    RETURN st || ': ' || regexp_replace(msg, '127\.0\.0\.1:[0-9]+', 'HOST:PORT', 'g')
           || CASE WHEN det <> '' THEN ' / ' || det ELSE '' END;
END $$;

-- a Redis hash as a jsonb object (field order normalised), for comparisons
CREATE OR REPLACE FUNCTION public.h(k text) RETURNS jsonb LANGUAGE sql AS $$
  SELECT coalesce(jsonb_object_agg(e.f, e.v), '{}')
    FROM (SELECT redis_sync.command('HGETALL', k) AS a) s,
         LATERAL (SELECT s.a ->> (2 * i) AS f, s.a ->> (2 * i + 1) AS v
                    FROM generate_series(0, jsonb_array_length(s.a) / 2 - 1) i) e $$;
