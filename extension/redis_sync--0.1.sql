/* redis_sync--0.1.sql: install script of redis_sync 0.1 */

\echo Use "CREATE EXTENSION redis_sync" to load this file. \quit

-- ---------------------------------------------------------------------
-- Raw access to Redis (administrators and tests)
-- ---------------------------------------------------------------------

CREATE FUNCTION command(VARIADIC args text[])
RETURNS jsonb
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'redis_sync_command';

COMMENT ON FUNCTION command(text[]) IS
'run one Redis command and return its reply as jsonb (superusers and granted roles only)';

REVOKE EXECUTE ON FUNCTION command(text[]) FROM PUBLIC;

CREATE FUNCTION parse_url(url text,
                          OUT host text, OUT port int, OUT socket text,
                          OUT db int, OUT username text, OUT has_password bool)
RETURNS record
LANGUAGE C STRICT IMMUTABLE
AS 'MODULE_PATHNAME', 'redis_sync_parse_url';

COMMENT ON FUNCTION parse_url(text) IS
'show how a redis_sync.redis_url value is understood, without connecting';
