# The shared test helpers check themselves: RedisSync::Synced's
# synced_table() (column list parsing: composite keys, quoted names, the
# comparison's columns), its cache comparison (it must see a wrong value, a
# missing key and a stray key, and count_keys() leaves version keys out), and
# RedisSync::RESP, the client TAP tests and bench/bench.pl share (binary-safe
# values, nil, integers, arrays, pipelining, error replies), and
# RedisSync::OwnerCode (the owner's function and its control row, the async
# canary, the in-flight marker key and a planted marker's value).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Synced;
use RedisSync::RESP;
use RedisSync::OwnerCode;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('helpers', redis => $redis);

# --- synced_table: default columns, rows after syncing (pushed at commit)
my $t = RedisSync::Synced::synced_table($node, 't', rows => 50);
is_deeply([ $t->{key_columns}, $t->{columns} ], [ ['id'], [qw(id v note)] ],
	'default column list: key id, columns id v note');
is($t->prefix, 't:', 'default prefix is the table name and a colon');
is($node->safe_psql('postgres',
		q{SELECT policy || ' ' || key_prefix FROM redis_sync.tables WHERE relid = 't'::regclass}),
	'write_through t:', 'the policy is recorded');
$t->cache_matches($redis, 'synced_table rows are cached');
is(RedisSync::Synced::count_keys($redis, 't:*'), 50, 'count_keys: 50 data keys (version keys left out)');

# the comparison must see each kind of difference
$redis->cli('HSET', 't:1', 'v', '-1');
$redis->cli('DEL', 't:2');
$redis->cli('HSET', 't:999', 'id', '999');
my ($diffs) = $t->diff($redis);
is(scalar(@$diffs), 3, 'diff: a wrong value, a missing key and a stray key')
  or diag(join("\n", @$diffs));
like(join("\n", @$diffs), qr/^t:1: table \{.*v=1\} cache \{.*v=-1\}/m, 'diff names the wrong value');
is(RedisSync::Synced::count_keys($redis, 't:*'), 50, 'count_keys after planting');
$node->safe_psql('postgres', 'SELECT redis_sync.resync(\'t\')');
$redis->cli('DEL', 't:999');
$t->wait_cache_matches($redis, name => 'resync() repairs what was planted', timeout => 30);

# --- composite key, quoted names, fill first (the background warm caches them)
my $c = RedisSync::Synced::synced_table($node, 'c',
	columns    => 'tenant text, id int, "odd, ""name" text, PRIMARY KEY (tenant, id)',
	prefix     => 'c:',
	fill       => q{SELECT 'acme', g, 'x' || g FROM generate_series(1, 20) g},
	fill_first => 1);
is_deeply([ $c->{key_columns}, $c->{columns} ],
	[ [qw(tenant id)], [ 'tenant', 'id', 'odd, "name' ] ],
	'composite key from a PRIMARY KEY clause; quoted column name unquoted');
$c->wait_cache_matches($redis, name => 'rows inserted before syncing are warmed', timeout => 60);
is($redis->cli('HGET', 'c:acme:7', 'odd, "name'), 'x7', 'field of the quoted column');

# --- options: policy, with, sql
my $inv = RedisSync::Synced::synced_table($node, 'inv',
	columns => 'id int PRIMARY KEY, v int',
	policy  => 'invalidate',
	with    => "consistency => 'strict'",
	sql     => 'CREATE TABLE after_sql (x int);');
is($node->safe_psql('postgres',
		q{SELECT policy || ' ' || consistency FROM redis_sync.tables WHERE relid = 'inv'::regclass}),
	'invalidate strict', 'policy and with => reach the call');
is($node->safe_psql('postgres', q{SELECT to_regclass('after_sql') IS NOT NULL}), 't',
	'sql => runs afterwards');
ok(!eval { RedisSync::Synced::synced_table($node, 'bad', columns => 'id int PRIMARY KEY', rows => 3); 1 },
	'rows => needs the default columns');

