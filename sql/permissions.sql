-- command() is for superusers and roles explicitly granted EXECUTE;
-- redis_sync.redis_url (it may hold a password) is hidden from other roles
CREATE ROLE rs_app LOGIN;
SET ROLE rs_app;
SELECT redis_sync.command('PING');   -- EXECUTE is revoked from PUBLIC
RESET ROLE;
GRANT USAGE ON SCHEMA redis_sync TO rs_app;
SET ROLE rs_app;
SELECT redis_sync.command('PING');
SHOW redis_sync.redis_url;
SELECT count(*) FROM pg_settings WHERE name = 'redis_sync.redis_url';
SELECT count(*) FROM pg_settings WHERE name = 'redis_sync.command_timeout';
RESET ROLE;

GRANT EXECUTE ON FUNCTION redis_sync.command(text[]) TO rs_app;
SET ROLE rs_app;
SELECT redis_sync.command('PING');
RESET ROLE;

REVOKE EXECUTE ON FUNCTION redis_sync.command(text[]) FROM rs_app;
SET ROLE rs_app;
SELECT redis_sync.command('PING');
RESET ROLE;
SELECT count(*) FROM pg_settings WHERE name = 'redis_sync.redis_url';

REVOKE USAGE ON SCHEMA redis_sync FROM rs_app;
DROP ROLE rs_app;
