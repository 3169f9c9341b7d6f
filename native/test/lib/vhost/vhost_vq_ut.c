/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Split virtqueue walker over a synthetic guest-memory image: good chains,
 * indirect tables and every violation a hostile guest can write.
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
/* Ring parts and buffers inside the image (guest physical addresses). */
#define DESC_GPA (GPA_BASE + 0x0)
#define AVAIL_GPA (GPA_BASE + 0x1000)
#define USED_GPA (GPA_BASE + 0x2000)
#define IND_GPA (GPA_BASE + 0x3000)
#define IND2_GPA (GPA_BASE + 0x3800)
#define BUF_GPA (GPA_BASE + 0x10000)

static uint8_t *g_img;
static struct sb_vhost_mem *g_mem;
static struct sb_vring g_vr;
static struct iovec g_iov[64];
static struct sb_vring_chain g_chain;

static void *
_host(uint64_t gpa)
{
	return g_img + (gpa - GPA_BASE);
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
	g_vr.indirect = indirect;
	g_vr.event_idx = event_idx;
	CHECK_EQ(sb_vring_map(&g_vr, g_mem, UVA_BASE + (DESC_GPA - GPA_BASE),
			      UVA_BASE + (AVAIL_GPA - GPA_BASE), UVA_BASE + (USED_GPA - GPA_BASE),
			      &why), 0);
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

static void
_desc(struct vring_desc *table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
      uint16_t next)
{
	table[i].addr = addr;
	table[i].len = len;
	table[i].flags = flags;
	table[i].next = next;
}

static struct vring_desc *
_d(void)
{
	return _host(DESC_GPA);
}

/* A well-formed virtio-blk style chain: header, data, status. */
static void
_good_chain(uint16_t head)
{
	_desc(_d(), head, BUF_GPA, 16, VRING_DESC_F_NEXT, 5);
	_desc(_d(), 5, BUF_GPA + 0x1000, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 6);
	_desc(_d(), 6, BUF_GPA + 0x3000, 1, VRING_DESC_F_WRITE, 0);
}

static int
_walk(uint16_t head, const char **why)
{
	*why = NULL;
	return sb_vring_walk(&g_vr, g_mem, head, &g_chain, why);
}

static void
test_good_chain(void)
{
	const char *why;

	_setup(false, false);
	_good_chain(0);
	CHECK_EQ(_walk(0, &why), 0);
	CHECK_EQ(g_chain.n_iov, 3);
	CHECK_EQ(g_chain.n_readable, 1);
	CHECK_EQ(g_chain.readable_bytes, 16);
	CHECK_EQ(g_chain.writable_bytes, 4097);
	CHECK(g_iov[1].iov_base == _host(BUF_GPA + 0x1000));
	/* A zero-length descriptor contributes nothing. */
	_desc(_d(), 0, BUF_GPA, 0, VRING_DESC_F_NEXT, 1);
	_desc(_d(), 1, BUF_GPA, 16, 0, 0);
	CHECK_EQ(_walk(0, &why), 0);
	CHECK_EQ(g_chain.n_iov, 1);
	_teardown();
}

static void
test_bad_chains(void)
{
	const char *why;

	_setup(false, false);
	/* head out of range */
	CHECK_EQ(_walk(Q, &why), -EINVAL);
	/* next out of range */
	_desc(_d(), 0, BUF_GPA, 16, VRING_DESC_F_NEXT, Q);
	CHECK_EQ(_walk(0, &why), -EINVAL);
	CHECK(why != NULL && strstr(why, "next") != NULL);
	/* loop 0 -> 1 -> 0 */
	_desc(_d(), 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 1);
	_desc(_d(), 1, BUF_GPA, 16, VRING_DESC_F_NEXT, 0);
	CHECK_EQ(_walk(0, &why), -EINVAL);
	CHECK(why != NULL && strstr(why, "loop") != NULL);
	/* self loop */
	_desc(_d(), 2, BUF_GPA, 16, VRING_DESC_F_NEXT, 2);
	CHECK_EQ(_walk(2, &why), -EINVAL);
	/* buffer outside guest memory, and straddling its end */
	_desc(_d(), 0, GPA_BASE + MEM_SIZE, 16, 0, 0);
	CHECK_EQ(_walk(0, &why), -EINVAL);
	_desc(_d(), 0, GPA_BASE + MEM_SIZE - 8, 16, 0, 0);
	CHECK_EQ(_walk(0, &why), -EINVAL);
	_desc(_d(), 0, UINT64_MAX - 8, 16, 0, 0);
	CHECK_EQ(_walk(0, &why), -EINVAL);
	/* writable before readable */
	_desc(_d(), 0, BUF_GPA, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	_desc(_d(), 1, BUF_GPA, 16, 0, 0);
	CHECK_EQ(_walk(0, &why), -EINVAL);
	CHECK(why != NULL && strstr(why, "readable") != NULL);
	/* 4 GiB in total */
	_desc(_d(), 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 1);
	_desc(_d(), 1, BUF_GPA, 0xfffffff0u, 0, 0);
	CHECK_EQ(_walk(0, &why), -EINVAL);
	CHECK(why != NULL && strstr(why, "4 GiB") != NULL);
	/* indirect without the feature */
	_desc(_d(), 0, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	CHECK_EQ(_walk(0, &why), -EINVAL);
	/* too many segments for the iovec array: the request fails, not the device */
	g_chain.max_iov = 2;
	_good_chain(0);
	CHECK_EQ(_walk(0, &why), -E2BIG);
	g_chain.max_iov = 64;
	_teardown();
}

static void
test_indirect(void)
{
	struct vring_desc *t = _host(IND_GPA), *t2 = _host(IND2_GPA);
	const char *why;

	_setup(true, false);
	_desc(t, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 2);
	_desc(t, 2, BUF_GPA + 8, 8, VRING_DESC_F_NEXT, 1);
	_desc(t, 1, BUF_GPA + 0x100, 513, VRING_DESC_F_WRITE, 0);
	_desc(_d(), 3, IND_GPA, 3 * 16, VRING_DESC_F_INDIRECT, 0);
	CHECK_EQ(_walk(3, &why), 0);
	CHECK_EQ(g_chain.n_iov, 3);
	CHECK_EQ(g_chain.n_readable, 2);
	CHECK_EQ(g_chain.writable_bytes, 513);
	/* length not a multiple of 16 */
	_desc(_d(), 3, IND_GPA, 40, VRING_DESC_F_INDIRECT, 0);
	CHECK_EQ(_walk(3, &why), -EINVAL);
	/* INDIRECT together with NEXT */
	_desc(_d(), 3, IND_GPA, 48, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 4);
	CHECK_EQ(_walk(3, &why), -EINVAL);
	/* indirect after a regular descriptor in the same chain */
	_desc(_d(), 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 3);
	_desc(_d(), 3, IND_GPA, 48, VRING_DESC_F_INDIRECT, 0);
	CHECK_EQ(_walk(0, &why), -EINVAL);
	/* indirect inside indirect */
	_desc(t2, 0, IND_GPA, 48, VRING_DESC_F_INDIRECT, 0);
	_desc(_d(), 3, IND2_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	CHECK_EQ(_walk(3, &why), -EINVAL);
	CHECK(why != NULL && strstr(why, "inside an indirect") != NULL);
	/* loop inside the table */
	_desc(t, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	_desc(t, 1, BUF_GPA, 8, VRING_DESC_F_NEXT, 0);
	_desc(_d(), 3, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	CHECK_EQ(_walk(3, &why), -EINVAL);
	/* a table longer than both the queue and seg_max + 2 */
	_desc(_d(), 3, IND_GPA, 16 * (SB_VHOST_BLK_SEG_MAX + 3), VRING_DESC_F_INDIRECT, 0);
	CHECK_EQ(_walk(3, &why), -EINVAL);
	CHECK(why != NULL && strstr(why, "longer than the queue") != NULL);
	_desc(_d(), 3, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	/* next beyond the table */
	_desc(t, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 2);
	CHECK_EQ(_walk(3, &why), -EINVAL);
	/* table outside guest memory */
	_desc(_d(), 3, GPA_BASE + MEM_SIZE - 16, 32, VRING_DESC_F_INDIRECT, 0);
	CHECK_EQ(_walk(3, &why), -EINVAL);
	_teardown();
}

static void
test_avail_and_pop(void)
{
	struct vring_avail *avail = _host(AVAIL_GPA);
	const char *why = NULL;
	uint16_t head;

	_setup(false, false);
	CHECK_EQ(sb_vring_avail_count(&g_vr, &why), 0);
	avail->ring[0] = 3;
	avail->ring[1] = Q;  /* out of range */
	avail->idx = 2;
	CHECK_EQ(sb_vring_avail_count(&g_vr, &why), 2);
	CHECK_EQ(sb_vring_pop(&g_vr, &head, &why), 0);
	CHECK_EQ(head, 3);
	CHECK_EQ(sb_vring_pop(&g_vr, &head, &why), -EINVAL);
	/* avail idx jumping by more than the queue size */
	g_vr.last_avail_idx = 0;
	avail->idx = Q + 1;
	CHECK_EQ(sb_vring_avail_count(&g_vr, &why), -EINVAL);
	/* wrap-around of the 16-bit index is fine */
	g_vr.last_avail_idx = 0xfffe;
	avail->idx = 2;
	CHECK_EQ(sb_vring_avail_count(&g_vr, &why), 4);
	_teardown();
}

/* A poll takes what was published at its first look, not what comes later. */
static void
test_pop_seen(void)
{
	struct vring_avail *avail = _host(AVAIL_GPA);
	const char *why = NULL;
	uint16_t head, nd;

	_setup(false, false);
	CHECK_EQ(sb_vq_pop_seen(&g_vr, &head, &nd, &why), 0);
	avail->ring[0] = 1;
	avail->ring[1] = 2;
	avail->idx = 2;
	/* Published but not looked at yet: pop_seen does not look. */
	CHECK_EQ(sb_vq_pop_seen(&g_vr, &head, &nd, &why), 0);
	CHECK_EQ(sb_vq_pop(&g_vr, &head, &nd, &why), 1);
	CHECK_EQ(head, 1);
	/* The driver adds one while the first two are being taken. */
	avail->ring[2] = 4;
	avail->idx = 3;
	CHECK_EQ(sb_vq_pop_seen(&g_vr, &head, &nd, &why), 1);
	CHECK_EQ(head, 2);
	CHECK_EQ(sb_vq_pop_seen(&g_vr, &head, &nd, &why), 0);
	CHECK_EQ(g_vr.last_avail_idx, 2);
	/* The next look finds it. */
	CHECK_EQ(sb_vq_pop(&g_vr, &head, &nd, &why), 1);
	CHECK_EQ(head, 4);
	CHECK_EQ(sb_vq_pop(&g_vr, &head, &nd, &why), 0);
	_teardown();
}

static void
test_used_and_notify(void)
{
	struct vring_used *used = _host(USED_GPA);
	struct vring_avail *avail = _host(AVAIL_GPA);
	uint16_t *used_event = &avail->ring[Q];
	uint16_t *avail_event = (uint16_t *)&used->ring[Q];

	_setup(false, false);
	sb_vring_push_used(&g_vr, 5, 513);
	CHECK_EQ(used->idx, 1);
	CHECK_EQ(used->ring[0].id, 5);
	CHECK_EQ(used->ring[0].len, 513);
	CHECK(sb_vring_need_call(&g_vr));
	avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	CHECK(!sb_vring_need_call(&g_vr));
	_teardown();

	_setup(false, true);
	/* First completion always signals (nothing signalled yet). */
	sb_vring_push_used(&g_vr, 1, 1);
	CHECK(sb_vring_need_call(&g_vr));
	/* Driver wants an interrupt only once used idx passes 3. */
	*used_event = 3;
	sb_vring_push_used(&g_vr, 2, 1);   /* idx 2 */
	CHECK(!sb_vring_need_call(&g_vr));
	sb_vring_push_used(&g_vr, 3, 1);   /* idx 3 */
	CHECK(!sb_vring_need_call(&g_vr));
	sb_vring_push_used(&g_vr, 4, 1);   /* idx 4: crossed used_event 3 */
	CHECK(sb_vring_need_call(&g_vr));
	g_vr.last_avail_idx = 7;
	sb_vring_set_avail_event(&g_vr);
	CHECK_EQ(*avail_event, 7);
	_teardown();
}

static void
test_kick_suppression(void)
{
	struct vring_used *used = _host(USED_GPA);
	struct vring_avail *avail = _host(AVAIL_GPA);
	uint16_t *avail_event = (uint16_t *)&used->ring[Q];

	/* Without EVENT_IDX: the NO_NOTIFY flag. */
	_setup(false, false);
	sb_vring_notify_off(&g_vr);
	CHECK_EQ(used->flags, VRING_USED_F_NO_NOTIFY);
	CHECK(!sb_vring_notify_on(&g_vr));
	CHECK_EQ(used->flags, 0);
	/* A head published while kicks were off is seen when they come back on. */
	sb_vring_notify_off(&g_vr);
	avail->idx = 1;
	CHECK(sb_vring_notify_on(&g_vr));
	_teardown();

	/* With EVENT_IDX: off leaves avail_event alone, on moves it to last_avail_idx. */
	_setup(false, true);
	g_vr.last_avail_idx = 4;
	avail->idx = 4;
	*avail_event = 2;
	sb_vring_notify_off(&g_vr);
	CHECK_EQ(used->flags, 0);
	CHECK_EQ(*avail_event, 2);
	CHECK(!sb_vring_notify_on(&g_vr));
	CHECK_EQ(*avail_event, 4);
	avail->idx = 5;
	CHECK(sb_vring_notify_on(&g_vr));
	_teardown();
}

static void
test_map_checks(void)
{
	struct sb_vring vr = { .size = Q };
	const char *why = NULL;

	_setup(false, false);
	CHECK_EQ(sb_vring_map(&vr, g_mem, UVA_BASE + 8, UVA_BASE + 0x1000, UVA_BASE + 0x2000, &why),
		 -EFAULT);
	CHECK_EQ(sb_vring_map(&vr, g_mem, UVA_BASE, UVA_BASE + 0x1000, UVA_BASE + MEM_SIZE - 8,
			      &why), -EFAULT);
	CHECK_EQ(sb_vring_map(&vr, g_mem, UVA_BASE, UVA_BASE + 0x1000, UVA_BASE + 0x2000, &why), 0);
	_teardown();
}

int
main(void)
{
	g_img = aligned_alloc(4096, MEM_SIZE);
	RUN_TEST(test_good_chain);
	RUN_TEST(test_bad_chains);
	RUN_TEST(test_indirect);
	RUN_TEST(test_avail_and_pop);
	RUN_TEST(test_pop_seen);
	RUN_TEST(test_used_and_notify);
	RUN_TEST(test_kick_suppression);
	RUN_TEST(test_map_checks);
	free(g_img);
	return UT_SUMMARY();
}
