/* SPDX-License-Identifier: Apache-2.0 */
/* io_device / io_channel registry under the deterministic harness. */
#include "sb/thread.h"
#include "sb/log.h"
#include "ut.h"
#include "ut_multithread.h"

#include <errno.h>
#include <string.h>

struct dev {
	int creates;
	int destroys;
	int fail_create;
	int unreg_done;
	int last_reactor;
};

struct ch_ctx {
	uint64_t magic;
	int reactor;
	int visits;
};

static int
_create(void *io_device, void *buf)
{
	struct dev *d = io_device;
	struct ch_ctx *c = buf;

	if (d->fail_create) {
		return -ENOMEM;
	}
	/* The context arrives zeroed. */
	if (c->magic != 0) {
		return -EINVAL;
	}
	c->magic = 0xfeed;
	c->reactor = ut_current_reactor();
	d->creates++;
	return 0;
}

static void
_destroy(void *io_device, void *buf)
{
	struct dev *d = io_device;
	struct ch_ctx *c = buf;

	if (c->magic == 0xfeed) {
		d->destroys++;
	}
	d->last_reactor = ut_current_reactor();
	c->magic = 0;
}

static void
_unreg_done(void *io_device)
{
	struct dev *d = io_device;

	d->unreg_done++;
	d->last_reactor = ut_current_reactor();
}

static void
test_get_put(void)
{
	struct dev d = { 0 };
	struct sb_io_channel *ch0, *ch0b, *ch1;
	struct ch_ctx *ctx;

	CHECK_EQ(ut_init_reactors(2), 0);
	/* Unknown device. */
	CHECK(sb_get_io_channel(&d) == NULL);

	sb_io_device_register(&d, _create, _destroy, sizeof(struct ch_ctx), "dev");
	/* Registering twice is refused (logged), the first registration stays. */
	sb_io_device_register(&d, _create, _destroy, sizeof(struct ch_ctx), "dev");

	ch0 = sb_get_io_channel(&d);
	CHECK(ch0 != NULL);
	CHECK_EQ(d.creates, 1);
	ctx = sb_io_channel_get_ctx(ch0);
	CHECK(((uintptr_t)ctx % 64) == 0);
	CHECK_EQ(ctx->magic, 0xfeed);
	CHECK_EQ(ctx->reactor, 0);
	CHECK(sb_io_channel_get_io_device(ch0) == &d);
	CHECK(sb_io_channel_get_reactor(ch0) == sb_reactor_get(0));

	/* Same reactor: same channel, refcounted. */
	ch0b = sb_get_io_channel(&d);
	CHECK(ch0b == ch0);
	CHECK_EQ(d.creates, 1);

	/* Another reactor: its own channel. */
	ut_set_reactor(1);
	ch1 = sb_get_io_channel(&d);
	CHECK(ch1 != NULL && ch1 != ch0);
	CHECK_EQ(d.creates, 2);
	CHECK_EQ(((struct ch_ctx *)sb_io_channel_get_ctx(ch1))->reactor, 1);

	/* Not on a reactor: no channel. */
	ut_set_reactor(-1);
	CHECK(sb_get_io_channel(&d) == NULL);

	/* Put: destroy only after the last put, and only once the message runs. */
	ut_set_reactor(0);
	sb_put_io_channel(ch0b);
	ut_poll_reactors();
	CHECK_EQ(d.destroys, 0);
	sb_put_io_channel(ch0);
	CHECK_EQ(d.destroys, 0);
	ut_poll_reactor_until_idle(0);
	CHECK_EQ(d.destroys, 1);
	CHECK_EQ(d.last_reactor, 0);

	/* Put then get before the destroy message runs: the channel survives. */
	ut_set_reactor(1);
	sb_put_io_channel(ch1);
	CHECK(sb_get_io_channel(&d) == ch1);
	ut_poll_reactor_until_idle(1);
	CHECK_EQ(d.destroys, 1);
	CHECK_EQ(((struct ch_ctx *)sb_io_channel_get_ctx(ch1))->magic, 0xfeed);

	/* Unregister with a live channel: done waits for the last put. */
	ut_set_reactor(0);
	sb_io_device_unregister(&d, _unreg_done);
	ut_poll_reactors();
	CHECK_EQ(d.unreg_done, 0);
	/* New gets fail once the device is unregistered, even where a channel lives. */
	ut_set_reactor(1);
	CHECK(sb_get_io_channel(&d) == NULL);
	sb_put_io_channel(ch1);
	ut_poll_reactors();
	CHECK_EQ(d.destroys, 2);
	/* done runs on the reactor that unregistered. */
	CHECK_EQ(d.unreg_done, 1);
	CHECK_EQ(d.last_reactor, 0);

	/* The pointer can be registered again. */
	sb_io_device_register(&d, _create, _destroy, sizeof(struct ch_ctx), "dev2");
	ut_set_reactor(0);
	sb_io_device_unregister(&d, _unreg_done);
	CHECK_EQ(d.unreg_done, 1); /* deferred by a message even with no channel */
	ut_poll_reactors();
	CHECK_EQ(d.unreg_done, 2);
	ut_fini_reactors();
}

