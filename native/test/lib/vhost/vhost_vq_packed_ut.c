/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Packed virtqueue walker over a synthetic guest-memory image: buffers
 * across the ring's end (wrap counters), indirect tables, used
 * descriptors written out of order, event suppression, the base value,
 * and what a hostile driver writes.
 */
#include "ut.h"
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define Q 8
#define GPA_BASE 0x100000ull
#define UVA_BASE 0x7f0000000000ull
#define MEM_SIZE 0x40000
#define DESC_GPA (GPA_BASE + 0x0)
#define DRIVER_GPA (GPA_BASE + 0x1000)
#define DEVICE_GPA (GPA_BASE + 0x2000)
#define IND_GPA (GPA_BASE + 0x3000)
#define BUF_GPA (GPA_BASE + 0x10000)

#define F_AVAIL VRING_PACKED_DESC_F_AVAIL
#define F_USED VRING_PACKED_DESC_F_USED

static uint8_t *g_img;
static struct sb_vhost_mem *g_mem;
static struct sb_vring g_vr;
static struct vring_packed_desc g_scratch[Q];
static struct iovec g_iov[64];
static struct sb_vring_chain g_chain;
/* The driver's side: next slot to fill and its wrap counter. */
static uint16_t g_drv_idx;
static bool g_drv_wrap;

static void *
_host(uint64_t gpa)
{
	return g_img + (gpa - GPA_BASE);
}

static struct vring_packed_desc *
_d(void)
{
	return _host(DESC_GPA);
}

static void
_setup(bool indirect, bool event_idx)
{
	struct vhost_user_mem_region r = { .guest_phys_addr = GPA_BASE, .memory_size = MEM_SIZE,
					   .userspace_addr = UVA_BASE };
	const char *why = NULL;

	memset(g_img, 0, MEM_SIZE);
	g_mem = sb_vhost_mem_alloc();
	CHECK_EQ(sb_vhost_mem_add(g_mem, &r, -1, g_img), 0);
	memset(&g_vr, 0, sizeof(g_vr));
	g_vr.size = Q;
	g_vr.packed = true;
	g_vr.indirect = indirect;
	g_vr.event_idx = event_idx;
	g_vr.scratch = g_scratch;
	CHECK_EQ(sb_vq_map(&g_vr, g_mem, UVA_BASE + (DESC_GPA - GPA_BASE),
			   UVA_BASE + (DRIVER_GPA - GPA_BASE), UVA_BASE + (DEVICE_GPA - GPA_BASE),
			   &why), 0);
	/* A fresh ring: both wrap counters start at 1 (§2.8.1). */
	CHECK_EQ(sb_vring_packed_set_base(&g_vr, 0x80008000u, &why), 0);
	g_drv_idx = 0;
	g_drv_wrap = true;
	g_chain.iov = g_iov;
	g_chain.max_iov = 64;
}

static void
_teardown(void)
{
	sb_vhost_mem_forget(g_mem);
	sb_vhost_mem_free(g_mem);
	g_mem = NULL;
}

/* Driver: put one descriptor at its next slot (flags get the avail/used bits). */
static void
_put(uint64_t addr, uint32_t len, uint16_t id, uint16_t flags)
{
	struct vring_packed_desc *d = &_d()[g_drv_idx];

	d->addr = addr;
	d->len = len;
	d->id = id;
	d->flags = flags | (g_drv_wrap ? F_AVAIL : F_USED);
	if (++g_drv_idx == Q) {
		g_drv_idx = 0;
		g_drv_wrap = !g_drv_wrap;
	}
}

/* A 3-descriptor blk-like request: header, data, status. */
static void
_put_request(uint16_t id, uint32_t data_len, bool data_writable)
{
	_put(BUF_GPA, 16, id, VRING_DESC_F_NEXT);
	_put(BUF_GPA + 0x1000, data_len, id,
	     VRING_DESC_F_NEXT | (data_writable ? VRING_DESC_F_WRITE : 0));
	_put(BUF_GPA + 0x100, 1, id, VRING_DESC_F_WRITE);
}

static int
_pop_walk(uint16_t *id, uint16_t *ndesc, const char **why)
{
	int rc = sb_vq_pop(&g_vr, id, ndesc, why);

	if (rc != 1) {
		return rc;
	}
	return sb_vq_walk(&g_vr, g_mem, *id, &g_chain, why) == 0 ? 1 : -EINVAL;
}

