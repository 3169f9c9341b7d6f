/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The message shapes of vhost-user front-ends other than QEMU (--frontend):
 * which messages each sends, in which order, with which payload sizes and
 * header flags.  Read from their sources (named below; facts only, no code
 * taken); the virtio-blk data path (workload.c) is the same for all.
 *
 * spdk      SPDK's virtio-user (lib/virtio/virtio_vhost_user.c, lib/virtio/
 *           virtio.c, module/bdev/virtio/bdev_virtio_blk.c)
 * dpdk      DPDK's virtio-user PMD over vhost-user (drivers/net/virtio/
 *           virtio_user/vhost_user.c, virtio_user_dev.c)
 * rust-vmm  the vhost crate's Frontend (vhost/src/vhost_user/frontend.rs) as
 *           cloud-hypervisor drives it (virtio-devices/src/vhost_user/
 *           vu_common_ctrl.rs, blk.rs)
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vhost_initiator.h"

static const char *const g_names[] = {
	[VI_FE_QEMU] = "qemu",
	[VI_FE_SPDK] = "spdk",
	[VI_FE_DPDK] = "dpdk",
	[VI_FE_RUST_VMM] = "rust-vmm",
};

const char *
vi_frontend_name(int frontend)
{
	if (frontend < 0 || frontend >= (int)(sizeof(g_names) / sizeof(g_names[0]))) {
		return "?";
	}
	return g_names[frontend];
}

int
vi_frontend_parse(const char *name)
{
	int i;

	for (i = 0; i < (int)(sizeof(g_names) / sizeof(g_names[0])); i++) {
		if (strcmp(name, g_names[i]) == 0) {
			return i;
		}
	}
	return -1;
}

/* A message that expects no reply of its own (an ack only where asked for). */
static int
_send0(struct vu_conn *c, uint32_t req, const void *payload, uint32_t size)
{
	return vu_set_msg(c, req, payload, size, NULL, 0);
}

static int
_vring_fd(struct vu_conn *c, uint32_t req, uint32_t index, int fd)
{
	uint64_t v = index;

	return vu_set_msg(c, req, &v, sizeof(v), &fd, 1);
}

static int
_vring_addr(struct vi_dev *d, uint32_t index)
{
	struct vq *vq = &d->vqs[index];
	struct vu_vring_addr addr = {
		.index = index,
		.flags = 0,   /* all three: no dirty logging */
		.desc_user_addr = (uint64_t)(uintptr_t)vq->desc,
		.used_user_addr = (uint64_t)(uintptr_t)vq->used,
		.avail_user_addr = (uint64_t)(uintptr_t)vq->avail,
	};

	return vu_set_msg(&d->conn, VU_SET_VRING_ADDR, &addr, sizeof(addr), NULL, 0);
}

static int
_get_vring_base(struct vi_dev *d, uint32_t index)
{
	struct vu_vring_state st = { .index = index, .num = 0 };
	struct vu_conn *c = &d->conn;
	int rc;

	rc = vu_send(c, VU_GET_VRING_BASE, 0, &st, sizeof(st), NULL, 0);
	if (rc != 0) {
		return rc;
	}
	rc = vu_recv_reply(c, VU_GET_VRING_BASE, &st, sizeof(st));
	if (rc < 0) {
		return rc;
	}
	/* DPDK and rust-vmm check the size (and DPDK the index) of this reply. */
	if (rc != (int)sizeof(st) || st.index != index) {
		vu_set_error(c, "GET_VRING_BASE reply malformed");
		return -EPROTO;
	}
	if (st.num != d->vqs[index].avail_idx) {
		vu_set_error(c, "GET_VRING_BASE(%u) = %u, avail idx %u", index, st.num,
			     d->vqs[index].avail_idx);
		return -EPROTO;
	}
	return 0;
}

/* GET_PROTOCOL_FEATURES, then SET_PROTOCOL_FEATURES with what both sides know. */
static int
_protocol_features(struct vu_conn *c, uint64_t known)
{
	uint64_t pf;
	int rc;

	rc = vu_get_u64(c, VU_GET_PROTOCOL_FEATURES, &pf);
	if (rc != 0) {
		return rc;
	}
	pf &= known;
	rc = vu_send(c, VU_SET_PROTOCOL_FEATURES, 0, &pf, sizeof(pf), NULL, 0);
	if (rc != 0) {
		return rc;
	}
	c->protocol_features = pf;
	c->reply_ack = pf & (1ull << VU_PROTO_REPLY_ACK);
	return 0;
}

