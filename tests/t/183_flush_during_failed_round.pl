# A flush() asked for while the worker is in a round that then fails is
# not answered by that round's failure.  The worker used to mark whatever
# flush() generation was pending when a round failed as done: a flush()
# of a write-behind table that arrived while an unrelated outbox delivery
# was timing out got "could not reach Redis" (or 0 rows) although Redis
# answered again and nothing had tried to drain it.  Now a failed round
# answers only the flush() that was pending when it began; this one is
# drained by the next round.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use IPC::Run ();

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('flushfail', redis => $redis,
	extra_conf => "redis_sync.naptime = '1h'\nredis_sync.command_timeout = '1s'\n");

sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE a (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('a', key_prefix => 'a:', delivery => 'async', warm => false);
CREATE TABLE wb (id int PRIMARY KEY, v text);
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', flush_interval => '1 h', columns => '{v}');
});
ok(defined RedisSync::Compare::wait_outbox_empty($node, 30),
	'outbox empty');

# a dirty write-behind key, then Redis refuses writes for 1.8 s: the
# worker's delivery of a's commit waits and times out (command_timeout 1 s)
$redis->cli('HSET', 'wb:1', 'v', 'drained');
$redis->cli('SADD', 'wb:dirty', '1');
is($redis->cli('CLIENT', 'PAUSE', '1800', 'WRITE'), 'OK', 'Redis pauses writes');
sq(q{INSERT INTO a VALUES (1, 'x')});
ok(defined RedisSync::Compare::wait_for(sub {
			sq(q{SELECT count(*) FROM pg_stat_activity
			      WHERE backend_type = 'redis_sync worker'
			        AND query = 'redis_sync: delivering the outbox'
			        AND wait_event_type = 'Extension'}) eq '1' }, 10),
	'the worker waits on its delivery');

# flush() while that round is still waiting: it must drain wb, not inherit
# the round's failure
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT redis_sync.flush('wb')});
is($ret, 0, 'flush() succeeded') or diag("stderr: $err");
is($out, '1', 'flush() drained the dirty key');
unlike($err, qr/could not|could not be drained/, 'no failure reported');
is(sq(q{SELECT v FROM wb WHERE id = 1}), 'drained', 'the row is in the table');

# the delivery that timed out is retried and lands
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HGET', 'a:1', 'v') eq 'x' }, 30),
	'the async change is delivered after the pause');

done_testing();
