/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhost-user-blk target: private types shared by the files of lib/vhost.
 *
 * Who owns what:
 *  - the control thread (vhost_ctrlr.c) owns the controller table, every
 *    connection, the session's protocol state and the "configured" copy of
 *    each queue (sizes, addresses, fds given by the front-end);
 *  - the queue's reactor (queue q: the (q % n)-th of the n reactors of
 *    the controller's cpumask) owns it while it is started: ring
 *    pointers, indexes, requests, and that reactor's bdev channel.  The
 *    control thread changes a started queue only through sb_call() to
 *    that reactor.
 *
 * The pure parts (guest memory table, virtqueue walker, request parsing,
 * inflight layout, message checks) do no logging and need no reactor so
 * that the unit tests can drive them directly.
 */
#ifndef SB_VHOST_INTERNAL_H
#define SB_VHOST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* ---- vhost-user wire (QEMU docs/interop/vhost-user.rst) ---- */

enum {
	VHOST_USER_GET_FEATURES = 1,
	VHOST_USER_SET_FEATURES = 2,
	VHOST_USER_SET_OWNER = 3,
	VHOST_USER_RESET_OWNER = 4,
	VHOST_USER_SET_MEM_TABLE = 5,
	VHOST_USER_SET_LOG_BASE = 6,
	VHOST_USER_SET_LOG_FD = 7,
	VHOST_USER_SET_VRING_NUM = 8,
	VHOST_USER_SET_VRING_ADDR = 9,
	VHOST_USER_SET_VRING_BASE = 10,
	VHOST_USER_GET_VRING_BASE = 11,
	VHOST_USER_SET_VRING_KICK = 12,
	VHOST_USER_SET_VRING_CALL = 13,
	VHOST_USER_SET_VRING_ERR = 14,
	VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VHOST_USER_GET_QUEUE_NUM = 17,
	VHOST_USER_SET_VRING_ENABLE = 18,
	VHOST_USER_SEND_RARP = 19,
	VHOST_USER_NET_SET_MTU = 20,
	VHOST_USER_SET_SLAVE_REQ_FD = 21,
	VHOST_USER_IOTLB_MSG = 22,
	VHOST_USER_SET_VRING_ENDIAN = 23,
	VHOST_USER_GET_CONFIG = 24,
	VHOST_USER_SET_CONFIG = 25,
	VHOST_USER_GET_INFLIGHT_FD = 31,
	VHOST_USER_SET_INFLIGHT_FD = 32,
	VHOST_USER_RESET_DEVICE = 34,
	VHOST_USER_GET_MAX_MEM_SLOTS = 36,
	VHOST_USER_ADD_MEM_REG = 37,
	VHOST_USER_REM_MEM_REG = 38,
	VHOST_USER_MAX_REQUEST = 64,
};

/* Back-end -> front-end requests on the slave channel. */
#define VHOST_USER_SLAVE_CONFIG_CHANGE_MSG 2

#define VHOST_USER_VERSION 0x1u
#define VHOST_USER_VERSION_MASK 0x3u
#define VHOST_USER_REPLY_MASK (1u << 2)
#define VHOST_USER_NEED_REPLY_MASK (1u << 3)
/* SET_VRING_KICK/CALL/ERR payload: bits 0-7 index, bit 8 "no fd". */
#define VHOST_USER_VRING_IDX_MASK 0xffu
#define VHOST_USER_VRING_NOFD_MASK (1u << 8)

#define VHOST_USER_PROTOCOL_F_MQ 0
#define VHOST_USER_PROTOCOL_F_LOG_SHMFD 1
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_SLAVE_REQ 5
#define VHOST_USER_PROTOCOL_F_CONFIG 9
#define VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD 12
#define VHOST_USER_PROTOCOL_F_RESET_DEVICE 13
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15

#define VHOST_USER_F_PROTOCOL_FEATURES 30
#define VHOST_F_LOG_ALL 26
/* SET_VRING_ADDR flags: bit 0 says log_guest_addr is valid (log the used ring). */
#define VHOST_VRING_F_LOG 0

