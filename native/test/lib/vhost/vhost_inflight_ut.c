/* SPDX-License-Identifier: Apache-2.0 */
/* Inflight region layout and the fetch / complete / recover round trip. */
#include "ut.h"
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define Q 16

static struct vring_used *g_used;
static struct vring_avail *g_avail;

static void
_vring(struct sb_vring *vr)
{
	memset(vr, 0, sizeof(*vr));
	vr->size = Q;
	vr->used = g_used;
	vr->avail = g_avail;
}

static void
test_layout(void)
{
	/* vhost-user.rst: 16-byte header + 16 bytes per descriptor, 64-byte aligned. */
	CHECK_EQ(sizeof(struct sb_inflight_desc), 16);
	CHECK_EQ(offsetof(struct sb_inflight_queue, desc), 16);
	CHECK_EQ(offsetof(struct sb_inflight_queue, used_idx), 14);
	CHECK_EQ(sb_inflight_queue_bytes(128), 16 + 128 * 16 + 48);
	CHECK_EQ(sb_inflight_queue_bytes(1) % 64, 0);
	CHECK_EQ(sb_inflight_queue_bytes(1024) % 64, 0);
}

static void
test_create_and_regions(void)
{
	uint64_t size = 0;
	void *base;
	int fd = sb_inflight_create(2, Q, &size);

	CHECK(fd >= 0);
	/* Room for two queues of either layout (packed entries are the larger). */
	CHECK_EQ(size, 2 * sb_inflight_packed_queue_bytes(Q));
	CHECK(sb_inflight_packed_queue_bytes(Q) >= sb_inflight_queue_bytes(Q));
	CHECK_EQ(lseek(fd, 0, SEEK_END), (off_t)size);
	base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(base != MAP_FAILED);
	CHECK(sb_inflight_queue_get(base, size, Q, 0) == base);
	CHECK((uint8_t *)sb_inflight_queue_get(base, size, Q, 1) ==
	      (uint8_t *)base + sb_inflight_queue_bytes(Q));
	CHECK((uint8_t *)sb_inflight_packed_queue_get(base, size, Q, 1) ==
	      (uint8_t *)base + sb_inflight_packed_queue_bytes(Q));
	CHECK(sb_inflight_packed_queue_get(base, size, Q, 2) == NULL);
	CHECK(sb_inflight_queue_get(base, size, 4 * Q, 1) == NULL);
	munmap(base, size);
	close(fd);
	CHECK_EQ(sb_inflight_create(0, Q, &size), -EINVAL);
	CHECK_EQ(sb_inflight_create(1, 2048, &size), -EINVAL);
}

static void
test_round_trip(void)
{
	uint64_t bytes = sb_inflight_queue_bytes(Q), next;
	struct sb_inflight_queue *iq = calloc(1, bytes);
	uint16_t heads[Q], n;
	const char *why = NULL;
	struct sb_vring vr;

	/* A fresh region adopts the ring's used idx (the post-migration trap). */
	g_used->idx = 40;
	_vring(&vr);
	vr.last_avail_idx = 40;
	CHECK_EQ(sb_inflight_adopt(iq, &vr, heads, &n, &next, &why), 0);
	CHECK_EQ(n, 0);
	CHECK_EQ(iq->used_idx, 40);
	CHECK_EQ(iq->desc_num, Q);
	CHECK_EQ(vr.last_used_idx, 40);

	/* Fetch 3 (counter 1), 9 (2), 1 (3); complete 9. */
	sb_inflight_fetch(iq, 3, next++);
	sb_inflight_fetch(iq, 9, next++);
	sb_inflight_fetch(iq, 1, next++);
	vr.last_avail_idx += 3;
	sb_inflight_push_used(iq, &vr, 9, 512);
	CHECK_EQ(g_used->idx, 41);
	CHECK_EQ(iq->used_idx, 41);
	CHECK_EQ(iq->desc[9].inflight, 0);
	CHECK_EQ(iq->last_batch_head, 9);

	/* "Restart": a new process adopts the region and resubmits 3 then 1. */
	_vring(&vr);
	vr.last_avail_idx = 41;   /* what QEMU sends when GET_VRING_BASE failed */
	CHECK_EQ(sb_inflight_adopt(iq, &vr, heads, &n, &next, &why), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(heads[0], 3);
	CHECK_EQ(heads[1], 1);
	CHECK_EQ(vr.last_avail_idx, 43);
	CHECK_EQ(vr.last_used_idx, 41);
	CHECK(next > 3);

	/* Crash between publishing used->idx and retiring the batch. */
	iq->last_batch_head = 3;
	g_used->idx = 42;         /* published */
	/* desc[3].inflight still 1, iq->used_idx still 41 */
	_vring(&vr);
	CHECK_EQ(sb_inflight_adopt(iq, &vr, heads, &n, &next, &why), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(heads[0], 1);
	CHECK_EQ(iq->used_idx, 42);
	CHECK_EQ(iq->desc[3].inflight, 0);
	CHECK_EQ(vr.last_avail_idx, 43);

	/* A region made for another queue size is refused. */
	_vring(&vr);
	vr.size = Q / 2;
	CHECK_EQ(sb_inflight_adopt(iq, &vr, heads, &n, &next, &why), -EINVAL);
	CHECK(why != NULL);
	free(iq);
}

int
main(void)
{
	g_used = calloc(1, 4096);
	g_avail = calloc(1, 4096);
	RUN_TEST(test_layout);
	RUN_TEST(test_create_and_regions);
	RUN_TEST(test_round_trip);
	free(g_used);
	free(g_avail);
	return UT_SUMMARY();
}
