/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-blk request execution on the queue's reactor: one task per
 * ring head, data buffers handed to the bdev as iovecs into guest memory
 * (zero copy), status and used ring written on completion.
 */
#include "vhost/vhost_dev.h"
#include "sb/bdev.h"
#include "sb/log.h"
#include "sb/thread.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>

_Static_assert(SB_VHOST_BLK_MAX_WZ_SEG <= SB_VHOST_BLK_MAX_DISCARD_SEG,
	       "task segment array holds the larger of the two limits");

static int _submit(struct sb_vhost_task *t);

bool
sb_vhost_vq_publish(struct sb_vhost_vq *vq)
{
	bool moved;

	if (vq->vr.used_pending == 0) {
		return false;
	}
	if (vq->iq != NULL) {
		moved = sb_inflight_flush_used(vq->iq, &vq->vr, vq->batch, &vq->n_batch);
	} else {
		moved = sb_vring_flush_used(&vq->vr);
	}
	/* used->idx: marked after it is written, so a log sync cannot miss it. */
	sb_vhost_vq_log_used(vq, 2, 2);
	return moved;
}

void
sb_vhost_vq_flush_call(struct sb_vhost_vq *vq)
{
	/* The call decision reads the driver's used_event against the published index. */
	sb_vhost_vq_publish(vq);
	vq->call_pending = false;
	if (vq->run_callfd >= 0 && sb_vq_need_call(&vq->vr)) {
		eventfd_write(vq->run_callfd, 1);
	}
}

void
sb_vhost_vq_log_used(struct sb_vhost_vq *vq, uint64_t off, uint64_t len)
{
	struct sb_vhost_log *log = __atomic_load_n(&vq->ctrlr->log_active, __ATOMIC_ACQUIRE);

	if (log != NULL && vq->log_used) {
		sb_vhost_log_write(log, vq->log_used_gpa + off, len);
	}
}

void
sb_vhost_vq_log_notify(struct sb_vhost_vq *vq)
{
	if (vq->vr.packed) {
		/* The device event structure is the whole device area (§2.8.10). */
		sb_vhost_vq_log_used(vq, 0, sizeof(struct vring_packed_desc_event));
		return;
	}
	/* used->flags, and avail_event behind the ring (virtio 1.2 §2.7.8). */
	sb_vhost_vq_log_used(vq, 0, 2);
	if (vq->vr.event_idx) {
		sb_vhost_vq_log_used(vq, 4 + 8ull * vq->vr.size, 2);
	}
}

/*
 * A request the reactor took while logging was off, finishing while it is
 * on (it was in flight when the migration began): its addresses were not
 * kept, so they are found from ours.  Every buffer lies in one region.
 */
static void
_log_task_untracked(struct sb_vhost_task *t, struct sb_vhost_log *log)
{
	const struct sb_vhost_mem *mem = t->vq->ctrlr->mem;
	uint64_t gpa;
	uint32_t i;

	for (i = t->chain.n_readable; i < t->chain.n_iov; i++) {
		if (t->iov[i].iov_len != 0 && sb_vhost_va_to_gpa(mem, t->iov[i].iov_base, &gpa) == 0) {
			sb_vhost_log_write(log, gpa, t->iov[i].iov_len);
		}
	}
	if (sb_vhost_va_to_gpa(mem, t->req.status, &gpa) == 0) {
		sb_vhost_log_write(log, gpa, 1);
	}
}

/* Every guest byte a finished request wrote: writable buffers, status, used entry and index. */
static void
_log_task(struct sb_vhost_task *t, struct sb_vhost_log *log, uint16_t slot)
{
	struct sb_vhost_vq *vq = t->vq;
	uint32_t i;

	if (t->chain.gpa == NULL) {
		_log_task_untracked(t, log);
	} else {
		for (i = t->chain.n_readable; i < t->chain.n_iov; i++) {
			sb_vhost_log_write(log, t->gpa[i], t->iov[i].iov_len);
		}
		sb_vhost_log_write(log, t->req.status_gpa, 1);
	}
	if (vq->vr.packed) {
		/* The used descriptor went into the descriptor ring. */
		if (vq->log_desc) {
			sb_vhost_log_write(log, vq->log_desc_gpa + 16ull * slot, 16);
		}
	} else if (vq->log_used) {
		/* The element; used->idx is marked when the batch is published. */
		sb_vhost_log_write(log, vq->log_used_gpa + 4 + 8ull * slot, 8);
	}
}