#define SB_VHOST_MAX_FDS 8
#define SB_VHOST_MEM_TABLE_MAX 8      /* regions in one SET_MEM_TABLE */
#define SB_VHOST_MAX_MEM_SLOTS 32     /* GET_MAX_MEM_SLOTS answer */
#define SB_VHOST_MAX_PAYLOAD 4096
#define SB_VHOST_MAX_QUEUE_SIZE 1024
#define SB_VHOST_CONFIG_SPACE_MAX 256

struct vhost_user_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
} __attribute__((packed));

struct vhost_user_vring_state {
	uint32_t index;
	uint32_t num;
};

struct vhost_user_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc_user_addr;
	uint64_t used_user_addr;
	uint64_t avail_user_addr;
	uint64_t log_guest_addr;
};

struct vhost_user_mem_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t mmap_offset;
};

struct vhost_user_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vhost_user_mem_region regions[SB_VHOST_MEM_TABLE_MAX];
};

struct vhost_user_mem_reg {
	uint64_t padding;
	struct vhost_user_mem_region region;
};

struct vhost_user_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t region[SB_VHOST_CONFIG_SPACE_MAX];
};
#define VHOST_USER_CONFIG_HDR_SIZE 12u

/* SET_LOG_BASE payload (the log region arrives as the message's fd). */
struct vhost_user_log {
	uint64_t mmap_size;
	uint64_t mmap_offset;
};

struct vhost_user_inflight {
	uint64_t mmap_size;
	uint64_t mmap_offset;
	uint16_t num_queues;
	uint16_t queue_size;
};

struct vhost_user_msg {
	struct vhost_user_hdr hdr;
	union {
		uint64_t u64;
		struct vhost_user_vring_state state;
		struct vhost_user_vring_addr addr;
		struct vhost_user_mem_table mem;
		struct vhost_user_mem_reg memreg;
		struct vhost_user_config cfg;
		struct vhost_user_inflight inflight;
		struct vhost_user_log log;
		uint8_t raw[SB_VHOST_MAX_PAYLOAD];
	} p;
	int fds[SB_VHOST_MAX_FDS];
	uint32_t nfds;
};

/* vhost_wire.c */
/** Receive one message (header, payload, fds).  0, -ECONNRESET (peer gone), -EPROTO (truncated/oversized). */
int sb_vhost_wire_recv(int sock, struct vhost_user_msg *msg);
/** Send a reply to req (flags 0x5, same request id) with size bytes of payload and optional fd. */
int sb_vhost_wire_reply(int sock, const struct vhost_user_msg *req, const void *payload,
			uint32_t size, int fd);
/** Send a request (slave channel). */
int sb_vhost_wire_send(int sock, uint32_t request, uint32_t flags, const void *payload,
		       uint32_t size);
/** Close every fd the message carries (and forget them). */
void sb_vhost_msg_close_fds(struct vhost_user_msg *msg);
/**
 * Validity check of a message before it is acted on: payload size for its
 * type, fd count, index fields.  \return 0 or -EINVAL with *why set.
 */
int sb_vhost_msg_check(const struct vhost_user_msg *msg, uint32_t max_queues, const char **why);
const char *sb_vhost_req_name(uint32_t request);

/* ---- guest memory (vhost_mem.c) ---- */

struct sb_vhost_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uva;          /* front-end (QEMU) virtual address */
	uint64_t mmap_offset;
	uint8_t *host;         /* our address of gpa */
	void *mmap_addr;       /* what to munmap */
	uint64_t mmap_size;
	int fd;                /* our copy of the front-end's fd (with mmap_addr), for a handoff */
};

struct sb_vhost_mem {
	uint32_t nregions;
	struct sb_vhost_mem_region regions[SB_VHOST_MAX_MEM_SLOTS];
};

/** New empty table. NULL on ENOMEM. */
struct sb_vhost_mem *sb_vhost_mem_alloc(void);
/** Unmap every region and free the table (NULL is fine). */
void sb_vhost_mem_free(struct sb_vhost_mem *mem);
/** A copy that shares the mappings (for the add/remove path: the old table is freed without unmapping). */
struct sb_vhost_mem *sb_vhost_mem_dup(const struct sb_vhost_mem *mem);
/**
 * Check r against the table (non-zero size, no wrap, no overlap in GPA)
 * and, when fd >= 0, mmap it.  host may be passed already mapped (tests)
 * when fd < 0.  \return 0, -EINVAL (bad region), -ENOSPC, -errno (mmap).
 */
