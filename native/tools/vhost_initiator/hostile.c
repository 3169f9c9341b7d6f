/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hostile front-end: each case connects, sends one malformed message or
 * descriptor chain and reports what the target did (reply, I/O status,
 * connection dropped, still answering).  Judging is left to the caller,
 * which also checks that the target still serves a well-behaved client.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vhost_initiator.h"

struct hres {
	bool disconnected;       /* the target closed the connection */
	bool answering;          /* GET_FEATURES still answered afterwards */
	char reply[300];         /* reply/ack to the malformed message */
	int io_status;           /* status byte of the malformed request, -1 none */
	int good_after;          /* status of a valid request afterwards, -1 none */
	char note[160];
};

struct req {
	struct virtio_blk_outhdr *hdr;
	uint8_t *buf;
	uint8_t *status;
};

typedef int (*case_fn)(const struct vi_dev_opts *o, struct hres *res);

static void
_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int
_alloc_req(struct vi_dev *d, struct req *r, uint32_t len)
{
	r->hdr = gm_alloc(&d->mem, sizeof(*r->hdr), 16);
	r->status = gm_alloc(&d->mem, 1, 1);
	r->buf = gm_alloc(&d->mem, len ? len : 1, 4096);
	if (r->hdr == NULL || r->status == NULL || r->buf == NULL) {
		return -ENOMEM;
	}
	*r->status = 0xff;
	return 0;
}

static void
_desc(struct vq *vq, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	vq->desc[i].addr = addr;
	vq->desc[i].len = len;
	vq->desc[i].flags = flags;
	vq->desc[i].next = next;
}

/* header / data / status in descriptors head, head+1, head+2 */
static void
_good_chain(struct vi_dev *d, struct vq *vq, uint16_t head, struct req *r, uint32_t type,
	    uint64_t sector, uint32_t len)
{
	r->hdr->type = type;
	r->hdr->ioprio = 0;
	r->hdr->sector = sector;
	*r->status = 0xff;
	_desc(vq, head, gm_gpa(&d->mem, r->hdr), sizeof(*r->hdr), VRING_DESC_F_NEXT, head + 1);
	_desc(vq, head + 1, gm_gpa(&d->mem, r->buf), len,
	      VRING_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0), head + 2);
	_desc(vq, head + 2, gm_gpa(&d->mem, r->status), 1, VRING_DESC_F_WRITE, 0);
}

/* 1: a used element arrived, 0: nothing within ms, -1: connection closed */
static int
_wait_used(struct vi_dev *d, struct vq *vq, int ms, uint32_t *id)
{
	uint32_t len;
	int waited = 0;

	for (;;) {
		if (vq_pop(vq, id, &len)) {
			return 1;
		}
		if (vu_peer_closed(&d->conn, 0)) {
			/* a completion may have raced the close */
			return vq_pop(vq, id, &len) ? 1 : -1;
		}
		if (waited >= ms) {
			return 0;
		}
		_sleep_ms(5);
		waited += 5;
	}
}

/* Submit a chain whose head is `head` and wait for its completion. */
static int
_post_and_wait(struct vi_dev *d, struct vq *vq, uint16_t head, int ms, uint32_t *id)
{
	vq_push(vq, head);
	vq_kick(vq, true);
	return _wait_used(d, vq, ms, id);
}

static void
_probe(struct vi_dev *d, struct hres *res)
{
	uint64_t f;
	int saved = d->conn.timeout_ms;

	if (vu_peer_closed(&d->conn, 200)) {
		res->disconnected = true;
		return;
	}
	d->conn.timeout_ms = 2000;
	res->answering = vu_get_u64(&d->conn, VU_GET_FEATURES, &f) == 0;
	d->conn.timeout_ms = saved;
	if (!res->answering && vu_peer_closed(&d->conn, 200)) {
		res->disconnected = true;
	}
}

static struct vi_dev_opts
_opts(const struct vi_dev_opts *o)
{
	struct vi_dev_opts c = *o;

	c.num_queues = 1;
	c.queue_size = 128;
	c.indirect = true;
	c.interrupts = false;
	if (c.timeout_ms <= 0 || c.timeout_ms > 3000) {
		c.timeout_ms = 3000;
	}
	return c;
}

/* Open + start + one good read: proves the target works before we lie. */
static int
_open_started(const struct vi_dev_opts *o, struct vi_dev *d, struct req *good)
{
	struct vi_dev_opts c = _opts(o);
	uint32_t id;
	int rc;

	rc = vi_dev_open(d, &c);
	if (rc != 0) {
		fprintf(stderr, "hostile: setup failed: %s\n", d->conn.last_error);
		return rc;
	}
	rc = _alloc_req(d, good, 4096);
	if (rc != 0) {
		return rc;
	}
	_good_chain(d, &d->vqs[0], 0, good, VIRTIO_BLK_T_IN, 0, 4096);
	rc = _post_and_wait(d, &d->vqs[0], 0, 3000, &id);
	if (rc != 1 || *good->status != VIRTIO_BLK_S_OK) {
		fprintf(stderr, "hostile: baseline read failed (rc %d status %u)\n", rc,
			*good->status);
		return -EIO;
	}
	return 0;
}

