/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Queue start/stop and the controller's poller.  The control thread
 * prepares a queue while it is stopped, then hands it to the controller's
 * reactor with sb_call(); from then on only that reactor touches the ring
 * until a stop message (which waits for in-flight requests) gives it back.
 */
#include "vhost/vhost_dev.h"
#include "sb/bdev.h"
#include "sb/log.h"
#include "sb/thread.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Heads taken from one ring per poll, so one busy queue cannot starve others. */
#define SB_VHOST_POLL_BATCH 64

static void _vq_poller_maybe_stop(struct sb_vhost_ctrlr *c);

void
sb_vhost_dev_break(struct sb_vhost_ctrlr *c, const char *why)
{
	/*
	 * Stop polling but keep the session: cutting it would make QEMU
	 * reconnect and replay the same bad ring forever.  In-flight
	 * requests still complete.
	 */
	if (!c->broken) {
		SB_ERRLOG("vhost controller %s: guest violation, queues stopped: %s\n", c->name, why);
	}
	c->broken = true;
}

/*
 * Interrupt coalescing, SPDK's knobs: while a queue completes at least
 * iops_threshold requests per second, calls are delayed by up to
 * delay_base_us so that one interrupt covers several completions.
 */
static void
_vq_coalesce(struct sb_vhost_vq *vq)
{
	struct sb_vhost_ctrlr *c = vq->ctrlr;
	uint32_t delay = __atomic_load_n(&c->delay_base_us, __ATOMIC_RELAXED);
	uint32_t threshold = __atomic_load_n(&c->iops_threshold, __ATOMIC_RELAXED);
	uint64_t now, hz;

	if (delay == 0 && !vq->coalesce) {
		/* Coalescing off (the default): nothing to time; no window to fill. */
		vq->win_count = 0;
		if (vq->call_pending) {
			sb_vhost_vq_flush_call(vq);
		}
		return;
	}
	now = sb_get_ticks();
	hz = sb_get_ticks_hz();

	/* IOPS measured over 100 ms windows. */
	if (now - vq->win_start >= hz / 10) {
		vq->coalesce = delay > 0 && (uint64_t)vq->win_count * 10 >= threshold;
		vq->win_start = now;
		vq->win_count = 0;
	}
	if (vq->call_pending && (!vq->coalesce || now >= vq->call_deadline)) {
		sb_vhost_vq_flush_call(vq);
	}
}

static int
_vq_poll(struct sb_vhost_vq *vq)
{
	struct sb_vhost_ctrlr *c = vq->ctrlr;
	const char *why = NULL;
	uint16_t head;
	int n, i, work = 0;

	if (vq->started) {
		_vq_coalesce(vq);
	}

	if (!TAILQ_EMPTY(&vq->retry)) {
		sb_vhost_blk_retry(vq);
		work = 1;
	}
	if (!vq->started || c->broken) {
		return work;
	}
	if (!vq->notify_off) {
		/* The reactor is awake: no kicks until it is about to sleep (_ctrlr_arm). */
		sb_vring_notify_off(&vq->vr);
		sb_vhost_vq_log_notify(vq);
		vq->notify_off = true;
	}
	while (vq->resubmit_pos < vq->n_resubmit) {
		/* Inflight recovery: these were fetched by a previous process. */
		head = vq->resubmit[vq->resubmit_pos++];
		if (!sb_vhost_blk_handle(vq, head)) {
			return 1;
		}
		work = 1;
	}
	n = sb_vring_avail_count(&vq->vr, &why);
	if (n < 0) {
		sb_vhost_dev_break(c, why);
		return 1;
	}
	if (n > SB_VHOST_POLL_BATCH) {
		n = SB_VHOST_POLL_BATCH;
	}
	for (i = 0; i < n; i++) {
		if (sb_vring_pop(&vq->vr, &head, &why) != 0) {
			sb_vhost_dev_break(c, why);
			return 1;
		}
		if (vq->iq != NULL) {
			sb_inflight_fetch(vq->iq, head, vq->iq_counter++);
		}
		if (!sb_vhost_blk_handle(vq, head)) {
			return 1;
		}
	}
	if (n > 0) {
		work = 1;
	}
	if (vq->call_pending && !vq->coalesce) {
		/* Requests that completed inline (refused ones) are signalled now. */
		sb_vhost_vq_flush_call(vq);
	}
	return work;
}

