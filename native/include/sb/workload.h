/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Built-in I/O generators over the public bdev API: a bdevperf-like
 * workload that runs on one or more reactors, synchronous single I/Os, and
 * event watchers.  Used by bench/bdevperf, the Python tests and the agent.
 * All functions are control-path calls (non-reactor threads; synchronous)
 * through sb_call_owned(): -SB_EWAITER_GAVE_UP when they stopped waiting,
 * and the caller's options and buffers are free to go at once even then.
 */
#ifndef SB_WORKLOAD_H
#define SB_WORKLOAD_H

#include "sb/bdev.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct sb_workload_opts {
	const char *bdev_name;
	/** Reactors to run on, as a core mask; NULL = the app reactor. */
	const char *core_mask;
	/** "randread", "randwrite", "randrw", "read", "write" or "verify". */
	const char *rw;
	/** Percentage of reads for randrw. */
	uint32_t rwmixread;
	/** Bytes per I/O, a multiple of the block size. */
	uint32_t io_size;
	/** Outstanding I/Os per reactor (1..4096). */
	uint32_t qd;
	/** Run time; ignored by "verify", which passes once over its range. */
	uint64_t run_us;
	/** Region used, in blocks; 0/0 = the whole bdev. Each reactor takes an equal slice. */
	uint64_t offset_blocks;
	uint64_t num_blocks;
	/** Pattern seed (verify) and random seed. */
	uint64_t seed;
};

struct sb_workload_result {
	uint64_t ios;          /* completed successfully */
	uint64_t read_ios;
	uint64_t write_ios;
	uint64_t errors;       /* completed with an error status */
	int first_error;       /* status of the first failed I/O (negative errno) */
	uint64_t verify_failures; /* blocks read back with the wrong content */
	double seconds;
	double iops;
	double lat_mean_us;
	double lat_p50_us;
	double lat_p99_us;
	double lat_p999_us;
};

/**
 * Run a workload and wait for it.
 * \return 0 when it ran (I/O errors are counted in the result, not
 *         returned), -ENODEV, -EINVAL (bad options), -ENOMEM.
 */
int sb_workload_run(const struct sb_workload_opts *opts, struct sb_workload_result *result);

/**
 * One synchronous I/O on reactor index `reactor`.
 * \param type READ/WRITE use buf (length bytes); FLUSH/UNMAP/WRITE_ZEROES/RESET ignore it.
 * \return the I/O's status (0 or negative errno) or a submit error.
 */
int sb_bdev_ctl_io(const char *name, uint32_t reactor, enum sb_bdev_io_type type,
		   uint64_t offset, uint64_t length, void *buf);

struct sb_bdev_watch;

/** Open name on reactor `reactor` and count its events. */
int sb_bdev_watch_open(const char *name, uint32_t reactor, struct sb_bdev_watch **watch);
/** Events seen so far and the size the last RESIZE reported. */
void sb_bdev_watch_get(struct sb_bdev_watch *watch, uint64_t *resize_events,
		       uint64_t *remove_events, uint64_t *num_blocks);
/** Close (if still open) and free. */
void sb_bdev_watch_close(struct sb_bdev_watch *watch);

#ifdef __cplusplus
}
#endif
#endif /* SB_WORKLOAD_H */
