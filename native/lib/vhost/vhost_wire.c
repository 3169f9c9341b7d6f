/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhost-user wire I/O: one message = packed header + payload on a unix
 * stream socket, fds in SCM_RIGHTS (vhost-user.rst "Message format"), and
 * the per-type validity check every message passes before its handler.
 */
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void
sb_vhost_msg_close_fds(struct vhost_user_msg *msg)
{
	uint32_t i;

	for (i = 0; i < msg->nfds; i++) {
		if (msg->fds[i] >= 0) {
			close(msg->fds[i]);
		}
		msg->fds[i] = -1;
	}
	msg->nfds = 0;
}

static int
_recv_all(int sock, void *buf, size_t len)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = recv(sock, (uint8_t *)buf + done, len - done, MSG_WAITALL);
		if (n == 0) {
			return -ECONNRESET;
		}
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			/* EAGAIN here is the receive timeout: a truncated message. */
			return errno == EAGAIN ? -EPROTO : -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

int
sb_vhost_wire_recv(int sock, struct vhost_user_msg *msg)
{
	char control[CMSG_SPACE(SB_VHOST_MAX_FDS * sizeof(int))];
	struct iovec iov = { .iov_base = &msg->hdr, .iov_len = sizeof(msg->hdr) };
	struct msghdr mh = { 0 };
	struct cmsghdr *cmsg;
	ssize_t n;
	int rc;

	msg->nfds = 0;
	memset(control, 0, sizeof(control));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = control;
	mh.msg_controllen = sizeof(control);
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n == 0) {
		return -ECONNRESET;
	}
	if (n < 0) {
		return errno == EAGAIN ? -EAGAIN : -errno;
	}
	for (cmsg = CMSG_FIRSTHDR(&mh); cmsg != NULL; cmsg = CMSG_NXTHDR(&mh, cmsg)) {
		if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
			uint32_t cnt = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			uint32_t i;
			int fd;

			for (i = 0; i < cnt; i++) {
				memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
				if (msg->nfds < SB_VHOST_MAX_FDS) {
					msg->fds[msg->nfds++] = fd;
				} else {
					close(fd);
				}
			}
		}
	}
	if (mh.msg_flags & MSG_CTRUNC) {
		/* More fds than the protocol allows: the message is unusable. */
		rc = -EPROTO;
		goto err;
	}
	if ((size_t)n < sizeof(msg->hdr)) {
		rc = _recv_all(sock, (uint8_t *)&msg->hdr + n, sizeof(msg->hdr) - (size_t)n);
		if (rc != 0) {
			rc = rc == -ECONNRESET ? -EPROTO : rc;
			goto err;
		}
	}
	if (msg->hdr.size > SB_VHOST_MAX_PAYLOAD) {
		rc = -EPROTO;
		goto err;
	}
	if (msg->hdr.size > 0) {
		rc = _recv_all(sock, &msg->p, msg->hdr.size);
		if (rc != 0) {
			rc = rc == -ECONNRESET ? -EPROTO : rc;
			goto err;
		}
	}
	return 0;
err:
	sb_vhost_msg_close_fds(msg);
	return rc;
}

static int
_send(int sock, const struct vhost_user_hdr *hdr, const void *payload, int fd)
{
	char control[CMSG_SPACE(sizeof(int))];
	struct iovec iov[2] = {
		{ .iov_base = (void *)hdr, .iov_len = sizeof(*hdr) },
		{ .iov_base = (void *)payload, .iov_len = hdr->size },
	};
	struct msghdr mh = { 0 };
	struct cmsghdr *cmsg;
	size_t total = sizeof(*hdr) + hdr->size;
	ssize_t n;

	mh.msg_iov = iov;
	mh.msg_iovlen = hdr->size ? 2 : 1;
	if (fd >= 0) {
		memset(control, 0, sizeof(control));
		mh.msg_control = control;
		mh.msg_controllen = sizeof(control);
		cmsg = CMSG_FIRSTHDR(&mh);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	}
	do {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		return -errno;
	}
	/* A short write of a few hundred bytes on a unix socket means the peer is stuck. */
	return (size_t)n == total ? 0 : -EPIPE;
}

