# The worker's refresh of the keys a restarted Redis brought back
# (keys_sql.c rs_refresh_cached_keys) reads each key's values back into the
# key columns' types to tell the keys a row can have from the rest
# (canonical_key_values: the type's input function, a domain's CHECK).  A
# domain CHECK is the table owner's code: it must run as the owner,
# restricted, as get(), verify() and warm() run it (sql/security section
# 10), never as the worker's bootstrap superuser.
#
# Found by the wave 2l review: the refresh ran the owner's domain check as
# the superuser (a plain role that owns a synced table could have a
# function of its run with superuser rights at the next Redis restart);
# so did a superuser's resync() of such a table (_push_keys, the same
# reading of the keys).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(sleep);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('refresh_owner_code', redis => $redis);

$node->safe_psql('postgres', q{
CREATE ROLE plain_owner;
CREATE SCHEMA own AUTHORIZATION plain_owner;
CREATE TABLE public.trace (who text, superuser bool, at text);
GRANT INSERT ON public.trace TO PUBLIC;
SET ROLE plain_owner;
CREATE FUNCTION own.mark(int) RETURNS boolean LANGUAGE sql AS
$$ INSERT INTO public.trace
   SELECT current_user, (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
          pg_catalog.current_setting('application_name');
   SELECT true $$;
CREATE DOMAIN own.marked AS int CHECK (own.mark(VALUE));
CREATE TABLE own.d (id own.marked PRIMARY KEY, v text);
INSERT INTO own.d SELECT g, 'old ' || g FROM generate_series(1, 5) g;
SELECT redis_sync.write_through('own.d', key_prefix => 'own:d:', warm => false);
SELECT redis_sync.warm('own.d');
RESET ROLE;
});
is($redis->cli('HGET', 'own:d:1', 'v'), 'old 1', 'the rows are cached');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');
$node->safe_psql('postgres', q{UPDATE own.d SET v = 'new ' || id; TRUNCATE public.trace;});
is($redis->cli('HGET', 'own:d:1', 'v'), 'new 1', 'the update reached Redis');

$redis->stop;
$redis->start;
# the snapshot's stale value, unless the worker was quicker than this read
# (CI of e015979): then it refreshed keys, which only the snapshot's stale
# ones needed
my $back = $redis->cli('HGET', 'own:d:1', 'v');
ok($back eq 'old 1' || $node->log_contains('refreshed [1-9]\d* cached keys of table'),
	'Redis is back with the snapshot (or the worker already refreshed it)')
  or diag("own:d:1 = $back");

my $ok = RedisSync::Compare::wait_for(sub { $redis->cli('HGET', 'own:d:1', 'v') eq 'new 1' }, 60);
ok(defined $ok, 'the worker refreshed the key after the restart');
ok($node->log_contains('refreshed \d+ cached keys of table'), 'the refresh is logged');

my $trace = $node->safe_psql('postgres',
	q{SELECT coalesce(string_agg(DISTINCT who || ' ' || superuser || ' ' || at, ', '), '') FROM public.trace});
note("domain check calls: $trace");
unlike($trace, qr/ true /, 'no domain check of the owner ran as a superuser');

# the same reading of keys serves resync() (_push_keys): a superuser's
# resync() of the plain role's table runs the owner's domain check as the
# owner too
$redis->cli('HSET', 'own:d:2', 'v', 'tampered');
$node->safe_psql('postgres', 'TRUNCATE public.trace');
is($node->safe_psql('postgres', q{SELECT redis_sync.resync('own.d')}), '1', 'resync() repairs the tampered key');
is($redis->cli('HGET', 'own:d:2', 'v'), 'new 2', 'the key holds its row again');
$trace = $node->safe_psql('postgres',
	q{SELECT coalesce(string_agg(DISTINCT who || ' ' || superuser, ', '), '') FROM public.trace});
note("domain check calls: $trace");
unlike($trace, qr/ true/, 'resync(): no domain check of the owner ran as a superuser');

done_testing();
