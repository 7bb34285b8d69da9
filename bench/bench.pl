#!/usr/bin/env perl
# redis_sync benchmarks; started by bench/run.sh inside a sandbox (PGHOST, PGPORT,
# PGUSER, PGDATABASE, REDIS_PORT, SANDBOX_DIR, RUN_USER in the environment).
# Every comparison alternates baseline and subject runs; each figure is the
# median of BENCH_RUNS (>= 3) runs.  Only standard tools are driven: pgbench,
# psql, redis-cli, redis-benchmark; Redis is also spoken to directly over RESP.
use strict;
use warnings;
use Time::HiRes qw(time sleep);
use IO::Select;
use FindBin;
use lib "$FindBin::Bin/../tests/lib";
use RedisSync::RESP;    # the RESP client the TAP tests use
use JSON::PP;
use List::Util ();
use POSIX qw(strftime :sys_wait_h);
use File::Temp qw(tempdir);

$| = 1;
my $MODE  = $ENV{BENCH_MODE} // 'full';
my $QUICK = $MODE eq 'quick';
my $REPO  = $ENV{BENCH_REPO} or die "bench.pl: run it through bench/run.sh\n";
my $RPORT = $ENV{REDIS_PORT} or die "bench.pl: REDIS_PORT not set\n";
my $SBDIR = $ENV{SANDBOX_DIR} or die "bench.pl: SANDBOX_DIR not set\n";
my $RUNS  = $ENV{BENCH_RUNS} // 3;
$RUNS = 3 if $RUNS < 3;
my %ONLY = map { $_ => 1 } split /,/, ($ENV{BENCH_ONLY} // '');
my $T0   = time;
my $TMP  = tempdir('redis_sync_bench_work.XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $TMP;

# ---------------------------------------------------------------- parameters
my %P = $QUICK
  ? (single_T => 1, tpcb_T => 1, tpcb_scale => 10, bulk_rows => 100_000, naive_rows => 20_000,
	mem_rows => 100_000, mem_buffer => '4MB', trunc_rows => 100_000, trunc_other_keys => 200_000, lag_changes => 2_000, lag_rate => 1000, outage_rows => 100_000, restart_tables => 20, restart_rows => 1000,
	idle_secs => 2, idle_wb => 200, idle_wt => 100, drain_rows => 100_000, wblag_secs => 2, sc_modes => ['on'], wblag_rate => 5000,
	scale_max => 100_000, warm_rows => 200_000)
  : (single_T => 8, tpcb_T => 8, tpcb_scale => 10, bulk_rows => 100_000, naive_rows => 100_000,
	mem_rows => 1_000_000, trunc_rows => 300_000, trunc_other_keys => 1_000_000, lag_changes => 10_000, lag_rate => 1000, outage_rows => 100_000, restart_tables => 100, restart_rows => 1000,
	idle_secs => 10, idle_wb => 900, idle_wt => 100, drain_rows => 200_000, wblag_secs => 10, sc_modes => ['on', 'off'], wblag_rate => 5000,
	scale_max => 100_000, warm_rows => 1_000_000);

my @ROWS;        # the summary table
my %DETAIL;      # everything else, for latest.json
my @PROBLEMS;    # benchmark failures (reported, the rest carries on)

sub say_ { printf STDERR "[%6.1fs] %s\n", time - $T0, join('', @_) }

# ---------------------------------------------------------------- helpers
sub median
{
	my @v = sort { $a <=> $b } grep { defined } @_;
	return undef unless @v;
	return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

sub pctl
{
	my ($p, @v) = @_;
	@v = sort { $a <=> $b } @v;
	return undef unless @v;
	my $i = int($p / 100 * @v + 0.999999) - 1;
	$i = 0 if $i < 0;
	$i = $#v if $i > $#v;
	return $v[$i];
}

# run a command with a timeout; returns (exit code, combined output)
sub run_cmd
{
	my ($timeout, $env, @cmd) = @_;
	my $out = '';
	my $pid = open(my $fh, '-|') // die "fork: $!";
	if (!$pid)
	{
		open(STDERR, '>&', \*STDOUT);
		%ENV = (%ENV, %{ $env || {} });
		exec('timeout', '-k', '5', $timeout, @cmd) or die "exec $cmd[0]: $!";
	}
	local $/;
	$out = <$fh> // '';
	close $fh;
	my $rc = $? >> 8;
	return ($rc, $out);
}

my $SQLN = 0;

# run SQL through psql (one session); dies with psql's message on error
sub psql
{
	my ($sql, %o) = @_;
	my $f = "$TMP/q" . (++$SQLN) . ".sql";
	open(my $fh, '>', $f) or die "$f: $!";
	print $fh $sql;
	close $fh;
	my ($rc, $out) = run_cmd($o{timeout} // 600, $o{env},
		'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-f', $f);
	if ($rc != 0)
	{
		my $what = length($sql) > 300 ? substr($sql, 0, 300) . '...' : $sql;
		die(($rc == 124 ? "psql timed out after $o{timeout}s" : "psql failed (exit $rc)")
			. ":\n$out\n--- SQL ---\n$what\n");
	}
	$out =~ s/\s+\z//;
	return $out;
}

sub psql1 { my $o = psql(@_); return (split /\n/, $o)[-1] }

# psql with \timing: returns the list of "Time:" values in ms plus the output
sub psql_timed
{
	my ($sql, %o) = @_;
	my $out = psql("\\timing on\n$sql", %o);
	my @t = $out =~ /^Time: ([\d.]+) ms/mg;
	return (\@t, $out);
}

# a file's whole text
sub slurp
{
	my ($f) = @_;
	open(my $fh, '<', $f) or die "$f: $!";
	local $/;
	return <$fh>;
}

sub write_file
{
	my ($name, $text) = @_;
	my $f = "$TMP/$name";
	open(my $fh, '>', $f) or die "$f: $!";
	print $fh $text;
	close $fh;
	return $f;
}

# pgbench; returns { tps, lat_ms, txns }
sub pgbench
{
	my (%o) = @_;
	my @args = ('pgbench', '-n', '-M', $o{mode} // 'prepared', '-c', $o{c} // 1, '-j', $o{c} // 1);
	push @args, '-T', $o{T} if $o{T};
	push @args, '-t', $o{t} if $o{t};
	push @args, '-R', $o{R} if $o{R};
	push @args, map { ('-D', $_) } @{ $o{D} || [] };
	push @args, '-f', $o{f} if $o{f};
	push @args, '-b', $o{b} if $o{b};
	my %env;
	$env{PGOPTIONS} = $o{pgoptions} if $o{pgoptions};
	my $limit = ($o{T} // 0) + 60 + ($o{t} ? 600 : 0);
	my ($rc, $out) = run_cmd($limit, \%env, @args);
	die "pgbench failed (exit $rc): @args\n$out\n" if $rc != 0 || $out !~ /tps = ([\d.]+)/;
	my %r = (tps => $1 + 0);
	$r{lat_ms} = $1 + 0 if $out =~ /latency average = ([\d.]+) ms/;
	$r{txns}   = $1 + 0 if $out =~ /number of transactions actually processed: (\d+)/;
	die "pgbench reported failed transactions:\n$out\n" if $out =~ /number of failed transactions: ([1-9]\d*)/;
	return \%r;
}

# ---------------------------------------------------------------- Redis over RESP
my $R;

sub redis_connect
{
	return RedisSync::RESP->connect(port => $RPORT, timeout => 5);
}

sub resp_encode { return RedisSync::RESP::encode(@_); }

sub redis
{
	$R ||= redis_connect();
	return $R->cmd(@_);
}

# remove the keys of key prefix P and their companions ({P...}:rs_version),
# one script call (run between measurements only: it blocks Redis while it
# scans).  Sections call it for the tables they leave behind, so that no
# section's keyspace (the SCAN of a purge, the refresh after a Redis
# restart) holds the keys of the sections before it
sub forget_prefix
{
	my ($prefix) = @_;
	for my $pat ("$prefix*", "{$prefix*")
	{
		redis('EVAL', "local c = '0' repeat local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 1000); "
			  . "c = r[1]; for _, k in ipairs(r[2]) do redis.call('UNLINK', k) end until c == '0' return 0", '0', $pat);
	}
}

sub redis_info
{
	my $txt = redis('INFO', @_);
	my %h;
	for (split /\r?\n/, $txt) { $h{$1} = $2 if /^([^#:][^:]*):(.*)$/ }
	return \%h;
}

sub redis_cpu { my $i = redis_info('cpu'); return $i->{used_cpu_user} + $i->{used_cpu_sys} }

sub redis_cmdstat
{
	my ($cmd) = @_;
	my $i = redis_info('commandstats');
	my $v = $i->{"cmdstat_$cmd"} // '';
	my %h = map { split /=/ } split /,/, $v;
	return { calls => $h{calls} // 0, usec => $h{usec} // 0 };
}

# ---------------------------------------------------------------- result rows
sub fmt
{
	my ($v, $unit) = @_;
	return '-' unless defined $v;
	return ($unit ? "$v $unit" : "$v") if $v =~ /^-?\d+$/;
	my $s = abs($v) >= 100 ? sprintf('%.0f', $v) : abs($v) >= 10 ? sprintf('%.1f', $v) : sprintf('%.2f', $v);
	return $unit ? "$s $unit" : $s;
}

# add(bench, ours, baseline, unit, ratio_kind, target_text, met)
sub add_row
{
	my (%r) = @_;
	if (!defined $r{ratio} && defined $r{ours} && defined $r{base} && $r{base} != 0)
	{
		$r{ratio} = $r{ours} / $r{base};
	}
	push @ROWS, \%r;
	say_(sprintf("RESULT %-58s ours %-14s base %-14s ratio %-6s target %-14s %s",
			$r{bench}, fmt($r{ours}, $r{unit}), fmt($r{base}, $r{base_unit} // $r{unit}),
			defined $r{ratio} ? sprintf('%.2f', $r{ratio}) : '-', $r{target} // '-',
			!defined $r{met} ? '-' : $r{met} ? 'yes' : 'NO'));
}

sub problem
{
	my ($what, $err) = @_;
	$err =~ s/\s+\z//;
	say_("FAILED $what: $err");
	push @PROBLEMS, { benchmark => $what, error => $err };
	push @ROWS, { bench => $what, error => 1, note => 'FAILED: ' . (split /\n/, $err)[0] };
}

sub section
{
	my ($key, $title, $code) = @_;
	return if %ONLY && !$ONLY{$key};
	say_("== $title");
	my $t = time;
	# each section starts with a vacuumed queue (autovacuum also runs)
	eval { psql('VACUUM redis_sync.outbox'); 1 } or say_("VACUUM redis_sync.outbox failed: $@");
	# and with Redis done freeing what the section before unlinked (its lazy
	# free thread's CPU counts in used_cpu, which sections measure)
	my $deadline = time + 60;
	while ((redis_info('memory')->{lazyfree_pending_objects} // 0) > 0 && time < $deadline) { sleep 0.05 }
	eval { $code->(); 1 } or problem($title, $@ || 'unknown error');
	$DETAIL{section_seconds}{$key} = sprintf('%.1f', time - $t) + 0;
}

sub wait_outbox_empty
{
	my ($timeout) = @_;
	my $t = time;
	while (time - $t < $timeout)
	{
		my $n = psql1('SELECT count(*) FROM redis_sync.outbox');
		return time - $t if $n == 0;
		sleep 0.05;
	}
	die "outbox not empty after ${timeout}s: "
	  . psql('SELECT count(*), min(last_error) FROM redis_sync.outbox') . "\n";
}

sub backend_rss_poller;

# ================================================================= setup
say_("mode $MODE, $RUNS runs per figure, sandbox $SBDIR");
psql(<<'SQL');
ALTER SYSTEM SET fsync = on;
ALTER SYSTEM SET full_page_writes = on;
ALTER SYSTEM SET max_wal_size = '8GB';
ALTER SYSTEM SET checkpoint_timeout = '30min';
SELECT pg_reload_conf();
SQL
psql('CREATE EXTENSION redis_sync');
{
	my $deadline = time + 30;
	until (psql1('SELECT worker_running AND redis_run_id IS NOT NULL FROM redis_sync.worker_stats') eq 't')
	{
		die "the redis_sync worker did not start within 30s (see $SBDIR/postgres.log)\n" if time > $deadline;
		sleep 0.2;
	}
}
redis('CONFIG', 'SET', 'latency-monitor-threshold', '1');
my %SETTINGS = map { split /\|/ } split /\n/, psql(<<'SQL');
SELECT name, setting || coalesce(unit, '') FROM pg_settings
 WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers', 'redis_sync.chunk_size',
                'redis_sync.max_buffer_bytes', 'redis_sync.naptime', 'max_wal_size', 'wal_level')
SQL
$DETAIL{settings} = \%SETTINGS;
say_("settings: " . join(', ', map { "$_=$SETTINGS{$_}" } sort keys %SETTINGS));

# ================================================================= 1. single-row writes
sub make_table
{
	my ($name, $rows) = @_;
	psql(<<"SQL");
CREATE TABLE $name (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL);
INSERT INTO $name SELECT g, g, 'row number ' || g FROM generate_series(1, $rows) g;
VACUUM ANALYZE $name;
SQL
}

section('single', '1. single-row UPDATE, 100,000-row table', sub {
	my %variants = (
		base   => 'unsynced',
		wt     => 'write_through hash (sync push)',
		async  => 'write_through async delivery',
		inv    => 'invalidate',
		trig   => 'hand-built PL/pgSQL outbox trigger',
		rtt    => 'floor: one Redis PING per transaction, no sync');
	my @order = qw(base wt async inv trig rtt);
	make_table("s_$_", 100_000) for @order;
	psql(slurp("$FindBin::Bin/hand_outbox.sql") . <<'SQL');
SELECT redis_sync.write_through('s_wt', key_prefix => 's_wt:', warm => false);
SELECT redis_sync.write_through('s_async', key_prefix => 's_async:', delivery => 'async', warm => false);
SELECT redis_sync.invalidate('s_inv', key_prefix => 's_inv:');
SELECT redis_sync.warm('s_wt'), redis_sync.warm('s_async');
CREATE TRIGGER hand_outbox_capture AFTER INSERT OR UPDATE OR DELETE ON s_trig
    FOR EACH ROW EXECUTE FUNCTION hand_outbox_capture('s_trig:');
-- the floor of any synchronous push: the same UPDATE plus one bare round
-- trip to the same Redis (PING, from a trigger), nothing synced
CREATE FUNCTION rtt_ping() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM redis_sync.command('PING');
    RETURN NULL;
END $$;
CREATE TRIGGER rtt_ping AFTER UPDATE ON s_rtt FOR EACH ROW EXECUTE FUNCTION rtt_ping();
SQL
	wait_outbox_empty(120);
	my %file = map { $_ => write_file("single_$_.sql",
			"\\set id random(1, 100000)\nUPDATE s_$_ SET v = v + 1 WHERE id = :id;\n") } @order;
	my %tps;    # {sc}{c}{variant} = [..]
	for my $round (1 .. $RUNS)
	{
		for my $sc (@{ $P{sc_modes} })
		{
			# the server's setting too, as on a real server: the worker's
			# own commits (async delivery) follow it (the sandbox's default
			# is off)
			psql("ALTER SYSTEM SET synchronous_commit = $sc; SELECT pg_reload_conf();");
			for my $c (1, 4)
			{
				# rotate the order each round so no variant always runs first
				my @o = (@order[ ($round - 1) % @order .. $#order ], @order[ 0 .. ($round - 1) % @order - 1 ]);
				for my $v (@o)
				{
					psql('TRUNCATE hand_outbox') if $v eq 'trig';
					my $r = pgbench(f => $file{$v}, c => $c, T => $P{single_T},
						pgoptions => "-c synchronous_commit=$sc");
					push @{ $tps{$sc}{$c}{$v} }, $r->{tps};
					wait_outbox_empty(120) if $v eq 'async';
				}
			}
		}
		psql(join('', map { "VACUUM s_$_;\n" } @order));
		say_("single-row round $round done");
	}
	for my $sc (@{ $P{sc_modes} })
	{
		for my $c (1, 4)
		{
			my %m = map { $_ => median(@{ $tps{$sc}{$c}{$_} }) } @order;
			for my $v (qw(wt async inv))
			{
				# issue 18's targets: a synchronous push (write-through or
				# invalidate) costs one round trip, which weighs most when
				# commits are cheap (sc=off); async delivery takes the network
				# out of the transaction and must beat the hand-built trigger
				my $async  = $v eq 'async';
				my $target = $async ? ($c == 1 ? 0.90 : 0.85) : ($sc eq 'off' ? 0.60 : 0.85);
				my $ratio  = $m{$v} / $m{base};
				add_row(bench => "1. single-row UPDATE c=$c sc=$sc: $variants{$v}",
					ours => $m{$v}, base => $m{base}, unit => 'tps', ratio => $ratio,
					target => ">= $target x" . ($async ? ', > trigger' : ''),
					met => ($ratio >= $target && (!$async || $m{$v} > $m{trig})) ? 1 : 0,
					note => sprintf('hand-built trigger %.0f tps', $m{trig}));
			}
			add_row(bench => "1. single-row UPDATE c=$c sc=$sc: $variants{$_} (reference)",
				ours => $m{$_}, base => $m{base}, unit => 'tps', target => 'reference') for qw(trig rtt);
			$DETAIL{single}{"sc_$sc"}{"c$c"} = { map { $_ => { median_tps => $m{$_}, runs => $tps{$sc}{$c}{$_} } } @order };
		}
	}
	psql('ALTER SYSTEM RESET synchronous_commit; SELECT pg_reload_conf();');
	psql('DROP TABLE s_trig, s_rtt, hand_outbox; DROP FUNCTION hand_outbox_capture(); SELECT redis_sync.unsync(t) FROM unnest(ARRAY[\'s_wt\', \'s_async\', \'s_inv\']::regclass[]) t');
});

section('tpcb', '1b. TPC-B (pgbench -s 10 -M prepared)', sub {
	my $s = $P{tpcb_scale};
	# tpcb_rtt: the floor of any synchronous push, as in section 1: the
	# same transaction plus one bare round trip to the same Redis (PING,
	# from a trigger on the one account it updates), nothing synced
	my @schemas = qw(tpcb_base tpcb_sync tpcb_rtt);
	for my $schema (@schemas)
	{
		psql("CREATE SCHEMA $schema");
		my ($rc, $out) = run_cmd(600, { PGOPTIONS => "-c search_path=$schema -c synchronous_commit=off" },
			'pgbench', '-i', '-q', '-s', $s);
		die "pgbench -i failed:\n$out\n" if $rc;
	}
	psql(<<'SQL');
SELECT redis_sync.write_through('tpcb_sync.pgbench_accounts', key_prefix => 'acc:', warm => false);
SELECT redis_sync.write_through('tpcb_sync.pgbench_tellers', key_prefix => 'tel:', warm => false);
SELECT redis_sync.write_through('tpcb_sync.pgbench_branches', key_prefix => 'br:', warm => false);
CREATE FUNCTION tpcb_rtt.ping() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM redis_sync.command('PING');
    RETURN NULL;
END $$;
CREATE TRIGGER ping AFTER UPDATE ON tpcb_rtt.pgbench_accounts FOR EACH ROW EXECUTE FUNCTION tpcb_rtt.ping();
SQL
	psql("SELECT redis_sync.warm('tpcb_sync.$_') FROM (VALUES (1)) v", timeout => 600)
	  for qw(pgbench_tellers pgbench_branches);
	my %tps;
	for my $round (1 .. $RUNS)
	{
		for my $sc (@{ $P{sc_modes} })
		{
			for my $c (1, 4)
			{
				# rotate the order each round so no variant always runs first
				my $k = ($round - 1) % @schemas;
				my @o = (@schemas[ $k .. $#schemas ], @schemas[ 0 .. $k - 1 ]);
				for my $schema (@o)
				{
					my $r = pgbench(b => 'tpcb-like', c => $c, T => $P{tpcb_T},
						pgoptions => "-c search_path=$schema -c synchronous_commit=$sc");
					push @{ $tps{$sc}{$c}{$schema} }, $r->{tps};
				}
			}
		}
		for my $schema (@schemas)
		{
			psql("VACUUM $schema.$_") for qw(pgbench_branches pgbench_tellers pgbench_accounts pgbench_history);
		}
		say_("TPC-B round $round done");
	}
	for my $sc (@{ $P{sc_modes} })
	{
		for my $c (1, 4)
		{
			my ($b, $o, $f) = map { median(@{ $tps{$sc}{$c}{$_} }) } @schemas;
			add_row(bench => "1. TPC-B s=$s c=$c sc=$sc: 3 tables write_through",
				ours => $o, base => $b, unit => 'tps', target => '>= 0.85 x', met => $o / $b >= 0.85 ? 1 : 0,
				note => sprintf('floor (one PING per transaction) %.2f x', $f / $b));
			add_row(bench => "1. TPC-B s=$s c=$c sc=$sc: floor: one Redis PING per transaction, no sync (reference)",
				ours => $f, base => $b, unit => 'tps', target => 'reference');
			$DETAIL{tpcb}{"sc_$sc"}{"c$c"} = { base => $tps{$sc}{$c}{tpcb_base}, synced => $tps{$sc}{$c}{tpcb_sync},
				floor => $tps{$sc}{$c}{tpcb_rtt} };
		}
	}
	psql('DROP SCHEMA tpcb_base CASCADE; DROP SCHEMA tpcb_sync CASCADE; DROP SCHEMA tpcb_rtt CASCADE');
	forget_prefix($_) for qw(acc: tel: br:);    # the drop's tombstones
});

# ================================================================= 2. bulk
my %BULK;    # medians reused by 3.
# Redis CPU microseconds for the writes of an INSERT of rows 1..N of the bulk
# section's shape into the synced table TBL (key prefix PREFIX), sent raw:
# TRUNCATE TBL first (its purge leaves the tombstones the measured INSERT
# overwrites), then per 1,000 rows their HSETs and one MSET of 32-digit
# versions, through redis-cli --pipe; TRUNCATE TBL again to remove them
sub raw_insert_cpu
{
	my ($n, $tbl, $prefix) = @_;
	my $v = '0' x 31 . '1';
	my $writes = "$TMP/raw_ins.resp";
	open(my $fw, '>', $writes) or die "$writes: $!";
	for (my $c = 1; $c <= $n; $c += 1000)
	{
		my @mset = ('MSET');
		for my $g ($c .. List::Util::min($c + 999, $n))
		{
			print $fw resp_encode('HSET', "$prefix$g", 'id', $g, 'v', $g, 'note', "row number $g");
			push @mset, "{$prefix$g}:rs_version", $v;
		}
		print $fw resp_encode(@mset);
	}
	close $fw;
	psql("TRUNCATE $tbl");
	my $cpu0 = redis_cpu();
	my ($rc, $out) = run_cmd(300, {}, 'sh', '-c', "redis-cli -h 127.0.0.1 -p $RPORT --pipe < '$writes'");
	die "redis-cli --pipe failed:\n$out\n" if $rc || $out !~ /errors: 0,/;
	my $cpu = redis_cpu() - $cpu0;
	psql("TRUNCATE $tbl");
	return $cpu * 1e6;
}

section('bulk', '2. bulk UPDATE / INSERT of 100,000 rows', sub {
	my $n = $P{bulk_rows};
	make_table('b_base', $n);
	make_table('b_wt',   $n);
	psql(<<"SQL");
SELECT redis_sync.write_through('b_wt', key_prefix => 'b:', warm => false);
SELECT redis_sync.warm('b_wt');
CREATE TABLE i_base (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL);
CREATE TABLE i_wt (LIKE i_base INCLUDING ALL);
SELECT redis_sync.write_through('i_wt', key_prefix => 'i:', warm => false);
SQL
	my $chunk = $SETTINGS{'redis_sync.chunk_size'};
	my (%el, %rt, %chunks, %rcpu, %evalus, %maxcmd, @bcpu, @bwall, @raw);
	my $session = sub {
		my ($tbl, $stmt) = @_;
		my $cpu0 = redis_cpu();
		redis('LATENCY', 'RESET');
		my $ev0 = redis_cmdstat('evalsha');
		my ($t, $out) = psql_timed(<<"SQL");
\\timing off
SELECT round_trips AS rt0, chunks AS ch0 FROM redis_sync.session_stats() \\gset
\\timing on
$stmt;
\\timing off
SELECT round_trips - :rt0, chunks - :ch0 FROM redis_sync.session_stats();
SQL
		my $cpu = redis_cpu() - $cpu0;
		my $ev1 = redis_cmdstat('evalsha');
		my $lat = redis('LATENCY', 'LATEST');
		my ($max) = map { $_->[3] } grep { $_->[0] eq 'command' } @{ $lat || [] };
		my ($rt, $ch) = split /\|/, (split /\n/, $out)[-1];
		return { ms => $t->[0], rt => $rt, chunks => $ch, rcpu_us => $cpu * 1e6,
			evalsha_us => $ev1->{usec} - $ev0->{usec}, max_cmd_ms => $max // 0 };
	};
	for my $round (1 .. $RUNS)
	{
		my @pairs = (
			[ 'upd_base', 'b_base', 'UPDATE b_base SET v = v + 1' ],
			[ 'upd_wt',   'b_wt',   'UPDATE b_wt SET v = v + 1' ],
			[ 'ins_base', 'i_base', "INSERT INTO i_base SELECT g, g, 'row number ' || g FROM generate_series(1, $n) g" ],
			[ 'ins_wt',   'i_wt',   "INSERT INTO i_wt SELECT g, g, 'row number ' || g FROM generate_series(1, $n) g" ],
			[ 'del_base', 'i_base', 'DELETE FROM i_base' ],
			[ 'del_wt',   'i_wt',   'DELETE FROM i_wt' ]);
		@pairs = @pairs[ 1, 0, 3, 2, 5, 4 ] if $round % 2 == 0;
		for my $p (@pairs)
		{
			my ($k, $tbl, $stmt) = @$p;
			psql("TRUNCATE $tbl") if $k =~ /^ins/;
			psql("VACUUM $tbl; CHECKPOINT");
			my $r = $session->($tbl, $stmt);
			push @{ $el{$k} }, $r->{ms};
			if ($k =~ /_wt$/)
			{
				push @{ $rt{$k} },     $r->{rt};
				push @{ $chunks{$k} }, $r->{chunks};
				push @{ $rcpu{$k} },   $r->{rcpu_us} / $n;
				push @{ $evalus{$k} }, $r->{evalsha_us} / $n;
				push @{ $maxcmd{$k} }, $r->{max_cmd_ms};
			}
		}
		# the INSERT's writes sent raw: what Redis itself spends to create the
		# same hashes and overwrite the same tombstones (the DELETE's; HSET per
		# row, one MSET of 32-digit versions per 1,000)
		push @raw, raw_insert_cpu($n, 'i_wt', 'i:') / $n;
		# redis-benchmark: the reference per-operation cost, same Redis, same run
		my $cpu0 = redis_cpu();
		my $t = time;
		my ($rc, $out) = run_cmd(120, {}, 'redis-benchmark', '-h', '127.0.0.1', '-p', $RPORT,
			'-P', '16', '-t', 'hset', '-n', '200000', '-r', '100000', '-q');
		die "redis-benchmark failed:\n$out\n" if $rc || $out !~ /HSET: ([\d.]+) requests per second/;
		push @bwall, 1e6 / $1;
		push @bcpu, (redis_cpu() - $cpu0) * 1e6 / 200_000;
		say_("bulk round $round done");
	}
	# the change buffer: bytes per buffered change against the change's encoded
	# size (key, field names and values), rows of ~100 bytes
	psql(<<"SQL");
CREATE TABLE bb_wt (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL);
INSERT INTO bb_wt SELECT g, g, rpad('row number ' || g, 80, '.') FROM generate_series(1, $n) g;
VACUUM ANALYZE bb_wt;
SELECT redis_sync.write_through('bb_wt', key_prefix => 'bb:', warm => false);
SQL
	my (@bratio, @bbytes, @benc, @bqueued, @bpushed);
	for my $round (1 .. $RUNS)
	{
		# unbounded: how big the buffer is; then the default bound: pushed or spilled
		my $out = psql(<<"SQL");
SELECT avg(octet_length('bb:' || id) + 2 + octet_length(id::text) + 1 + octet_length((v + 1)::text)
           + 4 + octet_length(note)) FROM bb_wt;
BEGIN;
SET LOCAL redis_sync.max_buffer_bytes = '1GB';
UPDATE bb_wt SET v = v + 1;
SELECT total_bytes FROM pg_backend_memory_contexts WHERE name = 'redis_sync change buffer';
ROLLBACK;
SELECT pushed AS p0, queued AS q0 FROM redis_sync.session_stats() \\gset
UPDATE bb_wt SET v = v + 1;
SELECT (pushed - :p0) || '|' || (queued - :q0) FROM redis_sync.session_stats();
SQL
		my ($enc, $bytes, $pq) = grep { /\S/ } split /\n/, $out;
		my ($p, $q) = split /\|/, $pq;
		push @benc, $enc;
		push @bbytes, $bytes / $n;
		push @bratio, $bytes / $n / $enc;
		push @bpushed, $p;
		push @bqueued, $q;
		wait_outbox_empty(600) if $q;
	}
	my $br = median(@bratio);
	add_row(bench => "2. buffer bytes per buffered change / its encoded size ($n-row UPDATE, ~100-byte rows)",
		ours => median(@bbytes), base => median(@benc), unit => 'B', ratio => $br, target => '<= 2 x',
		met => $br <= 2 ? 1 : 0, note => 'pg_backend_memory_contexts total_bytes of the change buffer / rows; '
		  . 'encoded size: key, field names and values');
	my $bq = median(@bqueued);
	add_row(bench => "2. that UPDATE with the default max_buffer_bytes: changes spilled to the outbox",
		ours => $bq, unit => '', target => '0 (pushed directly)', met => $bq == 0 ? 1 : 0,
		note => sprintf('%d pushed', median(@bpushed)));
	$DETAIL{buffer} = { rows => $n, bytes_per_change => \@bbytes, encoded_bytes => \@benc, ratio => \@bratio,
		pushed => \@bpushed, queued => \@bqueued };
	psql("SELECT redis_sync.unsync('bb_wt'); DROP TABLE bb_wt");
	my %m = map { $_ => median(@{ $el{$_} }) } keys %el;
	for my $op (qw(upd ins))
	{
		my $what = $op eq 'upd' ? 'UPDATE' : 'INSERT';
		add_row(bench => "2. one $what of $n rows: elapsed", ours => $m{"${op}_wt"}, base => $m{"${op}_base"},
			unit => 'ms', target => '<= 2.5 x', met => $m{"${op}_wt"} / $m{"${op}_base"} <= 2.5 ? 1 : 0);
		my $rtm = median(@{ $rt{"${op}_wt"} });
		add_row(bench => "2. one $what of $n rows: Redis round trips", ours => $rtm, unit => '',
			target => '< 100', met => $rtm < 100 ? 1 : 0,
			note => sprintf('%d chunks of %s keys', median(@{ $chunks{"${op}_wt"} }), $chunk));
		my ($c, $bc) = (median(@{ $rcpu{"${op}_wt"} }), median(@bcpu));
		add_row(bench => "2. one $what of $n rows: Redis CPU per row vs redis-benchmark -P 16 HSET",
			ours => $c, base => $bc, unit => 'us', target => '<= 2 x', met => $c / $bc <= 2 ? 1 : 0,
			note => sprintf('EVALSHA time %.2f us/row; redis-benchmark wall %.2f us/op',
				median(@{ $evalus{"${op}_wt"} }), median(@bwall)));
		if ($op eq 'ins')
		{
			my $rw = median(@raw);
			add_row(bench => "2. one $what of $n rows: Redis CPU per row vs the same writes sent raw (reference)",
				ours => $c, base => $rw, unit => 'us', target => 'reference',
				note => 'raw: HSET of each new key, MSET of the 32-digit versions over the tombstones the DELETE left, '
				  . 'piped by redis-cli --pipe without MULTI or scripts: what creating the keys costs Redis; per run, '
				  . 'ours ' . join(' / ', map { sprintf('%.2f', $_) } @{ $rcpu{ins_wt} }) . ' us, raw '
				  . join(' / ', map { sprintf('%.2f', $_) } @raw) . ' us');
		}
		my $mx = (sort { $b <=> $a } @{ $maxcmd{"${op}_wt"} })[0];
		add_row(bench => "2. one $what of $n rows: longest Redis command (one chunk)", ours => $mx, unit => 'ms',
			target => '<= 50 ms', met => $mx <= 50 ? 1 : 0,
			note => "max over runs, LATENCY LATEST (threshold 1 ms); chunk_size $chunk");
	}
	# the DELETE of every row the INSERT made: no target (an unsynced DELETE
	# only marks its rows; each synced one costs Redis an UNLINK and a
	# tombstone with its TTL)
	add_row(bench => "2. one DELETE of $n rows: elapsed (reference)", ours => $m{del_wt}, base => $m{del_base},
		unit => 'ms', target => 'reference',
		note => sprintf('%d round trips, %d chunks', median(@{ $rt{del_wt} }), median(@{ $chunks{del_wt} })));
	add_row(bench => "2. one DELETE of $n rows: Redis CPU per row vs redis-benchmark -P 16 HSET (reference)",
		ours => median(@{ $rcpu{del_wt} }), base => median(@bcpu), unit => 'us', target => 'reference',
		note => 'per run ' . join(' / ', map { sprintf('%.2f', $_) } @{ $rcpu{del_wt} }) . ' us');
	# the synced tables go, and their keys: a Redis restart (section 4b) would
	# warm them again, and a purge's SCAN (2c) would walk their keys
	psql("SELECT redis_sync.unsync('b_wt'); SELECT redis_sync.unsync('i_wt'); DROP TABLE b_base, b_wt, i_base, i_wt");
	forget_prefix($_) for qw(b: i:);
	%BULK = (upd_wt_ms => $m{upd_wt}, upd_base_ms => $m{upd_base});
	$DETAIL{bulk} = { rows => $n, chunk_size => $chunk, elapsed_ms => \%el, round_trips => \%rt, chunks => \%chunks,
		redis_cpu_us_per_row => \%rcpu, evalsha_us_per_row => \%evalus, longest_command_ms => \%maxcmd,
		redis_benchmark_cpu_us_per_op => \@bcpu, redis_benchmark_wall_us_per_op => \@bwall,
		raw_insert_cpu_us_per_row => \@raw };
});

# ================================================================= 3. naive per-row trigger
section('naive', '3. per-row redis_sync.command() trigger vs write-through', sub {
	my $n = $P{naive_rows};
	make_table('n_naive', $n);
	make_table('n_wt', $n);
	psql(<<'SQL');
SELECT redis_sync.write_through('n_wt', key_prefix => 'n_wt:', warm => false);
SELECT redis_sync.warm('n_wt');
CREATE FUNCTION naive_hset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM redis_sync.command('DEL', 'n_naive:' || OLD.id);
        RETURN OLD;
    END IF;
    PERFORM redis_sync.command('HSET', 'n_naive:' || NEW.id, 'id', NEW.id::text, 'v', NEW.v::text, 'note', NEW.note);
    RETURN NEW;
END $$;
CREATE TRIGGER naive_hset AFTER INSERT OR UPDATE OR DELETE ON n_naive FOR EACH ROW EXECUTE FUNCTION naive_hset();
SQL
	my (@naive, @ours);
	for my $round (1 .. $RUNS)
	{
		my @o = $round % 2 ? qw(n_naive n_wt) : qw(n_wt n_naive);
		for my $tbl (@o)
		{
			psql("VACUUM $tbl");
			my ($t) = psql_timed("UPDATE $tbl SET v = v + 1;", timeout => 900);
			push @{ $tbl eq 'n_wt' ? \@ours : \@naive }, $t->[0];
		}
	}
	my ($o, $b) = (median(@ours), median(@naive));
	add_row(bench => "3. UPDATE of $n rows: write_through vs per-row command('HSET') trigger",
		ours => $o, base => $b, unit => 'ms', ratio => $b / $o, target => '>= 10 x faster',
		met => $b / $o >= 10 ? 1 : 0, note => 'ratio = speedup');
	$DETAIL{naive} = { rows => $n, ours_ms => \@ours, naive_ms => \@naive };
	psql('DROP TABLE n_naive; SELECT redis_sync.unsync(\'n_wt\')');
});

# ================================================================= 2b. memory of a 1,000,000-row transaction
# Poll /proc/<backend>/status while a statement runs in that backend.
sub backend_rss_poller
{
	my ($sql, $timeout, $setup) = @_;
	$setup //= '';
	my $pidfile = "$TMP/backend.pid";
	unlink $pidfile;
	my $script = write_file('mem.sql', <<"SQL");
\\t on
\\a
SELECT pg_backend_pid() \\g $pidfile
SELECT pg_sleep(0.3);
$setup
SELECT round_trips AS rt0, queued AS q0, pushed AS p0 FROM redis_sync.session_stats() \\gset
\\timing on
$sql;
\\timing off
SELECT 'STATS|' || (round_trips - :rt0) || '|' || (queued - :q0) || '|' || (pushed - :p0) FROM redis_sync.session_stats();
SQL
	my $pid = open(my $fh, '-|') // die "fork: $!";
	if (!$pid)
	{
		open(STDERR, '>&', \*STDOUT);
		exec('timeout', $timeout, 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $script) or die "exec: $!";
	}
	my $bpid;
	my $deadline = time + 10;
	until ($bpid)
	{
		if (open(my $p, '<', $pidfile)) { local $/; my $x = <$p>; ($bpid) = $x =~ /(\d+)/ if $x }
		die "no backend pid from psql\n" if time > $deadline;
		sleep 0.01 unless $bpid;
	}
	my ($base_anon, $peak_anon, $peak_rss, $hwm) = (undef, 0, 0, 0);
	while (kill 0, $bpid)
	{
		open(my $st, '<', "/proc/$bpid/status") or last;
		my %s;
		while (<$st>) { $s{$1} = $2 if /^(\w+):\s+(\d+) kB/ }
		close $st;
		last unless defined $s{VmRSS};
		$base_anon //= $s{RssAnon};
		$peak_anon = $s{RssAnon} if ($s{RssAnon} // 0) > $peak_anon;
		$peak_rss  = $s{VmRSS}   if $s{VmRSS} > $peak_rss;
		$hwm       = $s{VmHWM}   if ($s{VmHWM} // 0) > $hwm;
		sleep 0.01;
	}
	local $/;
	my $out = <$fh> // '';
	close $fh;
	die "psql failed (exit " . ($? >> 8) . "):\n$out\n" if $?;
	my ($ms) = $out =~ /Time: ([\d.]+) ms/;
	my (undef, $rt, $q, $p) = $out =~ /(STATS)\|(\d+)\|(\d+)\|(\d+)/;
	return { ms => $ms, start_anon_kb => $base_anon, peak_anon_kb => $peak_anon, peak_rss_kb => $peak_rss,
		vmhwm_kb => $hwm, round_trips => $rt, queued => $q, pushed => $p };
}

section('memory', '2b. memory of a big (1,000,000-row) UPDATE', sub {
	my $n = $P{mem_rows};
	make_table('m_base', $n);
	make_table('m_wt',   $n);
	psql("SELECT redis_sync.write_through('m_wt', key_prefix => 'm:', warm => false)");
	my $buf = $P{mem_buffer} // $SETTINGS{'redis_sync.max_buffer_bytes'};
	my (%r, @deliver);
	for my $round (1 .. $RUNS)
	{
		for my $tbl ($round % 2 ? qw(m_base m_wt) : qw(m_wt m_base))
		{
			psql("VACUUM $tbl");
			my $x = backend_rss_poller("UPDATE $tbl SET v = v + 1", 900,
				$P{mem_buffer} ? "SET redis_sync.max_buffer_bytes = '$P{mem_buffer}';" : '');
			push @{ $r{$tbl} }, $x;
			push @deliver, wait_outbox_empty(900) if $tbl eq 'm_wt';
			psql('VACUUM redis_sync.outbox');
		}
	}
	my $pk = sub { my ($t, $f) = @_; median(map { $_->{$f} } @{ $r{$t} }) };
	my ($pa_o, $pa_b) = ($pk->('m_wt', 'peak_anon_kb') / 1024, $pk->('m_base', 'peak_anon_kb') / 1024);
	my $buf_mb = $buf =~ /^(\d+)kB$/ ? $1 / 1024 : $buf =~ /^(\d+)MB$/ ? $1 : 64;
	add_row(bench => "2. UPDATE of $n rows, max_buffer_bytes $buf: peak backend private memory (RssAnon)", ours => $pa_o, base => $pa_b,
		unit => 'MB', target => sprintf('<= base + %.0f MB', $buf_mb + 16), met => ($pa_o - $pa_b) <= $buf_mb + 16 ? 1 : 0,
		note => sprintf('VmHWM %.0f vs %.0f MB (incl. shared buffers); %d queued to outbox, %d pushed, %d round trips',
			$pk->('m_wt', 'vmhwm_kb') / 1024, $pk->('m_base', 'vmhwm_kb') / 1024,
			$pk->('m_wt', 'queued'), $pk->('m_wt', 'pushed'), $pk->('m_wt', 'round_trips')));
	add_row(bench => "2. UPDATE of $n rows: elapsed (spills to the outbox)", ours => $pk->('m_wt', 'ms'),
		base => $pk->('m_base', 'ms'), unit => 'ms', target => 'context');
	my $d = median(@deliver);
	add_row(bench => "2. worker delivery of that spilled $n-row outbox", ours => $d, unit => 's',
		target => 'context', note => sprintf('%.0f entries/s', $n / $d));
	$DETAIL{memory} = { rows => $n, max_buffer_bytes => $buf, runs => \%r, outbox_delivery_s => \@deliver };
	psql('DROP TABLE m_base; SELECT redis_sync.unsync(\'m_wt\'); DROP TABLE m_wt');
	forget_prefix('m:');
});

# ================================================================= 2c. TRUNCATE of a big cached table
# The purge's deletes go a SCAN page at a time: the committing backend's
# memory must not grow with the number of cached keys.  The keys (a hash and
# its version per row, as a push leaves them) are written by one script, not
# warmed: what is measured is the TRUNCATE.
section('truncate', '2c. TRUNCATE of a table with 300,000 cached rows', sub {
	my $n = $P{trunc_rows};
	my (%r);
	for my $round (1 .. $RUNS)
	{
		for my $tbl ($round % 2 ? qw(t_base t_wt) : qw(t_wt t_base))
		{
			make_table($tbl, $n);
			if ($tbl eq 't_wt')
			{
				psql("SELECT redis_sync.write_through('t_wt', key_prefix => 'tr:', warm => false)");
				redis('EVAL', "for i = 1, $n do redis.call('HSET', 'tr:' .. i, 'v', i, 'note', 'row number ' .. i); "
					  . "redis.call('SET', '{tr:' .. i .. '}:rs_version', '00000000000000000000000000000001') end", '0');
			}
			my $x = backend_rss_poller("TRUNCATE $tbl", 900);
			push @{ $r{$tbl} }, $x;
			my $left = redis('EVAL', "local n, c = 0, '0' repeat local r = redis.call('SCAN', c, 'MATCH', 'tr:*', 'COUNT', 1000, 'TYPE', 'hash'); "
				  . "c = r[1]; n = n + #r[2] until c == '0' return n", '0');
			die "TRUNCATE left $left cached rows\n" if $left != 0;
			psql($tbl eq 't_wt' ? "SELECT redis_sync.unsync('t_wt'); DROP TABLE t_wt" : "DROP TABLE $tbl");
		}
		redis('EVAL', "local c = '0' repeat local r = redis.call('SCAN', c, 'MATCH', '{tr:*', 'COUNT', 1000); "
			  . "c = r[1]; for _, k in ipairs(r[2]) do redis.call('UNLINK', k) end until c == '0' return 0", '0');
	}
	my $pk = sub { my ($t, $f) = @_; median(map { $_->{$f} } @{ $r{$t} }) };
	my ($pa_o, $pa_b) = ($pk->('t_wt', 'peak_anon_kb') / 1024, $pk->('t_base', 'peak_anon_kb') / 1024);
	add_row(bench => "2. TRUNCATE of $n cached rows: peak backend private memory (RssAnon)", ours => $pa_o, base => $pa_b,
		unit => 'MB', target => '<= base + 16 MB', met => ($pa_o - $pa_b) <= 16 ? 1 : 0,
		note => sprintf('baseline: TRUNCATE of the same table unsynced; %d round trips',
			$pk->('t_wt', 'round_trips')));
	add_row(bench => "2. TRUNCATE of $n cached rows: elapsed", ours => $pk->('t_wt', 'ms'),
		base => $pk->('t_base', 'ms'), unit => 'ms', target => 'context',
		note => sprintf('%.1f us per cached row', $pk->('t_wt', 'ms') * 1000 / $n));

	# a small table in a big keyspace: a purge's SCAN visits every key of
	# Redis, whatever the prefix matches; baseline: one bare SCAN pass over
	# the same keyspace, in one script call (no round trips)
	my $big = $P{trunc_other_keys};
	redis('EVAL', "for i = 1, $big do redis.call('SET', 'tb_other:' .. i, 'x') end", '0');
	my (@small, @pass);
	for my $round (1 .. $RUNS)
	{
		make_table('t_small', 1000);
		psql("SELECT redis_sync.write_through('t_small', key_prefix => 'ts:', warm => false)");
		redis('EVAL', "for i = 1, 1000 do redis.call('HSET', 'ts:' .. i, 'v', i); "
			  . "redis.call('SET', '{ts:' .. i .. '}:rs_version', '00000000000000000000000000000001') end", '0');
		my $t0 = time;
		redis('EVAL', "local c = '0' repeat c = redis.call('SCAN', c, 'MATCH', 'nomatch:*', 'COUNT', 1000)[1] until c == '0' return 0", '0');
		push @pass, (time - $t0) * 1000;
		push @small, backend_rss_poller('TRUNCATE t_small', 900)->{ms};
		psql("SELECT redis_sync.unsync('t_small'); DROP TABLE t_small");
	}
	redis('EVAL', "local c = '0' repeat local r = redis.call('SCAN', c, 'MATCH', 'tb_other:*', 'COUNT', 1000); "
		  . "c = r[1]; for _, k in ipairs(r[2]) do redis.call('UNLINK', k) end until c == '0' return 0", '0');
	add_row(bench => "2. TRUNCATE of 1000 cached rows, $big other keys in Redis: elapsed vs one SCAN pass",
		ours => median(@small), base => median(@pass), unit => 'ms', target => 'context',
		note => 'baseline: one SCAN pass over the keyspace inside one script call (SCAN ... TYPE made one pass per type)');
	$DETAIL{truncate} = { rows => $n, runs => \%r, small => \@small, pass => \@pass };
});

# ================================================================= 4. commit-to-Redis lag (async)
# A child subscribes to keyspace notifications and records when each key is
# first written; pgbench -R inserts rows carrying the statement's clock.
sub start_subscriber
{
	my ($pattern, $want, $file, $timeout) = @_;
	my $ready = "$file.ready";
	unlink $ready, $file;
	my $pid = fork // die "fork: $!";
	if (!$pid)
	{
		my %seen;
		my $s = redis_connect();
		$s->cmd('PSUBSCRIBE', $pattern);
		{ open(my $rf, '>', $ready) or die "$ready: $!"; close $rf; }
		local $SIG{ALRM} = sub { die "subscriber timeout\n" };
		alarm($timeout);
		eval {
			while (keys %seen < $want)
			{
				my $m = $s->read;
				my $t = time;
				next unless ref $m && $m->[0] eq 'pmessage';
				(my $k = $m->[2]) =~ s/^__keyspace\@\d+__://;
				$seen{$k} //= $t;
			}
			1;
		} or print STDERR "subscriber: $@";
		alarm(0);
		open(my $o, '>', $file) or die "$file: $!";
		printf $o "%s %.6f\n", $_, $seen{$_} for keys %seen;
		close $o;
		exit 0;
	}
	my $deadline = time + 10;
	until (-e $ready) { die "subscriber did not start\n" if time > $deadline; sleep 0.01 }
	return $pid;
}

sub read_arrivals
{
	my ($file) = @_;
	open(my $fh, '<', $file) or die "no subscriber output $file\n";
	my %a;
	while (<$fh>) { my ($k, $t) = split; $a{$k} = $t }
	return \%a;
}

section('lag', '4. commit-to-Redis lag, async delivery at ~1,000 changes/s', sub {
	my ($n, $rate) = ($P{lag_changes}, $P{lag_rate});
	psql(<<'SQL');
CREATE TABLE lag_t (id bigserial PRIMARY KEY, ts bigint NOT NULL);
SELECT redis_sync.write_through('lag_t', key_prefix => 'lag:', delivery => 'async', warm => false);
SQL
	redis('CONFIG', 'SET', 'notify-keyspace-events', 'Kh');
	my $f = write_file('lag.sql',
		"INSERT INTO lag_t (ts) VALUES ((extract(epoch FROM clock_timestamp()) * 1000000)::bigint);\n");
	my (@p50, @p99, @max, @all);
	for my $round (1 .. $RUNS)
	{
		psql('TRUNCATE lag_t');
		wait_outbox_empty(60);
		psql('VACUUM redis_sync.outbox');
		my $out = "$TMP/lag_arrivals";
		my $sub = start_subscriber('__keyspace@0__:lag:*', $n, $out, $n / $rate + 60);
		my $r = pgbench(f => $f, c => 1, t => $n, R => $rate, pgoptions => '-c synchronous_commit=on');
		waitpid($sub, 0);
		my $arr = read_arrivals($out);
		my %ts = map { split /\|/ } split /\n/, psql('SELECT id, ts FROM lag_t');
		my @lag;
		my $missing = 0;
		for my $id (keys %ts)
		{
			my $a = $arr->{"lag:$id"};
			if (!defined $a) { $missing++; next }
			push @lag, ($a * 1e6 - $ts{$id}) / 1000;
		}
		die "$missing of $n changes never seen in Redis\n" if $missing;
		push @p50, pctl(50, @lag);
		push @p99, pctl(99, @lag);
		push @max, pctl(100, @lag);
		push @all, @lag;
		say_(sprintf('lag round %d: %d changes at %.0f/s: p50 %.2f ms, p99 %.2f ms, max %.2f ms',
				$round, scalar @lag, $r->{tps}, $p50[-1], $p99[-1], $max[-1]));
	}
	redis('CONFIG', 'SET', 'notify-keyspace-events', '');
	my $note = "$n changes x $RUNS runs at $rate/s (pgbench -R), statement clock to keyspace notification";
	add_row(bench => '4. async commit-to-Redis lag p50', ours => median(@p50), unit => 'ms', target => '<= 2 ms',
		met => median(@p50) <= 2 ? 1 : 0, note => $note);
	add_row(bench => '4. async commit-to-Redis lag p99', ours => median(@p99), unit => 'ms', target => '<= 10 ms',
		met => median(@p99) <= 10 ? 1 : 0);
	add_row(bench => '4. async commit-to-Redis lag max', ours => median(@max), unit => 'ms', target => 'context',
		note => sprintf('worst run %.1f ms', (sort { $b <=> $a } @max)[0]));
	# the distribution over every run, for bench/chart.sh: percentile 1..100
	$DETAIL{lag} = { changes => $n, rate => $rate, p50_ms => \@p50, p99_ms => \@p99, max_ms => \@max,
		cdf_ms => [ map { pctl($_, @all) } 1 .. 100 ] };
	psql('SELECT redis_sync.unsync(\'lag_t\'); DROP TABLE lag_t');
});

# ================================================================= 6. scale curve
section('scale', '6. scale curve: cost per row by transaction size', sub {
	my $max = $P{scale_max};
	make_table('c_base', $max);
	make_table('c_wt', $max);
	psql("SELECT redis_sync.write_through('c_wt', key_prefix => 'c:', warm => false); SELECT redis_sync.warm('c_wt')");
	my %txns = (1 => 2000, 10 => 1000, 100 => 200, 1000 => 40, 10000 => 6, 100000 => 3);
	%txns = (1 => 300, 10 => 200, 100 => 50, 1000 => 10, 10000 => 2, 100000 => 1) if $QUICK;
	my @sizes = grep { $_ <= $max } sort { $a <=> $b } keys %txns;
	my %per;
	for my $tbl (qw(c_base c_wt))
	{
		write_file("scale_$tbl.sql",
			"\\set s random(1, 100001 - :n)\n\\set e :s + :n - 1\nUPDATE $tbl SET v = v + 1 WHERE id BETWEEN :s AND :e;\n");
	}
	for my $round (1 .. $RUNS)
	{
		for my $n (@sizes)
		{
			for my $tbl ($round % 2 ? qw(c_base c_wt) : qw(c_wt c_base))
			{
				my $r = pgbench(f => "$TMP/scale_$tbl.sql", c => 1, t => $txns{$n}, D => ["n=$n"],
					pgoptions => '-c synchronous_commit=off');
				push @{ $per{$n}{$tbl} }, $r->{lat_ms} * 1000 / $n;
			}
		}
		psql('VACUUM c_base; VACUUM c_wt');
		say_("scale round $round done");
	}
	my @tab;
	for my $n (@sizes)
	{
		my ($b, $o) = map { median(@{ $per{$n}{$_} }) } qw(c_base c_wt);
		push @tab, { rows => $n, unsynced_us_per_row => $b, synced_us_per_row => $o, added_us_per_row => $o - $b,
			ratio => $o / $b };
	}
	$DETAIL{scale} = \@tab;
	my ($big) = grep { $_->{rows} == $sizes[-1] } @tab;
	my ($k) = grep { $_->{rows} == 1000 } @tab;
	my $flat = $k ? $big->{added_us_per_row} / ($k->{added_us_per_row} || 1) : undef;
	add_row(bench => "6. scale: added cost per row, $sizes[-1]-row vs 1,000-row txn", ours => $flat, unit => 'x',
		target => '~1 (flat, <= 1.5)', met => defined $flat && $flat <= 1.5 ? 1 : 0,
		note => sprintf('%.2f vs %.2f us/row', $big->{added_us_per_row}, $k ? $k->{added_us_per_row} : -1));
	psql('SELECT redis_sync.unsync(\'c_wt\'); DROP TABLE c_base, c_wt');
});

# ================================================================= 7. warming
# warm() and the background warm fill the cache without row locks; the 0.1
# warm() read every row FOR SHARE, which rewrites every page (baseline: the
# same FOR SHARE scan, in batches of 10,000 like the 0.1 warm()).
section('warm', '7. cache warm of a 1,000,000-row table: time and WAL per row', sub {
	my $n = $P{warm_rows};
	psql(<<"SQL", timeout => 600);
CREATE TABLE w_t (id int PRIMARY KEY, name text NOT NULL, price numeric NOT NULL, note text);
INSERT INTO w_t SELECT g, 'item ' || g, g * 1.5, 'note ' || g FROM generate_series(1, $n) g;
VACUUM ANALYZE w_t;
SELECT redis_sync.write_through('w_t', key_prefix => 'w:', warm => false);
SQL
	my $size = psql1("SELECT pg_relation_size('w_t')");
	my $lsn = sub { psql1('SELECT pg_current_wal_lsn()') };
	my $wal_since = sub { psql1("SELECT pg_current_wal_lsn() - '$_[0]'::pg_lsn") };
	my $clear = sub {
		psql("SELECT redis_sync.unsync('w_t', purge => true)");
		psql("SELECT redis_sync.write_through('w_t', key_prefix => 'w:', warm => false)");
	};
	my (@wal, @secs, @bg_wal, @bg_secs, @base_wal, @base_secs);
	for my $round (1 .. $RUNS)
	{
		# baseline: the 0.1 warm's locking read
		my $l0 = $lsn->();
		my $t0 = time;
		psql(<<'SQL', timeout => 600);
DO $$
DECLARE last int := 0; got int;
BEGIN
  LOOP
    SELECT max(id), count(*) INTO last, got
      FROM (SELECT id FROM w_t WHERE id > last ORDER BY id LIMIT 10000 FOR SHARE) s;
    EXIT WHEN got < 10000;
  END LOOP;
END $$;
SQL
		push @base_secs, time - $t0;
		push @base_wal, $wal_since->($l0) / $n;
		psql('VACUUM w_t');    # the lockers' xmax, as a fresh table would be

		$clear->();
		$l0 = $lsn->();
		$t0 = time;
		my $got = psql1("SELECT redis_sync.warm('w_t')", timeout => 600);
		die "warm() read $got rows, not $n\n" unless $got == $n;
		push @secs, time - $t0;
		push @wal, $wal_since->($l0) / $n;

		$clear->();
		$l0 = $lsn->();
		$t0 = time;
		psql("SELECT redis_sync.write_through('w_t', key_prefix => 'w:')");
		my $deadline = time + 600;
		until (psql1(q{SELECT state = 'done' FROM redis_sync.warming WHERE "table" = 'w_t'::regclass}) eq 't')
		{
			die "background warm not done after 600 s\n" if time > $deadline;
			sleep 0.05;
		}
		push @bg_secs, time - $t0;
		push @bg_wal, $wal_since->($l0) / $n;
		say_("warm round $round done");
	}
	$DETAIL{warm} = { rows => $n, table_bytes => $size, warm_seconds => \@secs, warm_wal_bytes_per_row => \@wal,
		background_seconds => \@bg_secs, background_wal_bytes_per_row => \@bg_wal,
		for_share_seconds => \@base_secs, for_share_wal_bytes_per_row => \@base_wal };
	add_row(bench => "7. warm() of $n rows: WAL bytes per warmed row", ours => median(@wal),
		base => median(@base_wal), unit => 'B/row', note => 'baseline: the 0.1 warm\'s FOR SHARE read alone',
		target => '< 10% of the table', met => median(@wal) * $n < $size / 10 ? 1 : 0);
	add_row(bench => "7. warm() of $n rows: rows/s", ours => $n / median(@secs),
		base => $n / median(@base_secs), unit => 'rows/s', note => 'baseline: FOR SHARE read only, no Redis');
	add_row(bench => "7. background warm after write_through(): rows/s", ours => $n / median(@bg_secs),
		unit => 'rows/s', note => sprintf('WAL %.2f B/row', median(@bg_wal)));
	psql("SELECT redis_sync.unsync('w_t', purge => true); DROP TABLE w_t");
});

# ================================================================= 5. write-behind drain
section('drain', '5. write-behind drain of 200,000 dirty keys', sub {
	my $n = $P{drain_rows};
	psql(<<"SQL");
CREATE TABLE wb_t (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
CREATE TABLE wb_base (LIKE wb_t INCLUDING ALL);
INSERT INTO wb_t SELECT g, 0 FROM generate_series(1, $n) g;
INSERT INTO wb_base SELECT g, 0 FROM generate_series(1, $n) g;
VACUUM ANALYZE wb_t; VACUUM ANALYZE wb_base;
SELECT redis_sync.write_behind('wb_t', key_prefix => 'stats:', dirty_set => 'stats:dirty'
    ${\ ($ENV{BENCH_DRAIN_BATCH} ? ", batch_size => " . int($ENV{BENCH_DRAIN_BATCH}) : '') });
SQL
	# the drain's batch: the default, or BENCH_DRAIN_BATCH (development aid); the
	# baselines always upsert 1,000-key batches
	my $dbatch = psql1("SELECT batch_size FROM redis_sync.tables WHERE relid = 'wb_t'::regclass");
	my $batch = 1000;
	my (@ours, @base, @base_seq);
	for my $round (1 .. $RUNS)
	{
		my $val = sub { $_[0] % 1000 + $round * 1000 };
		# the Redis side: HSET + SADD per key, loaded with redis-cli --pipe while the worker is paused
		my $pipe = "$TMP/drain.resp";
		open(my $fh, '>', $pipe) or die $!;
		print $fh resp_encode('HSET', "stats:$_", 'n', $val->($_)), resp_encode('SADD', 'stats:dirty', $_) for 1 .. $n;
		close $fh;
		# the baselines: the same upsert, one transaction per batch of $batch keys, of
		# contiguous ids (base_seq) and of the ids shuffled (base: the claim hands the
		# drain its members in random order, so this is the like-for-like one)
		my %sqlf;
		my @shuffled = (1 .. $n);
		srand(18 + $round);
		for (my $i = $#shuffled; $i > 0; $i--) { my $j = int rand($i + 1); @shuffled[$i, $j] = @shuffled[$j, $i] }
		for my $kind (qw(base base_seq))
		{
			my @order = $kind eq 'base' ? @shuffled : (1 .. $n);
			$sqlf{$kind} = "$TMP/drain_$kind.sql";
			open($fh, '>', $sqlf{$kind}) or die $!;
			for (my $i = 0; $i < $n; $i += $batch)
			{
				my @ids = @order[$i .. ($i + $batch - 1 >= $n ? $n - 1 : $i + $batch - 1)];
				printf $fh "INSERT INTO wb_base (id, n) SELECT * FROM unnest('{%s}'::int[], '{%s}'::bigint[]) "
				  . "ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n;\n", join(',', @ids), join(',', map { $val->($_) } @ids);
			}
			close $fh;
		}
		for my $which ($round % 2 ? qw(base ours base_seq) : qw(base_seq ours base))
		{
			psql('VACUUM wb_t; VACUUM wb_base');
			if ($which ne 'ours')
			{
				my $t = time;
				my ($rc, $out) = run_cmd(600, {}, 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $sqlf{$which});
				die "baseline upsert failed:\n$out\n" if $rc;
				push @{ $which eq 'base' ? \@base : \@base_seq }, $n / (time - $t);
				next;
			}
			psql1('SELECT redis_sync.worker_pause(30000)') eq 't' or die "worker_pause() returned false\n";
			my ($rc, $out) = run_cmd(300, {}, 'sh', '-c', "redis-cli -h 127.0.0.1 -p $RPORT --pipe < $pipe");
			die "redis-cli --pipe failed:\n$out\n" if $rc || $out !~ /errors: 0/;
			my $dirty = redis('SCARD', 'stats:dirty');
			die "expected $n dirty members, found $dirty\n" unless $dirty == $n;
			my $t = time;
			my $applied = psql1("SELECT redis_sync.worker_resume(); SELECT redis_sync.flush('wb_t')", timeout => 300);
			my $deadline = time + 120;
			while (redis('SCARD', 'stats:dirty') + redis('SCARD', '{stats:dirty}:rs_processing') > 0)
			{
				die "dirty set not drained within 120s\n" if time > $deadline;
				sleep 0.005;
			}
			my $el = time - $t;
			push @ours, $n / $el;
			my $bad = psql1("SELECT count(*) FROM wb_t WHERE n <> id % 1000 + $round * 1000");
			my $dead = psql1("SELECT count(*) FROM redis_sync.dead_letters");
			die "after the drain $bad rows have the wrong value ($dead dead letters)\n" if $bad;
			say_(sprintf('drain round %d: %d rows in %.2fs (flush() reported %s)', $round, $n, $el, $applied));
		}
	}
	my ($o, $b, $bs) = (median(@ours), median(@base), median(@base_seq));
	add_row(bench => "5. write-behind drain of $n keys (batch $dbatch): rows/s", ours => $o, base => $b,
		unit => 'rows/s', target => '>= 120k/s, >= 0.8 x', met => ($o >= 120_000 && $o / $b >= 0.8) ? 1 : 0,
		note => 'baseline: INSERT .. ON CONFLICT DO UPDATE from unnest of the same keys in random batches '
		  . "(as the claim hands them out, in hash order), one transaction per batch, via psql");
	add_row(bench => "5. same, against the upsert of contiguous ids", ours => $o, base => $bs, unit => 'rows/s',
		target => 'context', note => 'baseline: the same upsert of ids in order, one transaction per batch');
	$DETAIL{drain} = { rows => $n, batch_size => $dbatch, ours_rows_per_s => \@ours, base_rows_per_s => \@base,
		base_seq_rows_per_s => \@base_seq };
	psql("SELECT redis_sync.unsync('wb_t'); DROP TABLE wb_t, wb_base");
});

section('wblag', '5b. write-behind end-to-end lag at ~5,000 writes/s', sub {
	my ($secs, $rate) = ($P{wblag_secs}, $P{wblag_rate});
	my $per_run = $secs * $rate;
	my $rows = $per_run * $RUNS;
	psql(<<"SQL");
CREATE TABLE wl_t (id int PRIMARY KEY, ts bigint NOT NULL DEFAULT 0, seen_us bigint);
INSERT INTO wl_t (id) SELECT g FROM generate_series(1, $rows) g;
CREATE FUNCTION wl_seen() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN NEW.seen_us := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint; RETURN NEW; END \$\$;
CREATE TRIGGER wl_seen BEFORE INSERT OR UPDATE OF ts ON wl_t FOR EACH ROW EXECUTE FUNCTION wl_seen();
UPDATE wl_t SET seen_us = NULL;
VACUUM ANALYZE wl_t;
SELECT redis_sync.write_behind('wl_t', key_prefix => 'wl:', dirty_set => 'wl:dirty', columns => '{ts}');
SQL
	my $interval = psql1("SELECT (extract(epoch FROM flush_interval) * 1000)::int FROM redis_sync.tables WHERE relid = 'wl_t'::regclass");
	my (@p50, @p99, @max, @achieved);
	for my $round (1 .. $RUNS)
	{
		my $first = ($round - 1) * $per_run + 1;
		my $s = redis_connect();
		my $t0 = time;
		my $sent = 0;
		while ($sent < $per_run)
		{
			my $due = int((time - $t0) * $rate) + 1;
			$due = $per_run if $due > $per_run;
			if ($due <= $sent) { sleep 0.0005; next }
			my $req = '';
			my $k = 0;
			while ($sent < $due)
			{
				my $id = $first + $sent++;
				my $now = sprintf('%.0f', time * 1e6);
				$req .= resp_encode('HSET', "wl:$id", 'ts', $now) . resp_encode('SADD', 'wl:dirty', $id);
				$k++;
			}
			$s->write($req);
			$s->read for 1 .. 2 * $k;
		}
		push @achieved, $per_run / (time - $t0);
		my $deadline = time + 60;
		until (redis('SCARD', 'wl:dirty') + redis('SCARD', '{wl:dirty}:rs_processing') == 0
			&& psql1("SELECT count(*) FROM wl_t WHERE id BETWEEN $first AND " . ($first + $per_run - 1)
				. " AND seen_us IS NULL") == 0)
		{
			die "write-behind rows not applied within 60s\n" if time > $deadline;
			sleep 0.1;
		}
		my @lag = map { $_ / 1000 } split /\n/,
		  psql("SELECT seen_us - ts FROM wl_t WHERE id BETWEEN $first AND " . ($first + $per_run - 1));
		push @p50, pctl(50, @lag);
		push @p99, pctl(99, @lag);
		push @max, pctl(100, @lag);
		say_(sprintf('write-behind lag round %d: %d writes at %.0f/s: p50 %.0f ms, p99 %.0f ms, max %.0f ms',
				$round, scalar @lag, $achieved[-1], $p50[-1], $p99[-1], $max[-1]));
	}
	my $target = $interval + 100;
	add_row(bench => "5. write-behind lag p50 (flush_interval ${interval} ms, $rate writes/s)", ours => median(@p50),
		unit => 'ms', target => 'context');
	add_row(bench => "5. write-behind lag p99 (flush_interval ${interval} ms, $rate writes/s)", ours => median(@p99),
		unit => 'ms', target => "<= $target ms", met => median(@p99) <= $target ? 1 : 0,
		note => sprintf('max %.0f ms; Redis HSET+SADD to row written (BEFORE trigger clock)', median(@max)));
	$DETAIL{wblag} = { writes_per_run => $per_run, rate => \@achieved, p50_ms => \@p50, p99_ms => \@p99, max_ms => \@max };
	psql("SELECT redis_sync.unsync('wl_t'); DROP TABLE wl_t");
});

# ================================================================= 4b. outbox delivery after an outage
sub redis_start
{
	my @cmd = ('redis-server', '--bind', '127.0.0.1', '--port', $RPORT, '--save', '', '--appendonly', 'no',
		'--daemonize', 'yes', '--dir', $SBDIR, '--logfile', "$SBDIR/redis.log", '--pidfile', "$SBDIR/redis.pid");
	unshift @cmd, 'runuser', '-u', $ENV{RUN_USER}, '--' if $> == 0 && ($ENV{RUN_USER} // 'root') ne 'root';
	my ($rc, $out) = run_cmd(30, {}, @cmd);
	die "redis-server failed to start:\n$out\n" if $rc;
	my $deadline = time + 20;
	until (eval { $R = redis_connect(); redis('PING') eq 'PONG' })
	{
		die "Redis did not come back within 20s\n" if time > $deadline;
		sleep 0.01;
	}
	redis('CONFIG', 'SET', 'latency-monitor-threshold', '1');
}

sub redis_stop
{
	my $pid = do { open(my $f, '<', "$SBDIR/redis.pid") or die "no redis.pid\n"; local $/; <$f> };
	chomp $pid;
	eval { redis('SHUTDOWN', 'NOSAVE') };
	undef $R;
	my $deadline = time + 20;
	while (kill 0, $pid) { die "Redis did not stop\n" if time > $deadline; sleep 0.01 }
}

section('outage', '4b. delivery of 100,000 queued changes after Redis returns', sub {
	my $n = $P{outage_rows};
	make_table('o_t', $n);
	psql(<<'SQL');
SELECT redis_sync.write_through('o_t', key_prefix => 'o:', warm => false);
ALTER SYSTEM SET redis_sync.rewarm_on_restart = off;
SELECT pg_reload_conf();
SQL
	my (@total, @detect, @deliver);
	for my $round (1 .. $RUNS)
	{
		wait_outbox_empty(120);
		psql('VACUUM redis_sync.outbox');
		redis_stop();
		my ($t) = psql_timed("UPDATE o_t SET v = v + 1;");
		my $q = psql1('SELECT count(*) FROM redis_sync.outbox');
		die "expected >= $n queued outbox entries, found $q\n" if $q < $n;
		redis_start();
		my $t0 = time;
		my ($tfirst, $tend);
		my $deadline = $t0 + 300;
		while (1)
		{
			my $left = psql1('SELECT count(*) FROM redis_sync.outbox');
			$tfirst //= time if $left < $q;
			if ($left == 0) { $tend = time; last }
			die "outbox still holds $left entries 300s after Redis returned\n" if time > $deadline;
			sleep 0.02;
		}
		push @total,   $tend - $t0;
		push @detect,  $tfirst - $t0;
		push @deliver, $tend - $tfirst;
		my $cnt = redis('EVAL', "return #redis.call('KEYS', 'o:*')", 0);
		die "after delivery Redis holds $cnt o:* keys, expected $n\n" unless $cnt == $n;
		say_(sprintf('outage round %d: %d queued (UPDATE took %.0f ms); empty %.2fs after Redis returned '
				. '(first delivery after %.2fs)', $round, $q, $t->[0], $total[-1], $detect[-1]));
	}
	add_row(bench => "4. $n queued changes delivered after Redis returns", ours => median(@total), unit => 's',
		target => '< 10 s', met => median(@total) < 10 ? 1 : 0,
		note => sprintf('detection %.2f s + delivery %.2f s (%.0f entries/s)', median(@detect), median(@deliver),
			$n / median(@deliver)));
	$DETAIL{outage} = { rows => $n, total_s => \@total, detect_s => \@detect, deliver_s => \@deliver };
	psql(<<'SQL');
ALTER SYSTEM RESET redis_sync.rewarm_on_restart;
SELECT pg_reload_conf();
SELECT redis_sync.unsync('o_t');
DROP TABLE o_t;
SQL
});

# ================================================================= 4b. the work after a Redis restart
# The worker refreshes the keys Redis brought back (every table in one SCAN
# pass), then re-warms every write-through table.  Baseline: warm() of the
# same tables into a Redis without their keys, in the same run.
# Two shapes: restart_tables of restart_rows rows, and ten times as many
# tables of a tenth of the rows (the same keys: each table's part of a SCAN
# page is then a tenth as large).
section('restart', '4b. the work after a Redis restart, many write-through tables', sub {
	restart_shape($P{restart_tables}, $P{restart_rows}, 1);
	restart_shape($P{restart_tables} * 10, $P{restart_rows} / 10, 0);
});

sub restart_shape
{
	my ($nt, $nr, $all_rows) = @_;
	my @t = map { "rst_t$_" } 1 .. $nt;
	psql(join '', map { "CREATE TABLE $_ (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL);
INSERT INTO $_ SELECT g, g, 'row number ' || g FROM generate_series(1, $nr) g;
SELECT redis_sync.write_through('$_', key_prefix => '$_:', warm => false);
" } @t);
	my $log = "$SBDIR/postgres.log";
	my $wait_rewarmed = sub {
		my ($offset, $what) = @_;
		my $deadline = time + 900;
		while (1)
		{
			open(my $f, '<', $log) or die "$log: $!\n";
			seek($f, $offset, 0);
			local $/;
			my $text = <$f> // '';
			my $n = () = $text =~ /re-warmed \d+ keys of table/g;
			return if $n >= $nt;
			die "$what: $n of $nt tables re-warmed after 900 s\n" if time > $deadline;
			sleep 0.05;
		}
	};
	my $restart = sub {
		my ($what) = @_;
		my $offset = -s $log;
		redis_stop();
		redis_start();
		my $t0 = time;
		$wait_rewarmed->($offset, $what);
		return time - $t0;
	};
	my (@empty, @rdb, @scans, @pass, @warm);
	for my $round (1 .. $RUNS)
	{
		unlink "$SBDIR/dump.rdb";
		push @empty, $restart->('restart empty');
		redis('SAVE');
		push @rdb, $restart->('restart from an RDB');
		# a restarted Redis counts from zero: these are the worker's
		push @scans, redis_cmdstat('scan')->{calls} // 0;
		push @pass, redis('EVAL', "local n, c = 0, '0' repeat c = redis.call('SCAN', c, 'COUNT', 1000)[1]; n = n + 1 until c == '0' return n", '0');
		forget_prefix('rst_t');
		my $t0 = time;
		psql(join '', map { "SELECT redis_sync.warm('$_');" } @t);
		push @warm, time - $t0;
		say_(sprintf('restart round %d: empty %.2f s, from an RDB %.2f s (%d SCAN calls, one pass %d), warm() %.2f s',
				$round, $empty[-1], $rdb[-1], $scans[-1], $pass[-1], $warm[-1]));
	}
	unlink "$SBDIR/dump.rdb";
	if ($all_rows)
	{
		add_row(bench => "4. Redis restart from an RDB, $nt tables of $nr rows: SCAN calls vs one pass", ours => median(@scans),
			base => median(@pass), target => '<= one pass + 1', met => median(@scans) <= median(@pass) + 1 ? 1 : 0,
			note => 'the refresh of every table in one pass; before 5979483 a pass per table (20,000 SCAN calls for 100 tables of 1,000 rows)');
		add_row(bench => "4. same: restart to every table refreshed and re-warmed", ours => median(@rdb), base => median(@warm),
			unit => 's', target => 'context', note => "baseline: warm() of the $nt tables into a Redis without their keys; includes the worker's probe (up to naptime)");
		add_row(bench => "4. Redis restart empty, same tables: to every table re-warmed", ours => median(@empty), base => median(@warm),
			unit => 's', target => 'context', note => "baseline: warm() of the $nt tables; includes the worker's probe (up to naptime)");
	}
	else
	{
		add_row(bench => "4. Redis restart from an RDB, $nt tables of $nr rows: to every table re-warmed", ours => median(@rdb), base => median(@warm),
			unit => 's', target => 'context', note => "baseline: warm() of the $nt tables; each table's part of a SCAN page a tenth as large as above");
	}
	$DETAIL{"restart_$nt"} = { tables => $nt, rows => $nr, empty_s => \@empty, rdb_s => \@rdb, scan_calls => \@scans,
		one_pass => \@pass, warm_s => \@warm };
	psql(join '', map { "SELECT redis_sync.unsync('$_'); DROP TABLE $_;" } @t);
	forget_prefix('rst_t');
}

# ================================================================= 4c. idle worker CPU
section('idle', '4c. idle worker CPU', sub {
	wait_outbox_empty(120);
	psql(<<'SQL');
CREATE TABLE idle_wt (id int PRIMARY KEY, v int);
SELECT redis_sync.write_through('idle_wt', delivery => 'async', warm => false);
CREATE TABLE idle_wb (id int PRIMARY KEY, n bigint);
SELECT redis_sync.write_behind('idle_wb');
SQL
	sleep 2;
	my $pid = psql1('SELECT worker_pid FROM redis_sync.worker_stats');
	die "no worker pid\n" unless $pid =~ /^\d+$/;
	my $ticks = sub {
		open(my $f, '<', "/proc/$pid/stat") or die "worker $pid is gone\n";
		my @f = split ' ', (split /\)/, scalar <$f>)[-1];
		return $f[11] + $f[12];    # utime + stime (fields 14, 15)
	};
	my $hz = `getconf CLK_TCK` + 0 || 100;
	my @pct;
	for (1 .. $RUNS)
	{
		my ($c0, $t0) = ($ticks->(), time);
		sleep $P{idle_secs};
		push @pct, ($ticks->() - $c0) / $hz / (time - $t0) * 100;
	}
	add_row(bench => "4. idle worker CPU (one write-through + one write-behind table)", ours => median(@pct),
		unit => '%', target => '< 1 %', met => median(@pct) < 1 ? 1 : 0,
		note => "over ${\ $P{idle_secs}} s x $RUNS, /proc/<worker>/stat; resolution 1/$hz s");
	$DETAIL{idle} = { pct => \@pct, seconds => $P{idle_secs} };
	psql("SELECT redis_sync.unsync('idle_wt'); SELECT redis_sync.unsync('idle_wb'); DROP TABLE idle_wt, idle_wb");

	# many synced tables, no traffic (full run: 1,000 = 900 write-behind at flush_interval 1 s + 100
	# write-through async; --quick: 300).  Set up in one transaction: write_through() and write_behind()
	# look up only the prefixes that can overlap the new one (index ranges and probes, in PostgreSQL and
	# in Redis), so setup is linear in tables (1,000 took over 20 minutes at 2924694, seconds since).
	my ($nwb, $nwt) = ($P{idle_wb}, $P{idle_wt});
	my $setup_t0 = time;
	psql(<<"SQL", timeout => 3600);
DO \$\$
BEGIN
  FOR i IN 1..$nwb LOOP
    EXECUTE format('CREATE TABLE idle_wb_%s (id int PRIMARY KEY, n bigint)', i);
    PERFORM redis_sync.write_behind(format('idle_wb_%s', i)::regclass, key_prefix => format('iwb%s:', i));
  END LOOP;
  FOR i IN 1..$nwt LOOP
    EXECUTE format('CREATE TABLE idle_wt_%s (id int PRIMARY KEY, v int)', i);
    PERFORM redis_sync.write_through(format('idle_wt_%s', i)::regclass, key_prefix => format('iwt%s:', i),
                                     delivery => 'async', warm => false);
  END LOOP;
END \$\$;
SQL
	my $setup_s = time - $setup_t0;
	say_(sprintf('idle: %d tables set up in one transaction in %.1f s', $nwb + $nwt, $setup_s));
	sleep 3;    # the worker sees the new tables (first sight: crash leftovers only)
	$pid = psql1('SELECT worker_pid FROM redis_sync.worker_stats');
	my @pct_many;
	for (1 .. $RUNS)
	{
		my ($c0, $t0) = ($ticks->(), time);
		sleep $P{idle_secs};
		push @pct_many, ($ticks->() - $c0) / $hz / (time - $t0) * 100;
	}
	add_row(bench => "4. idle worker CPU with $nwb write-behind + $nwt write-through tables", ours => median(@pct_many),
		base => median(@pct), unit => '%', target => '< 1 %', met => median(@pct_many) < 1 ? 1 : 0,
		note => "ratio against the two-table case above; flush_interval 1 s, naptime " . $SETTINGS{'redis_sync.naptime'}
			. sprintf('; setting the tables up took %.1f s', $setup_s));
	$DETAIL{idle_many} = { pct => \@pct_many, seconds => $P{idle_secs}, write_behind => $nwb, write_through => $nwt, setup_s => $setup_s };
	psql(<<"SQL", timeout => 3600);
DO \$\$
BEGIN
  FOR i IN 1..$nwb LOOP
    PERFORM redis_sync.unsync(format('idle_wb_%s', i)::regclass);
    EXECUTE format('DROP TABLE idle_wb_%s', i);
  END LOOP;
  FOR i IN 1..$nwt LOOP
    PERFORM redis_sync.unsync(format('idle_wt_%s', i)::regclass);
    EXECUTE format('DROP TABLE idle_wt_%s', i);
  END LOOP;
END \$\$;
SQL
});

# ================================================================= output
my $elapsed = time - $T0;
my @hdr = ('benchmark', 'ours', 'baseline', 'ratio', 'target', 'met?');
my @lines;
for my $r (@ROWS)
{
	if ($r->{error}) { push @lines, [ $r->{bench}, 'FAILED', '-', '-', '-', 'NO' ]; next }
	push @lines, [ $r->{bench}, fmt($r->{ours}, $r->{unit}), fmt($r->{base}, $r->{base_unit} // $r->{unit}),
		defined $r->{ratio} ? sprintf('%.2f', $r->{ratio}) : '-', $r->{target} // '-',
		!defined $r->{met} ? '-' : $r->{met} ? 'yes' : 'NO' ];
}
my @w = map { my $i = $_; my $m = length $hdr[$i]; for (@lines) { $m = length $_->[$i] if length $_->[$i] > $m } $m } 0 .. $#hdr;
my $table = '';
$table .= '| ' . join(' | ', map { sprintf("%-*s", $w[$_], $hdr[$_]) } 0 .. $#hdr) . " |\n";
$table .= '|' . join('|', map { '-' x ($_ + 2) } @w) . "|\n";
for my $l (@lines) { $table .= '| ' . join(' | ', map { sprintf("%-*s", $w[$_], $l->[$_]) } 0 .. $#hdr) . " |\n" }

my $scale_txt = '';
if ($DETAIL{scale})
{
	$scale_txt = "| rows/txn | unsynced us/row | synced us/row | added us/row | ratio |\n|---:|---:|---:|---:|---:|\n";
	$scale_txt .= sprintf("| %d | %.2f | %.2f | %.2f | %.2f |\n", @{$_}{qw(rows unsynced_us_per_row synced_us_per_row added_us_per_row ratio)})
	  for @{ $DETAIL{scale} };
}
my @notes = map { "- $_->{bench}: $_->{note}" } grep { $_->{note} } @ROWS;

print "\n", $table;
print "\nScale curve (synchronous_commit=off, pgbench -c1, median of $RUNS):\n$scale_txt" if $scale_txt;
print "\nNotes:\n", join("\n", @notes), "\n" if @notes;
printf "\n%s run finished in %.0f s%s\n", $MODE, $elapsed, @PROBLEMS ? sprintf(' with %d FAILED benchmark(s)', scalar @PROBLEMS) : '';

# machine and versions
my $mem_kb = do { open(my $f, '<', '/proc/meminfo'); my ($m) = join('', <$f>) =~ /MemTotal:\s+(\d+)/; $m };
my $cpu = do { open(my $f, '<', '/proc/cpuinfo'); my ($m) = join('', <$f>) =~ /model name\s*:\s*(.*)/; $m // 'unknown' };
chomp(my $nproc = `nproc`);
chomp(my $pgv = `postgres --version`);
chomp(my $rv  = `redis-server --version`);
chomp(my $commit = `git -C '$REPO' rev-parse --short HEAD 2>/dev/null` || 'unknown');
my $dirty = `git -C '$REPO' status --porcelain -- src extension 2>/dev/null` ? ' (with uncommitted changes in src/ or extension/)' : '';
if ($ENV{BENCH_COMMIT}) { $commit = $ENV{BENCH_COMMIT}; $dirty = '' }
$commit .= ", installed redis_sync.so md5 $ENV{BENCH_SO_MD5}" if $ENV{BENCH_SO_MD5};
my $date = strftime('%Y-%m-%d %H:%M:%S UTC', gmtime);
my %machine = (nproc => $nproc + 0, memory_mb => int($mem_kb / 1024), cpu => $cpu, postgres => $pgv, redis => $rv);

mkdir "$REPO/bench/results";
my $json = JSON::PP->new->pretty->canonical;
open(my $jf, '>', "$REPO/bench/results/latest.json") or die "latest.json: $!";
print $jf $json->encode({ mode => $MODE, date => $date, commit => "$commit$dirty", command => $ENV{BENCH_CMD},
		elapsed_s => int($elapsed), runs_per_figure => $RUNS, machine => \%machine, params => \%P,
		rows => \@ROWS, detail => \%DETAIL, problems => \@PROBLEMS });
close $jf;
say_("wrote bench/results/latest.json");

if (!$QUICK && !%ONLY)
{
	open(my $md, '>', "$REPO/bench/RESULTS.md") or die "RESULTS.md: $!";
	print $md <<"MD";
# redis_sync benchmark results

Last full run: $date, commit $commit$dirty, ${\ int($elapsed)} s.

Command: `$ENV{BENCH_CMD}` (from the repository root; `make bench` runs the same).

Machine: $nproc cores ($cpu), ${\ int($mem_kb / 1024)} MB memory; $pgv; $rv.
Server settings for the run: ${\ join(', ', map { "$_=$SETTINGS{$_}" } sort keys %SETTINGS)}
(the sandbox of tests/sandbox.sh with fsync and full_page_writes switched on for realism).

Every figure is the median of $RUNS runs; baseline and subject runs alternate. "ours" is redis_sync,
"baseline" the unsynced (or hand-built) equivalent measured in the same run; ratio = ours / baseline
except where noted (speedup rows).

$table
## Scale curve

![cost per row by transaction size](charts/scale.svg)

$scale_txt
![async commit-to-Redis lag distribution](charts/lag.svg)

Charts: drawn by bench/chart.sh (gnuplot) from bench/results/latest.json of the same run.

## Notes

${\ join("\n", @notes)}

- Chunked transactions: a transaction's keys are pushed in chunks of redis_sync.chunk_size keys, each applied
  atomically by one Lua script call; a reader of Redis can observe a large transaction partly applied (whole
  chunks), never a half-written key.
- autovacuum runs with its default settings; in addition every table (baseline and subject alike) is VACUUMed
  explicitly between runs, so that each run starts from the same state.
- Lag (4.) is measured from the clock_timestamp() of the INSERT statement (autocommit, synchronous_commit=on)
  to the arrival of the Redis keyspace notification at a subscriber on the same machine.

Raw per-run figures: bench/results/latest.json (not committed).
MD
	close $md;
	say_("wrote bench/RESULTS.md");
}
# BENCH_MERGE=1 with BENCH_ONLY (full mode): the rows of this partial run
# replace the rows of the same name in RESULTS.md (new rows go after the
# last row of their section), and a "Partial re-runs" note says which rows,
# when, at which commit and with which command
if (!$QUICK && %ONLY && $ENV{BENCH_MERGE} && -f "$REPO/bench/RESULTS.md")
{
	open(my $in, '<', "$REPO/bench/RESULTS.md") or die "RESULTS.md: $!";
	my @md = <$in>;
	close $in;
	my $cell = sub { my ($l) = @_; $l =~ /^\|\s*(.*?)\s*\|/ ? $1 : undef };
	my @new = grep { /^\| / } split /^/, $table;
	shift @new;					# the header
	my @names;
	# the main table: the rows before the first section after it
	my ($first) = grep { $md[$_] =~ /^\| / } 0 .. $#md;
	for my $row (@new)
	{
		my ($end) = grep { $_ > $first && $md[$_] =~ /^## / } 0 .. $#md;
		$end //= scalar @md;
		my $name = $cell->($row);
		push @names, $name;
		my ($at) = grep { ($cell->($md[$_]) // '') eq $name } $first .. $end - 1;
		if (defined $at) { $md[$at] = $row; next }
		my ($sec) = $name =~ /^(\d+[a-z]?\.)/;
		my @same = grep { my $c = $cell->($md[$_]) // ''; defined $sec && index($c, $sec) == 0 } $first .. $end - 1;
		my @rows = grep { $md[$_] =~ /^\| / } $first .. $end - 1;
		my $after = @same ? $same[-1] : $rows[-1];
		splice @md, $after + 1, 0, $row;
	}
	# their notes replace the old ones (notes are one line each)
	for my $r (grep { $_->{note} } @ROWS)
	{
		my $line = "- $r->{bench}: $r->{note}\n";
		my ($at) = grep { index($md[$_], "- $r->{bench}: ") == 0 } 0 .. $#md;
		if (defined $at)
		{
			my $n = 1;
			$n++ while $at + $n <= $#md && $md[$at + $n] =~ /^  \S/;	# its continuation lines
			splice @md, $at, $n, $line;
			next;
		}
		my ($notes) = grep { $md[$_] eq "## Notes\n" } 0 .. $#md;
		splice @md, $notes + 2, 0, $line if defined $notes;
	}
	my $text = join('', @md);
	my $note = "- $date, commit $commit$dirty: `BENCH_ONLY=" . join(',', sort keys %ONLY) . " BENCH_MERGE=1 $ENV{BENCH_CMD}` re-ran "
	  . join(', ', sort keys %ONLY) . ' (rows of the table above: ' . scalar(@names) . ").\n";
	$text =~ s/(\n## Partial re-runs\n.*?\n)(\n## )/$1$note$2/s
	  or $text =~ s/\n## Scale curve\n/\n## Partial re-runs\n\nRows replaced in the table above after its full run (each row says its own figure; the\nrest of the table is from the full run).\n\n$note\n## Scale curve\n/;
	open(my $out, '>', "$REPO/bench/RESULTS.md") or die "RESULTS.md: $!";
	print $out $text;
	close $out;
	say_('merged ' . scalar(@names) . ' rows into bench/RESULTS.md');
}
exit(@PROBLEMS ? 1 : 0);

