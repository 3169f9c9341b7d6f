/* SPDX-License-Identifier: Apache-2.0 */
/* The engine clock: nanoseconds that follow CLOCK_MONOTONIC, never go back, and can be mocked. */
#include "sb/thread.h"
#include "thread/thread_internal.h"
#include "ut.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

static uint64_t
_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void
test_units(void)
{
	CHECK_EQ(sb_get_ticks_hz(), 1000000000ULL);
	CHECK_EQ(sb_us_to_ticks(7), 7000ULL);
}

static void
test_follows_monotonic(void)
{
	struct timespec pause = {.tv_nsec = 100 * 1000 * 1000};
	uint64_t t0, n0, t1, n1;
	double ratio;

	t0 = sb_get_ticks();
	n0 = _mono_ns();
	nanosleep(&pause, NULL);
	t1 = sb_get_ticks();
	n1 = _mono_ns();
	ratio = (double)(t1 - t0) / (double)(n1 - n0);
	printf("  %.0f ns of engine time per 1e9 ns of CLOCK_MONOTONIC\n", ratio * 1e9);
	/* Calibration error ~1e-5; the window edges add a few us over 100 ms. */
	CHECK(ratio > 0.999 && ratio < 1.001);
	/* Same epoch as CLOCK_MONOTONIC (within a millisecond). */
	CHECK(t1 + 1000000 > n1 && t1 < n1 + 1000000);
}

static void *
_monotonic_loop(void *arg)
{
	uint64_t prev = sb_get_ticks(), now, backwards = 0;
	int i;

	for (i = 0; i < 2000000; i++) {
		now = sb_get_ticks();
		backwards += now < prev;
		prev = now;
	}
	return (void *)(uintptr_t)backwards;
}

static void
test_never_backwards(void)
{
	pthread_t th[2];
	void *ret;
	int i;

	for (i = 0; i < 2; i++) {
		CHECK_EQ(pthread_create(&th[i], NULL, _monotonic_loop, NULL), 0);
	}
	for (i = 0; i < 2; i++) {
		pthread_join(th[i], &ret);
		CHECK_EQ((uintptr_t)ret, 0);
	}
}

static void
test_mock(void)
{
	sb_ticks_mock(42);
	CHECK_EQ(sb_get_ticks(), 42ULL);
	sb_ticks_unmock();
	CHECK(sb_get_ticks() > 42ULL);
}

int
main(int argc, char **argv)
{
	UT_INIT(argc, argv);
	RUN_TEST(test_units);
	RUN_TEST(test_follows_monotonic);
	RUN_TEST(test_never_backwards);
	RUN_TEST(test_mock);
	return UT_SUMMARY();
}
