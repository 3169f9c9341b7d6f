/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Message handlers through the dispatcher, over a socketpair, for the
 * messages that do not need a reactor: reply format (flags 0x5, same
 * request id, sizes), REPLY_ACK, refusals, memory table and inflight fds.
 */
#include "ut.h"
#include "vhost/vhost_dev.h"
#include "sb/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static int g_sv[2];
static struct sb_vhost_ctrlr *g_c;
static struct vhost_user_msg g_req, g_rep;

static void
_setup(void)
{
	uint16_t q;

	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g_sv), 0);
	g_c = calloc(1, sizeof(*g_c));
	snprintf(g_c->name, sizeof(g_c->name), "ut");
	g_c->max_queues = 2;
	g_c->listen_fd = g_c->slave_fd = -1;
	g_c->conn_fd = g_sv[1];
	g_c->geo.num_blocks = 2048;
	g_c->geo.block_size = 4096;
	g_c->geo.num_queues = 2;
	g_c->geo.discard = g_c->geo.write_zeroes = g_c->geo.flush = true;
	for (q = 0; q < SB_VHOST_MAX_QUEUES; q++) {
		g_c->vqs[q].ctrlr = g_c;
		g_c->vqs[q].index = q;
		g_c->vqs[q].kickfd = g_c->vqs[q].callfd = g_c->vqs[q].run_callfd = -1;
		TAILQ_INIT(&g_c->vqs[q].retry);
	}
}

static void
_teardown(void)
{
	sb_vhost_session_reset(g_c);
	free(g_c);
	close(g_sv[0]);
	close(g_sv[1]);
}

/* Dispatch g_req (with fds) and return the reply, or -1 when none came. */
static int
_do(uint32_t req, uint32_t flags, uint32_t size)
{
	struct pollfd p = { .fd = g_sv[0], .events = POLLIN };
	int rc;

	g_req.hdr.request = req;
	g_req.hdr.flags = flags;
	g_req.hdr.size = size;
	rc = sb_vhost_handle_msg(g_c, &g_req);
	if (rc != 0) {
		return rc;
	}
	if (poll(&p, 1, 100) != 1) {
		return -1;
	}
	CHECK_EQ(sb_vhost_wire_recv(g_sv[0], &g_rep), 0);
	/* vhost-user.rst: a reply carries version 1 and the REPLY bit, nothing else. */
	CHECK_EQ(g_rep.hdr.flags, 0x5);
	CHECK_EQ(g_rep.hdr.request, req);
	return 0;
}

