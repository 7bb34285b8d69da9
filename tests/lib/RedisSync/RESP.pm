# A small Redis client speaking RESP over one TCP connection, for the TAP
# tests and bench/bench.pl (which runs outside the TAP harness: this module
# needs nothing but core Perl).
#
#   use RedisSync::RESP;
#   my $c = RedisSync::RESP->connect(port => $port);      # host 127.0.0.1
#   $c->cmd('HSET', 'k:1', 'v', 2);           # one command, its reply
#   $c->write(RedisSync::RESP::encode('HGET', 'k:1', 'v')
#             . RedisSync::RESP::encode('SADD', 'd', 1));  # pipelined
#   my @r = map { $c->read } 1 .. 2;
#
# Replies: status and integer replies as strings, bulk strings as strings,
# nil as undef, arrays as array references.  An error reply dies with
# "Redis error: <text>".  Keyspace notifications: PSUBSCRIBE with cmd(),
# then read() each message.
package RedisSync::RESP;

use strict;
use warnings;

use IO::Socket::INET;

# RESP encoding of one command (bytes, not characters)
sub encode
{
	my @args = @_;
	my $s = '*' . scalar(@args) . "\r\n";
	for my $a (@args)
	{
		use bytes;
		$s .= '$' . length($a) . "\r\n" . $a . "\r\n";
	}
	return $s;
}

# connect(port => N, host => '127.0.0.1', timeout => 5)
sub connect
{
	my ($class, %o) = @_;
	my $host = $o{host} // '127.0.0.1';
	my $port = $o{port} // die "RedisSync::RESP->connect: need port";
	my $sock = IO::Socket::INET->new(
		PeerAddr => $host,
		PeerPort => $port,
		Proto    => 'tcp',
		Timeout  => $o{timeout} // 5)
	  or die "connect to Redis at $host:$port: $!\n";
	binmode $sock;
	$sock->autoflush(1);
	return bless { sock => $sock, host => $host, port => $port }, $class;
}

sub sock { return $_[0]->{sock}; }

# write raw RESP (one or more encoded commands)
sub write
{
	my ($self, $bytes) = @_;
	print { $self->{sock} } $bytes
	  or die "write to Redis at $self->{host}:$self->{port}: $!\n";
	return;
}

# send one command without reading its reply
sub send
{
	my ($self, @args) = @_;
	$self->write(encode(@args));
	return;
}

# read one reply
sub read
{
	my ($self) = @_;
	my $s    = $self->{sock};
	my $line = readline($s);
	die "Redis closed the connection\n" unless defined $line;
	$line =~ s/\r\n\z//;
	my ($t, $rest) = (substr($line, 0, 1), substr($line, 1));
	return $rest if $t eq '+' || $t eq ':';
	die "Redis error: $rest\n" if $t eq '-';
	if ($t eq '$')
	{
		return undef if $rest == -1;
		my $buf = '';
		while (length($buf) < $rest + 2)
		{
			my $n = CORE::read($s, $buf, $rest + 2 - length($buf), length($buf));
			die "Redis closed the connection\n" unless $n;
		}
		return substr($buf, 0, $rest);
	}
	if ($t eq '*')
	{
		return undef if $rest == -1;
		return [ map { $self->read } 1 .. $rest ];
	}
	die "unexpected Redis reply '$line'\n";
}

# one command, its reply
sub cmd
{
	my ($self, @args) = @_;
	$self->send(@args);
	return $self->read;
}

sub close
{
	my ($self) = @_;
	CORE::close($self->{sock}) if $self->{sock};
	$self->{sock} = undef;
	return;
}

1;
