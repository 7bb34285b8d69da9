# rediss://: every connection the extension makes works over TLS against a
# TLS-only redis-server (--port 0): command(), write-through pushes from the
# backend, async delivery by the worker, write-behind drain, large replies
# that span many TLS records; the connection is reused, changing a TLS
# setting drops it on reload, and a Redis restart is noticed on an idle
# connection.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::TLS;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;

my $pki   = RedisSync::TLS::make_pki();
my $redis = RedisSync::TLS::start_tls_redis($pki);
my $node  = RedisSync::Test::new_node('tls', redis_url => $redis->url,
	extra_conf => RedisSync::TLS::tls_conf($pki, verify => 'full'));
my $s = RedisSync::Test::session($node);

is($node->safe_psql('postgres',
		"SELECT host, port, tls FROM redis_sync.parse_url(current_setting('redis_sync.redis_url'))"),
	'localhost|' . $redis->port . '|t', 'parse_url shows the rediss:// URL as TLS');

# command() over TLS
my $r = $s->query("SELECT redis_sync.command('PING');");
is($r->{out}, '"PONG"', 'command() PING over TLS');
is($r->{err}, '', 'no error');
$r = $s->query("SELECT redis_sync.command('SET', 'tls:k', 'v1');");
is($redis->cli('GET', 'tls:k'), 'v1', 'command() SET reached the TLS server');

# a reply and a request far larger than one TLS record (16 kB)
$r = $s->query(
	"SELECT redis_sync.command('SET', 'tls:big', repeat('x', 3000000));\n"
	  . "SELECT length(redis_sync.command('GET', 'tls:big') #>> '{}');");
like($r->{out}, qr/\b3000000$/, '3 MB value written and read back over TLS');
is($r->{err}, '', 'no error for the 3 MB exchange');

# the connection is reused: same client id across statements
my $id1 = $s->query("SELECT redis_sync.command('CLIENT', 'ID');")->{out};
my $id2 = $s->query("SELECT redis_sync.command('CLIENT', 'ID');")->{out};
is($id1, $id2, 'the TLS connection is reused between statements');

# write-through from the backend
$node->safe_psql(
	'postgres', q{
CREATE TABLE wt (id int PRIMARY KEY, v int, note text);
SELECT redis_sync.write_through('wt', key_prefix => 'wt:');
INSERT INTO wt SELECT g, g, 'n' || g FROM generate_series(1, 2000) g;
UPDATE wt SET note = 'changed' WHERE id = 7;
DELETE FROM wt WHERE id = 8;
});
is($redis->cli('HGET', 'wt:7', 'note'), 'changed', 'write-through UPDATE over TLS');
is($redis->cli('EXISTS', 'wt:8'), '0', 'write-through DELETE over TLS');
RedisSync::Compare::cache_matches_table($node, $redis,
	table => 'wt', prefix => 'wt:', key_columns => ['id'],
	columns => [ 'id', 'v', 'note' ], name => 'write-through table cached over TLS');

# async delivery by the worker
ok(defined RedisSync::WB::wait_worker($node, timeout => 60), 'worker running');
$node->safe_psql(
	'postgres', q{
CREATE TABLE a (id int PRIMARY KEY, v int);
SELECT redis_sync.write_through('a', key_prefix => 'a:', delivery => 'async');
INSERT INTO a SELECT g, g * 2 FROM generate_series(1, 500) g;
});
ok(defined RedisSync::Compare::wait_for(
		sub { RedisSync::Compare::outbox_depth($node) == 0 && $redis->cli('HGET', 'a:500', 'v') eq '1000' }, 60),
	'the worker delivered the async changes over TLS');
RedisSync::Compare::cache_matches_table($node, $redis,
	table => 'a', prefix => 'a:', key_columns => ['id'],
	columns => [ 'id', 'v' ], name => 'async table cached over TLS');

# write-behind drain
$node->safe_psql(
	'postgres', q{
CREATE TABLE wb (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
INSERT INTO wb SELECT g, 0 FROM generate_series(1, 100) g;
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', flush_interval => '1 h');
});
$node->safe_psql('postgres', "SELECT redis_sync.flush('wb')");
for my $i (1 .. 100)
{
	$redis->cli('HSET', "wb:$i", 'n', $i * 10);
	$redis->cli('SADD', 'wb:dirty', $i);
}
my ($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'wb', dirty => 'wb:dirty', timeout => 60);
ok(defined $secs, 'write-behind drained over TLS');
is($node->safe_psql('postgres', 'SELECT sum(n) FROM wb'), 10 * 5050, 'drained values are in the table');

# changing a TLS setting drops the connection on reload; the new one works
$node->safe_psql('postgres', "ALTER SYSTEM SET redis_sync.tls_server_name = 'localhost'");
$node->reload;
ok(defined RedisSync::Compare::wait_for(
		sub { $s->query("SELECT current_setting('redis_sync.tls_server_name')")->{out} eq 'localhost' }, 30),
	'session saw the reload');
my $id3 = $s->query("SELECT redis_sync.command('CLIENT', 'ID');")->{out};
isnt($id3, $id1, 'a changed TLS setting made a new connection');
like($id3, qr/^\d+$/, 'and the new connection works');
is($s->query("SELECT redis_sync.command('CLIENT', 'ID');")->{out}, $id3,
	'which is then reused');

# Redis restarts: the idle TLS connection is found closed and remade
$redis->stop;
$redis->start;
$r = $s->query("SELECT redis_sync.command('PING');");
is($r->{out}, '"PONG"', 'after a Redis restart the session reconnects over TLS');
is($r->{err}, '', 'without an error');
isnt($s->query("SELECT redis_sync.command('CLIENT', 'ID');")->{out}, $id3, 'on a new connection');

$s->quit;
$node->stop;
$redis->stop;
done_testing();
