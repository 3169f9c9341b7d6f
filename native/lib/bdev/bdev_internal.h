/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private state of the bdev core, shared by bdev.c (registry, descriptors,
 * lifecycle), bdev_io.c (submit/complete, pools), bdev_stat.c, bdev_qos.c
 * and bdev_ctl.c.  Backends never include this.
 *
 * Ownership (STYLE rule 4):
 * - the registry and every sb_bdev_internal field except the ones marked
 *   otherwise belong to the app reactor (reactor 0); g_bdev_lock only lets
 *   other reactors look names up and open/close descriptors;
 * - a struct sb_bdev_channel belongs to the reactor that created it;
 * - the QoS state belongs to the reactor that won qos->reactor.
 */
#ifndef SB_BDEV_INTERNAL_H
#define SB_BDEV_INTERNAL_H

#include "sb/bdev_module.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

/*
 * sb_bdev_io objects per channel: allocated in chunks as the queue depth
 * grows (never per I/O), up to a vhost-blk queue's 1024 entries.
 */
#define SB_BDEV_IO_POOL_SIZE 1024
#define SB_BDEV_IO_POOL_CHUNK 64
/* Children of a split I/O in flight at once. */
#define SB_BDEV_SPLIT_MAX_CHILDREN 8
/* iovecs a split child can carry. */
#define SB_BDEV_SPLIT_IOVS 16

/* Per-channel counters; the stat fields of sb_bdev_iostat minus the name. */
struct sb_bdev_stat {
	uint64_t bytes_read, num_read_ops;
	uint64_t bytes_written, num_write_ops;
	uint64_t bytes_unmapped, num_unmap_ops;
	uint64_t read_latency_ticks, max_read_latency_ticks, min_read_latency_ticks;
	uint64_t write_latency_ticks, max_write_latency_ticks, min_write_latency_ticks;
	uint64_t unmap_latency_ticks, max_unmap_latency_ticks, min_unmap_latency_ticks;
	uint64_t num_write_zeroes_ops, bytes_write_zeroes;
	uint64_t num_flush_ops, num_reset_ops;
	uint64_t num_io_errors;
	/* Ticks during which this channel had I/O in flight, and that times the depth. */
	uint64_t io_time_ticks;
	uint64_t weighted_io_time_ticks;
};

struct sb_bdev_desc {
	struct sb_bdev *bdev;
	bool write;
	bool closed;
	sb_bdev_event_cb event_cb;
	void *event_ctx;
	/* Reactor the events are delivered on. */
	struct sb_reactor *reactor;
	/* 1 for the open itself + 1 per event message in flight (atomic). */
	uint32_t refs;
	TAILQ_ENTRY(sb_bdev_desc) link;
};

struct sb_bdev_qos;
struct sb_bdev_stat_walk;

struct sb_bdev_internal {
	TAILQ_ENTRY(sb_bdev) link;
	char name[SB_BDEV_NAME_MAX];
	char uuid_str[SB_UUID_STR_LEN];
	char aliases[SB_BDEV_MAX_ALIASES][SB_BDEV_NAME_MAX];
	uint32_t num_aliases;
	/* Under g_bdev_lock. */
	TAILQ_HEAD(, sb_bdev_desc) descs;
	uint32_t num_descs;
	struct sb_bdev_desc *claim_desc;
	char claimed_by[64];
	/* Read lock-free by the I/O path; set once on the app reactor. */
	bool removing;
	bool destructing;
	void (*unregister_cb)(void *cb_arg, int rc);
	void *unregister_cb_arg;
	/* Counters of channels already destroyed (under g_bdev_lock). */
	struct sb_bdev_stat stat_gone;
	/* The iostat walk in progress (under g_bdev_lock); bdev_stat.c. */
	struct sb_bdev_stat_walk *stat_walk;
	/* Created on first set_qos, freed at destruct; see bdev_qos.c. */
	struct sb_bdev_qos *qos;
	uint64_t qos_limits[SB_QOS_NUM_LIMITS];
	size_t io_size;     /* sizeof(sb_bdev_io) + driver ctx + core ctx, 64-aligned */
	size_t io_core_off; /* where struct sb_bdev_io_core starts in it */
};

