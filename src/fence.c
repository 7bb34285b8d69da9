/*-------------------------------------------------------------------------
 *
 * fence.c
 *		Version-fenced writes: the Lua script every push goes through.
 *
 * Beside each data key K, Redis holds a version key ("{K}" plus
 * redis_sync.version_key_suffix, in K's cluster slot) with the version of
 * the last write applied to K.  The apply script writes K only when the
 * incoming version is not older than the stored one, and then stores the
 * new version; a delete leaves the version key behind as a tombstone (for
 * redis_sync.tombstone_ttl), so a late write of an older row cannot bring a
 * deleted row back.  Equal versions are applied: they can only be replays
 * of the same transaction's final state.
 *
 * Versions are the WAL timeline, the server epoch and the WAL insert
 * position at pre-commit (encode.c, epoch.c), compared as strings (0.1's
 * 24-digit versions compare below every 32-digit one).  Two transactions
 * that write the same key conflict on the row or on the unique index of the
 * key columns, so the second reaches pre-commit only after the first
 * committed, and its version is larger.  A crash restart can lose WAL that
 * a push's version counted (the push precedes the commit record's flush);
 * the epoch, larger after every restart, keeps later versions above it.  Hence, whatever order pushes,
 * retries and outbox deliveries reach Redis in, the newest committed state
 * of a key wins.
 *
 * Eviction (maxmemory with an allkeys-* policy) can remove a version key
 * and keep its data key.  Such a key may hold a value newer than the write
 * at hand, so the script drops it (a miss is never stale; of a hash, the
 * fields the write names: write-behind fields over the same hash stay, and
 * a hash holding none of them, a row the write-behind drain created, is
 * written like a missing key) and fences it at
 * the pusher's current WAL position (the "floor", newer than any write
 * still in flight from before).  A data key evicted together with its
 * version is indistinguishable from a key never written; the script watches
 * Redis's evicted_keys counter (INFO stats) in a hash beside the in-flight
 * markers, and when it moved, records the floor there: from then on a write
 * older than the floor does not create a key missing with its version.
 * Both are counted in that hash (fields dropped, skipped); a delete that
 * finds its key without a version removes it as it would anyway and is not
 * counted (a purge's of keys only the application or a write-behind table
 * wrote, which have no version).  A pre-commit
 * delete (its call records an in-flight marker) of a key missing with its
 * version skips the watch: it creates no data, only the tombstone, and its
 * version is the key's newest (the row is locked), so INFO is not worth
 * its ~10 us of Redis time (an invalidated key not cached, issue 18).
 *
 * A TRUNCATE of a table that is write-through and write-behind over one
 * hash per row (capture.c, rs_capture_truncate) deletes only the
 * write-through fields of each key (op 'F'): fenced like a delete (a newer
 * write keeps its fields), but without the drop of a key found without its
 * version and without the eviction watch, which would delete the
 * write-behind fields or keep the write-through ones (keys only the
 * application wrote have no version; deleting fields never makes a key
 * stale).  A hash that kept write-behind fields keeps the version beside it
 * (with the hash's TTL), one the HDEL emptied gets a tombstone; a key of
 * another type (a JSON row of an earlier configuration) is deleted whole.
 *
 * Lua's unpack() is limited to a few thousand values, so MGET and MSET go
 * in slices of 1000.  Each key is applied with redis.pcall: a key Redis
 * refuses (say, a string where a hash is expected) is reported in the reply,
 * {applied, index, error, index, error, ...}, and does not stop the other
 * keys of the call.
 *
 * Redis spends most of a bulk push turning arguments into Lua values and
 * running one command per key, so a call sends little per key: the data
 * keys, then the version keys (one MGET and one MSET of contiguous keys),
 * and what all ops share (the version, the TTL, the field names of hashes
 * without NULLs) once in the call's header instead of per op (fence_common).
 * When all three are shared and the key's version is present, the script
 * writes the key without the general per-op parsing (7% fewer Redis
 * instructions per row of a bulk UPDATE; the per-key HSET call from Lua,
 * ~9k instructions, is most of what remains).  Deletes of one version (a
 * purge's page) go the same way: the keys whose version is present and
 * not newer in one UNLINK per 1000, then their tombstones (a TRUNCATE of
 * 300,000 cached rows: 2.02 s of Redis time in the script instead of
 * 2.41, medians of 3; the per-key SET of a tombstone with its TTL is most
 * of what remains).
 *
 * The script also records an "in-flight" marker (which keys a transaction
 * pushed before its commit record) and removes markers of transactions
 * known to be finished; see publish.c.
 *
 * Pre-commit pushes on a single Redis 6.2+ go as MULTI/EXEC instead
 * (fence_multi.c, redis_sync.bulk_multi).  Where they cannot, the commonest
 * push, one key at pre-commit (a single-row transaction), has a script of
 * its own on a single Redis (APPLY_ONE_BODY): the same steps for
 * one key, with the arguments in one msgpack stream instead of ~19 Lua
 * values (issue 18: 58,000 Redis instructions per call instead of 86,000).
 * Outbox deliveries, warms, repairs, larger pushes and clusters use the
 * general script.
 *
 * On a Redis Cluster a push becomes one call per slot or node:
 * fence_cluster.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xlog.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "fence.h"

/*
 * Both apply scripts: whether key holds one of the fields names lists (or is
 * not a hash), and whether it is a hash.  A write finding its key without a
 * version drops only what is its own: a hash shared with write-behind
 * fields keeps those, and one holding none of the write's fields (a row the
 * write-behind drain created) is written like a missing key.  Needs the
 * script's local "call".
 */
#define OWN_FIELDS_FN \
"local function own_fields(key, names)\n" \
"  if call('TYPE', key).ok ~= 'hash' then return true, false end\n" \
"  for s = 1, #names, 1000 do\n" \
"    local got = call('HMGET', key, unpack(names, s, math.min(s + 999, #names)))\n" \
"    for j = 1, #got do if got[j] then return true, true end end\n" \
"  end\n" \
"  return false, true\n" \
"end\n"

