/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest memory and virtqueues, driver side: split (virtio 1.2 §2.7) and
 * packed (§2.8).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vhost_initiator.h"

int
gm_init(struct guest_mem *m, uint64_t size)
{
	return gm_init_shape(m, size, 0, false);
}

int
gm_init_shape(struct guest_mem *m, uint64_t size, uint64_t file_offset, bool gpa_is_uva)
{
	int rc;

	memset(m, 0, sizeof(*m));
	m->fd = memfd_create("vi-guest-ram", MFD_CLOEXEC);
	if (m->fd < 0) {
		return -errno;
	}
	if (ftruncate(m->fd, (off_t)(file_offset + size)) != 0) {
		rc = -errno;
		goto out;
	}
	m->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, (off_t)file_offset);
	if (m->base == MAP_FAILED) {
		m->base = NULL;
		rc = -errno;
		goto out;
	}
	m->size = size;
	m->file_offset = file_offset;
	m->gpa = gpa_is_uva ? (uint64_t)(uintptr_t)m->base : VI_GPA_BASE;
	m->next = 0;
	return 0;
out:
	close(m->fd);
	m->fd = -1;
	return rc;
}

void
gm_fini(struct guest_mem *m)
{
	if (m->base != NULL) {
		munmap(m->base, m->size);
		m->base = NULL;
	}
	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
}

void *
gm_alloc(struct guest_mem *m, uint64_t size, uint64_t align)
{
	uint64_t off = (m->next + align - 1) & ~(align - 1);

	if (off + size > m->size) {
		return NULL;
	}
	m->next = off + size;
	return m->base + off;
}

uint64_t
gm_gpa(const struct guest_mem *m, const void *p)
{
	return m->gpa + (uint64_t)((const uint8_t *)p - m->base);
}

int
vq_init(struct vq *vq, struct guest_mem *m, uint16_t index, uint16_t size, bool interrupts)
{
	return vq_init_ring(vq, m, index, size, interrupts, false);
}

static int
_init_packed(struct vq *vq, struct guest_mem *m)
{
	/* §2.8.10.1: descriptor ring 16-byte aligned, event structures 4. */
	vq->pdesc = gm_alloc(m, 16ull * vq->size, 4096);
	vq->drv_event = gm_alloc(m, sizeof(*vq->drv_event), 4096);
	vq->dev_event = gm_alloc(m, sizeof(*vq->dev_event), 4096);
	if (vq->pdesc == NULL || vq->drv_event == NULL || vq->dev_event == NULL) {
		return -ENOMEM;
	}
	memset(vq->pdesc, 0, 16ull * vq->size);
	memset(vq->drv_event, 0, sizeof(*vq->drv_event));
	memset(vq->dev_event, 0, sizeof(*vq->dev_event));
	vq->desc = (struct vring_desc *)vq->pdesc;
	vq->avail = (struct vring_avail *)vq->drv_event;
	vq->used = (struct vring_used *)vq->dev_event;
	/* §2.8.1: both wrap counters start at 1. */
	vq->avail_wrap = true;
	vq->used_wrap = true;
	if (!vq->interrupts) {
		vq->drv_event->flags = VRING_PACKED_EVENT_FLAG_DISABLE;
	}
	return 0;
}

int
vq_init_ring(struct vq *vq, struct guest_mem *m, uint16_t index, uint16_t size, bool interrupts,
	     bool packed)
{
	int rc;

	memset(vq, 0, sizeof(*vq));
	vq->kick_fd = -1;
	vq->call_fd = -1;
	vq->index = index;
	vq->size = size;
	vq->packed = packed;
	if (packed) {
		if (size > VI_MAX_QUEUE_SIZE) {
			return -EINVAL;
		}
		vq->interrupts = interrupts;
		rc = _init_packed(vq, m);
		if (rc != 0) {
			return rc;
		}
		goto fds;
	}
	/* Alignments of virtio 1.2 §2.7: desc 16, avail 2, used 4; page-align
	 * each like a legacy driver does, it costs nothing here. */
	vq->desc = gm_alloc(m, 16ull * size, 4096);
	vq->avail = gm_alloc(m, 6 + 2ull * size, 4096);
	vq->used = gm_alloc(m, 6 + 8ull * size, 4096);
	if (vq->desc == NULL || vq->avail == NULL || vq->used == NULL) {
		return -ENOMEM;
	}
	memset(vq->desc, 0, 16ull * size);
	memset(vq->avail, 0, 6 + 2ull * size);
	memset(vq->used, 0, 6 + 8ull * size);
	vq->interrupts = interrupts;
	if (!interrupts) {
		vq->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	}
fds:
	vq->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vq->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vq->kick_fd < 0 || vq->call_fd < 0) {
		return -errno;
	}
	return 0;
}

