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

# A DETACH ... CONCURRENTLY cancelled in its second phase (a reader of dc
# holds its lock) leaves dc_3 pending detach; rows written straight into it
# meanwhile are still cached; DETACH ... FINALIZE completes the detach and
# must remove the keys of all its rows.
$node->safe_psql('postgres', q{
CREATE TABLE dc_3 PARTITION OF dc FOR VALUES FROM (200) TO (300);
INSERT INTO dc VALUES (201, 'c');
});
is($redis->cli('EXISTS', 'dc:201'), '1', 'row 201 cached');
my $rd = RedisSync::Test::session($node);
$rd->query('BEGIN; SELECT count(*) FROM dc');
my ($rc, $out, $err) = $node->psql('postgres',
	q{SET statement_timeout = '2s'; ALTER TABLE dc DETACH PARTITION dc_3 CONCURRENTLY});
like($err, qr/statement timeout/, 'the concurrent detach is cancelled in its second phase');
$rd->query('COMMIT');
$rd->quit;
is($node->safe_psql('postgres', q{SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = 'dc_3'::regclass}),
	't', 'dc_3 is pending detach');
# a write straight into the pending partition (the capture trigger's
# lookup of the partition's root crashed the backend: get_partition_ancestors()
# returns nothing for a partition pending detach)
($rc, $out, $err) = $node->psql('postgres', q{INSERT INTO dc_3 VALUES (202, 'while pending')});
is($rc, 0, 'a write straight into the pending partition works') or diag($err);
is($redis->cli('EXISTS', 'dc:202'), '1', 'and its row is cached, as dc_3 is still dc\'s partition');
# another partition detached meanwhile: the pending one keeps its guard
($rc, $out, $err) = $node->psql('postgres', q{
CREATE TABLE dc_4 PARTITION OF dc FOR VALUES FROM (300) TO (400);
INSERT INTO dc VALUES (301, 'd');
ALTER TABLE dc DETACH PARTITION dc_4;});
is($rc, 0, 'another detach while dc_3 is pending works') or diag($err);
is($redis->cli('EXISTS', 'dc:301'), '0', 'its row\'s key is gone');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'dc_3'::regclass
                                   AND tgname = 'redis_sync_truncate_partition'}),
	'1', 'the pending partition keeps its TRUNCATE guard');
($rc, $out, $err) = $node->psql('postgres', q{UPDATE dc_3 SET v = 'updated while pending' WHERE id = 201});
is($redis->cli('HGET', 'dc:201', 'v'), 'updated while pending', 'an update straight into the pending partition is pushed');
# its guard dropped by the table's owner meanwhile: FINALIZE still purges
# (it follows the partition the command names, not the guard)
$node->safe_psql('postgres', q{DROP TRIGGER redis_sync_truncate_partition ON dc_3});
$node->safe_psql('postgres', q{ALTER TABLE dc DETACH PARTITION dc_3 FINALIZE});
is($redis->cli('EXISTS', 'dc:201', 'dc:202'), '0', 'FINALIZE: the keys of dc_3\'s rows are gone, its guard dropped before');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('dc')"), '0', 'verify(dc) finds nothing');

# DROP TABLE of a partition pending detach takes its rows' keys too
$node->safe_psql('postgres', q{
CREATE TABLE dc_5 PARTITION OF dc FOR VALUES FROM (500) TO (600);
INSERT INTO dc VALUES (501, 'e');
});
$rd = RedisSync::Test::session($node);
$rd->query('BEGIN; SELECT count(*) FROM dc');
($rc, $out, $err) = $node->psql('postgres',
	q{SET statement_timeout = '2s'; ALTER TABLE dc DETACH PARTITION dc_5 CONCURRENTLY});
like($err, qr/statement timeout/, 'dc_5: the concurrent detach is cancelled');
$rd->query('COMMIT');
$rd->quit;
($rc, $out, $err) = $node->psql('postgres', q{DROP TABLE dc_5});
is($rc, 0, 'DROP TABLE of the pending partition works') or diag($err);
is($redis->cli('EXISTS', 'dc:501'), '0', 'its row\'s key is gone');
is($redis->cli('EXISTS', 'dc:1'), '1', 'row 1 still cached');
done_testing();
