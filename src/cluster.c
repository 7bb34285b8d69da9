/*-------------------------------------------------------------------------
 *
 * cluster.c
 *		Redis Cluster support: the slot map, the node table, redirection
 *		parsing, hash slots and slot tags.  The routing itself (splitting a pipeline by
 *		node, sending all sub-pipelines at once, following MOVED and ASK)
 *		is in redis_cluster.c, which owns the connections.
 *
 * hiredis 0.14 has no cluster support, so this follows what the mature
 * cluster clients do: the map comes from CLUSTER SLOTS, asked of any node;
 * every slot is owned by one master; a MOVED reply means the map is out of
 * date (reload it, retry); an ASK reply means the slot is being migrated and
 * this one command must go to the named node, preceded by ASKING.
 *
 * The node table lives for the life of the backend (TopMemoryContext); a
 * node that leaves the map keeps its entry (and its statistics) with no
 * slots.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "cluster.h"

int			rs_cluster_owner[RS_CLUSTER_SLOTS];
ClusterNode *rs_cluster_nodes = NULL;
int			rs_cluster_nnodes = 0;
uint64		rs_cluster_refreshes = 0;
uint64		rs_cluster_redirections = 0;

static int	max_nodes = 0;
static bool map_loaded = false;

int
rs_cluster_node_index(const char *host, int port, bool create)
{
	ClusterNode *n;

	for (int i = 0; i < rs_cluster_nnodes; i++)
		if (rs_cluster_nodes[i].port == port && strcmp(rs_cluster_nodes[i].host, host) == 0)
			return i;
	if (!create)
		return -1;
	if (rs_cluster_nnodes == max_nodes)
	{
		int			newmax = max_nodes ? max_nodes * 2 : 8;

		if (rs_cluster_nodes)
			rs_cluster_nodes = repalloc(rs_cluster_nodes, sizeof(ClusterNode) * newmax);
		else
			rs_cluster_nodes = MemoryContextAlloc(TopMemoryContext, sizeof(ClusterNode) * newmax);
		max_nodes = newmax;
	}
	n = &rs_cluster_nodes[rs_cluster_nnodes];
	memset(n, 0, sizeof(*n));
	n->host = MemoryContextStrdup(TopMemoryContext, host);
	n->port = port;
	if (strchr(host, ':'))
		snprintf(n->display, sizeof(n->display), "[%s]:%d", host, port);
	else
		snprintf(n->display, sizeof(n->display), "%s:%d", host, port);
	return rs_cluster_nnodes++;
}

bool
rs_cluster_info_enabled(const char *info)
{
	return info != NULL && strstr(info, "cluster_enabled:1") != NULL;
}

void
rs_cluster_forget_map(void)
{
	map_loaded = false;
}

bool
rs_cluster_map_loaded(void)
{
	return map_loaded;
}

bool
rs_cluster_load_slots(RedisValue *reply, const char *seed_host, char **err)
{
	static int	owner[RS_CLUSTER_SLOTS];
	int		   *listed = palloc(sizeof(int) * Max(reply->nelem, 1) * 4);
	int			nlisted = 0,
				maxlisted = Max(reply->nelem, 1) * 4;

	if (reply->type != RV_ARRAY)
	{
		*err = pstrdup("CLUSTER SLOTS did not return an array");
		return false;
	}
	for (int s = 0; s < RS_CLUSTER_SLOTS; s++)
		owner[s] = -1;
	for (int i = 0; i < reply->nelem; i++)
	{
		RedisValue *r = &reply->elems[i];
		RedisValue *m;
		const char *host;
		int			idx;

		if (r->type != RV_ARRAY || r->nelem < 3 ||
			r->elems[0].type != RV_INTEGER || r->elems[1].type != RV_INTEGER ||
			r->elems[2].type != RV_ARRAY || r->elems[2].nelem < 2 ||
			r->elems[2].elems[1].type != RV_INTEGER)
		{
			*err = pstrdup("malformed CLUSTER SLOTS entry");
			return false;
		}
		m = &r->elems[2];
		host = (m->elems[0].type == RV_STRING && m->elems[0].len > 0 &&
				strcmp(m->elems[0].str, "?") != 0) ? m->elems[0].str : seed_host;
		idx = rs_cluster_node_index(host, (int) m->elems[1].integer, true);
		if (nlisted == maxlisted)
			listed = repalloc(listed, sizeof(int) * (maxlisted *= 2));
		listed[nlisted++] = idx;
		for (int64 s = r->elems[0].integer; s <= r->elems[1].integer; s++)
			if (s >= 0 && s < RS_CLUSTER_SLOTS)
				owner[s] = idx;
		/* replicas: known, not routed to */
		for (int j = 3; j < r->nelem; j++)
			if (r->elems[j].type == RV_ARRAY && r->elems[j].nelem >= 2 &&
				r->elems[j].elems[0].type == RV_STRING && r->elems[j].elems[1].type == RV_INTEGER)
			{
				if (nlisted == maxlisted)
					listed = repalloc(listed, sizeof(int) * (maxlisted *= 2));
				listed[nlisted++] =
					rs_cluster_node_index(r->elems[j].elems[0].len > 0 ? r->elems[j].elems[0].str : seed_host,
										  (int) r->elems[j].elems[1].integer, true);
			}
	}
	memcpy(rs_cluster_owner, owner, sizeof(owner));
	for (int i = 0; i < rs_cluster_nnodes; i++)
	{
		rs_cluster_nodes[i].nslots = 0;
		rs_cluster_nodes[i].master = false;
		rs_cluster_nodes[i].in_map = false;
	}
	for (int i = 0; i < nlisted; i++)
		rs_cluster_nodes[listed[i]].in_map = true;
	for (int s = 0; s < RS_CLUSTER_SLOTS; s++)
		if (owner[s] >= 0)
		{
			rs_cluster_nodes[owner[s]].nslots++;
			rs_cluster_nodes[owner[s]].master = true;
		}
	map_loaded = true;
	rs_cluster_refreshes++;
	return true;
}