int sb_vhost_mem_add(struct sb_vhost_mem *mem, const struct vhost_user_mem_region *r, int fd,
		     uint8_t *host);
/** Remove (and unmap when unmap) the region matching r's gpa and size. -ENOENT if none. */
int sb_vhost_mem_remove(struct sb_vhost_mem *mem, const struct vhost_user_mem_region *r,
			bool unmap);
/** Forget all regions without unmapping (ownership moved elsewhere). */
void sb_vhost_mem_forget(struct sb_vhost_mem *mem);
/**
 * Guest physical -> host, clamped: *len on input is wanted, on output how
 * many bytes are contiguous from there (<= wanted).  NULL if gpa unmapped.
 */
void *sb_vhost_gpa_to_va(const struct sb_vhost_mem *mem, uint64_t gpa, uint64_t *len);
/** The guest-physical address of our address va; 0 or -EFAULT (not guest memory). */
int sb_vhost_va_to_gpa(const struct sb_vhost_mem *mem, const void *va, uint64_t *gpa);
/** Front-end virtual address -> host; the whole [uva, uva+len) must lie in one region. */
void *sb_vhost_uva_to_va(const struct sb_vhost_mem *mem, uint64_t uva, uint64_t len);
/**
 * Map [gpa, gpa+len) into iovecs appended at iov[*iovcnt]; spans adjacent
 * regions with several iovecs.  \return 0, -EFAULT (a byte is unmapped or
 * the range wraps), -E2BIG (more than max iovecs).
 */
int sb_vhost_gpa_to_iov(const struct sb_vhost_mem *mem, uint64_t gpa, uint64_t len,
			struct iovec *iov, uint32_t *iovcnt, uint32_t max);
/** The same, also recording each iovec's guest-physical address in gpas[] (may be NULL). */
int sb_vhost_gpa_to_iov_gpa(const struct sb_vhost_mem *mem, uint64_t gpa, uint64_t len,
			    struct iovec *iov, uint64_t *gpas, uint32_t *iovcnt, uint32_t max);

/* ---- dirty page log for live migration (vhost_log.c) ---- */

/*
 * vhost-user.rst "Migration": while VHOST_F_LOG_ALL is negotiated, every
 * byte the back-end writes into guest memory marks its guest-physical page
 * in a bitmap the front-end shares: bit p % 8 of byte p / 8 for page p of
 * SB_VHOST_LOG_PAGE bytes.  The front-end reads and clears it concurrently.
 */
#define SB_VHOST_LOG_PAGE 4096u
/* Largest log mapped: 1 GiB of bitmap covers 32 TiB of guest memory. */
#define SB_VHOST_LOG_MAX (1ull << 30)

struct sb_vhost_log {
	uint8_t *bits;          /* the bitmap (mapping + mmap_offset) */
	uint64_t size;          /* bytes of bitmap */
	void *mmap_addr;        /* what to munmap */
	uint64_t mmap_size;
	bool drop;              /* test hook: marks are not set (SB_VHOST_TEST_DROP_DIRTY_LOG) */
	uint64_t outside;       /* pages outside the bitmap (a front-end that shrank guest memory's log) */
};

/** Bytes of bitmap a log must have to cover every region of mem (0 for no memory). */
uint64_t sb_vhost_log_bytes_needed(const struct sb_vhost_mem *mem);
/**
 * Check and map a log region: fd must be a memfd holding
 * [mmap_offset, mmap_offset + mmap_size), and the bitmap must cover mem.
 * \return 0 (*out set), -EINVAL (*why set), -errno (mmap).
 */
int sb_vhost_log_map(int fd, uint64_t mmap_size, uint64_t mmap_offset,
		     const struct sb_vhost_mem *mem, struct sb_vhost_log **out, const char **why);
/** Unmap and free (NULL is fine). */
void sb_vhost_log_unmap(struct sb_vhost_log *log);
/** Mark the pages of [gpa, gpa + len) dirty (atomic OR; any thread). */
void sb_vhost_log_write(struct sb_vhost_log *log, uint64_t gpa, uint64_t len);

