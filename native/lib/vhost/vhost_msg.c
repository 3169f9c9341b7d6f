/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhost-user message handlers: one per request type behind one dispatch
 * switch (control thread).  sb_vhost_msg_check() has validated sizes, fd
 * counts and queue indexes before a handler runs; handlers check values.
 */
#include "vhost/vhost_dev.h"
#include "sb/log.h"
#include "sb/thread.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>



struct _ctx {
	struct sb_vhost_ctrlr *c;
	struct vhost_user_msg *msg;
	bool replied;
};

static int
_reply(struct _ctx *x, const void *payload, uint32_t size, int fd)
{
	x->replied = true;
	if (x->c->parked) {
		/* A reactor did not answer: no reply can say what happened; the session is cut. */
		return -EIO;
	}
	return sb_vhost_wire_reply(x->c->conn_fd, x->msg, payload, size, fd);
}

static int
_reply_u64(struct _ctx *x, uint64_t v)
{
	return _reply(x, &v, sizeof(v), -1);
}

static struct sb_vhost_vq *
_vq(struct _ctx *x, uint32_t index)
{
	/* Index already checked against max_queues by sb_vhost_msg_check(). */
	return &x->c->vqs[index];
}

static int
_h_get_features(struct _ctx *x)
{
	return _reply_u64(x, sb_blk_features(&x->c->geo));
}

/* What the reactor logs into: the log while LOG_ALL is negotiated. */
static void
_log_publish(struct sb_vhost_ctrlr *c)
{
	struct sb_vhost_log *want = NULL;

	if (c->features & (1ull << VHOST_F_LOG_ALL)) {
		want = c->log;
		if (want == NULL) {
			SB_WARNLOG("vhost %s: VHOST_F_LOG_ALL without a log; pages are marked once "
				   "SET_LOG_BASE arrives\n", c->name);
		}
	}
	if (want != c->log_active) {
		SB_NOTICELOG("vhost %s: dirty logging %s\n", c->name, want ? "on" : "off");
	}
	__atomic_store_n(&c->log_active, want, __ATOMIC_RELEASE);
}

/* Put log in place of the current one (NULL: none); the old one is unmapped once unused. */
static void
_log_replace(struct sb_vhost_ctrlr *c, struct sb_vhost_log *log)
{
	struct sb_vhost_log *old = c->log;

	c->log = log;
	_log_publish(c);
	if (old == NULL) {
		return;
	}
	if (sb_vhost_reactor_barrier(c) != 0) {
		/* A reactor may still hold the old log: c is parked, the log kept. */
		sb_vhost_release_log(c, old);
		return;
	}
	if (old->outside > 0) {
		SB_WARNLOG("vhost %s: %" PRIu64 " dirty pages fell outside the log\n", c->name,
			   old->outside);
	}
	sb_vhost_log_unmap(old);
}

static int
_h_set_features(struct _ctx *x)
{
	uint64_t f = x->msg->p.u64, offered = sb_blk_features(&x->c->geo);

	/*
	 * FLUSH is answered on any bdev (at once without a volatile cache): a
	 * guest that acked it from an agent that offered it everywhere comes
	 * back with it on a reconnect, and QEMU does not ask again.
	 */
	offered |= 1ull << VIRTIO_BLK_F_FLUSH;
	/* QEMU 7.2 includes bit 30 here; it is part of what we offer. */
	if (f & ~offered) {
		SB_ERRLOG("vhost %s: SET_FEATURES with unoffered bits 0x%" PRIx64 "\n", x->c->name,
			  f & ~offered);
		return -EINVAL;
	}
	x->c->features = f;
	x->c->features_set = true;
	_log_publish(x->c);
	return 0;
}