static int
_ctrlr_poll(void *ctx)
{
	struct sb_vhost_ctrlr *c = ctx;
	int busy = 0;
	uint16_t q;

	for (q = 0; q < c->max_queues; q++) {
		if (c->vqs[q].started || !TAILQ_EMPTY(&c->vqs[q].retry)) {
			busy |= _vq_poll(&c->vqs[q]);
			/* A coalesced call has a deadline: keep the reactor awake for it. */
			busy |= c->vqs[q].call_pending;
		}
	}
	return busy ? SB_POLLER_BUSY : SB_POLLER_IDLE;
}

/* The reactor is about to sleep: kicks back on for every polled queue. */
static bool
_ctrlr_arm(void *ctx)
{
	struct sb_vhost_ctrlr *c = ctx;
	struct sb_vhost_vq *vq;
	bool pending = false;
	uint16_t q;

	if (c->broken) {
		return false;
	}
	for (q = 0; q < c->max_queues; q++) {
		vq = &c->vqs[q];
		if (!vq->started) {
			continue;
		}
		if (vq->notify_off) {
			vq->notify_off = false;
			pending |= sb_vring_notify_on(&vq->vr);
			sb_vhost_vq_log_notify(vq);
		}
		pending |= vq->resubmit_pos < vq->n_resubmit || !TAILQ_EMPTY(&vq->retry);
	}
	return pending;
}

static void
_vq_poller_maybe_stop(struct sb_vhost_ctrlr *c)
{
	if (c->started_queues == 0 && c->draining_queues == 0 && c->poller != NULL) {
		sb_poller_unregister(&c->poller);
	}
}

/* ---- start ---- */

static void
_vq_start_on_reactor(void *ctx, struct sb_completion *done)
{
	struct sb_vhost_vq *vq = ctx;
	struct sb_vhost_ctrlr *c = vq->ctrlr;
	int rc;

	if (c->desc == NULL && !c->removed) {
		sb_complete(done, -ENODEV);
		return;
	}
	/* A removed bdev still runs the queue: the guest gets I/O errors, not a hang. */
	if (c->ch == NULL && !c->removed) {
		c->ch = sb_bdev_get_io_channel(c->desc);
		if (c->ch == NULL) {
			sb_complete(done, -ENOMEM);
			return;
		}
	}
	if (c->poller == NULL) {
		char name[32];

		snprintf(name, sizeof(name), "vhost_%.24s", c->name);
		c->poller = sb_poller_register(_ctrlr_poll, c, 0, name);
		if (c->poller == NULL) {
			sb_complete(done, -ENOMEM);
			return;
		}
		/* Guests kick a queue whenever the reactor may be asleep (_ctrlr_arm). */
		sb_poller_set_event_driven(c->poller, true);
		sb_poller_set_arm_fn(c->poller, _ctrlr_arm);
	}
	if (vq->kickfd >= 0) {
		/* A sleeping reactor must wake on a guest kick. */
		rc = sb_reactor_add_wake_fd(vq->kickfd, true);
		if (rc != 0) {
			SB_WARNLOG("vhost %s: queue %u kick fd not watched (%d); polling only\n",
				   c->name, vq->index, rc);
		} else {
			vq->kick_registered = true;
		}
	}
	if (!vq->kick_registered) {
		/* Nothing will wake the reactor for this queue: poll it on a timer too. */
		sb_poller_set_event_driven(c->poller, false);
	}
	vq->log_used = (vq->addr.flags & (1u << VHOST_VRING_F_LOG)) != 0;
	vq->log_used_gpa = vq->addr.log_guest_addr;
	vq->started = true;
	vq->detached = false;
	vq->coalesce = false;
	vq->call_pending = false;
	vq->notify_off = false;
	vq->win_start = sb_get_ticks();
	vq->win_count = 0;
	c->started_queues++;
	if (vq->n_resubmit > 0 && vq->run_callfd >= 0) {
		/* After recovery, tell the driver once that the ring moved on. */
		eventfd_write(vq->run_callfd, 1);
	}
	sb_complete(done, 0);
}

