# One worker per database, started by the launcher without configuration.
# Three databases (besides "postgres") each get the extension, an async
# table, a write-behind table with a counter and a strict write-through
# table: async deliveries and write-behind drains happen in all three (no
# redis_sync.database, no flush() needed), flush() is served by the
# database's own worker, and a Redis restart re-warms (and re-seeds) all
# three.  redis_sync.max_workers = 4: a fifth database with the extension
# is left without a worker, which the log and worker_stats say, until DROP
# EXTENSION in another database stops that one's worker (the others keep
# theirs) and frees its place.  DROP DATABASE of a database with a worker
# succeeds at once.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;
use Time::HiRes qw(time);

my @DBS = qw(db1 db2 db3);
my $ROWS = 200;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'launcher',
	redis      => $redis,
	extra_conf => <<"EOC");
redis_sync.max_workers = 4
redis_sync.naptime = '200ms'
EOC

sub sql { my ($db, $q) = @_; return $node->safe_psql($db, $q); }

is(sql('postgres', 'SHOW redis_sync.database'), '', 'redis_sync.database is not set');

# the worker of a database (pid), or '' when it has none running
sub worker_pid
{
	my ($db) = @_;
	return sql('postgres',
		"SELECT coalesce(max(worker_pid) FILTER (WHERE worker_running), 0) FROM redis_sync.worker_stats WHERE database = '$db'"
	);
}

