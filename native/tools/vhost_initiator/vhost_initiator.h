/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * vhost_initiator: plays QEMU's part of vhost-user for a vhost-user-blk
 * target (benchmarks, verification and hostile-input tests).
 *
 * Guest memory is one memfd mapped MAP_SHARED; its guest physical address
 * space starts at VI_GPA_BASE and the "QEMU virtual address" we announce in
 * SET_MEM_TABLE is our own mapping address, so vring addresses sent in
 * SET_VRING_ADDR are plain pointers.
 */
#ifndef VHOST_INITIATOR_H
#define VHOST_INITIATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* vhost-user requests (docs/interop/vhost-user.rst "Front-end message types") */
enum {
	VU_GET_FEATURES = 1,
	VU_SET_FEATURES = 2,
	VU_SET_OWNER = 3,
	VU_RESET_OWNER = 4,
	VU_SET_MEM_TABLE = 5,
	VU_SET_VRING_NUM = 8,
	VU_SET_VRING_ADDR = 9,
	VU_SET_VRING_BASE = 10,
	VU_GET_VRING_BASE = 11,
	VU_SET_VRING_KICK = 12,
	VU_SET_VRING_CALL = 13,
	VU_SET_VRING_ERR = 14,
	VU_GET_PROTOCOL_FEATURES = 15,
	VU_SET_PROTOCOL_FEATURES = 16,
	VU_GET_QUEUE_NUM = 17,
	VU_SET_VRING_ENABLE = 18,
	VU_SET_BACKEND_REQ_FD = 21,
	VU_GET_CONFIG = 24,
	VU_SET_CONFIG = 25,
	VU_GET_INFLIGHT_FD = 31,
	VU_SET_INFLIGHT_FD = 32,
	VU_GET_MAX_MEM_SLOTS = 36,
	VU_ADD_MEM_REG = 37,
};

#define VU_FLAG_VERSION 0x1u
#define VU_FLAG_REPLY (1u << 2)
#define VU_FLAG_NEED_REPLY (1u << 3)
#define VU_VRING_NOFD (1ull << 8)
#define VU_MAX_FDS 8
#define VU_MAX_REGIONS 8
#define VU_MAX_CONFIG 256
#define VU_HDR_SIZE 12u

#define VU_PROTO_MQ 0
#define VU_PROTO_LOG_SHMFD 1
#define VU_PROTO_REPLY_ACK 3
#define VU_PROTO_BACKEND_REQ 5
#define VU_PROTO_CONFIG 9
#define VU_PROTO_INFLIGHT_SHMFD 12
#define VU_PROTO_CONFIGURE_MEM_SLOTS 15
#define VU_PROTO_STATUS 16
#define VU_PROTO_DEVICE_STATE 19

/* GET_CONFIG/SET_CONFIG flags (vhost-user.rst "Device configuration space") */
#define VU_CONFIG_F_WRITABLE 0x1u

#define VI_F_PROTOCOL_FEATURES 30
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_RING_PACKED 34
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_GEOMETRY 4
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1
/* packed ring (virtio 1.2 §2.8) */
#define VRING_PACKED_DESC_F_AVAIL (1u << 7)
#define VRING_PACKED_DESC_F_USED (1u << 15)
#define VRING_PACKED_EVENT_FLAG_ENABLE 0
#define VRING_PACKED_EVENT_FLAG_DISABLE 1
#define VRING_PACKED_EVENT_FLAG_DESC 2
#define VI_MAX_QUEUE_SIZE 1024
#define VI_INDIRECT_MAX 4        /* indirect table entries per request */

#define VI_GPA_BASE 0x0ull
#define VI_MAX_QUEUES 16

struct vu_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
} __attribute__((packed));

struct vu_vring_state {
	uint32_t index;
	uint32_t num;
};

struct vu_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc_user_addr;
	uint64_t used_user_addr;
	uint64_t avail_user_addr;
	uint64_t log_guest_addr;
};

struct vu_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t mmap_offset;
};

/* ADD_MEM_REG's payload (VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) */
struct vu_mem_reg {
	uint64_t padding;
	struct vu_region region;
};

struct vu_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vu_region regions[VU_MAX_REGIONS];
};

struct vu_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t region[VU_MAX_CONFIG];
};

/* virtio 1.2 §2.7.5 - §2.7.8, split ring layout */
struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];
};

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

struct vring_used {
	uint16_t flags;
	uint16_t idx;
	struct vring_used_elem ring[];
};

