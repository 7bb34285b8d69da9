/*-------------------------------------------------------------------------
 *
 * reply_limit.h
 *		What Redis lets one client's unread replies grow to.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REDIS_SYNC_REPLY_LIMIT_H
#define REDIS_SYNC_REPLY_LIMIT_H

/*
 * The bytes of replies a reader may leave unread at a time on the current
 * connection: SIZE_MAX when Redis limits no client's replies, else page or
 * half Redis's limit if smaller (16 kB at least); page also when Redis does
 * not say.  Redis is asked once per connection.
 */
extern size_t rs_reply_page_bytes(size_t page);

/*
 * The smaller of the hard and soft client-output-buffer-limit of the normal
 * class, as the last rs_reply_page_bytes() found it (0: none, or not said).
 */
extern size_t rs_reply_limit_bytes(void);

/* ask Redis again at the next rs_reply_page_bytes() */
extern void rs_reply_limit_forget(void);

#endif							/* REDIS_SYNC_REPLY_LIMIT_H */
