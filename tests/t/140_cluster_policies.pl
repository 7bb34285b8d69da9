# Redis Cluster: every policy against a local 3-master / 3-replica cluster,
# with keys spread over all masters.
#   - detection: cluster_nodes() lists 3 masters owning all 16384 slots; a
#     database number other than 0 is refused with a clear error;
#   - write-through sync (hash), async (outbox + worker), strict, string
#     format; invalidate; UPDATE/DELETE; TRUNCATE purges on every master
#     (of a table also write-behind over the same hashes: only the
#     write-through fields, sync and async);
#   - get() read-through, warm(), verify() clean, resync() after damage;
#   - write-behind with counters: HINCRBY + SADD from a cluster client,
#     drained by the worker into the table, hincrby() from SQL;
#   - a multi-row transaction lands in one round trip of wall time over
#     several nodes (session round trips grow by 1).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Cluster;
use RedisSync::ClusterLoad;
use RedisSync::WB;
use Test::More;
use Time::HiRes qw(time sleep);

my $c = RedisSync::Cluster::start_cluster(masters => 3, replicas => 1);
my @masters = $c->master_ports;
is(scalar(@masters), 3, 'three masters');
my @replicas = $c->replica_ports;
is(scalar(@replicas), 3, 'three replicas');

my $node = RedisSync::Test::new_node('cluster', redis_url => $c->url,
	extra_conf => "redis_sync.naptime = '100ms'\n");

sub sq { return $node->safe_psql('postgres', $_[0]); }

sub poll_until { return RedisSync::ClusterLoad::poll_until(@_); }

# keys of a prefix per master (DBSIZE would count companions too)
sub keys_per_master
{
	my ($pattern) = @_;
	my %n;
	for my $m ($c->master_ports)
	{
		my @k = grep { length } split /\n/, $c->node($m)->cli('--scan', '--pattern', $pattern);
		$n{$m} = scalar @k;
	}
	return \%n;
}

is(sq("SELECT count(*), sum(slots) FROM redis_sync.cluster_nodes() WHERE role = 'master'"),
	'3|16384', 'cluster detected: 3 masters own the 16384 slots');


# the worker's view, in worker_stats
poll_until('worker_stats.cluster', sub {
	sq("SELECT (cluster->>'masters') || '/' || (cluster->>'slots_covered') FROM redis_sync.worker_stats") eq '3/16384';
});
poll_until('worker_stats.cluster nodes', sub {
	sq("SELECT jsonb_array_length(cluster->'nodes') FROM redis_sync.worker_stats") eq '6';
});
pass('worker_stats.cluster lists the 6 nodes');

# ---- write-through, sync, hash ----
sq(q{
CREATE TABLE wt (id int PRIMARY KEY, name text, qty int);
SELECT redis_sync.write_through('wt', key_prefix => 'wt:', warm => false);
INSERT INTO wt SELECT g, 'n' || g, g FROM generate_series(1, 300) g;
});
is($c->any_cli('HGET', 'wt:17', 'name'), 'n17', 'write-through: row pushed');
my $per = keys_per_master('wt:*');
ok((grep { $per->{$_} > 50 } keys %$per) == 3,
	'write-through keys on every master: ' . join(',', map { "$_=$per->{$_}" } sort keys %$per));

# one multi-node transaction = one round trip of wall time
{
	my $s = RedisSync::Test::session($node);
	my $before = $s->query('SELECT round_trips FROM redis_sync.session_stats()')->{out};
	$s->query("UPDATE wt SET qty = qty + 1000 WHERE id <= 50");
	my $after = $s->query('SELECT round_trips FROM redis_sync.session_stats()')->{out};
	is($after - $before, 1, 'a 50-key commit over 3 masters is one round trip');
	my $nodes = $s->query("SELECT count(*) FROM redis_sync.cluster_nodes() WHERE round_trips > 0 AND role = 'master'")->{out};
	is($nodes, 3, 'the session exchanged with all three masters');
	$s->quit;
}
is($c->any_cli('HGET', 'wt:3', 'qty'), '1003', 'update pushed');
sq("DELETE FROM wt WHERE id = 5");
is($c->any_cli('EXISTS', 'wt:5'), '0', 'delete pushed');

