/* SPDX-License-Identifier: Apache-2.0 */
/** \file A file or block device served through io_uring (liburing). */
#ifndef SB_BDEV_URING_H
#define SB_BDEV_URING_H

#include <stdbool.h>
#include <stdint.h>

struct sb_uring_opts {
	const char *name;
	const char *filename;
	uint32_t block_size;    /* 0 = detect (logical block size of a block device, 512 for files) */
	const char *uuid;       /* NULL or "" = generate */
	/* The file is locked with flock(2) while served: exclusively (no
	 * other server, in this or another process) unless shared, which
	 * takes a shared lock that other shared servers may take too (a
	 * volume on storage that two hosts serve during a live migration). */
	bool shared;
};

/**
 * \return 0, -EEXIST, -ENOENT / -EACCES (file), -EBUSY (the file is
 *         locked by another server: exclusively, or shared when this one
 *         wants it alone), -EINVAL (block size, a
 *         file whose size is not a multiple of the block size is rounded
 *         down; zero blocks is -EINVAL).
 */
int sb_bdev_uring_create(const struct sb_uring_opts *opts);
int sb_bdev_uring_delete(const char *name);
/** Re-read the file size; a change notifies open descriptors. */
int sb_bdev_uring_rescan(const char *name);
/** The same on the app reactor: cb(cb_arg, rc) runs before it returns or later. */
void sb_bdev_uring_rescan_async(const char *name, void (*cb)(void *cb_arg, int rc),
				void *cb_arg);

#endif
