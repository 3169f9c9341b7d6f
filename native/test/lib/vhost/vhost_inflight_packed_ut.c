/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inflight tracking of packed rings: buffers fetched and completed out of
 * order, a restart that resubmits the ones in flight from the region's
 * copies (the ring's descriptors are overwritten by then) and finds its
 * indexes there (the front-end's base is stale), a crash inside a
 * completion committed or rolled back, and regions a front-end garbled.
 */
#include "ut.h"
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define Q 8
#define GPA_BASE 0x100000ull
#define UVA_BASE 0x7f0000000000ull
#define MEM_SIZE 0x20000
#define DESC_GPA (GPA_BASE + 0x0)
#define DRIVER_GPA (GPA_BASE + 0x1000)
#define DEVICE_GPA (GPA_BASE + 0x2000)
#define BUF_GPA (GPA_BASE + 0x10000)

#define F_AVAIL VRING_PACKED_DESC_F_AVAIL
#define F_USED VRING_PACKED_DESC_F_USED

static uint8_t *g_img;
static struct sb_vhost_mem *g_mem;
static struct vring_packed_desc g_scratch[Q];
static struct sb_inflight_queue_packed *g_iq;
static uint16_t g_drv_idx;
static bool g_drv_wrap;

static struct vring_packed_desc *
_d(void)
{
	return (struct vring_packed_desc *)(g_img + (DESC_GPA - GPA_BASE));
}

/* A started ring as the session has it: mapped, base from the front-end. */
static void
_ring(struct sb_vring *vr, uint32_t base)
{
	const char *why = NULL;

	memset(vr, 0, sizeof(*vr));
	vr->size = Q;
	vr->packed = true;
	vr->scratch = g_scratch;
	CHECK_EQ(sb_vq_map(vr, g_mem, UVA_BASE + (DESC_GPA - GPA_BASE),
			   UVA_BASE + (DRIVER_GPA - GPA_BASE), UVA_BASE + (DEVICE_GPA - GPA_BASE),
			   &why), 0);
	CHECK_EQ(sb_vring_packed_set_base(vr, base, &why), 0);
}

static void
_setup(void)
{
	struct vhost_user_mem_region r = { .guest_phys_addr = GPA_BASE, .memory_size = MEM_SIZE,
					   .userspace_addr = UVA_BASE };

	memset(g_img, 0, MEM_SIZE);
	g_mem = sb_vhost_mem_alloc();
	CHECK_EQ(sb_vhost_mem_add(g_mem, &r, -1, g_img), 0);
	g_iq = calloc(1, sb_inflight_packed_queue_bytes(Q));
	g_drv_idx = 0;
	g_drv_wrap = true;
}

static void
_teardown(void)
{
	free(g_iq);
	sb_vhost_mem_forget(g_mem);
	sb_vhost_mem_free(g_mem);
}

/* Driver: a buffer of n descriptors with id, data at BUF_GPA + 0x100 * id. */
static void
_put(uint16_t id, uint16_t n)
{
	uint16_t i;

	for (i = 0; i < n; i++) {
		struct vring_packed_desc *d = &_d()[g_drv_idx];

		d->addr = BUF_GPA + 0x100 * id + i;
		d->len = 16 + i;
		d->id = id;
		d->flags = (i + 1 < n ? VRING_DESC_F_NEXT : 0) | (g_drv_wrap ? F_AVAIL : F_USED);
		if (++g_drv_idx == Q) {
			g_drv_idx = 0;
			g_drv_wrap = !g_drv_wrap;
		}
	}
}

/* Device: pop and record one buffer; its region entry. */
static uint16_t
_fetch(struct sb_vring *vr, uint16_t want_id, uint64_t counter)
{
	const char *why = NULL;
	uint16_t id = 0, nd = 0, entry = 0xffff;

	CHECK_EQ(sb_vq_pop(vr, &id, &nd, &why), 1);
	CHECK_EQ(id, want_id);
	CHECK_EQ(sb_inflight_packed_fetch(g_iq, vr, counter, &entry, &why), 0);
	return entry;
}

static void
test_fresh_fetch_complete_restart(void)
{
	struct sb_vring vr;
	const char *why = NULL;
	uint16_t ents[Q], n = 0, ea, eb, ec, id, nd;
	uint64_t next = 0;

	_setup();
	_ring(&vr, 0x80008000u);
	CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), 0);
	CHECK_EQ(n, 0);
	CHECK_EQ(g_iq->version, 1);
	CHECK_EQ(g_iq->desc_num, Q);
	_put(1, 3);
	_put(2, 2);
	_put(3, 1);
	ea = _fetch(&vr, 1, 10);
	eb = _fetch(&vr, 2, 11);
	ec = _fetch(&vr, 3, 12);
	CHECK_EQ(g_iq->desc[ea].num, 3);
	CHECK_EQ(g_iq->desc[eb].num, 2);
	CHECK(g_iq->desc[ec].inflight == 1);
	/* B completes first: its used descriptor at slot 0, used index 2. */
	sb_inflight_packed_push_used(g_iq, &vr, eb, 2, 2, 1);
	CHECK_EQ(_d()[0].id, 2);
	CHECK_EQ(_d()[0].flags & (F_AVAIL | F_USED), F_AVAIL | F_USED);
	CHECK_EQ(g_iq->used_idx, 2);
	CHECK_EQ(g_iq->old_used_idx, 2);
	CHECK_EQ(g_iq->desc[eb].inflight, 0);

	/* Killed here; the front-end's base is what it had at start. */
	_ring(&vr, 0x80008000u);
	CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(ents[0], ea);
	CHECK_EQ(ents[1], ec);
	CHECK_EQ(next, 13);
	CHECK_EQ(vr.last_used_idx, 2);
	CHECK(vr.used_wrap);
	CHECK_EQ(vr.last_avail_idx, 6);  /* 2 returned + 3 + 1 in flight */
	CHECK(vr.avail_wrap);
	/* A's descriptors from the region (slot 0 of the ring holds B's used one). */
	CHECK_EQ(sb_inflight_packed_load(g_iq, &vr, ea, &id, &nd, &why), 0);
	CHECK_EQ(id, 1);
	CHECK_EQ(nd, 3);
	CHECK_EQ(vr.scratch[0].addr, BUF_GPA + 0x100);
	CHECK_EQ(vr.scratch[2].addr, BUF_GPA + 0x102);
	CHECK_EQ(vr.scratch[1].flags & VRING_DESC_F_NEXT, VRING_DESC_F_NEXT);
	CHECK_EQ(sb_inflight_packed_load(g_iq, &vr, ec, &id, &nd, &why), 0);
	CHECK_EQ(id, 3);
	CHECK_EQ(nd, 1);
	/* Nothing new in the ring: the device resumes after C. */
	CHECK_EQ(sb_vq_pop(&vr, &id, &nd, &why), 0);
	/* A new buffer and the resubmitted ones complete; the region follows. */
	_put(4, 2);
	(void)_fetch(&vr, 4, next);
	sb_inflight_packed_push_used(g_iq, &vr, ec, 3, 1, 1);
	sb_inflight_packed_push_used(g_iq, &vr, ea, 1, 3, 1);
	CHECK_EQ(g_iq->used_idx, 6);
	CHECK_EQ(_d()[2].id, 3);
	CHECK_EQ(_d()[3].id, 1);
	_teardown();
}

