/* SPDX-License-Identifier: Apache-2.0 */
/* Inflight region layout and the fetch / complete / recover round trip. */
#include "ut.h"
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <stdbool.h>
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

/*
 * Crash consistency of batched completion.  Five heads are in flight; a
 * batch completes three of them.  The process is "killed" after each step
 * of the batch in turn (each put, the used->idx store, each inflight flag
 * cleared, the region's used_idx), and a new process adopts the region
 * and the ring as they are.  What the driver saw (used ring entries below
 * used->idx) plus what is resubmitted must be exactly the five heads,
 * none twice, and resubmission in fetch order.
 */
#define N_FETCHED 5
#define N_BATCH 3
/* put x3, publish, retire x3, close */
#define N_STEPS (N_BATCH + 1 + N_BATCH + 1)

static const uint16_t g_fetched[N_FETCHED] = { 3, 9, 1, 12, 7 };
static const uint16_t g_batch[N_BATCH] = { 9, 12, 3 };

/* A region and ring in use: a closed batch behind them, five heads fetched. */
static uint16_t
_scenario(struct sb_inflight_queue *iq, struct sb_vring *vr, uint64_t bytes)
{
	uint16_t heads[Q], n, bn = 0, batch[Q], i;
	uint64_t next;
	const char *why = NULL;

	memset(iq, 0, bytes);
	memset(g_used, 0, 4096);
	/* Near the 16-bit wrap, so that the batch crosses it. */
	g_used->idx = 65533;
	_vring(vr);
	CHECK_EQ(sb_inflight_adopt(iq, vr, heads, &n, &next, &why), 0);
	vr->last_avail_idx = 65533;
	/* An earlier batch of two (heads 5, 6), closed: its list is still in the region. */
	sb_inflight_fetch(iq, 5, next++);
	sb_inflight_fetch(iq, 6, next++);
	vr->last_avail_idx += 2;
	sb_inflight_put_used(iq, vr, batch, &bn, 5, 1);
	sb_inflight_put_used(iq, vr, batch, &bn, 6, 1);
	CHECK(sb_inflight_flush_used(iq, vr, batch, &bn));
	for (i = 0; i < N_FETCHED; i++) {
		sb_inflight_fetch(iq, g_fetched[i], next++);
	}
	vr->last_avail_idx += N_FETCHED;
	return g_used->idx;
}

/* The first `steps` steps of the batch, each through the function the engine uses. */
static void
_batch_steps(struct sb_inflight_queue *iq, struct sb_vring *vr, int steps)
{
	int i, done = 0;

	for (i = 0; i < N_BATCH && done < steps; i++, done++) {
		sb_inflight_batch_put(iq, vr, g_batch[i], 100u * (i + 1));
	}
	if (done++ < steps) {
		CHECK(sb_inflight_batch_publish(vr));
	}
	for (i = 0; i < N_BATCH && done < steps; i++, done++) {
		sb_inflight_batch_retire(iq, g_batch[i]);
	}
	if (done++ < steps) {
		sb_inflight_batch_close(iq, vr);
	}
}

static int
_count(const uint16_t *v, uint16_t n, uint16_t x)
{
	int c = 0;
	uint16_t i;

	for (i = 0; i < n; i++) {
		c += v[i] == x;
	}
	return c;
}

