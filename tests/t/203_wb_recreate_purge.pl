# A dropped synced table's keys are removed by a purge of its prefix that
# the worker delivers later (lifecycle.c: the DROP never waits for Redis).
# Write-behind keys carry no version, so that purge deletes whatever is
# under the prefix when it is delivered.  A table created again and made
# write-behind under the same prefix before the purge was delivered (a
# migration that drops and re-creates a table, with Redis down or the
# worker paused or behind) lost every value the application wrote in the
# meantime: the purge deleted the keys, the drain found them missing and
# skipped them (on_missing = ignore), with no dead letter and no error.
# write_behind() now refuses a prefix over which a purge is still queued,
# with an error that says to wait for it; once it is delivered the call
# succeeds and nothing written after it is lost.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbrecreate', redis => $redis);

my $make = q{
CREATE TABLE s (id int PRIMARY KEY, n int);
SELECT redis_sync.write_behind('s', key_prefix => 's:', flush_interval => '1 h');
};
$node->safe_psql('postgres', $make);
$redis->cli('HSET', 's:1', 'n', 5);
$redis->cli('SADD', 's:dirty', 1);
$node->safe_psql('postgres', 'SELECT redis_sync.flush()');
is($node->safe_psql('postgres', 'SELECT n FROM s WHERE id = 1'), '5', 'drained before the drop');

# the worker delivers nothing for now (as when Redis is down)
$node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()');
$node->safe_psql('postgres', 'DROP TABLE s');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.outbox WHERE op = 'T' AND redis_key = 's:'}),
	'1', 'the purge of the dropped table is queued');
my ($ret, $out, $err) = $node->psql('postgres', $make);
isnt($ret, 0, 'write_behind() over a prefix whose purge is still queued is refused');
like($err, qr/removal of the keys under "s:" is still queued/, 'the error says why');

# had it been accepted, the application would write now
if ($ret == 0)
{
	$redis->cli('HSET', 's:2', 'n', 7);
	$redis->cli('SADD', 's:dirty', 2);
}

$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');
$node->safe_psql('postgres', 'SELECT redis_sync.flush()');
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.outbox WHERE op = 'T'}),
	'0', 'the purge was delivered');
if ($ret != 0)
{
	$node->safe_psql('postgres',
		q{SELECT redis_sync.write_behind('s', key_prefix => 's:', flush_interval => '1 h')});
	$redis->cli('HSET', 's:2', 'n', 7);
	$redis->cli('SADD', 's:dirty', 2);
}
$node->safe_psql('postgres', 'SELECT redis_sync.flush()');
is($node->safe_psql('postgres', q{SELECT coalesce(string_agg(id || ':' || n, ' ' ORDER BY id), 'none') FROM s}),
	'2:7', 'the value written after write_behind() reached the table');
is($redis->cli('HGET', 's:2', 'n'), '7', 'and is still in Redis');
is($node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.dead_letters'), '0', 'no dead letter');

# dropped and made write-behind again in one transaction: refused as well
$node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()');
($ret, $out, $err) = $node->psql('postgres', "BEGIN; DROP TABLE s; $make COMMIT;");
like($err, qr/removal of the keys under "s:" is still queued/, 'one transaction: refused too');
is($node->safe_psql("postgres", q{SELECT count(*) FROM redis_sync.outbox WHERE op = 'T'}), "0", "and rolled back: no purge queued");
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');

$node->stop;
$redis->stop;
done_testing();
