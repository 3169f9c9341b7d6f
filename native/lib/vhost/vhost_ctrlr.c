/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhost-user-blk controllers and the control thread.
 *
 * One control thread serves every controller: an epoll loop over the
 * listening sockets, the front-end connections, the slave channels and a
 * command eventfd.  It owns the controller table and every session's
 * protocol state; the public sb_vhost_* calls post a command to it and
 * wait, so nothing here needs a lock besides the command queue.  Queues
 * are handed to the controller's reactor by sb_call() (vhost_session.c).
 */
#include "vhost/vhost_dev.h"
#include "sb/bdev.h"
#include "sb/log.h"
#include "sb/thread.h"
#include "sb_internal/subsystem.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A front-end that sends half a message is cut after this long. */
#define SB_VHOST_RECV_TIMEOUT_S 2

struct _cmd {
	void (*fn)(void *arg);
	void *arg;
	bool done;
	TAILQ_ENTRY(_cmd) link;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	TAILQ_HEAD(, _cmd) cmds;
	bool running;
	bool stop;
	pthread_t thread;
	int epfd;
	int evfd;
	struct sb_vhost_ep_tag cmd_tag;
	char socket_dir[PATH_MAX];
	LIST_HEAD(, sb_vhost_ctrlr) ctrlrs;   /* control thread only */
} g_vhost = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.cmds = TAILQ_HEAD_INITIALIZER(g_vhost.cmds),
	.epfd = -1,
	.evfd = -1,
};

void
sb_vhost_ctl_wake(void)
{
	int fd = __atomic_load_n(&g_vhost.evfd, __ATOMIC_ACQUIRE);

	if (fd >= 0) {
		eventfd_write(fd, 1);
	}
}

/* Run fn(arg) on the control thread and wait for it. */
static int
_ctl_run(void (*fn)(void *arg), void *arg)
{
	struct _cmd cmd = { .fn = fn, .arg = arg };

	if (sb_reactor_current() != NULL) {
		/* The control thread calls into reactors synchronously. */
		return -EPERM;
	}
	pthread_mutex_lock(&g_vhost.lock);
	if (!g_vhost.running || g_vhost.stop) {
		pthread_mutex_unlock(&g_vhost.lock);
		return -ESHUTDOWN;
	}
	if (pthread_equal(pthread_self(), g_vhost.thread)) {
		pthread_mutex_unlock(&g_vhost.lock);
		fn(arg);
		return 0;
	}
	TAILQ_INSERT_TAIL(&g_vhost.cmds, &cmd, link);
	pthread_mutex_unlock(&g_vhost.lock);
	sb_vhost_ctl_wake();
	pthread_mutex_lock(&g_vhost.lock);
	while (!cmd.done) {
		pthread_cond_wait(&g_vhost.cond, &g_vhost.lock);
	}
	pthread_mutex_unlock(&g_vhost.lock);
	return 0;
}

static void
_ctl_run_pending(void)
{
	struct _cmd *cmd;

	for (;;) {
		pthread_mutex_lock(&g_vhost.lock);
		cmd = TAILQ_FIRST(&g_vhost.cmds);
		if (cmd != NULL) {
			TAILQ_REMOVE(&g_vhost.cmds, cmd, link);
		}
		pthread_mutex_unlock(&g_vhost.lock);
		if (cmd == NULL) {
			return;
		}
		cmd->fn(cmd->arg);
		pthread_mutex_lock(&g_vhost.lock);
		cmd->done = true;
		pthread_cond_broadcast(&g_vhost.cond);
		pthread_mutex_unlock(&g_vhost.lock);
	}
}

static struct sb_vhost_ctrlr *
_find(const char *name)
{
	struct sb_vhost_ctrlr *c;

	LIST_FOREACH(c, &g_vhost.ctrlrs, link) {
		if (strcmp(c->name, name) == 0) {
			return c;
		}
	}
	return NULL;
}

/* ---- connections ---- */

