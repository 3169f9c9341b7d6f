/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Split virtqueue walker (virtio 1.2 §2.7).  The guest writes every byte
 * this file reads: each index and descriptor is checked before use and a
 * violation is reported as -EINVAL with a reason, never acted upon.
 */
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <string.h>

#define _LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

int
sb_vring_map(struct sb_vring *vr, const struct sb_vhost_mem *mem, uint64_t desc_uva,
	     uint64_t avail_uva, uint64_t used_uva, const char **why)
{
	uint32_t n = vr->size;

	/* virtio 1.2 §2.7: alignment 16 / 2 / 4 for desc / avail / used. */
	if ((desc_uva & 15) || (avail_uva & 1) || (used_uva & 3)) {
		*why = "misaligned ring address";
		return -EFAULT;
	}
	vr->desc = sb_vhost_uva_to_va(mem, desc_uva, sb_vring_desc_bytes(n));
	vr->avail = sb_vhost_uva_to_va(mem, avail_uva, sb_vring_avail_bytes(n));
	vr->used = sb_vhost_uva_to_va(mem, used_uva, sb_vring_used_bytes(n));
	if (vr->desc == NULL || vr->avail == NULL || vr->used == NULL) {
		*why = "ring address outside guest memory";
		return -EFAULT;
	}
	return 0;
}

int
sb_vring_avail_count(struct sb_vring *vr, const char **why)
{
	/* Acquire: descriptor and ring entries written before idx are visible. */
	uint16_t idx = __atomic_load_n(&vr->avail->idx, __ATOMIC_ACQUIRE);
	uint16_t n = (uint16_t)(idx - vr->last_avail_idx);

	if (n > vr->size) {
		*why = "avail index moved by more than the queue size";
		return -EINVAL;
	}
	return n;
}

int
sb_vring_pop(struct sb_vring *vr, uint16_t *head, const char **why)
{
	uint16_t h = _LOAD(&vr->avail->ring[vr->last_avail_idx % vr->size]);

	if (h >= vr->size) {
		*why = "avail ring head out of range";
		return -EINVAL;
	}
	vr->last_avail_idx++;
	*head = h;
	return 0;
}

/* Copy a descriptor out of guest memory once, so checks and use agree. */
static inline void
_read_desc(const struct vring_desc *src, struct vring_desc *d)
{
	d->addr = _LOAD(&src->addr);
	d->len = _LOAD(&src->len);
	d->flags = _LOAD(&src->flags);
	d->next = _LOAD(&src->next);
}

int
sb_vring_add_buffer(const struct sb_vhost_mem *mem, uint64_t addr, uint32_t len, bool writable,
		    struct sb_vring_chain *chain, bool *seen_writable, const char **why)
{
	int rc;

	/* §2.7.4.2, §2.8.4: device-writable descriptors come after readable ones. */
	if (writable) {
		*seen_writable = true;
	} else if (*seen_writable) {
		*why = "readable descriptor after a writable one";
		return -EINVAL;
	}
	if (writable) {
		chain->writable_bytes += len;
	} else {
		chain->readable_bytes += len;
	}
	if (chain->readable_bytes + chain->writable_bytes >= (1ull << 32)) {
		*why = "chain carries 4 GiB or more";
		return -EINVAL;
	}
	if (len == 0) {
		return 0;
	}
	rc = sb_vhost_gpa_to_iov_gpa(mem, addr, len, chain->iov, chain->gpa, &chain->n_iov,
				     chain->max_iov);
	if (rc == -EFAULT) {
		*why = "descriptor buffer outside guest memory";
		return -EINVAL;
	}
	if (rc != 0) {
		*why = "too many segments";
		return rc;
	}
	if (!writable) {
		chain->n_readable = chain->n_iov;
	}
	return 0;
}

static inline int
_add_buffer(const struct sb_vhost_mem *mem, const struct vring_desc *d,
	    struct sb_vring_chain *chain, bool *seen_writable, const char **why)
{
	return sb_vring_add_buffer(mem, d->addr, d->len, (d->flags & VRING_DESC_F_WRITE) != 0,
				   chain, seen_writable, why);
}

static int
_walk_indirect(const struct sb_vring *vr, const struct sb_vhost_mem *mem,
	       const struct vring_desc *ind, struct sb_vring_chain *chain, bool *seen_writable,
	       const char **why)
{
	const struct vring_desc *table;
	struct vring_desc d;
	uint64_t bytes = ind->len;
	uint32_t n, i, count = 0;
	int rc;

	/* §2.7.5.3.1 */
	if (!vr->indirect) {
		*why = "indirect descriptor without VIRTIO_F_INDIRECT_DESC";
		return -EINVAL;
	}
	if (ind->flags & VRING_DESC_F_NEXT) {
		*why = "indirect descriptor with NEXT set";
		return -EINVAL;
	}
	if (ind->len == 0 || ind->len % sizeof(struct vring_desc) != 0) {
		*why = "indirect table length not a multiple of 16";
		return -EINVAL;
	}
	n = ind->len / sizeof(struct vring_desc);
	/*
	 * §2.7.5.3.1 bounds a chain by the queue size, but Linux sizes
	 * indirect tables by segment count (seg_max + 2) even on smaller
	 * queues; accept up to the larger of the two.
	 */
	if (n > vr->size && n > SB_VHOST_BLK_SEG_MAX + 2) {
		*why = "indirect table longer than the queue";
		return -EINVAL;
	}
	if (ind->addr & 0xf) {
		/* Guests allocate these aligned; refusing keeps loads atomic. */
		*why = "misaligned indirect table";
		return -EINVAL;
	}
	table = sb_vhost_gpa_to_va(mem, ind->addr, &bytes);
	if (table == NULL || bytes != ind->len) {
		*why = "indirect table outside one guest memory region";
		return -EINVAL;
	}
	i = 0;
	for (;;) {
		if (++count > n) {
			*why = "loop in indirect descriptor chain";
			return -EINVAL;
		}
		_read_desc(&table[i], &d);
		if (d.flags & VRING_DESC_F_INDIRECT) {
			*why = "indirect descriptor inside an indirect table";
			return -EINVAL;
		}
		rc = _add_buffer(mem, &d, chain, seen_writable, why);
		if (rc != 0) {
			return rc;
		}
		if (!(d.flags & VRING_DESC_F_NEXT)) {
			return 0;
		}
		if (d.next >= n) {
			*why = "indirect next index out of range";
			return -EINVAL;
		}
		i = d.next;
	}
}

