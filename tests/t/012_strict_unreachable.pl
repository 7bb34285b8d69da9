# Write-through with no Redis listening.  A strict table: INSERT, UPDATE and
# DELETE fail at commit with "could not push changes to Redis" and leave the
# table unchanged.  An eventual table: the commit succeeds and the changed keys
# wait in redis_sync.outbox.  Once a Redis server appears on that port,
# deliver_outbox() brings the cache level with the table, and strict writes
# go through again.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use Test::More;

my $port = RedisSync::Test::free_port();
my $node = RedisSync::Test::new_node(
	'strict',
	redis_url  => "redis://127.0.0.1:$port/0",
	extra_conf => "redis_sync.connect_timeout = '500ms'\n");

# rows of the strict table exist before it is synced (nothing to push then)
my $st = RedisSync::Synced::synced_table($node, 's', with => "consistency => 'strict'",
	fill => "SELECT g, g, 's' || g FROM generate_series(1, 10) g", fill_first => 1);
my $e = RedisSync::Synced::synced_table($node, 'e', with => "consistency => 'eventual'");
is($node->safe_psql('postgres',
		"SELECT relid::text || ' ' || consistency FROM redis_sync.tables ORDER BY 1"),
	"e eventual\ns strict", 'one strict and one eventual table');

my $snapshot = sub {
	return $node->safe_psql('postgres',
		'SELECT id, v, note FROM s ORDER BY id');
};
my $before = $snapshot->();
my $s      = RedisSync::Test::session($node);

my @strict = (
	[ 'INSERT', "INSERT INTO s VALUES (11, 11, 'new')" ],
	[ 'UPDATE', "UPDATE s SET v = v + 100 WHERE id <= 5" ],
	[ 'DELETE', "DELETE FROM s WHERE id = 3" ],
	[
		'multi-statement transaction',
		"BEGIN;\nUPDATE s SET note = 'x' WHERE id = 1;\n"
		  . "INSERT INTO s VALUES (12, 12, 'y');\nCOMMIT;"
	],
	[
		'transaction touching the strict and the eventual table',
		"BEGIN;\nINSERT INTO e VALUES (100, 100, 'mixed');\n"
		  . "UPDATE s SET v = -1 WHERE id = 2;\nCOMMIT;"
	]);
for my $c (@strict)
{
	my ($what, $sql) = @$c;
	my $r = $s->query($sql);
	like($r->{err}, qr/ERROR:  could not push changes to Redis/,
		"strict $what fails with 'could not push changes to Redis'");
	cmp_ok($r->{elapsed}, '<', 5, "strict $what fails within 5s")
	  or diag("took $r->{elapsed}s");
	is($snapshot->(), $before, "strict $what: table s unchanged");
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM e'),
	'0', 'the mixed transaction left the eventual table unchanged too');
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'),
	'0', 'failed strict transactions queued nothing');
is($s->query('SELECT 1')->{out}, '1', 'session usable after the failures');

# eventual table: commits succeed, keys wait in the outbox
my $r = $s->query(
	"INSERT INTO e SELECT g, g, 'e' || g FROM generate_series(1, 20) g;\n"
	  . "UPDATE e SET v = v * 10, note = NULL WHERE id % 3 = 0;\n"
	  . "BEGIN;\nDELETE FROM e WHERE id IN (4, 5);\n"
	  . "UPDATE e SET note = 'moved' WHERE id = 7;\nCOMMIT;\n"
	  . "DELETE FROM e WHERE id = 20;");
unlike($r->{err}, qr/ERROR/, 'eventual INSERT/UPDATE/DELETE commit');
is($node->safe_psql('postgres', 'SELECT count(*) FROM e'),
	'17', 'eventual table holds the committed rows');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(k, ',' ORDER BY k) FROM (SELECT DISTINCT redis_key COLLATE \"C\" AS k FROM redis_sync.outbox) x"),
	join(',', sort map { "e:$_" } 1 .. 20),
	'outbox holds every changed key of the eventual table');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM redis_sync.outbox WHERE redis_key NOT LIKE 'e:%'"),
	'0', 'and nothing of the strict table');

# delivery while Redis is still away fails and keeps the entries
my $n_outbox = $node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox');
$r = $s->query('SELECT redis_sync.deliver_outbox()');
like($r->{err}, qr/ERROR/, 'deliver_outbox() with no Redis reports an error');
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'),
	$n_outbox, 'outbox entries kept after the failed delivery');

# Redis appears on the configured port (the worker waits, so we see it empty first)
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', 'worker paused');
my $redis = RedisSync::Test::start_redis(port => $port);
is($redis->cli('DBSIZE'), '0', "empty redis-server on port $port");
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');

my $delivered = RedisSync::Compare::drain_outbox($node);
note("delivered $delivered entries");
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.outbox'),
	'0', 'outbox drained');
$e->cache_matches($redis, 'eventual table: cache == table after delivery');

# strict writes go through now (the same session that saw the failures)
$r = $s->query("UPDATE s SET v = v + 1000;\nINSERT INTO s VALUES (11, 11, 'new');");
is($r->{err}, '', 'strict UPDATE and INSERT succeed once Redis is up');
$st->cache_matches($redis, 'strict table: cache == table');

$s->quit;
$node->stop;
$redis->stop;

done_testing();
