/*-------------------------------------------------------------------------
 *
 * cluster.h
 *		Redis Cluster: slot map, node table, redirections, slot tags.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_CLUSTER_H
#define RS_CLUSTER_H

#include "postgres.h"

#include "redis_value.h"

#define RS_CLUSTER_SLOTS 16384

typedef struct ClusterNode
{
	char	   *host;			/* TopMemoryContext */
	int			port;
	bool		master;			/* owns slots in the current map */
	int			nslots;			/* slots it owns in the current map */
	bool		in_map;			/* listed by the last CLUSTER SLOTS */
	void	   *conn;			/* its connection (redis_cluster.c), or NULL */
	uint64		round_trips;	/* exchanges with this node, this backend */
	uint64		redirections;	/* MOVED and ASK replies from this node */
	uint64		conn_generation;	/* of its connection's latest handshake
									 * (redis_cluster.c), 0: never connected */
	char		display[300];
} ClusterNode;

/* the map: which node owns each slot; -1 when no node does */
extern int	rs_cluster_owner[RS_CLUSTER_SLOTS];
extern ClusterNode *rs_cluster_nodes;
extern int	rs_cluster_nnodes;
extern uint64 rs_cluster_refreshes; /* map loads, this backend */
extern uint64 rs_cluster_redirections;	/* MOVED + ASK, this backend */

/* find a node by address, adding it when create (returns -1 otherwise) */
extern int	rs_cluster_node_index(const char *host, int port, bool create);

/* "cluster_enabled:1" in an INFO cluster reply */
extern bool rs_cluster_info_enabled(const char *info);

/*
 * Load the slot map from a CLUSTER SLOTS reply; seed_host is the address of
 * the node that answered (replaces an empty host in the reply).  false with
 * *err set when the reply is not a slot map.
 */
extern bool rs_cluster_load_slots(RedisValue *reply, const char *seed_host, char **err);

/*
 * Add to the map the masters a CLUSTER NODES reply (text) lists that own no
 * slot (a new master importing its first slot), as masters with no slots
 */
extern void rs_cluster_add_slotless_masters(const char *nodes, const char *seed_host);

/* forget the map (next use reloads it) */
extern void rs_cluster_forget_map(void);
extern bool rs_cluster_map_loaded(void);

/*
 * Parse "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>"; *host
 * palloc'd.  false for any other text.
 */
extern bool rs_cluster_parse_redirect(const char *err, bool *ask, int *slot,
									  char **host, int *port);

/* TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN: the command was not run, retry later */
extern bool rs_cluster_retryable_error(const char *err);

/* a short string whose hash slot is slot (for hash tags of companion keys) */
extern const char *rs_cluster_slot_tag(int slot);

/* the lowest slot node i owns in the current map, -1 if none */
extern int	rs_cluster_first_slot(int node);

/* Redis Cluster hash slot of a key (CRC16 of the key or its {hash tag}) */
extern uint16 redis_key_slot(const char *key, size_t len);

/* masters of the current map, in node-table order */
extern int	rs_cluster_masters(int **idx);

#endif							/* RS_CLUSTER_H */
