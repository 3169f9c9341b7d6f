/* SPDX-License-Identifier: Apache-2.0 */
/** \file Memory-backed bdevs (control path; non-reactor threads). */
#ifndef SB_BDEV_MALLOC_H
#define SB_BDEV_MALLOC_H

#include <stdbool.h>
#include <stdint.h>

struct sb_malloc_opts {
	const char *name;       /* required, unique */
	const char *uuid;       /* NULL or "" = generate */
	uint64_t num_blocks;
	uint32_t block_size;    /* power of two, multiple of 512 */
	uint32_t physical_block_size; /* 0 = block_size */
	bool hugepages;         /* back with MAP_HUGETLB (fails with -ENOMEM when none free) */
};

/**
 * \return 0, -EEXIST, -EINVAL (bad size/block size/overflow), -ENOMEM.
 */
int sb_bdev_malloc_create(const struct sb_malloc_opts *opts);
/** \return 0, -ENODEV (no such malloc bdev). */
int sb_bdev_malloc_delete(const char *name);

#endif
