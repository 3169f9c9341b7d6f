/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sb_call(): a non-reactor thread (Python, the vhost control thread) runs
 * work on a reactor and waits for its result.
 *
 * The completion is shared by the waiter and the worker and refcounted: a
 * waiter that times out drops its reference and returns, and the worker's
 * late sb_complete() then only frees the object.
 */
#include "sb/thread.h"
#include "sb/log.h"
#include "thread_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

struct sb_completion {
	_Atomic int refs;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rc;
	sb_call_fn fn;
	void *ctx;
};

static void
_put(struct sb_completion *c)
{
	if (atomic_fetch_sub(&c->refs, 1) == 1) {
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

int
sb_call(struct sb_reactor *r, sb_call_fn fn, void *ctx, uint64_t timeout_us)
{
	struct timespec deadline, pause = { .tv_sec = 0, .tv_nsec = 50000 };
	struct sb_completion *c;
	pthread_condattr_t attr;
	int rc;

	if (sb_reactor_current() != NULL) {
		/* Blocking a reactor on another one can deadlock both. */
		SB_ERRLOG("sb_call from a reactor thread\n");
		return -EPERM;
	}
	if (r == NULL || fn == NULL) {
		return -EINVAL;
	}
	if (timeout_us == 0) {
		timeout_us = SB_CALL_TIMEOUT_US;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		return -ENOMEM;
	}
	atomic_init(&c->refs, 2);
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &attr);
	pthread_condattr_destroy(&attr);
	c->fn = fn;
	c->ctx = ctx;
	_deadline(&deadline, timeout_us);

	while ((rc = sb_send_msg(r, _call_msg, c)) == -EAGAIN && _before(&deadline)) {
		nanosleep(&pause, NULL);
	}
	if (rc != 0) {
		/* Never queued: nobody else holds a reference. */
		atomic_store(&c->refs, 1);
		_put(c);
		return rc == -EAGAIN ? -ETIMEDOUT : rc;
	}

	pthread_mutex_lock(&c->lock);
	while (!c->done) {
		if (pthread_cond_timedwait(&c->cond, &c->lock, &deadline) == ETIMEDOUT) {
			break;
		}
	}
	rc = c->done ? c->rc : -ETIMEDOUT;
	pthread_mutex_unlock(&c->lock);
	if (rc == -ETIMEDOUT) {
		SB_WARNLOG("call on reactor %u timed out after %lu us\n", sb_reactor_index(r),
			   (unsigned long)timeout_us);
	}
	_put(c);
	return rc;
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