static void
_vq_free_tasks(struct sb_vhost_vq *vq)
{
	free(vq->tasks);
	vq->tasks = NULL;
	free(vq->resubmit);
	vq->resubmit = NULL;
	vq->n_resubmit = 0;
	vq->resubmit_pos = 0;
}

int
sb_vhost_vq_maybe_start(struct sb_vhost_vq *vq)
{
	struct sb_vhost_ctrlr *c = vq->ctrlr;
	const char *why = NULL;
	uint32_t i;
	int rc;

	if (vq->started || !vq->kick_set || !vq->addr_set || vq->num == 0 || c->mem == NULL ||
	    c->mem->nregions == 0 || c->broken) {
		return 0;
	}
	if ((c->features & (1ull << VHOST_USER_F_PROTOCOL_FEATURES)) && !vq->enabled) {
		/* vhost-user.rst "Ring states": disabled until SET_VRING_ENABLE(1). */
		return 0;
	}
	memset(&vq->vr, 0, sizeof(vq->vr));
	vq->vr.size = vq->num;
	vq->vr.last_avail_idx = vq->base;
	vq->vr.event_idx = (c->features & (1ull << VIRTIO_F_EVENT_IDX)) != 0;
	vq->vr.indirect = (c->features & (1ull << VIRTIO_F_INDIRECT_DESC)) != 0;
	rc = sb_vring_map(&vq->vr, c->mem, vq->addr.desc_user_addr, vq->addr.avail_user_addr,
			  vq->addr.used_user_addr, &why);
	if (rc != 0) {
		SB_ERRLOG("vhost %s: queue %u not started: %s\n", c->name, vq->index, why);
		return rc;
	}
	/* used->idx is ours to keep; trust the ring (it is what the driver saw). */
	vq->vr.last_used_idx = __atomic_load_n(&vq->vr.used->idx, __ATOMIC_ACQUIRE);
	vq->tasks = calloc(vq->num, sizeof(*vq->tasks));
	vq->resubmit = calloc(vq->num, sizeof(*vq->resubmit));
	if (vq->tasks == NULL || vq->resubmit == NULL) {
		_vq_free_tasks(vq);
		return -ENOMEM;
	}
	for (i = 0; i < vq->num; i++) {
		vq->tasks[i].vq = vq;
		vq->tasks[i].head = (uint16_t)i;
	}
	TAILQ_INIT(&vq->retry);
	vq->inflight = 0;
	vq->iq = NULL;
	if (c->inflight_base != NULL) {
		/* Regions are laid out with the queue size the front-end announced. */
		if (vq->num <= c->inflight_qsize && vq->index < c->inflight_nq) {
			vq->iq = sb_inflight_queue_get(c->inflight_base, c->inflight_size,
						       c->inflight_qsize, vq->index);
		}
		if (vq->iq == NULL) {
			SB_WARNLOG("vhost %s: inflight region too small for queue %u; not tracked\n",
				   c->name, vq->index);
		} else {
			rc = sb_inflight_adopt(vq->iq, &vq->vr, vq->resubmit, &vq->n_resubmit,
					       &vq->iq_counter, &why);
			if (rc != 0) {
				SB_ERRLOG("vhost %s: queue %u inflight region refused: %s\n", c->name,
					  vq->index, why ? why : "no memory");
				_vq_free_tasks(vq);
				return rc;
			}
			if (vq->n_resubmit > 0) {
				SB_NOTICELOG("vhost %s: queue %u resubmits %u inflight requests\n",
					     c->name, vq->index, vq->n_resubmit);
			}
		}
	}
	vq->run_callfd = vq->callfd;
	rc = sb_call(c->reactor, _vq_start_on_reactor, vq, SB_CALL_TIMEOUT_US);
	if (rc != 0) {
		SB_ERRLOG("vhost %s: queue %u failed to start: %d\n", c->name, vq->index, rc);
		if (rc != -ETIMEDOUT) {
			_vq_free_tasks(vq);
		}
		return rc;
	}
	SB_INFOLOG("vhost %s: queue %u started (size %u, base %u)\n", c->name, vq->index, vq->num,
		   vq->base);
	return 0;
}

