# After a Redis restart the worker refreshes the cached keys of every
# write-through and invalidate table in one SCAN pass of Redis, and fills
# the tables only after that pass (worker.c rewarm_all, keys_sql.c
# rs_refresh_cached_keys).
#
# Before, each table was refreshed by a SCAN pass of its own, right before
# its fill: a pass visits the whole keyspace, so a restart from an RDB
# scanned Redis once per table, and a restart empty scanned, for each
# table, the keys the fills of the tables before it had written (100 tables
# of 1,000 rows: 20,000 and 9,905 SCAN pages, 13 s and 5 s of Redis time).
#
# The one pass hands each key to the table whose prefix it starts with:
# prefixes that sort next to one another ('a:' and 'ab:'), share a
# beginning ('p:1:', 'p:2:'), or hold glob characters ('g*[x]:') must each
# get their own keys and no others.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(sleep time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('refresh_one_pass', redis => $redis);

my @prefixes = ('a:', 'ab:', 'p:1:', 'p:2:', 'g*[x]:', 'z:');
my @tables   = map { "t$_" } 1 .. scalar @prefixes;
my $sql      = '';
for my $i (0 .. $#prefixes)
{
	(my $p = $prefixes[$i]) =~ s/'/''/g;
	$sql .= "CREATE TABLE $tables[$i] (id int PRIMARY KEY, v text);
INSERT INTO $tables[$i] SELECT g, 'old ' || g FROM generate_series(1, 50) g;
SELECT redis_sync.write_through('$tables[$i]', key_prefix => '$p', warm => false);
SELECT redis_sync.warm('$tables[$i]');
";
}
$node->safe_psql('postgres', $sql . q{
CREATE TABLE inv (id int PRIMARY KEY, v text);
INSERT INTO inv VALUES (1, 'old');
SELECT redis_sync.invalidate('inv', key_prefix => 'inv:');
SELECT redis_sync.get(NULL::inv, '1');
});
# keys of another application, a key under a prefix no row can have, a set
$redis->cli('EVAL', "for i = 1, 5000 do redis.call('SET', 'other:' .. i, 'x') end", '0');
$redis->cli('SET', 'a:not-an-int', 'left alone');
$redis->cli('SADD', 'ab:dirty', 'a set under a prefix');
is($redis->cli('HGET', 'g*[x]:1', 'v'), 'old 1', 'the tables are cached');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');

# after the snapshot, in every table: updates, deletes, an insert
my $changes = '';
for my $t (@tables)
{
	$changes .= "UPDATE $t SET v = 'new ' || id WHERE id <= 10;
DELETE FROM $t WHERE id > 40;
INSERT INTO $t VALUES (100, 'after the snapshot');
";
}
$node->safe_psql('postgres', $changes . q{UPDATE inv SET v = 'new'; SELECT redis_sync.get(NULL::inv, '1');});
is($redis->cli('HGET', 'p:2:1', 'v'), 'new 1', 'the updates reached Redis');

# restart Redis (paused, the worker sees the restarted Redis only once
# resumed); wait until every table is refreshed and re-warmed
sub restart_and_wait
{
	my ($what) = @_;
	my $offset = -s $node->logfile;
	is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', "$what: worker paused");
	$redis->stop;
	$redis->start;
	my $pass = $redis->scan_pass_pages();
	$redis->cli('CONFIG', 'RESETSTAT');
	$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
	my $n = scalar @tables;
	my $done = RedisSync::Compare::wait_for(
		sub {
			my $log = substr(slurp_file($node->logfile), $offset);
			my @w = $log =~ /re-warmed \d+ keys of table/g;
			return scalar(@w) >= $n;
		},
		60);
	ok(defined $done, "$what: the $n write-through tables are re-warmed");
	return ($pass, $redis->cmd_calls('scan'), substr(slurp_file($node->logfile), $offset),
		$redis->cmd_calls('type'));
}

# 1. from the snapshot: the snapshot's keys are pushed again, in one pass
my ($pass, $calls, $log, $types) = restart_and_wait('restart from the snapshot');
cmp_ok($pass, '>=', 6, "one pass of the restarted Redis is $pass SCAN pages");
ok($calls <= $pass + 1, "the refresh made $calls SCAN calls, one pass ($pass)");
# the prefixes share no beginning: the pattern is the class of their first
# bytes ([\a\p\g\z\i]*), so the 5,000 'other:' keys (and the version keys)
# are not typed by the scan script (6 x 50 rows, the invalidate table's key,
# the two odd keys: about 300 TYPE calls; 5,300 with a pattern of every key)
cmp_ok($types, '<', 1000, "the scan script typed $types keys, none of the other application's");
for my $i (0 .. $#tables)
{
	my $t = $tables[$i];
	my $p = $prefixes[$i];
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM redis_sync.verify('$t') WHERE key <> 'a:not-an-int'"), '0',
		"$t ($p): cache == table");
	is($redis->cli('HGET', "${p}1", 'v'), 'new 1', "$t: an updated row has its new value");
	is($redis->cli('EXISTS', "${p}45"), '0', "$t: a deleted row's key is gone");
	is($redis->cli('HGET', "${p}100", 'v'), 'after the snapshot', "$t: an inserted row is filled");
}
my @refreshed = $log =~ /refreshed (\d+) cached keys of table/g;
is(scalar @refreshed, scalar @tables + 1, 'each table and the invalidate table is refreshed once');
ok(!grep({ $_ != 50 && $_ != 1 } @refreshed),
	'each table refreshed exactly the keys the snapshot held of it (' . join(',', @refreshed) . ')');
is($redis->cli('HGET', 'inv:1', 'v'), 'new', 'invalidate: the cached key holds the row again');
is($redis->cli('GET', 'a:not-an-int'), 'left alone', 'a key no row can have is left alone');
is($redis->cli('SCARD', 'ab:dirty'), '1', 'the set under a prefix stays');
is($redis->cli('EVAL', "return #redis.call('KEYS', 'other:*')", '0'), '5000',
	"the other application's keys stay");

# 2. restarted empty: the refresh pass comes before any fill, and scans an
# empty Redis (per table, each pass scanned the keys filled before it)
$redis->cli('FLUSHALL');
is($redis->cli('SAVE'), 'OK', 'an empty snapshot');
($pass, $calls, $log) = restart_and_wait('restart empty');
is($pass, 1, 'the restarted Redis is empty');
ok($calls <= 2, "the refresh made $calls SCAN calls, over the empty Redis");
for my $t (@tables)
{
	is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('$t')"), '0',
		"$t: re-warmed, cache == table");
}

done_testing();