static int
_h_set_log_base(struct _ctx *x)
{
	struct sb_vhost_log *log = NULL;
	const char *why = NULL;
	int rc;

	if (!(x->c->protocol_features & (1ull << VHOST_USER_PROTOCOL_F_LOG_SHMFD))) {
		why = "LOG_SHMFD not negotiated";
		rc = -EINVAL;
	} else {
		rc = sb_vhost_log_map(x->msg->fds[0], x->msg->p.log.mmap_size,
				      x->msg->p.log.mmap_offset, x->c->mem, &log, &why);
	}
	sb_vhost_msg_close_fds(x->msg);
	if (rc != 0) {
		/*
		 * The front-end takes any reply as "logging": a refused log must
		 * cut the session, or it would migrate pages we never mark.
		 */
		SB_ERRLOG("vhost %s: SET_LOG_BASE refused (size 0x%" PRIx64 " offset 0x%" PRIx64
			  "): %s\n", x->c->name, x->msg->p.log.mmap_size, x->msg->p.log.mmap_offset,
			  why ? why : strerror(-rc));
		return rc;
	}
	SB_INFOLOG("vhost %s: dirty log of %" PRIu64 " bytes mapped\n", x->c->name, log->size);
	if (log->drop) {
		SB_WARNLOG("vhost %s: SB_VHOST_TEST_DROP_DIRTY_LOG is set: dirty pages are NOT "
			   "marked (test hook; migration will lose data)\n", x->c->name);
	}
	_log_replace(x->c, log);
	/* vhost-user.rst: QEMU waits for a reply without payload. */
	return _reply(x, NULL, 0, -1);
}

/* Build a new table, stop the rings, swap, restart (rings may now live elsewhere). */
static void
_swap_mem(struct sb_vhost_ctrlr *c, struct sb_vhost_mem *mem, bool unmap_old)
{
	struct sb_vhost_mem *old;
	uint32_t mask;

	sb_vhost_pause_all(c, &mask);
	old = c->mem;
	c->mem = mem;
	/* A stop that timed out parked c: the old table stays until it recovers. */
	sb_vhost_release_mem(c, old, unmap_old);
	sb_vhost_resume(c, mask);
}

static int
_h_set_mem_table(struct _ctx *x)
{
	struct vhost_user_mem_table *t = &x->msg->p.mem;
	struct sb_vhost_mem *mem = sb_vhost_mem_alloc();
	uint32_t i;
	int rc = 0;

	if (mem == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < t->nregions; i++) {
		rc = sb_vhost_mem_add(mem, &t->regions[i], x->msg->fds[i], NULL);
		if (rc != 0) {
			SB_ERRLOG("vhost %s: memory region %u refused (gpa 0x%" PRIx64 " size 0x%" PRIx64
				  "): %s\n", x->c->name, i, t->regions[i].guest_phys_addr,
				  t->regions[i].memory_size, strerror(-rc));
			sb_vhost_mem_free(mem);
			goto out;
		}
	}
	_swap_mem(x->c, mem, true);
out:
	/* The mappings keep the memory; the fds are not needed any more. */
	sb_vhost_msg_close_fds(x->msg);
	return rc;
}