#define APPLY_BODY \
"-- Redis < 5: replicate the effects (INFO is not deterministic); a no-op since\n" \
"if redis.replicate_commands then redis.replicate_commands() end\n" \
"local call, rpcall, unpack, tonumber, type = redis.call, redis.pcall, unpack, tonumber, type\n" \
"local tomb = tonumber(ARGV[1])\n" \
"local floor = ARGV[5]\n" \
"local mkey = KEYS[1]\n" \
"-- an in-flight marker: a pre-commit push, whose versions are the newest of\n" \
"-- their keys (the transaction holds their row locks)\n" \
"local fresh = ARGV[2] ~= ''\n" \
"if fresh then call('HSET', mkey, ARGV[2], ARGV[3]) end\n" \
"local cver, cttl, cnf = ARGV[6], ARGV[7], tonumber(ARGV[8])\n" \
"local p = 9\n" \
"-- every op a hash of the same cnf fields: their names come once, here, and\n" \
"-- each op gives only the values\n" \
"local hargs\n" \
"if cnf then\n" \
"  hargs = {}\n" \
"  for f = 1, cnf do hargs[2 * f - 1] = ARGV[p + f - 1] end\n" \
"  p = p + cnf\n" \
"end\n" \
"local nclear = tonumber(ARGV[4])\n" \
"for s = 0, nclear - 1, 1000 do\n" \
"  call('HDEL', mkey, unpack(ARGV, p + s, p + math.min(s + 999, nclear - 1)))\n" \
"end\n" \
"p = p + nclear\n" \
"local nk = (#KEYS - 2) / 2\n" \
"if nk == 0 then return {0, 0} end\n" \
"local vb = 2 + nk\n" \
"local curs\n" \
"if xslot then\n" \
"  -- keys of several slots: no multi-key command may span them\n" \
"  curs = {}\n" \
"  for i = 1, nk do curs[i] = call('GET', KEYS[vb + i]) end\n" \
"elseif nk <= 1000 then\n" \
"  curs = call('MGET', unpack(KEYS, vb + 1, vb + nk))\n" \
"else\n" \
"  curs = {}\n" \
"  for s = 1, nk, 1000 do\n" \
"    local part = call('MGET', unpack(KEYS, vb + s, vb + math.min(s + 999, nk)))\n" \
"    for i = 1, #part do curs[s + i - 1] = part[i] end\n" \
"  end\n" \
"end\n" \
"-- eviction watch: KEYS[2] holds the evicted_keys count last seen and the\n" \
"-- pusher's WAL position when it last changed (efloor).  A key missing with\n" \
"-- its version may have been evicted with it: a write from before efloor\n" \
"-- could be older than the evicted value, so it does not create the key.\n" \
"-- Read only when a call meets such a key (INFO is not free).\n" \
"local efloor = nil\n" \
"local mset, nm = {}, 0\n" \
"local result, nr = {0}, 1\n" \
OWN_FIELDS_FN \
"local applied, evicted, skipped = 0, 0, 0\n" \
"local moved = nil\n" \
"-- the common bulk case (every op a hash of the header's fields, one version,\n" \
"-- no TTL, one slot): a key whose version is present and not newer is\n" \
"-- written at once, without the general case's per-op parsing\n" \
"local fast = hargs and cnf > 0 and cver ~= '' and cttl == '0' and not xslot\n" \
"-- deletes of one version (a purge's page, a bulk DELETE): a key whose version\n" \
"-- is present and not newer goes in one UNLINK of up to 1000 keys, sent\n" \
"-- before any other op of the call (a later op of the same key comes after\n" \
"-- it), then its tombstone, as the general case does\n" \
"local dfast = not cnf and cver ~= '' and cttl ~= '' and not xslot\n" \
"local unl, ui, nu = {}, {}, 0\n" \
"local function tombstone(i, v)\n" \
"  if tomb > 0 then call('SET', KEYS[vb + i], v, 'PX', tomb)\n" \
"  else mset[nm + 1] = KEYS[vb + i]; mset[nm + 2] = v; nm = nm + 2 end\n" \
"end\n" \
"local function flush_unl()\n" \
"  local r = rpcall('UNLINK', unpack(unl, 1, nu))\n" \
"  for j = 1, nu do\n" \
"    -- refused (no key is, on one node): key by key, as the general case\n" \
"    local rj = (type(r) == 'table' and r.err) and rpcall('UNLINK', unl[j]) or 0\n" \
"    if type(rj) == 'table' and rj.err then\n" \
"      result[nr + 1] = ui[j] - 1; result[nr + 2] = rj.err; nr = nr + 2\n" \
"    else\n" \
"      applied = applied + 1\n" \
"      tombstone(ui[j], cver)\n" \
"    end\n" \
"  end\n" \
"  nu = 0\n" \
"end\n" \
"for i = 1, nk do\n" \
"  local cur = curs[i]\n" \
"  if dfast and cur and cur <= cver and ARGV[p] == 'D' then\n" \
"    p = p + 1\n" \
"    nu = nu + 1; unl[nu] = KEYS[2 + i]; ui[nu] = i\n" \
"    if nu == 1000 then flush_unl() end\n" \
"  elseif fast and cur and cur <= cver then\n" \
"    if nu > 0 then flush_unl() end\n" \
"    for f = 1, cnf do hargs[2 * f] = ARGV[p + f - 1] end\n" \
"    p = p + cnf\n" \
"    local r = rpcall('HSET', KEYS[2 + i], unpack(hargs, 1, 2 * cnf))\n" \
"    if type(r) == 'table' then\n" \
"      result[nr + 1] = i - 1; result[nr + 2] = r.err; nr = nr + 2\n" \
"    else\n" \
"      applied = applied + 1\n" \
"      mset[nm + 1] = KEYS[vb + i]; mset[nm + 2] = cver; nm = nm + 2\n" \
"    end\n" \
"  else\n" \
"    if nu > 0 then flush_unl() end\n" \
"    -- per op: [version] [ttl] (unless common to the call), then the kind\n" \
"    -- (unless every op is a hash of the cnf fields named in the header: then\n" \
"    -- their cnf values follow): a count n (a hash, n field pairs follow),\n" \
"    -- 'X' n nd (a hash: n pairs, nd fields to delete), 'S' value (a string),\n" \
"    -- 'F' nd (nd fields to delete, the rest of the hash kept) or 'D' (delete)\n" \
"    local v, ttl, op, n, nd, start = cver, cttl, 'H', cnf, 0, 0\n" \
"    if v == '' then v = ARGV[p]; p = p + 1 end\n" \
"    if ttl == '' then ttl = ARGV[p]; p = p + 1 end\n" \
"    if cnf then\n" \
"      start = p; p = p + cnf\n" \
"    else\n" \
"      op = ARGV[p]; p = p + 1\n" \
"      n = tonumber(op)\n" \
"      if n then\n" \
"        op = 'H'; start = p; p = p + 2 * n\n" \
"      elseif op == 'X' then\n" \
"        op = 'H'; n, nd = tonumber(ARGV[p]), tonumber(ARGV[p + 1])\n" \
"        start = p + 2; p = start + 2 * n + nd\n" \
"      elseif op == 'S' then\n" \
"        start = p; p = p + 1\n" \
"      elseif op == 'F' then\n" \
"        nd = tonumber(ARGV[p]); start = p + 1; p = start + nd\n" \
"      end\n" \
"    end\n" \
"    local key = KEYS[2 + i]\n" \
"    local go = true\n" \
"    if op == 'F' then\n" \
"      -- the write-through fields of a hash shared with write-behind fields (a\n" \
"      -- purge): it only deletes (missing is never stale), so neither the drop\n" \
"      -- of a key without its version nor the eviction watch, which would\n" \
"      -- delete or keep the write-behind fields with it; a newer write's\n" \
"      -- fields stay\n" \
"      if cur and cur > v then go = false end\n" \
"    elseif not cur then\n" \
"      local others = false\n" \
"      if call('EXISTS', key) == 1 then\n" \
"        -- the fields this write names (a hash)\n" \
"        local names = nil\n" \
"        if op == 'H' then\n" \
"          names = {}\n" \
"          if hargs then for f = 1, cnf do names[f] = hargs[2 * f - 1] end\n" \
"          else\n" \
"            for f = 0, n - 1 do names[#names + 1] = ARGV[start + 2 * f] end\n" \
"            for f = 0, nd - 1 do names[#names + 1] = ARGV[start + 2 * n + f] end\n" \
"          end\n" \
"        end\n" \
"        -- a hash of others' fields only (a row the write-behind drain\n" \
"        -- created, over a hash shared with it): none of this write's fields\n" \
"        -- can be newer; it is written like a missing key\n" \
"        local own, ishash = true, false\n" \
"        if names then own, ishash = own_fields(key, names) end\n" \
"        others = not own\n" \
"        if not others then\n" \
"          -- the version was evicted (or lost) but the key was kept: it may\n" \
"          -- hold a newer value than this write.  Missing is never stale: drop\n" \
"          -- the key (a hash: the fields this write names, so that\n" \
"          -- write-behind fields over the same hash stay), and fence it at the\n" \
"          -- pusher's current WAL position, which no write still in flight\n" \
"          -- from before can pass.  A delete wanted the key gone anyway (a\n" \
"          -- purge's of a key only the application or a write-behind table\n" \
"          -- wrote, which never had a version): applied, not counted as\n" \
"          -- dropped.\n" \
"          if ishash and #names > 0 then\n" \
"            for s = 1, #names, 1000 do call('HDEL', key, unpack(names, s, math.min(s + 999, #names))) end\n" \
"          else\n" \
"            call('UNLINK', key)\n" \
"          end\n" \
"          if tomb > 0 then call('SET', KEYS[vb + i], floor, 'PX', tomb)\n" \
"          else mset[nm + 1] = KEYS[vb + i]; mset[nm + 2] = floor; nm = nm + 2 end\n" \
"          if op == 'D' then applied = applied + 1 else evicted = evicted + 1 end\n" \
"          go = false\n" \
"        end\n" \
"      end\n" \
"      if not go then\n" \
"        -- dropped above: no eviction watch.  Others' fields only: the key is\n" \
"        -- there but this write's fields and the version are not, like a\n" \
"        -- missing key's, and the version (a tombstone, which has a TTL) may\n" \
"        -- have been evicted: watched like one\n" \
"      elseif fresh and op == 'D' then\n" \
"        -- a pre-commit delete of a key missing with its version creates no\n" \
"        -- data, only its tombstone, at the key's newest version: no eviction\n" \
"        -- watch (INFO cost such a cold key ~10 us of Redis: invalidate)\n" \
"      else\n" \
"        if efloor == nil then\n" \
"          -- INFO renamed or forbidden by an ACL: no watch (keys evicted with\n" \
"          -- their version are then treated as never written)\n" \
"          local ok, info = pcall(call, 'INFO', 'stats')\n" \
"          local ev = ok and type(info) == 'string' and string.match(info, 'evicted_keys:(%d+)') or nil\n" \
"          local seen = call('HGET', KEYS[2], 'seen')\n" \
"          efloor = call('HGET', KEYS[2], 'floor')\n" \
"          if ev and seen ~= ev then\n" \
"            if seen or ev ~= '0' then efloor = floor; call('HSET', KEYS[2], 'floor', floor) end\n" \
"            call('HSET', KEYS[2], 'seen', ev)\n" \
"          end\n" \
"        end\n" \
"        if efloor and v <= efloor then skipped = skipped + 1; go = false end\n" \
"      end\n" \
"    elseif cur > v then\n" \
"      go = false\n" \
"    end\n" \
"    if go then\n" \
"      local r\n" \
"      if hargs then\n" \
"        if n > 0 then\n" \
"          for f = 1, n do hargs[2 * f] = ARGV[start + f - 1] end\n" \
"          r = rpcall('HSET', key, unpack(hargs, 1, 2 * n))\n" \
"        end\n" \
"      elseif op == 'H' then\n" \
"        if n > 0 then r = rpcall('HSET', key, unpack(ARGV, start, start + 2 * n - 1)) end\n" \
"        if nd > 0 and not (type(r) == 'table' and r.err) then\n" \
"          r = rpcall('HDEL', key, unpack(ARGV, start + 2 * n, start + 2 * n + nd - 1))\n" \
"        end\n" \
"      elseif op == 'S' then\n" \
"        r = rpcall('SET', key, ARGV[start])\n" \
"      elseif op == 'F' then\n" \
"        -- a key of another type (a JSON row of an earlier configuration)\n" \
"        -- holds no write-behind field: it goes whole\n" \
"        local t = rpcall('TYPE', key)\n" \
"        if t.err then r = t\n" \
"        elseif t.ok ~= 'hash' then r = rpcall('UNLINK', key)\n" \
"        elseif nd > 0 then r = rpcall('HDEL', key, unpack(ARGV, start, start + nd - 1)) end\n" \
"      else\n" \
"        r = rpcall('UNLINK', key)\n" \
"      end\n" \
"      if type(r) == 'table' and r.err and xslot and\n" \
"         (string.find(r.err, 'non local key', 1, true) or string.find(r.err, 'cluster is down', 1, true)) then\n" \
"        -- its slot is migrating and this key has left the node (its version\n" \
"        -- not yet): not a refusal of the key; the whole call fails below and\n" \
"        -- is run again per slot, following the redirection (fenced: the keys\n" \
"        -- applied here are applied again with the same versions)\n" \
"        moved = r.err\n" \
"      elseif type(r) == 'table' and r.err then\n" \
"        result[nr + 1] = i - 1; result[nr + 2] = r.err; nr = nr + 2\n" \
"      else\n" \
"        applied = applied + 1\n" \
"        -- a hash that kept write-behind fields lives on: its version with it\n" \
"        -- (and its TTL, if it has one), not a tombstone that would expire\n" \
"        -- before it; emptied by the HDEL, Redis removed it: a tombstone\n" \
"        local left = op == 'F' and call('PTTL', key)\n" \
"        if op == 'D' or left == -2 then\n" \
"          if tomb > 0 then call('SET', KEYS[vb + i], v, 'PX', tomb)\n" \
"          else mset[nm + 1] = KEYS[vb + i]; mset[nm + 2] = v; nm = nm + 2 end\n" \
"        elseif left and left > 0 then\n" \
"          call('SET', KEYS[vb + i], v, 'PX', left)\n" \
"        elseif left then\n" \
"          mset[nm + 1] = KEYS[vb + i]; mset[nm + 2] = v; nm = nm + 2\n" \
"        elseif ttl ~= '0' then\n" \
"          call('PEXPIRE', key, ttl)\n" \
"          call('SET', KEYS[vb + i], v, 'PX', ttl)\n" \
"        else\n" \
"          mset[nm + 1] = KEYS[vb + i]; mset[nm + 2] = v; nm = nm + 2\n" \
"        end\n" \
"      end\n" \
"    end\n" \
"  end\n" \
"end\n" \
"if nu > 0 then flush_unl() end\n" \
"if xslot then\n" \
"  for s = 1, nm, 2 do call('SET', mset[s], mset[s + 1]) end\n" \
"else\n" \
"  for s = 1, nm, 1000 do call('MSET', unpack(mset, s, math.min(s + 999, nm))) end\n" \
"end\n" \
"if evicted > 0 then call('HINCRBY', KEYS[2], 'dropped', evicted) end\n" \
"if skipped > 0 then call('HINCRBY', KEYS[2], 'skipped', skipped) end\n" \
"if moved then return redis.error_reply('TRYAGAIN redis_sync: a key of this call moved: ' .. moved) end\n" \
"result[1] = applied\n" \
"result[nr + 1] = evicted\n" \
"return result\n"

