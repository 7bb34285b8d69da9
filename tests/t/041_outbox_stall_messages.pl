# Writers while Redis stalls repeatedly, with the worker delivering the
# outbox (issue 12): the failure messages must be intact text and nothing
# may crash.
#
# In 0.1 the worker logged its delivery failure after the memory of the
# message was freed ("could not deliver the outbox: Redis at@", random
# bytes) and sometimes segfaulted.  Here 4 pgbench clients write to an async
# and a sync (eventual) write-through table with
# redis_sync.command_timeout = 200ms, and Redis is stalled four times by
# CLIENT PAUSE 1500 WRITE (reads such as the worker's INFO probe still
# answer, so the worker keeps trying to deliver and times out).  Asserted:
# delivery failures were logged, every one is well-formed text naming the
# server, no process died, and afterwards the outbox drains and verify() is
# clean.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use IPC::Run ();
use Test::More;
use Time::HiRes qw(time sleep);

my $ROWS   = 500;
my $PAUSES = 4;
# RS_TEST_SLOW=1: the server runs under valgrind (README, "Development")
my $SLOW     = $ENV{RS_TEST_SLOW} // 0;
my $DURATION = $SLOW ? 240 : 20;    # seconds of pgbench
my $BETWEEN  = $SLOW ? 50  : 500;   # Redis commands between two stalls

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node(
	'stall_messages',
	redis      => $redis,
	extra_conf => <<'EOC');
redis_sync.command_timeout = '200ms'
redis_sync.naptime = '100ms'
EOC

$node->safe_psql(
	'postgres', qq{
CREATE TABLE ta (id int PRIMARY KEY, v int, note text);
CREATE TABLE ts (id int PRIMARY KEY, v int, note text);
SELECT redis_sync.write_through('ta', key_prefix => 'ta:', delivery => 'async');
SELECT redis_sync.write_through('ts', key_prefix => 'ts:');
INSERT INTO ta SELECT g, g, 'n' || g FROM generate_series(1, $ROWS) g;
INSERT INTO ts SELECT g, g, 'n' || g FROM generate_series(1, $ROWS) g;
});

my $dir  = PostgreSQL::Test::Utils::tempdir();
my $file = "$dir/writes.sql";
open my $fh, '>', $file or die "$file: $!";
print $fh <<"SQL";
\\set id random(1, $ROWS)
\\set v random(1, 1000000)
UPDATE ta SET v = :v, note = 'u' || :v WHERE id = :id;
UPDATE ts SET v = :v WHERE id = :id;
SQL
close $fh;

sub redis_commands
{
	my ($v) = $redis->cli('INFO', 'stats') =~ /total_commands_processed:(\d+)/;
	return $v // 0;
}

my ($out, $err) = ('', '');
my $bench = IPC::Run::start(
	[
		$node->installed_command('pgbench'), '-n', '-c', 4, '-j', 4,
		'-T', $DURATION, '-f', $file, '-h', $node->host, '-p', $node->port, 'postgres'
	],
	'<', \undef, '>', \$out, '2>', \$err,
	IPC::Run::timeout(300));

for my $pass (1 .. $PAUSES)
{
	# Redis must have served writes since the last stall (deadline-bound)
	my $base     = redis_commands();
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (redis_commands() < $base + $BETWEEN)
	{
		die "no progress before pause $pass" if time > $deadline;
		sleep 0.05;
	}
	is($redis->cli('CLIENT', 'PAUSE', 1500, 'WRITE'), 'OK', "stall $pass: CLIENT PAUSE 1500 WRITE");
	# a write waits out the pause
	is($redis->cli('SET', 'stall:probe', $pass), 'OK', "stall $pass is over");
}
$bench->finish;
my $rc = $? >> 8;
is($rc, 0, 'pgbench exit code 0: no client aborted') or diag($err);
my ($n) = $out =~ /number of transactions actually processed: (\d+)/;
cmp_ok($n // 0, '>', 100, 'writers committed transactions through the stalls');

my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no process terminated by a signal');
unlike($err, qr/server closed the connection|terminating connection because of crash/,
	'no writer lost its connection to a crash');

# every message about a failed delivery is intact text
my @fail = $log =~ /(could not deliver the outbox:[^\n]*(?:\n[^\n]*DETAIL:[^\n]*)?)/g;
cmp_ok(scalar(@fail), '>', 0, 'the worker logged failed deliveries')
  or diag('no delivery failure found in the log');
my $server = qr/127\.0\.0\.1:\d+/;
my $wellformed = qr/^could\ not\ deliver\ the\ outbox:\ (?:
	  Redis\ at\ $server\ did\ not\ answer\ within\ 200\ ms
	| lost\ connection\ to\ Redis\ at\ $server
	| could\ not\ connect\ to\ Redis\ at\ $server
	| Redis\ at\ $server\ is\ not\ being\ tried:\ the\ circuit\ breaker\ is\ open
	| invalid\ reply\ from\ Redis\ at\ $server
	)$/x;
my @bad;
for my $m (@fail)
{
	my ($msg, $detail) = split /\n/, $m, 2;
	push @bad, $m unless $msg =~ $wellformed;
	push @bad, $m if defined $detail && $detail =~ /[^\x20-\x7e]/;
}
is(scalar(@bad), 0, 'every delivery failure message is well-formed')
  or diag("malformed:\n" . join("\n", @bad[0 .. ($#bad < 5 ? $#bad : 5)]));
# nothing the extension logged carries bytes that are not text
my @binary = grep { /redis_sync|Redis/ && /[^\x09\x20-\x7e]/ } split /\n/, $log;
is(scalar(@binary), 0, 'no log line about Redis contains garbage bytes')
  or diag(join("\n", @binary[0 .. ($#binary < 5 ? $#binary : 5)]));

# afterwards everything arrives
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
while ($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox') ne '0')
{
	last if time > $deadline;
	sleep 0.1;
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'),
	'0', 'the outbox drained after the stalls');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('ta')"),
	'0', 'verify(ta) is clean');
is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('ts')"),
	'0', 'verify(ts) is clean');

$node->stop;
$redis->stop;

done_testing();