static int
_h_add_mem_reg(struct _ctx *x)
{
	struct sb_vhost_mem *mem = sb_vhost_mem_dup(x->c->mem);
	int rc;

	if (mem == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	rc = sb_vhost_mem_add(mem, &x->msg->p.memreg.region, x->msg->fds[0], NULL);
	if (rc != 0) {
		SB_ERRLOG("vhost %s: ADD_MEM_REG refused: %s\n", x->c->name, strerror(-rc));
		free(mem);
		goto out;
	}
	_swap_mem(x->c, mem, false);
out:
	sb_vhost_msg_close_fds(x->msg);
	return rc;
}

static int
_h_rem_mem_reg(struct _ctx *x)
{
	const struct vhost_user_mem_region *r = &x->msg->p.memreg.region;
	struct sb_vhost_mem_region gone = { 0 };
	struct sb_vhost_mem *mem;
	uint32_t i;
	int rc;

	sb_vhost_msg_close_fds(x->msg);
	if (x->c->mem == NULL) {
		return -ENOENT;
	}
	for (i = 0; i < x->c->mem->nregions; i++) {
		if (x->c->mem->regions[i].gpa == r->guest_phys_addr &&
		    x->c->mem->regions[i].size == r->memory_size) {
			gone = x->c->mem->regions[i];
		}
	}
	mem = sb_vhost_mem_dup(x->c->mem);
	if (mem == NULL) {
		return -ENOMEM;
	}
	rc = sb_vhost_mem_remove(mem, r, false);
	if (rc != 0) {
		SB_ERRLOG("vhost %s: REM_MEM_REG of an unknown region\n", x->c->name);
		free(mem);
		return rc;
	}
	_swap_mem(x->c, mem, false);
	if (gone.mmap_addr != NULL && x->c->mem == mem) {
		sb_vhost_release_mapping(x->c, gone.mmap_addr, gone.mmap_size, gone.fd);
	}
	return 0;
}

static int
_h_set_vring_num(struct _ctx *x)
{
	struct sb_vhost_vq *vq = _vq(x, x->msg->p.state.index);
	uint32_t n = x->msg->p.state.num;

	if (n == 0 || n > SB_VHOST_MAX_QUEUE_SIZE || (n & (n - 1)) != 0) {
		SB_ERRLOG("vhost %s: queue size %u refused\n", x->c->name, n);
		return -EINVAL;
	}
	if (vq->started) {
		return -EBUSY;
	}
	vq->num = (uint16_t)n;
	return 0;
}

static int
_h_set_vring_addr(struct _ctx *x)
{
	struct sb_vhost_vq *vq = _vq(x, x->msg->p.addr.index);
	const struct vhost_user_vring_addr *a = &x->msg->p.addr;
	int rc;

	if (a->flags & ~(uint32_t)(1u << VHOST_VRING_F_LOG)) {
		SB_ERRLOG("vhost %s: SET_VRING_ADDR with unknown flags 0x%x\n", x->c->name, a->flags);
		return -EINVAL;
	}
	if (vq->started && a->desc_user_addr == vq->addr.desc_user_addr &&
	    a->avail_user_addr == vq->addr.avail_user_addr &&
	    a->used_user_addr == vq->addr.used_user_addr) {
		/* Logging switched on or off under a running ring (migration start or end). */
		vq->addr = *a;
		return sb_vhost_vq_set_log(vq);
	}
	if (vq->started) {
		/* The ring moved: stop it (in-flight requests finish), then start it there. */
		rc = sb_vhost_vq_stop(vq);
		if (rc != 0) {
			return rc;
		}
		vq->addr = *a;
		return sb_vhost_vq_maybe_start(vq);
	}
	vq->addr = *a;
	vq->addr_set = true;
	return 0;
}

static int
_h_set_vring_base(struct _ctx *x)
{
	struct sb_vhost_vq *vq = _vq(x, x->msg->p.state.index);

	/*
	 * vhost-user.rst: a packed ring's base carries both indexes, each with
	 * its wrap counter (avail in bits 0-15, used in 16-31); a split ring's
	 * is the avail index.  The indexes are checked against the ring size
	 * at start.
	 */
	if (x->msg->p.state.num > UINT16_MAX &&
	    !(x->c->features & (1ull << VIRTIO_F_RING_PACKED))) {
		return -EINVAL;
	}
	if (vq->started) {
		return -EBUSY;
	}
	vq->base = x->msg->p.state.num;
	return 0;
}

/* The front-end stopped the device: a broken one may start afresh. */
static void
_clear_broken_if_stopped(struct sb_vhost_ctrlr *c)
{
	uint16_t q;

	for (q = 0; q < c->max_queues; q++) {
		if (c->vqs[q].started) {
			return;
		}
	}
	if (c->broken) {
		SB_NOTICELOG("vhost %s: device stopped by the front-end; may start again\n", c->name);
		c->broken = false;
	}
}

static int
_h_get_vring_base(struct _ctx *x)
{
	struct sb_vhost_vq *vq = _vq(x, x->msg->p.state.index);
	struct vhost_user_vring_state st = { .index = x->msg->p.state.index };

	/* vhost-user.rst: the ring is stopped once this is answered; finish in-flight first. */
	sb_vhost_vq_stop(vq);
	st.num = vq->base;
	if (vq->kickfd >= 0) {
		sb_vhost_release_fd(x->c, vq->kickfd);
		vq->kickfd = -1;
	}
	vq->kick_set = false;
	_clear_broken_if_stopped(x->c);
	return _reply(x, &st, sizeof(st), -1);
}

static int
_take_vring_fd(struct _ctx *x)
{
	if (x->msg->p.u64 & VHOST_USER_VRING_NOFD_MASK) {
		return -1;
	}
	x->msg->nfds = 0;
	return x->msg->fds[0];
}

static int
_h_set_vring_kick(struct _ctx *x)
{
	struct sb_vhost_vq *vq = _vq(x, (uint32_t)(x->msg->p.u64 & VHOST_USER_VRING_IDX_MASK));
	int fd = _take_vring_fd(x);

	sb_vhost_vq_stop(vq);
	if (vq->kickfd >= 0) {
		sb_vhost_release_fd(x->c, vq->kickfd);
	}
	/* Without an fd the ring is polled only (vhost-user.rst, NOFD flag). */
	vq->kickfd = fd;
	vq->kick_set = true;
	return sb_vhost_vq_maybe_start(vq);
}

static int
_h_set_vring_call(struct _ctx *x)
{
	struct sb_vhost_vq *vq = _vq(x, (uint32_t)(x->msg->p.u64 & VHOST_USER_VRING_IDX_MASK));
	int fd = _take_vring_fd(x);
	int old = vq->callfd;
	int rc;

	rc = sb_vhost_vq_set_call(vq, fd);
	if (rc != 0) {
		if (fd >= 0) {
			/* Parked: the swap may still run and signal fd; kept until then. */
			sb_vhost_release_fd(x->c, fd);
		}
		return rc;
	}
	vq->callfd = fd;
	if (old >= 0) {
		sb_vhost_release_fd(x->c, old);
	}
	return 0;
}

static int
_h_set_vring_err(struct _ctx *x)
{
	/* We never report ring errors through this fd. */
	sb_vhost_msg_close_fds(x->msg);
	return 0;
}

static int
_h_set_protocol_features(struct _ctx *x)
{
	uint64_t f = x->msg->p.u64;

	if (f & ~SB_VHOST_PROTOCOL_FEATURES) {
		SB_ERRLOG("vhost %s: unoffered protocol features 0x%" PRIx64 "\n", x->c->name,
			  (uint64_t)(f & ~SB_VHOST_PROTOCOL_FEATURES));
		return -EINVAL;
	}
	x->c->protocol_features = f;
	return 0;
}

static int
_h_set_vring_enable(struct _ctx *x)
{
	struct sb_vhost_vq *vq = _vq(x, x->msg->p.state.index);

	if (x->msg->p.state.num > 1) {
		return -EINVAL;
	}
	vq->enabled = x->msg->p.state.num == 1;
	if (!vq->enabled) {
		return sb_vhost_vq_stop(vq);
	}
	return sb_vhost_vq_maybe_start(vq);
}

static int
_h_set_slave_req_fd(struct _ctx *x)
{
	int fd = x->msg->fds[0];

	x->msg->nfds = 0;
	sb_vhost_ctl_set_slave(x->c, fd);
	return 0;
}

static int
_h_get_config(struct _ctx *x)
{
	struct vhost_user_config reply;
	struct virtio_blk_config cfg;
	uint32_t off = x->msg->p.cfg.offset, size = x->msg->p.cfg.size;

	/*
	 * Any window inside the 256-byte vhost-user config limit (written so
	 * that offset + size cannot wrap); sb_vhost_msg_check() has bounded
	 * size and the message length.
	 */
	if (off > SB_VHOST_CONFIG_SPACE_MAX || size > SB_VHOST_CONFIG_SPACE_MAX - off) {
		SB_ERRLOG("vhost %s: GET_CONFIG offset %u size %u outside config space\n",
			  x->c->name, off, size);
		/* An empty reply tells the front-end the request failed. */
		return _reply(x, NULL, 0, -1);
	}
	sb_blk_config(&x->c->geo, &cfg);
	memset(&reply, 0, sizeof(reply));
	reply.offset = off;
	reply.size = size;
	reply.flags = x->msg->p.cfg.flags;
	/* Bytes past struct virtio_blk_config read as zero (SPDK asks for all 256). */
	if (off < sizeof(cfg)) {
		memcpy(reply.region, (uint8_t *)&cfg + off,
		       size < sizeof(cfg) - off ? size : sizeof(cfg) - off);
	}
	/*
	 * As long as the request: QEMU and rust-vmm send header + size and
	 * check the reply is that long; SPDK checks it against its fixed
	 * 12 + 256-byte struct, which is what it sent.
	 */
	return _reply(x, &reply, x->msg->hdr.size, -1);
}

static int
_h_set_config(struct _ctx *x)
{
	/* Only writeback could be writable, and we do not offer CONFIG_WCE. */
	SB_WARNLOG("vhost %s: SET_CONFIG refused (config space is read-only)\n", x->c->name);
	return -ENOTSUP;
}

static int
_h_get_inflight_fd(struct _ctx *x)
{
	struct vhost_user_inflight in = x->msg->p.inflight, out;
	uint64_t size;
	int fd, rc;

	if (in.num_queues == 0 || in.num_queues > x->c->max_queues || in.queue_size == 0 ||
	    in.queue_size > SB_VHOST_MAX_QUEUE_SIZE) {
		SB_ERRLOG("vhost %s: GET_INFLIGHT_FD for %u queues of %u refused\n", x->c->name,
			  in.num_queues, in.queue_size);
		memset(&out, 0, sizeof(out));
		return _reply(x, &out, x->msg->hdr.size, -1);
	}
	fd = sb_inflight_create(in.num_queues, in.queue_size, &size);
	if (fd < 0) {
		SB_ERRLOG("vhost %s: inflight region: %s\n", x->c->name, strerror(-fd));
		memset(&out, 0, sizeof(out));
		return _reply(x, &out, x->msg->hdr.size, -1);
	}
	memset(&out, 0, sizeof(out));
	out.mmap_size = size;
	out.mmap_offset = 0;
	out.num_queues = in.num_queues;
	out.queue_size = in.queue_size;
	rc = _reply(x, &out, x->msg->hdr.size, fd);
	/* The front-end keeps the fd and gives it back with SET_INFLIGHT_FD. */
	close(fd);
	return rc;
}

void
sb_vhost_inflight_unmap(struct sb_vhost_ctrlr *c)
{
	if (c->inflight_base != NULL) {
		sb_vhost_release_mapping(c, c->inflight_base, c->inflight_size, -1);
		c->inflight_base = NULL;
		c->inflight_size = 0;
	}
	if (c->inflight_fd >= 0) {
		sb_vhost_release_fd(c, c->inflight_fd);
		c->inflight_fd = -1;
	}
}

int
sb_vhost_inflight_map(struct sb_vhost_ctrlr *c, int fd, uint64_t size, uint64_t offset,
		      uint16_t num_queues, uint16_t queue_size)
{
	struct stat st;
	void *base;
	int rc, keep;

	if (num_queues == 0 || num_queues > c->max_queues || queue_size == 0 ||
	    queue_size > SB_VHOST_MAX_QUEUE_SIZE || size > SB_VHOST_INFLIGHT_MAX ||
	    size < sb_inflight_queue_bytes(queue_size) * num_queues || (offset & 4095) != 0 ||
	    offset > SB_VHOST_INFLIGHT_MAX) {
		SB_ERRLOG("vhost %s: inflight region with inconsistent sizes refused\n", c->name);
		return -EINVAL;
	}
	/* Touching a shared mapping beyond the end of its file raises SIGBUS. */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size < offset + size) {
		SB_ERRLOG("vhost %s: inflight region: the file does not cover it\n", c->name);
		return -EINVAL;
	}
	base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
	if (base == MAP_FAILED) {
		rc = -errno;
		SB_ERRLOG("vhost %s: inflight mmap: %s\n", c->name, strerror(-rc));
		return rc;
	}
	/* Kept so that a restart can hand the region to the next process. */
	keep = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (keep < 0) {
		rc = -errno;
		munmap(base, size);
		return rc;
	}
	sb_vhost_inflight_unmap(c);
	sb_vhost_sigbus_watch(base, size, (size_t)st.st_blksize);
	c->inflight_base = base;
	c->inflight_fd = keep;
	c->inflight_size = size;
	c->inflight_offset = offset;
	c->inflight_qsize = queue_size;
	c->inflight_nq = num_queues;
	return 0;
}