/* ---- stop ---- */

/*
 * The last queue stopping while the dirty log is on is the switch-over of
 * a live migration: the destination's back-end reads the volume next, so
 * whatever this one acknowledged must be on it first (QEMU's own block
 * layer flushes its disks there too).  A flush of the bdev ends the stop.
 * A read-only controller wrote nothing, and a bdev without FLUSH has no
 * cache to write back: neither is flushed.
 */
static bool
_vq_stop_wants_flush(struct sb_vhost_vq *vq)
{
	struct sb_vhost_ctrlr *c = vq->ctrlr;

	return !vq->stop_flushed && c->started_queues == 0 && c->log_active != NULL &&
	       !c->removed && !c->readonly && c->geo.flush && c->desc != NULL &&
	       c->ch != NULL;
}

static void
_vq_stop_done(struct sb_vhost_vq *vq)
{
	struct sb_completion *done = vq->drain_done;

	vq->drain_done = NULL;
	vq->ctrlr->draining_queues--;
	_vq_poller_maybe_stop(vq->ctrlr);
	sb_complete(done, 0);
}

static void
_vq_stop_flushed(struct sb_bdev_io *io, int status, void *cb_arg)
{
	struct sb_vhost_vq *vq = cb_arg;
	struct sb_vhost_ctrlr *c = vq->ctrlr;

	sb_bdev_free_io(io);
	if (status != 0) {
		SB_ERRLOG("vhost %s: flush at the migration switch-over failed (%d): writes this "
			  "host acknowledged may not be on the volume the destination reads\n",
			  c->name, status);
	}
	c->outstanding--;
	if (vq->drain_done != NULL) {
		_vq_stop_done(vq);
	}
	if (c->removed && c->outstanding == 0) {
		sb_vhost_bdev_release(c);
	}
}

/* Start the switch-over flush; false when there is none to wait for. */
static bool
_vq_stop_flush(struct sb_vhost_vq *vq)
{
	struct sb_vhost_ctrlr *c = vq->ctrlr;
	int rc;

	if (!_vq_stop_wants_flush(vq)) {
		return false;
	}
	vq->stop_flushed = true;
	rc = sb_bdev_flush(c->desc, c->ch, _vq_stop_flushed, vq);
	if (rc != 0) {
		SB_ERRLOG("vhost %s: cannot flush at the migration switch-over (%d): writes this "
			  "host acknowledged may not be on the volume the destination reads\n",
			  c->name, rc);
		return false;
	}
	c->outstanding++;
	return true;
}

static void
_vq_stop_on_reactor(void *ctx, struct sb_completion *done)
{
	struct sb_vhost_vq *vq = ctx;
	struct sb_vhost_ctrlr *c = vq->ctrlr;

	if (!vq->started) {
		sb_complete(done, 0);
		return;
	}
	vq->started = false;
	c->started_queues--;
	if (vq->notify_off) {
		/* Leave the ring as the driver expects it from a stopped device: kicks on. */
		sb_vring_notify_on(&vq->vr);
		sb_vhost_vq_log_notify(vq);
		vq->notify_off = false;
	}
	if (vq->call_pending) {
		sb_vhost_vq_flush_call(vq);
	}
	if (vq->kick_registered) {
		sb_reactor_remove_wake_fd(vq->kickfd);
		vq->kick_registered = false;
	}
	/* Finished by the last completion (sb_vhost_task_done) or the flush. */
	vq->stop_flushed = false;
	c->draining_queues++;
	vq->drain_done = done;
	if (vq->inflight == 0) {
		sb_vhost_vq_drained(vq);
	}
}

void
sb_vhost_vq_drained(struct sb_vhost_vq *vq)
{
	if (_vq_stop_flush(vq)) {
		return; /* _vq_stop_flushed finishes the stop */
	}
	_vq_stop_done(vq);
}

