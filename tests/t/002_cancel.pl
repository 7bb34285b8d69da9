# A blocking Redis command must be interruptible by statement_timeout, and the
# session must stay usable afterwards (no pg_terminate_backend involved).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('cancel', redis => $redis);
my $s     = RedisSync::Test::session($node);

my $r = $s->query("SELECT redis_sync.command('PING');");
is($r->{out}, '"PONG"', 'PING before the blocking call');

$r = $s->query(
	"SET redis_sync.command_timeout = '60s';\n"
	  . "SET statement_timeout = '300ms';\n"
	  . "SELECT redis_sync.command('BLPOP', 'empty:list', '10');");
like(
	$r->{err},
	qr/canceling statement due to statement timeout/,
	'BLPOP is cancelled by statement_timeout');
cmp_ok($r->{elapsed}, '<', 3, 'cancellation takes effect within 3s');
is($r->{out}, '', 'no result row from the cancelled BLPOP');

$r = $s->query("RESET statement_timeout;\nSELECT redis_sync.command('PING');");
is($r->{err}, '', 'no error after the cancel');
is($r->{out}, '"PONG"', 'same session answers PING after the cancel');

# a leftover reply from the cancelled BLPOP must not leak into later commands
$redis->cli('RPUSH', 'empty:list', 'x');
$r = $s->query("SELECT redis_sync.command('ECHO', 'after-cancel');");
is($r->{out}, '"after-cancel"', 'later commands get their own replies');

# the cancelled BLPOP must not have consumed the element pushed afterwards
is($redis->cli('LLEN', 'empty:list'), '1', 'pushed element is still there');

# redis_sync.command_timeout bounds a command Redis does not answer
# (CLIENT PAUSE keeps the reply back).
is($redis->pause_ms(2000), 'OK', 'Redis clients paused for 2s');
$r = $s->query("SET redis_sync.command_timeout = '500ms';\n"
	  . "SELECT redis_sync.command('GET', 'paused:key');");
like($r->{err}, qr/ERROR:.*127\.0\.0\.1:${\ $redis->port}/,
	'command_timeout fails the stalled command, naming the server');
cmp_ok($r->{elapsed}, '<', 3, 'command_timeout takes effect within 3s');
# redis-cli itself waits out the pause
is($redis->cli('PING'), 'PONG', 'pause is over');
$r = $s->query("SELECT redis_sync.command('PING');");
is($r->{out}, '"PONG"', 'session recovers after a command_timeout');

$s->quit;
$node->stop;
$redis->stop;

done_testing();
