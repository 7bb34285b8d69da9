# DROP TABLE of a partition of a synced write-through table by the owner of
# the partition's schema (who owns neither the partition nor the table:
# PostgreSQL lets a schema's owner drop any table in it) removes the keys
# of its rows, as the partition owner's DROP TABLE does (lifecycle.c).
# Before, the keys stayed: the purge at the start of DROP TABLE acted only
# for the table's owner.  A caller who may not drop it still reads nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('drop_schema_owner', redis => $redis,
	extra_conf => "redis_sync.naptime = '200ms'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE ROLE app LOGIN; CREATE ROLE sowner LOGIN; CREATE ROLE mallory LOGIN;
GRANT CREATE ON SCHEMA public TO app;
CREATE SCHEMA sx AUTHORIZATION sowner;
GRANT USAGE, CREATE ON SCHEMA sx TO app;
GRANT USAGE ON SCHEMA sx TO mallory;
SET ROLE app;
CREATE TABLE w (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE w_1 PARTITION OF w FOR VALUES FROM (0) TO (100);
CREATE TABLE sx.w_2 PARTITION OF w FOR VALUES FROM (100) TO (200);
SELECT redis_sync.write_through('w', key_prefix => 'w:');
INSERT INTO w VALUES (1, 'a'), (101, 'b');
});
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('EXISTS', 'w:1', 'w:101') eq '2' }, 20),
	'all cached');

my ($rc, $out, $err) = $node->psql('postgres', 'SET ROLE mallory; DROP TABLE sx.w_2;');
like($err, qr/must be owner of table w_2/, 'a caller who may not drop the partition gets PostgreSQL\'s error')
  or diag($err);

($rc, $out, $err) = $node->psql('postgres', 'SET ROLE sowner; DROP TABLE sx.w_2;');
is($rc, 0, 'the schema owner drops the partition') or diag($err);
ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('EXISTS', 'w:101') eq '0' }, 20),
	'the keys of the partition the schema owner dropped are gone');
is($redis->cli('EXISTS', 'w:1'), '1', 'the other partition\'s keys stay');
is(sq("SELECT count(*) FROM redis_sync.verify('w')"), '0', 'verify finds nothing');
done_testing();
