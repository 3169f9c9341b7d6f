/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bdev data path: per-reactor bdev channels, sb_bdev_io pools, submit
 * with validation, splitting, completion routing.
 *
 * Completions are delivered on the reactor the I/O was submitted on and
 * never inside the submit call: a backend that completes inline (malloc,
 * null) has its completion parked on the channel's deferred list, which a
 * poller of the channel drains on the next reactor iteration.
 */
#include "bdev_internal.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

/* > 0 while this reactor runs inside a submit path: completions get deferred. */
static __thread int t_submit_depth;

/* ---- pool ---- */

static int
_bdev_pool_grow(struct sb_bdev_channel *bch)
{
	struct sb_bdev_internal *in = bch->bdev->internal;
	struct sb_bdev_io *io;
	char *mem;
	uint32_t i;

	if (bch->num_chunks == SB_BDEV_IO_POOL_SIZE / SB_BDEV_IO_POOL_CHUNK) {
		return -ENOMEM;
	}
	if (posix_memalign((void **)&mem, 64, in->io_size * SB_BDEV_IO_POOL_CHUNK) != 0) {
		return -ENOMEM;
	}
	memset(mem, 0, in->io_size * SB_BDEV_IO_POOL_CHUNK);
	for (i = 0; i < SB_BDEV_IO_POOL_CHUNK; i++) {
		io = (struct sb_bdev_io *)(mem + i * in->io_size);
		io->internal.core_ctx = (char *)io + in->io_core_off;
		TAILQ_INSERT_TAIL(&bch->free_ios, io, internal.link);
	}
	bch->chunks[bch->num_chunks++] = mem;
	return 0;
}

static struct sb_bdev_io *
_bdev_io_get(struct sb_bdev_channel *bch)
{
	struct sb_bdev_io *io = TAILQ_FIRST(&bch->free_ios);

	if (io == NULL) {
		if (_bdev_pool_grow(bch) != 0) {
			return NULL;
		}
		io = TAILQ_FIRST(&bch->free_ios);
	}
	TAILQ_REMOVE(&bch->free_ios, io, internal.link);
	return io;
}

static void
_bdev_io_put(struct sb_bdev_io *io)
{
	struct sb_bdev_channel *bch = sb_io_channel_get_ctx(io->internal.ch);

	/* Head: the hottest object goes out next, its cache lines still warm. */
	TAILQ_INSERT_HEAD(&bch->free_ios, io, internal.link);
}

void
sb_bdev_free_io(struct sb_bdev_io *io)
{
	if (io != NULL) {
		_bdev_io_put(io);
	}
}

/* ---- channels ---- */

static int _bdev_cpl_poll(void *ctx);

int
_bdev_channel_create(void *io_device, void *ctx_buf)
{
	struct sb_bdev *bdev = io_device;
	struct sb_bdev_channel *bch = ctx_buf;
	int rc;

	memset(bch, 0, sizeof(*bch));
	bch->bdev = bdev;
	bch->reactor = sb_reactor_current();
	TAILQ_INIT(&bch->free_ios);
	TAILQ_INIT(&bch->deferred);
	_bdev_stat_init(&bch->stat);
	bch->qd_change_tsc = sb_get_ticks();
	rc = _bdev_pool_grow(bch);
	if (rc != 0) {
		goto out;
	}
	bch->module_ch = bdev->fn_table->get_io_channel(bdev->ctxt);
	if (bch->module_ch == NULL) {
		SB_ERRLOG("bdev %s: backend has no I/O channel for this reactor\n",
			  bdev->internal->name);
		rc = -ENOMEM;
		goto out;
	}
	bch->cpl_poller = sb_poller_register(_bdev_cpl_poll, bch, 0, "bdev_cpl");
	if (bch->cpl_poller == NULL) {
		sb_put_io_channel(bch->module_ch);
		rc = -ENOMEM;
		goto out;
	}
	/*
	 * Deferred completions are queued from inside a reactor iteration, and
	 * the iteration after a busy one always runs: no timer needed.
	 */
	sb_poller_set_event_driven(bch->cpl_poller, true);
out:
	if (rc != 0) {
		while (bch->num_chunks > 0) {
			free(bch->chunks[--bch->num_chunks]);
		}
	}
	return rc;
}

