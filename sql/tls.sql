-- TLS: rediss:// URLs and the redis_sync.tls_* settings.  The TLS exchanges
-- themselves (verification, client certificates, interrupts) need a TLS
-- redis-server and certificates: TAP tests 130-132.
SELECT * FROM redis_sync.parse_url('rediss://cache.example.com');
SELECT * FROM redis_sync.parse_url('rediss://app:s%40cr%3At@10.0.0.5:6380/3');
SELECT * FROM redis_sync.parse_url('rediss://[::1]:6390/1');
SELECT tls FROM redis_sync.parse_url('redis://localhost');
SELECT tls FROM redis_sync.parse_url('unix:///tmp/r.sock');

-- errors in rediss:// URLs are those of redis:// (never the password)
SELECT * FROM redis_sync.parse_url('rediss://:secret@localhost:notaport/0');
SELECT * FROM redis_sync.parse_url('rediss://:secret@localhost:6379/0?sslmode=x');
SELECT * FROM redis_sync.parse_url('rediss:/localhost');

-- the settings, their defaults and reload context
SELECT name, setting, context, vartype, enumvals
  FROM pg_settings WHERE name LIKE 'redis_sync.tls%' ORDER BY name;

-- they change on reload only
SET redis_sync.tls_verify = 'none';
SET redis_sync.tls_ca_file = '/etc/ssl/certs/ca-certificates.crt';
-- an unknown verification mode is refused
ALTER SYSTEM SET redis_sync.tls_verify = 'sometimes';

-- the file settings are visible to superusers only
CREATE ROLE rs_tls_app;
SET ROLE rs_tls_app;
SHOW redis_sync.tls_ca_file;
SHOW redis_sync.tls_key_file;
SHOW redis_sync.tls_verify;
RESET ROLE;
DROP ROLE rs_tls_app;
