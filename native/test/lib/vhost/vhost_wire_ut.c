/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhost-user wire: receiving over a real socketpair (fds, truncation,
 * oversized payloads, too many fds), reply format, and the per-type
 * message validity checks.
 */
#include "ut.h"
#include "vhost/vhost_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int g_sv[2];
static struct vhost_user_msg g_msg;

static int
_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d != NULL && readdir(d) != NULL) {
		n++;
	}
	if (d != NULL) {
		closedir(d);
	}
	return n;
}

static void
_pair(void)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };

	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g_sv), 0);
	setsockopt(g_sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static void
_unpair(void)
{
	close(g_sv[0]);
	close(g_sv[1]);
}

/* Send raw bytes with nfds eventfds attached. */
static void
_send_raw(const void *buf, size_t len, int nfds)
{
	char control[CMSG_SPACE(16 * sizeof(int))];
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	int fds[16], i;

	if (nfds > 0) {
		memset(control, 0, sizeof(control));
		mh.msg_control = control;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		for (i = 0; i < nfds; i++) {
			fds[i] = eventfd(0, EFD_CLOEXEC);
		}
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	CHECK_EQ(sendmsg(g_sv[0], &mh, 0), (ssize_t)len);
	for (i = 0; i < nfds; i++) {
		close(fds[i]);
	}
}

static void
test_recv_good(void)
{
	struct {
		struct vhost_user_hdr h;
		uint64_t v;
	} __attribute__((packed)) m = { { VHOST_USER_SET_VRING_KICK, 1, 8 }, 0 };

	_pair();
	_send_raw(&m, sizeof(m), 1);
	CHECK_EQ(sb_vhost_wire_recv(g_sv[1], &g_msg), 0);
	CHECK_EQ(g_msg.hdr.request, VHOST_USER_SET_VRING_KICK);
	CHECK_EQ(g_msg.nfds, 1);
	CHECK_EQ(g_msg.p.u64, 0);
	sb_vhost_msg_close_fds(&g_msg);
	CHECK_EQ(g_msg.nfds, 0);
	/* Peer closed: a clean end, not a protocol error. */
	close(g_sv[0]);
	CHECK_EQ(sb_vhost_wire_recv(g_sv[1], &g_msg), -ECONNRESET);
	close(g_sv[1]);
}

static void
test_recv_truncated_and_oversized(void)
{
	struct vhost_user_hdr h = { VHOST_USER_SET_FEATURES, 1, 8 };
	int before = _count_fds();

	/* Header promises 8 bytes, only 3 arrive, then the peer closes. */
	_pair();
	{
		uint8_t buf[sizeof(h) + 3] = { 0 };

		memcpy(buf, &h, sizeof(h));
		_send_raw(buf, sizeof(buf), 1);
	}
	close(g_sv[0]);
	CHECK_EQ(sb_vhost_wire_recv(g_sv[1], &g_msg), -EPROTO);
	CHECK_EQ(g_msg.nfds, 0);
	close(g_sv[1]);

	/* Peer stalls mid-payload: the receive timeout turns it into an error. */
	_pair();
	_send_raw(&h, sizeof(h), 0);
	CHECK_EQ(sb_vhost_wire_recv(g_sv[1], &g_msg), -EPROTO);
	_unpair();

	/* Half a header. */
	_pair();
	_send_raw(&h, 5, 0);
	close(g_sv[0]);
	CHECK_EQ(sb_vhost_wire_recv(g_sv[1], &g_msg), -EPROTO);
	close(g_sv[1]);

	/* Payload larger than any message. */
	_pair();
	h.size = SB_VHOST_MAX_PAYLOAD + 1;
	_send_raw(&h, sizeof(h), 2);
	CHECK_EQ(sb_vhost_wire_recv(g_sv[1], &g_msg), -EPROTO);
	_unpair();

	/* More fds than the protocol allows: refused, and none leak. */
	_pair();
	h.size = 0;
	h.request = VHOST_USER_GET_FEATURES;
	_send_raw(&h, sizeof(h), 12);
	CHECK_EQ(sb_vhost_wire_recv(g_sv[1], &g_msg), -EPROTO);
	_unpair();
	CHECK_EQ(_count_fds(), before);
}

static void
test_reply_format(void)
{
	struct {
		struct vhost_user_hdr h;
		uint64_t v;
	} __attribute__((packed)) got;
	uint64_t v = 0x1234;

	_pair();
	memset(&g_msg, 0, sizeof(g_msg));
	g_msg.hdr.request = VHOST_USER_GET_FEATURES;
	g_msg.hdr.flags = VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK;
	CHECK_EQ(sb_vhost_wire_reply(g_sv[1], &g_msg, &v, sizeof(v), -1), 0);
	CHECK_EQ(recv(g_sv[0], &got, sizeof(got), MSG_WAITALL), (ssize_t)sizeof(got));
	CHECK_EQ(got.h.request, VHOST_USER_GET_FEATURES);
	CHECK_EQ(got.h.flags, 0x5);
	CHECK_EQ(got.h.size, 8);
	CHECK_EQ(got.v, 0x1234);
	_unpair();
}

static int
_check(uint32_t req, uint32_t flags, uint32_t size, uint32_t nfds)
{
	const char *why = NULL;

	g_msg.hdr.request = req;
	g_msg.hdr.flags = flags;
	g_msg.hdr.size = size;
	g_msg.nfds = nfds;
	return sb_vhost_msg_check(&g_msg, 4, &why);
}

static void
test_msg_checks(void)
{
	memset(&g_msg, 0, sizeof(g_msg));
	CHECK_EQ(_check(VHOST_USER_GET_FEATURES, 1, 0, 0), 0);
	CHECK_EQ(_check(VHOST_USER_GET_FEATURES, 1 | VHOST_USER_NEED_REPLY_MASK, 0, 0), 0);
	CHECK_EQ(_check(VHOST_USER_GET_FEATURES, 2, 0, 0), -EINVAL);   /* bad version */
	CHECK_EQ(_check(VHOST_USER_GET_FEATURES, 1, 8, 0), -EINVAL);
	CHECK_EQ(_check(VHOST_USER_GET_FEATURES, 1, 0, 1), -EINVAL);   /* unexpected fd */
	CHECK_EQ(_check(VHOST_USER_SET_FEATURES, 1, 8, 0), 0);
	CHECK_EQ(_check(VHOST_USER_SET_FEATURES, 1, 4, 0), -EINVAL);
	/* memory table: size follows nregions, one fd per region */
	g_msg.p.mem.nregions = 2;
	CHECK_EQ(_check(VHOST_USER_SET_MEM_TABLE, 1, 8 + 2 * 32, 2), 0);
	CHECK_EQ(_check(VHOST_USER_SET_MEM_TABLE, 1, 8 + 2 * 32, 1), -EINVAL);
	CHECK_EQ(_check(VHOST_USER_SET_MEM_TABLE, 1, 8 + 1 * 32, 2), -EINVAL);
	g_msg.p.mem.nregions = 9;
	CHECK_EQ(_check(VHOST_USER_SET_MEM_TABLE, 1, 8 + 9 * 32, 8), -EINVAL);
	g_msg.p.mem.nregions = 0;
	CHECK_EQ(_check(VHOST_USER_SET_MEM_TABLE, 1, 8, 0), -EINVAL);
	CHECK_EQ(_check(VHOST_USER_SET_MEM_TABLE, 1, 4, 0), -EINVAL);
	/* queue indexes */
	g_msg.p.state.index = 3;
	CHECK_EQ(_check(VHOST_USER_SET_VRING_NUM, 1, 8, 0), 0);
	g_msg.p.state.index = 4;
	CHECK_EQ(_check(VHOST_USER_SET_VRING_NUM, 1, 8, 0), -EINVAL);
	CHECK_EQ(_check(VHOST_USER_GET_VRING_BASE, 1, 8, 0), -EINVAL);
	g_msg.p.addr.index = 0;
	CHECK_EQ(_check(VHOST_USER_SET_VRING_ADDR, 1, sizeof(struct vhost_user_vring_addr), 0), 0);
	CHECK_EQ(_check(VHOST_USER_SET_VRING_ADDR, 1, 8, 0), -EINVAL);
	/* kick/call: fd unless NOFD */
	g_msg.p.u64 = 1;
	CHECK_EQ(_check(VHOST_USER_SET_VRING_KICK, 1, 8, 1), 0);
	CHECK_EQ(_check(VHOST_USER_SET_VRING_KICK, 1, 8, 0), -EINVAL);
	g_msg.p.u64 = 1 | VHOST_USER_VRING_NOFD_MASK;
	CHECK_EQ(_check(VHOST_USER_SET_VRING_CALL, 1, 8, 0), 0);
	CHECK_EQ(_check(VHOST_USER_SET_VRING_CALL, 1, 8, 1), -EINVAL);
	g_msg.p.u64 = 7;
	CHECK_EQ(_check(VHOST_USER_SET_VRING_CALL, 1, 8, 1), -EINVAL);
	g_msg.p.u64 = 1ull << 20;
	CHECK_EQ(_check(VHOST_USER_SET_VRING_CALL, 1, 8, 1), -EINVAL);
	/* config: the message carries at least header + size bytes */
	g_msg.p.cfg.offset = 0;
	g_msg.p.cfg.size = 57;
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 12 + 57, 0), 0);
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 12 + 56, 0), -EINVAL);
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 8, 0), -EINVAL);
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 12 + 57, 1), -EINVAL);
	/* SPDK's shape: its whole 12 + 256-byte struct, whatever size says */
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 12 + 256, 0), 0);
	CHECK_EQ(_check(VHOST_USER_SET_CONFIG, 1, 12 + 256, 0), 0);
	CHECK_EQ(_check(VHOST_USER_SET_CONFIG, 1, 12 + 56, 0), -EINVAL);
	/* ... but never more than that struct */
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 12 + 257, 0), -EINVAL);
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, SB_VHOST_MAX_PAYLOAD, 0), -EINVAL);
	g_msg.p.cfg.size = 256;
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 12 + 256, 0), 0);
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 12 + 255, 0), -EINVAL);
	g_msg.p.cfg.size = 0;
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 12, 0), 0);
	/* the window's offset is the handler's business (an empty reply) */
	g_msg.p.cfg.offset = 0xfffffff0u;
	g_msg.p.cfg.size = 57;
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 12 + 256, 0), 0);
	g_msg.p.cfg.offset = 0;
	g_msg.p.cfg.size = 257;
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 12 + 256, 0), -EINVAL);
	g_msg.p.cfg.size = 300;
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 12 + 300, 0), -EINVAL);
	g_msg.p.cfg.size = 0xffffffffu;  /* 12 + size wraps in 32 bits */
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 12 + 256, 0), -EINVAL);
	CHECK_EQ(_check(VHOST_USER_GET_CONFIG, 1, 11, 0), -EINVAL);
	/* inflight */
	CHECK_EQ(_check(VHOST_USER_GET_INFLIGHT_FD, 1, 24, 0), 0);
	CHECK_EQ(_check(VHOST_USER_SET_INFLIGHT_FD, 1, 24, 1), 0);
	CHECK_EQ(_check(VHOST_USER_SET_INFLIGHT_FD, 1, 24, 0), -EINVAL);
	CHECK_EQ(_check(VHOST_USER_SET_INFLIGHT_FD, 1, 16, 1), -EINVAL);
	/* memory slots */
	CHECK_EQ(_check(VHOST_USER_ADD_MEM_REG, 1, 40, 1), 0);
	CHECK_EQ(_check(VHOST_USER_ADD_MEM_REG, 1, 40, 0), -EINVAL);
	CHECK_EQ(_check(VHOST_USER_REM_MEM_REG, 1, 40, 0), 0);
	CHECK_EQ(_check(VHOST_USER_REM_MEM_REG, 1, 40, 1), 0);
	CHECK_EQ(_check(VHOST_USER_REM_MEM_REG, 1, 32, 0), -EINVAL);
	/* slave channel */
	CHECK_EQ(_check(VHOST_USER_SET_SLAVE_REQ_FD, 1, 0, 1), 0);
	CHECK_EQ(_check(VHOST_USER_SET_SLAVE_REQ_FD, 1, 0, 0), -EINVAL);
	/* unknown requests pass the check; the dispatcher refuses them */
	CHECK_EQ(_check(99, 1, 0, 0), 0);
	CHECK(strcmp(sb_vhost_req_name(99), "UNKNOWN") == 0);
	CHECK(strcmp(sb_vhost_req_name(VHOST_USER_GET_CONFIG), "GET_CONFIG") == 0);
}

int
main(void)
{
	RUN_TEST(test_recv_good);
	RUN_TEST(test_recv_truncated_and_oversized);
	RUN_TEST(test_reply_format);
	RUN_TEST(test_msg_checks);
	return UT_SUMMARY();
}
