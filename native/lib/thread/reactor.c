/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reactors: one pinned thread per CPU of the core mask, each looping over
 * its message ring and its pollers, and sleeping in epoll when idle.
 */
#include "sb/thread.h"
#include "sb/log.h"
#include "sb_internal/subsystem.h"
#include "thread_internal.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* epoll data word of the reactor's own eventfd; wake fds use (drain << 32 | fd). */
#define EVFD_TOKEN UINT64_MAX
#define WAKE_FD_DRAIN (1ULL << 32)

enum reactors_state {
	REACTORS_NONE,
	/* Reactors exist and accept messages from anyone. */
	REACTORS_RUNNING,
	/* Stopping: non-reactor threads are refused, queued messages still run. */
	REACTORS_DRAINING,
};

static struct sb_reactor g_reactors[SB_MAX_REACTORS];
/* Read by any thread (sb_reactor_get); written only by start/stop. */
static _Atomic uint32_t g_reactor_count;
static _Atomic int g_state = REACTORS_NONE;
/* Non-reactor threads inside sb_send_msg; stop waits for them before freeing rings. */
static _Atomic uint32_t g_ext_senders;
static __thread struct sb_reactor *tls_reactor;

static bool g_no_pwait2;

/* ---- lookups ---- */

void
sb_engine_opts_init(struct sb_engine_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->core_mask = "0x1";
	opts->max_delay_us = SB_DEFAULT_MAX_DELAY_US;
	opts->spin_us = SB_DEFAULT_SPIN_US;
	opts->msg_ring_size = SB_DEFAULT_RING_SIZE;
}

uint32_t
sb_reactor_count(void)
{
	return atomic_load_explicit(&g_reactor_count, memory_order_relaxed);
}

struct sb_reactor *
sb_reactor_get(uint32_t index)
{
	return index < sb_reactor_count() ? &g_reactors[index] : NULL;
}

struct sb_reactor *
sb_reactor_get_by_core(uint32_t core)
{
	uint32_t i;

	for (i = 0; i < sb_reactor_count(); i++) {
		if (g_reactors[i].core == core) {
			return &g_reactors[i];
		}
	}
	return NULL;
}

struct sb_reactor *
sb_reactor_current(void)
{
	return tls_reactor;
}

void
sb_reactor_set_current(struct sb_reactor *r)
{
	tls_reactor = r;
}

uint32_t
sb_reactor_index(const struct sb_reactor *r)
{
	return r->index;
}

uint32_t
sb_reactor_core(const struct sb_reactor *r)
{
	return r->core;
}

static bool
_valid_reactor(const struct sb_reactor *r)
{
	return r != NULL && r >= g_reactors && r < g_reactors + sb_reactor_count();
}

/* ---- messages ---- */

static void
_wake(struct sb_reactor *r)
{
	uint64_t one = 1;
	ssize_t n;

	n = write(r->evfd, &one, sizeof(one));
	(void)n; /* EAGAIN only when the counter is saturated: the reactor is awake anyway. */
}

static int
_enqueue_and_wake(struct sb_reactor *r, sb_msg_fn fn, void *ctx)
{
	int rc;

	rc = sb_ring_enqueue(r->ring, fn, ctx);
	if (rc != 0) {
		return rc;
	}
	if (r == tls_reactor) {
		return 0;
	}
	/*
	 * Dekker handshake with _reactor_sleep: we store the message (seq_cst
	 * publish in the ring) then load "sleeping"; the reactor stores
	 * "sleeping" then loads the ring, all seq_cst.  In the single total
	 * order of these four operations one side sees the other's store:
	 * either the reactor finds the message, or we see it sleeping and wake
	 * it.  No wake-up is lost, and a running reactor costs no syscall.
	 */
	if (atomic_load(&r->sleeping)) {
		_wake(r);
	}
	return 0;
}

int
sb_send_msg(struct sb_reactor *r, sb_msg_fn fn, void *ctx)
{
	int rc;

	if (fn == NULL) {
		return -EINVAL;
	}
	if (tls_reactor != NULL) {
		/* Reactors are joined before the rings go away: no race with stop. */
		if (!_valid_reactor(r)) {
			return -EINVAL;
		}
		return _enqueue_and_wake(r, fn, ctx);
	}
	atomic_fetch_add(&g_ext_senders, 1);
	if (atomic_load(&g_state) != REACTORS_RUNNING) {
		rc = -ESHUTDOWN;
	} else if (!_valid_reactor(r)) {
		rc = -EINVAL;
	} else {
		rc = _enqueue_and_wake(r, fn, ctx);
	}
	atomic_fetch_sub(&g_ext_senders, 1);
	return rc;
}

