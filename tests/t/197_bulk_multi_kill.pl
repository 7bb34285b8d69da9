# Bulk pushes as MULTI/EXEC (redis_sync.bulk_multi) and the connection kill
# that makes them safe, against a real redis-server behind a hold proxy
# (tests/lib/hold_proxy.pl, RedisSync::HoldProxy).
#
# A pre-commit push of >= 32 keys on a single Redis goes as MULTI ... EXEC,
# without the apply script's version check.  That is safe only if a push
# whose outcome is unknown (timeout, cancel, FATAL, backend killed) can never
# be run by Redis after a newer write of its keys.  The proxy models a network
# that delays a push: on "hold" it keeps the bytes the client sends on every
# open connection (even after the client gave up and closed it) and on
# "release" delivers them, or drops them when Redis has closed that
# connection in between.  Each scenario holds a session's bulk push, lets the
# session fail (or die), commits a newer value of the same rows from another
# session, and only then releases.  What must be seen:
#
# - Redis closed the held connection before the release (the proxy logged
#   "upstream-closed N" while the bytes were still held): the deterministic
#   proof that Redis can no longer run them, whatever the timing;
# - the release "dropped" the held bytes (all of them);
# - the old connection's id is no longer in CLIENT LIST, and the cache
#   equals the table (every key holds the newer value).
#
# Scenarios:
#   (c)  bulk_multi off: the bulk push is the apply script (EVALSHA grows,
#        EXEC does not); on (the default): EXEC grows, EVALSHA does not;
#   (a)  the push times out (command_timeout), ends with "could not push
#        changes to Redis", the strict transaction rolls back;
#   (a2) the push is cancelled (pg_cancel_backend);
#   (a3) the backend is terminated (pg_terminate_backend: FATAL in the wait);
#   (a4) the held push is the session's first bulk push (it pushed one row
#        through the script before): whether its connection was named then
#        or is named now, and whatever the session's outcome, no held MULTI
#        may survive to the release;
#   (a5) as (a) on an eventual table: the transaction commits (its keys go
#        to the outbox), so a late push would be a committed transaction's,
#        which the in-flight marker sweep does not repair: the cache must
#        equal the table after the release and after the sweep;
#   (b)  the backend is killed with SIGKILL while its push is held (crash
#        restart: the registry in shared memory is lost; the connections of
#        the earlier incarnation are found by name in CLIENT LIST);
#   (b2) immediate shutdown and start while the push is held (same, through
#        a postmaster start instead of a crash restart);
#   (b3) as (b2), the server started again on another port (same system,
#        same data directory): its earlier run's connections are still its;
#   (d)  as (a5), but redis_url is respelled (localhost for 127.0.0.1, the
#        same Redis) between the abandonment and the newer write;
#   (e)  a bulk push whose connection is cut between its registration and
#        its send (right after its gate's CLIENT KILL): a MULTI it sends on a
#        new connection must be as killable as one on the registered one.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use RedisSync::HoldProxy;
use RedisSync::RESP;
use Test::More;
use Time::HiRes qw(time);

my $ROWS = 100;

my $redis = RedisSync::Test::start_redis();
my $proxy = RedisSync::HoldProxy->start(upstream => $redis->port);
my $node  = RedisSync::Test::new_node(
	'bulkkill',
	redis_url  => $proxy->url,
	extra_conf => <<"EOC");
redis_sync.command_timeout = '1s'
restart_after_crash = on
EOC

my $t = RedisSync::Synced::synced_table($node, 't',
	with => "consistency => 'strict'",
	rows => $ROWS);
$t->cache_matches($redis, 'strict table of 100 rows cached through the proxy');
my $e = RedisSync::Synced::synced_table($node, 'e',
	with => "consistency => 'eventual'",
	rows => $ROWS);
$e->cache_matches($redis, 'eventual table of 100 rows cached through the proxy');
my $marker = $node->safe_psql('postgres',
	"SELECT 'redis_sync:inflight:' || system_identifier || ':' || "
	  . "(SELECT oid FROM pg_database WHERE datname = 'postgres') FROM pg_control_system()");

