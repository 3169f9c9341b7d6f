/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Thread library logic under the deterministic harness: core masks,
 * messages between reactors, pollers, sb_call with a late completion,
 * statistics.  No reactor thread runs here; the test drives every step.
 */
#include "sb/thread.h"
#include "sb/log.h"
#include "thread/thread_internal.h"
#include "ut.h"
#include "ut_multithread.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- core masks ---- */

static bool
_mask_is(const char *mask, const uint32_t *want, uint32_t n)
{
	uint32_t cores[SB_MAX_CORES], count = 0, i;

	if (sb_parse_core_mask(mask, cores, SB_MAX_CORES, &count) != 0 || count != n) {
		return false;
	}
	for (i = 0; i < n; i++) {
		if (cores[i] != want[i]) {
			return false;
		}
	}
	return true;
}

static int
_mask_rc(const char *mask)
{
	uint32_t cores[SB_MAX_CORES], count = 0;

	return sb_parse_core_mask(mask, cores, SB_MAX_CORES, &count);
}

static void
test_core_mask_good(void)
{
	uint32_t c01[] = { 0, 1 }, c0[] = { 0 }, c1[] = { 1 }, c4[] = { 4 };
	uint32_t c0_3_6[] = { 0, 1, 2, 3, 6 }, c_hi[] = { 0, 64, 1023 };
	uint32_t c_dup[] = { 1, 2, 3 }, many[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
	uint32_t cores[4], count = 0;
	char mask[300];

	CHECK(_mask_is("0x3", c01, 2));
	CHECK(_mask_is("0X3", c01, 2));
	CHECK(_mask_is("3", c01, 2));
	CHECK(_mask_is("0x1", c0, 1));
	CHECK(_mask_is("0x2", c1, 1));
	CHECK(_mask_is("0x10", c4, 1));
	CHECK(_mask_is("0xff", many, 8));
	CHECK(_mask_is("0xFf", many, 8));
	CHECK(_mask_is("[0,1]", c01, 2));
	CHECK(_mask_is("[1,0]", c01, 2));
	CHECK(_mask_is("[0-3,6]", c0_3_6, 5));
	CHECK(_mask_is("[6,0-3]", c0_3_6, 5));
	CHECK(_mask_is("[4]", c4, 1));
	CHECK(_mask_is("[1-3,2,3]", c_dup, 3));
	CHECK(_mask_is("[0,64,1023]", c_hi, 3));
	/* A 1024-bit hex mask: top bit is CPU 1023. */
	memset(mask, '0', sizeof(mask));
	mask[0] = '0';
	mask[1] = 'x';
	mask[2] = '8';
	mask[2 + 256] = '\0';
	mask[2 + 255] = '1';
	CHECK(_mask_is(mask, (uint32_t[]){ 0, 1023 }, 2));
	/* -E2BIG when the output is too small. */
	CHECK_EQ(sb_parse_core_mask("0xff", cores, 4, &count), -E2BIG);
	CHECK_EQ(sb_parse_core_mask("0xf", cores, 4, &count), 0);
	CHECK_EQ(count, 4);
}

static void
test_core_mask_bad(void)
{
	char buf[4096];
	char mask[300];

	sb_log_set_stderr(0);
	sb_log_clear_recent();
	CHECK_EQ(_mask_rc(NULL), -EINVAL);
	CHECK_EQ(_mask_rc(""), -EINVAL);
	CHECK_EQ(_mask_rc("0x"), -EINVAL);
	CHECK_EQ(_mask_rc("0x0"), -EINVAL);
	CHECK_EQ(_mask_rc("0"), -EINVAL);
	CHECK_EQ(_mask_rc("0xg"), -EINVAL);
	CHECK_EQ(_mask_rc("0x3 "), -EINVAL);
	CHECK_EQ(_mask_rc("-1"), -EINVAL);
	CHECK_EQ(_mask_rc("[]"), -EINVAL);
	CHECK_EQ(_mask_rc("["), -EINVAL);
	CHECK_EQ(_mask_rc("[0"), -EINVAL);
	CHECK_EQ(_mask_rc("[0,]"), -EINVAL);
	CHECK_EQ(_mask_rc("[,0]"), -EINVAL);
	CHECK_EQ(_mask_rc("[3-1]"), -EINVAL);
	CHECK_EQ(_mask_rc("[1-]"), -EINVAL);
	CHECK_EQ(_mask_rc("[a]"), -EINVAL);
	CHECK_EQ(_mask_rc("[0]x"), -EINVAL);
	CHECK_EQ(_mask_rc("[1024]"), -EINVAL);
	CHECK_EQ(_mask_rc("[0-1024]"), -EINVAL);
	CHECK_EQ(_mask_rc("[99999999999999999999]"), -EINVAL);
	/* 257 hex digits: bit 1024 and up. */
	memset(mask, '0', sizeof(mask));
	mask[0] = '1';
	mask[257] = '\0';
	CHECK_EQ(_mask_rc(mask), -EINVAL);
	/* The reason is logged. */
	sb_log_get_recent(buf, sizeof(buf));
	CHECK(strstr(buf, "reversed") != NULL);
	CHECK(strstr(buf, "names no CPU") != NULL);
	CHECK(strstr(buf, ">= 1024") != NULL);
	sb_log_set_stderr(1);
}

/* ---- messages between reactors ---- */

struct ping {
	int hops;
	int max_hops;
	int ran_on[16];
};

static void
_ping(void *ctx)
{
	struct ping *p = ctx;
	struct sb_reactor *cur = sb_reactor_current();
	uint32_t next;

	p->ran_on[p->hops++] = (int)sb_reactor_index(cur);
	if (p->hops < p->max_hops) {
		next = (sb_reactor_index(cur) + 1) % sb_reactor_count();
		sb_send_msg(sb_reactor_get(next), _ping, p);
	}
}

static void
_count(void *ctx)
{
	(*(int *)ctx)++;
}

static void
test_messages(void)
{
	struct ping p = { .max_hops = 7 };
	struct sb_reactor_stats st;
	int counter = 0, i;

	CHECK_EQ(ut_init_reactors(3), 0);
	CHECK_EQ(sb_reactor_count(), 3);
	CHECK(sb_reactor_current() == sb_reactor_get(0));
	CHECK(sb_reactor_get(3) == NULL);
	CHECK(sb_reactor_get_by_core(2) == sb_reactor_get(2));
	CHECK(sb_reactor_get_by_core(5) == NULL);

	CHECK_EQ(sb_send_msg(sb_reactor_get(1), _ping, &p), 0);
	/* Nothing runs until the target reactor polls. */
	CHECK_EQ(ut_poll_reactor(0), 0);
	CHECK_EQ(ut_poll_reactor(2), 0);
	CHECK_EQ(p.hops, 0);
	CHECK_EQ(ut_poll_reactor(1), 1);
	CHECK_EQ(p.hops, 1);
	CHECK_EQ(p.ran_on[0], 1);
	/* The next hop waits on reactor 2. */
	CHECK_EQ(ut_poll_reactor(0), 0);
	CHECK_EQ(ut_poll_reactor(2), 1);
	CHECK_EQ(p.ran_on[1], 2);
	ut_poll_reactors();
	CHECK_EQ(p.hops, 7);
	CHECK_EQ(p.ran_on[2], 0);
	CHECK_EQ(p.ran_on[6], 1);

	/* Invalid targets. */
	CHECK_EQ(sb_send_msg(NULL, _count, &counter), -EINVAL);
	CHECK_EQ(sb_send_msg(sb_reactor_get(0), NULL, &counter), -EINVAL);

	/* A batch bounds one iteration: 100 messages take two iterations. */
	for (i = 0; i < 100; i++) {
		CHECK_EQ(sb_send_msg(sb_reactor_get(2), _count, &counter), 0);
	}
	CHECK_EQ(ut_poll_reactor(2), SB_MSG_BATCH);
	CHECK_EQ(counter, SB_MSG_BATCH);
	CHECK_EQ(ut_poll_reactor(2), 100 - SB_MSG_BATCH);
	CHECK_EQ(counter, 100);

	/* A non-reactor thread may send too. */
	ut_set_reactor(-1);
	CHECK(sb_reactor_current() == NULL);
	CHECK_EQ(sb_send_msg(sb_reactor_get(0), _count, &counter), 0);
	ut_poll_reactor(0);
	CHECK_EQ(counter, 101);
	ut_set_reactor(0);

	/* Ring full -> -EAGAIN, and the ring works again once drained. */
	for (i = 0; i < SB_DEFAULT_RING_SIZE; i++) {
		if (sb_send_msg(sb_reactor_get(1), _count, &counter) != 0) {
			break;
		}
	}
	CHECK_EQ(i, SB_DEFAULT_RING_SIZE);
	CHECK_EQ(sb_send_msg(sb_reactor_get(1), _count, &counter), -EAGAIN);
	ut_poll_reactor_until_idle(1);
	CHECK_EQ(counter, 101 + SB_DEFAULT_RING_SIZE);
	CHECK_EQ(sb_send_msg(sb_reactor_get(1), _count, &counter), 0);
	ut_poll_reactors();

	CHECK_EQ(sb_reactor_get_stats(1, &st), 0);
	CHECK_EQ(st.index, 1);
	CHECK_EQ(st.core, 1);
	CHECK(strcmp(st.name, "reactor_1") == 0);
	CHECK_EQ(st.msgs, 3 + SB_DEFAULT_RING_SIZE + 1);
	CHECK_EQ(sb_reactor_get_stats(3, &st), -EINVAL);

	/* Messages still queued at teardown run; afterwards sends are refused. */
	counter = 0;
	sb_send_msg(sb_reactor_get(2), _count, &counter);
	ut_fini_reactors();
	CHECK_EQ(counter, 1);
	CHECK_EQ(sb_reactor_count(), 0);
	CHECK(sb_reactor_get(0) == NULL);
	CHECK_EQ(sb_send_msg(sb_reactor_get(0), _count, &counter), -ESHUTDOWN);
}

/* ---- pollers ---- */

struct poll_ctx {
	int runs;
	int busy_every; /* BUSY on every Nth run (0: never) */
	struct sb_poller *self;
	int unregister_at;
	struct sb_poller **victim;
};

static int
_poll(void *arg)
{
	struct poll_ctx *c = arg;

	c->runs++;
	if (c->unregister_at != 0 && c->runs == c->unregister_at) {
		sb_poller_unregister(&c->self);
	}
	if (c->victim != NULL && *c->victim != NULL && c->runs == 1) {
		sb_poller_unregister(c->victim);
	}
	if (c->busy_every != 0 && c->runs % c->busy_every == 0) {
		return SB_POLLER_BUSY;
	}
	return SB_POLLER_IDLE;
}

static struct sb_poller_info *
_find_info(struct sb_poller_info *info, uint32_t n, const char *name)
{
	uint32_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(info[i].name, name) == 0) {
			return &info[i];
		}
	}
	return NULL;
}

