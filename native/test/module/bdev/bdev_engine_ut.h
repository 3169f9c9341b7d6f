/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers of the backend tests: they run the real engine (reactor threads)
 * and do I/O from a chosen reactor through messages, waiting with sb_call.
 */
#ifndef SB_BDEV_ENGINE_UT_H
#define SB_BDEV_ENGINE_UT_H

#include "sb/bdev.h"
#include "sb/log.h"
#include "sb/thread.h"
#include "ut.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Two reactors when the machine has two CPUs, so I/O crosses reactors. */
static uint32_t g_ut_reactors;

static inline int
ut_engine_start(void)
{
	struct sb_engine_opts opts;

	sb_engine_opts_init(&opts);
	g_ut_reactors = sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 2 : 1;
	opts.core_mask = g_ut_reactors == 2 ? "[0,1]" : "0x1";
	opts.no_pin = true;
	return sb_engine_start(&opts);
}

/* The last reactor (1 with two reactors): not the app reactor. */
static inline uint32_t
ut_io_reactor(void)
{
	return g_ut_reactors - 1;
}

struct ut_io {
	const char *bdev;
	enum sb_bdev_io_type type;
	uint64_t offset;
	uint64_t num;
	struct iovec *iov;
	int iovcnt;
	bool read_only;
	struct sb_bdev_desc *desc;
	struct sb_io_channel *ch;
	struct sb_completion *done;
};

static inline void
_ut_io_cb(struct sb_bdev_io *io, int status, void *arg)
{
	struct ut_io *u = arg;

	sb_bdev_free_io(io);
	sb_put_io_channel(u->ch);
	sb_bdev_close(u->desc);
	sb_complete(u->done, status);
}

static inline void
_ut_io_start(void *arg, struct sb_completion *done)
{
	struct ut_io *u = arg;
	int rc;

	u->done = done;
	rc = sb_bdev_open(u->bdev, !u->read_only, NULL, NULL, &u->desc);
	if (rc != 0) {
		sb_complete(done, rc);
		return;
	}
	u->ch = sb_bdev_get_io_channel(u->desc);
	if (u->ch == NULL) {
		sb_bdev_close(u->desc);
		sb_complete(done, -ENOMEM);
		return;
	}
	switch (u->type) {
	case SB_BDEV_IO_READ:
		rc = sb_bdev_readv_blocks(u->desc, u->ch, u->iov, u->iovcnt, u->offset, u->num,
					  _ut_io_cb, u);
		break;
	case SB_BDEV_IO_WRITE:
		rc = sb_bdev_writev_blocks(u->desc, u->ch, u->iov, u->iovcnt, u->offset, u->num,
					   _ut_io_cb, u);
		break;
	case SB_BDEV_IO_FLUSH:
		rc = sb_bdev_flush(u->desc, u->ch, _ut_io_cb, u);
		break;
	case SB_BDEV_IO_UNMAP:
		rc = sb_bdev_unmap_blocks(u->desc, u->ch, u->offset, u->num, _ut_io_cb, u);
		break;
	case SB_BDEV_IO_WRITE_ZEROES:
		rc = sb_bdev_write_zeroes_blocks(u->desc, u->ch, u->offset, u->num, _ut_io_cb, u);
		break;
	default:
		rc = sb_bdev_reset(u->desc, u->ch, _ut_io_cb, u);
		break;
	}
	if (rc != 0) {
		sb_put_io_channel(u->ch);
		sb_bdev_close(u->desc);
		sb_complete(done, rc);
	}
}

/* One I/O on reactor index; \return its status or the submit error. */
static inline int
ut_io(uint32_t reactor, const char *bdev, enum sb_bdev_io_type type, uint64_t offset,
      uint64_t num, struct iovec *iov, int iovcnt)
{
	struct ut_io u = {.bdev = bdev, .type = type, .offset = offset, .num = num, .iov = iov,
			  .iovcnt = iovcnt};

	return sb_call(sb_reactor_get(reactor), _ut_io_start, &u, 10 * 1000 * 1000);
}

static inline int
ut_rw1(uint32_t reactor, const char *bdev, enum sb_bdev_io_type type, void *buf,
       uint64_t offset, uint64_t num, uint32_t block_size)
{
	struct iovec iov = {buf, num * block_size};

	return ut_io(reactor, bdev, type, offset, num, &iov, 1);
}

static inline bool
ut_all_bytes(const void *buf, int c, size_t len)
{
	const unsigned char *p = buf;
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i] != (unsigned char)c) {
			return false;
		}
	}
	return true;
}

static inline void
ut_fill_pattern(void *buf, size_t len, unsigned seed)
{
	unsigned char *p = buf;
	size_t i;

	for (i = 0; i < len; i++) {
		p[i] = (unsigned char)(seed * 31 + i * 7 + (i >> 9));
	}
}

/* ---- descriptor events ---- */

struct ut_events {
	const char *bdev;
	int resize;
	int remove;
	int reactor;
	struct sb_bdev_desc *desc;
};

static inline void
_ut_event_cb(enum sb_bdev_event_type type, struct sb_bdev *bdev, void *ctx)
{
	struct ut_events *e = ctx;

	e->reactor = (int)sb_reactor_index(sb_reactor_current());
	if (type == SB_BDEV_EVENT_RESIZE) {
		__atomic_add_fetch(&e->resize, 1, __ATOMIC_SEQ_CST);
	} else {
		__atomic_add_fetch(&e->remove, 1, __ATOMIC_SEQ_CST);
	}
}

static inline void
_ut_open_events(void *arg, struct sb_completion *done)
{
	struct ut_events *e = arg;

	sb_complete(done, sb_bdev_open(e->bdev, false, _ut_event_cb, e, &e->desc));
}

static inline void
_ut_close_events(void *arg, struct sb_completion *done)
{
	struct ut_events *e = arg;

	sb_bdev_close(e->desc);
	sb_complete(done, 0);
}

/* Wait up to 5 s for *counter to reach want. */
static inline bool
ut_wait_counter(int *counter, int want)
{
	int i;

	for (i = 0; i < 5000; i++) {
		if (__atomic_load_n(counter, __ATOMIC_SEQ_CST) >= want) {
			return true;
		}
		usleep(1000);
	}
	return false;
}

#endif
