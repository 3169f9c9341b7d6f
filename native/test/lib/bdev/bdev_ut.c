/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bdev core under the deterministic multi-reactor harness, with a test
 * backend whose I/O the test completes by hand: registry, descriptors and
 * claims, validation, pools, deferred completions, splitting, events,
 * unregister, statistics and QoS.
 */
#include "sb/bdev_module.h"
#include "bdev/bdev_internal.h"
#include "ut.h"
#include "ut_multithread.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- test backend ---- */

#define UT_MAX_PENDING 2048

struct ut_disk {
	struct sb_bdev bdev;
	char name[32];
	bool complete_inline;
	int destructed;
};

static struct sb_bdev_module g_ut_module;
static int g_ut_io_device;
static struct sb_bdev_io *g_pending[UT_MAX_PENDING];
static int g_pending_reactor[UT_MAX_PENDING];
static int g_num_pending;

static int
_ut_destruct(void *ctx)
{
	struct ut_disk *d = ctx;

	d->destructed++;
	return 0;
}

static void
_ut_submit(struct sb_io_channel *ch, struct sb_bdev_io *io)
{
	struct ut_disk *d = io->bdev->ctxt;

	/* The driver context is where get_ctx_size said, and writable. */
	memset(io->driver_ctx, 0xab, 48);
	if (d->complete_inline) {
		sb_bdev_io_complete(io, 0);
		return;
	}
	g_pending_reactor[g_num_pending] = ut_current_reactor();
	g_pending[g_num_pending++] = io;
}

static bool
_ut_io_type_supported(void *ctx, enum sb_bdev_io_type type)
{
	return type != SB_BDEV_IO_RESET;
}

static struct sb_io_channel *
_ut_get_io_channel(void *ctx)
{
	return sb_get_io_channel(&g_ut_io_device);
}

static const struct sb_bdev_fn_table g_ut_fn_table = {
	.destruct = _ut_destruct,
	.submit_request = _ut_submit,
	.io_type_supported = _ut_io_type_supported,
	.get_io_channel = _ut_get_io_channel,
};

static size_t
_ut_ctx_size(void)
{
	return 48;
}

static struct sb_bdev_module g_ut_module = {
	.name = "ut",
	.get_ctx_size = _ut_ctx_size,
};

static int
_ut_ch_create(void *dev, void *buf)
{
	return 0;
}

static void
_ut_ch_destroy(void *dev, void *buf)
{
}

/* Complete the oldest pending I/O. */
static void
_ut_complete_first(int status)
{
	struct sb_bdev_io *io = g_pending[0];

	CHECK(g_num_pending > 0);
	if (g_num_pending <= 0) {
		return;
	}
	memmove(g_pending, g_pending + 1, (size_t)(g_num_pending - 1) * sizeof(g_pending[0]));
	memmove(g_pending_reactor, g_pending_reactor + 1,
		(size_t)(g_num_pending - 1) * sizeof(g_pending_reactor[0]));
	g_num_pending--;
	sb_bdev_io_complete(io, status);
}

static void
_ut_disk_init(struct ut_disk *d, const char *name, uint64_t blocks)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->bdev.name = d->name;
	d->bdev.product_name = "ut disk";
	d->bdev.blocklen = 512;
	d->bdev.blockcnt = blocks;
	d->bdev.ctxt = d;
	d->bdev.fn_table = &g_ut_fn_table;
	d->bdev.module = &g_ut_module;
}

/* ---- completion bookkeeping ---- */

struct io_result {
	int done;
	int status;
	int reactor;
};

static void
_io_cb(struct sb_bdev_io *io, int status, void *arg)
{
	struct io_result *r = arg;

	r->done++;
	r->status = status;
	r->reactor = ut_current_reactor();
	sb_bdev_free_io(io);
}

struct ev_log {
	int resize;
	int remove;
	int reactor;
	struct sb_bdev_desc **close_on_remove;
};

