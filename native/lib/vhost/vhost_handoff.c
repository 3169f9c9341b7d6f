/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Restart without a disconnect: hand every controller's sockets and
 * session to the next agent process (sb/vhost.h, "Restart without a
 * disconnect").
 *
 * Export (old process, control thread): stop each controller's rings,
 * which waits for their in-flight requests, so each ring's next avail
 * index is exact and the inflight region holds nothing; record what the
 * front-end configured (features, memory table, rings, eventfds, inflight
 * region) with the fds; clear their close-on-exec flag and forget them.
 * The controller stays, inert, until the engine stops.
 *
 * Import (next process): the records are staged before the agent replays
 * its saved controllers; _do_create claims the record of its name, listens
 * on the handed socket, maps the memory and inflight region again from
 * their fds and starts the rings that were running, at their saved index.
 * Nothing is sent to the front-end: to QEMU the back-end only paused.
 */
#include "vhost/vhost_dev.h"
#include "sb/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

_Static_assert(SB_VHOST_HANDOFF_MAX_REGIONS == SB_VHOST_MAX_MEM_SLOTS,
	       "a handoff record holds every region of a memory table");

/* Records staged for controllers still to be created (control thread). */
static struct {
	struct sb_vhost_handoff *recs;
	bool *claimed;
	uint32_t count;
} g_staged;

static void
_set_cloexec(int fd, bool on)
{
	int flags;

	if (fd < 0) {
		return;
	}
	flags = fcntl(fd, F_GETFD);
	if (flags >= 0) {
		fcntl(fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC);
	}
}

/* Every fd a record holds, each once; fn(fd, arg). */
static void
_each_fd(struct sb_vhost_handoff *h, void (*fn)(int fd, bool arg), bool arg)
{
	uint32_t i;

	fn(h->listen_fd, arg);
	fn(h->conn_fd, arg);
	fn(h->slave_fd, arg);
	fn(h->inflight_fd, arg);
	for (i = 0; i < h->nregions && i < SB_VHOST_HANDOFF_MAX_REGIONS; i++) {
		fn(h->regions[i].fd, arg);
	}
	for (i = 0; i < h->nvqs && i < SB_VHOST_MAX_QUEUES; i++) {
		fn(h->vqs[i].kickfd, arg);
		fn(h->vqs[i].callfd, arg);
	}
}

static void
_close_fd(int fd, bool unused)
{
	if (fd >= 0) {
		close(fd);
	}
}

static void
_close_all(struct sb_vhost_handoff *h)
{
	_each_fd(h, _close_fd, false);
	h->listen_fd = h->conn_fd = h->slave_fd = h->inflight_fd = -1;
	h->nregions = 0;
	h->nvqs = 0;
}

static void
_record_init(struct sb_vhost_handoff *h, const struct sb_vhost_ctrlr *c)
{
	uint16_t q;

	memset(h, 0, sizeof(*h));
	snprintf(h->name, sizeof(h->name), "%s", c->name);
	snprintf(h->socket, sizeof(h->socket), "%s", c->socket_path);
	h->listen_fd = h->conn_fd = h->slave_fd = h->inflight_fd = -1;
	for (q = 0; q < SB_VHOST_MAX_QUEUES; q++) {
		h->vqs[q].kickfd = h->vqs[q].callfd = -1;
	}
}

/* ---- export ---- */

/* Why c's session cannot be handed over (NULL: it can); its rings are stopped. */
static const char *
_stop_session(struct sb_vhost_ctrlr *c, uint32_t *running)
{
	uint32_t i;
	uint16_t q;

	*running = 0;
	if (c->conn_fd < 0) {
		return NULL; /* nothing but the listening socket to hand over */
	}
	if (c->broken) {
		return "the device is broken (the front-end must reset it)";
	}
	if (c->parked) {
		return "a reactor did not answer in time (the controller is parked)";
	}
	for (q = 0; q < c->max_queues; q++) {
		if (c->vqs[q].started) {
			*running |= 1u << q;
			if (sb_vhost_vq_stop(&c->vqs[q]) != 0) {
				return "a ring's in-flight requests did not finish in time";
			}
		}
	}
	if (c->mem == NULL) {
		return *running ? "the memory table is gone" : NULL;
	}
	for (i = 0; i < c->mem->nregions; i++) {
		if (c->mem->regions[i].fd < 0) {
			return "a memory region has no fd";
		}
	}
	return NULL;
}

void
sb_vhost_handoff_fill(const struct sb_vhost_ctrlr *c, struct sb_vhost_handoff *h,
		      uint32_t running)
{
	uint32_t i;
	uint16_t q;

	_record_init(h, c);
	h->listen_fd = c->listen_fd;
	h->conn_fd = c->conn_fd;
	h->slave_fd = c->slave_fd;
	h->features = c->features;
	h->protocol_features = c->protocol_features;
	h->features_set = c->features_set;
	for (i = 0; c->mem != NULL && i < c->mem->nregions; i++) {
		const struct sb_vhost_mem_region *r = &c->mem->regions[i];

		h->regions[i] = (struct sb_vhost_handoff_region){
			.gpa = r->gpa, .size = r->size, .uva = r->uva,
			.mmap_offset = r->mmap_offset, .fd = r->fd,
		};
	}
	h->nregions = i;
	if (c->inflight_base != NULL) {
		h->inflight_fd = c->inflight_fd;
		h->inflight_size = c->inflight_size;
		h->inflight_offset = c->inflight_offset;
		h->inflight_qsize = c->inflight_qsize;
		h->inflight_nq = c->inflight_nq;
	}
	h->nvqs = c->max_queues;
	for (q = 0; q < c->max_queues; q++) {
		const struct sb_vhost_vq *vq = &c->vqs[q];

		h->vqs[q] = (struct sb_vhost_handoff_vq){
			.num = vq->num, .base = (uint16_t)vq->base,
			.base_used = (uint16_t)(vq->base >> 16), .addr_flags = vq->addr.flags,
			.desc_addr = vq->addr.desc_user_addr, .avail_addr = vq->addr.avail_user_addr,
			.used_addr = vq->addr.used_user_addr, .log_addr = vq->addr.log_guest_addr,
			.kickfd = vq->kickfd, .callfd = vq->callfd, .addr_set = vq->addr_set,
			.kick_set = vq->kick_set, .enabled = vq->enabled,
			.running = (running & (1u << q)) != 0,
		};
	}
}

static void
_export_one(struct sb_vhost_ctrlr *c, struct sb_vhost_handoff *h)
{
	uint32_t running, i;
	uint16_t q;
	int listen_fd = c->listen_fd;
	const char *why;

	/* The fd store keeps nothing of a controller handed over by exec. */
	sb_vhost_fdstore_forget(c);
	/* The listening socket goes in any case: no connection is refused meanwhile. */
	if (listen_fd >= 0) {
		sb_vhost_ctl_unwatch(listen_fd);
		c->listen_fd = -1;
	}
	c->handed_off = true;
	why = _stop_session(c, &running);
	if (why != NULL) {
		/* Deleting the controller closes the session: the front-end reconnects. */
		SB_NOTICELOG("vhost %s: session not handed over: %s\n", c->name, why);
		_record_init(h, c);
		h->why = why;
		h->listen_fd = listen_fd;
		_set_cloexec(listen_fd, false);
		return;
	}
	sb_vhost_handoff_fill(c, h, running);
	h->listen_fd = listen_fd;
	/* Let go of everything handed over: the controller is inert now. */
	for (i = 0; c->mem != NULL && i < c->mem->nregions; i++) {
		c->mem->regions[i].fd = -1; /* unmapping below does not close it */
	}
	c->inflight_fd = -1;
	for (q = 0; q < c->max_queues; q++) {
		c->vqs[q].kickfd = c->vqs[q].callfd = c->vqs[q].run_callfd = -1;
	}
	if (c->conn_fd >= 0) {
		sb_vhost_ctl_unwatch(c->conn_fd);
		c->conn_fd = -1;
	}
	if (c->slave_fd >= 0) {
		sb_vhost_ctl_unwatch(c->slave_fd);
		c->slave_fd = -1;
	}
	sb_vhost_session_reset(c); /* unmaps; closes none of the fds above */
	_each_fd(h, _set_cloexec, false);
	if (h->conn_fd >= 0) {
		SB_NOTICELOG("vhost %s: session handed over (%u rings were running)\n", c->name,
			     (unsigned)__builtin_popcount(running));
	}
}

struct _export_args {
	struct sb_vhost_handoff *out;
	uint32_t max;
	uint32_t count;
	int rc;
};

static void
_do_export(void *arg)
{
	struct _export_args *a = arg;
	struct sb_vhost_ctrlr *c;
	uint32_t n = 0;

	LIST_FOREACH(c, &g_sb_vhost_ctrlrs, link) {
		if (c->handed_off) {
			continue;
		}
		if (__atomic_load_n(&c->log_active, __ATOMIC_ACQUIRE) != NULL) {
			SB_ERRLOG("vhost %s: a live migration is logging dirty pages: no handoff "
				  "until it ends\n", c->name);
			a->rc = -EBUSY;
			return;
		}
		n++;
	}
	a->count = n;
	if (n > a->max) {
		a->rc = -ENOSPC;
		return;
	}
	n = 0;
	LIST_FOREACH(c, &g_sb_vhost_ctrlrs, link) {
		if (!c->handed_off) {
			_export_one(c, &a->out[n++]);
		}
	}
	a->rc = 0;
}

int
sb_vhost_handoff_export(struct sb_vhost_handoff *out, uint32_t max, uint32_t *count)
{
	struct _export_args a = { .out = out, .max = max };
	int rc;

	if (count == NULL || (out == NULL && max > 0)) {
		return -EINVAL;
	}
	rc = sb_vhost_ctl_run(_do_export, &a);
	*count = a.count;
	return rc != 0 ? rc : a.rc;
}

/* ---- import ---- */

static bool
_record_valid(const struct sb_vhost_handoff *h)
{
	uint32_t i;

	if (memchr(h->name, '\0', sizeof(h->name)) == NULL ||
	    memchr(h->socket, '\0', sizeof(h->socket)) == NULL ||
	    h->nregions > SB_VHOST_HANDOFF_MAX_REGIONS || h->nvqs > SB_VHOST_MAX_QUEUES) {
		return false;
	}
	if (h->conn_fd < 0) {
		return true;
	}
	for (i = 0; i < h->nregions; i++) {
		if (h->regions[i].fd < 0) {
			return false;
		}
	}
	return true;
}

struct _stage_args {
	const struct sb_vhost_handoff *in;
	uint32_t count;
	int rc;
};

int
sb_vhost_handoff_stage_locked(const struct sb_vhost_handoff *in, uint32_t count)
{
	uint32_t i;

	if (g_staged.count > 0) {
		return -EBUSY;
	}
	for (i = 0; i < count; i++) {
		if (!_record_valid(&in[i])) {
			return -EINVAL;
		}
	}
	g_staged.recs = calloc(count ? count : 1, sizeof(*g_staged.recs));
	g_staged.claimed = calloc(count ? count : 1, sizeof(*g_staged.claimed));
	if (g_staged.recs == NULL || g_staged.claimed == NULL) {
		free(g_staged.recs);
		free(g_staged.claimed);
		g_staged.recs = NULL;
		g_staged.claimed = NULL;
		return -ENOMEM;
	}
	memcpy(g_staged.recs, in, count * sizeof(*in));
	for (i = 0; i < count; i++) {
		g_staged.recs[i].why = NULL;
		/* Ours now: not inherited by anything this process runs. */
		_each_fd(&g_staged.recs[i], _set_cloexec, true);
	}
	g_staged.count = count;
	return 0;
}

static void
_do_stage(void *arg)
{
	struct _stage_args *a = arg;

	a->rc = sb_vhost_handoff_stage_locked(a->in, a->count);
}

int
sb_vhost_handoff_stage(const struct sb_vhost_handoff *in, uint32_t count)
{
	struct _stage_args a = { .in = in, .count = count };
	int rc;

	if (in == NULL && count > 0) {
		return -EINVAL;
	}
	rc = sb_vhost_ctl_run(_do_stage, &a);
	return rc != 0 ? rc : a.rc;
}

struct sb_vhost_handoff *
sb_vhost_handoff_claim(const char *name)
{
	struct sb_vhost_handoff *h;
	uint32_t i;

	for (i = 0; i < g_staged.count; i++) {
		if (!g_staged.claimed[i] && strcmp(g_staged.recs[i].name, name) == 0) {
			h = malloc(sizeof(*h));
			if (h == NULL) {
				return NULL; /* finish() closes its fds: the front-end reconnects */
			}
			g_staged.claimed[i] = true;
			*h = g_staged.recs[i];
			return h;
		}
	}
	return NULL;
}

int
sb_vhost_handoff_listen(struct sb_vhost_ctrlr *c, struct sb_vhost_handoff *h)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	int listening = 0;
	socklen_t optlen = sizeof(listening);
	int fd = h->listen_fd;

	h->listen_fd = -1;
	if (fd < 0) {
		return -ENOENT;
	}
	/* It must still be the listening socket bound at this controller's path. */
	memset(&sa, 0, sizeof(sa));
	if ((h->socket[0] != '\0' && strcmp(h->socket, c->socket_path) != 0) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0 || sa.sun_family != AF_UNIX ||
	    strncmp(sa.sun_path, c->socket_path, sizeof(sa.sun_path)) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) != 0 || !listening) {
		SB_WARNLOG("vhost %s: the handed-over socket is not the one at %s; listening anew\n",
			   c->name, c->socket_path);
		close(fd);
		return -ENOENT;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	c->listen_fd = fd;
	c->listen_tag.kind = SB_EP_LISTEN;
	c->listen_tag.ctrlr = c;
	if (sb_vhost_ctl_watch(fd, &c->listen_tag) != 0) {
		close(fd);
		c->listen_fd = -1;
		return -ENOENT;
	}
	return 0;
}

