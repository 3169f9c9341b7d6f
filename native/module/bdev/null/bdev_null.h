/* SPDX-License-Identifier: Apache-2.0 */
/** \file Null bdevs: reads complete without touching data, writes are dropped. */
#ifndef SB_BDEV_NULL_H
#define SB_BDEV_NULL_H

#include <stdint.h>

struct sb_null_opts {
	const char *name;
	const char *uuid;       /* NULL or "" = generate */
	uint64_t num_blocks;
	uint32_t block_size;
	uint32_t physical_block_size;
};

int sb_bdev_null_create(const struct sb_null_opts *opts);
int sb_bdev_null_delete(const char *name);
/** New size in MiB (SPDK's bdev_null_resize); open descriptors get RESIZE. */
int sb_bdev_null_resize(const char *name, uint64_t new_size_mb);
/** The same on the app reactor: cb(cb_arg, rc) runs before it returns or later. */
void sb_bdev_null_resize_async(const char *name, uint64_t new_size_mb,
			       void (*cb)(void *cb_arg, int rc), void *cb_arg);

#endif