void
_bdev_channel_destroy(void *io_device, void *ctx_buf)
{
	struct sb_bdev_channel *bch = ctx_buf;
	struct sb_bdev_internal *in = bch->bdev->internal;

	if (bch->queue_depth != 0) {
		SB_ERRLOG("bdev %s: channel destroyed with %lu I/O in flight\n", in->name,
			  (unsigned long)bch->queue_depth);
	}
	_bdev_qd_change(bch, 0, sb_get_ticks());
	pthread_mutex_lock(&g_bdev_lock);
	_bdev_stat_channel_gone_locked(bch);
	pthread_mutex_unlock(&g_bdev_lock);
	sb_poller_unregister(&bch->cpl_poller);
	sb_put_io_channel(bch->module_ch);
	while (bch->num_chunks > 0) {
		free(bch->chunks[--bch->num_chunks]);
	}
}

/* ---- completion ---- */

static void _bdev_split_child_done(struct sb_bdev_io *child);

void
_bdev_io_complete_user(struct sb_bdev_io *io)
{
	struct sb_bdev_channel *bch;
	uint64_t now;

	if (_bdev_io_core(io)->parent != NULL) {
		_bdev_split_child_done(io);
		return;
	}
	bch = sb_io_channel_get_ctx(io->internal.ch);
	now = sb_get_ticks();
	_bdev_qd_change(bch, -1, now);
	_bdev_stat_account(bch, io, now);
	io->internal.cb(io, io->internal.status, io->internal.cb_arg);
}

static int
_bdev_cpl_poll(void *ctx)
{
	struct sb_bdev_channel *bch = ctx;
	TAILQ_HEAD(, sb_bdev_io) batch = TAILQ_HEAD_INITIALIZER(batch);
	struct sb_bdev_io *io;

	if (TAILQ_EMPTY(&bch->deferred)) {
		return SB_POLLER_IDLE;
	}
	/* Completions queued by callbacks of this batch wait for the next round. */
	TAILQ_CONCAT(&batch, &bch->deferred, internal.link);
	while ((io = TAILQ_FIRST(&batch)) != NULL) {
		TAILQ_REMOVE(&batch, io, internal.link);
		_bdev_io_complete_user(io);
	}
	return SB_POLLER_BUSY;
}

static void
_bdev_io_complete_msg(void *ctx)
{
	struct sb_bdev_io *io = ctx;

	_bdev_io_complete_user(io);
}

void
sb_bdev_io_complete(struct sb_bdev_io *io, int status)
{
	struct sb_io_channel *ch = io->internal.ch;
	struct sb_bdev_io_core *core = _bdev_io_core(io);
	struct sb_reactor *cur = sb_reactor_current();
	struct sb_bdev_channel *bch;
	uint64_t deadline;
	int rc;

	io->internal.status = status;
	if (core->origin != cur) {
		/* Submitted elsewhere (QoS forwarded it here): complete at home. */
		deadline = sb_get_ticks() + sb_get_ticks_hz();
		while ((rc = sb_send_msg(core->origin, _bdev_io_complete_msg, io)) != 0) {
			/* The origin drains its ring all the time; a full ring is brief. */
			if (rc != -EAGAIN || sb_get_ticks() > deadline) {
				SB_ERRLOG("bdev %s: completion lost, reactor %u unreachable\n",
					  sb_bdev_get_name(io->bdev), sb_reactor_index(core->origin));
				return;
			}
			sched_yield();
		}
		return;
	}
	if (t_submit_depth > 0) {
		bch = sb_io_channel_get_ctx(ch);
		TAILQ_INSERT_TAIL(&bch->deferred, io, internal.link);
		return;
	}
	_bdev_io_complete_user(io);
}

/* ---- submit ---- */

void
_bdev_io_submit_to_module(struct sb_bdev_io *io, struct sb_io_channel *module_ch)
{
	io->internal.status = SB_BDEV_IO_PENDING;
	t_submit_depth++;
	io->bdev->fn_table->submit_request(module_ch, io);
	t_submit_depth--;
}