int
sb_send_msg_retry(struct sb_reactor *r, sb_msg_fn fn, void *ctx)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 50000 };
	int rc, i;

	/* ~1 s of retries: a full ring drains in microseconds unless its reactor is stuck. */
	for (i = 0; i < 20000; i++) {
		rc = sb_send_msg(r, fn, ctx);
		if (rc != -EAGAIN) {
			return rc;
		}
		nanosleep(&ts, NULL);
	}
	SB_ERRLOG("message ring of %s stays full; message dropped\n", r->name);
	return -EAGAIN;
}

static uint32_t
_run_msgs(struct sb_reactor *r, uint32_t max)
{
	sb_msg_fn fn;
	void *ctx;
	uint32_t n = 0;

	while (n < max && sb_ring_dequeue(r->ring, &fn, &ctx)) {
		fn(ctx);
		n++;
	}
	if (n > 0) {
		atomic_store_explicit(&r->msgs,
				      atomic_load_explicit(&r->msgs, memory_order_relaxed) + n,
				      memory_order_relaxed);
	}
	return n;
}

bool
sb_reactor_has_msgs(struct sb_reactor *r)
{
	return !sb_ring_empty(r->ring);
}

/* ---- the loop ---- */

static inline void
_stat_add(_Atomic uint64_t *stat, uint64_t v)
{
	/* Single writer: a plain load+store keeps the hot path free of locked instructions. */
	atomic_store_explicit(stat, atomic_load_explicit(stat, memory_order_relaxed) + v,
			      memory_order_relaxed);
}

int
sb_reactor_run_once(struct sb_reactor *r)
{
	struct sb_reactor *prev = tls_reactor;
	uint64_t start, end;
	int busy;

	tls_reactor = r;
	/*
	 * Back-to-back iterations of a reactor thread share one clock read (it
	 * costs ~10 ns); test harnesses that move a mocked clock between
	 * iterations (no thread) always read it.
	 */
	start = r->has_thread && r->next_start != 0 ? r->next_start : sb_get_ticks();
	r->now = start;
	busy = (int)_run_msgs(r, SB_MSG_BATCH);
	busy += sb_pollers_run(r);
	end = sb_get_ticks();
	r->next_start = end;
	if (busy > 0) {
		_stat_add(&r->busy_ticks, end - start);
		r->last_busy_tick = end;
	} else {
		_stat_add(&r->idle_ticks, end - start);
	}
	tls_reactor = prev;
	return busy;
}

static uint64_t
_ticks_to_ns(uint64_t ticks)
{
	uint64_t hz = sb_get_ticks_hz();

	/* Split so that long delays do not overflow. */
	return ticks / hz * 1000000000ULL + ticks % hz * 1000000000ULL / hz;
}

static int
_epoll_wait_ticks(struct sb_reactor *r, struct epoll_event *ev, int max, uint64_t delay)
{
	struct timespec ts;
	uint64_t ns;
	int n, ms;

	if (!g_no_pwait2) {
		if (delay != UINT64_MAX) {
			ns = _ticks_to_ns(delay);
			ts.tv_sec = (time_t)(ns / 1000000000ULL);
			ts.tv_nsec = (long)(ns % 1000000000ULL);
		}
		n = epoll_pwait2(r->epfd, ev, max, delay == UINT64_MAX ? NULL : &ts, NULL);
		if (n >= 0 || errno != ENOSYS) {
			return n;
		}
		g_no_pwait2 = true;
	}
	if (delay == UINT64_MAX) {
		ms = -1;
	} else {
		/* Round up: waking early would only make the reactor sleep again. */
		ns = _ticks_to_ns(delay);
		ms = ns >= (uint64_t)INT32_MAX * 1000000ULL ? INT32_MAX :
		     (int)((ns + 999999) / 1000000);
	}
	return epoll_wait(r->epfd, ev, max, ms);
}

