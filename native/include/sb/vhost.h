/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * vhost-user-blk controllers: one bdev exposed to one QEMU over a unix
 * socket.  Control path calls are synchronous and run from non-reactor
 * threads; the protocol runs on one control thread (epoll over every
 * controller socket) and the virtqueues are polled by the reactors of the
 * controller's cpumask (queue q by the (q % n)-th of its n reactors).
 */
#ifndef SB_VHOST_H
#define SB_VHOST_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SB_VHOST_NAME_MAX 128
#define SB_VHOST_MAX_QUEUES 16

/**
 * Directory for controller sockets (created 0700 if missing).  Must be set
 * before the first create; changing it does not move existing sockets.
 * \return 0, -ENAMETOOLONG (a socket path would not fit sun_path), -errno.
 */
int sb_vhost_set_socket_dir(const char *dir);

struct sb_vhost_blk_opts {
	const char *name;      /* socket is <socket_dir>/<name>; [A-Za-z0-9_.-]+ */
	const char *bdev_name;
	const char *cpumask;   /* NULL = first reactor; reactors its queues spread over */
	bool readonly;
	uint16_t max_queues;   /* 0 = SB_VHOST_MAX_QUEUES */
	const char *serial;    /* GET_ID answer (20 bytes max); NULL = bdev name */
	bool packed_ring;      /* offer VIRTIO_F_RING_PACKED (SPDK's packed_ring; off by default) */
};

/**
 * Create a controller and listen on its socket (mode 0600).
 * \return 0, -EEXIST, -ENODEV (bdev), -EPERM (bdev claimed), -EINVAL, -errno.
 */
int sb_vhost_blk_create(const struct sb_vhost_blk_opts *opts);

/**
 * Delete a controller, its socket and its bdev descriptor.
 * \return 0, -ENODEV, -EBUSY (a front-end is connected and !force).
 */
int sb_vhost_delete(const char *name, bool force);

/** Interrupt coalescing (SPDK vhost_controller_set_coalescing). */
int sb_vhost_set_coalescing(const char *name, uint32_t delay_base_us, uint32_t iops_threshold);

struct sb_vhost_ctrlr_info {
	char name[SB_VHOST_NAME_MAX];
	char bdev_name[128];
	char socket[108];
	char cpumask[64];
	uint32_t reactor_core;  /* queue 0's (the controller's home reactor) */
	bool readonly;
	bool connected;     /* a front-end holds the socket */
	bool started;       /* at least one queue is being polled */
	bool broken;        /* last session was cut for a protocol/guest violation */
	uint16_t max_queues;
	uint16_t num_queues;  /* enabled queues of the current session */
	uint64_t features;    /* negotiated virtio features */
	uint64_t protocol_features;
	uint32_t delay_base_us;
	uint32_t iops_threshold;
	uint64_t completed_ios;  /* requests completed since creation */
	bool dirty_logging;      /* a live migration has the back-end marking dirty pages */
	bool adopted;            /* the session came from a previous agent process (handoff) */
	/* Queue q (q < max_queues) runs on the (q % n)-th of the cpumask's n reactors. */
	uint32_t queue_core[SB_VHOST_MAX_QUEUES];  /* the CPU core of queue q's reactor */
	uint32_t queues_started;                   /* bit q: queue q is being polled */
};

int sb_vhost_get_info(const char *name, struct sb_vhost_ctrlr_info *info);
/** \return 0; *count is the total even when it exceeds max. */
int sb_vhost_list(struct sb_vhost_ctrlr_info *out, uint32_t max, uint32_t *count);

/**
 * Controllers parked because one of their reactors did not answer a
 * control call in time (their session is cut and their guest memory kept
 * until the reactors catch up), including deleted ones not freed yet.
 * 0 on a healthy engine.  \return 0, -EINVAL, -ESHUTDOWN.
 */
int sb_vhost_parked_count(uint32_t *count);

/*
 * Restart without a disconnect (vhost_handoff.c).
 *
 * An agent that re-executes itself hands every controller's listening
 * socket and connected front-end to the next process: the session (the
 * negotiated features, the guest memory table, each ring's addresses,
 * index and eventfds, the inflight region) is exported here with the fds
 * it needs, the fds survive the exec (their close-on-exec flag is
 * cleared), and the next process stages the records before it re-creates
 * its controllers: a controller created under a staged name adopts its
 * listening socket and session and resumes its rings where the old
 * process stopped them.  The front-end never sees a disconnect.
 */
