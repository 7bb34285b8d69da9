/*-------------------------------------------------------------------------
 *
 * killfence.c
 *		What makes a push without the apply script safe: a connection that
 *		carried one whose outcome is unknown is killed before anything else
 *		is sent to that Redis.
 *
 * A bulk pre-commit push on a single Redis goes as MULTI ... EXEC (fence_
 * multi.c), without the apply script's version check: the transaction holds
 * the row locks of its keys, so no newer write of them exists yet, and an
 * older one arriving later is refused by the version keys the push sets.
 * What the version check also did is refuse the push itself when it arrives
 * late: a push that timed out, was cancelled, or whose backend died, may
 * still sit in a socket buffer or in Redis's query buffer, and Redis would
 * run it after a newer write of the same keys (issue 18).  So:
 *
 * - Every connection is named redis_sync:<pid>:<system identifier>:
 *   <timeline>:<instance>:<incarnation> at its handshake (redis_conn.c),
 *   which also asks CLIENT INFO for its id and address, in the same round
 *   trip.
 * - While the push is in flight the connection is registered here, in shared
 *   memory, under its Redis server.  Once every reply is read it is removed;
 *   when the outcome is unknown (a failure, an ERROR or FATAL in the wait)
 *   it becomes abandoned, before the transaction ends: an ERROR is caught in
 *   publish.c's push, a FATAL by a before_shmem_exit callback.  (The abort
 *   ends the transaction in the proc array, its rows writable by others,
 *   before the abort callbacks run.)  The push is sent on the registered
 *   connection only: an exec that finds it closed and reconnects fails,
 *   nothing sent (redis_pipeline_only_on).
 * - Every process, before it sends anything to that Redis, kills each
 *   abandoned connection (CLIENT KILL ID id ADDR addr, on its own
 *   connection, so Redis has closed the old one, and dropped what it had not
 *   yet run, before anything of ours runs), and while any is left no push
 *   goes unfenced.
 * - A crash restart loses the registry: the first exchange with each Redis
 *   after shared memory is made reads CLIENT LIST and kills every
 *   connection this server made in an earlier run.  A promotion does the
 *   same for every connection of the same system on an older timeline: the
 *   old primary, cut off from us but perhaps not from Redis, may still have
 *   an unfenced push on its way, which the apply script would have refused
 *   by its older version.  It also raises redis_sync:timeline:<system
 *   identifier> in Redis to its timeline; a connection that reads a newer
 *   one there at its handshake never pushes unfenced (the old primary, when
 *   it comes back before it learns it was replaced).
 * - A Redis that refuses CLIENT LIST, CLIENT KILL or CLIENT INFO (an ACL,
 *   renamed commands, before 6.2) never gets unfenced pushes; nor does a
 *   connection whose user may not run CLIENT KILL or CLIENT LIST (an ACL is
 *   per user: the handshake probes both on every connection).
 *
 * A connection is only ever registered after CLIENT INFO answered on it, so
 * Redis has accepted it and lists it until it is closed; the kill's ADDR
 * keeps a restarted Redis (whose ids start again at 1) from losing another
 * client.  Servers are told apart by their run_id (INFO server at the
 * handshake), not by how the URL spells them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "postmaster/postmaster.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "killfence.h"
#include "redis_client_int.h"
#include "shmem.h"

#define KF_NODES 64				/* Redis processes (a restart makes a new one)
								 * and databases with unfenced pushes */
#define KF_ENTRIES 32			/* connections in flight or abandoned, per
								 * node */
#define KF_KEYLEN 128
#define KF_ADDRLEN 64

typedef struct KfEntry
{
	int64		id;				/* CLIENT ID */
	char		addr[KF_ADDRLEN];	/* as Redis sees it (CLIENT INFO addr=) */
	int			owner;			/* pid of the pushing process */
	bool		abandoned;
} KfEntry;