/* Route one (non-split) I/O: through QoS when limits are set, else to the backend. */
static int
_bdev_io_route(struct sb_bdev_io *io)
{
	struct sb_bdev_channel *bch = sb_io_channel_get_ctx(io->internal.ch);
	int rc = 0;

	if (_bdev_qos_submit(io, &rc)) {
		return rc;
	}
	_bdev_io_submit_to_module(io, bch->module_ch);
	return 0;
}

/* Fill child's iovecs with the next bytes of parent's; returns bytes taken (whole blocks). */
static uint64_t
_bdev_split_iovs(struct sb_bdev_io *parent, struct sb_bdev_io *child, uint64_t want)
{
	struct sb_bdev_io_core *pc = _bdev_io_core(parent);
	struct sb_bdev_io_core *cc = _bdev_io_core(child);
	uint32_t blocklen = parent->bdev->blocklen;
	int idx = pc->split_iov_idx, n = 0;
	size_t off = pc->split_iov_off;
	uint64_t got = 0, keep, left;

	while (got < want && idx < parent->u.iovcnt && n < SB_BDEV_SPLIT_IOVS) {
		size_t len = parent->u.iovs[idx].iov_len - off;

		if (len > want - got) {
			len = want - got;
		}
		if (len > 0) {
			cc->child_iov[n].iov_base = (char *)parent->u.iovs[idx].iov_base + off;
			cc->child_iov[n].iov_len = len;
			n++;
			got += len;
		}
		off += len;
		if (off == parent->u.iovs[idx].iov_len) {
			idx++;
			off = 0;
		}
	}
	/* Ran out of child iovecs mid-block: give back the partial block. */
	keep = got - got % blocklen;
	left = keep;
	for (int i = 0; i < n; i++) {
		if (cc->child_iov[i].iov_len > left) {
			cc->child_iov[i].iov_len = left;
		}
		left -= cc->child_iov[i].iov_len;
		if (cc->child_iov[i].iov_len == 0) {
			n = i;
			break;
		}
	}
	/* Advance the parent's cursor by exactly keep bytes. */
	idx = pc->split_iov_idx;
	off = pc->split_iov_off;
	left = keep;
	while (left > 0) {
		size_t avail = parent->u.iovs[idx].iov_len - off;

		if (avail > left) {
			off += left;
			left = 0;
		} else {
			left -= avail;
			idx++;
			off = 0;
		}
	}
	pc->split_iov_idx = idx;
	pc->split_iov_off = off;
	child->u.iovs = cc->child_iov;
	child->u.iovcnt = n;
	return keep;
}

/*
 * Submit children of parent until it is fully split or SB_BDEV_SPLIT_MAX_CHILDREN
 * are in flight; each child completion continues.  \return -ENOMEM when not
 * even one child could be started (nothing in flight), else 0.
 */
static int
_bdev_split_continue(struct sb_bdev_io *parent)
{
	struct sb_bdev_io_core *pc = _bdev_io_core(parent);
	struct sb_bdev_channel *bch = sb_io_channel_get_ctx(parent->internal.ch);
	uint32_t max = parent->bdev->max_transfer_blocks;
	uint32_t blocklen = parent->bdev->blocklen;
	struct sb_bdev_io *child;
	uint64_t blocks, bytes;
	int rc;

	while (pc->split_remaining > 0 && pc->split_outstanding < SB_BDEV_SPLIT_MAX_CHILDREN &&
	       parent->internal.status == 0) {
		child = _bdev_io_get(bch);
		if (child == NULL) {
			return pc->split_outstanding == 0 ? -ENOMEM : 0;
		}
		blocks = pc->split_remaining < max ? pc->split_remaining : max;
		bytes = _bdev_split_iovs(parent, child, blocks * blocklen);
		if (bytes == 0) {
			SB_ERRLOG_RATELIMITED(
				"bdev %s: iovecs too fragmented to split (blocks < %u bytes)\n",
				sb_bdev_get_name(parent->bdev), blocklen);
			_bdev_io_put(child);
			parent->internal.status = -EINVAL;
			break;
		}
		blocks = bytes / blocklen;
		child->bdev = parent->bdev;
		child->type = parent->type;
		child->u.offset_blocks = pc->split_offset;
		child->u.num_blocks = blocks;
		child->internal.desc = parent->internal.desc;
		child->internal.ch = parent->internal.ch;
		child->internal.cb = NULL;
		child->internal.submit_tsc = parent->internal.submit_tsc;
		_bdev_io_core(child)->parent = parent;
		_bdev_io_core(child)->origin = pc->origin;
		pc->split_offset += blocks;
		pc->split_remaining -= blocks;
		pc->split_outstanding++;
		rc = _bdev_io_route(child);
		if (rc != 0) {
			pc->split_outstanding--;
			_bdev_io_put(child);
			parent->internal.status = rc;
			break;
		}
	}
	if (pc->split_outstanding == 0) {
		if (parent->internal.status == 0) {
			parent->internal.status = -EIO;
		}
		/* Nothing in flight to finish it later: finish from the poller. */
		TAILQ_INSERT_TAIL(&bch->deferred, parent, internal.link);
		_bdev_io_core(parent)->split_remaining = 0;
	}
	return 0;
}