int
sb_vhost_wire_reply(int sock, const struct vhost_user_msg *req, const void *payload,
		    uint32_t size, int fd)
{
	struct vhost_user_hdr hdr = {
		.request = req->hdr.request,
		/* QEMU drops the connection unless flags are exactly version|REPLY. */
		.flags = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK,
		.size = size,
	};

	return _send(sock, &hdr, payload, fd);
}

int
sb_vhost_wire_send(int sock, uint32_t request, uint32_t flags, const void *payload, uint32_t size)
{
	struct vhost_user_hdr hdr = { .request = request, .flags = flags, .size = size };

	return _send(sock, &hdr, payload, -1);
}

static const char *const g_req_names[VHOST_USER_MAX_REQUEST] = {
	[VHOST_USER_GET_FEATURES] = "GET_FEATURES",
	[VHOST_USER_SET_FEATURES] = "SET_FEATURES",
	[VHOST_USER_SET_OWNER] = "SET_OWNER",
	[VHOST_USER_RESET_OWNER] = "RESET_OWNER",
	[VHOST_USER_SET_MEM_TABLE] = "SET_MEM_TABLE",
	[VHOST_USER_SET_LOG_BASE] = "SET_LOG_BASE",
	[VHOST_USER_SET_LOG_FD] = "SET_LOG_FD",
	[VHOST_USER_SET_VRING_NUM] = "SET_VRING_NUM",
	[VHOST_USER_SET_VRING_ADDR] = "SET_VRING_ADDR",
	[VHOST_USER_SET_VRING_BASE] = "SET_VRING_BASE",
	[VHOST_USER_GET_VRING_BASE] = "GET_VRING_BASE",
	[VHOST_USER_SET_VRING_KICK] = "SET_VRING_KICK",
	[VHOST_USER_SET_VRING_CALL] = "SET_VRING_CALL",
	[VHOST_USER_SET_VRING_ERR] = "SET_VRING_ERR",
	[VHOST_USER_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
	[VHOST_USER_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
	[VHOST_USER_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
	[VHOST_USER_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
	[VHOST_USER_SET_SLAVE_REQ_FD] = "SET_SLAVE_REQ_FD",
	[VHOST_USER_GET_CONFIG] = "GET_CONFIG",
	[VHOST_USER_SET_CONFIG] = "SET_CONFIG",
	[VHOST_USER_GET_INFLIGHT_FD] = "GET_INFLIGHT_FD",
	[VHOST_USER_SET_INFLIGHT_FD] = "SET_INFLIGHT_FD",
	[VHOST_USER_RESET_DEVICE] = "RESET_DEVICE",
	[VHOST_USER_GET_MAX_MEM_SLOTS] = "GET_MAX_MEM_SLOTS",
	[VHOST_USER_ADD_MEM_REG] = "ADD_MEM_REG",
	[VHOST_USER_REM_MEM_REG] = "REM_MEM_REG",
};

const char *
sb_vhost_req_name(uint32_t request)
{
	if (request < VHOST_USER_MAX_REQUEST && g_req_names[request] != NULL) {
		return g_req_names[request];
	}
	return "UNKNOWN";
}

int
sb_vhost_msg_check(const struct vhost_user_msg *msg, uint32_t max_queues, const char **why)
{
	uint32_t size = msg->hdr.size, nfds = msg->nfds;
	uint32_t want_size = 0, want_fds = 0;
	bool check_index = false;
	uint32_t index = 0;

	if ((msg->hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION) {
		*why = "bad protocol version";
		return -EINVAL;
	}
	switch (msg->hdr.request) {
	case VHOST_USER_GET_FEATURES:
	case VHOST_USER_GET_PROTOCOL_FEATURES:
	case VHOST_USER_GET_QUEUE_NUM:
	case VHOST_USER_GET_MAX_MEM_SLOTS:
	case VHOST_USER_SET_OWNER:
	case VHOST_USER_RESET_OWNER:
	case VHOST_USER_RESET_DEVICE:
		break;
	case VHOST_USER_SET_FEATURES:
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		want_size = 8;
		break;
	case VHOST_USER_SET_MEM_TABLE:
		if (size < 8) {
			*why = "short memory table";
			return -EINVAL;
		}
		if (msg->p.mem.nregions == 0 || msg->p.mem.nregions > SB_VHOST_MEM_TABLE_MAX) {
			*why = "memory table region count out of range";
			return -EINVAL;
		}
		want_size = 8 + msg->p.mem.nregions * sizeof(struct vhost_user_mem_region);
		want_fds = msg->p.mem.nregions;
		break;
	case VHOST_USER_SET_LOG_BASE:
		want_size = sizeof(struct vhost_user_log);
		want_fds = 1;
		break;
	case VHOST_USER_SET_LOG_FD:
		/* u64 payload (unused); the fd may be absent. */
		if (size != 0 && size != 8) {
			*why = "bad payload size";
			return -EINVAL;
		}
		want_size = size;
		want_fds = nfds <= 1 ? nfds : 0;
		break;
	case VHOST_USER_SET_VRING_NUM:
	case VHOST_USER_SET_VRING_BASE:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_SET_VRING_ENABLE:
		want_size = sizeof(struct vhost_user_vring_state);
		check_index = true;
		index = msg->p.state.index;
		break;
	case VHOST_USER_SET_VRING_ADDR:
		want_size = sizeof(struct vhost_user_vring_addr);
		check_index = true;
		index = msg->p.addr.index;
		break;
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		want_size = 8;
		check_index = true;
		index = (uint32_t)(msg->p.u64 & VHOST_USER_VRING_IDX_MASK);
		if (size == 8 && (msg->p.u64 & ~(uint64_t)(VHOST_USER_VRING_IDX_MASK |
							  VHOST_USER_VRING_NOFD_MASK))) {
			*why = "unknown bits in vring fd message";
			return -EINVAL;
		}
		want_fds = (size == 8 && (msg->p.u64 & VHOST_USER_VRING_NOFD_MASK)) ? 0 : 1;
		break;
	case VHOST_USER_SET_SLAVE_REQ_FD:
		want_fds = 1;
		if (size != 0 && size != 8) {
			*why = "bad payload size";
			return -EINVAL;
		}
		want_size = size;
		break;
	case VHOST_USER_GET_CONFIG:
	case VHOST_USER_SET_CONFIG:
		/*
		 * vhost-user.rst: a 12-byte header, then `size` bytes of config.
		 * QEMU and rust-vmm send exactly that; SPDK's virtio-user always
		 * sends its whole fixed struct (12 + 256 bytes) whatever `size`
		 * says.  Accept any length from header + size up to that struct:
		 * a shorter one would have us read bytes the front-end never sent.
		 */
		if (size < VHOST_USER_CONFIG_HDR_SIZE ||
		    size > VHOST_USER_CONFIG_HDR_SIZE + SB_VHOST_CONFIG_SPACE_MAX) {
			*why = "bad config message size";
			return -EINVAL;
		}
		if (msg->p.cfg.size > SB_VHOST_CONFIG_SPACE_MAX) {
			*why = "config size too large";
			return -EINVAL;
		}
		if (size < VHOST_USER_CONFIG_HDR_SIZE + msg->p.cfg.size) {
			*why = "config message shorter than its size field";
			return -EINVAL;
		}
		want_size = size;
		break;
	case VHOST_USER_GET_INFLIGHT_FD:
	case VHOST_USER_SET_INFLIGHT_FD:
		/* 20 bytes of fields, padded to 24 by the C front-ends. */
		if (size < 20 || size > sizeof(struct vhost_user_inflight)) {
			*why = "bad inflight message size";
			return -EINVAL;
		}
		want_size = size;
		want_fds = msg->hdr.request == VHOST_USER_SET_INFLIGHT_FD ? 1 : 0;
		break;
	case VHOST_USER_ADD_MEM_REG:
		want_size = sizeof(struct vhost_user_mem_reg);
		want_fds = 1;
		break;
	case VHOST_USER_REM_MEM_REG:
		/* Older QEMU sends the region's fd along; it is ignored. */
		want_size = sizeof(struct vhost_user_mem_reg);
		want_fds = nfds <= 1 ? nfds : 0;
		break;
	default:
		/* Unknown: the dispatcher refuses it. */
		return 0;
	}
	if (size != want_size) {
		*why = "bad payload size";
		return -EINVAL;
	}
	if (nfds != want_fds) {
		*why = "wrong number of file descriptors";
		return -EINVAL;
	}
	if (check_index && index >= max_queues) {
		*why = "queue index out of range";
		return -EINVAL;
	}
	return 0;
}
