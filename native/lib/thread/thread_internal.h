/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private state of the thread library and the entry points the
 * deterministic unit-test harness (test/common/ut_multithread.c) drives:
 * reactors can be created without threads, run one iteration at a time, and
 * the calling thread can pose as any reactor.
 */
#ifndef SB_THREAD_INTERNAL_H
#define SB_THREAD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "sb/thread.h"
#include "ring.h"

/** Messages run per loop iteration, so pollers are not starved by a message storm. */
#define SB_MSG_BATCH 64
#define SB_DEFAULT_MAX_DELAY_US 1000
#define SB_DEFAULT_SPIN_US 200
/* A spinning reactor idle for longer than this yields its CPU between polls. */
#define SB_SPIN_YIELD_US 10
#define SB_DEFAULT_RING_SIZE 4096

enum sb_poller_state {
	SB_POLLER_STATE_ACTIVE,
	/* Unregistered; freed by the reactor after the current poll phase. */
	SB_POLLER_STATE_UNREGISTERED,
};

struct sb_poller {
	sb_poller_fn fn;
	void *ctx;
	uint64_t period_ticks;
	uint64_t period_us;
	uint64_t next_run_tick;
	uint64_t run_count;
	uint64_t busy_count;
	struct sb_reactor *reactor;
	enum sb_poller_state state;
	/* Active poller that does not bound the reactor's sleep (sb_poller_set_event_driven). */
	bool event_driven;
	/* Called before the reactor sleeps (sb_poller_set_arm_fn). */
	sb_poller_arm_fn arm;
	char name[32];
	TAILQ_ENTRY(sb_poller) link;
};
TAILQ_HEAD(sb_poller_list, sb_poller);

struct sb_io_channel;
TAILQ_HEAD(sb_io_channel_list, sb_io_channel);

struct sb_reactor {
	uint32_t index;
	uint32_t core;
	char name[16];

	struct sb_ring *ring;
	/* Written by senders while this reactor sleeps; read and reset by the reactor. */
	int evfd;
	int epfd;
	/*
	 * Set by the reactor before it re-checks its ring and blocks; a sender
	 * that publishes a message and then sees it set writes evfd.  Both sides
	 * order store-then-load with seq_cst operations (Dekker), so one of them
	 * always sees the other: no wake-up is lost.
	 */
	_Atomic int sleeping;
	_Atomic bool stop;

	pthread_t thread;
	bool has_thread;

	uint64_t max_delay_ticks;
	uint64_t spin_ticks;
	/* Idle this long while spinning: sched_yield() between iterations. */
	uint64_t spin_yield_ticks;
	uint64_t last_busy_tick;
	/* Tick at which the current iteration started. */
	uint64_t now;
	/* End of the last iteration, the start of the next one (0: read the clock). */
	uint64_t next_start;

	struct sb_poller_list active_pollers;
	/* Sorted by next_run_tick, soonest first. */
	struct sb_poller_list timed_pollers;
	uint32_t unregistered_pollers;
	/* Registered active pollers that are not event-driven: they bound a sleep to max_delay. */
	uint32_t polling_pollers;

	/* Channels this reactor holds; only this reactor touches the list. */
	struct sb_io_channel_list channels;

	/* Statistics: written by the owner only, read by anyone (relaxed loads). */
	_Atomic uint64_t busy_ticks;
	_Atomic uint64_t idle_ticks;
	_Atomic uint64_t sleeps;
	_Atomic uint64_t wakeups;
	_Atomic uint64_t msgs;
	_Atomic uint32_t poller_count;
};

/* ---- entry points for the engine and the unit-test harness ---- */

/**
 * Create reactors for the given cores without starting threads.
 * opts supplies max_delay_us / spin_us / msg_ring_size (core_mask ignored).
 * \return 0, -EALREADY (reactors exist), -EINVAL, -ENOMEM, -errno.
 */
int sb_reactors_create(const uint32_t *cores, uint32_t count, const struct sb_engine_opts *opts);

/**
 * Run the messages still queued (repeatedly, so chains of messages finish),
 * free pollers, channels, rings and fds.  Threads must have been joined.
 */
void sb_reactors_destroy(void);

/**
 * One loop iteration of r on the calling thread: a batch of messages, every
 * active poller, the due timed pollers.  Does not sleep.
 * \return number of messages run plus pollers that reported BUSY.
 */
int sb_reactor_run_once(struct sb_reactor *r);

/** Make the calling thread act as reactor r (NULL: a non-reactor thread). */
void sb_reactor_set_current(struct sb_reactor *r);

/** True when r has a published message waiting. */
bool sb_reactor_has_msgs(struct sb_reactor *r);

/**
 * Ticks until r's next timed poller is due (0 when one is due now),
 * or UINT64_MAX when r has no timed pollers.
 */
uint64_t sb_reactor_next_timer_delay(struct sb_reactor *r);

/** Freeze sb_get_ticks() at ticks (unit tests); sb_ticks_unmock() restores the clock. */
void sb_ticks_mock(uint64_t ticks);
void sb_ticks_unmock(void);

/* ---- shared between the files of lib/thread ---- */

uint64_t sb_us_to_ticks(uint64_t us);
/** True when CPU core is online. */
bool sb_core_is_online(uint32_t core);
/** Send that retries a full ring for a while: control-path chains that must not drop a step. */
int sb_send_msg_retry(struct sb_reactor *r, sb_msg_fn fn, void *ctx);
/** Run the due pollers of r; returns the number that reported BUSY. */
int sb_pollers_run(struct sb_reactor *r);
/* Arm callbacks of event-driven pollers; true when one found work waiting. */
bool sb_pollers_arm(struct sb_reactor *r);
/** Free every poller of r (reactor teardown). */
void sb_pollers_free_all(struct sb_reactor *r);
/** Destroy every channel r still holds (reactor teardown). */
void sb_io_channels_free_all(struct sb_reactor *r);

#endif
