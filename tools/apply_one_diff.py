#!/usr/bin/env python3
"""Differential check of fence.c's two apply scripts on a real Redis.

    python3 tools/apply_one_diff.py PORT [TRIALS] [SEED]

Runs the general apply script (APPLY_BODY, one op with an in-flight marker,
the arguments rs_fence_append_call() sends) and the one-key script
(APPLY_ONE_BODY, the msgpack stream fence_append_one() builds) from the same
random Redis states (data key missing / hash / string / list; version key
missing / older / equal / newer / of another type; eviction watch with or
without a floor, seen or not; markers to clear) and the same ops (hash with
and without NULLs, empty hash, string, delete; TTL, tombstone TTL; values at
the msgpack string boundaries and bytes that look like msgpack).  Every key
of both databases (DB 1 and DB 2 of the Redis at 127.0.0.1:PORT, flushed per
trial: use a throw-away Redis) and both replies must agree; prints each
difference and exits 1 if there is any.  The script bodies are read from
src/fence.c, so this checks the scripts as built.
"""
import collections, os, random, re, socket, struct, sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src', 'fence.c')


def body(src, name):
    i = src.index('#define ' + name + ' \\')
    out = []
    for line in src[i:].split('\n')[1:]:
        m = re.match(r'^"(.*)"\s*\\?\s*$', line)
        if not m:
            break
        out.append(m.group(1))
    return ''.join(out).encode().decode('unicode_escape')


class Redis:
    def __init__(self, port):
        self.s = socket.create_connection(('127.0.0.1', port))
        self.f = self.s.makefile('rb')

    def cmd(self, *args):
        out = b'*%d\r\n' % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else str(a).encode() if isinstance(a, int) else a
            out += b'$%d\r\n' % len(a) + a + b'\r\n'
        self.s.sendall(out)
        return self.read()

    def read(self):
        line = self.f.readline()
        t, r = line[:1], line[1:-2]
        if t == b'+':
            return r
        if t == b'-':
            return Exception(r.decode())
        if t == b':':
            return int(r)
        if t == b'$':
            n = int(r)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if t == b'*':
            n = int(r)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise Exception('bad reply ' + repr(line))


def mp(x):
    x = x.encode() if isinstance(x, str) else x
    n = len(x)
    if n < 32:
        return bytes([0xa0 | n]) + x
    if n <= 0xffff:
        return b'\xda' + struct.pack('>H', n) + x
    return b'\xdb' + struct.pack('>I', n) + x


def V(n):
    return '%032X' % n


