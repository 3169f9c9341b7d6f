/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bounded lock-free message ring: many producers, one consumer.
 *
 * Vyukov's bounded queue: every slot carries a sequence number that tells
 * producers whether the slot is free for the lap they claimed and tells the
 * consumer whether the message in it has been published.  Producers claim a
 * position with one CAS on the tail; nothing is allocated per message.
 */
#ifndef SB_THREAD_RING_H
#define SB_THREAD_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sb/thread.h"

#define SB_CACHE_LINE 64

struct sb_ring_slot {
	_Atomic uint64_t seq;
	sb_msg_fn fn;
	void *ctx;
};

struct sb_ring {
	/* Producers' claim counter, on its own cache line: producers hammer it. */
	_Alignas(SB_CACHE_LINE) _Atomic uint64_t tail;
	/* Consumer-only position. */
	_Alignas(SB_CACHE_LINE) uint64_t head;
	_Alignas(SB_CACHE_LINE) uint64_t mask;
	struct sb_ring_slot *slots;
};

/** Allocate a ring of size entries (a power of two >= 2). \return ring or NULL. */
struct sb_ring *sb_ring_create(uint32_t size);
void sb_ring_free(struct sb_ring *ring);

/** Any thread. \return 0 or -EAGAIN when the ring is full. */
int sb_ring_enqueue(struct sb_ring *ring, sb_msg_fn fn, void *ctx);

/** Consumer only. \return true and the oldest message, or false when none is published. */
bool sb_ring_dequeue(struct sb_ring *ring, sb_msg_fn *fn, void **ctx);

/** Consumer only: true when no published message is waiting. */
bool sb_ring_empty(struct sb_ring *ring);

/** Entries the ring holds. */
uint32_t sb_ring_size(const struct sb_ring *ring);

#endif