static void
test_create_fails(void)
{
	struct dev d = { .fail_create = 1 };

	CHECK_EQ(ut_init_reactors(1), 0);
	sb_io_device_register(&d, _create, _destroy, sizeof(struct ch_ctx), "failing");
	CHECK(sb_get_io_channel(&d) == NULL);
	d.fail_create = 0;
	/* The failed attempt left nothing behind: unregister finishes at once. */
	sb_io_device_unregister(&d, _unreg_done);
	ut_poll_reactors();
	CHECK_EQ(d.unreg_done, 1);
	CHECK_EQ(d.destroys, 0);
	ut_fini_reactors();
}

/* ---- sb_for_each_channel ---- */

static int g_visit_order[8];
static int g_visit_n;
static int g_cpl_rc = 1;
static int g_cpl_reactor = -1;
static int g_cpl_visits_seen = -1;

static void
_visit(struct sb_io_channel *ch, void *ctx)
{
	struct ch_ctx *c = sb_io_channel_get_ctx(ch);

	c->visits++;
	g_visit_order[g_visit_n++ % 8] = ut_current_reactor();
	(void)ctx;
}

static void
_cpl(void *ctx, int rc)
{
	g_cpl_rc = rc;
	g_cpl_reactor = ut_current_reactor();
	g_cpl_visits_seen = g_visit_n;
	(void)ctx;
}

static void
test_for_each_channel(void)
{
	struct dev d = { 0 };
	struct sb_io_channel *ch0, *ch2, *ch3;

	CHECK_EQ(ut_init_reactors(4), 0);
	sb_io_device_register(&d, _create, _destroy, sizeof(struct ch_ctx), "fe");
	ch0 = sb_get_io_channel(&d);
	ut_set_reactor(2);
	ch2 = sb_get_io_channel(&d);
	ut_set_reactor(3);
	ch3 = sb_get_io_channel(&d);

	/* Started on reactor 1, which holds no channel. */
	ut_set_reactor(1);
	sb_for_each_channel(&d, _visit, NULL, _cpl);
	CHECK_EQ(g_visit_n, 0);
	/* Sequential: one step at a time, in reactor order. */
	CHECK_EQ(ut_poll_reactor(0), 1);
	CHECK_EQ(g_visit_n, 1);
	CHECK_EQ(ut_poll_reactor(2), 0); /* not its turn yet */
	CHECK_EQ(ut_poll_reactor(1), 1); /* reactor 1 has no channel: just passes it on */
	CHECK_EQ(g_visit_n, 1);
	CHECK_EQ(ut_poll_reactor(2), 1);
	CHECK_EQ(g_visit_n, 2);
	/* The device cannot finish unregistering while the iteration runs. */
	ut_set_reactor(2);
	sb_put_io_channel(ch2);
	ut_poll_reactor_until_idle(2);
	CHECK_EQ(d.destroys, 1);
	ut_poll_reactors();
	CHECK_EQ(g_visit_n, 3);
	CHECK(g_visit_order[0] == 0 && g_visit_order[1] == 2 && g_visit_order[2] == 3);
	CHECK_EQ(g_cpl_rc, 0);
	CHECK_EQ(g_cpl_reactor, 1);
	CHECK_EQ(g_cpl_visits_seen, 3);
	CHECK_EQ(((struct ch_ctx *)sb_io_channel_get_ctx(ch0))->visits, 1);
	CHECK_EQ(((struct ch_ctx *)sb_io_channel_get_ctx(ch3))->visits, 1);

	/* Unregister during an iteration: done waits for both the channels and the iteration. */
	g_visit_n = 0;
	ut_set_reactor(0);
	sb_for_each_channel(&d, _visit, NULL, _cpl);
	sb_io_device_unregister(&d, _unreg_done);
	sb_put_io_channel(ch0);
	ut_set_reactor(3);
	sb_put_io_channel(ch3);
	ut_poll_reactor_until_idle(3);
	ut_poll_reactor_until_idle(0);
	CHECK_EQ(d.destroys, 3);
	CHECK_EQ(d.unreg_done, 0);
	ut_poll_reactors();
	CHECK_EQ(d.unreg_done, 1);
	CHECK_EQ(g_cpl_rc, 0);

	/* Unknown device: cpl gets -ENODEV on the caller's reactor. */
	g_cpl_rc = 1;
	ut_set_reactor(2);
	sb_for_each_channel(&d, _visit, NULL, _cpl);
	ut_poll_reactors();
	CHECK_EQ(g_cpl_rc, -ENODEV);
	CHECK_EQ(g_cpl_reactor, 2);

	/* Not on a reactor: refused at once. */
	ut_set_reactor(-1);
	sb_for_each_channel(&d, _visit, NULL, _cpl);
	CHECK_EQ(g_cpl_rc, -EPERM);
	ut_fini_reactors();
}

