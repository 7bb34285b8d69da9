# Claims written by an older build (0.1's claim and release scripts,
# verbatim) on a Redis shared with this one, as in a rolling upgrade (TAP
# 061: two clusters on one Redis): a 0.1 server that moves its table from
# one prefix to another releases one claim and records another, and both
# directions of overlap with its new claim are still refused here, as are
# overlaps with glob characters in prefixes (the claim script matches the
# claims that start with a prefix by HSCAN MATCH).  Found by the issue 18
# review: a first version kept indexes of the claims hash that such a swap
# left stale.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $OLD_CLAIM = <<'LUA';
local me = ARGV[1]
local function starts(s, p) return string.sub(s, 1, #p) == p end
local function overlap(a, b)
  local ta, va, tb, vb = string.sub(a, 1, 1), string.sub(a, 3), string.sub(b, 1, 1), string.sub(b, 3)
  if ta == 'p' and tb == 'p' then return starts(va, vb) or starts(vb, va) end
  if ta == 'p' then return starts(vb, va) end
  if tb == 'p' then return starts(va, vb) end
  return va == vb
end
local all = redis.call('HGETALL', KEYS[1])
for i = 3, #ARGV do
  for j = 1, #all, 2 do
    local holder = string.match(all[j + 1], '^[^\t]*')
    if holder ~= me and overlap(ARGV[i], all[j]) then
      return {'conflict', all[j], all[j + 1]}
    end
  end
end
for i = 3, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], me .. '\t' .. ARGV[2]) end
return {'ok'}
LUA
my $OLD_RELEASE = <<'LUA';
local me = ARGV[1]
local keep = {}
for i = 2, #ARGV do keep[ARGV[i]] = true end
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for j = 1, #all, 2 do
  if string.match(all[j + 1], '^[^\t]*') == me and not keep[all[j]] then
    redis.call('HDEL', KEYS[1], all[j]); n = n + 1
  end
end
return n
LUA

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('review_claim_swap', redis => $redis);
$node->safe_psql('postgres', 'CREATE DATABASE db2');
$node->safe_psql('db2', 'CREATE EXTENSION redis_sync');
$node->safe_psql('postgres', q{
CREATE TABLE a (id int PRIMARY KEY, v text);
CREATE TABLE b (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('a', key_prefix => 'aa:', warm => false);
});
$node->safe_psql('db2', 'CREATE TABLE d (id int PRIMARY KEY, v text)');

my $old = '4242/1/99';    # a table of a 0.1 server
my $desc = 'table public.legacy of database "old" on server 4242';
# 1. the 0.1 server syncs its table with prefix 'old:'
$redis->cli('EVAL', $OLD_CLAIM, 1, 'redis_sync:claims', $old, $desc, 'p:old:');
$node->safe_psql('postgres', "SELECT redis_sync.write_through('b', key_prefix => 'bb:', warm => false)");
my ($ret, $out, $err) = $node->psql('db2', "SELECT redis_sync.write_through('d', key_prefix => 'ol', warm => false)");
like($err, qr/overlaps key prefix "old:"/, '"ol" refused against the 0.1 claim "old:"');

# 2. the 0.1 server changes its prefix: release 'old:' + claim 'zzz:'
$redis->cli('EVAL', $OLD_RELEASE, 1, 'redis_sync:claims', $old, 'p:zzz:');
$redis->cli('EVAL', $OLD_CLAIM, 1, 'redis_sync:claims', $old, $desc, 'p:zzz:');
is($redis->cli('HEXISTS', 'redis_sync:claims', 'p:old:'), '0', 'the 0.1 server released "old:"');

# 3. both directions of overlap with its new claim are refused
($ret, $out, $err) = $node->psql('db2', "SELECT redis_sync.write_through('d', key_prefix => 'zz', warm => false)");
like($err, qr/overlaps key prefix "zzz:"/, '"zz" (shorter) refused against the 0.1 claim "zzz:"');
($ret, $out, $err) = $node->psql('db2', "SELECT redis_sync.write_through('d', key_prefix => 'zzz:x:', warm => false)");
like($err, qr/overlaps key prefix "zzz:"/, '"zzz:x:" (longer) refused against the 0.1 claim "zzz:"');
# and the released prefix is free again
$node->safe_psql('db2', "SELECT redis_sync.write_through('d', key_prefix => 'ol', warm => false)");
pass('"ol" is free once the 0.1 server released "old:"');

# 4. glob characters in prefixes match themselves only: "g?" does not
# overlap "gb:" (an unescaped MATCH p:g?* would say it does), "g*[a]" is a
# prefix of "g*[a]?\x:"
$redis->cli('EVAL', $OLD_CLAIM, 1, 'redis_sync:claims', $old, $desc, 'p:gb:', 'p:g*[a]?\\x:');
$node->safe_psql('db2', 'CREATE TABLE e (id int PRIMARY KEY, v text); CREATE TABLE f (id int PRIMARY KEY, v text)');
$node->safe_psql('db2', "SELECT redis_sync.write_through('e', key_prefix => 'g?', warm => false)");
pass('"g?" is accepted beside "gb:"');
($ret, $out, $err) = $node->psql('db2', "SELECT redis_sync.write_through('f', key_prefix => 'g*[a]', warm => false)");
like($err, qr/key prefix "g\*\[a\]" overlaps key prefix "g\*\[a\]\?\\x:"/, '"g*[a]" refused against "g*[a]?\\x:"');

$node->stop;
$redis->stop;
done_testing();