sub wait_worker
{
	my ($db, $timeout) = @_;
	return RedisSync::Compare::wait_for(sub { worker_pid($db) != 0 }, $timeout // 30, 0.005);
}

ok(defined wait_worker('postgres'), 'postgres: worker running');

my @create_secs;
for my $db (@DBS)
{
	sql('postgres', "CREATE DATABASE $db");
	sql($db, 'CREATE EXTENSION redis_sync');
	my $secs = wait_worker($db);
	ok(defined $secs, "$db: CREATE EXTENSION starts a worker");
	push @create_secs, $secs // 99;
	sql(
		$db, qq{
CREATE TABLE a (id int PRIMARY KEY, v int, note text);
SELECT redis_sync.write_through('a', key_prefix => '$db:a:', delivery => 'async');
CREATE TABLE s (id int PRIMARY KEY, v int, note text);
SELECT redis_sync.write_through('s', key_prefix => '$db:s:', consistency => 'strict');
INSERT INTO s SELECT g, g, '$db' FROM generate_series(1, 20) g;
CREATE TABLE w (id int PRIMARY KEY, hits bigint NOT NULL DEFAULT 0);
INSERT INTO w VALUES (1, 10), (2, 20);
SELECT redis_sync.write_behind('w', key_prefix => '$db:w:', counters => '{hits}');
});
}
diag(sprintf('CREATE EXTENSION to running worker: %s s',
		join(', ', map { sprintf('%.3f', $_) } @create_secs)));

my %pid = map { $_ => worker_pid($_) } ('postgres', @DBS);
is(scalar(keys %{ { reverse %pid } }), 4, 'four workers, four processes');
for my $db (@DBS)
{
	is(sql('postgres', "SELECT datname FROM pg_stat_activity WHERE pid = $pid{$db}"),
		$db, "$db: its worker is connected to it");
	is(sql($db, 'SELECT count(*) FROM redis_sync.worker_stats WHERE database = current_database()'),
		1, "$db: worker_stats has a row for it");
}

sub cmp_opts
{
	my ($db, $t) = @_;
	return (
		dbname      => $db,
		table       => $t,
		prefix      => "$db:$t:",
		key_columns => ['id'],
		columns     => [ 'id', 'v', 'note' ]);
}

# async deliveries and write-behind drains in every database, by its worker
for my $db (@DBS)
{
	sql($db, "INSERT INTO a SELECT g, g, '$db' FROM generate_series(1, $ROWS) g");
	sql($db, "UPDATE s SET note = 'strict $db' WHERE id <= 10");
	$redis->cli('HINCRBY', "$db:w:1", 'hits', 5);
	$redis->cli('SADD',    "$db:w:dirty", 1);
}
for my $db (@DBS)
{
	RedisSync::Compare::wait_cache_matches_table($node, $redis, cmp_opts($db, 'a'),
		timeout => 30, name => "$db: async table delivered by its worker");
	RedisSync::Compare::cache_matches_table($node, $redis, cmp_opts($db, 's'),
		name => "$db: strict table in step");
	ok( defined RedisSync::Compare::wait_for(
			sub { sql($db, 'SELECT hits FROM w WHERE id = 1') == 15 }, 30),
		"$db: write-behind counter drained by its worker (10 + 5)");
	is(sql($db, 'SELECT count(*) FROM redis_sync.outbox'), 0, "$db: outbox empty");
}

# flush() wakes the database's own worker
for my $db (@DBS)
{
	$redis->cli('HINCRBY', "$db:w:2", 'hits', 1);
	$redis->cli('SADD',    "$db:w:dirty", 2);
	sql($db, "SELECT redis_sync.flush('w')");
	is(sql($db, 'SELECT hits FROM w WHERE id = 2'), 21, "$db: flush() drained at once (20 + 1)");
}

# Redis restarts empty: every worker re-warms its tables and re-seeds its counters
my $log_offset = -s $node->logfile;
my ($rid0) = $redis->cli('INFO', 'server') =~ /run_id:(\w+)/;
$redis->stop;
$redis->start;
my ($rid1) = $redis->cli('INFO', 'server') =~ /run_id:(\w+)/;
isnt($rid1, $rid0, 'Redis restarted (empty: no persistence)');
my $t0 = time;
for my $db (@DBS)
{
	RedisSync::Compare::wait_cache_matches_table($node, $redis, cmp_opts($db, 's'),
		timeout => 30, name => "$db: strict table re-warmed after the Redis restart");
	RedisSync::Compare::wait_cache_matches_table($node, $redis, cmp_opts($db, 'a'),
		timeout => 30, name => "$db: async table re-warmed after the Redis restart");
	ok( defined RedisSync::Compare::wait_for(
			sub { ($redis->cli('HGET', "$db:w:1", 'hits') // '') eq '15' }, 30),
		"$db: write-behind key re-seeded from the table (15)");
}
diag(sprintf('Redis restart to three databases re-warmed: %.2fs', time - $t0));
ok( defined RedisSync::Compare::wait_for(
		sub {
			my @r = substr(slurp_file($node->logfile), $log_offset) =~ /Redis at \S+ restarted/g;
			return @r >= 4;
		},
		30),
	'each of the four workers noticed the restart');

# after the restart: deliveries go on everywhere
for my $db (@DBS)
{
	sql($db, "UPDATE a SET note = 'after restart' WHERE id <= 50");
}
for my $db (@DBS)
{
	RedisSync::Compare::wait_cache_matches_table($node, $redis, cmp_opts($db, 'a'),
		timeout => 30, name => "$db: async deliveries after the Redis restart");
}

# max_workers = 4 is reached: a fifth database waits, and says so
$log_offset = -s $node->logfile;
sql('postgres', 'CREATE DATABASE db4');
sql('db4', 'CREATE EXTENSION redis_sync');
ok( defined RedisSync::Compare::wait_for(
		sub {
			sql('db4', "SELECT worker_state FROM redis_sync.worker_stats WHERE database = 'db4'") eq
			  'no worker: redis_sync.max_workers reached';
		},
		30),
	'db4: worker_stats says no worker (max_workers reached)');
ok( defined RedisSync::Compare::wait_for(
		sub {
			substr(slurp_file($node->logfile), $log_offset) =~
			  /no worker for database "db4": redis_sync.max_workers \(4\) reached/;
		},
		30),
	'... and the log says so');
is(sql('db4', "SELECT worker_running FROM redis_sync.worker_stats WHERE database = 'db4'"),
	'f', 'db4: no worker running');
sql('db4', q{
CREATE TABLE w (id int PRIMARY KEY, hits bigint NOT NULL DEFAULT 0);
SELECT redis_sync.write_behind('w', key_prefix => 'db4:w:', counters => '{hits}');
});
my ($ret, $out, $err) = $node->psql('db4', "SELECT redis_sync.flush('w')");
isnt($ret, 0, 'db4: flush() of a write-behind table fails');
like($err, qr/no redis_sync background worker runs in database "db4": redis_sync.max_workers reached/,
	'... at once, saying why');

# DROP EXTENSION in db1 stops its worker; the others keep theirs; db4 gets one
$log_offset = -s $node->logfile;
sql('db1', 'DROP EXTENSION redis_sync CASCADE');
ok( defined RedisSync::Compare::wait_for(
		sub { sql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid{db1}") == 0 },
		30),
	'db1: DROP EXTENSION stopped its worker');
like(substr(slurp_file($node->logfile), $log_offset),
	qr/redis_sync worker in database "db1" exiting: the extension was dropped/, '... logged');
ok(defined wait_worker('db4'), 'db4 got the freed worker place');
for my $db (qw(postgres db2 db3))
{
	is(worker_pid($db), $pid{$db}, "$db: same worker as before");
}
is(sql('postgres', "SELECT count(*) FROM redis_sync.worker_stats WHERE database = 'db1'"),
	0, 'db1: no worker_stats row any more');
is(sql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE datname = 'db1'"),
	0, 'db1: no redis_sync process connected to it');
sql('db2', "UPDATE a SET note = 'after drop extension' WHERE id <= 20");
RedisSync::Compare::wait_cache_matches_table($node, $redis, cmp_opts('db2', 'a'),
	timeout => 30, name => 'db2: async deliveries go on');

# DROP DATABASE of a database with a running worker
$t0 = time;
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE db3');
my $drop_secs = time - $t0;
is($ret, 0, 'DROP DATABASE db3 succeeds') or diag($err);
cmp_ok($drop_secs, '<', 4, sprintf('... quickly (%.2fs)', $drop_secs));
diag(sprintf('DROP DATABASE with a worker: %.2fs', $drop_secs));
for my $db (qw(postgres db2 db4))
{
	ok(worker_pid($db) != 0, "$db: worker still running");
}
is(worker_pid('postgres'), $pid{postgres}, 'postgres: same worker');
is(worker_pid('db2'),      $pid{db2},      'db2: same worker');
ok( defined RedisSync::Compare::wait_for(
		sub { sql('postgres', "SELECT count(*) FROM redis_sync.worker_stats WHERE database = 'db3'") == 0 },
		30),
	'db3: its row is gone');

# CREATE EXTENSION again in db1: a worker again
sql('db1', 'CREATE EXTENSION redis_sync');
sql('db2', 'DROP EXTENSION redis_sync CASCADE');
ok(defined wait_worker('db1'), 'db1: CREATE EXTENSION again starts a worker again');

$node->stop;
done_testing();
