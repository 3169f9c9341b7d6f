/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Packed virtqueue walker (virtio 1.2 §2.8).  One descriptor ring that
 * both sides write: the driver makes a buffer available by flipping the
 * AVAIL/USED bits of its descriptors to its wrap counter, the device
 * returns it by writing one used descriptor (buffer id, written length,
 * AVAIL = USED = its own wrap counter) at its used index and stepping over
 * as many slots as the buffer took.  The guest writes every byte read
 * here: a buffer's descriptors are copied out once and only the copy is
 * checked and used; a violation is -EINVAL with a reason.
 */
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <string.h>

#define _LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

int
sb_vring_packed_map(struct sb_vring *vr, const struct sb_vhost_mem *mem, uint64_t desc_uva,
		    uint64_t driver_uva, uint64_t device_uva, const char **why)
{
	/* §2.8.10.1 and §2.8.1: descriptor ring 16-byte, event structures 4-byte aligned. */
	if ((desc_uva & 15) || (driver_uva & 3) || (device_uva & 3)) {
		*why = "misaligned ring address";
		return -EFAULT;
	}
	vr->pdesc = sb_vhost_uva_to_va(mem, desc_uva, sb_vring_packed_desc_bytes(vr->size));
	vr->driver_event = sb_vhost_uva_to_va(mem, driver_uva, sizeof(*vr->driver_event));
	vr->device_event = sb_vhost_uva_to_va(mem, device_uva, sizeof(*vr->device_event));
	if (vr->pdesc == NULL || vr->driver_event == NULL || vr->device_event == NULL) {
		*why = "ring address outside guest memory";
		return -EFAULT;
	}
	return 0;
}

int
sb_vring_packed_set_base(struct sb_vring *vr, uint32_t base, const char **why)
{
	uint16_t avail = base & 0x7fff, used = (base >> 16) & 0x7fff;

	/*
	 * QEMU sends both halves (virtio_queue_packed_get_last_avail_idx), and
	 * they are equal: a ring is stopped only once drained.  A front-end
	 * that sends the avail half alone (DPDK's vhost library reads only
	 * that and takes the used half from it) leaves the upper half 0, which
	 * for QEMU would mean used index 0 of an odd lap while avail is
	 * elsewhere: take the used half from the avail one then.
	 */
	if ((base >> 16) == 0 && (base & 0xffff) != 0) {
		base |= base << 16;
		used = avail;
	}

	if (avail >= vr->size || used >= vr->size) {
		*why = "packed ring base index outside the ring";
		return -EINVAL;
	}
	vr->last_avail_idx = avail;
	vr->avail_wrap = (base & SB_VRING_PACKED_WRAP) != 0;
	vr->last_used_idx = used;
	vr->used_wrap = ((base >> 16) & SB_VRING_PACKED_WRAP) != 0;
	vr->signalled_used_valid = false;
	return 0;
}

uint32_t
sb_vring_packed_get_base(const struct sb_vring *vr)
{
	uint32_t avail = vr->last_avail_idx | (vr->avail_wrap ? SB_VRING_PACKED_WRAP : 0);
	uint32_t used = vr->last_used_idx | (vr->used_wrap ? SB_VRING_PACKED_WRAP : 0);

	return avail | used << 16;
}

/* §2.8.1: available when AVAIL matches the wrap counter and USED does not. */
static inline bool
_desc_avail(uint16_t flags, bool wrap)
{
	return ((flags & VRING_PACKED_DESC_F_AVAIL) != 0) == wrap &&
	       ((flags & VRING_PACKED_DESC_F_USED) != 0) != wrap;
}

