/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness: the split and packed virtqueue walkers (and the
 * packed inflight region) and the virtio-blk request parser over a fuzzed
 * guest-memory image.
 *
 * Guest memory is two regions the way QEMU lays out a small guest: RAM
 * below a hole at gpa 0 and a second piece above it, each backed by its
 * own heap buffer with a guard region of "backend memory" (a canary
 * buffer) around it.  The input supplies the queue parameters and the
 * bytes of both regions, i.e. every ring, descriptor and indirect table.
 *
 * Beyond "no crash" (ASan catches any stray read or write), the harness
 * checks the isolation property itself: every iovec the walker returns
 * lies entirely inside one guest region, the parsed data and status point
 * inside the chain, and the canary around guest memory is untouched after
 * the device wrote status bytes and used-ring entries.
 *
 * Input layout (little endian):
 *   u8  queue size selector (size = 1 << (sel % 11), 1..1024)
 *   u8  feature bits: 1 = INDIRECT_DESC, 2 = EVENT_IDX, 4 = RING_PACKED,
 *       8 = (packed) an inflight region at the start of region 1, its
 *       bytes from the input like the rest (the front-end's to garble)
 *   u16 last_avail_idx (split: the base; packed: avail index | wrap << 15,
 *       and the same value as the used half)
 *   u32 desc offset, u32 avail offset, u32 used offset (in region 0 uva;
 *       packed: descriptor ring, driver and device event structures)
 *   u16 split: bytes of the rest that go to region 0 (others: region 1)
 *   rest: region contents
 */
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define R0_SIZE (64u * 1024)
#define R1_SIZE (32u * 1024)
#define R0_GPA 0x0ull
#define R1_GPA 0x100000ull        /* a hole between the regions */
#define R0_UVA 0x7f0000000000ull  /* what QEMU would report */
#define R1_UVA 0x7f0000100000ull
#define GUARD 4096u
#define CANARY 0xa5

static uint8_t *g_buf0, *g_buf1;
static struct sb_vhost_mem *g_mem;
static uint64_t g_gpa[SB_VHOST_REQ_MAX_IOV];
static struct iovec g_iov[SB_VHOST_REQ_MAX_IOV];

struct _hdr {
	uint8_t qsel;
	uint8_t feat;
	uint16_t base;
	uint32_t desc_off;
	uint32_t avail_off;
	uint32_t used_off;
	uint16_t split;
} __attribute__((packed));

static void
_die(const char *what)
{
	fprintf(stderr, "vring_fuzz: invariant broken: %s\n", what);
	abort();
}

static bool
_in(const uint8_t *p, uint64_t len, const uint8_t *base, uint64_t size)
{
	return p >= base && len <= size && (uint64_t)(p - base) <= size - len;
}

static bool
_in_guest(const void *p, uint64_t len)
{
	return _in(p, len, g_buf0 + GUARD, R0_SIZE) || _in(p, len, g_buf1 + GUARD, R1_SIZE);
}

static void
_check_guard(const uint8_t *buf, uint32_t size)
{
	uint32_t i;

	for (i = 0; i < GUARD; i++) {
		if (buf[i] != CANARY || buf[GUARD + size + i] != CANARY) {
			_die("device wrote outside guest memory");
		}
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct vhost_user_mem_region r0 = { R0_GPA, R0_SIZE, R0_UVA, 0 };
	struct vhost_user_mem_region r1 = { R1_GPA, R1_SIZE, R1_UVA, 0 };

	g_buf0 = malloc(R0_SIZE + 2 * GUARD);
	g_buf1 = malloc(R1_SIZE + 2 * GUARD);
	g_mem = sb_vhost_mem_alloc();
	if (g_buf0 == NULL || g_buf1 == NULL || g_mem == NULL ||
	    sb_vhost_mem_add(g_mem, &r0, -1, g_buf0 + GUARD) != 0 ||
	    sb_vhost_mem_add(g_mem, &r1, -1, g_buf1 + GUARD) != 0) {
		_die("setup");
	}
	return 0;
}

/* Every iovec of a walked chain inside guest memory, its gpa naming the same bytes. */
static void
_check_chain(const struct sb_vring_chain *chain)
{
	uint32_t i;

	if (chain->n_iov > chain->max_iov || chain->n_readable > chain->n_iov) {
		_die("chain counts");
	}
	for (i = 0; i < chain->n_iov; i++) {
		uint64_t glen = chain->iov[i].iov_len;

		if (!_in_guest(chain->iov[i].iov_base, chain->iov[i].iov_len)) {
			_die("iovec outside guest memory");
		}
		if (sb_vhost_gpa_to_va(g_mem, g_gpa[i], &glen) != chain->iov[i].iov_base ||
		    glen != chain->iov[i].iov_len) {
			_die("iovec guest-physical address does not match");
		}
	}
}

/*
 * Packed ring (virtio 1.2 §2.8): pop, walk, parse and complete through the
 * ring interface, with the inflight region when asked; a restart adopts
 * the region and resubmits from its copies.
 */
static void
_packed(const struct _hdr *h)
{
	static struct vring_packed_desc scratch[SB_VHOST_MAX_QUEUE_SIZE];
	static uint16_t ents[SB_VHOST_MAX_QUEUE_SIZE];
	static uint16_t entry_of[SB_VHOST_MAX_QUEUE_SIZE];
	struct sb_inflight_queue_packed *iq = NULL;
	struct sb_vring_chain chain;
	struct sb_blk_req_parsed req;
	struct sb_vring vr = { 0 };
	const char *why = NULL;
	uint64_t counter = 1;
	uint16_t id, nd, n = 0, i;
	int k, rc, budget;

	vr.size = (uint16_t)(1u << (h->qsel % 11));
	vr.packed = true;
	vr.indirect = h->feat & 1;
	vr.event_idx = (h->feat & 2) != 0;
	vr.scratch = scratch;
	if (sb_vq_map(&vr, g_mem, R0_UVA + h->desc_off, R0_UVA + h->avail_off,
		      R0_UVA + h->used_off, &why) != 0 ||
	    sb_vring_packed_set_base(&vr, h->base | (uint32_t)h->base << 16, &why) != 0) {
		return;
	}
	if (!_in_guest(vr.pdesc, sb_vring_packed_desc_bytes(vr.size)) ||
	    !_in_guest(vr.driver_event, 4) || !_in_guest(vr.device_event, 4)) {
		_die("ring mapped outside guest memory");
	}
	if ((h->feat & 8) && sb_inflight_packed_queue_bytes(vr.size) <= R1_SIZE) {
		iq = (struct sb_inflight_queue_packed *)(g_buf1 + GUARD);
		if (sb_inflight_packed_adopt(iq, &vr, ents, &n, &counter, &why) != 0) {
			return;
		}
		if (n > vr.size || vr.last_avail_idx >= vr.size || vr.last_used_idx >= vr.size) {
			_die("inflight adopt out of range");
		}
	}
	sb_vq_notify_off(&vr);
	for (k = 0, budget = 2 * vr.size + 4; budget > 0; budget--) {
		if (k < n) {
			if (sb_inflight_packed_load(iq, &vr, ents[k], &id, &nd, &why) != 0) {
				return;
			}
			entry_of[id] = ents[k++];
		} else {
			rc = sb_vq_pop(&vr, &id, &nd, &why);
			if (rc <= 0) {
				break;
			}
			if (iq != NULL &&
			    sb_inflight_packed_fetch(iq, &vr, counter++, &entry_of[id], &why) != 0) {
				return;
			}
		}
		if (id >= vr.size || nd == 0 || nd > vr.size || vr.scratch_n != nd) {
			_die("packed pop out of range");
		}
		memset(&chain, 0, sizeof(chain));
		chain.iov = g_iov;
		chain.max_iov = SB_VHOST_REQ_MAX_IOV;
		chain.gpa = g_gpa;
		rc = sb_vq_walk(&vr, g_mem, id, &chain, &why);
		if (rc == -EINVAL) {
			return;
		}
		if (rc == 0) {
			_check_chain(&chain);
			if (sb_blk_req_parse(&chain, &req) == 0) {
				if (!_in_guest(req.status, 1)) {
					_die("status byte outside guest memory");
				}
				for (i = 0; i < req.data_cnt; i++) {
					if (!_in_guest(req.data[i].iov_base, req.data[i].iov_len)) {
						_die("data iovec outside guest memory");
					}
				}
				*req.status = VIRTIO_BLK_S_OK;
			}
		}
		if (iq != NULL) {
			sb_inflight_packed_push_used(iq, &vr, entry_of[id], id, nd, 1);
		} else {
			sb_vq_push_used(&vr, id, nd, 1);
		}
		if (vr.last_used_idx >= vr.size) {
			_die("used index outside the ring");
		}
		(void)sb_vq_need_call(&vr);
	}
	(void)sb_vq_notify_on(&vr);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sb_vring vr = { 0 };
	struct sb_vring_chain chain;
	struct sb_blk_req_parsed req;
	struct _hdr h;
	const char *why = NULL;
	size_t rest, n0;
	uint16_t head;
	uint32_t i;
	int n, k, rc;

	if (size < sizeof(h)) {
		return 0;
	}
	memcpy(&h, data, sizeof(h));
	data += sizeof(h);
	rest = size - sizeof(h);
	memset(g_buf0, CANARY, R0_SIZE + 2 * GUARD);
	memset(g_buf1, CANARY, R1_SIZE + 2 * GUARD);
	memset(g_buf0 + GUARD, 0, R0_SIZE);
	memset(g_buf1 + GUARD, 0, R1_SIZE);
	n0 = h.split < rest ? h.split : rest;
	if (n0 > R0_SIZE) {
		n0 = R0_SIZE;
	}
	memcpy(g_buf0 + GUARD, data, n0);
	memcpy(g_buf1 + GUARD, data + n0, rest - n0 < R1_SIZE ? rest - n0 : R1_SIZE);

	if (h.feat & 4) {
		_packed(&h);
		goto out;
	}
	vr.size = (uint16_t)(1u << (h.qsel % 11));
	vr.indirect = h.feat & 1;
	vr.event_idx = (h.feat & 2) != 0;
	vr.last_avail_idx = h.base;
	if (sb_vring_map(&vr, g_mem, R0_UVA + h.desc_off, R0_UVA + h.avail_off,
			 R0_UVA + h.used_off, &why) != 0) {
		goto out;
	}
	if (!_in_guest(vr.desc, sb_vring_desc_bytes(vr.size)) ||
	    !_in_guest(vr.avail, sb_vring_avail_bytes(vr.size)) ||
	    !_in_guest(vr.used, sb_vring_used_bytes(vr.size))) {
		_die("ring mapped outside guest memory");
	}
	vr.last_used_idx = vr.used->idx;
	/* Two passes: the device sees the ring, then sees it again after its own updates. */
	for (k = 0; k < 2; k++) {
		n = sb_vring_avail_count(&vr, &why);
		if (n < 0) {
			goto out;
		}
		if (n > vr.size) {
			_die("avail count above queue size");
		}
		while (n-- > 0) {
			if (sb_vring_pop(&vr, &head, &why) != 0) {
				goto out;
			}
			if (head >= vr.size) {
				_die("head out of range accepted");
			}
			memset(&chain, 0, sizeof(chain));
			chain.iov = g_iov;
			chain.max_iov = SB_VHOST_REQ_MAX_IOV;
			chain.gpa = g_gpa;
			rc = sb_vring_walk(&vr, g_mem, head, &chain, &why);
			if (rc == -EINVAL) {
				/* A guest violation: the device stops here. */
				goto out;
			}
			if (rc != 0) {
				sb_vring_push_used(&vr, head, 0);
				continue;
			}
			if (chain.n_iov > chain.max_iov || chain.n_readable > chain.n_iov) {
				_die("chain counts");
			}
			for (i = 0; i < chain.n_iov; i++) {
				uint64_t glen = chain.iov[i].iov_len;

				if (!_in_guest(chain.iov[i].iov_base, chain.iov[i].iov_len)) {
					_die("iovec outside guest memory");
				}
				/* The dirty log marks g_gpa[i]: it must name the same bytes. */
				if (sb_vhost_gpa_to_va(g_mem, g_gpa[i], &glen) !=
					    chain.iov[i].iov_base ||
				    glen != chain.iov[i].iov_len) {
					_die("iovec guest-physical address does not match");
				}
			}
			if (sb_blk_req_parse(&chain, &req) != 0) {
				sb_vring_push_used(&vr, head, 0);
				continue;
			}
			if (!_in_guest(req.status, 1)) {
				_die("status byte outside guest memory");
			}
			for (i = 0; i < req.data_cnt; i++) {
				if (!_in_guest(req.data[i].iov_base, req.data[i].iov_len)) {
					_die("data iovec outside guest memory");
				}
			}
			/* What the executor does at completion: payload, status, used ring. */
			if (req.hdr.type == VIRTIO_BLK_T_IN && req.data_cnt > 0) {
				uint8_t pat[512];

				memset(pat, 0x5a, sizeof(pat));
				sb_iov_copy_in(req.data, req.data_cnt, pat,
					       req.data_len < sizeof(pat) ? req.data_len : sizeof(pat));
			} else if (req.data_cnt > 0) {
				uint8_t out[64];

				sb_iov_copy_out(req.data, req.data_cnt, 0, out, sizeof(out));
			}
			*req.status = VIRTIO_BLK_S_OK;
			sb_vring_push_used(&vr, head, 1);
		}
		sb_vring_set_avail_event(&vr);
		(void)sb_vring_need_call(&vr);
	}
out:
	_check_guard(g_buf0, R0_SIZE);
	_check_guard(g_buf1, R1_SIZE);
	return 0;
}
