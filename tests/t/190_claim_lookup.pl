# A claim reads only the claims of redis_sync:claims that can overlap its
# own (issue 18: setting up many tables was quadratic): equality probes for
# its prefixes and one HSCAN MATCH for what starts with it, never HGETALL.
# Every overlap is still refused, in both directions, against prefixes and
# dirty sets; claims set or deleted by hand are seen; unsync releases.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('claim_index', redis => $redis);
$node->safe_psql('postgres', 'CREATE DATABASE db2');
$node->safe_psql('db2', 'CREATE EXTENSION redis_sync');

my $ntab = 200;
$node->safe_psql('postgres', qq{
DO \$\$
BEGIN
  FOR i IN 1..$ntab LOOP
    EXECUTE format('CREATE TABLE wb_%s (id int PRIMARY KEY, n bigint)', i);
    PERFORM redis_sync.write_behind(format('wb_%s', i)::regclass, key_prefix => format('wb%s:', i),
                                    flush_interval => '1 h');
    EXECUTE format('CREATE TABLE wt_%s (id int PRIMARY KEY, v int)', i);
    PERFORM redis_sync.write_through(format('wt_%s', i)::regclass, key_prefix => format('wt%s:', i), warm => false);
  END LOOP;
END \$\$;
CREATE TABLE sep (id int PRIMARY KEY, n bigint);
SELECT redis_sync.write_behind('sep', key_prefix => 'sep:', dirty_set => 'sepdirty:set', flush_interval => '1 h');
});
# write-behind: prefix, dirty set, processing set; write-through: prefix
my $nfields = 4 * $ntab + 3;
is($redis->cli('HLEN', 'redis_sync:claims'), $nfields, "$ntab + $ntab tables claimed in one transaction");

# a claim reads only what can overlap: no HGETALL, a handful of lookups
$node->safe_psql('db2', 'CREATE TABLE d (id text PRIMARY KEY, v text)');
$redis->cli('CONFIG', 'RESETSTAT');
$node->safe_psql('db2', "SELECT redis_sync.write_through('d', key_prefix => 'db2d:', warm => false)");
my $stats = $redis->cli('INFO', 'commandstats');
# (the one HGETALL is the release of the table's old claims at commit)
my ($hgetall) = $stats =~ /cmdstat_hgetall:calls=(\d+)/;
cmp_ok($hgetall // 0, '<=', 1, 'a claim among many does not read every claim');
my ($hget) = $stats =~ /cmdstat_hget:calls=(\d+)/;
cmp_ok($hget // 0, '<', 100, "... a few probes ($ntab tables synced)");

# every kind of overlap is still refused, from another database
my @refused = (
	[ "write_through('d', key_prefix => 'wt17:')",    qr/key prefix "wt17:" overlaps key prefix "wt17:"/,  'the same prefix' ],
	[ "write_through('d', key_prefix => 'wt17:x')",   qr/key prefix "wt17:x" overlaps key prefix "wt17:"/, 'a longer prefix' ],
	[ "write_through('d', key_prefix => 'wt1')",      qr/key prefix "wt1" overlaps key prefix "wt1[0-9]*:"/, 'a shorter prefix' ],
	[ "write_through('d', key_prefix => 'sepdi')",    qr/key prefix "sepdi" overlaps key "sepdirty:set"/,  'a prefix around a dirty set' ],
	[ "write_behind('d', key_prefix => 'db2d:', dirty_set => 'wt3:set', flush_interval => '1 h')",
		qr/key "wt3:set" overlaps key prefix "wt3:"/, 'a dirty set under a prefix' ],
	[ "write_behind('d', key_prefix => 'db2d:', dirty_set => 'wb9:dirty', flush_interval => '1 h')",
		qr/key "wb9:dirty" overlaps key prefix "wb9:"/, 'a dirty set under a prefix (its own table\'s)' ],
	[ "write_behind('d', key_prefix => 'db2d:', dirty_set => 'sepdirty:set', flush_interval => '1 h')",
		qr/key "sepdirty:set" overlaps key "sepdirty:set"/, 'the same dirty set' ],
);
for my $r (@refused)
{
	my ($ret, $out, $err) = $node->psql('db2', "SELECT redis_sync.$r->[0]");
	isnt($ret, 0, "refused: $r->[2]");
	like($err, $r->[1], '... naming the overlap');
	like($err, qr/claimed by table public\.(w[bt]_\d+|sep) of database "postgres"/, '... and its holder');
}

# a claim deleted by hand (the documented repair): the prefix is free
$redis->cli('HDEL', 'redis_sync:claims', 'p:wt20:');
$node->safe_psql('db2', "SELECT redis_sync.write_through('d', key_prefix => 'wt20:', warm => false)");
like($redis->cli('HGET', 'redis_sync:claims', 'p:wt20:'), qr{/\d+\t.*database "db2"}, 'a prefix freed by hand can be claimed');

# a claim added by hand (as another server of an older build would): seen
$redis->cli('HSET', 'redis_sync:claims', 'p:elsewhere:', "1/2/3\ttable x of database \"y\" on server 1");
my ($ret, $out, $err) = $node->psql('db2', "SELECT redis_sync.write_through('d', key_prefix => 'elsewhere:sub:')");
like($err, qr/key prefix "elsewhere:sub:" overlaps key prefix "elsewhere:" claimed by table x of database "y"/,
	'a claim set by hand is seen (longer prefix)');
($ret, $out, $err) = $node->psql('db2', "SELECT redis_sync.write_through('d', key_prefix => 'else')");
like($err, qr/key prefix "else" overlaps key prefix "elsewhere:" claimed by table x/, 'a claim set by hand is seen (shorter prefix)');
$redis->cli('HDEL', 'redis_sync:claims', 'p:elsewhere:');

# unsync releases the table's claims
$node->safe_psql('postgres', qq{
DO \$\$
BEGIN
  FOR i IN 1..$ntab LOOP
    PERFORM redis_sync.unsync(format('wb_%s', i)::regclass);
  END LOOP;
END \$\$;
});
my $left = $ntab + 3;    # the wt_* prefixes (wt20: now d's, in db2) and sep's
is($redis->cli('HLEN', 'redis_sync:claims'), $left, 'unsync released the write-behind claims');
is($redis->cli('HEXISTS', 'redis_sync:claims', 'k:wb9:dirty'), '0', '... a dirty set among them');
$node->safe_psql('db2', "SELECT redis_sync.write_behind('d', key_prefix => 'db2d:', dirty_set => 'wb9:dirty', flush_interval => '1 h')");
is($redis->cli('HEXISTS', 'redis_sync:claims', 'k:wb9:dirty'), '1', 'the released dirty set can be claimed');

$node->stop;
done_testing();
