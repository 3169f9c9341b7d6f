/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by bdev_uring.c (control path) and bdev_uring_io.c (data path). */
#ifndef SB_BDEV_URING_INTERNAL_H
#define SB_BDEV_URING_INTERNAL_H

#include "sb/bdev_module.h"

#include <limits.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#define SB_URING_QUEUE_DEPTH 512
/*
 * Prepared SQEs are submitted as soon as this many wait, not only once per
 * poll: a burst of completions then goes back to the device as a stream of
 * small batches instead of one wave.  bench/RESULTS.md has the measurement
 * (whole-poll batches were 10-25 % behind fio at QD 32 on a virtio disk).
 */
#define SB_URING_SUBMIT_BATCH 4
#define SB_URING_ZERO_BUF_LEN (1024 * 1024)
/* Bounce buffers kept per ring; bigger requests get a one-off buffer. */
#define SB_URING_BOUNCE_LEN (128 * 1024)
#define SB_URING_BOUNCE_POOL 16
/* iovecs a partially done readv/writev can be resumed with. */
#define SB_URING_RESUME_IOVS 16
/* How long a file locked by another server is waited for (_uring_lock). */
#define SB_URING_LOCK_WAIT_MS 2000
#define SB_URING_LOCK_STEP_MS 10

struct uring_disk {
	struct sb_bdev bdev;
	char name[SB_BDEV_NAME_MAX];
	char filename[PATH_MAX];
	int fd;
	bool o_direct;
	bool is_blockdev;
	bool shared;        /* flock(LOCK_SH): other servers of the file allowed */
	/* Buffer alignment O_DIRECT needs (1 without O_DIRECT). */
	uint32_t mem_align;
	/* fallocate modes found unsupported (set once by any reactor; only ever true). */
	bool no_zero_range;
	bool no_punch_hole;
};

struct uring_bounce {
	SLIST_ENTRY(uring_bounce) link;
};

/* Per reactor: the channel of g_uring_group. */
struct uring_group {
	struct io_uring ring;
	int efd;
	struct sb_poller *poller;
	uint32_t inflight;  /* SQEs handed out, CQE not reaped */
	uint32_t unsubmitted;
	TAILQ_HEAD(, uring_task) wait; /* no SQE was free */
	SLIST_HEAD(, uring_bounce) bounce_free;
	uint32_t bounce_count;
};

enum uring_op {
	URING_OP_RW = 0,
	URING_OP_FSYNC,
	URING_OP_ZERO_RANGE,
	URING_OP_PUNCH,
	URING_OP_ZERO_WRITE,
};

/* Driver context of each sb_bdev_io. */
struct uring_task {
	struct sb_bdev_io *io;
	struct uring_group *grp;
	enum uring_op op;
	uint64_t off;  /* bytes */
	uint64_t len;
	uint64_t done;
	struct iovec *iovs;
	int iovcnt;
	void *bounce;
	bool bounce_pooled;
	struct iovec bounce_iov;
	struct iovec resume_iov[SB_URING_RESUME_IOVS];
	TAILQ_ENTRY(uring_task) link;
};

extern uint8_t *g_uring_zero_buf;

/* bdev_uring_io.c */
void _uring_submit_request(struct sb_io_channel *ch, struct sb_bdev_io *io);
int _uring_group_poll(void *ctx);
void _uring_bounce_pool_free(struct uring_group *grp);

#endif
