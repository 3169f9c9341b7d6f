/* SPDX-License-Identifier: Apache-2.0 */
/* Null bdevs through the real engine: SPDK's null semantics and resize. */
#include "bdev_null.h"
#include "bdev_engine_ut.h"

#include <pthread.h>

static void
test_null(void)
{
	struct sb_null_opts o = {.name = "n0", .num_blocks = 2048, .block_size = 512};
	struct sb_bdev_info info;
	struct ut_events ev = {.bdev = "n0"};
	static char buf[4096];
	uint32_t r = ut_io_reactor();

	o.block_size = 520;
	CHECK_EQ(sb_bdev_null_create(&o), -EINVAL);
	o.block_size = 512;
	CHECK_EQ(sb_bdev_null_create(&o), 0);
	CHECK_EQ(sb_bdev_null_create(&o), -EEXIST);
	CHECK_EQ(sb_bdev_ctl_get_info("n0", &info), 0);
	CHECK(strcmp(info.module, "null") == 0);
	CHECK_EQ(info.num_blocks, 2048);

	/* Reads leave the buffer alone; writes are dropped. */
	memset(buf, 0x5a, sizeof(buf));
	CHECK_EQ(ut_rw1(r, "n0", SB_BDEV_IO_WRITE, buf, 0, 8, 512), 0);
	CHECK_EQ(ut_rw1(r, "n0", SB_BDEV_IO_READ, buf, 0, 8, 512), 0);
	CHECK(ut_all_bytes(buf, 0x5a, sizeof(buf)));
	CHECK_EQ(ut_io(r, "n0", SB_BDEV_IO_UNMAP, 0, 8, NULL, 0), 0);
	CHECK_EQ(ut_rw1(r, "n0", SB_BDEV_IO_READ, buf, 2044, 8, 512), -EINVAL);

	/* Resize is in MiB and only grows (SPDK's bdev_null_resize). */
	CHECK_EQ(sb_call(sb_reactor_get(r), _ut_open_events, &ev, 5000000), 0);
	CHECK_EQ(sb_bdev_null_resize("n0", 0), -EINVAL);
	CHECK_EQ(sb_bdev_null_resize("nope", 4), -ENODEV);
	CHECK_EQ(sb_bdev_null_resize("n0", 4), 0);
	CHECK(ut_wait_counter(&ev.resize, 1));
	CHECK_EQ(ev.reactor, (int)r);
	CHECK_EQ(sb_bdev_ctl_get_info("n0", &info), 0);
	CHECK_EQ(info.num_blocks, 8192);
	CHECK_EQ(info.open_descs, 1);
	CHECK_EQ(ut_rw1(r, "n0", SB_BDEV_IO_READ, buf, 8184, 8, 512), 0);
	CHECK_EQ(sb_bdev_null_resize("n0", 2), -EINVAL);
	CHECK_EQ(sb_bdev_null_resize("n0", UINT64_MAX), -EINVAL);
	CHECK_EQ(sb_call(sb_reactor_get(r), _ut_close_events, &ev, 5000000), 0);

	CHECK_EQ(sb_bdev_null_delete("n0"), 0);
	CHECK_EQ(sb_bdev_null_delete("n0"), -ENODEV);
}

/* Delete while a descriptor is open: REMOVE, then the delete finishes on close. */
struct remove_ctx {
	struct ut_events ev;
	int delete_rc;
	volatile int deleted;
};

static void *
_delete_thread(void *arg)
{
	struct remove_ctx *c = arg;

	c->delete_rc = sb_bdev_null_delete("n1");
	c->deleted = 1;
	return NULL;
}

static void
test_hot_remove(void)
{
	struct sb_null_opts o = {.name = "n1", .num_blocks = 16, .block_size = 4096};
	struct remove_ctx c = {.ev = {.bdev = "n1"}};
	uint32_t r = ut_io_reactor();
	pthread_t t;
	static char buf[4096];

	CHECK_EQ(sb_bdev_null_create(&o), 0);
	CHECK_EQ(sb_call(sb_reactor_get(r), _ut_open_events, &c.ev, 5000000), 0);
	CHECK_EQ(pthread_create(&t, NULL, _delete_thread, &c), 0);
	CHECK(ut_wait_counter(&c.ev.remove, 1));
	usleep(20000);
	CHECK_EQ(c.deleted, 0);
	/* New I/O is refused while the removal waits. */
	CHECK_EQ(ut_rw1(r, "n1", SB_BDEV_IO_READ, buf, 0, 1, 4096), -ENODEV);
	CHECK_EQ(sb_call(sb_reactor_get(r), _ut_close_events, &c.ev, 5000000), 0);
	pthread_join(t, NULL);
	CHECK_EQ(c.deleted, 1);
	CHECK_EQ(c.delete_rc, 0);
	struct sb_bdev_info info;
	CHECK_EQ(sb_bdev_ctl_get_info("n1", &info), -ENODEV);
}

int
main(void)
{
	sb_log_set_stderr(getenv("SB_UT_VERBOSE") != NULL);
	CHECK_EQ(ut_engine_start(), 0);
	RUN_TEST(test_null);
	RUN_TEST(test_hot_remove);
	sb_engine_stop();
	return UT_SUMMARY();
}
