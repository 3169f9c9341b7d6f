/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness: the vhost-user message path of a live controller,
 * fed sequences of messages.
 *
 * The real engine runs in the process (one reactor, a malloc bdev), and a
 * controller is built the way vhost_ctrlr.c builds one.  Each input is one
 * front-end session, run on the vhost control thread (sb_vhost_ctl_run) so
 * that the handlers see exactly the threading they see in production: the
 * whole byte stream goes into a socketpair with the fds attached, the
 * write side is shut (a lying size field ends in EOF, never a hang), then
 * messages are received with sb_vhost_wire_recv() and dispatched with
 * sb_vhost_handle_msg() until one fails, which cuts the session like
 * _conn_readable() does.  Queues that start are polled by the reactor over
 * the fuzzed guest memory, so the data path runs too.  The session ends
 * with the disconnect path (stop queues, unmap, close fds).
 *
 * fds are replaced by ones the harness makes: guest RAM is a memfd whose
 * first bytes come from the input (rings, descriptors, requests), kick and
 * call fds are eventfds, the slave channel is a socketpair end.
 *
 * Input layout:
 *   u16 n, n bytes: the start of guest RAM (a 256 KiB memfd)
 *   records until the end:
 *     u8 op: bits 0-2 number of fds (0..7)
 *     one u8 per fd: 0 guest RAM, 1 eventfd, 2 socket, 3 a 4 KiB memfd,
 *                    other: /dev/null
 *     12 bytes vhost-user header (request, flags, size)
 *     min(size, what is left) payload bytes
 */
#include "vhost/vhost_dev.h"
#include "sb/bdev.h"
#include "sb/log.h"
#include "sb/thread.h"
#include "bdev_malloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define GUEST_RAM (256u * 1024)
#define MAX_OWN_FDS 256

static struct sb_vhost_ctrlr *g_c;

struct _input {
	const uint8_t *data;
	size_t size;
	int own[MAX_OWN_FDS];  /* fds the harness must close */
	uint32_t nown;
	int ram;
	bool kicked;
};

static void
_die(const char *what, int rc)
{
	fprintf(stderr, "vhost_msg_fuzz: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
	abort();
}

static int
_own(struct _input *in, int fd)
{
	if (fd < 0) {
		return -1;
	}
	if (in->nown >= MAX_OWN_FDS) {
		close(fd);
		return -1;
	}
	in->own[in->nown++] = fd;
	return fd;
}

static int
_make_fd(struct _input *in, uint8_t kind)
{
	int sv[2], fd;

	switch (kind) {
	case 0:
		return in->ram;
	case 1:
		return _own(in, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
	case 2:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
			return -1;
		}
		_own(in, sv[1]);
		return _own(in, sv[0]);
	case 3:
		fd = _own(in, memfd_create("fuzz_small", MFD_CLOEXEC));
		if (fd >= 0 && ftruncate(fd, 4096) != 0) {
			return -1;
		}
		return fd;
	default:
		return _own(in, open("/dev/null", O_RDWR | O_CLOEXEC));
	}
}

/* Put the input's messages into the socket; returns after shutting the write side. */
static void
_send_stream(struct _input *in, int sock)
{
	const uint8_t *p = in->data, *end = in->data + in->size;
	char control[CMSG_SPACE(8 * sizeof(int))];
	int fds[8];

	while (p < end) {
		uint32_t nfds = *p++ & 7, i, size, plen;
		struct vhost_user_hdr hdr;
		struct msghdr mh = { 0 };
		struct iovec iov;
		struct cmsghdr *cmsg;
		uint32_t nvalid = 0;

		for (i = 0; i < nfds && p < end; i++) {
			int fd = _make_fd(in, *p++);

			if (fd >= 0) {
				fds[nvalid++] = fd;
			}
		}
		if ((size_t)(end - p) < sizeof(hdr)) {
			break;
		}
		memcpy(&hdr, p, sizeof(hdr));
		size = hdr.size;
		plen = (size_t)(end - p) - sizeof(hdr) < size ? (uint32_t)((size_t)(end - p) - sizeof(hdr))
							       : size;
		if (plen > SB_VHOST_MAX_PAYLOAD + 64) {
			plen = SB_VHOST_MAX_PAYLOAD + 64;
		}
		iov.iov_base = (void *)p;
		iov.iov_len = sizeof(hdr) + plen;
		p += sizeof(hdr) + plen;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		if (nvalid > 0) {
			memset(control, 0, sizeof(control));
			mh.msg_control = control;
			mh.msg_controllen = CMSG_SPACE(nvalid * sizeof(int));
			cmsg = CMSG_FIRSTHDR(&mh);
			cmsg->cmsg_level = SOL_SOCKET;
			cmsg->cmsg_type = SCM_RIGHTS;
			cmsg->cmsg_len = CMSG_LEN(nvalid * sizeof(int));
			memcpy(CMSG_DATA(cmsg), fds, nvalid * sizeof(int));
		}
		if (sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			break;
		}
	}
	shutdown(sock, SHUT_WR);
}

/* Read and drop whatever the device answered (closing fds it passed). */
static void
_drain(int sock)
{
	char control[CMSG_SPACE(8 * sizeof(int))];
	uint8_t buf[8192];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr mh;
	struct cmsghdr *cmsg;

	for (;;) {
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = control;
		mh.msg_controllen = sizeof(control);
		if (recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0) {
			return;
		}
		for (cmsg = CMSG_FIRSTHDR(&mh); cmsg != NULL; cmsg = CMSG_NXTHDR(&mh, cmsg)) {
			if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
				uint32_t n = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int), i;
				int fd;

				for (i = 0; i < n; i++) {
					memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
					close(fd);
				}
			}
		}
	}
}