# --- RESP client
my $r = $redis->resp;
my $bin = "a\r\nb\0c\x{ff}";
is($r->cmd('SET', 'resp:bin', $bin), 'OK', 'status reply');
is($r->cmd('GET', 'resp:bin'), $bin, 'bulk reply is binary-safe (CR LF, NUL, high byte)');
is($r->cmd('GET', 'resp:none'), undef, 'nil is undef');
is($r->cmd('INCRBY', 'resp:n', 5), '5', 'integer reply');
$r->write(RedisSync::RESP::encode('HSET', 'resp:h', 'f', 'v')
	  . RedisSync::RESP::encode('HGETALL', 'resp:h')
	  . RedisSync::RESP::encode('PING'));
is_deeply([ map { $r->read } 1 .. 3 ], [ '1', [ 'f', 'v' ], 'PONG' ],
	'three pipelined commands, three replies in order');
ok(!eval { $r->cmd('HGET', 'resp:bin', 'f'); 1 }, 'an error reply dies');
like($@, qr/^Redis error: WRONGTYPE/, '... with Redis\'s text');
is($r->cmd('PING'), 'PONG', 'the connection is still usable after an error');
is(RedisSync::RESP::encode('GET', "\x{e9}"), "*2\r\n\$3\r\nGET\r\n\$1\r\n\x{e9}\r\n",
	'encode counts bytes');
$r->close;

# --- OwnerCode
$node->safe_psql('postgres',
	RedisSync::OwnerCode::owner_sql('oc_fn', return => q{'free'}, returns => 'text', then => q{RETURN 'blocked';})
	  . RedisSync::OwnerCode::canary_sql());
is($node->safe_psql('postgres', 'SELECT public.oc_fn()'), 'free', 'owner_sql: the return when ctl does not block');
$node->safe_psql('postgres', 'UPDATE ctl SET block = true');
is($node->safe_psql('postgres', 'SELECT public.oc_fn()'), 'blocked', 'owner_sql: the then => branch when it does');
is($node->safe_psql('postgres',
		q{SELECT string_agg(pg_get_userbyid(relowner), ',') FROM pg_class WHERE relname = 'ctl'}
		  . q{ UNION ALL SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'oc_fn'}),
	"alice\nalice", 'owner_sql: ctl and the function are owned by alice');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'before', 20), 'canary_delivered: the canary row');
RedisSync::OwnerCode::canary_set($node, 'after');
ok(defined RedisSync::OwnerCode::canary_delivered($redis, 'after', 20), 'canary_set: its change is delivered');
ok(!defined RedisSync::OwnerCode::canary_delivered($redis, 'never', 0.2), 'canary_delivered: undef at the deadline');
is(RedisSync::OwnerCode::marker_key($node),
	'redis_sync:inflight:' . $node->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()')
	  . ':' . $node->safe_psql('postgres', q{SELECT oid FROM pg_database WHERE datname = 'postgres'}),
	'marker_key: redis_sync:inflight:<system id>:<database oid>');
$node->safe_psql('postgres', q{CREATE TABLE oc_rls (id int PRIMARY KEY); INSERT INTO oc_rls VALUES (1), (2);}
	  . RedisSync::OwnerCode::forced_policy_sql('oc_rls', 'not_two', 'id <> 2', 'true'));
is($node->safe_psql('postgres', 'SET ROLE alice; SELECT count(*) FROM oc_rls'), '1',
	'forced_policy_sql: owned by alice, its policy applies to the owner');
my $qoid = RedisSync::OwnerCode::table_oid($node, 'q');
like($qoid, qr/^\d+$/, 'table_oid: an oid');
RedisSync::OwnerCode::plant_marker($redis, 'oc:marker', '9:1:0:0', $qoid, '1', '2');
is($redis->cli('HGET', 'oc:marker', '9:1:0:0'), qq{[[$qoid,"1"],[$qoid,"2"]]}, 'plant_marker: the marker\'s JSON');

$node->stop;
$redis->stop;
done_testing();
