# verify() reads Redis (SCAN, TYPE, HGETALL): it must not wait for a
# CLIENT PAUSE ... WRITE (an operator's pause, FAILOVER, a cluster's manual
# failover).  The prefix scan's script (529b3b6) is an EVALSHA without
# flags, which Redis 7 holds for the whole pause as a command that may
# write (SCAN ... TYPE, before it, was not held): verify() then failed with
# the command timeout.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;
use Time::HiRes qw(time);

my $redis = RedisSync::Test::start_redis();
my $ver = $redis->cli('INFO', 'server');
my ($major) = $ver =~ /redis_version:(\d+)/;
plan skip_all => "Redis $major: no script flags before 7" if $major < 7;

my $node = RedisSync::Test::new_node('verify_write_pause', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE vp (id int PRIMARY KEY, v text);
INSERT INTO vp SELECT g, 'v' || g FROM generate_series(1, 50) g;
SELECT redis_sync.write_through('vp', key_prefix => 'vp:', warm => false);
});
is($node->safe_psql('postgres', q{SELECT redis_sync.resync('vp')}), 50, 'rows pushed');
# a warm-up verify (connection, scripts loaded, cluster detection)
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('vp')}), '0',
	'verify() clean before the pause');

$redis->cli('CLIENT', 'PAUSE', '4000', 'WRITE');
my $t0 = time;
my ($rc, $out, $err) = $node->psql('postgres',
	q{SET redis_sync.command_timeout = '1s'; SELECT count(*) FROM redis_sync.verify('vp')});
my $took = time - $t0;
note("verify() during the pause: rc $rc, $took s, $err");
is($rc, 0, 'verify() succeeds while Redis pauses writes');
is($out, '0', 'verify() finds no difference');
cmp_ok($took, '<', 3, 'verify() did not wait for the pause to end');

my ($rc2, $out2) = $node->psql('postgres',
	q{SET redis_sync.command_timeout = '1s'; SELECT count(*) FROM redis_sync._scan('vp:')});
is($out2, '50', '_scan() lists the keys during the pause');
sleep 4;

$node->stop;
$redis->stop;
done_testing();