static void
test_features(void)
{
	uint64_t f;

	_setup();
	CHECK_EQ(_do(VHOST_USER_GET_FEATURES, 1, 0), 0);
	CHECK_EQ(g_rep.hdr.size, 8);
	f = g_rep.p.u64;
	CHECK(f & (1ull << VHOST_USER_F_PROTOCOL_FEATURES));
	CHECK(f & (1ull << VIRTIO_F_VERSION_1));
	/* Dirty logging for live migration. */
	CHECK(f & (1ull << VHOST_F_LOG_ALL));
	/* QEMU 7.2 sends bit 30 back in SET_FEATURES. */
	g_req.p.u64 = f;
	CHECK_EQ(_do(VHOST_USER_SET_FEATURES, 1, 8), -1);
	CHECK_EQ(g_c->features, f);
	/* Unoffered bits are refused (with an ack when asked). */
	/* Packed rings only for a controller created with packed_ring. */
	CHECK(!(f & (1ull << VIRTIO_F_RING_PACKED)));
	g_req.p.u64 = f | (1ull << VIRTIO_F_RING_PACKED);
	CHECK_EQ(_do(VHOST_USER_SET_FEATURES, 1 | VHOST_USER_NEED_REPLY_MASK, 8), 0);
	CHECK_EQ(g_rep.p.u64 != 0, 1);
	CHECK_EQ(g_c->features, f);

	CHECK_EQ(_do(VHOST_USER_GET_PROTOCOL_FEATURES, 1, 0), 0);
	f = g_rep.p.u64;
	CHECK(f & (1ull << VHOST_USER_PROTOCOL_F_CONFIG));
	CHECK(f & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK));
	CHECK(f & (1ull << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD));
	CHECK(f & (1ull << VHOST_USER_PROTOCOL_F_LOG_SHMFD));
	g_req.p.u64 = f;
	CHECK_EQ(_do(VHOST_USER_SET_PROTOCOL_FEATURES, 1 | VHOST_USER_NEED_REPLY_MASK, 8), 0);
	CHECK_EQ(g_rep.p.u64, 0);
	CHECK_EQ(g_c->protocol_features, f);
	CHECK_EQ(_do(VHOST_USER_GET_QUEUE_NUM, 1, 0), 0);
	CHECK_EQ(g_rep.p.u64, 2);
	CHECK_EQ(_do(VHOST_USER_GET_MAX_MEM_SLOTS, 1, 0), 0);
	CHECK(g_rep.p.u64 >= 32);
	/* GET_* ignore NEED_REPLY: exactly one reply. */
	CHECK_EQ(_do(VHOST_USER_GET_QUEUE_NUM, 1 | VHOST_USER_NEED_REPLY_MASK, 0), 0);
	{
		struct pollfd p = { .fd = g_sv[0], .events = POLLIN };

		CHECK_EQ(poll(&p, 1, 50), 0);
	}
	_teardown();
}

static void
test_config(void)
{
	struct virtio_blk_config cfg;

	_setup();
	memset(&g_req.p.cfg, 0, sizeof(g_req.p.cfg));
	g_req.p.cfg.size = 57;
	CHECK_EQ(_do(VHOST_USER_GET_CONFIG, 1, VHOST_USER_CONFIG_HDR_SIZE + 57), 0);
	CHECK_EQ(g_rep.hdr.size, VHOST_USER_CONFIG_HDR_SIZE + 57);
	memcpy(&cfg, g_rep.p.cfg.region, 57);
	CHECK_EQ(cfg.capacity, 2048 * 8);
	CHECK_EQ(cfg.blk_size, 4096);
	CHECK_EQ(cfg.num_queues, 2);
	/* A window at an offset. */
	g_req.p.cfg.offset = 20;
	g_req.p.cfg.size = 4;
	CHECK_EQ(_do(VHOST_USER_GET_CONFIG, 1, VHOST_USER_CONFIG_HDR_SIZE + 4), 0);
	CHECK_EQ(g_rep.hdr.size, VHOST_USER_CONFIG_HDR_SIZE + 4);
	CHECK_EQ(*(uint32_t *)g_rep.p.cfg.region, 4096);
	/* Beyond the config space: an empty reply says "failed". */
	g_req.p.cfg.offset = 0xfffffff0u;
	g_req.p.cfg.size = 16;
	CHECK_EQ(_do(VHOST_USER_GET_CONFIG, 1, VHOST_USER_CONFIG_HDR_SIZE + 16), 0);
	CHECK_EQ(g_rep.hdr.size, 0);
	/* SET_CONFIG is refused. */
	g_req.p.cfg.offset = 32;
	g_req.p.cfg.size = 1;
	CHECK_EQ(_do(VHOST_USER_SET_CONFIG, 1 | VHOST_USER_NEED_REPLY_MASK,
		     VHOST_USER_CONFIG_HDR_SIZE + 1), 0);
	CHECK_EQ(g_rep.p.u64 != 0, 1);
	_teardown();
}