def main():
    port = int(sys.argv[1])
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    random.seed(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    src = open(SRC).read()
    r = Redis(port)
    gsha = r.cmd('SCRIPT', 'LOAD', 'local xslot = false\n' + body(src, 'APPLY_BODY')).decode()
    osha = r.cmd('SCRIPT', 'LOAD', body(src, 'APPLY_ONE_BODY')).decode()
    MK, EK, K, VK = 'mk', 'ek', 'k:1', '{k:1}:ver'
    info = r.cmd('INFO', 'stats').decode()
    ev = re.search(r'evicted_keys:(\d+)', info).group(1)
    vals = ['', 'a', 'x' * 31, 'x' * 32, 'x' * 255, 'x' * 256, 'x' * 65535, 'x' * 65536,
            '1', '1e400', '-0', '0x10', 'nan', ' 12', '\x00\x01', '\xc0', '\x93\x01\x02\x03',
            '9007199254740993']

    def setup(db, kt, ver, ek, mk):
        r.cmd('SELECT', db)
        r.cmd('FLUSHDB')
        if kt == 'hash':
            r.cmd('HSET', K, 'f1', 'old', 'zz', 'old2')
        elif kt == 'string':
            r.cmd('SET', K, 'oldstr')
        elif kt == 'list':
            r.cmd('RPUSH', K, 'a')
        if ver == 'hash':
            r.cmd('HSET', VK, 'a', 'b')
        elif ver == 'list':
            r.cmd('RPUSH', VK, 'a')
        elif ver is not None:
            r.cmd('SET', VK, V(ver))
        for f, v in (ek or {}).items():
            r.cmd('HSET', EK, f, v)
        if mk:
            r.cmd('HSET', MK, 'old1', 'x', 'old2', 'y', 'keep', 'z')

    def state(db):
        r.cmd('SELECT', db)
        out = {}
        for k in sorted(r.cmd('KEYS', '*')):
            t = r.cmd('TYPE', k)
            if t == b'hash':
                v = sorted(r.cmd('HGETALL', k))
            elif t == b'string':
                v = r.cmd('GET', k)
            else:
                v = r.cmd('LRANGE', k, 0, -1)
            out[k] = (t, v, r.cmd('PTTL', k) > 0)
        return out

    bad = 0
    replies = collections.Counter()
    for _ in range(trials):
        kt = random.choice(['none', 'hash', 'string', 'list'])
        ver = random.choice([None, 5, 10, 15, 'hash', 'list'])
        ek = random.choice([None, {'seen': ev}, {'seen': ev, 'floor': V(10)},
                            {'seen': '999', 'floor': V(3)}, {'floor': V(12)}])
        mk = random.random() < 0.5
        v = random.choice([4, 10, 11, 20])
        floor = V(30)
        ttl = random.choice(['0', '0', '1000000', '5000'])
        tomb = random.choice(['0', '86400000'])
        kind = random.choice(['H', 'X', 'S', 'D', 'E'])
        fields = ['f%d' % i for i in range(random.randint(0, 4))] + (['zz'] if random.random() < .3 else [])
        values = [random.choice(vals + [None]) for _ in fields]
        if kind == 'H':
            values = [x if x is not None else 'v' for x in values]
        if kind == 'E':
            fields, values = [], []
        sv = random.choice(vals)
        clears = random.choice([[], ['old1'], ['old1', 'old2', 'nope']])
        nset = sum(1 for x in values if x is not None)
        sets = [a for f, x in zip(fields, values) if x is not None for a in (f, x)]
        dels = [f for f, x in zip(fields, values) if x is None]

        ga = [tomb, 'm:1', '[123,1]', len(clears), floor, V(v), ttl, ''] + clears
        ob = b''.join(mp(a) for a in [V(v), floor, ttl, tomb, EK, 'm:1', '[123,1]'])
        if kind == 'S':
            ga += ['S', sv]
            ob += mp('S') + mp(sv)
        elif kind == 'D':
            ga += ['D']
            ob += mp('D')
        else:
            ga += (['X', nset, len(dels)] if dels else [nset]) + sets + dels
            one = 'H' if nset == len(fields) and nset > 0 else 'X'
            ob += mp(one) + (mp(str(nset)) if one == 'X' else b'')
            ob += b''.join(mp(a) for a in sets + dels)
        oa = [ob] + ([b''.join(mp(c) for c in clears)] if clears else [])

        setup(1, kt, ver, ek, mk)
        g = r.cmd('EVALSHA', gsha, 4, MK, EK, K, VK, *ga)
        sg = state(1)
        setup(2, kt, ver, ek, mk)
        o = r.cmd('EVALSHA', osha, 3, MK, K, VK, *oa)
        so = state(2)

        # the general reply as the one-key script's: 1 applied, 0 ignored,
        # 2 dropped, or the refusal's error
        if isinstance(g, Exception):
            gm = ('err', str(g).split()[0])
        elif len(g) > 2:
            gm = ('err', g[2].decode().split()[0])
        else:
            gm = 2 if g[-1] > 0 else g[0]
        om = ('err', str(o).split()[0]) if isinstance(o, Exception) else o
        replies[str(om)] += 1
        if sg != so or gm != om:
            bad += 1
            if bad <= 10:
                print('DIFF key=%s version=%s watch=%s markers=%s op=%s v=%d ttl=%s tomb=%s clears=%s'
                      % (kt, ver, ek, mk, kind, v, ttl, tomb, clears))
                print('  replies: general %s, one-key %s' % (gm, om))
                for k in sorted(set(sg) | set(so)):
                    if sg.get(k) != so.get(k):
                        print('  %s: %.120s | %.120s' % (k, sg.get(k), so.get(k)))
    r.cmd('SELECT', 1)
    r.cmd('FLUSHDB')
    r.cmd('SELECT', 2)
    r.cmd('FLUSHDB')
    print('trials %d, differences %d, one-key replies %s' % (trials, bad, dict(replies)))
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
