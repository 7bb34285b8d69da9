# rediss:// to servers that break the TLS handshake (review of issue 15):
# one that hangs up at once, one that reads the ClientHello and hangs up, one
# that answers it in plain text.  Each fails at once (well within
# connect_timeout) with a message that says what happened, and the backend
# stays usable.
use strict;
use warnings;

use IO::Socket::INET;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::TLS;
use Test::More;
use Time::HiRes qw(time);

my $pki = RedisSync::TLS::make_pki();

# a loopback server that treats every connection with $how, in a child
my @children;
END { kill 'KILL', @children if @children; }

sub fake_server
{
	my ($how) = @_;
	my $port = RedisSync::Test::free_port();
	my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
		Listen => 16, ReuseAddr => 1) or die "listen on $port: $!";
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		while (my $c = $l->accept)
		{
			my $buf;
			if ($how eq 'read_close') { $c->sysread($buf, 65536); }
			elsif ($how eq 'plain_text')
			{
				$c->sysread($buf, 65536);
				$c->syswrite("-ERR unknown command\r\n" x 4);
			}
			close $c;
		}
		POSIX::_exit(0);
	}
	close $l;
	push @children, $pid;
	return $port;
}

my $node = RedisSync::Test::new_node('tlsbad', redis_url => 'rediss://localhost:1/0',
	extra_conf => "redis_sync.circuit_failures = 0\nredis_sync.connect_timeout = '5s'\n"
	  . RedisSync::TLS::tls_conf($pki, verify => 'full'));

sub try_port
{
	my ($port) = @_;
	my $url = "rediss://localhost:$port/0";
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET redis_sync.redis_url = '$url';\nSELECT pg_reload_conf();");
	$node->poll_query_until('postgres', "SELECT current_setting('redis_sync.redis_url') = '$url'")
	  or die 'redis_url not reloaded';
	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT redis_sync.command('PING')");
	return ($err, time - $t0);
}

for my $case (
	# (hung up before or after the ClientHello arrives: EOF or a reset)
	[ 'close', qr/(closed the connection|connection failed) during the TLS handshake/,
		'a server that hangs up at once' ],
	[ 'read_close', qr/closed the connection during the TLS handshake/,
		'a server that reads the ClientHello and hangs up' ],
	[ 'plain_text', qr/TLS error: .*Does the server accept TLS on this port\?/,
		'a server that answers in plain text' ])
{
	my ($how, $re, $name) = @$case;
	my ($err, $secs) = try_port(fake_server($how));
	like($err, qr/could not establish a TLS connection to Redis at localhost:\d+\nDETAIL:  .*/,
		"$name: the TLS connection fails");
	like($err, $re, "$name: the detail says what happened");
	cmp_ok($secs, '<', 4, "$name: at once, not after connect_timeout");
}

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server is fine');

$node->stop;
done_testing();
