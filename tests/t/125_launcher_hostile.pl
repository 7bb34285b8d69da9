# The launcher under a hostile user and chaos (review of issue 14):
#  - a role that does not own a database cannot stop its worker by
#    attempting DROP DATABASE / ALTER DATABASE RENAME (in a loop, with a
#    statement_timeout that cancels the attempt while it would wait);
#  - the owner's DROP DATABASE inside a transaction block (an error before
#    PostgreSQL looks at the database) does not stop the worker, and an
#    owner's DROP cancelled while waiting for the worker leaves no hold
#    behind: the worker is back within seconds, not after 10 minutes;
#  - CREATE EXTENSION in template1 gives template1 no worker, so a
#    following CREATE DATABASE (template1 by default) is not refused with
#    "source database is being accessed by other users";
#  - pg_terminate_backend() of the launcher: the postmaster starts it again
#    and it restarts workers that exit afterwards;
#  - 50 CREATE DATABASE + CREATE EXTENSION + DROP DATABASE cycles reuse the
#    slots (more cycles than slots: a leak would leave later ones without);
#  - DROP DATABASE ... WITH (FORCE) by a plain owner;
#  - kill -9 of a worker (crash restart, shared memory made anew): every
#    database gets its worker back.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'hostile',
	redis      => $redis,
	extra_conf => "redis_sync.max_workers = 6\nmax_worker_processes = 16\nrestart_after_crash = on\n");

sub sql { my ($db, $q) = @_; return $node->safe_psql($db, $q); }

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
	return RedisSync::Compare::wait_for(sub { worker_pid($db) != 0 }, $timeout // 30, 0.01);
}

sub launcher_pid
{
	return sql('postgres',
		"SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'redis_sync launcher'");
}

ok(defined wait_worker('postgres'), 'postgres: worker running');

sql('postgres', 'CREATE ROLE mallory LOGIN CREATEDB');
sql('postgres', 'CREATE DATABASE victim');
sql('victim',   'CREATE EXTENSION redis_sync');
ok(defined wait_worker('victim'), 'victim: worker running');
my $pid = worker_pid('victim');

# a role that does not own victim: its failed attempts leave the worker alone
for my $i (1 .. 5)
{
	$node->psql('postgres', "SET statement_timeout = '1ms'; DROP DATABASE victim", extra_params => [ '-U', 'mallory' ]);
	$node->psql('postgres', 'DROP DATABASE victim', extra_params => [ '-U', 'mallory' ]);
	$node->psql('postgres', 'ALTER DATABASE victim RENAME TO v2', extra_params => [ '-U', 'mallory' ]);
	$node->psql('postgres', 'CREATE DATABASE m TEMPLATE victim', extra_params => [ '-U', 'mallory' ]);
}
is(worker_pid('victim'), $pid, "a non-owner's DROP/RENAME/CREATE ... TEMPLATE attempts do not stop victim's worker");
is(sql('postgres', "SELECT worker_state FROM redis_sync.worker_stats WHERE database = 'victim'"),
	'running', '... and leave no hold on it');

# the owner, in a transaction block: DROP DATABASE fails before it starts
my ($ret, $out, $err) = $node->psql('postgres', 'BEGIN; DROP DATABASE victim; COMMIT;');
like($err, qr/cannot run inside a transaction block/, 'DROP DATABASE in a transaction block fails');
is(worker_pid('victim'), $pid, '... without stopping the worker');

# an owner (plain role) whose DROP is cancelled: no hold is left behind
sql('postgres', 'CREATE DATABASE owned OWNER mallory');
sql('owned', 'CREATE EXTENSION redis_sync');
ok(defined wait_worker('owned'), 'owned: worker running');
my $blocker = RedisSync::Test::session($node, 'owned');    # DROP must fail
for my $i (1 .. 5)
{
	$node->psql('postgres', "SET statement_timeout = '2ms'; DROP DATABASE owned",
		extra_params => [ '-U', 'mallory' ]);
}
ok(defined wait_worker('owned', 10),
	"owner's cancelled/failed DROP DATABASE: the worker is back within seconds");