static void
test_refusals(void)
{
	_setup();
	/* Unknown request: failure when a reply is wanted, silence otherwise. */
	CHECK_EQ(_do(99, 1 | VHOST_USER_NEED_REPLY_MASK, 0), 0);
	CHECK_EQ(g_rep.p.u64 != 0, 1);
	CHECK_EQ(_do(99, 1, 0), -1);
	g_req.p.state.index = 0;
	g_req.p.state.num = 100;
	CHECK_EQ(_do(VHOST_USER_SET_VRING_NUM, 1 | VHOST_USER_NEED_REPLY_MASK, 8), 0);
	CHECK_EQ(g_rep.p.u64 != 0, 1);
	g_req.p.state.num = 256;
	CHECK_EQ(_do(VHOST_USER_SET_VRING_NUM, 1 | VHOST_USER_NEED_REPLY_MASK, 8), 0);
	CHECK_EQ(g_rep.p.u64, 0);
	CHECK_EQ(g_c->vqs[0].num, 256);
	/* Malformed: the dispatcher asks for the session to be cut. */
	g_req.p.state.index = 2;
	CHECK_EQ(_do(VHOST_USER_SET_VRING_NUM, 1, 8), -EINVAL);
	CHECK_EQ(_do(VHOST_USER_SET_FEATURES, 1, 4), -EINVAL);
	/* SET_LOG_BASE without its payload or fd is malformed. */
	CHECK_EQ(_do(VHOST_USER_SET_LOG_BASE, 1 | VHOST_USER_NEED_REPLY_MASK, 0), -EINVAL);
	/* A never-started ring reports the base it was given. */
	g_req.p.state.index = 1;
	g_req.p.state.num = 77;
	CHECK_EQ(_do(VHOST_USER_SET_VRING_BASE, 1, 8), -1);
	g_req.p.state.num = 0;
	CHECK_EQ(_do(VHOST_USER_GET_VRING_BASE, 1, 8), 0);
	CHECK_EQ(g_rep.p.state.index, 1);
	CHECK_EQ(g_rep.p.state.num, 77);
	/* A split ring's base is 16 bits; a packed ring's carries both indexes. */
	g_req.p.state.num = 0x80008000u;
	CHECK_EQ(_do(VHOST_USER_SET_VRING_BASE, 1 | VHOST_USER_NEED_REPLY_MASK, 8), 0);
	CHECK_EQ(g_rep.p.u64 != 0, 1);
	g_c->features |= 1ull << VIRTIO_F_RING_PACKED;
	CHECK_EQ(_do(VHOST_USER_SET_VRING_BASE, 1 | VHOST_USER_NEED_REPLY_MASK, 8), 0);
	CHECK_EQ(g_rep.p.u64, 0);
	g_req.p.state.num = 0;
	CHECK_EQ(_do(VHOST_USER_GET_VRING_BASE, 1, 8), 0);
	CHECK_EQ(g_rep.p.state.num, 0x80008000u);
	_teardown();
}

