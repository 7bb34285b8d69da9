# Write-behind input that the database cannot hold (issue 11).  Redis
# strings are bytes; a text column is not.  Values that are not valid UTF-8
# (the database encoding here) and values with an embedded NUL byte (which
# the text input functions would silently cut) are written to Redis with
# raw RESP, marked dirty, and drained: each goes to redis_sync.dead_letters
# with a clear error and a printable copy of the value, nothing of it is
# stored, and the valid keys of the same batch are applied.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbinput', redis => $redis);
is($node->safe_psql('postgres', 'SHOW server_encoding'), 'UTF8', 'database encoding UTF8');

$node->safe_psql('postgres', q{
CREATE TABLE h (id int PRIMARY KEY, note text, n int);
INSERT INTO h VALUES (3, 'before', 3), (4, 'before', 4);
SELECT redis_sync.write_behind('h', key_prefix => 'h:', flush_interval => '1 h');
CREATE TABLE s (id int PRIMARY KEY, note text);
SELECT redis_sync.write_behind('s', key_prefix => 's:', columns => '{note}', format => 'string', flush_interval => '1 h');
});

my $file = "$PostgreSQL::Test::Utils::tmp_check/wb_invalid.resp";
RedisSync::WB::write_resp(
	$file,
	[ 'HSET', 'h:1', 'note', "valid \xc3\xa9", 'n', '1' ],      # valid UTF-8: applied
	[ 'HSET', 'h:2', 'note', "bad \xff\xfe byte", 'n', '2' ],   # invalid UTF-8
	[ 'HSET', 'h:3', 'note', "cut\x00here", 'n', '30' ],        # embedded NUL
	[ 'HSET', 'h:4', "no\xe9te", 'x', 'n', '40' ],              # invalid field name
	[ 'SADD', 'h:dirty', '1', '2', '3', '4' ],
	[ 'SET', 's:1', "ok" ],
	[ 'SET', 's:2', "\xc0\xaf overlong" ],
	[ 'SET', 's:3', "nul\x00" ],
	[ 'SADD', 's:dirty', '1', '2', '3', "4\xff" ],                # an invalid member
);
RedisSync::WB::pipe_run($redis, $file, 9);

$node->safe_psql('postgres', "SELECT redis_sync.flush('h'), redis_sync.flush('s')");

is($node->safe_psql('postgres', "SELECT string_agg(id || '|' || coalesce(note, '-') || '|' || coalesce(n::text, '-'), ',' ORDER BY id) FROM h"),
	"1|valid \xc3\xa9|1,3|before|3,4|before|4",
	'h: the valid key applied; the invalid ones stored nothing');
is($node->safe_psql('postgres', "SELECT string_agg(id || '|' || note, ',' ORDER BY id) FROM s"),
	'1|ok', 's: the valid key applied; the invalid ones stored nothing');

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(relid::text || ' ' || member || ' ' || sqlstate || ' ' || error, E'\n' ORDER BY relid::text, member)
  FROM redis_sync.dead_letters}),
	join("\n",
		'h 2 22021 the value of field "note" is not valid in the database encoding UTF8',
		'h 3 22021 the value of field "note" contains a NUL byte',
		'h 4 22021 a field name is not valid in the database encoding UTF8',
		's 2 22021 the value is not valid in the database encoding UTF8',
		's 3 22021 the value contains a NUL byte',
		's 4\xff 22021 the dirty set member is not valid in the database encoding UTF8'),
	'each invalid value is a dead letter with a clear error');
like($node->safe_psql('postgres', "SELECT raw_value::text FROM redis_sync.dead_letters WHERE relid = 'h'::regclass AND member = '2'"),
	qr/bad \\\\xff\\\\xfe byte/, 'the dead letter keeps a printable copy of the value');
like($node->safe_psql('postgres', "SELECT raw_value::text FROM redis_sync.dead_letters WHERE relid = 'h'::regclass AND member = '3'"),
	qr/cut\\\\x00here/, '... NUL included');
is($node->safe_psql('postgres', "SELECT count(*) FROM h WHERE note LIKE 'cut%'"), '0', 'no value cut at the NUL');

$node->stop;
done_testing();