/* --- SPDK ------------------------------------------------------------- */

/*
 * virtio_user_read_dev_config(): every config read asks for the whole
 * 256-byte space (offset 0, flags 0) in a message the size of its fixed
 * struct (12 + 256), and takes the reply only if it is exactly that size.
 */
static int
_spdk_read_config(struct vi_dev *d, uint32_t offset, void *dst, uint32_t len)
{
	struct vu_conn *c = &d->conn;
	struct vu_config cfg;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = VU_MAX_CONFIG;
	rc = vu_send(c, VU_GET_CONFIG, 0, &cfg, sizeof(cfg), NULL, 0);
	if (rc != 0) {
		return rc;
	}
	rc = vu_recv_reply(c, VU_GET_CONFIG, &cfg, sizeof(cfg));
	if (rc < 0) {
		return rc;
	}
	if (rc != (int)sizeof(cfg)) {
		vu_set_error(c, "GET_CONFIG reply size %d, SPDK takes only %zu", rc, sizeof(cfg));
		return -EPROTO;
	}
	memcpy(dst, cfg.region + offset, len);
	return 0;
}

static int
_spdk_handshake(struct vi_dev *d)
{
	/* VIRTIO_BLK_DEV_SUPPORTED_FEATURES, VERSION_1 (virtio_dev_reset) and,
	 * for virtio-user, VHOST_USER_F_PROTOCOL_FEATURES. */
	const uint64_t spdk = (1ull << VIRTIO_BLK_F_SIZE_MAX) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
			      (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_TOPOLOGY) |
			      (1ull << VIRTIO_BLK_F_MQ) | (1ull << VIRTIO_BLK_F_RO) |
			      (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_FLUSH) |
			      (1ull << VIRTIO_F_EVENT_IDX) | (1ull << VIRTIO_F_VERSION_1) |
			      (1ull << VI_F_PROTOCOL_FEATURES);
	struct vu_conn *c = &d->conn;
	uint64_t acked;
	uint16_t nq = 1;
	int rc;

	/* virtio_user_dev_init: SET_OWNER right after connecting. */
	rc = _send0(c, VU_SET_OWNER, NULL, 0);
	if (rc == 0) {
		rc = vu_get_u64(c, VU_GET_FEATURES, &c->features);
	}
	if (rc != 0) {
		return rc;
	}
	/* virtio_negotiate_features: SET_FEATURES comes before the protocol
	 * features are negotiated (QEMU negotiates them first). */
	acked = spdk & c->features;
	rc = vu_set_u64(c, VU_SET_FEATURES, acked, false, NULL, 0);
	if (rc == 0 && (acked & (1ull << VI_F_PROTOCOL_FEATURES))) {
		rc = _protocol_features(c, (1ull << VU_PROTO_MQ) | (1ull << VU_PROTO_CONFIG));
	}
	if (rc != 0) {
		return rc;
	}
	if (!(c->protocol_features & (1ull << VU_PROTO_CONFIG))) {
		vu_set_error(c, "no VHOST_USER_PROTOCOL_F_CONFIG: SPDK cannot read the config");
		return -ENOTSUP;
	}
	/* virtio_blk_dev_init: one whole-space GET_CONFIG per field it reads. */
	d->blk_size = 512;
	if (acked & (1ull << VIRTIO_BLK_F_BLK_SIZE)) {
		rc = _spdk_read_config(d, 20, &d->blk_size, 4);
	}
	if (rc == 0) {
		rc = _spdk_read_config(d, 0, &d->capacity, 8);
	}
	if (rc == 0 && (acked & (1ull << VIRTIO_BLK_F_MQ))) {
		rc = _spdk_read_config(d, 34, &nq, 2);
	}
	if (rc == 0 && (acked & (1ull << VIRTIO_BLK_F_SIZE_MAX))) {
		uint32_t size_max;

		rc = _spdk_read_config(d, 8, &size_max, 4);
	}
	if (rc == 0 && (acked & (1ull << VIRTIO_BLK_F_SEG_MAX))) {
		rc = _spdk_read_config(d, 12, &d->seg_max, 4);
	}
	if (rc != 0) {
		return rc;
	}
	d->max_queues = nq > VI_MAX_QUEUES ? VI_MAX_QUEUES : nq;
	return vi_dev_accept_features(d, acked);
}