/* virtio 1.2 §2.8.13: packed descriptor and event suppression structure */
struct vring_packed_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t id;
	uint16_t flags;
};

struct vring_packed_desc_event {
	uint16_t off_wrap;
	uint16_t flags;
};

struct virtio_blk_outhdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

/**
 * Whose vhost-user message shapes the initiator uses: which messages, in
 * which order, with which sizes and flags (frontends.c).  The data path is
 * the same virtio-blk for all of them.
 */
enum vi_frontend {
	VI_FE_QEMU,      /* QEMU's vhost-user-blk (the default) */
	VI_FE_SPDK,      /* SPDK's virtio-user (bdev_virtio_attach_controller --trtype user) */
	VI_FE_DPDK,      /* DPDK's virtio-user PMD, vhost-user back-end */
	VI_FE_RUST_VMM,  /* rust-vmm's vhost crate Frontend, as cloud-hypervisor drives it */
};

/**
 * What one QEMU version's vhost-user-blk negotiated with our target, as
 * recorded from a real guest (tests/data/qemu_vhost_features.json, embedded
 * at build time; profiles.c).
 */
struct vi_qemu_profile {
	const char *version;         /* "major.minor" */
	uint64_t features;           /* its SET_FEATURES */
	uint64_t protocol_features;  /* its SET_PROTOCOL_FEATURES */
};

/** The recorded profile of QEMU `version` ("10.0"), or NULL. */
const struct vi_qemu_profile *vi_qemu_profile_find(const char *version);
/** Print the recorded profiles, one a line. */
void vi_qemu_profile_list(FILE *f);

/** One connection to a target (the "front-end"). */
struct vu_conn {
	int fd;
	uint64_t features;           /* offered by the target */
	uint64_t acked_features;     /* what we SET_FEATURES */
	uint64_t protocol_features;  /* negotiated */
	bool reply_ack;              /* REPLY_ACK negotiated */
	bool ack_all;                /* NEED_REPLY on every set message */
	uint32_t hdr_flags;          /* added to every message (rust-vmm: NEED_REPLY) */
	bool empty_cmsg;             /* an SCM_RIGHTS header even without fds (DPDK) */
	int timeout_ms;              /* reply timeout */
	int verbose;
	char last_error[256];        /* why the last call failed */
};

/** Guest RAM: a memfd shared with the target. */
struct guest_mem {
	int fd;
	uint8_t *base;
	uint64_t size;
	uint64_t gpa;      /* guest physical address of base */
	uint64_t file_offset; /* where base starts in fd (SET_MEM_TABLE mmap_offset) */
	uint64_t next;     /* bump allocator offset */
};

struct vq {
	uint16_t index;
	uint16_t size;
	/*
	 * Split: the three parts.  Packed: desc is the descriptor ring, avail
	 * the driver event structure, used the device event structure (what
	 * SET_VRING_ADDR carries in those fields); pdesc, drv_event and
	 * dev_event are the same memory, typed.
	 */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	bool packed;
	struct vring_packed_desc *pdesc;
	struct vring_packed_desc_event *drv_event;
	struct vring_packed_desc_event *dev_event;
	uint16_t next_avail;     /* packed: next slot we fill, and its wrap counter */
	bool avail_wrap;
	uint16_t next_used;      /* packed: next slot the device returns a buffer in */
	bool used_wrap;
	uint16_t ndesc[VI_MAX_QUEUE_SIZE];  /* packed: slots each buffer id took */
	uint16_t avail_idx;      /* next avail index we publish */
	uint16_t last_used;      /* next used index we consume */
	uint16_t kicked_idx;     /* avail idx at the last kick decision */
	bool event_idx;          /* VIRTIO_F_EVENT_IDX negotiated */
	/*
	 * Requests of several buffers go in an indirect table (virtio 1.2
	 * §2.7.5.3), one ring descriptor each, as Linux's virtio_ring does
	 * when VIRTIO_F_INDIRECT_DESC is negotiated (split rings only).
	 */
	bool use_indirect;
	struct vring_desc *indirect;  /* VI_INDIRECT_MAX entries per head */
	uint64_t indirect_gpa;
	bool interrupts;
	int kick_fd;
	int call_fd;
	uint64_t kicks;          /* kick eventfd writes (the device did not suppress them) */
};

