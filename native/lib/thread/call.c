/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sb_call() and sb_call_owned(): a non-reactor thread (Python, the vhost
 * control thread) runs work on a reactor and waits for its result.
 *
 * The completion is shared by the waiter and the worker and refcounted: a
 * waiter that times out drops its reference and returns, and the worker's
 * late sb_complete() then only frees the object.
 *
 * sb_call_owned() is the one synchronous/asynchronous boundary of the
 * control path: the completion also owns a copy of the caller's arguments
 * and a results area, so the reactor never holds a pointer into the
 * caller's memory.  Results are copied out by the waiter, and only while it
 * still waits; a waiter that gave up returns -SB_EWAITER_GAVE_UP (never an
 * errno the work itself could return), and the owned memory is released by
 * whichever side lets go last.
 */
#include "sb/thread.h"
#include "sb/log.h"
#include "thread_internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sb_completion {
	_Atomic int refs;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rc;
	sb_call_fn fn;
	void *ctx;
	/* sb_call_owned(): ctx and results point into data[], released at the last put. */
	void *results;
	sb_call_release_fn release;
	_Alignas(max_align_t) unsigned char data[];
};

/* Test hook (sb_test_set_call_timeout): caps sb_call_owned() waits; 0 = off. */
static _Atomic uint64_t g_test_call_timeout_us;

static void
_put(struct sb_completion *c)
{
	if (atomic_fetch_sub(&c->refs, 1) == 1) {
		if (c->release != NULL) {
			c->release(c->ctx);
		}
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->lock);
		free(c);
	}
}

static void
_call_msg(void *arg)
{
	struct sb_completion *c = arg;

	c->fn(c->ctx, c);
}

static void
_deadline(struct timespec *ts, uint64_t timeout_us)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(timeout_us / 1000000ULL);
	ts->tv_nsec += (long)(timeout_us % 1000000ULL) * 1000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static bool
_before(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec < deadline->tv_sec ||
	       (now.tv_sec == deadline->tv_sec && now.tv_nsec < deadline->tv_nsec);
}

static size_t
_round_up(size_t n)
{
	size_t a = _Alignof(max_align_t);

	return (n + a - 1) / a * a;
}

static struct sb_completion *
_completion_new(size_t data_size)
{
	struct sb_completion *c = calloc(1, sizeof(*c) + data_size);
	pthread_condattr_t attr;

	if (c == NULL) {
		return NULL;
	}
	atomic_init(&c->refs, 2);
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &attr);
	pthread_condattr_destroy(&attr);
	return c;
}

/*
 * Queue c on r and wait.  *gave_up is set when the wait ended before the
 * work completed; results are copied out under the lock, so a late
 * sb_complete() never races the copy.
 */
static int
_call_wait(struct sb_reactor *r, struct sb_completion *c, uint64_t timeout_us, void *results,
	   size_t results_size, bool *gave_up)
{
	struct timespec deadline, pause = { .tv_sec = 0, .tv_nsec = 50000 };
	int rc;

	*gave_up = false;
	_deadline(&deadline, timeout_us);
	while ((rc = sb_send_msg(r, _call_msg, c)) == -EAGAIN && _before(&deadline)) {
		nanosleep(&pause, NULL);
	}
	if (rc != 0) {
		/* Never queued: nobody else holds a reference. */
		atomic_store(&c->refs, 1);
		_put(c);
		*gave_up = rc == -EAGAIN;
		return rc;
	}

	pthread_mutex_lock(&c->lock);
	while (!c->done) {
		if (pthread_cond_timedwait(&c->cond, &c->lock, &deadline) == ETIMEDOUT) {
			break;
		}
	}
	if (c->done) {
		rc = c->rc;
		if (results != NULL && results_size > 0) {
			memcpy(results, c->results, results_size);
		}
	} else {
		*gave_up = true;
	}
	pthread_mutex_unlock(&c->lock);
	if (*gave_up) {
		SB_WARNLOG("call on reactor %u: the waiter gave up after %lu us\n",
			   sb_reactor_index(r), (unsigned long)timeout_us);
	}
	_put(c);
	return rc;
}

/* 0 means the default; the test hook caps every wait. */
static uint64_t
_timeout(uint64_t timeout_us)
{
	uint64_t cap = atomic_load(&g_test_call_timeout_us);

	if (timeout_us == 0) {
		timeout_us = SB_CALL_TIMEOUT_US;
	}
	return cap != 0 && cap < timeout_us ? cap : timeout_us;
}

