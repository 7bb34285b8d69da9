# The abort repair of a strict transaction while Redis stays over its
# maxmemory (noeviction).  TAP 380 could not hold Redis there: a chunk's
# own bytes count against maxmemory while Redis reads it, so a chunk is
# refused before its data can take Redis over.  Here a subscriber that
# never reads holds keyspace notifications in its output buffer, which
# counts as used memory: each chunk Redis takes adds far more than its
# own bytes, so the chunks taken leave Redis over maxmemory, the next
# chunk is refused, and the abort's repair runs while Redis is still over.
#
# Redis refuses a script for memory only at its first write, and only if
# that write may need memory.  The exact repair of more keys than one call
# takes (redis_sync.chunk_size) restores images with HSET from its first
# key on: every key of every call was refused, one after the other, and
# kept the rolled-back values until Redis had memory and the worker
# repaired them from the markers (helper-113).  Each call of it now starts
# with an HDEL (which needs no memory), as the one-call repair does with
# its marker clears, and Redis runs the rest.
#
# The large repair (more than 1,000 keys, no images kept) deletes the keys
# of the chunks Redis took: a delete's first write is its UNLINK, so it
# lands while Redis is over maxmemory, as TAP 380 says and could not show.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node = RedisSync::Test::new_node('oom_abort_held', redis => $redis,
	extra_conf => "redis_sync.marker_sweep_interval = '500ms'");
# big: more keys than the abort repairs exactly (1,000); mid: fewer
my %rows = (big => 1200, mid => 900);
for my $t (sort keys %rows)
{
	$node->safe_psql('postgres', qq{
CREATE TABLE $t (id int PRIMARY KEY, v int, pad text);
INSERT INTO $t SELECT g, 1, 'small' FROM generate_series(1, $rows{$t}) g;
SELECT redis_sync.write_through('$t', key_prefix => '$t:', consistency => 'strict', warm => false);
SELECT redis_sync.warm('$t');
});
}

sub memory
{
	my $info = $redis->cli('INFO', 'memory');
	my ($used) = $info =~ /used_memory:(\d+)/;
	my ($max)  = $info =~ /maxmemory:(\d+)/;
	return ($used, $max);
}

# keys of table $t holding the rolled-back value, and keys missing
sub cache_state
{
	my ($t) = @_;
	return RedisSync::Compare::field_counts($redis, $t, $rows{$t}, 'v', '2');
}

# A subscriber that never reads: every keyspace notification, once its
# socket buffers are full, waits in its output buffer in Redis (used
# memory), eight pattern messages per write.  Filled first through a
# channel of its own until Redis holds output for it.
sub stalled_subscriber
{
	my $s = $redis->resp;
	setsockopt($s->sock, SOL_SOCKET, SO_RCVBUF, 4096);
	$s->cmd('CLIENT', 'SETNAME', 'stalled');
	$s->send('PSUBSCRIBE', '*', '_*', '__*', '__k*', '__ke*', '__key*', '__keys*', '__key??*');
	$s->send('SUBSCRIBE', 'fill');
	my $chunk = 'x' x 65536;
	my $ok = RedisSync::Compare::wait_for(
		sub {
			my ($line) = grep { /name=stalled/ } split /\n/, $redis->cli('CLIENT', 'LIST');
			return 1 if defined $line && $line =~ /omem=(\d+)/ && $1 > 0;
			$redis->cli('PUBLISH', 'fill', $chunk);
			return 0;
		},
		60, 0);
	ok(defined $ok, 'the stalled subscriber holds output in Redis');
	return $s;
}

$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
$redis->cli('CONFIG', 'SET', 'client-output-buffer-limit', 'pubsub 0 0 0');
for my $case ([ 'mid', 'on' ], [ 'mid', 'off' ], [ 'big', 'on' ])
{
	my ($t, $bulk_multi) = @$case;
	my $rows = $rows{$t};
	my $name = "$t, bulk_multi $bulk_multi";
	is($node->safe_psql('postgres', qq{SELECT count(*) FROM redis_sync.verify('$t')}), '0', "$name: cached");

	$redis->cli('CONFIG', 'SET', 'notify-keyspace-events', 'KEA');
	my $sub = stalled_subscriber();

	# chunks of 100: the margin grows until Redis takes at least two chunks
	# (the exact repair then needs more than one call) and refuses one
	my ($out, $err, $used, $max, $taken) = ('', '');
	for (my $margin = 100_000; $margin <= 20_000_000; $margin += 100_000)
	{
		$redis->cli('CONFIG', 'SET', 'maxmemory', (memory())[0] + $margin);
		(undef, $out, $err) = $node->psql('postgres',
			"SET redis_sync.chunk_size = 100; SET redis_sync.bulk_multi = $bulk_multi;\n"
			  . "SELECT repaired AS r0 FROM redis_sync.session_stats() \\gset\n"
			  . "UPDATE $t SET v = 2;\n"
			  . "SELECT repaired - :r0 FROM redis_sync.session_stats();",
			on_error_stop => 0);
		($used, $max) = memory();
		# the keys of the chunks Redis took: those the abort repaired, or
		# (before) could not restore
		$taken =
		    $out =~ /^\d+$/ && $out > 0 ? $out
		  : $err =~ /could not restore (\d+) Redis keys/ ? $1
		  :                                                0;
		last if $err =~ /ERROR/ && $taken >= 200;
		$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
		next if $err =~ /ERROR/;
		# the margin let the whole push through: back to the start
		$node->safe_psql('postgres', qq{UPDATE $t SET v = 1});
	}
	like($err, qr/could not push changes to Redis.*OOM/s, "$name: the strict UPDATE is refused for memory");
	ok($used > $max, "$name: Redis is still over maxmemory after the abort ($used > $max)");
	unlike($err, qr/could not restore/, "$name: the abort's repair was not refused");
	my ($rolled, $missing) = cache_state($t);
	is($rolled, 0, "$name: at the rollback, no key shows the rolled-back value");
	if ($t eq 'mid')
	{
		is($missing, 0, "$name: at the rollback, no key is missing (restored from images)");
	}
	else
	{
		# the keys of the chunks Redis took, deleted; the others untouched
		is($missing, $out, "$name: at the rollback, the keys Redis took are deleted");
	}
	ok($out >= 200 && $out % 100 == 0 && $out < $rows,
		"$name: the abort repaired the keys of the chunks Redis took ($out)");

	# the subscriber goes, and its output buffer with it
	$sub->sock->close;
	$redis->cli('CONFIG', 'SET', 'notify-keyspace-events', '');
	$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
	RedisSync::Compare::wait_for(sub { ($rolled, $missing) = cache_state($t); $rolled == 0 && $missing == 0 },
		60, 0.2);
	is($rolled,  0, "$name: no key has the rolled-back value once Redis has memory");
	is($missing, 0, "$name: no key stays missing");
	is($node->safe_psql('postgres', qq{SELECT count(*) FROM redis_sync.verify('$t')}), '0',
		"$name: cache == table");
}

$node->stop;
$redis->stop;
done_testing();
