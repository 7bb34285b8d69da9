# A partition leaving a synced table queues the removal of every row's key
# (lifecycle.c).  With a partition larger than redis_sync.max_buffer_bytes
# the change buffer spills to the outbox while the DROP TABLE (event
# trigger at its start) or the DETACH (at its end) reads the rows: every
# key of the partition must still go, the others stay, and the same
# transaction's later writes win over the spilled removals.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('leave_spill', redis => $redis,
	extra_conf => "redis_sync.naptime = '200ms'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }
sub nkeys
{
	my ($pat) = @_;
	my @k = grep { length } split /\n/, $redis->cli('--scan', '--pattern', $pat);
	return scalar @k;
}

sq(q{
CREATE TABLE big (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE big_1 PARTITION OF big FOR VALUES FROM (0) TO (100000);
CREATE TABLE big_2 PARTITION OF big FOR VALUES FROM (100000) TO (200000);
CREATE TABLE big_3 PARTITION OF big FOR VALUES FROM (200000) TO (300000);
SELECT redis_sync.write_through('big', key_prefix => 'big:');
INSERT INTO big SELECT g, repeat('x', 50) FROM generate_series(1, 299999, 10) g;
});
is(nkeys('big:*'), 30000, 'every row cached');

my ($rc, $out, $err) = $node->psql('postgres', q{
SET redis_sync.max_buffer_bytes = '64kB';
BEGIN;
DROP TABLE big_2;
INSERT INTO big VALUES (5, 'written after the drop');
ALTER TABLE big DETACH PARTITION big_3;
UPDATE big SET v = 'updated after the detach' WHERE id = 11;
COMMIT;
});
is($rc, 0, 'the transaction commits') or diag($err);
ok(defined RedisSync::Compare::wait_for(sub { nkeys('big:1?????') + nkeys('big:2?????') == 0 }, 60),
	'the keys of the dropped and the detached partition are gone');
is(nkeys('big:*'), 10001, 'the kept partition\'s keys stay (and the new row)');
is($redis->cli('HGET', 'big:5', 'v'), 'written after the drop', 'the row written after the drop is cached');
is($redis->cli('HGET', 'big:11', 'v'), 'updated after the detach', 'the row updated after the detach is cached');
is(sq(q{SELECT count(*) FROM redis_sync.verify('big')}), '0', 'verify(big) finds nothing');
done_testing();
