# The search_path attack on every path that runs with rights other than the
# caller's (issue 11).  mallory, a plain role who may create objects in
# schema public (as a database owner may), plants exact-match functions
# there: public.unnest(integer[]) and public.unnest(text[]) beat
# pg_catalog.unnest(anyarray) in any SQL that resolves names through a
# search_path containing public.  Each planted function records who ran it.
# Then every identity-switching path runs:
#   - get() populating the cache of a superuser's table, called by a reader
#     whose search_path is public;
#   - the write-behind drain of mallory's table (upsert and on_missing delete);
#   - the worker's marker repair after a backend crashed after its push;
#   - the worker's re-warm and re-seed after Redis restarted empty.
# The planted functions must never run: these paths use a fixed
# search_path (pg_catalog, pg_temp) and run as the table's owner.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'spath',
	redis      => $redis,
	extra_conf => <<"EOC");
redis_sync.marker_sweep_interval = '200ms'
restart_after_crash = on
EOC

$node->safe_psql(
	'postgres', q{
CREATE ROLE mallory LOGIN;
CREATE ROLE reader LOGIN;
GRANT CREATE, USAGE ON SCHEMA public TO mallory, reader;
CREATE TABLE public.trace (who name, superuser boolean, path text);
GRANT INSERT, SELECT ON public.trace TO PUBLIC;
-- a superuser's table, readable by reader
CREATE TABLE s (id int PRIMARY KEY, v int, note text);
INSERT INTO s SELECT g, g, 's' || g FROM generate_series(1, 20) g;
SELECT redis_sync.write_through('s', key_prefix => 's:');
GRANT SELECT ON s TO reader;
});
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION public.unnest(integer[]) RETURNS SETOF integer LANGUAGE sql AS $$
  INSERT INTO public.trace SELECT current_user, r.rolsuper, 'unnest(integer[])'
    FROM pg_catalog.pg_roles r WHERE r.rolname = current_user;
  SELECT x FROM pg_catalog.unnest($1) x $$;
CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE sql AS $$
  INSERT INTO public.trace SELECT current_user, r.rolsuper, 'unnest(text[])'
    FROM pg_catalog.pg_roles r WHERE r.rolname = current_user;
  SELECT x FROM pg_catalog.unnest($1) x $$;
CREATE FUNCTION public.unnest(bigint[]) RETURNS SETOF bigint LANGUAGE sql AS $$
  INSERT INTO public.trace SELECT current_user, r.rolsuper, 'unnest(bigint[])'
    FROM pg_catalog.pg_roles r WHERE r.rolname = current_user;
  SELECT x FROM pg_catalog.unnest($1) x $$;
CREATE TABLE public.mw (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0, note text);
INSERT INTO public.mw VALUES (1, 10, 'one'), (2, 20, 'two');
SELECT redis_sync.write_behind('public.mw', key_prefix => 'mw:', flush_interval => '100 ms',
                               on_missing => 'delete');
}, extra_params => [ '-U', 'mallory' ]);

# the planted functions work (and are found) for mallory's own queries
is($node->safe_psql('postgres', 'SELECT count(*) FROM unnest(ARRAY[1,2])', extra_params => [ '-U', 'mallory' ]),
	'2', 'the planted unnest(integer[]) is what public resolves to');
$node->safe_psql('postgres', 'DELETE FROM public.trace');

my $trace = sub {
	return $node->safe_psql('postgres',
		"SELECT count(*) || ' calls, ' || count(*) FILTER (WHERE who <> 'mallory' OR superuser) || ' with other rights' FROM public.trace");
};

# 1. get() populates as the owner
$redis->cli('DEL', 's:3');
is( $node->safe_psql(
		'postgres',
		"SET search_path = public; SELECT (redis_sync.get(NULL::s, '3')).note",
		extra_params => [ '-U', 'reader' ]),
	's3',
	'get() as reader: the row');
is($redis->cli('HGET', 's:3', 'note'), 's3', '... and the cache was populated');
is($trace->(), '0 calls, 0 with other rights', 'get() populate: the planted functions never ran');

# 2. the drain (as mallory, the owner): upsert and on_missing delete
$redis->cli('HSET', 'mw:1', 'n', '11', 'note', 'changed');
$redis->cli('SADD', 'mw:dirty', '1', '2');    # mw:2 has no value: on_missing delete
$node->safe_psql('postgres', "SET search_path = public; SELECT redis_sync.flush('mw')",
	extra_params => [ '-U', 'mallory' ]);
is($node->safe_psql('postgres', "SELECT string_agg(id || '=' || n || ':' || note, ',' ORDER BY id) FROM mw"),
	'1=11:changed', 'the drain applied the upsert and the delete');
is($trace->(), '0 calls, 0 with other rights', 'drain: the planted functions never ran');

# 3. the worker's marker repair after a crash after the push
my ($ret, $out, $err) = $node->psql('postgres', 'SHOW redis_sync.debug_crash_after_push');
SKIP:
{
	skip 'debug_crash_after_push not available', 2 if $ret != 0;
	$node->psql(
		'postgres', q{
SET redis_sync.debug_crash_after_push = on;
UPDATE s SET v = -v, note = 'crashed' WHERE id <= 5;
});
	ok( defined RedisSync::Compare::wait_for(
			sub {
				my ($r, $o) = $node->psql('postgres', "SELECT redis_sync.command('HGET', 's:1', 'note')");
				return $r == 0 && $o eq '"s1"';
			},
			60, 0.1),
		'the worker repaired the keys pushed by the crashed transaction');
	is($trace->(), '0 calls, 0 with other rights', 'marker repair: the planted functions never ran');
}

# 4. re-warm and re-seed after Redis restarted empty
$redis->stop;
$redis->start;
ok( defined RedisSync::Compare::wait_for(
		sub {
			$redis->cli('HGET', 's:20', 'note') eq 's20' && $redis->cli('HGET', 'mw:1', 'n') eq '11';
		},
		60, 0.1),
	'the worker re-warmed s and re-seeded mw after the restart');
is($trace->(), '0 calls, 0 with other rights', 're-warm and re-seed: the planted functions never ran');

# warm() and resync() by their caller (the owner) take the same path
$redis->cli('DEL', 's:4');
$node->safe_psql('postgres', "SET search_path = public; SELECT redis_sync.resync('s'); SELECT redis_sync.warm('s')");
is($redis->cli('HGET', 's:4', 'note'), 's4', 'resync() repaired a key');
is($trace->(), '0 calls, 0 with other rights', 'warm/resync: the planted functions never ran');

$node->stop;
done_testing();
