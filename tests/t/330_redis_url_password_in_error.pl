# redis_sync.redis_url is visible to superusers only: it may hold the Redis
# password.  A password with an unencoded '/' (base64 passwords have them)
# ends the URL's authority early, and the "bad port" error every session
# then raised quoted the part after the user name, the password: any role
# calling get() read it in the error's DETAIL (and the log kept it).  An
# invalid redis_url must be reported without quoting parts of it; parse_url()
# shows a superuser what is wrong.  (From an adversarial review.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('url_password', redis => $redis);
$node->safe_psql('postgres', q{
CREATE ROLE bob;
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t VALUES (1, 'one');
SELECT redis_sync.write_through('t', key_prefix => 't:', warm => false);
GRANT SELECT ON t TO bob;
});
my $port = $redis->{port};
$node->safe_psql('postgres',
	"ALTER SYSTEM SET redis_sync.redis_url = 'redis://default:Zk9Secret/pw\@127.0.0.1:$port/0'; SELECT pg_reload_conf()");
ok(defined RedisSync::Compare::wait_for(sub {
	$node->safe_psql('postgres', q{SELECT current_setting('redis_sync.redis_url')}) =~ /Zk9Secret/ }, 30),
	'the new redis_url is in effect');

my ($rc, $out, $err) = $node->psql('postgres', q{SET ROLE bob; SELECT redis_sync.get(NULL::t, '1')});
isnt($rc, 0, 'get() fails: the URL is invalid');
like($err, qr/redis_url/, 'the error names redis_sync.redis_url');
unlike($err, qr/Zk9Secret/, 'the error does not show bob the password');
done_testing();
