/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A file or block device served through io_uring.
 *
 * One ring per reactor, shared by every uring bdev that reactor serves (the
 * channel of the module's io_device g_uring_group).  The ring's eventfd is a
 * wake fd of the reactor, so a sleeping reactor wakes when a completion
 * arrives; SQEs go to the kernel in small batches (SB_URING_SUBMIT_BATCH, the
 * rest at the end of each poll) and the poller reaps completions.  Caller iovecs go straight into readv/writev SQEs (zero
 * copy) unless O_DIRECT needs aligned buffers they do not have: then the
 * data bounces through an aligned buffer of the channel's pool.
 */
#include "bdev_uring.h"
#include "bdev_uring_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct sb_bdev_module g_uring_module;
/* io_device of the per-reactor rings. */
static int g_uring_group;
/* Source of the zero-filling writes when fallocate cannot zero a range. */
uint8_t *g_uring_zero_buf;

/* ---- channel (one ring per reactor) ---- */

static int
_uring_group_create(void *io_device, void *ctx_buf)
{
	struct uring_group *grp = ctx_buf;
	int rc;

	memset(grp, 0, sizeof(*grp));
	grp->efd = -1;
	TAILQ_INIT(&grp->wait);
	/*
	 * This reactor is the ring's only user: with DEFER_TASKRUN the kernel
	 * queues completions for it without interrupting it, and the poller
	 * collects them in one io_uring_enter when IORING_SQ_TASKRUN says some
	 * are waiting (Linux 6.1+; older kernels get an ordinary ring).
	 */
	rc = io_uring_queue_init(SB_URING_QUEUE_DEPTH, &grp->ring,
				 IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
					 IORING_SETUP_TASKRUN_FLAG);
	if (rc == -EINVAL) {
		SB_NOTICELOG("io_uring: no IORING_SETUP_DEFER_TASKRUN, using a plain ring\n");
		rc = io_uring_queue_init(SB_URING_QUEUE_DEPTH, &grp->ring, 0);
	}
	if (rc != 0) {
		SB_ERRLOG("io_uring_queue_init: %s\n", strerror(-rc));
		return rc;
	}
	grp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (grp->efd < 0) {
		rc = -errno;
		goto out;
	}
	rc = io_uring_register_eventfd(&grp->ring, grp->efd);
	if (rc != 0) {
		goto out;
	}
	rc = sb_reactor_add_wake_fd(grp->efd, true);
	if (rc != 0) {
		goto out;
	}
	grp->poller = sb_poller_register(_uring_group_poll, grp, 0, "uring");
	if (grp->poller == NULL) {
		sb_reactor_remove_wake_fd(grp->efd);
		rc = -ENOMEM;
	} else {
		/* Completions signal the ring's eventfd, a wake fd of this reactor. */
		sb_poller_set_event_driven(grp->poller, true);
	}
out:
	if (rc != 0) {
		SB_ERRLOG("cannot set up the io_uring channel: %s\n", strerror(-rc));
		if (grp->efd >= 0) {
			close(grp->efd);
		}
		io_uring_queue_exit(&grp->ring);
	}
	return rc;
}

static void
_uring_group_destroy(void *io_device, void *ctx_buf)
{
	struct uring_group *grp = ctx_buf;

	if (grp->inflight != 0 || !TAILQ_EMPTY(&grp->wait)) {
		SB_ERRLOG("io_uring channel destroyed with %u I/O in flight\n", grp->inflight);
	}
	sb_poller_unregister(&grp->poller);
	sb_reactor_remove_wake_fd(grp->efd);
	io_uring_unregister_eventfd(&grp->ring);
	io_uring_queue_exit(&grp->ring);
	close(grp->efd);
	_uring_bounce_pool_free(grp);
}

/* ---- fn table ---- */

static int
_uring_destruct(void *ctx)
{
	struct uring_disk *d = ctx;

	close(d->fd);
	free(d);
	return 0;
}

static bool
_uring_io_type_supported(void *ctx, enum sb_bdev_io_type type)
{
	return type < SB_BDEV_IO_NUM_TYPES;
}

static struct sb_io_channel *
_uring_get_io_channel(void *ctx)
{
	return sb_get_io_channel(&g_uring_group);
}

static void
_json_escape(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; *in != '\0' && o + 7 < len; in++) {
		unsigned char c = (unsigned char)*in;

		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, len - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
}

static void
_uring_dump_info_json(void *ctx, char *buf, size_t len)
{
	struct uring_disk *d = ctx;
	char esc[PATH_MAX + 64];

	_json_escape(d->filename, esc, sizeof(esc));
	snprintf(buf, len,
		 "{\"uring\": {\"filename\": \"%s\", \"o_direct\": %s, \"shared\": %s}}", esc,
		 d->o_direct ? "true" : "false", d->shared ? "true" : "false");
}

static const struct sb_bdev_fn_table g_uring_fn_table = {
	.destruct = _uring_destruct,
	.submit_request = _uring_submit_request,
	.io_type_supported = _uring_io_type_supported,
	.get_io_channel = _uring_get_io_channel,
	.dump_info_json = _uring_dump_info_json,
};

/* ---- opening and sizing ---- */

#ifndef STATX_DIOALIGN
#define STATX_DIOALIGN 0x00002000U
#endif

/*
 * Direct-I/O alignment of fd (Linux >= 6.1 statx STATX_DIOALIGN).  Older
 * headers' struct statx lacks the fields: they follow stx_dev_minor and
 * stx_mnt_id (linux/stat.h), so read them by offset.
 */
static int
_uring_dio_align(int fd, uint32_t *mem_align, uint32_t *off_align)
{
	struct statx stx;
	uint32_t v[2];

	memset(&stx, 0, sizeof(stx));
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0 ||
	    !(stx.stx_mask & STATX_DIOALIGN)) {
		return -ENOTSUP;
	}
	memcpy(v, (char *)&stx + offsetof(struct statx, stx_dev_minor) + 4 + 8, sizeof(v));
	*mem_align = v[0];
	*off_align = v[1];
	return (*mem_align == 0 || *off_align == 0) ? -ENOTSUP : 0;
}