/* Adopt after a crash; check driver-visible + resubmitted = fetched, once each. */
static void
_recover_and_check(struct sb_inflight_queue *iq, uint16_t used0, int steps)
{
	uint16_t heads[Q], seen[Q], n, n2, nseen, i, bn = 0, batch[Q];
	bool published = steps > N_BATCH;
	uint64_t next;
	const char *why = NULL;
	struct sb_vring vr;

	_vring(&vr);
	vr.last_avail_idx = used0;  /* QEMU's base after a failed GET_VRING_BASE */
	CHECK_EQ(sb_inflight_adopt(iq, &vr, heads, &n, &next, &why), 0);
	nseen = (uint16_t)(g_used->idx - used0);
	CHECK_EQ(nseen, published ? N_BATCH : 0);
	for (i = 0; i < nseen; i++) {
		seen[i] = (uint16_t)g_used->ring[(uint16_t)(used0 + i) % Q].id;
		CHECK_EQ(seen[i], g_batch[i]);
	}
	CHECK_EQ(n + nseen, N_FETCHED);
	for (i = 0; i < N_FETCHED; i++) {
		CHECK_EQ(_count(seen, nseen, g_fetched[i]) + _count(heads, n, g_fetched[i]), 1);
	}
	/* Resubmitted in fetch (counter) order. */
	if (published) {
		CHECK_EQ(n, 2);
		CHECK_EQ(heads[0], 1);
		CHECK_EQ(heads[1], 7);
	} else {
		CHECK_EQ(n, N_FETCHED);
		for (i = 0; i < n && i < N_FETCHED; i++) {
			CHECK_EQ(heads[i], g_fetched[i]);
		}
	}
	CHECK_EQ(iq->used_idx, g_used->idx);
	CHECK_EQ(vr.last_used_idx, g_used->idx);
	CHECK_EQ((uint16_t)(vr.last_avail_idx - vr.last_used_idx), n);
	CHECK(next > N_FETCHED + 2);

	/* A second crash right after the recovery finds the same work. */
	_vring(&vr);
	CHECK_EQ(sb_inflight_adopt(iq, &vr, seen, &n2, &next, &why), 0);
	CHECK_EQ(n2, n);
	CHECK(memcmp(seen, heads, n * sizeof(heads[0])) == 0);

	/* The new process completes what it resubmitted; nothing is left after that. */
	for (i = 0; i < n; i++) {
		sb_inflight_put_used(iq, &vr, batch, &bn, heads[i], 1);
	}
	CHECK_EQ(sb_inflight_flush_used(iq, &vr, batch, &bn), n > 0);
	CHECK_EQ((uint16_t)(g_used->idx - used0), N_FETCHED);
	for (i = 0; i < N_FETCHED; i++) {
		seen[i] = (uint16_t)g_used->ring[(uint16_t)(used0 + i) % Q].id;
	}
	for (i = 0; i < N_FETCHED; i++) {
		CHECK_EQ(_count(seen, N_FETCHED, g_fetched[i]), 1);
	}
	_vring(&vr);
	CHECK_EQ(sb_inflight_adopt(iq, &vr, heads, &n, &next, &why), 0);
	CHECK_EQ(n, 0);
}

static void
test_batch_crash_at_each_step(void)
{
	uint64_t bytes = sb_inflight_queue_bytes(Q);
	struct sb_inflight_queue *iq = calloc(1, bytes), *ref = calloc(1, bytes);
	uint8_t *ref_used = calloc(1, 4096);
	uint16_t used0, batch[Q], bn = 0, i;
	struct sb_vring vr;
	int steps;

	for (steps = 0; steps <= N_STEPS; steps++) {
		used0 = _scenario(iq, &vr, bytes);
		_batch_steps(iq, &vr, steps);
		/* Until used->idx moves, the driver sees nothing of the batch. */
		CHECK_EQ(g_used->idx, steps > N_BATCH ? (uint16_t)(used0 + N_BATCH) : used0);
		_recover_and_check(iq, used0, steps);
	}

	/* All the steps are what put_used + flush_used do, byte for byte. */
	_scenario(iq, &vr, bytes);
	_batch_steps(iq, &vr, N_STEPS);
	memcpy(ref, iq, bytes);
	memcpy(ref_used, g_used, 4096);
	used0 = _scenario(iq, &vr, bytes);
	for (i = 0; i < N_BATCH; i++) {
		sb_inflight_put_used(iq, &vr, batch, &bn, g_batch[i], 100u * (i + 1));
		CHECK_EQ(g_used->idx, used0);
	}
	CHECK_EQ(vr.used_pending, N_BATCH);
	CHECK(sb_inflight_flush_used(iq, &vr, batch, &bn));
	CHECK_EQ(bn, 0);
	CHECK_EQ(vr.used_pending, 0);
	CHECK(!sb_inflight_flush_used(iq, &vr, batch, &bn));
	CHECK(memcmp(ref, iq, bytes) == 0);
	CHECK(memcmp(ref_used, g_used, 4096) == 0);
	free(ref_used);
	free(ref);
	free(iq);
}

