# A partition leaving a synced table takes its rows' keys (lifecycle.c),
# checked as a plain (non-superuser) owner, on a write-through and an async
# table: DROP TABLE of a partition, DETACH, DROP SCHEMA ... CASCADE, a DROP
# rolled back to a savepoint.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('leave_plain', redis => $redis,
	extra_conf => "redis_sync.naptime = '200ms'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE ROLE app LOGIN;
CREATE SCHEMA sw AUTHORIZATION app; CREATE SCHEMA sa AUTHORIZATION app;
GRANT CREATE ON SCHEMA public TO app;
SET ROLE app;
CREATE TABLE w (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE a (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
});
for my $t ('w', 'a')
{
	sq("SET ROLE app;
CREATE TABLE ${t}_1 PARTITION OF $t FOR VALUES FROM (0) TO (100);
CREATE TABLE ${t}_2 PARTITION OF $t FOR VALUES FROM (100) TO (200);
CREATE TABLE ${t}_3 PARTITION OF $t FOR VALUES FROM (200) TO (300);
CREATE TABLE ${t}_4 PARTITION OF $t FOR VALUES FROM (300) TO (400);
CREATE TABLE s${t}.${t}_5 PARTITION OF $t FOR VALUES FROM (400) TO (500);");
}
sq(q{SET ROLE app;
SELECT redis_sync.write_through('w', key_prefix => 'w:');
SELECT redis_sync.write_through('a', key_prefix => 'a:', delivery => 'async');
INSERT INTO w SELECT g, 'v' FROM generate_series(1, 499, 100) g;
INSERT INTO a SELECT g, 'v' FROM generate_series(1, 499, 100) g;
SELECT redis_sync.flush('a');});
for my $t ('w', 'a')
{
	ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('EXISTS', map { "$t:$_" } (1, 101, 201, 301, 401)) eq '5' }, 20),
		"$t: all cached");
	my ($rc, $out, $err) = $node->psql('postgres', "SET ROLE app;
DROP TABLE ${t}_2;
ALTER TABLE $t DETACH PARTITION ${t}_3;
BEGIN; SAVEPOINT x; DROP TABLE ${t}_1; ROLLBACK TO x; COMMIT;
DROP SCHEMA s$t CASCADE;
SELECT redis_sync.flush('a');");
	is($rc, 0, "$t: the plain owner's DDL runs") or diag($err);
	ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('EXISTS', "$t:101", "$t:201", "$t:401") eq '0' }, 20),
		"$t: the keys of the dropped, detached and schema-dropped partitions are gone");
	is($redis->cli('EXISTS', "$t:1"), '1', "$t: a DROP rolled back to a savepoint leaves the keys");
	is(sq("SELECT count(*) FROM redis_sync.verify('$t')"), '0', "$t: verify finds nothing");
}
done_testing();
