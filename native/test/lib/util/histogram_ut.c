/* SPDX-License-Identifier: Apache-2.0 */
#include "sb/histogram.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int g_pass, g_fail;
#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (cond) {                                                            \
			g_pass++;                                                      \
		} else {                                                               \
			g_fail++;                                                      \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
		}                                                                      \
	} while (0)

static double
_rel_err(double got, double want)
{
	return fabs(got - want) / want;
}

int
main(void)
{
	static struct sb_histogram h, h2;

	sb_histogram_init(&h);
	CHECK(sb_histogram_percentile(&h, 50) == 0);

	/* Small values are exact. */
	for (uint64_t v = 0; v < 20; v++) {
		sb_histogram_add(&h, v);
	}
	CHECK(sb_histogram_percentile(&h, 50) == 10);
	CHECK(h.min == 0 && h.max == 19 && h.count == 20);

	/* Uniform 1..100000: percentiles within the bucket resolution. */
	sb_histogram_init(&h);
	for (uint64_t v = 1; v <= 100000; v++) {
		sb_histogram_add(&h, v);
	}
	CHECK(_rel_err(sb_histogram_percentile(&h, 50), 50000) < 0.04);
	CHECK(_rel_err(sb_histogram_percentile(&h, 99), 99000) < 0.04);
	CHECK(_rel_err(sb_histogram_mean(&h), 50000.5) < 1e-9);

	/* Huge values do not overflow the table. */
	sb_histogram_add(&h, UINT64_MAX);
	CHECK(h.max == UINT64_MAX);
	CHECK(sb_histogram_percentile(&h, 100) > 1e18);

	/* Merge adds counts. */
	sb_histogram_init(&h2);
	sb_histogram_add(&h2, 7);
	sb_histogram_merge(&h2, &h);
	CHECK(h2.count == h.count + 1);
	CHECK(h2.min == 1);

	printf("%d passed, %d failed\n", g_pass, g_fail);
	return g_fail ? 1 : 0;
}
