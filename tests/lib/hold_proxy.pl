#!/usr/bin/perl
# A TCP proxy between a client (PostgreSQL) and a real redis-server that can
# hold back what the client sends, for the TAP tests of pushes whose outcome
# is unknown (tests/t/197_bulk_multi_kill.pl).  Core Perl only (IO::Select).
# Started and stopped by RedisSync::HoldProxy; by hand:
#
#   perl tests/lib/hold_proxy.pl --listen 7001 --upstream 6379 --log /tmp/p.log \
#        [--parent PID]
#
# Every accepted client connection gets a number N and a connection of its
# own to 127.0.0.1:<upstream>.  Bytes flow both ways unchanged, except:
#
#   SIGUSR1 "hold": every connection open at that moment (its upstream side
#       not closed) stops forwarding client->server bytes and buffers them;
#       server->client bytes still flow.  Connections opened later pass.
#   SIGUSR2 "release": every held connection forwards what it buffered (and
#       is no longer held); if Redis already closed its side, the bytes are
#       dropped instead.
#   SIGHUP "arm" (each part once): (1) the first open connection that sends
#       CLIENT KILL is cut (both sides closed, as a network failure would)
#       right after the reply has been passed to the client; (2) the first
#       connection opened after that passes its handshake and is held from
#       the first read that holds a MULTI.  For a push that changes
#       connections between its registration and its send.
#   SIGWINCH "arm-eval": the first connection (open or opened later) that
#       sends an EVALSHA or EVAL is held from the read that holds it (so
#       what it sent before, a SCAN, passed).  For a purge whose fenced
#       deletes reach Redis after their sender gave up.
#
# A client that closes a held connection does not take the held bytes with
# it: they stay buffered, as bytes already on the wire would be, and a
# release still delivers them (then half-closes the server side), so a
# release models a network that delivers a push after its sender gave up.
#
# Event log (appended, one line per event, flushed per line):
#   listening <port> upstream <port> pid <pid>
#   open N client=<client port> upstream=<local port of the server side>
#       (Redis's CLIENT LIST shows the server side as addr=127.0.0.1:<that port>)
#   hold N                         N held (SIGUSR1)
#   hold-done <seq> <count>        the <seq>-th SIGUSR1 handled, <count> held
#   held-data N <bytes> CMD=n ...  a held connection buffered more; <bytes> in
#                                  all, and the complete RESP commands held so
#                                  far, counted by name (sorted)
#   client-closed N                the client closed its side
#   upstream-closed N              Redis closed the server side (CLIENT KILL,
#                                  SHUTDOWN, its timeout) or it failed
#   released N <bytes>             release: <bytes> forwarded to Redis
#   dropped N <bytes>              release: <bytes> discarded, Redis side closed
#   release-done <seq> <count>     the <seq>-th SIGUSR2 handled
#   upstream-failed N <error>      could not connect to Redis (client closed)
#   armed <seq>                    the <seq>-th SIGHUP handled
#   armed-eval <seq>               the <seq>-th SIGWINCH handled
#   cut N                          N cut after its CLIENT KILL reply (arm 1)
#   hold N                         also: N held at its first MULTI (arm 2)
#
# The proxy exits on SIGTERM/SIGINT and when its parent (--parent, the test
# script) is gone, so a test that dies does not leave it behind.
use strict;
use warnings;

use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Getopt::Long;
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use Socket qw(SHUT_WR);

my ($listen_port, $upstream_port, $logfile, $parent);
GetOptions(
	'listen=i'   => \$listen_port,
	'upstream=i' => \$upstream_port,
	'log=s'      => \$logfile,
	'parent=i'   => \$parent)
  or die "usage: $0 --listen PORT --upstream PORT --log FILE [--parent PID]\n";
die "$0: need --listen, --upstream and --log\n"
  unless $listen_port && $upstream_port && $logfile;

open my $log, '>>', $logfile or die "$logfile: $!";
$log->autoflush(1);
sub logline { print {$log} join(' ', @_), "\n"; return; }

my ($hold_req, $hold_done, $release_req, $release_done) = (0, 0, 0, 0);
my ($arm_req, $arm_done) = (0, 0);
my ($arm_eval_req, $arm_eval_done) = (0, 0);
my $arm_eval     = 0;    # hold the next connection that sends EVALSHA/EVAL
my $arm_cut      = 0;    # cut the next connection that sends CLIENT KILL
my $arm_hold_new = 0;    # hold the next connection opened after a cut at MULTI
my $stop         = 0;
$SIG{USR1} = sub { $hold_req++; };
$SIG{USR2} = sub { $release_req++; };
$SIG{HUP}  = sub { $arm_req++; };
$SIG{WINCH} = sub { $arm_eval_req++; };
$SIG{TERM} = $SIG{INT} = sub { $stop = 1; };
$SIG{PIPE} = 'IGNORE';