/* Core-private per-I/O area, right after the driver context. */
struct sb_bdev_io_core {
	struct sb_bdev_io *parent;     /* split child: its parent */
	uint64_t split_offset;         /* parent: next block to split off */
	uint64_t split_remaining;      /* parent: blocks not yet split off */
	uint32_t split_outstanding;    /* parent: children in flight */
	int split_iov_idx;             /* parent: iovec the next child starts in */
	size_t split_iov_off;          /* parent: bytes into that iovec */
	struct sb_reactor *origin;     /* reactor the user submitted on */
	struct iovec child_iov[SB_BDEV_SPLIT_IOVS];
};

struct sb_bdev_channel {
	struct sb_bdev *bdev;
	struct sb_io_channel *module_ch;
	struct sb_reactor *reactor;
	struct sb_poller *cpl_poller;
	/* Free sb_bdev_io objects. */
	TAILQ_HEAD(, sb_bdev_io) free_ios;
	void *chunks[SB_BDEV_IO_POOL_SIZE / SB_BDEV_IO_POOL_CHUNK];
	uint32_t num_chunks;
	/* Completions to deliver from the poller (never inside a submit call). */
	TAILQ_HEAD(, sb_bdev_io) deferred;
	/* In flight from this channel and the tick of its last change. */
	uint64_t queue_depth;
	uint64_t qd_change_tsc;
	struct sb_bdev_stat stat;
	/* Id of the last iostat walk that counted this channel. */
	uint64_t stat_walk_seen;
};

extern pthread_mutex_t g_bdev_lock;

static inline struct sb_bdev_io_core *
_bdev_io_core(struct sb_bdev_io *io)
{
	return (struct sb_bdev_io_core *)io->internal.core_ctx;
}

/* bdev.c */
int _bdev_alias_add(struct sb_bdev *bdev, const char *alias);
int _bdev_alias_del(struct sb_bdev *bdev, const char *alias);
struct sb_bdev *_bdev_lookup_locked(const char *name);
bool _bdev_on_app_reactor(void);
void _bdev_release_desc_ref(struct sb_bdev_desc *desc);
void _bdev_foreach(void (*fn)(struct sb_bdev *bdev, void *ctx), void *ctx);
/* Newest registered bdev, or NULL. */
struct sb_bdev *_bdev_last(void);

/* bdev_io.c */
int _bdev_channel_create(void *io_device, void *ctx_buf);
void _bdev_channel_destroy(void *io_device, void *ctx_buf);
/* Hand a (non-split) I/O to the backend on module channel ch. */
void _bdev_io_submit_to_module(struct sb_bdev_io *io, struct sb_io_channel *module_ch);
/* Account and call the user's callback; on io's origin reactor. */
void _bdev_io_complete_user(struct sb_bdev_io *io);

/* bdev_stat.c */
void _bdev_stat_init(struct sb_bdev_stat *st);
void _bdev_stat_add(struct sb_bdev_stat *dst, const struct sb_bdev_stat *src);
void _bdev_stat_account(struct sb_bdev_channel *bch, struct sb_bdev_io *io, uint64_t now);
void _bdev_qd_change(struct sb_bdev_channel *bch, int delta, uint64_t now);
/* A channel goes away: keep its counters (g_bdev_lock held). */
void _bdev_stat_channel_gone_locked(struct sb_bdev_channel *bch);

/* bdev_stat.c: sum the channels' counters into out, then cb (calling reactor). */
void _bdev_iostat_collect(struct sb_bdev *bdev, struct sb_bdev_iostat *out,
			  void (*cb)(void *cb_arg, int rc), void *cb_arg);

/* bdev_qos.c */
/* Returns true when the QoS layer took the I/O (it is queued or forwarded). */
bool _bdev_qos_submit(struct sb_bdev_io *io, int *rc);
int _bdev_qos_set(struct sb_bdev *bdev, const uint64_t limits[SB_QOS_NUM_LIMITS]);
/* Stop QoS at destruct; cb(ctx) once the owning reactor let go. App reactor. */
void _bdev_qos_destroy(struct sb_bdev *bdev, void (*cb)(void *ctx), void *ctx);

#endif /* SB_BDEV_INTERNAL_H */