void
sb_vhost_task_done(struct sb_vhost_task *t, uint8_t status)
{
	struct sb_vhost_vq *vq = t->vq;
	struct sb_vhost_ctrlr *c = vq->ctrlr;
	struct sb_vhost_rslot *s = vq->slot;
	struct sb_vhost_log *log;
	uint16_t slot;

	if (!vq->detached) {
		*t->req.status = status;
		if (status != VIRTIO_BLK_S_OK) {
			t->used_len = 1;
		}
		/* Split: the slot put_used fills; packed: the used slot. */
		slot = vq->vr.packed ? vq->vr.last_used_idx : vq->vr.last_used_idx % vq->vr.size;
		if (vq->vr.packed) {
			/*
			 * Packed: each used descriptor's flags publish it, and the
			 * inflight region moves with each (no index to batch).
			 */
			if (vq->iqp != NULL) {
				sb_inflight_packed_push_used(vq->iqp, &vq->vr, t->iq_entry,
							     t->head, t->ndesc, t->used_len);
			} else {
				sb_vq_push_used(&vq->vr, t->head, t->ndesc, t->used_len);
			}
		} else if (vq->iq != NULL) {
			/* Split: filled now, published with the rest of the batch. */
			sb_inflight_put_used(vq->iq, &vq->vr, vq->batch, &vq->n_batch, t->head,
					     t->used_len);
		} else {
			sb_vring_put_used(&vq->vr, t->head, t->used_len);
		}
		/* Logging off costs this one load and branch. */
		log = __atomic_load_n(&c->log_active, __ATOMIC_ACQUIRE);
		if (log != NULL) {
			_log_task(t, log, slot);
		}
		vq->win_count++;
		if (!vq->started) {
			/* Stopping: no poller will publish it. */
			sb_vhost_vq_flush_call(vq);
		} else if (!vq->call_pending) {
			/*
			 * The queue's poller publishes and signals on its next run: one
			 * used->idx store, one look at the driver's flags and at most
			 * one call for the whole batch of completions (the call later
			 * when a coalescing delay is on).
			 */
			vq->call_pending = true;
			vq->call_deadline = vq->coalesce ? sb_get_ticks() +
				(uint64_t)c->delay_base_us * sb_get_ticks_hz() / 1000000 : 0;
		}
	}
	t->busy = false;
	vq->inflight--;
	s->outstanding--;
	/* Only this reactor writes it: no locked add, the control thread sums the slots. */
	__atomic_store_n(&s->completed_ios, s->completed_ios + 1, __ATOMIC_RELAXED);
	if (vq->inflight == 0 && vq->draining) {
		sb_vhost_vq_drained(vq);
	}
	if (s->removed && s->outstanding == 0) {
		sb_vhost_slot_release(s);
	}
}

static void
_io_done(struct sb_bdev_io *io, int status, void *cb_arg)
{
	struct sb_vhost_task *t = cb_arg;
	int rc;

	sb_bdev_free_io(io);
	if (status != 0) {
		sb_vhost_task_done(t, VIRTIO_BLK_S_IOERR);
		return;
	}
	if (t->nsegs > 0 && ++t->cur_seg < t->nsegs) {
		rc = _submit(t);
		if (rc == -ENOMEM) {
			t->queued = true;
			TAILQ_INSERT_TAIL(&t->vq->retry, t, link);
		} else if (rc != 0) {
			sb_vhost_task_done(t, VIRTIO_BLK_S_IOERR);
		}
		return;
	}
	sb_vhost_task_done(t, VIRTIO_BLK_S_OK);
}