/* A batch never holds more than the queue size: the next put closes it first. */
static void
test_batch_bounded(void)
{
	uint64_t bytes = sb_inflight_queue_bytes(Q), next;
	struct sb_inflight_queue *iq = calloc(1, bytes);
	uint16_t heads[Q], batch[Q], bn = 0, n, i;
	const char *why = NULL;
	struct sb_vring vr;

	memset(g_used, 0, 4096);
	_vring(&vr);
	CHECK_EQ(sb_inflight_adopt(iq, &vr, heads, &n, &next, &why), 0);
	for (i = 0; i <= Q; i++) {
		sb_inflight_fetch(iq, i % Q, next++);
		sb_inflight_put_used(iq, &vr, batch, &bn, i % Q, 1);
	}
	CHECK_EQ(g_used->idx, Q);
	CHECK_EQ(bn, 1);
	CHECK(sb_inflight_flush_used(iq, &vr, batch, &bn));
	CHECK_EQ(g_used->idx, Q + 1);
	free(iq);
}

/* The front-end holds the region too: a repair never trusts it blindly. */
static void
test_batch_repair_checks(void)
{
	uint64_t bytes = sb_inflight_queue_bytes(Q), next;
	struct sb_inflight_queue *iq = calloc(1, bytes);
	uint16_t heads[Q], n;
	const char *why;
	struct sb_vring vr;

	memset(g_used, 0, 4096);
	_vring(&vr);
	why = NULL;
	CHECK_EQ(sb_inflight_adopt(iq, &vr, heads, &n, &next, &why), 0);

	/* used->idx more than a queue ahead of the region's. */
	g_used->idx = Q + 1;
	why = NULL;
	CHECK_EQ(sb_inflight_adopt(iq, &vr, heads, &n, &next, &why), -EINVAL);
	CHECK(why != NULL);

	/* last_batch_head out of range. */
	g_used->idx = 2;
	iq->last_batch_head = Q;
	why = NULL;
	CHECK_EQ(sb_inflight_adopt(iq, &vr, heads, &n, &next, &why), -EINVAL);
	CHECK(why != NULL);

	/* A list that loops instead of holding two heads. */
	iq->last_batch_head = 4;
	iq->desc[4].next = 4;
	iq->desc[4].inflight = 1;
	why = NULL;
	CHECK_EQ(sb_inflight_adopt(iq, &vr, heads, &n, &next, &why), -EINVAL);
	CHECK(why != NULL);
	CHECK_EQ(iq->used_idx, 0);

	/* A good list of two: both retired, used_idx caught up. */
	iq->desc[4].next = 11;
	iq->desc[11].inflight = 1;
	iq->desc[11].next = 4;  /* the previous batch's: not followed */
	iq->desc[2].inflight = 1;
	CHECK_EQ(sb_inflight_adopt(iq, &vr, heads, &n, &next, &why), 0);
	CHECK_EQ(iq->desc[4].inflight, 0);
	CHECK_EQ(iq->desc[11].inflight, 0);
	CHECK_EQ(iq->used_idx, 2);
	CHECK_EQ(n, 1);
	CHECK_EQ(heads[0], 2);
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
	RUN_TEST(test_batch_crash_at_each_step);
	RUN_TEST(test_batch_bounded);
	RUN_TEST(test_batch_repair_checks);
	free(g_used);
	free(g_avail);
	return UT_SUMMARY();
}
