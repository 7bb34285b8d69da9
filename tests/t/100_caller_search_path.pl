# Functions that run with the CALLER's rights must not resolve their own
# SQL through the caller's search_path either (review of issue 11): a role
# that can create objects in a schema on another role's search_path (here
# mallory in public) plants exact-match operators and functions that win
# over pg_catalog's (=(oid,regclass), =(regclass,oid), =(oid,integer),
# unnest(name[]), quote_ident(name)).  A superuser then uses the write-behind
# API with the default search_path ("$user", public): hset(), hincrby(),
# flush() (one table and all), retry_dead_letters() (with a dead letter),
# discard_dead_letters().
# Before the fix the configuration query of the drain (load_tables) and
# flush()'s lookup of write-behind tables ran mallory's code as the
# superuser, thousands of times per call.  No planted object may run.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('callerpath', redis => $redis);

$node->safe_psql(
	'postgres', q{
CREATE ROLE mallory LOGIN;
GRANT CREATE, USAGE ON SCHEMA public TO mallory;
CREATE TABLE public.trace (who name, superuser boolean, what text);
GRANT INSERT, SELECT ON public.trace TO PUBLIC;
CREATE TABLE wbt (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0, c text);
INSERT INTO wbt VALUES (1, 0, 'c');
SELECT redis_sync.write_behind('wbt', key_prefix => 'wbt:', dirty_set => 'wbt-dirty',
                               counters => '{n}', flush_interval => '100 ms');
});
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION public.rec(w text) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.trace SELECT current_user, r.rolsuper, w
    FROM pg_catalog.pg_roles r WHERE r.rolname = current_user $$;
CREATE FUNCTION public.eq_or(oid, regclass) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.rec('=(oid,regclass)'); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.eq_or);
CREATE FUNCTION public.eq_ro(regclass, oid) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.rec('=(regclass,oid)'); RETURN $1::oid OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR public.= (LEFTARG = regclass, RIGHTARG = oid, FUNCTION = public.eq_ro);
CREATE FUNCTION public.eq_oi(oid, integer) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.rec('=(oid,integer)'); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = public.eq_oi);
CREATE FUNCTION public.unnest(name[]) RETURNS SETOF name LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.rec('unnest(name[])'); RETURN QUERY SELECT pg_catalog.unnest($1); END $$;
CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.rec('quote_ident(name)'); RETURN pg_catalog.quote_ident($1::text); END $$;
}, extra_params => [ '-U', 'mallory' ]);

# the planted objects are what public resolves to
$node->safe_psql('postgres', q{SELECT 1::oid = 'pg_class'::regclass, quote_ident('x'::name)});
ok($node->safe_psql('postgres', 'SELECT count(*) FROM public.trace') > 0,
	'the planted operator and function are found through public');
$node->safe_psql('postgres', 'DELETE FROM public.trace');

# a dead letter, so that queries over redis_sync.dead_letters evaluate
# their operators on a row
$redis->cli('HSET', 'wbt:9', 'n', 'not a number');
$redis->cli('SADD', 'wbt-dirty', '9');
$node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM redis_sync.dead_letters WHERE relid::oid = 'wbt'::regclass::oid})
  or die 'no dead letter';
$node->safe_psql('postgres', 'DELETE FROM public.trace');

for my $call (
	q{SELECT redis_sync.hincrby('wbt', '1', 'n', 5)},
	q{SELECT redis_sync.hset('wbt', '1', 'c', 'hello')},
	q{SELECT redis_sync.flush('wbt')},
	q{SELECT redis_sync.flush(NULL)},
	q{SELECT redis_sync.retry_dead_letters('wbt')},
	q{SELECT redis_sync.retry_dead_letters(NULL)},
	q{SELECT redis_sync.discard_dead_letters('wbt', NULL)})
{
	$node->safe_psql('postgres', $call);
	is($node->safe_psql('postgres', q{SELECT coalesce(string_agg(DISTINCT what, ','), 'none') FROM public.trace}),
		'none', "no planted object runs in: $call");
	$node->safe_psql('postgres', 'DELETE FROM public.trace');
}

# the calls did their work
is($node->safe_psql('postgres', 'SELECT n || c FROM wbt WHERE id = 1'), '5hello',
	'hincrby and hset reached the table through flush');

$node->stop;
$redis->stop;
done_testing();
