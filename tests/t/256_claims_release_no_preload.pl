# Without shared_preload_libraries the library loads when first used
# (README), and 0aaf562's release of a database's prefix claims at DROP
# EXTENSION lives in the library (an object access hook): a session that
# had not used it dropped the extension and left every claim behind,
# without a warning.  The extension's event trigger at the start of DROP
# EXTENSION / DROP SCHEMA / DROP OWNED loads the library first.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Claims;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('claims_no_preload', redis => $redis);
my $cl = RedisSync::Claims->new($node, $redis);

sub sq { return $node->safe_psql(@_); }

$cl->claiming_database($_) for qw(np1 np2);

$node->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$node->restart;

# a fresh session that never used the library
my ($ret, $out, $err) = $node->psql('np1', 'DROP EXTENSION redis_sync CASCADE');
is($ret, 0, 'DROP EXTENSION without shared_preload_libraries');
is($cl->holder('np1:'), '', '... releases the claim');

($ret, $out, $err) = $node->psql('np2', 'DROP SCHEMA redis_sync CASCADE');
is($ret, 0, 'DROP SCHEMA redis_sync CASCADE without shared_preload_libraries');
is($cl->holder('np2:'), '', '... releases the claim');

# the event trigger runs for a plain role too (its function is not
# executable by PUBLIC: event triggers do not check)
sq('np2', 'CREATE ROLE plain LOGIN; GRANT CREATE ON DATABASE np2 TO plain');
($ret, $out, $err) = $node->psql('np2', 'CREATE SCHEMA mine; DROP SCHEMA mine; DROP OWNED BY plain',
	extra_params => ['-U', 'plain']);
is($ret, 0, 'a plain role drops its schema and what it owns');
unlike($err, qr/ERROR|redis_sync/, '... without an error');

$node->stop;
$redis->stop;
done_testing();
