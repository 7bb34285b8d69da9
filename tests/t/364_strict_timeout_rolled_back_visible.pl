# A strict transaction whose push times out (Redis stalled by DEBUG SLEEP,
# longer than redis_sync.command_timeout) is rolled back, but its push is
# already in Redis's input buffer: when Redis wakes it runs it before the
# CLIENT KILL and the repair sent after the timeout.  A reader that asks
# Redis after the UPDATE returned its error gets the value of the
# rolled-back transaction, which the table never held, until the repair
# lands.  README (guarantee 1, strict) said only committed data reaches
# Redis and a failed strict commit rolls back; it now says what a reader
# sees meanwhile.  This test shows the window (a TODO: it cannot be closed
# from the client side) and asserts the bound README gives for the repair.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::redis_object(extra => [ '--enable-debug-command', 'yes' ]);
$redis->start;
my $node = RedisSync::Test::new_node(
	'strict_sleep',
	redis      => $redis,
	extra_conf => "redis_sync.command_timeout = '500ms'\n"
	  . "redis_sync.marker_sweep_interval = '1s'\n");

$node->safe_psql('postgres', q{
	CREATE TABLE s (id int PRIMARY KEY, v int);
	SELECT redis_sync.write_through('s', key_prefix => 's:', consistency => 'strict');
	INSERT INTO s VALUES (1, 0);
});
is($redis->cli('HGET', 's:1', 'v'), '0', 'row cached');

my $sess = RedisSync::Test::session($node);
$sess->query('SELECT count(*) FROM redis_sync.verify(\'s\')');   # connected

# DEBUG SLEEP in the background; the strict UPDATE is the probe that the
# sleep runs (its push times out).  When it came first, try again.
my ($res, $seen, $t_err);
for my $try (1 .. 20)
{
	my $v = 100 + $try;
	# on the wire before the UPDATE is sent: Redis, idle, runs it first
	my $c = $redis->resp;
	$c->send('DEBUG', 'SLEEP', '2');
	$res = $sess->query("UPDATE s SET v = $v WHERE id = 1");
	if ($res->{err} !~ /did not answer/)
	{
		$c->read;
		# it committed: the cache has it; put the row back
		$sess->query('UPDATE s SET v = 0 WHERE id = 1');
		next;
	}
	$t_err = time;
	# a reader after the error returned: redis-cli waits for Redis to wake
	$seen = $redis->cli('HGET', 's:1', 'v');
	$c->read;
	last;
}
ok(defined $seen, 'a strict UPDATE timed out while Redis slept');
like($res->{err}, qr/rolled back/, 'the strict UPDATE was rolled back');
is($node->safe_psql('postgres', 'SELECT v FROM s WHERE id = 1'), '0',
	'the table still holds 0');

TODO:
{
	local $TODO = 'a push already in Redis\'s input buffer runs when Redis wakes (README, strict)';
	is($seen, '0', 'a read after the rolled-back UPDATE returned sees the committed value');
}
note("read after the error: '$seen'");

my $secs = RedisSync::Compare::wait_for(
	sub { $redis->cli('HGET', 's:1', 'v') =~ /^0?$/ }, 30);
ok(defined $secs, 'the rolled-back value is repaired (or removed)');
cmp_ok(time - $t_err, '<', 10,
	'repaired within the bound README gives (marker_sweep_interval and the retry)');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('s')"), '0',
	'verify() finds nothing');

$sess->quit;
done_testing();