/* After a malformed chain: the chain's fate, then a valid request. */
static void
_after_chain(struct vi_dev *d, struct req *bad, struct req *good, struct hres *res)
{
	struct vq *vq = &d->vqs[0];
	uint32_t id;
	int rc;

	res->io_status = -1;
	res->good_after = -1;
	rc = _wait_used(d, vq, 1500, &id);
	if (rc == 1 && bad != NULL) {
		res->io_status = *bad->status;
		snprintf(res->reply, sizeof(res->reply), "used id %u", id);
	} else if (rc == 0) {
		snprintf(res->reply, sizeof(res->reply), "no completion");
	}
	if (rc == -1) {
		snprintf(res->reply, sizeof(res->reply), "connection closed");
		res->disconnected = true;
		return;
	}
	_good_chain(d, vq, 3, good, VIRTIO_BLK_T_IN, 0, 4096);
	rc = _post_and_wait(d, vq, 3, 1500, &id);
	if (rc == 1) {
		res->good_after = *good->status;
	}
	_probe(d, res);
}

/* --- descriptor cases ------------------------------------------------- */

static int
_case_chain(const struct vi_dev_opts *o, struct hres *res, const char *which)
{
	struct vi_dev d;
	struct req good, bad;
	struct vq *vq;
	uint64_t gend;
	uint16_t h = 8, i;
	int rc;

	rc = _open_started(o, &d, &good);
	if (rc != 0) {
		goto out;
	}
	vq = &d.vqs[0];
	rc = _alloc_req(&d, &bad, 4096);
	if (rc != 0) {
		goto out;
	}
	bad.hdr->type = VIRTIO_BLK_T_IN;
	bad.hdr->sector = 0;
	gend = d.mem.gpa + d.mem.size;
	_good_chain(&d, vq, h, &bad, VIRTIO_BLK_T_IN, 0, 4096);

	if (strcmp(which, "desc-loop") == 0) {
		/* A write's readable header -> data -> header ...: the chain
		 * never ends (virtio 1.2 §2.7.5.3.1) and never turns writable,
		 * so only a loop/length check can stop it. */
		_good_chain(&d, vq, h, &bad, VIRTIO_BLK_T_OUT, 0, 4096);
		vq->desc[h + 1].next = h;
	} else if (strcmp(which, "addr-outside") == 0) {
		vq->desc[h + 1].addr = gend + (1ull << 20);
	} else if (strcmp(which, "len-cross-region") == 0) {
		vq->desc[h + 1].addr = gend - 512;
	} else if (strcmp(which, "addr-overflow") == 0) {
		vq->desc[h + 1].addr = UINT64_MAX - 1024;
	} else if (strcmp(which, "head-oob") == 0) {
		h = vq->size;  /* §2.7.6: ring entries index the descriptor table */
	} else if (strcmp(which, "avail-jump") == 0) {
		/* §2.7.13.3: at most queue size new entries can be available */
		vq->avail->ring[vq->avail_idx % vq->size] = h;
		vq->avail_idx += vq->size + 5;
		__atomic_store_n(&vq->avail->idx, vq->avail_idx, __ATOMIC_RELEASE);
		vq_kick(vq, true);
		goto wait;
	} else if (!d.indirect && strncmp(which, "indirect", 8) == 0) {
		snprintf(res->note, sizeof(res->note), "target does not offer INDIRECT_DESC; "
			 "sent the indirect flag anyway");
	}
	if (strncmp(which, "indirect", 8) == 0 || strcmp(which, "chain-too-long") == 0) {
		/* Longer than the queue and than seg_max + 2 (targets may allow
		 * tables sized by segment count, as Linux builds them). */
		uint32_t too_long = (vq->size > d.seg_max + 2 ? vq->size : d.seg_max + 2) + 8;
		struct vring_desc *tab;
		uint32_t n = 3;

		if (too_long > 4096) {
			too_long = 4096;
		}
		tab = gm_alloc(&d.mem, 16ull * too_long, 16);

		if (tab == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		/* A valid 3-entry table, then the requested defect. */
		tab[0] = vq->desc[h];
		tab[1] = vq->desc[h + 1];
		tab[2] = vq->desc[h + 2];
		tab[0].next = 1;
		tab[1].next = 2;
		if (strcmp(which, "indirect-nested") == 0) {
			/* §2.7.5.3.1: no INDIRECT inside an indirect table */
			tab[1].flags = VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT;
			tab[1].addr = gm_gpa(&d.mem, tab);
			tab[1].len = 48;
		} else if (strcmp(which, "chain-too-long") == 0) {
			/* header, writable 512 B pieces, status */
			n = too_long;
			snprintf(res->note, sizeof(res->note), "%u descriptors, queue size %u, "
				 "seg_max %u", n, vq->size, d.seg_max);
			for (i = 1; i < n - 1; i++) {
				tab[i].addr = gm_gpa(&d.mem, bad.buf) + (i % 8) * 512;
				tab[i].len = 512;
				tab[i].flags = VRING_DESC_F_WRITE | VRING_DESC_F_NEXT;
				tab[i].next = i + 1;
			}
			tab[n - 1].addr = gm_gpa(&d.mem, bad.status);
			tab[n - 1].len = 1;
			tab[n - 1].flags = VRING_DESC_F_WRITE;
			tab[n - 1].next = 0;
		}
		_desc(vq, h, gm_gpa(&d.mem, tab), 16 * n, VRING_DESC_F_INDIRECT, 0);
		if (strcmp(which, "indirect-next") == 0) {
			/* §2.7.5.3.1: INDIRECT and NEXT are exclusive */
			vq->desc[h].flags |= VRING_DESC_F_NEXT;
			vq->desc[h].next = h + 1;
		} else if (strcmp(which, "indirect-len") == 0) {
			vq->desc[h].len = 40;
		}
	}
	vq_push(vq, h);
	vq_kick(vq, true);
wait:
	_after_chain(&d, &bad, &good, res);
	rc = 0;
out:
	vi_dev_close(&d, false);
	return rc;
}

/* --- packed ring cases (virtio 1.2 §2.8) ------------------------------- */

/* header / data / status of r as the buffers of one request */
static void
_packed_bufs(struct vi_dev *d, struct req *r, uint32_t type, uint32_t len, struct vi_buf *b)
{
	r->hdr->type = type;
	r->hdr->ioprio = 0;
	r->hdr->sector = 0;
	*r->status = 0xff;
	b[0] = (struct vi_buf){ gm_gpa(&d->mem, r->hdr), sizeof(*r->hdr), false };
	b[1] = (struct vi_buf){ gm_gpa(&d->mem, r->buf), len, type == VIRTIO_BLK_T_IN };
	b[2] = (struct vi_buf){ gm_gpa(&d->mem, r->status), 1, true };
}

/* Packed: one read under id, kicked, waited for. */
static int
_packed_read(struct vi_dev *d, struct req *r, uint16_t id, int ms, uint32_t *used_id)
{
	struct vi_buf b[3];

	_packed_bufs(d, r, VIRTIO_BLK_T_IN, 4096, b);
	vq_add(&d->vqs[0], id, b, 3);
	vq_kick(&d->vqs[0], true);
	return _wait_used(d, &d->vqs[0], ms, used_id);
}

static uint16_t
_wrap_bits(bool wrap)
{
	return wrap ? VRING_PACKED_DESC_F_AVAIL : VRING_PACKED_DESC_F_USED;
}

static int
_case_packed(const struct vi_dev_opts *o, struct hres *res, const char *which)
{
	struct vi_dev_opts c = _opts(o);
	struct vi_dev d;
	struct req good, bad;
	struct vi_buf b[3];
	struct vq *vq;
	uint32_t id;
	uint16_t i, first;
	int rc;

	c.packed = true;
	rc = vi_dev_open(&d, &c);
	if (rc != 0) {
		fprintf(stderr, "hostile: setup failed: %s\n", d.conn.last_error);
		goto out;
	}
	vq = &d.vqs[0];
	if (_alloc_req(&d, &good, 4096) != 0 || _alloc_req(&d, &bad, 4096) != 0) {
		rc = -ENOMEM;
		goto out;
	}
	rc = _packed_read(&d, &good, 0, 3000, &id);
	if (rc != 1 || *good.status != VIRTIO_BLK_S_OK) {
		fprintf(stderr, "hostile: baseline packed read failed (rc %d status %u)\n", rc,
			*good.status);
		rc = -EIO;
		goto out;
	}
	_packed_bufs(&d, &bad, VIRTIO_BLK_T_IN, 4096, b);
	first = vq->next_avail;
	if (strcmp(which, "packed-wrap") == 0) {
		/*
		 * §2.8.6: the driver marks every descriptor of a buffer.  The head
		 * is available; the two after it carry the previous lap's bits
		 * (the baseline took slots 0-2, so no slot here wraps).
		 */
		for (i = 1; i < 3; i++) {
			vq->pdesc[first + i] = (struct vring_packed_desc){
				b[i].addr, b[i].len, 1,
				(uint16_t)(_wrap_bits(!vq->avail_wrap) | VRING_DESC_F_WRITE |
					   (i == 1 ? VRING_DESC_F_NEXT : 0)) };
		}
		vq->pdesc[first].addr = b[0].addr;
		vq->pdesc[first].len = b[0].len;
		vq->pdesc[first].id = 1;
		__atomic_store_n(&vq->pdesc[first].flags,
				 (uint16_t)(_wrap_bits(vq->avail_wrap) | VRING_DESC_F_NEXT),
				 __ATOMIC_RELEASE);
	} else if (strcmp(which, "packed-id-oob") == 0) {
		/* §2.8.6: buffer ids index the driver's table of queue-size entries. */
		vq_add(vq, 1, b, 3);
		vq->pdesc[first + 2].id = vq->size;
		vq->pdesc[first + 1].id = vq->size;
		vq->pdesc[first].id = vq->size;
	} else if (strcmp(which, "packed-chain-too-long") == 0) {
		/* Every slot of the ring chained (NEXT), the lap's bits on each. */
		snprintf(res->note, sizeof(res->note), "%u chained descriptors, queue size %u",
			 vq->size, vq->size);
		for (i = 1; i < vq->size; i++) {
			uint16_t slot = (uint16_t)((first + i) % vq->size);
			bool wrap = first + i < vq->size ? vq->avail_wrap : !vq->avail_wrap;

			vq->pdesc[slot].addr = b[0].addr;
			vq->pdesc[slot].len = 16;
			vq->pdesc[slot].id = 1;
			vq->pdesc[slot].flags = _wrap_bits(wrap) | VRING_DESC_F_NEXT;
		}
		vq->pdesc[first].addr = b[0].addr;
		vq->pdesc[first].len = 16;
		vq->pdesc[first].id = 1;
		__atomic_store_n(&vq->pdesc[first].flags,
				 (uint16_t)(_wrap_bits(vq->avail_wrap) | VRING_DESC_F_NEXT),
				 __ATOMIC_RELEASE);
	} else if (strcmp(which, "packed-indirect-next") == 0) {
		struct vring_packed_desc *tab = gm_alloc(&d.mem, 48, 16);

		if (tab == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		for (i = 0; i < 3; i++) {
			tab[i] = (struct vring_packed_desc){ b[i].addr, b[i].len, 0,
							     b[i].write ? VRING_DESC_F_WRITE : 0 };
		}
		/* §2.8.7: INDIRECT and NEXT are exclusive. */
		vq->pdesc[(first + 1) % vq->size] = (struct vring_packed_desc){
			b[2].addr, 1, 1, (uint16_t)(_wrap_bits(first + 1 < vq->size ? vq->avail_wrap :
							       !vq->avail_wrap) | VRING_DESC_F_WRITE) };
		vq->pdesc[first].addr = gm_gpa(&d.mem, tab);
		vq->pdesc[first].len = 48;
		vq->pdesc[first].id = 1;
		__atomic_store_n(&vq->pdesc[first].flags,
				 (uint16_t)(_wrap_bits(vq->avail_wrap) | VRING_DESC_F_INDIRECT |
					    VRING_DESC_F_NEXT), __ATOMIC_RELEASE);
	} else if (strcmp(which, "packed-id-dup") == 0) {
		/*
		 * §2.8.6: an id names one buffer until it is used.  Two buffers
		 * under id 1 (slots first .. first + 5, no wrap after the
		 * baseline's 3), published at once by the first head's flags:
		 * the device takes both in one poll, before the first can
		 * complete (a bdev never completes inside its submit call).
		 */
		struct vi_buf b2[3];
		struct req dup;
		uint16_t head_flags;

		if (_alloc_req(&d, &dup, 4096) != 0) {
			rc = -ENOMEM;
			goto out;
		}
		_packed_bufs(&d, &dup, VIRTIO_BLK_T_IN, 4096, b2);
		for (i = 0; i < 6; i++) {
			const struct vi_buf *x = i < 3 ? &b[i] : &b2[i - 3];
			uint16_t f = _wrap_bits(vq->avail_wrap) | (x->write ? VRING_DESC_F_WRITE : 0) |
				     (i % 3 != 2 ? VRING_DESC_F_NEXT : 0);

			vq->pdesc[first + i].addr = x->addr;
			vq->pdesc[first + i].len = x->len;
			vq->pdesc[first + i].id = 1;
			if (i == 0) {
				head_flags = f;
			} else {
				vq->pdesc[first + i].flags = f;
			}
		}
		vq->ndesc[1] = 3;
		__atomic_store_n(&vq->pdesc[first].flags, head_flags, __ATOMIC_RELEASE);
		vq->next_avail = first + 6;
	} else if (strcmp(which, "packed-addr-outside") == 0) {
		b[1].addr = d.mem.gpa + d.mem.size + (1ull << 20);
		vq_add(vq, 1, b, 3);
	} else {
		rc = -EINVAL;
		goto out;
	}
	vq_kick(vq, true);

	res->io_status = -1;
	res->good_after = -1;
	rc = _wait_used(&d, vq, 1500, &id);
	if (rc == 1) {
		res->io_status = *bad.status;
		snprintf(res->reply, sizeof(res->reply), "used id %u", id);
	} else if (rc == 0) {
		snprintf(res->reply, sizeof(res->reply), "no completion");
	} else {
		snprintf(res->reply, sizeof(res->reply), "connection closed");
		res->disconnected = true;
		rc = 0;
		goto out;
	}
	/* A valid read after it, at whatever slot the driver is at. */
	if (strcmp(which, "packed-chain-too-long") != 0) {
		rc = _packed_read(&d, &good, 2, 1500, &id);
		if (rc == 1) {
			res->good_after = *good.status;
		}
	}
	_probe(&d, res);
	rc = 0;
out:
	vi_dev_close(&d, false);
	return rc;
}

static int
_case_sector_oob(const struct vi_dev_opts *o, struct hres *res)
{
	static const char *label[] = { "at capacity", "crossing the end", "2^63" };
	struct vi_dev d;
	struct req good, bad;
	struct vq *vq;
	uint64_t sectors[3];
	uint32_t id;
	int rc, k, n = 0;

	rc = _open_started(o, &d, &good);
	if (rc != 0) {
		goto out;
	}
	vq = &d.vqs[0];
	rc = _alloc_req(&d, &bad, 4096);
	if (rc != 0) {
		goto out;
	}
	sectors[0] = d.capacity;
	sectors[1] = d.capacity - 1;
	sectors[2] = 1ull << 63;
	res->io_status = -1;
	for (k = 0; k < 3; k++) {
		_good_chain(&d, vq, 8, &bad, VIRTIO_BLK_T_IN, sectors[k], 4096);
		rc = _post_and_wait(&d, vq, 8, 1500, &id);
		if (rc != 1) {
			break;
		}
		n += snprintf(res->note + n, sizeof(res->note) - (size_t)n, "%s: status %u; ",
			      label[k], *bad.status);
		if (*bad.status != VIRTIO_BLK_S_OK && res->io_status == -1) {
			res->io_status = *bad.status;
		}
		if (*bad.status == VIRTIO_BLK_S_OK) {
			res->io_status = 0;  /* an out-of-range read succeeded */
		}
	}
	if (rc == 0) {
		snprintf(res->reply, sizeof(res->reply), "read %s: no completion", label[k]);
	}
	res->good_after = -1;
	if (rc >= 0) {
		_good_chain(&d, vq, 3, &good, VIRTIO_BLK_T_IN, 0, 4096);
		if (_post_and_wait(&d, vq, 3, 1500, &id) == 1) {
			res->good_after = *good.status;
		}
	}
	_probe(&d, res);
	rc = 0;
out:
	vi_dev_close(&d, false);
	return rc;
}

static int
_case_write_readonly(const struct vi_dev_opts *o, struct hres *res)
{
	struct vi_dev d;
	struct req good, bad;
	int rc;

	rc = _open_started(o, &d, &good);
	if (rc != 0) {
		goto out;
	}
	if (!d.readonly) {
		/* Writing would change a writable target's data: do not. */
		snprintf(res->note, sizeof(res->note), "target is writable (no VIRTIO_BLK_F_RO); "
			 "case not applicable");
		res->io_status = res->good_after = -1;
		_probe(&d, res);
		goto out;
	}
	rc = _alloc_req(&d, &bad, 4096);
	if (rc != 0) {
		goto out;
	}
	memset(bad.buf, 0xa5, 4096);
	_good_chain(&d, &d.vqs[0], 8, &bad, VIRTIO_BLK_T_OUT, 0, 4096);
	vq_push(&d.vqs[0], 8);
	vq_kick(&d.vqs[0], true);
	_after_chain(&d, &bad, &good, res);
	if (res->good_after == VIRTIO_BLK_S_OK && good.buf[0] == 0xa5 && good.buf[4095] == 0xa5) {
		snprintf(res->note, sizeof(res->note), "block 0 now holds the written data");
	}
out:
	vi_dev_close(&d, false);
	return rc;
}

/*
 * Shrink the guest RAM memfd under the target's mapping (nothing seals it):
 * "data" cuts it just below the data buffer of a read the target is then
 * asked to do (the target's copy into guest memory faults; rings, header
 * and status stay); "rings" cuts it to 0 (the next ring access faults).
 * Past the cut our own mapping faults too, so it is not touched again.
 */
static int
_case_mem_shrink(const struct vi_dev_opts *o, struct hres *res, const char *which)
{
	bool rings = strcmp(which, "shrink-rings") == 0;
	struct vi_dev d;
	struct req good, bad;
	struct vq *vq;
	uint32_t id;
	off_t cut;
	int rc;

	rc = _open_started(o, &d, &good);
	if (rc != 0) {
		goto out;
	}
	vq = &d.vqs[0];
	rc = _alloc_req(&d, &bad, 64 * 1024);
	if (rc != 0) {
		goto out;
	}
	_good_chain(&d, vq, 8, &bad, VIRTIO_BLK_T_IN, 0, 64 * 1024);
	vq_push(vq, 8);
	cut = rings ? 0 : (off_t)(bad.buf - d.mem.base);
	if (ftruncate(d.mem.fd, cut) != 0) {
		rc = -errno;
		goto out;
	}
	snprintf(res->note, sizeof(res->note), "guest RAM memfd cut from %" PRIu64 " to %lld bytes",
		 d.mem.size, (long long)cut);
	vq_kick(vq, true);
	if (!rings) {
		rc = _wait_used(&d, vq, 3000, &id);
		if (rc == 1) {
			res->io_status = *bad.status;
			snprintf(res->reply, sizeof(res->reply), "used id %u", id);
		}
	}
	res->disconnected = vu_peer_closed(&d.conn, 3000);
	if (res->reply[0] == '\0') {
		snprintf(res->reply, sizeof(res->reply), "%s",
			 res->disconnected ? "connection closed" : "no completion");
	}
	rc = 0;
out:
	vi_dev_close(&d, false);
	return rc;
}

/* --- message cases ---------------------------------------------------- */

/* Read whatever reply comes back to `req` (if any) and describe it. */
static void
_read_reply(struct vi_dev *d, uint32_t req, struct hres *res, int ms)
{
	uint8_t buf[sizeof(struct vu_config)];
	int saved = d->conn.timeout_ms;
	int rc;

	d->conn.timeout_ms = ms;
	rc = vu_recv_reply(&d->conn, req, buf, sizeof(buf));
	d->conn.timeout_ms = saved;
	if (rc == 8) {
		uint64_t v;

		memcpy(&v, buf, 8);
		snprintf(res->reply, sizeof(res->reply), "reply u64 %" PRIu64, v);
	} else if (rc >= 0) {
		snprintf(res->reply, sizeof(res->reply), "reply of %d bytes", rc);
	} else if (rc == -ETIMEDOUT) {
		snprintf(res->reply, sizeof(res->reply), "no reply");
	} else {
		snprintf(res->reply, sizeof(res->reply), "%s", d->conn.last_error);
	}
}

static int
_handshaken(const struct vi_dev_opts *o, struct vi_dev *d)
{
	struct vi_dev_opts c = _opts(o);
	int rc;

	rc = vi_dev_handshake(d, &c);
	if (rc != 0) {
		fprintf(stderr, "hostile: handshake failed: %s\n", d->conn.last_error);
	}
	return rc;
}

static uint32_t
_nr(const struct vi_dev *d)
{
	/* Ask for a reply where the protocol allows it, to see the verdict. */
	return d->conn.reply_ack ? VU_FLAG_NEED_REPLY : 0;
}

static int
_case_msg(const struct vi_dev_opts *o, struct hres *res, const char *which)
{
	struct vi_dev d;
	struct vu_conn *c = &d.conn;
	uint32_t req = 0;
	bool want_reply = false;
	int rc;

	res->io_status = res->good_after = -1;
	rc = _handshaken(o, &d);
	if (rc != 0) {
		goto out;
	}
	want_reply = c->reply_ack;
	if (strcmp(which, "truncated-header") == 0) {
		struct vu_hdr hdr = { VU_GET_FEATURES, VU_FLAG_VERSION, 0 };

		rc = vu_send_raw(c, &hdr, 6, NULL, 0);
		_sleep_ms(300);
		/* The target must notice EOF in the middle of a header. */
		shutdown(c->fd, SHUT_WR);
		res->disconnected = vu_peer_closed(c, 2000);
		snprintf(res->reply, sizeof(res->reply), "%s",
			 res->disconnected ? "closed after EOF" : "still open after EOF");
		rc = 0;
		goto out;
	} else if (strcmp(which, "short-payload") == 0) {
		uint32_t idx = 0;

		req = VU_SET_VRING_NUM;  /* needs 8 bytes, gets 4 */
		rc = vu_send(c, req, _nr(&d), &idx, sizeof(idx), NULL, 0);
	} else if (strcmp(which, "oversized-size") == 0) {
		struct vu_hdr hdr = { VU_SET_VRING_NUM, VU_FLAG_VERSION | _nr(&d), 0x7ffffff0u };
		struct vu_vring_state st = { 0, 128 };
		uint8_t buf[sizeof(hdr) + sizeof(st)];

		memcpy(buf, &hdr, sizeof(hdr));
		memcpy(buf + sizeof(hdr), &st, sizeof(st));
		req = VU_SET_VRING_NUM;
		rc = vu_send_raw(c, buf, sizeof(buf), NULL, 0);
	} else if (strcmp(which, "mem-table-fds") == 0 || strcmp(which, "mem-overlap") == 0) {
		struct vu_mem_table mt;
		uint64_t half = d.mem.size / 2;
		int fds[2] = { d.mem.fd, d.mem.fd };
		bool overlap = strcmp(which, "mem-overlap") == 0;

		memset(&mt, 0, sizeof(mt));
		mt.nregions = 2;
		mt.regions[0].guest_phys_addr = d.mem.gpa;
		mt.regions[0].memory_size = half;
		mt.regions[0].userspace_addr = (uint64_t)(uintptr_t)d.mem.base;
		/* overlap: the second region's GPAs start inside the first */
		mt.regions[1].guest_phys_addr = d.mem.gpa + (overlap ? half / 2 : half);
		mt.regions[1].memory_size = half;
		mt.regions[1].userspace_addr = (uint64_t)(uintptr_t)d.mem.base + half;
		mt.regions[1].mmap_offset = half;
		req = VU_SET_MEM_TABLE;
		rc = vu_send(c, req, _nr(&d), &mt, 8 + 2 * sizeof(struct vu_region), fds,
			     overlap ? 2 : 1);
	} else if (strcmp(which, "kick-no-fd") == 0) {
		uint64_t v = 0;  /* index 0, NOFD clear, but no fd attached */

		req = VU_SET_VRING_KICK;
		rc = vu_send(c, req, _nr(&d), &v, sizeof(v), NULL, 0);
	} else if (strncmp(which, "vring-num-", 10) == 0) {
		struct vu_vring_state st = { 0, 0 };

		if (strcmp(which, "vring-num-npot") == 0) {
			st.num = 100;   /* §2.7: split queue size is a power of 2 */
		} else if (strcmp(which, "vring-num-big") == 0) {
			st.num = 32768; /* > 1024, QEMU's VIRTQUEUE_MAX_SIZE */
		}
		req = VU_SET_VRING_NUM;
		rc = vu_send(c, req, _nr(&d), &st, sizeof(st), NULL, 0);
	} else if (strcmp(which, "vring-index-oob") == 0) {
		struct vu_vring_state st = { 1000, 128 };
		uint64_t kick = 200;

		rc = vu_send(c, VU_SET_VRING_NUM, _nr(&d), &st, sizeof(st), NULL, 0);
		if (rc == 0 && want_reply) {
			_read_reply(&d, VU_SET_VRING_NUM, res, 1500);
		}
		if (rc == 0 && !vu_peer_closed(c, 50)) {
			rc = vu_send(c, VU_SET_VRING_KICK, 0, &kick, sizeof(kick), &d.vqs[0].kick_fd,
				     1);
		}
		if (rc == 0 && !vu_peer_closed(c, 50)) {
			st.index = 0xffffffffu;
			st.num = 1;
			rc = vu_send(c, VU_SET_VRING_ENABLE, 0, &st, sizeof(st), NULL, 0);
		}
		want_reply = false;
	} else if (strcmp(which, "config-oversize") == 0 ||
		   strcmp(which, "config-offset") == 0) {
		struct vu_config cfg;

		memset(&cfg, 0, sizeof(cfg));
		if (strcmp(which, "config-oversize") == 0) {
			cfg.size = 4096;  /* claims more than the 256-byte payload */
		} else {
			cfg.offset = 0xfffffff0u;
			cfg.size = 57;
		}
		req = VU_GET_CONFIG;
		rc = vu_send(c, req, 0, &cfg, sizeof(cfg), NULL, 0);
		want_reply = true;
	} else if (strcmp(which, "unknown-request") == 0) {
		uint64_t v = 0;

		req = 999;
		rc = vu_send(c, req, VU_FLAG_NEED_REPLY, &v, sizeof(v), NULL, 0);
		want_reply = true;
	} else {
		rc = -EINVAL;
		goto out;
	}
	if (rc != 0) {
		/* The target may have closed before we finished sending. */
		snprintf(res->reply, sizeof(res->reply), "send failed: %s", strerror(-rc));
		rc = 0;
	} else if (want_reply) {
		_read_reply(&d, req, res, 1500);
	}
	_probe(&d, res);
	rc = 0;
out:
	vi_dev_close(&d, false);
	return rc;
}

/* --- table ------------------------------------------------------------ */

struct hcase {
	const char *name;
	/* 0 chain, 1 message, 2 sector-oob, 3 write-readonly, 4 memory shrink, 5 packed ring */
	int kind;
	const char *what;
};

static const struct hcase g_cases[] = {
	{ "desc-loop", 0, "descriptor chain that loops back to its head" },
	{ "addr-outside", 0, "data buffer outside guest memory" },
	{ "len-cross-region", 0, "data buffer crossing the end of the memory region" },
	{ "addr-overflow", 0, "buffer address + length wrapping around 2^64" },
	{ "indirect-nested", 0, "INDIRECT descriptor inside an indirect table" },
	{ "indirect-next", 0, "descriptor with both INDIRECT and NEXT" },
	{ "indirect-len", 0, "indirect table length not a multiple of 16" },
	{ "chain-too-long", 0, "indirect chain longer than queue size and seg_max + 2" },
	{ "head-oob", 0, "avail ring head index >= queue size" },
	{ "avail-jump", 0, "avail idx jumping by more than the queue size" },
	{ "truncated-header", 1, "6 of 12 header bytes, then EOF" },
	{ "short-payload", 1, "SET_VRING_NUM with a 4-byte payload" },
	{ "oversized-size", 1, "header size field 0x7ffffff0" },
	{ "mem-table-fds", 1, "SET_MEM_TABLE with 2 regions and 1 fd" },
	{ "kick-no-fd", 1, "SET_VRING_KICK without fd and without NOFD" },
	{ "vring-num-0", 1, "SET_VRING_NUM 0" },
	{ "vring-num-npot", 1, "SET_VRING_NUM 100 (not a power of two)" },
	{ "vring-num-big", 1, "SET_VRING_NUM 32768 (> 1024)" },
	{ "vring-index-oob", 1, "vring index 1000 / 200 / 0xffffffff" },
	{ "config-oversize", 1, "GET_CONFIG size 4096" },
	{ "config-offset", 1, "GET_CONFIG offset 0xfffffff0" },
	{ "unknown-request", 1, "request id 999 with NEED_REPLY" },
	{ "mem-overlap", 1, "SET_MEM_TABLE with overlapping regions" },
	{ "write-readonly", 3, "write to a read-only target" },
	{ "sector-oob", 2, "reads at/over the capacity and at sector 2^63" },
	{ "shrink-data", 4, "guest RAM file truncated under a read's data buffer" },
	{ "shrink-rings", 4, "guest RAM file truncated to 0 under the rings" },
	{ "packed-wrap", 5, "packed ring: a chain whose next descriptor has the wrong wrap counter" },
	{ "packed-id-oob", 5, "packed ring: buffer id >= queue size" },
	{ "packed-chain-too-long", 5, "packed ring: every slot chained (longer than the ring)" },
	{ "packed-indirect-next", 5, "packed ring: descriptor with both INDIRECT and NEXT" },
	{ "packed-id-dup", 5, "packed ring: a buffer id made available again while in flight" },
	{ "packed-addr-outside", 5, "packed ring: data buffer outside guest memory" },
};

void
vi_hostile_list(void)
{
	size_t i;

	for (i = 0; i < sizeof(g_cases) / sizeof(g_cases[0]); i++) {
		printf("%-18s %s\n", g_cases[i].name, g_cases[i].what);
	}
}

static void
_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\') {
			putchar('\\');
		}
		putchar(*s >= 0x20 ? *s : ' ');
	}
	putchar('"');
}