static void
test_pollers(void)
{
	struct poll_ctx a = { .busy_every = 2 }, t = { 0 }, s = { .unregister_at = 3 };
	struct poll_ctx killer = { 0 }, victim = { 0 };
	struct sb_poller *pa, *pt, *pk, *pv;
	struct sb_poller_info info[8], *pi;
	struct sb_reactor_stats st;
	uint32_t n = 0;
	int i, busy;

	CHECK_EQ(ut_init_reactors(2), 0);
	ut_set_reactor(-1);
	CHECK(sb_poller_register(_poll, &a, 0, "nope") == NULL);
	ut_set_reactor(0);

	pa = sb_poller_register(_poll, &a, 0, "active");
	pt = sb_poller_register(_poll, &t, 1000, "timed_1ms");
	s.self = sb_poller_register(_poll, &s, 0, "self_unreg");
	CHECK(pa != NULL && pt != NULL && s.self != NULL);
	CHECK_EQ(sb_reactor_get_stats(0, &st), 0);
	CHECK_EQ(st.poller_count, 3);

	/* Four iterations without time passing: the timed poller never runs. */
	busy = 0;
	for (i = 0; i < 4; i++) {
		busy += ut_poll_reactor(0);
	}
	CHECK_EQ(a.runs, 4);
	CHECK_EQ(busy, 2);
	CHECK_EQ(t.runs, 0);
	/* The self-unregistering poller ran 3 times and is gone. */
	CHECK_EQ(s.runs, 3);
	CHECK(s.self == NULL);
	CHECK_EQ(sb_reactor_get_stats(0, &st), 0);
	CHECK_EQ(st.poller_count, 2);
	/* Reactor 1 has none of these. */
	ut_poll_reactor(1);
	CHECK_EQ(a.runs, 4);

	/* 999 us: not yet due.  1 us more: due, runs once, re-armed a period later. */
	ut_advance_time_us(999);
	ut_poll_reactor(0);
	CHECK_EQ(t.runs, 0);
	ut_advance_time_us(1);
	ut_poll_reactor(0);
	CHECK_EQ(t.runs, 1);
	ut_poll_reactor(0);
	CHECK_EQ(t.runs, 1);
	CHECK(sb_reactor_next_timer_delay(sb_reactor_get(0)) == sb_us_to_ticks(1000));
	/* A late run (here by 300 us) keeps the cadence: the next is due on the grid. */
	ut_advance_time_us(1300);
	ut_poll_reactor(0);
	CHECK_EQ(t.runs, 2);
	CHECK(sb_reactor_next_timer_delay(sb_reactor_get(0)) == sb_us_to_ticks(700));
	ut_advance_time_us(700);
	ut_poll_reactor(0);
	CHECK_EQ(t.runs, 3);
	/* A long gap runs a timed poller once, not once per missed period. */
	ut_advance_time_us(10000);
	ut_poll_reactor(0);
	CHECK_EQ(t.runs, 4);
	CHECK(sb_reactor_next_timer_delay(sb_reactor_get(0)) == sb_us_to_ticks(1000));

	/* Statistics through the snapshot API (same reactor: no call needed). */
	CHECK_EQ(sb_reactor_get_pollers(0, info, 8, &n), 0);
	CHECK_EQ(n, 2);
	pi = _find_info(info, n, "active");
	CHECK(pi != NULL && pi->run_count == (uint64_t)a.runs &&
	      pi->busy_count == (uint64_t)a.runs / 2);
	CHECK(pi != NULL && pi->period_us == 0);
	pi = _find_info(info, n, "timed_1ms");
	CHECK(pi != NULL && pi->run_count == 4 && pi->busy_count == 0 && pi->period_us == 1000);
	CHECK(_find_info(info, n, "self_unreg") == NULL);
	/* Truncated snapshot. */
	CHECK_EQ(sb_reactor_get_pollers(0, info, 1, &n), 0);
	CHECK_EQ(n, 1);
	/* From another reactor: would block a reactor. */
	ut_set_reactor(1);
	CHECK_EQ(sb_reactor_get_pollers(0, info, 8, &n), -EPERM);
	ut_set_reactor(0);

	/* One poller unregisters another one that runs later in the same pass. */
	pk = sb_poller_register(_poll, &killer, 0, "killer");
	pv = sb_poller_register(_poll, &victim, 0, "victim");
	killer.victim = &pv;
	ut_poll_reactor(0);
	CHECK(pv == NULL);
	CHECK_EQ(victim.runs, 0);
	ut_poll_reactor(0);
	CHECK_EQ(victim.runs, 0);
	CHECK_EQ(killer.runs, 2);
	sb_poller_unregister(&pk);
	CHECK(pk == NULL);

	/* A timed poller unregistering itself while it runs. */
	t.unregister_at = t.runs + 1;
	t.self = pt;
	ut_advance_time_us(1000);
	ut_poll_reactor(0);
	CHECK(t.self == NULL);
	ut_advance_time_us(5000);
	ut_poll_reactor(0);
	CHECK_EQ(t.runs, 5);
	CHECK(sb_reactor_next_timer_delay(sb_reactor_get(0)) == UINT64_MAX);

	/* Event-driven marking: only active pollers, only on their reactor. */
	CHECK_EQ(sb_reactor_get(0)->polling_pollers, 1);
	CHECK_EQ(sb_poller_set_event_driven(pa, true), 0);
	CHECK_EQ(sb_poller_set_event_driven(pa, true), 0);
	CHECK_EQ(sb_reactor_get(0)->polling_pollers, 0);
	pt = sb_poller_register(_poll, &t, 1000, "timed_again");
	CHECK_EQ(sb_poller_set_event_driven(pt, true), -EINVAL);
	sb_poller_unregister(&pt);
	CHECK_EQ(sb_poller_set_event_driven(NULL, true), -EINVAL);
	ut_set_reactor(1);
	CHECK_EQ(sb_poller_set_event_driven(pa, false), -EPERM);
	ut_set_reactor(0);
	CHECK_EQ(sb_poller_set_event_driven(pa, false), 0);
	CHECK_EQ(sb_reactor_get(0)->polling_pollers, 1);
	CHECK_EQ(sb_poller_set_event_driven(pa, true), 0);

	/* Unregister from a foreign reactor goes through a message to the owner. */
	ut_set_reactor(1);
	sb_poller_unregister(&pa);
	CHECK(pa == NULL);
	ut_set_reactor(0);
	i = a.runs;
	ut_poll_reactor(0); /* runs the message, then the poller list without it */
	CHECK_EQ(sb_reactor_get_stats(0, &st), 0);
	CHECK_EQ(st.poller_count, 0);
	CHECK_EQ(sb_reactor_get(0)->polling_pollers, 0);
	ut_poll_reactor(0);
	CHECK_EQ(a.runs, i);
	ut_fini_reactors();
}

