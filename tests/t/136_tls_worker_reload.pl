# The worker's TLS connection follows a reload of the verification settings
# (review of issue 15): a worker connected with tls_verify = none to a
# server whose certificate names another host must not keep that unverified
# connection once tls_verify = full is reloaded -- its next delivery
# reconnects, fails verification (logged, the outbox keeps the change) --
# and delivers again once tls_server_name names the certificate's host.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::TLS;
use RedisSync::Compare;
use RedisSync::WB;
use Test::More;

my $pki   = RedisSync::TLS::make_pki();
my $wrong = RedisSync::TLS::start_tls_redis($pki, server_cert => 'wrong');
my $node  = RedisSync::Test::new_node('tlswreload', redis_url => $wrong->url,
	extra_conf => "redis_sync.circuit_failures = 0\n"
	  . "redis_sync.retry_max_backoff = '200ms'\n"
	  . RedisSync::TLS::tls_conf($pki, verify => 'none'));

sub reload_with
{
	my (%set) = @_;
	$node->safe_psql('postgres',
		join('', map { "ALTER SYSTEM SET redis_sync.$_ = '$set{$_}';\n" } sort keys %set)
		  . 'SELECT pg_reload_conf();');
	for my $k (keys %set)
	{
		$node->poll_query_until('postgres',
			"SELECT current_setting('redis_sync.$k') = '$set{$k}'")
		  or die "$k not reloaded";
	}
	return;
}

ok(defined RedisSync::WB::wait_worker($node, timeout => 60), 'worker running');
$node->safe_psql('postgres', q{
CREATE TABLE a (id int PRIMARY KEY, v int);
SELECT redis_sync.write_through('a', key_prefix => 'a:', delivery => 'async');
INSERT INTO a VALUES (1, 10);
});
ok(defined RedisSync::Compare::wait_for(sub { $wrong->cli('HGET', 'a:1', 'v') eq '10' }, 60),
	'tls_verify = none: the worker delivers to a server whose certificate names another host');

# verification switched on: the worker's connection is remade and refused
my $logpos = -s $node->logfile;
reload_with(tls_verify => 'full');
$node->safe_psql('postgres', 'INSERT INTO a VALUES (2, 20);');
ok(defined RedisSync::Compare::wait_for(sub {
		slurp_file($node->logfile, $logpos) =~
		  /redis_sync worker: could not deliver the outbox: could not establish a TLS connection.*\n.*does not match the name "localhost"/
	}, 60),
	'after reloading tls_verify = full the worker reconnects and the certificate is refused');
is($wrong->cli('EXISTS', 'a:2'), '0', 'nothing was delivered over the old, unverified connection');
cmp_ok(RedisSync::Compare::outbox_depth($node), '>=', 1, 'the change waits in the outbox');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT redis_sync.command('PING')");
like($err, qr/does not match the name "localhost"/, 'backends verify too');

# the name the certificate holds: delivery resumes, verified
reload_with(tls_server_name => 'wrong.example');
ok(defined RedisSync::Compare::wait_for(
		sub { $wrong->cli('HGET', 'a:2', 'v') eq '20' && RedisSync::Compare::outbox_depth($node) == 0 }, 60),
	'with tls_server_name = the certificate\'s name the worker delivers again');

$node->stop;
$wrong->stop;
done_testing();