typedef struct KfNode
{
	char		key[KF_KEYLEN]; /* "<run_id>/<db>" (see node_of) */
	TimeLineID	cleared_tli;	/* earlier runs' connections killed, as of
								 * timeline cleared_tli - 1 (0: not yet) */
	bool		unsupported;	/* no unfenced pushes to this server */
	pg_atomic_uint32 nabandoned;	/* abandoned entries (read without the
									 * mutex) */
	int			nentries;
	KfEntry		e[KF_ENTRIES];
} KfNode;

typedef struct KfShared
{
	slock_t		mutex;			/* protects everything below but the nodes'
								 * nabandoned */
	int			nnodes;
	KfNode		nodes[KF_NODES];
} KfShared;

static KfShared *kf = NULL;

/* this process: the connection last seen, its node, what it knows */
static uint64 seen_generation = 0;
static int	seen_node = -1;		/* -1: registry full, or not looked up */
static bool seen_cleared = false;	/* the node was cleared ... */
static TimeLineID seen_tli = 0; /* ... as of this timeline */
static bool conn_named = false; /* SETNAME / CLIENT INFO done on it */
static int64 conn_id = 0;
static char conn_addr[KF_ADDRLEN];
static bool registered = false; /* our entry is in flight */
static int	registered_node = -1;
static uint64 registered_generation = 0;	/* its client connection */
static bool exit_hook = false;	/* kf_before_exit registered */

Size
rs_killfence_shmem_size(void)
{
	return sizeof(KfShared);
}

void
rs_killfence_shmem_init(void)
{
	bool		found;

	kf = ShmemInitStruct("redis_sync kill fence", sizeof(KfShared), &found);
	if (!found)
	{
		memset(kf, 0, sizeof(KfShared));
		SpinLockInit(&kf->mutex);
	}
}

/* this server's timeline; 0 in recovery (a standby never pushes) */
static TimeLineID
current_tli(void)
{
	return RecoveryInProgress() ? 0 : GetWALInsertionTimeLine();
}

/*
 * What redis_conn.c puts after "redis_sync:<pid>:" in every connection's
 * name: "<system identifier>:<timeline>:<instance>:<incarnation>".  The
 * instance is this server (data directory, host, port), the incarnation its
 * shared memory's (a crash restart makes a new one), the timeline the one
 * it writes on when the connection was made (a promotion makes a new one).
 */
const char *
rs_killfence_name_suffix(void)
{
	static char name[160];
	static char instance[32];

	if (instance[0] == '\0')
	{
		char		host[256] = "";
		uint32		h;

		(void) gethostname(host, sizeof(host) - 1);
		h = hash_bytes((const unsigned char *) DataDir, strlen(DataDir));
		h = hash_combine(h, hash_bytes((const unsigned char *) host, strlen(host)));
		snprintf(instance, sizeof(instance), "%x-%d", h, PostPortNumber);
	}
	snprintf(name, sizeof(name), "%llx:%u:%s:%lld",
			 (unsigned long long) GetSystemIdentifier(), current_tli(), instance,
			 (long long) rs_incarnation());
	return name;
}

/*
 * "redis_sync:timeline:<system identifier>": the newest timeline of this
 * system that cleared this Redis.  A server on an older one (a primary
 * that lost its role and does not know it yet) reads it at every
 * connection's handshake and never pushes unfenced there.
 */
const char *
rs_killfence_timeline_key(void)
{
	static char key[64];

	if (key[0] == '\0')
		snprintf(key, sizeof(key), "redis_sync:timeline:%llx",
				 (unsigned long long) GetSystemIdentifier());
	return key;
}

/*
 * Whether a connection named name must be killed before this server sends
 * anything: one of the same system, on our timeline or an older one, not
 * made by this run of this server.  That is this server's earlier runs
 * (crash restart, restart, also after a move to another port, host or data
 * directory) and, after a promotion, the old primary (it may still have a
 * push on its way).  A standby's (timeline 0) are left alone, and so are a
 * newer timeline's (then we are the old primary).  Two servers of one
 * system on one timeline (a copy started on its own) kill each other's
 * connections once per run: safe, their pushes' outcomes become unknown.
 */
