/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Log-linear histogram: values below 2^SUB_BITS are counted exactly in
 * range 0; above that, range r covers [2^(r+SUB_BITS-1), 2^(r+SUB_BITS))
 * split into SUB_BUCKETS equal sub-buckets.
 */
#include "sb/histogram.h"

#include <string.h>

void
sb_histogram_init(struct sb_histogram *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

static inline void
_index(uint64_t v, uint32_t *range, uint32_t *sub)
{
	uint32_t msb;

	if (v < SB_HISTOGRAM_SUB_BUCKETS) {
		*range = 0;
		*sub = (uint32_t)v;
		return;
	}
	msb = 63u - (uint32_t)__builtin_clzll(v);
	*range = msb - SB_HISTOGRAM_SUB_BITS + 1;
	*sub = (uint32_t)(v >> (msb - SB_HISTOGRAM_SUB_BITS)) & (SB_HISTOGRAM_SUB_BUCKETS - 1);
}

static inline double
_midpoint(uint32_t range, uint32_t sub)
{
	uint64_t low, width;

	if (range == 0) {
		return (double)sub;
	}
	width = 1ULL << (range - 1);
	low = (1ULL << (range + SB_HISTOGRAM_SUB_BITS - 1)) + (uint64_t)sub * width;
	return (double)low + (double)width / 2.0;
}

void
sb_histogram_add(struct sb_histogram *h, uint64_t value)
{
	uint32_t range, sub;

	_index(value, &range, &sub);
	h->buckets[range][sub]++;
	h->count++;
	h->sum += value;
	if (value < h->min) {
		h->min = value;
	}
	if (value > h->max) {
		h->max = value;
	}
}

void
sb_histogram_merge(struct sb_histogram *dst, const struct sb_histogram *src)
{
	for (uint32_t r = 0; r < SB_HISTOGRAM_RANGES; r++) {
		for (uint32_t s = 0; s < SB_HISTOGRAM_SUB_BUCKETS; s++) {
			dst->buckets[r][s] += src->buckets[r][s];
		}
	}
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min) {
		dst->min = src->min;
	}
	if (src->max > dst->max) {
		dst->max = src->max;
	}
}

double
sb_histogram_percentile(const struct sb_histogram *h, double pct)
{
	uint64_t target, seen = 0;

	if (h->count == 0) {
		return 0;
	}
	target = (uint64_t)((double)h->count * pct / 100.0);
	if (target >= h->count) {
		target = h->count - 1;
	}
	for (uint32_t r = 0; r < SB_HISTOGRAM_RANGES; r++) {
		for (uint32_t s = 0; s < SB_HISTOGRAM_SUB_BUCKETS; s++) {
			seen += h->buckets[r][s];
			if (seen > target) {
				return _midpoint(r, s);
			}
		}
	}
	return (double)h->max;
}

double
sb_histogram_mean(const struct sb_histogram *h)
{
	return h->count ? (double)h->sum / (double)h->count : 0.0;
}