static void
_ev_cb(enum sb_bdev_event_type type, struct sb_bdev *bdev, void *ctx)
{
	struct ev_log *l = ctx;

	l->reactor = ut_current_reactor();
	if (type == SB_BDEV_EVENT_RESIZE) {
		l->resize++;
	} else {
		l->remove++;
	}
}

static void
_unreg_cb(void *arg, int rc)
{
	int *p = arg;

	*p = rc == 0 ? 1 : rc;
}

static void
setup(uint32_t reactors)
{
	CHECK_EQ(ut_init_reactors(reactors), 0);
	sb_io_device_register(&g_ut_io_device, _ut_ch_create, _ut_ch_destroy, 0, "ut");
	g_num_pending = 0;
}

static void
_dev_gone(void *dev)
{
}

static void
teardown(void)
{
	ut_set_reactor(0);
	sb_io_device_unregister(&g_ut_io_device, _dev_gone);
	ut_poll_reactors();
	ut_fini_reactors();
}

static void
unregister_disk(struct ut_disk *d)
{
	int done = 0;

	ut_set_reactor(0);
	sb_bdev_unregister(&d->bdev, _unreg_cb, &done);
	ut_poll_reactors();
	CHECK_EQ(done, 1);
	CHECK_EQ(d->destructed, 1);
}

/* ---- tests ---- */

static void
test_register_lookup(void)
{
	struct ut_disk a, b, c;
	const char *uuid = "0b2a6b3c-1d2e-4f50-8a9b-0c1d2e3f4a5b";
	char upper[SB_UUID_STR_LEN];
	int i;

	setup(1);
	_ut_disk_init(&a, "ut_a", 1024);
	CHECK_EQ(sb_uuid_parse(uuid, a.bdev.uuid), 0);
	CHECK_EQ(sb_bdev_register(&a.bdev), 0);
	CHECK(sb_bdev_get_by_name("ut_a") == &a.bdev);
	CHECK(strcmp(sb_bdev_get_uuid_str(&a.bdev), uuid) == 0);
	for (i = 0; uuid[i]; i++) {
		upper[i] = (char)(uuid[i] >= 'a' && uuid[i] <= 'f' ? uuid[i] - 32 : uuid[i]);
	}
	upper[i] = '\0';
	CHECK(sb_bdev_get_by_name(upper) == &a.bdev);
	CHECK_EQ(_bdev_alias_add(&a.bdev, "ut_alias"), 0);
	CHECK(sb_bdev_get_by_name("ut_alias") == &a.bdev);
	CHECK_EQ(_bdev_alias_add(&a.bdev, "ut_a"), -EEXIST);
	CHECK(sb_bdev_get_by_name("nope") == NULL);

	/* Duplicate name, alias, uuid. */
	_ut_disk_init(&b, "ut_a", 8);
	CHECK_EQ(sb_bdev_register(&b.bdev), -EEXIST);
	_ut_disk_init(&b, "ut_alias", 8);
	CHECK_EQ(sb_bdev_register(&b.bdev), -EEXIST);
	_ut_disk_init(&b, "ut_b", 8);
	CHECK_EQ(sb_uuid_parse(uuid, b.bdev.uuid), 0);
	CHECK_EQ(sb_bdev_register(&b.bdev), -EEXIST);

	/* A generated uuid is version 4 text. */
	_ut_disk_init(&c, "ut_c", 8);
	CHECK_EQ(sb_bdev_register(&c.bdev), 0);
	CHECK_EQ(strlen(sb_bdev_get_uuid_str(&c.bdev)), 36);
	CHECK_EQ(sb_bdev_get_uuid_str(&c.bdev)[14], '4');
	CHECK_EQ(sb_bdev_get_uuid_str(&c.bdev)[8], '-');

	/* Bad geometry and bad uuids. */
	_ut_disk_init(&b, "ut_b", 8);
	b.bdev.blocklen = 0;
	CHECK_EQ(sb_bdev_register(&b.bdev), -EINVAL);
	b.bdev.blocklen = 1000;
	CHECK_EQ(sb_bdev_register(&b.bdev), -EINVAL);
	b.bdev.blocklen = 256;
	CHECK_EQ(sb_bdev_register(&b.bdev), -EINVAL);
	b.bdev.blocklen = 3 * 512;
	CHECK_EQ(sb_bdev_register(&b.bdev), -EINVAL);
	b.bdev.blocklen = 4096;
	b.bdev.blockcnt = UINT64_MAX / 2048;
	CHECK_EQ(sb_bdev_register(&b.bdev), -EINVAL);
	b.bdev.blockcnt = 0;
	CHECK_EQ(sb_bdev_register(&b.bdev), -EINVAL);
	CHECK_EQ(sb_uuid_parse("0b2a6b3c1d2e-4f50-8a9b-0c1d2e3f4a5b00", b.bdev.uuid), -EINVAL);
	CHECK_EQ(sb_uuid_parse("zb2a6b3c-1d2e-4f50-8a9b-0c1d2e3f4a5b", b.bdev.uuid), -EINVAL);
	CHECK_EQ(sb_uuid_parse("", b.bdev.uuid), -EINVAL);

	/* Register off the app reactor is refused. */
	ut_set_reactor(-1);
	_ut_disk_init(&b, "ut_b", 8);
	CHECK_EQ(sb_bdev_register(&b.bdev), -EPERM);
	ut_set_reactor(0);

	unregister_disk(&a);
	unregister_disk(&c);
	CHECK(sb_bdev_get_by_name("ut_a") == NULL);
	CHECK(sb_bdev_get_by_name("ut_alias") == NULL);
	teardown();
}