static void
test_mem_and_fds(void)
{
	int fd = memfd_create("ut", MFD_CLOEXEC), efd;
	void *p;

	_setup();
	CHECK_EQ(ftruncate(fd, 0x20000), 0);
	memset(&g_req.p.mem, 0, sizeof(g_req.p.mem));
	g_req.p.mem.nregions = 2;
	g_req.p.mem.regions[0] = (struct vhost_user_mem_region) { 0, 0x10000, 0x7f0000000000ull, 0 };
	g_req.p.mem.regions[1] = (struct vhost_user_mem_region) { 0x10000, 0x10000,
								  0x7f0000010000ull, 0x10000 };
	g_req.fds[0] = dup(fd);
	g_req.fds[1] = dup(fd);
	g_req.nfds = 2;
	CHECK_EQ(_do(VHOST_USER_SET_MEM_TABLE, 1 | VHOST_USER_NEED_REPLY_MASK, 8 + 2 * 32), 0);
	CHECK_EQ(g_rep.p.u64, 0);
	CHECK(g_c->mem != NULL && g_c->mem->nregions == 2);
	CHECK_EQ(g_req.nfds, 0);
	/* Overlapping regions: refused, previous table kept. */
	g_req.p.mem.regions[1].guest_phys_addr = 0x8000;
	g_req.fds[0] = dup(fd);
	g_req.fds[1] = dup(fd);
	g_req.nfds = 2;
	CHECK_EQ(_do(VHOST_USER_SET_MEM_TABLE, 1 | VHOST_USER_NEED_REPLY_MASK, 8 + 2 * 32), 0);
	CHECK_EQ(g_rep.p.u64 != 0, 1);
	CHECK(g_c->mem != NULL && g_c->mem->nregions == 2);
	/* Remove then add a region. */
	memset(&g_req.p.memreg, 0, sizeof(g_req.p.memreg));
	g_req.p.memreg.region = (struct vhost_user_mem_region) { 0x10000, 0x10000,
								0x7f0000010000ull, 0x10000 };
	g_req.nfds = 0;
	CHECK_EQ(_do(VHOST_USER_REM_MEM_REG, 1 | VHOST_USER_NEED_REPLY_MASK, 40), 0);
	CHECK_EQ(g_rep.p.u64, 0);
	CHECK_EQ(g_c->mem->nregions, 1);
	g_req.fds[0] = dup(fd);
	g_req.nfds = 1;
	CHECK_EQ(_do(VHOST_USER_ADD_MEM_REG, 1, 40), -1);
	CHECK_EQ(g_c->mem->nregions, 2);
	close(fd);

	/* Call fd on a stopped ring, then NOFD. */
	efd = eventfd(0, EFD_CLOEXEC);
	g_req.p.u64 = 1;
	g_req.fds[0] = efd;
	g_req.nfds = 1;
	CHECK_EQ(_do(VHOST_USER_SET_VRING_CALL, 1, 8), -1);
	CHECK_EQ(g_c->vqs[1].callfd, efd);
	g_req.p.u64 = 1 | VHOST_USER_VRING_NOFD_MASK;
	g_req.nfds = 0;
	CHECK_EQ(_do(VHOST_USER_SET_VRING_CALL, 1, 8), -1);
	CHECK_EQ(g_c->vqs[1].callfd, -1);

	/* Inflight: GET creates a sized memfd, SET maps it. */
	memset(&g_req.p.inflight, 0, sizeof(g_req.p.inflight));
	g_req.p.inflight.num_queues = 2;
	g_req.p.inflight.queue_size = 128;
	CHECK_EQ(_do(VHOST_USER_GET_INFLIGHT_FD, 1, 24), 0);
	CHECK_EQ(g_rep.hdr.size, 24);
	CHECK_EQ(g_rep.nfds, 1);
	CHECK_EQ(g_rep.p.inflight.mmap_size, 2 * sb_inflight_packed_queue_bytes(128));
	p = mmap(NULL, g_rep.p.inflight.mmap_size, PROT_READ, MAP_SHARED, g_rep.fds[0], 0);
	CHECK(p != MAP_FAILED);
	munmap(p, g_rep.p.inflight.mmap_size);
	g_req.p.inflight = g_rep.p.inflight;
	g_req.fds[0] = g_rep.fds[0];
	g_req.nfds = 1;
	CHECK_EQ(_do(VHOST_USER_SET_INFLIGHT_FD, 1, 24), -1);
	CHECK(g_c->inflight_base != NULL);
	/* Sizes that do not add up are refused. */
	g_req.p.inflight.mmap_size = 64;
	g_req.fds[0] = eventfd(0, EFD_CLOEXEC);
	g_req.nfds = 1;
	CHECK_EQ(_do(VHOST_USER_SET_INFLIGHT_FD, 1 | VHOST_USER_NEED_REPLY_MASK, 24), 0);
	CHECK_EQ(g_rep.p.u64 != 0, 1);
	_teardown();
}