/* ---- front-end files truncated under our mappings (vhost_sigbus.c) ---- */

/** Install the SIGBUS handler (once; later calls return the first result). */
int sb_vhost_sigbus_install(void);
/**
 * Watch a MAP_SHARED mapping of a front-end's file: a SIGBUS inside it
 * (the file was shrunk) puts a zero page over the faulting page, records
 * the address and wakes the control thread.  page: the mapping's page size.
 */
void sb_vhost_sigbus_watch(void *addr, size_t len, size_t page);
/** Stop watching the mapping that starts at addr (before munmap). */
void sb_vhost_sigbus_unwatch(void *addr);
/** The first faulting address inside the watched mapping at addr, or NULL. */
void *sb_vhost_sigbus_hit(const void *addr);
/** How many faults the handler absorbed so far (cheap: poll it, then look). */
uint64_t sb_vhost_sigbus_hits(void);

/* ---- split virtqueue (vhost_vq.c), virtio 1.2 §2.7 ---- */

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_USED_F_NO_NOTIFY 1
#define VRING_AVAIL_F_NO_INTERRUPT 1

#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_RING_PACKED 34

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
	/* uint16_t used_event after ring[size] */
};

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

struct vring_used {
	uint16_t flags;
	uint16_t idx;
	struct vring_used_elem ring[];
	/* uint16_t avail_event after ring[size] */
};

/* ---- packed virtqueue (vhost_vq_packed.c), virtio 1.2 §2.8 ---- */

#define VRING_PACKED_DESC_F_AVAIL (1u << 7)
#define VRING_PACKED_DESC_F_USED (1u << 15)
/* Event suppression structure flags (§2.8.10). */
#define VRING_PACKED_EVENT_FLAG_ENABLE 0
#define VRING_PACKED_EVENT_FLAG_DISABLE 1
#define VRING_PACKED_EVENT_FLAG_DESC 2
#define VRING_PACKED_EVENT_F_WRAP_CTR 15
/* SET/GET_VRING_BASE of a packed ring: avail index | wrap << 15, used the same << 16. */
#define SB_VRING_PACKED_WRAP (1u << 15)

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

/** The device-side view of one ring: split (§2.7) or packed (§2.8). */
struct sb_vring {
	uint16_t size;
	bool packed;
	bool event_idx;
	bool indirect;
	/* split */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t avail_pending;     /* heads seen in avail->idx, not popped yet (sb_vq_pop) */
	/*
	 * Both: the next index to take and to fill.  Split: free-running
	 * (used ring index); packed: a slot of the descriptor ring, with its
	 * wrap counter.
	 */
	uint16_t last_avail_idx;
	uint16_t last_used_idx;     /* split: the next used slot to fill */
	uint16_t used_pending;      /* split: slots filled that used->idx does not cover yet */
	uint16_t signalled_used;
	bool signalled_used_valid;
	/* packed */
	bool avail_wrap;
	bool used_wrap;
	bool signalled_used_wrap;
	struct vring_packed_desc *pdesc;
	struct vring_packed_desc_event *driver_event;  /* driver area: read only */
	struct vring_packed_desc_event *device_event;  /* device area: ours */
	/* The chain sb_vring_packed_pop copied out of the ring (size entries), used by walk. */
	struct vring_packed_desc *scratch;
	uint16_t scratch_n;
};

/** Bytes a ring part occupies for a queue of size n. */
static inline uint64_t sb_vring_desc_bytes(uint32_t n) { return 16ull * n; }
static inline uint64_t sb_vring_avail_bytes(uint32_t n) { return 6ull + 2ull * n; }
static inline uint64_t sb_vring_used_bytes(uint32_t n) { return 6ull + 8ull * n; }

/**
 * Translate and check ring addresses (front-end virtual addresses) for a
 * queue of vr->size entries.  \return 0 or -EFAULT (*why set).
 */
int sb_vring_map(struct sb_vring *vr, const struct sb_vhost_mem *mem, uint64_t desc_uva,
		 uint64_t avail_uva, uint64_t used_uva, const char **why);
