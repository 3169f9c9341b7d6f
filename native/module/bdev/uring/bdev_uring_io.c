/* SPDX-License-Identifier: Apache-2.0 */
/*
 * io_uring data path: SQE preparation, the submit/reap poller, short
 * transfer resumption, the zeroing fallbacks and O_DIRECT bounce buffers.
 */
#include "bdev_uring_internal.h"

#include <errno.h>
#include <sched.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>

static inline struct uring_disk *
_disk(struct uring_task *t)
{
	return t->io->bdev->ctxt;
}

/* ---- bounce buffers ---- */

static int
_bounce_get(struct uring_task *t)
{
	struct uring_group *grp = t->grp;
	struct uring_bounce *b;
	void *buf;

	if (t->len <= SB_URING_BOUNCE_LEN && (b = SLIST_FIRST(&grp->bounce_free)) != NULL) {
		SLIST_REMOVE_HEAD(&grp->bounce_free, link);
		t->bounce = b;
		t->bounce_pooled = true;
		return 0;
	}
	if (posix_memalign(&buf, 4096, t->len > SB_URING_BOUNCE_LEN ? t->len
								  : SB_URING_BOUNCE_LEN) != 0) {
		return -ENOMEM;
	}
	t->bounce = buf;
	/* Pool-sized buffers join the pool when returned, up to its size. */
	t->bounce_pooled = t->len <= SB_URING_BOUNCE_LEN;
	if (t->bounce_pooled) {
		if (grp->bounce_count >= SB_URING_BOUNCE_POOL) {
			t->bounce_pooled = false;
		} else {
			grp->bounce_count++;
		}
	}
	return 0;
}

static void
_bounce_put(struct uring_task *t)
{
	if (t->bounce == NULL) {
		return;
	}
	if (t->bounce_pooled) {
		SLIST_INSERT_HEAD(&t->grp->bounce_free, (struct uring_bounce *)t->bounce, link);
	} else {
		free(t->bounce);
	}
	t->bounce = NULL;
}

void
_uring_bounce_pool_free(struct uring_group *grp)
{
	struct uring_bounce *b;

	while ((b = SLIST_FIRST(&grp->bounce_free)) != NULL) {
		SLIST_REMOVE_HEAD(&grp->bounce_free, link);
		free(b);
	}
	grp->bounce_count = 0;
}

static bool
_iovs_aligned(const struct sb_bdev_io *io, uint32_t align)
{
	int i;

	if (align <= 1) {
		return true;
	}
	for (i = 0; i < io->u.iovcnt; i++) {
		if (((uintptr_t)io->u.iovs[i].iov_base | io->u.iovs[i].iov_len) & (align - 1)) {
			return false;
		}
	}
	return true;
}

static void
_copy_iovs(struct sb_bdev_io *io, uint8_t *buf, bool to_buf)
{
	int i;

	for (i = 0; i < io->u.iovcnt; i++) {
		if (to_buf) {
			memcpy(buf, io->u.iovs[i].iov_base, io->u.iovs[i].iov_len);
		} else {
			memcpy(io->u.iovs[i].iov_base, buf, io->u.iovs[i].iov_len);
		}
		buf += io->u.iovs[i].iov_len;
	}
}

/* ---- SQE preparation ---- */

/* iovecs still to transfer after t->done bytes; NULL when they do not fit. */
static struct iovec *
_resume_iovs(struct uring_task *t, int *cnt)
{
	uint64_t skip = t->done;
	int i = 0, n = 0;

	if (skip == 0) {
		*cnt = t->iovcnt;
		return t->iovs;
	}
	while (i < t->iovcnt && skip >= t->iovs[i].iov_len) {
		skip -= t->iovs[i].iov_len;
		i++;
	}
	for (; i < t->iovcnt; i++, n++) {
		if (n == SB_URING_RESUME_IOVS) {
			return NULL;
		}
		t->resume_iov[n].iov_base = (char *)t->iovs[i].iov_base + skip;
		t->resume_iov[n].iov_len = t->iovs[i].iov_len - skip;
		skip = 0;
	}
	*cnt = n;
	return t->resume_iov;
}

static void _task_finish(struct uring_task *t, int status);