static RedisScript apply_script = REDIS_SCRIPT("redis_sync_apply",
											   "local xslot = false\n" APPLY_BODY);

/*
 * Redis 7 cluster: one call per node touches the keys of several slots of
 * that node.  Declared keys must still share a slot (CROSSSLOT otherwise):
 * only the marker and the eviction watch are declared, the data and version
 * keys come first in ARGV (their count first) and are made KEYS[3..] again.
 */
static RedisScript apply_xslot_script = REDIS_SCRIPT("redis_sync_apply_xslot",
													 "#!lua flags=allow-cross-slot-keys\n"
													 "local nk = tonumber(ARGV[1])\n"
													 "local K, A = {KEYS[1], KEYS[2]}, {}\n"
													 "for i = 2, nk + 1 do K[#K + 1] = ARGV[i] end\n"
													 "for i = nk + 2, #ARGV do A[#A + 1] = ARGV[i] end\n"
													 "local KEYS, ARGV = K, A\n"
													 "local xslot = true\n"
													 APPLY_BODY);

/*
 * One key of a pre-commit push on a single Redis (rs_fence_append_one): what
 * the apply script does for such a call, and nothing else.  Issue 18: the
 * general script spent most of a single-row push's Redis time building its
 * 19 arguments into Lua tables (a rehash per power of two) and interpreting
 * its general parsing; here the keys are declared (marker hash, data key,
 * version key) and everything else comes in one msgpack stream that
 * cmsgpack.unpack() puts straight onto the Lua stack as the arguments of
 * apply():
 *   version, floor, ttl (ms, '0': none), tombstone ttl, eviction watch hash,
 *   marker field, marker value, then the op: 'H' and field/value pairs (a
 *   hash without NULLs), 'X' n, n pairs and the fields to delete (a hash with
 *   NULLs), 'S' value (a string), 'D' (a delete).
 * ARGV[2], when present, is a msgpack stream of marker fields to clear.
 * The reply is an integer: 1 applied, 0 ignored (older than the key's
 * version, or skipped by the eviction watch), 2 dropped (the key's version
 * was missing); a key Redis refuses is an error reply.  The eviction watch
 * hash is not declared (a single Redis needs no declared keys) and is only
 * touched when the version key is missing.  A row whose stream would pass
 * APPLY_ONE_MAX_BYTES goes through the general script (one argument per
 * value).
 */
