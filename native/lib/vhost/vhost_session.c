/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Queue start/stop and the controller's pollers.  A controller's queues
 * spread over the reactors of its cpumask (queue q on slot q % nslots, in
 * mask order).  The control thread prepares a queue while it is stopped,
 * then hands it to the queue's reactor with sb_call(); from then on only
 * that reactor touches the ring until a stop message (which waits for
 * in-flight requests) gives it back.  Each reactor has one poller per
 * controller, over the queues it owns, and its own bdev channel.
 *
 * Every such call goes through _reactor_call(): when a reactor does not
 * answer in time, the call still runs there later, so the controller is
 * parked (vhost_park.c) and nothing the reactor may touch is freed until
 * it caught up (_catchup_on_reactor).
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

void
sb_vhost_dev_break(struct sb_vhost_ctrlr *c, const char *why)
{
	/*
	 * Stop polling but keep the session: cutting it would make QEMU
	 * reconnect and replay the same bad ring forever.  In-flight
	 * requests still complete.  Any reactor of c may get here.
	 */
	if (!__atomic_exchange_n(&c->broken, true, __ATOMIC_RELAXED)) {
		SB_ERRLOG("vhost controller %s: guest violation, queues stopped: %s\n", c->name, why);
	}
}

/*
 * The one way the control thread runs work on a reactor of c.  A call the
 * reactor did not answer in time is still queued there, with every
 * pointer into c it carries: c is parked.  A parked controller makes no
 * more calls (-EIO) until it recovered.
 */
static int
_reactor_call(struct sb_vhost_ctrlr *c, struct sb_reactor *r, sb_call_fn fn, void *ctx,
	      uint64_t timeout_us, const char *what)
{
	int rc;

	if (c->parked) {
		return -EIO;
	}
	rc = sb_call(r, fn, ctx, timeout_us);
	if (rc == -SB_EWAITER_GAVE_UP) {
		sb_vhost_park(c, what);
		return -ETIMEDOUT;
	}
	return rc;
}

