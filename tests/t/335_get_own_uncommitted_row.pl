# get() of a row the calling transaction itself wrote and has not committed.
#
# Found by the adversarial review (area: read-through and rollbacks): on a
# miss, get()'s populate reads the row FOR SHARE in the caller's
# transaction, which sees its own uncommitted change, and pushed it to Redis
# with a version newer than every committed write.  After ROLLBACK (or
# ROLLBACK TO SAVEPOINT then COMMIT) Redis kept the rolled-back value --
# or, on an invalidate table, a row the table never had -- with nothing to
# repair it: the transaction pushed nothing at commit, so no abort repair,
# and warm() leaves keys that have their version.  Guarantee 1: only
# committed data reaches Redis.
#
# Expected: get() returns the caller's own row (what its SELECT sees) but
# does not cache a row version its own transaction wrote; a row it deleted
# may be pushed as a (fenced) delete: a miss, never stale.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('get_own', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE gt (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('gt', key_prefix => 'gt:', warm => false);
CREATE TABLE gi (id int PRIMARY KEY, v text);
SELECT redis_sync.invalidate('gi', key_prefix => 'gi:');
CREATE TABLE gp (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE gp1 PARTITION OF gp FOR VALUES FROM (0) TO (100);
SELECT redis_sync.write_through('gp', key_prefix => 'gp:', warm => false);
INSERT INTO gt VALUES (1, 'committed'), (2, 'committed'), (3, 'committed');
INSERT INTO gi VALUES (1, 'committed');
INSERT INTO gp VALUES (1, 'committed');
});
# cold cache: get() will miss and populate
$redis->cli('DEL', 'gt:1', 'gt:2', 'gt:3', 'gp:1');

# 1. write-through: UPDATE, get(), ROLLBACK
is($node->safe_psql('postgres', q{
BEGIN;
UPDATE gt SET v = 'rolled back' WHERE id = 1;
SELECT (redis_sync.get(NULL::gt, '1')).v;
ROLLBACK;
}), 'rolled back', 'get() returns the transaction\'s own row');
isnt($redis->cli('HGET', 'gt:1', 'v'), 'rolled back',
	'write-through: the rolled-back value is not left in Redis');

# 2. invalidate: INSERT, get(), ROLLBACK -- a row the table never had
$node->safe_psql('postgres', q{
BEGIN;
INSERT INTO gi VALUES (2, 'never committed');
SELECT redis_sync.get(NULL::gi, '2');
ROLLBACK;
});
is($redis->cli('EXISTS', 'gi:2'), '0',
	'invalidate: a row inserted by a rolled-back transaction is not cached');

# 3. savepoint rolled back, outer transaction commits
$node->safe_psql('postgres', q{
BEGIN;
UPDATE gt SET v = 'outer' WHERE id = 3;
SAVEPOINT s;
UPDATE gt SET v = 'rolled back' WHERE id = 2;
SELECT redis_sync.get(NULL::gt, '2');
ROLLBACK TO SAVEPOINT s;
COMMIT;
});
isnt($redis->cli('HGET', 'gt:2', 'v'), 'rolled back',
	'a savepoint\'s rolled-back value is not left in Redis after COMMIT');

# 4. a partitioned table (the row is read through its parent)
$node->safe_psql('postgres', q{
BEGIN;
UPDATE gp SET v = 'rolled back' WHERE id = 1;
SELECT redis_sync.get(NULL::gp, '1');
ROLLBACK;
});
isnt($redis->cli('HGET', 'gp:1', 'v'), 'rolled back',
	'partitioned: the rolled-back value is not left in Redis');

# 5. a row the transaction deleted: at most a miss
$node->safe_psql('postgres', q{
BEGIN;
DELETE FROM gt WHERE id = 3;
SELECT redis_sync.get(NULL::gt, '3');
ROLLBACK;
});
my $v3 = $redis->cli('HGET', 'gt:3', 'v');
ok($v3 eq '' || $v3 eq 'outer', "a deleted-then-rolled-back row is cached right or missing ('$v3')");

# a later get() outside the transaction caches the committed rows
is($node->safe_psql('postgres', q{SELECT (redis_sync.get(NULL::gt, '1')).v}), 'committed',
	'get() afterwards returns the committed row');
$node->safe_psql('postgres', q{SELECT redis_sync.get(NULL::gt, '2'); SELECT redis_sync.get(NULL::gp, '1')});
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('gt')}), '0',
	'verify(gt) clean');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('gp')}), '0',
	'verify(gp) clean');
is($redis->cli('EXISTS', 'gi:2'), '0', 'no key for the invalidate row that never was');

# a get() in the transaction that commits still works, and commit pushes
$node->safe_psql('postgres', q{
BEGIN;
UPDATE gt SET v = 'kept' WHERE id = 1;
SELECT redis_sync.get(NULL::gt, '1');
COMMIT;
});
is($redis->cli('HGET', 'gt:1', 'v'), 'kept', 'a committed change is pushed at commit');

done_testing();
