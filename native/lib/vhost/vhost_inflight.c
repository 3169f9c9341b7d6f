/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inflight I/O tracking for split rings (vhost-user.rst "Inflight I/O
 * tracking"; packed rings: vhost_inflight_packed.c).  The region lives in
 * a memfd this process creates and the front-end keeps across our
 * restarts, so a new process can resubmit what the old one had fetched
 * but not completed.
 */
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define INFLIGHT_ALIGN 64
#define INFLIGHT_VERSION 1

uint64_t
sb_inflight_queue_bytes(uint16_t queue_size)
{
	uint64_t n = sizeof(struct sb_inflight_queue) + (uint64_t)queue_size *
		     sizeof(struct sb_inflight_desc);

	return (n + INFLIGHT_ALIGN - 1) & ~(uint64_t)(INFLIGHT_ALIGN - 1);
}

int
sb_inflight_create(uint16_t num_queues, uint16_t queue_size, uint64_t *size)
{
	/*
	 * Room for either layout: which one the queues use is decided when
	 * they start, by VIRTIO_F_RING_PACKED, and a front-end may ask for the
	 * region before SET_FEATURES.  Queue q of the split layout stays at q
	 * split strides, as regions of earlier processes have it.
	 */
	uint64_t bytes = sb_inflight_packed_queue_bytes(queue_size) * num_queues;
	int fd;

	if (num_queues == 0 || queue_size == 0 || queue_size > SB_VHOST_MAX_QUEUE_SIZE) {
		return -EINVAL;
	}
	fd = memfd_create("sb-vhost-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		return -errno;
	}
	/* Zero-filled: every queue starts "fresh" (desc_num 0). */
	if (ftruncate(fd, (off_t)bytes) != 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	/* The size must never change under a mapping; seal it. */
	(void)fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
	*size = bytes;
	return fd;
}

struct sb_inflight_queue *
sb_inflight_queue_get(void *base, uint64_t size, uint16_t queue_size, uint16_t q)
{
	uint64_t qb = sb_inflight_queue_bytes(queue_size);

	if (base == NULL || (uint64_t)(q + 1) * qb > size) {
		return NULL;
	}
	return (struct sb_inflight_queue *)((uint8_t *)base + (uint64_t)q * qb);
}

struct _sort_ent {
	uint64_t counter;
	uint16_t head;
};

static int
_cmp_counter(const void *a, const void *b)
{
	const struct _sort_ent *x = a, *y = b;

	return x->counter < y->counter ? -1 : x->counter > y->counter ? 1 : 0;
}

/*
 * vhost-user.rst, split rings, "When reconnecting" step 1: the process
 * before us moved used->idx past its last batch of n heads but died
 * before it set used_idx.  Those heads are the driver's now: walk the
 * batch list from last_batch_head (each entry's next is the head put
 * before it) and take them out of flight.  Some of their flags may be
 * clear already (the crash came while they were being cleared); clearing
 * again changes nothing.  The front-end holds the region too: every index
 * of the walk is checked, and a head seen twice means the list is not
 * one batch.
 */
static int
_repair_last_batch(struct sb_inflight_queue *iq, uint16_t size, uint16_t n, const char **why)
{
	/* size is the ring's (ours): the region's desc_num may change under us. */
	uint16_t i, head = __atomic_load_n(&iq->last_batch_head, __ATOMIC_RELAXED);
	uint8_t *seen;

	if (n > size) {
		*why = "inflight region's used index is more than a queue away from the ring's";
		return -EINVAL;
	}
	seen = calloc(size, 1);
	if (seen == NULL) {
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		if (head >= size || seen[head]) {
			free(seen);
			*why = "inflight region's last batch list is broken";
			return -EINVAL;
		}
		seen[head] = 1;
		iq->desc[head].inflight = 0;
		head = __atomic_load_n(&iq->desc[head].next, __ATOMIC_RELAXED);
	}
	free(seen);
	return 0;
}

int
sb_inflight_adopt(struct sb_inflight_queue *iq, struct sb_vring *vr, uint16_t *heads,
		  uint16_t *count, uint64_t *next_counter, const char **why)
{
	uint16_t used_idx = __atomic_load_n(&vr->used->idx, __ATOMIC_ACQUIRE);
	struct _sort_ent *ents;
	uint64_t max_counter = 0;
	uint16_t i, n = 0;
	int rc;

	*count = 0;
	*next_counter = 1;
	if (iq->desc_num == 0) {
		/*
		 * Fresh region: used_idx may be 0 while the ring already moved
		 * (e.g. after migration), so take it from the ring itself.
		 */
		for (i = 0; i < vr->size; i++) {
			iq->desc[i].inflight = 0;
			iq->desc[i].counter = 0;
		}
		iq->version = INFLIGHT_VERSION;
		iq->last_batch_head = 0;
		iq->used_idx = used_idx;
		/* Last: a crash before it leaves a region that is still fresh. */
		__atomic_store_n(&iq->desc_num, vr->size, __ATOMIC_RELEASE);
		vr->last_used_idx = used_idx;
		return 0;
	}
	if (iq->desc_num != vr->size) {
		*why = "inflight region queue size does not match the ring";
		return -EINVAL;
	}
	if (iq->used_idx != used_idx) {
		/* We died between publishing a batch and closing it. */
		rc = _repair_last_batch(iq, vr->size, (uint16_t)(used_idx - iq->used_idx), why);
		if (rc != 0) {
			return rc;
		}
		/* Only now: a crash during the repair repeats it. */
		__atomic_store_n(&iq->used_idx, used_idx, __ATOMIC_RELEASE);
	}
	ents = calloc(vr->size, sizeof(*ents));
	if (ents == NULL) {
		return -ENOMEM;
	}
	for (i = 0; i < vr->size; i++) {
		if (iq->desc[i].inflight == 1) {
			ents[n].counter = iq->desc[i].counter;
			ents[n].head = i;
			n++;
		} else if (iq->desc[i].inflight != 0) {
			iq->desc[i].inflight = 0;
		}
		if (iq->desc[i].counter > max_counter) {
			max_counter = iq->desc[i].counter;
		}
	}
	qsort(ents, n, sizeof(*ents), _cmp_counter);
	for (i = 0; i < n; i++) {
		heads[i] = ents[i].head;
	}
	free(ents);
	*count = n;
	*next_counter = max_counter + 1;
	/* Heads fetched = heads completed + heads still in flight. */
	vr->last_used_idx = used_idx;
	vr->last_avail_idx = (uint16_t)(used_idx + n);
	return 0;
}

void
sb_inflight_fetch(struct sb_inflight_queue *iq, uint16_t head, uint64_t counter)
{
	iq->desc[head].counter = counter;
	/* The counter must be in place before the entry counts as in flight. */
	__atomic_store_n(&iq->desc[head].inflight, 1, __ATOMIC_RELEASE);
}

/*
 * Completion in batches (vhost-user.rst, split rings, "When supplying used
 * buffers to the driver").  Until used->idx moves, a crash loses nothing:
 * the batch's heads are still in flight in the region and get resubmitted.
 * After it moves and before used_idx follows, adopt() finds the difference
 * and walks the batch list to retire exactly the heads the driver saw.
 */
void
sb_inflight_batch_put(struct sb_inflight_queue *iq, struct sb_vring *vr, uint16_t head,
		      uint32_t len)
{
	/* Steps 1-3: the newest head heads the list, each links to the one before. */
	__atomic_store_n(&iq->desc[head].next, iq->last_batch_head, __ATOMIC_RELAXED);
	__atomic_store_n(&iq->last_batch_head, head, __ATOMIC_RELAXED);
	sb_vring_put_used(vr, head, len);
}

bool
sb_inflight_batch_publish(struct sb_vring *vr)
{
	/* Step 4: one store for the batch; its release orders the list before it. */
	return sb_vring_flush_used(vr);
}

void
sb_inflight_batch_retire(struct sb_inflight_queue *iq, uint16_t head)
{
	/* Step 5, per head: after the index store (release orders it first). */
	__atomic_store_n(&iq->desc[head].inflight, 0, __ATOMIC_RELEASE);
}

void
sb_inflight_batch_close(struct sb_inflight_queue *iq, const struct sb_vring *vr)
{
	/* Step 6: the region agrees with the ring again; nothing to repair. */
	__atomic_store_n(&iq->used_idx, vr->last_used_idx, __ATOMIC_RELEASE);
}

void
sb_inflight_put_used(struct sb_inflight_queue *iq, struct sb_vring *vr, uint16_t *batch,
		     uint16_t *n, uint16_t head, uint32_t len)
{
	if (*n == vr->size) {
		/*
		 * Only a driver that reuses a head before it saw it used gets
		 * here (a batch otherwise holds distinct heads): close the batch
		 * so batch[] and the list stay within the queue size.
		 */
		sb_inflight_flush_used(iq, vr, batch, n);
	}
	sb_inflight_batch_put(iq, vr, head, len);
	batch[(*n)++] = head;
}

bool
sb_inflight_flush_used(struct sb_inflight_queue *iq, struct sb_vring *vr, const uint16_t *batch,
		       uint16_t *n)
{
	uint16_t i;

	if (!sb_inflight_batch_publish(vr)) {
		return false;
	}
	for (i = 0; i < *n; i++) {
		sb_inflight_batch_retire(iq, batch[i]);
	}
	sb_inflight_batch_close(iq, vr);
	*n = 0;
	return true;
}

void
sb_inflight_push_used(struct sb_inflight_queue *iq, struct sb_vring *vr, uint16_t head,
		      uint32_t len)
{
	uint16_t batch[1], n = 0;

	sb_inflight_put_used(iq, vr, batch, &n, head, len);
	sb_inflight_flush_used(iq, vr, batch, &n);
}
