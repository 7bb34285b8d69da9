# TLS under chaos (review of issue 15):
#
# - A connect interrupted inside the TLS handshake (Redis stopped, the
#   statement cancelled by statement_timeout) must not leave a half-made
#   connection that the next statement uses: that one would skip AUTH, SELECT
#   and CLIENT SETNAME and write into database 0 instead of the URL's.
# - Redis killed while a backend is stuck in a 20 MB TLS write: the backend
#   gets "lost connection" (no SIGPIPE death, no crash restart of the
#   server), and reconnects once Redis is back.
# - The worker, which also writes through OpenSSL's socket BIO (no
#   MSG_NOSIGNAL), ignores SIGPIPE.
# - An expired server certificate is refused, naming the reason.
# - Single-user mode (postgres --single, no postmaster to watch) can talk to
#   Redis (the wait set had a postmaster-death event epoll refused).
use strict;
use warnings;

use File::Temp ();
use IO::Socket::INET;
use IPC::Run ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::TLS;
use Test::More;
use Time::HiRes qw(time sleep);

my $pki   = RedisSync::TLS::make_pki();
my $redis = RedisSync::TLS::start_tls_redis($pki);
my $node  = RedisSync::Test::new_node('tlschaos', redis_url => $redis->url(3),
	extra_conf => "redis_sync.circuit_failures = 0\n"
	  . RedisSync::TLS::tls_conf($pki, verify => 'full'));

my $stopped = 0;
sub stop_redis { kill 'STOP', $redis->{pid}; $stopped = 1; }
sub cont_redis { kill 'CONT', $redis->{pid}; $stopped = 0; }
END { kill 'CONT', $redis->{pid} if $stopped && $redis->{pid}; }

sub poll_until
{
	my ($what, $cond) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	until ($cond->())
	{
		die "timed out waiting for $what" if time > $deadline;
		sleep 0.05;
	}
	return 1;
}

# ---- an interrupted TLS handshake leaves nothing usable behind ----
my $s   = RedisSync::Test::session($node);
my $pid = $s->query('SELECT pg_backend_pid()')->{out};

# connected once (a session's first connect is remade anyway), then an
# exchange and a reconnect interrupted while Redis is stopped
is($s->query("SELECT redis_sync.command('PING');")->{out}, '"PONG"', 'connected over TLS');
stop_redis();
my $r = $s->query("SET redis_sync.connect_timeout = '60s';\n"
	  . "SET statement_timeout = '300ms';\n"
	  . "SELECT redis_sync.command('GET', 'chaos:db');");
like($r->{err}, qr/canceling statement due to statement timeout/,
	'statement_timeout interrupts an exchange with a stopped Redis (the connection is dropped)');
$r = $s->query("SELECT redis_sync.command('PING');");
like($r->{err}, qr/canceling statement due to statement timeout/,
	'statement_timeout interrupts the reconnect\'s TLS handshake');
cont_redis();
# let Redis answer the ClientHello still queued on the interrupted socket
poll_until('Redis to answer again', sub { $redis->cli('PING') eq 'PONG' });

$r = $s->query("RESET statement_timeout;\n"
	  . "SELECT redis_sync.command('SET', 'chaos:db', 'here');\n"
	  . "SELECT redis_sync.command('CLIENT', 'GETNAME');");
is($r->{err}, '', 'the next statement works');
is($redis->cli('-n', '3', 'GET', 'chaos:db'), 'here',
	'after an interrupted handshake the write goes to the URL\'s database (SELECT was sent)');
is($redis->cli('-n', '0', 'GET', 'chaos:db'), '',
	'and not to database 0');
like($r->{out}, qr/"redis_sync:$pid:[^"]*"$/, 'CLIENT SETNAME was sent on the connection used');

# ---- Redis killed during a 20 MB TLS write ----
like($s->query("SELECT redis_sync.command('PING');\nSELECT pg_advisory_lock(135);")->{out},
	qr/^"PONG"/, 'connected');