/* Timed pollers run in due order, each at most once per pass. */
static int g_order[8];
static int g_order_n;

static int
_order_poll(void *ctx)
{
	g_order[g_order_n++ % 8] = (int)(intptr_t)ctx;
	return SB_POLLER_BUSY;
}

static void
test_timed_order(void)
{
	struct sb_poller *p3, *p1, *p2;

	CHECK_EQ(ut_init_reactors(1), 0);
	p3 = sb_poller_register(_order_poll, (void *)3, 300, "p3");
	p1 = sb_poller_register(_order_poll, (void *)1, 100, "p1");
	p2 = sb_poller_register(_order_poll, (void *)2, 200, "p2");
	ut_advance_time_us(300);
	CHECK_EQ(ut_poll_reactor(0), 3);
	CHECK_EQ(g_order_n, 3);
	CHECK(g_order[0] == 1 && g_order[1] == 2 && g_order[2] == 3);
	/*
	 * Cadence kept: p2 (due at 200, ran at 300) is next due at 400, p3 at
	 * 600; p1 missed a whole period, so it restarts from now: 400.
	 */
	ut_advance_time_us(99);
	CHECK_EQ(ut_poll_reactor(0), 0);
	ut_advance_time_us(1);
	CHECK_EQ(ut_poll_reactor(0), 2);
	CHECK(g_order[3] == 1 && g_order[4] == 2);
	ut_advance_time_us(99);
	CHECK_EQ(ut_poll_reactor(0), 0);
	ut_advance_time_us(1);
	CHECK_EQ(ut_poll_reactor(0), 1);
	CHECK_EQ(g_order[5], 1);
	/* At 600 all three are due; equal due ticks run in the order they were armed. */
	ut_advance_time_us(100);
	CHECK_EQ(ut_poll_reactor(0), 3);
	CHECK(g_order[6] == 3 && g_order[7] == 2 && g_order[0] == 1);
	sb_poller_unregister(&p1);
	sb_poller_unregister(&p2);
	sb_poller_unregister(&p3);
	ut_poll_reactor(0);
	ut_fini_reactors();
}