#define APPLY_ONE_BODY \
"local call, rpcall = redis.call, redis.pcall\n" \
OWN_FIELDS_FN \
"local mkey, key, vkey = KEYS[1], KEYS[2], KEYS[3]\n" \
"local function apply(v, floor, ttl, tomb, ekey, mf, mv, kind, ...)\n" \
"  -- as the apply script's MGET: a version key of another type is missing\n" \
"  local cur = rpcall('GET', vkey)\n" \
"  if type(cur) == 'table' then cur = false end\n" \
"  -- Redis < 5: replicate the effects (INFO is not deterministic), before any write\n" \
"  if not cur and redis.replicate_commands then redis.replicate_commands() end\n" \
"  call('HSET', mkey, mf, mv)\n" \
"  if ARGV[2] then call('HDEL', mkey, cmsgpack.unpack(ARGV[2])) end\n" \
"  if not cur then\n" \
"    local others = false\n" \
"    if call('EXISTS', key) == 1 then\n" \
"      -- the fields this write names (a hash): see own_fields()\n" \
"      local names = nil\n" \
"      if kind ~= 'S' and kind ~= 'D' then\n" \
"        local a = {...}\n" \
"        names = {}\n" \
"        if kind == 'H' then\n" \
"          for j = 1, #a, 2 do names[#names + 1] = a[j] end\n" \
"        else\n" \
"          local n = tonumber(a[1])\n" \
"          for j = 0, n - 1 do names[#names + 1] = a[2 + 2 * j] end\n" \
"          for j = 2 + 2 * n, #a do names[#names + 1] = a[j] end\n" \
"        end\n" \
"      end\n" \
"      local own, ishash = true, false\n" \
"      if names then own, ishash = own_fields(key, names) end\n" \
"      others = not own\n" \
"      if not others then\n" \
"        -- the version was evicted (or lost) but the key was kept: see the apply script\n" \
"        if ishash and #names > 0 then call('HDEL', key, unpack(names)) else call('UNLINK', key) end\n" \
"        if tomb ~= '0' then call('SET', vkey, floor, 'PX', tomb) else call('SET', vkey, floor) end\n" \
"        if kind == 'D' then return 1 end\n" \
"        call('HINCRBY', ekey, 'dropped', 1)\n" \
"        return 2\n" \
"      end\n" \
"    end\n" \
"    -- a delete creates no data, only its tombstone: no eviction watch (others'\n" \
"    -- fields only are watched like a missing key: the version may be evicted)\n" \
"    if kind ~= 'D' then\n" \
"      local ok, info = pcall(call, 'INFO', 'stats')\n" \
"      local ev = ok and type(info) == 'string' and string.match(info, 'evicted_keys:(%d+)') or nil\n" \
"      local seen = call('HGET', ekey, 'seen')\n" \
"      local efloor = call('HGET', ekey, 'floor')\n" \
"      if ev and seen ~= ev then\n" \
"        if seen or ev ~= '0' then efloor = floor; call('HSET', ekey, 'floor', floor) end\n" \
"        call('HSET', ekey, 'seen', ev)\n" \
"      end\n" \
"      if efloor and v <= efloor then call('HINCRBY', ekey, 'skipped', 1); return 0 end\n" \
"    end\n" \
"  elseif cur > v then\n" \
"    return 0\n" \
"  end\n" \
"  local r\n" \
"  if kind == 'H' then r = rpcall('HSET', key, ...)\n" \
"  elseif kind == 'S' then r = rpcall('SET', key, (...))\n" \
"  elseif kind == 'D' then r = rpcall('UNLINK', key)\n" \
"  else\n" \
"    local a = {...}\n" \
"    local n = tonumber(a[1])\n" \
"    if n > 0 then r = rpcall('HSET', key, unpack(a, 2, 1 + 2 * n)) end\n" \
"    if #a > 1 + 2 * n and not (type(r) == 'table' and r.err) then\n" \
"      r = rpcall('HDEL', key, unpack(a, 2 + 2 * n))\n" \
"    end\n" \
"  end\n" \
"  if type(r) == 'table' and r.err then return redis.error_reply(r.err) end\n" \
"  if kind == 'D' then\n" \
"    if tomb ~= '0' then call('SET', vkey, v, 'PX', tomb) else call('SET', vkey, v) end\n" \
"  elseif ttl ~= '0' then\n" \
"    call('PEXPIRE', key, ttl)\n" \
"    call('SET', vkey, v, 'PX', ttl)\n" \
"  else\n" \
"    call('SET', vkey, v)\n" \
"  end\n" \
"  return 1\n" \
"end\n" \
"return apply(cmsgpack.unpack(ARGV[1]))\n"

static RedisScript apply_one_script = REDIS_SCRIPT("redis_sync_apply_one", APPLY_ONE_BODY);


const char *
rs_evicted_key(void)
{
	static char buf[96];

	if (buf[0] == '\0')
		snprintf(buf, sizeof(buf), "redis_sync:evicted:" UINT64_FORMAT ":%u",
				 GetSystemIdentifier(), MyDatabaseId);
	return buf;
}

/* the marker hash of this database under system identifier sysid (decimal) */
char *
rs_marker_key_of(const char *sysid)
{
	return psprintf("redis_sync:inflight:%s:%u", sysid, MyDatabaseId);
}

const char *
rs_marker_key(void)
{
	static char buf[96];

	if (buf[0] == '\0')
	{
		char		sysid[MAXINT8LEN + 2];
		char	   *key;

		snprintf(sysid, sizeof(sysid), UINT64_FORMAT, GetSystemIdentifier());
		key = rs_marker_key_of(sysid);
		strlcpy(buf, key, sizeof(buf));
		pfree(key);
	}
	return buf;
}

typedef struct ArgBuf
{
	int			n;
	int			max;
	const char **argv;
	size_t	   *len;
} ArgBuf;

static void
arg_add(ArgBuf *a, const char *s, size_t len)
{
	if (a->n == a->max)
	{
		a->max = a->max ? a->max * 2 : 64;
		a->argv = a->argv ? repalloc(a->argv, sizeof(char *) * a->max) : palloc(sizeof(char *) * a->max);
		a->len = a->len ? repalloc(a->len, sizeof(size_t) * a->max) : palloc(sizeof(size_t) * a->max);
	}
	a->argv[a->n] = s;
	a->len[a->n] = len;
	a->n++;
}

static void
arg_str(ArgBuf *a, const char *s)
{
	arg_add(a, s, strlen(s));
}

static void
arg_int(ArgBuf *a, int64 v)
{
	char	   *buf = palloc(MAXINT8LEN + 1);

	arg_add(a, buf, pg_lltoa(v, buf));
}

/*
 * What every op of one call has in common, sent once instead of per op:
 * the version (all ops of a pre-commit push have the same), the TTL, and
 * the fields when every op is a hash without NULLs of the same fields (the
 * rows of a bulk statement; from FENCE_COMMON_FIELDS_MIN_OPS ops on).  NULL:
 * not common.
 */
typedef struct FenceCommon
{
	const char *version;
	const char *ttl;
	const char *nfields;
	char	  **fields;			/* with nfields: their names */
} FenceCommon;

/* img: a hash without NULLs, of the fields of like (another such hash) */
static bool
same_hash_fields(RowImage *img, RowImage *like)
{
	if (img->op != RS_OP_HASH || like->op != RS_OP_HASH || img->nfields != like->nfields)
		return false;
	for (int f = 0; f < img->nfields; f++)
		if (!img->values[f] ||
			(img->fields[f] != like->fields[f] && strcmp(img->fields[f], like->fields[f]) != 0))
			return false;
	return true;
}

#define FENCE_COMMON_FIELDS_MIN_OPS 16

static FenceCommon
fence_common(FenceOp *ops, int nops)
{
	FenceCommon c = {NULL, NULL, NULL, NULL};
	bool		same_version = true,
				same_ttl = true,
				same_hash = true;

	if (nops == 0)
		return c;
	for (int i = 0; i < nops; i++)
	{
		same_version = same_version && strcmp(ops[i].version, ops[0].version) == 0;
		same_ttl = same_ttl && ops[i].ttl_ms == ops[0].ttl_ms;
		same_hash = same_hash && same_hash_fields(ops[i].img, ops[0].img);
	}
	if (same_version)
		c.version = ops[0].version;
	if (same_ttl)
	{
		char	   *ttl = palloc(MAXINT8LEN + 1);

		pg_lltoa(ops[0].ttl_ms, ttl);
		c.ttl = ttl;
	}
	/* a few ops: not worth the script's table of field names */
	if (same_hash && nops >= FENCE_COMMON_FIELDS_MIN_OPS)
	{
		c.nfields = psprintf("%d", ops[0].img->nfields);
		c.fields = ops[0].img->fields;
	}
	return c;
}

/*
 * One op's arguments: its version and TTL unless common, then its kind
 * unless every op is a hash of c->fields (then only the values; see the
 * script): the
 * number of field pairs of a hash without NULLs, 'X' with the counts of a
 * hash with NULLs (HDEL'd), 'S' and the value of a string, 'F' with the
 * count and names of the fields to delete, 'D' for a delete.
 */