my $lsock = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => $listen_port,
	Listen    => 64,
	ReuseAddr => 1,
	Proto     => 'tcp') or die "listen on 127.0.0.1:$listen_port: $!\n";
$lsock->blocking(0);
logline('listening', $listen_port, 'upstream', $upstream_port, 'pid', $$);

my @conns;     # open connections, oldest first
my $next_n = 0;

# the complete RESP commands in $buf, counted by name: "HSET=100 MULTI=1"
sub summarize
{
	my ($buf) = @_;
	my %n;
	my $pos = 0;
	my $len = length $buf;
	while ($pos < $len)
	{
		my $eol = index($buf, "\r\n", $pos);
		last if $eol < 0;
		my $line = substr($buf, $pos, $eol - $pos);
		if ($line !~ /^\*(\d+)$/)
		{
			# inline command
			my ($name) = split ' ', $line;
			$n{ uc($name // '') }++;
			$pos = $eol + 2;
			next;
		}
		my $argc = $1;
		my $p    = $eol + 2;
		my $name;
		my $complete = 1;
		for my $i (1 .. $argc)
		{
			my $e = index($buf, "\r\n", $p);
			if ($e < 0 || substr($buf, $p, 1) ne '$') { $complete = 0; last; }
			my $blen = substr($buf, $p + 1, $e - $p - 1);
			$p = $e + 2;
			if ($p + $blen + 2 > $len) { $complete = 0; last; }
			$name = uc(substr($buf, $p, $blen)) if $i == 1;
			$p += $blen + 2;
		}
		last unless $complete;
		$n{ $name // '' }++;
		$pos = $p;
	}
	return join(' ', map { "$_=$n{$_}" } sort keys %n);
}

sub accept_one
{
	my $c = $lsock->accept or return;
	my $n = ++$next_n;
	my $u = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $upstream_port,
		Proto    => 'tcp',
		Timeout  => 5);
	if (!$u)
	{
		logline('upstream-failed', $n, $!);
		close $c;
		return;
	}
	$c->blocking(0);
	$u->blocking(0);
	binmode $c;
	binmode $u;
	push @conns, {
		n      => $n,
		c      => $c,
		u      => $u,
		c2s    => '',
		s2c    => '',
		held   => 0,
		c_eof  => 0,    # the client sent FIN (or failed)
		c_open => 1,
		u_open => 1,
		u_shut => 0,    # we half-closed the server side
		hold_on_multi => 0,    # hold from the first read with a MULTI
		cut_pending   => 0,    # cut once the reply is passed on
	};
	if ($arm_hold_new == 2)
	{
		$conns[-1]{hold_on_multi} = 1;
		$arm_hold_new = 0;
	}
	logline('open', $n, 'client=' . $c->peerport, 'upstream=' . $u->sockport);
	return;
}

# arm 1: close both sides, as a network failure would
sub cut
{
	my ($x) = @_;
	$x->{cut_pending} = 0;
	logline('cut', $x->{n});
	if ($x->{u_open})
	{
		close $x->{u};
		$x->{u_open} = 0;
	}
	$x->{c2s} = '';
	close_client($x);
	$arm_hold_new = 2 if $arm_hold_new == 1;    # the next connection opened
	return;
}

sub close_client
{
	my ($x) = @_;
	return unless $x->{c_open};
	close $x->{c};
	$x->{c_open} = 0;
	$x->{s2c} = '';
	return;
}

sub upstream_closed
{
	my ($x) = @_;
	return unless $x->{u_open};
	close $x->{u};
	$x->{u_open} = 0;
	logline('upstream-closed', $x->{n});
	# unheld bytes can go nowhere; held ones stay for the "dropped" line
	$x->{c2s} = '' unless $x->{held};
	# what Redis answered before closing still reaches the client
	close_client($x) if $x->{s2c} eq '';
	return;
}

# read into $$buf; returns 1 (data), 0 (EOF or error), undef (nothing yet)
sub read_into
{
	my ($sock, $buf) = @_;
	my $r = sysread($sock, $$buf, 65536, length $$buf);
	return 1 if $r;
	return undef if !defined $r && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
	return 0;
}

# write from $$buf; returns 0 on a failed socket
sub write_from
{
	my ($sock, $buf) = @_;
	my $w = syswrite($sock, $$buf);
	if (!defined $w)
	{
		return 1 if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
		return 0;
	}
	substr($$buf, 0, $w) = '';
	return 1;
}

sub do_hold
{
	$hold_done++;
	my $count = 0;
	for my $x (@conns)
	{
		next unless $x->{u_open} && !$x->{held};
		$x->{held} = 1;
		$count++;
		logline('hold', $x->{n});
	}
	logline('hold-done', $hold_done, $count);
	return;
}

sub do_release
{
	$release_done++;
	my $count = 0;
	for my $x (@conns)
	{
		next unless $x->{held};
		$count++;
		$x->{held} = 0;
		my $bytes = length $x->{c2s};
		if ($x->{u_open})
		{
			logline('released', $x->{n}, $bytes);
		}
		else
		{
			logline('dropped', $x->{n}, $bytes);
			$x->{c2s} = '';
		}
	}
	logline('release-done', $release_done, $count);
	return;
}

while (!$stop)
{
	exit 0 if $parent && getppid() != $parent;    # the test is gone
	do_hold() while $hold_done < $hold_req;
	do_release() while $release_done < $release_req;
	while ($arm_done < $arm_req)
	{
		$arm_done++;
		$arm_cut      = 1;
		$arm_hold_new = 1;
		logline('armed', $arm_done);
	}
	while ($arm_eval_done < $arm_eval_req)
	{
		$arm_eval_done++;
		$arm_eval = 1;
		logline('armed-eval', $arm_eval_done);
	}

	# half-close the server side once a closed client's bytes are all out
	for my $x (@conns)
	{
		if ($x->{c_eof} && !$x->{held} && $x->{u_open} && !$x->{u_shut} && $x->{c2s} eq '')
		{
			shutdown($x->{u}, SHUT_WR);
			$x->{u_shut} = 1;
		}
		close_client($x) if !$x->{u_open} && $x->{s2c} eq '';
	}
	@conns = grep { $_->{c_open} || $_->{u_open} || $_->{held} } @conns;

	my $rd = IO::Select->new($lsock);
	my $wr = IO::Select->new;
	my %by;    # fileno => [conn, side]
	for my $x (@conns)
	{
		if ($x->{c_open})
		{
			$by{ fileno $x->{c} } = [ $x, 'c' ];
			$rd->add($x->{c}) unless $x->{c_eof};
			$wr->add($x->{c}) if $x->{s2c} ne '';
		}
		if ($x->{u_open})
		{
			$by{ fileno $x->{u} } = [ $x, 'u' ];
			$rd->add($x->{u});
			$wr->add($x->{u}) if $x->{c2s} ne '' && !$x->{held} && !$x->{u_shut};
		}
	}
	my ($r, $w) = IO::Select->select($rd, $wr, undef, 0.1);
	next unless $r || $w;    # timeout or a signal

	for my $fh (@{ $w // [] })
	{
		my $e = $by{ fileno $fh } or next;
		my ($x, $side) = @$e;
		if ($side eq 'u')
		{
			next unless $x->{u_open};
			upstream_closed($x) unless write_from($x->{u}, \$x->{c2s});
		}
		else
		{
			next unless $x->{c_open};
			close_client($x) unless write_from($x->{c}, \$x->{s2c});
			cut($x) if $x->{cut_pending} && $x->{c_open} && $x->{s2c} eq '';
		}
	}
	for my $fh (@{ $r // [] })
	{
		if ($fh == $lsock) { accept_one(); next; }
		my $e = $by{ fileno $fh } or next;
		my ($x, $side) = @$e;
		if ($side eq 'u')
		{
			next unless $x->{u_open};
			my $got = read_into($x->{u}, \$x->{s2c});
			next if !defined $got;
			$x->{s2c} = '' unless $x->{c_open};
			upstream_closed($x) if !$got;
		}
		else
		{
			next unless $x->{c_open} && !$x->{c_eof};
			my $before = length $x->{c2s};
			my $got = read_into($x->{c}, \$x->{c2s});
			next if !defined $got;
			if (!$got)
			{
				$x->{c_eof} = 1;
				logline('client-closed', $x->{n});
				next;
			}
			my $chunk = substr($x->{c2s}, $before);
			if ($x->{hold_on_multi} && !$x->{held} && $chunk =~ /\$5\r\nMULTI\r\n/i)
			{
				# the chunk with the MULTI, and all after it, is held
				$x->{held}          = 1;
				$x->{hold_on_multi} = 0;
				$x->{held_from}     = $before;
				logline('hold', $x->{n});
			}
			if ($arm_eval && !$x->{held} && $chunk =~ /\$(?:7\r\nEVALSHA|4\r\nEVAL)\r\n/i)
			{
				# the chunk with the EVALSHA, and all after it, is held
				$arm_eval = 0;
				$x->{held} = 1;
				logline('hold', $x->{n});
			}
			if ($arm_cut && $chunk =~ /\$6\r\nCLIENT\r\n\$4\r\nKILL\r\n/i)
			{
				$arm_cut = 0;
				$x->{cut_pending} = 1;
			}
			$x->{c2s} = '' unless $x->{u_open};
			if ($x->{held} && length $x->{c2s} > $before)
			{
				logline('held-data', $x->{n}, length $x->{c2s}, summarize($x->{c2s}));
			}
		}
	}
}
logline('exit');
exit 0;
