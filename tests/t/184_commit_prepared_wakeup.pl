# COMMIT PREPARED wakes the worker: async entries of a prepared transaction
# are delivered when it commits, not at the next naptime.  The commit
# callback that wakes the worker runs in the session that prepared (at
# PREPARE, when nothing is visible yet); COMMIT PREPARED, often run by
# another session or a transaction manager, used to leave the entries to
# the naptime (1 hour here).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('commitprep', redis => $redis,
	extra_conf => "redis_sync.naptime = '1h'\nmax_prepared_transactions = 5\n");

sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE a (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('a', key_prefix => 'a:', delivery => 'async', warm => false);
});
ok(defined RedisSync::Compare::wait_outbox_empty($node, 30),
	'outbox empty');

for my $i (1 .. 3)
{
	sq(qq{BEGIN; INSERT INTO a VALUES ($i, 'prepared $i'); PREPARE TRANSACTION 'p$i';});
	is($redis->cli('EXISTS', "a:$i"), '0', "prepared $i: nothing in Redis yet");
	sq(qq{COMMIT PREPARED 'p$i'});
	ok(defined RedisSync::Compare::wait_for(
			sub { $redis->cli('HGET', "a:$i", 'v') eq "prepared $i" }, 10),
		"committed $i: delivered within 10 s (naptime 1 h)");
}

# COMMIT PREPARED signals as a commit does, at most once per delivery: while
# the worker is paused the signal stays due, and the resume delivers every
# entry committed meanwhile; a COMMIT PREPARED after that signals again
is(sq('SELECT redis_sync.worker_pause()'), 't', 'worker paused');
for my $i (4 .. 6)
{
	sq(qq{BEGIN; INSERT INTO a VALUES ($i, 'prepared $i'); PREPARE TRANSACTION 'p$i';});
	sq(qq{COMMIT PREPARED 'p$i'});
}
is(RedisSync::Compare::outbox_depth($node), '3', 'paused: the three committed entries wait');
sq('SELECT redis_sync.worker_resume()');
ok(defined RedisSync::Compare::wait_outbox_empty($node, 10),
	'resumed: delivered within 10 s (naptime 1 h)');
is($redis->cli('HGET', 'a:6', 'v'), 'prepared 6', 'the last of them is in Redis');
sq(q{BEGIN; INSERT INTO a VALUES (7, 'prepared 7'); PREPARE TRANSACTION 'p7';});
sq(q{COMMIT PREPARED 'p7'});
ok(defined RedisSync::Compare::wait_for(
		sub { $redis->cli('HGET', 'a:7', 'v') eq 'prepared 7' }, 10),
	'a COMMIT PREPARED after the resume is delivered within 10 s');

# ROLLBACK PREPARED queues nothing
sq(q{BEGIN; INSERT INTO a VALUES (9, 'never'); PREPARE TRANSACTION 'p9';});
sq(q{ROLLBACK PREPARED 'p9'});
is(RedisSync::Compare::outbox_depth($node), 0, 'rolled back: nothing queued');
is($redis->cli('EXISTS', 'a:9'), '0', 'rolled back: nothing in Redis');

done_testing();
