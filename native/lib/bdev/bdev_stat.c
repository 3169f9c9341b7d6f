/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-channel I/O statistics (SPDK's bdev_get_iostat fields).  Each channel
 * counts on its own reactor without atomics; sb_bdev_ctl_get_iostat() sums
 * them with a for_each_channel walk (bdev_ctl.c).
 *
 * io_time / weighted_io_time are kept exactly, in ticks: every change of a
 * channel's queue depth adds the time since the previous change (times the
 * depth), instead of SPDK's periodic sampling poller.
 */
#include "bdev_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
_bdev_stat_init(struct sb_bdev_stat *st)
{
	memset(st, 0, sizeof(*st));
	st->min_read_latency_ticks = UINT64_MAX;
	st->min_write_latency_ticks = UINT64_MAX;
	st->min_unmap_latency_ticks = UINT64_MAX;
}

static inline uint64_t
_min(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static inline uint64_t
_max(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

void
_bdev_stat_add(struct sb_bdev_stat *d, const struct sb_bdev_stat *s)
{
	d->bytes_read += s->bytes_read;
	d->num_read_ops += s->num_read_ops;
	d->bytes_written += s->bytes_written;
	d->num_write_ops += s->num_write_ops;
	d->bytes_unmapped += s->bytes_unmapped;
	d->num_unmap_ops += s->num_unmap_ops;
	d->read_latency_ticks += s->read_latency_ticks;
	d->max_read_latency_ticks = _max(d->max_read_latency_ticks, s->max_read_latency_ticks);
	d->min_read_latency_ticks = _min(d->min_read_latency_ticks, s->min_read_latency_ticks);
	d->write_latency_ticks += s->write_latency_ticks;
	d->max_write_latency_ticks = _max(d->max_write_latency_ticks, s->max_write_latency_ticks);
	d->min_write_latency_ticks = _min(d->min_write_latency_ticks, s->min_write_latency_ticks);
	d->unmap_latency_ticks += s->unmap_latency_ticks;
	d->max_unmap_latency_ticks = _max(d->max_unmap_latency_ticks, s->max_unmap_latency_ticks);
	d->min_unmap_latency_ticks = _min(d->min_unmap_latency_ticks, s->min_unmap_latency_ticks);
	d->num_write_zeroes_ops += s->num_write_zeroes_ops;
	d->bytes_write_zeroes += s->bytes_write_zeroes;
	d->num_flush_ops += s->num_flush_ops;
	d->num_reset_ops += s->num_reset_ops;
	d->num_io_errors += s->num_io_errors;
	d->io_time_ticks += s->io_time_ticks;
	d->weighted_io_time_ticks += s->weighted_io_time_ticks;
}

void
_bdev_qd_change(struct sb_bdev_channel *bch, int delta, uint64_t now)
{
	uint64_t dt = now - bch->qd_change_tsc;

	if (bch->queue_depth > 0) {
		bch->stat.io_time_ticks += dt;
		bch->stat.weighted_io_time_ticks += dt * bch->queue_depth;
	}
	bch->qd_change_tsc = now;
	bch->queue_depth += delta;
}

static inline void
_lat(uint64_t *sum, uint64_t *max, uint64_t *min, uint64_t lat)
{
	*sum += lat;
	if (lat > *max) {
		*max = lat;
	}
	if (lat < *min) {
		*min = lat;
	}
}

void
_bdev_stat_account(struct sb_bdev_channel *bch, struct sb_bdev_io *io, uint64_t now)
{
	struct sb_bdev_stat *st = &bch->stat;
	uint64_t bytes = io->u.num_blocks * io->bdev->blocklen;
	uint64_t lat = now - io->internal.submit_tsc;

	if (io->internal.status != 0) {
		st->num_io_errors++;
		return;
	}
	switch (io->type) {
	case SB_BDEV_IO_READ:
		st->bytes_read += bytes;
		st->num_read_ops++;
		_lat(&st->read_latency_ticks, &st->max_read_latency_ticks,
		     &st->min_read_latency_ticks, lat);
		break;
	case SB_BDEV_IO_WRITE:
		st->bytes_written += bytes;
		st->num_write_ops++;
		_lat(&st->write_latency_ticks, &st->max_write_latency_ticks,
		     &st->min_write_latency_ticks, lat);
		break;
	case SB_BDEV_IO_UNMAP:
		st->bytes_unmapped += bytes;
		st->num_unmap_ops++;
		_lat(&st->unmap_latency_ticks, &st->max_unmap_latency_ticks,
		     &st->min_unmap_latency_ticks, lat);
		break;
	case SB_BDEV_IO_WRITE_ZEROES:
		st->bytes_write_zeroes += bytes;
		st->num_write_zeroes_ops++;
		break;
	case SB_BDEV_IO_FLUSH:
		st->num_flush_ops++;
		break;
	case SB_BDEV_IO_RESET:
		st->num_reset_ops++;
		break;
	default:
		break;
	}
}

/* ---- aggregation ---- */

/*
 * One sb_for_each_channel walk per bdev at a time (later ones wait).  A
 * channel destroyed during the walk folds its counters into stat_gone, which
 * the walk copied at its start: if the walk has not visited that channel
 * yet, the channel adds its counters to the walk too, so nothing is lost or
 * counted twice.
 */
struct sb_bdev_stat_walk {
	uint64_t id;
	struct sb_bdev *bdev;
	struct sb_bdev_stat sum;
	uint64_t queue_depth;
	struct sb_bdev_iostat *out;
	void (*cb)(void *cb_arg, int rc);
	void *cb_arg;
	struct sb_bdev_stat_walk *next;
};

static uint64_t g_stat_walk_id;

/* g_bdev_lock held. */
void
_bdev_stat_channel_gone_locked(struct sb_bdev_channel *bch)
{
	struct sb_bdev_internal *in = bch->bdev->internal;

	_bdev_stat_add(&in->stat_gone, &bch->stat);
	if (in->stat_walk != NULL && bch->stat_walk_seen != in->stat_walk->id) {
		_bdev_stat_add(&in->stat_walk->sum, &bch->stat);
	}
}

static void
_stat_visit(struct sb_io_channel *ch, void *arg)
{
	struct sb_bdev_stat_walk *w = arg;
	struct sb_bdev_channel *bch = sb_io_channel_get_ctx(ch);
	struct sb_bdev_stat st = bch->stat;
	uint64_t dt;

	/* Count the busy time up to now, not just up to the last queue-depth change. */
	if (bch->queue_depth > 0) {
		dt = sb_get_ticks() - bch->qd_change_tsc;
		st.io_time_ticks += dt;
		st.weighted_io_time_ticks += dt * bch->queue_depth;
	}
	pthread_mutex_lock(&g_bdev_lock);
	_bdev_stat_add(&w->sum, &st);
	w->queue_depth += bch->queue_depth;
	bch->stat_walk_seen = w->id;
	pthread_mutex_unlock(&g_bdev_lock);
}

static uint64_t
_min_or_zero(uint64_t v)
{
	return v == UINT64_MAX ? 0 : v;
}

static void
_stat_fill(struct sb_bdev_stat_walk *w)
{
	struct sb_bdev_iostat *o = w->out;
	struct sb_bdev_stat *s = &w->sum;
	uint64_t ticks_per_ms = sb_get_ticks_hz() / 1000;

	if (ticks_per_ms == 0) {
		ticks_per_ms = 1;
	}
	memset(o, 0, sizeof(*o));
	snprintf(o->name, sizeof(o->name), "%s", w->bdev->internal->name);
	o->bytes_read = s->bytes_read;
	o->num_read_ops = s->num_read_ops;
	o->bytes_written = s->bytes_written;
	o->num_write_ops = s->num_write_ops;
	o->bytes_unmapped = s->bytes_unmapped;
	o->num_unmap_ops = s->num_unmap_ops;
	o->read_latency_ticks = s->read_latency_ticks;
	o->max_read_latency_ticks = s->max_read_latency_ticks;
	o->min_read_latency_ticks = _min_or_zero(s->min_read_latency_ticks);
	o->write_latency_ticks = s->write_latency_ticks;
	o->max_write_latency_ticks = s->max_write_latency_ticks;
	o->min_write_latency_ticks = _min_or_zero(s->min_write_latency_ticks);
	o->unmap_latency_ticks = s->unmap_latency_ticks;
	o->max_unmap_latency_ticks = s->max_unmap_latency_ticks;
	o->min_unmap_latency_ticks = _min_or_zero(s->min_unmap_latency_ticks);
	o->num_write_zeroes_ops = s->num_write_zeroes_ops;
	o->bytes_write_zeroes = s->bytes_write_zeroes;
	o->num_flush_ops = s->num_flush_ops;
	o->num_reset_ops = s->num_reset_ops;
	o->num_io_errors = s->num_io_errors;
	o->queue_depth = w->queue_depth;
	/* Summed over channels: overlapping busy time of two reactors counts twice. */
	o->io_time = s->io_time_ticks / ticks_per_ms;
	o->weighted_io_time = s->weighted_io_time_ticks / ticks_per_ms;
}

static void _stat_walk_done(void *arg, int rc);

/* g_bdev_lock held; w becomes the bdev's active walk. */
static void
_stat_walk_begin_locked(struct sb_bdev_stat_walk *w)
{
	w->id = ++g_stat_walk_id;
	w->sum = w->bdev->internal->stat_gone;
	w->bdev->internal->stat_walk = w;
}

static void
_stat_walk_done(void *arg, int rc)
{
	struct sb_bdev_stat_walk *w = arg;
	struct sb_bdev_internal *in = w->bdev->internal;
	struct sb_bdev_stat_walk *next;

	pthread_mutex_lock(&g_bdev_lock);
	next = w->next;
	in->stat_walk = NULL;
	if (next != NULL) {
		_stat_walk_begin_locked(next);
	}
	pthread_mutex_unlock(&g_bdev_lock);
	_stat_fill(w);
	w->cb(w->cb_arg, rc);
	free(w);
	if (next != NULL) {
		sb_for_each_channel(next->bdev, _stat_visit, next, _stat_walk_done);
	}
}

void
_bdev_iostat_collect(struct sb_bdev *bdev, struct sb_bdev_iostat *out,
		     void (*cb)(void *cb_arg, int rc), void *cb_arg)
{
	struct sb_bdev_internal *in = bdev->internal;
	struct sb_bdev_stat_walk *w = calloc(1, sizeof(*w)), *last;

	if (w == NULL) {
		cb(cb_arg, -ENOMEM);
		return;
	}
	w->bdev = bdev;
	w->out = out;
	w->cb = cb;
	w->cb_arg = cb_arg;
	pthread_mutex_lock(&g_bdev_lock);
	if (in->stat_walk != NULL) {
		for (last = in->stat_walk; last->next != NULL; last = last->next) {
		}
		last->next = w;
		pthread_mutex_unlock(&g_bdev_lock);
		return;
	}
	_stat_walk_begin_locked(w);
	pthread_mutex_unlock(&g_bdev_lock);
	sb_for_each_channel(bdev, _stat_visit, w, _stat_walk_done);
}