static void
_bdev_split_child_done(struct sb_bdev_io *child)
{
	struct sb_bdev_io *parent = _bdev_io_core(child)->parent;
	struct sb_bdev_io_core *pc = _bdev_io_core(parent);
	int status = child->internal.status;

	_bdev_io_put(child);
	pc->split_outstanding--;
	if (status != 0 && parent->internal.status == 0) {
		parent->internal.status = status;
	}
	if (parent->internal.status == 0 && pc->split_remaining > 0) {
		t_submit_depth++;
		_bdev_split_continue(parent);
		t_submit_depth--;
		return;
	}
	if (pc->split_outstanding == 0) {
		_bdev_io_core(parent)->parent = NULL;
		_bdev_io_complete_user(parent);
	}
}

static bool
_bdev_io_is_write(enum sb_bdev_io_type type)
{
	return type == SB_BDEV_IO_WRITE || type == SB_BDEV_IO_UNMAP ||
	       type == SB_BDEV_IO_WRITE_ZEROES || type == SB_BDEV_IO_FLUSH;
}

static int
_bdev_io_start(struct sb_bdev_desc *desc, struct sb_io_channel *ch, enum sb_bdev_io_type type,
	       struct iovec *iov, int iovcnt, uint64_t offset, uint64_t num, sb_bdev_io_cb cb,
	       void *cb_arg)
{
	struct sb_bdev *bdev;
	struct sb_bdev_channel *bch;
	struct sb_bdev_io *io;
	struct sb_bdev_io_core *core;
	uint64_t blockcnt, bytes = 0;
	int i, rc;

	if (desc == NULL || ch == NULL || cb == NULL) {
		return -EINVAL;
	}
	bdev = desc->bdev;
	if (__atomic_load_n(&bdev->internal->removing, __ATOMIC_ACQUIRE) || desc->closed) {
		return -ENODEV;
	}
	if (_bdev_io_is_write(type) && !desc->write) {
		SB_ERRLOG_RATELIMITED("bdev %s: write I/O on a read-only descriptor\n",
				      bdev->internal->name);
		return -EBADF;
	}
	if (!bdev->fn_table->io_type_supported(bdev->ctxt, type)) {
		SB_ERRLOG_RATELIMITED("bdev %s: I/O type %d not supported\n", bdev->internal->name,
				      type);
		return -EINVAL;
	}
	if (type != SB_BDEV_IO_FLUSH && type != SB_BDEV_IO_RESET) {
		blockcnt = __atomic_load_n(&bdev->blockcnt, __ATOMIC_ACQUIRE);
		if (num == 0 || offset >= blockcnt || num > blockcnt - offset) {
			SB_ERRLOG_RATELIMITED("bdev %s: I/O of %lu blocks at block %lu is beyond "
					      "the end (%lu blocks)\n", bdev->internal->name,
					      (unsigned long)num, (unsigned long)offset,
					      (unsigned long)blockcnt);
			return -EINVAL;
		}
	}
	if (type == SB_BDEV_IO_READ || type == SB_BDEV_IO_WRITE) {
		if (iov == NULL || iovcnt <= 0) {
			return -EINVAL;
		}
		for (i = 0; i < iovcnt; i++) {
			if (iov[i].iov_len > UINT64_MAX - bytes) {
				return -EINVAL;
			}
			bytes += iov[i].iov_len;
		}
		if (num > UINT64_MAX / bdev->blocklen || bytes != num * bdev->blocklen) {
			SB_ERRLOG_RATELIMITED("bdev %s: iovecs hold %lu bytes, %lu blocks need %lu\n",
					      bdev->internal->name, (unsigned long)bytes,
					      (unsigned long)num,
					      (unsigned long)(num * bdev->blocklen));
			return -EINVAL;
		}
	}

	bch = sb_io_channel_get_ctx(ch);
	io = _bdev_io_get(bch);
	if (io == NULL) {
		return -ENOMEM;
	}
	core = _bdev_io_core(io);
	io->bdev = bdev;
	io->type = type;
	io->u.iovs = iov;
	io->u.iovcnt = iovcnt;
	io->u.offset_blocks = offset;
	io->u.num_blocks = num;
	io->internal.desc = desc;
	io->internal.ch = ch;
	io->internal.cb = cb;
	io->internal.cb_arg = cb_arg;
	io->internal.status = 0;
	io->internal.submit_tsc = sb_get_ticks();
	memset(core, 0, offsetof(struct sb_bdev_io_core, child_iov));
	core->origin = bch->reactor;

	t_submit_depth++;
	_bdev_qd_change(bch, 1, io->internal.submit_tsc);
	if (bdev->max_transfer_blocks != 0 && num > bdev->max_transfer_blocks &&
	    (type == SB_BDEV_IO_READ || type == SB_BDEV_IO_WRITE)) {
		core->split_offset = offset;
		core->split_remaining = num;
		rc = _bdev_split_continue(io);
	} else {
		rc = _bdev_io_route(io);
	}
	if (rc != 0) {
		_bdev_qd_change(bch, -1, sb_get_ticks());
		_bdev_io_put(io);
	}
	t_submit_depth--;
	return rc;
}

