/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhost-user-blk controllers: the table, create/delete/list/info, the
 * socket directory and listening sockets.  Everything here runs on the
 * vhost control thread (vhost_ctl.c), which owns the table; the public
 * calls post a command to it and wait.
 */
#include "vhost/vhost_dev.h"
#include "sb/log.h"
#include "sb/thread.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Control thread only (vhost_handoff.c walks it too). */
struct sb_vhost_ctrlr_list g_sb_vhost_ctrlrs = LIST_HEAD_INITIALIZER(g_sb_vhost_ctrlrs);

/* Set from any thread, read at create time. */
static pthread_mutex_t g_dir_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_socket_dir[PATH_MAX];

static struct sb_vhost_ctrlr *
_find(const char *name)
{
	struct sb_vhost_ctrlr *c;

	LIST_FOREACH(c, &g_sb_vhost_ctrlrs, link) {
		if (strcmp(c->name, name) == 0) {
			return c;
		}
	}
	return NULL;
}

/* ---- create / delete ---- */

static bool
_valid_name(const char *name)
{
	size_t i, len;

	if (name == NULL) {
		return false;
	}
	len = strlen(name);
	if (len == 0 || len >= SB_VHOST_NAME_MAX || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0) {
		return false;
	}
	for (i = 0; i < len; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '_' || ch == '.' || ch == '-')) {
			return false;
		}
	}
	return true;
}

static int
_listen(struct sb_vhost_ctrlr *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, rc;

	if (lstat(c->socket_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			SB_ERRLOG("vhost %s: %s exists and is not a socket\n", c->name, c->socket_path);
			return -EEXIST;
		}
		/* A stale socket of a previous process: nobody listens on it any more. */
		unlink(c->socket_path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return -errno;
	}
	memcpy(sa.sun_path, c->socket_path, strlen(c->socket_path) + 1);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    chmod(c->socket_path, 0600) != 0 || listen(fd, 4) != 0) {
		rc = -errno;
		SB_ERRLOG("vhost %s: cannot listen on %s: %s\n", c->name, c->socket_path,
			  strerror(-rc));
		close(fd);
		unlink(c->socket_path);
		return rc;
	}
	c->listen_fd = fd;
	c->listen_tag.kind = SB_EP_LISTEN;
	c->listen_tag.ctrlr = c;
	rc = sb_vhost_ctl_watch(fd, &c->listen_tag);
	if (rc != 0) {
		close(fd);
		c->listen_fd = -1;
		unlink(c->socket_path);
		return rc;
	}
	return 0;
}

struct _create_args {
	const struct sb_vhost_blk_opts *opts;
	int rc;
};

