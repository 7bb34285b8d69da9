# The worker's refresh after a Redis restart is one transaction for every
# table (worker.c refresh_tables, keys_sql.c rs_refresh_cached_keys), and
# each table's part reads with a snapshot of its own.  The transaction's
# own snapshot must not be held across the pass: a pass over a large Redis
# takes minutes, and the worker's xmin would hold back vacuum's horizon for
# all of them.
#
# Two tables whose key column is a domain whose check waits on an advisory
# lock the test holds (RedisSync::Restart): the pass blocks in the
# first table's part; a transaction commits; the first part is let go and
# the pass blocks in the second table's part.  The worker's xmin must then
# be newer than the transaction committed between the parts (before, it was
# the pass's, from before it).  tests/t/278 runs the same check under a
# database whose default isolation is SERIALIZABLE.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use RedisSync::Restart;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('refresh_xmin', redis => $redis,
	extra_conf => "redis_sync.warm_timeout = '120s'\n");

$node->safe_psql('postgres', RedisSync::Restart::gate_sql(68));
RedisSync::Restart::check_pass_xmin($node, $redis, 68);
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('ga')})
	  + $node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('gb')}),
	0, 'cache == tables');

done_testing();
