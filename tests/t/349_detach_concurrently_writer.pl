# DETACH PARTITION ... CONCURRENTLY holds only SHARE UPDATE EXCLUSIVE on the
# partition, so a writer straight into the partition (not through the
# parent) runs alongside it.  The detach reads the partition's rows at the
# end of its second transaction to remove their keys; a writer that began
# while the partition was still attached pushes its row at its own commit,
# after that read.  Its key then stays cached for a row of a table that is
# no longer synced (verify(): extra in cache), for good.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('detach_conc', redis => $redis);
$node->safe_psql('postgres', q{
CREATE TABLE dc (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE dc_1 PARTITION OF dc FOR VALUES FROM (0) TO (100);
CREATE TABLE dc_2 PARTITION OF dc FOR VALUES FROM (100) TO (200);
SELECT redis_sync.write_through('dc', key_prefix => 'dc:');
INSERT INTO dc VALUES (1, 'a'), (101, 'b');
});
is($redis->cli('EXISTS', 'dc:101'), '1', 'row 101 cached');

# a writer straight into the partition, open while the detach runs
my $w = RedisSync::Test::session($node);
my $r = $w->query("BEGIN; INSERT INTO dc_2 VALUES (150, 'new'); UPDATE dc_2 SET v = 'changed' WHERE id = 101");
is($r->{err}, '', 'writer inserted and updated in dc_2, still open');

my $d = RedisSync::Test::session($node);
$d->start_query("SET lock_timeout = '20s'; ALTER TABLE dc DETACH PARTITION dc_2 CONCURRENTLY");
# the detach is done once dc_2 is no longer a partition
my $done = RedisSync::Compare::wait_for(sub {
	$node->safe_psql('postgres', "SELECT count(*) FROM pg_inherits WHERE inhrelid = 'dc_2'::regclass") eq '0' }, 15);
if (defined $done)
{
	my $res = $d->finish_query;
	diag("detach: $res->{err}") if $res->{err} ne '';
	$w->query('COMMIT');
}
else
{
	# the detach waits for the writer: then its read sees the writer's rows
	$w->query('COMMIT');
	my $res = $d->finish_query;
	is($res->{err}, '', 'detach finished after the writer committed');
}
$w->quit; $d->quit;

is($node->safe_psql('postgres', "SELECT count(*) FROM pg_inherits WHERE inhrelid = 'dc_2'::regclass"),
	'0', 'dc_2 detached');
is($redis->cli('EXISTS', 'dc:150'), '0', 'the writer\'s new row of the detached partition is not cached');
is($redis->cli('EXISTS', 'dc:101'), '0', 'the writer\'s updated row of the detached partition is not cached');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('dc')"), '0', 'verify(dc) finds nothing stale');
is($redis->cli('EXISTS', 'dc:1'), '1', 'row 1 of the attached partition still cached');
done_testing();