static int
_call_check(struct sb_reactor *r, sb_call_fn fn)
{
	if (sb_reactor_current() != NULL) {
		/* Blocking a reactor on another one can deadlock both. */
		SB_ERRLOG("sb_call from a reactor thread\n");
		return -EPERM;
	}
	if (r == NULL || fn == NULL) {
		return -EINVAL;
	}
	return 0;
}

int
sb_call(struct sb_reactor *r, sb_call_fn fn, void *ctx, uint64_t timeout_us)
{
	struct sb_completion *c;
	bool gave_up;
	int rc;

	rc = _call_check(r, fn);
	if (rc != 0) {
		return rc;
	}
	timeout_us = _timeout(timeout_us);
	c = _completion_new(0);
	if (c == NULL) {
		return -ENOMEM;
	}
	c->fn = fn;
	c->ctx = ctx;
	rc = _call_wait(r, c, timeout_us, NULL, 0, &gave_up);
	return gave_up ? -SB_EWAITER_GAVE_UP : rc;
}

int
sb_call_owned(struct sb_reactor *r, sb_call_fn fn, const void *args, size_t args_size,
	      void *results, size_t results_size, sb_call_release_fn release,
	      uint64_t timeout_us)
{
	struct sb_completion *c = NULL;
	size_t args_room = _round_up(args_size);
	bool gave_up;
	int rc;

	rc = _call_check(r, fn);
	if (rc == 0 && ((args_size > 0 && args == NULL) || (results_size > 0 && results == NULL) ||
			args_room > SIZE_MAX / 2 || results_size > SIZE_MAX / 2)) {
		rc = -EINVAL;
	}
	if (rc == 0 && (c = _completion_new(args_room + results_size)) == NULL) {
		rc = -ENOMEM;
	}
	if (rc != 0) {
		/* Nothing was copied: release what the caller's own args refer to. */
		if (release != NULL && args != NULL) {
			release((void *)args);
		}
		return rc;
	}
	timeout_us = _timeout(timeout_us);
	c->fn = fn;
	c->ctx = c->data;
	c->results = c->data + args_room;
	c->release = release;
	if (args_size > 0) {
		memcpy(c->data, args, args_size);
	}
	rc = _call_wait(r, c, timeout_us, results, results_size, &gave_up);
	return gave_up ? -SB_EWAITER_GAVE_UP : rc;
}

void *
sb_call_results(struct sb_completion *done)
{
	return done != NULL ? done->results : NULL;
}

void
sb_complete(struct sb_completion *c, int rc)
{
	if (c == NULL) {
		return;
	}
	pthread_mutex_lock(&c->lock);
	if (c->done) {
		pthread_mutex_unlock(&c->lock);
		SB_ERRLOG("sb_complete called twice (rc %d)\n", rc);
		return;
	}
	c->done = true;
	c->rc = rc;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	_put(c);
}

void
sb_call_done_cb(void *cb_arg, int rc)
{
	sb_complete(cb_arg, rc);
}

/* ---- test hooks ---- */

static bool
_test_hooks_allowed(void)
{
	return getenv("SB_TEST_HOOKS") != NULL;
}

int
sb_test_set_call_timeout(uint64_t timeout_us)
{
	if (!_test_hooks_allowed()) {
		return -EPERM;
	}
	atomic_store(&g_test_call_timeout_us, timeout_us);
	return 0;
}

static void
_stall_msg(void *ctx)
{
	uint64_t us = (uint64_t)(uintptr_t)ctx;
	struct timespec ts = { .tv_sec = (time_t)(us / 1000000ULL),
			       .tv_nsec = (long)(us % 1000000ULL) * 1000L };

	SB_NOTICELOG("test hook: reactor stalls for %lu us\n", (unsigned long)us);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

int
sb_test_stall_reactor(uint32_t index, uint64_t stall_us)
{
	struct sb_reactor *r = sb_reactor_get(index);

	if (!_test_hooks_allowed()) {
		return -EPERM;
	}
	if (r == NULL || stall_us > UINTPTR_MAX) {
		return -EINVAL;
	}
	return sb_send_msg(r, _stall_msg, (void *)(uintptr_t)stall_us);
}