/* Put t into an SQE. \return false when the ring has no free SQE. */
static bool
_task_prep(struct uring_task *t)
{
	struct uring_disk *d = _disk(t);
	struct io_uring_sqe *sqe;
	struct iovec *iov;
	uint64_t chunk;
	int cnt;

	/* Never more in flight than the CQ ring holds (2x the SQ ring). */
	if (t->grp->inflight >= 2 * SB_URING_QUEUE_DEPTH) {
		return false;
	}
	sqe = io_uring_get_sqe(&t->grp->ring);
	if (sqe == NULL) {
		return false;
	}
	switch (t->op) {
	case URING_OP_RW:
		iov = _resume_iovs(t, &cnt);
		if (iov == NULL) {
			/* Give the SQE back as a no-op and fail the I/O cleanly. */
			io_uring_prep_nop(sqe);
			io_uring_sqe_set_data(sqe, NULL);
			t->grp->unsubmitted++;
			t->grp->inflight++;
			SB_ERRLOG_RATELIMITED("uring bdev %s: short transfer over too many iovecs\n",
					      d->name);
			_task_finish(t, -EIO);
			return true;
		}
		if (t->io->type == SB_BDEV_IO_READ) {
			io_uring_prep_readv(sqe, d->fd, iov, cnt, t->off + t->done);
		} else {
			io_uring_prep_writev(sqe, d->fd, iov, cnt, t->off + t->done);
		}
		break;
	case URING_OP_FSYNC:
		io_uring_prep_fsync(sqe, d->fd, IORING_FSYNC_DATASYNC);
		break;
	case URING_OP_ZERO_RANGE:
		/* On a block device fallocate is blkdev_fallocate(): BLKZEROOUT/BLKDISCARD. */
		io_uring_prep_fallocate(sqe, d->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
					(off_t)t->off, (off_t)t->len);
		break;
	case URING_OP_PUNCH:
		io_uring_prep_fallocate(sqe, d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)t->off, (off_t)t->len);
		break;
	case URING_OP_ZERO_WRITE:
		chunk = t->len - t->done;
		if (chunk > SB_URING_ZERO_BUF_LEN) {
			chunk = SB_URING_ZERO_BUF_LEN;
		}
		io_uring_prep_write(sqe, d->fd, g_uring_zero_buf, (unsigned)chunk, t->off + t->done);
		break;
	}
	io_uring_sqe_set_data(sqe, t);
	t->grp->unsubmitted++;
	t->grp->inflight++;
	return true;
}

/* Hand the prepared SQEs to the kernel. \return true when any went. */
static bool
_group_submit(struct uring_group *grp)
{
	int rc;

	if (grp->unsubmitted == 0) {
		return false;
	}
	rc = io_uring_submit(&grp->ring);
	if (rc < 0) {
		if (rc != -EAGAIN && rc != -EBUSY && rc != -EINTR) {
			SB_ERRLOG("io_uring_submit: %s\n", strerror(-rc));
		}
		return false;
	}
	grp->unsubmitted -= (uint32_t)rc < grp->unsubmitted ? (uint32_t)rc : grp->unsubmitted;
	return true;
}

static void
_task_queue(struct uring_task *t)
{
	if (!TAILQ_EMPTY(&t->grp->wait) || !_task_prep(t)) {
		TAILQ_INSERT_TAIL(&t->grp->wait, t, link);
	} else if (t->grp->unsubmitted >= SB_URING_SUBMIT_BATCH) {
		_group_submit(t->grp);
	}
}

static void
_task_finish(struct uring_task *t, int status)
{
	if (status == 0 && t->bounce != NULL && t->io->type == SB_BDEV_IO_READ) {
		_copy_iovs(t->io, t->bounce, false);
	}
	_bounce_put(t);
	sb_bdev_io_complete(t->io, status);
}

void
_uring_submit_request(struct sb_io_channel *ch, struct sb_bdev_io *io)
{
	struct uring_task *t = (struct uring_task *)io->driver_ctx;
	struct uring_disk *d = io->bdev->ctxt;
	bool zero_op = false;

	t->io = io;
	t->grp = sb_io_channel_get_ctx(ch);
	t->off = io->u.offset_blocks * d->bdev.blocklen;
	t->len = io->u.num_blocks * d->bdev.blocklen;
	t->done = 0;
	t->bounce = NULL;
	switch (io->type) {
	case SB_BDEV_IO_READ:
	case SB_BDEV_IO_WRITE:
		t->op = URING_OP_RW;
		t->iovs = io->u.iovs;
		t->iovcnt = io->u.iovcnt;
		if (d->o_direct && !_iovs_aligned(io, d->mem_align)) {
			if (_bounce_get(t) != 0) {
				sb_bdev_io_complete(io, -ENOMEM);
				return;
			}
			if (io->type == SB_BDEV_IO_WRITE) {
				_copy_iovs(io, t->bounce, true);
			}
			t->bounce_iov.iov_base = t->bounce;
			t->bounce_iov.iov_len = t->len;
			t->iovs = &t->bounce_iov;
			t->iovcnt = 1;
		}
		break;
	case SB_BDEV_IO_FLUSH:
		t->op = URING_OP_FSYNC;
		break;
	case SB_BDEV_IO_UNMAP:
		t->op = URING_OP_PUNCH;
		zero_op = true;
		break;
	case SB_BDEV_IO_WRITE_ZEROES:
		t->op = URING_OP_ZERO_RANGE;
		zero_op = true;
		break;
	case SB_BDEV_IO_RESET:
		sb_bdev_io_complete(io, 0);
		return;
	default:
		sb_bdev_io_complete(io, -EINVAL);
		return;
	}
	if (zero_op) {
		/* Skip modes this file already refused. */
		if (t->op == URING_OP_ZERO_RANGE && __atomic_load_n(&d->no_zero_range, __ATOMIC_RELAXED)) {
			t->op = URING_OP_PUNCH;
		}
		if (t->op == URING_OP_PUNCH && __atomic_load_n(&d->no_punch_hole, __ATOMIC_RELAXED)) {
			t->op = URING_OP_ZERO_WRITE;
		}
	}
	_task_queue(t);
}