/* A crash inside a completion: after the used descriptor, or before it. */
static void
test_crash_in_completion(void)
{
	struct sb_inflight_queue_packed *snap = malloc(sb_inflight_packed_queue_bytes(Q));
	struct sb_vring vr;
	struct vring_packed_desc slot0;
	const char *why = NULL;
	uint16_t ents[Q], n = 0, ea, ec;
	uint64_t next = 0;
	int commit;

	for (commit = 0; commit < 2; commit++) {
		_setup();
		_ring(&vr, 0x80008000u);
		CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), 0);
		_put(1, 3);
		_put(3, 1);
		ea = _fetch(&vr, 1, 1);
		ec = _fetch(&vr, 3, 2);
		memcpy(snap, g_iq, sb_inflight_packed_queue_bytes(Q));
		slot0 = _d()[0];
		sb_inflight_packed_push_used(g_iq, &vr, ea, 1, 3, 1);
		/* The old_* and inflight steps never ran. */
		g_iq->old_used_idx = snap->old_used_idx;
		g_iq->old_free_head = snap->old_free_head;
		g_iq->old_used_wrap_counter = snap->old_used_wrap_counter;
		g_iq->desc[ea].inflight = 1;
		if (!commit) {
			/* ...nor did the used descriptor reach the ring. */
			_d()[0] = slot0;
		}
		_ring(&vr, 0x80008000u);
		CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), 0);
		if (commit) {
			CHECK_EQ(n, 1);
			CHECK_EQ(ents[0], ec);
			CHECK_EQ(vr.last_used_idx, 3);
		} else {
			CHECK_EQ(n, 2);
			CHECK_EQ(ents[0], ea);
			CHECK_EQ(ents[1], ec);
			CHECK_EQ(vr.last_used_idx, 0);
		}
		CHECK_EQ(vr.last_avail_idx, 4);
		_teardown();
	}
	free(snap);
}