/* one CLUSTER NODES line, split (the line is modified) */
typedef struct NodesLine
{
	const char *ip;				/* "" when the node does not know it */
	const char *hostname;		/* "" when none is announced */
	int			port;
	bool		usable_master;	/* a master, not failed, with an address */
	bool		owns_slots;
} NodesLine;

static bool
split_nodes_line(char *line, NodesLine *nl)
{
	char	   *fsave = NULL;
	char	   *addr = NULL;
	char	   *flags = NULL;
	char	   *at;
	char	   *comma;
	char	   *colon;
	int			nf = 0;

	memset(nl, 0, sizeof(*nl));
	for (char *f = strtok_r(line, " \r", &fsave); f; f = strtok_r(NULL, " \r", &fsave), nf++)
	{
		if (nf == 1)
			addr = f;
		else if (nf == 2)
			flags = f;
		else if (nf >= 8 && f[0] != '[')
			nl->owns_slots = true;	/* "[slot->-id]": a migration, on myself */
	}
	if (nf < 3)
		return false;
	/* "ip:port@cport[,hostname[,...]]" ("ip:port" before Redis 4) */
	if ((comma = strchr(addr, ',')) != NULL)
	{
		*comma = '\0';
		nl->hostname = comma + 1;
		if ((comma = strchr(comma + 1, ',')) != NULL)
			*comma = '\0';
	}
	else
		nl->hostname = "";
	if ((at = strchr(addr, '@')) != NULL)
		*at = '\0';
	if ((colon = strrchr(addr, ':')) == NULL)
		return false;
	*colon = '\0';
	nl->ip = addr;
	nl->port = atoi(colon + 1);
	if (nl->port <= 0 || nl->port > 65535)
		return false;
	nl->usable_master = strstr(flags, "master") != NULL &&
		strstr(flags, "fail") == NULL && strstr(flags, "noaddr") == NULL &&
		strstr(flags, "handshake") == NULL;
	return true;
}

/* is host:port a master of the map CLUSTER SLOTS just gave? */
static bool
is_slot_owner(const char *host, int port)
{
	int			idx = rs_cluster_node_index(host, port, false);

	return idx >= 0 && rs_cluster_nodes[idx].master;
}

/*
 * The masters a CLUSTER NODES reply lists that own no slot: a master just
 * added (add-node) while a reshard imports its first slot holds that slot's
 * keys before the slot is its own, and CLUSTER SLOTS, which lists slot
 * owners only, does not name it.  Each such master joins the map as a
 * master with no slots (routed to by nothing but target_master: a SCAN of
 * every master).  A node that failed, has no address yet, or is still in
 * the handshake is left out.  Lines: "<id> <ip:port@cport[,hostname]>
 * <flags> <master id> <ping> <pong> <epoch> <link> [slot ...]".
 *
 * A master owning slots is CLUSTER SLOTS's: it is not added again.  Its
 * endpoint there (cluster-preferred-endpoint-type: the IP, the hostname,
 * or "?", which is the seed's host) tells how to name the slotless ones:
 * a cluster announcing hostnames is reached by them (TLS certificates,
 * NAT), not by the IPs CLUSTER NODES also gives.
 */