int
sb_vring_packed_pop(struct sb_vring *vr, uint16_t *id, uint16_t *ndesc, const char **why)
{
	struct vring_packed_desc *d;
	uint16_t idx = vr->last_avail_idx, n = 0, flags;
	bool wrap = vr->avail_wrap;

	for (;;) {
		/* Acquire: the descriptor's other fields were written before its flags. */
		flags = __atomic_load_n(&vr->pdesc[idx].flags, __ATOMIC_ACQUIRE);
		if (!_desc_avail(flags, wrap)) {
			if (n == 0) {
				return 0;
			}
			/* §2.8.6: the driver marks every descriptor of a buffer, head last. */
			*why = "descriptor of an available chain not made available (wrap counter)";
			return -EINVAL;
		}
		d = &vr->scratch[n];
		d->addr = _LOAD(&vr->pdesc[idx].addr);
		d->len = _LOAD(&vr->pdesc[idx].len);
		d->id = _LOAD(&vr->pdesc[idx].id);
		d->flags = flags;
		n++;
		if (++idx == vr->size) {
			idx = 0;
			wrap = !wrap;
		}
		if (!(flags & VRING_DESC_F_NEXT)) {
			break;
		}
		/* A buffer never takes more slots than the ring has (§2.8.17). */
		if (n == vr->size) {
			*why = "descriptor chain longer than the ring";
			return -EINVAL;
		}
	}
	/* §2.8.6: the buffer id is the last descriptor's. */
	*id = vr->scratch[n - 1].id;
	if (*id >= vr->size) {
		*why = "buffer id out of range";
		return -EINVAL;
	}
	vr->scratch_n = n;
	vr->last_avail_idx = idx;
	vr->avail_wrap = wrap;
	*ndesc = n;
	return 1;
}

static int
_walk_indirect(const struct sb_vring *vr, const struct sb_vhost_mem *mem,
	       const struct vring_packed_desc *ind, struct sb_vring_chain *chain,
	       bool *seen_writable, const char **why)
{
	const struct vring_packed_desc *table;
	uint64_t bytes = ind->len;
	uint32_t n, i;
	uint16_t flags;
	int rc;

	/* §2.8.7 */
	if (!vr->indirect) {
		*why = "indirect descriptor without VIRTIO_F_INDIRECT_DESC";
		return -EINVAL;
	}
	if (ind->flags & VRING_DESC_F_NEXT) {
		*why = "indirect descriptor with NEXT set";
		return -EINVAL;
	}
	if (ind->len == 0 || ind->len % sizeof(struct vring_packed_desc) != 0) {
		*why = "indirect table length not a multiple of 16";
		return -EINVAL;
	}
	n = ind->len / sizeof(struct vring_packed_desc);
	/* As for the split ring: Linux sizes tables by segments (seg_max + 2). */
	if (n > vr->size && n > SB_VHOST_BLK_SEG_MAX + 2) {
		*why = "indirect table longer than the queue";
		return -EINVAL;
	}
	if (ind->addr & 0xf) {
		*why = "misaligned indirect table";
		return -EINVAL;
	}
	table = sb_vhost_gpa_to_va(mem, ind->addr, &bytes);
	if (table == NULL || bytes != ind->len) {
		*why = "indirect table outside one guest memory region";
		return -EINVAL;
	}
	/*
	 * §2.8.7: the table's entries follow each other (no NEXT links);
	 * WRITE is the only flag that means anything there, ids are ignored.
	 */
	for (i = 0; i < n; i++) {
		flags = _LOAD(&table[i].flags);
		rc = sb_vring_add_buffer(mem, _LOAD(&table[i].addr), _LOAD(&table[i].len),
					 (flags & VRING_DESC_F_WRITE) != 0, chain, seen_writable,
					 why);
		if (rc != 0) {
			return rc;
		}
	}
	return 0;
}

int
sb_vring_packed_walk(const struct sb_vring *vr, const struct sb_vhost_mem *mem,
		     struct sb_vring_chain *chain, const char **why)
{
	const struct vring_packed_desc *d;
	bool seen_writable = false;
	uint16_t i;
	int rc;