my ($ret, $show) = $node->psql('postgres', 'SHOW redis_sync.bulk_multi');
is($ret,  0,    'redis_sync.bulk_multi exists');
is($show, 'on', 'redis_sync.bulk_multi is on by default');

# ---------------------------------------------------------------- helpers

# CLIENT LIST (straight to Redis, not through the proxy): addr => { field => value }
sub client_list
{
	my %c;
	for my $line (split /\n/, $redis->cli('CLIENT', 'LIST'))
	{
		my %f = map { split /=/, $_, 2 } split ' ', $line;
		$c{ $f{addr} } = \%f if defined $f{addr};
	}
	return \%c;
}

# the Redis side of proxy connection N, as CLIENT LIST shows it (or undef)
sub redis_client_of
{
	my ($n) = @_;
	my $conn = $proxy->conn($n) or return undef;
	return client_list()->{"127.0.0.1:$conn->{upstream}"};
}

sub client_ids { return { map { $_->{id} => $_ } values %{ client_list() } }; }

# A name of the kill protocol: redis_sync:<instance>:<generation>, where
# the instance may have several ':'-separated parts and may carry the
# backend's pid.  Returns (instance without the pid, generation), or ().
sub parse_name
{
	my ($name, $pid) = @_;
	return () unless defined $name && $name =~ /^redis_sync:(\S+):([^:\s]+)$/;
	my ($inst, $gen) = ($1, $2);
	my @parts = grep { !defined $pid || $_ ne $pid } split /:/, $inst;
	return () unless @parts;
	return (join(':', @parts), $gen);
}

# Warm up session $s (backend $pid, created after proxy log mark $from) with
# bulk UPDATEs of $tab until its Redis connection carries a name of the kill
# protocol (a backend's first push may go through the script while it
# learns that Redis is not a cluster).  Its connection: the one opened since
# $from, still open, so named, whose name has the backend's pid, or (names
# without a pid) the only one so named.  Returns the proxy connection
# number, or undef.
sub warm_named
{
	my ($s, $from, $tab, $pid) = @_;
	$tab //= 't';
	for my $try (1 .. 3)
	{
		my $w = $s->query("UPDATE $tab SET v = v + 1");
		return undef if $w->{err} ne '';
		my %gone = map { /^(?:client|upstream)-closed (\d+)$/ ? ($1 => 1) : () }
		  $proxy->grep_lines(qr/-closed /, $from);
		my (@named, @mine);
		for my $line ($proxy->grep_lines(qr/^open /, $from))
		{
			my ($n) = $line =~ /^open (\d+) /;
			next if $gone{$n};
			my $c = redis_client_of($n) or next;
			my $name = $c->{name} // '';
			next unless parse_name($name);
			push @named, $n;
			push @mine, $n if defined $pid && grep { $_ eq $pid } split /:/, $name;
		}
		note("warm-up $try: named connections opened since: @named; with pid $pid: @mine");
		return $mine[0] if @mine == 1;
		return $named[0] if !@mine && @named == 1;
	}
	return undef;
}

# INFO commandstats: { name => calls }
sub cmdstats
{
	my %s;
	for (split /\r?\n/, $redis->cli('INFO', 'commandstats'))
	{
		$s{$1} = $2 if /^cmdstat_(\S+?):calls=(\d+)/;
	}
	return \%s;
}

sub note_counts
{
	my ($tab) = @_;
	$tab //= 't';
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(note || '=' || n, ' ' ORDER BY note), '') "
		  . "FROM (SELECT note, count(*) AS n FROM $tab GROUP BY note) x");
}