static void
test_garbled_region(void)
{
	struct sb_vring vr;
	const char *why = NULL;
	uint16_t ents[Q], n = 0, ea;
	uint64_t next = 0;

	/* Queue size differs. */
	_setup();
	_ring(&vr, 0x80008000u);
	CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), 0);
	g_iq->desc_num = Q / 2;
	CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), -EINVAL);
	g_iq->desc_num = Q;
	/* Indexes outside the ring. */
	g_iq->used_idx = g_iq->old_used_idx = Q;
	CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), -EINVAL);
	g_iq->used_idx = g_iq->old_used_idx = 0;
	/* A free list that loops. */
	g_iq->desc[3].next = 0;
	CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), -EINVAL);
	CHECK(strstr(why, "loops") != NULL);
	_teardown();

	/* An in-flight entry with no descriptors, or links out of the region. */
	_setup();
	_ring(&vr, 0x80008000u);
	CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), 0);
	_put(1, 3);
	ea = _fetch(&vr, 1, 1);
	g_iq->desc[ea].num = 0;
	CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), -EINVAL);
	g_iq->desc[ea].num = 3;
	g_iq->desc[g_iq->desc[ea].next].next = 0x7777;
	CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), -EINVAL);
	CHECK_EQ(sb_inflight_packed_load(g_iq, &vr, ea, &n, &n, &why), -EINVAL);
	_teardown();

	/* More descriptors in flight than the ring holds. */
	_setup();
	_ring(&vr, 0x80008000u);
	CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), 0);
	_put(1, 3);
	ea = _fetch(&vr, 1, 1);
	_put(2, 3);
	(void)_fetch(&vr, 2, 2);
	g_iq->desc[ea].num = Q;
	g_iq->desc[g_iq->desc[g_iq->desc[ea].next].next].next = 5;
	CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), -EINVAL);
	_teardown();

	/* A free list broken under a running queue: fetch refuses. */
	_setup();
	_ring(&vr, 0x80008000u);
	CHECK_EQ(sb_inflight_packed_adopt(g_iq, &vr, ents, &n, &next, &why), 0);
	g_iq->free_head = Q + 3;
	_put(1, 1);
	CHECK_EQ(sb_vq_pop(&vr, &ea, &n, &why), 1);
	CHECK_EQ(sb_inflight_packed_fetch(g_iq, &vr, 1, &ea, &why), -EINVAL);
	_teardown();
}

int
main(int argc, char **argv)
{
	UT_INIT(argc, argv);
	g_img = aligned_alloc(4096, MEM_SIZE);
	RUN_TEST(test_fresh_fetch_complete_restart);
	RUN_TEST(test_crash_in_completion);
	RUN_TEST(test_garbled_region);
	free(g_img);
	return UT_SUMMARY();
}
