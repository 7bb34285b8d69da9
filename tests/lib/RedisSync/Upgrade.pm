# pg_upgrade in the TAP tests (tests/t/317, 318, 332, 339, 340).
#
#   use RedisSync::Upgrade;
#   my $old = RedisSync::Upgrade::old_cluster($conf, timeline => 3);
#   ... $old->start; work; $old->stop;
#   my $new = RedisSync::Upgrade::upgrade($old, $conf);
#   $new->start;
#
# old_cluster(CONF, timeline => N): a cluster named 'old', initialised,
# with CONF appended to postgresql.conf and, with timeline, moved to WAL
# timeline N by pg_resetwal (as a standby promoted N - 1 times runs); not
# started.
#
# upgrade(OLD, CONF): a cluster named 'new', initialised with CONF
# appended, and pg_upgrade of the stopped OLD to it (a checked test);
# returns it, not started.  pg_upgrade writes its files in the current
# directory: the test moves to a temporary one it may write.
package RedisSync::Upgrade;

use strict;
use warnings;

use File::Temp qw(tempdir);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

sub old_cluster
{
	my ($conf, %opts) = @_;
	my $old = PostgreSQL::Test::Cluster->new('old');
	$old->init;
	$old->append_conf('postgresql.conf', $conf);
	if (my $tli = $opts{timeline})
	{
		command_ok([ 'pg_resetwal', '-l', sprintf('%08X0000000000000005', $tli), $old->data_dir ],
			"old cluster moved to timeline $tli");
	}
	return $old;
}

sub upgrade
{
	my ($old, $conf) = @_;
	my $new = PostgreSQL::Test::Cluster->new('new');
	$new->init;
	$new->append_conf('postgresql.conf', $conf);
	my $bindir = $new->config_data('--bindir');
	my $work   = tempdir(DIR => $PostgreSQL::Test::Utils::tmp_check, CLEANUP => 1);
	chdir $work or die "chdir $work: $!";
	command_ok(
		[
			"$bindir/pg_upgrade", '--no-sync',
			'-b', $bindir, '-B', $bindir,
			'-d', $old->data_dir, '-D', $new->data_dir,
			'-p', $old->port, '-P', $new->port,
			'-s', $new->host, '-U', scalar(getpwuid($<))
		],
		'pg_upgrade');
	return $new;
}

1;
