/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ceph RBD images through librbd's asynchronous API.
 *
 * One image handle per bdev, shared by every reactor (librbd's aio calls
 * are thread-safe).  librbd runs completions on its own finisher threads,
 * which must never touch reactor state: the callback only records the
 * result and pushes the task onto the submitting reactor's lock-free MPSC
 * list, then kicks that reactor's eventfd (a wake fd) when the list was
 * empty.  An event-driven poller of the reactor takes the whole list with
 * one atomic exchange and completes the I/Os there.  The per-reactor part
 * (list, eventfd, poller) is the channel of the module's io_device
 * g_rbd_group, shared by every rbd bdev the reactor serves.
 *
 * Image size changes made by other clients arrive through
 * rbd_update_watch() and become SB_BDEV_EVENT_RESIZE on the app reactor.
 * Closing an image may wait for the cluster (it releases the exclusive
 * lock), so destruct hands it to a short-lived thread and finishes
 * asynchronously instead of stalling the app reactor.
 */
#include "bdev_rbd.h"
#include "bdev_rbd_internal.h"
#include "sb/bdev_module.h"

#include <errno.h>
#include <pthread.h>
#include <rbd/librbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RBD_MAX_BLOCK_SIZE (64 * 1024)

struct rbd_disk {
	struct sb_bdev bdev;
	char name[SB_BDEV_NAME_MAX];
	char *pool_name;
	char *rbd_name;
	char *cluster_name;   /* registered cluster, or NULL */
	struct rbd_cluster *cluster;
	rados_ioctx_t ioctx;
	rbd_image_t image;
	bool read_only;
	bool watching;
	uint64_t watch_handle;
	/* App reactor only: set by destruct, checked by late resize messages. */
	bool closing;
	/* Latest size seen by the update watch (written by librbd threads). */
	uint64_t watched_size;
	pthread_t close_thread;
	bool close_joined;
	TAILQ_ENTRY(rbd_disk) close_link;
};

/* Per reactor: the channel of g_rbd_group. */
struct rbd_group {
	int efd;
	struct sb_poller *poller;
	/* MPSC list of finished tasks, newest first; librbd threads push. */
	struct rbd_task *done;
	uint64_t inflight;
};

/* Driver context of each sb_bdev_io. */
struct rbd_task {
	struct sb_bdev_io *io;
	struct rbd_group *grp;
	struct rbd_task *next;
	int rc;
};

static struct sb_bdev_module g_rbd_module;
/* io_device of the per-reactor completion lists. */
static int g_rbd_group;
/* Disks whose close thread runs or whose finish message is queued (app reactor). */
static TAILQ_HEAD(, rbd_disk) g_rbd_closing = TAILQ_HEAD_INITIALIZER(g_rbd_closing);

/* ---- completion hand-off (any thread -> owning reactor) ---- */

static void
_task_push(struct rbd_task *t)
{
	struct rbd_group *grp = t->grp;
	struct rbd_task *old = __atomic_load_n(&grp->done, __ATOMIC_RELAXED);
	uint64_t one = 1;
	ssize_t n;

	do {
		t->next = old;
	} while (!__atomic_compare_exchange_n(&grp->done, &old, t, true, __ATOMIC_RELEASE,
					      __ATOMIC_RELAXED));
	/*
	 * Only the push onto an empty list kicks: the reactor drains the whole
	 * list when it wakes, so later pushes ride on the same wake-up (the
	 * consumer empties the list with one exchange, so a push that finds
	 * it non-empty always has a kick of its own still to come).
	 */
	if (old == NULL) {
		n = write(grp->efd, &one, sizeof(one));
		(void)n; /* EAGAIN means the counter is already non-zero: awake anyway */
	}
}

/* librbd finisher thread: never touches reactor state. */
static void
_rbd_aio_done(rbd_completion_t c, void *arg)
{
	struct rbd_task *t = arg;
	ssize_t rc = rbd_aio_get_return_value(c);

	rbd_aio_release(c);
	/* Reads return the byte count, everything else 0; errors are -errno. */
	t->rc = rc < 0 ? (int)rc : 0;
	_task_push(t);
}