/* Size of the file or device in bytes and its logical block size (0 for files). */
static int
_uring_get_size(struct uring_disk *d, uint64_t *bytes, uint32_t *lbs)
{
	struct stat st;
	int ssz;

	if (fstat(d->fd, &st) != 0) {
		return -errno;
	}
	*lbs = 0;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(d->fd, BLKGETSIZE64, bytes) != 0 || ioctl(d->fd, BLKSSZGET, &ssz) != 0) {
			return -errno;
		}
		*lbs = (uint32_t)ssz;
		d->is_blockdev = true;
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		SB_ERRLOG("uring bdev %s: %s is neither a regular file nor a block device\n",
			  d->name, d->filename);
		return -EINVAL;
	}
	*bytes = (uint64_t)st.st_size;
	return 0;
}

/*
 * flock, not fcntl locks: on local file systems it belongs to this open
 * file (closing any other descriptor of the file keeps it), and it is
 * independent of the byte-range locks QEMU and qemu-img take.  (NFS emulates
 * flock with whole-file POSIX locks, which belong to the process.)
 *
 * A lock held by someone else is waited for, up to SB_URING_LOCK_WAIT_MS: a
 * server that was just killed keeps its lock until the kernel has finished
 * the I/O it had in flight, since io_uring tears a dead process's rings down
 * after the process is gone (and waits there for requests already in the
 * block layer).  A restarted agent thus waits for the dead one's writes to
 * land instead of racing them; a live second server is refused after the
 * bound.
 */
static int
_uring_lock(struct uring_disk *d)
{
	const struct timespec step = {.tv_sec = 0, .tv_nsec = SB_URING_LOCK_STEP_MS * 1000000L};
	int op = (d->shared ? LOCK_SH : LOCK_EX) | LOCK_NB;
	unsigned int waited_ms = 0;

	while (flock(d->fd, op) != 0) {
		if (errno == EINTR) {
			continue;
		}
		if (errno != EWOULDBLOCK) {
			int rc = -errno;

			SB_ERRLOG("uring bdev %s: cannot lock %s: %s\n", d->name, d->filename,
				  strerror(errno));
			return rc;
		}
		if (waited_ms >= SB_URING_LOCK_WAIT_MS) {
			SB_ERRLOG("uring bdev %s: %s is locked by another server (%s) for %u ms: %s\n",
				  d->name, d->filename,
				  d->shared ? "a server that did not say shared" : "served already",
				  waited_ms, strerror(EWOULDBLOCK));
			return -EBUSY;
		}
		if (waited_ms == 0) {
			SB_NOTICELOG("uring bdev %s: %s is locked; waiting up to %u ms for a server "
				     "that is going away\n", d->name, d->filename,
				     SB_URING_LOCK_WAIT_MS);
		}
		nanosleep(&step, NULL);
		waited_ms += SB_URING_LOCK_STEP_MS;
	}
	if (waited_ms != 0) {
		SB_NOTICELOG("uring bdev %s: %s locked after %u ms\n", d->name, d->filename,
			     waited_ms);
	}
	return 0;
}