int
sb_bdev_readv_blocks(struct sb_bdev_desc *desc, struct sb_io_channel *ch, struct iovec *iov,
		     int iovcnt, uint64_t offset_blocks, uint64_t num_blocks, sb_bdev_io_cb cb,
		     void *cb_arg)
{
	return _bdev_io_start(desc, ch, SB_BDEV_IO_READ, iov, iovcnt, offset_blocks, num_blocks,
			      cb, cb_arg);
}

int
sb_bdev_writev_blocks(struct sb_bdev_desc *desc, struct sb_io_channel *ch, struct iovec *iov,
		      int iovcnt, uint64_t offset_blocks, uint64_t num_blocks, sb_bdev_io_cb cb,
		      void *cb_arg)
{
	return _bdev_io_start(desc, ch, SB_BDEV_IO_WRITE, iov, iovcnt, offset_blocks, num_blocks,
			      cb, cb_arg);
}

int
sb_bdev_flush(struct sb_bdev_desc *desc, struct sb_io_channel *ch, sb_bdev_io_cb cb,
	      void *cb_arg)
{
	return _bdev_io_start(desc, ch, SB_BDEV_IO_FLUSH, NULL, 0, 0,
			      desc ? sb_bdev_get_num_blocks(desc->bdev) : 0, cb, cb_arg);
}

int
sb_bdev_unmap_blocks(struct sb_bdev_desc *desc, struct sb_io_channel *ch,
		     uint64_t offset_blocks, uint64_t num_blocks, sb_bdev_io_cb cb, void *cb_arg)
{
	return _bdev_io_start(desc, ch, SB_BDEV_IO_UNMAP, NULL, 0, offset_blocks, num_blocks, cb,
			      cb_arg);
}

int
sb_bdev_write_zeroes_blocks(struct sb_bdev_desc *desc, struct sb_io_channel *ch,
			    uint64_t offset_blocks, uint64_t num_blocks, sb_bdev_io_cb cb,
			    void *cb_arg)
{
	return _bdev_io_start(desc, ch, SB_BDEV_IO_WRITE_ZEROES, NULL, 0, offset_blocks,
			      num_blocks, cb, cb_arg);
}

int
sb_bdev_reset(struct sb_bdev_desc *desc, struct sb_io_channel *ch, sb_bdev_io_cb cb,
	      void *cb_arg)
{
	return _bdev_io_start(desc, ch, SB_BDEV_IO_RESET, NULL, 0, 0, 0, cb, cb_arg);
}