static void
fence_op_args(ArgBuf *args, FenceOp *op, FenceCommon *c)
{
	RowImage   *img = op->img;
	int			nset = 0;

	if (!c->version)
		arg_str(args, op->version);
	if (!c->ttl)
		arg_int(args, op->ttl_ms);
	if (img->op == RS_OP_STRING)
	{
		arg_add(args, "S", 1);
		arg_str(args, img->str);
		return;
	}
	if (img->op == RS_OP_FIELDS)
	{
		arg_add(args, "F", 1);
		arg_int(args, img->nfields);
		for (int f = 0; f < img->nfields; f++)
			arg_str(args, img->fields[f]);
		return;
	}
	if (img->op != RS_OP_HASH)
	{
		arg_add(args, "D", 1);
		return;
	}
	for (int f = 0; f < img->nfields; f++)
		if (img->values[f])
			nset++;
	if (nset < img->nfields)
	{
		arg_add(args, "X", 1);
		arg_int(args, nset);
		arg_int(args, img->nfields - nset);
	}
	else if (c->nfields)
	{
		for (int f = 0; f < img->nfields; f++)
			arg_str(args, img->values[f]);
		return;
	}
	else
		arg_int(args, nset);
	for (int f = 0; f < img->nfields; f++)
		if (img->values[f])
		{
			arg_str(args, img->fields[f]);
			arg_str(args, img->values[f]);
		}
	for (int f = 0; f < img->nfields; f++)
		if (!img->values[f])
			arg_str(args, img->fields[f]);
}

/* ----------------------------------------------------------------
 * One key with a marker: the apply-one script's msgpack arguments
 * ---------------------------------------------------------------- */

/* bytes a msgpack string of len bytes takes at most */
#define MP_STR_SIZE(len) ((len) + 5)

/*
 * The largest msgpack stream (ARGV[1]) of an apply-one call: Redis's smallest
 * proto-max-bulk-len.  A larger row goes through the general script.
 */
#define APPLY_ONE_MAX_BYTES (1024 * 1024)

/*
 * A msgpack string: fixstr, str16 or str32 (every cmsgpack version reads
 * these; str8 is newer)
 */
static char *
mp_str(char *p, const char *s, size_t len)
{
	if (len < 32)
		*p++ = (char) (0xa0 | len);
	else if (len <= 0xffff)
	{
		*p++ = (char) 0xda;
		*p++ = (char) (len >> 8);
		*p++ = (char) len;
	}
	else
	{
		*p++ = (char) 0xdb;
		*p++ = (char) (len >> 24);
		*p++ = (char) (len >> 16);
		*p++ = (char) (len >> 8);
		*p++ = (char) len;
	}
	memcpy(p, s, len);
	return p + len;
}

/*
 * The op's kind in the apply-one stream ('S', 'H', 'X' or 'D'), its count of
 * non-NULL fields and the bytes its part of the stream takes at most.
 */
static size_t
one_op_size(RowImage *img, char *kind, int *nset)
{
	size_t		size = MP_STR_SIZE(1);

	*nset = 0;
	if (img->op == RS_OP_STRING)
	{
		*kind = 'S';
		return size + MP_STR_SIZE(strlen(img->str));
	}
	if (img->op != RS_OP_HASH)
	{
		*kind = 'D';
		return size;
	}
	for (int f = 0; f < img->nfields; f++)
	{
		size += MP_STR_SIZE(strlen(img->fields[f]));
		if (img->values[f])
		{
			size += MP_STR_SIZE(strlen(img->values[f]));
			(*nset)++;
		}
	}
	/* no field at all: nothing to set, as 'X' with no pairs */
	*kind = *nset == img->nfields && *nset > 0 ? 'H' : 'X';
	return size + MP_STR_SIZE(MAXINT8LEN);
}

/* the op's part of the apply-one stream at b: kind, then its values */
static char *
one_op_encode(char *b, RowImage *img, char kind, int nset)
{
	char		nset_s[MAXINT8LEN + 1];

	b = mp_str(b, &kind, 1);
	if (kind == 'S')
		return mp_str(b, img->str, strlen(img->str));
	if (kind == 'D')
		return b;
	if (kind == 'X')
		b = mp_str(b, nset_s, pg_ltoa(nset, nset_s));
	for (int f = 0; f < img->nfields; f++)
		if (img->values[f])
		{
			b = mp_str(b, img->fields[f], strlen(img->fields[f]));
			b = mp_str(b, img->values[f], strlen(img->values[f]));
		}
	for (int f = 0; f < img->nfields; f++)
		if (!img->values[f])
			b = mp_str(b, img->fields[f], strlen(img->fields[f]));
	return b;
}

/* the marker fields to clear as one msgpack stream (ARGV[2]) */
static char *
one_clears(List *clears, size_t *len)
{
	ListCell   *lc;
	size_t		size = 0;
	char	   *buf;
	char	   *b;

	foreach(lc, clears)
		size += MP_STR_SIZE(strlen(lfirst(lc)));
	b = buf = palloc(size);
	foreach(lc, clears)
		b = mp_str(b, lfirst(lc), strlen(lfirst(lc)));
	*len = b - buf;
	return buf;
}

/*
 * Queue one apply-one call (APPLY_ONE_BODY) for op, a pre-commit push of one
 * key with its in-flight marker, on a single Redis.  Issue 18: about 40% of
 * the general call's Redis instructions and a third of its encoding here.
 */
static void
fence_append_one(RedisPipeline *p, FenceOp *op, const char *marker_field,
				 const char *marker_value, List *clears)
{
	const char *argv[5];
	size_t		len[5];
	char		floor[RS_VERSION_LEN + 1];
	char		ttl[MAXINT8LEN + 1];
	char		tomb[MAXINT8LEN + 1];
	const char *ekey = rs_evicted_key();
	size_t		ttl_len = pg_lltoa(op->ttl_ms, ttl);
	size_t		tomb_len = pg_lltoa((int64) rs_tombstone_ttl_ms, tomb);
	size_t		mf_len = strlen(marker_field);
	size_t		mv_len = strlen(marker_value);
	size_t		size;
	int			nset;
	char		kind;
	char	   *buf;
	char	   *b;
	int			argc = 4;

	/* the floor: see the apply script */
	rs_version_now(floor);

	size = MP_STR_SIZE(RS_VERSION_LEN) * 2 + MP_STR_SIZE(ttl_len) + MP_STR_SIZE(tomb_len) +
		MP_STR_SIZE(strlen(ekey)) + MP_STR_SIZE(mf_len) + MP_STR_SIZE(mv_len) +
		one_op_size(op->img, &kind, &nset);

	/*
	 * Redis takes no argument longer than proto-max-bulk-len (1 MB at the
	 * least): a larger row, sent as one msgpack argument, would be a protocol
	 * error where the general script's one argument per value is not.
	 */
	if (size > APPLY_ONE_MAX_BYTES)
	{
		rs_fence_append_call(p, false, op, 1, rs_marker_key(), ekey,
							 marker_field, marker_value, clears);
		return;
	}

	b = buf = palloc(size);
	b = mp_str(b, op->version, strlen(op->version));
	b = mp_str(b, floor, RS_VERSION_LEN);
	b = mp_str(b, ttl, ttl_len);
	b = mp_str(b, tomb, tomb_len);
	b = mp_str(b, ekey, strlen(ekey));
	b = mp_str(b, marker_field, mf_len);
	b = mp_str(b, marker_value, mv_len);
	b = one_op_encode(b, op->img, kind, nset);
	Assert(b <= buf + size);

	argv[0] = rs_marker_key();
	len[0] = strlen(argv[0]);
	argv[1] = op->key;
	len[1] = strlen(op->key);
	argv[2] = rs_version_key_str(op->key, len[1]);
	len[2] = strlen(argv[2]);
	argv[3] = buf;
	len[3] = b - buf;
	if (clears != NIL)
	{
		argv[4] = one_clears(clears, &len[4]);
		argc = 5;
	}
	redis_pipeline_append_script(p, &apply_one_script, 3, argc, argv, len);
}

