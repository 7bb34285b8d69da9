# warm() and resync() called in a transaction that has written the table.
#
# Found by the adversarial review (area: read-through and rollbacks): both
# read the table in the caller's transaction, so they see its own
# uncommitted rows, and push them at once -- warm() fills the missing keys
# with them, resync() "repairs" the cache to them.  After ROLLBACK, Redis
# kept rows that were never committed (verify() lists them; warm() never
# replaces a key that has its version).  Guarantee 1: only committed data
# reaches Redis.
#
# Expected: a clear error (the transaction wrote the table: commit first);
# Redis keeps only committed rows.  A transaction that wrote another table
# only, or whose writes of the table were rolled back to a savepoint, may
# still call them.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('warm_own', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE w1 (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('w1', key_prefix => 'w1:', warm => false);
CREATE TABLE wp (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE wp1 PARTITION OF wp FOR VALUES FROM (0) TO (100);
SELECT redis_sync.write_through('wp', key_prefix => 'wp:', warm => false);
CREATE TABLE other (id int);
INSERT INTO w1 VALUES (1, 'committed');
INSERT INTO wp VALUES (1, 'committed');
});

sub cache_clean
{
	my ($tbl) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('$tbl')");
}

for my $fn ('warm', 'resync')
{
	$redis->cli('DEL', 'w1:1', 'w1:2', 'wp:1', 'wp:2');
	my ($ret, $out, $err) = $node->psql('postgres', qq{
BEGIN;
INSERT INTO w1 VALUES (2, 'never committed');
UPDATE w1 SET v = 'rolled back' WHERE id = 1;
SELECT redis_sync.$fn('w1');
ROLLBACK;
});
	isnt($redis->cli('HGET', 'w1:1', 'v'), 'rolled back', "$fn: a rolled-back UPDATE is not left in Redis");
	is($redis->cli('EXISTS', 'w1:2'), '0', "$fn: a rolled-back INSERT is not left in Redis");
	like($err, qr/in a transaction that has written it/, "$fn: a clear error");

	($ret, $out, $err) = $node->psql('postgres', qq{
BEGIN;
INSERT INTO wp VALUES (2, 'never committed');
SELECT redis_sync.$fn('wp');
ROLLBACK;
});
	is($redis->cli('EXISTS', 'wp:2'), '0', "$fn: partitioned, a rolled-back INSERT is not left in Redis");

	($ret, $out, $err) = $node->psql('postgres', qq{
BEGIN;
TRUNCATE w1;
INSERT INTO w1 VALUES (2, 'never committed');
SELECT redis_sync.$fn('w1');
ROLLBACK;
});
	is($redis->cli('EXISTS', 'w1:2'), '0', "$fn: after TRUNCATE, a rolled-back INSERT is not left in Redis");

	# allowed: only another table written, or the table's writes rolled back to a savepoint
	($ret, $out, $err) = $node->psql('postgres', qq{
BEGIN;
INSERT INTO other VALUES (1);
SAVEPOINT s;
INSERT INTO w1 VALUES (3, 'rolled back to savepoint');
ROLLBACK TO SAVEPOINT s;
SELECT redis_sync.$fn('w1');
COMMIT;
});
	is($ret, 0, "$fn: allowed after writing another table only") or diag($err);
	is(cache_clean('w1'), '0', "$fn: w1 cache equals the table");
	$node->safe_psql('postgres', "SELECT redis_sync.resync('wp')");
	is(cache_clean('wp'), '0', "$fn: wp cache equals the table");
}

done_testing();