static void
test_open_claim(void)
{
	struct ut_disk a;
	struct sb_bdev_desc *w1, *w2, *r1;

	setup(1);
	_ut_disk_init(&a, "ut_a", 64);
	CHECK_EQ(sb_bdev_register(&a.bdev), 0);
	CHECK_EQ(sb_bdev_open("missing", false, NULL, NULL, &r1), -ENODEV);
	CHECK_EQ(sb_bdev_open("ut_a", true, NULL, NULL, &w1), 0);
	CHECK_EQ(sb_bdev_open("ut_a", false, NULL, NULL, &r1), 0);
	CHECK_EQ(sb_bdev_claim(r1, "reader"), -EBADF);
	CHECK_EQ(sb_bdev_claim(w1, "lvol"), 0);
	CHECK_EQ(sb_bdev_claim(w1, "lvol"), 0); /* idempotent for the owner */
	CHECK_EQ(sb_bdev_open("ut_a", true, NULL, NULL, &w2), -EPERM);
	CHECK_EQ(a.bdev.internal->claim_desc != NULL, 1);
	CHECK(strcmp(a.bdev.internal->claimed_by, "lvol") == 0);
	sb_bdev_close(w1);
	CHECK(a.bdev.internal->claim_desc == NULL);
	CHECK_EQ(sb_bdev_open("ut_a", true, NULL, NULL, &w2), 0);
	CHECK_EQ(sb_bdev_open("ut_a", true, NULL, NULL, &w1), 0);
	/* Two writers open: nobody can claim. */
	CHECK_EQ(sb_bdev_claim(w2, "x"), -EPERM);
	sb_bdev_close(w1);
	sb_bdev_close(w2);
	sb_bdev_close(r1);
	CHECK_EQ(a.bdev.internal->num_descs, 0);
	unregister_disk(&a);
	teardown();
}

