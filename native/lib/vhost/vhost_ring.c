/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One ring interface for the request code: split (vhost_vq.c) or packed
 * (vhost_vq_packed.c), chosen by VIRTIO_F_RING_PACKED at queue start.  A
 * request is a head (the task index: a split chain's head, a packed
 * buffer's id) and the ring slots it took (always 1 for split).
 */
#include "vhost/vhost_internal.h"

int
sb_vq_map(struct sb_vring *vr, const struct sb_vhost_mem *mem, uint64_t desc_uva,
	  uint64_t avail_uva, uint64_t used_uva, const char **why)
{
	if (vr->packed) {
		return sb_vring_packed_map(vr, mem, desc_uva, avail_uva, used_uva, why);
	}
	return sb_vring_map(vr, mem, desc_uva, avail_uva, used_uva, why);
}

int
sb_vq_pop(struct sb_vring *vr, uint16_t *head, uint16_t *ndesc, const char **why)
{
	int n, rc;

	if (vr->packed) {
		return sb_vring_packed_pop(vr, head, ndesc, why);
	}
	if (vr->avail_pending == 0) {
		/* One acquire load of avail->idx per batch the driver published. */
		n = sb_vring_avail_count(vr, why);
		if (n <= 0) {
			return n;
		}
		vr->avail_pending = (uint16_t)n;
	}
	rc = sb_vring_pop(vr, head, why);
	if (rc != 0) {
		return rc;
	}
	vr->avail_pending--;
	*ndesc = 1;
	return 1;
}

int
sb_vq_pop_seen(struct sb_vring *vr, uint16_t *head, uint16_t *ndesc, const char **why)
{
	if (!vr->packed && vr->avail_pending == 0) {
		return 0;
	}
	return sb_vq_pop(vr, head, ndesc, why);
}

int
sb_vq_walk(const struct sb_vring *vr, const struct sb_vhost_mem *mem, uint16_t head,
	   struct sb_vring_chain *chain, const char **why)
{
	if (vr->packed) {
		return sb_vring_packed_walk(vr, mem, chain, why);
	}
	return sb_vring_walk(vr, mem, head, chain, why);
}

void
sb_vq_push_used(struct sb_vring *vr, uint16_t head, uint16_t ndesc, uint32_t len)
{
	if (vr->packed) {
		sb_vring_packed_push_used(vr, head, ndesc, len);
	} else {
		sb_vring_push_used(vr, head, len);
	}
}

void
sb_vq_notify_off(struct sb_vring *vr)
{
	if (vr->packed) {
		sb_vring_packed_notify_off(vr);
	} else {
		sb_vring_notify_off(vr);
	}
}

bool
sb_vq_notify_on(struct sb_vring *vr)
{
	return vr->packed ? sb_vring_packed_notify_on(vr) : sb_vring_notify_on(vr);
}

bool
sb_vq_need_call(struct sb_vring *vr)
{
	return vr->packed ? sb_vring_packed_need_call(vr) : sb_vring_need_call(vr);
}
