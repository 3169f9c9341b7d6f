/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhost-user-blk controller and session state (private to lib/vhost).
 * See vhost_internal.h for which thread owns which field.
 */
#ifndef SB_VHOST_DEV_H
#define SB_VHOST_DEV_H

#include "vhost/vhost_internal.h"
#include "sb/vhost.h"

#include <sys/queue.h>

struct sb_reactor;
struct sb_poller;
struct sb_bdev;
struct sb_bdev_desc;
struct sb_io_channel;
struct sb_completion;
struct sb_vhost_ctrlr;
struct sb_vhost_vq;
struct sb_vhost_rslot;
struct sb_vhost_parked_res;
struct sb_vhost_log;
struct sb_vhost_mem;

/* One virtio-blk request in flight; tasks are indexed by head. */
struct sb_vhost_task {
	struct sb_vhost_vq *vq;
	uint16_t head;
	uint16_t ndesc;  /* ring slots the request took (packed rings step over them) */
	uint16_t iq_entry;  /* packed inflight region: the request's head entry */
	bool busy;
	uint32_t used_len;
	struct sb_blk_req_parsed req;
	/* DISCARD / WRITE_ZEROES: segments run one after the other. */
	struct virtio_blk_seg segs[SB_VHOST_BLK_MAX_DISCARD_SEG];
	uint32_t nsegs;
	uint32_t cur_seg;
	bool queued;  /* on the retry list (-ENOMEM from the bdev) */
	TAILQ_ENTRY(sb_vhost_task) link;
	struct sb_vring_chain chain;
	struct iovec iov[SB_VHOST_REQ_MAX_IOV];
	/* While the dirty log is on: the guest-physical address of each iov. */
	uint64_t gpa[SB_VHOST_REQ_MAX_IOV];
};

struct sb_vhost_vq {
	struct sb_vhost_ctrlr *ctrlr;
	/* The reactor that runs this queue: slots[index % nslots], fixed at create. */
	struct sb_vhost_rslot *slot;
	uint16_t index;

	/* Front-end configuration (control thread; read by the reactor only at start). */
	uint16_t num;
	/* Split: next avail index; packed: avail and used index with wrap counters. */
	uint32_t base;
	struct vhost_user_vring_addr addr;
	bool addr_set;
	bool kick_set;
	int kickfd;
	int callfd;
	bool enabled;

	/* Reactor state, valid while started (or draining). */
	bool started;
	bool detached;   /* the controller is parked: completions no longer touch the ring */
	bool draining;   /* stopped, waiting for its in-flight requests (or the flush) */
	struct sb_vring vr;
	struct sb_vhost_task *tasks;
	uint32_t inflight;
	TAILQ_HEAD(, sb_vhost_task) retry;
	struct sb_completion *drain_done;
	bool stop_flushed;  /* the migration flush of this stop was sent */
	bool stop_last;     /* set by the control thread before a stop: no other queue runs */
	struct sb_inflight_queue *iq;
	struct sb_inflight_queue_packed *iqp;  /* a packed ring's region (iq is NULL then) */
	uint64_t iq_counter;
	/* Split with iq: heads completed since used->idx last moved (sb_inflight_put_used). */
	uint16_t *batch;
	uint16_t n_batch;
	uint16_t *resubmit;
	uint16_t n_resubmit;
	uint16_t resubmit_pos;
	bool kick_registered;
	int kick_wake_fd;  /* the fd the reactor watches (kickfd may change while parked) */
	bool notify_off;  /* kicks suppressed while the reactor polls (sb_vring_notify_off) */
	int run_callfd;  /* the fd the reactor signals (swapped by message) */
	/* Dirty logging of the used ring (SET_VRING_ADDR with VHOST_VRING_F_LOG). */
	bool log_used;
	uint64_t log_used_gpa;
	/* Packed: where used descriptors go (the descriptor ring's guest-physical address). */
	bool log_desc;
	uint64_t log_desc_gpa;
	/* Interrupt coalescing (sb_vhost_set_coalescing). */
	bool coalesce;          /* the last window's IOPS reached the threshold */
	bool call_pending;
	uint64_t call_deadline; /* ticks */
	uint64_t win_start;     /* ticks */
	uint32_t win_count;     /* completions in the current window */
};