# the rows' note in Redis, counted: "value=count ..."
sub redis_note_counts
{
	my ($tab) = @_;
	$tab //= 't';
	my $c = $redis->resp;
	$c->write(join '', map { RedisSync::RESP::encode('HGET', "$tab:$_", 'note') } 1 .. $ROWS);
	my %n;
	$n{ $c->read // '(none)' }++ for 1 .. $ROWS;
	$c->close;
	return join(' ', map { "$_=$n{$_}" } sort keys %n);
}

# the held connection whose held bytes include EXEC (from log mark $from)
sub wait_held_exec
{
	my ($from, $timeout) = @_;
	my (undef, $n) = $proxy->wait_line(qr/^held-data (\d+) \d+ .*\bEXEC=\d/, $timeout, $from);
	return $n;
}

# Every held connection whose held bytes hold an EXEC must be closed by
# Redis before the release; returns the ones that were not.
sub held_exec_not_closed
{
	my ($from, $timeout) = @_;
	my %exec = map { /^held-data (\d+) / ? ($1 => 1) : () }
	  $proxy->grep_lines(qr/^held-data \d+ \d+ .*\bEXEC=\d/, $from);
	my @open;
	for my $n (sort { $a <=> $b } keys %exec)
	{
		push @open, $n
		  unless defined $proxy->wait_line(qr/^upstream-closed $n$/, $timeout, $from);
	}
	return @open;
}

# after the release: the held connection's bytes were dropped, not run
sub check_release
{
	my ($name, $n, %o) = @_;
	my %r = $proxy->release;
	my $held = $proxy->held_data($n);
	my ($what, $bytes) = @{ $r{$n} // [ 'nothing', -1 ] };
	is($what, 'dropped', "$name: the release dropped the held push (Redis had closed it)");
	is($bytes, $held ? $held->{bytes} : -2, "$name: all of its held bytes were dropped ($bytes)");
	return;
}

# ---------------------------------------------------------------- (c)
# Script or MULTI for a bulk push, by the setting, in one session (its
# connection is up, and it has pushed once).  The worker is paused so its
# own calls do not move the counters.
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', '(c) worker paused');
my $d = sub { my ($a, $b, $k) = @_; return ($b->{$k} // 0) - ($a->{$k} // 0); };
my $show_d = sub {
	my ($a, $b) = @_;
	return join(' ', map { "$_ +" . $d->($a, $b, $_) } qw(exec multi evalsha eval));
};
my $sc = RedisSync::Test::session($node);
is($sc->query("UPDATE t SET v = v + 1 WHERE id = 1")->{err}, '', '(c) a one-row UPDATE first');
$sc->query('SET redis_sync.bulk_multi = off');
my $s0 = cmdstats();
is($sc->query("UPDATE t SET v = v + 1")->{err}, '', '(c) bulk_multi off: a 100-row UPDATE');
my $s1 = cmdstats();
note('off: ' . $show_d->($s0, $s1));
is($d->($s0, $s1, 'exec'), 0, '(c) bulk_multi off: it sends no EXEC');
cmp_ok($d->($s0, $s1, 'evalsha') + $d->($s0, $s1, 'eval'),
	'>=', 1, '(c) bulk_multi off: it goes through the apply script (EVALSHA)');
$t->cache_matches($redis, '(c) cache == table after the scripted bulk push');

$sc->query('SET redis_sync.bulk_multi = on');
$s1 = cmdstats();    # the comparison ran EVAL
is($sc->query("UPDATE t SET v = v + 1")->{err}, '', '(c) bulk_multi on: a 100-row UPDATE');
my $s2 = cmdstats();
note('on: ' . $show_d->($s1, $s2));
cmp_ok($d->($s1, $s2, 'exec'), '>=', 1, '(c) bulk_multi on: it sends EXEC');
is($d->($s1, $s2, 'evalsha') + $d->($s1, $s2, 'eval'), 0, '(c) bulk_multi on: and no apply script call');
$t->cache_matches($redis, '(c) cache == table after the MULTI bulk push');

# a small push goes as MULTI/EXEC too
$s2 = cmdstats();
is($sc->query("UPDATE t SET v = v + 1 WHERE id <= 5")->{err}, '', '(c) a 5-row UPDATE');
my $s3 = cmdstats();
note('5 rows: ' . $show_d->($s2, $s3));
cmp_ok($d->($s2, $s3, 'exec'), '>=', 1, '(c) a 5-row UPDATE sends EXEC');
$sc->quit;

# the default, and the first push of a new backend (a single Redis: MULTI)
my ($rc, $shown) = $node->psql('postgres', "SHOW redis_sync.bulk_multi; UPDATE t SET v = v + 1");
my $s4 = cmdstats();
note('new backend: ' . $show_d->($s3, $s4));
is($shown, 'on', '(c) a new backend: bulk_multi is on');
cmp_ok($d->($s3, $s4, 'exec'), '>=', 1, "(c) a new backend's first 100-row UPDATE sends EXEC");
is($d->($s3, $s4, 'evalsha') + $d->($s3, $s4, 'eval'), 0, '(c) and no apply script call');
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');

# ---------------------------------------------------------------- (a)
# A session's bulk push held in the proxy; the session fails ($how) while
# the push is held; a new session commits newer values; only then release.
sub abandoned
{
	my ($name, $how, %o) = @_;
	my $tab = $o{table} // $t;
	my $tn       = $tab->name;
	my $eventual = $tn eq 'e';
	my $newv     = "new-$name";
	my $oldv     = $eventual ? 'late' : 'aborted';

	my $m0 = $proxy->mark;
	my $s1 = RedisSync::Test::session($node);
	my $pid1 = $s1->query('SELECT pg_backend_pid()')->{out};
	# the session's connection exists and has done a MULTI push (named)
	my $warm = warm_named($s1, $m0, $tn, $pid1);
	ok(defined $warm, "$name: session 1's bulk UPDATE named its connection to Redis");
	$warm //= -2;
	$s1->query("SET redis_sync.command_timeout = '"
		  . ($how eq 'timeout' ? '3s' : '5min') . "'");

	is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', "$name: worker paused")
	  if $o{pause_worker};
	my $from = $proxy->mark;
	my @held = $proxy->hold;
	note("$name: held connections @held");
	$s1->start_query("UPDATE $tn SET note = '$oldv'");
	my $n1 = wait_held_exec($from, 30);
	ok(defined $n1, "$name: session 1's bulk push (MULTI ... EXEC) is held in the proxy");
	$n1 //= -1;
	is($n1, $warm, "$name: on the connection it named before the hold (connection $warm)");
	ok((grep { $_ == $n1 } @held), "$name: which the proxy held");
	my $c1 = redis_client_of($n1);
	ok(defined $c1, "$name: Redis lists the held connection");
	$c1 //= {};
	like($c1->{name} // '', qr/^redis_sync:\S+:\S+$/,
		"$name: it is named redis_sync:<instance>:<generation> (" . ($c1->{name} // '') . ')');
	my $id1 = $c1->{id} // -1;

	if ($how eq 'cancel')
	{
		$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid1)");
	}
	elsif ($how eq 'terminate')
	{
		$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid1)");
	}
	my $res = $s1->finish_query;
	if ($how eq 'timeout' && $eventual)
	{
		is($res->{err}, '', "$name: eventual: session 1 commits after its push timed out");
		is(note_counts($tn), "$oldv=$ROWS", "$name: the table holds session 1's values");
	}
	elsif ($how eq 'timeout')
	{
		like($res->{err}, qr/ERROR:  could not push changes to Redis/,
			"$name: session 1 fails with 'could not push changes to Redis'");
	}
	elsif ($how eq 'cancel')
	{
		like($res->{err}, qr/ERROR:/, "$name: session 1's UPDATE fails on the cancel");
	}
	else
	{
		like($res->{err}, qr/FATAL:|terminat|server closed the connection/,
			"$name: session 1 is terminated");
	}
	is($node->safe_psql('postgres', "SELECT count(*) FROM $tn WHERE note = '$oldv'"),
		'0', "$name: strict: session 1's UPDATE rolled back")
	  unless $eventual;

	$o{between}->() if $o{between};

	# a new connection (opened after the hold: it passes)
	my $s2 = RedisSync::Test::session($node);
	my $r2 = $s2->query("UPDATE $tn SET note = '$newv'");
	is($r2->{err}, '', "$name: session 2 updates every row and commits");

	my @open = held_exec_not_closed($from, 30);
	is("@open", '',
		"$name: Redis closed every connection holding a MULTI push before the release");
	my $ids = client_ids();
	ok(!exists $ids->{$id1}, "$name: CLIENT LIST no longer has id $id1");

	check_release($name, $n1);
	is(note_counts($tn), "$newv=$ROWS", "$name: the table holds session 2's values");
	$tab->cache_matches($redis, "$name: cache == table after the release");
	is(redis_note_counts($tn), "$newv=$ROWS", "$name: every key in Redis shows '$newv'");
	if ($eventual)
	{
		# a late push of a committed transaction is not repaired by the
		# marker sweep (it committed): the cache would stay stale
		$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()') if $o{pause_worker};
		RedisSync::Compare::drain_outbox($node);
		ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HLEN', $marker) eq '0' }, 30),
			"$name: the in-flight markers are cleared");
		$tab->cache_matches($redis, "$name: cache == table after the marker sweep");
	}

	$s1->quit unless $res->{ended};
	$s2->quit;
	return;
}

abandoned('(a) timeout',   'timeout');
abandoned('(a2) cancel',   'cancel');
abandoned('(a3) terminate', 'terminate');
abandoned('(a5) eventual table, timeout', 'timeout', table => $e);

# ---------------------------------------------------------------- (a4)
# The held push is the first bulk push of its connection (a one-row push
# went through the script before).  If naming the connection were a round
# trip of the first MULTI push, it would be held with it: the MULTI must
# still be killable, or not be sent.  Whatever session 1's outcome (it may
# fall back to the script on a new connection), no held MULTI may survive to
# the release, and the cache ends equal to the table.
{
	my $name = '(a4) first bulk push of the connection';
	my $s1   = RedisSync::Test::session($node);
	my $w    = $s1->query("UPDATE t SET v = v + 1 WHERE id = 1");
	is($w->{err}, '', "$name: session 1 warms up with a one-row UPDATE (script, not named)");
	my $from = $proxy->mark;
	my @held = $proxy->hold;
	my $res  = $s1->query("UPDATE t SET note = 'first'");
	note("$name: session 1: " . ($res->{err} || 'committed'));
	my $first = $node->safe_psql('postgres', "SELECT count(*) FROM t WHERE note = 'first'");
	ok($first eq '0' || $first eq "$ROWS", "$name: session 1 committed all or nothing ($first)");
	my @data = $proxy->grep_lines(qr/^held-data /, $from);
	note("$name: held: @data");

	my $s2 = RedisSync::Test::session($node);
	my $r2 = $s2->query("UPDATE t SET note = 'new-a4'");
	is($r2->{err}, '', "$name: session 2 updates every row and commits");
	my @open = held_exec_not_closed($from, 30);
	is("@open", '', "$name: no held MULTI push survives to the release");
	my %rel = $proxy->release;
	note("$name: release: " . join(' ', map { "$_:@{$rel{$_}}" } sort keys %rel));
	$t->cache_matches($redis, "$name: cache == table after the release");
	is(redis_note_counts(), "new-a4=$ROWS", "$name: every key in Redis shows 'new-a4'");
	$s1->quit;
	$s2->quit;
}

# ---------------------------------------------------------------- (b)
# The backend dies while its bulk push is held: SIGKILL (crash restart) or
# an immediate shutdown and a start.  Shared memory, and its registry, is
# made anew; the held connection is found in CLIENT LIST by its name.
sub node_back
{
	return RedisSync::Compare::wait_for(
		sub {
			my ($rc, $o) = $node->psql('postgres', 'SELECT 1');
			return $rc == 0 && $o eq '1';
		},
		60, 0.1);
}

sub restarted
{
	my ($name, $how) = @_;
	my $newv = "new-$how";

	my $m0 = $proxy->mark;
	my $s1 = RedisSync::Test::session($node);
	my $pid1 = $s1->query('SELECT pg_backend_pid()')->{out};
	my $warm = warm_named($s1, $m0, 't', $pid1);
	ok(defined $warm, "$name: session 1's bulk UPDATE named its connection to Redis");
	$warm //= -2;
	$s1->query("SET redis_sync.command_timeout = '5min'");

	my $from = $proxy->mark;
	my @held = $proxy->hold;
	$s1->start_query("UPDATE t SET note = 'crashed'");
	my $n1 = wait_held_exec($from, 30);
	ok(defined $n1, "$name: session 1's bulk push (MULTI ... EXEC) is held in the proxy");
	$n1 //= -1;
	is($n1, $warm, "$name: on the connection it named before the hold (connection $warm)");
	my $c1 = redis_client_of($n1) // {};
	my $name1 = $c1->{name} // '';
	my ($inst1, $gen1) = parse_name($name1, $pid1);
	ok(defined $gen1, "$name: the held connection is named redis_sync:<instance>:<generation> ($name1)");
	($inst1, $gen1) = ('?', '?') unless defined $gen1;
	my $id1 = $c1->{id} // -1;

	my $log_offset = -s $node->logfile;
	if ($how eq 'crash')
	{
		ok(kill('KILL', $pid1), "$name: SIGKILL to session 1's backend $pid1");
	}
	elsif ($how eq 'port')
	{
		# the same data directory and system, started on another port
		$node->stop('immediate');
		my $port = PostgreSQL::Test::Cluster::get_free_port();
		$node->append_conf('postgresql.conf', "port = $port");
		$node->{_port} = $port;
		$node->start;
		note("$name: now on port $port");
	}
	else
	{
		$node->stop('immediate');
		$node->start;
	}
	my $res = $s1->finish_query;
	ok($res->{ended} || $res->{err} =~ /closed|terminat/,
		"$name: session 1's connection to Postgres is gone");
	ok(defined node_back(), "$name: the server is back");
	like(substr(slurp_file($node->logfile), $log_offset),
		qr/all server processes terminated; reinitializing/, "$name: crash restart")
	  if $how eq 'crash';
	is($node->safe_psql('postgres', "SELECT count(*) FROM t WHERE note = 'crashed'"),
		'0', "$name: session 1's UPDATE rolled back");

	my $m2 = $proxy->mark;
	my $s2 = RedisSync::Test::session($node);
	my $r2 = $s2->query("UPDATE t SET note = '$newv'");
	is($r2->{err}, '', "$name: a new session updates every row and commits");

	my @open = held_exec_not_closed($from, 30);
	is("@open", '',
		"$name: Redis closed every connection holding a MULTI push before the release");
	my $ids = client_ids();
	ok(!exists $ids->{$id1}, "$name: CLIENT LIST no longer has id $id1");
	# the new session's connection, once named (after another bulk push if
	# need be), carries the new generation
	my $pid2 = $s2->query('SELECT pg_backend_pid()')->{out};
	my $n2 = warm_named($s2, $m2, 't', $pid2);
	ok(defined $n2, "$name: the new session's connection gets named");
	my $name2 = defined $n2 ? (redis_client_of($n2) // {})->{name} // '' : '';
	my ($inst2, $gen2) = parse_name($name2, $pid2);
	is($inst2 // '', $inst1, "$name: the new session's connection names the same instance ($name2)")
	  unless $how eq 'port';
	isnt($gen2 // $gen1, $gen1, "$name: ... under another generation than $gen1");
	note("$name: " . $_)
	  for grep { /left by an earlier server run/ }
	  split /\n/, substr(slurp_file($node->logfile), $log_offset);

	check_release($name, $n1);
	is(note_counts(), "$newv=$ROWS", "$name: the table holds the new session's values");
	$t->cache_matches($redis, "$name: cache == table after the release");
	is(redis_note_counts(), "$newv=$ROWS", "$name: every key in Redis shows '$newv'");
	$s2->quit;
	return;
}

restarted('(b) crash restart', 'crash');
restarted('(b2) immediate shutdown and start', 'immediate');
restarted('(b3) immediate shutdown, start on another port', 'port');

# ---------------------------------------------------------------- (e)
# A push whose connection changes between its registration and its send:
# session V's bulk push kills an abandoned connection first (its gate), and
# right after that kill's reply the network cuts V's connection.  If the
# push then reconnects and sends its MULTI on the new connection, that
# connection was never registered: when its outcome is unknown it must still
# be killed before a newer write (or the MULTI must not go out on it).  The
# proxy holds the first connection opened after the cut from its first MULTI.
{
	my $name = '(e) connection changed after registration';
	my $wt   = RedisSync::Synced::synced_table($node, 'w',
		with => "consistency => 'eventual'",
		rows => 5000);
	$wt->wait_cache_matches($redis, "$name: eventual table w of 5000 rows cached");
	is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', "$name: worker paused");

	# session X: a bulk push held and abandoned
	my $mx   = $proxy->mark;
	my $sx   = RedisSync::Test::session($node);
	my $pidx = $sx->query('SELECT pg_backend_pid()')->{out};
	ok(defined warm_named($sx, $mx, 't', $pidx), "$name: session X's connection named");
	$sx->query("SET redis_sync.command_timeout = '2s'");
	my $from = $proxy->mark;
	$proxy->hold;

	# session V: connected after the hold (passes), pushed once already
	my $sv = RedisSync::Test::session($node);
	is($sv->query("UPDATE w SET v = v + 1 WHERE id = 1")->{err}, '', "$name: session V pushed once");
	$sv->query("SET redis_sync.command_timeout = '2s'; SET redis_sync.chunk_size = 100000");

	# session W connects to Redis now (after the hold: it passes; before
	# X's push is abandoned: it kills nothing): the arm below holds the next
	# connection opened, which must be V's reconnection if there is one
	# (there must not be), never W's
	my $sw = RedisSync::Test::session($node);
	is($sw->query("SELECT redis_sync.command('PING')")->{out}, '"PONG"', "$name: session W connected to Redis");

	my $rx = $sx->query("UPDATE t SET note = 'x-aborted'");
	like($rx->{err}, qr/could not push changes to Redis/, "$name: session X's push timed out");

	$proxy->arm;
	my $rv = $sv->query("UPDATE w SET note = 'v-late'");
	note("$name: session V: " . ($rv->{err} || 'committed'));
	note("$name: proxy: " . join(' | ', $proxy->grep_lines(qr/^(?:cut|hold|held-data|open) /, $from)));
	ok(scalar($proxy->grep_lines(qr/^cut \d+/, $from)),
		"$name: session V's connection was cut after its gate's kill (the case is exercised)");
	my $vt = $node->safe_psql('postgres', "SELECT count(*) FROM w WHERE note = 'v-late'");
	ok($vt eq '0' || $vt eq '5000', "$name: session V committed all or nothing ($vt)");

	is($sw->query("UPDATE w SET note = 'w-new'")->{err}, '', "$name: session W updates every row and commits");

	my @open = held_exec_not_closed($from, 30);
	is("@open", '',
		"$name: Redis closed every connection holding a MULTI push before the release");
	my %rel = $proxy->release;
	note("$name: release: " . join(' ', map { "$_:@{$rel{$_}}" } sort keys %rel));
	$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
	RedisSync::Compare::drain_outbox($node);
	ok(defined RedisSync::Compare::wait_for(sub { $redis->cli('HLEN', $marker) eq '0' }, 30),
		"$name: the in-flight markers are cleared");
	$wt->cache_matches($redis, "$name: cache == table after the release, the outbox and the sweep");
	$_->quit for ($sx, $sv, $sw);
}

# ---------------------------------------------------------------- (d)
# The same Redis under another spelling of its address: after session 1's
# push is abandoned, redis_url changes from 127.0.0.1 to localhost (the same
# proxy, the same Redis).  "Any later exchange with that Redis" must still
# kill the abandoned connection first.
abandoned(
	'(d) redis_url respelled',
	'timeout',
	table        => $e,
	pause_worker => 1,    # or its delivery kills the connection before the change
	between      => sub {
		(my $url = $proxy->url) =~ s/127\.0\.0\.1/localhost/;
		$node->safe_psql('postgres',
			"ALTER SYSTEM SET redis_sync.redis_url = '$url'; SELECT pg_reload_conf();");
		ok( defined RedisSync::Compare::wait_for(
				sub { $node->safe_psql('postgres', 'SHOW redis_sync.redis_url') eq $url }, 30),
			"(d) redis_sync.redis_url is now $url");
	});

$node->stop;
$proxy->stop;
done_testing();