# the writer connects (PING), waits for the lock, then writes 20 MB
my ($bout, $berr) = ('', '');
my $bg = IPC::Run::start(
	[ $node->installed_command('psql'), '-XAtq', '-d',
		$node->connstr('postgres') . ' application_name=bigwrite',
		'-c', "SELECT redis_sync.command('PING');",
		'-c', "SELECT pg_advisory_lock(135);",
		'-c', "SELECT redis_sync.command('SET', 'chaos:big', repeat('x', 20000000));" ],
	'<', \undef, '>', \$bout, '2>', \$berr,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
sub bigwrite_waits
{
	my ($type) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bigwrite'"
		  . " AND state = 'active' AND wait_event_type = '$type'") eq '1';
}
poll_until('the writer to connect and wait for the lock', sub { bigwrite_waits('Lock') });
stop_redis();
$s->query('SELECT pg_advisory_unlock(135);');
poll_until('the big write to wait on Redis', sub { bigwrite_waits('Extension') });
my $t0 = time;
kill 'KILL', $redis->{pid};
$stopped = 0;
poll_until('Redis to die', sub {
	!kill(0, $redis->{pid})
	  || (eval { slurp_file("/proc/$redis->{pid}/stat") } // '') =~ /^\d+ \(.*\) Z/
});
$redis->{pid} = undef;
$bg->finish;
like($berr, qr/lost connection to Redis at localhost:\d+/,
	'Redis killed during a TLS write: the writer gets "lost connection"');
unlike($berr, qr/server closed the connection unexpectedly/,
	'the backend did not die (no SIGPIPE)');
cmp_ok(time - $t0, '<', 10, 'promptly');
is($s->query('SELECT 1')->{out}, '1',
	'other sessions survive (no crash restart of the server)');
unlike(slurp_file($node->logfile), qr/terminated by signal/,
	'no process was terminated by a signal');

$redis->start;
$r = $s->query("SELECT redis_sync.command('PING');");
is($r->{out}, '"PONG"', 'the session reconnects over TLS after Redis restarts');

# ---- the worker ignores SIGPIPE ----
my $wpid;
poll_until('the worker', sub {
	$wpid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'redis_sync worker'");
	$wpid ne '';
});
my ($sigign) = slurp_file("/proc/$wpid/status") =~ /^SigIgn:\s*([0-9a-f]+)/m;
ok(defined $sigign && (hex(substr($sigign, -8)) & (1 << 12)),
	'the worker ignores SIGPIPE (TLS writes go through OpenSSL\'s socket BIO)');
my ($bsigign) = slurp_file("/proc/$pid/status") =~ /^SigIgn:\s*([0-9a-f]+)/m;
ok(defined $bsigign && (hex(substr($bsigign, -8)) & (1 << 12)),
	'so does a backend');

# ---- an expired server certificate ----
my $d = $pki->{dir};
RedisSync::TLS::openssl('req', '-new', '-key', $pki->{server_key},
	'-out', "$d/expired.csr", '-subj', '/CN=localhost');
RedisSync::TLS::openssl('x509', '-req', '-in', "$d/expired.csr", '-CA', $pki->{ca},
	'-CAkey', $pki->{ca_key}, '-CAcreateserial', '-days', '-1', '-sha256',
	'-extfile', "$d/server.ext", '-out', "$d/expired.crt");
$pki->{expired}     = "$d/expired.crt";
$pki->{expired_key} = $pki->{server_key};
# (started by hand: the helper's readiness check, redis-cli, verifies too)
my $eport = RedisSync::Test::free_port();
my ($eo, $ee) = ('', '');
my $edir  = File::Temp::tempdir('redis_exp_XXXX',
	DIR => $PostgreSQL::Test::Utils::tmp_check, CLEANUP => 1);
IPC::Run::run([ RedisSync::Test::redis_server_bin(),
		'--bind', '127.0.0.1', '--port', '0', '--tls-port', $eport,
		'--tls-cert-file', $pki->{expired}, '--tls-key-file', $pki->{expired_key},
		'--tls-ca-cert-file', $pki->{ca}, '--tls-auth-clients', 'no',
		'--save', '', '--appendonly', 'no', '--daemonize', 'yes',
		'--dir', $edir, '--logfile', "$edir/redis.log",
		'--pidfile', "$edir/redis.pid" ], '<', \undef, '>', \$eo, '2>', \$ee)
  or die "redis-server (expired certificate) failed: $eo $ee";
my $epid;
poll_until('the expired-certificate Redis', sub {
	return 0 unless -s "$edir/redis.pid"
	  && IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $eport);
	$epid = slurp_file("$edir/redis.pid");
	chomp $epid;
	return 1;
});
END { kill 'KILL', $epid if $epid; }
my $eurl = "rediss://localhost:$eport/0";
$node->safe_psql('postgres',
	"ALTER SYSTEM SET redis_sync.redis_url = '$eurl';\nSELECT pg_reload_conf();");
$node->poll_query_until('postgres',
	"SELECT current_setting('redis_sync.redis_url') = '$eurl'")
  or die 'redis_url not reloaded';
my ($ret, $out, $err) = $node->psql('postgres', "SELECT redis_sync.command('PING')");
like($err, qr/could not establish a TLS connection to Redis at localhost:\d+\n.*certificate has expired/,
	'an expired server certificate is refused with OpenSSL\'s reason');
$node->safe_psql('postgres',
	"ALTER SYSTEM SET redis_sync.redis_url = '" . $redis->url(3) . "';\n"
	  . "SELECT pg_reload_conf();");
$node->poll_query_until('postgres',
	"SELECT current_setting('redis_sync.redis_url') = '" . $redis->url(3) . "'")
  or die 'redis_url not reloaded';

$s->quit;
$node->stop;

# ---- single-user mode (no postmaster to watch): TLS works there too ----
{
	my ($sout, $serr) = ('', '');
	IPC::Run::run(
		[ $node->installed_command('postgres'), '--single', '-D', $node->data_dir,
			'postgres' ],
		'<', \"SELECT redis_sync.command('ECHO', 'single');\n",
		'>', \$sout, '2>', \$serr,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	like($sout, qr/"single"/, 'command() over TLS in single-user mode');
	unlike($sout . $serr, qr/epoll_ctl/, 'no wait-set failure in single-user mode');
}

$redis->stop;
kill 'KILL', $epid;
$epid = undef;
done_testing();
