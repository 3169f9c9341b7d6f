/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bdevperf: keep N I/Os outstanding against one bdev from one or more
 * reactors and report IOPS and latency percentiles, like SPDK's bdevperf.
 * The workload itself is the engine's (sb/workload.h); this tool only
 * creates the bdev and prints the result.
 *
 *   bdevperf --bdev null|malloc|uring [--file PATH] [--size-mb N]
 *            [--rw randread|randwrite|randrw|read|write|verify] [--rwmixread 70]
 *            [--bs 4096] [--qd 32] [--time 5] [--core-mask 0x1] [--spin-us US] [--json]
 */
#include "sb/log.h"
#include "sb/thread.h"
#include "sb/workload.h"
#include "bdev_malloc.h"
#include "bdev_null.h"
#include "bdev_uring.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
_usage(void)
{
	fprintf(stderr,
		"usage: bdevperf --bdev null|malloc|uring [--file PATH] [--size-mb N]\n"
		"                [--rw randread|randwrite|randrw|read|write|verify]\n"
		"                [--rwmixread N] [--bs BYTES] [--qd N] [--time SECONDS]\n"
		"                [--core-mask MASK] [--block-size BYTES] [--spin-us US] [--json]\n");
}

static int
_create_bdev(const char *type, const char *name, const char *file, uint64_t size_mb,
	     uint32_t block_size)
{
	uint64_t num_blocks = size_mb * 1024 * 1024 / block_size;

	if (strcmp(type, "null") == 0) {
		struct sb_null_opts o = {.name = name, .block_size = block_size,
					 .num_blocks = num_blocks};
		return sb_bdev_null_create(&o);
	}
	if (strcmp(type, "malloc") == 0) {
		struct sb_malloc_opts o = {.name = name, .block_size = block_size,
					   .num_blocks = num_blocks};
		return sb_bdev_malloc_create(&o);
	}
	if (strcmp(type, "uring") == 0 && file != NULL) {
		struct sb_uring_opts o = {.name = name, .filename = file};
		return sb_bdev_uring_create(&o);
	}
	return -EINVAL;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"bdev", required_argument, NULL, 'b'}, {"file", required_argument, NULL, 'f'},
		{"size-mb", required_argument, NULL, 's'}, {"rw", required_argument, NULL, 'w'},
		{"rwmixread", required_argument, NULL, 'M'}, {"bs", required_argument, NULL, 'o'},
		{"qd", required_argument, NULL, 'q'}, {"time", required_argument, NULL, 't'},
		{"core-mask", required_argument, NULL, 'm'}, {"json", no_argument, NULL, 'j'},
		{"block-size", required_argument, NULL, 'B'}, {"spin-us", required_argument, NULL, 'S'},
		{NULL, 0, NULL, 0},
	};
	const char *type = NULL, *file = NULL, *core_mask = "0x1";
	uint64_t size_mb = 1024;
	uint32_t block_size = 512;
	long long spin_us = -1;
	double seconds = 5;
	bool json = false;
	struct sb_workload_opts wl = {.bdev_name = "perf0", .rw = "randread", .rwmixread = 70,
				      .io_size = 4096, .qd = 32, .seed = 1};
	struct sb_workload_result res;
	struct sb_engine_opts eopts;
	int c, rc, exit_code = 1;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'b': type = optarg; break;
		case 'f': file = optarg; break;
		case 's': size_mb = strtoull(optarg, NULL, 0); break;
		case 'w': wl.rw = optarg; break;
		case 'M': wl.rwmixread = (uint32_t)atoi(optarg); break;
		case 'o': wl.io_size = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'q': wl.qd = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 't': seconds = atof(optarg); break;
		case 'm': core_mask = optarg; break;
		case 'j': json = true; break;
		case 'B': block_size = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'S': spin_us = strtoll(optarg, NULL, 0); break;
		default: _usage(); return 2;
		}
	}
	if (type == NULL || seconds <= 0 || block_size == 0) {
		_usage();
		return 2;
	}
	wl.run_us = (uint64_t)(seconds * 1e6);
	wl.core_mask = core_mask;

	sb_log_set_level(SB_LOG_WARN);
	sb_engine_opts_init(&eopts);
	eopts.core_mask = core_mask;
	if (spin_us >= 0) {
		eopts.spin_us = (uint64_t)spin_us;
	}
	rc = sb_engine_start(&eopts);
	if (rc != 0) {
		fprintf(stderr, "bdevperf: engine start failed: %s\n", strerror(-rc));
		return 1;
	}
	rc = _create_bdev(type, wl.bdev_name, file, size_mb, block_size);
	if (rc != 0) {
		fprintf(stderr, "bdevperf: bdev create failed: %s\n", strerror(-rc));
		goto out;
	}
	rc = sb_workload_run(&wl, &res);
	if (rc != 0) {
		fprintf(stderr, "bdevperf: workload failed: %s\n", strerror(-rc));
		goto out;
	}
	if (json) {
		printf("{\"bdev\": \"%s\", \"rw\": \"%s\", \"bs\": %u, \"qd\": %u, "
		       "\"seconds\": %.3f, \"ios\": %" PRIu64 ", \"errors\": %" PRIu64 ", "
		       "\"verify_failures\": %" PRIu64 ", \"iops\": %.1f, \"mbps\": %.2f, "
		       "\"lat_mean_us\": %.2f, \"lat_p50_us\": %.2f, \"lat_p99_us\": %.2f, "
		       "\"lat_p999_us\": %.2f}\n",
		       type, wl.rw, wl.io_size, wl.qd, res.seconds, res.ios, res.errors,
		       res.verify_failures, res.iops, res.iops * wl.io_size / 1e6, res.lat_mean_us,
		       res.lat_p50_us, res.lat_p99_us, res.lat_p999_us);
	} else {
		printf("%-8s %-9s bs=%u qd=%-4u %10.0f IOPS %8.2f MB/s  lat mean %.2f us "
		       "p50 %.2f us p99 %.2f us p99.9 %.2f us  errors %" PRIu64 "\n",
		       type, wl.rw, wl.io_size, wl.qd, res.iops, res.iops * wl.io_size / 1e6,
		       res.lat_mean_us, res.lat_p50_us, res.lat_p99_us, res.lat_p999_us, res.errors);
	}
	exit_code = (res.errors == 0 && res.verify_failures == 0) ? 0 : 1;
out:
	sb_engine_stop();
	return exit_code;
}