static void
test_io_validation_and_deferral(void)
{
	struct ut_disk a;
	struct sb_bdev_desc *w, *r;
	struct sb_io_channel *ch;
	struct io_result res = {0};
	char buf[4096];
	struct iovec iov[2] = {{buf, 1024}, {buf + 1024, 1024}};

	setup(1);
	_ut_disk_init(&a, "ut_a", 64);
	CHECK_EQ(sb_bdev_register(&a.bdev), 0);
	CHECK_EQ(sb_bdev_open("ut_a", true, NULL, NULL, &w), 0);
	CHECK_EQ(sb_bdev_open("ut_a", false, NULL, NULL, &r), 0);
	ch = sb_bdev_get_io_channel(w);
	CHECK(ch != NULL);

	CHECK_EQ(sb_bdev_readv_blocks(w, ch, iov, 2, 63, 4, _io_cb, &res), -EINVAL);
	CHECK_EQ(sb_bdev_readv_blocks(w, ch, iov, 2, 64, 4, _io_cb, &res), -EINVAL);
	CHECK_EQ(sb_bdev_readv_blocks(w, ch, iov, 2, UINT64_MAX - 1, 4, _io_cb, &res), -EINVAL);
	CHECK_EQ(sb_bdev_readv_blocks(w, ch, iov, 2, 0, 3, _io_cb, &res), -EINVAL); /* iov sum */
	CHECK_EQ(sb_bdev_readv_blocks(w, ch, iov, 2, 0, 0, _io_cb, &res), -EINVAL);
	CHECK_EQ(sb_bdev_readv_blocks(w, ch, NULL, 0, 0, 4, _io_cb, &res), -EINVAL);
	CHECK_EQ(sb_bdev_unmap_blocks(w, ch, 60, 5, _io_cb, &res), -EINVAL);
	CHECK_EQ(sb_bdev_write_zeroes_blocks(w, ch, 64, 1, _io_cb, &res), -EINVAL);
	CHECK_EQ(sb_bdev_writev_blocks(r, ch, iov, 2, 0, 4, _io_cb, &res), -EBADF);
	CHECK_EQ(sb_bdev_unmap_blocks(r, ch, 0, 4, _io_cb, &res), -EBADF);
	CHECK_EQ(sb_bdev_flush(r, ch, _io_cb, &res), -EBADF);
	CHECK_EQ(sb_bdev_reset(w, ch, _io_cb, &res), -EINVAL); /* backend says unsupported */
	CHECK_EQ(res.done, 0);
	CHECK_EQ(g_num_pending, 0);

	/* A backend that completes inside submit: the callback still waits. */
	a.complete_inline = true;
	CHECK_EQ(sb_bdev_readv_blocks(r, ch, iov, 2, 60, 4, _io_cb, &res), 0);
	CHECK_EQ(res.done, 0);
	ut_poll_reactors();
	CHECK_EQ(res.done, 1);
	CHECK_EQ(res.status, 0);

	/* Async backend: completion runs when the backend completes (from a poller). */
	a.complete_inline = false;
	CHECK_EQ(sb_bdev_writev_blocks(w, ch, iov, 2, 0, 4, _io_cb, &res), 0);
	CHECK_EQ(g_num_pending, 1);
	CHECK(g_pending[0]->u.iovs == iov && g_pending[0]->u.iovcnt == 2);
	CHECK_EQ(g_pending[0]->type, SB_BDEV_IO_WRITE);
	_ut_complete_first(-EIO);
	CHECK_EQ(res.done, 2);
	CHECK_EQ(res.status, -EIO);

	sb_put_io_channel(ch);
	sb_bdev_close(w);
	sb_bdev_close(r);
	ut_poll_reactors();
	unregister_disk(&a);
	teardown();
}

static void
test_pool_exhaustion(void)
{
	struct ut_disk a;
	struct sb_bdev_desc *w;
	struct sb_io_channel *ch;
	struct io_result res = {0};
	char buf[512];
	struct iovec iov = {buf, 512};
	int i, rc = 0, n = 0;

	setup(1);
	_ut_disk_init(&a, "ut_a", 64);
	CHECK_EQ(sb_bdev_register(&a.bdev), 0);
	CHECK_EQ(sb_bdev_open("ut_a", true, NULL, NULL, &w), 0);
	ch = sb_bdev_get_io_channel(w);
	for (i = 0; i < SB_BDEV_IO_POOL_SIZE + 10; i++) {
		rc = sb_bdev_readv_blocks(w, ch, &iov, 1, 0, 1, _io_cb, &res);
		if (rc != 0) {
			break;
		}
		n++;
	}
	CHECK_EQ(rc, -ENOMEM);
	CHECK_EQ(n, SB_BDEV_IO_POOL_SIZE);
	_ut_complete_first(0);
	CHECK_EQ(res.done, 1);
	CHECK_EQ(sb_bdev_readv_blocks(w, ch, &iov, 1, 0, 1, _io_cb, &res), 0);
	while (g_num_pending > 0) {
		_ut_complete_first(0);
	}
	CHECK_EQ(res.done, SB_BDEV_IO_POOL_SIZE + 1);
	sb_put_io_channel(ch);
	sb_bdev_close(w);
	ut_poll_reactors();
	unregister_disk(&a);
	teardown();
}