void
vq_fini(struct vq *vq)
{
	if (vq->kick_fd >= 0) {
		close(vq->kick_fd);
	}
	if (vq->call_fd >= 0) {
		close(vq->call_fd);
	}
	vq->kick_fd = vq->call_fd = -1;
}

/* Packed: the driver's flags for a slot of the current lap (§2.8.1). */
static inline uint16_t
_avail_flags(bool wrap)
{
	return wrap ? VRING_PACKED_DESC_F_AVAIL : VRING_PACKED_DESC_F_USED;
}

void
vq_add(struct vq *vq, uint16_t head, const struct vi_buf *bufs, uint16_t n)
{
	uint16_t i, idx, head_flags = 0, flags;
	bool wrap;

	if (!vq->packed && vq->use_indirect && n > 1 && n <= VI_INDIRECT_MAX) {
		struct vring_desc *t = &vq->indirect[(uint32_t)head * VI_INDIRECT_MAX];

		/* §2.7.5.3.1: the table's own descriptors chain by index within
		 * it; the ring descriptor is read-only and only says INDIRECT. */
		for (i = 0; i < n; i++) {
			t[i].addr = bufs[i].addr;
			t[i].len = bufs[i].len;
			t[i].flags = (i + 1 < n ? VRING_DESC_F_NEXT : 0) |
				     (bufs[i].write ? VRING_DESC_F_WRITE : 0);
			t[i].next = i + 1 < n ? i + 1 : 0;
		}
		vq->desc[head].addr = vq->indirect_gpa + (uint64_t)head * VI_INDIRECT_MAX * sizeof(*t);
		vq->desc[head].len = n * (uint32_t)sizeof(*t);
		vq->desc[head].flags = VRING_DESC_F_INDIRECT;
		vq->desc[head].next = 0;
		vq_push(vq, head);
		return;
	}
	if (!vq->packed) {
		for (i = 0; i < n; i++) {
			vq->desc[head + i].addr = bufs[i].addr;
			vq->desc[head + i].len = bufs[i].len;
			vq->desc[head + i].flags = (i + 1 < n ? VRING_DESC_F_NEXT : 0) |
						   (bufs[i].write ? VRING_DESC_F_WRITE : 0);
			vq->desc[head + i].next = i + 1 < n ? head + i + 1 : 0;
		}
		vq_push(vq, head);
		return;
	}
	idx = vq->next_avail;
	wrap = vq->avail_wrap;
	for (i = 0; i < n; i++) {
		flags = _avail_flags(wrap) | (i + 1 < n ? VRING_DESC_F_NEXT : 0) |
			(bufs[i].write ? VRING_DESC_F_WRITE : 0);
		vq->pdesc[idx].addr = bufs[i].addr;
		vq->pdesc[idx].len = bufs[i].len;
		vq->pdesc[idx].id = head;
		if (i == 0) {
			head_flags = flags;
		} else {
			vq->pdesc[idx].flags = flags;
		}
		if (++idx == vq->size) {
			idx = 0;
			wrap = !wrap;
		}
	}
	vq->ndesc[head] = n;
	/* §2.8.21.1: the first descriptor's flags last, after everything else. */
	__atomic_store_n(&vq->pdesc[vq->next_avail].flags, head_flags, __ATOMIC_RELEASE);
	vq->next_avail = idx;
	vq->avail_wrap = wrap;
	vq->avail_idx++;
}

uint32_t
vq_base(const struct vq *vq)
{
	uint32_t avail;

	if (!vq->packed) {
		return vq->avail_idx;
	}
	/* The device resumes where we stopped filling; nothing in flight at a stop. */
	avail = vq->next_avail | (vq->avail_wrap ? 1u << 15 : 0);
	return avail | avail << 16;
}

void
vq_push(struct vq *vq, uint16_t head)
{
	vq->avail->ring[vq->avail_idx % vq->size] = head;
	vq->avail_idx++;
	/* The ring entry and descriptors must be visible before the index
	 * (virtio 1.2 §2.7.13.3.1). */
	__atomic_store_n(&vq->avail->idx, vq->avail_idx, __ATOMIC_RELEASE);
}