static int
_spdk_start_rings(struct vi_dev *d)
{
	struct vu_conn *c = &d->conn;
	uint64_t qnum, barrier;
	int rc = 0, i;

	/* virtio_user_setup_queue (queue allocation, before DRIVER_OK): the
	 * rings are enabled before any of them is described. */
	for (i = 0; i < d->num_queues && rc == 0; i++) {
		rc = vu_set_state(c, VU_SET_VRING_ENABLE, (uint32_t)i, 1);
	}
	/* virtio_user_start_device: GET_QUEUE_NUM whether or not MQ was negotiated. */
	if (rc == 0) {
		rc = vu_get_u64(c, VU_GET_QUEUE_NUM, &qnum);
	}
	if (rc == 0 && d->num_queues > qnum) {
		vu_set_error(c, "GET_QUEUE_NUM %llu < %u queues", (unsigned long long)qnum,
			     d->num_queues);
		rc = -EINVAL;
	}
	for (i = 0; i < d->num_queues && rc == 0; i++) {
		rc = _vring_fd(c, VU_SET_VRING_CALL, (uint32_t)i, d->vqs[i].call_fd);
	}
	/* The memory map's first notification sends the table; without
	 * REPLY_ACK a GET_FEATURES round trip proves it was taken. */
	if (rc == 0) {
		rc = vi_dev_send_mem_table(d);
	}
	if (rc == 0) {
		rc = vu_get_u64(c, VU_GET_FEATURES, &barrier);
	}
	/* virtio_user_kick_queue: NUM, BASE 0, ADDR, and KICK last. */
	for (i = 0; i < d->num_queues && rc == 0; i++) {
		rc = vu_set_state(c, VU_SET_VRING_NUM, (uint32_t)i, d->vqs[i].size);
		if (rc == 0) {
			rc = vu_set_state(c, VU_SET_VRING_BASE, (uint32_t)i, 0);
		}
		if (rc == 0) {
			rc = _vring_addr(d, (uint32_t)i);
		}
		if (rc == 0) {
			rc = _vring_fd(c, VU_SET_VRING_KICK, (uint32_t)i, d->vqs[i].kick_fd);
		}
	}
	/* No round trip after the last KICK: SPDK starts submitting at once. */
	return rc;
}

/* --- DPDK ------------------------------------------------------------- */

static int
_dpdk_handshake(struct vi_dev *d, const struct vi_dev_opts *o, uint64_t want)
{
	struct vu_conn *c = &d->conn;
	int rc, i;

	/* vhost_user_write: every message carries a control header. */
	c->empty_cmsg = true;
	rc = _send0(c, VU_SET_OWNER, NULL, 0);
	if (rc == 0) {
		rc = vu_get_u64(c, VU_GET_FEATURES, &c->features);
	}
	if (rc == 0 && (c->features & (1ull << VI_F_PROTOCOL_FEATURES))) {
		rc = _protocol_features(c, (1ull << VU_PROTO_MQ) | (1ull << VU_PROTO_REPLY_ACK) |
					   (1ull << VU_PROTO_STATUS));
	}
	if (rc != 0) {
		return rc;
	}
	/* The vhost-user back-end has no config op: DPDK never sends GET_CONFIG
	 * (nor GET_QUEUE_NUM); the queue count is the user's. */
	d->capacity = o->capacity_bytes / 512;
	d->blk_size = 512;
	d->max_queues = d->num_queues;
	rc = vi_dev_accept_features(d, want);
	if (rc != 0) {
		return rc;
	}
	/* virtio_user_dev_set_features: every ring's call fd, then SET_FEATURES
	 * (with VHOST_USER_F_PROTOCOL_FEATURES when offered). */
	for (i = 0; i < d->num_queues && rc == 0; i++) {
		rc = _vring_fd(c, VU_SET_VRING_CALL, (uint32_t)i, d->vqs[i].call_fd);
	}
	if (rc == 0) {
		rc = vu_set_u64(c, VU_SET_FEATURES, c->acked_features, false, NULL, 0);
	}
	return rc;
}

static int
_dpdk_enable_pairs(struct vi_dev *d, uint32_t enable)
{
	int rc = 0, i;

	/* vhost_user_enable_queue_pair: rings 2p and 2p + 1 together (the count is even). */
	for (i = 0; i < d->num_queues && rc == 0; i++) {
		rc = vu_set_state(&d->conn, VU_SET_VRING_ENABLE, (uint32_t)i, enable);
	}
	return rc;
}