# ---- get / warm / verify / resync ----
is(sq("SELECT count(*) FROM redis_sync.verify('wt')"), '0', 'verify(wt) clean');
$c->any_cli('DEL', $_) for 'wt:10', 'wt:200';
$c->any_cli('HSET', 'wt:100', 'name', 'garbage');
cmp_ok(sq("SELECT count(*) FROM redis_sync.verify('wt')"), '>=', 3, 'verify sees damage');
sq("SELECT redis_sync.resync('wt')");
is(sq("SELECT count(*) FROM redis_sync.verify('wt')"), '0', 'resync repairs; verify clean');
$c->any_cli('DEL', "wt:$_") for 20 .. 40;
cmp_ok(sq("SELECT redis_sync.warm('wt')"), '>=', 21, 'warm reads the table');
is($c->any_cli('HGET', 'wt:30', 'name'), 'n30', 'warm refilled a missing key');
is(sq("SELECT count(*) FROM redis_sync.verify('wt')"), '0', 'verify clean after warm');
$c->any_cli('DEL', 'wt:44');
is(sq("SELECT (redis_sync.get(NULL::wt, '44')).name"), 'n44', 'get(): miss read through');
is($c->any_cli('HGET', 'wt:44', 'name'), 'n44', 'get() filled the key');