static int
_h_set_inflight_fd(struct _ctx *x)
{
	struct vhost_user_inflight *in = &x->msg->p.inflight;
	struct sb_vhost_ctrlr *c = x->c;
	uint16_t q;
	int rc = 0;

	for (q = 0; q < c->max_queues; q++) {
		if (c->vqs[q].started) {
			rc = -EBUSY;
			goto out;
		}
	}
	rc = sb_vhost_inflight_map(c, x->msg->fds[0], in->mmap_size, in->mmap_offset,
				   in->num_queues, in->queue_size);
out:
	sb_vhost_msg_close_fds(x->msg);
	return rc;
}

/* Stop rings and forget their configuration (RESET_DEVICE, RESET_OWNER, disconnect). */
static void
_reset_queues(struct sb_vhost_ctrlr *c)
{
	uint16_t q;

	if (c->parked) {
		/* Its reactors still read the queues, c->mem and c->features: the
		 * reset waits until they caught up (vhost_park.c). */
		return;
	}
	for (q = 0; q < c->max_queues; q++) {
		struct sb_vhost_vq *vq = &c->vqs[q];

		sb_vhost_vq_stop(vq);
		if (vq->kickfd >= 0) {
			sb_vhost_release_fd(c, vq->kickfd);
		}
		if (vq->callfd >= 0) {
			sb_vhost_release_fd(c, vq->callfd);
		}
		vq->kickfd = -1;
		vq->callfd = -1;
		vq->run_callfd = -1;
		vq->kick_set = false;
		vq->addr_set = false;
		vq->enabled = false;
		vq->num = 0;
		vq->base = 0;
	}
	c->features = 0;
	c->features_set = false;
	_log_publish(c); /* no VHOST_F_LOG_ALL any more: logging is off */
}