static void
test_good_chain_and_wrap(void)
{
	const char *why = NULL;
	uint16_t id = 0, ndesc = 0;
	int round;

	_setup(false, false);
	CHECK_EQ(sb_vq_pop(&g_vr, &id, &ndesc, &why), 0);
	/* Five rounds of 3 slots on an 8-slot ring: buffers straddle the end. */
	for (round = 0; round < 5; round++) {
		_put_request((uint16_t)(round + 2), 512, round & 1);
		CHECK_EQ(_pop_walk(&id, &ndesc, &why), 1);
		CHECK_EQ(id, round + 2);
		CHECK_EQ(ndesc, 3);
		CHECK_EQ(g_chain.n_iov, 3);
		CHECK_EQ(g_chain.n_readable, (round & 1) ? 1 : 2);
		CHECK_EQ(g_chain.readable_bytes, (round & 1) ? 16 : 528);
		CHECK_EQ(g_chain.writable_bytes, (round & 1) ? 513 : 1);
		CHECK(g_iov[0].iov_base == _host(BUF_GPA));
		CHECK_EQ(sb_vq_pop(&g_vr, &id, &ndesc, &why), 0);
		sb_vq_push_used(&g_vr, id, ndesc, 1);
		/* The used descriptor sits where the buffer began, flags = that lap's wrap. */
		CHECK_EQ(_d()[(3 * round) % Q].id, round + 2);
		CHECK_EQ(_d()[(3 * round) % Q].flags & (F_AVAIL | F_USED),
			 (3 * round) / Q == 0 ? F_AVAIL | F_USED : 0);
	}
	/* 15 slots taken: index 7 of the first lap... */
	CHECK_EQ(g_vr.last_avail_idx, 15 % Q);
	CHECK(!g_vr.avail_wrap);
	CHECK_EQ(g_vr.last_used_idx, 15 % Q);
	CHECK(!g_vr.used_wrap);
	CHECK_EQ(sb_vring_packed_get_base(&g_vr), (7u | 7u << 16));
	_teardown();
}

static void
test_out_of_order_used(void)
{
	const char *why = NULL;
	uint16_t id[3], nd[3];
	int i;

	_setup(false, false);
	_put(BUF_GPA, 16, 5, 0);
	_put(BUF_GPA, 16, 1, VRING_DESC_F_NEXT);
	_put(BUF_GPA + 0x100, 1, 1, VRING_DESC_F_WRITE);
	_put(BUF_GPA, 16, 7, 0);
	for (i = 0; i < 3; i++) {
		CHECK_EQ(_pop_walk(&id[i], &nd[i], &why), 1);
	}
	CHECK_EQ(id[0], 5);
	CHECK_EQ(id[1], 1);
	CHECK_EQ(nd[1], 2);
	CHECK_EQ(id[2], 7);
	/* Completion order 7, 5, 1: used descriptors in that order, slots skipped by size. */
	sb_vq_push_used(&g_vr, id[2], nd[2], 10);
	sb_vq_push_used(&g_vr, id[0], nd[0], 20);
	sb_vq_push_used(&g_vr, id[1], nd[1], 30);
	CHECK_EQ(_d()[0].id, 7);
	CHECK_EQ(_d()[0].len, 10);
	CHECK_EQ(_d()[1].id, 5);
	CHECK_EQ(_d()[2].id, 1);
	CHECK_EQ(_d()[2].len, 30);
	CHECK_EQ(g_vr.last_used_idx, 4);
	_teardown();
}