/**
 * Number of new heads in the avail ring (acquire load of avail->idx).
 * \return count >= 0, or -EINVAL when avail.idx - last_avail > size.
 */
int sb_vring_avail_count(struct sb_vring *vr, const char **why);
/** Take the next head (after sb_vring_avail_count > 0).  -EINVAL if head >= size. */
int sb_vring_pop(struct sb_vring *vr, uint16_t *head, const char **why);

struct sb_vring_chain {
	struct iovec *iov;
	uint64_t *gpa;           /* when not NULL: guest-physical address of each iov[i] */
	uint32_t max_iov;
	uint32_t n_iov;
	uint32_t n_readable;     /* iov[0..n_readable) device-readable, rest writable */
	uint64_t readable_bytes;
	uint64_t writable_bytes;
};

/**
 * Walk the chain of head, validating every descriptor (virtio 1.2
 * §2.7.5.3, §2.7.7), and map its buffers into chain->iov.
 * \return 0; -EINVAL guest violation (*why); -E2BIG too many segments
 *         (the request fails, the device is fine).
 */
int sb_vring_walk(const struct sb_vring *vr, const struct sb_vhost_mem *mem, uint16_t head,
		  struct sb_vring_chain *chain, const char **why);
/**
 * Fill the next used slot with (head, len) without moving used->idx: the
 * driver does not see it until sb_vring_flush_used.
 */
void sb_vring_put_used(struct sb_vring *vr, uint16_t head, uint32_t len);
/**
 * Publish every slot filled since the last flush with one release store of
 * used->idx.  \return false when there was none (nothing stored).
 */
bool sb_vring_flush_used(struct sb_vring *vr);
/** Put (head, len) in the used ring and publish the index: a batch of one. */
void sb_vring_push_used(struct sb_vring *vr, uint16_t head, uint32_t len);
/** With EVENT_IDX publish avail_event = last_avail_idx (virtio 1.2 §2.7.10). */
void sb_vring_set_avail_event(struct sb_vring *vr);
/**
 * Ask the driver not to kick (we are polling): VRING_USED_F_NO_NOTIFY, or
 * with EVENT_IDX an avail_event left behind (§2.7.10: the driver only
 * kicks when its index crosses it).
 */
void sb_vring_notify_off(struct sb_vring *vr);
/**
 * Ask for kicks again before sleeping, then look once more (§2.7.10's
 * store, full barrier, re-check). \return true when heads arrived meanwhile.
 */
bool sb_vring_notify_on(struct sb_vring *vr);
/** Whether the driver wants an interrupt now (EVENT_IDX or NO_INTERRUPT); updates signalled state. */
bool sb_vring_need_call(struct sb_vring *vr);
/**
 * Account one descriptor's buffer in chain (shared by both ring layouts):
 * writable after readable, 4 GiB bound, every byte inside guest memory.
 */
int sb_vring_add_buffer(const struct sb_vhost_mem *mem, uint64_t addr, uint32_t len,
			bool writable, struct sb_vring_chain *chain, bool *seen_writable,
			const char **why);

/* packed (vhost_vq_packed.c) */
/** Bytes of a packed descriptor ring of n entries; an event structure is 4. */
static inline uint64_t sb_vring_packed_desc_bytes(uint32_t n) { return 16ull * n; }
/**
 * Translate and check a packed ring (descriptor ring, driver and device
 * event structures: SET_VRING_ADDR's desc, avail and used addresses).
 * \return 0 or -EFAULT (*why set).
 */
int sb_vring_packed_map(struct sb_vring *vr, const struct sb_vhost_mem *mem, uint64_t desc_uva,
			uint64_t driver_uva, uint64_t device_uva, const char **why);
/**
 * Set the indexes and wrap counters from a SET_VRING_BASE value.
 * \return 0, -EINVAL (an index outside the ring: *why).
 */
int sb_vring_packed_set_base(struct sb_vring *vr, uint32_t base, const char **why);
/** The GET_VRING_BASE value of a packed ring (avail and used, with wrap counters). */
uint32_t sb_vring_packed_get_base(const struct sb_vring *vr);
/**
 * Take the next available buffer: copy its descriptors out of the ring
 * into vr->scratch (every flag checked once, on the copy), check its
 * buffer id.  \return 1 (*id, *ndesc: ring slots it took), 0 (nothing
 * available), -EINVAL (guest violation: *why).
 */
