/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Fixed-size log-linear latency histogram: no allocation, O(1) insert,
 * relative error below 1/SB_HISTOGRAM_SUB_BUCKETS.  For benchmark tools
 * and per-channel statistics.
 */
#ifndef SB_HISTOGRAM_H
#define SB_HISTOGRAM_H

#include <stdint.h>

#define SB_HISTOGRAM_SUB_BITS 5
#define SB_HISTOGRAM_SUB_BUCKETS (1u << SB_HISTOGRAM_SUB_BITS)
#define SB_HISTOGRAM_RANGES (64 - SB_HISTOGRAM_SUB_BITS + 1)

struct sb_histogram {
	uint64_t count;
	uint64_t sum;
	uint64_t min;
	uint64_t max;
	uint64_t buckets[SB_HISTOGRAM_RANGES][SB_HISTOGRAM_SUB_BUCKETS];
};

void sb_histogram_init(struct sb_histogram *h);
/** Record one value (ticks, ns, ...). */
void sb_histogram_add(struct sb_histogram *h, uint64_t value);
/** Add every sample of src into dst. */
void sb_histogram_merge(struct sb_histogram *dst, const struct sb_histogram *src);
/** Value at or below which pct percent of the samples lie (bucket midpoint). 0 if empty. */
double sb_histogram_percentile(const struct sb_histogram *h, double pct);
double sb_histogram_mean(const struct sb_histogram *h);

#endif
