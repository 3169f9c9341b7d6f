/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tiny assertion kit for the C unit tests: CHECK counts, never aborts, so
 * one run reports every failure; UT_SUMMARY() prints "N passed, M failed"
 * and gives the exit code.
 */
#ifndef SB_UT_H
#define SB_UT_H

#include <stdio.h>

#include <string.h>

static int g_ut_pass, g_ut_fail;
/* Name of the one test to run (first command-line argument), or NULL for all. */
static const char *g_ut_only;

/** Call first in main(): "./x_ut test_name" runs only that test. */
#define UT_INIT(argc, argv) (g_ut_only = (argc) > 1 ? (argv)[1] : NULL)

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (cond) {                                                            \
			g_ut_pass++;                                                   \
		} else {                                                               \
			g_ut_fail++;                                                   \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
		}                                                                      \
	} while (0)

#define CHECK_EQ(a, b)                                                                 \
	do {                                                                           \
		long long _a = (long long)(a), _b = (long long)(b);                    \
		if (_a == _b) {                                                        \
			g_ut_pass++;                                                   \
		} else {                                                               \
			g_ut_fail++;                                                   \
			fprintf(stderr, "%s:%d: CHECK_EQ(%s, %s) failed: %lld != %lld\n", \
				__FILE__, __LINE__, #a, #b, _a, _b);                   \
		}                                                                      \
	} while (0)

/** Run one test function, naming it in the output. */
#define RUN_TEST(fn)                                                                   \
	do {                                                                           \
		int _f = g_ut_fail;                                                    \
		if (g_ut_only != NULL && strcmp(g_ut_only, #fn) != 0) {                \
			break;                                                         \
		}                                                                      \
		fn();                                                                  \
		printf("%-40s %s\n", #fn, g_ut_fail == _f ? "ok" : "FAILED");         \
		fflush(stdout);                                                        \
	} while (0)

#define UT_SUMMARY()                                                                   \
	(printf("%d passed, %d failed\n", g_ut_pass, g_ut_fail), g_ut_fail == 0 ? 0 : 1)

#endif
