# A hold proxy (tests/lib/hold_proxy.pl) in front of a real redis-server,
# run in the background by a TAP test:
#
#   use RedisSync::HoldProxy;
#   my $p = RedisSync::HoldProxy->start(upstream => $redis->port);
#   my $node = RedisSync::Test::new_node('x', redis_url => $p->url);
#   my @held = $p->hold;              # SIGUSR1; the connection numbers held
#   my $line = $p->wait_line(qr/^upstream-closed 3$/, 30);   # deadline loop
#   my %r = $p->release;              # SIGUSR2; N => ['released'|'dropped', bytes]
#   $p->arm;                          # SIGHUP: cut at a CLIENT KILL reply, hold the next
#                                     # connection at its MULTI
#   $p->arm_eval;                     # SIGWINCH: hold the next connection that
#                                     # sends EVALSHA/EVAL, from that read on
#   my $x = $p->conn(3);              # {n, client, upstream (port), name, id}
#   $p->stop;
#
# Every proxy started here is stopped in an END block (and the proxy exits
# by itself when the test process is gone).  Its event log is
# $p->logfile; the format is described at the top of hold_proxy.pl.
package RedisSync::HoldProxy;

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

our @proxies;

my $SCRIPT = File::Spec->catfile(dirname(File::Spec->rel2abs(__FILE__)), '..', 'hold_proxy.pl');

# start(upstream => redis port, port => listen port (default: a free one))
sub start
{
	my ($class, %o) = @_;
	my $upstream = $o{upstream} or die "HoldProxy->start: need upstream";
	my $port = $o{port} // PostgreSQL::Test::Cluster::get_free_port();
	my $logfile = "$PostgreSQL::Test::Utils::tmp_check/hold_proxy_$port.log";
	unlink $logfile;
	my $self = bless {
		port     => $port,
		upstream => $upstream,
		logfile  => $logfile,
		holds    => 0,
		releases => 0,
		arms     => 0,
	}, $class;
	my $ppid = $$;
	my $pid  = fork;
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		exec($^X, $SCRIPT, '--listen', $port, '--upstream', $upstream,
			'--log', $logfile, '--parent', $ppid)
		  or POSIX::_exit(127);
	}
	$self->{pid} = $pid;
	push @proxies, $self;
	defined $self->wait_line(qr/^listening $port /, 30)
	  or die "hold proxy on port $port did not start:\n" . $self->log_text;
	note("hold proxy pid $pid on port $port -> $upstream, log $logfile");
	return $self;
}

sub port    { return $_[0]->{port}; }
sub logfile { return $_[0]->{logfile}; }
sub url     { my ($self, $db) = @_; return "redis://127.0.0.1:$self->{port}/" . ($db // 0); }

sub log_text
{
	my ($self) = @_;
	return '' unless -e $self->{logfile};
	return PostgreSQL::Test::Utils::slurp_file($self->{logfile});
}

sub lines { my ($self) = @_; return split /\n/, $self->log_text; }

# the lines matching $re (from line $from on, 0-based), in order
sub grep_lines
{
	my ($self, $re, $from) = @_;
	my @l = $self->lines;
	return grep { /$re/ } @l[ ($from // 0) .. $#l ];
}

# number of lines so far (a mark for grep_lines/wait_line)
sub mark { my ($self) = @_; return scalar(my @l = $self->lines); }

# Deadline loop: the first line matching $re (from mark $from on), or undef
# after $timeout seconds.  In list context also the captures.
sub wait_line
{
	my ($self, $re, $timeout, $from) = @_;
	my $deadline = time + ($timeout // $PostgreSQL::Test::Utils::timeout_default);
	while (1)
	{
		my @l = $self->lines;
		for my $line (@l[ ($from // 0) .. $#l ])
		{
			if (my @cap = $line =~ $re)
			{
				return wantarray ? ($line, @cap) : $line;
			}
		}
		return undef if time > $deadline;
		sleep 0.02;
	}
}

# SIGUSR1; waits until handled; returns the connection numbers it held
sub hold
{
	my ($self) = @_;
	my $from = $self->mark;
	my $seq  = ++$self->{holds};
	kill 'USR1', $self->{pid} or die "hold proxy $self->{pid}: $!";
	defined $self->wait_line(qr/^hold-done $seq /, 30, $from)
	  or die "hold proxy did not handle hold $seq:\n" . $self->log_text;
	return map { /^hold (\d+)$/ ? $1 : () } $self->grep_lines(qr/^hold \d+$/, $from);
}

# SIGUSR2; waits until handled; returns N => [ 'released' | 'dropped', bytes ]
sub release
{
	my ($self) = @_;
	my $from = $self->mark;
	my $seq  = ++$self->{releases};
	kill 'USR2', $self->{pid} or die "hold proxy $self->{pid}: $!";
	defined $self->wait_line(qr/^release-done $seq /, 30, $from)
	  or die "hold proxy did not handle release $seq:\n" . $self->log_text;
	my %r;
	for ($self->grep_lines(qr/^(?:released|dropped) /, $from))
	{
		my ($what, $n, $bytes) = split ' ';
		$r{$n} = [ $what, $bytes ];
	}
	return %r;
}

# SIGHUP ("arm", see hold_proxy.pl); waits until handled
sub arm
{
	my ($self) = @_;
	my $from = $self->mark;
	my $seq  = ++$self->{arms};
	kill 'HUP', $self->{pid} or die "hold proxy $self->{pid}: $!";
	defined $self->wait_line(qr/^armed $seq$/, 30, $from)
	  or die "hold proxy did not handle arm $seq:\n" . $self->log_text;
	return;
}

# SIGWINCH ("arm-eval", see hold_proxy.pl); waits until handled
sub arm_eval
{
	my ($self) = @_;
	my $from = $self->mark;
	my $seq  = ++$self->{arm_evals};
	kill 'WINCH', $self->{pid} or die "hold proxy $self->{pid}: $!";
	defined $self->wait_line(qr/^armed-eval $seq$/, 30, $from)
	  or die "hold proxy did not handle arm-eval $seq:\n" . $self->log_text;
	return;
}

# connection N's open line: { n, client => port, upstream => port }
sub conn
{
	my ($self, $n) = @_;
	my ($line) = $self->grep_lines(qr/^open $n /);
	return undef unless $line;
	my ($c) = $line =~ /client=(\d+)/;
	my ($u) = $line =~ /upstream=(\d+)/;
	return { n => $n, client => $c, upstream => $u };
}

# the last held-data line of N: { bytes, cmds => { NAME => count } }
sub held_data
{
	my ($self, $n) = @_;
	my @l = $self->grep_lines(qr/^held-data $n /);
	return undef unless @l;
	my (undef, undef, $bytes, @cmds) = split ' ', $l[-1];
	return { bytes => $bytes, cmds => { map { split /=/, $_, 2 } @cmds } };
}

sub stop
{
	my ($self) = @_;
	my $pid = $self->{pid};
	return unless defined $pid;
	kill 'TERM', $pid;
	my $deadline = time + 10;
	while (waitpid($pid, POSIX::WNOHANG()) == 0)
	{
		if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); last; }
		sleep 0.02;
	}
	$self->{pid} = undef;
	return;
}

END
{
	my $rc = $?;
	$_->stop for @proxies;
	$? = $rc;
}

1;