static int
_run_one(const struct vi_dev_opts *o, const struct hcase *hc, bool json)
{
	struct hres res;
	int rc;

	memset(&res, 0, sizeof(res));
	res.io_status = res.good_after = -1;
	switch (hc->kind) {
	case 0:
		rc = _case_chain(o, &res, hc->name);
		break;
	case 1:
		rc = _case_msg(o, &res, hc->name);
		break;
	case 2:
		rc = _case_sector_oob(o, &res);
		break;
	case 4:
		rc = _case_mem_shrink(o, &res, hc->name);
		break;
	case 5:
		rc = _case_packed(o, &res, hc->name);
		break;
	default:
		rc = _case_write_readonly(o, &res);
		break;
	}
	if (json) {
		printf("{\"case\": \"%s\", \"ran\": %s, \"disconnected\": %s, \"answering\": %s, "
		       "\"io_status\": %d, \"good_io_after\": %d, \"reply\": ", hc->name,
		       rc == 0 ? "true" : "false", res.disconnected ? "true" : "false",
		       res.answering ? "true" : "false", res.io_status, res.good_after);
		_json_str(res.reply);
		printf(", \"note\": ");
		_json_str(res.note);
		printf("}\n");
	} else {
		printf("%-18s %s: disconnected=%s answering=%s io_status=%d good_io_after=%d "
		       "reply=[%s] %s\n", hc->name, rc == 0 ? "ran" : "SETUP FAILED",
		       res.disconnected ? "yes" : "no", res.answering ? "yes" : "no",
		       res.io_status, res.good_after, res.reply, res.note);
	}
	fflush(stdout);
	return rc;
}

int
vi_hostile_run(const struct vi_dev_opts *o, const char *name, bool json)
{
	size_t i;
	int rc, failed = 0, found = 0;

	for (i = 0; i < sizeof(g_cases) / sizeof(g_cases[0]); i++) {
		if (strcmp(name, "all") != 0 && strcmp(name, g_cases[i].name) != 0) {
			continue;
		}
		found++;
		rc = _run_one(o, &g_cases[i], json);
		if (rc != 0) {
			failed++;
		}
		/* Give the target time to tear the session down. */
		_sleep_ms(100);
	}
	if (!found) {
		fprintf(stderr, "unknown hostile case '%s' (--hostile list)\n", name);
		return 2;
	}
	return failed ? 3 : 0;
}