/* Why h's session does not fit controller c (NULL: it does). */
static const char *
_session_mismatch(const struct sb_vhost_ctrlr *c, const struct sb_vhost_handoff *h)
{
	uint16_t q;

	/* FLUSH is answered on any bdev (without a volatile cache at once): a
	 * session from a release that offered it everywhere still fits. */
	if (h->features & ~sb_blk_features(&c->geo) & ~(1ull << VIRTIO_BLK_F_FLUSH)) {
		return "the session negotiated features this controller does not offer";
	}
	if (h->protocol_features & ~SB_VHOST_PROTOCOL_FEATURES) {
		return "the session negotiated unknown protocol features";
	}
	if (h->nvqs > c->max_queues) {
		for (q = c->max_queues; q < h->nvqs; q++) {
			if (h->vqs[q].kick_set || h->vqs[q].addr_set || h->vqs[q].running) {
				return "the session uses more queues than this controller has";
			}
		}
	}
	for (q = 0; q < h->nvqs; q++) {
		uint16_t n = h->vqs[q].num;

		if (n > SB_VHOST_MAX_QUEUE_SIZE || (n & (n - 1)) != 0) {
			return "a ring has an invalid size";
		}
	}
	return NULL;
}

/* Take over h's session; rings not started yet.  \return why not, or NULL. */
static const char *
_take_session(struct sb_vhost_ctrlr *c, struct sb_vhost_handoff *h)
{
	struct vhost_user_mem_region r;
	struct sb_vhost_mem *mem;
	uint32_t i;
	uint16_t q;
	int rc;

	mem = sb_vhost_mem_alloc();
	if (mem == NULL) {
		return "out of memory";
	}
	for (i = 0; i < h->nregions; i++) {
		r = (struct vhost_user_mem_region){
			.guest_phys_addr = h->regions[i].gpa, .memory_size = h->regions[i].size,
			.userspace_addr = h->regions[i].uva, .mmap_offset = h->regions[i].mmap_offset,
		};
		/* mem_add maps it and keeps its own copy of the fd. */
		rc = sb_vhost_mem_add(mem, &r, h->regions[i].fd, NULL);
		if (rc != 0) {
			sb_vhost_mem_free(mem);
			return "a memory region cannot be mapped again";
		}
	}
	if (h->inflight_fd >= 0 &&
	    sb_vhost_inflight_map(c, h->inflight_fd, h->inflight_size, h->inflight_offset,
				  h->inflight_nq, h->inflight_qsize) != 0) {
		sb_vhost_mem_free(mem);
		return "the inflight region cannot be mapped again";
	}
	c->conn_tag.kind = SB_EP_CONN;
	c->conn_tag.ctrlr = c;
	if (sb_vhost_ctl_watch(h->conn_fd, &c->conn_tag) != 0) {
		sb_vhost_inflight_unmap(c);
		sb_vhost_mem_free(mem);
		return "the connection cannot be watched";
	}
	c->conn_fd = h->conn_fd;
	h->conn_fd = -1;
	sb_vhost_ctl_set_slave(c, h->slave_fd);
	h->slave_fd = -1;
	c->mem = mem;
	c->features = h->features;
	c->features_set = h->features_set;
	c->protocol_features = h->protocol_features;
	for (q = 0; q < h->nvqs && q < c->max_queues; q++) {
		struct sb_vhost_vq *vq = &c->vqs[q];
		const struct sb_vhost_handoff_vq *hv = &h->vqs[q];

		vq->num = hv->num;
		vq->base = hv->base | (uint32_t)hv->base_used << 16;
		vq->addr = (struct vhost_user_vring_addr){
			.index = q, .flags = hv->addr_flags, .desc_user_addr = hv->desc_addr,
			.used_user_addr = hv->used_addr, .avail_user_addr = hv->avail_addr,
			.log_guest_addr = hv->log_addr,
		};
		vq->addr_set = hv->addr_set;
		vq->kick_set = hv->kick_set;
		vq->enabled = hv->enabled;
		vq->kickfd = hv->kickfd;
		vq->callfd = hv->callfd;
		h->vqs[q].kickfd = h->vqs[q].callfd = -1;
	}
	return NULL;
}