static void
_reactor_sleep(struct sb_reactor *r)
{
	struct epoll_event ev[16];
	uint64_t delay, start, val;
	ssize_t rd;
	int n, i, fd;

	delay = sb_reactor_next_timer_delay(r);
	if (r->polling_pollers > 0 && delay > r->max_delay_ticks) {
		delay = r->max_delay_ticks;
	}
	if (delay == 0) {
		return;
	}
	/* Event sources the pollers switched off while polling go back on first. */
	if (sb_pollers_arm(r)) {
		return;
	}
	/* Announce, then look at the ring (see _enqueue_and_wake). */
	atomic_store(&r->sleeping, 1);
	if (!sb_ring_empty(r->ring) || atomic_load(&r->stop)) {
		atomic_store_explicit(&r->sleeping, 0, memory_order_relaxed);
		return;
	}
	r->next_start = 0;
	/* Counted on the way in: a reactor asleep since it started shows one sleep. */
	_stat_add(&r->sleeps, 1);
	start = sb_get_ticks();
	n = _epoll_wait_ticks(r, ev, 16, delay);
	atomic_store_explicit(&r->sleeping, 0, memory_order_relaxed);
	for (i = 0; i < n; i++) {
		if (ev[i].data.u64 == EVFD_TOKEN) {
			rd = read(r->evfd, &val, sizeof(val));
			(void)rd;
			_stat_add(&r->wakeups, 1);
		} else if (ev[i].data.u64 & WAKE_FD_DRAIN) {
			fd = (int)(ev[i].data.u64 & 0xffffffffu);
			rd = read(fd, &val, sizeof(val));
			(void)rd;
		}
	}
	_stat_add(&r->idle_ticks, sb_get_ticks() - start);
}

static void *
_reactor_main(void *arg)
{
	struct sb_reactor *r = arg;
	uint64_t now;

	tls_reactor = r;
	pthread_setname_np(pthread_self(), r->name);
	r->last_busy_tick = sb_get_ticks();
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		if (sb_reactor_run_once(r) > 0) {
			continue;
		}
		if (r->now - r->last_busy_tick > r->spin_ticks) {
			_reactor_sleep(r);
		} else if (r->now - r->last_busy_tick > r->spin_yield_ticks) {
			/*
			 * Spinning with nothing to do for a while: let a thread that
			 * shares this CPU (librbd's, a guest's, an io-wq worker) run
			 * first.  With nobody waiting this returns at once.
			 */
			sched_yield();
			/*
			 * The time given away is idle time: the next iteration starts
			 * its clock after the yield, so a thread that ran meanwhile is
			 * not charged as busy to the iteration that finds work.
			 */
			now = sb_get_ticks();
			_stat_add(&r->idle_ticks, now - r->next_start);
			r->next_start = now;
		}
	}
	/* What is queued now still runs; sb_reactors_destroy picks up later arrivals. */
	while (_run_msgs(r, SB_MSG_BATCH) > 0) {
	}
	tls_reactor = NULL;
	return NULL;
}

/* ---- wake fds ---- */

int
sb_reactor_add_wake_fd(int fd, bool drain)
{
	struct sb_reactor *r = tls_reactor;
	struct epoll_event ev = { .events = EPOLLIN };

	if (r == NULL) {
		return -EPERM;
	}
	if (fd < 0) {
		return -EBADF;
	}
	ev.data.u64 = (uint64_t)(uint32_t)fd | (drain ? WAKE_FD_DRAIN : 0);
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		SB_ERRLOG("%s: cannot watch fd %d: %s\n", r->name, fd, strerror(errno));
		return -errno;
	}
	return 0;
}

int
sb_reactor_remove_wake_fd(int fd)
{
	struct sb_reactor *r = tls_reactor;

	if (r == NULL) {
		return -EPERM;
	}
	if (epoll_ctl(r->epfd, EPOLL_CTL_DEL, fd, NULL) != 0) {
		return -errno;
	}
	return 0;
}

/* ---- stats ---- */

