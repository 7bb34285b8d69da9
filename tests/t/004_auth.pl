# AUTH with an ACL user and SELECT of a database from the URL; a wrong
# password fails with Redis's reason and without the password; and
# redis_sync.redis_password_file keeps the secret out of the server log.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $port  = $redis->port;
is($redis->cli('ACL', 'SETUSER', 'app', 'on', '>apppass', '~*', '&*', '+@all'), 'OK', 'ACL user app');

my $node = RedisSync::Test::new_node('auth', redis_url => "redis://app:apppass\@127.0.0.1:$port/3");
my $s = RedisSync::Test::session($node);
my $r = $s->query(q{SELECT redis_sync.command('CLIENT', 'INFO') #>> '{}';});
like($r->{out}, qr/\buser=app\b/, 'authenticated as the ACL user');
like($r->{out}, qr/\bdb=3\b/, 'database 3 selected');
like($r->{out}, qr/\bname=redis_sync:\d+/, 'the connection is named after the backend');

# a wrong password
$node->append_conf('postgresql.conf', "redis_sync.redis_url = 'redis://app:notthepass\@127.0.0.1:$port/3'\n");
$node->reload;
my $ok = 0;
for (1 .. 100)
{
	$r = $s->query(q{SELECT redis_sync.command('PING');});
	if ($r->{err} =~ /could not authenticate/) { $ok = 1; last; }
}
ok($ok, 'a wrong password fails authentication');
like($r->{err}, qr/could not authenticate to Redis at 127\.0\.0\.1:$port/, 'the error names the server');
like($r->{err}, qr/WRONGPASS/, "Redis's reason is in the detail");
unlike($r->{err}, qr/notthepass/, 'the password is not in the error');

# the password from a file, with only the user in the URL
my $passfile = $node->data_dir . '/redis.pass';
PostgreSQL::Test::Utils::append_to_file($passfile, "apppass\n");
chmod 0600, $passfile;
$node->append_conf('postgresql.conf',
	"redis_sync.redis_url = 'redis://app\@127.0.0.1:$port/3'\nredis_sync.redis_password_file = '$passfile'\n");
$node->reload;
$ok = 0;
for (1 .. 100)
{
	$r = $s->query(q{SELECT redis_sync.command('PING');});
	if ($r->{out} eq '"PONG"') { $ok = 1; last; }
}
ok($ok, 'the password file authenticates');

my $log = slurp_file($node->logfile);
unlike($log, qr/apppass/, 'the real password never appears in the server log');

# non-superusers cannot read the settings
$node->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
my ($ret, $out, $err) = $node->psql('postgres', 'SHOW redis_sync.redis_password_file', extra_params => ['-U', 'plain']);
like($err, qr/must be superuser or have privileges of pg_read_all_settings/, 'password file path hidden from non-superusers');

$s->quit;
$node->stop;
done_testing();