/* virtio 1.2 §2.7.10: notify iff the event index lies in (old, new]. */
static inline bool
_need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

void
vq_kick(struct vq *vq, bool force)
{
	uint64_t one = 1;
	uint16_t old = vq->kicked_idx;

	vq->kicked_idx = vq->avail_idx;
	/* Full barrier: the index store must be ordered before we read the
	 * device's suppression state, or a kick can be lost (§2.7.13.4). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (vq->packed) {
		/* §2.8.10: the device event structure; DESC is not used by this device. */
		if (!force && __atomic_load_n(&vq->dev_event->flags, __ATOMIC_ACQUIRE) ==
				      VRING_PACKED_EVENT_FLAG_DISABLE) {
			return;
		}
	} else if (!force && vq->event_idx) {
		/* avail_event lives after the used ring (§2.7.8) */
		uint16_t ev = __atomic_load_n((uint16_t *)&vq->used->ring[vq->size],
					      __ATOMIC_ACQUIRE);

		if (!_need_event(ev, vq->avail_idx, old)) {
			return;
		}
	} else if (!force && (__atomic_load_n(&vq->used->flags, __ATOMIC_ACQUIRE) &
			      VRING_USED_F_NO_NOTIFY)) {
		return;
	}
	vq->kicks++;
	if (write(vq->kick_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: counter saturated, the target has pending kicks anyway. */
	}
}

/* Packed: the slot at next_used holds a used descriptor of this lap (§2.8.1). */
static inline bool
_packed_used(const struct vq *vq, uint16_t flags)
{
	return ((flags & VRING_PACKED_DESC_F_AVAIL) != 0) == vq->used_wrap &&
	       ((flags & VRING_PACKED_DESC_F_USED) != 0) == vq->used_wrap;
}

static bool
_packed_pop(struct vq *vq, uint32_t *id, uint32_t *len)
{
	struct vring_packed_desc *d = &vq->pdesc[vq->next_used];
	uint16_t flags = __atomic_load_n(&d->flags, __ATOMIC_ACQUIRE), n;

	if (!_packed_used(vq, flags)) {
		return false;
	}
	*id = d->id;
	*len = d->len;
	/* A bogus id is the caller's to report; step over one slot then. */
	n = *id < vq->size && vq->ndesc[*id] != 0 ? vq->ndesc[*id] : 1;
	if (*id < vq->size) {
		vq->ndesc[*id] = 0;
	}
	vq->next_used += n;
	if (vq->next_used >= vq->size) {
		vq->next_used -= vq->size;
		vq->used_wrap = !vq->used_wrap;
	}
	vq->last_used++;
	return true;
}

bool
vq_pop(struct vq *vq, uint32_t *id, uint32_t *len)
{
	struct vring_used_elem *e;
	uint16_t idx;

	if (vq->packed) {
		return _packed_pop(vq, id, len);
	}
	idx = __atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE);
	if (idx == vq->last_used) {
		return false;
	}
	e = &vq->used->ring[vq->last_used % vq->size];
	*id = e->id;
	*len = e->len;
	vq->last_used++;
	return true;
}

bool
vq_has_used(struct vq *vq)
{
	if (vq->packed) {
		return _packed_used(vq, __atomic_load_n(&vq->pdesc[vq->next_used].flags,
							__ATOMIC_ACQUIRE));
	}
	return __atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE) != vq->last_used;
}

void
vq_want_call(struct vq *vq, bool want)
{
	if (vq->packed) {
		__atomic_store_n(&vq->drv_event->flags,
				 want ? VRING_PACKED_EVENT_FLAG_ENABLE : VRING_PACKED_EVENT_FLAG_DISABLE,
				 __ATOMIC_RELEASE);
	} else if (vq->event_idx) {
		/* used_event lives after the avail ring (§2.7.6).  Not wanting a
		 * call: put the event half the index space away. */
		__atomic_store_n(&vq->avail->ring[vq->size],
				 (uint16_t)(vq->last_used + (want ? 0 : 0x7fff)), __ATOMIC_RELEASE);
	} else {
		__atomic_store_n(&vq->avail->flags, want ? 0 : VRING_AVAIL_F_NO_INTERRUPT,
				 __ATOMIC_RELEASE);
	}
	/* The store must be visible before we re-check the used ring. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}