static bool
from_earlier_run(const char *name)
{
	char		mine[160];
	char	   *their[4];
	char	   *my[4];
	char	   *p;
	unsigned long their_tli;

	if (strncmp(name, "redis_sync:", 11) != 0 || (p = strchr(name + 11, ':')) == NULL)
		return false;
	strlcpy(mine, rs_killfence_name_suffix(), sizeof(mine));
	p = pstrdup(p + 1);
	for (int i = 0; i < 4; i++)
	{
		their[i] = p;
		p = p ? strchr(p, ':') : NULL;
		if (p)
			*p++ = '\0';
	}
	p = mine;
	for (int i = 0; i < 4; i++)
	{
		my[i] = p;
		p = strchr(p, ':');
		if (p)
			*p++ = '\0';
	}
	if (their[3] == NULL || strcmp(their[0], my[0]) != 0)
		return false;			/* another system, or not named by us */
	their_tli = strtoul(their[1], NULL, 10);
	if (their_tli == 0 || their_tli > strtoul(my[1], NULL, 10))
		return false;			/* a standby's, or we are the old one */
	/* not this run of this server (even if it moved: port, host, directory) */
	return strcmp(their[2], my[2]) != 0 || strcmp(their[3], my[3]) != 0;
}

/*
 * The node of a connection (registering it), -1 when the registry is full.
 * A node is one Redis process (its run_id, whatever the URL calls it:
 * localhost and 127.0.0.1 are one server) and database; without a run_id
 * (INFO refused) the URL's host:port names it, and it gets no unfenced
 * pushes.  Nodes are never reused (a process keeps its node's index): a
 * server met when the registry is full gets no unfenced pushes, and is
 * cleared by each process at its first exchange.
 */
static int
node_of(RedisConn *conn)
{
	char		key[KF_KEYLEN + 16];
	const char *run_id = redis_conn_run_id(conn);
	int			found = -1;

	snprintf(key, sizeof(key), "%s/%d", run_id ? run_id : redis_conn_display(conn),
			 redis_conn_params(conn)->db);
	if (strlen(key) >= KF_KEYLEN)
		return -1;
	SpinLockAcquire(&kf->mutex);
	for (int i = 0; i < kf->nnodes && found < 0; i++)
		if (strcmp(kf->nodes[i].key, key) == 0)
			found = i;
	if (found < 0 && kf->nnodes < KF_NODES)
	{
		found = kf->nnodes++;
		memset(&kf->nodes[found], 0, sizeof(KfNode));
		pg_atomic_init_u32(&kf->nodes[found].nabandoned, 0);
		strlcpy(kf->nodes[found].key, key, KF_KEYLEN);
		kf->nodes[found].unsupported = run_id == NULL;
	}
	SpinLockRelease(&kf->mutex);
	return found;
}

/* a new connection: look its node up again, it is not named yet */
static void
see(RedisConn *conn, uint64 generation)
{
	if (generation == seen_generation)
		return;
	seen_generation = generation;
	seen_node = kf ? node_of(conn) : -1;
	seen_cleared = false;
	conn_named = false;
}

bool
rs_killfence_needed(RedisConn *conn, uint64 generation)
{
	if (kf == NULL)
		return false;
	if (generation != seen_generation || !seen_cleared || seen_tli != current_tli())
		return true;

	/*
	 * Only this server's: another's (a Redis restarted since, with a new
	 * run_id, or one no longer configured) may never be killed, and must not
	 * keep every exec here gated and every bulk push unstreamed
	 */
	return seen_node >= 0 && pg_atomic_read_u32(&kf->nodes[seen_node].nabandoned) > 0;
}

/* one exchange of commands on conn; replies in *out */
static bool
exchange(RedisConn *conn, int n, const char ***argvs, const int *argcs, RedisValue *out,
		 RedisFailure *f)
{
	StringInfoData buf;
	bool		ok;

	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
		redis_resp_encode_command(&buf, argcs[i], argvs[i], NULL);
	ok = redis_conn_exchange(conn, buf.data, buf.len, n, out, f);
	pfree(buf.data);
	return ok;
}

