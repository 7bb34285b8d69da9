-- redis_sync demo: run with psql -X -e so every statement is echoed.
\set ON_ERROR_STOP on
CREATE EXTENSION IF NOT EXISTS redis_sync;
SELECT redis_sync.command('PING');
SELECT redis_sync.command('SET', 'demo:hello', 'world');
SELECT redis_sync.command('GET', 'demo:hello');
SELECT redis_sync.command('INCR', 'demo:counter');
