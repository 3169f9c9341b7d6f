/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bounded MPSC message ring (Dmitry Vyukov's bounded queue with per-slot
 * sequence numbers, specialised to a single consumer).
 *
 * Slot i of lap L is free for the producer that claimed position p = L*size+i
 * when slot.seq == p, and holds a published message for the consumer when
 * slot.seq == p + 1.  The consumer hands the slot to the next lap by storing
 * p + size.  Messages of one producer keep their order because that
 * producer's claimed positions grow and the consumer reads positions in order.
 */
#include "ring.h"

#include <errno.h>
#include <stdlib.h>

struct sb_ring *
sb_ring_create(uint32_t size)
{
	struct sb_ring *ring;
	uint32_t i;

	if (size < 2 || (size & (size - 1)) != 0) {
		return NULL;
	}
	ring = aligned_alloc(SB_CACHE_LINE, sizeof(*ring));
	if (ring == NULL) {
		return NULL;
	}
	ring->slots = calloc(size, sizeof(*ring->slots));
	if (ring->slots == NULL) {
		free(ring);
		return NULL;
	}
	for (i = 0; i < size; i++) {
		atomic_init(&ring->slots[i].seq, i);
	}
	atomic_init(&ring->tail, 0);
	ring->head = 0;
	ring->mask = size - 1;
	return ring;
}

void
sb_ring_free(struct sb_ring *ring)
{
	if (ring == NULL) {
		return;
	}
	free(ring->slots);
	free(ring);
}

int
sb_ring_enqueue(struct sb_ring *ring, sb_msg_fn fn, void *ctx)
{
	struct sb_ring_slot *slot;
	uint64_t pos, seq;
	int64_t dif;

	pos = atomic_load_explicit(&ring->tail, memory_order_relaxed);
	for (;;) {
		slot = &ring->slots[pos & ring->mask];
		seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
		dif = (int64_t)(seq - pos);
		if (dif == 0) {
			/* The slot is free for this lap: try to claim the position. */
			if (atomic_compare_exchange_weak_explicit(&ring->tail, &pos, pos + 1,
								  memory_order_relaxed,
								  memory_order_relaxed)) {
				break;
			}
			/* pos was reloaded by the failed CAS. */
		} else if (dif < 0) {
			/* The consumer has not freed this slot of the previous lap. */
			return -EAGAIN;
		} else {
			/* Another producer claimed pos first. */
			pos = atomic_load_explicit(&ring->tail, memory_order_relaxed);
		}
	}
	slot->fn = fn;
	slot->ctx = ctx;
	/*
	 * Publish.  seq_cst rather than release: the sender's next step is to
	 * read the consumer's "sleeping" flag, and this store must not pass that
	 * load (see _enqueue_and_wake in reactor.c).
	 */
	atomic_store_explicit(&slot->seq, pos + 1, memory_order_seq_cst);
	return 0;
}

bool
sb_ring_dequeue(struct sb_ring *ring, sb_msg_fn *fn, void **ctx)
{
	struct sb_ring_slot *slot;
	uint64_t pos = ring->head;

	slot = &ring->slots[pos & ring->mask];
	if (atomic_load_explicit(&slot->seq, memory_order_acquire) != pos + 1) {
		/* Empty, or the producer of pos has claimed but not yet published. */
		return false;
	}
	*fn = slot->fn;
	*ctx = slot->ctx;
	/* Release: our reads of fn/ctx finish before a producer may overwrite them. */
	atomic_store_explicit(&slot->seq, pos + ring->mask + 1, memory_order_release);
	ring->head = pos + 1;
	return true;
}

bool
sb_ring_empty(struct sb_ring *ring)
{
	struct sb_ring_slot *slot = &ring->slots[ring->head & ring->mask];

	/* seq_cst: pairs with the publish store for the sleep/wake handshake. */
	return atomic_load_explicit(&slot->seq, memory_order_seq_cst) != ring->head + 1;
}

uint32_t
sb_ring_size(const struct sb_ring *ring)
{
	return (uint32_t)(ring->mask + 1);
}