/* A memfd of size bytes, sealed against shrinking like QEMU's log. */
static int
_memfd(const char *name, off_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, size), 0);
	return fd;
}

static int
_set_log_base(int fd, uint64_t size, uint64_t offset)
{
	g_req.p.log.mmap_size = size;
	g_req.p.log.mmap_offset = offset;
	g_req.fds[0] = fd;
	g_req.nfds = 1;
	return _do(VHOST_USER_SET_LOG_BASE, 1 | VHOST_USER_NEED_REPLY_MASK, 16);
}

static void
test_dirty_log(void)
{
	int ram = _memfd("ram", 0x20000), fd, efd;
	uint64_t f;
	uint8_t *bits;
	char path[] = "/tmp/sb-log-ut-XXXXXX";

	_setup();
	/* Before LOG_SHMFD is negotiated: refused, and the session is cut (no reply). */
	CHECK_EQ(_set_log_base(_memfd("log", 4096), 8, 0), -EINVAL);
	CHECK_EQ(_do(VHOST_USER_GET_PROTOCOL_FEATURES, 1, 0), 0);
	g_req.p.u64 = g_rep.p.u64;
	g_req.nfds = 0;
	CHECK_EQ(_do(VHOST_USER_SET_PROTOCOL_FEATURES, 1, 8), -1);
	/* Before SET_MEM_TABLE the log cannot be sized against guest memory. */
	CHECK_EQ(_set_log_base(_memfd("log", 4096), 8, 0), -EINVAL);
	CHECK(g_c->log == NULL);

	/* 0x20000 bytes of guest RAM at gpa 0x100000: (0x120000 / 4096) = 288 pages, 36 bytes. */
	memset(&g_req.p.mem, 0, sizeof(g_req.p.mem));
	g_req.p.mem.nregions = 1;
	g_req.p.mem.regions[0] = (struct vhost_user_mem_region) { 0x100000, 0x20000,
								  0x7f0000000000ull, 0 };
	g_req.fds[0] = dup(ram);
	g_req.nfds = 1;
	CHECK_EQ(_do(VHOST_USER_SET_MEM_TABLE, 1 | VHOST_USER_NEED_REPLY_MASK, 8 + 32), 0);
	CHECK_EQ(g_rep.p.u64, 0);
	CHECK_EQ(sb_vhost_log_bytes_needed(g_c->mem), 36);

	/* Too small for guest memory, zero, absurd. */
	CHECK_EQ(_set_log_base(_memfd("log", 4096), 35, 0), -EINVAL);
	CHECK_EQ(_set_log_base(_memfd("log", 4096), 0, 0), -EINVAL);
	CHECK_EQ(_set_log_base(_memfd("log", 4096), 1ull << 40, 0), -EINVAL);
	/* Offsets past the end of the fd, or a region running past it. */
	CHECK_EQ(_set_log_base(_memfd("log", 4096), 36, 8192), -EINVAL);
	CHECK_EQ(_set_log_base(_memfd("log", 4096), 36, 4090), -EINVAL);
	CHECK_EQ(_set_log_base(_memfd("log", 4096), 36, UINT64_MAX - 8), -EINVAL);
	/* Not a memfd: an eventfd, a file on disk. */
	CHECK_EQ(_set_log_base(eventfd(0, EFD_CLOEXEC), 36, 0), -EINVAL);
	fd = mkstemp(path);
	CHECK(fd >= 0);
	unlink(path);
	CHECK_EQ(ftruncate(fd, 4096), 0);
	CHECK_EQ(_set_log_base(fd, 36, 0), -EINVAL);
	CHECK(g_c->log == NULL);

	/* A good log at an unaligned offset: an empty reply (no u64), mapped, not yet active. */
	fd = _memfd("log", 4096);
	bits = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(bits != MAP_FAILED);
	CHECK_EQ(_set_log_base(dup(fd), 36, 100), 0);
	CHECK_EQ(g_rep.hdr.size, 0);
	CHECK(g_c->log != NULL);
	CHECK(g_c->log_active == NULL);

	/* LOG_ALL switches it on; marks land at offset 100, one bit per 4 KiB. */
	CHECK_EQ(_do(VHOST_USER_GET_FEATURES, 1, 0), 0);
	f = g_rep.p.u64;
	g_req.p.u64 = f;
	CHECK_EQ(_do(VHOST_USER_SET_FEATURES, 1, 8), -1);
	CHECK(g_c->log_active == g_c->log);
	sb_vhost_log_write(g_c->log_active, 0x101fff, 2); /* pages 257 and 258 */
	sb_vhost_log_write(g_c->log_active, 0x100000, 1); /* page 256 */
	sb_vhost_log_write(g_c->log_active, 0x11f000, 0); /* nothing */
	CHECK_EQ(bits[100 + 32], 0x07);
	CHECK_EQ(bits[100 + 35], 0);
	CHECK_EQ(bits[99], 0);
	/* Already-set bits stay set; the front-end clears them, we never do. */
	bits[100 + 32] = 0x01;
	sb_vhost_log_write(g_c->log_active, 0x102000, 4096);
	CHECK_EQ(bits[100 + 32], 0x05);
	/* Past the log (memory grew without a new log): counted, never written. */
	sb_vhost_log_write(g_c->log_active, 0x200000, 8192);
	CHECK_EQ(g_c->log_active->outside, 2);
	CHECK_EQ(bits[100 + 36], 0);

	/* SET_LOG_FD: an eventfd the shared bitmap does not need, taken and closed. */
	efd = eventfd(0, EFD_CLOEXEC);
	g_req.p.u64 = 0;
	g_req.fds[0] = efd;
	g_req.nfds = 1;
	CHECK_EQ(_do(VHOST_USER_SET_LOG_FD, 1 | VHOST_USER_NEED_REPLY_MASK, 8), 0);
	CHECK_EQ(g_rep.p.u64, 0);
	CHECK(fcntl(efd, F_GETFD) < 0);

	/* SET_VRING_ADDR: the log flag is known, other flags are not. */
	memset(&g_req.p.addr, 0, sizeof(g_req.p.addr));
	g_req.nfds = 0;
	g_req.p.addr.index = 0;
	g_req.p.addr.flags = 1u << VHOST_VRING_F_LOG;
	g_req.p.addr.log_guest_addr = 0x100000;
	CHECK_EQ(_do(VHOST_USER_SET_VRING_ADDR, 1 | VHOST_USER_NEED_REPLY_MASK, 40), 0);
	CHECK_EQ(g_rep.p.u64, 0);
	g_req.p.addr.flags = 2;
	CHECK_EQ(_do(VHOST_USER_SET_VRING_ADDR, 1 | VHOST_USER_NEED_REPLY_MASK, 40), 0);
	CHECK_EQ(g_rep.p.u64 != 0, 1);

	/* A replacement log; LOG_ALL off stops logging but keeps the log. */
	CHECK_EQ(_set_log_base(_memfd("log2", 64), 36, 0), 0);
	g_req.p.u64 = f & ~(1ull << VHOST_F_LOG_ALL);
	CHECK_EQ(_do(VHOST_USER_SET_FEATURES, 1, 8), -1);
	CHECK(g_c->log != NULL);
	CHECK(g_c->log_active == NULL);
	/* The reset unmaps it. */
	sb_vhost_session_reset(g_c);
	CHECK(g_c->log == NULL);
	munmap(bits, 4096);
	close(fd);
	close(ram);
	_teardown();
}

int
main(void)
{
	sb_log_set_stderr(0);
	RUN_TEST(test_features);
	RUN_TEST(test_config);
	RUN_TEST(test_refusals);
	RUN_TEST(test_mem_and_fds);
	RUN_TEST(test_dirty_log);
	return UT_SUMMARY();
}
