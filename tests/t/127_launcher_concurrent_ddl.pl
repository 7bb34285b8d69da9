# Concurrent CREATE/DROP EXTENSION in three databases while a fourth
# session creates and drops databases: afterwards the launcher's state
# matches the catalogs (a worker exactly where the extension is), no slot
# is lost, nothing crashed.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use IPC::Run ();
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('concddl', redis => $redis,
	extra_conf => "redis_sync.max_workers = 6\nmax_worker_processes = 16\n");

sub sql { my ($db, $q) = @_; return $node->safe_psql($db, $q); }

sub worker_pid
{
	my ($db) = @_;
	return sql('postgres',
		"SELECT coalesce(max(worker_pid) FILTER (WHERE worker_running), 0) FROM redis_sync.worker_stats WHERE database = '$db'"
	);
}

my @dbs = qw(c1 c2 c3);
sql('postgres', "CREATE DATABASE $_") for @dbs;

my @h;
for my $db (@dbs)
{
	my $script = "CREATE EXTENSION redis_sync; DROP EXTENSION redis_sync;\n" x 25;
	push @h, IPC::Run::start([ $node->installed_command('psql'), '-XAtq', '-d', $node->connstr($db), '-f', '-' ],
		'<', \$script, '>', \my $o, '2>', \my $e);
}
{
	my $script = join '', map { "CREATE DATABASE tmp$_; DROP DATABASE tmp$_;\n" } 1 .. 15;
	push @h, IPC::Run::start([ $node->installed_command('psql'), '-XAtq', '-d', $node->connstr('postgres'), '-f', '-' ],
		'<', \$script, '>', \my $o, '2>', \my $e);
}
$_->finish for @h;
pass('concurrent CREATE/DROP EXTENSION and CREATE/DROP DATABASE finished');

# extension dropped everywhere: no worker in c1..c3
ok(defined RedisSync::Compare::wait_for(
		sub { sql('postgres', "SELECT count(*) FROM redis_sync.worker_stats WHERE database IN ('c1','c2','c3')") eq '0' }, 15),
	'after the last DROP EXTENSION no database keeps a slot');
sql($_, 'CREATE EXTENSION redis_sync') for @dbs;
for my $db (@dbs)
{
	ok(defined RedisSync::Compare::wait_for(sub { worker_pid($db) != 0 }, 10), "$db: worker after CREATE EXTENSION");
}
sql('c2', 'DROP EXTENSION redis_sync');
ok(defined RedisSync::Compare::wait_for(sub { worker_pid('c2') == 0 }, 10), 'c2: DROP EXTENSION stops its worker');
ok(worker_pid('c1') != 0 && worker_pid('c3') != 0, 'c1 and c3 keep theirs');
is(sql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'redis_sync worker'"),
	'3', 'three workers: postgres, c1, c3');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|no redis_sync worker slot is free/, 'no crash, no slot shortage');
$node->stop;
done_testing();