$blocker->quit;

# the owner (a plain role) drops it WITH (FORCE) while connected elsewhere
{ local $ENV{PGUSER} = 'mallory'; $blocker = RedisSync::Test::session($node, 'owned'); }    # FORCE ends it
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE owned WITH (FORCE)',
	extra_params => [ '-U', 'mallory' ]);
is($ret, 0, "a plain owner's DROP DATABASE ... WITH (FORCE) of a database with a worker succeeds")
  or diag $err;
ok(defined RedisSync::Compare::wait_for(
		sub { sql('postgres', "SELECT count(*) FROM redis_sync.worker_stats WHERE database = 'owned'") eq '0' }, 10),
	'... and its slot ends');

# template1 with the extension (so new databases get it): no worker there
sql('template1', 'CREATE EXTENSION redis_sync');
($ret, $out, $err) = $node->psql('postgres', 'CREATE DATABASE fromtpl');
is($ret, 0, 'CREATE DATABASE right after CREATE EXTENSION in template1 succeeds')
  or diag $err;
is(sql('postgres', "SELECT count(*) FROM redis_sync.worker_stats WHERE database = 'template1'"),
	'0', 'template1 has no worker slot');
ok(defined wait_worker('fromtpl', 40), 'the database made from template1 gets its worker (scan)');
sql('template1', 'DROP EXTENSION redis_sync');

# the launcher terminated: it comes back, and restarts workers after that
my $lpid = launcher_pid();
ok($lpid != 0, 'launcher running');
sql('postgres', "SELECT pg_terminate_backend($lpid)");
ok(defined RedisSync::Compare::wait_for(sub { my $p = launcher_pid(); $p != 0 && $p != $lpid }, 30),
	'pg_terminate_backend(launcher): the postmaster starts a new launcher');
$pid = worker_pid('victim');
sql('postgres', "SELECT pg_terminate_backend($pid)");
ok(defined RedisSync::Compare::wait_for(sub { my $p = worker_pid('victim'); $p != 0 && $p != $pid }, 30),
	'... which restarts a worker terminated afterwards');

# slots are reused: more cycles than there are slots (max_workers + 32)
my $failed = 0;
for my $i (1 .. 50)
{
	sql('postgres', "CREATE DATABASE cyc$i");
	my ($r, $o, $e) = $node->psql("cyc$i", 'CREATE EXTENSION redis_sync');
	$failed++ if $r != 0 || $e =~ /no redis_sync worker slot is free/;
	$failed++ unless defined wait_worker("cyc$i", 30);
	sql('postgres', "DROP DATABASE cyc$i");
}
is($failed, 0, '50 CREATE/DROP DATABASE cycles: each database got a slot and a worker');
ok(defined RedisSync::Compare::wait_for(
		sub { sql('postgres', "SELECT count(*) FROM redis_sync.worker_stats WHERE database LIKE 'cyc%'") eq '0' }, 30),
	'... and no slot of a dropped database is left');

# kill -9 of a worker: crash restart, slots rebuilt, every worker back
$pid = worker_pid('victim');
kill 'KILL', $pid;
ok( defined RedisSync::Compare::wait_for(
		sub {
			my ($r, $o) = $node->psql('postgres', 'SELECT 1');
			return $r == 0 && worker_pid('postgres') != 0 && worker_pid('victim') != 0
			  && worker_pid('fromtpl') != 0 && worker_pid('victim') != $pid;
		},
		60),
	'kill -9 of a worker: after the crash restart every database has its worker');
is(sql('postgres', "SELECT count(*) FROM redis_sync.worker_stats WHERE worker_running"),
	'3', 'one worker per database with the extension (postgres, victim, fromtpl)');

$node->stop;
done_testing();