static bool
_any_started(void)
{
	uint16_t q;

	for (q = 0; q < g_c->max_queues; q++) {
		if (g_c->vqs[q].started) {
			return true;
		}
	}
	return false;
}

/* One session, on the control thread. */
static void
_session(void *arg)
{
	struct _input *in = arg;
	struct vhost_user_msg *msg = malloc(sizeof(*msg));
	struct timeval tv = { .tv_sec = 2 };
	uint64_t one = 1;
	uint32_t i;
	int sv[2], rc;

	if (msg == NULL || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		_die("session setup", errno);
	}
	/* Like _accept(): a stuck peer never blocks the control thread. */
	setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	g_c->conn_fd = sv[1];
	g_c->broken = false;
	_send_stream(in, sv[0]);
	for (;;) {
		rc = sb_vhost_wire_recv(sv[1], msg);
		if (rc != 0) {
			break;
		}
		rc = sb_vhost_handle_msg(g_c, msg);
		_drain(sv[0]);
		if (rc != 0) {
			g_c->broken = g_c->broken || rc == -EINVAL;
			break;
		}
	}
	if (_any_started()) {
		/* Let the reactor walk what the guest put in the rings. */
		for (i = 0; i < in->nown; i++) {
			if (write(in->own[i], &one, sizeof(one)) < 0) {
				/* not an eventfd */
			}
		}
		usleep(200);
	}
	sb_vhost_ctl_disconnect(g_c, "fuzz session over");
	if (getenv("FUZZ_VERBOSE") != NULL) {
		fprintf(stderr, "fuzz: %lu requests completed so far\n",
			(unsigned long)sb_vhost_completed_ios(g_c));
	}
	_drain(sv[0]);
	close(sv[0]);
	free(msg);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sb_engine_opts eo;
	struct sb_malloc_opts mo = { .name = "fz0", .num_blocks = 2048, .block_size = 512 };
	uint16_t q;
	int rc;

	sb_log_set_level(getenv("FUZZ_VERBOSE") ? SB_LOG_DEBUG : SB_LOG_ERROR);
	sb_log_set_stderr(getenv("FUZZ_VERBOSE") != NULL);
	sb_engine_opts_init(&eo);
	eo.core_mask = "0x1";
	eo.no_pin = true;
	rc = sb_engine_start(&eo);
	if (rc != 0) {
		_die("engine start", rc);
	}
	rc = sb_bdev_malloc_create(&mo);
	if (rc != 0) {
		_die("malloc bdev", rc);
	}
	/* What _do_create() sets up, minus the listening socket. */
	g_c = calloc(1, sizeof(*g_c));
	snprintf(g_c->name, sizeof(g_c->name), "fuzz");
	snprintf(g_c->bdev_name, sizeof(g_c->bdev_name), "fz0");
	memcpy(g_c->serial, "fuzz-serial", 11);
	g_c->max_queues = 2;
	g_c->listen_fd = g_c->conn_fd = g_c->slave_fd = -1;
	for (q = 0; q < SB_VHOST_MAX_QUEUES; q++) {
		g_c->vqs[q].ctrlr = g_c;
		g_c->vqs[q].index = q;
		g_c->vqs[q].kickfd = g_c->vqs[q].callfd = g_c->vqs[q].run_callfd = -1;
		TAILQ_INIT(&g_c->vqs[q].retry);
	}
	/* One reactor: every queue (and the controller's home) there. */
	rc = sb_vhost_slots_init(g_c, NULL);
	if (rc != 0) {
		_die("controller reactors", rc);
	}
	rc = sb_vhost_bdev_open(g_c);
	if (rc != 0) {
		_die("bdev open", rc);
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct _input in = { 0 };
	uint16_t n;
	uint32_t i;
	int rc;

	if (size < 2) {
		return 0;
	}
	memcpy(&n, data, 2);
	data += 2;
	size -= 2;
	if (n > size) {
		n = (uint16_t)size;
	}
	in.ram = _own(&in, memfd_create("fuzz_ram", MFD_CLOEXEC));
	if (in.ram < 0 || ftruncate(in.ram, GUEST_RAM) != 0 ||
	    (n > 0 && pwrite(in.ram, data, n, 0) != (ssize_t)n)) {
		_die("guest ram", errno);
	}
	in.data = data + n;
	in.size = size - n;
	rc = sb_vhost_ctl_run(_session, &in);
	if (rc != 0) {
		_die("control thread", rc);
	}
	for (i = 0; i < in.nown; i++) {
		close(in.own[i]);
	}
	return 0;
}