/* Channels still held at teardown are destroyed (their destroy_cb runs). */
static void
test_teardown_with_channels(void)
{
	struct dev d = { 0 };

	CHECK_EQ(ut_init_reactors(2), 0);
	sb_io_device_register(&d, _create, _destroy, sizeof(struct ch_ctx), "leaky");
	CHECK(sb_get_io_channel(&d) != NULL);
	ut_set_reactor(1);
	CHECK(sb_get_io_channel(&d) != NULL);
	sb_io_device_unregister(&d, _unreg_done);
	ut_fini_reactors();
	CHECK_EQ(d.destroys, 2);
	CHECK_EQ(d.unreg_done, 1);
}

/* A channel that holds a channel of another device (a bdev channel and its backend's). */
static struct dev g_inner;
static struct sb_io_channel *g_inner_ch;

static int
_outer_create(void *io_device, void *buf)
{
	struct sb_io_channel **inner = buf;

	*inner = sb_get_io_channel(&g_inner);
	return *inner == NULL ? -ENOMEM : 0;
}

static void
_outer_destroy(void *io_device, void *buf)
{
	struct sb_io_channel **inner = buf;

	sb_put_io_channel(*inner);
	((struct dev *)io_device)->destroys++;
}

static void
test_nested_channels(void)
{
	struct dev outer = { 0 };
	struct sb_io_channel *ch;

	memset(&g_inner, 0, sizeof(g_inner));
	CHECK_EQ(ut_init_reactors(2), 0);
	sb_io_device_register(&g_inner, _create, _destroy, sizeof(struct ch_ctx), "inner");
	sb_io_device_register(&outer, _outer_create, _outer_destroy, sizeof(void *), "outer");
	ch = sb_get_io_channel(&outer);
	CHECK(ch != NULL);
	CHECK_EQ(g_inner.creates, 1);
	g_inner_ch = *(struct sb_io_channel **)sb_io_channel_get_ctx(ch);
	CHECK(g_inner_ch != NULL);
	/* Normal release: the outer destroy puts the inner channel, destroyed in turn. */
	sb_put_io_channel(ch);
	ut_poll_reactors();
	CHECK_EQ(outer.destroys, 1);
	CHECK_EQ(g_inner.destroys, 1);

	/* Teardown with both held (twice on reactor 1): no use after free (ASan), all destroyed. */
	CHECK(sb_get_io_channel(&outer) != NULL);
	ut_set_reactor(1);
	CHECK(sb_get_io_channel(&g_inner) != NULL);
	CHECK(sb_get_io_channel(&outer) != NULL);
	ut_fini_reactors();
	CHECK_EQ(outer.destroys, 3);
	CHECK_EQ(g_inner.destroys, 3);
	/* The devices are still registered (nobody unregistered them): a new engine can use them. */
	CHECK_EQ(ut_init_reactors(1), 0);
	ch = sb_get_io_channel(&outer);
	CHECK(ch != NULL);
	sb_put_io_channel(ch);
	sb_io_device_unregister(&outer, NULL);
	sb_io_device_unregister(&g_inner, _unreg_done);
	ut_poll_reactors();
	CHECK_EQ(g_inner.unreg_done, 1);
	CHECK_EQ(g_inner.destroys, 4);
	ut_fini_reactors();
}

int
main(int argc, char **argv)
{
	UT_INIT(argc, argv);
	sb_log_set_stderr(0);
	RUN_TEST(test_get_put);
	RUN_TEST(test_create_fails);
	RUN_TEST(test_for_each_channel);
	RUN_TEST(test_teardown_with_channels);
	RUN_TEST(test_nested_channels);
	return UT_SUMMARY();
}