static void
test_indirect(void)
{
	struct vring_packed_desc *t = _host(IND_GPA);
	const char *why = NULL;
	uint16_t id, nd;

	_setup(true, false);
	t[0] = (struct vring_packed_desc){ .addr = BUF_GPA, .len = 16 };
	/* NEXT and ids inside a table mean nothing (§2.8.7): ignored. */
	t[1] = (struct vring_packed_desc){ .addr = BUF_GPA + 0x1000, .len = 4096, .id = 99,
					   .flags = VRING_DESC_F_WRITE | VRING_DESC_F_NEXT };
	t[2] = (struct vring_packed_desc){ .addr = BUF_GPA + 0x100, .len = 1,
					   .flags = VRING_DESC_F_WRITE };
	_put(IND_GPA, 3 * 16, 4, VRING_DESC_F_INDIRECT);
	CHECK_EQ(_pop_walk(&id, &nd, &why), 1);
	CHECK_EQ(id, 4);
	CHECK_EQ(nd, 1);
	CHECK_EQ(g_chain.n_iov, 3);
	CHECK_EQ(g_chain.writable_bytes, 4097);

	/* Indirect rules. */
	_put(IND_GPA, 3 * 16, 4, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT);
	_put(BUF_GPA, 16, 4, 0);
	CHECK_EQ(_pop_walk(&id, &nd, &why), -EINVAL);
	_teardown();

	_setup(true, false);
	_put(IND_GPA, 20, 4, VRING_DESC_F_INDIRECT);
	CHECK_EQ(_pop_walk(&id, &nd, &why), -EINVAL);
	_teardown();

	_setup(true, false);
	_put(IND_GPA + 8, 48, 4, VRING_DESC_F_INDIRECT);
	CHECK_EQ(_pop_walk(&id, &nd, &why), -EINVAL);
	_teardown();

	_setup(true, false);
	_put(GPA_BASE + MEM_SIZE - 32, 48, 4, VRING_DESC_F_INDIRECT);
	CHECK_EQ(_pop_walk(&id, &nd, &why), -EINVAL);
	_teardown();

	_setup(true, false);
	t[0] = (struct vring_packed_desc){ .addr = BUF_GPA + 0x100, .len = 1,
					   .flags = VRING_DESC_F_WRITE };
	t[1] = (struct vring_packed_desc){ .addr = BUF_GPA, .len = 16 };
	_put(IND_GPA, 32, 4, VRING_DESC_F_INDIRECT);
	CHECK_EQ(_pop_walk(&id, &nd, &why), -EINVAL);  /* readable after writable */
	_teardown();

	/* An indirect descriptor at the end of a chain. */
	_setup(true, false);
	_put(BUF_GPA, 16, 4, VRING_DESC_F_NEXT);
	_put(IND_GPA, 32, 4, VRING_DESC_F_INDIRECT);
	CHECK_EQ(_pop_walk(&id, &nd, &why), -EINVAL);
	_teardown();

	/* Without VIRTIO_F_INDIRECT_DESC. */
	_setup(false, false);
	_put(IND_GPA, 32, 4, VRING_DESC_F_INDIRECT);
	CHECK_EQ(_pop_walk(&id, &nd, &why), -EINVAL);
	_teardown();
}

static void
test_hostile(void)
{
	const char *why = NULL;
	uint16_t id, nd, i;

	/* Buffer id out of range. */
	_setup(false, false);
	_put(BUF_GPA, 16, Q, 0);
	why = NULL;
	CHECK_EQ(sb_vq_pop(&g_vr, &id, &nd, &why), -EINVAL);
	CHECK(why != NULL && strstr(why, "buffer id") != NULL);
	_teardown();

	/* Chain longer than the ring: every slot chained, the loop closes on itself. */
	_setup(false, false);
	for (i = 0; i < Q; i++) {
		_put(BUF_GPA, 16, 0, VRING_DESC_F_NEXT);
	}
	CHECK_EQ(sb_vq_pop(&g_vr, &id, &nd, &why), -EINVAL);
	CHECK(strstr(why, "longer than the ring") != NULL);
	_teardown();

	/* Bad wrap counter on the head: AVAIL == USED == wrap looks used, nothing available. */
	_setup(false, false);
	_d()[0] = (struct vring_packed_desc){ .addr = BUF_GPA, .len = 16,
					      .flags = F_AVAIL | F_USED };
	CHECK_EQ(sb_vq_pop(&g_vr, &id, &nd, &why), 0);
	/* The previous lap's flags: not available either. */
	_d()[0].flags = F_USED;
	CHECK_EQ(sb_vq_pop(&g_vr, &id, &nd, &why), 0);
	CHECK_EQ(g_vr.last_avail_idx, 0);
	_teardown();

	/* Bad wrap counter inside a chain: the head is available, its next is not. */
	_setup(false, false);
	_put(BUF_GPA, 16, 1, VRING_DESC_F_NEXT);
	_d()[1] = (struct vring_packed_desc){ .addr = BUF_GPA + 0x100, .len = 1, .id = 1,
					      .flags = VRING_DESC_F_WRITE | F_USED };
	CHECK_EQ(sb_vq_pop(&g_vr, &id, &nd, &why), -EINVAL);
	CHECK(strstr(why, "wrap counter") != NULL);
	_teardown();

	/* Buffers outside guest memory, readable after writable, 4 GiB. */
	_setup(false, false);
	_put(GPA_BASE + MEM_SIZE - 8, 16, 1, 0);
	CHECK_EQ(_pop_walk(&id, &nd, &why), -EINVAL);
	_teardown();
	_setup(false, false);
	_put(BUF_GPA, 1, 1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT);
	_put(BUF_GPA, 16, 1, 0);
	CHECK_EQ(_pop_walk(&id, &nd, &why), -EINVAL);
	_teardown();
	_setup(false, false);
	_put(BUF_GPA, 0xffffffffu, 1, VRING_DESC_F_NEXT);
	_put(BUF_GPA, 16, 1, 0);
	CHECK_EQ(_pop_walk(&id, &nd, &why), -EINVAL);
	_teardown();
}