/** A connected, started device. */
struct vi_dev {
	struct vu_conn conn;
	struct guest_mem mem;
	struct vq vqs[VI_MAX_QUEUES];
	uint16_t num_queues;
	uint16_t queue_size;
	uint64_t capacity;       /* 512-byte sectors, from GET_CONFIG */
	uint32_t blk_size;
	uint32_t seg_max;        /* config seg_max, 0 if not offered */
	uint16_t max_queues;     /* GET_QUEUE_NUM or config num_queues */
	bool readonly;
	bool interrupts;         /* ask the target for calls */
	bool indirect;           /* negotiate VIRTIO_F_INDIRECT_DESC */
	bool event_idx;          /* negotiate VIRTIO_F_EVENT_IDX */
	bool packed;             /* negotiate VIRTIO_F_RING_PACKED */
	bool inflight;           /* INFLIGHT_SHMFD: the target tracks requests in a region we keep */
	int inflight_fd;         /* that region (-1: none) */
	uint8_t inflight_msg[24]; /* GET_INFLIGHT_FD's reply, given back by SET_INFLIGHT_FD */
	int frontend;            /* enum vi_frontend */
	const struct vi_qemu_profile *profile;  /* --like-qemu, or NULL */
	int backend_req_fd;      /* our end of the BACKEND_REQ channel (-1: none) */
};

struct vi_dev_opts {
	const char *socket;
	uint16_t num_queues;
	uint16_t queue_size;
	uint64_t mem_size;
	bool interrupts;
	bool ack_all;
	bool no_reply_ack;
	bool indirect;
	bool event_idx;
	bool packed;             /* VIRTIO_F_RING_PACKED: packed rings (virtio 1.2 §2.8) */
	bool inflight;
	bool no_inflight;        /* --like-qemu without INFLIGHT_SHMFD (to measure what it costs) */
	bool log_shmfd;          /* negotiate LOG_SHMFD (the --stall-step log cases) */
	int frontend;            /* enum vi_frontend */
	/*
	 * --like-qemu: negotiate exactly these features and protocol features
	 * (where offered), with QEMU's messages for them; NULL: the options.
	 */
	const struct vi_qemu_profile *profile;
	uint64_t capacity_bytes; /* VI_FE_DPDK reads no config space: the size to use */
	int timeout_ms;
	int verbose;
};

/* memory + rings (vring.c) */
int gm_init(struct guest_mem *m, uint64_t size);
/**
 * Guest RAM mapped from `file_offset` of its memfd; with `gpa_is_uva` its
 * guest physical addresses are our virtual ones (SPDK and DPDK announce
 * their own addresses as both).
 */
int gm_init_shape(struct guest_mem *m, uint64_t size, uint64_t file_offset, bool gpa_is_uva);
void gm_fini(struct guest_mem *m);
/** Carve `size` bytes aligned to `align` out of guest memory; NULL if full. */
void *gm_alloc(struct guest_mem *m, uint64_t size, uint64_t align);
uint64_t gm_gpa(const struct guest_mem *m, const void *p);
int vq_init(struct vq *vq, struct guest_mem *m, uint16_t index, uint16_t size, bool interrupts);
/** vq_init for either layout (packed: a descriptor ring and two event structures). */
int vq_init_ring(struct vq *vq, struct guest_mem *m, uint16_t index, uint16_t size,
		 bool interrupts, bool packed);
/** One buffer of a request: guest address, length, device-writable. */
struct vi_buf {
	uint64_t addr;
	uint32_t len;
	bool write;
};
/**
 * Make a request of n buffers available under head (split: descriptors
 * head .. head + n - 1 chained, then the avail ring; packed: the next n
 * slots with buffer id head, the first slot's flags last).  Does not kick.
 */
void vq_add(struct vq *vq, uint16_t head, const struct vi_buf *bufs, uint16_t n);
/** The SET_VRING_BASE value of the ring now (packed: both indexes with wrap counters). */
uint32_t vq_base(const struct vq *vq);
void vq_fini(struct vq *vq);
/** Publish head `head` in the avail ring (does not kick). */
void vq_push(struct vq *vq, uint16_t head);
/** Kick the target unless it asked not to be notified. */
void vq_kick(struct vq *vq, bool force);
/** Pop one used element; false when the used ring is empty. */
bool vq_pop(struct vq *vq, uint32_t *id, uint32_t *len);
/** true if the used ring has entries we have not consumed. */
bool vq_has_used(struct vq *vq);
/**
 * Tell the target whether we want a call for the next completion
 * (EVENT_IDX: used_event; otherwise the NO_INTERRUPT flag).
 */
void vq_want_call(struct vq *vq, bool want);