void
rs_fence_append(RedisPipeline *p, FenceOp *ops, int nops,
				const char *marker_field, const char *marker_value, List *clears)
{
	if (redis_cluster_mode())
		rs_fence_append_cluster(p, ops, nops, marker_field, marker_value, clears);
	else if (nops == 1 && marker_field != NULL && ops[0].img->op != RS_OP_FIELDS)
		fence_append_one(p, ops, marker_field, marker_value, clears);
	else
		rs_fence_append_call(p, false, ops, nops, rs_marker_key(), rs_evicted_key(),
							 marker_field, marker_value, clears);
}

void
rs_fence_append_restore(RedisPipeline *p, FenceOp *ops, int nops)
{
	if (redis_cluster_mode())
		rs_fence_append_restore_cluster(p, ops, nops);
	else
		rs_fence_append_call(p, false, ops, nops, rs_marker_key(), rs_evicted_key(),
							 NULL, NULL, list_make1(pstrdup(RS_FENCE_NO_FIELD)));
}

/*
 * Queue one apply call of ops (xslot: the Redis 7 cross-slot variant, keys
 * of one node), its in-flight marker and clears in marker_key, its eviction
 * watch in evicted_key.
 */
void
rs_fence_append_call(RedisPipeline *p, bool xslot, FenceOp *ops, int nops,
					 const char *marker_key, const char *evicted_key,
					 const char *marker_field, const char *marker_value, List *clears)
{
	ArgBuf		all = {0};
	FenceCommon c = fence_common(ops, nops);
	char	   *floor = palloc(RS_VERSION_LEN + 1);
	ListCell   *lc;

	/*
	 * Keys: marker, eviction watch, the data keys, their version keys.  On
	 * Redis 7 per node (xslot) only the first two are declared, the others
	 * follow in ARGV after their count.
	 */
	arg_str(&all, marker_key);
	arg_str(&all, evicted_key);
	if (xslot)
		arg_int(&all, 2 * nops);
	for (int i = 0; i < nops; i++)
		arg_str(&all, ops[i].key);
	for (int i = 0; i < nops; i++)
		arg_str(&all, rs_version_key_str(ops[i].key, strlen(ops[i].key)));

	/* the call's header: see the script */
	rs_version_now(floor);
	arg_int(&all, (int64) rs_tombstone_ttl_ms);
	arg_str(&all, marker_field ? marker_field : "");
	arg_str(&all, marker_value ? marker_value : "");
	arg_int(&all, list_length(clears));
	arg_str(&all, floor);
	arg_str(&all, c.version ? c.version : "");
	arg_str(&all, c.ttl ? c.ttl : "");
	arg_str(&all, c.nfields ? c.nfields : "");
	for (int f = 0; c.nfields && f < ops[0].img->nfields; f++)
		arg_str(&all, c.fields[f]);
	foreach(lc, clears)
		arg_str(&all, (char *) lfirst(lc));

	for (int i = 0; i < nops; i++)
		fence_op_args(&all, &ops[i], &c);

	redis_pipeline_append_script(p, xslot ? &apply_xslot_script : &apply_script,
								 xslot ? 2 : 2 + 2 * nops, all.n, all.argv, all.len);
}

static void
log_dropped(int64 n)
{
	ereport(LOG,
			(errmsg("redis_sync: dropped %lld cached keys whose version key was missing",
					(long long) n),
			 errdetail("Redis evicted or lost their version keys; a cached value without its version might be newer than the write, so the key was deleted (a miss, never a stale value)."),
			 errhint("Use maxmemory-policy noeviction or volatile-*, or give Redis more memory.")));
}

/* rs_fence_failures, logging the keys dropped (log) or not */
static int
fence_failures(RedisValue *reply, int **indexes, char ***errors, bool log)
{
	int			n = 0;

	*indexes = NULL;
	*errors = NULL;

	/*
	 * the apply-one script: 1 applied, 0 ignored, 2 dropped (its refusal is
	 * an error reply)
	 */
	if (reply->type == RV_INTEGER)
	{
		if (reply->integer == 2 && log)
			log_dropped(1);
		return reply->integer >= 0 && reply->integer <= 2 ? 0 : -1;
	}
	if (reply->type != RV_ARRAY || reply->nelem < 1)
		return -1;

	/*
	 * {applied, (index, error)*, evicted}: keys dropped because their version
	 * was gone are logged (and counted in Redis, rs_evicted_key()).
	 */
	if (log && reply->nelem % 2 == 0 && reply->elems[reply->nelem - 1].type == RV_INTEGER &&
		reply->elems[reply->nelem - 1].integer > 0)
		log_dropped(reply->elems[reply->nelem - 1].integer);
	if (reply->nelem > 2)
	{
		*indexes = palloc(sizeof(int) * reply->nelem / 2);
		*errors = palloc(sizeof(char *) * reply->nelem / 2);
		for (int i = 1; i + 1 < reply->nelem; i += 2)
		{
			(*indexes)[n] = (int) reply->elems[i].integer;
			(*errors)[n] = reply->elems[i + 1].str ? reply->elems[i + 1].str : "error";
			n++;
		}
	}
	return n;
}

int
rs_fence_failures(RedisValue *reply, int **indexes, char ***errors)
{
	return fence_failures(reply, indexes, errors, true);
}

/*
 * Whether every reply of p, a pipeline of apply-script calls (or MULTI/EXEC
 * chunks), says each write was applied; else false with *f filled (the first
 * error, and how many keys failed).
 */
bool
rs_fence_replies_ok(RedisPipeline *p, RedisFailure *f)
{
	for (int i = 0; i < redis_pipeline_length(p); i++)
	{
		RedisValue *v = redis_pipeline_reply(p, i);
		int		   *idx;
		char	  **errs;
		int			nfail;

		if (v->type == RV_ERROR)
		{
			f->sqlstate = ERRCODE_EXTERNAL_ROUTINE_EXCEPTION;
			f->message = pstrdup("Redis rejected the push");
			f->detail = pstrdup(v->str);
			return false;
		}
		nfail = rs_fence_failures(v, &idx, &errs);
		if (nfail != 0)
		{
			f->sqlstate = ERRCODE_EXTERNAL_ROUTINE_EXCEPTION;
			f->message = pstrdup("Redis rejected the push");
			f->detail = nfail > 1 ? psprintf("%s (and %d more keys)", errs[0], nfail - 1) :
				nfail == 1 ? pstrdup(errs[0]) :
				pstrdup("malformed reply from the apply script");
			return false;
		}
	}
	return true;
}

/* a refusal of Redis for memory (maxmemory with noeviction) */
static bool
refused_for_memory(const char *err)
{
	if (err[0] == '-')
		err++;
	return strncmp(err, "OOM", 3) == 0;
}

/* positions of the keys refused for memory (fence.h) */
int
rs_fence_refused_for_memory(RedisPipeline *p, int per_call, int nops, int **pos)
{
	int			n = 0;
	int			cap = 16;

	*pos = palloc(sizeof(int) * cap);
	for (int i = 0; i < redis_pipeline_length(p); i++)
	{
		int		   *idx;
		char	  **errs;

		/* rs_fence_check_applied logs the keys dropped */
		int			nfail = fence_failures(redis_pipeline_reply(p, i), &idx, &errs, false);

		for (int j = 0; j < nfail; j++)
		{
			if (!refused_for_memory(errs[j]) || idx[j] < 0 || idx[j] >= per_call ||
				i * per_call + idx[j] >= nops)
				continue;
			if (n == cap)
			{
				cap *= 2;
				*pos = repalloc(*pos, sizeof(int) * cap);
			}
			(*pos)[n++] = i * per_call + idx[j];
		}
	}
	return n;
}

/*
 * Check that every reply of p (apply calls, each already checked for an
 * error of the whole call) says each write was applied.  A key Redis
 * refused is reported in its call's reply, not as an error of the call: out
 * of memory (maxmemory with noeviction: the script's first write of a call
 * is refused, key after key), a string where a hash is expected.  Keys
 * refused for memory are an ERROR of insufficient resources (transient: the
 * marker sweep and the worker's refresh retry it); others an ERROR of an
 * external routine, or with oom_only a WARNING (the worker's refresh and
 * fills, which would otherwise retry a key an application wrote with another
 * type forever, a SCAN pass of Redis each time).
 */