static void
test_split(void)
{
	struct ut_disk a;
	struct sb_bdev_desc *w;
	struct sb_io_channel *ch;
	struct io_result res = {0};
	static char buf[20 * 512];
	struct iovec iov[3] = {{buf, 1000}, {buf + 1000, 24 + 512 * 9}, {buf + 5632, 4608}};

	setup(1);
	_ut_disk_init(&a, "ut_a", 64);
	a.bdev.max_transfer_blocks = 8;
	CHECK_EQ(sb_bdev_register(&a.bdev), 0);
	CHECK_EQ(sb_bdev_open("ut_a", true, NULL, NULL, &w), 0);
	ch = sb_bdev_get_io_channel(w);
	CHECK_EQ(sb_bdev_readv_blocks(w, ch, iov, 3, 10, 20, _io_cb, &res), 0);
	CHECK_EQ(g_num_pending, 3);
	if (g_num_pending == 3) {
		CHECK_EQ(g_pending[0]->u.offset_blocks, 10);
		CHECK_EQ(g_pending[0]->u.num_blocks, 8);
		CHECK_EQ(g_pending[1]->u.offset_blocks, 18);
		CHECK_EQ(g_pending[1]->u.num_blocks, 8);
		CHECK_EQ(g_pending[2]->u.offset_blocks, 26);
		CHECK_EQ(g_pending[2]->u.num_blocks, 4);
		/* Child 0: 1000 bytes of iov0 + 3096 of iov1. */
		CHECK_EQ(g_pending[0]->u.iovcnt, 2);
		CHECK(g_pending[0]->u.iovs[0].iov_base == buf);
		CHECK_EQ(g_pending[0]->u.iovs[1].iov_len, 3096);
		/* Child 1 starts 4096 bytes in. */
		CHECK(g_pending[1]->u.iovs[0].iov_base == buf + 4096);
		CHECK(g_pending[2]->u.iovs[0].iov_base == buf + 8192);
		CHECK_EQ(g_pending[2]->u.iovs[0].iov_len, 2048);
	}
	_ut_complete_first(0);
	_ut_complete_first(0);
	CHECK_EQ(res.done, 0);
	_ut_complete_first(0);
	CHECK_EQ(res.done, 1);
	CHECK_EQ(res.status, 0);

	/* A failing child fails the parent once. */
	CHECK_EQ(sb_bdev_readv_blocks(w, ch, iov, 3, 10, 20, _io_cb, &res), 0);
	_ut_complete_first(0);
	_ut_complete_first(-EIO);
	_ut_complete_first(0);
	CHECK_EQ(res.done, 2);
	CHECK_EQ(res.status, -EIO);
	CHECK_EQ(g_num_pending, 0);
	sb_put_io_channel(ch);
	sb_bdev_close(w);
	ut_poll_reactors();
	unregister_disk(&a);
	teardown();
}

