/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-bdev QoS (SPDK's bdev_set_qos_limit) without locks on the I/O path.
 *
 * As in SPDK, one reactor owns the QoS state of a bdev: the first reactor
 * that submits a rate-limited I/O wins it with a compare-and-swap, takes its
 * own channel of the backend and starts a 1 ms poller.  Every other reactor
 * forwards its READ/WRITE I/O to the owner by message; the owner dispatches
 * them in FIFO order as the token buckets allow, and the completion goes
 * back to the submitting reactor (sb_bdev_io_complete routes it).
 *
 * Buckets refill continuously from the tick counter with the whole elapsed
 * time (not once per slice, so a late poller loses no budget); an idle one
 * holds at most SB_QOS_BURST_US of credit (the burst allowed after idling)
 * and may go into debt by one I/O, which the following refills pay back.  Other I/O types
 * are not limited (as in SPDK, where they do not consume byte budgets).
 */
#include "bdev_internal.h"

#include <errno.h>
#include <stdlib.h>

#define SB_QOS_TIMESLICE_US 1000ULL
/*
 * Credit a bucket without backlog may hold.  A sleeping reactor runs the
 * 1 ms poller up to a millisecond late and a busy host deschedules it for
 * longer; a cap of one slice would then throw budget away (a closed-loop
 * client gets far less than its limit).  Ten slices bound the burst after
 * idling to 10 ms of the rate, noise over the seconds a limit is judged on.
 */
#define SB_QOS_BURST_US (10 * SB_QOS_TIMESLICE_US)
/* Tokens are micro-units (1e-6 I/O or byte) so slow rates refill smoothly. */
#define SB_QOS_SCALE 1000000LL

struct sb_bdev_qos {
	struct sb_bdev *bdev;
	/* Written by the app reactor, read by the owner (relaxed 64-bit atomics). */
	uint64_t limits[SB_QOS_NUM_LIMITS];
	bool enabled;
	/* NULL until a reactor claims it (CAS). */
	struct sb_reactor *reactor;
	/* Owner-reactor state. */
	struct sb_io_channel *module_ch;
	struct sb_poller *poller;
	TAILQ_HEAD(, sb_bdev_io) queued;
	int64_t tokens[SB_QOS_NUM_LIMITS];
	uint64_t last_tsc;
	/* destroy */
	void (*destroy_cb)(void *ctx);
	void *destroy_ctx;
};

/* Units/second of slot i (IOPS, or bytes for the MB/s slots; SPDK's MB is MiB). */
static uint64_t
_qos_rate(const struct sb_bdev_qos *qos, int i)
{
	uint64_t l = __atomic_load_n(&qos->limits[i], __ATOMIC_RELAXED);

	return i == SB_QOS_RW_IOPS ? l : l * 1024 * 1024;
}

static void
_qos_refill(struct sb_bdev_qos *qos, uint64_t now)
{
	uint64_t ticks_per_us = sb_get_ticks_hz() / 1000000;
	uint64_t dt_us;
	int i;

	if (ticks_per_us == 0) {
		ticks_per_us = 1;
	}
	dt_us = (now - qos->last_tsc) / ticks_per_us;
	if (dt_us == 0) {
		return;
	}
	if (dt_us > 1000000) {
		/* Idle for a second: the cap below leaves a few slices anyway. */
		dt_us = 1000000;
		qos->last_tsc = now;
	} else {
		/* Keep the sub-microsecond remainder: frequent refills must not lose it. */
		qos->last_tsc += dt_us * ticks_per_us;
	}
	for (i = 0; i < SB_QOS_NUM_LIMITS; i++) {
		uint64_t rate = _qos_rate(qos, i);
		int64_t cap = (int64_t)(rate * SB_QOS_BURST_US);

		if (rate == 0) {
			qos->tokens[i] = 0;
			continue;
		}
		/* rate (<= 2^40 /s) * dt (<= 1e6 us) stays below 2^63. */
		qos->tokens[i] += (int64_t)(rate * dt_us);
		/*
		 * Only an idle bucket is capped: with a backlog every refill is spent
		 * at once, and capping a late poller's refill would lose budget.
		 */
		if (TAILQ_EMPTY(&qos->queued) && qos->tokens[i] > cap) {
			qos->tokens[i] = cap;
		}
	}
}

static bool
_qos_applies(int slot, enum sb_bdev_io_type type)
{
	switch (slot) {
	case SB_QOS_RW_IOPS:
	case SB_QOS_RW_MBPS:
		return true;
	case SB_QOS_R_MBPS:
		return type == SB_BDEV_IO_READ;
	case SB_QOS_W_MBPS:
		return type == SB_BDEV_IO_WRITE;
	default:
		return false;
	}
}

/* Take the budget for io if every limit that applies has credit. */
static bool
_qos_try_take(struct sb_bdev_qos *qos, struct sb_bdev_io *io)
{
	int64_t bytes = (int64_t)(io->u.num_blocks * io->bdev->blocklen);
	int i;

	if (!__atomic_load_n(&qos->enabled, __ATOMIC_RELAXED)) {
		return true;
	}
	for (i = 0; i < SB_QOS_NUM_LIMITS; i++) {
		if (_qos_rate(qos, i) != 0 && _qos_applies(i, io->type) && qos->tokens[i] <= 0) {
			return false;
		}
	}
	for (i = 0; i < SB_QOS_NUM_LIMITS; i++) {
		if (_qos_rate(qos, i) != 0 && _qos_applies(i, io->type)) {
			qos->tokens[i] -= (i == SB_QOS_RW_IOPS ? 1 : bytes) * SB_QOS_SCALE;
		}
	}
	return true;
}

static int
_qos_dispatch(struct sb_bdev_qos *qos)
{
	struct sb_bdev_io *io;
	int n = 0;

	_qos_refill(qos, sb_get_ticks());
	while ((io = TAILQ_FIRST(&qos->queued)) != NULL) {
		if (!_qos_try_take(qos, io)) {
			break;
		}
		TAILQ_REMOVE(&qos->queued, io, internal.link);
		_bdev_io_submit_to_module(io, qos->module_ch);
		n++;
	}
	return n;
}

static int
_qos_poll(void *ctx)
{
	struct sb_bdev_qos *qos = ctx;

	return _qos_dispatch(qos) > 0 ? SB_POLLER_BUSY : SB_POLLER_IDLE;
}

/* On the owner reactor. */
static void
_qos_enqueue(struct sb_bdev_qos *qos, struct sb_bdev_io *io)
{
	/* Refill while the queue still shows whether the bucket was idle. */
	_qos_refill(qos, sb_get_ticks());
	TAILQ_INSERT_TAIL(&qos->queued, io, internal.link);
	_qos_dispatch(qos);
}

static void
_qos_forward_msg(void *ctx)
{
	struct sb_bdev_io *io = ctx;

	_qos_enqueue(io->bdev->internal->qos, io);
}

/* The winner of the CAS sets up on its own reactor before anything else runs there. */
static bool
_qos_start_here(struct sb_bdev_qos *qos)
{
	struct sb_bdev *bdev = qos->bdev;

	TAILQ_INIT(&qos->queued);
	/* Start with one slice of credit: the first I/O need not wait for the poller. */
	qos->last_tsc = sb_get_ticks() - SB_QOS_TIMESLICE_US * (sb_get_ticks_hz() / 1000000);
	qos->module_ch = bdev->fn_table->get_io_channel(bdev->ctxt);
	if (qos->module_ch != NULL) {
		qos->poller = sb_poller_register(_qos_poll, qos, SB_QOS_TIMESLICE_US, "bdev_qos");
	}
	if (qos->module_ch == NULL || qos->poller == NULL) {
		SB_ERRLOG("bdev %s: cannot start QoS on reactor %u\n", bdev->internal->name,
			  sb_reactor_index(sb_reactor_current()));
		if (qos->module_ch != NULL) {
			sb_put_io_channel(qos->module_ch);
			qos->module_ch = NULL;
		}
		return false;
	}
	SB_INFOLOG("bdev %s: QoS runs on reactor %u\n", bdev->internal->name,
		   sb_reactor_index(sb_reactor_current()));
	return true;
}

bool
_bdev_qos_submit(struct sb_bdev_io *io, int *rc)
{
	struct sb_bdev_qos *qos = __atomic_load_n(&io->bdev->internal->qos, __ATOMIC_ACQUIRE);
	struct sb_reactor *cur, *owner;

	if (qos == NULL || !__atomic_load_n(&qos->enabled, __ATOMIC_RELAXED) ||
	    (io->type != SB_BDEV_IO_READ && io->type != SB_BDEV_IO_WRITE)) {
		return false;
	}
	cur = sb_reactor_current();
	owner = __atomic_load_n(&qos->reactor, __ATOMIC_ACQUIRE);
	if (owner == NULL) {
		struct sb_reactor *expected = NULL;

		if (__atomic_compare_exchange_n(&qos->reactor, &expected, cur, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			if (!_qos_start_here(qos)) {
				__atomic_store_n(&qos->reactor, NULL, __ATOMIC_RELEASE);
				return false;
			}
			owner = cur;
		} else {
			owner = expected;
		}
	}
	if (owner == cur) {
		_qos_enqueue(qos, io);
		return true;
	}
	if (sb_send_msg(owner, _qos_forward_msg, io) != 0) {
		*rc = -ENOMEM; /* the caller retries, as after pool exhaustion */
	}
	return true;
}

int
_bdev_qos_set(struct sb_bdev *bdev, const uint64_t limits[SB_QOS_NUM_LIMITS])
{
	struct sb_bdev_internal *in = bdev->internal;
	struct sb_bdev_qos *qos = in->qos;
	uint64_t next[SB_QOS_NUM_LIMITS];
	bool any = false;
	int i;

	for (i = 0; i < SB_QOS_NUM_LIMITS; i++) {
		next[i] = limits[i] == UINT64_MAX ? in->qos_limits[i] : limits[i];
		/* Bigger limits would overflow the token arithmetic; nobody means them. */
		if (next[i] > (i == SB_QOS_RW_IOPS ? (1ULL << 40) : (1ULL << 20))) {
			SB_ERRLOG("bdev %s: QoS limit %lu too large\n", in->name,
				  (unsigned long)next[i]);
			return -EINVAL;
		}
		any |= next[i] != 0;
	}
	if (next[SB_QOS_RW_IOPS] % 1000 != 0) {
		SB_ERRLOG("bdev %s: rw_ios_per_sec %lu is not a multiple of 1000\n", in->name,
			  (unsigned long)next[SB_QOS_RW_IOPS]);
		return -EINVAL;
	}
	if (qos == NULL) {
		if (!any) {
			return 0;
		}
		qos = calloc(1, sizeof(*qos));
		if (qos == NULL) {
			return -ENOMEM;
		}
		qos->bdev = bdev;
	}
	for (i = 0; i < SB_QOS_NUM_LIMITS; i++) {
		in->qos_limits[i] = next[i];
		__atomic_store_n(&qos->limits[i], next[i], __ATOMIC_RELAXED);
	}
	__atomic_store_n(&qos->enabled, any, __ATOMIC_RELEASE);
	__atomic_store_n(&in->qos, qos, __ATOMIC_RELEASE);
	SB_NOTICELOG("bdev %s: QoS rw_ios_per_sec=%lu rw_mbytes_per_sec=%lu "
		     "r_mbytes_per_sec=%lu w_mbytes_per_sec=%lu\n", in->name,
		     (unsigned long)next[0], (unsigned long)next[1], (unsigned long)next[2],
		     (unsigned long)next[3]);
	return 0;
}

static void
_qos_freed_msg(void *ctx)
{
	struct sb_bdev_qos *qos = ctx;
	void (*cb)(void *ctx) = qos->destroy_cb;
	void *cb_ctx = qos->destroy_ctx;

	qos->bdev->internal->qos = NULL;
	free(qos);
	cb(cb_ctx);
}

static void
_qos_stop_msg(void *ctx)
{
	struct sb_bdev_qos *qos = ctx;
	struct sb_bdev_io *io;

	/* Descriptors are closed by now; anything still queued fails. */
	while ((io = TAILQ_FIRST(&qos->queued)) != NULL) {
		TAILQ_REMOVE(&qos->queued, io, internal.link);
		sb_bdev_io_complete(io, -ENODEV);
	}
	sb_poller_unregister(&qos->poller);
	sb_put_io_channel(qos->module_ch);
	qos->module_ch = NULL;
	if (sb_send_msg(sb_reactor_get(0), _qos_freed_msg, qos) != 0) {
		SB_ERRLOG("bdev %s: cannot finish QoS teardown\n", qos->bdev->internal->name);
	}
}

void
_bdev_qos_destroy(struct sb_bdev *bdev, void (*cb)(void *ctx), void *ctx)
{
	struct sb_bdev_qos *qos = bdev->internal->qos;
	struct sb_reactor *expected = NULL;

	if (qos == NULL) {
		cb(ctx);
		return;
	}
	__atomic_store_n(&qos->enabled, false, __ATOMIC_RELEASE);
	qos->destroy_cb = cb;
	qos->destroy_ctx = ctx;
	/* Claim it for the app reactor if nobody owns it: then there is nothing to stop. */
	if (__atomic_compare_exchange_n(&qos->reactor, &expected, sb_reactor_current(), false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		_qos_freed_msg(qos);
		return;
	}
	if (sb_send_msg(expected, _qos_stop_msg, qos) != 0) {
		SB_ERRLOG("bdev %s: cannot reach the QoS reactor\n", bdev->internal->name);
		cb(ctx);
	}
}