static void
test_base(void)
{
	const char *why = NULL;

	_setup(false, false);
	CHECK_EQ(sb_vring_packed_set_base(&g_vr, 3u | 5u << 16 | 1u << 31, &why), 0);
	CHECK_EQ(g_vr.last_avail_idx, 3);
	CHECK(!g_vr.avail_wrap);
	CHECK_EQ(g_vr.last_used_idx, 5);
	CHECK(g_vr.used_wrap);
	CHECK_EQ(sb_vring_packed_get_base(&g_vr), 3u | 5u << 16 | 1u << 31);
	/* The avail half alone (a front-end that sends no used half): used = avail. */
	CHECK_EQ(sb_vring_packed_set_base(&g_vr, 0x8000 | 6, &why), 0);
	CHECK_EQ(g_vr.last_used_idx, 6);
	CHECK(g_vr.used_wrap);
	CHECK_EQ(sb_vring_packed_get_base(&g_vr), 0x80068006u);
	/* Both halves 0: used index 0 of an odd lap, like the avail one. */
	CHECK_EQ(sb_vring_packed_set_base(&g_vr, 0, &why), 0);
	CHECK(!g_vr.used_wrap && !g_vr.avail_wrap);
	CHECK_EQ(sb_vring_packed_set_base(&g_vr, Q, &why), -EINVAL);
	CHECK_EQ(sb_vring_packed_set_base(&g_vr, (uint32_t)Q << 16, &why), -EINVAL);
	CHECK_EQ(sb_vring_packed_set_base(&g_vr, 0x7fff, &why), -EINVAL);
	_teardown();
}

static void
test_event_suppression(void)
{
	struct vring_packed_desc_event *drv = _host(DRIVER_GPA), *dev = _host(DEVICE_GPA);
	const char *why = NULL;
	uint16_t id, nd;
	int i;

	_setup(false, true);
	/* Kicks: device event structure. */
	sb_vq_notify_off(&g_vr);
	CHECK_EQ(dev->flags, VRING_PACKED_EVENT_FLAG_DISABLE);
	CHECK(!sb_vq_notify_on(&g_vr));
	CHECK_EQ(dev->flags, VRING_PACKED_EVENT_FLAG_ENABLE);
	_put(BUF_GPA, 16, 0, 0);
	CHECK(sb_vq_notify_on(&g_vr));

	/* Interrupts: driver event structure. */
	drv->flags = VRING_PACKED_EVENT_FLAG_DISABLE;
	CHECK_EQ(sb_vq_pop(&g_vr, &id, &nd, &why), 1);
	sb_vq_push_used(&g_vr, id, nd, 1);
	CHECK(!sb_vq_need_call(&g_vr));
	drv->flags = VRING_PACKED_EVENT_FLAG_ENABLE;
	CHECK(sb_vq_need_call(&g_vr));
	/* DESC: notify once the used index passes off (in the lap of its wrap bit). */
	drv->flags = VRING_PACKED_EVENT_FLAG_DESC;
	drv->off_wrap = 3 | 1u << 15;
	for (i = 0; i < 3; i++) {
		_put(BUF_GPA, 16, (uint16_t)i, 0);
		CHECK_EQ(sb_vq_pop(&g_vr, &id, &nd, &why), 1);
		sb_vq_push_used(&g_vr, id, nd, 1);
		/* used index now 2, 3, 4: the entry at 3 is written by the third push. */
		CHECK_EQ(sb_vq_need_call(&g_vr), i == 2);
	}
	/* Across the wrap: off 1 of the next lap (wrap bit 0). */
	drv->off_wrap = 1;
	for (i = 0; i < 6; i++) {
		_put(BUF_GPA, 16, (uint16_t)i, 0);
		CHECK_EQ(sb_vq_pop(&g_vr, &id, &nd, &why), 1);
		sb_vq_push_used(&g_vr, id, nd, 1);
		/* used index 5, 6, 7, 0 (wrapped), 1, 2: passes lap-1 slot 1 on the sixth. */
		CHECK_EQ(sb_vq_need_call(&g_vr), i == 5);
	}
	/* DESC without EVENT_IDX is not the driver's to write: treated as enabled. */
	g_vr.event_idx = false;
	_put(BUF_GPA, 16, 0, 0);
	CHECK_EQ(sb_vq_pop(&g_vr, &id, &nd, &why), 1);
	sb_vq_push_used(&g_vr, id, nd, 1);
	CHECK(sb_vq_need_call(&g_vr));
	_teardown();
}