int
sb_reactor_get_stats(uint32_t index, struct sb_reactor_stats *st)
{
	struct sb_reactor *r = sb_reactor_get(index);

	if (r == NULL || st == NULL) {
		return -EINVAL;
	}
	memset(st, 0, sizeof(*st));
	st->index = r->index;
	st->core = r->core;
	snprintf(st->name, sizeof(st->name), "%s", r->name);
	st->busy_ticks = atomic_load_explicit(&r->busy_ticks, memory_order_relaxed);
	st->idle_ticks = atomic_load_explicit(&r->idle_ticks, memory_order_relaxed);
	st->sleeps = atomic_load_explicit(&r->sleeps, memory_order_relaxed);
	st->wakeups = atomic_load_explicit(&r->wakeups, memory_order_relaxed);
	st->msgs = atomic_load_explicit(&r->msgs, memory_order_relaxed);
	st->poller_count = atomic_load_explicit(&r->poller_count, memory_order_relaxed);
	return 0;
}

/* ---- lifecycle ---- */

static void
_reactor_release(struct sb_reactor *r)
{
	if (r->epfd >= 0) {
		close(r->epfd);
	}
	if (r->evfd >= 0) {
		close(r->evfd);
	}
	sb_ring_free(r->ring);
	r->ring = NULL;
	r->epfd = -1;
	r->evfd = -1;
}

/* 0 -> default; at most an hour, so tick arithmetic cannot overflow. */
static uint64_t
_clamp_us(uint64_t us, uint64_t dflt)
{
	if (us == 0) {
		return dflt;
	}
	return us > 3600ULL * 1000000ULL ? 3600ULL * 1000000ULL : us;
}

static int
_reactor_init(struct sb_reactor *r, uint32_t index, uint32_t core,
	      const struct sb_engine_opts *opts)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EVFD_TOKEN };
	uint32_t ring_size = opts->msg_ring_size ? opts->msg_ring_size : SB_DEFAULT_RING_SIZE;

	memset(r, 0, sizeof(*r));
	r->index = index;
	r->core = core;
	r->epfd = -1;
	r->evfd = -1;
	snprintf(r->name, sizeof(r->name), "reactor_%u", core);
	r->max_delay_ticks = sb_us_to_ticks(_clamp_us(opts->max_delay_us, SB_DEFAULT_MAX_DELAY_US));
	r->spin_ticks = sb_us_to_ticks(_clamp_us(opts->spin_us, SB_DEFAULT_SPIN_US));
	r->spin_yield_ticks = sb_us_to_ticks(SB_SPIN_YIELD_US);
	TAILQ_INIT(&r->active_pollers);
	TAILQ_INIT(&r->timed_pollers);
	TAILQ_INIT(&r->channels);
	r->ring = sb_ring_create(ring_size);
	if (r->ring == NULL) {
		SB_ERRLOG("msg_ring_size %u: not a power of two >= 2, or no memory\n", ring_size);
		return -EINVAL;
	}
	r->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (r->evfd < 0 || r->epfd < 0 || epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->evfd, &ev) != 0) {
		int rc = -errno;

		SB_ERRLOG("%s: eventfd/epoll setup failed: %s\n", r->name, strerror(errno));
		_reactor_release(r);
		return rc;
	}
	return 0;
}

int
sb_reactors_create(const uint32_t *cores, uint32_t count, const struct sb_engine_opts *opts)
{
	uint32_t i;
	int rc;

	if (sb_reactor_count() != 0 || atomic_load(&g_state) != REACTORS_NONE) {
		return -EALREADY;
	}
	if (count == 0 || count > SB_MAX_REACTORS) {
		SB_ERRLOG("%u reactors requested; 1 to %d are possible\n", count, SB_MAX_REACTORS);
		return -EINVAL;
	}
	for (i = 0; i < count; i++) {
		rc = _reactor_init(&g_reactors[i], i, cores[i], opts);
		if (rc != 0) {
			while (i-- > 0) {
				_reactor_release(&g_reactors[i]);
			}
			return rc;
		}
	}
	atomic_store(&g_reactor_count, count);
	atomic_store(&g_state, REACTORS_RUNNING);
	return 0;
}

static uint32_t
_drain_all(void)
{
	struct sb_reactor *prev = tls_reactor;
	uint32_t i, n = 0;

	for (i = 0; i < sb_reactor_count(); i++) {
		tls_reactor = &g_reactors[i];
		n += _run_msgs(&g_reactors[i], UINT32_MAX);
	}
	tls_reactor = prev;
	return n;
}

