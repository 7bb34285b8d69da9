# redis_sync.connect_timeout bounds a connect that the server never answers.
# A loopback listener whose accept queue is full drops further SYNs, so the
# connect hangs the way it does against a dead host; it must fail after about
# connect_timeout, with the address and "timed out" in the error, and the
# session must work once a real Redis is configured.
use strict;
use warnings;

use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

# a listener that never accepts, with its backlog filled
my $listener = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => 0,
	Proto     => 'tcp',
	Listen    => 0) or die "listen: $!";
my $port = $listener->sockport;
my @fillers;
for (1 .. 8)
{
	my $c = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $port,
		Proto    => 'tcp',
		Blocking => 0);
	push @fillers, $c if $c;
}

my $node = RedisSync::Test::new_node(
	'connect_timeout',
	redis_url  => "redis://127.0.0.1:$port/0",
	extra_conf => "redis_sync.connect_timeout = '700ms'\nredis_sync.circuit_failures = 0\n");
my $s = RedisSync::Test::session($node);

my $r = $s->query("SELECT redis_sync.command('PING');");
like($r->{err}, qr/could not connect to Redis at 127\.0\.0\.1:$port/, 'connect fails, naming the address');
if ($r->{err} =~ /timed out/)
{
	pass('the error says the connect timed out');
	cmp_ok($r->{elapsed}, '>=', 0.6, 'it waited about connect_timeout');
	cmp_ok($r->{elapsed}, '<', 3, 'and not much longer');
}
else
{
	# some kernels refuse instead of dropping; the bound still holds
	note("kernel refused instead of dropping the SYN: $r->{err}");
	cmp_ok($r->{elapsed}, '<', 3, 'failure within 3s');
}

# a shorter timeout applies to the next attempt in the same session
$r = $s->query("SET redis_sync.connect_timeout = '200ms';\nSELECT redis_sync.command('PING');");
like($r->{err}, qr/could not connect to Redis/, 'fails again with a shorter timeout');
cmp_ok($r->{elapsed}, '<', 2, 'within about the shorter timeout');

# the session recovers as soon as a reachable Redis is configured
my $redis = RedisSync::Test::start_redis();
$node->append_conf('postgresql.conf', "redis_sync.redis_url = '" . $redis->url . "'\n");
$node->reload;
my $ok = 0;
for (1 .. 100)
{
	$r = $s->query("SELECT redis_sync.command('PING');");
	if ($r->{out} eq '"PONG"') { $ok = 1; last; }
}
ok($ok, 'after reloading redis_url the same session answers PONG');

$s->quit;
$node->stop;
close $_ for @fillers;
close $listener;
done_testing();