static int
_uring_open(struct uring_disk *d, uint32_t want_bs)
{
	uint32_t mem_align = 0, off_align = 0, lbs;
	uint64_t bytes;
	int rc;

	d->fd = open(d->filename, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (d->fd >= 0) {
		d->o_direct = true;
	} else if (errno == EINVAL) {
		SB_NOTICELOG("uring bdev %s: %s does not support O_DIRECT, using the page cache\n",
			     d->name, d->filename);
		d->fd = open(d->filename, O_RDWR | O_CLOEXEC);
	}
	if (d->fd < 0) {
		rc = -errno;
		SB_ERRLOG("uring bdev %s: cannot open %s: %s\n", d->name, d->filename,
			  strerror(errno));
		return rc;
	}
	rc = _uring_lock(d);
	if (rc != 0) {
		return rc;
	}
	rc = _uring_get_size(d, &bytes, &lbs);
	if (rc != 0) {
		SB_ERRLOG("uring bdev %s: cannot size %s: %s\n", d->name, d->filename,
			  strerror(-rc));
		return rc;
	}
	if (want_bs == 0) {
		want_bs = lbs ? lbs : 512;
	}
	if (lbs != 0 && want_bs < lbs) {
		SB_ERRLOG("uring bdev %s: block size %u is below %s's logical block size %u\n",
			  d->name, want_bs, d->filename, lbs);
		return -EINVAL;
	}
	rc = sb_bdev_check_geometry(d->name, want_bs, bytes / (want_bs ? want_bs : 1));
	if (rc != 0) {
		SB_ERRLOG("uring bdev %s: %s holds %lu bytes, not one block of %u\n", d->name,
			  d->filename, (unsigned long)bytes, want_bs);
		return rc;
	}
	d->bdev.blocklen = want_bs;
	d->bdev.blockcnt = bytes / want_bs;
	d->mem_align = 1;
	if (d->o_direct) {
		if (_uring_dio_align(d->fd, &mem_align, &off_align) != 0) {
			mem_align = off_align = lbs ? lbs : 512;
		}
		if (want_bs % off_align != 0) {
			/* Block-sized I/O would fail with EINVAL: stay with buffered I/O. */
			SB_NOTICELOG("uring bdev %s: block size %u below the O_DIRECT alignment %u, "
				     "using the page cache\n", d->name, want_bs, off_align);
			fcntl(d->fd, F_SETFL, fcntl(d->fd, F_GETFL) & ~O_DIRECT);
			d->o_direct = false;
		} else {
			d->mem_align = mem_align;
		}
	}
	return 0;
}

/* ---- control path ---- */

/* 0 when no bdev is called name, -EEXIST, or the lookup's own failure. */
static int
_uring_name_free(const char *name)
{
	struct sb_bdev_info *info = malloc(sizeof(*info));
	int rc;

	if (info == NULL) {
		return 0; /* registration still refuses a duplicate */
	}
	rc = sb_bdev_ctl_get_info(name, info);
	free(info);
	if (rc == 0) {
		return -EEXIST;
	}
	return rc == -SB_EWAITER_GAVE_UP ? rc : 0;
}

int
sb_bdev_uring_create(const struct sb_uring_opts *opts)
{
	struct uring_disk *d;
	int rc;

	if (opts == NULL || opts->name == NULL || opts->name[0] == '\0' ||
	    strlen(opts->name) >= SB_BDEV_NAME_MAX) {
		SB_ERRLOG("uring bdev: a name of 1..%d bytes is required\n", SB_BDEV_NAME_MAX - 1);
		return -EINVAL;
	}
	if (opts->filename == NULL || opts->filename[0] == '\0' ||
	    strlen(opts->filename) >= PATH_MAX) {
		SB_ERRLOG("uring bdev %s: a filename is required\n", opts->name);
		return -EINVAL;
	}
	if (opts->block_size != 0 &&
	    (rc = sb_bdev_check_geometry(opts->name, opts->block_size, 1)) != 0) {
		return rc;
	}
	/* A taken name first: opening the file would find it locked by that bdev. */
	rc = _uring_name_free(opts->name);
	if (rc != 0) {
		if (rc == -EEXIST) {
			SB_ERRLOG("uring bdev %s: a bdev of that name exists\n", opts->name);
		}
		return rc;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		return -ENOMEM;
	}
	d->fd = -1;
	snprintf(d->name, sizeof(d->name), "%s", opts->name);
	snprintf(d->filename, sizeof(d->filename), "%s", opts->filename);
	d->shared = opts->shared;
	if (opts->uuid != NULL && opts->uuid[0] != '\0' &&
	    sb_uuid_parse(opts->uuid, d->bdev.uuid) != 0) {
		SB_ERRLOG("uring bdev %s: bad uuid '%s' (want 8-4-4-4-12 hex)\n", opts->name,
			  opts->uuid);
		rc = -EINVAL;
		goto out;
	}
	rc = _uring_open(d, opts->block_size);
	if (rc != 0) {
		goto out;
	}
	d->bdev.name = d->name;
	d->bdev.product_name = "URING bdev";
	d->bdev.write_cache = true;
	d->bdev.ctxt = d;
	d->bdev.fn_table = &g_uring_fn_table;
	d->bdev.module = &g_uring_module;
	rc = sb_bdev_ctl_register(&d->bdev);
	if (rc == -SB_EWAITER_GAVE_UP) {
		return rc; /* handed to the engine: it may still register */
	}
	if (rc == 0) {
		SB_NOTICELOG("uring bdev %s on %s (%lu x %u, O_DIRECT %s)\n", d->name, d->filename,
			     (unsigned long)d->bdev.blockcnt, d->bdev.blocklen,
			     d->o_direct ? "on" : "off");
	}
out:
	if (rc != 0) {
		if (d->fd >= 0) {
			close(d->fd);
		}
		free(d);
	}
	return rc;
}

static struct uring_disk *
_uring_find(const char *name)
{
	struct sb_bdev *bdev = sb_bdev_get_by_name(name);

	if (bdev == NULL || bdev->module != &g_uring_module) {
		SB_ERRLOG("no uring bdev %s\n", name);
		return NULL;
	}
	return bdev->ctxt;
}

int
sb_bdev_uring_delete(const char *name)
{
	return sb_bdev_ctl_unregister(name, &g_uring_module);
}

void
sb_bdev_uring_rescan_async(const char *name, void (*cb)(void *cb_arg, int rc), void *cb_arg)
{
	struct uring_disk *d = _uring_find(name);
	uint64_t bytes, blocks;
	uint32_t lbs;
	int rc;

	if (d == NULL) {
		cb(cb_arg, -ENODEV);
		return;
	}
	rc = _uring_get_size(d, &bytes, &lbs);
	if (rc != 0) {
		SB_ERRLOG("uring bdev %s: cannot re-read the size of %s: %s\n", d->name,
			  d->filename, strerror(-rc));
		cb(cb_arg, rc);
		return;
	}
	blocks = bytes / d->bdev.blocklen;
	if (blocks == sb_bdev_get_num_blocks(&d->bdev)) {
		cb(cb_arg, 0);
		return;
	}
	cb(cb_arg, sb_bdev_notify_blockcnt_change(&d->bdev, blocks));
}

struct uring_rescan_args {
	char name[SB_BDEV_NAME_MAX];
};

static void
_uring_rescan_call(void *arg, struct sb_completion *done)
{
	struct uring_rescan_args *args = arg;

	sb_bdev_uring_rescan_async(args->name, sb_call_done_cb, done);
}

int
sb_bdev_uring_rescan(const char *name)
{
	struct uring_rescan_args args;

	if (name == NULL) {
		return -EINVAL;
	}
	if (strlen(name) >= sizeof(args.name)) {
		SB_ERRLOG("no uring bdev %s\n", name);
		return -ENODEV;
	}
	snprintf(args.name, sizeof(args.name), "%s", name);
	return sb_bdev_app_call(_uring_rescan_call, &args, sizeof(args), NULL, 0);
}

/* ---- module ---- */

static int
_uring_init(void)
{
	if (g_uring_zero_buf == NULL) {
		if (posix_memalign((void **)&g_uring_zero_buf, 4096, SB_URING_ZERO_BUF_LEN) != 0) {
			return -ENOMEM;
		}
		memset(g_uring_zero_buf, 0, SB_URING_ZERO_BUF_LEN);
	}
	sb_io_device_register(&g_uring_group, _uring_group_create, _uring_group_destroy,
			      sizeof(struct uring_group), "bdev_uring");
	return 0;
}

static void
_uring_group_gone(void *io_device)
{
}

static void
_uring_fini(void)
{
	/* The zero buffer stays: it is read-only and reused by the next start. */
	sb_io_device_unregister(&g_uring_group, _uring_group_gone);
}

static size_t
_uring_ctx_size(void)
{
	return sizeof(struct uring_task);
}

static struct sb_bdev_module g_uring_module = {
	.name = "uring",
	.module_init = _uring_init,
	.module_fini = _uring_fini,
	.get_ctx_size = _uring_ctx_size,
};
SB_BDEV_MODULE_REGISTER(uring, &g_uring_module)
