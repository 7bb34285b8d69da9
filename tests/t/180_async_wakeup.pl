# Async delivery is woken by the commit, not by the naptime: no wake-up is
# lost.  The worker's latch is also the one its Redis client waits on; a
# commit whose wake-up arrived while the worker waited for a Redis reply
# used to be consumed there, and when no later commit came (the end of a
# burst) its entries waited for the next naptime (about 1 s by default,
# the "max lag" of bench/ section 4).  With naptime at 1 hour, ten bursts
# of concurrent single-row UPDATEs from pgbench must each be delivered in
# full within 10 s of their end, and the cache must match the table.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;

my $BURSTS = 10;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('asyncwake', redis => $redis,
	extra_conf => "redis_sync.naptime = '1h'\n");

my $t = RedisSync::Synced::synced_table($node, 'w', columns => 'id int PRIMARY KEY, v int',
	with => "delivery => 'async'", fill => 'SELECT g, 0 FROM generate_series(1, 100) g');
ok(defined RedisSync::Compare::wait_outbox_empty($node, 30),
	'initial rows delivered');

my $script = PostgreSQL::Test::Utils::tempdir() . '/u.sql';
open my $fh, '>', $script or die;
print $fh "\\set id random(1, 100)\nUPDATE w SET v = v + 1 WHERE id = :id;\n";
close $fh;

my $late = 0;
for my $b (1 .. $BURSTS)
{
	$node->command_ok(
		[
			'pgbench', '-n', '-c', '2', '-j', '2', '-t', '300', '-f', $script,
			'-d', $node->connstr('postgres')
		],
		"burst $b ran");
	my $done = RedisSync::Compare::wait_outbox_empty($node, 10);
	$late++ unless defined $done;
	diag("burst $b: outbox not empty 10 s after its end: "
		  . RedisSync::Compare::outbox_depth($node) . ' entries left')
	  unless defined $done;
}
is($late, 0, "every burst delivered within 10 s of its end (naptime 1 h)");
$t->wait_cache_matches($redis, name => 'cache matches the table after the bursts');

done_testing();
