# redis_sync.command() against a Redis that is not there yet: it must fail
# fast with the address in the message, and the same backend must succeed
# once a server appears on that port.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $port = RedisSync::Test::free_port();
my $node = RedisSync::Test::new_node(
	'unreachable',
	redis_url  => "redis://127.0.0.1:$port/0",
	extra_conf => "redis_sync.connect_timeout = '500ms'\n");

my $s = RedisSync::Test::session($node);

my $r = $s->query("SELECT redis_sync.command('PING');");
like($r->{err}, qr/ERROR:/, 'PING with no server fails');
like($r->{err}, qr/127\.0\.0\.1:$port\b/, 'error names the Redis address');
cmp_ok($r->{elapsed}, '<', 3, 'failure is reported within 3s');
is($r->{out}, '', 'no result row');

my $redis = RedisSync::Test::start_redis(port => $port);
is($redis->cli('PING'), 'PONG', "redis-server is up on port $port");

$r = $s->query("SELECT redis_sync.command('PING');");
is($r->{err}, '', 'no error once Redis is up');
is($r->{out}, '"PONG"', 'same session now gets "PONG"');

# and again, to make sure the recovered connection is reused cleanly
$r = $s->query("SELECT redis_sync.command('PING');");
is($r->{out}, '"PONG"', 'second PING on the recovered connection');

$s->quit;
$node->stop;
$redis->stop;

done_testing();