int sb_vring_packed_pop(struct sb_vring *vr, uint16_t *id, uint16_t *ndesc, const char **why);
/** Map the buffer sb_vring_packed_pop copied into chain (§2.8.6, §2.8.7). */
int sb_vring_packed_walk(const struct sb_vring *vr, const struct sb_vhost_mem *mem,
			 struct sb_vring_chain *chain, const char **why);
/**
 * Write the used descriptor of buffer id (which took ndesc slots) at the
 * used index, flags last (release), and step over its slots (§2.8.6).
 */
void sb_vring_packed_push_used(struct sb_vring *vr, uint16_t id, uint16_t ndesc, uint32_t len);
/** Device event structure: no kicks while we poll (§2.8.10). */
void sb_vring_packed_notify_off(struct sb_vring *vr);
/** Kicks on, full barrier, look again.  \return true when a buffer is available. */
bool sb_vring_packed_notify_on(struct sb_vring *vr);
/** Whether the driver's event structure asks for an interrupt now. */
bool sb_vring_packed_need_call(struct sb_vring *vr);

/*
 * The ring interface the request code uses (vhost_ring.c): the same calls
 * for both layouts, a request is a (head, ndesc) pair whose head indexes
 * the task array (split: the chain's head; packed: its buffer id).
 */
/** Map the ring of vr->size entries (vr->packed chooses the layout). */
int sb_vq_map(struct sb_vring *vr, const struct sb_vhost_mem *mem, uint64_t desc_uva,
	      uint64_t avail_uva, uint64_t used_uva, const char **why);
/** Next request: 1 (*head, *ndesc), 0 (none), -EINVAL (guest violation: *why). */
int sb_vq_pop(struct sb_vring *vr, uint16_t *head, uint16_t *ndesc, const char **why);
/**
 * sb_vq_pop without a new look at avail->idx (split): only heads an earlier
 * sb_vq_pop saw published; 0 once those are taken.  Packed rings have no
 * index: the same as sb_vq_pop.
 */
int sb_vq_pop_seen(struct sb_vring *vr, uint16_t *head, uint16_t *ndesc, const char **why);
/** Walk the request just popped (split: the chain of head). */
int sb_vq_walk(const struct sb_vring *vr, const struct sb_vhost_mem *mem, uint16_t head,
	       struct sb_vring_chain *chain, const char **why);
/** Return a request to the driver. */
void sb_vq_push_used(struct sb_vring *vr, uint16_t head, uint16_t ndesc, uint32_t len);
void sb_vq_notify_off(struct sb_vring *vr);
bool sb_vq_notify_on(struct sb_vring *vr);
bool sb_vq_need_call(struct sb_vring *vr);

/* ---- virtio-blk requests (vhost_blk.c) ---- */

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_CONFIG_WCE 11
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_WZ_F_UNMAP 1

/* Limits we advertise. */
#define SB_VHOST_BLK_SEG_MAX 126
#define SB_VHOST_BLK_SIZE_MAX (1u << 20)
#define SB_VHOST_BLK_MAX_DISCARD_SEG 16
#define SB_VHOST_BLK_MAX_WZ_SEG 16
#define SB_VHOST_BLK_MAX_DISCARD_SECTORS (1u << 22)  /* 2 GiB */
/* iovecs per request: data segments, header, status, region splits. */
#define SB_VHOST_REQ_MAX_IOV 256

struct virtio_blk_outhdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct virtio_blk_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

/** Config space as the driver sees it (virtio 1.2 §5.2.4), little endian. */
struct virtio_blk_config {
	uint64_t capacity;
	uint32_t size_max;
	uint32_t seg_max;
	struct {
		uint16_t cylinders;
		uint8_t heads;
		uint8_t sectors;
	} geometry;
	uint32_t blk_size;
	uint8_t physical_block_exp;
	uint8_t alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));

