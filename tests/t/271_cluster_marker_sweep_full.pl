# Redis Cluster: the worker's full sweep of in-flight markers (every 12th
# sweep, and the first) finds the marker hash of every slot, not only each
# master's lowest slot, and leaves the markers set aside for an operator
# (<marker key>:failed) alone.  The full sweep was a SCAN of every master,
# a pass over the whole keyspace every minute; it now asks, by EXISTS
# routed by slot, whether the marker hash of each slot exists
# (marker_sweep.c).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use RedisSync::Compare;
use Test::More;

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 0);
my $node = RedisSync::Test::new_node('clsweep', redis_url => $c->url,
	extra_conf => "redis_sync.marker_sweep_interval = '200ms'\n");
sub sq  { return $node->safe_psql('postgres', $_[0]); }
sub cli { return $c->cli($c->any_port, @_); }

sq(q{
CREATE TABLE ti (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('ti', key_prefix => 'ti:');
INSERT INTO ti VALUES (1, 'one'), (2, 'two');
});
my $ti = sq(q{SELECT 'ti'::regclass::oid});
my $base = sq("SELECT 'redis_sync:inflight:' || system_identifier || ':' || "
	  . "(SELECT oid FROM pg_database WHERE datname = 'postgres') FROM pg_control_system()");

# the marker hash of the slot of "0", whose tag is "0" (the smallest
# decimal string of that slot), and which is no master's lowest slot: only
# the full sweep looks at it
my $slot = cli('CLUSTER', 'KEYSLOT', '0');
my $mkey = "$base:{0}";
# redis-cli --cluster create gives three masters slots from 0, 5461, 10923
ok(!grep({ $_ == $slot } 0, 5461, 10923), "the marker hash $mkey is in slot $slot, no master's lowest");

# a marker set aside for an operator, and a live marker of a transaction of
# an earlier server incarnation (did not commit: its rows are repaired)
cli('HSET', "$mkey:failed", '5:1:0:0', 'this is not json');
cli('HSET', 'ti:1', 'v', 'stale');
cli('HSET', $mkey, '6:1:0:0', qq{[[$ti,"1"]]});
ok(defined RedisSync::Compare::wait_for(sub { cli('HLEN', $mkey) eq '0' }, 30),
	'the full sweep found the marker hash of the slot and removed the marker');
is(cli('HGET', 'ti:1', 'v'), 'one', 'the marker\'s row was repaired');

# a second full sweep
cli('HSET', 'ti:2', 'v', 'stale too');
cli('HSET', $mkey, '7:1:0:0', qq{[[$ti,"2"]]});
ok(defined RedisSync::Compare::wait_for(sub { cli('HLEN', $mkey) eq '0' }, 30),
	'a second full sweep');
is(cli('HGET', 'ti:2', 'v'), 'two', 'its row was repaired');

is(cli('HGET', "$mkey:failed", '5:1:0:0'), 'this is not json',
	'the set-aside marker stays in :failed for the operator');
is(cli('EXISTS', "$mkey:failed:failed"), '0', 'no :failed:failed');
is(cli('EXISTS', "$mkey:failed:attempts"), '0', 'no :failed:attempts');

done_testing();
