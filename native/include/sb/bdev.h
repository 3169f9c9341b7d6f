/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Block devices: what a bdev user (vhost-blk, bdevperf, Python) needs.
 *
 * Data path (any reactor): open a descriptor, get the calling reactor's I/O
 * channel, submit I/O, get a completion callback on the same reactor.
 * Control path (non-reactor threads, e.g. Python): the sb_bdev_ctl_* calls
 * are synchronous; they run on the app reactor (reactor 0) through
 * sb_call_owned() (sb/thread.h), which copies their arguments and answers,
 * so each also returns -SB_EWAITER_GAVE_UP when it stopped waiting, after
 * which the caller may free what it passed.
 */
#ifndef SB_BDEV_H
#define SB_BDEV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct sb_bdev;
struct sb_bdev_desc;
struct sb_bdev_io;
struct sb_io_channel;

#define SB_BDEV_NAME_MAX 128
#define SB_BDEV_MAX_ALIASES 8
#define SB_UUID_STR_LEN 37

enum sb_bdev_io_type {
	SB_BDEV_IO_READ = 0,
	SB_BDEV_IO_WRITE,
	SB_BDEV_IO_FLUSH,
	SB_BDEV_IO_UNMAP,
	SB_BDEV_IO_WRITE_ZEROES,
	SB_BDEV_IO_RESET,
	SB_BDEV_IO_NUM_TYPES
};

enum sb_bdev_event_type {
	SB_BDEV_EVENT_RESIZE = 0,
	SB_BDEV_EVENT_REMOVE,
};

/** QoS limit slots, SPDK's names; 0 = unlimited. */
enum sb_qos_limit {
	SB_QOS_RW_IOPS = 0,     /* rw_ios_per_sec */
	SB_QOS_RW_MBPS,         /* rw_mbytes_per_sec */
	SB_QOS_R_MBPS,          /* r_mbytes_per_sec */
	SB_QOS_W_MBPS,          /* w_mbytes_per_sec */
	SB_QOS_NUM_LIMITS
};

/**
 * Descriptor event callback; runs on the reactor that opened the
 * descriptor.  On REMOVE the user must close the descriptor (after its
 * in-flight I/O completes); new I/O fails with -ENODEV.
 */
typedef void (*sb_bdev_event_cb)(enum sb_bdev_event_type type, struct sb_bdev *bdev,
				 void *event_ctx);

/**
 * I/O completion, on the submitting reactor.
 * \param status 0 on success, negative errno on failure (-EIO, -ENOSPC, ...).
 * The callee must release io with sb_bdev_free_io().
 */
typedef void (*sb_bdev_io_cb)(struct sb_bdev_io *io, int status, void *cb_arg);

/* ---- data path (reactor threads) ---- */

/**
 * Open a bdev by name, alias or UUID.  Any reactor; the descriptor belongs
 * to that reactor.
 * \return 0, -ENODEV (no such bdev), -EPERM (write requested on a bdev
 *         claimed by someone else), -ENOMEM.
 */
int sb_bdev_open(const char *name, bool write, sb_bdev_event_cb event_cb, void *event_ctx,
		 struct sb_bdev_desc **desc);
/** Close on the reactor that opened it. Releases a claim taken through it. */
void sb_bdev_close(struct sb_bdev_desc *desc);
/**
 * Take the write claim: until the descriptor closes no other descriptor
 * can open the bdev for writing.
 * \return 0, -EPERM (claimed by another, or a second writer is open; the
 *         message names the owner), -EBADF (descriptor is read-only).
 */
int sb_bdev_claim(struct sb_bdev_desc *desc, const char *owner);

struct sb_bdev *sb_bdev_desc_get_bdev(struct sb_bdev_desc *desc);
/** This reactor's I/O channel for the descriptor's bdev; put with sb_put_io_channel(). */
struct sb_io_channel *sb_bdev_get_io_channel(struct sb_bdev_desc *desc);

const char *sb_bdev_get_name(const struct sb_bdev *bdev);
uint32_t sb_bdev_get_block_size(const struct sb_bdev *bdev);
uint32_t sb_bdev_get_physical_block_size(const struct sb_bdev *bdev);
uint64_t sb_bdev_get_num_blocks(const struct sb_bdev *bdev);
bool sb_bdev_io_type_supported(const struct sb_bdev *bdev, enum sb_bdev_io_type type);
/** Longest single transfer the backend takes in blocks (0 = no limit). */
uint32_t sb_bdev_get_max_transfer_blocks(const struct sb_bdev *bdev);

/*
 * Submission.  iov must stay valid until the completion.  Return 0 when
 * the I/O was accepted (cb runs later, never inside this call), or:
 * -EINVAL  range beyond the end of the bdev, bad iovec sum, unsupported type
 * -EBADF   write on a read-only descriptor
 * -ENODEV  bdev being removed
 * -ENOMEM  no bdev_io left in the channel's pool: retry after a completion
 */
