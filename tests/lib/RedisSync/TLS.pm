# TLS helpers for the redis_sync TAP tests (tests 130-139).
#
#   my $pki = RedisSync::TLS::make_pki();        # certificates under a temp dir
#   my $r   = RedisSync::TLS::start_tls_redis($pki,
#                 auth_clients => 'no',           # or 'yes' (client cert needed)
#                 server_cert  => 'server');      # or 'wrong' (name mismatch)
#   $r->url                                       # rediss://localhost:PORT/0
#   $r->cli('PING')                               # redis-cli over TLS
#                                                 # (with -a $r->{password} if set)
#   RedisSync::TLS::tls_conf($pki, verify => 'full', client => 1)
#                                                 # postgresql.conf lines
#
# The certificates are made with the openssl command: a CA, a server
# certificate for localhost and 127.0.0.1, one for another name
# (wrong.example), a client certificate, and a second CA that signed nothing
# the server presents.  The redis-server listens on TLS only (--port 0).
package RedisSync::TLS;

use strict;
use warnings;

use File::Temp ();
use IPC::Run ();
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;

sub openssl
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'openssl', @args ], '<', \undef, '>', \$out, '2>', \$err)
	  or die "openssl @args failed: $err";
	return $out;
}

# A CA-signed certificate: name, CN, subjectAltName, extended key usage.
sub _issue
{
	my ($dir, $ca, $name, $cn, $san, $eku) = @_;
	my $ext = "$dir/$name.ext";
	open my $fh, '>', $ext or die "$ext: $!";
	print $fh "basicConstraints = CA:FALSE\n";
	print $fh "keyUsage = digitalSignature, keyEncipherment\n";
	print $fh "extendedKeyUsage = $eku\n";
	print $fh "subjectAltName = $san\n" if $san;
	close $fh;
	openssl('req', '-new', '-newkey', 'rsa:2048', '-nodes',
		'-keyout', "$dir/$name.key", '-out', "$dir/$name.csr",
		'-subj', "/CN=$cn");
	openssl('x509', '-req', '-in', "$dir/$name.csr", '-CA', "$dir/$ca.crt",
		'-CAkey', "$dir/$ca.key", '-CAcreateserial', '-days', '2',
		'-sha256', '-extfile', $ext, '-out', "$dir/$name.crt");
	chmod 0600, "$dir/$name.key";
	return;
}

sub _ca
{
	my ($dir, $name) = @_;
	openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
		'-keyout', "$dir/$name.key", '-out', "$dir/$name.crt",
		'-subj', "/CN=redis_sync test $name",
		'-addext', 'basicConstraints=critical,CA:TRUE',
		'-addext', 'keyUsage=critical,keyCertSign,cRLSign');
	return;
}

# Make the test PKI; returns { dir => ..., ca => path, ... }.
sub make_pki
{
	my $dir = File::Temp::tempdir(
		'pki_XXXX',
		DIR     => $PostgreSQL::Test::Utils::tmp_check,
		CLEANUP => 1);
	_ca($dir, 'ca');
	_ca($dir, 'otherca');
	_issue($dir, 'ca', 'server', 'localhost',
		'DNS:localhost,IP:127.0.0.1', 'serverAuth');
	_issue($dir, 'ca', 'wrong', 'wrong.example', 'DNS:wrong.example',
		'serverAuth');
	_issue($dir, 'ca', 'client', 'redis_sync client', '', 'clientAuth');
	my %p = (dir => $dir);
	$p{$_} = "$dir/$_.crt" for qw(ca otherca server wrong client);
	$p{"${_}_key"} = "$dir/$_.key" for qw(ca server wrong client);
	return \%p;
}

# postgresql.conf lines for the TLS settings.
#   verify => full|ca|none, ca => 'ca'|'otherca'|'' (system store),
#   client => 1 (present the client certificate), server_name => name
sub tls_conf
{
	my ($pki, %o) = @_;
	my $ca = exists $o{ca} ? $o{ca} : 'ca';
	my $conf = '';
	$conf .= "redis_sync.tls_ca_file = '" . ($ca ? $pki->{$ca} : '') . "'\n";
	$conf .= "redis_sync.tls_verify = '" . ($o{verify} // 'full') . "'\n";
	$conf .= "redis_sync.tls_cert_file = '" . ($o{client} ? $pki->{client} : '') . "'\n";
	$conf .= "redis_sync.tls_key_file = '" . ($o{client} ? $pki->{client_key} : '') . "'\n";
	$conf .= "redis_sync.tls_server_name = '" . ($o{server_name} // '') . "'\n";
	return $conf;
}

# A TLS-only redis-server; see the header.
sub start_tls_redis
{
	my ($pki, %opts) = @_;
	my $self = RedisSync::Test::redis_object(
		class        => 'RedisSync::TLS::Redis',
		dir_template => 'redis_tls_XXXX',
		port         => $opts{port},
		pki          => $pki,
		auth_clients => $opts{auth_clients} // 'no',
		server_cert  => $opts{server_cert} // 'server');
	$self->start;
	return $self;
}

package RedisSync::TLS::Redis;

use strict;
use warnings;
use IPC::Run ();

our @ISA = ('RedisSync::Test::Redis');

sub url
{
	my ($self, $db, $host) = @_;
	return "rediss://" . ($host // 'localhost') . ":$self->{port}/" . ($db // 0);
}

# the same port without TLS: what a misconfigured client would use
sub plain_url
{
	my ($self) = @_;
	return "redis://127.0.0.1:$self->{port}/0";
}

sub cli
{
	my ($self, @args) = @_;
	my ($out, $err) = ('', '');
	my $p = $self->{pki};
	IPC::Run::run [ RedisSync::Test::redis_cli_bin(), '-h', '127.0.0.1',
		'-p', $self->{port}, '--tls', '--cacert', $p->{ca},
		'--cert', $p->{client}, '--key', $p->{client_key},
		($self->{password} ? ('-a', $self->{password}, '--no-auth-warning') : ()),
		@args ],
	  '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(30);
	chomp $out;
	return $out;
}

# TLS only (--port 0), with the certificates of the PKI
sub server_args
{
	my ($self) = @_;
	my $p    = $self->{pki};
	my $cert = $self->{server_cert};
	return (
		'--bind',             '127.0.0.1',
		'--port',             '0',
		'--tls-port',         $self->{port},
		'--tls-cert-file',    $p->{$cert},
		'--tls-key-file',     $p->{"${cert}_key"},
		'--tls-ca-cert-file', $p->{ca},
		'--tls-auth-clients', $self->{auth_clients});
}

sub label { return 'TLS redis-server'; }

1;