static void
test_map_checks(void)
{
	struct sb_vring vr = { .size = Q, .packed = true };
	const char *why = NULL;

	_setup(false, false);
	CHECK_EQ(sb_vq_map(&vr, g_mem, UVA_BASE + 8, UVA_BASE + 0x1000, UVA_BASE + 0x2000, &why),
		 -EFAULT);
	CHECK_EQ(sb_vq_map(&vr, g_mem, UVA_BASE, UVA_BASE + 0x1002, UVA_BASE + 0x2000, &why),
		 -EFAULT);
	CHECK_EQ(sb_vq_map(&vr, g_mem, UVA_BASE + MEM_SIZE - 64, UVA_BASE + 0x1000,
			   UVA_BASE + 0x2000, &why), -EFAULT);
	CHECK_EQ(sb_vq_map(&vr, g_mem, UVA_BASE, UVA_BASE + 0x1000, UVA_BASE + MEM_SIZE, &why),
		 -EFAULT);
	CHECK_EQ(sb_vq_map(&vr, g_mem, UVA_BASE, UVA_BASE + 0x1000, UVA_BASE + 0x2000, &why), 0);
	_teardown();
}

/* The split ring through the same interface: one head per pop, cached avail count. */
static void
test_split_through_interface(void)
{
	struct sb_vhost_mem *mem = sb_vhost_mem_alloc();
	struct vhost_user_mem_region r = { .guest_phys_addr = GPA_BASE, .memory_size = MEM_SIZE,
					   .userspace_addr = UVA_BASE };
	struct sb_vring vr = { .size = Q };
	struct vring_avail *avail = _host(GPA_BASE + 0x1000);
	const char *why = NULL;
	uint16_t head, nd;

	memset(g_img, 0, MEM_SIZE);
	CHECK_EQ(sb_vhost_mem_add(mem, &r, -1, g_img), 0);
	CHECK_EQ(sb_vq_map(&vr, mem, UVA_BASE, UVA_BASE + 0x1000, UVA_BASE + 0x2000, &why), 0);
	avail->ring[0] = 3;
	avail->ring[1] = 5;
	avail->idx = 2;
	CHECK_EQ(sb_vq_pop(&vr, &head, &nd, &why), 1);
	CHECK_EQ(head, 3);
	CHECK_EQ(nd, 1);
	CHECK_EQ(sb_vq_pop(&vr, &head, &nd, &why), 1);
	CHECK_EQ(head, 5);
	CHECK_EQ(sb_vq_pop(&vr, &head, &nd, &why), 0);
	avail->idx = 2 + Q + 1;
	CHECK_EQ(sb_vq_pop(&vr, &head, &nd, &why), -EINVAL);
	sb_vhost_mem_forget(mem);
	sb_vhost_mem_free(mem);
}

int
main(int argc, char **argv)
{
	UT_INIT(argc, argv);
	g_img = aligned_alloc(4096, MEM_SIZE);
	RUN_TEST(test_good_chain_and_wrap);
	RUN_TEST(test_out_of_order_used);
	RUN_TEST(test_indirect);
	RUN_TEST(test_hostile);
	RUN_TEST(test_base);
	RUN_TEST(test_event_suppression);
	RUN_TEST(test_map_checks);
	RUN_TEST(test_split_through_interface);
	free(g_img);
	return UT_SUMMARY();
}