static bool
_broken(const struct sb_vhost_ctrlr *c)
{
	return __atomic_load_n(&c->broken, __ATOMIC_RELAXED);
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

/*
 * Packed inflight tracking: the task of buffer id head completes through
 * region entry entry.  A busy task is the driver reusing an id in flight:
 * left to sb_vhost_blk_handle to refuse, the entry is not recorded.
 */
static bool
_vq_task_entry(struct sb_vhost_vq *vq, uint16_t head, uint16_t entry, const char **why)
{
	if (vq->tasks[head].busy) {
		*why = "buffer id made available twice while in flight";
		return false;
	}
	vq->tasks[head].iq_entry = entry;
	return true;
}

static int
_vq_poll(struct sb_vhost_vq *vq)
{
	struct sb_vhost_ctrlr *c = vq->ctrlr;
	const char *why = NULL;
	uint16_t head, ndesc, entry;
	int n, i, work = 0;

	if (vq->started) {
		/*
		 * What completed since the last run goes to the driver first, with
		 * one used->idx store (the call may wait for coalescing).
		 */
		sb_vhost_vq_publish(vq);
		_vq_coalesce(vq);
	}

	if (!TAILQ_EMPTY(&vq->retry)) {
		sb_vhost_blk_retry(vq);
		work = 1;
	}
	if (!vq->started || _broken(c)) {
		return work;
	}
	if (!vq->notify_off) {
		/* The reactor is awake: no kicks until it is about to sleep (_slot_arm). */
		sb_vq_notify_off(&vq->vr);
		sb_vhost_vq_log_notify(vq);
		vq->notify_off = true;
	}
	while (vq->resubmit_pos < vq->n_resubmit) {
		/* Inflight recovery: these were fetched by a previous process. */
		head = vq->resubmit[vq->resubmit_pos++];
		ndesc = 1;
		if (vq->iqp != NULL) {
			/* Packed: the buffer's descriptors come from the region's copies. */
			entry = head;
			if (sb_inflight_packed_load(vq->iqp, &vq->vr, entry, &head, &ndesc,
						    &why) != 0 ||
			    !_vq_task_entry(vq, head, entry, &why)) {
				sb_vhost_dev_break(c, why);
				return 1;
			}
		}
		if (!sb_vhost_blk_handle(vq, head, ndesc)) {
			return 1;
		}
		work = 1;
	}
	for (i = 0; i < SB_VHOST_POLL_BATCH; i++) {
		/*
		 * Split rings: what the driver had published at the first look
		 * (one load of avail->idx), not what it adds while we work.  A
		 * driver that fills the ring one request at a time gets the first
		 * ones back, and can reap them, while the rest are still coming;
		 * draining as it adds would return its whole queue depth at once
		 * and leave it asleep for all of it.
		 */
		n = i == 0 ? sb_vq_pop(&vq->vr, &head, &ndesc, &why) :
		    sb_vq_pop_seen(&vq->vr, &head, &ndesc, &why);
		if (n < 0) {
			sb_vhost_dev_break(c, why);
			return 1;
		}
		if (n == 0) {
			break;
		}
		if (vq->iq != NULL) {
			sb_inflight_fetch(vq->iq, head, vq->iq_counter++);
		} else if (vq->iqp != NULL &&
			   (sb_inflight_packed_fetch(vq->iqp, &vq->vr, vq->iq_counter++, &entry,
						     &why) != 0 ||
			    !_vq_task_entry(vq, head, entry, &why))) {
			sb_vhost_dev_break(c, why);
			return 1;
		}
		if (!sb_vhost_blk_handle(vq, head, ndesc)) {
			return 1;
		}
		work = 1;
	}
	/* Requests that completed inline (refused ones) are published now. */
	sb_vhost_vq_publish(vq);
	if (vq->call_pending && !vq->coalesce) {
		sb_vhost_vq_flush_call(vq);
	}
	return work;
}

/* The queues of one slot: q = s->index, s->index + nslots, ... (only its reactor looks). */
#define _FOREACH_SLOT_VQ(s, q)                                                           \
	for ((q) = (s)->index; (q) < (s)->ctrlr->max_queues; (q) += (s)->ctrlr->nslots)

static int
_slot_poll(void *ctx)
{
	struct sb_vhost_rslot *s = ctx;
	struct sb_vhost_ctrlr *c = s->ctrlr;
	int busy = 0;
	uint16_t q;

	_FOREACH_SLOT_VQ(s, q) {
		if (c->vqs[q].started || !TAILQ_EMPTY(&c->vqs[q].retry)) {
			busy |= _vq_poll(&c->vqs[q]);
			/* A coalesced call has a deadline: keep the reactor awake for it. */
			busy |= c->vqs[q].call_pending;
		}
	}
	return busy ? SB_POLLER_BUSY : SB_POLLER_IDLE;
}

/* This reactor is about to sleep: kicks back on for every queue it polls. */
static bool
_slot_arm(void *ctx)
{
	struct sb_vhost_rslot *s = ctx;
	struct sb_vhost_ctrlr *c = s->ctrlr;
	struct sb_vhost_vq *vq;
	bool pending = false;
	uint16_t q;

	if (_broken(c)) {
		return false;
	}
	_FOREACH_SLOT_VQ(s, q) {
		vq = &c->vqs[q];
		if (!vq->started) {
			continue;
		}
		/*
		 * Nothing put is left unpublished while the reactor sleeps (the
		 * poller publishes every run, so this finds nothing); should it
		 * find some, the reactor stays up for the call decision.  A broken
		 * device returned above: its queues' pollers run again after a
		 * pass with work, and publish at their top.
		 */
		pending |= sb_vhost_vq_publish(vq);
		if (vq->notify_off) {
			vq->notify_off = false;
			pending |= sb_vq_notify_on(&vq->vr);
			sb_vhost_vq_log_notify(vq);
		}
		pending |= vq->resubmit_pos < vq->n_resubmit || !TAILQ_EMPTY(&vq->retry);
	}
	return pending;
}

static void
_slot_poller_maybe_stop(struct sb_vhost_rslot *s)
{
	if (s->started_queues == 0 && s->draining_queues == 0 && s->poller != NULL) {
		sb_poller_unregister(&s->poller);
	}
}

/* ---- start ---- */

static void
_vq_start_on_reactor(void *ctx, struct sb_completion *done)
{
	struct sb_vhost_vq *vq = ctx;
	struct sb_vhost_ctrlr *c = vq->ctrlr;
	struct sb_vhost_rslot *s = vq->slot;
	int rc;

	/* Until this slot saw a hot-remove, the home reactor keeps the descriptor open. */
	if (!s->removed && c->desc == NULL) {
		sb_complete(done, -ENODEV);
		return;
	}
	/* A removed bdev still runs the queue: the guest gets I/O errors, not a hang. */
	if (s->ch == NULL && !s->removed) {
		s->ch = sb_bdev_get_io_channel(c->desc);
		if (s->ch == NULL) {
			sb_complete(done, -ENOMEM);
			return;
		}
	}
	if (s->poller == NULL) {
		char name[32];

		snprintf(name, sizeof(name), "vhost_%.24s", c->name);
		s->poller = sb_poller_register(_slot_poll, s, 0, name);
		if (s->poller == NULL) {
			sb_complete(done, -ENOMEM);
			return;
		}
		/* Guests kick a queue whenever its reactor may be asleep (_slot_arm). */
		sb_poller_set_event_driven(s->poller, true);
		sb_poller_set_arm_fn(s->poller, _slot_arm);
	}
	if (vq->kickfd >= 0) {
		/* A sleeping reactor must wake on a guest kick. */
		rc = sb_reactor_add_wake_fd(vq->kickfd, true);
		if (rc != 0) {
			SB_WARNLOG("vhost %s: queue %u kick fd not watched (%d); polling only\n",
				   c->name, vq->index, rc);
		} else {
			vq->kick_registered = true;
			vq->kick_wake_fd = vq->kickfd;
		}
	}
	if (!vq->kick_registered) {
		/* Nothing will wake the reactor for this queue: poll it on a timer too. */
		sb_poller_set_event_driven(s->poller, false);
	}
	vq->log_used = (vq->addr.flags & (1u << VHOST_VRING_F_LOG)) != 0;
	vq->log_used_gpa = vq->addr.log_guest_addr;
	vq->started = true;
	vq->draining = false;
	vq->detached = false;
	vq->coalesce = false;
	vq->call_pending = false;
	vq->notify_off = false;
	vq->win_start = sb_get_ticks();
	vq->win_count = 0;
	s->started_queues++;
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
	free(vq->vr.scratch);
	vq->vr.scratch = NULL;
	free(vq->resubmit);
	vq->resubmit = NULL;
	free(vq->batch);
	vq->batch = NULL;
	vq->n_batch = 0;
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

	if (c->parked) {
		return -EIO;
	}
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
	vq->vr.packed = (c->features & (1ull << VIRTIO_F_RING_PACKED)) != 0;
	vq->vr.event_idx = (c->features & (1ull << VIRTIO_F_EVENT_IDX)) != 0;
	vq->vr.indirect = (c->features & (1ull << VIRTIO_F_INDIRECT_DESC)) != 0;
	rc = sb_vq_map(&vq->vr, c->mem, vq->addr.desc_user_addr, vq->addr.avail_user_addr,
		       vq->addr.used_user_addr, &why);
	if (rc == 0 && vq->vr.packed) {
		/* Packed: both indexes and wrap counters come from SET_VRING_BASE. */
		rc = sb_vring_packed_set_base(&vq->vr, vq->base, &why);
		vq->log_desc = sb_vhost_va_to_gpa(c->mem, vq->vr.pdesc, &vq->log_desc_gpa) == 0;
	}
	if (rc != 0) {
		SB_ERRLOG("vhost %s: queue %u not started: %s\n", c->name, vq->index, why);
		return rc;
	}
	if (!vq->vr.packed) {
		vq->vr.last_avail_idx = (uint16_t)vq->base;
		/* used->idx is ours to keep; trust the ring (it is what the driver saw). */
		vq->vr.last_used_idx = __atomic_load_n(&vq->vr.used->idx, __ATOMIC_ACQUIRE);
	}
	vq->tasks = calloc(vq->num, sizeof(*vq->tasks));
	vq->resubmit = calloc(vq->num, sizeof(*vq->resubmit));
	vq->batch = calloc(vq->num, sizeof(*vq->batch));
	vq->n_batch = 0;
	if (vq->vr.packed) {
		vq->vr.scratch = calloc(vq->num, sizeof(*vq->vr.scratch));
	}
	if (vq->tasks == NULL || vq->resubmit == NULL || vq->batch == NULL ||
	    (vq->vr.packed && vq->vr.scratch == NULL)) {
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
	vq->iqp = NULL;
	if (c->inflight_base != NULL && vq->vr.packed) {
		/* The packed layout, laid out with the queue size the front-end announced. */
		if (vq->num <= c->inflight_qsize && vq->index < c->inflight_nq) {
			vq->iqp = sb_inflight_packed_queue_get(c->inflight_base, c->inflight_size,
							       c->inflight_qsize, vq->index);
		}
		if (vq->iqp == NULL) {
			SB_WARNLOG("vhost %s: inflight region too small for packed queue %u; "
				   "not tracked\n", c->name, vq->index);
		} else {
			rc = sb_inflight_packed_adopt(vq->iqp, &vq->vr, vq->resubmit,
						      &vq->n_resubmit, &vq->iq_counter, &why);
			if (rc != 0) {
				SB_ERRLOG("vhost %s: queue %u inflight region refused: %s\n",
					  c->name, vq->index, why ? why : "no memory");
				_vq_free_tasks(vq);
				return rc;
			}
			if (vq->n_resubmit > 0) {
				SB_NOTICELOG("vhost %s: queue %u resubmits %u inflight requests\n",
					     c->name, vq->index, vq->n_resubmit);
			}
		}
	} else if (c->inflight_base != NULL) {
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
	rc = _reactor_call(c, vq->slot->reactor, _vq_start_on_reactor, vq, SB_CALL_TIMEOUT_US,
			   "queue start");
	if (rc != 0) {
		SB_ERRLOG("vhost %s: queue %u failed to start: %d\n", c->name, vq->index, rc);
		if (!c->parked) {
			/* Parked: the start may still run; the tasks go when c recovers. */
			_vq_free_tasks(vq);
		}
		return rc;
	}
	SB_INFOLOG("vhost %s: queue %u started on reactor core %u (size %u, base %u)\n", c->name,
		   vq->index, sb_reactor_core(vq->slot->reactor), vq->num, vq->base);
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
	struct sb_vhost_rslot *s = vq->slot;

	/*
	 * stop_last: the control thread saw no other queue of c started (the
	 * others, on any reactor, were stopped and drained before this stop
	 * was sent).  One flush covers every channel: the backends flush the
	 * file or image, not a channel (uring: fdatasync; rbd: one image).
	 */
	return !vq->stop_flushed && vq->stop_last &&
	       __atomic_load_n(&c->log_active, __ATOMIC_ACQUIRE) != NULL && !s->removed &&
	       !c->readonly && c->geo.flush && c->desc != NULL && s->ch != NULL;
}

static void _catchup_check(struct sb_vhost_rslot *s);

static void
_vq_stop_done(struct sb_vhost_vq *vq)
{
	struct sb_completion *done = vq->drain_done;

	vq->drain_done = NULL;
	vq->draining = false;
	vq->slot->draining_queues--;
	_slot_poller_maybe_stop(vq->slot);
	/* NULL for a stop by the catch-up; a waiter that gave up only frees it. */
	sb_complete(done, 0);
	_catchup_check(vq->slot);
}

static void
_vq_stop_flushed(struct sb_bdev_io *io, int status, void *cb_arg)
{
	struct sb_vhost_vq *vq = cb_arg;
	struct sb_vhost_ctrlr *c = vq->ctrlr;
	struct sb_vhost_rslot *s = vq->slot;

	sb_bdev_free_io(io);
	if (status != 0) {
		SB_ERRLOG("vhost %s: flush at the migration switch-over failed (%d): writes this "
			  "host acknowledged may not be on the volume the destination reads\n",
			  c->name, status);
	}
	s->outstanding--;
	if (vq->draining) {
		_vq_stop_done(vq);
	}
	if (s->removed && s->outstanding == 0) {
		sb_vhost_slot_release(s);
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
	rc = sb_bdev_flush(c->desc, vq->slot->ch, _vq_stop_flushed, vq);
	if (rc != 0) {
		SB_ERRLOG("vhost %s: cannot flush at the migration switch-over (%d): writes this "
			  "host acknowledged may not be on the volume the destination reads\n",
			  c->name, rc);
		return false;
	}
	vq->slot->outstanding++;
	return true;
}

/* Stop a started queue; done (may be NULL) completes once it drained. */
static void
_vq_stop_begin(struct sb_vhost_vq *vq, struct sb_completion *done)
{
	struct sb_vhost_rslot *s = vq->slot;

	vq->started = false;
	s->started_queues--;
	if (vq->notify_off) {
		/* Leave the ring as the driver expects it from a stopped device: kicks on. */
		sb_vq_notify_on(&vq->vr);
		sb_vhost_vq_log_notify(vq);
		vq->notify_off = false;
	}
	/* Completions still to publish go to the driver before the ring is given back. */
	sb_vhost_vq_publish(vq);
	if (vq->call_pending) {
		sb_vhost_vq_flush_call(vq);
	}
	if (vq->kick_registered) {
		sb_reactor_remove_wake_fd(vq->kick_wake_fd);
		vq->kick_registered = false;
	}
	/* Finished by the last completion (sb_vhost_task_done) or the flush. */
	vq->stop_flushed = false;
	s->draining_queues++;
	vq->draining = true;
	vq->drain_done = done;
	if (vq->inflight == 0) {
		sb_vhost_vq_drained(vq);
	}
}

static void
_vq_stop_on_reactor(void *ctx, struct sb_completion *done)
{
	struct sb_vhost_vq *vq = ctx;

	if (!vq->started) {
		sb_complete(done, 0);
		return;
	}
	_vq_stop_begin(vq, done);
}

void
sb_vhost_vq_drained(struct sb_vhost_vq *vq)
{
	if (_vq_stop_flush(vq)) {
		return; /* _vq_stop_flushed finishes the stop */
	}
	_vq_stop_done(vq);
}

int
sb_vhost_vq_stop(struct sb_vhost_vq *vq)
{
	struct sb_vhost_ctrlr *c = vq->ctrlr;
	bool logging;
	uint16_t q;
	int rc;

	if (c->parked) {
		/* The queue is the reactor's until the catch-up stopped it. */
		return -EIO;
	}
	if (!vq->started) {
		return 0;
	}
	/*
	 * While the dirty log is on the stop may end in the switch-over flush,
	 * if it is the last queue: the others' started flags are only changed
	 * by this thread's calls, which have all completed.
	 */
	logging = __atomic_load_n(&c->log_active, __ATOMIC_ACQUIRE) != NULL;
	vq->stop_last = true;
	for (q = 0; q < c->max_queues; q++) {
		if (q != vq->index && c->vqs[q].started) {
			vq->stop_last = false;
		}
	}
	rc = _reactor_call(c, vq->slot->reactor, _vq_stop_on_reactor, vq,
			   logging ? SB_VHOST_SWITCHOVER_TIMEOUT_US : SB_VHOST_STOP_TIMEOUT_US,
			   "queue stop");
	if (rc != 0) {
		/*
		 * Parked: requests still hold pointers into guest memory and the
		 * task array, which stay until the reactor caught up.
		 */
		SB_ERRLOG("vhost %s: queue %u: in-flight requests%s did not finish in time\n",
			  c->name, vq->index, logging ? " or the switch-over flush" : "");
		return rc;
	}
	vq->base = vq->vr.packed ? sb_vring_packed_get_base(&vq->vr) : vq->vr.last_avail_idx;
	_vq_free_tasks(vq);
	vq->iq = NULL;
	vq->iqp = NULL;
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

	if (vq->ctrlr->parked) {
		return -EIO;
	}
	if (!vq->started && !vq->draining) {
		vq->run_callfd = fd;
		return 0;
	}
	sc = malloc(sizeof(*sc));
	if (sc == NULL) {
		return -ENOMEM;
	}
	sc->vq = vq;
	sc->fd = fd;
	rc = _reactor_call(vq->ctrlr, vq->slot->reactor, _vq_set_call_on_reactor, sc,
			   SB_CALL_TIMEOUT_US, "call fd swap");
	if (vq->ctrlr->parked) {
		/* The swap may still run: sc (and fd, see the caller) stay until then. */
		sb_vhost_release_ptr(vq->ctrlr, sc);
	} else {
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
	if (vq->ctrlr->parked) {
		return -EIO;
	}
	if (!vq->started) {
		/* Read at the next start. */
		return 0;
	}
	return _reactor_call(vq->ctrlr, vq->slot->reactor, _vq_set_log_on_reactor, vq,
			     SB_CALL_TIMEOUT_US, "dirty log switch");
}

static void
_barrier_on_reactor(void *ctx, struct sb_completion *done)
{
	sb_complete(done, 0);
}

int
sb_vhost_reactor_barrier(struct sb_vhost_ctrlr *c)
{
	uint16_t i;
	int rc;

	/* Every reactor that may hold what the caller replaces (a queue of c runs there). */
	for (i = 0; i < c->nslots; i++) {
		rc = _reactor_call(c, c->slots[i].reactor, _barrier_on_reactor, NULL,
				   SB_CALL_TIMEOUT_US, "barrier");
		if (rc != 0) {
			return rc;
		}
	}
	return 0;
}

/* ---- reactors of a controller ---- */

int
sb_vhost_slots_init(struct sb_vhost_ctrlr *c, const char *cpumask)
{
	uint32_t cores[SB_MAX_REACTORS], count = 0, i;
	struct sb_reactor *r;
	uint16_t n = 0, q, k;
	bool dup;

	if (cpumask == NULL || cpumask[0] == '\0') {
		r = sb_reactor_get(0);
		if (r == NULL) {
			return -ESHUTDOWN;
		}
		c->slots[n++].reactor = r;
	} else {
		if (sb_parse_core_mask(cpumask, cores, SB_MAX_REACTORS, &count) != 0) {
			return -EINVAL;
		}
		/* Mask order (ascending cores); CPUs without a reactor are skipped, as before. */
		for (i = 0; i < count && n < c->max_queues && n < SB_VHOST_MAX_QUEUES; i++) {
			r = sb_reactor_get_by_core(cores[i]);
			dup = false;
			for (k = 0; k < n; k++) {
				dup |= c->slots[k].reactor == r;
			}
			if (r != NULL && !dup) {
				c->slots[n++].reactor = r;
			}
		}
		if (n == 0) {
			return -EINVAL;
		}
	}
	for (k = 0; k < n; k++) {
		c->slots[k].ctrlr = c;
		c->slots[k].index = k;
	}
	c->nslots = n;
	c->reactor = c->slots[0].reactor;
	for (q = 0; q < SB_VHOST_MAX_QUEUES; q++) {
		c->vqs[q].slot = &c->slots[q % n];
	}
	return 0;
}

uint64_t
sb_vhost_completed_ios(const struct sb_vhost_ctrlr *c)
{
	uint64_t sum = 0;
	uint16_t i;

	for (i = 0; i < c->nslots; i++) {
		sum += __atomic_load_n(&c->slots[i].completed_ios, __ATOMIC_RELAXED);
	}
	return sum;
}

/* ---- bdev ---- */

/*
 * Hot-remove, with queues on several reactors: the event comes to the home
 * reactor (which opened the descriptor); each slot's reactor learns it by
 * message, stops submitting, and once its own in-flight I/O is done puts
 * its channel and tells the home reactor, which closes the descriptor
 * after the last slot: no reactor can use it after that.
 */

/* Home reactor: one more slot let go of the descriptor. */
static void
_slot_released_on_home(void *ctx)
{
	struct sb_vhost_ctrlr *c = ctx;

	c->slots_released++;
	if (c->slots_released == c->nslots && c->desc != NULL) {
		sb_bdev_close(c->desc);
		c->desc = NULL;
	}
}

void
sb_vhost_slot_release(struct sb_vhost_rslot *s)
{
	struct sb_vhost_ctrlr *c = s->ctrlr;

	if (s->released) {
		return;
	}
	s->released = true;
	if (s->ch != NULL) {
		sb_put_io_channel(s->ch);
		s->ch = NULL;
	}
	if (s->index == 0) {
		_slot_released_on_home(c);
	} else if (sb_send_msg(c->reactor, _slot_released_on_home, c) != 0) {
		/* The descriptor then stays open until the controller is deleted. */
		SB_ERRLOG("vhost %s: cannot reach the home reactor after a hot-remove\n", c->name);
	}
}

/* A slot's reactor: the bdev is gone. */
static void
_slot_remove(void *ctx)
{
	struct sb_vhost_rslot *s = ctx;

	s->removed = true;
	if (s->outstanding == 0) {
		sb_vhost_slot_release(s);
	}
}

static void
_bdev_event(enum sb_bdev_event_type type, struct sb_bdev *bdev, void *event_ctx)
{
	struct sb_vhost_ctrlr *c = event_ctx;
	uint16_t i;

	switch (type) {
	case SB_BDEV_EVENT_RESIZE:
		SB_NOTICELOG("vhost %s: bdev %s resized to %" PRIu64 " blocks\n", c->name,
			     sb_bdev_get_name(bdev), sb_bdev_get_num_blocks(bdev));
		/* Read by the reactors of every queue (_to_blocks). */
		__atomic_store_n(&c->geo.num_blocks, sb_bdev_get_num_blocks(bdev), __ATOMIC_RELAXED);
		__atomic_store_n(&c->pending_config_change, 1, __ATOMIC_RELEASE);
		sb_vhost_ctl_wake();
		break;
	case SB_BDEV_EVENT_REMOVE:
		SB_WARNLOG("vhost %s: bdev %s hot-removed; guest I/O now fails\n", c->name,
			   sb_bdev_get_name(bdev));
		/* Slots after the first are told by message, unless the controller is
		 * being deleted (sb_vhost_bdev_close puts their channels itself). */
		for (i = 1; i < c->nslots && !c->closing; i++) {
			if (sb_send_msg(c->slots[i].reactor, _slot_remove, &c->slots[i]) != 0) {
				SB_ERRLOG("vhost %s: cannot tell reactor core %u of the hot-remove\n",
					  c->name, sb_reactor_core(c->slots[i].reactor));
			}
		}
		_slot_remove(&c->slots[0]);
		break;
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
	c->geo.packed = c->packed_ring;
out:
	sb_complete(done, rc);
}

int
sb_vhost_bdev_open(struct sb_vhost_ctrlr *c)
{
	return _reactor_call(c, c->reactor, _bdev_open_on_reactor, c, SB_CALL_TIMEOUT_US,
			     "bdev open");
}

static void
_close_begin_on_home(void *ctx, struct sb_completion *done)
{
	struct sb_vhost_ctrlr *c = ctx;

	/* From here a hot-remove sends no message that could outlive c. */
	c->closing = true;
	sb_complete(done, 0);
}

static void
_close_slot_on_reactor(void *ctx, struct sb_completion *done)
{
	struct sb_vhost_rslot *s = ctx;
	struct sb_vhost_ctrlr *c = s->ctrlr;

	if (s->poller != NULL) {
		sb_poller_unregister(&s->poller);
	}
	if (s->ch != NULL) {
		sb_put_io_channel(s->ch);
		s->ch = NULL;
	}
	s->released = true;
	if (s->index == 0 && c->desc != NULL) {
		sb_bdev_close(c->desc);
		c->desc = NULL;
	}
	sb_complete(done, 0);
}

int
sb_vhost_bdev_close(struct sb_vhost_ctrlr *c)
{
	uint16_t i;
	int rc;

	if (c->nslots == 0) {
		return 0;
	}
	/*
	 * The home reactor first stops fanning out a hot-remove; then every
	 * other slot (a removal message the home sent before is ahead of ours
	 * in that reactor's ring, and its answer to the home ahead of our last
	 * call); the home last, which closes the descriptor.
	 */
	rc = _reactor_call(c, c->reactor, _close_begin_on_home, c, SB_CALL_TIMEOUT_US, "bdev close");
	for (i = 1; i < c->nslots && rc == 0; i++) {
		rc = _reactor_call(c, c->slots[i].reactor, _close_slot_on_reactor, &c->slots[i],
				   SB_CALL_TIMEOUT_US, "bdev close");
	}
	if (rc == 0) {
		rc = _reactor_call(c, c->reactor, _close_slot_on_reactor, &c->slots[0],
				   SB_CALL_TIMEOUT_US, "bdev close");
	}
	return rc;
}

/* ---- catch-up of a parked controller (vhost_park.c) ---- */

/* This slot's reactor: once no queue of c runs or drains here, tell the control thread. */
static void
_catchup_check(struct sb_vhost_rslot *s)
{
	struct sb_vhost_ctrlr *c = s->ctrlr;

	if (!s->catching_up || s->started_queues > 0 || s->draining_queues > 0) {
		return;
	}
	s->catching_up = false;
	_slot_poller_maybe_stop(s);
	__atomic_add_fetch(&c->slots_caught_up, 1, __ATOMIC_RELEASE);
	sb_vhost_ctl_wake();
}

/*
 * Runs after every call the control thread gave up on (messages to one
 * reactor run in order): stop the queues the control thread could not
 * stop, keep completions off the rings, wait for in-flight requests.
 */
static void
_catchup_on_reactor(void *ctx)
{
	struct sb_vhost_rslot *s = ctx;
	struct sb_vhost_ctrlr *c = s->ctrlr;
	struct sb_vhost_vq *vq;
	uint16_t q;

	_FOREACH_SLOT_VQ(s, q) {
		vq = &c->vqs[q];
		if (vq->started) {
			/* What was completed before the park reaches the ring, as it did one by one. */
			sb_vhost_vq_publish(vq);
		}
		vq->detached = true;
		if (vq->started) {
			_vq_stop_begin(vq, NULL);
		}
	}
	s->catching_up = true;
	_catchup_check(s);
}

void
sb_vhost_catchup_send(struct sb_vhost_ctrlr *c)
{
	int rc;

	while (c->catchup_sent < c->nslots) {
		rc = sb_send_msg(c->slots[c->catchup_sent].reactor, _catchup_on_reactor,
				 &c->slots[c->catchup_sent]);
		if (rc != 0) {
			/* The ring is full: the control loop tries again. */
			return;
		}
		c->catchup_sent++;
	}
}

void
sb_vhost_vq_forget(struct sb_vhost_vq *vq)
{
	_vq_free_tasks(vq);
	vq->iq = NULL;
	vq->iqp = NULL;
}