/** A parsed request: what the executor needs, pointing into guest memory. */
struct sb_blk_req_parsed {
	struct virtio_blk_outhdr hdr;
	struct iovec *data;       /* into the chain's iovecs, trimmed */
	uint32_t data_cnt;
	uint64_t data_len;
	uint8_t *status;
	uint64_t status_gpa;      /* when the chain kept guest-physical addresses */
};

/**
 * Parse a request chain without assuming how the driver split header,
 * data and status over descriptors (virtio 1.2 §5.2.6.4).  Modifies the
 * chain's iovecs in place.  \return 0, -EINVAL (no room for header or
 * status: the request cannot even be answered).
 */
int sb_blk_req_parse(struct sb_vring_chain *chain, struct sb_blk_req_parsed *req);
/** Copy len bytes at byte offset off of an iovec array into dst. \return bytes copied. */
uint64_t sb_iov_copy_out(const struct iovec *iov, uint32_t cnt, uint64_t off, void *dst,
			 uint64_t len);
/** Copy src into an iovec array. \return bytes copied. */
uint64_t sb_iov_copy_in(const struct iovec *iov, uint32_t cnt, const void *src, uint64_t len);

struct sb_blk_geometry {
	uint64_t num_blocks;
	uint32_t block_size;
	uint32_t phys_block_size;
	uint16_t num_queues;
	bool discard;
	bool write_zeroes;
	bool flush;
	bool readonly;
	bool packed;   /* offer packed virtqueues (the controller's packed_ring) */
};

/** Virtio features offered for a blk device (bit 30 included). */
uint64_t sb_blk_features(const struct sb_blk_geometry *g);
/** Fill the config space. */
void sb_blk_config(const struct sb_blk_geometry *g, struct virtio_blk_config *cfg);

/* ---- inflight tracking (vhost_inflight.c) ---- */

struct sb_inflight_desc {
	uint8_t inflight;
	uint8_t padding[5];
	uint16_t next;
	uint64_t counter;
};

struct sb_inflight_queue {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t last_batch_head;
	uint16_t used_idx;
	struct sb_inflight_desc desc[];
};

/** Bytes of one queue's region (64-byte aligned). */
uint64_t sb_inflight_queue_bytes(uint16_t queue_size);
/**
 * Create the shared region: a memfd with room for num_queues regions of
 * either layout (split or packed).  \return fd or -errno; *size set.
 */
int sb_inflight_create(uint16_t num_queues, uint16_t queue_size, uint64_t *size);
/** The region of queue q inside a mapping of size bytes (NULL if it does not fit). */
struct sb_inflight_queue *sb_inflight_queue_get(void *base, uint64_t size, uint16_t queue_size,
						uint16_t q);
/**
 * Adopt a region for a ring that is about to start.  A fresh region
 * (desc_num 0) is initialised from used->idx; a used one is repaired
 * (when used_idx != used->idx, the used->idx - used_idx heads of the batch
 * list from last_batch_head are the driver's: taken out of flight) and its
 * in-flight heads are returned in counter order in heads[] (*count), with
 * *next_counter.
 * \return 0, -ENOMEM, or -EINVAL (region does not match the ring, or its
 * batch list is broken: *why).
 */
int sb_inflight_adopt(struct sb_inflight_queue *iq, struct sb_vring *vr, uint16_t *heads,
		      uint16_t *count, uint64_t *next_counter, const char **why);
/** Record a fetched head. */
void sb_inflight_fetch(struct sb_inflight_queue *iq, uint16_t head, uint64_t counter);
/**
 * Complete head into the open batch (vhost-user.rst, split inflight
 * steps 1-3): link it into the region's batch list (desc[head].next, then
 * last_batch_head) and fill its used slot.  Nothing is visible to the
 * driver, and head stays in flight in the region, until
 * sb_inflight_flush_used.  batch[] (queue size entries, ours, not the
 * region's) collects the batch's heads; *n counts them.
 */
void sb_inflight_put_used(struct sb_inflight_queue *iq, struct sb_vring *vr, uint16_t *batch,
			  uint16_t *n, uint16_t head, uint32_t len);
/**
 * Close the batch (steps 4-6): one store of used->idx for all of it, then
 * each head's inflight flag cleared, then the region's used_idx set to
 * used->idx.  A crash anywhere in between is repaired by sb_inflight_adopt.
 * \return false when the batch was empty (nothing stored).
 */