static int
_rbd_group_poll(void *ctx)
{
	struct rbd_group *grp = ctx;
	struct rbd_task *list, *rev = NULL, *t;

	if (__atomic_load_n(&grp->done, __ATOMIC_RELAXED) == NULL) {
		return SB_POLLER_IDLE;
	}
	list = __atomic_exchange_n(&grp->done, NULL, __ATOMIC_ACQUIRE);
	/* Newest first: reverse so I/Os complete in the order they finished. */
	while (list != NULL) {
		t = list;
		list = t->next;
		t->next = rev;
		rev = t;
	}
	while (rev != NULL) {
		t = rev;
		rev = t->next;
		grp->inflight--;
		if (t->rc != 0) {
			SB_ERRLOG_RATELIMITED("rbd bdev %s: I/O type %d at block %lu failed: %s\n",
				       t->io->bdev->name, t->io->type,
				       (unsigned long)t->io->u.offset_blocks, strerror(-t->rc));
		}
		sb_bdev_io_complete(t->io, t->rc);
	}
	return SB_POLLER_BUSY;
}

static int
_rbd_group_create(void *io_device, void *ctx_buf)
{
	struct rbd_group *grp = ctx_buf;
	int rc;

	memset(grp, 0, sizeof(*grp));
	grp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (grp->efd < 0) {
		rc = -errno;
		SB_ERRLOG("rbd: eventfd: %s\n", strerror(errno));
		return rc;
	}
	rc = sb_reactor_add_wake_fd(grp->efd, true);
	if (rc != 0) {
		goto out;
	}
	grp->poller = sb_poller_register(_rbd_group_poll, grp, 0, "rbd");
	if (grp->poller == NULL) {
		sb_reactor_remove_wake_fd(grp->efd);
		rc = -ENOMEM;
		goto out;
	}
	/* Completions always come with a kick of efd: no need to spin. */
	rc = sb_poller_set_event_driven(grp->poller, true);
	if (rc != 0) {
		sb_poller_unregister(&grp->poller);
		sb_reactor_remove_wake_fd(grp->efd);
	}
out:
	if (rc != 0) {
		SB_ERRLOG("rbd: cannot set up the completion channel: %s\n", strerror(-rc));
		close(grp->efd);
	}
	return rc;
}

static void
_rbd_group_destroy(void *io_device, void *ctx_buf)
{
	struct rbd_group *grp = ctx_buf;

	if (grp->inflight != 0) {
		SB_ERRLOG("rbd channel destroyed with %lu I/O in flight\n",
			  (unsigned long)grp->inflight);
	}
	sb_poller_unregister(&grp->poller);
	sb_reactor_remove_wake_fd(grp->efd);
	close(grp->efd);
}

/* ---- data path ---- */

static int
_rbd_submit(struct rbd_disk *d, struct rbd_task *t)
{
	struct sb_bdev_io *io = t->io;
	uint64_t off = io->u.offset_blocks * d->bdev.blocklen;
	uint64_t len = io->u.num_blocks * d->bdev.blocklen;
	rbd_completion_t c;
	int rc;

	rc = rbd_aio_create_completion(t, _rbd_aio_done, &c);
	if (rc < 0) {
		return rc;
	}
	switch (io->type) {
	case SB_BDEV_IO_READ:
		rc = rbd_aio_readv(d->image, io->u.iovs, io->u.iovcnt, off, c);
		break;
	case SB_BDEV_IO_WRITE:
		rc = rbd_aio_writev(d->image, io->u.iovs, io->u.iovcnt, off, c);
		break;
	case SB_BDEV_IO_FLUSH:
		rc = rbd_aio_flush(d->image, c);
		break;
	case SB_BDEV_IO_UNMAP:
		rc = rbd_aio_discard(d->image, off, len, c);
		break;
	case SB_BDEV_IO_WRITE_ZEROES:
		rc = rbd_aio_write_zeroes(d->image, off, len, c, 0, 0);
		break;
	default:
		rc = -ENOTSUP;
		break;
	}
	if (rc < 0) {
		rbd_aio_release(c);
	}
	return rc;
}