struct sb_vhost_ep_tag {
	int kind;
	struct sb_vhost_ctrlr *ctrlr;
};

enum { SB_EP_CMD = 0, SB_EP_LISTEN, SB_EP_CONN, SB_EP_SLAVE };

/*
 * A controller's share of one reactor of its cpumask: the queues it runs
 * there (queue q belongs to slot q % nslots), their poller and the bdev
 * channel they submit on.  Everything but the first three fields (set at
 * create) belongs to that reactor.
 */
struct sb_vhost_rslot {
	struct sb_vhost_ctrlr *ctrlr;
	struct sb_reactor *reactor;
	uint16_t index;

	struct sb_poller *poller;
	struct sb_io_channel *ch;
	uint32_t started_queues;
	uint32_t draining_queues;
	uint32_t outstanding;  /* bdev I/O (and flushes) in flight from this reactor */
	bool removed;   /* the bdev was hot-removed: this reactor submits nothing more */
	bool released;  /* after removal: channel put, the home reactor told */
	bool catching_up;  /* the controller is parked: tell it once no queue runs here */
	uint64_t completed_ios;  /* written by the reactor, summed by the control thread */
};

struct sb_vhost_ctrlr {
	char name[SB_VHOST_NAME_MAX];
	char bdev_name[128];
	char socket_path[108];
	char cpumask[64];
	char serial[VIRTIO_BLK_ID_BYTES];
	bool readonly;
	bool packed_ring;  /* VIRTIO_F_RING_PACKED is offered */
	uint16_t max_queues;
	/*
	 * The home reactor (slots[0]'s, queue 0's): it opens and closes the
	 * bdev descriptor and gets its events.  The queues spread over the
	 * reactors of the cpumask, in mask order: slots[0 .. nslots-1].
	 */
	struct sb_reactor *reactor;
	uint16_t nslots;
	struct sb_vhost_rslot slots[SB_VHOST_MAX_QUEUES];

	int listen_fd;
	int conn_fd;
	int slave_fd;
	struct sb_vhost_ep_tag listen_tag;
	struct sb_vhost_ep_tag conn_tag;
	struct sb_vhost_ep_tag slave_tag;

	/*
	 * bdev: the descriptor is opened on, and owned by, the home reactor,
	 * and used by every slot's reactor to submit on its own channel.  After
	 * a hot-remove it is closed once every slot has released (none can
	 * touch it any more); slots_released and closing are the home's.
	 */
	struct sb_bdev_desc *desc;
	struct sb_bdev *bdev;
	uint16_t slots_released;
	bool closing;  /* the controller is going: a hot-remove is not fanned out */
	/*
	 * Written at open and by the home reactor on RESIZE; the control
	 * thread and every slot's reactor read it (num_blocks atomically) and
	 * never dereference bdev, which may be gone after REMOVE.
	 */
	struct sb_blk_geometry geo;

	/* Session (control thread). */
	uint64_t features;
	uint64_t protocol_features;
	bool features_set;
	struct sb_vhost_mem *mem;   /* replaced only while no queue runs */
	struct sb_vhost_vq vqs[SB_VHOST_MAX_QUEUES];
	/*
	 * Dirty log (SET_LOG_BASE): the control thread maps and replaces it;
	 * log_active is what the reactors mark pages in: the log while
	 * VHOST_F_LOG_ALL is negotiated, else NULL.  An old log is unmapped
	 * only after every reactor of the controller ran a message past the
	 * switch.
	 */
	struct sb_vhost_log *log;
	struct sb_vhost_log *log_active;
	void *inflight_base;
	int inflight_fd;            /* ours (a copy), for a handoff */
	uint64_t inflight_size;
	uint64_t inflight_offset;
	uint16_t inflight_qsize;
	uint16_t inflight_nq;

	/* Flags raised by the home reactor for the control thread. */
	int pending_config_change;