static void
_vq_detach_on_reactor(void *ctx, struct sb_completion *done)
{
	struct sb_vhost_vq *vq = ctx;

	/* The front-end gave up waiting: late completions must not write the ring. */
	vq->detached = true;
	sb_complete(done, 0);
}

int
sb_vhost_vq_stop(struct sb_vhost_vq *vq)
{
	struct sb_vhost_ctrlr *c = vq->ctrlr;
	bool logging;
	int rc;

	if (!vq->started) {
		return 0;
	}
	/* While the dirty log is on the stop may end in the switch-over flush. */
	logging = __atomic_load_n(&c->log_active, __ATOMIC_ACQUIRE) != NULL;
	rc = sb_call(c->reactor, _vq_stop_on_reactor, vq,
		     logging ? SB_VHOST_SWITCHOVER_TIMEOUT_US : SB_VHOST_STOP_TIMEOUT_US);
	if (rc == -ETIMEDOUT) {
		SB_ERRLOG("vhost %s: queue %u: in-flight requests%s did not finish in time\n",
			  c->name, vq->index, logging ? " or the switch-over flush" : "");
		sb_call(c->reactor, _vq_detach_on_reactor, vq, SB_CALL_TIMEOUT_US);
		/*
		 * Requests still hold pointers into guest memory and the task
		 * array: leak both rather than let a late completion write
		 * into freed memory.
		 */
		vq->tasks = NULL;
		vq->resubmit = NULL;
		c->mem = NULL;
		vq->base = vq->vr.last_avail_idx;
		return rc;
	}
	vq->base = vq->vr.last_avail_idx;
	_vq_free_tasks(vq);
	vq->iq = NULL;
	return rc;
}

void
sb_vhost_pause_all(struct sb_vhost_ctrlr *c, uint32_t *mask)
{
	uint16_t q;

	*mask = 0;
	for (q = 0; q < c->max_queues; q++) {
		if (c->vqs[q].started) {
			*mask |= 1u << q;
			sb_vhost_vq_stop(&c->vqs[q]);
		}
	}
}

void
sb_vhost_resume(struct sb_vhost_ctrlr *c, uint32_t mask)
{
	uint16_t q;

	for (q = 0; q < c->max_queues; q++) {
		if (mask & (1u << q)) {
			sb_vhost_vq_maybe_start(&c->vqs[q]);
		}
	}
}

struct _set_call_ctx {
	struct sb_vhost_vq *vq;
	int fd;
};

static void
_vq_set_call_on_reactor(void *ctx, struct sb_completion *done)
{
	struct _set_call_ctx *sc = ctx;

	sc->vq->run_callfd = sc->fd;
	sb_complete(done, 0);
}

int
sb_vhost_vq_set_call(struct sb_vhost_vq *vq, int fd)
{
	struct _set_call_ctx *sc;
	int rc;

	if (!vq->started && vq->drain_done == NULL) {
		vq->run_callfd = fd;
		return 0;
	}
	sc = malloc(sizeof(*sc));
	if (sc == NULL) {
		return -ENOMEM;
	}
	sc->vq = vq;
	sc->fd = fd;
	rc = sb_call(vq->ctrlr->reactor, _vq_set_call_on_reactor, sc, SB_CALL_TIMEOUT_US);
	if (rc != -ETIMEDOUT) {
		free(sc);
	}
	return rc;
}

static void
_vq_set_log_on_reactor(void *ctx, struct sb_completion *done)
{
	struct sb_vhost_vq *vq = ctx;

	/* vq->addr was written by the control thread before this message was sent. */
	vq->log_used = (vq->addr.flags & (1u << VHOST_VRING_F_LOG)) != 0;
	vq->log_used_gpa = vq->addr.log_guest_addr;
	sb_complete(done, 0);
}

int
sb_vhost_vq_set_log(struct sb_vhost_vq *vq)
{
	if (!vq->started) {
		/* Read at the next start. */
		return 0;
	}
	return sb_call(vq->ctrlr->reactor, _vq_set_log_on_reactor, vq, SB_CALL_TIMEOUT_US);
}