int
sb_vring_walk(const struct sb_vring *vr, const struct sb_vhost_mem *mem, uint16_t head,
	      struct sb_vring_chain *chain, const char **why)
{
	struct vring_desc d;
	bool seen_writable = false;
	uint32_t count = 0;
	uint16_t i = head;
	int rc;

	chain->n_iov = 0;
	chain->n_readable = 0;
	chain->readable_bytes = 0;
	chain->writable_bytes = 0;
	if (head >= vr->size) {
		*why = "head index out of range";
		return -EINVAL;
	}
	for (;;) {
		/* §2.7.5.3.1: a chain is never longer than the queue; longer means a loop. */
		if (++count > vr->size) {
			*why = "descriptor chain longer than the queue (loop)";
			return -EINVAL;
		}
		_read_desc(&vr->desc[i], &d);
		if (d.flags & VRING_DESC_F_INDIRECT) {
			/* An indirect descriptor is the only one of its chain. */
			if (count != 1) {
				*why = "indirect descriptor inside a chain";
				return -EINVAL;
			}
			return _walk_indirect(vr, mem, &d, chain, &seen_writable, why);
		}
		rc = _add_buffer(mem, &d, chain, &seen_writable, why);
		if (rc != 0) {
			return rc;
		}
		if (!(d.flags & VRING_DESC_F_NEXT)) {
			return 0;
		}
		if (d.next >= vr->size) {
			*why = "next index out of range";
			return -EINVAL;
		}
		i = d.next;
	}
}

void
sb_vring_put_used(struct sb_vring *vr, uint16_t head, uint32_t len)
{
	struct vring_used_elem *e = &vr->used->ring[vr->last_used_idx % vr->size];

	/* Invisible to the driver until sb_vring_flush_used moves used->idx past it. */
	__atomic_store_n(&e->id, head, __ATOMIC_RELAXED);
	__atomic_store_n(&e->len, len, __ATOMIC_RELAXED);
	vr->last_used_idx++;
	vr->used_pending++;
}

bool
sb_vring_flush_used(struct sb_vring *vr)
{
	if (vr->used_pending == 0) {
		return false;
	}
	vr->used_pending = 0;
	/* Release: the elements (and data written to the buffers) before the index. */
	__atomic_store_n(&vr->used->idx, vr->last_used_idx, __ATOMIC_RELEASE);
	return true;
}

void
sb_vring_push_used(struct sb_vring *vr, uint16_t head, uint32_t len)
{
	sb_vring_put_used(vr, head, len);
	sb_vring_flush_used(vr);
}

void
sb_vring_set_avail_event(struct sb_vring *vr)
{
	uint16_t *avail_event = (uint16_t *)&vr->used->ring[vr->size];

	if (vr->event_idx) {
		__atomic_store_n(avail_event, vr->last_avail_idx, __ATOMIC_RELAXED);
		/* Order the avail_event store before the next avail->idx load (§2.7.10). */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
}

void
sb_vring_notify_off(struct sb_vring *vr)
{
	if (!vr->event_idx) {
		__atomic_store_n(&vr->used->flags, VRING_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
	}
}

bool
sb_vring_notify_on(struct sb_vring *vr)
{
	if (vr->event_idx) {
		__atomic_store_n((uint16_t *)&vr->used->ring[vr->size], vr->last_avail_idx,
				 __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(&vr->used->flags, 0, __ATOMIC_RELAXED);
	}
	/* The flag store before the index load, or a kick can be lost. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(&vr->avail->idx, __ATOMIC_ACQUIRE) != vr->last_avail_idx;
}

static inline bool
_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old)
{
	/* virtio 1.2 §2.7.10.2: notify if event_idx is in [old, new). */
	return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old);
}

bool
sb_vring_need_call(struct sb_vring *vr)
{
	uint16_t old, new_idx, used_event;
	bool valid;

	/* The used idx store must be visible before we read the driver's flags. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vr->event_idx) {
		return !(_LOAD(&vr->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
	}
	new_idx = vr->last_used_idx;
	old = vr->signalled_used;
	valid = vr->signalled_used_valid;
	vr->signalled_used = new_idx;
	vr->signalled_used_valid = true;
	if (!valid) {
		return true;
	}
	used_event = _LOAD(&vr->avail->ring[vr->size]);
	return _need_event(used_event, new_idx, old);
}
