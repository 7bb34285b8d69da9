# Clean shutdown drains: with flush_interval '1 h' only a forced drain
# happens, so dirty keys stay in Redis until the worker's final drain at
# SIGTERM (pg_ctl stop -m fast), bounded by redis_sync.shutdown_drain_timeout.
# After the restart the table holds the values and the dirty set is empty.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time);

my $KEYS = 300;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbshutdown', redis => $redis);

$node->safe_psql(
	'postgres', qq{
CREATE TABLE stats (id int PRIMARY KEY, view_count bigint NOT NULL DEFAULT 0, note text);
INSERT INTO stats SELECT g, 0, 'old' FROM generate_series(1, $KEYS / 2) g;
SELECT redis_sync.write_behind('stats', key_prefix => 'stats:', flush_interval => '1 h');
});
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');
# one forced round: the table's next scheduled drain is an hour away
$node->safe_psql('postgres', "SELECT redis_sync.flush('stats')");

my $dir = "$PostgreSQL::Test::Utils::tmp_check/wbshutdown";
mkdir $dir or die "$dir: $!";
RedisSync::WB::write_resp("$dir/load.resp",
	map { ([ 'HSET', "stats:$_", 'view_count', $_ * 3, 'note', "n$_" ], [ 'SADD', 'stats:dirty', $_ ]) }
	  1 .. $KEYS);
RedisSync::WB::pipe_run($redis, "$dir/load.resp", 2 * $KEYS);
is(RedisSync::WB::scard($redis, 'stats:dirty'), $KEYS, "$KEYS keys dirty");

# the worker keeps running rounds but does not drain the table
my $rounds = RedisSync::Compare::worker_stat($node, 'worker_rounds');
ok($node->poll_query_until('postgres', "SELECT worker_rounds >= $rounds + 3 FROM redis_sync.worker_stats"),
	'worker went through three more rounds');
is(RedisSync::WB::scard($redis, 'stats:dirty'), $KEYS, 'still dirty: nothing drained before the shutdown');
is($node->safe_psql('postgres', 'SELECT count(*), sum(view_count) FROM stats'), ($KEYS / 2) . '|0',
	'table unchanged');

my $log_offset = -s $node->logfile;
my $t0 = time;
$node->stop('fast');
my $stop_secs = time - $t0;
my $log = substr(slurp_file($node->logfile), $log_offset);
like($log, qr/redis_sync worker: final drain at shutdown applied $KEYS rows/,
	"log: 'final drain at shutdown applied $KEYS rows'");
diag(sprintf('pg_ctl stop -m fast with a final drain of %d keys: %.2fs', $KEYS, $stop_secs));
is(RedisSync::WB::scard($redis, 'stats:dirty'), 0, 'dirty set empty after the shutdown');
is(RedisSync::WB::scard($redis, RedisSync::WB::processing_set('stats:dirty')), 0, 'processing set empty');

$node->start;
is($node->safe_psql('postgres', 'SELECT count(*), sum(view_count) FROM stats'),
	"$KEYS|" . (3 * $KEYS * ($KEYS + 1) / 2), 'after the restart the table has every drained row');
RedisSync::WB::maps_equal(RedisSync::WB::column_dump($node, 'stats', 'id', 'note'),
	{ map { $_ => "n$_" } 1 .. $KEYS }, 'note column drained');
RedisSync::WB::maps_equal(RedisSync::WB::column_dump($node, 'stats', 'id', 'view_count'),
	RedisSync::WB::hash_field_dump($redis, 'stats:', 'view_count'), 'table == Redis');
RedisSync::WB::no_dead_letters($node);

$node->stop;
done_testing();