void
sb_vhost_ctl_set_slave(struct sb_vhost_ctrlr *c, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN };

	if (c->slave_fd >= 0) {
		epoll_ctl(g_vhost.epfd, EPOLL_CTL_DEL, c->slave_fd, NULL);
		close(c->slave_fd);
		c->slave_fd = -1;
	}
	if (fd < 0) {
		return;
	}
	c->slave_fd = fd;
	c->slave_tag.kind = SB_EP_SLAVE;
	c->slave_tag.ctrlr = c;
	ev.data.ptr = &c->slave_tag;
	if (epoll_ctl(g_vhost.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		SB_WARNLOG("vhost %s: slave channel not watched: %s\n", c->name, strerror(errno));
	}
}

static void
_disconnect(struct sb_vhost_ctrlr *c, const char *why)
{
	if (c->conn_fd < 0) {
		return;
	}
	SB_NOTICELOG("vhost %s: front-end disconnected (%s)\n", c->name, why);
	epoll_ctl(g_vhost.epfd, EPOLL_CTL_DEL, c->conn_fd, NULL);
	/* Stop the rings (waiting for in-flight I/O) before the memory goes away. */
	sb_vhost_session_reset(c);
	close(c->conn_fd);
	c->conn_fd = -1;
}

static void
_accept(struct sb_vhost_ctrlr *c)
{
	struct timeval tv = { .tv_sec = SB_VHOST_RECV_TIMEOUT_S };
	struct epoll_event ev = { .events = EPOLLIN };
	int fd;

	fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			SB_WARNLOG("vhost %s: accept: %s\n", c->name, strerror(errno));
		}
		return;
	}
	if (c->conn_fd >= 0) {
		SB_WARNLOG("vhost %s: second front-end refused (one is connected)\n", c->name);
		close(fd);
		return;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	c->conn_fd = fd;
	c->conn_tag.kind = SB_EP_CONN;
	c->conn_tag.ctrlr = c;
	ev.data.ptr = &c->conn_tag;
	if (epoll_ctl(g_vhost.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		SB_ERRLOG("vhost %s: epoll: %s\n", c->name, strerror(errno));
		close(fd);
		c->conn_fd = -1;
		return;
	}
	c->broken = false;
	SB_NOTICELOG("vhost %s: front-end connected\n", c->name);
}

static void
_conn_readable(struct sb_vhost_ctrlr *c)
{
	struct vhost_user_msg *msg;
	int rc;

	msg = malloc(sizeof(*msg));
	if (msg == NULL) {
		return;
	}
	rc = sb_vhost_wire_recv(c->conn_fd, msg);
	if (rc == -EAGAIN) {
		goto out;
	}
	if (rc != 0) {
		if (rc == -EPROTO) {
			SB_ERRLOG("vhost %s: truncated or oversized message\n", c->name);
		}
		_disconnect(c, rc == -ECONNRESET ? "closed" : "protocol error");
		goto out;
	}
	rc = sb_vhost_handle_msg(c, msg);
	if (rc != 0) {
		c->broken = c->broken || rc == -EINVAL;
		_disconnect(c, rc == -EINVAL ? "invalid message" : "reply failed");
	}
out:
	free(msg);
}

static void
_slave_readable(struct sb_vhost_ctrlr *c)
{
	struct vhost_user_msg *msg = malloc(sizeof(*msg));
	int rc;

	if (msg == NULL) {
		return;
	}
	/* Only acks of CONFIG_CHANGE_MSG arrive here; read and drop them. */
	rc = sb_vhost_wire_recv(c->slave_fd, msg);
	if (rc == 0) {
		sb_vhost_msg_close_fds(msg);
		if (msg->hdr.size == 8 && msg->p.u64 != 0) {
			SB_WARNLOG("vhost %s: front-end refused a config change\n", c->name);
		}
	} else if (rc != -EAGAIN) {
		sb_vhost_ctl_set_slave(c, -1);
	}
	free(msg);
}

static void
_check_pending(void)
{
	struct sb_vhost_ctrlr *c;

	LIST_FOREACH(c, &g_vhost.ctrlrs, link) {
		if (__atomic_exchange_n(&c->pending_config_change, 0, __ATOMIC_ACQ_REL)) {
			sb_vhost_send_config_change(c);
		}
	}
}

static void *
_ctl_thread(void *arg)
{
	struct epoll_event evs[32];
	struct sb_vhost_ep_tag *tag;
	bool cmd;
	int n, i;
	uint64_t v;

	pthread_setname_np(pthread_self(), "sb_vhost_ctl");
	while (!__atomic_load_n(&g_vhost.stop, __ATOMIC_ACQUIRE)) {
		n = epoll_wait(g_vhost.epfd, evs, 32, 1000);
		cmd = false;
		for (i = 0; i < n; i++) {
			tag = evs[i].data.ptr;
			switch (tag->kind) {
			case SB_EP_CMD:
				cmd = true;
				break;
			case SB_EP_LISTEN:
				_accept(tag->ctrlr);
				break;
			case SB_EP_CONN:
				/* A disconnect earlier in this batch may have closed it. */
				if (tag->ctrlr->conn_fd < 0) {
					break;
				}
				if (evs[i].events & EPOLLIN) {
					_conn_readable(tag->ctrlr);
				} else {
					_disconnect(tag->ctrlr, "hang-up");
				}
				break;
			case SB_EP_SLAVE:
				if (tag->ctrlr->slave_fd >= 0) {
					_slave_readable(tag->ctrlr);
				}
				break;
			}
		}
		/* Commands last: a delete frees controllers the batch above may name. */
		if (cmd) {
			eventfd_read(g_vhost.evfd, &v);
		}
		_check_pending();
		_ctl_run_pending();
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

static uint32_t
_ctrlrs_on(const struct sb_reactor *r)
{
	const struct sb_vhost_ctrlr *c;
	uint32_t n = 0;

	LIST_FOREACH(c, &g_vhost.ctrlrs, link) {
		n += c->reactor == r;
	}
	return n;
}

/* The least loaded reactor of the mask. */
static int
_pick_reactor(const char *cpumask, struct sb_reactor **out)
{
	uint32_t cores[SB_MAX_REACTORS], count, i;
	struct sb_reactor *r, *best = NULL;
	int rc;

	if (cpumask == NULL || cpumask[0] == '\0') {
		*out = sb_reactor_get(0);
		return *out ? 0 : -ESHUTDOWN;
	}
	rc = sb_parse_core_mask(cpumask, cores, SB_MAX_REACTORS, &count);
	if (rc != 0) {
		return -EINVAL;
	}
	for (i = 0; i < count; i++) {
		r = sb_reactor_get_by_core(cores[i]);
		if (r != NULL && (best == NULL || _ctrlrs_on(r) < _ctrlrs_on(best))) {
			best = r;
		}
	}
	if (best == NULL) {
		return -EINVAL;
	}
	*out = best;
	return 0;
}

static int
_listen(struct sb_vhost_ctrlr *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event ev = { .events = EPOLLIN };
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
	ev.data.ptr = &c->listen_tag;
	if (epoll_ctl(g_vhost.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		rc = -errno;
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
	char dir[PATH_MAX];
	uint16_t q;
	int rc, len;

	if (!_valid_name(o->name) || o->bdev_name == NULL || o->packed_ring ||
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
	pthread_mutex_lock(&g_vhost.lock);
	memcpy(dir, g_vhost.socket_dir, sizeof(dir));
	pthread_mutex_unlock(&g_vhost.lock);
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
	c->max_queues = o->max_queues ? o->max_queues : SB_VHOST_MAX_QUEUES;
	c->listen_fd = c->conn_fd = c->slave_fd = -1;
	for (q = 0; q < SB_VHOST_MAX_QUEUES; q++) {
		c->vqs[q].ctrlr = c;
		c->vqs[q].index = q;
		c->vqs[q].kickfd = c->vqs[q].callfd = c->vqs[q].run_callfd = -1;
		TAILQ_INIT(&c->vqs[q].retry);
	}
	rc = _pick_reactor(o->cpumask, &c->reactor);
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
		goto out;
	}
	rc = _listen(c);
	if (rc != 0) {
		sb_vhost_bdev_close(c);
		goto out;
	}
	LIST_INSERT_HEAD(&g_vhost.ctrlrs, c, link);
	SB_NOTICELOG("vhost %s: controller for bdev %s listening on %s (reactor core %u)\n",
		     c->name, c->bdev_name, c->socket_path, sb_reactor_core(c->reactor));
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
	rc = _ctl_run(_do_create, &a);
	return rc != 0 ? rc : a.rc;
}

static void
_destroy(struct sb_vhost_ctrlr *c)
{
	_disconnect(c, "controller deleted");
	sb_vhost_session_reset(c);
	epoll_ctl(g_vhost.epfd, EPOLL_CTL_DEL, c->listen_fd, NULL);
	close(c->listen_fd);
	unlink(c->socket_path);
	sb_vhost_bdev_close(c);
	LIST_REMOVE(c, link);
	SB_NOTICELOG("vhost %s: controller deleted\n", c->name);
	free(c);
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
	if (c->conn_fd >= 0 && !a->force) {
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
	rc = _ctl_run(_do_delete, &a);
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
	/* Stored and reported; calls are not delayed (EVENT_IDX already batches them). */
	c->delay_base_us = a->a;
	c->iops_threshold = a->b;
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
	rc = _ctl_run(_do_coalescing, &a);
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
	}
	info->features = c->features;
	info->protocol_features = c->protocol_features;
	info->delay_base_us = c->delay_base_us;
	info->iops_threshold = c->iops_threshold;
	info->completed_ios = __atomic_load_n(&c->completed_ios, __ATOMIC_RELAXED);
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
	rc = _ctl_run(_do_get_info, &a);
	return rc != 0 ? rc : a.rc;
}

static void
_do_list(void *arg)
{
	struct _name_args *a = arg;
	struct sb_vhost_ctrlr *c;
	uint32_t n = 0, total = 0;

	LIST_FOREACH(c, &g_vhost.ctrlrs, link) {
		total++;
	}
	/* The table is built by head insertion: list oldest first. */
	for (uint32_t want = total; want > 0; want--) {
		uint32_t i = 0;

		LIST_FOREACH(c, &g_vhost.ctrlrs, link) {
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
	rc = _ctl_run(_do_list, &a);
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
	pthread_mutex_lock(&g_vhost.lock);
	snprintf(g_vhost.socket_dir, sizeof(g_vhost.socket_dir), "%s", dir);
	pthread_mutex_unlock(&g_vhost.lock);
	return 0;
}

/* ---- subsystem ---- */

int
sb_vhost_subsystem_init(void)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int rc;

	g_vhost.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (g_vhost.epfd < 0) {
		return -errno;
	}
	g_vhost.evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (g_vhost.evfd < 0) {
		rc = -errno;
		goto err;
	}
	g_vhost.cmd_tag.kind = SB_EP_CMD;
	ev.data.ptr = &g_vhost.cmd_tag;
	if (epoll_ctl(g_vhost.epfd, EPOLL_CTL_ADD, g_vhost.evfd, &ev) != 0) {
		rc = -errno;
		goto err;
	}
	LIST_INIT(&g_vhost.ctrlrs);
	g_vhost.stop = false;
	rc = -pthread_create(&g_vhost.thread, NULL, _ctl_thread, NULL);
	if (rc != 0) {
		goto err;
	}
	pthread_mutex_lock(&g_vhost.lock);
	g_vhost.running = true;
	pthread_mutex_unlock(&g_vhost.lock);
	return 0;
err:
	if (g_vhost.evfd >= 0) {
		close(g_vhost.evfd);
		g_vhost.evfd = -1;
	}
	close(g_vhost.epfd);
	g_vhost.epfd = -1;
	return rc;
}

static void
_do_delete_all(void *arg)
{
	while (!LIST_EMPTY(&g_vhost.ctrlrs)) {
		_destroy(LIST_FIRST(&g_vhost.ctrlrs));
	}
}

void
sb_vhost_subsystem_fini(void)
{
	bool running;

	pthread_mutex_lock(&g_vhost.lock);
	running = g_vhost.running;
	pthread_mutex_unlock(&g_vhost.lock);
	if (!running) {
		return;
	}
	_ctl_run(_do_delete_all, NULL);
	pthread_mutex_lock(&g_vhost.lock);
	g_vhost.stop = true;
	g_vhost.running = false;
	pthread_mutex_unlock(&g_vhost.lock);
	sb_vhost_ctl_wake();
	pthread_join(g_vhost.thread, NULL);
	close(g_vhost.evfd);
	__atomic_store_n(&g_vhost.evfd, -1, __ATOMIC_RELEASE);
	close(g_vhost.epfd);
	g_vhost.epfd = -1;
}
