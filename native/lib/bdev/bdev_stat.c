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