/* 512-byte sectors -> bdev blocks; false when misaligned or beyond the end. */
static bool
_to_blocks(const struct sb_vhost_ctrlr *c, uint64_t sector, uint64_t bytes, uint64_t *off,
	   uint64_t *num)
{
	uint32_t bs = c->geo.block_size;
	uint64_t blocks = __atomic_load_n(&c->geo.num_blocks, __ATOMIC_RELAXED);

	if (bs == 0 || sector > (UINT64_MAX >> 9) || bytes % bs != 0 || (sector << 9) % bs != 0) {
		return false;
	}
	*off = (sector << 9) / bs;
	*num = bytes / bs;
	return *off <= blocks && *num <= blocks - *off;
}

static int
_submit(struct sb_vhost_task *t)
{
	struct sb_vhost_ctrlr *c = t->vq->ctrlr;
	struct sb_io_channel *ch = t->vq->slot->ch;
	const struct virtio_blk_seg *s;
	uint64_t off, num;

	/* A removed slot no longer looks at the descriptor: the home may have closed it. */
	if (t->vq->slot->removed || c->desc == NULL || ch == NULL) {
		return -ENODEV;
	}
	switch (t->req.hdr.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (!_to_blocks(c, t->req.hdr.sector, t->req.data_len, &off, &num)) {
			return -EINVAL;
		}
		if (t->req.hdr.type == VIRTIO_BLK_T_IN) {
			return sb_bdev_readv_blocks(c->desc, ch, t->req.data, (int)t->req.data_cnt,
						    off, num, _io_done, t);
		}
		return sb_bdev_writev_blocks(c->desc, ch, t->req.data, (int)t->req.data_cnt, off,
					     num, _io_done, t);
	case VIRTIO_BLK_T_FLUSH:
		return sb_bdev_flush(c->desc, ch, _io_done, t);
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		s = &t->segs[t->cur_seg];
		if (!_to_blocks(c, s->sector, (uint64_t)s->num_sectors << 9, &off, &num)) {
			return -EINVAL;
		}
		if (t->req.hdr.type == VIRTIO_BLK_T_DISCARD) {
			return sb_bdev_unmap_blocks(c->desc, ch, off, num, _io_done, t);
		}
		return sb_bdev_write_zeroes_blocks(c->desc, ch, off, num, _io_done, t);
	default:
		return -EINVAL;
	}
}

/* DISCARD / WRITE_ZEROES payload checks (virtio 1.2 §5.2.6.2). */
static uint8_t
_parse_segments(struct sb_vhost_task *t)
{
	uint32_t type = t->req.hdr.type, i, max_sectors = SB_VHOST_BLK_MAX_DISCARD_SECTORS;
	uint32_t max_seg = type == VIRTIO_BLK_T_DISCARD ? SB_VHOST_BLK_MAX_DISCARD_SEG :
			   SB_VHOST_BLK_MAX_WZ_SEG;
	uint32_t allowed = type == VIRTIO_BLK_T_DISCARD ? 0 : VIRTIO_BLK_WZ_F_UNMAP;
	uint64_t n;

	if (t->req.data_len == 0 || t->req.data_len % sizeof(struct virtio_blk_seg) != 0) {
		return VIRTIO_BLK_S_IOERR;
	}
	n = t->req.data_len / sizeof(struct virtio_blk_seg);
	if (n > max_seg) {
		return VIRTIO_BLK_S_IOERR;
	}
	sb_iov_copy_out(t->req.data, t->req.data_cnt, 0, t->segs, t->req.data_len);
	for (i = 0; i < n; i++) {
		/* Unknown flags, or unmap on a discard, are not ours to guess at. */
		if (t->segs[i].flags & ~allowed) {
			return VIRTIO_BLK_S_UNSUPP;
		}
		if (t->segs[i].num_sectors == 0 || t->segs[i].num_sectors > max_sectors) {
			return VIRTIO_BLK_S_IOERR;
		}
	}
	t->nsegs = (uint32_t)n;
	return VIRTIO_BLK_S_OK;
}

