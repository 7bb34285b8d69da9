# Write-through under pgbench writers (UPDATE, DELETE + re-INSERT, DELETE,
# upsert) while the test process runs, in turn: TRUNCATE, TRUNCATE RESTART
# IDENTITY in a transaction that writes again, a rolled-back TRUNCATE,
# warm(), resync(), unsync() without purge followed by write_through()
# (tests/t/363: the keys it left were kept stale), unsync(purge => true)
# followed by write_through(); and Redis stalls: DEBUG SLEEP past
# command_timeout and CLIENT PAUSE WRITE.  For an eventual sync table and
# an async one.  After the writers stop and flush(): verify() finds nothing
# and every cached row has its version key.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use IPC::Run ();
use Test::More;
use Time::HiRes qw(time);

my $ROWS = 500;
my $SECS = 8;

my $redis = RedisSync::Test::redis_object(extra => [ '--enable-debug-command', 'yes' ]);
$redis->start;
my $node = RedisSync::Test::new_node(
	'trunc_chaos',
	redis      => $redis,
	extra_conf => "redis_sync.command_timeout = '300ms'\n");

my $dir = PostgreSQL::Test::Utils::tempdir();
for my $delivery ('sync', 'async')
{
	my $tbl = "w_$delivery";
	my $p   = "$delivery:";
	my $sync = "SELECT redis_sync.write_through('$tbl', key_prefix => '$p', delivery => '$delivery')";
	$node->safe_psql('postgres', qq{
		CREATE TABLE $tbl (id int PRIMARY KEY, v bigint, note text);
		INSERT INTO $tbl SELECT g, 0, 'n' FROM generate_series(1, $ROWS) g;
		$sync;
		SELECT redis_sync.warm('$tbl');
	});
	my %scripts = (
		'upd.sql' => "\\set id random(1, $ROWS)\nUPDATE $tbl SET v = v + 1 WHERE id = :id;\n",
		'rec.sql' => "\\set id random(1, $ROWS)\nBEGIN;\nDELETE FROM $tbl WHERE id = :id;\n"
		  . "INSERT INTO $tbl VALUES (:id, 1000000 + :id, 'r') ON CONFLICT DO NOTHING;\nCOMMIT;\n",
		'del.sql' => "\\set id random(1, $ROWS)\nDELETE FROM $tbl WHERE id = :id;\n",
		'ins.sql' => "\\set id random(1, $ROWS)\nINSERT INTO $tbl VALUES (:id, 0, 'i') "
		  . "ON CONFLICT (id) DO UPDATE SET v = $tbl.v + 1;\n");
	my @f;
	for my $s (sort keys %scripts)
	{
		open my $fh, '>', "$dir/$delivery-$s" or die $!;
		print $fh $scripts{$s};
		close $fh;
		push @f, '-f', "$dir/$delivery-$s" . ($s eq 'ins.sql' ? '@3' : '');
	}
	my ($out, $err) = ('', '');
	my $bench = IPC::Run::start(
		[
			$node->installed_command('pgbench'), '-n', '-c', 4, '-j', 4,
			'-T', $SECS, @f, '-h', $node->host, '-p', $node->port, 'postgres'
		],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(300));

	my @steps = (
		"TRUNCATE $tbl",
		"BEGIN; TRUNCATE $tbl RESTART IDENTITY; "
		  . "INSERT INTO $tbl SELECT g, 5, 't' FROM generate_series(1, $ROWS / 2) g; COMMIT",
		"BEGIN; TRUNCATE $tbl; ROLLBACK",
		"SELECT redis_sync.warm('$tbl')",
		"SELECT redis_sync.resync('$tbl')",
		"SELECT redis_sync.unsync('$tbl'); $sync",
		"SELECT redis_sync.unsync('$tbl', purge => true); $sync",
		'DEBUG SLEEP',
		'PAUSE');
	my ($i, $t0, %errs) = (0, time);
	while (time - $t0 < $SECS - 1)
	{
		my $step = $steps[ $i++ % @steps ];
		if ($step eq 'DEBUG SLEEP')
		{
			$redis->cli('DEBUG', 'SLEEP', '0.6');
			next;
		}
		if ($step eq 'PAUSE')
		{
			$redis->pause_ms(600);
			next;
		}
		my ($ret, $o, $e) = $node->psql('postgres', $step);
		# a step caught in a stall fails; the rest must not
		$errs{$1}++ if $ret != 0 && $e =~ /ERROR:\s+(.*)/;
	}
	$bench->finish;
	note("step errors: " . join('; ', map { "$_ x$errs{$_}" } sort keys %errs));
	my @bad = grep { !/Redis|circuit/ } keys %errs;
	is(scalar(@bad), 0, "$delivery: steps failed only for Redis stalls") or diag(join("\n", @bad));
	like($out, qr/number of failed transactions: 0 /, "$delivery: no writer transaction failed")
	  or diag($err);

	# writers stopped: deliver what is queued, wait for queued warms
	$node->safe_psql('postgres', 'SELECT redis_sync.flush()');
	ok(defined RedisSync::Compare::wait_outbox_empty($node, 60), "$delivery: outbox delivered");
	$node->safe_psql('postgres', "SELECT redis_sync.warm('$tbl')");
	is($node->safe_psql('postgres', "SELECT count(*) FROM redis_sync.verify('$tbl')"), '0',
		"$delivery: verify() finds nothing");
	my $keys = $redis->cli('EVAL', q{
		local n = 0
		for _, k in ipairs(redis.call('KEYS', ARGV[1] .. '*')) do
			if redis.call('EXISTS', '{' .. k .. '}:rs_version') == 0 then n = n + 1 end
		end
		return n}, '0', $p);
	is($keys, '0', "$delivery: every cached row has its version key");
}

done_testing();
