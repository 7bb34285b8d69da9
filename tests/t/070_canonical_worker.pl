# The canonical encoding in the background worker: a server whose
# postgresql.conf sets German dates, a far time zone, sql_standard
# intervals, escape bytea and extra_float_digits = -3 (the settings the
# worker runs with).  Async write-through (delivered by the worker), the
# worker's re-warm after Redis restarts empty, and the write-behind drain
# must all produce and read the same canonical keys and values as a session
# with default settings.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'canonical',
	redis      => $redis,
	extra_conf => "DateStyle = 'German, DMY'\nTimeZone = 'Asia/Tokyo'\n"
	  . "IntervalStyle = 'sql_standard'\nbytea_output = 'escape'\nextra_float_digits = -3\n");

# sessions are reset to the defaults; the worker keeps the server's settings
my $defaults = "SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres'; "
  . "SET bytea_output = 'hex'; SET extra_float_digits = 1;";

$node->safe_psql(
	'postgres', qq{
$defaults
CREATE TABLE ev (d date PRIMARY KEY, ts timestamptz, iv interval, b bytea, f float8);
SELECT redis_sync.write_through('ev', key_prefix => 'ev:', delivery => 'async');
INSERT INTO ev VALUES ('2024-02-03', '2024-02-03 12:34:56.789+00', '-1 day +02:00', '\\x00ff', 0.1::float8 + 0.2::float8);
CREATE TABLE wb (d date, k text, ts timestamptz, f float8, PRIMARY KEY (d, k));
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', flush_interval => '100 ms');
});

# the cached hash equals the canonical encoding (independent of any setting)
sub canonical
{
	return $node->safe_psql(
		'postgres', q{
SELECT coalesce(jsonb_object_agg(a ->> (2 * i), a ->> (2 * i + 1)), '{}')
       = '{"b": "\\\\x00ff", "d": "2024-02-03", "f": "0.30000000000000004",
           "iv": "-1 days +02:00:00", "ts": "2024-02-03 12:34:56.789+00"}'::jsonb
  FROM (SELECT redis_sync.command('HGETALL', 'ev:2024-02-03') a) s,
       generate_series(0, jsonb_array_length(a) / 2 - 1) i}) eq 't';
}
sub cached { return $node->safe_psql('postgres', q{SELECT redis_sync.command('HGETALL', 'ev:2024-02-03')}); }

ok(defined RedisSync::Compare::wait_for(\&canonical, 30),
	'async delivery by the worker: canonical key and values')
  or diag(cached());
is($node->safe_psql('postgres', q{SELECT redis_sync.command('KEYS', 'ev:*')}),
	'["ev:2024-02-03"]', 'one key, ISO date');

# Redis restarts empty: the worker re-warms under its own settings
$redis->stop;
$redis->start;
ok(defined RedisSync::Compare::wait_for(\&canonical, 60),
	'worker re-warm after an empty restart: canonical values')
  or diag(cached());
is($node->safe_psql('postgres', "$defaults SELECT count(*) FROM redis_sync.verify('ev')"),
	'0', 'verify clean');

# write-behind: the application writes canonical text; the drain reads it so
$redis->cli('HSET', 'wb:2024-02-03:a\\:b', 'ts', '2024-02-03 12:00:00+00', 'f', '0.30000000000000004');
$redis->cli('SADD', 'wb:dirty', '2024-02-03:a\\:b');
ok( defined RedisSync::Compare::wait_for(
		sub {
			$node->safe_psql('postgres', "$defaults SELECT count(*) FROM wb") eq '1';
		},
		30),
	'drained');
is( $node->safe_psql(
		'postgres',
		"$defaults SELECT d, k, ts, f = 0.1::float8 + 0.2::float8 FROM wb"),
	'2024-02-03|a:b|2024-02-03 12:00:00+00|t',
	'drain: ISO date key, escaped text key, UTC timestamp, exact float');
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters'), '0', 'no dead letters');

$node->stop;
$redis->stop;
done_testing();