void
sb_reactors_destroy(void)
{
	struct sb_reactor *prev = tls_reactor;
	uint32_t i, round;

	if (sb_reactor_count() == 0) {
		return;
	}
	atomic_store(&g_state, REACTORS_DRAINING);
	while (atomic_load(&g_ext_senders) != 0) {
		sched_yield();
	}
	/*
	 * Messages may send messages: drain until a whole round finds nothing.
	 * Then destroy the channels still held (their destroy_cbs put inner
	 * channels, which queues more messages), and drain again.
	 */
	for (round = 0; round < 1000; round++) {
		uint32_t work = _drain_all();

		for (i = 0; i < sb_reactor_count(); i++) {
			if (!TAILQ_EMPTY(&g_reactors[i].channels)) {
				tls_reactor = &g_reactors[i];
				sb_io_channels_free_all(&g_reactors[i]);
				work++;
			}
		}
		tls_reactor = prev;
		if (work == 0) {
			break;
		}
	}
	for (i = 0; i < sb_reactor_count(); i++) {
		tls_reactor = &g_reactors[i];
		sb_pollers_free_all(&g_reactors[i]);
		_reactor_release(&g_reactors[i]);
	}
	tls_reactor = prev;
	atomic_store(&g_reactor_count, 0);
	atomic_store(&g_state, REACTORS_NONE);
}

static int
_check_cores(const uint32_t *cores, uint32_t count, bool pin)
{
	cpu_set_t allowed;
	uint32_t i;

	CPU_ZERO(&allowed);
	if (pin && sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
		pin = false;
	}
	for (i = 0; i < count; i++) {
		if (!sb_core_is_online(cores[i])) {
			SB_ERRLOG("CPU %u of the core mask is not online\n", cores[i]);
			return -EINVAL;
		}
		if (pin && (cores[i] >= CPU_SETSIZE || !CPU_ISSET(cores[i], &allowed))) {
			SB_ERRLOG("CPU %u is not in this process's CPU affinity set\n", cores[i]);
			return -EINVAL;
		}
	}
	return 0;
}

static void
_stop_threads(void)
{
	uint32_t i;

	atomic_store(&g_state, REACTORS_DRAINING);
	for (i = 0; i < sb_reactor_count(); i++) {
		atomic_store(&g_reactors[i].stop, true);
		_wake(&g_reactors[i]);
	}
	for (i = 0; i < sb_reactor_count(); i++) {
		if (g_reactors[i].has_thread) {
			pthread_join(g_reactors[i].thread, NULL);
			g_reactors[i].has_thread = false;
		}
	}
}

int
sb_reactors_start(const struct sb_engine_opts *opts)
{
	uint32_t cores[SB_MAX_CORES];
	pthread_attr_t attr;
	cpu_set_t set;
	uint32_t count, i;
	int rc;

	if (opts == NULL) {
		return -EINVAL;
	}
	if (tls_reactor != NULL) {
		return -EPERM;
	}
	rc = sb_parse_core_mask(opts->core_mask, cores, SB_MAX_CORES, &count);
	if (rc != 0) {
		return -EINVAL;
	}
	if (count > SB_MAX_REACTORS) {
		SB_ERRLOG("core mask names %u CPUs; at most %d reactors\n", count, SB_MAX_REACTORS);
		return -EINVAL;
	}
	rc = _check_cores(cores, count, !opts->no_pin);
	if (rc != 0) {
		return rc;
	}
	rc = sb_reactors_create(cores, count, opts);
	if (rc != 0) {
		return rc;
	}
	for (i = 0; i < count; i++) {
		pthread_attr_init(&attr);
		if (!opts->no_pin) {
			CPU_ZERO(&set);
			CPU_SET(cores[i], &set);
			pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		}
		rc = pthread_create(&g_reactors[i].thread, &attr, _reactor_main, &g_reactors[i]);
		pthread_attr_destroy(&attr);
		if (rc != 0) {
			SB_ERRLOG("cannot start reactor on CPU %u: %s\n", cores[i], strerror(rc));
			rc = -rc;
			_stop_threads();
			sb_reactors_destroy();
			return rc;
		}
		g_reactors[i].has_thread = true;
	}
	SB_NOTICELOG("%u reactor(s) started (mask %s)\n", count, opts->core_mask);
	return 0;
}

void
sb_reactors_stop(void)
{
	if (tls_reactor != NULL) {
		SB_ERRLOG("reactors cannot be stopped from a reactor\n");
		return;
	}
	if (sb_reactor_count() == 0) {
		return;
	}
	_stop_threads();
	sb_reactors_destroy();
}