	bool broken;  /* set by any of its reactors (atomically), cleared by the control thread */
	bool handed_off;  /* its fds went to the next process: deleting it closes nothing of them */
	bool adopted;     /* its session came from the previous process */
	struct sb_vhost_fdstore_slots *fdstore; /* what the fd store holds (vhost_fdstore.c) */
	uint32_t delay_base_us;
	uint32_t iops_threshold;
	/*
	 * Parking (vhost_park.c): a reactor did not answer a control call in
	 * time, so it may still run work that uses this controller.  Control
	 * thread, except slots_caught_up (each slot's reactor adds one when no
	 * queue of the controller runs there any more).
	 */
	bool parked;
	bool zombie;             /* deleted while parked: freed once it recovers */
	bool park_refusal_logged;
	uint16_t catchup_sent;   /* slots the catch-up message went to */
	uint16_t slots_caught_up;
	struct sb_vhost_parked_res *parked_res;
	LIST_ENTRY(sb_vhost_ctrlr) link;  /* in g_sb_vhost_ctrlrs, or the zombies */
};

/* The protocol features we offer (GET_PROTOCOL_FEATURES). */
#define SB_VHOST_PROTOCOL_FEATURES                                                           \
	(uint64_t)((1ull << VHOST_USER_PROTOCOL_F_MQ) | (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |    \
	 (1ull << VHOST_USER_PROTOCOL_F_SLAVE_REQ) | (1ull << VHOST_USER_PROTOCOL_F_CONFIG) | \
	 (1ull << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) | (1ull << VHOST_USER_PROTOCOL_F_LOG_SHMFD) | \
	 (1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE) |                                      \
	 (1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS))

/* Largest inflight region we map: 16 queues of 1024 entries is ~260 KiB. */
#define SB_VHOST_INFLIGHT_MAX (1ull << 24)

#define SB_VHOST_STOP_TIMEOUT_US (5ULL * 1000 * 1000)
/* The same while the dirty log is on: the last stop flushes the bdev (a
 * migration's switch-over, which waits for it as QEMU waits for its own
 * disks' flush). */
#define SB_VHOST_SWITCHOVER_TIMEOUT_US (60ULL * 1000 * 1000)

/* vhost_session.c (reactor side, called from the control thread) */
/** Start vq if everything it needs is configured. \return 0 (started or not ready) or -errno. */
int sb_vhost_vq_maybe_start(struct sb_vhost_vq *vq);
/** Stop vq and wait for its in-flight requests (bounded). */
int sb_vhost_vq_stop(struct sb_vhost_vq *vq);
/** Stop every started queue; *mask gets which were running. */
void sb_vhost_pause_all(struct sb_vhost_ctrlr *c, uint32_t *mask);
/** Restart queues of mask. */
void sb_vhost_resume(struct sb_vhost_ctrlr *c, uint32_t mask);
/** Last in-flight request of a stopping queue finished (reactor). */
void sb_vhost_vq_drained(struct sb_vhost_vq *vq);
/** Swap the call fd of a running queue (reactor message). */
int sb_vhost_vq_set_call(struct sb_vhost_vq *vq, int fd);
/** Give a running queue new used-ring logging settings from vq->addr (reactor message). */
int sb_vhost_vq_set_log(struct sb_vhost_vq *vq);
/** Wait until every reactor of the controller ran past this point (0, -ETIMEDOUT, -EIO). */
int sb_vhost_reactor_barrier(struct sb_vhost_ctrlr *c);
/**
 * Give c its reactors: the cpumask's, in mask order (NULL or "": reactor
 * 0), at most max_queues of them; queue q runs on the (q % n)-th.
 * \return 0, -EINVAL (bad mask, or no reactor in it), -ESHUTDOWN.
 */
int sb_vhost_slots_init(struct sb_vhost_ctrlr *c, const char *cpumask);
/** Open the bdev on the controller's home reactor (claim unless readonly). */
int sb_vhost_bdev_open(struct sb_vhost_ctrlr *c);
/** Hot-removed and the slot's last I/O done: put its channel, tell home (slot's reactor). */
void sb_vhost_slot_release(struct sb_vhost_rslot *s);
/**
 * Stop every slot's poller, put the channels, close the descriptor (each on
 * its reactor).  \return 0, or -ETIMEDOUT (a reactor did not answer: c is
 * parked and must not be freed before it recovers), -EIO (c was parked).
 */
int sb_vhost_bdev_close(struct sb_vhost_ctrlr *c);
/**
 * Send the catch-up message to the slots of parked c that have not had it
 * (control thread): each stops c's queues on its reactor and adds one to
 * c->slots_caught_up once none runs or drains there.
 */
void sb_vhost_catchup_send(struct sb_vhost_ctrlr *c);
/** Forget a queue's requests after its reactor caught up (control thread). */
void sb_vhost_vq_forget(struct sb_vhost_vq *vq);

/*
 * vhost_park.c: a controller one of whose reactors did not answer a
 * control call in time.  The reactor may still run that call and every
 * message queued before it, so nothing it could touch is freed: the
 * controller is parked.  Its session is cut, new front-ends are refused,
 * and what the session would release (guest memory, the dirty log, the
 * inflight region, kick and call fds, request arrays) is kept until every
 * reactor of the controller ran a catch-up message and drained its
 * queues; then all of it is released and the controller serves again.  A
 * controller deleted while parked leaves the table at once and is freed
 * when it recovers.
 */
/** Park c (control thread); what says which call timed out. */
void sb_vhost_park(struct sb_vhost_ctrlr *c, const char *what);
/** Close fd, or keep it until c recovers if c is parked. */
void sb_vhost_release_fd(struct sb_vhost_ctrlr *c, int fd);
/** Free a memory table (unmap: its regions too), now or when c recovers. */
void sb_vhost_release_mem(struct sb_vhost_ctrlr *c, struct sb_vhost_mem *mem, bool unmap);
/** Unmap a dirty log, now or when c recovers. */
void sb_vhost_release_log(struct sb_vhost_ctrlr *c, struct sb_vhost_log *log);
/** Unmap a mapping (and close fd if >= 0), now or when c recovers. */
void sb_vhost_release_mapping(struct sb_vhost_ctrlr *c, void *addr, size_t len, int fd);
/** free(p), now or when c recovers. */
void sb_vhost_release_ptr(struct sb_vhost_ctrlr *c, void *p);
/**
 * c has left the controller table (or never entered it): close its bdev
 * and free it, or keep it as a zombie until it recovers.
 */
void sb_vhost_ctrlr_free(struct sb_vhost_ctrlr *c);
/** Control loop: cut parked sessions, resend catch-ups, release recovered controllers. */
void sb_vhost_park_poll(void);
/** Engine stop: give zombies up to timeout_us to recover; leak (and say so) the rest. */
void sb_vhost_park_drain(uint64_t timeout_us);
/** Requests completed on every reactor of c (any thread). */
uint64_t sb_vhost_completed_ios(const struct sb_vhost_ctrlr *c);
/**
 * Mark the device broken (reactor): its queues are no longer polled until
 * the front-end stops the device (GET_VRING_BASE), resets it or reconnects.
 */
void sb_vhost_dev_break(struct sb_vhost_ctrlr *c, const char *why);
/* vhost_ctl.c (the control thread) */
/** Wake the control thread (from any thread). */
void sb_vhost_ctl_wake(void);
/**
 * Run fn(arg) on the control thread and wait for it (non-reactor threads).
 * \return 0 once fn ran, -EPERM (called on a reactor), -ESHUTDOWN.
 */
int sb_vhost_ctl_run(void (*fn)(void *arg), void *arg);
/** Watch fd for input; events carry tag. */
int sb_vhost_ctl_watch(int fd, struct sb_vhost_ep_tag *tag);
void sb_vhost_ctl_unwatch(int fd);
/** Drop the front-end: stop queues (waiting for in-flight I/O), unmap, close. */
void sb_vhost_ctl_disconnect(struct sb_vhost_ctrlr *c, const char *why);
/** Drop the front-end if it already hung up (the epoll loop may not have
 *  seen it yet); \return true when no front-end is connected. */
bool sb_vhost_ctl_reap_closed(struct sb_vhost_ctrlr *c);
/** Replace the slave channel fd (-1: close it). */
void sb_vhost_ctl_set_slave(struct sb_vhost_ctrlr *c, int fd);

/* vhost_ctrlr.c (control thread) */
LIST_HEAD(sb_vhost_ctrlr_list, sb_vhost_ctrlr);
/** Every controller, newest first. */
extern struct sb_vhost_ctrlr_list g_sb_vhost_ctrlrs;
/** Act on flags the reactors raised (config change after a resize). */
void sb_vhost_ctrlrs_check_pending(void);
/** Delete every controller (forced). */
void sb_vhost_ctrlrs_delete_all(void *arg);

/* vhost_blk_io.c (reactor) */
/** Walk, parse and submit one request (head, ndesc ring slots); false when the device broke. */
bool sb_vhost_blk_handle(struct sb_vhost_vq *vq, uint16_t head, uint16_t ndesc);
/**
 * Publish the completions put since the last publish: one used->idx store
 * for all of them (split rings; packed ones publish each completion).
 * \return true when the index moved (reactor).
 */
bool sb_vhost_vq_publish(struct sb_vhost_vq *vq);
/** Publish, then signal the driver if it wants an interrupt (reactor). */
void sb_vhost_vq_flush_call(struct sb_vhost_vq *vq);
/** Task finished: status, used ring, call, drain bookkeeping (reactor). */
void sb_vhost_task_done(struct sb_vhost_task *t, uint8_t status);
/** Retry tasks waiting for a bdev_io. */
void sb_vhost_blk_retry(struct sb_vhost_vq *vq);
/** Mark [off, off + len) of the used ring dirty when logging is on (reactor). */
void sb_vhost_vq_log_used(struct sb_vhost_vq *vq, uint64_t off, uint64_t len);
/** Mark the used ring's flags and avail_event dirty (after notify on/off; reactor). */
void sb_vhost_vq_log_notify(struct sb_vhost_vq *vq);

/* vhost_msg.c (control thread) */
/** Handle one message of the connection; a negative return cuts the session. */
int sb_vhost_handle_msg(struct sb_vhost_ctrlr *c, struct vhost_user_msg *msg);
/** Stop queues, unmap memory, close fds, forget negotiated state. */
void sb_vhost_session_reset(struct sb_vhost_ctrlr *c);
/** Send CONFIG_CHANGE_MSG on the slave channel. */
void sb_vhost_send_config_change(struct sb_vhost_ctrlr *c);
/**
 * Check and map an inflight region (SET_INFLIGHT_FD, or a handoff); the
 * controller keeps a copy of fd.  \return 0, -EINVAL, -errno.
 */
int sb_vhost_inflight_map(struct sb_vhost_ctrlr *c, int fd, uint64_t size, uint64_t offset,
			  uint16_t num_queues, uint16_t queue_size);
/** Unmap the inflight region and close our fd of it. */
void sb_vhost_inflight_unmap(struct sb_vhost_ctrlr *c);

/* vhost_handoff.c (control thread) */
/**
 * The staged record of a controller being created (NULL: none); the
 * caller owns it (and its fds) and frees it with sb_vhost_handoff_release.
 */
struct sb_vhost_handoff *sb_vhost_handoff_claim(const char *name);
/** Adopt the listening socket of a claimed record: 0 (c->listen_fd set), -ENOENT (use a new one). */
int sb_vhost_handoff_listen(struct sb_vhost_ctrlr *c, struct sb_vhost_handoff *h);
/** Take over the session of a claimed record and resume its rings (fds taken or closed). */
void sb_vhost_handoff_adopt(struct sb_vhost_ctrlr *c, struct sb_vhost_handoff *h);
/** Record c's session in h (fds are c's own; running: the rings to resume). */
void sb_vhost_handoff_fill(const struct sb_vhost_ctrlr *c, struct sb_vhost_handoff *h,
			   uint32_t running);
/** sb_vhost_handoff_stage on the control thread. */
int sb_vhost_handoff_stage_locked(const struct sb_vhost_handoff *in, uint32_t count);

/* vhost_fdstore.c (control thread) */
/**
 * Bring the fd store up to date with c (no-op unless enabled): store the
 * files c uses now that are not stored yet, rewrite c's state, remove the
 * entries nothing names any more.
 */
void sb_vhost_fdstore_sync(struct sb_vhost_ctrlr *c);
/** Remove everything of c from the store (c is deleted or handed over by exec). */
void sb_vhost_fdstore_forget(struct sb_vhost_ctrlr *c);
/** Remove what a restart got back and no controller stored anew. */
void sb_vhost_fdstore_restored_done(void);

#endif /* SB_VHOST_DEV_H */
