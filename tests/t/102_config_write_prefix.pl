# _config_write() is executable by every table owner (it checks ownership)
# and skipped the rule of _sync() that a key prefix must not begin with "{":
# a plain role could give its table the prefix "{victim:5}:rs_versio", so its
# row "n" was written at "{victim:5}:rs_version", the version key of another
# table's row (found in review).  The rule is now checked where every claim
# is recorded (claim.c), for both paths.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('cfgprefix', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE victim (id int PRIMARY KEY, secret text);
INSERT INTO victim VALUES (5, 's5');
SELECT redis_sync.write_through('victim', key_prefix => 'victim:');
CREATE ROLE mallory LOGIN;
GRANT CREATE ON SCHEMA public TO mallory;
});
$node->safe_psql('postgres', 'CREATE TABLE a3 (id text PRIMARY KEY, v text)',
	extra_params => [ '-U', 'mallory' ]);

for my $call (
	q~SELECT redis_sync._config_write('a3', 'write_through', '{victim:5}:rs_versio', '{id}', '{id,v}', 'json', NULL, 'eventual', 'sync', NULL, NULL, NULL, NULL, NULL)~,
	q~SELECT redis_sync._config_write('a3', 'invalidate', '{x', '{id}', '{id,v}', 'hash', NULL, 'eventual', 'sync', NULL, NULL, NULL, NULL, NULL)~,
	q~SELECT redis_sync.write_through('a3', key_prefix => '{a3}:')~)
{
	my ($ret, $out, $err) = $node->psql('postgres', $call, extra_params => [ '-U', 'mallory' ]);
	like($err, qr/key_prefix must not begin with "\{"/, "refused: $call");
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.tables WHERE relid::oid = 'a3'::regclass::oid}),
	'0', 'no configuration was written');
# a hash tag after the first character stays allowed
$node->safe_psql('postgres', q{SELECT redis_sync.write_through('a3', key_prefix => 'a3:{t}:')},
	extra_params => [ '-U', 'mallory' ]);
is($node->safe_psql('postgres', q{SELECT key_prefix FROM redis_sync.tables WHERE relid::oid = 'a3'::regclass::oid}),
	'a3:{t}:', 'a prefix with a hash tag inside is accepted');

$node->stop;
$redis->stop;
done_testing();
