# A TLS exchange with a stopped Redis (SIGSTOP) is interrupted exactly as
# over TCP: statement_timeout and query cancel stop a read that waits for a
# reply (OpenSSL wants to read) and a write that the socket does not take
# (OpenSSL wants to write), command_timeout bounds it, connect_timeout bounds
# the TLS handshake (and statement_timeout interrupts it); afterwards the
# session reconnects and gets its own replies.
use strict;
use warnings;

use IPC::Run ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::TLS;
use Test::More;

my $pki   = RedisSync::TLS::make_pki();
my $redis = RedisSync::TLS::start_tls_redis($pki);
my $node  = RedisSync::Test::new_node('tlsint', redis_url => $redis->url,
	extra_conf => "redis_sync.circuit_failures = 0\n"
	  . RedisSync::TLS::tls_conf($pki, verify => 'full'));
my $s   = RedisSync::Test::session($node);
my $pid = $s->query('SELECT pg_backend_pid()')->{out};

my $stopped = 0;
sub stop_redis { kill 'STOP', $redis->{pid}; $stopped = 1; }
sub cont_redis { kill 'CONT', $redis->{pid}; $stopped = 0; }
END { kill 'CONT', $redis->{pid} if $stopped && $redis->{pid}; }

# An interrupted exchange drops the connection, so each case below first
# reconnects (Redis running), then stops Redis: otherwise the case would
# interrupt the reconnect's TLS handshake instead of the read or write it
# is about.
sub fresh_connection
{
	my ($sess) = @_;
	cont_redis();
	my $r = $sess->query("SET statement_timeout = '30s';\n"
		  . "SELECT redis_sync.command('PING');");
	die "reconnect failed: $r->{err}" unless $r->{out} =~ /PONG/;
	stop_redis();
	return;
}

is($s->query("SELECT redis_sync.command('PING');")->{out}, '"PONG"', 'connected over TLS');

stop_redis();

# waiting for a reply: statement_timeout
my $r = $s->query("SET redis_sync.command_timeout = '60s';\n"
	  . "SET statement_timeout = '300ms';\n"
	  . "SELECT redis_sync.command('GET', 'k');");
like($r->{err}, qr/canceling statement due to statement timeout/,
	'TLS read from a stopped Redis: statement_timeout interrupts');
cmp_ok($r->{elapsed}, '<', 3, 'within 3s');

# a write the socket does not take (20 MB): statement_timeout
fresh_connection($s);
$r = $s->query("SET statement_timeout = '300ms';\nSELECT redis_sync.command('SET', 'big', repeat('x', 20000000));");
like($r->{err}, qr/canceling statement due to statement timeout/,
	'TLS write to a stopped Redis: statement_timeout interrupts');
cmp_ok($r->{elapsed}, '<', 3, 'within 3s');

# query cancel, sent once the backend waits on Redis (pg_stat_activity is
# read once per transaction unless its snapshot is cleared: a first look
# before the wait began, say while the 20 MB value is built, would be all
# the loop ever saw)
sub cancel_when_waiting
{
	my $sql = "SET statement_timeout = '30s';\n"
	  . "DO \$\$ BEGIN LOOP EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity"
	  . " WHERE pid = $pid AND state = 'active' AND wait_event_type = 'Extension');"
	  . " PERFORM pg_sleep(0.01); PERFORM pg_stat_clear_snapshot(); END LOOP; END \$\$;\n"
	  . "SELECT pg_cancel_backend($pid);";
	my ($out, $err) = ('', '');
	return IPC::Run::start(
		[ $node->installed_command('psql'), '-XAtq', '-d', $node->connstr('postgres'), '-c', $sql ],
		'<', \undef, '>', \$out, '2>', \$err);
}
fresh_connection($s);
my $h = cancel_when_waiting();
$r = $s->query("RESET statement_timeout;\nSELECT redis_sync.command('GET', 'k');");
$h->finish;
like($r->{err}, qr/canceling statement due to user request/, 'TLS read: query cancel interrupts');
cmp_ok($r->{elapsed}, '<', 10, 'promptly');

fresh_connection($s);
$h = cancel_when_waiting();
$r = $s->query("RESET statement_timeout;\nSELECT redis_sync.command('SET', 'big', repeat('x', 20000000));");
$h->finish;
like($r->{err}, qr/canceling statement due to user request/, 'TLS write: query cancel interrupts');

# command_timeout
fresh_connection($s);
$r = $s->query("RESET statement_timeout;\nSET redis_sync.command_timeout = '500ms';\n"
	  . "SELECT redis_sync.command('GET', 'k');");
like($r->{err}, qr/did not answer within 500 ms/, 'command_timeout bounds a TLS exchange');
cmp_ok($r->{elapsed}, '<', 3, 'within 3s');

# the TLS handshake with a stopped Redis: the kernel accepts the TCP
# connection, the handshake gets no answer
my $s2 = RedisSync::Test::session($node);
$r = $s2->query("SET redis_sync.connect_timeout = '500ms';\n"
	  . "SELECT redis_sync.command('PING');");
like($r->{err}, qr/could not establish a TLS connection.*\n.*TLS handshake timed out after 500 ms/,
	'connect_timeout bounds the TLS handshake');
cmp_ok($r->{elapsed}, '<', 3, 'within 3s');
$r = $s2->query("SET redis_sync.connect_timeout = '60s';\n"
	  . "SET statement_timeout = '300ms';\n"
	  . "SELECT redis_sync.command('PING');");
like($r->{err}, qr/canceling statement due to statement timeout/,
	'statement_timeout interrupts the TLS handshake');
cmp_ok($r->{elapsed}, '<', 3, 'within 3s');

cont_redis();

$r = $s->query("SET redis_sync.command_timeout = '5s';\nSELECT redis_sync.command('PING');");
is($r->{out}, '"PONG"', 'the session reconnects over TLS after Redis resumes');
is($s->query("SELECT redis_sync.command('ECHO', 'mine');")->{out}, '"mine"',
	'and gets its own replies (nothing left over from interrupted exchanges)');
is($s2->query("RESET statement_timeout;\nSELECT redis_sync.command('PING');")->{out}, '"PONG"',
	'the session whose handshake was interrupted connects too');

$s->quit;
$s2->quit;
$node->stop;
$redis->stop;
done_testing();