static int
_dpdk_start_rings(struct vi_dev *d)
{
	int rc, i;

	/* virtio_user_start_device: memory (NEED_REPLY with REPLY_ACK), rings,
	 * then SET_VRING_ENABLE per queue pair. */
	rc = vi_dev_send_mem_table(d);
	for (i = 0; i < d->num_queues && rc == 0; i++) {
		rc = vu_set_state(&d->conn, VU_SET_VRING_NUM, (uint32_t)i, d->vqs[i].size);
		if (rc == 0) {
			rc = vu_set_state(&d->conn, VU_SET_VRING_BASE, (uint32_t)i, 0);
		}
		if (rc == 0) {
			rc = _vring_addr(d, (uint32_t)i);
		}
		if (rc == 0) {
			rc = _vring_fd(&d->conn, VU_SET_VRING_KICK, (uint32_t)i, d->vqs[i].kick_fd);
		}
	}
	if (rc == 0) {
		rc = _dpdk_enable_pairs(d, 1);
	}
	return rc;
}

/* --- rust-vmm --------------------------------------------------------- */

static int
_rust_vmm_handshake(struct vi_dev *d, uint64_t want)
{
	/* cloud-hypervisor's vhost-user-blk: what it offers the back-end. */
	const uint64_t known = (1ull << VU_PROTO_CONFIG) | (1ull << VU_PROTO_MQ) |
			       (1ull << VU_PROTO_CONFIGURE_MEM_SLOTS) | (1ull << VU_PROTO_REPLY_ACK) |
			       (1ull << VU_PROTO_INFLIGHT_SHMFD) | (1ull << VU_PROTO_LOG_SHMFD) |
			       (1ull << VU_PROTO_DEVICE_STATE);
	struct vu_conn *c = &d->conn;
	struct {
		uint32_t offset, size, flags;
		uint8_t region[60];
	} __attribute__((packed)) cfg;
	uint64_t qnum;
	int rc;

	rc = _send0(c, VU_SET_OWNER, NULL, 0);
	if (rc == 0) {
		rc = vu_get_u64(c, VU_GET_FEATURES, &c->features);
	}
	if (rc == 0 && (c->features & (1ull << VI_F_PROTOCOL_FEATURES))) {
		rc = _protocol_features(c, known);
	}
	if (rc != 0) {
		return rc;
	}
	/* set_hdr_flags(NEED_REPLY): from here on every message, GET_* too. */
	if (c->reply_ack) {
		c->hdr_flags = VU_FLAG_NEED_REPLY;
	}
	d->max_queues = 1;
	if (c->protocol_features & (1ull << VU_PROTO_MQ)) {
		rc = vu_get_u64(c, VU_GET_QUEUE_NUM, &qnum);
		if (rc != 0) {
			return rc;
		}
		d->max_queues = qnum > VI_MAX_QUEUES ? VI_MAX_QUEUES : (uint16_t)qnum;
	}
	if (!(c->protocol_features & (1ull << VU_PROTO_CONFIG))) {
		vu_set_error(c, "no VHOST_USER_PROTOCOL_F_CONFIG");
		return -ENOTSUP;
	}
	/* get_config(0, sizeof(VirtioBlockConfig) = 60, WRITABLE): header + 60
	 * bytes; the reply must be as long, for the same offset and size. */
	memset(&cfg, 0, sizeof(cfg));
	cfg.size = sizeof(cfg.region);
	cfg.flags = VU_CONFIG_F_WRITABLE;
	rc = vu_send(c, VU_GET_CONFIG, 0, &cfg, sizeof(cfg), NULL, 0);
	if (rc != 0) {
		return rc;
	}
	rc = vu_recv_reply(c, VU_GET_CONFIG, &cfg, sizeof(cfg));
	if (rc < 0) {
		return rc;
	}
	if (rc != (int)sizeof(cfg) || cfg.offset != 0 || cfg.size != sizeof(cfg.region)) {
		vu_set_error(c, "GET_CONFIG reply: %d bytes, offset %u size %u", rc, cfg.offset,
			     cfg.size);
		return -EPROTO;
	}
	vi_dev_parse_config(d, cfg.region);
	d->inflight = c->protocol_features & (1ull << VU_PROTO_INFLIGHT_SHMFD);
	return vi_dev_accept_features(d, want);
}

