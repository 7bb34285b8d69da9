-- redis_sync.command(): one Redis command, reply as jsonb
SELECT redis_sync.command('PING');
SELECT redis_sync.command('SET', 'rs:cmd:a', 'hello');
SELECT redis_sync.command('GET', 'rs:cmd:a');
SELECT redis_sync.command('GET', 'rs:cmd:missing');           -- nil -> null
SELECT redis_sync.command('GET', 'rs:cmd:missing') IS NULL AS sql_null,
       redis_sync.command('GET', 'rs:cmd:missing') = 'null'::jsonb AS json_null;
SELECT redis_sync.command('INCR', 'rs:cmd:n');                 -- integer -> number
SELECT redis_sync.command('INCRBY', 'rs:cmd:n', '41');
SELECT jsonb_typeof(redis_sync.command('INCR', 'rs:cmd:n'));
SELECT redis_sync.command('HSET', 'rs:cmd:h', 'price', '15000', 'name', 'widget');
SELECT redis_sync.command('HGETALL', 'rs:cmd:h');              -- array
SELECT redis_sync.command('EXPIRE', 'rs:cmd:h', '100');
SELECT redis_sync.command('TTL', 'rs:cmd:h')::int BETWEEN 1 AND 100 AS ttl_set;
SELECT redis_sync.command('MGET', 'rs:cmd:a', 'rs:cmd:missing'); -- nil inside an array
SELECT redis_sync.command('DEL', 'rs:cmd:a', 'rs:cmd:n', 'rs:cmd:h');
SELECT redis_sync.command('EXISTS', 'rs:cmd:a');
-- binary-safe arguments: spaces, quotes, newlines, unicode
SELECT redis_sync.command('SET', 'rs:cmd:key with spaces', E'line1\nline2 "quoted" é');
SELECT redis_sync.command('GET', 'rs:cmd:key with spaces');
SELECT redis_sync.command('DEL', 'rs:cmd:key with spaces');
-- an empty string argument and an empty array reply
SELECT redis_sync.command('SET', 'rs:cmd:empty', '');
SELECT redis_sync.command('GET', 'rs:cmd:empty');
SELECT redis_sync.command('KEYS', 'rs:cmd:nothing*');
SELECT redis_sync.command('DEL', 'rs:cmd:empty');
-- a status reply other than OK, and a nested array
SELECT redis_sync.command('TYPE', 'rs:cmd:none');
SELECT redis_sync.command('RPUSH', 'rs:cmd:l', 'x');
SELECT jsonb_typeof(redis_sync.command('SCAN', '0', 'MATCH', 'rs:cmd:l', 'COUNT', '1000') -> 1);
SELECT redis_sync.command('DEL', 'rs:cmd:l');

-- Redis error replies become ERRORs carrying Redis's text
SELECT redis_sync.command('NOSUCHCOMMAND', 'x');
SELECT redis_sync.command('SET', 'rs:cmd:s', 'x');
SELECT redis_sync.command('INCR', 'rs:cmd:s');
SELECT redis_sync.command('GET');
SELECT redis_sync.command('DEL', 'rs:cmd:s');

-- bad input from SQL
SELECT redis_sync.command();
SELECT redis_sync.command(VARIADIC ARRAY[]::text[]);
SELECT redis_sync.command('GET', NULL);
SELECT redis_sync.command(VARIADIC NULL::text[]);

-- the connection survives errors and is reused
SELECT redis_sync.command('PING');

-- command_timeout bounds a command that does not answer; the next call
-- reconnects without ceremony
SET redis_sync.command_timeout = '200ms';
SELECT rs_error($$SELECT redis_sync.command('BLPOP', 'rs:cmd:empty-list', '5')$$);
RESET redis_sync.command_timeout;
SELECT redis_sync.command('PING');

-- reply_spin: polling for a reply first neither loses replies (0: sleep at
-- once; 1000: the longest poll) nor outlasts command_timeout
SET redis_sync.reply_spin = 0;
SELECT redis_sync.command('ECHO', 'slept');
SET redis_sync.reply_spin = 1000;
SELECT redis_sync.command('ECHO', 'polled');
SET redis_sync.command_timeout = '200ms';
SELECT rs_error($$SELECT redis_sync.command('BLPOP', 'rs:cmd:empty-list', '5')$$);
RESET redis_sync.command_timeout;
SET redis_sync.reply_spin = 1001;
SET redis_sync.reply_spin = -1;
RESET redis_sync.reply_spin;
SHOW redis_sync.reply_spin;

-- GUCs: units and bounds
SET redis_sync.connect_timeout = '2s';
SHOW redis_sync.connect_timeout;
SET redis_sync.command_timeout = 0;
RESET redis_sync.connect_timeout;
SET redis_sync.redis_url = 'redis://127.0.0.1:1/0';      -- SIGHUP only
SET redis_sync.database = 'x';                            -- SIGHUP only
SET redis_sync.no_such_setting = 1;                        -- prefix reserved