/* Decide what a parsed request does; a status other than OK finishes it now. */
static uint8_t
_start(struct sb_vhost_task *t, bool *submitted)
{
	struct sb_vhost_ctrlr *c = t->vq->ctrlr;
	uint32_t type = t->req.hdr.type;
	uint64_t negotiated = c->features;
	uint8_t st;
	int rc;

	*submitted = false;
	t->used_len = 1;
	t->nsegs = 0;
	t->cur_seg = 0;
	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (type == VIRTIO_BLK_T_OUT && c->readonly) {
			return VIRTIO_BLK_S_IOERR;
		}
		if (t->req.data_len % 512 != 0) {
			return VIRTIO_BLK_S_IOERR;
		}
		if (t->req.data_len == 0) {
			return VIRTIO_BLK_S_OK;
		}
		if (type == VIRTIO_BLK_T_IN) {
			t->used_len = (uint32_t)t->req.data_len + 1;
		}
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (!c->geo.flush && !t->vq->slot->removed) {
			/* No volatile cache: everything written is already stable. */
			return VIRTIO_BLK_S_OK;
		}
		break;
	case VIRTIO_BLK_T_GET_ID: {
		uint8_t id[VIRTIO_BLK_ID_BYTES];
		uint64_t n;

		memcpy(id, c->serial, sizeof(id));
		n = sb_iov_copy_in(t->req.data, t->req.data_cnt, id, sizeof(id));
		t->used_len = (uint32_t)n + 1;
		return VIRTIO_BLK_S_OK;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (!(negotiated & (1ull << (type == VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_F_DISCARD :
					     VIRTIO_BLK_F_WRITE_ZEROES)))) {
			return c->readonly ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_UNSUPP;
		}
		if (c->readonly) {
			return VIRTIO_BLK_S_IOERR;
		}
		st = _parse_segments(t);
		if (st != VIRTIO_BLK_S_OK) {
			return st;
		}
		break;
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
	rc = _submit(t);
	if (rc == -ENOMEM) {
		t->queued = true;
		TAILQ_INSERT_TAIL(&t->vq->retry, t, link);
		*submitted = true;
		return VIRTIO_BLK_S_OK;
	}
	if (rc != 0) {
		return VIRTIO_BLK_S_IOERR;
	}
	*submitted = true;
	return VIRTIO_BLK_S_OK;
}

bool
sb_vhost_blk_handle(struct sb_vhost_vq *vq, uint16_t head, uint16_t ndesc)
{
	struct sb_vhost_ctrlr *c = vq->ctrlr;
	struct sb_vhost_task *t = &vq->tasks[head];
	const char *why = NULL;
	bool submitted;
	uint8_t st;
	int rc;

	if (t->busy) {
		sb_vhost_dev_break(c, "head made available twice while in flight");
		return false;
	}
	t->chain.iov = t->iov;
	/*
	 * Guest-physical addresses are kept only while the dirty log is on
	 * (the control thread publishes log_active): with logging off a
	 * request costs what it did before live migration existed
	 * (bench/RESULTS.md, "Live migration").
	 */
	t->chain.gpa = __atomic_load_n(&c->log_active, __ATOMIC_RELAXED) != NULL
			       ? t->gpa : NULL;
	t->chain.max_iov = SB_VHOST_REQ_MAX_IOV;
	t->ndesc = ndesc;
	rc = sb_vq_walk(&vq->vr, c->mem, head, &t->chain, &why);
	if (rc != 0) {
		sb_vhost_dev_break(c, why);
		return false;
	}
	if (sb_blk_req_parse(&t->chain, &t->req) != 0) {
		sb_vhost_dev_break(c, "request without room for header and status");
		return false;
	}
	t->busy = true;
	t->queued = false;
	vq->inflight++;
	vq->slot->outstanding++;
	st = _start(t, &submitted);
	if (!submitted) {
		sb_vhost_task_done(t, st);
	}
	return true;
}

void
sb_vhost_blk_retry(struct sb_vhost_vq *vq)
{
	struct sb_vhost_task *t;
	int rc;

	while ((t = TAILQ_FIRST(&vq->retry)) != NULL) {
		rc = _submit(t);
		if (rc == -ENOMEM) {
			/* Still no bdev_io: keep the order, try on a later poll. */
			return;
		}
		TAILQ_REMOVE(&vq->retry, t, link);
		t->queued = false;
		if (rc != 0) {
			sb_vhost_task_done(t, VIRTIO_BLK_S_IOERR);
		}
	}
}
