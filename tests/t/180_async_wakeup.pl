# Async delivery is woken by the commit, not by the naptime: no wake-up is
# lost.  The worker's latch is also the one its Redis client waits on; a
# commit whose wake-up arrived while the worker waited for a Redis reply
# used to be consumed there, and when no later commit came (the end of a
# burst) its entries waited for the next naptime (about 1 s by default,
# the "max lag" of bench/ section 4).  With naptime at 1 hour, ten bursts
# of concurrent single-row UPDATEs from pgbench must each be delivered in
# full within 10 s of their end, and the cache must match the table.
# The same for bursts of one session, for a lone commit after a burst,
# and for commits made while the worker was paused (only the first commit
# after a delivery signals the worker, worker_signal.c: the later ones find
# the flag set and do not signal; resume wakes it).
# And for a commit whose signal arrives while the worker waits for a row
# lock in the write-behind drain: PostgreSQL's lock wait resets the
# worker's latch, so that signal is consumed; the worker must make it good
# after the round, or that commit and every later one (finding the flag
# set) wait for the naptime.
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
	# odd bursts from one session, even ones from two
	my $c = $b % 2 ? 1 : 2;
	$node->command_ok(
		[
			'pgbench', '-n', '-c', $c, '-j', $c, '-t', 600 / $c, '-f', $script,
			'-d', $node->connstr('postgres')
		],
		"burst $b ran ($c clients)");
	my $done = RedisSync::Compare::wait_outbox_empty($node, 10);
	$late++ unless defined $done;
	diag("burst $b: outbox not empty 10 s after its end: "
		  . RedisSync::Compare::outbox_depth($node) . ' entries left')
	  unless defined $done;
}
is($late, 0, "every burst delivered within 10 s of its end (naptime 1 h)");
$t->wait_cache_matches($redis, name => 'cache matches the table after the bursts');

# a lone commit after the bursts: the worker listens again
$node->safe_psql('postgres', 'UPDATE w SET v = -1 WHERE id = 7');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HGET', 'w:7', 'v') eq '-1' }, 10),
	'a lone commit after the bursts is delivered (naptime 1 h)');

# commits while paused: no signal reaches the worker; resume delivers them
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', 'worker paused');
$node->safe_psql('postgres', "UPDATE w SET v = -2 WHERE id = $_") for 1 .. 5;
is(RedisSync::Compare::outbox_depth($node), '5', 'the paused worker delivered nothing');
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
ok(defined RedisSync::Compare::wait_outbox_empty($node, 10), 'resumed: delivered within 10 s');
$t->wait_cache_matches($redis, name => 'cache matches the table after the pause');

# and a commit after that is delivered on its own
$node->safe_psql('postgres', 'UPDATE w SET v = -3 WHERE id = 9');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HGET', 'w:9', 'v') eq '-3' }, 10),
	'a commit after the resume is delivered');

# a commit signalled while the worker waits for a row lock (the drain's)
$node->safe_psql('postgres', q{
CREATE TABLE wb (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO wb VALUES (1, 0);
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', counters => '{n}', flush_interval => '1 h');
SELECT redis_sync.hincrby('wb', '1', 'n', 1);
});
my $x = RedisSync::Test::session($node);
is($x->query('BEGIN; SELECT id FROM wb WHERE id = 1 FOR UPDATE')->{err}, '', 'a session holds the row lock');
# ask for a drain; the flush() gives up after 1 s, the worker keeps waiting
$node->psql('postgres', "SET statement_timeout = '1s'; SELECT redis_sync.flush('wb')");
ok(defined RedisSync::Compare::wait_for(sub {
	$node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
		WHERE application_name = 'redis_sync worker' AND wait_event_type = 'Lock'}) eq '1' }, 30),
	'the worker waits for the row lock');
$node->safe_psql('postgres', 'UPDATE w SET v = -4 WHERE id = 11');
is($x->query('COMMIT')->{err}, '', 'the lock is released');
$x->quit;
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HGET', 'w:11', 'v') eq '-4' }, 10),
	'the commit made during the lock wait is delivered (naptime 1 h)');
$node->safe_psql('postgres', 'UPDATE w SET v = -5 WHERE id = 12');
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HGET', 'w:12', 'v') eq '-5' }, 10),
	'and so is the next commit');
is($node->safe_psql('postgres', q{SELECT n FROM wb WHERE id = 1}), '1', 'the drain applied its key');

done_testing();
