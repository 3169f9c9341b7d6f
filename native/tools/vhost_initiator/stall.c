/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --stall-step: one control message that makes the target call into the
 * reactor running our queue, sent at a moment the test chooses (it stalls
 * that reactor first).  The test judges what the target did; this only
 * reports it: the reply (if any) and whether the connection was closed.
 *
 *   call      SET_VRING_CALL on the running queue (the call fd swap)
 *   log-addr  SET_VRING_ADDR, same ring, logging on (the used-ring log switch)
 *   log-base  a second SET_LOG_BASE (the old log waits for a reactor barrier)
 *   stop      GET_VRING_BASE (the queue stop, waiting for in-flight requests)
 *   kick      SET_VRING_KICK on the running queue (stop, then start)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vhost_initiator.h"

#define VU_SET_LOG_BASE 6
#define VRING_F_LOG 0

struct vu_log_base {
	uint64_t mmap_size;
	uint64_t mmap_offset;
};

/* One 4 KiB read on queue 0: the queue is started and serving. */
static int
_one_read(struct vi_dev *d)
{
	struct vq *vq = &d->vqs[0];
	struct virtio_blk_outhdr *hdr = gm_alloc(&d->mem, sizeof(*hdr), 16);
	uint8_t *buf = gm_alloc(&d->mem, 4096, 4096);
	uint8_t *status = gm_alloc(&d->mem, 1, 1);
	struct timespec pause = { .tv_sec = 0, .tv_nsec = 1000000 };
	uint32_t id, len;
	int ms;

	if (hdr == NULL || buf == NULL || status == NULL) {
		return -ENOMEM;
	}
	hdr->type = VIRTIO_BLK_T_IN;
	hdr->ioprio = 0;
	hdr->sector = 0;
	*status = 0xff;
	vq->desc[0] = (struct vring_desc){ gm_gpa(&d->mem, hdr), sizeof(*hdr),
					   VRING_DESC_F_NEXT, 1 };
	vq->desc[1] = (struct vring_desc){ gm_gpa(&d->mem, buf), 4096,
					   VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2 };
	vq->desc[2] = (struct vring_desc){ gm_gpa(&d->mem, status), 1, VRING_DESC_F_WRITE, 0 };
	vq_push(vq, 0);
	vq_kick(vq, true);
	for (ms = 0; ms < 5000; ms++) {
		if (vq_pop(vq, &id, &len)) {
			return id == 0 && *status == VIRTIO_BLK_S_OK ? 0 : -EIO;
		}
		nanosleep(&pause, NULL);
	}
	return -ETIMEDOUT;
}