void
rs_fence_check_applied(RedisPipeline *p, Oid relid, bool oom_only, bool oom_dropped)
{
	int			nfail = 0;
	int			noom = 0;
	const char *first = NULL;
	const char *first_oom = NULL;

	for (int i = 0; i < redis_pipeline_length(p); i++)
	{
		int		   *idx;
		char	  **errs;
		int			n = rs_fence_failures(redis_pipeline_reply(p, i), &idx, &errs);

		if (n < 0)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("malformed reply from the Redis apply script for table \"%s\"",
							get_rel_name(relid))));
		for (int j = 0; j < n; j++)
		{
			const char *e = errs[j][0] == '-' ? errs[j] + 1 : errs[j];

			if (first == NULL)
				first = e;
			if (refused_for_memory(e))
			{
				if (first_oom == NULL)
					first_oom = e;
				noom++;
			}
		}
		nfail += n;
	}
	if (noom > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("Redis refused to write %d keys of table \"%s\" for lack of memory",
						noom, get_rel_name(relid)),
				 errdetail("%s", first_oom),
				 oom_dropped ?
				 errhint("Those keys were deleted instead: a cache miss, never an older value.  Free memory in Redis or raise its maxmemory, then try again.") :
				 errhint("Those keys keep the values Redis had.  Free memory in Redis or raise its maxmemory, then try again.")));
	if (nfail > 0)
		ereport(oom_only ? WARNING : ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("Redis refused to write %d keys of table \"%s\"",
						nfail, get_rel_name(relid)),
				 errdetail("%s", first),
				 errhint("Those keys keep the values Redis had; redis_sync.verify() reports them.")));
}

/* glob-escape s for SCAN MATCH */
static char *
glob_escape(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (; *s; s++)
	{
		if (strchr("*?[]\\", *s))
			appendStringInfoChar(&buf, '\\');
		appendStringInfoChar(&buf, *s);
	}
	appendStringInfoChar(&buf, '*');
	return buf.data;
}

/*
 * One SCAN page on the node it is sent to, keeping the hashes and strings
 * (ARGV: cursor, pattern): {cursor, keys, unknown}.  SCAN ... TYPE keeps
 * one type per pass, and every pass visits the whole keyspace (about 1.1 us
 * a key: 1.1 s of Redis time per pass over 1,000,000 keys, whatever the
 * prefix matches), so two passes cost twice a scan's main cost.  The TYPE
 * of each matched key costs about as much per key as a pass does (Lua's
 * call and the reply): a table whose keys are most of the keyspace pays
 * about what the second pass cost (bench/RESULTS.md, section 2c), one that
 * is a small part of it half.  A key whose TYPE the script
 * may not read (on a cluster, a key this node is importing: the script's
 * commands are not redirected) is returned in unknown; the caller asks for
 * its type through the pipeline, which follows the redirection.
 */
#define SCAN_ROWS_BODY \
"local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 1000)\n" \
"local keep, unknown = {}, {}\n" \
"for _, k in ipairs(r[2]) do\n" \
"  local t = redis.pcall('TYPE', k)\n" \
"  if t.err then unknown[#unknown + 1] = k\n" \
"  elseif t.ok == 'hash' or t.ok == 'string' then keep[#keep + 1] = k end\n" \
"end\n" \
"return {r[1], keep, unknown}\n"

static RedisScript scan_rows_script = REDIS_SCRIPT("redis_sync_scan_rows", SCAN_ROWS_BODY);

/*
 * The same on Redis 7, flagged no-writes: a script without flags is held
 * by a CLIENT PAUSE ... WRITE (an operator's, FAILOVER's, a cluster's
 * manual failover) as a command that may write, where the SCAN it replaces
 * was not, and verify() (which only reads) failed with the command timeout
 * for as long as writes were paused (TAP 261).  allow-cross-slot-keys: what
 * a script without flags may do (the keys of every slot of the node).
 */
static RedisScript scan_rows_ro_script = REDIS_SCRIPT("redis_sync_scan_rows_ro",
													  "#!lua flags=no-writes,allow-cross-slot-keys\n"
													  SCAN_ROWS_BODY);

/*
 * Add to keys[*n] the hashes and strings among the keys the scan script
 * could not type (see above), asked through a pipeline that follows
 * redirections.  A key whose type Redis refuses to tell is a failure (false
 * and *failure; an ERROR with failure NULL): deleting it blind could remove
 * a write-behind dirty set, skipping it could leave a row cached.
 */
static bool
type_unknown_keys(RedisValue *unknown, char **keys, int *n, RedisFailure *failure)
{
	RedisPipeline *p = redis_pipeline_create();

	for (int i = 0; i < unknown->nelem; i++)
	{
		const char *argv[2] = {"TYPE", unknown->elems[i].str};

		redis_pipeline_append(p, 2, argv, NULL);
	}
	if (failure == NULL)
		redis_pipeline_exec(p);
	else if (!redis_pipeline_try_exec(p, failure))
		return false;
	for (int i = 0; i < unknown->nelem; i++)
	{
		RedisValue *t = redis_pipeline_reply(p, i);

		if (t->type == RV_ERROR || t->str == NULL)
		{
			if (failure == NULL)
			{
				redis_check_reply(p, i, "TYPE");
				elog(ERROR, "redis_sync: unexpected TYPE reply");
			}
			return redis_failure_set(failure, ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
									 "Redis rejected TYPE", t->str ? t->str : "malformed reply");
		}
		if (strcmp(t->str, "hash") == 0 || strcmp(t->str, "string") == 0)
			keys[(*n)++] = unknown->elems[i].str;
	}
	return true;
}

/* how one pass of a scan ended */
typedef enum ScanPass
{
	SCAN_DONE,
	SCAN_MAP_CHANGED,
	SCAN_FAILED
} ScanPass;

/* a page failed: *failure (built in the page's memory) moves to outer's */
static ScanPass
scan_failed(RedisFailure *failure, MemoryContext outer, MemoryContext page_cxt)
{
	MemoryContextSwitchTo(outer);
	redis_failure_copy(failure, outer);
	MemoryContextReset(page_cxt);
	return SCAN_FAILED;
}

/*
 * One pass of rs_scan_prefix_pages_try over nmasters masters; SCAN_MAP_
 * CHANGED, at once, when the cluster's masters are no longer those of sig (a
 * failover, a master added or removed): the callbacks run commands between
 * pages, whose redirections reload the slot map, and a master's position in
 * the new map may name another node, to which the cursor would mean nothing.
 * SCAN_FAILED with *failure filled (in the caller's context) when Redis
 * failed a SCAN or fn returned false; with failure NULL, a failed SCAN
 * raises the ERROR instead.
 */
