/* SPDX-License-Identifier: Apache-2.0 */
#include "ut_multithread.h"
#include "thread/thread_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* Bounds the polling helpers so that a poller that is always BUSY fails a test, not hangs it. */
#define UT_MAX_ITERATIONS 100000

static uint64_t g_ut_ticks;

int
ut_init_reactors(uint32_t count)
{
	struct sb_engine_opts opts;
	uint32_t cores[SB_MAX_REACTORS];
	uint32_t i;
	int rc;

	if (count == 0 || count > SB_MAX_REACTORS) {
		return -1;
	}
	for (i = 0; i < count; i++) {
		cores[i] = i;
	}
	sb_engine_opts_init(&opts);
	/* Start the frozen clock away from 0 so "due at tick 0" bugs show. */
	g_ut_ticks = 1000000;
	sb_ticks_mock(g_ut_ticks);
	rc = sb_reactors_create(cores, count, &opts);
	if (rc != 0) {
		sb_ticks_unmock();
		return rc;
	}
	sb_reactor_set_current(sb_reactor_get(0));
	return 0;
}

void
ut_fini_reactors(void)
{
	sb_reactor_set_current(NULL);
	sb_reactors_destroy();
	sb_ticks_unmock();
}

void
ut_set_reactor(int index)
{
	sb_reactor_set_current(index < 0 ? NULL : sb_reactor_get((uint32_t)index));
}

int
ut_current_reactor(void)
{
	struct sb_reactor *r = sb_reactor_current();

	return r == NULL ? -1 : (int)sb_reactor_index(r);
}

int
ut_poll_reactor(uint32_t index)
{
	struct sb_reactor *r = sb_reactor_get(index);

	if (r == NULL) {
		fprintf(stderr, "ut_poll_reactor: no reactor %u\n", index);
		abort();
	}
	return sb_reactor_run_once(r);
}

int
ut_poll_reactor_until_idle(uint32_t index)
{
	int n, total = 0, i;

	for (i = 0; i < UT_MAX_ITERATIONS; i++) {
		n = ut_poll_reactor(index);
		if (n == 0) {
			return total;
		}
		total += n;
	}
	fprintf(stderr, "reactor %u never became idle\n", index);
	abort();
}

int
ut_poll_reactors(void)
{
	uint32_t i;
	int n, total = 0, round;

	for (round = 0; round < UT_MAX_ITERATIONS; round++) {
		n = 0;
		for (i = 0; i < sb_reactor_count(); i++) {
			n += ut_poll_reactor(i);
		}
		if (n == 0) {
			return total;
		}
		total += n;
	}
	fprintf(stderr, "reactors never became idle\n");
	abort();
}

void
ut_advance_time_us(uint64_t us)
{
	g_ut_ticks += us * (sb_get_ticks_hz() / 1000000ULL);
	sb_ticks_mock(g_ut_ticks);
}

uint64_t
ut_now_ticks(void)
{
	return g_ut_ticks;
}
