-- URL parsing: every accepted form, and a precise error for each malformed one
SELECT * FROM redis_sync.parse_url('redis://127.0.0.1');
SELECT * FROM redis_sync.parse_url('redis://localhost:6380/2');
SELECT * FROM redis_sync.parse_url('redis://:secret@cache.internal:6379/0');
SELECT * FROM redis_sync.parse_url('redis://app:s%40cr%3At@10.0.0.5:7000/15');
SELECT * FROM redis_sync.parse_url('redis://[::1]:6390/1');
SELECT * FROM redis_sync.parse_url('redis://[::1]');
SELECT * FROM redis_sync.parse_url('redis://host/');
SELECT * FROM redis_sync.parse_url('unix:///var/run/redis/redis.sock');
SELECT * FROM redis_sync.parse_url('unix:///tmp/r.sock?db=3&user=app&password=pw');

-- errors (the password never appears in them)
SELECT * FROM redis_sync.parse_url('');
SELECT * FROM redis_sync.parse_url('http://localhost:6379');
SELECT * FROM redis_sync.parse_url('localhost:6379');
SELECT * FROM redis_sync.parse_url('rediss://:secret@localhost:6379');
SELECT * FROM redis_sync.parse_url('redis://:secret@localhost:notaport/0');
SELECT * FROM redis_sync.parse_url('redis://localhost:0');
SELECT * FROM redis_sync.parse_url('redis://localhost:65536');
SELECT * FROM redis_sync.parse_url('redis://localhost:');
SELECT * FROM redis_sync.parse_url('redis://localhost:6379/x');
SELECT * FROM redis_sync.parse_url('redis://localhost:6379/-1');
SELECT * FROM redis_sync.parse_url('redis://:secret@:6379/0');
SELECT * FROM redis_sync.parse_url('redis://[::1:6379');
SELECT * FROM redis_sync.parse_url('redis://[::1]x/0');
SELECT * FROM redis_sync.parse_url('redis://localhost:6379/0?timeout=1');
SELECT * FROM redis_sync.parse_url('redis://u%zz:pw@localhost');
-- a NUL cannot be part of a password here: refused, not cut short
SELECT * FROM redis_sync.parse_url('redis://u:pw%00rest@localhost');
SELECT * FROM redis_sync.parse_url('unix://relative/path.sock');
SELECT * FROM redis_sync.parse_url('unix:///tmp/r.sock?db=abc');
SELECT * FROM redis_sync.parse_url('unix:///tmp/r.sock?database=1');
SELECT * FROM redis_sync.parse_url('unix:///tmp/r.sock?db');
