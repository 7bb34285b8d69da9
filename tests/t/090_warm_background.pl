# Syncing a table that already has rows fills its cache in the background.
#
# write_through() on a 100,000-row table returns without filling the cache
# (the worker is paused while it runs, so the assertion "nothing cached yet"
# cannot depend on timing); once the worker resumes, it fills every key in
# batches, with no warm() call, while other sessions update, delete and
# insert rows; redis_sync.warming and redis_sync.stats show the progress;
# verify() finds no difference.  The fill takes no row locks and writes
# nothing to the table: the WAL it causes is a small fraction of the table's
# size (the 0.1 warm() locked every row FOR SHARE and wrote more WAL than the
# table's size).  A server restart in the middle of a warm resumes it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(time);

my $ROWS = 100_000;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('warm_bg', redis => $redis);

sub count_keys
{
	my ($pattern) = @_;
	my $n = 0;
	my $cursor = 0;
	do
	{
		my @r = split /\n/, $redis->cli('SCAN', $cursor, 'MATCH', $pattern, 'COUNT', 5000);
		$cursor = shift @r;
		$n += grep { !/:rs_version$/ } @r;
	} while ($cursor ne '0');
	return $n;
}

sub wait_warmed
{
	my ($table) = @_;
	return $node->poll_query_until('postgres',
		"SELECT state = 'done' FROM redis_sync.warming WHERE \"table\" = '$table'::regclass");
}

# autovacuum off for the table: its WAL would be counted as the warm's;
# VACUUM first, so that the warm's reads find hint bits set
$node->safe_psql(
	'postgres', qq{
CREATE TABLE catalog (id int PRIMARY KEY, name text NOT NULL, price numeric, note text)
  WITH (autovacuum_enabled = false);
INSERT INTO catalog SELECT g, 'item ' || g, g * 1.5, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END
  FROM generate_series(1, $ROWS) g;
VACUUM (ANALYZE) catalog;
});

# 1. write_through() returns before anything is cached
ok($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()') eq 't', 'worker paused');
my $t0 = time;
$node->safe_psql('postgres', "SELECT redis_sync.write_through('catalog', key_prefix => 'cat:')");
my $elapsed = time - $t0;
is(count_keys('cat:*'), 0, 'write_through() returned with nothing cached yet (the worker does the warm)');
cmp_ok($elapsed, '<', 30, sprintf('write_through() on %d rows returned in %.2fs', $ROWS, $elapsed));
is( $node->safe_psql(
		'postgres',
		q{SELECT state, rows_done, rows_estimate FROM redis_sync.warming WHERE "table" = 'catalog'::regclass}),
	"queued|0|$ROWS",
	'redis_sync.warming: queued, with the row estimate');

# 2. the worker fills the cache, while other sessions write
my $size = $node->safe_psql('postgres', "SELECT pg_relation_size('catalog')");
my $lsn0 = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
ok(wait_warmed('catalog'), 'the worker finished the warm');
my $wal = $node->safe_psql('postgres', "SELECT pg_current_wal_lsn() - '$lsn0'::pg_lsn");
cmp_ok($wal, '<', $size / 10,
	sprintf('WAL written while warming (%d bytes, %.1f bytes/row) < 10%% of the table (%d bytes)',
		$wal, $wal / $ROWS, $size));
is( $node->safe_psql('postgres', q{SELECT count(*) FROM catalog WHERE xmax <> '0'::xid}),
	'0', 'no row was locked or written by the warm');
is( $node->safe_psql(
		'postgres',
		q{SELECT rows_done, keys_filled, attempts, last_error IS NULL FROM redis_sync.warming
           WHERE "table" = 'catalog'::regclass}),
	"$ROWS|$ROWS|0|t",
	'redis_sync.warming: every row done, every key filled, no error');
is( $node->safe_psql('postgres', q{SELECT warmed FROM redis_sync.stats WHERE "table" = 'catalog'::regclass}),
	$ROWS, 'redis_sync.stats: warmed counts the rows');
is(count_keys('cat:*'), $ROWS, "all $ROWS keys cached without warm()");
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('catalog')}),
	'0', 'verify() finds no difference');

