/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The vhost control thread: one epoll loop over every controller's
 * listening socket, front-end connection and slave channel, plus a command
 * eventfd.  It owns the controller table (vhost_ctrlr.c) and every
 * session's protocol state; the public sb_vhost_* calls post a command to
 * it and wait, so nothing needs a lock besides the command queue.  Each
 * queue is handed to its own reactor (one of the controller's cpumask) by
 * sb_call() (vhost_session.c).
 */
#include "vhost/vhost_dev.h"
#include "sb/log.h"
#include "sb/thread.h"
#include "sb_internal/subsystem.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
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

int
sb_vhost_ctl_run(void (*fn)(void *arg), void *arg)
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

/* ---- connections ---- */

void
sb_vhost_ctl_set_slave(struct sb_vhost_ctrlr *c, int fd)
{
	struct timeval tv = { .tv_sec = SB_VHOST_RECV_TIMEOUT_S };
	struct epoll_event ev = { .events = EPOLLIN };

	if (c->slave_fd >= 0) {
		epoll_ctl(g_vhost.epfd, EPOLL_CTL_DEL, c->slave_fd, NULL);
		close(c->slave_fd);
		c->slave_fd = -1;
	}
	if (fd < 0) {
		return;
	}
	/* Never let a stuck front-end block the control thread on this channel. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	c->slave_fd = fd;
	c->slave_tag.kind = SB_EP_SLAVE;
	c->slave_tag.ctrlr = c;
	ev.data.ptr = &c->slave_tag;
	if (epoll_ctl(g_vhost.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		SB_WARNLOG("vhost %s: slave channel not watched: %s\n", c->name, strerror(errno));
	}
}

void
sb_vhost_ctl_disconnect(struct sb_vhost_ctrlr *c, const char *why)
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
	sb_vhost_fdstore_sync(c);
}

bool
sb_vhost_ctl_reap_closed(struct sb_vhost_ctrlr *c)
{
	struct pollfd pfd = { .fd = c->conn_fd, .events = POLLRDHUP };

	if (c->conn_fd < 0) {
		return true;
	}
	if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
		sb_vhost_ctl_disconnect(c, "closed");
	}
	return c->conn_fd < 0;
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
	if (c->parked) {
		/* Its guest memory is still in use by a reactor: come back later. */
		if (!c->park_refusal_logged) {
			SB_WARNLOG("vhost %s: front-end refused until the controller's reactors "
				   "catch up\n", c->name);
			c->park_refusal_logged = true;
		}
		close(fd);
		return;
	}
	/* The front-end we have may be gone already (its hang-up not seen yet). */
	if (c->conn_fd >= 0 && !sb_vhost_ctl_reap_closed(c)) {
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
	sb_vhost_fdstore_sync(c);
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
		sb_vhost_ctl_disconnect(c, rc == -ECONNRESET ? "closed" : "protocol error");
		goto out;
	}
	rc = sb_vhost_handle_msg(c, msg);
	if (rc != 0) {
		c->broken = c->broken || rc == -EINVAL;
		sb_vhost_ctl_disconnect(c, c->parked ? "a reactor did not answer in time" :
					   rc == -EINVAL ? "invalid message" : "reply failed");
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
		sb_vhost_fdstore_sync(c);
	}
	free(msg);
}

int
sb_vhost_ctl_watch(int fd, struct sb_vhost_ep_tag *tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };

	return epoll_ctl(g_vhost.epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

void
sb_vhost_ctl_unwatch(int fd)
{
	epoll_ctl(g_vhost.epfd, EPOLL_CTL_DEL, fd, NULL);
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
					sb_vhost_ctl_disconnect(tag->ctrlr, "hang-up");
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
		sb_vhost_ctrlrs_check_pending();
		_ctl_run_pending();
	}
	/* A caller may have queued a command just before the stop: never leave it waiting. */
	_ctl_run_pending();
	sb_vhost_ctrlrs_delete_all(NULL);
	return NULL;
}

/* ---- subsystem ---- */

int
sb_vhost_subsystem_init(void)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int rc;

	rc = sb_vhost_sigbus_install();
	if (rc != 0) {
		return rc;
	}
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
	sb_vhost_ctl_run(sb_vhost_ctrlrs_delete_all, NULL);
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

