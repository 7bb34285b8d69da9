-- setup: create the extension once for the whole regress run, and a helper
-- that runs a statement and returns its error with the Redis address masked
-- (the sandbox picks a free port each run).
CREATE EXTENSION redis_sync;
SELECT extname, extversion, extnamespace::regnamespace FROM pg_extension WHERE extname = 'redis_sync';
SELECT redis_sync.command('FLUSHDB');

CREATE FUNCTION public.rs_error(stmt text) RETURNS text
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