/* ---- completion ---- */

static void
_task_done(struct uring_task *t, int res)
{
	struct uring_disk *d = _disk(t);

	switch (t->op) {
	case URING_OP_RW:
	case URING_OP_ZERO_WRITE:
		if (res == -EAGAIN || res == -EINTR) {
			_task_queue(t);
			return;
		}
		if (res < 0) {
			SB_ERRLOG_RATELIMITED("uring bdev %s: %s at byte %lu failed: %s\n", d->name,
				      t->io->type == SB_BDEV_IO_READ ? "read" : "write",
				      (unsigned long)(t->off + t->done), strerror(-res));
			_task_finish(t, res);
			return;
		}
		if (res == 0) {
			/* No progress (the file shrank under us): do not loop. */
			SB_ERRLOG_RATELIMITED("uring bdev %s: no progress at byte %lu of %s\n",
					      d->name, (unsigned long)(t->off + t->done),
					      d->filename);
			_task_finish(t, -EIO);
			return;
		}
		t->done += (uint64_t)res;
		if (t->done < t->len) {
			_task_queue(t); /* short transfer: resume the rest */
			return;
		}
		_task_finish(t, 0);
		return;
	case URING_OP_ZERO_RANGE:
		if (res == -EOPNOTSUPP) {
			SB_NOTICELOG("uring bdev %s: no FALLOC_FL_ZERO_RANGE, punching holes\n",
				     d->name);
			__atomic_store_n(&d->no_zero_range, true, __ATOMIC_RELAXED);
			t->op = d->no_punch_hole ? URING_OP_ZERO_WRITE : URING_OP_PUNCH;
			_task_queue(t);
			return;
		}
		break;
	case URING_OP_PUNCH:
		if (res == -EOPNOTSUPP) {
			SB_NOTICELOG("uring bdev %s: no FALLOC_FL_PUNCH_HOLE, writing zeroes\n",
				     d->name);
			__atomic_store_n(&d->no_punch_hole, true, __ATOMIC_RELAXED);
			t->op = URING_OP_ZERO_WRITE;
			t->done = 0;
			_task_queue(t);
			return;
		}
		break;
	case URING_OP_FSYNC:
		break;
	}
	if (res < 0) {
		SB_ERRLOG_RATELIMITED("uring bdev %s: operation %d failed: %s\n", d->name, t->op,
			      strerror(-res));
	}
	_task_finish(t, res < 0 ? res : 0);
}

int
_uring_group_poll(void *ctx)
{
	struct uring_group *grp = ctx;
	struct io_uring_cqe *cqe;
	struct uring_task *t;
	unsigned head, n = 0;
	int rc, busy = 0;

	while ((t = TAILQ_FIRST(&grp->wait)) != NULL) {
		TAILQ_REMOVE(&grp->wait, t, link);
		if (!_task_prep(t)) {
			TAILQ_INSERT_HEAD(&grp->wait, t, link);
			break;
		}
	}
	if (_group_submit(grp)) {
		busy = 1;
	}
	if (grp->inflight == 0) {
		return busy ? SB_POLLER_BUSY : SB_POLLER_IDLE;
	}
	/* DEFER_TASKRUN: completions wait in the kernel until this task asks. */
	if (IO_URING_READ_ONCE(*grp->ring.sq.kflags) & IORING_SQ_TASKRUN) {
		io_uring_get_events(&grp->ring);
	}
	/* Reap first, then run completions: a completion may prepare new SQEs. */
	io_uring_for_each_cqe(&grp->ring, head, cqe) {
		n++;
	}
	while (n-- > 0) {
		if (io_uring_peek_cqe(&grp->ring, &cqe) != 0 || cqe == NULL) {
			break;
		}
		t = io_uring_cqe_get_data(cqe);
		rc = cqe->res;
		io_uring_cqe_seen(&grp->ring, cqe);
		grp->inflight--;
		busy = 1;
		if (t != NULL) {
			_task_done(t, rc);
		}
	}
	if (!busy) {
		/*
		 * Requests the file system cannot start without blocking (tmpfs
		 * reads, buffered writes, fsync, fallocate) run in an io-wq worker
		 * that inherited this reactor's CPU: spinning would leave it only
		 * the scheduler's leftovers (on tmpfs 186k instead of ~300k IOPS,
		 * p99 twice as long).  While nothing completes, let it run; with
		 * nobody else runnable this returns at once.
		 */
		sched_yield();
	}
	return busy ? SB_POLLER_BUSY : SB_POLLER_IDLE;
}
