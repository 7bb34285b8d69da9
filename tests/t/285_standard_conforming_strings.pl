# A database may set standard_conforming_strings = off for its sessions
# (ALTER DATABASE ... SET).  redis_sync's PL/pgSQL helper that splits a
# Redis key into key values (_key_row_values, which write_behind() calls
# to check that a dirty set is no row's key) compared characters with the
# literal '\', which such a session parses as the start of an escape:
# write_behind() failed with "unterminated quoted string".  It uses E'\\'.
# The worker's drain of keys and values holding backslashes and colons is
# checked under the setting too.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('scs_off', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE w (k text PRIMARY KEY, v text);
CREATE TABLE o (k text PRIMARY KEY, v text);
ALTER DATABASE postgres SET standard_conforming_strings = off;
});

my ($rc, $out, $err) = $node->psql('postgres',
	q{SELECT redis_sync.write_behind('w', key_prefix => 'w:', dirty_set => 'w-dirty', flush_interval => '100 ms')});
is($rc, 0, 'write_behind() works under standard_conforming_strings = off') or diag $err;
is($node->safe_psql('postgres', q{SELECT redis_sync._key_row_values(E'w:a\\\\:b\\\\\\\\c', 'w', 'w:', '{k}')}),
	'{"a:b\\\\c"}', 'a key with escapes is split as with the setting on');
($rc, $out, $err) = $node->psql('postgres',
	q{SELECT redis_sync.write_behind('o', key_prefix => 'o:', dirty_set => 'w:x')});
like($err, qr/would be the key of the row \(x\) of table public.w/, 'a dirty set that is a row\'s key is still refused');

# the worker, started again under the setting, drains keys with escapes
ok(defined RedisSync::WB::restart_worker($node),
	'a new worker started under the setting');
$redis->cli('HSET', 'w:a\\:b\\\\c', 'v', q{it's \\n not a newline});
$redis->cli('SADD', 'w-dirty', 'a\\:b\\\\c');
ok(defined RedisSync::Compare::wait_for(
		sub { $node->safe_psql('postgres', q{SELECT count(*) FROM w}) eq '1' }, 30),
	'the dirty key is drained');
{
	local $ENV{PGOPTIONS} = '-c standard_conforming_strings=on';
	is($node->safe_psql('postgres', q{SELECT k || ' = ' || v FROM w}), q{a:b\c = it's \n not a newline},
		'key and value as Redis holds them');
}

done_testing();