# ---- string format, strict ----
sq(q{
CREATE TABLE ws (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('ws', key_prefix => 'ws:', format => 'json', consistency => 'strict', warm => false);
INSERT INTO ws SELECT g, 'v' || g FROM generate_series(1, 100) g;
});
like($c->any_cli('GET', 'ws:7'), qr/"v7"/, 'strict json push');
is(sq("SELECT count(*) FROM redis_sync.verify('ws')"), '0', 'verify(ws) clean');

# ---- async ----
sq(q{
CREATE TABLE wa (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('wa', key_prefix => 'wa:', delivery => 'async', warm => false);
INSERT INTO wa SELECT g, 'a' || g FROM generate_series(1, 200) g;
});
poll_until('async delivery', sub { $c->any_cli('HGET', 'wa:199', 'v') eq 'a199' });
poll_until('outbox empty', sub { sq("SELECT count(*) FROM redis_sync.outbox") eq '0' });
is(sq("SELECT count(*) FROM redis_sync.verify('wa')"), '0', 'verify(wa) clean after async delivery');

# ---- invalidate ----
sq(q{
CREATE TABLE inv (id int PRIMARY KEY, v text);
INSERT INTO inv SELECT g, 'i' || g FROM generate_series(1, 50) g;
SELECT redis_sync.invalidate('inv', key_prefix => 'inv:');
});
is(sq("SELECT (redis_sync.get(NULL::inv, '9')).v"), 'i9', 'invalidate: get() reads through');
is($c->any_cli('HGET', 'inv:9', 'v'), 'i9', 'invalidate: cached by get()');
sq("UPDATE inv SET v = 'changed' WHERE id = 9");
is($c->any_cli('EXISTS', 'inv:9'), '0', 'invalidate: UPDATE deleted the cached row');
is(sq("SELECT (redis_sync.get(NULL::inv, '9')).v"), 'changed', 'invalidate: next get() has the new row');

# ---- TRUNCATE: purged on every master ----
sq("TRUNCATE wt");
$per = keys_per_master('wt:*');
is(join(',', map { $per->{$_} } sort keys %$per), '0,0,0', 'TRUNCATE purged wt: on every master');
sq("INSERT INTO wt SELECT g, 'again' || g, g FROM generate_series(1, 30) g");
is(sq("SELECT count(*) FROM redis_sync.verify('wt')"), '0', 'verify clean after TRUNCATE + INSERT');

# ---- TRUNCATE of a table write-through and write-behind over one hash: the
# ---- write-through fields go on every master, the write-behind ones stay
sq(q{
CREATE TABLE mx (id int PRIMARY KEY, name text, views bigint NOT NULL DEFAULT 0);
SELECT redis_sync.write_through('mx', key_prefix => 'mx:', columns => '{id,name}', warm => false);
SELECT redis_sync.write_behind('mx', key_prefix => 'mx:', dirty_set => 'mx-dirty', columns => '{views}',
                               flush_interval => '1 h');
INSERT INTO mx SELECT g, 'n' || g FROM generate_series(1, 60) g;
});
# written by the application, not marked dirty: never drained
$c->any_cli('HINCRBY', "mx:$_", 'views', $_) for 1 .. 60;
$per = keys_per_master('mx:*');
is(scalar(grep { $per->{$_} > 0 } keys %$per), 3, 'mixed table: keys on every master');
# every key: its fields and its views
sub mx_fields
{
	return join(' ', map {
		my $k = "mx:$_";
		"$_=" . join('/', sort split /\n/, $c->any_cli('HKEYS', $k)) . ':' . $c->any_cli('HGET', $k, 'views')
	} 1 .. 60);
}
my $views_only = join(' ', map { "$_=views:$_" } 1 .. 60);
sq("TRUNCATE mx");
is(mx_fields(), $views_only, 'mixed table, sync TRUNCATE: write-through fields gone on every master, views kept');
sq(q{
SELECT redis_sync.write_through('mx', key_prefix => 'mx:', columns => '{id,name}', warm => false,
                                delivery => 'async');
INSERT INTO mx SELECT g, 'm' || g FROM generate_series(1, 60) g;
});
poll_until('mixed table, async rows delivered', sub {
	sq("SELECT count(*) FROM redis_sync.outbox") eq '0' && $c->any_cli('HGET', 'mx:60', 'name') eq 'm60';
});
sq("TRUNCATE mx");
poll_until('mixed table, async purge delivered', sub { sq("SELECT count(*) FROM redis_sync.outbox") eq '0' });
is(mx_fields(), $views_only, 'mixed table, async TRUNCATE: write-through fields gone on every master, views kept');
sq("SELECT redis_sync.unsync('mx', purge => true); DROP TABLE mx");

# ---- write-behind with counters ----
sq(q{
CREATE TABLE wb (id int PRIMARY KEY, views bigint NOT NULL DEFAULT 0, note text);
INSERT INTO wb SELECT g, 100, 'x' FROM generate_series(1, 60) g;
SELECT redis_sync.write_behind('wb', key_prefix => 'wb:', counters => '{views}',
                               flush_interval => '100 ms');
});
ok(defined RedisSync::WB::wait_worker($node, timeout => 30), 'worker running');
my %expect;
for my $i (1 .. 60)
{
	my $n = $i % 7 + 1;
	$c->any_cli('HINCRBY', "wb:$i", 'views', $n);
	$c->any_cli('SADD', 'wb:dirty', $i);
	$expect{$i} = 100 + $n;
}
$c->any_cli('HSET', 'wb:61', 'views', '5', 'note', 'new');
$c->any_cli('SADD', 'wb:dirty', 61);
$expect{61} = 5;
poll_until('drain', sub {
	my $got = sq("SELECT string_agg(id || '=' || views, ',' ORDER BY id) FROM wb");
	$got eq join(',', map { "$_=$expect{$_}" } sort { $a <=> $b } keys %expect);
});
is(sq("SELECT note FROM wb WHERE id = 61"), 'new', 'write-behind: row created from Redis');
is(sq("SELECT redis_sync.hincrby('wb', '3', 'views', 10)"), $expect{3} + 10, 'hincrby() from SQL');
$expect{3} += 10;
poll_until('hincrby drained', sub { sq("SELECT views FROM wb WHERE id = 3") eq $expect{3} });
is($c->any_cli('SCARD', 'wb:dirty'), '0', 'dirty set empty');
is(sq("SELECT count(*) FROM redis_sync.dead_letters"), '0', 'no dead letters');

# no in-flight marker is left behind (all transactions committed)
poll_until('markers swept', sub {
	my $n = 0;
	for my $m ($c->master_ports)
	{
		$n += grep { /inflight/ && !/attempts|failed/ && $c->cli($m, 'HLEN', $_) > 0 }
		  grep { length } split /\n/, $c->node($m)->cli('--scan', '--pattern', 'redis_sync:inflight:*');
	}
	$n == 0;
});
pass('no in-flight markers left');

is(sq("SELECT count(*) FROM redis_sync.verify('wt')") . sq("SELECT count(*) FROM redis_sync.verify('wa')"),
	'00', 'verify clean at the end');

# seeds: the first is down (nothing listens there), the next one answers
my $dead = RedisSync::Test::free_port();
sq("ALTER SYSTEM SET redis_sync.redis_url = 'redis://127.0.0.1:$dead,127.0.0.1:$masters[1]/0'; SELECT pg_reload_conf()");
poll_until('reload', sub { sq("SHOW redis_sync.redis_url") =~ /$dead/ });
is(sq("SELECT redis_sync.command('PING')"), '"PONG"', 'first seed down: the second seed answers');
sq("INSERT INTO wt VALUES (999, 'seeded', 1)");
is($c->any_cli('HGET', 'wt:999', 'name'), 'seeded', 'pushes work through the second seed');

# MEMORY USAGE goes to its key's node (the write-behind drain asks it of a
# value Redis would not send, drain.c): keys in many slots, each answered
sq("INSERT INTO wt SELECT g, 'mem' || g, g FROM generate_series(981, 998) g");
my @mem = map { sq("SELECT redis_sync.command('MEMORY', 'USAGE', 'wt:$_')") } 981 .. 999;
is(join(' ', grep { !/^[1-9]\d*$/ } @mem), '', 'MEMORY USAGE of keys on every master: each one\'s size');

# a database number on a cluster: refused, clearly
sq("ALTER SYSTEM SET redis_sync.redis_url = 'redis://127.0.0.1:$masters[0]/2'; SELECT pg_reload_conf()");
{
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT redis_sync.command('PING')");
	like($err, qr/names database 2, but Redis at .* is a Redis Cluster node/,
		'database 2 on a cluster: clear error');
}
sq("ALTER SYSTEM RESET redis_sync.redis_url; SELECT pg_reload_conf()");

$node->stop;
done_testing();
