/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine's clock: nanoseconds since an arbitrary start.
 *
 * Every I/O reads it several times (submit and completion timestamps,
 * queue-depth accounting, the reactor's iteration time), so it must be
 * cheap.  Where the kernel itself keeps time with the TSC (clocksource
 * "tsc": invariant and synchronized across CPUs), the clock is the TSC
 * scaled to nanoseconds, calibrated once against CLOCK_MONOTONIC when the
 * library loads; anywhere else it is clock_gettime(CLOCK_MONOTONIC).  A
 * profile of bdevperf on a null bdev spent 68 % of its time in the vDSO's
 * clock_gettime before this (bench/RESULTS.md).
 */
#include "sb/thread.h"
#include "thread_internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#define CLOCKSOURCE_PATH "/sys/devices/system/clocksource/clocksource0/current_clocksource"
/* Calibration window: long enough that the error stays around 1e-5. */
#define CALIBRATE_NS (5 * 1000 * 1000)

static _Atomic bool g_ticks_mocked;
static _Atomic uint64_t g_ticks_mock_value;

/* TSC scaling, fixed before main(): ns = base_ns + ((tsc - base_tsc) * mult) >> 32. */
static uint64_t g_tsc_mult; /* 0: use clock_gettime */
static uint64_t g_tsc_base;
static uint64_t g_tsc_base_ns;

static uint64_t
_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#if defined(__x86_64__)
static bool
_kernel_uses_tsc(void)
{
	char buf[32] = "";
	FILE *f = fopen(CLOCKSOURCE_PATH, "r");

	if (f == NULL) {
		return false;
	}
	if (fgets(buf, sizeof(buf), f) == NULL) {
		buf[0] = '\0';
	}
	fclose(f);
	return strcmp(buf, "tsc\n") == 0;
}

__attribute__((constructor)) static void
_ticks_calibrate(void)
{
	struct timespec pause = {.tv_nsec = CALIBRATE_NS};
	uint64_t t0, n0, t1, n1;

	if (!_kernel_uses_tsc()) {
		return;
	}
	n0 = _mono_ns();
	t0 = __rdtsc();
	nanosleep(&pause, NULL);
	n1 = _mono_ns();
	t1 = __rdtsc();
	if (t1 <= t0 || n1 <= n0) {
		return;
	}
	g_tsc_base = t1;
	g_tsc_base_ns = n1;
	g_tsc_mult = (uint64_t)(((unsigned __int128)(n1 - n0) << 32) / (t1 - t0));
}
#endif

uint64_t
sb_get_ticks(void)
{
	if (__builtin_expect(atomic_load_explicit(&g_ticks_mocked, memory_order_relaxed), 0)) {
		return atomic_load_explicit(&g_ticks_mock_value, memory_order_relaxed);
	}
#if defined(__x86_64__)
	if (__builtin_expect(g_tsc_mult != 0, 1)) {
		return g_tsc_base_ns +
		       (uint64_t)(((unsigned __int128)(__rdtsc() - g_tsc_base) * g_tsc_mult) >> 32);
	}
#endif
	return _mono_ns();
}

uint64_t
sb_get_ticks_hz(void)
{
	return 1000000000ULL;
}

uint64_t
sb_us_to_ticks(uint64_t us)
{
	return us * (sb_get_ticks_hz() / 1000000ULL);
}

void
sb_ticks_mock(uint64_t ticks)
{
	atomic_store(&g_ticks_mock_value, ticks);
	atomic_store(&g_ticks_mocked, true);
}

void
sb_ticks_unmock(void)
{
	atomic_store(&g_ticks_mocked, false);
}