/* protocol (vu_client.c) */
int vu_connect(struct vu_conn *c, const char *path, int timeout_ms);
void vu_close(struct vu_conn *c);
/** Send raw bytes with optional fds (SCM_RIGHTS). */
int vu_send_raw(struct vu_conn *c, const void *buf, size_t len, const int *fds, int nfds);
int vu_send(struct vu_conn *c, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
	    const int *fds, int nfds);
/** Receive a reply to `req`; validates flags/request; returns payload size or -errno. */
int vu_recv_reply(struct vu_conn *c, uint32_t req, void *payload, uint32_t max);
int vu_get_u64(struct vu_conn *c, uint32_t req, uint64_t *val);
/** Set message with a u64 payload; waits for the ack if `need_reply`. */
int vu_set_u64(struct vu_conn *c, uint32_t req, uint64_t val, bool need_reply, const int *fds,
	       int nfds);
int vu_set_state(struct vu_conn *c, uint32_t req, uint32_t index, uint32_t num);
/** Wait for the target's REPLY_ACK; 0 on success, -EIO if it reported failure. */
int vu_wait_ack(struct vu_conn *c, uint32_t req);
/** A set message; waits for the ack when this front-end asks for one. */
int vu_set_msg(struct vu_conn *c, uint32_t req, const void *payload, uint32_t size,
	       const int *fds, int nfds);
/** GET_INFLIGHT_FD: msg (len bytes) in, the reply and its fd out. */
int vu_get_inflight(struct vu_conn *c, uint8_t *msg, uint32_t len, int *fd);
void vu_set_error(struct vu_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
const char *vu_req_name(uint32_t req);
/** true if the peer closed (or reset) the connection; waits up to `ms`. */
bool vu_peer_closed(struct vu_conn *c, int ms);

/* device lifecycle (vu_client.c) */
/** Negotiate up to (not including) the memory table. */
int vi_dev_handshake(struct vi_dev *d, const struct vi_dev_opts *o);
/** SET_MEM_TABLE + every vring + enable. */
int vi_dev_start_rings(struct vi_dev *d);
/** vi_dev_handshake + vi_dev_start_rings. */
int vi_dev_open(struct vi_dev *d, const struct vi_dev_opts *o);
/** SET_VRING_ENABLE(0) + GET_VRING_BASE per queue (like QEMU's stop), then close. */
int vi_dev_close(struct vi_dev *d, bool graceful);
int vi_dev_send_mem_table(struct vi_dev *d);
/** The features a guest driver would take, where the front-end does not choose. */
uint64_t vi_dev_driver_features(const struct vi_dev *d);
/** GET_INFLIGHT_FD for the device's queues, once (the region is kept). */
int vi_dev_get_inflight(struct vi_dev *d);
/** Take `want` (masked by what the target offers) as the driver's features. */
int vi_dev_accept_features(struct vi_dev *d, uint64_t want);
/** capacity, seg_max, blk_size from a virtio_blk_config image. */
void vi_dev_parse_config(struct vi_dev *d, const uint8_t *region);

/* other front-ends' message shapes (frontends.c) */
const char *vi_frontend_name(int frontend);
/** VI_FE_* for a --frontend argument, or -1. */
int vi_frontend_parse(const char *name);
int vi_fe_handshake(struct vi_dev *d, const struct vi_dev_opts *o);
int vi_fe_start_rings(struct vi_dev *d);
/** The front-end's own stop sequence (graceful) before vi_dev_close closes. */
int vi_fe_stop(struct vi_dev *d);

/* workload (workload.c) */
struct vi_workload {
	int rw;                  /* VI_RW_* */
	int rwmixread;
	uint32_t bs;
	uint32_t qd;
	double seconds;
	uint64_t ios;
	uint64_t size_limit;     /* bytes, 0 = capacity */
	bool verify;
	bool verify_read;        /* only read back a range an earlier --verify wrote */
	bool json;
	uint64_t seed;
	int io_timeout_s;
};

enum { VI_RW_READ, VI_RW_WRITE, VI_RW_RANDREAD, VI_RW_RANDWRITE, VI_RW_RANDRW };

int vi_run_workload(struct vi_dev *d, const struct vi_workload *w);

/*
 * One control message sent while the test has the target's reactor stalled
 * (stall.c): set up a started queue, do one read, print "ready", wait for a
 * line on stdin, send the step's message, report what the target did.
 * Steps: call, log-addr, log-base, stop, kick.
 */
int vi_stall_step(const struct vi_dev_opts *o, const char *step, bool json);

/* hostile cases (hostile.c) */
int vi_hostile_run(const struct vi_dev_opts *o, const char *name, bool json);
void vi_hostile_list(void);

#endif
