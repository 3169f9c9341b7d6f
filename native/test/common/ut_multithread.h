/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Deterministic multi-reactor harness: N reactors without threads, driven
 * one iteration at a time by the test thread, with a frozen clock that the
 * test advances.  Messages, pollers, io channels and sb_for_each_channel
 * then run in an order the test chooses, so races become reproducible
 * interleavings.
 */
#ifndef SB_UT_MULTITHREAD_H
#define SB_UT_MULTITHREAD_H

#include <stdbool.h>
#include <stdint.h>

#include "sb/thread.h"

/**
 * Create count reactors (cores 0..count-1) without threads, freeze the
 * clock and make the calling thread reactor 0.  \return 0 or -errno.
 */
int ut_init_reactors(uint32_t count);
/** Run what is still queued, free every reactor, unfreeze the clock. */
void ut_fini_reactors(void);

/** Make the test thread act as reactor index; -1: a non-reactor thread. */
void ut_set_reactor(int index);
/** Index of the reactor the test thread acts as, or -1. */
int ut_current_reactor(void);

/** One loop iteration of reactor index. \return messages run + busy pollers. */
int ut_poll_reactor(uint32_t index);
/** Iterate reactor index until an iteration does nothing. \return total work. */
int ut_poll_reactor_until_idle(uint32_t index);
/** Iterate every reactor, round robin, until a whole round does nothing. \return total work. */
int ut_poll_reactors(void);

/** Move the frozen clock forward. */
void ut_advance_time_us(uint64_t us);
uint64_t ut_now_ticks(void);

#endif
