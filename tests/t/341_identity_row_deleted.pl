# redis_sync._identity holds the timeline base of this database's versions
# (src/identity.c; above 0 once the database was pg_upgrade'd from a
# promoted cluster).  A superuser who deletes its row must not send the
# versions back below what Redis holds: a backend without a row used base
# 0, and every fenced write of the table (async delivery here) was refused
# as older, the cache stale for good.  Now it uses the cluster's floor
# (redis_sync.timeline_base in the data directory, raised to every base a
# backend used), and the worker writes the row again with it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('identity_deleted', redis_url => $redis->url);

sub sq { return $node->safe_psql('postgres', $_[0]); }

# the timeline part of the version key of t:1, as a number
sub timeline_part
{
	my $v = $redis->cli('GET', '{t:1}:rs_version');
	return hex(substr($v, 0, 8));
}

sq(q{
	CREATE TABLE t (id int PRIMARY KEY, v int);
	INSERT INTO t VALUES (1, 0);
	SELECT redis_sync.write_through('t', key_prefix => 't:', delivery => 'async');
	UPDATE redis_sync._identity SET timeline_base = 5;
});
# a new session reads the row: base 5, timeline 1
sq(q{UPDATE t SET v = 1; SELECT redis_sync.flush('t')});
is(timeline_part(), 6, 'versions carry the base of the row (5 + timeline 1)');
is($redis->cli('HGET', 't:1', 'v'), '1', 'the write is cached');

sq(q{DELETE FROM redis_sync._identity});
sq(q{UPDATE t SET v = 2; SELECT redis_sync.flush('t')});
is($redis->cli('HGET', 't:1', 'v'), '2',
	'without the row, a new session\'s write is not refused as older (it kept the old value)');
is(timeline_part(), 6, '  ... its versions keep the base (the floor)');
is(sq(q{SELECT count(*) FROM redis_sync.verify('t')}), '0', 'verify: the cache equals the table');

# a new worker writes the row again, with the floor's base
sq(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'redis_sync worker'});
$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM redis_sync._identity})
  or die 'the worker did not write the row again';
is(sq(q{SELECT timeline_base FROM redis_sync._identity}), '5', 'the worker wrote the row again with base 5');
sq(q{UPDATE t SET v = 3; SELECT redis_sync.flush('t')});
is($redis->cli('HGET', 't:1', 'v'), '3', 'writes go on');
is(timeline_part(), 6, '  ... with the same base');

done_testing();