static void
test_events_and_remove(void)
{
	struct ut_disk a;
	struct sb_bdev_desc *d1, *d0;
	struct sb_io_channel *ch;
	struct ev_log log1 = {0}, log0 = {0};
	struct io_result res = {0};
	char buf[512];
	struct iovec iov = {buf, 512};
	int done = 0;

	setup(2);
	_ut_disk_init(&a, "ut_a", 64);
	CHECK_EQ(sb_bdev_register(&a.bdev), 0);
	ut_set_reactor(1);
	CHECK_EQ(sb_bdev_open("ut_a", true, _ev_cb, &log1, &d1), 0);
	ch = sb_bdev_get_io_channel(d1);
	ut_set_reactor(0);
	CHECK_EQ(sb_bdev_open("ut_a", false, _ev_cb, &log0, &d0), 0);

	CHECK_EQ(sb_bdev_notify_blockcnt_change(&a.bdev, 128), 0);
	CHECK_EQ(sb_bdev_get_num_blocks(&a.bdev), 128);
	CHECK_EQ(log1.resize, 0); /* delivered by message, not inline */
	ut_poll_reactors();
	CHECK_EQ(log1.resize, 1);
	CHECK_EQ(log1.reactor, 1);
	CHECK_EQ(log0.resize, 1);
	CHECK_EQ(log0.reactor, 0);
	CHECK_EQ(sb_bdev_notify_blockcnt_change(&a.bdev, 32), -EBUSY);
	CHECK_EQ(sb_bdev_notify_blockcnt_change(&a.bdev, 0), -EINVAL);

	/* The new size is usable right away. */
	ut_set_reactor(1);
	CHECK_EQ(sb_bdev_readv_blocks(d1, ch, &iov, 1, 100, 1, _io_cb, &res), 0);
	ut_set_reactor(0);

	sb_bdev_unregister(&a.bdev, _unreg_cb, &done);
	ut_poll_reactors();
	CHECK_EQ(log1.remove, 1);
	CHECK_EQ(log0.remove, 1);
	CHECK_EQ(done, 0);
	CHECK_EQ(sb_bdev_open("ut_a", false, NULL, NULL, &d0), -ENODEV);
	ut_set_reactor(1);
	CHECK_EQ(sb_bdev_readv_blocks(d1, ch, &iov, 1, 0, 1, _io_cb, &res), -ENODEV);
	/* In-flight I/O still completes. */
	_ut_complete_first(0);
	CHECK_EQ(res.done, 1);
	sb_put_io_channel(ch);
	sb_bdev_close(d1);
	ut_poll_reactors();
	CHECK_EQ(done, 0);
	CHECK_EQ(a.destructed, 0);
	ut_set_reactor(0);
	sb_bdev_close(d0);
	ut_poll_reactors();
	CHECK_EQ(done, 1);
	CHECK_EQ(a.destructed, 1);
	CHECK(sb_bdev_get_by_name("ut_a") == NULL);
	teardown();
}

static void
_stat_cb(void *arg, int rc)
{
	int *p = arg;

	*p = rc == 0 ? 1 : rc;
}

