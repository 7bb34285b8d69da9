# get() called with the row type of one partition of a synced table reads
# the root table's key, which may hold a row of another partition.  A role
# that may SELECT only partition pt1 got, through get(NULL::pt1, '15'), the
# cached row 15 of partition pt2, which its SELECT of pt2 is denied; and on
# a miss the cache was populated on its behalf with that row.  The row must
# be returned only when the caller's SELECT of the partition it named sees
# it.  (From an adversarial review.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('get_partition', redis => $redis);
$node->safe_psql('postgres', q{
CREATE ROLE alice; CREATE ROLE bob;
CREATE TABLE pt (id int PRIMARY KEY, secret text) PARTITION BY RANGE (id);
CREATE TABLE pt1 PARTITION OF pt FOR VALUES FROM (1) TO (10);
CREATE TABLE pt2 PARTITION OF pt FOR VALUES FROM (10) TO (20);
ALTER TABLE pt OWNER TO alice; ALTER TABLE pt1 OWNER TO alice; ALTER TABLE pt2 OWNER TO alice;
SET ROLE alice;
SELECT redis_sync.write_through('pt', key_prefix => 'pt:', warm => false);
INSERT INTO pt VALUES (1, 'public one'), (15, 'secret fifteen'), (16, 'secret sixteen');
GRANT SELECT ON pt1 TO bob;
});
like($redis->cli('HGET', 'pt:15', 'secret'), qr/secret fifteen/, 'row 15 (partition pt2) is cached');

my ($rc, $out, $err) = $node->psql('postgres', 'SET ROLE bob; SELECT * FROM pt2');
like($err, qr/permission denied for table pt2/, 'bob may not read partition pt2');

($rc, $out, $err) = $node->psql('postgres',
	q{SET ROLE bob; SELECT coalesce((redis_sync.get(NULL::pt1, '15')).secret, '<none>')});
unlike($out, qr/secret fifteen/, "get(NULL::pt1, '15') does not return pt2's cached row");
is($out, '<none>', "get(NULL::pt1, '15') returns NULL (no row of pt1 has that key)") or diag($err);

# a miss: no row of pt1, nothing read from pt2, nothing populated for bob
($rc, $out, $err) = $node->psql('postgres',
	q{SET ROLE bob; SELECT coalesce((redis_sync.get(NULL::pt1, '16')).secret, '<none>')});
is($out, '<none>', "get(NULL::pt1, '16') returns NULL");

# a row of pt1 itself still reads
($rc, $out, $err) = $node->psql('postgres',
	q{SET ROLE bob; SELECT (redis_sync.get(NULL::pt1, '1')).secret});
is($out, 'public one', "get(NULL::pt1, '1') returns pt1's row") or diag($err);
done_testing();
