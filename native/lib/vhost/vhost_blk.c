/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-blk: request layout parsing, config space and feature bits
 * (virtio 1.2 §5.2).  Execution against the bdev is in vhost_blk_io.c.
 */
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <string.h>

uint64_t
sb_iov_copy_out(const struct iovec *iov, uint32_t cnt, uint64_t off, void *dst, uint64_t len)
{
	uint64_t done = 0, n;
	uint32_t i;

	for (i = 0; i < cnt && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		n = iov[i].iov_len - off;
		if (n > len - done) {
			n = len - done;
		}
		memcpy((uint8_t *)dst + done, (uint8_t *)iov[i].iov_base + off, n);
		done += n;
		off = 0;
	}
	return done;
}

uint64_t
sb_iov_copy_in(const struct iovec *iov, uint32_t cnt, const void *src, uint64_t len)
{
	uint64_t done = 0, n;
	uint32_t i;

	for (i = 0; i < cnt && done < len; i++) {
		n = iov[i].iov_len;
		if (n > len - done) {
			n = len - done;
		}
		memcpy(iov[i].iov_base, (const uint8_t *)src + done, n);
		done += n;
	}
	return done;
}

/* Drop the first skip bytes of iov[0..cnt); returns the new start index. */
static uint32_t
_iov_skip_front(struct iovec *iov, uint32_t cnt, uint64_t skip)
{
	uint32_t i = 0;

	while (i < cnt && skip > 0) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			i++;
		} else {
			iov[i].iov_base = (uint8_t *)iov[i].iov_base + skip;
			iov[i].iov_len -= skip;
			skip = 0;
		}
	}
	return i;
}

int
sb_blk_req_parse(struct sb_vring_chain *chain, struct sb_blk_req_parsed *req)
{
	struct iovec *iov = chain->iov;
	uint32_t nr = chain->n_readable, nw = chain->n_iov - chain->n_readable;
	struct iovec *w = iov + nr;
	struct iovec *last;
	uint32_t start;

	memset(req, 0, sizeof(*req));
	/* The chain walker drops zero-length buffers, so w[nw - 1] holds >= 1 byte. */
	if (chain->readable_bytes < sizeof(req->hdr) || nw == 0 || chain->writable_bytes < 1) {
		return -EINVAL;
	}
	sb_iov_copy_out(iov, nr, 0, &req->hdr, sizeof(req->hdr));
	last = &w[nw - 1];
	req->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	last->iov_len--;
	if (chain->gpa != NULL) {
		/* Dirty logging marks the status byte by its guest-physical address. */
		req->status_gpa = chain->gpa[nr + nw - 1] + last->iov_len;
	}
	if (last->iov_len == 0) {
		nw--;
	}
	if (req->hdr.type == VIRTIO_BLK_T_OUT || req->hdr.type == VIRTIO_BLK_T_DISCARD ||
	    req->hdr.type == VIRTIO_BLK_T_WRITE_ZEROES) {
		/* Driver-to-device payload follows the header in the readable part. */
		start = _iov_skip_front(iov, nr, sizeof(req->hdr));
		req->data = iov + start;
		req->data_cnt = nr - start;
		req->data_len = chain->readable_bytes - sizeof(req->hdr);
	} else {
		req->data = w;
		req->data_cnt = nw;
		req->data_len = chain->writable_bytes - 1;
	}
	return 0;
}

uint64_t
sb_blk_features(const struct sb_blk_geometry *g)
{
	uint64_t f = (1ull << VIRTIO_BLK_F_SIZE_MAX) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
		     (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_TOPOLOGY) |
		     (1ull << VIRTIO_BLK_F_MQ) | (1ull << VIRTIO_F_INDIRECT_DESC) |
		     (1ull << VIRTIO_F_EVENT_IDX) | (1ull << VIRTIO_F_VERSION_1) |
		     (1ull << VHOST_USER_F_PROTOCOL_FEATURES) | (1ull << VHOST_F_LOG_ALL);

	if (g->packed) {
		/*
		 * As SPDK: only when the controller asks (packed_ring).  A guest
		 * that negotiated packed rings can only migrate to back-ends that
		 * offer them, so the default stays what every agent offers.
		 */
		f |= 1ull << VIRTIO_F_RING_PACKED;
	}
	if (g->flush) {
		/* Without it the guest knows there is no volatile cache ("write through"). */
		f |= 1ull << VIRTIO_BLK_F_FLUSH;
	}
	if (g->readonly) {
		f |= 1ull << VIRTIO_BLK_F_RO;
	} else {
		/* A guest that sees RO never sends these; offering them would only confuse it. */
		if (g->discard) {
			f |= 1ull << VIRTIO_BLK_F_DISCARD;
		}
		if (g->write_zeroes) {
			f |= 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
		}
	}
	return f;
}

static uint8_t
_log2(uint32_t v)
{
	uint8_t n = 0;

	while (v > 1) {
		v >>= 1;
		n++;
	}
	return n;
}

void
sb_blk_config(const struct sb_blk_geometry *g, struct virtio_blk_config *cfg)
{
	uint32_t bs = g->block_size ? g->block_size : 512;
	uint32_t pbs = g->phys_block_size ? g->phys_block_size : bs;

	memset(cfg, 0, sizeof(*cfg));
	/* §5.2.4: capacity is in 512-byte sectors whatever blk_size says. */
	cfg->capacity = g->num_blocks * bs / 512;
	cfg->size_max = SB_VHOST_BLK_SIZE_MAX;
	cfg->seg_max = SB_VHOST_BLK_SEG_MAX;
	cfg->blk_size = bs;
	cfg->physical_block_exp = pbs > bs ? _log2(pbs / bs) : 0;
	cfg->min_io_size = 1;
	cfg->opt_io_size = 1;
	cfg->writeback = g->flush ? 1 : 0;
	cfg->num_queues = g->num_queues;
	cfg->max_discard_sectors = SB_VHOST_BLK_MAX_DISCARD_SECTORS;
	cfg->max_discard_seg = SB_VHOST_BLK_MAX_DISCARD_SEG;
	cfg->discard_sector_alignment = bs / 512;
	cfg->max_write_zeroes_sectors = SB_VHOST_BLK_MAX_DISCARD_SECTORS;
	cfg->max_write_zeroes_seg = SB_VHOST_BLK_MAX_WZ_SEG;
	cfg->write_zeroes_may_unmap = 1;
}