static int
_rust_vmm_start_rings(struct vi_dev *d)
{
	struct vu_conn *c = &d->conn;
	int rc, i;

	/* setup_vhost_user: features, memory, every ring's size... */
	rc = vu_set_u64(c, VU_SET_FEATURES, c->acked_features, false, NULL, 0);
	if (rc == 0) {
		rc = vi_dev_send_mem_table(d);
	}
	for (i = 0; i < d->num_queues && rc == 0; i++) {
		rc = vu_set_state(c, VU_SET_VRING_NUM, (uint32_t)i, d->vqs[i].size);
	}
	/* ... the inflight region (mmap_size 0 asks the back-end for one) ... */
	if (rc == 0 && d->inflight) {
		rc = vi_dev_get_inflight(d);
		if (rc == 0) {
			rc = vu_set_msg(c, VU_SET_INFLIGHT_FD, d->inflight_msg,
					sizeof(d->inflight_msg), &d->inflight_fd, 1);
		}
	}
	/* ... then per ring ADDR, BASE, CALL, KICK, and last the enables. */
	for (i = 0; i < d->num_queues && rc == 0; i++) {
		rc = _vring_addr(d, (uint32_t)i);
		if (rc == 0) {
			rc = vu_set_state(c, VU_SET_VRING_BASE, (uint32_t)i, vq_base(&d->vqs[i]));
		}
		if (rc == 0) {
			rc = _vring_fd(c, VU_SET_VRING_CALL, (uint32_t)i, d->vqs[i].call_fd);
		}
		if (rc == 0) {
			rc = _vring_fd(c, VU_SET_VRING_KICK, (uint32_t)i, d->vqs[i].kick_fd);
		}
	}
	for (i = 0; i < d->num_queues && rc == 0; i++) {
		rc = vu_set_state(c, VU_SET_VRING_ENABLE, (uint32_t)i, 1);
	}
	return rc;
}

/* --- dispatch --------------------------------------------------------- */

int
vi_fe_handshake(struct vi_dev *d, const struct vi_dev_opts *o)
{
	uint64_t want = vi_dev_driver_features(d);

	switch (o->frontend) {
	case VI_FE_SPDK:
		return _spdk_handshake(d);
	case VI_FE_DPDK:
		return _dpdk_handshake(d, o, want);
	case VI_FE_RUST_VMM:
		/* cloud-hypervisor asks for MQ only with more than one queue, and
		 * for GEOMETRY, DISCARD and WRITE_ZEROES besides. */
		if (d->num_queues == 1) {
			want &= ~(1ull << VIRTIO_BLK_F_MQ);
		}
		want |= (1ull << VIRTIO_BLK_F_GEOMETRY) | (1ull << VIRTIO_BLK_F_DISCARD) |
			(1ull << VIRTIO_BLK_F_WRITE_ZEROES);
		return _rust_vmm_handshake(d, want);
	default:
		vu_set_error(&d->conn, "unknown front-end %d", o->frontend);
		return -EINVAL;
	}
}

int
vi_fe_start_rings(struct vi_dev *d)
{
	switch (d->frontend) {
	case VI_FE_SPDK:
		return _spdk_start_rings(d);
	case VI_FE_DPDK:
		return _dpdk_start_rings(d);
	case VI_FE_RUST_VMM:
		return _rust_vmm_start_rings(d);
	default:
		return -EINVAL;
	}
}

int
vi_fe_stop(struct vi_dev *d)
{
	int rc = 0, i;

	switch (d->frontend) {
	case VI_FE_SPDK:
		/* virtio_user_stop_device: GET_VRING_BASE only, then the socket closes. */
		for (i = 0; i < d->num_queues && rc == 0; i++) {
			rc = _get_vring_base(d, (uint32_t)i);
		}
		break;
	case VI_FE_DPDK:
		/* virtio_user_stop_device: disable every pair, then GET_VRING_BASE each. */
		rc = _dpdk_enable_pairs(d, 0);
		for (i = 0; i < d->num_queues && rc == 0; i++) {
			rc = _get_vring_base(d, (uint32_t)i);
		}
		break;
	case VI_FE_RUST_VMM:
		/* reset_vhost_user: per ring, disable then GET_VRING_BASE. */
		for (i = 0; i < d->num_queues && rc == 0; i++) {
			rc = vu_set_state(&d->conn, VU_SET_VRING_ENABLE, (uint32_t)i, 0);
			if (rc == 0) {
				rc = _get_vring_base(d, (uint32_t)i);
			}
		}
		break;
	default:
		rc = -EINVAL;
	}
	return rc;
}