static void
_do_create(void *arg)
{
	struct _create_args *a = arg;
	const struct sb_vhost_blk_opts *o = a->opts;
	struct sb_vhost_ctrlr *c = NULL;
	struct sb_vhost_handoff *handoff;
	char dir[PATH_MAX];
	uint16_t q;
	int rc, len;

	if (!_valid_name(o->name) || o->bdev_name == NULL ||
	    o->max_queues > SB_VHOST_MAX_QUEUES || strlen(o->bdev_name) >= 128 ||
	    (o->cpumask != NULL && strlen(o->cpumask) >= 64)) {
		rc = -EINVAL;
		goto out;
	}
	if (_find(o->name) != NULL) {
		rc = -EEXIST;
		goto out;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&g_dir_lock);
	memcpy(dir, g_socket_dir, sizeof(dir));
	pthread_mutex_unlock(&g_dir_lock);
	if (dir[0] == '\0' && getcwd(dir, sizeof(dir)) == NULL) {
		rc = -errno;
		goto out;
	}
	len = snprintf(c->socket_path, sizeof(c->socket_path), "%s/%s", dir, o->name);
	if (len < 0 || (size_t)len >= sizeof(c->socket_path)) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	snprintf(c->name, sizeof(c->name), "%s", o->name);
	snprintf(c->bdev_name, sizeof(c->bdev_name), "%s", o->bdev_name);
	snprintf(c->cpumask, sizeof(c->cpumask), "%s", o->cpumask ? o->cpumask : "");
	/* GET_ID: up to 20 bytes, NUL-padded, not necessarily terminated (§5.2.6). */
	{
		const char *id = o->serial ? o->serial : o->bdev_name;
		size_t idlen = strnlen(id, sizeof(c->serial));

		memcpy(c->serial, id, idlen);
	}
	c->readonly = o->readonly;
	c->packed_ring = o->packed_ring;
	c->max_queues = o->max_queues ? o->max_queues : SB_VHOST_MAX_QUEUES;
	c->listen_fd = c->conn_fd = c->slave_fd = c->inflight_fd = -1;
	for (q = 0; q < SB_VHOST_MAX_QUEUES; q++) {
		c->vqs[q].ctrlr = c;
		c->vqs[q].index = q;
		c->vqs[q].kickfd = c->vqs[q].callfd = c->vqs[q].run_callfd = -1;
		TAILQ_INIT(&c->vqs[q].retry);
	}
	/* Queue q runs on the (q % n)-th reactor of the mask; one core: all of them there. */
	rc = sb_vhost_slots_init(c, o->cpumask);
	if (rc != 0) {
		SB_ERRLOG("vhost %s: no reactor in cpumask %s\n", o->name, o->cpumask);
		goto out;
	}
	if (c->cpumask[0] == '\0') {
		snprintf(c->cpumask, sizeof(c->cpumask), "[%u]", sb_reactor_core(c->reactor));
	}
	rc = sb_vhost_bdev_open(c);
	if (rc != 0) {
		SB_ERRLOG("vhost %s: cannot open bdev %s: %s\n", o->name, o->bdev_name, strerror(-rc));
		if (c->parked) {
			/* The open may still run: c goes when its reactor caught up. */
			sb_vhost_ctrlr_free(c);
			c = NULL;
		}
		goto out;
	}
	/* A previous agent process may have handed this controller over. */
	handoff = sb_vhost_handoff_claim(c->name);
	rc = handoff != NULL ? sb_vhost_handoff_listen(c, handoff) : -ENOENT;
	if (rc != 0) {
		rc = _listen(c);
	}
	if (rc != 0) {
		if (handoff != NULL) {
			sb_vhost_handoff_adopt(NULL, handoff); /* closes its fds */
		}
		sb_vhost_ctrlr_free(c);
		c = NULL;
		goto out;
	}
	LIST_INSERT_HEAD(&g_sb_vhost_ctrlrs, c, link);
	{
		char cores[SB_VHOST_MAX_QUEUES * 6] = "";
		size_t off = 0;

		for (q = 0; q < c->nslots && off < sizeof(cores); q++) {
			off += (size_t)snprintf(cores + off, sizeof(cores) - off, "%s%u",
						q ? "," : "", sb_reactor_core(c->slots[q].reactor));
		}
		SB_NOTICELOG("vhost %s: controller for bdev %s listening on %s (reactor core%s %s)\n",
			     c->name, c->bdev_name, c->socket_path, c->nslots > 1 ? "s" : "",
			     cores);
	}
	if (handoff != NULL) {
		sb_vhost_handoff_adopt(c, handoff);
	}
	sb_vhost_fdstore_sync(c);
	c = NULL;
out:
	free(c);
	a->rc = rc;
}

int
sb_vhost_blk_create(const struct sb_vhost_blk_opts *opts)
{
	struct _create_args a = { .opts = opts };
	int rc;

	if (opts == NULL) {
		return -EINVAL;
	}
	rc = sb_vhost_ctl_run(_do_create, &a);
	return rc != 0 ? rc : a.rc;
}

static void
_destroy(struct sb_vhost_ctrlr *c)
{
	sb_vhost_ctl_disconnect(c, "controller deleted");
	sb_vhost_session_reset(c);
	sb_vhost_fdstore_forget(c);
	if (c->listen_fd >= 0) {
		sb_vhost_ctl_unwatch(c->listen_fd);
		close(c->listen_fd);
	}
	/* A handed-off socket stays: the next process listens on it. */
	if (!c->handed_off) {
		unlink(c->socket_path);
	}
	LIST_REMOVE(c, link);
	SB_NOTICELOG("vhost %s: controller deleted\n", c->name);
	sb_vhost_ctrlr_free(c);
}

struct _name_args {
	const char *name;
	bool force;
	uint32_t a, b;
	struct sb_vhost_ctrlr_info *info;
	uint32_t max, count;
	int rc;
};