/* SET_LOG_BASE with a fresh memfd big enough for the guest memory. */
static int
_log_base(struct vi_dev *d)
{
	struct vu_log_base lb = { .mmap_size = 0, .mmap_offset = 0 };
	uint64_t bytes = (d->mem.gpa + d->mem.size) / 4096 / 8 + 1;
	int fd, rc;

	lb.mmap_size = (bytes + 4095) & ~4095ull;
	fd = memfd_create("vi-log", MFD_CLOEXEC);
	if (fd < 0) {
		return -errno;
	}
	if (ftruncate(fd, (off_t)lb.mmap_size) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = vu_send(&d->conn, VU_SET_LOG_BASE, 0, &lb, sizeof(lb), &fd, 1);
	close(fd);
	return rc;
}

static int
_send_step(struct vi_dev *d, const char *step, uint32_t *req, bool *want_reply)
{
	struct vu_conn *c = &d->conn;
	struct vq *vq = &d->vqs[0];
	uint32_t nr = c->reply_ack ? VU_FLAG_NEED_REPLY : 0;
	uint64_t index = 0;
	int fd, rc;

	*want_reply = nr != 0;
	if (strcmp(step, "call") == 0 || strcmp(step, "kick") == 0) {
		*req = step[0] == 'c' ? VU_SET_VRING_CALL : VU_SET_VRING_KICK;
		fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (fd < 0) {
			return -errno;
		}
		rc = vu_send(c, *req, nr, &index, sizeof(index), &fd, 1);
		close(fd);
		return rc;
	}
	if (strcmp(step, "log-addr") == 0) {
		struct vu_vring_addr a = {
			.index = 0,
			.flags = 1u << VRING_F_LOG,
			.desc_user_addr = (uint64_t)(uintptr_t)vq->desc,
			.used_user_addr = (uint64_t)(uintptr_t)vq->used,
			.avail_user_addr = (uint64_t)(uintptr_t)vq->avail,
			.log_guest_addr = gm_gpa(&d->mem, vq->used),
		};

		*req = VU_SET_VRING_ADDR;
		return vu_send(c, *req, nr, &a, sizeof(a), NULL, 0);
	}
	if (strcmp(step, "log-base") == 0) {
		*req = VU_SET_LOG_BASE;
		*want_reply = true; /* vhost-user.rst: always answered */
		return _log_base(d);
	}
	if (strcmp(step, "stop") == 0) {
		struct vu_vring_state st = { 0, 0 };

		*req = VU_GET_VRING_BASE;
		*want_reply = true;
		return vu_send(c, *req, 0, &st, sizeof(st), NULL, 0);
	}
	return -EINVAL;
}

int
vi_stall_step(const struct vi_dev_opts *o, const char *step, bool json)
{
	struct vi_dev_opts opts = *o;
	struct vi_dev d;
	char line[16], reply[300] = "none";
	uint8_t buf[64];
	bool want_reply, closed;
	uint32_t req = 0;
	int rc;

	opts.num_queues = 1;
	opts.interrupts = false;
	opts.log_shmfd = strcmp(step, "log-base") == 0;
	if (opts.timeout_ms <= 0) {
		opts.timeout_ms = 3000;
	}
	rc = vi_dev_open(&d, &opts);
	if (rc == 0) {
		rc = _one_read(&d);
	}
	if (rc == 0 && opts.log_shmfd) {
		/* The first log replaces none: no reactor is asked. */
		rc = _log_base(&d);
		if (rc == 0 && vu_recv_reply(&d.conn, VU_SET_LOG_BASE, buf, sizeof(buf)) < 0) {
			rc = -EIO;
		}
	}
	if (rc != 0) {
		fprintf(stderr, "stall-step: setup failed: %s\n",
			d.conn.last_error[0] ? d.conn.last_error : strerror(-rc));
		vi_dev_close(&d, false);
		return 3;
	}
	printf("ready\n");
	fflush(stdout);
	if (fgets(line, sizeof(line), stdin) == NULL) {
		vi_dev_close(&d, false);
		return 2;
	}
	rc = _send_step(&d, step, &req, &want_reply);
	if (rc == -EINVAL) {
		fprintf(stderr, "stall-step: unknown step %s (call, log-addr, log-base, stop, kick)\n",
			step);
		vi_dev_close(&d, false);
		return 2;
	}
	if (rc != 0) {
		snprintf(reply, sizeof(reply), "send failed: %s", strerror(-rc));
	} else if (want_reply) {
		d.conn.timeout_ms = 3000;
		rc = vu_recv_reply(&d.conn, req, buf, sizeof(buf));
		if (rc >= 0) {
			snprintf(reply, sizeof(reply), "reply of %d bytes", rc);
		} else {
			snprintf(reply, sizeof(reply), "%s", rc == -ETIMEDOUT ? "no reply" :
				 d.conn.last_error);
		}
	}
	closed = vu_peer_closed(&d.conn, 3000);
	for (char *p = reply; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) {
			*p = '\'';  /* plain JSON string */
		}
	}
	if (json) {
		printf("{\"step\": \"%s\", \"reply\": \"%s\", \"disconnected\": %s}\n", step, reply,
		       closed ? "true" : "false");
	} else {
		printf("%s: %s, %s\n", step, reply, closed ? "disconnected" : "still connected");
	}
	vi_dev_close(&d, false);
	return 0;
}