void
sb_vhost_handoff_adopt(struct sb_vhost_ctrlr *c, struct sb_vhost_handoff *h)
{
	const char *why = NULL;
	uint32_t running = 0;
	uint16_t q;

	if (c == NULL || h->conn_fd < 0) {
		goto out;
	}
	why = _session_mismatch(c, h);
	if (why == NULL) {
		why = _take_session(c, h);
	}
	if (why != NULL) {
		/* Closing the connection below: the front-end sees a disconnect. */
		SB_ERRLOG("vhost %s: handed-over session dropped: %s\n", c->name, why);
		goto out;
	}
	c->adopted = true;
	for (q = 0; q < c->max_queues; q++) {
		if (q < h->nvqs && h->vqs[q].running) {
			running |= 1u << q;
			if (sb_vhost_vq_maybe_start(&c->vqs[q]) != 0 || !c->vqs[q].started) {
				/* A ring QEMU believes runs would hang: let it reconnect instead. */
				SB_ERRLOG("vhost %s: queue %u could not be resumed\n", c->name, q);
				sb_vhost_ctl_disconnect(c, "a ring could not be resumed");
				goto out;
			}
			/*
			 * Completions the previous process published but had not
			 * signalled yet (it died, or it stopped the ring with a call
			 * pending a coalescing delay): one call covers them; a spurious
			 * one costs the driver a look at its used ring.
			 */
			if (c->vqs[q].callfd >= 0) {
				eventfd_write(c->vqs[q].callfd, 1);
			}
		}
	}
	SB_NOTICELOG("vhost %s: session taken over from the previous process (%u rings "
		     "resumed)\n", c->name, (unsigned)__builtin_popcount(running));
out:
	_close_all(h);
	free(h);
}

