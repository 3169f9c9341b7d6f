/* SPDX-License-Identifier: Apache-2.0 */
/* Malloc bdevs and the bdev control path through the real engine. */
#include "bdev_malloc.h"
#include "bdev_engine_ut.h"

#include <stdio.h>

static void
test_create_errors(void)
{
	struct sb_malloc_opts o = {.name = "m_bad", .num_blocks = 16, .block_size = 512};

	o.block_size = 0;
	CHECK_EQ(sb_bdev_malloc_create(&o), -EINVAL);
	o.block_size = 1000;
	CHECK_EQ(sb_bdev_malloc_create(&o), -EINVAL);
	o.block_size = 256;
	CHECK_EQ(sb_bdev_malloc_create(&o), -EINVAL);
	o.block_size = 4096;
	o.num_blocks = UINT64_MAX / 1024;
	CHECK_EQ(sb_bdev_malloc_create(&o), -EINVAL);
	o.num_blocks = 0;
	CHECK_EQ(sb_bdev_malloc_create(&o), -EINVAL);
	o.num_blocks = 16;
	o.uuid = "not-a-uuid";
	CHECK_EQ(sb_bdev_malloc_create(&o), -EINVAL);
	o.uuid = NULL;
	o.name = "";
	CHECK_EQ(sb_bdev_malloc_create(&o), -EINVAL);
	CHECK_EQ(sb_bdev_malloc_create(NULL), -EINVAL);
	CHECK_EQ(sb_bdev_malloc_delete("m_none"), -ENODEV);
	/* Nothing half-made was left behind. */
	struct sb_bdev_info info;
	CHECK_EQ(sb_bdev_ctl_get_info("m_bad", &info), -ENODEV);
}

static void
test_hugepages_refused_cleanly(void)
{
	struct sb_malloc_opts o = {.name = "m_huge", .num_blocks = 4096, .block_size = 512,
				   .hugepages = true};
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r");
	long n = -1;

	if (f != NULL) {
		if (fscanf(f, "%ld", &n) != 1) {
			n = -1;
		}
		fclose(f);
	}
	if (n == 0) {
		/* No hugepages reserved on this host: a clean -ENOMEM, not a crash. */
		CHECK_EQ(sb_bdev_malloc_create(&o), -ENOMEM);
	} else {
		int rc = sb_bdev_malloc_create(&o);

		CHECK(rc == 0 || rc == -ENOMEM);
		if (rc == 0) {
			CHECK_EQ(sb_bdev_malloc_delete("m_huge"), 0);
		}
	}
}

