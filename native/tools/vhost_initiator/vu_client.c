/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhost-user front-end: wire I/O and the message sequence QEMU 7.2's
 * vhost-user-blk uses (docs/interop/vhost-user.rst; hw/block/vhost-user-blk.c).
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vhost_initiator.h"

void
vu_set_error(struct vu_conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->last_error, sizeof(c->last_error), fmt, ap);
	va_end(ap);
	if (c->verbose) {
		fprintf(stderr, "vhost_initiator: %s\n", c->last_error);
	}
}

const char *
vu_req_name(uint32_t req)
{
	switch (req) {
	case VU_GET_FEATURES: return "GET_FEATURES";
	case VU_SET_FEATURES: return "SET_FEATURES";
	case VU_SET_OWNER: return "SET_OWNER";
	case VU_SET_MEM_TABLE: return "SET_MEM_TABLE";
	case VU_SET_VRING_NUM: return "SET_VRING_NUM";
	case VU_SET_VRING_ADDR: return "SET_VRING_ADDR";
	case VU_SET_VRING_BASE: return "SET_VRING_BASE";
	case VU_GET_VRING_BASE: return "GET_VRING_BASE";
	case VU_SET_VRING_KICK: return "SET_VRING_KICK";
	case VU_SET_VRING_CALL: return "SET_VRING_CALL";
	case VU_GET_PROTOCOL_FEATURES: return "GET_PROTOCOL_FEATURES";
	case VU_SET_PROTOCOL_FEATURES: return "SET_PROTOCOL_FEATURES";
	case VU_GET_QUEUE_NUM: return "GET_QUEUE_NUM";
	case VU_SET_VRING_ENABLE: return "SET_VRING_ENABLE";
	case VU_GET_CONFIG: return "GET_CONFIG";
	case VU_SET_CONFIG: return "SET_CONFIG";
	case VU_GET_INFLIGHT_FD: return "GET_INFLIGHT_FD";
	case VU_SET_INFLIGHT_FD: return "SET_INFLIGHT_FD";
	case VU_SET_BACKEND_REQ_FD: return "SET_BACKEND_REQ_FD";
	case VU_GET_MAX_MEM_SLOTS: return "GET_MAX_MEM_SLOTS";
	case VU_ADD_MEM_REG: return "ADD_MEM_REG";
	default: return "request";
	}
}

int
vu_connect(struct vu_conn *c, const char *path, int timeout_ms)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	int waited = 0;
	int rc;

	memset(c->last_error, 0, sizeof(c->last_error));
	if (strlen(path) >= sizeof(addr.sun_path)) {
		vu_set_error(c, "socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(addr.sun_path, path);
	for (;;) {
		c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->fd < 0) {
			return -errno;
		}
		if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
			return 0;
		}
		rc = -errno;
		close(c->fd);
		c->fd = -1;
		/* The target may still be starting: retry like QEMU's reconnect. */
		if ((rc != -ENOENT && rc != -ECONNREFUSED) || waited >= timeout_ms) {
			vu_set_error(c, "connect %s: %s", path, strerror(-rc));
			return rc;
		}
		nanosleep(&ts, NULL);
		waited += 20;
	}
}