struct _finish_args {
	char *names;
	uint32_t len;
	uint32_t count;
};

static void
_do_finish(void *arg)
{
	struct _finish_args *a = arg;
	size_t used = 0;
	uint32_t i;

	if (a->names != NULL && a->len > 0) {
		a->names[0] = '\0';
	}
	for (i = 0; i < g_staged.count; i++) {
		if (g_staged.claimed[i]) {
			continue;
		}
		SB_ERRLOG("vhost %s: handed over, but no such controller was created: its "
			  "front-end is disconnected\n", g_staged.recs[i].name);
		_close_all(&g_staged.recs[i]);
		if (a->names != NULL && used + 1 < a->len) {
			used += (size_t)snprintf(a->names + used, a->len - used, "%s%s",
						 a->count ? "," : "", g_staged.recs[i].name);
			if (used >= a->len) {
				used = a->len - 1;
			}
		}
		a->count++;
	}
	free(g_staged.recs);
	free(g_staged.claimed);
	g_staged.recs = NULL;
	g_staged.claimed = NULL;
	g_staged.count = 0;
	/* Names the fd store gave back for controllers that are not there. */
	sb_vhost_fdstore_restored_done();
}

int
sb_vhost_handoff_finish(char *names, uint32_t len, uint32_t *count)
{
	struct _finish_args a = { .names = names, .len = len };
	int rc;

	rc = sb_vhost_ctl_run(_do_finish, &a);
	if (count != NULL) {
		*count = a.count;
	}
	return rc;
}
