/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-blk request parsing with header, data and status split over
 * descriptors in odd ways (virtio 1.2 §5.2.6.4), config space and features.
 */
#include "ut.h"
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

static uint8_t g_buf[8192];
static struct iovec g_iov[16];
static struct sb_vring_chain g_chain;

/* Build a chain from (offset, len) pieces: the first nr readable. */
static void
_chain(uint32_t nr, uint32_t n, const uint32_t *off, const uint32_t *len)
{
	uint32_t i;

	memset(&g_chain, 0, sizeof(g_chain));
	g_chain.iov = g_iov;
	g_chain.max_iov = 16;
	for (i = 0; i < n; i++) {
		g_iov[i].iov_base = g_buf + off[i];
		g_iov[i].iov_len = len[i];
		if (i < nr) {
			g_chain.readable_bytes += len[i];
		} else {
			g_chain.writable_bytes += len[i];
		}
	}
	g_chain.n_iov = n;
	g_chain.n_readable = nr;
}

static void
_hdr(uint32_t at, uint32_t type, uint64_t sector)
{
	struct virtio_blk_outhdr h = { .type = type, .sector = sector };

	memcpy(g_buf + at, &h, sizeof(h));
}

static void
test_classic_layout(void)
{
	uint32_t off[] = { 0, 100, 2000 }, len[] = { 16, 1024, 1 };
	struct sb_blk_req_parsed r;

	_hdr(0, VIRTIO_BLK_T_IN, 42);
	_chain(1, 3, off, len);
	CHECK_EQ(sb_blk_req_parse(&g_chain, &r), 0);
	CHECK_EQ(r.hdr.type, VIRTIO_BLK_T_IN);
	CHECK_EQ(r.hdr.sector, 42);
	CHECK_EQ(r.data_cnt, 1);
	CHECK_EQ(r.data_len, 1024);
	CHECK(r.data[0].iov_base == g_buf + 100 && r.data[0].iov_len == 1024);
	CHECK(r.status == g_buf + 2000);
}

static void
test_header_split_and_status_in_data(void)
{
	/* Header over two descriptors, the second also carrying write data;
	 * the status byte shares the last writable descriptor. */
	uint32_t off[] = { 0, 500, 3000 }, len[] = { 5, 11 + 512, 513 };
	struct sb_blk_req_parsed r;
	struct virtio_blk_outhdr h = { .type = VIRTIO_BLK_T_OUT, .sector = 7 };

	memcpy(g_buf, &h, 5);
	memcpy(g_buf + 500, (uint8_t *)&h + 5, 11);
	_chain(2, 3, off, len);
	CHECK_EQ(sb_blk_req_parse(&g_chain, &r), 0);
	CHECK_EQ(r.hdr.type, VIRTIO_BLK_T_OUT);
	CHECK_EQ(r.hdr.sector, 7);
	CHECK_EQ(r.data_cnt, 1);
	CHECK_EQ(r.data_len, 512);
	CHECK(r.data[0].iov_base == g_buf + 511 && r.data[0].iov_len == 512);
	CHECK(r.status == g_buf + 3000 + 512);
}

static void
test_everything_in_two(void)
{
	/* Header + data in one readable descriptor, status alone. */
	uint32_t off[] = { 0, 4000 }, len[] = { 16 + 1024, 1 };
	struct sb_blk_req_parsed r;

	_hdr(0, VIRTIO_BLK_T_OUT, 0);
	_chain(1, 2, off, len);
	CHECK_EQ(sb_blk_req_parse(&g_chain, &r), 0);
	CHECK_EQ(r.data_len, 1024);
	CHECK(r.data[0].iov_base == g_buf + 16);
	CHECK(r.status == g_buf + 4000);

	/* IN: data and status in one writable descriptor, status byte last. */
	{
		uint32_t o2[] = { 0, 1000 }, l2[] = { 16, 4097 };

		_hdr(0, VIRTIO_BLK_T_IN, 8);
		_chain(1, 2, o2, l2);
		CHECK_EQ(sb_blk_req_parse(&g_chain, &r), 0);
		CHECK_EQ(r.data_cnt, 1);
		CHECK_EQ(r.data_len, 4096);
		CHECK(r.data[0].iov_len == 4096);
		CHECK(r.status == g_buf + 1000 + 4096);
	}
	/* IN: data split in three, status alone. */
	{
		uint32_t o3[] = { 0, 100, 700, 1300, 6000 }, l3[] = { 16, 512, 512, 512, 1 };

		_hdr(0, VIRTIO_BLK_T_IN, 8);
		_chain(1, 5, o3, l3);
		CHECK_EQ(sb_blk_req_parse(&g_chain, &r), 0);
		CHECK_EQ(r.data_cnt, 3);
		CHECK_EQ(r.data_len, 1536);
		CHECK(r.status == g_buf + 6000);
	}
}