int sb_bdev_readv_blocks(struct sb_bdev_desc *desc, struct sb_io_channel *ch, struct iovec *iov,
			 int iovcnt, uint64_t offset_blocks, uint64_t num_blocks, sb_bdev_io_cb cb,
			 void *cb_arg);
int sb_bdev_writev_blocks(struct sb_bdev_desc *desc, struct sb_io_channel *ch, struct iovec *iov,
			  int iovcnt, uint64_t offset_blocks, uint64_t num_blocks, sb_bdev_io_cb cb,
			  void *cb_arg);
int sb_bdev_flush(struct sb_bdev_desc *desc, struct sb_io_channel *ch, sb_bdev_io_cb cb,
		  void *cb_arg);
int sb_bdev_unmap_blocks(struct sb_bdev_desc *desc, struct sb_io_channel *ch,
			 uint64_t offset_blocks, uint64_t num_blocks, sb_bdev_io_cb cb, void *cb_arg);
int sb_bdev_write_zeroes_blocks(struct sb_bdev_desc *desc, struct sb_io_channel *ch,
				uint64_t offset_blocks, uint64_t num_blocks, sb_bdev_io_cb cb,
				void *cb_arg);
int sb_bdev_reset(struct sb_bdev_desc *desc, struct sb_io_channel *ch, sb_bdev_io_cb cb,
		  void *cb_arg);
void sb_bdev_free_io(struct sb_bdev_io *io);

/* ---- control path (non-reactor threads; synchronous) ---- */

struct sb_bdev_info {
	char name[SB_BDEV_NAME_MAX];
	char aliases[SB_BDEV_MAX_ALIASES][SB_BDEV_NAME_MAX];
	uint32_t num_aliases;
	char uuid[SB_UUID_STR_LEN];
	char product_name[64];
	char module[32];
	uint32_t block_size;
	uint32_t physical_block_size;
	uint64_t num_blocks;
	bool claimed;
	char claimed_by[64];
	bool supported_io_types[SB_BDEV_IO_NUM_TYPES];
	uint64_t qos_limits[SB_QOS_NUM_LIMITS];
	uint32_t open_descs;
	/** Module-specific facts as a JSON object text, e.g. {"filename": "..."}. */
	char driver_specific[512];
};

/** Fill info of one bdev (name, alias or UUID). \return 0 or -ENODEV. */
int sb_bdev_ctl_get_info(const char *name, struct sb_bdev_info *info);
/**
 * List bdevs in registration order.
 * \return 0; *count is the total even when it exceeds max (call again bigger).
 */
int sb_bdev_ctl_list(struct sb_bdev_info *out, uint32_t max, uint32_t *count);

/** SPDK bdev_get_iostat fields. Ticks are sb_get_ticks() ticks. */
struct sb_bdev_iostat {
	char name[SB_BDEV_NAME_MAX];
	uint64_t bytes_read, num_read_ops;
	uint64_t bytes_written, num_write_ops;
	uint64_t bytes_unmapped, num_unmap_ops;
	uint64_t bytes_copied, num_copy_ops;
	uint64_t read_latency_ticks, max_read_latency_ticks, min_read_latency_ticks;
	uint64_t write_latency_ticks, max_write_latency_ticks, min_write_latency_ticks;
	uint64_t unmap_latency_ticks, max_unmap_latency_ticks, min_unmap_latency_ticks;
	uint64_t copy_latency_ticks, max_copy_latency_ticks, min_copy_latency_ticks;
	uint64_t num_write_zeroes_ops, bytes_write_zeroes;
	uint64_t num_flush_ops, num_reset_ops;
	uint64_t num_io_errors;
	uint64_t queue_depth;      /* in flight now, all channels */
	uint64_t io_time;          /* ms during which queue_depth > 0 */
	uint64_t weighted_io_time; /* sum of queue_depth per ms */
};

/**
 * Aggregate statistics of a bdev over all its channels (a for_each_channel
 * walk, so it never races the data path).  \return 0 or -ENODEV.
 */
int sb_bdev_ctl_get_iostat(const char *name, struct sb_bdev_iostat *stat);

/**
 * Set QoS limits (SB_QOS_* slots; 0 = no limit; UINT64_MAX = leave as is).
 * IOPS limits must be multiples of 1000 like SPDK's (-EINVAL otherwise).
 * Enforced per bdev on one reactor's channel at a time without locks.
 */
int sb_bdev_ctl_set_qos(const char *name, const uint64_t limits[SB_QOS_NUM_LIMITS]);

/** Add / remove an alias. \return 0, -EEXIST, -ENODEV, -EINVAL. */
int sb_bdev_ctl_alias_add(const char *name, const char *alias);
int sb_bdev_ctl_alias_del(const char *name, const char *alias);

/** Tick rate of the latency fields. */
uint64_t sb_bdev_ticks_hz(void);

#ifdef __cplusplus
}
#endif
#endif /* SB_BDEV_H */
