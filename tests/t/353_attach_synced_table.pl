# A table synced on its own (key prefix 'own:') attached as a partition of
# a synced table (prefix 'root:'), then detached again.  While attached its
# rows are the root's (their keys under 'root:'); once detached, the keys
# of its rows under the root's prefix must go (lifecycle.c), whether or not
# the table is synced on its own.  Either the ATTACH is refused, or the
# detach removes them.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('attach_synced', redis => $redis);
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE r (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE r_1 PARTITION OF r FOR VALUES FROM (0) TO (100);
SELECT redis_sync.write_through('r', key_prefix => 'root:');
CREATE TABLE own (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('own', key_prefix => 'own:');
INSERT INTO own VALUES (150, 'a');
});
my ($rc, $out, $err) = $node->psql('postgres', q{ALTER TABLE r ATTACH PARTITION own FOR VALUES FROM (100) TO (200)});
if ($rc != 0)
{
	like($err, qr/sync/i, 'attaching a synced table is refused with a reason');
}
else
{
	sq(q{UPDATE r SET v = 'through root' WHERE id = 150});
	diag('after update via root: root:150=' . $redis->cli('EXISTS', 'root:150') . ' own:150=' . $redis->cli('EXISTS', 'own:150'));
	sq(q{ALTER TABLE r DETACH PARTITION own});
	is($redis->cli('EXISTS', 'root:150'), '0', 'detached: the key of its row under the root\'s prefix is gone');
	is(sq(q{SELECT count(*) FROM redis_sync.verify('r')}), '0', 'verify(r) finds nothing');
	sq(q{UPDATE own SET v = 'after' WHERE id = 150});
	is($redis->cli('HGET', 'own:150', 'v'), 'after', 'own still syncs under its own prefix');
}
done_testing();
