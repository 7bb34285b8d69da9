# Partitions of a synced write-through table (one push-at-commit, one async)
# renamed, moved to another schema and back, and given to another owner
# and back, again and again while pgbench writes through the parent: every
# committed write reaches Redis and verify() finds nothing.  (A check that
# held up; no code change.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use IPC::Run ();
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('part_rename', redis => $redis,
	extra_conf => "redis_sync.naptime = '100ms'\n");
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE ROLE other LOGIN;
CREATE SCHEMA sx;
});
for my $t ('w', 'a')
{
	my $d = $t eq 'a' ? ", delivery => 'async'" : '';
	sq("CREATE TABLE $t (id int PRIMARY KEY, v int NOT NULL) PARTITION BY RANGE (id);
CREATE TABLE ${t}_1 PARTITION OF $t FOR VALUES FROM (0) TO (100);
CREATE TABLE ${t}_2 PARTITION OF $t FOR VALUES FROM (100) TO (200);
INSERT INTO $t SELECT g, 0 FROM generate_series(1, 199) g;
SELECT redis_sync.write_through('$t', key_prefix => '$t:'$d);
SELECT redis_sync.warm('$t');");
}

my $script = PostgreSQL::Test::Utils::tempdir() . '/u.sql';
open my $fh, '>', $script or die;
print $fh "\\set id random(1, 199)\nUPDATE w SET v = v + 1 WHERE id = :id;\nUPDATE a SET v = v + 1 WHERE id = :id;\n";
close $fh;
my ($out, $err) = ('', '');
my $writers = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '6', '-f', $script, '-d', $node->connstr('postgres') ],
	'>', \$out, '2>', \$err);

my ($n, $failed) = (0, 0);
my $deadline = time + 6;
while (time < $deadline)
{
	for my $t ('w', 'a')
	{
		my ($rc, $o, $e) = $node->psql('postgres', "
ALTER TABLE ${t}_2 RENAME TO ${t}_2x; ALTER TABLE ${t}_2x RENAME TO ${t}_2;
ALTER TABLE ${t}_1 SET SCHEMA sx; ALTER TABLE sx.${t}_1 SET SCHEMA public;
ALTER TABLE ${t}_2 OWNER TO other; ALTER TABLE ${t}_2 OWNER TO CURRENT_USER;");
		$n++;
		$failed++ if $rc != 0;
		diag($e) if $rc != 0 && $failed < 3;
	}
}
$writers->finish;
like($out, qr/number of transactions actually processed: [1-9]/, 'the writers ran') or diag($err);
ok($n > 4, "$n rounds of renames, moves and owner changes");
is($failed, 0, 'none failed');
sq("SELECT redis_sync.flush('a')");
for my $t ('w', 'a')
{
	ok(defined RedisSync::Compare::wait_for(sub { sq("SELECT count(*) FROM redis_sync.verify('$t')") eq '0' }, 30),
		"$t: verify finds nothing")
	  or diag(sq("SELECT * FROM redis_sync.verify('$t') LIMIT 5"));
}
is(sq("SELECT count(*) FROM pg_trigger WHERE tgname = 'redis_sync_truncate_partition'"), '4',
	'every partition still has its TRUNCATE guard');
done_testing();