static void
_barrier_on_reactor(void *ctx, struct sb_completion *done)
{
	sb_complete(done, 0);
}

int
sb_vhost_reactor_barrier(struct sb_vhost_ctrlr *c)
{
	if (c->reactor == NULL) {
		return 0;
	}
	return sb_call(c->reactor, _barrier_on_reactor, NULL, SB_CALL_TIMEOUT_US);
}

/* ---- bdev ---- */

static void
_bdev_event(enum sb_bdev_event_type type, struct sb_bdev *bdev, void *event_ctx)
{
	struct sb_vhost_ctrlr *c = event_ctx;

	switch (type) {
	case SB_BDEV_EVENT_RESIZE:
		SB_NOTICELOG("vhost %s: bdev %s resized to %" PRIu64 " blocks\n", c->name,
			     sb_bdev_get_name(bdev), sb_bdev_get_num_blocks(bdev));
		c->geo.num_blocks = sb_bdev_get_num_blocks(bdev);
		__atomic_store_n(&c->pending_config_change, 1, __ATOMIC_RELEASE);
		sb_vhost_ctl_wake();
		break;
	case SB_BDEV_EVENT_REMOVE:
		SB_WARNLOG("vhost %s: bdev %s hot-removed; guest I/O now fails\n", c->name,
			   sb_bdev_get_name(bdev));
		c->removed = true;
		if (c->outstanding == 0) {
			sb_vhost_bdev_release(c);
		}
		break;
	}
}

void
sb_vhost_bdev_release(struct sb_vhost_ctrlr *c)
{
	if (c->ch != NULL) {
		sb_put_io_channel(c->ch);
		c->ch = NULL;
	}
	if (c->desc != NULL) {
		sb_bdev_close(c->desc);
		c->desc = NULL;
	}
}

static void
_bdev_open_on_reactor(void *ctx, struct sb_completion *done)
{
	struct sb_vhost_ctrlr *c = ctx;
	char owner[SB_VHOST_NAME_MAX + 16];
	int rc;

	rc = sb_bdev_open(c->bdev_name, !c->readonly, _bdev_event, c, &c->desc);
	if (rc != 0) {
		goto out;
	}
	if (!c->readonly) {
		snprintf(owner, sizeof(owner), "vhost_blk:%s", c->name);
		rc = sb_bdev_claim(c->desc, owner);
		if (rc != 0) {
			sb_bdev_close(c->desc);
			c->desc = NULL;
			goto out;
		}
	}
	c->bdev = sb_bdev_desc_get_bdev(c->desc);
	c->geo.num_blocks = sb_bdev_get_num_blocks(c->bdev);
	c->geo.block_size = sb_bdev_get_block_size(c->bdev);
	c->geo.phys_block_size = sb_bdev_get_physical_block_size(c->bdev);
	c->geo.flush = sb_bdev_io_type_supported(c->bdev, SB_BDEV_IO_FLUSH);
	c->geo.discard = sb_bdev_io_type_supported(c->bdev, SB_BDEV_IO_UNMAP);
	c->geo.write_zeroes = sb_bdev_io_type_supported(c->bdev, SB_BDEV_IO_WRITE_ZEROES);
	c->geo.readonly = c->readonly;
	c->geo.num_queues = c->max_queues;
out:
	sb_complete(done, rc);
}

int
sb_vhost_bdev_open(struct sb_vhost_ctrlr *c)
{
	return sb_call(c->reactor, _bdev_open_on_reactor, c, SB_CALL_TIMEOUT_US);
}

static void
_bdev_close_on_reactor(void *ctx, struct sb_completion *done)
{
	struct sb_vhost_ctrlr *c = ctx;

	if (c->poller != NULL) {
		sb_poller_unregister(&c->poller);
	}
	sb_vhost_bdev_release(c);
	sb_complete(done, 0);
}

void
sb_vhost_bdev_close(struct sb_vhost_ctrlr *c)
{
	sb_call(c->reactor, _bdev_close_on_reactor, c, SB_CALL_TIMEOUT_US);
}