#define SB_VHOST_HANDOFF_MAX_REGIONS 32

struct sb_vhost_handoff_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uva;
	uint64_t mmap_offset;
	int fd;
};

struct sb_vhost_handoff_vq {
	uint16_t num;
	uint16_t base;         /* next avail index to take (packed: wrap counter in bit 15) */
	uint32_t addr_flags;
	uint64_t desc_addr;    /* front-end virtual addresses (SET_VRING_ADDR) */
	uint64_t avail_addr;
	uint64_t used_addr;
	uint64_t log_addr;
	int kickfd;            /* -1: none (polled only) */
	int callfd;
	bool addr_set;
	bool kick_set;
	bool enabled;
	bool running;          /* was being polled: resumes at adoption */
	/*
	 * Packed rings: the used index with its wrap counter (GET_VRING_BASE's
	 * bits 16-31).  It sits in what was tail padding, so the fd store's
	 * state of an earlier agent keeps its layout (and reads 0 here).
	 */
	uint16_t base_used;
};

struct sb_vhost_handoff {
	char name[SB_VHOST_NAME_MAX];
	char socket[108];
	int listen_fd;
	int conn_fd;           /* -1: no session handed over */
	int slave_fd;
	uint64_t features;
	uint64_t protocol_features;
	bool features_set;
	uint32_t nregions;
	struct sb_vhost_handoff_region regions[SB_VHOST_HANDOFF_MAX_REGIONS];
	int inflight_fd;       /* -1: none */
	uint64_t inflight_size;
	uint64_t inflight_offset;
	uint16_t inflight_qsize;
	uint16_t inflight_nq;
	uint16_t nvqs;
	struct sb_vhost_handoff_vq vqs[SB_VHOST_MAX_QUEUES];
	const char *why;       /* export: why the session was not handed over (NULL: it was) */
};

/**
 * Stop every controller's rings (in-flight requests finish), record each
 * controller in out[] and let go of its fds without closing them (their
 * close-on-exec flag cleared).  The controllers stay, inert: deleting them
 * afterwards (sb_engine_stop) neither closes those fds nor removes the
 * sockets' files.  A session that cannot be handed over (a ring did not
 * stop in time, the device is broken) stays and is closed by that delete;
 * its record says why.
 * \return 0; -EBUSY while a live migration logs dirty pages (nothing
 * changed); -ENOSPC when more than max controllers exist (nothing changed;
 * *count says how many).
 */
int sb_vhost_handoff_export(struct sb_vhost_handoff *out, uint32_t max, uint32_t *count);

/**
 * Give the records of a previous process to this one, before its
 * controllers are created (every fd in them now belongs to the engine).
 * \return 0, -EINVAL (a bad record: nothing staged, the fds stay the
 * caller's), -ENOMEM.
 */
int sb_vhost_handoff_stage(const struct sb_vhost_handoff *in, uint32_t count);

/**
 * Close the fds of every staged record that no controller claimed (their
 * front-ends see a disconnect).  names gets them, comma-separated.
 * \return 0; *count unclaimed records.
 */
int sb_vhost_handoff_finish(char *names, uint32_t len, uint32_t *count);

/*
 * Crash survival (vhost_fdstore.c): keep every controller's fds and session
 * state in the service manager's file-descriptor store (systemd:
 * FileDescriptorStoreMax=, sd_notify FDSTORE=1), so that a restart after a
 * crash gets them back (LISTEN_FDS) and takes the sessions over.
 */
/** Store from now on, through the sd_notify socket at notify_socket ("/path" or "@abstract"). */
int sb_vhost_fdstore_enable(const char *notify_socket);
/**
 * Stage the sessions of the fds a previous process stored: names[i] is
 * fds[i]'s FDNAME.  Every fd is taken (staged or closed).  Call before the
 * controllers are created, then sb_vhost_handoff_finish.
 * \return 0 (*sessions: sessions staged; restored: their controllers,
 * comma-separated), -EBUSY (records staged already), -ENOMEM.
 */
int sb_vhost_fdstore_restore(const int *fds, const char *const *names, uint32_t n,
			     char *restored, uint32_t len, uint32_t *sessions);

#ifdef __cplusplus
}
#endif
#endif /* SB_VHOST_H */
