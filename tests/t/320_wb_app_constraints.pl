# Write-behind as an application uses it (constraints, partial
# hashes, unknown fields, generated columns, partitions, counters,
# dead letters and their retry, small batches).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbapp', redis => $redis);
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE parent (id int PRIMARY KEY);
INSERT INTO parent VALUES (1), (2);
CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL DEFAULT 5 CHECK (n >= 0),
  p int REFERENCES parent, label text NOT NULL, total int GENERATED ALWAYS AS (n * 2) STORED,
  created timestamptz NOT NULL DEFAULT now());
INSERT INTO c (id, n, p, label) VALUES (10, 1, 1, 'ten');
SELECT redis_sync.write_behind('c', key_prefix => 'c:', flush_interval => '1 h', batch_size => 2);
});

$redis->cli('HSET', 'c:10', 'n', '7');                          # partial update
$redis->cli('HSET', 'c:11', 'label', 'eleven');                  # insert, defaults
$redis->cli('HSET', 'c:12', 'label', 'x', 'n', '-1');            # CHECK
$redis->cli('HSET', 'c:13', 'label', 'x', 'p', '99');            # FK
$redis->cli('HSET', 'c:14', 'label', 'x', 'n', 'abc');           # parse
$redis->cli('HSET', 'c:15', 'n', '3');                           # NOT NULL label
$redis->cli('HSET', 'c:16', 'label', 'y', 'bogus', '1', 'total', '999'); # unknown + generated
$redis->cli('SADD', 'c:dirty', 10 .. 16);
my ($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'c', dirty => 'c:dirty', timeout => 60);
ok(defined $secs, 'c drained');
is(sq("SELECT string_agg(id||'|'||n||'|'||coalesce(p::text,'-')||'|'||label||'|'||total, ',' ORDER BY id) FROM c"),
	'10|7|1|ten|14,11|5|-|eleven|10,16|5|-|y|10', 'c: valid rows applied');
is(sq("SELECT string_agg(member||' '||sqlstate||' '||error, E'\n' ORDER BY member) FROM redis_sync.dead_letters"),
	join("\n",
		'12 23514 new row for relation "c" violates check constraint "c_n_check"',
		'13 23503 insert or update on table "c" violates foreign key constraint "c_p_fkey"',
		'14 22P02 invalid input syntax for type integer: "abc"',
		'15 23502 null value in column "label" of relation "c" violates not-null constraint'),
	'each bad member is a dead letter with its reason; the batch\'s valid members are applied');
is(RedisSync::WB::wb_stat($node, 'c', 'unknown_fields'), '1', 'unknown_fields');
note(sq("SELECT row_to_json(s) FROM redis_sync.stats s WHERE \"table\" = 'c'::regclass"));

# fix and retry
$redis->cli('HSET', 'c:12', 'n', '1');
$redis->cli('HSET', 'c:14', 'n', '2');
sq("SELECT redis_sync.retry_dead_letters('c')");
($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'c', dirty => 'c:dirty', timeout => 60);
is(sq("SELECT string_agg(id::text, ',' ORDER BY id) FROM c"), '10,11,12,14,16', 'retried rows applied');
is(sq("SELECT string_agg(member, ',' ORDER BY member) FROM redis_sync.dead_letters"), '13,15', 'remaining dead letters');

# json format: keys that are not columns are ignored and counted
# (README: "counted as unknown_fields"), as hash fields are; the key column
# itself and a generated column are known columns
sq(q{
CREATE TABLE j (id int PRIMARY KEY, v text, g int GENERATED ALWAYS AS (1) STORED);
SELECT redis_sync.write_behind('j', key_prefix => 'j:', format => 'json', flush_interval => '1 h');
});
$redis->cli('SET', 'j:1', '{"v":"a","bogus":1,"other":{"x":2}}');
$redis->cli('SET', 'j:2', '{"id":2,"v":"b","g":5}');
$redis->cli('SADD', 'j:dirty', 1, 2);
RedisSync::WB::flush_until_clean($node, $redis, table => 'j', dirty => 'j:dirty', timeout => 60);
is(sq("SELECT string_agg(id||'='||v||'/'||g, ',' ORDER BY id) FROM j"), '1=a/1,2=b/1', 'json applied');
is(RedisSync::WB::wb_stat($node, 'j', 'unknown_fields'), '2', 'json: keys that are not columns counted in unknown_fields');

