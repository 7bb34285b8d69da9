# Bulk pushes as MULTI/EXEC (redis_sync.bulk_multi) need the connection kill
# (killfence.c): an abandoned push's connection is closed with CLIENT KILL
# before anything else is sent.  An ACL is per user: whether CLIENT KILL and
# CLIENT LIST are allowed was probed once per Redis process and database
# (the first exchange), so a connection of another user (redis_url changed
# to a restricted user, or an ACL tightened and connections remade) went on
# pushing unfenced, and its first abandoned push then failed every exec of
# every process at the gate (CLIENT KILL refused) for as long as the ACL
# stood.  The handshake now probes both on each connection; one that may
# not kill pushes through the apply script.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('acl', redis => $redis);
$node->safe_psql('postgres', q{
	CREATE TABLE t (id int PRIMARY KEY, v int);
	INSERT INTO t SELECT g, g FROM generate_series(1, 100) g;
	SELECT redis_sync.write_through('t', key_prefix => 't:', warm => false);
});

my $calls = sub {
	my ($name) = @_;
	my ($n) = $redis->cli('INFO', 'commandstats') =~ /cmdstat_$name:calls=(\d+)/;
	return $n // 0;
};

# the default user: bulk pushes go as MULTI/EXEC (a session's first may not)
my $s = RedisSync::Test::session($node);
$s->query('UPDATE t SET v = v + 1');
my $x0 = $calls->('exec');
is($s->query('UPDATE t SET v = v + 1')->{err}, '', 'a bulk UPDATE as the default user');
cmp_ok($calls->('exec'), '>', $x0, 'it went as MULTI/EXEC');
$s->quit;

# a user that may not kill connections, on the same Redis and database
$redis->cli('ACL', 'SETUSER', 'nokill', 'on', '>pw', '~*', '&*', '+@all', '-client|kill');
$node->safe_psql('postgres', "ALTER SYSTEM SET redis_sync.redis_url = 'redis://nokill:pw\@127.0.0.1:"
	  . $redis->port . "/0'");
$node->reload;
$s = RedisSync::Test::session($node);
is($s->query('SHOW redis_sync.redis_url')->{out}, 'redis://nokill:pw@127.0.0.1:' . $redis->port . '/0',
	'redis_url names the restricted user');
for my $i (1 .. 3)
{
	$x0 = $calls->('exec');
	my $e0 = $calls->('evalsha') + $calls->('eval');
	is($s->query('UPDATE t SET v = v + 1')->{err}, '', "bulk UPDATE $i as a user without CLIENT KILL");
	is($calls->('exec'), $x0, "bulk UPDATE $i did not go as MULTI/EXEC");
	cmp_ok($calls->('evalsha') + $calls->('eval'), '>', $e0, "bulk UPDATE $i went through the apply script");
}
like($redis->cli('CLIENT', 'LIST'), qr/user=nokill/, 'the session connected as the restricted user');

# the same for a user that may kill but not list
$redis->cli('ACL', 'SETUSER', 'nokill', '+client|kill', '-client|list');
$s->quit;
$s = RedisSync::Test::session($node);
$x0 = $calls->('exec');
is($s->query('UPDATE t SET v = v + 1')->{err}, '', 'a bulk UPDATE as a user without CLIENT LIST');
is($calls->('exec'), $x0, 'it did not go as MULTI/EXEC');
$s->quit;

is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('t')}),
	'0', 'verify: the cache equals the table');
$node->stop;
done_testing();