static void
test_stats(void)
{
	struct ut_disk a;
	struct sb_bdev_desc *w;
	struct sb_io_channel *ch0, *ch1;
	struct io_result res = {0};
	struct sb_bdev_iostat st;
	char buf[4096];
	struct iovec iov = {buf, 4096};
	int done = 0;

	setup(2);
	_ut_disk_init(&a, "ut_a", 64);
	CHECK_EQ(sb_bdev_register(&a.bdev), 0);
	CHECK_EQ(sb_bdev_open("ut_a", true, NULL, NULL, &w), 0);
	ch0 = sb_bdev_get_io_channel(w);
	ut_set_reactor(1);
	ch1 = sb_bdev_get_io_channel(w);

	/* Reactor 1: a read taking 100 us and a write taking 300 us. */
	CHECK_EQ(sb_bdev_readv_blocks(w, ch1, &iov, 1, 0, 8, _io_cb, &res), 0);
	ut_advance_time_us(100);
	_ut_complete_first(0);
	CHECK_EQ(sb_bdev_writev_blocks(w, ch1, &iov, 1, 8, 8, _io_cb, &res), 0);
	ut_advance_time_us(300);
	_ut_complete_first(0);
	/* Reactor 0: a read of 50 us, an unmap, a flush, a failed write, one in flight. */
	ut_set_reactor(0);
	CHECK_EQ(sb_bdev_readv_blocks(w, ch0, &iov, 1, 0, 8, _io_cb, &res), 0);
	ut_advance_time_us(50);
	_ut_complete_first(0);
	CHECK_EQ(sb_bdev_unmap_blocks(w, ch0, 0, 16, _io_cb, &res), 0);
	_ut_complete_first(0);
	CHECK_EQ(sb_bdev_flush(w, ch0, _io_cb, &res), 0);
	_ut_complete_first(0);
	CHECK_EQ(sb_bdev_writev_blocks(w, ch0, &iov, 1, 0, 8, _io_cb, &res), 0);
	_ut_complete_first(-EIO);
	CHECK_EQ(sb_bdev_readv_blocks(w, ch0, &iov, 1, 0, 8, _io_cb, &res), 0);
	ut_advance_time_us(2000);
	ut_poll_reactors();
	CHECK_EQ(res.done, 6);

	_bdev_iostat_collect(&a.bdev, &st, _stat_cb, &done);
	ut_poll_reactors();
	CHECK_EQ(done, 1);
	CHECK_EQ(st.num_read_ops, 2);
	CHECK_EQ(st.bytes_read, 8192);
	CHECK_EQ(st.num_write_ops, 1);
	CHECK_EQ(st.bytes_written, 4096);
	CHECK_EQ(st.num_unmap_ops, 1);
	CHECK_EQ(st.bytes_unmapped, 8192);
	CHECK_EQ(st.num_flush_ops, 1);
	CHECK_EQ(st.num_io_errors, 1);
	CHECK_EQ(st.queue_depth, 1);
	CHECK_EQ(st.read_latency_ticks, 150 * 1000);
	CHECK_EQ(st.max_read_latency_ticks, 100 * 1000);
	CHECK_EQ(st.min_read_latency_ticks, 50 * 1000);
	CHECK_EQ(st.write_latency_ticks, 300 * 1000);
	CHECK_EQ(st.min_unmap_latency_ticks, 0);
	/* Busy: 100 + 300 us on reactor 1; 50 us + the 2000 us read on reactor 0. */
	CHECK_EQ(st.io_time, 2);
	CHECK(st.weighted_io_time >= st.io_time);

	_ut_complete_first(0);
	/* A channel that goes away while a walk runs is counted once. */
	ut_set_reactor(1);
	sb_put_io_channel(ch1);
	ut_set_reactor(0);
	done = 0;
	_bdev_iostat_collect(&a.bdev, &st, _stat_cb, &done);
	ut_poll_reactors();
	CHECK_EQ(done, 1);
	CHECK_EQ(st.num_read_ops, 3);
	CHECK_EQ(st.num_write_ops, 1);
	/* Stats survive the channels going away; walks queue behind each other. */
	sb_put_io_channel(ch0);
	ut_poll_reactors();
	done = 0;
	struct sb_bdev_iostat st2;
	int done2 = 0;
	_bdev_iostat_collect(&a.bdev, &st, _stat_cb, &done);
	_bdev_iostat_collect(&a.bdev, &st2, _stat_cb, &done2);
	ut_poll_reactors();
	CHECK_EQ(done, 1);
	CHECK_EQ(done2, 1);
	CHECK_EQ(st.num_read_ops, 3);
	CHECK_EQ(st2.num_read_ops, 3);
	CHECK_EQ(st2.num_write_ops, 1);
	CHECK_EQ(st.queue_depth, 0);
	sb_bdev_close(w);
	ut_poll_reactors();
	unregister_disk(&a);
	teardown();
}

