# A delivery that runs batch after batch in one call (deliver_outbox(),
# flush()) frees each batch's entries when the batch ends.  It kept every
# batch's entries (about 0.8 kB each here) until the call returned: after a Redis
# outage a flush() of millions of queued entries used gigabytes.  With the
# worker paused, 120,000 async changes are queued; the backend's peak
# memory (VmHWM, shared_buffers kept small so that shared memory the
# backend touches counts little) after delivering all of them may exceed
# its peak after delivering the first 10,000 by much less than the 90 MB
# the kept entries took.  Everything is delivered and the cache matches.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;

plan skip_all => 'needs /proc/<pid>/status (Linux)' unless -r "/proc/$$/status";

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('obxmem', redis => $redis,
	extra_conf => "shared_buffers = '16MB'\nredis_sync.outbox_batch = 10000\n");

my $t = RedisSync::Synced::synced_table($node, 'm', columns => 'id int PRIMARY KEY, v int, note text',
	with => "delivery => 'async', warm => false", fill_first => 1,
	fill => "SELECT g, 0, repeat('n', 200) FROM generate_series(1, 120000) g");

$node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()');
$node->safe_psql('postgres', 'UPDATE m SET v = 1');
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'), '120000', '120,000 entries queued');

my $s   = RedisSync::Test::session($node);
my $pid = $s->query('SELECT pg_backend_pid()')->{out};

sub peak_kb
{
	open my $fh, '<', "/proc/$pid/status" or die "status of $pid: $!";
	my ($kb) = map { /^VmHWM:\s+(\d+)/ ? $1 : () } <$fh>;
	close $fh;
	return $kb;
}

is($s->query('SELECT redis_sync.deliver_outbox(10000)')->{out}, '10000', 'first 10,000 delivered');
my $small = peak_kb();
is($s->query('SELECT redis_sync.deliver_outbox(1000000)')->{out}, '110000', 'the other 110,000 delivered in one call');
my $large = peak_kb();
my $grew = int(($large - $small) / 1024);
cmp_ok($grew, '<', 40, "peak memory grew by ${grew} MB for 110,000 more entries (90 MB when every batch was kept)");
$s->quit;

$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
is(RedisSync::Compare::outbox_depth($node), 0, 'outbox empty');
$t->wait_cache_matches($redis, name => 'cache matches the table');

$node->stop;
$redis->stop;
done_testing();