static void
test_malformed(void)
{
	struct sb_blk_req_parsed r;
	uint32_t off[] = { 0, 100 }, len[] = { 15, 1 };
	uint32_t off2[] = { 0 }, len2[] = { 16 + 512 };

	/* header shorter than 16 bytes */
	_chain(1, 2, off, len);
	CHECK_EQ(sb_blk_req_parse(&g_chain, &r), -EINVAL);
	/* no writable byte for the status */
	_chain(1, 1, off2, len2);
	CHECK_EQ(sb_blk_req_parse(&g_chain, &r), -EINVAL);
}

static void
test_discard_payload(void)
{
	uint32_t off[] = { 0, 16, 2000 }, len[] = { 16, 32, 1 };
	struct virtio_blk_seg segs[2] = { { .sector = 8, .num_sectors = 16 },
					  { .sector = 64, .num_sectors = 8, .flags = 1 } };
	struct virtio_blk_seg out[2];
	struct sb_blk_req_parsed r;

	_hdr(0, VIRTIO_BLK_T_WRITE_ZEROES, 0);
	memcpy(g_buf + 16, segs, sizeof(segs));
	_chain(2, 3, off, len);
	CHECK_EQ(sb_blk_req_parse(&g_chain, &r), 0);
	CHECK_EQ(r.data_len, 32);
	CHECK_EQ(sb_iov_copy_out(r.data, r.data_cnt, 0, out, sizeof(out)), 32);
	CHECK_EQ(out[1].sector, 64);
	CHECK_EQ(out[1].flags, 1);
}

static void
test_iov_copy(void)
{
	struct iovec iov[3] = { { g_buf, 3 }, { g_buf + 100, 5 }, { g_buf + 200, 4 } };
	uint8_t dst[12];

	memcpy(g_buf, "abc", 3);
	memcpy(g_buf + 100, "defgh", 5);
	memcpy(g_buf + 200, "ijkl", 4);
	CHECK_EQ(sb_iov_copy_out(iov, 3, 2, dst, 6), 6);
	CHECK(memcmp(dst, "cdefgh", 6) == 0);
	CHECK_EQ(sb_iov_copy_out(iov, 3, 10, dst, 6), 2);
	CHECK_EQ(sb_iov_copy_in(iov, 3, "0123456789ABCDEF", 16), 12);
	CHECK(memcmp(g_buf + 200, "89AB", 4) == 0);
}

static void
test_config_and_features(void)
{
	struct sb_blk_geometry g = { .num_blocks = 1000, .block_size = 4096, .num_queues = 4,
				     .discard = true, .write_zeroes = true, .flush = true };
	struct virtio_blk_config cfg;
	uint64_t f;

	/* Offsets from virtio 1.2 §5.2.4 (QEMU reads them by offset). */
	CHECK_EQ(offsetof(struct virtio_blk_config, blk_size), 20);
	CHECK_EQ(offsetof(struct virtio_blk_config, writeback), 32);
	CHECK_EQ(offsetof(struct virtio_blk_config, num_queues), 34);
	CHECK_EQ(offsetof(struct virtio_blk_config, max_discard_sectors), 36);
	CHECK_EQ(offsetof(struct virtio_blk_config, max_write_zeroes_seg), 52);
	CHECK_EQ(offsetof(struct virtio_blk_config, write_zeroes_may_unmap), 56);
	sb_blk_config(&g, &cfg);
	CHECK_EQ(cfg.capacity, 1000 * 8);
	CHECK_EQ(cfg.blk_size, 4096);
	CHECK_EQ(cfg.num_queues, 4);
	CHECK_EQ(cfg.seg_max, SB_VHOST_BLK_SEG_MAX);
	CHECK_EQ(cfg.discard_sector_alignment, 8);
	CHECK_EQ(cfg.max_discard_seg, SB_VHOST_BLK_MAX_DISCARD_SEG);
	f = sb_blk_features(&g);
	CHECK(f & (1ull << VIRTIO_BLK_F_DISCARD));
	CHECK(f & (1ull << VIRTIO_BLK_F_WRITE_ZEROES));
	CHECK(f & (1ull << VIRTIO_F_VERSION_1));
	CHECK(f & (1ull << VHOST_USER_F_PROTOCOL_FEATURES));
	CHECK(!(f & (1ull << VIRTIO_BLK_F_RO)));
	CHECK(!(f & (1ull << VIRTIO_F_RING_PACKED)));
	g.packed = true;
	CHECK(sb_blk_features(&g) & (1ull << VIRTIO_F_RING_PACKED));
	g.packed = false;
	g.readonly = true;
	f = sb_blk_features(&g);
	CHECK(f & (1ull << VIRTIO_BLK_F_RO));
	CHECK(!(f & (1ull << VIRTIO_BLK_F_DISCARD)));
	CHECK(!(f & (1ull << VIRTIO_BLK_F_WRITE_ZEROES)));
}

int
main(void)
{
	RUN_TEST(test_classic_layout);
	RUN_TEST(test_header_split_and_status_in_data);
	RUN_TEST(test_everything_in_two);
	RUN_TEST(test_malformed);
	RUN_TEST(test_discard_payload);
	RUN_TEST(test_iov_copy);
	RUN_TEST(test_config_and_features);
	return UT_SUMMARY();
}
