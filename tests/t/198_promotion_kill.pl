# Bulk pushes go as MULTI/EXEC without the apply script's version check
# (fence_multi.c); killfence.c makes that safe.  After a promotion, the old
# primary may still have an unfenced push on its way to Redis (cut off from
# the standby, not from Redis): the script would have refused it by its
# older timeline.  So the promoted server, before its first exchange with
# Redis, kills every connection of the same system on an older timeline,
# and raises redis_sync:timeline:<system id>; a server that reads a newer
# timeline there at its connection's handshake pushes through the script
# only.  (A crash restart of the same server: tests/t/197_bulk_multi_kill.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis   = RedisSync::Test::start_redis();
my $primary = RedisSync::Test::new_node('primary', redis => $redis,
	extra_conf => "wal_level = replica\nmax_wal_senders = 4\n");
$primary->safe_psql('postgres', q{
	CREATE TABLE t (id int PRIMARY KEY, v int);
	INSERT INTO t SELECT g, g FROM generate_series(1, 100) g;
	SELECT redis_sync.write_through('t', key_prefix => 't:');
});
my $sysid = $primary->safe_psql('postgres',
	q{SELECT to_hex(system_identifier) FROM pg_control_system()});

my $cmdstat = sub {
	my ($name) = @_;
	my ($calls) = $redis->cli('INFO', 'commandstats') =~ /cmdstat_$name:calls=(\d+)/;
	return $calls // 0;
};
# the ids of the connections named by this system on timeline $tli
my $conns = sub {
	my ($tli) = @_;
	my @ids;
	for my $line (split /\n/, $redis->cli('CLIENT', 'LIST', 'TYPE', 'normal'))
	{
		push @ids, $1 if $line =~ /^id=(\d+) .* name=redis_sync:\d+:$sysid:$tli:/;
	}
	return join(',', sort { $a <=> $b } @ids);
};

# a session of the primary that keeps its connection (named on timeline 1)
my $old = RedisSync::Test::session($primary);
my $x0  = $cmdstat->('exec');
is($old->query('UPDATE t SET v = v + 1')->{err}, '', 'a bulk UPDATE on the primary');
cmp_ok($cmdstat->('exec'), '>', $x0, 'it went as MULTI/EXEC');
isnt($conns->(1), '', 'the primary has connections named on timeline 1');

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);
is($redis->cli('GET', "redis_sync:timeline:$sysid"), '1', 'the primary raised the timeline key to 1');

# promote the standby while the primary still runs (it lost its role without
# knowing): the promoted server's first exchange kills timeline 1's connections
my $before = $conns->(1);
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die 'promotion did not finish';
is($standby->safe_psql('postgres', 'UPDATE t SET v = v + 1000 WHERE id <= 50'), '',
	'a bulk UPDATE on the promoted server');
is($redis->cli('GET', "redis_sync:timeline:$sysid"), '2', 'the timeline key is 2');
my %left = map { $_ => 1 } split /,/, $conns->(1);
is(scalar(grep { $left{$_} } split /,/, $before), 0,
	'every connection of timeline 1 open before the promotion was killed');
is($redis->cli('HGET', 't:1', 'v'), '1002', 'the promoted server wrote t:1');

# the old primary comes back to Redis: its new connection reads timeline 2,
# so its bulk push goes through the script (whose older versions lose)
my $e0 = $cmdstat->('evalsha') + $cmdstat->('eval');
$x0 = $cmdstat->('exec');
my $r = $old->query('UPDATE t SET v = v + 1');
is($r->{err}, '', 'the old primary runs its UPDATE');
is($cmdstat->('exec'), $x0, 'the old primary no longer pushes as MULTI/EXEC');
cmp_ok($cmdstat->('evalsha') + $cmdstat->('eval'), '>', $e0, 'it pushes through the apply script');
is($redis->cli('HGET', 't:1', 'v'), '1002',
	'its older-timeline write of t:1 lost to the promoted server');
$old->quit;
$primary->stop('immediate');

$standby->stop;
done_testing();