void
rs_cluster_add_slotless_masters(const char *nodes, const char *seed_host)
{
	char	   *copy = pstrdup(nodes);
	char	   *save = NULL;
	NodesLine  *lines = NULL;
	int			nlines = 0,
				maxlines = 0;
	enum
	{
		BY_IP, BY_HOSTNAME, BY_SEED
	}			naming = BY_IP;

	/* a seed reached by a unix socket has no host to name a node by */
	if (seed_host == NULL)
		seed_host = "";
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
	{
		NodesLine	nl;

		if (!split_nodes_line(line, &nl) || !nl.usable_master)
			continue;
		if (nl.owns_slots)
		{
			/* how CLUSTER SLOTS named this slot owner */
			if (is_slot_owner(nl.ip[0] ? nl.ip : seed_host, nl.port))
				naming = BY_IP;
			else if (nl.hostname[0] && is_slot_owner(nl.hostname, nl.port))
				naming = BY_HOSTNAME;
			else if (is_slot_owner(seed_host, nl.port))
				naming = BY_SEED;
			continue;
		}
		if (nlines == maxlines)
		{
			maxlines = maxlines ? maxlines * 2 : 8;
			lines = lines ? repalloc(lines, sizeof(NodesLine) * maxlines) :
				palloc(sizeof(NodesLine) * maxlines);
		}
		lines[nlines++] = nl;
	}
	for (int i = 0; i < nlines; i++)
	{
		const char *host;
		int			idx;

		if (naming == BY_HOSTNAME && lines[i].hostname[0])
			host = lines[i].hostname;
		else if (naming == BY_SEED || !lines[i].ip[0])
			host = seed_host;
		else
			host = lines[i].ip;
		if (host[0] == '\0')
			continue;
		idx = rs_cluster_node_index(host, lines[i].port, true);
		if (rs_cluster_nodes[idx].master)
			continue;
		rs_cluster_nodes[idx].master = true;
		rs_cluster_nodes[idx].in_map = true;
	}
	if (lines)
		pfree(lines);
	pfree(copy);
}

bool
rs_cluster_parse_redirect(const char *err, bool *ask, int *slot, char **host, int *port)
{
	const char *p;
	const char *colon;
	char	   *end;
	long		v;

	if (strncmp(err, "MOVED ", 6) == 0)
		*ask = false;
	else if (strncmp(err, "ASK ", 4) == 0)
		*ask = true;
	else
		return false;
	p = err + (*ask ? 4 : 6);
	v = strtol(p, &end, 10);
	if (end == p || *end != ' ' || v < 0 || v >= RS_CLUSTER_SLOTS)
		return false;
	*slot = (int) v;
	p = end + 1;
	colon = strrchr(p, ':');
	if (colon == NULL)
		return false;
	v = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || v <= 0 || v > 65535)
		return false;
	*port = (int) v;
	*host = pnstrdup(p, colon - p);
	/* "[::1]:7000" in some versions; an empty host means the node answering */
	if ((*host)[0] == '[')
	{
		size_t		l = strlen(*host);

		if (l >= 2 && (*host)[l - 1] == ']')
			*host = pnstrdup(*host + 1, l - 2);
	}
	return true;
}

bool
rs_cluster_retryable_error(const char *err)
{
	return strncmp(err, "TRYAGAIN", 8) == 0 || strncmp(err, "CLUSTERDOWN", 11) == 0 ||
		strncmp(err, "LOADING", 7) == 0 || strncmp(err, "MASTERDOWN", 10) == 0;
}

const char *
rs_cluster_slot_tag(int slot)
{
	static char *tags[RS_CLUSTER_SLOTS];
	static bool filled = false;

	if (!filled)
	{
		int			left = RS_CLUSTER_SLOTS;
		char		buf[16];

		/*
		 * the shortest decimal strings: every slot is reached well before
		 * 10^6
		 */
		for (int i = 0; left > 0 && i < 10000000; i++)
		{
			int			len = snprintf(buf, sizeof(buf), "%d", i);
			int			s = redis_key_slot(buf, len);

			if (tags[s] == NULL)
			{
				tags[s] = MemoryContextStrdup(TopMemoryContext, buf);
				left--;
			}
		}
		filled = true;
	}
	Assert(slot >= 0 && slot < RS_CLUSTER_SLOTS);
	return tags[slot];
}

int
rs_cluster_first_slot(int node)
{
	for (int s = 0; s < RS_CLUSTER_SLOTS; s++)
		if (rs_cluster_owner[s] == node)
			return s;
	return -1;
}

int
rs_cluster_masters(int **idx)
{
	int			n = 0;

	*idx = palloc(sizeof(int) * Max(rs_cluster_nnodes, 1));
	for (int i = 0; i < rs_cluster_nnodes; i++)
		if (rs_cluster_nodes[i].master)
			(*idx)[n++] = i;
	return n;
}

/* ----------------------------------------------------------------
 * Cluster hash slots (CRC16-CCITT/XMODEM, as Redis Cluster uses)
 * ---------------------------------------------------------------- */

static uint16
crc16(const char *buf, size_t len)
{
	/* table-driven (one lookup per byte), built at the first use */
	static uint16 table[256];
	static bool table_ready = false;
	uint16		crc = 0;

	if (!table_ready)
	{
		for (int i = 0; i < 256; i++)
		{
			uint16		t = (uint16) (i << 8);

			for (int b = 0; b < 8; b++)
				t = (t & 0x8000) ? (uint16) ((t << 1) ^ 0x1021) : (uint16) (t << 1);
			table[i] = t;
		}
		table_ready = true;
	}
	for (size_t i = 0; i < len; i++)
		crc = (uint16) (crc << 8) ^ table[((crc >> 8) ^ (unsigned char) buf[i]) & 0xff];
	return crc;
}

uint16
redis_key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open)
	{
		size_t		start = open - key + 1;
		const char *close = memchr(key + start, '}', len - start);

		if (close && close > key + start)
			return crc16(key + start, close - (key + start)) & 16383;
	}
	return crc16(key, len) & 16383;
}