static void
test_info_and_io(void)
{
	const char *uuid = "6f1c3b1e-2a4d-4e8f-9b0a-1c2d3e4f5a6b";
	struct sb_malloc_opts o = {.name = "m0", .uuid = uuid, .num_blocks = 1024,
				   .block_size = 512};
	struct sb_bdev_info info, list[4];
	struct sb_bdev_iostat st;
	uint64_t limits[SB_QOS_NUM_LIMITS] = {1500, 0, 0, 0};
	uint32_t count = 0;
	static char wbuf[8 * 512], rbuf[8 * 512];
	struct iovec wiov[2] = {{wbuf, 1536}, {wbuf + 1536, 2560}};
	uint32_t r = ut_io_reactor();

	CHECK_EQ(sb_bdev_malloc_create(&o), 0);
	CHECK_EQ(sb_bdev_malloc_create(&o), -EEXIST);
	CHECK_EQ(sb_bdev_ctl_get_info("m0", &info), 0);
	CHECK(strcmp(info.module, "malloc") == 0);
	CHECK(strcmp(info.uuid, uuid) == 0);
	CHECK(strcmp(info.product_name, "Malloc disk") == 0);
	CHECK_EQ(info.num_blocks, 1024);
	CHECK_EQ(info.block_size, 512);
	CHECK_EQ(info.physical_block_size, 512);
	CHECK(info.supported_io_types[SB_BDEV_IO_UNMAP]);
	CHECK(!info.claimed);
	CHECK(strstr(info.driver_specific, "\"hugepages\": false") != NULL);
	CHECK_EQ(sb_bdev_ctl_get_info(uuid, &info), 0);
	CHECK_EQ(sb_bdev_ctl_list(list, 4, &count), 0);
	CHECK_EQ(count, 1);
	CHECK(strcmp(list[0].name, "m0") == 0);

	/* Write on one reactor, read on the other. */
	ut_fill_pattern(wbuf, sizeof(wbuf), 1);
	CHECK_EQ(ut_io(r, "m0", SB_BDEV_IO_WRITE, 100, 8, wiov, 2), 0);
	memset(rbuf, 0, sizeof(rbuf));
	CHECK_EQ(ut_rw1(0, "m0", SB_BDEV_IO_READ, rbuf, 100, 8, 512), 0);
	CHECK(memcmp(wbuf, rbuf, sizeof(rbuf)) == 0);

	/* Unmap and write-zeroes read back zero; flush and reset succeed. */
	CHECK_EQ(ut_io(r, "m0", SB_BDEV_IO_UNMAP, 100, 2, NULL, 0), 0);
	CHECK_EQ(ut_io(r, "m0", SB_BDEV_IO_WRITE_ZEROES, 106, 2, NULL, 0), 0);
	CHECK_EQ(ut_rw1(r, "m0", SB_BDEV_IO_READ, rbuf, 100, 8, 512), 0);
	CHECK(ut_all_bytes(rbuf, 0, 1024));
	CHECK(memcmp(rbuf + 1024, wbuf + 1024, 2048) == 0);
	CHECK(ut_all_bytes(rbuf + 3072, 0, 1024));
	CHECK_EQ(ut_io(r, "m0", SB_BDEV_IO_FLUSH, 0, 0, NULL, 0), 0);
	CHECK_EQ(ut_io(r, "m0", SB_BDEV_IO_RESET, 0, 0, NULL, 0), 0);

	/* Beyond the end, and a bad iovec sum. */
	CHECK_EQ(ut_rw1(r, "m0", SB_BDEV_IO_READ, rbuf, 1020, 8, 512), -EINVAL);
	CHECK_EQ(ut_rw1(r, "m0", SB_BDEV_IO_READ, rbuf, 1024, 1, 512), -EINVAL);
	CHECK_EQ(ut_io(r, "m0", SB_BDEV_IO_WRITE, 0, 9, wiov, 2), -EINVAL);
	CHECK_EQ(ut_io(r, "nope", SB_BDEV_IO_WRITE, 0, 8, wiov, 2), -ENODEV);

	CHECK_EQ(sb_bdev_ctl_get_iostat("m0", &st), 0);
	CHECK(strcmp(st.name, "m0") == 0);
	CHECK_EQ(st.num_read_ops, 2);
	CHECK_EQ(st.bytes_read, 8192);
	CHECK_EQ(st.num_write_ops, 1);
	CHECK_EQ(st.num_unmap_ops, 1);
	CHECK_EQ(st.num_write_zeroes_ops, 1);
	CHECK_EQ(st.num_flush_ops, 1);
	CHECK_EQ(st.num_reset_ops, 1);
	CHECK_EQ(st.queue_depth, 0);
	CHECK(st.read_latency_ticks >= st.max_read_latency_ticks);
	CHECK(st.max_read_latency_ticks >= st.min_read_latency_ticks);
	CHECK_EQ(sb_bdev_ctl_get_iostat("nope", &st), -ENODEV);

	/* Aliases. */
	CHECK_EQ(sb_bdev_ctl_alias_add("m0", "m0_alias"), 0);
	CHECK_EQ(sb_bdev_ctl_alias_add("m0", "m0_alias"), -EEXIST);
	CHECK_EQ(sb_bdev_ctl_alias_add("nope", "x"), -ENODEV);
	CHECK_EQ(sb_bdev_ctl_get_info("m0_alias", &info), 0);
	CHECK_EQ(info.num_aliases, 1);
	CHECK(strcmp(info.aliases[0], "m0_alias") == 0);
	CHECK_EQ(ut_rw1(r, "m0_alias", SB_BDEV_IO_READ, rbuf, 0, 1, 512), 0);
	CHECK_EQ(sb_bdev_ctl_alias_del("m0", "m0_alias"), 0);
	CHECK_EQ(sb_bdev_ctl_alias_del("m0", "m0_alias"), -EINVAL);
	CHECK_EQ(sb_bdev_ctl_get_info("m0_alias", &info), -ENODEV);

	/* QoS settings show in the info. */
	CHECK_EQ(sb_bdev_ctl_set_qos("m0", limits), -EINVAL);
	limits[SB_QOS_RW_IOPS] = 20000;
	limits[SB_QOS_W_MBPS] = 100;
	CHECK_EQ(sb_bdev_ctl_set_qos("m0", limits), 0);
	limits[SB_QOS_RW_IOPS] = UINT64_MAX;
	limits[SB_QOS_W_MBPS] = 50;
	CHECK_EQ(sb_bdev_ctl_set_qos("m0", limits), 0);
	CHECK_EQ(sb_bdev_ctl_get_info("m0", &info), 0);
	CHECK_EQ(info.qos_limits[SB_QOS_RW_IOPS], 20000);
	CHECK_EQ(info.qos_limits[SB_QOS_W_MBPS], 50);
	CHECK_EQ(ut_rw1(r, "m0", SB_BDEV_IO_READ, rbuf, 100, 8, 512), 0);
	CHECK_EQ(ut_rw1(0, "m0", SB_BDEV_IO_READ, rbuf, 100, 8, 512), 0);
	CHECK_EQ(sb_bdev_ctl_set_qos("nope", limits), -ENODEV);

	CHECK_EQ(sb_bdev_malloc_delete("m0"), 0);
	CHECK_EQ(sb_bdev_malloc_delete("m0"), -ENODEV);
	CHECK_EQ(sb_bdev_ctl_get_info("m0", &info), -ENODEV);
	CHECK_EQ(ut_rw1(r, "m0", SB_BDEV_IO_READ, rbuf, 0, 1, 512), -ENODEV);
}