# partitioned target
sq(q{
CREATE TABLE pt (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE pt1 PARTITION OF pt FOR VALUES FROM (0) TO (100);
CREATE TABLE pt2 PARTITION OF pt FOR VALUES FROM (100) TO (200);
INSERT INTO pt VALUES (1, 'a'), (150, 'b');
SELECT redis_sync.write_behind('pt', key_prefix => 'pt:', flush_interval => '1 h');
});
$redis->cli('HSET', "pt:$_", 'v', "v$_") for (1, 2, 150, 151);
$redis->cli('SADD', 'pt:dirty', 1, 2, 150, 151);
RedisSync::WB::flush_until_clean($node, $redis, table => 'pt', dirty => 'pt:dirty', timeout => 60);
is(sq("SELECT string_agg(id||'='||v, ',' ORDER BY id) FROM pt"), '1=v1,2=v2,150=v150,151=v151', 'partitioned');

# counters: hash, HINCRBY on a key never seeded, row at 97
sq(q{
CREATE TABLE k (id int PRIMARY KEY, hits bigint NOT NULL DEFAULT 0, likes int);
INSERT INTO k VALUES (1, 97, 3);
SELECT redis_sync.write_behind('k', key_prefix => 'k:', counters => '{hits}', flush_interval => '1 h');
});
$redis->cli('HINCRBY', 'k:1', 'hits', 1) for 1..3;
$redis->cli('HINCRBY', 'k:2', 'hits', 1) for 1..2;
$redis->cli('SADD', 'k:dirty', 1, 2);
RedisSync::WB::flush_until_clean($node, $redis, table => 'k', dirty => 'k:dirty', timeout => 60);
is(sq("SELECT string_agg(id||'='||hits||'/'||coalesce(likes::text,'-'), ',' ORDER BY id) FROM k"), '1=100/3,2=2/-', 'counters');
is($redis->cli('HGET', 'k:1', 'hits'), '100', 'redis corrected');
$redis->cli('HINCRBY', 'k:1', 'hits', 5);
$redis->cli('SADD', 'k:dirty', 1);
RedisSync::WB::flush_until_clean($node, $redis, table => 'k', dirty => 'k:dirty', timeout => 60);
is(sq("SELECT hits FROM k WHERE id = 1"), '105', 'seeded counter absolute');
is(sq("SELECT redis_sync.hincrby('k', '1', 'hits', 10)"), '115', 'hincrby');
is(sq("SELECT redis_sync.hincrby('k', '3', 'hits', 4)"), '4', 'hincrby new');
RedisSync::WB::flush_until_clean($node, $redis, table => 'k', dirty => 'k:dirty', timeout => 60);
is(sq("SELECT string_agg(id||'='||hits, ',' ORDER BY id) FROM k"), '1=115,2=2,3=4', 'after hincrby');
# counters on a partitioned table, keys never seeded, rows in both partitions
sq(q{
CREATE TABLE pk (id int PRIMARY KEY, hits bigint NOT NULL DEFAULT 0) PARTITION BY RANGE (id);
CREATE TABLE pk1 PARTITION OF pk FOR VALUES FROM (0) TO (100);
CREATE TABLE pk2 PARTITION OF pk FOR VALUES FROM (100) TO (200);
INSERT INTO pk VALUES (1, 50), (150, 60);
SELECT redis_sync.write_behind('pk', key_prefix => 'pk:', counters => '{hits}', flush_interval => '1 h');
});
$redis->cli('HINCRBY', "pk:$_", 'hits', 2) for (1, 2, 150, 151);
$redis->cli('SADD', 'pk:dirty', 1, 2, 150, 151);
RedisSync::WB::flush_until_clean($node, $redis, table => 'pk', dirty => 'pk:dirty', timeout => 60);
is(sq("SELECT string_agg(id||'='||hits, ',' ORDER BY id) FROM pk"), '1=52,2=2,150=62,151=2', 'partitioned counters');
is(join(',', map { $redis->cli('HGET', "pk:$_", 'hits') } (1, 2, 150, 151)), '52,2,62,2', 'Redis corrected');
$redis->cli('HINCRBY', "pk:$_", 'hits', 1) for (1, 150);
$redis->cli('SADD', 'pk:dirty', 1, 150);
RedisSync::WB::flush_until_clean($node, $redis, table => 'pk', dirty => 'pk:dirty', timeout => 60);
is(sq("SELECT string_agg(id||'='||hits, ',' ORDER BY id) FROM pk"), '1=53,2=2,150=63,151=2', 'then absolute');
# Redis full (maxmemory, noeviction) with never-seeded counters dirty: the
# drain cannot claim or correct; once memory is free again, exact totals
sq(q{
CREATE TABLE oom (id int PRIMARY KEY, hits bigint NOT NULL DEFAULT 0);
INSERT INTO oom SELECT g, 100 FROM generate_series(1, 5) g;
SELECT redis_sync.write_behind('oom', key_prefix => 'oom:', counters => '{hits}', flush_interval => '1 h');
});
$redis->cli('HINCRBY', "oom:$_", 'hits', 1) for 1 .. 5;
$redis->cli('SADD', 'oom:dirty', 1 .. 5);
$redis->cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
my ($used) = $redis->cli('INFO', 'memory') =~ /used_memory:(\d+)/;
$redis->cli('CONFIG', 'SET', 'maxmemory', $used + 200000);
my $filled = 0;
for my $i (1 .. 400)
{
	last if $redis->cli('SET', "junk:$i", 'x' x 4000) =~ /OOM/;
	$filled++;
}
ok($filled < 400, "Redis full after $filled junk keys");
my ($fret, $fout, $ferr) = $node->psql('postgres', "SELECT redis_sync.flush('oom')");
note("flush while full: ret $fret out $fout err $ferr");
$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
RedisSync::WB::flush_until_clean($node, $redis, table => 'oom', dirty => 'oom:dirty', timeout => 60);
is(sq("SELECT string_agg(hits::text, ',' ORDER BY id) FROM oom"), '101,101,101,101,101', 'counters exact after Redis was full');
is(join(',', map { $redis->cli('HGET', "oom:$_", 'hits') } 1 .. 5), '101,101,101,101,101', 'Redis agrees');
note(sq("SELECT row_to_json(s) FROM redis_sync.stats s"));
$node->stop;
done_testing();