# 3. a warm racing writers: the cache ends equal to the table
$node->safe_psql('postgres', "SELECT redis_sync.command('FLUSHDB')");
$node->safe_psql('postgres', "SELECT redis_sync.write_through('catalog', key_prefix => 'cat:')");
my $writes = 0;
for my $i (1 .. 400)
{
	my $id = 1 + ($i * 7919) % $ROWS;
	$node->safe_psql(
		'postgres', qq{
UPDATE catalog SET price = price + 1, note = 'w$i' WHERE id = $id;
DELETE FROM catalog WHERE id = $id + 1;
INSERT INTO catalog VALUES ($ROWS + $i, 'new $i', $i, NULL) ON CONFLICT (id) DO NOTHING;
});
	$writes++;
	last if $node->safe_psql('postgres',
		q{SELECT state = 'done' FROM redis_sync.warming WHERE "table" = 'catalog'::regclass}) eq 't'
	  && $i >= 50;
}
ok(wait_warmed('catalog'), "warm finished ($writes rounds of writes ran meanwhile)");
RedisSync::Compare::cache_matches_table(
	$node, $redis,
	table       => 'catalog',
	prefix      => 'cat:',
	key_columns => ['id'],
	columns     => [ 'id', 'name', 'price', 'note' ],
	name        => 'cache == table after a warm racing updates, deletes and inserts');

# 4. a restart in the middle of a warm resumes it
$node->safe_psql('postgres', "SELECT redis_sync.command('FLUSHDB')");
$node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()');
$node->safe_psql('postgres', "SELECT redis_sync.write_through('catalog', key_prefix => 'cat:')");
$node->restart;
ok(wait_warmed('catalog'), 'warm queued before a restart finished after it');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('catalog')}),
	'0', 'verify() clean after the restart');

# 5. warm => false: nothing queued, nothing cached until warm()
$node->safe_psql('postgres', "SELECT redis_sync.command('FLUSHDB')");
$node->safe_psql('postgres', "SELECT redis_sync.write_through('catalog', key_prefix => 'cat:', warm => false)");
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.warming WHERE "table" = 'catalog'::regclass}),
	'0', 'warm => false queues nothing');
my $rounds = RedisSync::Compare::worker_stat($node, 'worker_rounds');
ok($node->poll_query_until('postgres', "SELECT worker_rounds >= $rounds + 2 FROM redis_sync.worker_stats"),
	'worker went through two rounds');
is(count_keys('cat:*'), 0, 'warm => false: cache stays empty');
my $n = $node->safe_psql('postgres', 'SELECT count(*) FROM catalog');
is($node->safe_psql('postgres', "SELECT redis_sync.warm('catalog')"), $n, 'warm() fills it');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('catalog')}),
	'0', 'verify() clean after warm()');

# 6. keys found half there wait for the table's open writers; the worker
#    does not block on them: the batch fails after a bounded wait, shows as
#    'retrying' with its reason, and completes once the writer has ended
$node->safe_psql('postgres', "SELECT redis_sync.command('DEL', 'cat:' || g) FROM generate_series(1, 5) g");
# (queued first: write_through() itself waits for open writers of the table)
$node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()');
$node->safe_psql('postgres', "SELECT redis_sync.write_through('catalog', key_prefix => 'cat:')");
my $writer = RedisSync::Test::session($node);
my $r = $writer->query("BEGIN; UPDATE catalog SET note = 'held' WHERE id = 50000");
is($r->{err}, '', 'a writer holds a transaction open on the table');
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
ok( $node->poll_query_until(
		'postgres',
		q{SELECT state = 'retrying' AND last_error LIKE '%transactions writing table "catalog" are still open%'
            FROM redis_sync.warming WHERE "table" = 'catalog'::regclass}),
	'the warm waits for the open writer without blocking the worker: retrying, with the reason');
$node->safe_psql('postgres', q{UPDATE catalog SET note = 'meanwhile' WHERE id = 60000});
is($redis->cli('HGET', 'cat:60000', 'note'), 'meanwhile', 'other writes are pushed meanwhile');
$r = $writer->query('COMMIT');
is($r->{err}, '', 'the writer commits');
ok(wait_warmed('catalog'), 'the warm completes after the writer ended');
is($redis->cli('HGET', 'cat:3', 'name'), 'item 3', 'a key found half there was filled');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('catalog')}),
	'0', 'verify() clean');
is($node->safe_psql('postgres', q{SELECT count(*) FROM catalog WHERE xmax <> '0'::xid AND id <> 50000}),
	'0', 'no row locked by the warm');
$writer->quit;

$node->stop;
done_testing();