static void
_do_delete(void *arg)
{
	struct _name_args *a = arg;
	struct sb_vhost_ctrlr *c = _find(a->name);

	if (c == NULL) {
		a->rc = -ENODEV;
		return;
	}
	/* A front-end that has just closed its socket may not have been seen
	 * by the epoll loop yet: it is gone, not busy. */
	if (!a->force && !sb_vhost_ctl_reap_closed(c)) {
		a->rc = -EBUSY;
		return;
	}
	_destroy(c);
	a->rc = 0;
}

int
sb_vhost_delete(const char *name, bool force)
{
	struct _name_args a = { .name = name, .force = force };
	int rc;

	if (name == NULL) {
		return -EINVAL;
	}
	rc = sb_vhost_ctl_run(_do_delete, &a);
	return rc != 0 ? rc : a.rc;
}

static void
_do_coalescing(void *arg)
{
	struct _name_args *a = arg;
	struct sb_vhost_ctrlr *c = _find(a->name);

	if (c == NULL) {
		a->rc = -ENODEV;
		return;
	}
	/* Read by each queue's poller at its next 100 ms window. */
	__atomic_store_n(&c->delay_base_us, a->a, __ATOMIC_RELAXED);
	__atomic_store_n(&c->iops_threshold, a->b, __ATOMIC_RELAXED);
	a->rc = 0;
}

int
sb_vhost_set_coalescing(const char *name, uint32_t delay_base_us, uint32_t iops_threshold)
{
	struct _name_args a = { .name = name, .a = delay_base_us, .b = iops_threshold };
	int rc;

	if (name == NULL) {
		return -EINVAL;
	}
	rc = sb_vhost_ctl_run(_do_coalescing, &a);
	return rc != 0 ? rc : a.rc;
}

static void
_fill_info(struct sb_vhost_ctrlr *c, struct sb_vhost_ctrlr_info *info)
{
	uint16_t q;

	memset(info, 0, sizeof(*info));
	snprintf(info->name, sizeof(info->name), "%s", c->name);
	snprintf(info->bdev_name, sizeof(info->bdev_name), "%s", c->bdev_name);
	snprintf(info->socket, sizeof(info->socket), "%s", c->socket_path);
	snprintf(info->cpumask, sizeof(info->cpumask), "%s", c->cpumask);
	info->reactor_core = sb_reactor_core(c->reactor);
	info->readonly = c->readonly;
	info->connected = c->conn_fd >= 0;
	info->broken = c->broken;
	info->max_queues = c->max_queues;
	for (q = 0; q < c->max_queues; q++) {
		info->started |= c->vqs[q].started;
		info->num_queues += c->vqs[q].enabled || c->vqs[q].started;
		info->queue_core[q] = sb_reactor_core(c->vqs[q].slot->reactor);
		info->queues_started |= c->vqs[q].started ? 1u << q : 0;
	}
	info->features = c->features;
	info->protocol_features = c->protocol_features;
	info->delay_base_us = c->delay_base_us;
	info->iops_threshold = c->iops_threshold;
	info->completed_ios = sb_vhost_completed_ios(c);
	info->dirty_logging = __atomic_load_n(&c->log_active, __ATOMIC_ACQUIRE) != NULL;
	info->adopted = c->adopted && c->conn_fd >= 0;
}

static void
_do_get_info(void *arg)
{
	struct _name_args *a = arg;
	struct sb_vhost_ctrlr *c = _find(a->name);

	if (c == NULL) {
		a->rc = -ENODEV;
		return;
	}
	_fill_info(c, a->info);
	a->rc = 0;
}

int
sb_vhost_get_info(const char *name, struct sb_vhost_ctrlr_info *info)
{
	struct _name_args a = { .name = name, .info = info };
	int rc;

	if (name == NULL || info == NULL) {
		return -EINVAL;
	}
	rc = sb_vhost_ctl_run(_do_get_info, &a);
	return rc != 0 ? rc : a.rc;
}

static void
_do_list(void *arg)
{
	struct _name_args *a = arg;
	struct sb_vhost_ctrlr *c;
	uint32_t n = 0, total = 0;

	LIST_FOREACH(c, &g_sb_vhost_ctrlrs, link) {
		total++;
	}
	/* The table is built by head insertion: list oldest first. */
	for (uint32_t want = total; want > 0; want--) {
		uint32_t i = 0;

		LIST_FOREACH(c, &g_sb_vhost_ctrlrs, link) {
			if (++i == want) {
				break;
			}
		}
		if (c != NULL && n < a->max && a->info != NULL) {
			_fill_info(c, &a->info[n]);
		}
		n++;
	}
	a->count = total;
	a->rc = 0;
}