static void
test_qos(void)
{
	struct ut_disk a;
	struct sb_bdev_desc *w;
	struct sb_io_channel *ch0, *ch1;
	struct io_result res0 = {0}, res1 = {0};
	uint64_t limits[SB_QOS_NUM_LIMITS] = {1500, 0, 0, 0};
	char buf[4096];
	struct iovec iov = {buf, 4096};
	int i, ms;

	setup(2);
	_ut_disk_init(&a, "ut_a", 64);
	CHECK_EQ(sb_bdev_register(&a.bdev), 0);
	CHECK_EQ(_bdev_qos_set(&a.bdev, limits), -EINVAL); /* not a multiple of 1000 */
	limits[SB_QOS_RW_IOPS] = 1000;
	CHECK_EQ(_bdev_qos_set(&a.bdev, limits), 0);
	CHECK_EQ(a.bdev.internal->qos_limits[SB_QOS_RW_IOPS], 1000);
	CHECK_EQ(sb_bdev_open("ut_a", true, NULL, NULL, &w), 0);
	ch0 = sb_bdev_get_io_channel(w);
	ut_set_reactor(1);
	ch1 = sb_bdev_get_io_channel(w);

	/* Reactor 1 submits first: it owns the QoS state. */
	for (i = 0; i < 10; i++) {
		CHECK_EQ(sb_bdev_readv_blocks(w, ch1, &iov, 1, 0, 8, _io_cb, &res1), 0);
	}
	CHECK_EQ(g_num_pending, 1); /* one slice of credit: 1 I/O at 1000 IOPS */
	ut_set_reactor(0);
	for (i = 0; i < 10; i++) {
		CHECK_EQ(sb_bdev_readv_blocks(w, ch0, &iov, 1, 0, 8, _io_cb, &res0), 0);
	}
	ut_poll_reactors();
	CHECK_EQ(g_num_pending, 1); /* forwarded, queued behind the budget */
	for (ms = 1; ms <= 25; ms++) {
		ut_advance_time_us(1000);
		ut_poll_reactors();
		CHECK(g_num_pending <= ms + 1);
	}
	CHECK_EQ(g_num_pending, 20);
	/* The backend ran everything on the owner; completions go home. */
	for (i = 0; i < 20; i++) {
		CHECK_EQ(g_pending_reactor[i], 1);
	}
	ut_set_reactor(1);
	while (g_num_pending > 0) {
		_ut_complete_first(0);
	}
	ut_poll_reactors();
	CHECK_EQ(res1.done, 10);
	CHECK_EQ(res0.done, 10);
	CHECK_EQ(res0.reactor, 0);
	CHECK_EQ(res1.reactor, 1);

	/* Bandwidth: 1 MiB/s of 4 KiB reads is 256 per second. */
	ut_set_reactor(0);
	limits[SB_QOS_RW_IOPS] = 0;
	limits[SB_QOS_R_MBPS] = 1;
	CHECK_EQ(_bdev_qos_set(&a.bdev, limits), 0);
	ut_advance_time_us(5000);
	ut_poll_reactors();
	for (i = 0; i < 100; i++) {
		CHECK_EQ(sb_bdev_readv_blocks(w, ch0, &iov, 1, 0, 8, _io_cb, &res0), 0);
	}
	for (ms = 0; ms < 200; ms++) {
		ut_advance_time_us(1000);
		ut_poll_reactors();
	}
	/* 200 ms at 256/s = 51 reads, + 1 on the initial credit. */
	CHECK(g_num_pending >= 50 && g_num_pending <= 53);

	/* Lifting the limit flushes the queue. */
	limits[SB_QOS_R_MBPS] = 0;
	CHECK_EQ(_bdev_qos_set(&a.bdev, limits), 0);
	ut_advance_time_us(1000);
	ut_poll_reactors();
	CHECK_EQ(g_num_pending, 100);
	while (g_num_pending > 0) {
		ut_set_reactor(g_pending_reactor[0]);
		_ut_complete_first(0);
	}
	ut_poll_reactors();
	CHECK_EQ(res0.done, 110);
	ut_set_reactor(1);
	sb_put_io_channel(ch1);
	ut_set_reactor(0);
	sb_put_io_channel(ch0);
	sb_bdev_close(w);
	ut_poll_reactors();
	unregister_disk(&a);
	teardown();
}

int
main(void)
{
	sb_log_set_stderr(getenv("SB_UT_VERBOSE") != NULL);
	RUN_TEST(test_register_lookup);
	RUN_TEST(test_open_claim);
	RUN_TEST(test_io_validation_and_deferral);
	RUN_TEST(test_pool_exhaustion);
	RUN_TEST(test_split);
	RUN_TEST(test_events_and_remove);
	RUN_TEST(test_stats);
	RUN_TEST(test_qos);
	return UT_SUMMARY();
}
