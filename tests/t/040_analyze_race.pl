# Writes racing ANALYZE and autovacuum (issue 12): the configuration cache
# must survive an invalidation that arrives while an entry loads.
#
# 4 pgbench clients update a sync and an async write-through table for 15 s
# while another pgbench client loops ANALYZE on both, and autovacuum runs
# with autovacuum_naptime = 1s and thresholds of a few rows.  Every ANALYZE
# invalidates the tables' relcache, so every writer reloads its cached
# configuration (an SPI query) again and again while more invalidations
# arrive.  In 0.1 this segfaulted within seconds.  Asserted: no backend or
# worker died (no "terminated by signal" in the server log), no pgbench
# client aborted, autovacuum really ran, and verify() is clean afterwards.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use IPC::Run ();
use Test::More;
use Time::HiRes qw(time sleep);

my $ROWS    = 200;
# RS_TEST_SLOW=1: the server runs under valgrind (README, "Development")
my $SLOW    = $ENV{RS_TEST_SLOW} // 0;
my $SECONDS = $SLOW ? 60 : 15;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'analyze_race',
	redis      => $redis,
	extra_conf => <<'EOC');
autovacuum = on
autovacuum_naptime = 1s
autovacuum_vacuum_threshold = 5
autovacuum_analyze_threshold = 5
autovacuum_vacuum_scale_factor = 0
autovacuum_analyze_scale_factor = 0
autovacuum_vacuum_cost_delay = 0
EOC

$node->safe_psql(
	'postgres', qq{
CREATE TABLE ts (id int PRIMARY KEY, v int, note text);
CREATE TABLE ta (id int PRIMARY KEY, v int, note text);
SELECT redis_sync.write_through('ts', key_prefix => 'ts:');
SELECT redis_sync.write_through('ta', key_prefix => 'ta:', delivery => 'async');
INSERT INTO ts SELECT g, g, 'n' || g FROM generate_series(1, $ROWS) g;
INSERT INTO ta SELECT g, g, 'n' || g FROM generate_series(1, $ROWS) g;
});

my $dir = PostgreSQL::Test::Utils::tempdir();
sub script
{
	my ($name, $body) = @_;
	open my $fh, '>', "$dir/$name" or die "$dir/$name: $!";
	print $fh $body;
	close $fh;
	return "$dir/$name";
}
my $writes = script('writes.sql', <<"SQL");
\\set id random(1, $ROWS)
\\set v random(1, 1000000)
UPDATE ts SET v = :v, note = 'u' || :v WHERE id = :id;
UPDATE ta SET v = :v WHERE id = :id;
SQL
my $analyze = script('analyze.sql', <<'SQL');
ANALYZE ts;
ANALYZE ta;
SQL

sub pgbench
{
	my ($clients, $file, $out, $err) = @_;
	return IPC::Run::start(
		[
			$node->installed_command('pgbench'), '-n',
			'-c', $clients, '-j', $clients, '-T', $SECONDS, '-f', $file,
			'-h', $node->host, '-p', $node->port, 'postgres'
		],
		'<', \undef, '>', $out, '2>', $err,
		IPC::Run::timeout(300));
}

my ($wout, $werr, $aout, $aerr) = ('', '', '', '');
my $w = pgbench(4, $writes, \$wout, \$werr);
my $a = pgbench(1, $analyze, \$aout, \$aerr);
$w->finish;
my $wrc = $? >> 8;
$a->finish;
my $arc = $? >> 8;

is($wrc, 0, 'writers: pgbench exit code 0') or diag($werr);
is($arc, 0, 'ANALYZE loop: pgbench exit code 0') or diag($aerr);
unlike($werr, qr/aborted|terminat|server closed/i, 'no writer client aborted');
my ($nw) = $wout =~ /number of transactions actually processed: (\d+)/;
my ($na) = $aout =~ /number of transactions actually processed: (\d+)/;
cmp_ok($nw // 0, '>', $SLOW ? 10 : 100, 'writers committed transactions');
cmp_ok($na // 0, '>', $SLOW ? 2 : 10,   'ANALYZE ran in a loop meanwhile');
note("writes: " . ($nw // 0) . ", ANALYZE rounds: " . ($na // 0));

my $autovac = $node->safe_psql('postgres',
	"SELECT sum(autovacuum_count + autoanalyze_count) FROM pg_stat_user_tables WHERE relname IN ('ts', 'ta')");
cmp_ok($autovac, '>', 0, 'autovacuum ran on the tables during the run');

my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no process terminated by a signal');
unlike($log, qr/server process .* was terminated|all server processes terminated/,
	'no crash recovery');

# async keys are delivered by the worker: wait (deadline-bound) for the outbox
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
while ($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox') ne '0')
{
	last if time > $deadline;
	sleep 0.1;
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'),
	'0', 'the outbox was delivered');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('ts')"),
	'0', 'verify(ts) is clean');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('ta')"),
	'0', 'verify(ta) is clean');

$node->stop;
$redis->stop;

done_testing();