/* the value of field name= in a CLIENT LIST / CLIENT INFO line, or NULL */
static char *
line_field(const char *line, const char *name)
{
	size_t		nlen = strlen(name);
	const char *p = line;

	while (*p)
	{
		const char *end = p;

		while (*end && *end != ' ' && *end != '\n' && *end != '\r')
			end++;
		if ((size_t) (end - p) > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=')
			return pnstrdup(p + nlen + 1, end - p - nlen - 1);
		if (*end == '\n' || *end == '\0')
			break;
		p = end + 1;
	}
	return NULL;
}

/* kill (id, addr) pairs; replies with a count are done (done[i]) */
static bool
kill_all(RedisConn *conn, int n, int64 *ids, char **addrs, bool *done, RedisFailure *f)
{
	const char ***argvs = palloc(sizeof(char **) * Max(n, 1));
	int		   *argcs = palloc(sizeof(int) * Max(n, 1));
	RedisValue *out = palloc0(sizeof(RedisValue) * Max(n, 1));

	if (n == 0)
		return true;
	for (int i = 0; i < n; i++)
	{
		const char **a = palloc(sizeof(char *) * 6);

		a[0] = "CLIENT";
		a[1] = "KILL";
		a[2] = "ID";
		a[3] = psprintf("%lld", (long long) ids[i]);
		a[4] = "ADDR";
		a[5] = addrs[i];
		argvs[i] = a;
		argcs[i] = 6;
	}
	if (!exchange(conn, n, argvs, argcs, out, f))
		return false;
	for (int i = 0; i < n; i++)
	{
		done[i] = out[i].type == RV_INTEGER;
		if (!done[i])
			return redis_failure_set(f, ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
									 psprintf("could not close an earlier connection to Redis at %s",
											  redis_conn_display(conn)),
									 psprintf("CLIENT KILL answered: %s",
											  out[i].str ? out[i].str : "(no text)"));
	}
	return true;
}

/*
 * Once per server and incarnation: kill the named connections of earlier
 * incarnations of this server, or find the server does not allow it.
 */
static bool
clear_earlier(RedisConn *conn, TimeLineID tli, RedisFailure *f)
{
	static const char *list[] = {"CLIENT", "LIST", "TYPE", "normal"};
	static const char *probe[] = {"CLIENT", "KILL", "ID", "9223372036854775807"};
	char		tlis[16];
	const char *raise[] = {"EVAL",
		"local t = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
		"if t < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end\n"
	"return 0", "1", rs_killfence_timeline_key(), tlis};
	const char **argvs[3] = {raise, list, probe};
	int			argcs[3] = {5, 4, 4};
	RedisValue	all[3];
	RedisValue *out = all + 1;
	int			n = 0,
				max = 16;
	int64	   *ids = palloc(sizeof(int64) * max);
	char	  **addrs = palloc(sizeof(char *) * max);
	bool	   *done;
	bool		unsupported;

	/*
	 * First our timeline, then the list: a connection of an older timeline
	 * made before the list is in it, one made after reads the key at its
	 * handshake (a standby, timeline 0, raises nothing)
	 */
	snprintf(tlis, sizeof(tlis), "%u", tli);
	if (!exchange(conn, tli > 0 ? 3 : 2, tli > 0 ? argvs : argvs + 1, tli > 0 ? argcs : argcs + 1,
				  tli > 0 ? all : out, f))
		return false;
	unsupported = out[0].type != RV_STRING || out[1].type != RV_INTEGER;
	if (!unsupported)
	{
		const char *line = out[0].str;

		while (line && *line)
		{
			char	   *name = line_field(line, "name");

			if (name && from_earlier_run(name))
			{
				char	   *id = line_field(line, "id");
				char	   *addr = line_field(line, "addr");

				if (id && addr)
				{
					if (n == max)
					{
						max *= 2;
						ids = repalloc(ids, sizeof(int64) * max);
						addrs = repalloc(addrs, sizeof(char *) * max);
					}
					ids[n] = strtoll(id, NULL, 10);
					addrs[n] = addr;
					n++;
				}
			}
			line = strchr(line, '\n');
			if (line)
				line++;
		}
		done = palloc0(sizeof(bool) * Max(n, 1));
		if (!kill_all(conn, n, ids, addrs, done, f))
			return false;
		if (n > 0)
			ereport(LOG,
					(errmsg("redis_sync: closed %d connections to Redis at %s left by an earlier server run", n,
							redis_conn_display(conn)),
					 errdetail("Writes they carried whose outcome was unknown can no longer run after newer ones.")));
	}
	if (seen_node >= 0)
	{
		SpinLockAcquire(&kf->mutex);
		kf->nodes[seen_node].cleared_tli = tli + 1;
		if (unsupported)
			kf->nodes[seen_node].unsupported = true;
		SpinLockRelease(&kf->mutex);
	}
	seen_cleared = true;
	seen_tli = tli;
	return true;
}

/* remove entry i of node (mutex held) */
static void
remove_entry(KfNode *node, int i)
{
	if (node->e[i].abandoned)
		pg_atomic_fetch_sub_u32(&node->nabandoned, 1);
	node->e[i] = node->e[--node->nentries];
}

/* kill this server's abandoned connections */
static bool
kill_abandoned(RedisConn *conn, RedisFailure *f)
{
	KfNode	   *node = &kf->nodes[seen_node];
	int64		ids[KF_ENTRIES];
	char		copies[KF_ENTRIES][KF_ADDRLEN];
	char	   *addrs[KF_ENTRIES];
	bool		done[KF_ENTRIES] = {0};
	int			n = 0;

	SpinLockAcquire(&kf->mutex);
	for (int i = 0; i < node->nentries; i++)
		if (node->e[i].abandoned)
		{
			ids[n] = node->e[i].id;
			memcpy(copies[n], node->e[i].addr, KF_ADDRLEN);
			addrs[n] = copies[n];
			n++;
		}
	SpinLockRelease(&kf->mutex);
	if (n == 0)
		return true;
	if (!kill_all(conn, n, ids, addrs, done, f))
		return false;
	SpinLockAcquire(&kf->mutex);
	for (int k = 0; k < n; k++)
		for (int i = 0; i < node->nentries; i++)
			if (done[k] && node->e[i].abandoned && node->e[i].id == ids[k] &&
				strcmp(node->e[i].addr, addrs[k]) == 0)
			{
				remove_entry(node, i);
				break;
			}
	SpinLockRelease(&kf->mutex);
	return true;
}

bool
rs_killfence_gate(RedisConn *conn, uint64 generation, RedisFailure *f)
{
	TimeLineID	tli = current_tli();

	if (kf == NULL)
		return true;
	see(conn, generation);
	if (!seen_cleared || seen_tli != tli)
	{
		/* a promotion since: clear again, for the new timeline */
		bool		cleared = false;

		if (seen_node >= 0)
		{
			SpinLockAcquire(&kf->mutex);
			cleared = kf->nodes[seen_node].cleared_tli == tli + 1;
			SpinLockRelease(&kf->mutex);
		}
		if (cleared)
		{
			seen_cleared = true;
			seen_tli = tli;
		}
		else if (!clear_earlier(conn, tli, f))
			return false;
	}
	/* abandoned connections are registered under a node only */
	if (seen_node >= 0 && pg_atomic_read_u32(&kf->nodes[seen_node].nabandoned) > 0)
		return kill_abandoned(conn, f);
	return true;
}

/* the id and address the handshake asked (redis_conn.c) */
static bool
name_connection(RedisConn *conn)
{
	const char *addr;
	uint32		newest_tli;
	int64		id = redis_conn_client_id(conn, &addr, &newest_tli);

	/* a newer timeline of this system pushes here: we are not the primary */
	if (newest_tli > current_tli())
		return false;
	/* this connection's user may not kill (an ACL): it pushes fenced */
	if (!redis_conn_kill_allowed(conn))
		return false;
	if (id == 0 || strlen(addr) >= KF_ADDRLEN)
	{
		/* before 6.2, or not allowed: this server gets fenced pushes only */
		SpinLockAcquire(&kf->mutex);
		kf->nodes[seen_node].unsupported = true;
		SpinLockRelease(&kf->mutex);
		return false;
	}
	conn_id = id;
	strlcpy(conn_addr, addr, KF_ADDRLEN);
	conn_named = true;
	return true;
}

/* as a pipeline's exec fails: counted by the circuit breaker */
static KfMode
begin_failed(RedisFailure *f)
{
	if (f->sqlstate != ERRCODE_INVALID_PARAMETER_VALUE)
		rs_circuit_failure(f->message);
	return KF_FAILED;
}

/*
 * A FATAL in the wait (pg_terminate_backend) exits without the ERROR path:
 * abandon the connection before ShutdownPostgres aborts the transaction,
 * which makes its rows writable before the abort callbacks run (a
 * before_shmem_exit callback registered after it runs first).
 */
static void
kf_before_exit(int code, Datum arg)
{
	if (registered)
		rs_killfence_end(false);
}

KfMode
rs_killfence_begin(RedisFailure *f)
{
	uint64		generation;
	RedisConn  *conn;
	KfNode	   *node;
	bool		ok;

	if (kf == NULL || registered)
		return KF_SCRIPT;
	/* a pipeline sent earlier (the drain's overlap) has its replies first */
	redis_client_collect_pending();
	conn = redis_client_conn(&generation);
	/* not connected and the circuit open: the push fails fast as before */
	if (!redis_conn_is_connected(conn) && rs_circuit_is_open())
		return KF_SCRIPT;
	if (!redis_client_ensure_connection(f) ||
		(redis_cluster_state() < 0 && !redis_cluster_detect(f)))
		return begin_failed(f);
	if (redis_cluster_state() != 0)
		return KF_SCRIPT;
	conn = redis_client_conn(&generation);
	/* what the push would do first anyway: its failure is the push's */
	if (!rs_killfence_gate(conn, generation, f))
		return begin_failed(f);
	if (seen_node < 0)
		return KF_SCRIPT;
	node = &kf->nodes[seen_node];
	SpinLockAcquire(&kf->mutex);
	ok = !node->unsupported && node->nentries < KF_ENTRIES;
	/* one left here (a kill failed since the gate): the script */
	for (int i = 0; i < node->nentries && ok; i++)
		ok = !node->e[i].abandoned;
	SpinLockRelease(&kf->mutex);
	if (!ok)
		return KF_SCRIPT;
	if (!conn_named && !name_connection(conn))
		return KF_SCRIPT;
	SpinLockAcquire(&kf->mutex);
	ok = !node->unsupported && node->nentries < KF_ENTRIES;
	if (ok)
	{
		KfEntry    *e = &node->e[node->nentries++];

		e->id = conn_id;
		strlcpy(e->addr, conn_addr, KF_ADDRLEN);
		e->owner = MyProcPid;
		e->abandoned = false;
	}
	SpinLockRelease(&kf->mutex);
	registered = ok;
	registered_node = seen_node;
	registered_generation = generation;
	if (ok && !exit_hook)
	{
		before_shmem_exit(kf_before_exit, (Datum) 0);
		exit_hook = true;
	}
	return ok ? KF_MULTI : KF_SCRIPT;
}

uint64
rs_killfence_generation(void)
{
	return registered ? registered_generation : 0;
}

void
rs_killfence_end(bool confirmed)
{
	KfNode	   *node;

	if (!registered)
		return;
	registered = false;
	node = &kf->nodes[registered_node];
	SpinLockAcquire(&kf->mutex);
	for (int i = 0; i < node->nentries; i++)
		if (node->e[i].owner == MyProcPid && !node->e[i].abandoned &&
			node->e[i].id == conn_id)
		{
			if (confirmed)
				remove_entry(node, i);
			else
			{
				node->e[i].abandoned = true;
				pg_atomic_fetch_add_u32(&node->nabandoned, 1);
			}
			break;
		}
	SpinLockRelease(&kf->mutex);
	if (!confirmed)
	{
		uint64		generation;
		RedisConn  *conn = redis_client_conn(&generation);

		/* never reused: its next exchange would come after the kill */
		if (conn && generation == seen_generation)
			redis_conn_disconnect(conn);
	}
}

bool
rs_killfence_in_flight(void)
{
	return registered;
}