bool sb_inflight_flush_used(struct sb_inflight_queue *iq, struct sb_vring *vr,
			    const uint16_t *batch, uint16_t *n);
/*
 * The steps sb_inflight_put_used and sb_inflight_flush_used are made of,
 * in their order, for tests that stop between any two of them (a crash):
 * put (link head, fill its used slot), publish (used->idx), retire (one
 * head's inflight flag), close (the region's used_idx).
 */
void sb_inflight_batch_put(struct sb_inflight_queue *iq, struct sb_vring *vr, uint16_t head,
			   uint32_t len);
bool sb_inflight_batch_publish(struct sb_vring *vr);
void sb_inflight_batch_retire(struct sb_inflight_queue *iq, uint16_t head);
void sb_inflight_batch_close(struct sb_inflight_queue *iq, const struct sb_vring *vr);
/** Complete head and publish it at once: a batch of one. */
void sb_inflight_push_used(struct sb_inflight_queue *iq, struct sb_vring *vr, uint16_t head,
			   uint32_t len);

/*
 * Packed rings (vhost-user.rst "Inflight I/O tracking", packed layout):
 * each fetched descriptor is copied into an entry taken from a free list,
 * the buffer's first entry (its "head entry") carries inflight, counter,
 * num and last; completing a buffer puts its entries back on the free
 * list, moves used_idx by num, and the old_* fields are the state before
 * the update in progress (commit or roll back on reconnect).
 */
struct sb_inflight_desc_packed {
	uint8_t inflight;
	uint8_t padding;
	uint16_t next;
	uint16_t last;
	uint16_t num;
	uint64_t counter;
	uint16_t id;
	uint16_t flags;
	uint32_t len;
	uint64_t addr;
};

struct sb_inflight_queue_packed {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t free_head;
	uint16_t old_free_head;
	uint16_t used_idx;
	uint16_t old_used_idx;
	uint8_t used_wrap_counter;
	uint8_t old_used_wrap_counter;
	uint8_t padding[7];
	struct sb_inflight_desc_packed desc[];
};

/** Bytes of one packed queue's region (64-byte aligned). */
uint64_t sb_inflight_packed_queue_bytes(uint16_t queue_size);
/** The packed region of queue q inside a mapping of size bytes (NULL if it does not fit). */
struct sb_inflight_queue_packed *sb_inflight_packed_queue_get(void *base, uint64_t size,
							      uint16_t queue_size, uint16_t q);
/**
 * Adopt a packed region for a ring about to start (vr's base set).  A
 * fresh one (version 0) is initialised from vr; a used one is repaired
 * (the update in progress committed or rolled back), vr's used and avail
 * positions are taken from it (avail = used + the slots of the buffers
 * in flight), and the head entries in flight are returned in counter
 * order.  \return 0, -EINVAL (*why: the region is inconsistent), -ENOMEM.
 */
int sb_inflight_packed_adopt(struct sb_inflight_queue_packed *iq, struct sb_vring *vr,
			     uint16_t *entries, uint16_t *count, uint64_t *next_counter,
			     const char **why);
/**
 * Record the buffer sb_vring_packed_pop copied (vr->scratch, n
 * descriptors).  \return 0 (*entry: its head entry), -EINVAL (free list
 * broken: *why).
 */
int sb_inflight_packed_fetch(struct sb_inflight_queue_packed *iq, const struct sb_vring *vr,
			     uint64_t counter, uint16_t *entry, const char **why);
/** Copy in-flight head entry back into vr->scratch for resubmission: *id, *ndesc. */
int sb_inflight_packed_load(const struct sb_inflight_queue_packed *iq, struct sb_vring *vr,
			    uint16_t entry, uint16_t *id, uint16_t *ndesc, const char **why);
/** Complete a buffer: the used descriptor with the inflight steps around it. */
void sb_inflight_packed_push_used(struct sb_inflight_queue_packed *iq, struct sb_vring *vr,
				  uint16_t entry, uint16_t id, uint16_t ndesc, uint32_t len);

#endif /* SB_VHOST_INTERNAL_H */
