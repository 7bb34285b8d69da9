# Outbox delivery and REINDEX (or anything else that takes a ShareLock on
# the outbox) do not deadlock.  A delivery read the outbox under its weak
# locks and upgraded to RowExclusiveLock for the delete; a REINDEX granted
# its ShareLock in between then waited for the index the read held, and
# one of the two was killed by the deadlock detector.  Delivery now takes
# RowExclusiveLock before it reads.  Async writers, the worker and
# flush() calls run while REINDEX TABLE redis_sync.outbox loops; the log
# must show no deadlock, and the cache must match the table.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;
use IPC::Run ();
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('reindex', redis => $redis,
	extra_conf => "deadlock_timeout = '50ms'\nlog_lock_waits = off\n");

my $t = RedisSync::Synced::synced_table($node, 'w', columns => 'id int PRIMARY KEY, v int',
	with => "delivery => 'async'", fill => 'SELECT g, 0 FROM generate_series(1, 200) g');
ok(defined RedisSync::Compare::wait_outbox_empty($node, 30),
	'initial rows delivered');

my $script = PostgreSQL::Test::Utils::tempdir() . '/u.sql';
open my $fh, '>', $script or die;
print $fh "\\set id random(1, 200)\nUPDATE w SET v = v + 1 WHERE id = :id;\n";
close $fh;
my $flush = PostgreSQL::Test::Utils::tempdir() . '/f.sql';
open $fh, '>', $flush or die;
print $fh "SELECT redis_sync.flush('w');\n";
close $fh;

my $log_start = -s $node->logfile;
my ($out, $err) = ('', '');
my $writers = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '8', '-f', $script, '-d', $node->connstr('postgres') ],
	'>', \$out, '2>', \$err);
my ($fout, $ferr) = ('', '');
my $flushers = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '1', '-T', '8', '-f', $flush, '-d', $node->connstr('postgres') ],
	'>', \$fout, '2>', \$ferr);

# REINDEX in a loop, in one session, for as long as the writers run
my $reindexer = $node->background_psql('postgres', on_error_stop => 0);
my ($n, $failed, $deadline) = (0, 0, time + 8);
while (time < $deadline)
{
	my (undef, $error) = $reindexer->query('REINDEX TABLE redis_sync.outbox');
	$n++;
	$failed++ if $error;
	$reindexer->{stderr} = '';
}
$reindexer->quit;
$writers->finish;
$flushers->finish;
cmp_ok($n, '>', 10, "REINDEX ran $n times during the load");
is($failed, 0, 'every REINDEX succeeded');
is($writers->result(0), 0, 'the writers ran without error') or diag($err);
is($flushers->result(0), 0, 'the flush() calls ran without error') or diag($ferr);

ok(defined RedisSync::Compare::wait_outbox_empty($node, 60),
	'the outbox empties');
my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile, $log_start);
my @dead = $log =~ /deadlock detected/g;
is(scalar(@dead), 0, 'no deadlock between delivery and REINDEX');
$t->wait_cache_matches($redis, name => 'cache matches the table');

done_testing();
