# TLS verification and its errors: a wrong CA fails quickly with OpenSSL's
# reason; tls_verify = ca accepts a certificate for another name while full
# refuses it (and tls_server_name fixes it); a plain-text URL aimed at the
# TLS port fails within connect_timeout; a server that demands client
# certificates refuses a client without one and accepts tls_cert_file /
# tls_key_file; missing or unusable files are named; no password or key
# material ever appears in a message or in the server log.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::TLS;
use Test::More;
use Time::HiRes qw(time);

my $pki    = RedisSync::TLS::make_pki();
my $good   = RedisSync::TLS::start_tls_redis($pki);
my $wrong  = RedisSync::TLS::start_tls_redis($pki, server_cert => 'wrong');
my $mtls   = RedisSync::TLS::start_tls_redis($pki, auth_clients => 'yes');
my $plain  = RedisSync::Test::start_redis();
my $SECRET = 'Sekr3tPassw0rd';

my $node = RedisSync::Test::new_node('tlsverify', redis_url => $good->url,
	extra_conf => "redis_sync.circuit_failures = 0\nredis_sync.connect_timeout = '500ms'\n"
	  . RedisSync::TLS::tls_conf($pki, verify => 'full'));

# point the settings somewhere, reload, and PING from a new backend
sub configure
{
	my (%set) = @_;
	my $sql = join '', map {
		my $v = $set{$_};
		$v =~ s/'/''/g;
		"ALTER SYSTEM SET redis_sync.$_ = '$v';\n"
	} sort keys %set;
	$node->safe_psql('postgres', $sql . "SELECT pg_reload_conf();");
	# the postmaster reloads asynchronously; wait until a new backend sees it
	for my $k (keys %set)
	{
		my $v = $set{$k};
		$v =~ s/'/''/g;
		$node->poll_query_until('postgres',
			"SELECT current_setting('redis_sync.$k') = '$v'")
		  or die "setting $k not reloaded";
	}
	return;
}

sub ping
{
	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT redis_sync.command('PING')");
	my $secs = time - $t0;
	note("PING: ret $ret out $out err $err (${secs}s)");
	return { ret => $ret, out => $out, err => $err, secs => $secs };
}

my $r = ping();
is($r->{out}, '"PONG"', 'full verification against the right CA and name');

# wrong CA
configure(tls_ca_file => $pki->{otherca});
$r = ping();
isnt($r->{ret}, 0, 'a certificate from an unknown CA is refused');
like($r->{err}, qr/could not establish a TLS connection to Redis at localhost:\d+/, 'error names the server');
like($r->{err}, qr/TLS certificate verification failed: (unable to get local issuer certificate|certificate signature failure|self.signed)/,
	"error gives OpenSSL's reason");
cmp_ok($r->{secs}, '<', 3, 'and fails quickly');

# the system trust store does not hold the test CA either
configure(tls_ca_file => '');
$r = ping();
like($r->{err}, qr/TLS certificate verification failed/, 'system trust store: refused too');

# host name mismatch: full refuses, ca accepts, tls_server_name fixes it
configure(tls_ca_file => $pki->{ca}, redis_url => $wrong->url);
$r = ping();
isnt($r->{ret}, 0, 'full: a certificate for another name is refused');
like($r->{err}, qr/does not match the name "localhost" \(host name mismatch\)/, 'error says host name mismatch');
configure(tls_verify => 'ca');
$r = ping();
is($r->{out}, '"PONG"', 'ca: the same certificate is accepted (chain only)');
configure(tls_verify => 'full', tls_server_name => 'wrong.example');
$r = ping();
is($r->{out}, '"PONG"', 'full with tls_server_name = the certificate name: accepted');

# by IP address: checked against the certificate's IP entries
configure(tls_server_name => '', redis_url => $good->url(0, '127.0.0.1'));
$r = ping();
is($r->{out}, '"PONG"', 'full by IP address: accepted (the certificate has IP:127.0.0.1)');
configure(redis_url => $wrong->url(0, '127.0.0.1'));
$r = ping();
like($r->{err}, qr/does not match the name "127\.0\.0\.1"/, 'full by IP address: mismatch refused');
configure(tls_verify => 'none', tls_ca_file => $pki->{otherca});
$r = ping();
is($r->{out}, '"PONG"', 'none: anything is accepted (unsafe, but works)');
configure(tls_verify => 'full', tls_ca_file => $pki->{ca});

# plain-text URL aimed at the TLS port: an error within connect_timeout
configure(redis_url => $good->plain_url);
$r = ping();
isnt($r->{ret}, 0, 'plain-text URL against a TLS port fails');
like($r->{err}, qr/could not connect to Redis at 127\.0\.0\.1:\d+/, 'as a connection failure');
like($r->{err}, qr/use a rediss:\/\/ URL/, 'with a hint to use rediss://');
cmp_ok($r->{secs}, '<', 3, 'within the connect timeout, no hang');

