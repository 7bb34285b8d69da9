# Write-behind counters as a Node application writes them (ioredis): MULTI
# of HINCRBY + SADD and pipelines, on new and existing rows (the existing
# rows never seeded), while flush() runs again and again and Redis is
# paused for writes (CLIENT PAUSE WRITE) in the middle.  At the end every
# counter in the table equals the row's starting value plus the increments
# the application made: nothing lost, nothing applied twice; Redis agrees.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::WB;
use RedisSync::Compare;
use Test::More;

# ioredis from the npm registry into this test's directory (IOREDIS_MODULES:
# a node_modules directory that has it already); skipped without node and npm
my $nodebin = `which node 2>/dev/null`;
chomp $nodebin;
my $modules = $ENV{IOREDIS_MODULES};
if (!$modules && $nodebin && `which npm 2>/dev/null`)
{
	my $dir = "$PostgreSQL::Test::Utils::tmp_check/npm";
	system("npm install --silent --no-audit --no-fund --prefix '$dir' ioredis\@5 >'$dir.log' 2>&1");
	$modules = "$dir/node_modules";
}
plan skip_all => 'node, npm or ioredis missing' unless $nodebin && $modules && -d "$modules/ioredis";

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('wbioredis', redis => $redis);
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
CREATE TABLE cnt (id int PRIMARY KEY, hits bigint NOT NULL DEFAULT 0, likes bigint NOT NULL DEFAULT 0, note text);
INSERT INTO cnt SELECT g, 1000, 10, 'n' || g FROM generate_series(1, 100) g;
SELECT redis_sync.write_behind('cnt', key_prefix => 'cnt:', counters => '{hits,likes}',
                               flush_interval => '50 ms', batch_size => 20);
});

my $script = "$PostgreSQL::Test::Utils::tmp_check/wb_ioredis.js";
open my $fh, '>', $script or die;
print $fh <<"JS";
const Redis = require('$modules/ioredis');
const r = new Redis({ port: ${\ $redis->port }, host: '127.0.0.1', maxRetriesPerRequest: null });
const hits = {}, likes = {};
(async () => {
  for (let round = 0; round < 40; round++) {
    const p = r.pipeline();
    for (let i = 0; i < 50; i++) {
      const id = 1 + Math.floor(Math.random() * 200);
      if (round % 2 == 0) {
        await r.multi().hincrby('cnt:' + id, 'hits', 1).hincrby('cnt:' + id, 'likes', 2).sadd('cnt:dirty', id).exec();
        hits[id] = (hits[id] || 0) + 1; likes[id] = (likes[id] || 0) + 2;
      } else {
        p.hincrby('cnt:' + id, 'hits', 3); p.sadd('cnt:dirty', id);
        hits[id] = (hits[id] || 0) + 3;
      }
    }
    await p.exec();
  }
  for (const id of Object.keys(hits)) console.log(id + ' ' + hits[id] + ' ' + (likes[id] || 0));
  r.disconnect();
})().catch(e => { console.error(e); process.exit(1); });
JS
close $fh;

my ($out, $err) = ('', '');
my $h = IPC::Run::start([ $nodebin, $script ], '>', \$out, '2>', \$err);
# flush() again and again while the application writes; pause Redis writes once
my $paused = 0;
my $t0 = time;
while ($h->pumpable && time - $t0 < 120)
{
	$node->psql('postgres', 'SELECT redis_sync.flush(\'cnt\')');
	if (!$paused && time - $t0 > 0.3) { $redis->cli('CLIENT', 'PAUSE', '1500', 'WRITE'); $paused = 1; }
	$h->pump_nb;
}
$h->finish;
is($?, 0, 'the node application ran') or diag($err);
my ($secs) = RedisSync::WB::flush_until_clean($node, $redis, table => 'cnt', dirty => 'cnt:dirty', timeout => 60);
ok(defined $secs, 'drained');

my (%want_h, %want_l);
$want_h{$_} = 1000, $want_l{$_} = 10 for 1 .. 100;
for (split /\n/, $out)
{
	my ($id, $h2, $l) = split / /;
	$want_h{$id} = ($want_h{$id} // 0) + $h2;
	$want_l{$id} = ($want_l{$id} // 0) + $l;
}
RedisSync::WB::maps_equal(RedisSync::WB::column_dump($node, 'cnt', 'id', 'hits'),  \%want_h, 'hits exact in the table');
RedisSync::WB::maps_equal(RedisSync::WB::column_dump($node, 'cnt', 'id', 'likes'), \%want_l, 'likes exact in the table');
my $rh = RedisSync::WB::hash_field_dump($redis, 'cnt:', 'hits');
delete $rh->{dirty};
my %touched = map { $_ => $want_h{$_} } grep { exists $rh->{$_} } keys %want_h;
RedisSync::WB::maps_equal($rh, \%touched, 'Redis holds the same totals');
is(sq(q{SELECT count(*) FROM cnt WHERE note IS NULL AND id <= 100}), '0', 'no other column erased');
RedisSync::WB::no_dead_letters($node);
$node->stop;
done_testing();