static ScanPass
scan_pass(const char *pattern, int nmasters, const char *sig, RsScanPageTryFn fn, void *arg,
		  MemoryContext page_cxt, RedisFailure *failure, RsScanPos *pos)
{
	MemoryContext outer = CurrentMemoryContext;
	uint32		sig_hash = hash_bytes((const unsigned char *) sig, strlen(sig));
	int			first = 0;

	/* taken up where an earlier scan on the same map stopped */
	if (pos != NULL && pos->master >= 0 && pos->sig_hash == sig_hash)
		first = pos->master;
	for (int m = first; m < nmasters; m++)
	{
		char		cursor[32] = "0";

		if (m == first && pos != NULL && pos->master == first && pos->sig_hash == sig_hash)
			strlcpy(cursor, pos->cursor, sizeof(cursor));
		do
		{
			RedisPipeline *p;
			const char *argv[2] = {cursor, pattern};
			RedisValue *v;
			char	  **keys;
			int			n;
			bool		ok = true;
			MemoryContext old = MemoryContextSwitchTo(page_cxt);

			if (strcmp(redis_cluster_masters_signature(), sig) != 0)
			{
				MemoryContextSwitchTo(old);
				MemoryContextReset(page_cxt);
				return SCAN_MAP_CHANGED;
			}
			p = redis_pipeline_create();
			redis_pipeline_target_master(p, m);
			redis_pipeline_append_script(p, redis_server_script_flags() ?
										 &scan_rows_ro_script : &scan_rows_script,
										 0, 2, argv, NULL);
			if (failure == NULL)
			{
				redis_pipeline_exec(p);
				redis_check_reply(p, 0, "SCAN");
			}
			else if (!redis_pipeline_try_exec(p, failure))
				ok = false;
			else if (redis_pipeline_reply(p, 0)->type == RV_ERROR)
				ok = redis_failure_set(failure, ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
									   "Redis rejected SCAN",
									   redis_pipeline_reply(p, 0)->str);
			if (!ok)
				return scan_failed(failure, outer, page_cxt);
			v = redis_pipeline_reply(p, 0);
			if (v->type != RV_ARRAY || v->nelem != 3 || v->elems[0].str == NULL ||
				strlen(v->elems[0].str) >= sizeof(cursor) || v->elems[1].type != RV_ARRAY ||
				v->elems[2].type != RV_ARRAY)
				elog(ERROR, "redis_sync: unexpected SCAN reply");
			strlcpy(cursor, v->elems[0].str, sizeof(cursor));
			n = v->elems[1].nelem;
			keys = palloc(sizeof(char *) * Max(n + v->elems[2].nelem, 1));

			/*
			 * companion keys begin with '{', prefixes never: all are row keys
			 */
			for (int i = 0; i < n; i++)
				keys[i] = v->elems[1].elems[i].str;
			if (v->elems[2].nelem > 0 && !type_unknown_keys(&v->elems[2], keys, &n, failure))
				return scan_failed(failure, outer, page_cxt);
			MemoryContextSwitchTo(old);
			/* the position after this page, for fn */
			if (pos != NULL)
			{
				bool		last = strcmp(cursor, "0") == 0;

				pos->master = last ? m + 1 : m;
				strlcpy(pos->cursor, last ? "0" : cursor, sizeof(pos->cursor));
				pos->sig_hash = sig_hash;
			}
			if (n > 0 && !fn(keys, n, arg, failure))
			{
				/* fn's failure is in the caller's memory */
				MemoryContextReset(page_cxt);
				return SCAN_FAILED;
			}
			MemoryContextReset(page_cxt);
		} while (strcmp(cursor, "0") != 0);
	}
	return SCAN_DONE;
}

/*
 * Every data key whose name matches pattern (a SCAN MATCH glob), one SCAN
 * page at a time: the hashes and strings (one pass, scan_rows_script).
 * Other types are not rows: the dirty set of a write-behind table
 * (stats:dirty under stats:) must survive a TRUNCATE or purge of the same
 * table's write-through keys.  Each page's keys (up to about 1,000; SCAN may
 * return a key twice) go to fn, in a memory context reset after each page,
 * so a caller that handles each page as it comes holds one page at a time.
 * On a cluster whose masters change meanwhile the scan starts over, on the
 * new map (fn may then see keys again), a few times at most.  what names
 * the keys in the error of a cluster that keeps changing.
 *
 * False, with *failure filled, when Redis failed a SCAN (it cannot be
 * reached, it refused the command) or fn returned false (having filled
 * *failure, in the caller's memory); no page after it is read.  With failure
 * NULL a failed SCAN raises the ERROR (fn must not return false then).
 */
static bool
scan_pattern_pages(const char *pattern, const char *what, RsScanPageTryFn fn, void *arg,
				   RedisFailure *failure, RsScanPos *pos)
{
	MemoryContext page_cxt = AllocSetContextCreate(CurrentMemoryContext,
												   "redis_sync SCAN page",
												   ALLOCSET_DEFAULT_SIZES);
	ScanPass	r;

	for (int attempt = 0;; attempt++)
	{
		/*
		 * on a cluster, every master's keys (SCAN is per node), of a map
		 * loaded now: a master added since this session's last reload is not
		 * known otherwise (no command of a purge is redirected to it)
		 */
		int			nmasters = redis_cluster_nmasters_fresh();
		char	   *sig = redis_cluster_masters_signature();

		r = scan_pass(pattern, nmasters, sig, fn, arg, page_cxt, failure, pos);
		if (r != SCAN_MAP_CHANGED)
			break;
		/* from the beginning, on the new map */
		if (pos != NULL)
			pos->master = -1;
		if (attempt == 4)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("could not scan the keys %s: the Redis Cluster's masters kept changing",
							what),
					 errhint("Try again once the cluster is stable.")));
	}
	MemoryContextDelete(page_cxt);
	return r == SCAN_DONE;
}

/* every data key under prefix (scan_pattern_pages) */
bool
rs_scan_prefix_pages_try(const char *prefix, RsScanPageTryFn fn, void *arg,
						 RedisFailure *failure)
{
	return scan_pattern_pages(glob_escape(prefix), psprintf("under \"%s\"", prefix),
							  fn, arg, failure, NULL);
}

/* rs_scan_prefix_pages's adapter: a page function that cannot fail */
typedef struct PlainPageFn
{
	RsScanPageFn fn;
	void	   *arg;
} PlainPageFn;

static bool
plain_page(char **keys, int n, void *arg, RedisFailure *failure)
{
	PlainPageFn *pf = arg;

	pf->fn(keys, n, pf->arg);
	return true;
}

/* the same, raising the ERROR when Redis fails a SCAN */
void
rs_scan_prefix_pages(const char *prefix, RsScanPageFn fn, void *arg)
{
	PlainPageFn pf = {fn, arg};

	(void) rs_scan_prefix_pages_try(prefix, plain_page, &pf, NULL);
}

/*
 * Every data key under any of prefixes[0 .. n-1], in one pass: the keys
 * under the prefixes' common beginning, which fn sorts out (it gets keys
 * under none of the prefixes too).  A pass visits every key of Redis,
 * whatever its pattern matches (about 1.1 s of Redis time per 1,000,000
 * keys): one pass for n tables instead of one per table.  With no common
 * beginning the pattern is the class of the prefixes' first bytes, which
 * leaves out companion keys (versions, markers: they begin with '{',
 * prefixes never) and most other keys before the script reads their type.
 * With pos, the scan begins where pos says (when it was taken on the same
 * map; else from the beginning), and pos follows it: before each call of fn
 * it is the position after fn's page, so a caller that has done with every
 * page so far can take the scan up there after a failure.
 */
void
rs_scan_prefixes_pages(char **prefixes, int n, RsScanPos *pos, RsScanPageFn fn, void *arg)
{
	PlainPageFn pf = {fn, arg};
	size_t		common;
	char	   *pattern;

	Assert(n > 0);
	common = strlen(prefixes[0]);
	for (int i = 1; i < n; i++)
	{
		size_t		j = 0;

		while (j < common && prefixes[i][j] == prefixes[0][j])
			j++;
		common = j;
	}
	if (common == 0)
	{
		/*
		 * no common beginning: their first bytes as a class ("users:",
		 * "orders:": [\u\o]*), each escaped, so that keys of other
		 * applications are left out before the script reads their type
		 */
		StringInfoData buf;
		bool		seen[256] = {0};

		initStringInfo(&buf);
		appendStringInfoChar(&buf, '[');
		for (int i = 0; i < n; i++)
		{
			unsigned char c = (unsigned char) prefixes[i][0];

			if (!seen[c])
			{
				seen[c] = true;
				appendStringInfoChar(&buf, '\\');
				appendStringInfoChar(&buf, (char) c);
			}
		}
		appendStringInfoString(&buf, "]*");
		/* an empty prefix (sync() refuses it): every key but companions */
		pattern = seen[0] ? pstrdup("[^{]*") : buf.data;
	}
	else
		pattern = glob_escape(pnstrdup(prefixes[0], common));
	(void) scan_pattern_pages(pattern,
							  n == 1 ? psprintf("under \"%s\"", prefixes[0]) :
							  psprintf("of %d tables", n),
							  plain_page, &pf, NULL, pos);
}

/* ----------------------------------------------------------------
 * Settings (from _PG_init)
 * ---------------------------------------------------------------- */

int			rs_chunk_size = 1000;
int			rs_tombstone_ttl_ms = 86400000;

void
rs_fence_init(void)
{
	DefineCustomIntVariable("redis_sync.chunk_size",
							"Keys applied by one atomic script call in Redis.",
							"A transaction with more keys is applied in several atomic chunks, all in one round trip.",
							&rs_chunk_size,
							1000, 1, 100000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.tombstone_ttl",
							"How long Redis remembers the version of a deleted key.",
							"A write older than the delete that arrives within this time is ignored; 0 keeps tombstones forever.",
							&rs_tombstone_ttl_ms,
							86400000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}
