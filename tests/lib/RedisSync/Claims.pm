# Prefix claims in the TAP tests (claim.c keeps them in the Redis hash
# redis_sync:claims, field "p:<prefix>", value "<system id>/<database
# oid>/...").
#
#   my $cl = RedisSync::Claims->new($node, $redis);
#   $cl->holder('db2:');         # the claim's value, '' when none
#   $cl->held_by('db2');         # qr{} matching a claim of database db2
#   $cl->has_ext('db2');         # 1 or 0: redis_sync installed in db2
#   $cl->claiming_database('db2', $sql);  # CREATE DATABASE db2, the
#       extension, table t synced under "db2:" ($sql runs first), checked
package RedisSync::Claims;

use strict;
use warnings;

use Test::More;

sub new
{
	my ($class, $node, $redis) = @_;
	my $self = bless { node => $node, redis => $redis }, $class;
	$self->{sysid} = $node->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
	return $self;
}

sub sysid { return $_[0]->{sysid}; }

sub holder
{
	my ($self, $prefix) = @_;
	return $self->{redis}->cli('HGET', 'redis_sync:claims', "p:$prefix") // '';
}

sub db_oid
{
	my ($self, $db) = @_;
	return $self->{node}->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = '$db'");
}

sub held_by
{
	my ($self, $db) = @_;
	my $oid = $self->db_oid($db);
	return qr{^$self->{sysid}/$oid/};
}

sub has_ext
{
	my ($self, $db) = @_;
	return $self->{node}->safe_psql($db, "SELECT count(*) FROM pg_extension WHERE extname = 'redis_sync'");
}

sub claiming_database
{
	my ($self, $db, $sql) = @_;
	my $node = $self->{node};
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION redis_sync');
	$node->safe_psql($db, ($sql // '') . "CREATE TABLE t (id int PRIMARY KEY, v text);
	         SELECT redis_sync.write_through('t', key_prefix => '$db:', warm => false)");
	like($self->holder("$db:"), $self->held_by($db), "$db claims $db:");
	return;
}

1;