/* The write-rate limit holds within 10% on a 4 KiB write stream. */
struct qos_run {
	struct sb_bdev_desc *desc;
	struct sb_io_channel *ch;
	struct sb_completion *done;
	uint64_t end_tick;
	bool reads;
	uint64_t completed;
	int inflight;
	char *buf;
	struct iovec iov[16];
};

static void _qos_submit(struct qos_run *q, int slot);

struct qos_slot {
	struct iovec iov;
	struct qos_run *q;
};

static struct qos_slot g_slots[16];

static void
_qos_slot_cb(struct sb_bdev_io *io, int status, void *arg)
{
	struct qos_slot *s = arg;
	struct qos_run *q = s->q;

	sb_bdev_free_io(io);
	q->inflight--;
	if (status == 0) {
		q->completed++;
	}
	if (sb_get_ticks() < q->end_tick) {
		_qos_submit(q, (int)(s - g_slots));
		return;
	}
	if (q->inflight == 0) {
		sb_put_io_channel(q->ch);
		sb_bdev_close(q->desc);
		sb_complete(q->done, 0);
	}
}

static void
_qos_submit(struct qos_run *q, int slot)
{
	int (*fn)(struct sb_bdev_desc *, struct sb_io_channel *, struct iovec *, int, uint64_t,
		  uint64_t, sb_bdev_io_cb, void *) = q->reads ? sb_bdev_readv_blocks
							   : sb_bdev_writev_blocks;

	if (fn(q->desc, q->ch, &g_slots[slot].iov, 1, (uint64_t)slot * 8, 8, _qos_slot_cb,
	       &g_slots[slot]) == 0) {
		q->inflight++;
	}
}

