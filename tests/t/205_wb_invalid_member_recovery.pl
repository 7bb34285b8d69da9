# Dirty set members that are not valid text (bytes a Latin-1 client sent)
# are dead-lettered with a printable copy of their bytes.  Left in the
# processing set by a crash or a failed batch, they are claimed again by
# the recovery that starts each drain, which is a loop: while a recovery
# batch comes back full, claim the next.  Its acknowledgement removed the
# printable copies, which the set does not hold, so with batch_size or
# more such members every recovery batch was the same full batch: the
# worker dead-lettered them again and again (attempts climbing by
# thousands a second) and never drained anything else, and flush() timed
# out.  The acknowledgement now removes the bytes Redis holds.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbbadmember', redis => $redis,
	extra_conf => "redis_sync.flush_timeout = '10s'\n");

$node->safe_psql('postgres', q{
CREATE TABLE bad (k text PRIMARY KEY, v int);
SELECT redis_sync.write_behind('bad', key_prefix => 'bad:', dirty_set => 'bad-dirty',
                               batch_size => 5, flush_interval => '1 h');
});

# six invalid members left in the processing set (as by a crash), one valid dirty member
$redis->cli('SADD', '{bad-dirty}:rs_processing', "\xff\xfe$_") for 1 .. 6;
$redis->cli('HSET', 'bad:ok', 'v', 1);
$redis->cli('SADD', 'bad-dirty', 'ok');

my ($ret, $out, $err) = $node->psql('postgres', "SELECT redis_sync.flush('bad')");
is($ret, 0, 'flush() returns') or diag($err);
is($node->safe_psql('postgres', q{SELECT coalesce(string_agg(k || '=' || v, ' '), 'none') FROM bad}),
	'ok=1', 'the valid member was drained');
is($redis->cli('SCARD', '{bad-dirty}:rs_processing'), '0', 'the invalid members left the processing set');
is( $node->safe_psql('postgres',
		q{SELECT count(*) || ' ' || max(attempts) || ' ' || min(sqlstate) FROM redis_sync.dead_letters}),
	'6 1 22021', 'each invalid member is one dead letter, tried once');

$node->stop;
$redis->stop;
done_testing();
