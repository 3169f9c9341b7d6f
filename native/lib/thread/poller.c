/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pollers: functions a reactor calls every iteration (period 0) or at most
 * once per period (timed pollers, kept sorted by their next due tick).
 *
 * An unregistered poller is only marked and freed after the poll phase, so
 * a poller may unregister itself or any other poller of its reactor while
 * the reactor walks its lists.
 */
#include "sb/thread.h"
#include "sb/log.h"
#include "thread_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
_timed_insert(struct sb_reactor *r, struct sb_poller *p)
{
	struct sb_poller *it;

	/* Walk from the back: a re-armed poller is usually due after all others. */
	TAILQ_FOREACH_REVERSE(it, &r->timed_pollers, sb_poller_list, link) {
		if (it->next_run_tick <= p->next_run_tick) {
			TAILQ_INSERT_AFTER(&r->timed_pollers, it, p, link);
			return;
		}
	}
	TAILQ_INSERT_HEAD(&r->timed_pollers, p, link);
}

struct sb_poller *
sb_poller_register(sb_poller_fn fn, void *ctx, uint64_t period_us, const char *name)
{
	struct sb_reactor *r = sb_reactor_current();
	struct sb_poller *p;

	if (r == NULL) {
		SB_ERRLOG("poller %s: not on a reactor\n", name ? name : "?");
		return NULL;
	}
	if (fn == NULL) {
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		return NULL;
	}
	p->fn = fn;
	p->ctx = ctx;
	p->reactor = r;
	/* ~11 days at most: keeps next_run_tick arithmetic far from overflow. */
	p->period_us = period_us < 1000000000000ULL ? period_us : 1000000000000ULL;
	p->period_ticks = sb_us_to_ticks(p->period_us);
	p->state = SB_POLLER_STATE_ACTIVE;
	snprintf(p->name, sizeof(p->name), "%s", name ? name : "poller");
	if (period_us == 0) {
		TAILQ_INSERT_TAIL(&r->active_pollers, p, link);
		r->polling_pollers++;
	} else {
		p->next_run_tick = sb_get_ticks() + p->period_ticks;
		_timed_insert(r, p);
	}
	atomic_store_explicit(&r->poller_count,
			      atomic_load_explicit(&r->poller_count, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	return p;
}

static void
_unregister(struct sb_poller *p)
{
	struct sb_reactor *r = p->reactor;

	if (p->state != SB_POLLER_STATE_ACTIVE) {
		return;
	}
	p->state = SB_POLLER_STATE_UNREGISTERED;
	r->unregistered_pollers++;
	if (p->period_us == 0 && !p->event_driven) {
		r->polling_pollers--;
	}
	atomic_store_explicit(&r->poller_count,
			      atomic_load_explicit(&r->poller_count, memory_order_relaxed) - 1,
			      memory_order_relaxed);
}

static void
_unregister_msg(void *ctx)
{
	_unregister(ctx);
}

void
sb_poller_unregister(struct sb_poller **pp)
{
	struct sb_poller *p;

	if (pp == NULL || *pp == NULL) {
		return;
	}
	p = *pp;
	*pp = NULL;
	if (p->reactor != sb_reactor_current()) {
		/* Only the owner touches its lists: hand the job over. */
		SB_WARNLOG("poller %s unregistered from outside %s\n", p->name, p->reactor->name);
		sb_send_msg_retry(p->reactor, _unregister_msg, p);
		return;
	}
	_unregister(p);
}

int
sb_poller_set_event_driven(struct sb_poller *p, bool event_driven)
{
	struct sb_reactor *r;

	if (p == NULL || p->period_us != 0 || p->state != SB_POLLER_STATE_ACTIVE) {
		return -EINVAL;
	}
	r = p->reactor;
	if (r != sb_reactor_current()) {
		return -EPERM;
	}
	if (p->event_driven != event_driven) {
		p->event_driven = event_driven;
		if (event_driven) {
			r->polling_pollers--;
		} else {
			r->polling_pollers++;
		}
	}
	return 0;
}

int
sb_poller_set_arm_fn(struct sb_poller *p, sb_poller_arm_fn arm)
{
	if (p == NULL || !p->event_driven || p->state != SB_POLLER_STATE_ACTIVE) {
		return -EINVAL;
	}
	if (p->reactor != sb_reactor_current()) {
		return -EPERM;
	}
	p->arm = arm;
	return 0;
}

bool
sb_pollers_arm(struct sb_reactor *r)
{
	struct sb_poller *p;
	bool pending = false;

	TAILQ_FOREACH(p, &r->active_pollers, link) {
		if (p->arm != NULL && p->event_driven && p->state == SB_POLLER_STATE_ACTIVE) {
			/* Arm them all: each one's source must be on before the reactor sleeps. */
			pending |= p->arm(p->ctx);
		}
	}
	return pending;
}

static void
_reap(struct sb_reactor *r)
{
	struct sb_poller *p, *tmp;

	/* glibc's sys/queue.h has no TAILQ_FOREACH_SAFE. */
	for (p = TAILQ_FIRST(&r->active_pollers); p != NULL; p = tmp) {
		tmp = TAILQ_NEXT(p, link);
		if (p->state == SB_POLLER_STATE_UNREGISTERED) {
			TAILQ_REMOVE(&r->active_pollers, p, link);
			free(p);
		}
	}
	for (p = TAILQ_FIRST(&r->timed_pollers); p != NULL; p = tmp) {
		tmp = TAILQ_NEXT(p, link);
		if (p->state == SB_POLLER_STATE_UNREGISTERED) {
			TAILQ_REMOVE(&r->timed_pollers, p, link);
			free(p);
		}
	}
	r->unregistered_pollers = 0;
}

static inline int
_run_one(struct sb_poller *p)
{
	int rc = p->fn(p->ctx);

	p->run_count++;
	if (rc > 0) {
		p->busy_count++;
		return 1;
	}
	return 0;
}

int
sb_pollers_run(struct sb_reactor *r)
{
	struct sb_poller *p, *first;
	int busy = 0;

	TAILQ_FOREACH(p, &r->active_pollers, link) {
		if (p->state == SB_POLLER_STATE_ACTIVE) {
			busy += _run_one(p);
		}
	}
	/*
	 * Due timed pollers, soonest first.  A poller re-armed during this pass
	 * is due after r->now, so the pass ends.
	 */
	while ((first = TAILQ_FIRST(&r->timed_pollers)) != NULL &&
	       first->next_run_tick <= r->now) {
		TAILQ_REMOVE(&r->timed_pollers, first, link);
		if (first->state == SB_POLLER_STATE_ACTIVE) {
			busy += _run_one(first);
		}
		if (first->state == SB_POLLER_STATE_ACTIVE) {
			/*
			 * Keep the poller's cadence: a run that was a little late (a
			 * sleeping reactor wakes some microseconds after the due tick)
			 * does not push every later run back.  After a gap of a whole
			 * period or more it runs once and restarts from now.
			 */
			first->next_run_tick += first->period_ticks;
			if (first->next_run_tick <= r->now) {
				first->next_run_tick = r->now + first->period_ticks;
			}
			_timed_insert(r, first);
		} else {
			/* Already off the list: free it here, _reap cannot see it. */
			free(first);
		}
	}
	if (r->unregistered_pollers > 0) {
		_reap(r);
	}
	return busy;
}

uint64_t
sb_reactor_next_timer_delay(struct sb_reactor *r)
{
	struct sb_poller *first = TAILQ_FIRST(&r->timed_pollers);
	uint64_t now;

	if (first == NULL) {
		return UINT64_MAX;
	}
	now = sb_get_ticks();
	return first->next_run_tick <= now ? 0 : first->next_run_tick - now;
}

void
sb_pollers_free_all(struct sb_reactor *r)
{
	struct sb_poller *p;
	uint32_t leaked = 0;

	while ((p = TAILQ_FIRST(&r->active_pollers)) != NULL) {
		TAILQ_REMOVE(&r->active_pollers, p, link);
		leaked += p->state == SB_POLLER_STATE_ACTIVE;
		free(p);
	}
	while ((p = TAILQ_FIRST(&r->timed_pollers)) != NULL) {
		TAILQ_REMOVE(&r->timed_pollers, p, link);
		leaked += p->state == SB_POLLER_STATE_ACTIVE;
		free(p);
	}
	if (leaked > 0) {
		SB_WARNLOG("%s stopped with %u poller(s) still registered\n", r->name, leaked);
	}
	r->unregistered_pollers = 0;
	r->polling_pollers = 0;
	atomic_store(&r->poller_count, 0);
}

/* ---- sb_reactor_get_pollers: a snapshot taken on the owning reactor ---- */

struct pollers_snapshot {
	struct sb_reactor *r;
	struct sb_poller_info *out;
	uint32_t max;
	uint32_t count;
};

static void
_fill(struct pollers_snapshot *s, struct sb_poller_list *list)
{
	struct sb_poller *p;
	struct sb_poller_info *info;

	TAILQ_FOREACH(p, list, link) {
		if (p->state != SB_POLLER_STATE_ACTIVE) {
			continue;
		}
		if (s->count < s->max) {
			info = &s->out[s->count];
			memset(info, 0, sizeof(*info));
			snprintf(info->name, sizeof(info->name), "%s", p->name);
			info->period_us = p->period_us;
			info->run_count = p->run_count;
			info->busy_count = p->busy_count;
		}
		s->count++;
	}
}

static void
_snapshot(struct pollers_snapshot *s)
{
	_fill(s, &s->r->active_pollers);
	_fill(s, &s->r->timed_pollers);
}

/* The snapshot's results area of a sb_call_owned(): the count, then the pollers. */
struct pollers_results {
	uint32_t count;
	struct sb_poller_info info[];
};

static void
_snapshot_call(void *ctx, struct sb_completion *done)
{
	struct pollers_results *res = sb_call_results(done);
	struct pollers_snapshot s = { .r = sb_reactor_current(), .out = res->info,
				      .max = *(uint32_t *)ctx };

	_snapshot(&s);
	res->count = s.count;
	sb_complete(done, 0);
}

int
sb_reactor_get_pollers(uint32_t index, struct sb_poller_info *out, uint32_t max,
		       uint32_t *count)
{
	struct sb_reactor *cur = sb_reactor_current();
	struct pollers_snapshot local = { .out = out, .max = max };
	struct pollers_results *res;
	size_t size;
	int rc;

	local.r = sb_reactor_get(index);
	if (local.r == NULL || count == NULL || (out == NULL && max > 0)) {
		return -EINVAL;
	}
	if (cur == local.r) {
		_snapshot(&local);
		*count = local.count < max ? local.count : max;
		return 0;
	}
	if (cur != NULL) {
		return -EPERM;
	}
	/* The reactor fills the call's own copy; out is written here, only on success. */
	size = sizeof(*res) + (size_t)max * sizeof(*out);
	res = calloc(1, size);
	if (res == NULL) {
		return -ENOMEM;
	}
	rc = sb_call_owned(local.r, _snapshot_call, &max, sizeof(max), res, size, NULL,
			   SB_CALL_TIMEOUT_US);
	if (rc == -SB_EWAITER_GAVE_UP) {
		SB_ERRLOG("%s did not answer the poller snapshot\n", local.r->name);
	}
	if (rc == 0) {
		/* count = pollers copied; the caller sees truncation when count == max. */
		*count = res->count < max ? res->count : max;
		memcpy(out, res->info, *count * sizeof(*out));
	}
	free(res);
	return rc;
}