void
vu_close(struct vu_conn *c)
{
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

int
vu_send_raw(struct vu_conn *c, const void *buf, size_t len, const int *fds, int nfds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
	const uint8_t *p = buf;
	ssize_t n;

	if (nfds > VU_MAX_FDS) {
		return -EINVAL;
	}
	while (len > 0) {
		struct iovec iov = { .iov_base = (void *)p, .iov_len = len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

		/* DPDK attaches an SCM_RIGHTS header to every message, empty without fds. */
		if (nfds > 0 || (c->empty_cmsg && p == buf)) {
			struct cmsghdr *cm;

			memset(cbuf, 0, sizeof(cbuf));
			mh.msg_control = cbuf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
		}
		n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			vu_set_error(c, "send: %s", strerror(errno));
			return -errno;
		}
		/* fds ride with the first byte only. */
		nfds = 0;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
vu_send(struct vu_conn *c, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
	const int *fds, int nfds)
{
	uint8_t buf[VU_HDR_SIZE + sizeof(struct vu_config) + 64];
	struct vu_hdr hdr = { .request = req, .flags = VU_FLAG_VERSION | c->hdr_flags | flags,
			      .size = size };

	if (size > sizeof(buf) - VU_HDR_SIZE) {
		return -EINVAL;
	}
	memcpy(buf, &hdr, VU_HDR_SIZE);
	if (size > 0) {
		memcpy(buf + VU_HDR_SIZE, payload, size);
	}
	if (c->verbose > 1) {
		fprintf(stderr, "-> %s(%u) flags 0x%x size %u fds %d\n", vu_req_name(req), req,
			hdr.flags, size, nfds);
	}
	return vu_send_raw(c, buf, VU_HDR_SIZE + size, fds, nfds);
}

/* Read exactly len bytes within the connection's reply timeout. */
static int
_recv_all(struct vu_conn *c, void *buf, size_t len)
{
	uint8_t *p = buf;
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	ssize_t n;
	int rc;

	while (len > 0) {
		rc = poll(&pfd, 1, c->timeout_ms);
		if (rc == 0) {
			vu_set_error(c, "no reply within %d ms", c->timeout_ms);
			return -ETIMEDOUT;
		}
		if (rc < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		n = recv(c->fd, p, len, 0);
		if (n == 0) {
			vu_set_error(c, "target closed the connection");
			return -ECONNRESET;
		}
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				continue;
			}
			vu_set_error(c, "recv: %s", strerror(errno));
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
vu_recv_reply(struct vu_conn *c, uint32_t req, void *payload, uint32_t max)
{
	struct vu_hdr hdr;
	uint8_t sink[256];
	int rc;

	rc = _recv_all(c, &hdr, sizeof(hdr));
	if (rc != 0) {
		return rc;
	}
	/* QEMU drops a backend whose reply is not exactly VERSION|REPLY for
	 * the request it sent (vhost-user.c vhost_user_read_header): so do we. */
	if (hdr.flags != (VU_FLAG_VERSION | VU_FLAG_REPLY)) {
		vu_set_error(c, "%s reply: bad flags 0x%x", vu_req_name(req), hdr.flags);
		return -EPROTO;
	}
	if (hdr.request != req) {
		vu_set_error(c, "reply to %u received while waiting for %s", hdr.request,
			     vu_req_name(req));
		return -EPROTO;
	}
	if (hdr.size > max) {
		vu_set_error(c, "%s reply: size %u > %u", vu_req_name(req), hdr.size, max);
		while (hdr.size > 0) {
			uint32_t chunk = hdr.size < sizeof(sink) ? hdr.size : sizeof(sink);

			if (_recv_all(c, sink, chunk) != 0) {
				break;
			}
			hdr.size -= chunk;
		}
		return -EPROTO;
	}
	rc = _recv_all(c, payload, hdr.size);
	if (rc != 0) {
		return rc;
	}
	if (c->verbose > 1) {
		fprintf(stderr, "<- %s reply size %u\n", vu_req_name(req), hdr.size);
	}
	return (int)hdr.size;
}

/* GET_INFLIGHT_FD: a reply that carries the region's fd (vhost-user.rst). */
int
vu_get_inflight(struct vu_conn *c, uint8_t *msg, uint32_t len, int *fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct vu_hdr hdr;
	struct iovec iov = { .iov_base = &hdr, .iov_len = sizeof(hdr) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	struct cmsghdr *cm;
	ssize_t n;
	int rc;

	rc = vu_send(c, VU_GET_INFLIGHT_FD, 0, msg, len, NULL, 0);
	if (rc != 0) {
		return rc;
	}
	if (poll(&pfd, 1, c->timeout_ms) != 1) {
		vu_set_error(c, "GET_INFLIGHT_FD: no reply within %d ms", c->timeout_ms);
		return -ETIMEDOUT;
	}
	n = recvmsg(c->fd, &mh, MSG_WAITALL | MSG_CMSG_CLOEXEC);
	if (n != (ssize_t)sizeof(hdr) || hdr.request != VU_GET_INFLIGHT_FD ||
	    hdr.flags != (VU_FLAG_VERSION | VU_FLAG_REPLY) || hdr.size != len) {
		vu_set_error(c, "GET_INFLIGHT_FD: bad reply");
		return -EPROTO;
	}
	*fd = -1;
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			memcpy(fd, CMSG_DATA(cm), sizeof(int));
		}
	}
	rc = _recv_all(c, msg, len);
	if (rc == 0 && *fd < 0) {
		vu_set_error(c, "GET_INFLIGHT_FD: no fd in the reply");
		rc = -EPROTO;
	}
	return rc;
}

int
vu_get_u64(struct vu_conn *c, uint32_t req, uint64_t *val)
{
	int rc;

	rc = vu_send(c, req, 0, NULL, 0, NULL, 0);
	if (rc != 0) {
		return rc;
	}
	rc = vu_recv_reply(c, req, val, sizeof(*val));
	if (rc < 0) {
		return rc;
	}
	if (rc != (int)sizeof(*val)) {
		vu_set_error(c, "%s reply size %d, expected 8", vu_req_name(req), rc);
		return -EPROTO;
	}
	return 0;
}

int
vu_wait_ack(struct vu_conn *c, uint32_t req)
{
	uint64_t status;
	int rc;

	rc = vu_recv_reply(c, req, &status, sizeof(status));
	if (rc < 0) {
		return rc;
	}
	if (rc != (int)sizeof(status)) {
		vu_set_error(c, "%s ack size %d, expected 8", vu_req_name(req), rc);
		return -EPROTO;
	}
	if (status != 0) {
		vu_set_error(c, "%s failed (ack status %llu)", vu_req_name(req),
			     (unsigned long long)status);
		return -EIO;
	}
	return 0;
}

static bool
_want_ack(struct vu_conn *c, uint32_t req)
{
	if (!c->reply_ack) {
		return false;
	}
	/* rust-vmm: NEED_REPLY on every message, so an ack for every set. */
	if (c->hdr_flags & VU_FLAG_NEED_REPLY) {
		return true;
	}
	/* QEMU 7.2 waits for an ack only on the memory table (SET_MEM_TABLE
	 * or each ADD_MEM_REG), SET_BACKEND_REQ_FD (and SET_CONFIG). */
	return c->ack_all || req == VU_SET_MEM_TABLE || req == VU_ADD_MEM_REG ||
	       req == VU_SET_BACKEND_REQ_FD;
}

int
vu_set_msg(struct vu_conn *c, uint32_t req, const void *payload, uint32_t size, const int *fds,
	   int nfds)
{
	bool ack = _want_ack(c, req);
	int rc;

	rc = vu_send(c, req, ack ? VU_FLAG_NEED_REPLY : 0, payload, size, fds, nfds);
	if (rc != 0 || !ack) {
		return rc;
	}
	return vu_wait_ack(c, req);
}

int
vu_set_u64(struct vu_conn *c, uint32_t req, uint64_t val, bool need_reply, const int *fds,
	   int nfds)
{
	int rc;

	if (!need_reply) {
		return vu_set_msg(c, req, &val, sizeof(val), fds, nfds);
	}
	rc = vu_send(c, req, VU_FLAG_NEED_REPLY, &val, sizeof(val), fds, nfds);
	if (rc != 0) {
		return rc;
	}
	return vu_wait_ack(c, req);
}

int
vu_set_state(struct vu_conn *c, uint32_t req, uint32_t index, uint32_t num)
{
	struct vu_vring_state st = { .index = index, .num = num };

	return vu_set_msg(c, req, &st, sizeof(st), NULL, 0);
}

bool
vu_peer_closed(struct vu_conn *c, int ms)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN | POLLRDHUP };
	char b;
	int rc;

	if (c->fd < 0) {
		return true;
	}
	rc = poll(&pfd, 1, ms);
	if (rc <= 0) {
		return false;
	}
	if (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR)) {
		return true;
	}
	rc = (int)recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	return rc == 0 || (rc < 0 && errno == ECONNRESET);
}

int
vi_dev_send_mem_table(struct vi_dev *d)
{
	struct vu_mem_table mt;

	if (d->profile != NULL &&
	    (d->conn.protocol_features & (1ull << VU_PROTO_CONFIGURE_MEM_SLOTS))) {
		/* QEMU with CONFIGURE_MEM_SLOTS: one ADD_MEM_REG per region
		 * (vhost-user.rst "VHOST_USER_ADD_MEM_REG"); rust-vmm's
		 * front-end, which negotiates it too, still sends the table. */
		struct vu_mem_reg reg = {
			.region = { .guest_phys_addr = d->mem.gpa, .memory_size = d->mem.size,
				    .userspace_addr = (uint64_t)(uintptr_t)d->mem.base,
				    .mmap_offset = d->mem.file_offset },
		};

		return vu_set_msg(&d->conn, VU_ADD_MEM_REG, &reg, sizeof(reg), &d->mem.fd, 1);
	}
	memset(&mt, 0, sizeof(mt));
	mt.nregions = 1;
	mt.regions[0].guest_phys_addr = d->mem.gpa;
	mt.regions[0].memory_size = d->mem.size;
	/* We pose as QEMU: its "user address" of guest RAM is our mapping. */
	mt.regions[0].userspace_addr = (uint64_t)(uintptr_t)d->mem.base;
	mt.regions[0].mmap_offset = d->mem.file_offset;
	/* The payload is the header plus the regions in use (QEMU sends
	 * 8 + nregions * 32 bytes). */
	return vu_set_msg(&d->conn, VU_SET_MEM_TABLE, &mt, 8 + sizeof(struct vu_region),
			  &d->mem.fd, 1);
}

/*
 * The rest of QEMU's vhost_user_backend_init for the protocol features a
 * profile negotiated: GET_MAX_MEM_SLOTS, then the back-end request channel
 * (a socketpair whose other end the target keeps; we never read it, the
 * target only writes there for config-change and host-notifier requests).
 */
static int
_backend_init_rest(struct vi_dev *d)
{
	struct vu_conn *c = &d->conn;
	uint64_t slots;
	int sv[2], rc;

	if (c->protocol_features & (1ull << VU_PROTO_CONFIGURE_MEM_SLOTS)) {
		rc = vu_get_u64(c, VU_GET_MAX_MEM_SLOTS, &slots);
		if (rc != 0) {
			return rc;
		}
		if (slots == 0) {
			vu_set_error(c, "GET_MAX_MEM_SLOTS: 0");
			return -EPROTO;
		}
	}
	if (!(c->protocol_features & (1ull << VU_PROTO_BACKEND_REQ))) {
		return 0;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		rc = -errno;
		vu_set_error(c, "socketpair: %s", strerror(errno));
		return rc;
	}
	d->backend_req_fd = sv[0];
	rc = vu_set_msg(c, VU_SET_BACKEND_REQ_FD, NULL, 0, &sv[1], 1);
	close(sv[1]);
	return rc;
}

int
vi_dev_handshake(struct vi_dev *d, const struct vi_dev_opts *o)
{
	struct vu_conn *c = &d->conn;
	struct vu_config cfg;
	uint64_t pf, want_pf, want, qnum;
	uint32_t cfg_size = 57;  /* QEMU 7.2 default with discard + write-zeroes */
	int rc, i;

	memset(d, 0, sizeof(*d));
	d->mem.fd = -1;
	d->inflight_fd = -1;
	d->backend_req_fd = -1;
	d->profile = o->profile;
	for (i = 0; i < VI_MAX_QUEUES; i++) {
		d->vqs[i].kick_fd = d->vqs[i].call_fd = -1;
	}
	c->fd = -1;
	c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
	c->verbose = o->verbose;
	c->ack_all = o->ack_all;
	d->interrupts = o->interrupts;
	d->indirect = o->indirect;
	d->event_idx = o->event_idx;
	d->packed = o->packed;
	d->num_queues = o->num_queues ? o->num_queues : 1;
	d->queue_size = o->queue_size ? o->queue_size : 128;
	if (d->num_queues > VI_MAX_QUEUES) {
		vu_set_error(c, "at most %d queues", VI_MAX_QUEUES);
		return -EINVAL;
	}

	d->frontend = o->frontend;
	if (o->frontend == VI_FE_SPDK || o->frontend == VI_FE_DPDK) {
		/* Both announce their own virtual addresses as guest physical ones;
		 * DPDK's segments sit at an offset in their file. */
		rc = gm_init_shape(&d->mem, o->mem_size ? o->mem_size : 64ull << 20,
				   o->frontend == VI_FE_DPDK ? 2ull << 20 : 0, true);
	} else {
		rc = gm_init(&d->mem, o->mem_size ? o->mem_size : 64ull << 20);
	}
	if (rc != 0) {
		vu_set_error(c, "guest memory: %s", strerror(-rc));
		return rc;
	}
	for (i = 0; i < d->num_queues; i++) {
		rc = vq_init_ring(&d->vqs[i], &d->mem, (uint16_t)i, d->queue_size, d->interrupts,
				  d->packed);
		if (rc != 0) {
			vu_set_error(c, "vring %d: %s", i, strerror(-rc));
			return rc;
		}
	}

	rc = vu_connect(c, o->socket, c->timeout_ms);
	if (rc != 0) {
		return rc;
	}
	if (o->frontend != VI_FE_QEMU) {
		return vi_fe_handshake(d, o);
	}
	rc = vu_get_u64(c, VU_GET_FEATURES, &c->features);
	if (rc != 0) {
		return rc;
	}
	if (!(c->features & (1ull << VI_F_PROTOCOL_FEATURES))) {
		/* QEMU's vhost-user-blk needs CONFIG, a protocol feature. */
		vu_set_error(c, "target does not offer VHOST_USER_F_PROTOCOL_FEATURES");
		return -ENOTSUP;
	}
	rc = vu_get_u64(c, VU_GET_PROTOCOL_FEATURES, &pf);
	if (rc != 0) {
		return rc;
	}
	if (o->profile != NULL) {
		/* Whatever of the recording the target offers, like QEMU would. */
		want_pf = pf & o->profile->protocol_features;
		if (o->no_inflight) {
			want_pf &= ~(1ull << VU_PROTO_INFLIGHT_SHMFD);
		}
	} else {
		want_pf = pf & ((1ull << VU_PROTO_MQ) | (1ull << VU_PROTO_CONFIG) |
				(o->no_reply_ack ? 0 : (1ull << VU_PROTO_REPLY_ACK)) |
				(o->inflight ? (1ull << VU_PROTO_INFLIGHT_SHMFD) : 0) |
				(o->log_shmfd ? (1ull << VU_PROTO_LOG_SHMFD) : 0));
	}
	if (o->inflight && !(want_pf & (1ull << VU_PROTO_INFLIGHT_SHMFD))) {
		vu_set_error(c, "target does not offer VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD");
		return -ENOTSUP;
	}
	d->inflight = o->inflight || (want_pf & (1ull << VU_PROTO_INFLIGHT_SHMFD));
	if (!(want_pf & (1ull << VU_PROTO_CONFIG))) {
		vu_set_error(c, "target does not offer VHOST_USER_PROTOCOL_F_CONFIG");
		return -ENOTSUP;
	}
	rc = vu_send(c, VU_SET_PROTOCOL_FEATURES, 0, &want_pf, sizeof(want_pf), NULL, 0);
	if (rc != 0) {
		return rc;
	}
	c->protocol_features = want_pf;
	c->reply_ack = want_pf & (1ull << VU_PROTO_REPLY_ACK);
	d->max_queues = 1;
	if (want_pf & (1ull << VU_PROTO_MQ)) {
		rc = vu_get_u64(c, VU_GET_QUEUE_NUM, &qnum);
		if (rc != 0) {
			return rc;
		}
		d->max_queues = qnum > VI_MAX_QUEUES ? VI_MAX_QUEUES : (uint16_t)qnum;
	}
	rc = _backend_init_rest(d);
	if (rc != 0) {
		return rc;
	}
	rc = vu_set_msg(c, VU_SET_OWNER, NULL, 0, NULL, 0);
	if (rc != 0) {
		return rc;
	}
	/* QEMU re-reads the features after SET_OWNER. */
	rc = vu_get_u64(c, VU_GET_FEATURES, &c->features);
	if (rc != 0) {
		return rc;
	}
	/* vhost_dev_init gives every virtqueue its (masked) call fd early. */
	for (i = 0; i < d->num_queues; i++) {
		rc = vu_set_u64(c, VU_SET_VRING_CALL, (uint64_t)i, false, &d->vqs[i].call_fd, 1);
		if (rc != 0) {
			return rc;
		}
	}

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = cfg_size;
	rc = vu_send(c, VU_GET_CONFIG, 0, &cfg, 12 + cfg_size, NULL, 0);
	if (rc != 0) {
		return rc;
	}
	rc = vu_recv_reply(c, VU_GET_CONFIG, &cfg, sizeof(cfg));
	if (rc < 0) {
		return rc;
	}
	if (rc != (int)(12 + cfg_size)) {
		vu_set_error(c, "GET_CONFIG reply size %d, expected %u", rc, 12 + cfg_size);
		return -EPROTO;
	}
	vi_dev_parse_config(d, cfg.region);

	want = o->profile != NULL ? o->profile->features : vi_dev_driver_features(d);
	return vi_dev_accept_features(d, want);
}

void
vi_dev_parse_config(struct vi_dev *d, const uint8_t *region)
{
	/* virtio 1.2 §5.2.4: capacity at 0, seg_max at 12, blk_size at 20. */
	memcpy(&d->capacity, region + 0, 8);
	if (d->conn.features & (1ull << VIRTIO_BLK_F_SEG_MAX)) {
		memcpy(&d->seg_max, region + 12, 4);
	}
	d->blk_size = 512;
	if (d->conn.features & (1ull << VIRTIO_BLK_F_BLK_SIZE)) {
		memcpy(&d->blk_size, region + 20, 4);
	}
}

int
vi_dev_accept_features(struct vi_dev *d, uint64_t want)
{
	struct vu_conn *c = &d->conn;
	int i;

	want &= c->features;
	c->acked_features = want;
	d->readonly = want & (1ull << VIRTIO_BLK_F_RO);
	d->indirect = want & (1ull << VIRTIO_F_INDIRECT_DESC);
	d->event_idx = want & (1ull << VIRTIO_F_EVENT_IDX);
	if (d->profile != NULL && d->indirect && !d->packed) {
		for (i = 0; i < d->num_queues; i++) {
			struct vq *vq = &d->vqs[i];

			vq->indirect = gm_alloc(&d->mem, sizeof(struct vring_desc) * vq->size *
						 VI_INDIRECT_MAX, 16);
			if (vq->indirect == NULL) {
				vu_set_error(c, "no guest memory for indirect tables");
				return -ENOMEM;
			}
			vq->indirect_gpa = gm_gpa(&d->mem, vq->indirect);
			vq->use_indirect = true;
		}
	}
	if (d->packed && !(want & (1ull << VIRTIO_F_RING_PACKED))) {
		vu_set_error(c, "target does not offer VIRTIO_F_RING_PACKED");
		return -ENOTSUP;
	}
	for (i = 0; i < d->num_queues; i++) {
		d->vqs[i].event_idx = d->event_idx;
		vq_want_call(&d->vqs[i], d->interrupts);
	}
	if (d->num_queues > d->max_queues) {
		vu_set_error(c, "target serves %u queues, %u requested", d->max_queues,
			     d->num_queues);
		return -EINVAL;
	}
	return 0;
}

uint64_t
vi_dev_driver_features(const struct vi_dev *d)
{
	/* What a guest driver would take, where the front-end does not choose. */
	return (1ull << VIRTIO_F_VERSION_1) | (1ull << VI_F_PROTOCOL_FEATURES) |
	       (1ull << VIRTIO_BLK_F_SIZE_MAX) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
	       (1ull << VIRTIO_BLK_F_RO) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
	       (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_TOPOLOGY) |
	       (1ull << VIRTIO_BLK_F_MQ) |
	       (d->indirect ? (1ull << VIRTIO_F_INDIRECT_DESC) : 0) |
	       (d->event_idx ? (1ull << VIRTIO_F_EVENT_IDX) : 0) |
	       (d->packed ? (1ull << VIRTIO_F_RING_PACKED) : 0);
}

int
vi_dev_get_inflight(struct vi_dev *d)
{
	struct {
		uint64_t mmap_size, mmap_offset;
		uint16_t num_queues, queue_size;
		uint32_t pad;
	} in = { .num_queues = d->num_queues, .queue_size = d->queue_size };

	if (d->inflight_fd >= 0) {
		return 0; /* asked for once, kept */
	}
	memcpy(d->inflight_msg, &in, sizeof(d->inflight_msg));
	return vu_get_inflight(&d->conn, d->inflight_msg, sizeof(d->inflight_msg),
			       &d->inflight_fd);
}

int
vi_dev_start_rings(struct vi_dev *d)
{
	struct vu_conn *c = &d->conn;
	uint64_t barrier;
	int rc, i;

	if (d->frontend != VI_FE_QEMU) {
		return vi_fe_start_rings(d);
	}
	/* vhost_user_blk_start: the inflight region (asked for once, kept) after
	 * vhost_dev_prepare_inflight's SET_FEATURES (the back-end knows the
	 * ring layout), then vhost_dev_start's order: calls, features, memory,
	 * rings. */
	if (d->inflight) {
		rc = vu_set_u64(c, VU_SET_FEATURES, c->acked_features, false, NULL, 0);
		if (rc == 0) {
			rc = vi_dev_get_inflight(d);
		}
		if (rc != 0) {
			return rc;
		}
		rc = vu_set_msg(c, VU_SET_INFLIGHT_FD, d->inflight_msg, sizeof(d->inflight_msg),
				&d->inflight_fd, 1);
		if (rc != 0) {
			return rc;
		}
	}
	for (i = 0; i < d->num_queues; i++) {
		rc = vu_set_u64(c, VU_SET_VRING_CALL, (uint64_t)i, false, &d->vqs[i].call_fd, 1);
		if (rc != 0) {
			return rc;
		}
	}
	rc = vu_set_u64(c, VU_SET_FEATURES, c->acked_features, false, NULL, 0);
	if (rc != 0) {
		return rc;
	}
	rc = vi_dev_send_mem_table(d);
	if (rc != 0) {
		return rc;
	}
	for (i = 0; i < d->num_queues; i++) {
		struct vq *vq = &d->vqs[i];
		struct vu_vring_addr addr = {
			.index = (uint32_t)i,
			.desc_user_addr = (uint64_t)(uintptr_t)vq->desc,
			.used_user_addr = (uint64_t)(uintptr_t)vq->used,
			.avail_user_addr = (uint64_t)(uintptr_t)vq->avail,
		};

		rc = vu_set_state(c, VU_SET_VRING_NUM, (uint32_t)i, vq->size);
		if (rc == 0) {
			rc = vu_set_state(c, VU_SET_VRING_BASE, (uint32_t)i, vq_base(vq));
		}
		if (rc == 0) {
			rc = vu_set_msg(c, VU_SET_VRING_ADDR, &addr, sizeof(addr), NULL, 0);
		}
		if (rc == 0) {
			rc = vu_set_u64(c, VU_SET_VRING_KICK, (uint64_t)i, false, &vq->kick_fd, 1);
		}
		if (rc == 0) {
			rc = vu_set_u64(c, VU_SET_VRING_CALL, (uint64_t)i, false, &vq->call_fd, 1);
		}
		if (rc != 0) {
			return rc;
		}
	}
	for (i = 0; i < d->num_queues; i++) {
		rc = vu_set_state(c, VU_SET_VRING_ENABLE, (uint32_t)i, 1);
		if (rc != 0) {
			return rc;
		}
	}
	/* A get round-trip proves every message above was processed. */
	return vu_get_u64(c, VU_GET_FEATURES, &barrier);
}

int
vi_dev_open(struct vi_dev *d, const struct vi_dev_opts *o)
{
	int rc;

	rc = vi_dev_handshake(d, o);
	if (rc == 0) {
		rc = vi_dev_start_rings(d);
	}
	return rc;
}

int
vi_dev_close(struct vi_dev *d, bool graceful)
{
	struct vu_conn *c = &d->conn;
	struct vu_vring_state st;
	int rc = 0, r, i;

	if (graceful && c->fd >= 0 && d->frontend != VI_FE_QEMU) {
		rc = vi_fe_stop(d);
	} else if (graceful && c->fd >= 0) {
		for (i = 0; i < d->num_queues && rc == 0; i++) {
			rc = vu_set_state(c, VU_SET_VRING_ENABLE, (uint32_t)i, 0);
		}
		/* GET_VRING_BASE stops the ring; the reply is where the target
		 * would resume, i.e. everything we made available. */
		for (i = 0; i < d->num_queues && rc == 0; i++) {
			st.index = (uint32_t)i;
			st.num = 0;
			rc = vu_send(c, VU_GET_VRING_BASE, 0, &st, sizeof(st), NULL, 0);
			if (rc != 0) {
				break;
			}
			r = vu_recv_reply(c, VU_GET_VRING_BASE, &st, sizeof(st));
			if (r < 0) {
				rc = r;
			} else if (r != (int)sizeof(st) || st.index != (uint32_t)i) {
				vu_set_error(c, "GET_VRING_BASE reply malformed");
				rc = -EPROTO;
			} else if (st.num != vq_base(&d->vqs[i])) {
				vu_set_error(c, "GET_VRING_BASE(%d) = 0x%x, expected 0x%x", i, st.num,
					     vq_base(&d->vqs[i]));
				rc = -EPROTO;
			}
		}
	}
	vu_close(c);
	if (d->inflight_fd >= 0) {
		close(d->inflight_fd);
		d->inflight_fd = -1;
	}
	if (d->backend_req_fd >= 0) {
		close(d->backend_req_fd);
		d->backend_req_fd = -1;
	}
	for (i = 0; i < VI_MAX_QUEUES; i++) {
		vq_fini(&d->vqs[i]);
	}
	gm_fini(&d->mem);
	return rc;
}