int
sb_vhost_list(struct sb_vhost_ctrlr_info *out, uint32_t max, uint32_t *count)
{
	struct _name_args a = { .info = out, .max = max };
	int rc;

	if (count == NULL) {
		return -EINVAL;
	}
	rc = sb_vhost_ctl_run(_do_list, &a);
	if (rc != 0) {
		return rc;
	}
	*count = a.count;
	return a.rc;
}

static int
_mkdir_p(const char *dir)
{
	char tmp[PATH_MAX];
	char *p;

	if (snprintf(tmp, sizeof(tmp), "%s", dir) >= (int)sizeof(tmp)) {
		return -ENAMETOOLONG;
	}
	for (p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
				return -errno;
			}
			*p = '/';
		}
	}
	if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
		return -errno;
	}
	return 0;
}

int
sb_vhost_set_socket_dir(const char *dir)
{
	struct sockaddr_un sa;
	char full[PATH_MAX];
	struct stat st;
	int rc;

	if (dir == NULL || dir[0] == '\0') {
		return -EINVAL;
	}
	/* The shortest socket name is one byte: "<dir>/x" must fit sun_path. */
	if (strlen(dir) + 2 >= sizeof(sa.sun_path)) {
		return -ENAMETOOLONG;
	}
	rc = _mkdir_p(dir);
	if (rc != 0) {
		return rc;
	}
	if (stat(dir, &st) != 0) {
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		return -ENOTDIR;
	}
	/* Front-ends (QEMU, libvirt) get the socket path as is: make it absolute. */
	if (realpath(dir, full) == NULL) {
		return -errno;
	}
	if (strlen(full) + 2 >= sizeof(sa.sun_path)) {
		return -ENAMETOOLONG;
	}
	pthread_mutex_lock(&g_dir_lock);
	snprintf(g_socket_dir, sizeof(g_socket_dir), "%s", full);
	pthread_mutex_unlock(&g_dir_lock);
	return 0;
}

/* Where the front-end's shrunk file faulted under one of c's mappings, or NULL. */
static void *
_mem_fault(const struct sb_vhost_ctrlr *c)
{
	void *hit;
	uint32_t i;

	for (i = 0; c->mem != NULL && i < c->mem->nregions; i++) {
		if (c->mem->regions[i].mmap_addr != NULL &&
		    (hit = sb_vhost_sigbus_hit(c->mem->regions[i].mmap_addr)) != NULL) {
			return hit;
		}
	}
	if (c->log != NULL && (hit = sb_vhost_sigbus_hit(c->log->mmap_addr)) != NULL) {
		return hit;
	}
	return c->inflight_base != NULL ? sb_vhost_sigbus_hit(c->inflight_base) : NULL;
}

void
sb_vhost_ctrlrs_check_pending(void)
{
	static uint64_t seen_hits;
	uint64_t hits = sb_vhost_sigbus_hits();
	struct sb_vhost_ctrlr *c;
	void *hit;

	LIST_FOREACH(c, &g_sb_vhost_ctrlrs, link) {
		if (__atomic_exchange_n(&c->pending_config_change, 0, __ATOMIC_ACQ_REL)) {
			sb_vhost_send_config_change(c);
		}
		if (hits != seen_hits && c->conn_fd >= 0 && (hit = _mem_fault(c)) != NULL) {
			SB_ERRLOG("vhost %s: the front-end shrank a guest memory file under our "
				  "mapping (SIGBUS at %p, a zero page put there)\n", c->name, hit);
			c->broken = true;
			sb_vhost_ctl_disconnect(c, "guest memory truncated");
		}
	}
	seen_hits = hits;
	sb_vhost_park_poll();
}

void
sb_vhost_ctrlrs_delete_all(void *arg)
{
	while (!LIST_EMPTY(&g_sb_vhost_ctrlrs)) {
		_destroy(LIST_FIRST(&g_sb_vhost_ctrlrs));
	}
	/* Controllers whose reactor stalled: wait for them as long as for a queue stop. */
	sb_vhost_park_drain(SB_VHOST_STOP_TIMEOUT_US);
}
