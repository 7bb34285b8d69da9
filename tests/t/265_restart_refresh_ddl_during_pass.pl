# The worker's refresh after a Redis restart is one SCAN pass for every
# write-through and invalidate table (keys_sql.c rs_refresh_cached_keys):
# the prefixes and configurations are read when the pass begins, the keys
# pushed once the pass has handed them out.  Tables dropped, unsynced or
# synced again under another prefix while the pass runs must neither fail
# the others nor keep the restart's work pending, and the other tables,
# whose prefixes hold bytes >= 0x80 and sort between one another, must each
# get their own keys (strcmp order, binary search).
#
# Found by the wave 2o review (rev3): the pass is one transaction, and each
# table's configuration was read with the snapshot of its beginning: an
# invalidation processed mid-pass reloaded the configuration of a table
# synced again under d2: as it was (d:), and the worker kept it as current
# past the pass: its re-warm and the new sync's warm wrote d: and never d2:
# (verify: 299 keys missing in the cache); a table unsynced during the pass
# was pushed after its unsync.
use strict;
use warnings;
use utf8;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(sleep time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('refresh_ddl', redis => $redis,
	extra_conf => "redis_sync.warm_timeout = '60s'\n");

# a0 first (smallest OID: its part runs first), its domain check slow
# while flag holds a row: the DDL below runs during a0's part
my %prefix = (b_t => 'b:', c_t => 'c:', d_t => 'd:', e_t => "e:",
	u1_t => "\xc3\xa9:", u2_t => "\xc3\xa9a:", u3_t => "\xc3\xbc:", u4_t => "\x7e:");
my $sql = q{
CREATE TABLE public.flag (on_ boolean);
CREATE FUNCTION slow_check(int) RETURNS boolean LANGUAGE sql AS
$$ SELECT true FROM (SELECT pg_catalog.pg_sleep(CASE WHEN EXISTS (SELECT FROM public.flag) THEN 0.5 ELSE 0 END)) s $$;
CREATE DOMAIN slow_int AS int CHECK (public.slow_check(VALUE));
CREATE TABLE a0 (id slow_int PRIMARY KEY, v text);
INSERT INTO a0 SELECT g, 'old ' || g FROM generate_series(1, 10) g;
SELECT redis_sync.write_through('a0', key_prefix => 'a0:');
};
for my $t (sort keys %prefix)
{
	(my $p = $prefix{$t}) =~ s/'/''/g;
	$sql .= "CREATE TABLE $t (id int PRIMARY KEY, v text);
INSERT INTO $t SELECT g, 'old ' || g FROM generate_series(1, 300) g;
SELECT redis_sync.write_through('$t', key_prefix => convert_from('\\x" . unpack('H*', $p) . "'::bytea, 'UTF8'));
";
}
$node->safe_psql('postgres', $sql);
is($redis->cli('HGET', "\xc3\xa9a:7", 'v'), 'old 7', 'the tables are cached');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');
my $changes = '';
for my $t ('a0', sort keys %prefix)
{
	$changes .= "UPDATE $t SET v = 'new ' || id WHERE id <= 5; DELETE FROM $t WHERE id = 6;\n";
}
$node->safe_psql('postgres', $changes . 'INSERT INTO public.flag VALUES (true)');
my $wpid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'redis_sync worker%' LIMIT 1});

my $offset = -s $node->logfile;
$redis->stop;
$redis->start;
ok(defined RedisSync::Compare::wait_for(sub {
			$node->safe_psql('postgres', "SELECT wait_event FROM pg_stat_activity WHERE pid = $wpid") eq 'PgSleep' }, 30),
	"the pass is in a0's part");
my $t0 = time;
$node->safe_psql('postgres', q{
DROP TABLE c_t;
SELECT redis_sync.unsync('b_t');
SELECT redis_sync.unsync('d_t');
SELECT redis_sync.write_through('d_t', key_prefix => 'd2:');
DELETE FROM public.flag;
});
my $ddl = time - $t0;
# a0's part had 4 s or more of sleeps left: the DDL (whose commit ends them) did not wait for it
cmp_ok($ddl, '<', 3, sprintf('the DDL did not wait for the pass (%.1f s)', $ddl));

# the restart's work ends: the stale keys are refreshed
my $ok = RedisSync::Compare::wait_for(sub {
		$redis->cli('HGET', 'a0:1', 'v') eq 'new 1' && $redis->cli('HGET', "\x7e:1", 'v') eq 'new 1' }, 60);
ok(defined $ok, 'the pass went on after the DDL');
sleep 5;
my $log = substr(slurp_file($node->logfile), $offset);
my @retries = $log =~ /the work after the Redis restart failed/g;
note(join("\n", grep { /redis_sync worker/ } split /\n/, $log));
unlike($log, qr/\(null\)/, 'no message names the dropped table "(null)"');
cmp_ok(scalar @retries, '<=', 1, 'the restart work was retried at most once (' . scalar(@retries) . ')');
for my $t ('a0', 'd_t', 'e_t', 'u1_t', 'u2_t', 'u3_t', 'u4_t')
{
	is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('$t')"), '0', "$t: cache == table");
}
for my $t ('e_t', 'u1_t', 'u2_t', 'u3_t', 'u4_t')
{
	my $p = $prefix{$t};
	is($redis->cli('HGET', "${p}1", 'v'), 'new 1', "$t: an updated row has its new value");
	is($redis->cli('EXISTS', "${p}6"), '0', "$t: a deleted row's key is gone");
}
is($redis->cli('HGET', 'b:1', 'v'), 'old 1',
	'b_t, unsynced during the pass, is not pushed after its unsync (its prefix is free for another table)');
is($redis->cli('HGET', 'd2:1', 'v'), 'new 1', 'd_t, synced again under d2:, is cached there')
  or diag($node->safe_psql('postgres', "SELECT * FROM redis_sync.verify('d_t') LIMIT 3; SELECT key_prefix, policy FROM redis_sync.tables WHERE relid = 'd_t'::regclass"),
	"\nd2 keys: ", $redis->cli('EVAL', "return #redis.call('KEYS', 'd2:*')", '0'),
	"\nd: keys: ", $redis->cli('EVAL', "return #redis.call('KEYS', 'd:*')", '0'),
	"\nb: keys: ", $redis->cli('EVAL', "return #redis.call('KEYS', 'b:*')", '0'), ' b:1 = ', $redis->cli('HGET', 'b:1', 'v'));
$offset = -s $node->logfile;
sleep 3;
ok(!$node->log_contains('restart', $offset), 'no restart work pending any more');

done_testing();