	chain->n_iov = 0;
	chain->n_readable = 0;
	chain->readable_bytes = 0;
	chain->writable_bytes = 0;
	for (i = 0; i < vr->scratch_n; i++) {
		d = &vr->scratch[i];
		if (d->flags & VRING_DESC_F_INDIRECT) {
			/* §2.8.7: never with NEXT; the only descriptor of its buffer. */
			if (d->flags & VRING_DESC_F_NEXT) {
				*why = "indirect descriptor with NEXT set";
				return -EINVAL;
			}
			if (vr->scratch_n != 1) {
				*why = "indirect descriptor inside a chain";
				return -EINVAL;
			}
			return _walk_indirect(vr, mem, d, chain, &seen_writable, why);
		}
		rc = sb_vring_add_buffer(mem, d->addr, d->len, (d->flags & VRING_DESC_F_WRITE) != 0,
					 chain, &seen_writable, why);
		if (rc != 0) {
			return rc;
		}
	}
	return 0;
}

void
sb_vring_packed_push_used(struct sb_vring *vr, uint16_t id, uint16_t ndesc, uint32_t len)
{
	struct vring_packed_desc *d = &vr->pdesc[vr->last_used_idx];
	uint16_t flags = vr->used_wrap ? VRING_PACKED_DESC_F_AVAIL | VRING_PACKED_DESC_F_USED : 0;

	__atomic_store_n(&d->id, id, __ATOMIC_RELAXED);
	__atomic_store_n(&d->len, len, __ATOMIC_RELAXED);
	/* Release: id, len and the data written to the buffer before the flags (§2.8.21). */
	__atomic_store_n(&d->flags, flags, __ATOMIC_RELEASE);
	vr->last_used_idx += ndesc;
	if (vr->last_used_idx >= vr->size) {
		vr->last_used_idx -= vr->size;
		vr->used_wrap = !vr->used_wrap;
	}
}

void
sb_vring_packed_notify_off(struct sb_vring *vr)
{
	__atomic_store_n(&vr->device_event->flags, VRING_PACKED_EVENT_FLAG_DISABLE,
			 __ATOMIC_RELAXED);
}

bool
sb_vring_packed_notify_on(struct sb_vring *vr)
{
	uint16_t flags;

	__atomic_store_n(&vr->device_event->flags, VRING_PACKED_EVENT_FLAG_ENABLE,
			 __ATOMIC_RELAXED);
	/* The flag store before the descriptor load, or a kick can be lost (§2.8.10). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	flags = __atomic_load_n(&vr->pdesc[vr->last_avail_idx].flags, __ATOMIC_ACQUIRE);
	return _desc_avail(flags, vr->avail_wrap);
}

bool
sb_vring_packed_need_call(struct sb_vring *vr)
{
	uint16_t flags, off_wrap, off, old, new_idx;
	bool valid, old_wrap;

	/* The used descriptors must be visible before we read the driver's structure. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	flags = _LOAD(&vr->driver_event->flags);
	off_wrap = _LOAD(&vr->driver_event->off_wrap);
	old = vr->signalled_used;
	old_wrap = vr->signalled_used_wrap;
	valid = vr->signalled_used_valid;
	new_idx = vr->last_used_idx;
	vr->signalled_used = new_idx;
	vr->signalled_used_wrap = vr->used_wrap;
	vr->signalled_used_valid = true;
	if (flags == VRING_PACKED_EVENT_FLAG_ENABLE) {
		return true;
	}
	if (flags != VRING_PACKED_EVENT_FLAG_DESC || !vr->event_idx) {
		/* DISABLE, or what the driver may not write (reserved; DESC without EVENT_IDX). */
		return flags != VRING_PACKED_EVENT_FLAG_DISABLE;
	}
	if (!valid) {
		return true;
	}
	/*
	 * §2.8.10: notify when the used index passed the descriptor the driver
	 * named (off, in the lap of its wrap bit) since the last notification.
	 * Put old, new and off on one line: old a lap back if we wrapped since,
	 * off a lap back if it is in the previous lap.
	 */
	off = off_wrap & 0x7fff;
	if (old_wrap != vr->used_wrap) {
		old = (uint16_t)(old - vr->size);
	}
	if (((off_wrap >> VRING_PACKED_EVENT_F_WRAP_CTR) & 1) != vr->used_wrap) {
		off = (uint16_t)(off - vr->size);
	}
	return (uint16_t)(new_idx - off - 1) < (uint16_t)(new_idx - old);
}