void
sb_vhost_session_reset(struct sb_vhost_ctrlr *c)
{
	if (c->parked) {
		/* Only what no reactor reads; the rest when c recovers. */
		sb_vhost_ctl_set_slave(c, -1);
		return;
	}
	_reset_queues(c);
	sb_vhost_release_mem(c, c->mem, true);
	c->mem = NULL;
	_log_replace(c, NULL);
	sb_vhost_inflight_unmap(c);
	sb_vhost_ctl_set_slave(c, -1);
	c->protocol_features = 0;
}

void
sb_vhost_send_config_change(struct sb_vhost_ctrlr *c)
{
	uint32_t flags = VHOST_USER_VERSION;
	int rc;

	if (c->slave_fd < 0 || !(c->protocol_features & (1ull << VHOST_USER_PROTOCOL_F_CONFIG))) {
		SB_NOTICELOG("vhost %s: no slave channel; the guest sees the new size after a "
			     "reconnect\n", c->name);
		return;
	}
	if (c->protocol_features & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK)) {
		/* The ack is read by the control loop when it arrives, never waited for here. */
		flags |= VHOST_USER_NEED_REPLY_MASK;
	}
	rc = sb_vhost_wire_send(c->slave_fd, VHOST_USER_SLAVE_CONFIG_CHANGE_MSG, flags, NULL, 0);
	if (rc != 0) {
		SB_ERRLOG("vhost %s: CONFIG_CHANGE_MSG not sent: %s\n", c->name, strerror(-rc));
	}
}

