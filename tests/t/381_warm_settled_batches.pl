# A warm over tombstones (the keys unsync(purge => true) or a TRUNCATE
# left: a version without data) settles its batches at once after the
# first: once a batch found most of its keys half there, the next batches
# are read with a new snapshot and pushed fenced with a version taken
# before, without the fill script (warm.c).  Both warm() in a session and
# the worker's background warm, whose rounds fill one batch each: the
# worker keeps what the last batch found for the next round of the same
# warm (warm_queue.c).
#
# What shows it: the fill script runs an EXISTS per key, the settled push
# none.  30,000 rows in batches of 10,000: 30,000 EXISTS before (every
# batch filled, every key found half there and settled after), 10,000 now
# (the first batch only).  A TRUNCATE's tombstones, with rows inserted
# again since, give the same.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $ROWS = 30_000;

my $redis = RedisSync::Test::start_redis();
my $node = RedisSync::Test::new_node('warm_settled', redis => $redis);

$node->safe_psql('postgres', qq{
CREATE TABLE ws (id int PRIMARY KEY, name text NOT NULL, note text);
INSERT INTO ws SELECT g, 'item ' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END
  FROM generate_series(1, $ROWS) g;
SELECT redis_sync.write_through('ws', key_prefix => 'ws:', warm => false);
SELECT redis_sync.warm('ws');
});

sub tombstoned
{
	$node->safe_psql('postgres', q{
SELECT redis_sync.unsync('ws', purge => true);
});
	is($redis->cli('HGET', 'ws:5', 'name'), '', 'purged');
	isnt($redis->cli('GET', '{ws:5}:rs_version'), '', 'a tombstone is left');
}

# 1. warm() in a session
tombstoned();
$node->safe_psql('postgres', q{SELECT redis_sync.write_through('ws', key_prefix => 'ws:', warm => false)});
my $e0 = $redis->cmd_calls('exists');
is($node->safe_psql('postgres', q{SELECT redis_sync.warm('ws', batch_size => 10000)}), $ROWS, 'warm() read every row');
my $n = $redis->cmd_calls('exists') - $e0;
# a few are the worker's own (redis_sync:claims, once a second)
ok($n >= 10_000 && $n < 15_000, "warm(): the fill script ran for the first batch only ($n EXISTS)");
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('ws')}), '0', 'warm(): cache == table');

# 2. the worker's background warm that write_through() queues
tombstoned();
$e0 = $redis->cmd_calls('exists');
$node->safe_psql('postgres', q{SELECT redis_sync.write_through('ws', key_prefix => 'ws:')});
ok($node->poll_query_until('postgres',
	q{SELECT state = 'done' FROM redis_sync.warming WHERE "table" = 'ws'::regclass}),
	'background warm done');
$n = $redis->cmd_calls('exists') - $e0;
ok($n >= 10_000 && $n < 15_000, "background warm: the fill script ran for the first batch only ($n EXISTS)");
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('ws')}), '0',
	'background warm: cache == table');

# 3. a TRUNCATE's tombstones, rows inserted again (in another transaction:
# those of the TRUNCATE's own would be pushed), changed while tombstoned
$node->safe_psql('postgres', q{TRUNCATE ws});
$node->safe_psql('postgres', q{SELECT redis_sync.unsync('ws')});
$node->safe_psql('postgres', qq{
INSERT INTO ws SELECT g, 'again ' || g, NULL FROM generate_series(1, $ROWS) g;
SELECT redis_sync.write_through('ws', key_prefix => 'ws:', warm => false);
UPDATE ws SET name = 'changed' WHERE id = 25000;
});
$e0 = $redis->cmd_calls('exists');
is($node->safe_psql('postgres', q{SELECT redis_sync.warm('ws', batch_size => 10000)}), $ROWS,
	'warm() after TRUNCATE read every row');
$n = $redis->cmd_calls('exists') - $e0;
ok($n >= 10_000 && $n < 15_000, "after TRUNCATE: the fill script ran for the first batch only ($n EXISTS)");
is($redis->cli('HGET', 'ws:25000', 'name'), 'changed', 'a row changed while tombstoned is cached as it is');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('ws')}), '0', 'after TRUNCATE: cache == table');

# 4. memory: a settled batch's look-up of the table's writers (one array
# per partition, sized by max_connections) is freed with the batch.
# Before (helper-114): kept until warm() returned, 2,000 batches of a table
# of 50 partitions peaked at 240 MB against 32 MB for the same warm filling
# an empty Redis.  VmHWM of the session's backend after each warm.
$node->safe_psql('postgres', q{
CREATE TABLE wp (id int PRIMARY KEY, v text) PARTITION BY HASH (id);
SELECT format('CREATE TABLE wp_%s PARTITION OF wp FOR VALUES WITH (MODULUS 50, REMAINDER %s)', r, r)
  FROM generate_series(0, 49) r \gexec
INSERT INTO wp SELECT g, 'v' || g FROM generate_series(1, 10000) g;
SELECT redis_sync.write_through('wp', key_prefix => 'wp:', warm => false);
});
my $hwm_sql = q{SELECT redis_sync.warm('wp', batch_size => 5);
SELECT substring(pg_read_file('/proc/self/status') FROM 'VmHWM:\s*(\d+)');};
my ($filled_kb) = (split /\n/, $node->safe_psql('postgres', $hwm_sql))[-1];
$node->safe_psql('postgres', q{
SELECT redis_sync.unsync('wp', purge => true);
SELECT redis_sync.write_through('wp', key_prefix => 'wp:', warm => false);
});
$e0 = $redis->cmd_calls('exists');
my ($settled_kb) = (split /\n/, $node->safe_psql('postgres', $hwm_sql))[-1];
$n = $redis->cmd_calls('exists') - $e0;
# every eighth batch is filled again (warm.c SETTLED_RUN): about 250 of
# 2,000 batches of 5 keys, where filling every batch runs 10,000 EXISTS
ok($n < 1_500, "partitioned: seven batches of eight are settled ($n EXISTS)");
cmp_ok($settled_kb, '<', $filled_kb + 30_000,
	"settled batches free their look-ups: peak $settled_kb kB against $filled_kb kB filling");
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('wp')}), '0', 'partitioned: cache == table');

$node->stop;
$redis->stop;
done_testing();