/* ---- sb_call ---- */

static struct sb_completion *g_stashed;

static void
_call_now(void *ctx, struct sb_completion *done)
{
	(*(int *)ctx)++;
	sb_complete(done, 42);
}

static void
_call_stash(void *ctx, struct sb_completion *done)
{
	g_stashed = done;
}

struct call_thread {
	int rc;
	int ctx;
};

static void *
_caller(void *arg)
{
	struct call_thread *c = arg;

	c->rc = sb_call(sb_reactor_get(1), _call_now, &c->ctx, 5ULL * 1000 * 1000);
	return NULL;
}

static void
test_call(void)
{
	struct call_thread ct = { .rc = -1 };
	pthread_t th;
	int ctx = 0, i;

	CHECK_EQ(ut_init_reactors(2), 0);

	/* On a reactor: refused. */
	CHECK_EQ(sb_call(sb_reactor_get(1), _call_now, &ctx, 1000), -EPERM);
	ut_set_reactor(-1);
	CHECK_EQ(sb_call(NULL, _call_now, &ctx, 1000), -EINVAL);

	/* Timeout: nobody polls reactor 1 while we wait. */
	CHECK_EQ(sb_call(sb_reactor_get(1), _call_stash, NULL, 20000), -SB_EWAITER_GAVE_UP);
	CHECK(g_stashed == NULL);
	/* The work still runs later, and completing it after the timeout is harmless. */
	ut_poll_reactor(1);
	CHECK(g_stashed != NULL);
	sb_complete(g_stashed, 0);
	g_stashed = NULL;

	/* A caller thread waits while this thread polls the target. */
	pthread_create(&th, NULL, _caller, &ct);
	for (i = 0; i < 5000 && ct.ctx == 0; i++) {
		ut_poll_reactor(1);
		usleep(1000);
	}
	pthread_join(th, NULL);
	CHECK_EQ(ct.rc, 42);
	CHECK_EQ(ct.ctx, 1);

	/* After the reactors are gone: -ESHUTDOWN, nothing queued. */
	ut_fini_reactors();
	CHECK_EQ(sb_call(sb_reactor_get(0), _call_now, &ctx, 1000), -EINVAL);
}

int
main(int argc, char **argv)
{
	UT_INIT(argc, argv);
	RUN_TEST(test_core_mask_good);
	RUN_TEST(test_core_mask_bad);
	RUN_TEST(test_messages);
	RUN_TEST(test_pollers);
	RUN_TEST(test_timed_order);
	RUN_TEST(test_call);
	return UT_SUMMARY();
}