int
sb_vhost_handle_msg(struct sb_vhost_ctrlr *c, struct vhost_user_msg *msg)
{
	struct _ctx x = { .c = c, .msg = msg };
	uint32_t req = msg->hdr.request;
	const char *why = NULL;
	int rc;

	if (sb_vhost_msg_check(msg, c->max_queues, &why) != 0) {
		SB_ERRLOG("vhost %s: invalid %s (%u) message: %s\n", c->name, sb_vhost_req_name(req),
			  req, why);
		sb_vhost_msg_close_fds(msg);
		return -EINVAL;
	}
	if (c->parked) {
		/* Cut before anything is handled: a reactor may still run its last call. */
		sb_vhost_msg_close_fds(msg);
		return -EIO;
	}
	SB_DEBUGLOG("vhost %s: %s size %u fds %u\n", c->name, sb_vhost_req_name(req), msg->hdr.size,
		    msg->nfds);
	switch (req) {
	case VHOST_USER_GET_FEATURES:
		rc = _h_get_features(&x);
		break;
	case VHOST_USER_SET_FEATURES:
		rc = _h_set_features(&x);
		break;
	case VHOST_USER_SET_OWNER:
		rc = 0;
		break;
	case VHOST_USER_RESET_OWNER:
	case VHOST_USER_RESET_DEVICE:
		_reset_queues(c);
		_clear_broken_if_stopped(c);
		rc = 0;
		break;
	case VHOST_USER_SET_MEM_TABLE:
		rc = _h_set_mem_table(&x);
		break;
	case VHOST_USER_SET_LOG_BASE:
		rc = _h_set_log_base(&x);
		if (rc != 0) {
			return rc;
		}
		break;
	case VHOST_USER_SET_LOG_FD:
		/* An eventfd to signal log updates: the shared bitmap needs none. */
		rc = 0;
		break;
	case VHOST_USER_SET_VRING_NUM:
		rc = _h_set_vring_num(&x);
		break;
	case VHOST_USER_SET_VRING_ADDR:
		rc = _h_set_vring_addr(&x);
		break;
	case VHOST_USER_SET_VRING_BASE:
		rc = _h_set_vring_base(&x);
		break;
	case VHOST_USER_GET_VRING_BASE:
		rc = _h_get_vring_base(&x);
		break;
	case VHOST_USER_SET_VRING_KICK:
		rc = _h_set_vring_kick(&x);
		break;
	case VHOST_USER_SET_VRING_CALL:
		rc = _h_set_vring_call(&x);
		break;
	case VHOST_USER_SET_VRING_ERR:
		rc = _h_set_vring_err(&x);
		break;
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		rc = _reply_u64(&x, SB_VHOST_PROTOCOL_FEATURES);
		break;
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		rc = _h_set_protocol_features(&x);
		break;
	case VHOST_USER_GET_QUEUE_NUM:
		rc = _reply_u64(&x, c->max_queues);
		break;
	case VHOST_USER_SET_VRING_ENABLE:
		rc = _h_set_vring_enable(&x);
		break;
	case VHOST_USER_SET_SLAVE_REQ_FD:
		rc = _h_set_slave_req_fd(&x);
		break;
	case VHOST_USER_GET_CONFIG:
		rc = _h_get_config(&x);
		break;
	case VHOST_USER_SET_CONFIG:
		rc = _h_set_config(&x);
		break;
	case VHOST_USER_GET_INFLIGHT_FD:
		rc = _h_get_inflight_fd(&x);
		break;
	case VHOST_USER_SET_INFLIGHT_FD:
		rc = _h_set_inflight_fd(&x);
		break;
	case VHOST_USER_GET_MAX_MEM_SLOTS:
		rc = _reply_u64(&x, SB_VHOST_MAX_MEM_SLOTS);
		break;
	case VHOST_USER_ADD_MEM_REG:
		rc = _h_add_mem_reg(&x);
		break;
	case VHOST_USER_REM_MEM_REG:
		rc = _h_rem_mem_reg(&x);
		break;
	default:
		SB_WARNLOG("vhost %s: unsupported request %u refused\n", c->name, req);
		rc = -ENOTSUP;
		break;
	}
	sb_vhost_msg_close_fds(msg);
	if (c->parked) {
		/* A reactor did not answer in this message: the session is cut. */
		return -EIO;
	}
	/* What the front-end set up is in the fd store before it hears back. */
	if (rc == 0) {
		sb_vhost_fdstore_sync(c);
	}
	if (x.replied) {
		/*
		 * Messages with their own reply ignore NEED_REPLY (vhost-user.rst
		 * REPLY_ACK); rc is the send result: a failure cuts the session.
		 */
		return rc;
	}
	if (msg->hdr.flags & VHOST_USER_NEED_REPLY_MASK) {
		return _reply_u64(&x, rc == 0 ? 0 : 1);
	}
	if (rc != 0) {
		SB_WARNLOG("vhost %s: %s failed: %s\n", c->name, sb_vhost_req_name(req), strerror(-rc));
	}
	return 0;
}
