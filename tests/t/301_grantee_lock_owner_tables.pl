# A role allowed to lock one of alice's write-behind tables (UPDATE on t1)
# holds a row lock past drain_timeout: t1's drain is cancelled and waits
# ten times the timeout, and alice's other table t2 must still drain at
# once.  When every timeout held the whole owner, t1 ran again as the hold
# ended, timed out again and held alice again: t2 never drained (60 s).
# Only code that goes on after the cancel holds its owner's other tables
# (TAP 299).  (From an adversarial review.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::OwnerCode;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time sleep);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('grantee_holds', redis => $redis,
	extra_conf => "redis_sync.drain_timeout = '1s'\n");
my $sql = q{
CREATE ROLE alice; CREATE ROLE mallory;
};
for my $t (qw(t1 t2))
{
	$sql .= qq{
CREATE TABLE $t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO $t VALUES (1, 0);
ALTER TABLE $t OWNER TO alice;
SELECT redis_sync.write_behind('$t', key_prefix => '$t:', dirty_set => '$t-dirty', flush_interval => '100 ms');
};
}
$sql .= "GRANT SELECT, UPDATE ON t1 TO mallory;\n";
$node->safe_psql('postgres', $sql);
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');

sub lat2
{
	my ($v) = @_;
	$redis->cli('HSET', 't2:1', 'n', $v);
	$redis->cli('SADD', 't2-dirty', '1');
	my $t0 = time;
	while (time - $t0 < 60)
	{
		return time - $t0 if $node->safe_psql('postgres', 'SELECT n FROM t2') eq $v;
		sleep 0.05;
	}
	return 999;
}
note(sprintf('t2 latency before: %.2f s', lat2(1)));

my $m = RedisSync::Test::session($node);
$m->query('SET ROLE mallory');
my $r = $m->query('BEGIN; SELECT n FROM t1 WHERE id = 1 FOR UPDATE');
is($r->{err}, '', 'mallory locks t1\'s row');
$redis->cli('HSET', 't1:1', 'n', 5);
$redis->cli('SADD', 't1-dirty', '1');
sleep 2;
my @l;
my $t0 = time;
my $v = 100;
while (time - $t0 < 20) { push @l, lat2(++$v); sleep 0.5; }
my $max = 0; $max = $_ > $max ? $_ : $max for @l;
note(sprintf('t2 latencies while mallory holds t1 row lock: %s', join(' ', map { sprintf '%.1f', $_ } @l)));
my $held = () = slurp_file($node->logfile) =~ /code of role "alice" is not run until/g;
is($held, 0, 'alice\'s code is not held for a lock another role holds');
ok($max < 3, "alice's other table t2 drains promptly (max $max s)");
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('SISMEMBER', 't1-dirty', '1') eq '1' || $node->safe_psql('postgres', 'SELECT n FROM t1') eq '0' }, 5),
	't1\'s change waits, queued');
$m->query('ROLLBACK');
$m->quit;
ok(defined RedisSync::Compare::wait_for(sub { $node->safe_psql('postgres', 'SELECT n FROM t1') eq '5' }, 60),
	'once the lock is gone t1\'s change lands');
done_testing();