# rediss:// aimed at a plain server: an error, quickly
configure(redis_url => 'rediss://127.0.0.1:' . $plain->port . '/0', tls_verify => 'ca');
$r = ping();
isnt($r->{ret}, 0, 'rediss:// against a plain-text server fails');
like($r->{err}, qr/could not establish a TLS connection to Redis at 127\.0\.0\.1:\d+/, 'as a TLS failure');
cmp_ok($r->{secs}, '<', 3, 'quickly');
configure(tls_verify => 'full');

# client certificates
configure(redis_url => $mtls->url);
$r = ping();
isnt($r->{ret}, 0, 'tls-auth-clients yes: refused without a client certificate');
like($r->{err}, qr/(certificate required|handshake failure|demands client certificates)/i,
	'error says why');
cmp_ok($r->{secs}, '<', 3, 'quickly');
configure(tls_cert_file => $pki->{client}, tls_key_file => $pki->{client_key});
$r = ping();
is($r->{out}, '"PONG"', 'tls-auth-clients yes: accepted with tls_cert_file/tls_key_file');

# missing, unreadable, mismatched files
configure(tls_ca_file => '/nonexistent/ca.crt');
$r = ping();
like($r->{err}, qr{could not read redis_sync\.tls_ca_file "/nonexistent/ca\.crt": No such file or directory},
	'missing CA file named');
configure(tls_ca_file => $pki->{ca}, tls_key_file => '/nonexistent/client.key');
$r = ping();
like($r->{err}, qr{could not read redis_sync\.tls_key_file "/nonexistent/client\.key"}, 'missing key file named');
configure(tls_key_file => $pki->{server_key});
$r = ping();
like($r->{err}, qr{redis_sync\.tls_key_file ".*" does not match redis_sync\.tls_cert_file}, 'mismatched key named');
# a private key others may read is refused (libpq's rule)
my $loose = "$pki->{dir}/loose.key";
PostgreSQL::Test::Utils::append_to_file($loose, slurp_file($pki->{client_key}));
chmod 0644, $loose;
configure(tls_key_file => $loose);
$r = ping();
like($r->{err}, qr{redis_sync\.tls_key_file ".*loose\.key" has group or world access}, 'a key with group/world access is refused');
configure(tls_key_file => '');
$r = ping();
like($r->{err}, qr{redis_sync\.tls_cert_file is set but redis_sync\.tls_key_file is not}, 'certificate without key');
# a private key given as the CA file: an error that does not show the key
configure(tls_key_file => $pki->{client_key}, tls_ca_file => $pki->{client_key});
$r = ping();
like($r->{err}, qr{could not load redis_sync\.tls_ca_file}, 'a key as CA file is refused');
configure(tls_ca_file => $pki->{ca});

# the password never shows up: wrong CA and wrong password.  It comes from
# redis_sync.redis_password_file (PostgreSQL itself logs a changed
# redis_url's value at reload, password included: see the README).
my $pwfile = "$pki->{dir}/password";
PostgreSQL::Test::Utils::append_to_file($pwfile, "$SECRET\n");
configure(redis_url => $mtls->url, redis_password_file => $pwfile, tls_ca_file => $pki->{otherca});
$r = ping();
like($r->{err}, qr/verification failed/, 'failure with a password in the URL');
unlike($r->{err}, qr/\Q$SECRET\E/, 'the password is not in the message');
configure(tls_ca_file => $pki->{ca});
$r = ping();
like($r->{err}, qr/could not authenticate to Redis/, 'a wrong password over TLS is an authentication failure');
unlike($r->{err}, qr/\Q$SECRET\E/, 'the password is not in that message');

# AUTH and SELECT over TLS: the right password, database 3
$good->cli('CONFIG', 'SET', 'requirepass', $SECRET);
$good->{password} = $SECRET;
configure(redis_url => $good->url(3));
$r = ping();
is($r->{out}, '"PONG"', 'AUTH with the password file over TLS');
my ($ret, $out) = $node->psql('postgres', "SELECT redis_sync.command('CLIENT', 'INFO')");
like($out, qr/ db=3 /, 'SELECT 3 over TLS');

my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$SECRET\E/, 'the password is not in the server log');
my $keytext = slurp_file($pki->{client_key});
my ($keyline) = grep { length($_) > 40 && !/-----/ } split /\n/, $keytext;
unlike($log, qr/PRIVATE KEY|\Q$keyline\E/, 'no key material in the server log');

$node->stop;
$_->stop for ($good, $wrong, $mtls, $plain);
done_testing();
