# Helpers for the redis_sync TAP tests.
#
#   my $r    = RedisSync::Test::start_redis();            # or (port => N)
#   my $node = RedisSync::Test::new_node('main', redis => $r,
#                  extra_conf => "redis_sync.connect_timeout = '500ms'");
#   my $s    = RedisSync::Test::session($node);           # one psql backend
#   my $res  = $s->query("SELECT 1");                     # {out, err, elapsed}
#   RedisSync::Test::fail_at_commit_after_push($node, $s, $write, $read, 'other');
#   my $c    = $r->resp;              # RESP client (RedisSync::RESP) on its own connection
#   RedisSync::Test::skip_unless_crash_injection($node);  # plan skip_all without it
#   ok(RedisSync::Test::wait_crash_recovered($node), 'back after the crash');
#
# Table, policy and cache comparison in one call: RedisSync::Synced.
#
# Every Redis server started here is killed in an END block.
package RedisSync::Test;

use strict;
use warnings;

use File::Temp ();
use IPC::Run ();
use Time::HiRes qw(time sleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Compare ();
use Test::More;

our @redis_servers;

# The peak resident memory (VmHWM, kB) of process $pid, -1 when unreadable:
# the memory tests compare it before and after an operation.
sub vmhwm_kb
{
	my ($pid) = @_;
	my $status = PostgreSQL::Test::Utils::slurp_file("/proc/$pid/status");
	return $status =~ /VmHWM:\s+(\d+) kB/ ? $1 : -1;
}

# The crash tests inject a backend PANIC with
# redis_sync.debug_crash_after_push (superuser only): with a library that
# lacks it (an older build) the whole test is skipped and the node stopped.
# Returns the setting's value.
sub skip_unless_crash_injection
{
	my ($node) = @_;
	my ($ret, $out) = $node->psql('postgres', 'SHOW redis_sync.debug_crash_after_push');
	return $out if $ret == 0;
	$node->stop;
	plan skip_all => 'debug_crash_after_push not available';
}

# After an injected crash: true once the node answers again (crash recovery
# done) and the worker of each of dbs (default: the one database of the
# node's worker_stats) runs; false after timeout seconds (default 60).
sub wait_crash_recovered
{
	my ($node, %opts) = @_;
	my @dbs = @{ $opts{dbs} // [undef] };
	my $up  = sub {
		for my $db (@dbs)
		{
			my ($r, $o) = $node->psql('postgres',
				'SELECT worker_running FROM redis_sync.worker_stats'
				  . (defined $db ? " WHERE database = '$db'" : ''));
			return 0 unless $r == 0 && $o eq 't';
		}
		return 1;
	};
	return defined RedisSync::Compare::wait_for($up, $opts{timeout} // 60, $opts{interval} // 0.1)
	  ? 1 : 0;
}

# A loopback TCP port nobody listens on (reserved against other PG test nodes).
sub free_port
{
	return PostgreSQL::Test::Cluster::get_free_port();
}

sub redis_server_bin { return $ENV{REDIS_SERVER} || 'redis-server'; }
sub redis_cli_bin    { return $ENV{REDIS_CLI}    || 'redis-cli'; }

sub start_redis
{
	my (%opts) = @_;
	my $self = redis_object(port => $opts{port});
	$self->start;
	return $self;
}

# A Redis server object, not started: a port (free_port() unless given), a
# temp dir named after dir_template, pid undef, the other fields as given
# (extra => [...]: more redis-server arguments), blessed into class
# (RedisSync::Test::Redis or a subclass, which may override server_args
# and label), and stopped by the END block below.  For the TLS and Cluster
# helpers.
sub redis_object
{
	my (%opts) = @_;
	my $class    = delete $opts{class}        // 'RedisSync::Test::Redis';
	my $template = delete $opts{dir_template} // 'redis_XXXX';
	my $self = bless {
		%opts,
		port => $opts{port} || free_port(),
		dir  => File::Temp::tempdir(
			$template,
			DIR     => $PostgreSQL::Test::Utils::tmp_check,
			CLEANUP => 1),
		pid => undef,
	}, $class;
	push @redis_servers, $self;
	return $self;
}

# new_node($name, redis => $r | redis_url => $url, extra_conf => $text)
sub new_node
{
	my ($name, %opts) = @_;
	my $url =
	    defined $opts{redis_url} ? $opts{redis_url}
	  : defined $opts{redis}     ? $opts{redis}->url
	  :                            die "new_node: need redis or redis_url";

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', <<"EOC");
shared_preload_libraries = 'redis_sync'
redis_sync.redis_url = '$url'
EOC
	$node->append_conf('postgresql.conf', $opts{extra_conf})
	  if defined $opts{extra_conf};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION redis_sync');
	return $node;
}

# Make session $s's transaction fail at its COMMIT, after the pre-commit
# push: a write skew under SERIALIZABLE (PostgreSQL checks for it after the
# pre-commit callbacks).  $s reads row 1 of $other (id int PRIMARY KEY,
# v int) and runs $write; another transaction runs $read (a row $write
# changes), sets that row of $other, and commits first.  Returns the
# COMMIT's { out, err }.
#   my $r = RedisSync::Test::fail_at_commit_after_push($node, $s,
#               q{UPDATE t SET v = 2}, q{SELECT v FROM t WHERE id = 1}, 'other');
sub fail_at_commit_after_push
{
	my ($node, $s, $write, $read, $other) = @_;
	$s->query(q{BEGIN ISOLATION LEVEL SERIALIZABLE});
	$s->query("SELECT v FROM $other WHERE id = 1");
	$s->query($write);
	$node->safe_psql('postgres', "BEGIN ISOLATION LEVEL SERIALIZABLE;
$read;
"
		  . "UPDATE $other SET v = 2 WHERE id = 1;
COMMIT;");
	return $s->query(q{COMMIT});
}

# A single long-lived psql session (one backend) on $dbname.
sub session
{
	my ($node, $dbname) = @_;
	return RedisSync::Test::Session->new($node, $dbname // 'postgres');
}

END
{
	my $rc = $?;
	$_->stop for @redis_servers;
	$? = $rc;
}

package RedisSync::Test::Redis;

use strict;
use warnings;
use IPC::Run ();
use Time::HiRes qw(time sleep);

sub port { return $_[0]->{port}; }
sub url  { my ($self, $db) = @_; return "redis://127.0.0.1:$self->{port}/" . ($db // 0); }

sub cli
{
	my ($self, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run [ RedisSync::Test::redis_cli_bin(), '-h', '127.0.0.1',
		'-p', $self->{port}, @args ], '<', \undef, '>', \$out, '2>', \$err,
	  IPC::Run::timeout(30);
	chomp $out;
	return $out;
}

sub running { my $self = shift; return defined $self->{pid} && kill(0, $self->{pid}); }

# where redis-server listens (a subclass may listen elsewhere, e.g. TLS)
sub server_args
{
	my ($self) = @_;
	return ('--bind', '127.0.0.1', '--port', $self->{port});
}

# what the messages call it
sub label { return 'redis-server'; }

sub start
{
	my ($self) = @_;
	return $self if $self->running;
	my $pidfile = "$self->{dir}/redis.pid";
	unlink $pidfile;
	my @cmd = (
		RedisSync::Test::redis_server_bin(),
		$self->server_args,
		'--save',      '',
		'--appendonly', 'no',
		'--daemonize', 'yes',
		'--dir',       $self->{dir},
		'--logfile',   "$self->{dir}/redis.log",
		'--pidfile',   $pidfile,
		@{ $self->{extra} // [] });
	my ($o, $e) = (q{}, q{});
	IPC::Run::run(\@cmd, q{<}, \undef, q{>}, \$o, q{2>}, \$e)
	  or die "redis-server failed: $o $e";

	my $deadline = time + 30;
	while (1)
	{
		if (-s $pidfile && $self->cli('PING') eq 'PONG')
		{
			open my $fh, '<', $pidfile or die "$pidfile: $!";
			chomp(my $pid = <$fh>);
			$self->{pid} = $pid;
			last;
		}
		if (time > $deadline)
		{
			my $log = PostgreSQL::Test::Utils::slurp_file("$self->{dir}/redis.log");
			die $self->label . " on port $self->{port} did not answer PING in 30s:\n$log";
		}
		sleep 0.05;
	}
	Test::More::note($self->label . " pid $self->{pid} on port $self->{port}");
	return $self;
}

sub stop
{
	my ($self) = @_;
	my $pid = $self->{pid};
	return unless defined $pid;
	$self->cli('SHUTDOWN', 'NOSAVE') if kill 0, $pid;
	my $deadline = time + 10;
	while (kill 0, $pid)
	{
		if (time > $deadline) { kill 'KILL', $pid; last; }
		sleep 0.05;
	}
	$self->{pid} = undef;
	return;
}

# A RESP client on a connection of its own (RedisSync::RESP): for what
# redis-cli cannot do, e.g. commands on one persistent connection.
sub resp
{
	my ($self) = @_;
	require RedisSync::RESP;
	return RedisSync::RESP->connect(port => $self->{port});
}

# Block all clients for $ms milliseconds.
sub pause_ms
{
	my ($self, $ms) = @_;
	return $self->cli('CLIENT', 'PAUSE', $ms);
}

# calls of one command since the last CONFIG RESETSTAT (INFO commandstats)
sub cmd_calls
{
	my ($self, $cmd) = @_;
	my ($calls) = $self->cli('INFO', 'commandstats') =~ /cmdstat_\Q$cmd\E:calls=(\d+)/;
	return $calls // 0;
}

# SCAN pages of one bare pass over the keyspace, COUNT 1000 as redis_sync's
# scans ask
sub scan_pass_pages
{
	my ($self) = @_;
	my ($pages, $cursor) = (0, '0');
	do
	{
		my $out = $self->cli('SCAN', $cursor, 'COUNT', '1000');
		($cursor) = split /\n/, $out;
		$pages++;
	} while ($cursor ne '0');
	return $pages;
}

package RedisSync::Test::Session;

use strict;
use warnings;
use IPC::Run ();
use Time::HiRes qw(time);

my $seq = 0;

sub new
{
	my ($class, $node, $dbname) = @_;
	my $self = bless { in => '', out => '', err => '' }, $class;
	my @cmd = (
		$node->installed_command('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=0',
		'-d', $node->connstr($dbname), '-f', '-');
	$self->{timer} = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
	$self->{h} = IPC::Run::start(\@cmd, '<', \$self->{in}, '>', \$self->{out},
		'2>', \$self->{err}, $self->{timer});
	$self->query('SELECT 1');
	return $self;
}

# Run $sql (one or more statements) and wait for it to finish.
# Returns { out => stdout, err => stderr, elapsed => seconds }.
sub query
{
	my ($self, $sql) = @_;
	my $mark = "__redis_sync_done_" . ++$seq . "__";
	$self->{out} = '';
	$self->{err} = '';
	$self->{timer}->start($PostgreSQL::Test::Utils::timeout_default);
	my $t0 = time;
	$self->{in} .= "$sql\n;\n\\echo $mark\n\\warn $mark\n";
	$self->{h}->pump
	  until ($self->{out} =~ /\Q$mark\E\n/ && $self->{err} =~ /\Q$mark\E\n/);
	my $elapsed = time - $t0;
	(my $out = $self->{out}) =~ s/\n?\Q$mark\E\n//;
	(my $err = $self->{err}) =~ s/\n?\Q$mark\E\n//;
	chomp $out;
	Test::More::note("query: $sql\n  out: $out\n  err: $err\n  elapsed: "
		  . sprintf('%.3fs', $elapsed));
	return { out => $out, err => $err, elapsed => $elapsed };
}

# Start $sql without waiting for it (the backend may block: a held push, a
# breakpoint); finish_query() waits for it, or for psql to exit (the backend gone)
# and returns { out, err, ended }.
sub start_query
{
	my ($self, $sql) = @_;
	$self->{mark} = "__redis_sync_sent_" . ++$seq . "__";
	$self->{out}  = '';
	$self->{err}  = '';
	$self->{timer}->start($PostgreSQL::Test::Utils::timeout_default);
	$self->{in} .= "$sql\n;\n\\echo $self->{mark}\n\\warn $self->{mark}\n";
	$self->{h}->pump_nb;
	return;
}

sub finish_query
{
	my ($self) = @_;
	my $m = $self->{mark};
	$self->{h}->pump
	  while $self->{h}->pumpable
	  && !($self->{out} =~ /\Q$m\E\n/ && $self->{err} =~ /\Q$m\E\n/);
	my $ended = !$self->{h}->pumpable;
	eval { $self->{h}->finish } if $ended;
	(my $out = $self->{out}) =~ s/\n?\Q$m\E\n//;
	(my $err = $self->{err}) =~ s/\n?\Q$m\E\n//;
	Test::More::note("finished: out: $out\n  err: $err" . ($ended ? "\n  (psql ended)" : ''));
	return { out => $out, err => $err, ended => $ended };
}

sub quit
{
	my ($self) = @_;
	$self->{in} .= "\\q\n";
	$self->{h}->finish;
	return;
}

1;