static void
_rbd_submit_request(struct sb_io_channel *ch, struct sb_bdev_io *io)
{
	struct rbd_task *t = (struct rbd_task *)io->driver_ctx;
	struct rbd_disk *d = io->bdev->ctxt;
	int rc;

	t->io = io;
	t->grp = sb_io_channel_get_ctx(ch);
	t->next = NULL;
	t->grp->inflight++;
	rc = _rbd_submit(d, t);
	if (rc < 0) {
		SB_ERRLOG_RATELIMITED("rbd bdev %s: cannot submit I/O type %d: %s\n", d->name,
				      io->type, strerror(-rc));
		/* Complete through the list: never inside the submitter's call. */
		t->rc = rc;
		_task_push(t);
	}
}

/* ---- fn table ---- */

static void
_rbd_disk_free(struct rbd_disk *d)
{
	free(d->pool_name);
	free(d->rbd_name);
	free(d->cluster_name);
	free(d);
}

/* Blocking teardown of the librbd side; safe on a half-built disk. */
static void
_rbd_disk_close(struct rbd_disk *d)
{
	int rc;

	if (d->watching) {
		/* Waits for a running watch callback, so none fires after this. */
		rbd_update_unwatch(d->image, d->watch_handle);
		d->watching = false;
	}
	if (d->image != NULL) {
		rc = rbd_close(d->image);
		if (rc < 0) {
			SB_ERRLOG("rbd bdev %s: closing %s/%s: %s\n", d->name, d->pool_name,
				  d->rbd_name, strerror(-rc));
		}
		d->image = NULL;
	}
	if (d->ioctx != NULL) {
		rados_ioctx_destroy(d->ioctx);
		d->ioctx = NULL;
	}
	if (d->cluster != NULL) {
		_rbd_cluster_put(d->cluster);
		d->cluster = NULL;
	}
}

/* App reactor: the close thread is done. */
static void
_rbd_destruct_finish(void *arg)
{
	struct rbd_disk *d = arg;

	TAILQ_REMOVE(&g_rbd_closing, d, close_link);
	if (!d->close_joined) {
		pthread_join(d->close_thread, NULL); /* it has just sent this message */
	}
	SB_INFOLOG("rbd bdev %s closed\n", d->name);
	sb_bdev_destruct_done(&d->bdev, 0);
	_rbd_disk_free(d);
}

static void *
_rbd_close_thread(void *arg)
{
	struct rbd_disk *d = arg;

	_rbd_disk_close(d);
	if (sb_send_msg(sb_reactor_get(0), _rbd_destruct_finish, d) != 0) {
		SB_ERRLOG("rbd bdev %s: the engine is stopping; its record is leaked\n", d->name);
	}
	return NULL;
}

static int
_rbd_destruct(void *ctx)
{
	struct rbd_disk *d = ctx;
	int rc;

	d->closing = true;
	TAILQ_INSERT_TAIL(&g_rbd_closing, d, close_link);
	rc = pthread_create(&d->close_thread, NULL, _rbd_close_thread, d);
	if (rc != 0) {
		/* No thread: close here, stalling this reactor for the cluster. */
		TAILQ_REMOVE(&g_rbd_closing, d, close_link);
		SB_WARNLOG("rbd bdev %s: cannot start a close thread (%s); closing inline\n",
			   d->name, strerror(rc));
		_rbd_disk_close(d);
		_rbd_disk_free(d);
		return 0;
	}
	return 1;
}

static bool
_rbd_io_type_supported(void *ctx, enum sb_bdev_io_type type)
{
	struct rbd_disk *d = ctx;

	switch (type) {
	case SB_BDEV_IO_READ:
	case SB_BDEV_IO_FLUSH:
		return true;
	case SB_BDEV_IO_WRITE:
	case SB_BDEV_IO_UNMAP:
	case SB_BDEV_IO_WRITE_ZEROES:
		return !d->read_only;
	default:
		return false;
	}
}