static void
_qos_start(void *arg, struct sb_completion *done)
{
	struct qos_run *q = arg;
	int i, rc;

	q->done = done;
	rc = sb_bdev_open("mq", true, NULL, NULL, &q->desc);
	if (rc != 0) {
		sb_complete(done, rc);
		return;
	}
	q->ch = sb_bdev_get_io_channel(q->desc);
	q->end_tick = sb_get_ticks() + 2 * sb_get_ticks_hz();
	for (i = 0; i < 16; i++) {
		g_slots[i].iov.iov_base = q->buf + i * 4096;
		g_slots[i].iov.iov_len = 4096;
		g_slots[i].q = q;
		_qos_submit(q, i);
	}
}

static void
test_qos_rate(void)
{
	struct sb_malloc_opts o = {.name = "mq", .num_blocks = 2048, .block_size = 512};
	uint64_t limits[SB_QOS_NUM_LIMITS] = {0, 0, 0, 2}; /* 2 MiB/s of writes */
	struct qos_run q = {0};
	double rate;

	CHECK_EQ(sb_bdev_malloc_create(&o), 0);
	CHECK_EQ(sb_bdev_ctl_set_qos("mq", limits), 0);
	q.buf = calloc(16, 4096);
	CHECK_EQ(sb_call(sb_reactor_get(ut_io_reactor()), _qos_start, &q, 10 * 1000 * 1000), 0);
	/* 2 s at 2 MiB/s = 1024 writes of 4 KiB (+ one slice of initial credit). */
	rate = (double)q.completed / 1024.0;
	printf("qos: %lu writes in 2 s (%.0f%% of the limit)\n", (unsigned long)q.completed,
	       rate * 100);
	CHECK(rate > 0.9 && rate < 1.1);

	/* rw_ios_per_sec: 3000 reads per second, submitted from the other reactor too. */
	limits[SB_QOS_W_MBPS] = 0;
	limits[SB_QOS_RW_IOPS] = 3000;
	CHECK_EQ(sb_bdev_ctl_set_qos("mq", limits), 0);
	free(q.buf);
	memset(&q, 0, sizeof(q));
	q.buf = calloc(16, 4096);
	q.reads = true;
	CHECK_EQ(sb_call(sb_reactor_get(0), _qos_start, &q, 10 * 1000 * 1000), 0);
	rate = (double)q.completed / 6000.0;
	printf("qos: %lu reads in 2 s (%.0f%% of the limit)\n", (unsigned long)q.completed,
	       rate * 100);
	CHECK(rate > 0.9 && rate < 1.1);
	free(q.buf);
	CHECK_EQ(sb_bdev_malloc_delete("mq"), 0);
}

static void
test_left_open_at_stop(void)
{
	struct sb_malloc_opts o = {.name = "m_left", .num_blocks = 16, .block_size = 4096};

	/* A bdev still registered at engine stop is unregistered by the bdev layer. */
	CHECK_EQ(sb_bdev_malloc_create(&o), 0);
}

int
main(void)
{
	sb_log_set_stderr(getenv("SB_UT_VERBOSE") != NULL);
	CHECK_EQ(ut_engine_start(), 0);
	RUN_TEST(test_create_errors);
	RUN_TEST(test_hugepages_refused_cleanly);
	RUN_TEST(test_info_and_io);
	RUN_TEST(test_qos_rate);
	RUN_TEST(test_left_open_at_stop);
	sb_engine_stop();
	/* And the engine starts again with a clean registry. */
	CHECK_EQ(ut_engine_start(), 0);
	{
		struct sb_bdev_info info;

		CHECK_EQ(sb_bdev_ctl_get_info("m_left", &info), -ENODEV);
		test_left_open_at_stop();
		CHECK_EQ(sb_bdev_ctl_get_info("m_left", &info), 0);
	}
	sb_engine_stop();
	return UT_SUMMARY();
}
