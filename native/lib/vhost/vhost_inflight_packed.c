/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inflight I/O tracking for packed rings (vhost-user.rst "Inflight I/O
 * tracking", the packed queue region).  A packed ring keeps no used index
 * in guest memory and its descriptors are overwritten by used ones, so a
 * restarted process cannot learn from the ring where it was or what a
 * request in flight looked like: the region keeps both.  Every fetched
 * descriptor is copied into an entry from a free list; a completion
 * returns the entries and moves the used index, and the old_* fields
 * hold the state before the update in progress, so that a restart either
 * commits it (the used descriptor reached the ring) or rolls it back.
 *
 * The region is shared with the front-end, which keeps it across our
 * restarts: every index read from it is checked before use.
 */
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#define INFLIGHT_ALIGN 64
#define INFLIGHT_VERSION 1

_Static_assert(sizeof(struct sb_inflight_desc_packed) == 32, "vhost-user.rst DescStatePacked");
_Static_assert(offsetof(struct sb_inflight_queue_packed, desc) == 32,
	       "vhost-user.rst QueueRegionPacked");

uint64_t
sb_inflight_packed_queue_bytes(uint16_t queue_size)
{
	uint64_t n = sizeof(struct sb_inflight_queue_packed) +
		     (uint64_t)queue_size * sizeof(struct sb_inflight_desc_packed);

	return (n + INFLIGHT_ALIGN - 1) & ~(uint64_t)(INFLIGHT_ALIGN - 1);
}

struct sb_inflight_queue_packed *
sb_inflight_packed_queue_get(void *base, uint64_t size, uint16_t queue_size, uint16_t q)
{
	uint64_t qb = sb_inflight_packed_queue_bytes(queue_size);

	if (base == NULL || (uint64_t)(q + 1) * qb > size) {
		return NULL;
	}
	return (struct sb_inflight_queue_packed *)((uint8_t *)base + (uint64_t)q * qb);
}

struct _sort_ent {
	uint64_t counter;
	uint16_t entry;
};

static int
_cmp_counter(const void *a, const void *b)
{
	const struct _sort_ent *x = a, *y = b;

	return x->counter < y->counter ? -1 : x->counter > y->counter ? 1 : 0;
}

static void
_init_fresh(struct sb_inflight_queue_packed *iq, const struct sb_vring *vr)
{
	uint16_t i;

	for (i = 0; i < vr->size; i++) {
		iq->desc[i] = (struct sb_inflight_desc_packed){ .next = (uint16_t)(i + 1) };
	}
	iq->features = 0;
	iq->desc_num = vr->size;
	iq->free_head = iq->old_free_head = 0;
	iq->used_idx = iq->old_used_idx = vr->last_used_idx;
	iq->used_wrap_counter = iq->old_used_wrap_counter = vr->used_wrap;
	/* Version last: until then the region reads as fresh. */
	__atomic_store_n(&iq->version, INFLIGHT_VERSION, __ATOMIC_RELEASE);
}

/* Step idx (with its wrap counter) n slots forward on a ring of size entries. */
static void
_advance(uint16_t *idx, bool *wrap, uint32_t n, uint16_t size)
{
	uint32_t i = *idx + n;

	while (i >= size) {
		i -= size;
		*wrap = !*wrap;
	}
	*idx = (uint16_t)i;
}

int
sb_inflight_packed_adopt(struct sb_inflight_queue_packed *iq, struct sb_vring *vr,
			 uint16_t *entries, uint16_t *count, uint64_t *next_counter,
			 const char **why)
{
	const uint16_t avail_bits = VRING_PACKED_DESC_F_AVAIL | VRING_PACKED_DESC_F_USED;
	struct _sort_ent *ents;
	uint64_t max_counter = 0;
	uint32_t slots = 0, steps;
	uint16_t i, j, e, n = 0, flags, want;
	bool wrap;

	*count = 0;
	*next_counter = 1;
	if (__atomic_load_n(&iq->version, __ATOMIC_ACQUIRE) == 0) {
		_init_fresh(iq, vr);
		return 0;
	}
	if (iq->desc_num != vr->size) {
		*why = "inflight region queue size does not match the ring";
		return -EINVAL;
	}
	if (iq->used_idx >= vr->size || iq->old_used_idx >= vr->size ||
	    iq->free_head > vr->size || iq->old_free_head > vr->size) {
		*why = "inflight region index outside the ring";
		return -EINVAL;
	}
	if (iq->used_idx != iq->old_used_idx) {
		/*
		 * We died inside a completion.  Still the driver's flags at the
		 * old used index: the used descriptor never reached the ring,
		 * roll back; otherwise the driver may have seen it, commit.
		 */
		flags = __atomic_load_n(&vr->pdesc[iq->old_used_idx].flags, __ATOMIC_ACQUIRE);
		want = iq->old_used_wrap_counter ? VRING_PACKED_DESC_F_AVAIL :
						   VRING_PACKED_DESC_F_USED;
		if ((flags & avail_bits) != want) {
			iq->old_free_head = iq->free_head;
			iq->old_used_idx = iq->used_idx;
			iq->old_used_wrap_counter = iq->used_wrap_counter;
		}
	}
	iq->free_head = iq->old_free_head;
	iq->used_idx = iq->old_used_idx;
	iq->used_wrap_counter = iq->old_used_wrap_counter != 0;
	/* Entries on the free list are not in flight, whatever they say. */
	for (e = iq->free_head, steps = 0; e < vr->size; e = iq->desc[e].next) {
		if (++steps > vr->size) {
			*why = "inflight region free list loops";
			return -EINVAL;
		}
		iq->desc[e].inflight = 0;
	}
	ents = calloc(vr->size, sizeof(*ents));
	if (ents == NULL) {
		return -ENOMEM;
	}
	for (i = 0; i < vr->size; i++) {
		if (iq->desc[i].counter > max_counter) {
			max_counter = iq->desc[i].counter;
		}
		if (iq->desc[i].inflight != 1) {
			iq->desc[i].inflight = 0;
			continue;
		}
		/* The buffer's entries: num of them linked from its head entry. */
		if (iq->desc[i].num == 0 || iq->desc[i].num > vr->size) {
			free(ents);
			*why = "inflight region entry with a bad descriptor count";
			return -EINVAL;
		}
		for (j = 1, e = i; j < iq->desc[i].num; j++) {
			e = iq->desc[e].next;
			if (e >= vr->size) {
				free(ents);
				*why = "inflight region entry links outside the region";
				return -EINVAL;
			}
		}
		slots += iq->desc[i].num;
		ents[n].counter = iq->desc[i].counter;
		ents[n].entry = i;
		n++;
	}
	if (slots > vr->size) {
		free(ents);
		*why = "inflight region holds more descriptors than the ring";
		return -EINVAL;
	}
	qsort(ents, n, sizeof(*ents), _cmp_counter);
	for (i = 0; i < n; i++) {
		entries[i] = ents[i].entry;
	}
	free(ents);
	*count = n;
	*next_counter = max_counter + 1;
	/*
	 * The front-end's base is stale after a crash (it has no used index to
	 * read back): the region's is ours.  Slots fetched = slots returned +
	 * slots of the buffers still in flight.
	 */
	vr->last_used_idx = iq->used_idx;
	vr->used_wrap = iq->used_wrap_counter;
	vr->last_avail_idx = iq->used_idx;
	wrap = vr->used_wrap;
	_advance(&vr->last_avail_idx, &wrap, slots, vr->size);
	vr->avail_wrap = wrap;
	vr->signalled_used_valid = false;
	return 0;
}

int
sb_inflight_packed_fetch(struct sb_inflight_queue_packed *iq, const struct sb_vring *vr,
			 uint64_t counter, uint16_t *entry, const char **why)
{
	const struct vring_packed_desc *d;
	uint16_t head = iq->free_head, e = head, last = head, i;

	for (i = 0; i < vr->scratch_n; i++) {
		if (e >= vr->size) {
			*why = "inflight region free list broken";
			return -EINVAL;
		}
		d = &vr->scratch[i];
		iq->desc[e].addr = d->addr;
		iq->desc[e].len = d->len;
		iq->desc[e].flags = d->flags;
		iq->desc[e].id = d->id;
		last = e;
		e = iq->desc[e].next;
	}
	iq->free_head = e;
	iq->desc[head].num = vr->scratch_n;
	iq->desc[head].last = last;
	iq->desc[head].counter = counter;
	/* Everything above before the entry counts as in flight. */
	__atomic_store_n(&iq->desc[head].inflight, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&iq->old_free_head, e, __ATOMIC_RELEASE);
	*entry = head;
	return 0;
}

int
sb_inflight_packed_load(const struct sb_inflight_queue_packed *iq, struct sb_vring *vr,
			uint16_t entry, uint16_t *id, uint16_t *ndesc, const char **why)
{
	uint16_t e = entry, i, n = iq->desc[entry].num;

	/* The front-end holds the region too: checked again, as at adopt(). */
	if (n == 0 || n > vr->size) {
		*why = "inflight region entry with a bad descriptor count";
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		if (e >= vr->size) {
			*why = "inflight region entry links outside the region";
			return -EINVAL;
		}
		vr->scratch[i] = (struct vring_packed_desc){ .addr = iq->desc[e].addr,
							     .len = iq->desc[e].len,
							     .id = iq->desc[e].id,
							     .flags = iq->desc[e].flags };
		e = iq->desc[e].next;
	}
	*id = vr->scratch[n - 1].id;
	if (*id >= vr->size) {
		*why = "buffer id out of range (inflight region)";
		return -EINVAL;
	}
	vr->scratch_n = n;
	*ndesc = n;
	return 0;
}

void
sb_inflight_packed_push_used(struct sb_inflight_queue_packed *iq, struct sb_vring *vr,
			     uint16_t entry, uint16_t id, uint16_t ndesc, uint32_t len)
{
	uint16_t used = vr->last_used_idx, last = iq->desc[entry].last;
	bool wrap = vr->used_wrap;

	/* The new state: entries back on the free list, used index moved... */
	if (last < vr->size) {
		iq->desc[last].next = iq->free_head;
	}
	__atomic_store_n(&iq->free_head, entry, __ATOMIC_RELEASE);
	_advance(&used, &wrap, ndesc, vr->size);
	iq->used_idx = used;
	__atomic_store_n(&iq->used_wrap_counter, wrap, __ATOMIC_RELEASE);
	/* ...the used descriptor in the ring... */
	sb_vring_packed_push_used(vr, id, ndesc, len);
	/* ...then retired: a crash before this line is repaired by adopt(). */
	__atomic_store_n(&iq->desc[entry].inflight, 0, __ATOMIC_RELEASE);
	iq->old_free_head = iq->free_head;
	iq->old_used_idx = iq->used_idx;
	__atomic_store_n(&iq->old_used_wrap_counter, iq->used_wrap_counter, __ATOMIC_RELEASE);
}