static struct sb_io_channel *
_rbd_get_io_channel(void *ctx)
{
	return sb_get_io_channel(&g_rbd_group);
}

static void
_json_escape(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; in != NULL && *in != '\0' && o + 7 < len; in++) {
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
_rbd_dump_info_json(void *ctx, char *buf, size_t len)
{
	struct rbd_disk *d = ctx;
	char pool[128], image[128], cluster[128];

	_json_escape(d->pool_name, pool, sizeof(pool));
	_json_escape(d->rbd_name, image, sizeof(image));
	_json_escape(d->cluster_name, cluster, sizeof(cluster));
	snprintf(buf, len, "{\"rbd\": {\"pool_name\": \"%s\", \"rbd_name\": \"%s\", "
		 "\"cluster_name\": \"%s\", \"read_only\": %s}}", pool, image, cluster,
		 d->read_only ? "true" : "false");
}

static const struct sb_bdev_fn_table g_rbd_fn_table = {
	.destruct = _rbd_destruct,
	.submit_request = _rbd_submit_request,
	.io_type_supported = _rbd_io_type_supported,
	.get_io_channel = _rbd_get_io_channel,
	.dump_info_json = _rbd_dump_info_json,
};

/* ---- size changes ---- */

/* App reactor. */
static void
_rbd_size_changed(void *arg)
{
	struct rbd_disk *d = arg;
	uint64_t bytes = __atomic_load_n(&d->watched_size, __ATOMIC_ACQUIRE);
	uint64_t blocks = bytes / d->bdev.blocklen;

	if (d->closing || blocks == 0 || blocks == sb_bdev_get_num_blocks(&d->bdev)) {
		return;
	}
	if (sb_bdev_notify_blockcnt_change(&d->bdev, blocks) == 0) {
		SB_NOTICELOG("rbd bdev %s: image %s/%s is now %lu bytes\n", d->name, d->pool_name,
			     d->rbd_name, (unsigned long)bytes);
	}
}

/* librbd thread: the image header changed (resize, snapshot, ...). */
static void
_rbd_update_watch_cb(void *arg)
{
	struct rbd_disk *d = arg;
	uint64_t bytes;

	if (rbd_get_size(d->image, &bytes) != 0) {
		return;
	}
	__atomic_store_n(&d->watched_size, bytes, __ATOMIC_RELEASE);
	/* unwatch waits for this callback, so d outlives the message's sending. */
	sb_send_msg(sb_reactor_get(0), _rbd_size_changed, d);
}

/* ---- control path ---- */

static bool
_empty(const char *s)
{
	return s == NULL || s[0] == '\0';
}

static char *
_dup(const char *s)
{
	return _empty(s) ? NULL : strdup(s);
}

static int
_rbd_check_opts(const struct sb_rbd_opts *o)
{
	if (o == NULL || _empty(o->name) || strlen(o->name) >= SB_BDEV_NAME_MAX) {
		SB_ERRLOG("rbd bdev: a name of 1..%d bytes is required\n", SB_BDEV_NAME_MAX - 1);
		return -EINVAL;
	}
	if (_empty(o->pool_name) || _empty(o->rbd_name)) {
		SB_ERRLOG("rbd bdev %s: pool_name and rbd_name are required\n", o->name);
		return -EINVAL;
	}
	if (o->block_size > RBD_MAX_BLOCK_SIZE ||
	    sb_bdev_check_geometry(o->name, o->block_size, 1) != 0) {
		SB_ERRLOG("rbd bdev %s: block size %u is not a power of two from 512 to %u\n",
			  o->name, o->block_size, RBD_MAX_BLOCK_SIZE);
		return -EINVAL;
	}
	if (!_empty(o->cluster_name) &&
	    (!_empty(o->cluster.user_id) || !_empty(o->cluster.config_file) ||
	     !_empty(o->cluster.key_file) || o->cluster.config != NULL)) {
		SB_ERRLOG("rbd bdev %s: cluster_name excludes user_id, config, config_file and "
			  "key_file (they belong to the registered cluster)\n", o->name);
		return -EINVAL;
	}
	return 0;
}

/* Connect, open the image, read its size.  Blocking; d is filled in. */
static int
_rbd_open(struct rbd_disk *d, const struct sb_rbd_opts *o)
{
	uint64_t bytes;
	int rc;

	if (!_empty(o->cluster_name)) {
		rc = _rbd_cluster_get_by_name(o->cluster_name, &d->cluster);
	} else {
		rc = _rbd_cluster_get(&o->cluster, &d->cluster);
	}
	if (rc != 0) {
		return rc;
	}
	rc = rados_ioctx_create(d->cluster->rados, o->pool_name, &d->ioctx);
	if (rc < 0) {
		d->ioctx = NULL;
		SB_ERRLOG("rbd bdev %s: pool %s: %s\n", d->name, o->pool_name, strerror(-rc));
		return rc;
	}
	if (o->read_only) {
		rc = rbd_open_read_only(d->ioctx, o->rbd_name, &d->image, NULL);
	} else {
		rc = rbd_open(d->ioctx, o->rbd_name, &d->image, NULL);
	}
	if (rc < 0) {
		d->image = NULL;
		SB_ERRLOG("rbd bdev %s: cannot open image %s/%s: %s\n", d->name, o->pool_name,
			  o->rbd_name, strerror(-rc));
		return rc;
	}
	rc = rbd_get_size(d->image, &bytes);
	if (rc < 0) {
		SB_ERRLOG("rbd bdev %s: cannot size %s/%s: %s\n", d->name, o->pool_name,
			  o->rbd_name, strerror(-rc));
		return rc;
	}
	if (bytes < o->block_size) {
		SB_ERRLOG("rbd bdev %s: image %s/%s holds %lu bytes, not one block of %u\n",
			  d->name, o->pool_name, o->rbd_name, (unsigned long)bytes, o->block_size);
		return -EINVAL;
	}
	d->bdev.blocklen = o->block_size;
	d->bdev.blockcnt = bytes / o->block_size;
	d->watched_size = bytes;
	return 0;
}

int
sb_bdev_rbd_create(const struct sb_rbd_opts *opts)
{
	struct rbd_disk *d;
	int rc;

	rc = _rbd_check_opts(opts);
	if (rc != 0) {
		return rc;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		return -ENOMEM;
	}
	snprintf(d->name, sizeof(d->name), "%s", opts->name);
	d->pool_name = strdup(opts->pool_name);
	d->rbd_name = strdup(opts->rbd_name);
	d->cluster_name = _dup(opts->cluster_name);
	d->read_only = opts->read_only;
	if (d->pool_name == NULL || d->rbd_name == NULL ||
	    (!_empty(opts->cluster_name) && d->cluster_name == NULL)) {
		rc = -ENOMEM;
		goto out;
	}
	if (!_empty(opts->uuid) && sb_uuid_parse(opts->uuid, d->bdev.uuid) != 0) {
		SB_ERRLOG("rbd bdev %s: bad uuid '%s' (want 8-4-4-4-12 hex)\n", opts->name,
			  opts->uuid);
		rc = -EINVAL;
		goto out;
	}
	rc = _rbd_open(d, opts);
	if (rc != 0) {
		goto out;
	}
	d->bdev.name = d->name;
	d->bdev.product_name = "Ceph Rbd Disk";
	d->bdev.write_cache = true;
	d->bdev.ctxt = d;
	d->bdev.fn_table = &g_rbd_fn_table;
	d->bdev.module = &g_rbd_module;
	rc = sb_bdev_ctl_register(&d->bdev);
	if (rc == -SB_EWAITER_GAVE_UP) {
		return rc; /* handed to the engine: it may still register */
	}
	if (rc != 0) {
		goto out;
	}
	/* After registration: the watch callback notifies a registered bdev. */
	if (rbd_update_watch(d->image, &d->watch_handle, _rbd_update_watch_cb, d) == 0) {
		d->watching = true;
	} else {
		SB_WARNLOG("rbd bdev %s: no update watch; resizes by other clients need "
			   "bdev_rbd_resize or a rescan\n", d->name);
	}
	SB_NOTICELOG("rbd bdev %s on %s/%s (%lu x %u%s)\n", d->name, d->pool_name, d->rbd_name,
		     (unsigned long)d->bdev.blockcnt, d->bdev.blocklen,
		     d->read_only ? ", read-only" : "");
	return 0;
out:
	_rbd_disk_close(d);
	_rbd_disk_free(d);
	return rc;
}

static struct rbd_disk *
_rbd_find(const char *name)
{
	struct sb_bdev *bdev = sb_bdev_get_by_name(name);

	if (bdev == NULL || bdev->module != &g_rbd_module) {
		SB_ERRLOG("no rbd bdev %s\n", name);
		return NULL;
	}
	return bdev->ctxt;
}

int
sb_bdev_rbd_delete(const char *name)
{
	return sb_bdev_ctl_unregister(name, &g_rbd_module);
}

/*
 * Resize and rescan run librbd's blocking calls on the caller's thread
 * between two app-reactor calls: a lookup that answers with the image
 * handle (results), and one that applies the size.  Both take copies of
 * their arguments (sb_bdev_app_call), so a gave-up wait leaves the reactor
 * nothing of the caller's.
 */
struct rbd_lookup_args {
	char name[SB_BDEV_NAME_MAX];
	struct rbd_disk *disk; /* _rbd_apply_size: the disk the lookup found */
	uint64_t bytes;
};

struct rbd_lookup_results {
	struct rbd_disk *disk;
	rbd_image_t image;
	rados_ioctx_t ioctx;
	char pool_name[256];
	char rbd_name[1024];
};

static void
_rbd_lookup(void *arg, struct sb_completion *done)
{
	struct rbd_lookup_args *l = arg;
	struct rbd_lookup_results *res = sb_call_results(done);
	struct rbd_disk *d = _rbd_find(l->name);

	if (d == NULL || d->closing) {
		sb_complete(done, -ENODEV);
		return;
	}
	res->disk = d;
	res->image = d->image;
	res->ioctx = d->ioctx;
	snprintf(res->pool_name, sizeof(res->pool_name), "%s", d->pool_name);
	snprintf(res->rbd_name, sizeof(res->rbd_name), "%s", d->rbd_name);
	sb_complete(done, 0);
}

/* App reactor: apply a size read from the image to the bdev (disk: the one looked up, or NULL). */
static void
_rbd_apply_size_async(const char *name, const struct rbd_disk *disk, uint64_t bytes,
		      void (*cb)(void *cb_arg, int rc), void *cb_arg)
{
	struct rbd_disk *d = _rbd_find(name);
	uint64_t blocks;

	if (d == NULL || (disk != NULL && d != disk) || d->closing) {
		cb(cb_arg, -ENODEV);
		return;
	}
	blocks = bytes / d->bdev.blocklen;
	if (blocks == sb_bdev_get_num_blocks(&d->bdev)) {
		cb(cb_arg, 0);
		return;
	}
	cb(cb_arg, sb_bdev_notify_blockcnt_change(&d->bdev, blocks));
}

static void
_rbd_apply_size(void *arg, struct sb_completion *done)
{
	struct rbd_lookup_args *l = arg;

	_rbd_apply_size_async(l->name, l->disk, l->bytes, sb_call_done_cb, done);
}

static int
_rbd_lookup_call(const char *name, struct rbd_lookup_args *l, struct rbd_lookup_results *res)
{
	if (name == NULL) {
		return -EINVAL;
	}
	memset(l, 0, sizeof(*l));
	if (strlen(name) >= sizeof(l->name)) {
		SB_ERRLOG("no rbd bdev %s\n", name);
		return -ENODEV;
	}
	snprintf(l->name, sizeof(l->name), "%s", name);
	return sb_bdev_app_call(_rbd_lookup, l, sizeof(*l), res, sizeof(*res));
}

/*
 * The image handle is used here outside the app reactor: control calls are
 * serialized by their caller (the agent runs one at a time), and a delete
 * racing this call finds the bdev closing and the lookup fails.
 */
int
sb_bdev_rbd_resize(const char *name, uint64_t new_size_mb)
{
	struct rbd_lookup_args l;
	struct rbd_lookup_results res;
	uint64_t cur;
	int rc;

	if (name == NULL || new_size_mb == 0 || new_size_mb > (UINT64_MAX >> 20)) {
		return -EINVAL;
	}
	rc = _rbd_lookup_call(name, &l, &res);
	if (rc != 0) {
		return rc;
	}
	rc = rbd_get_size(res.image, &cur);
	if (rc < 0) {
		return rc;
	}
	l.bytes = new_size_mb << 20;
	if (l.bytes < cur) {
		SB_ERRLOG("rbd bdev %s: shrinking from %lu to %lu bytes is not supported\n", name,
			  (unsigned long)cur, (unsigned long)l.bytes);
		return -EINVAL;
	}
	if (l.bytes != cur) {
		rc = rbd_resize(res.image, l.bytes);
		if (rc < 0) {
			SB_ERRLOG("rbd bdev %s: rbd_resize to %lu MiB: %s\n", name,
				  (unsigned long)new_size_mb, strerror(-rc));
			return rc;
		}
	}
	l.disk = res.disk;
	return sb_bdev_app_call(_rbd_apply_size, &l, sizeof(l), NULL, 0);
}

int
sb_bdev_rbd_rescan(const char *name)
{
	struct rbd_lookup_args l;
	struct rbd_lookup_results res;
	rbd_image_t fresh;
	int rc;

	rc = _rbd_lookup_call(name, &l, &res);
	if (rc != 0) {
		return rc;
	}
	/*
	 * A fresh read-only handle reads the header now: the bdev's own handle
	 * only refreshes on watch notifications, which librbd does not register
	 * for read-only opens.
	 */
	rc = rbd_open_read_only(res.ioctx, res.rbd_name, &fresh, NULL);
	if (rc < 0) {
		SB_ERRLOG("rbd bdev %s: cannot reopen %s/%s to read its size: %s\n", name,
			  res.pool_name, res.rbd_name, strerror(-rc));
		return rc;
	}
	rc = rbd_get_size(fresh, &l.bytes);
	rbd_close(fresh);
	if (rc < 0) {
		return rc;
	}
	l.disk = res.disk;
	return sb_bdev_app_call(_rbd_apply_size, &l, sizeof(l), NULL, 0);
}

/* ---- module ---- */

static int
_rbd_init(void)
{
	sb_io_device_register(&g_rbd_group, _rbd_group_create, _rbd_group_destroy,
			      sizeof(struct rbd_group), "bdev_rbd");
	return 0;
}

static void
_rbd_group_gone(void *io_device)
{
}

static void
_rbd_fini(void)
{
	struct rbd_disk *d;

	/*
	 * Images still closing: wait for their threads so no librbd handle
	 * outlives the engine.  Their finish messages run after this returns.
	 */
	TAILQ_FOREACH(d, &g_rbd_closing, close_link) {
		if (!d->close_joined) {
			pthread_join(d->close_thread, NULL);
			d->close_joined = true;
		}
	}
	sb_io_device_unregister(&g_rbd_group, _rbd_group_gone);
}

static size_t
_rbd_ctx_size(void)
{
	return sizeof(struct rbd_task);
}

static struct sb_bdev_module g_rbd_module = {
	.name = "rbd",
	.module_init = _rbd_init,
	.module_fini = _rbd_fini,
	.get_ctx_size = _rbd_ctx_size,
};
SB_BDEV_MODULE_REGISTER(rbd, &g_rbd_module)
