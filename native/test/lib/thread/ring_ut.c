/* SPDX-License-Identifier: Apache-2.0 */
/* Message ring: sizes, full/empty, wraparound, and a multi-producer stress run. */
#include "thread/ring.h"
#include "ut.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>

#define PRODUCERS 4
#define PER_PRODUCER 1000000ULL

static void
_dummy(void *ctx)
{
	(void)ctx;
}

static void
test_create_sizes(void)
{
	struct sb_ring *ring;

	CHECK(sb_ring_create(0) == NULL);
	CHECK(sb_ring_create(1) == NULL);
	CHECK(sb_ring_create(3) == NULL);
	CHECK(sb_ring_create(1000) == NULL);
	ring = sb_ring_create(2);
	CHECK(ring != NULL);
	CHECK_EQ(sb_ring_size(ring), 2);
	sb_ring_free(ring);
	ring = sb_ring_create(4096);
	CHECK(ring != NULL);
	CHECK(sb_ring_empty(ring));
	sb_ring_free(ring);
	sb_ring_free(NULL);
}

static void
test_full_and_order(void)
{
	struct sb_ring *ring = sb_ring_create(16);
	sb_msg_fn fn;
	void *ctx;
	uintptr_t i;
	bool ordered = true;

	for (i = 0; i < 16; i++) {
		CHECK_EQ(sb_ring_enqueue(ring, _dummy, (void *)(i + 1)), 0);
	}
	CHECK_EQ(sb_ring_enqueue(ring, _dummy, (void *)99), -EAGAIN);
	CHECK(!sb_ring_empty(ring));
	for (i = 0; i < 16; i++) {
		if (!sb_ring_dequeue(ring, &fn, &ctx) || fn != _dummy || ctx != (void *)(i + 1)) {
			ordered = false;
		}
	}
	CHECK(ordered);
	CHECK(!sb_ring_dequeue(ring, &fn, &ctx));
	CHECK(sb_ring_empty(ring));
	/* One slot freed is one slot usable again. */
	CHECK_EQ(sb_ring_enqueue(ring, _dummy, (void *)7), 0);
	CHECK(sb_ring_dequeue(ring, &fn, &ctx) && ctx == (void *)7);
	sb_ring_free(ring);
}

static void
test_wraparound(void)
{
	struct sb_ring *ring = sb_ring_create(8);
	uintptr_t next_in = 0, next_out = 0;
	sb_msg_fn fn;
	void *ctx;
	int round, k;
	bool ok = true;

	/* 5 in / 5 out against 8 slots: positions cross the ring edge at every offset. */
	for (round = 0; round < 10000; round++) {
		for (k = 0; k < 5; k++) {
			if (sb_ring_enqueue(ring, _dummy, (void *)next_in++) != 0) {
				ok = false;
			}
		}
		for (k = 0; k < 5; k++) {
			if (!sb_ring_dequeue(ring, &fn, &ctx) || ctx != (void *)next_out++) {
				ok = false;
			}
		}
	}
	CHECK(ok);
	CHECK(sb_ring_empty(ring));
	/* Fill exactly to capacity after many laps. */
	for (k = 0; k < 8; k++) {
		CHECK_EQ(sb_ring_enqueue(ring, _dummy, NULL), 0);
	}
	CHECK_EQ(sb_ring_enqueue(ring, _dummy, NULL), -EAGAIN);
	sb_ring_free(ring);
}

struct producer {
	struct sb_ring *ring;
	uint64_t id;
	uint64_t full_hits;
};

static void *
_produce(void *arg)
{
	struct producer *p = arg;
	uint64_t seq;

	for (seq = 0; seq < PER_PRODUCER; seq++) {
		/* ctx = producer id in the top byte, sequence below. */
		void *ctx = (void *)(uintptr_t)((p->id << 56) | seq);

		while (sb_ring_enqueue(p->ring, _dummy, ctx) == -EAGAIN) {
			p->full_hits++;
			sched_yield();
		}
	}
	return NULL;
}

static void
test_mpsc_stress(void)
{
	struct producer prod[PRODUCERS];
	pthread_t th[PRODUCERS];
	uint64_t expect[PRODUCERS] = { 0 };
	uint64_t total = 0, bad_order = 0, bad_id = 0, full_hits = 0;
	struct sb_ring *ring = sb_ring_create(1024);
	sb_msg_fn fn;
	void *ctx;
	int i;

	for (i = 0; i < PRODUCERS; i++) {
		prod[i] = (struct producer){ .ring = ring, .id = (uint64_t)i };
		pthread_create(&th[i], NULL, _produce, &prod[i]);
	}
	while (total < PRODUCERS * PER_PRODUCER) {
		if (!sb_ring_dequeue(ring, &fn, &ctx)) {
			sched_yield();
			continue;
		}
		uint64_t v = (uint64_t)(uintptr_t)ctx;
		uint64_t id = v >> 56, seq = v & ((1ULL << 56) - 1);

		if (id >= PRODUCERS || fn != _dummy) {
			bad_id++;
			break;
		}
		/* Per-producer FIFO: no loss (gap), no duplicate (repeat), no reorder. */
		if (seq != expect[id]) {
			bad_order++;
		}
		expect[id] = seq + 1;
		total++;
	}
	for (i = 0; i < PRODUCERS; i++) {
		pthread_join(th[i], NULL);
		full_hits += prod[i].full_hits;
		CHECK_EQ(expect[i], PER_PRODUCER);
	}
	CHECK_EQ(bad_id, 0);
	CHECK_EQ(bad_order, 0);
	CHECK_EQ(total, PRODUCERS * PER_PRODUCER);
	CHECK(!sb_ring_dequeue(ring, &fn, &ctx));
	printf("  stress: %llu messages, ring full %llu times\n", (unsigned long long)total,
	       (unsigned long long)full_hits);
	sb_ring_free(ring);
}

int
main(int argc, char **argv)
{
	UT_INIT(argc, argv);
	RUN_TEST(test_create_sizes);
	RUN_TEST(test_full_and_order);
	RUN_TEST(test_wraparound);
	RUN_TEST(test_mpsc_stress);
	return UT_SUMMARY();
}
