/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * vhost-user-blk controllers: one bdev exposed to one QEMU over a unix
 * socket.  Control path calls are synchronous and run from non-reactor
 * threads; the protocol runs on one control thread (epoll over every
 * controller socket) and the virtqueues are polled by the controller's
 * reactor.
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
	const char *cpumask;   /* NULL = first reactor; reactors it may use */
	bool readonly;
	uint16_t max_queues;   /* 0 = SB_VHOST_MAX_QUEUES */
	const char *serial;    /* GET_ID answer (20 bytes max); NULL = bdev name */
	bool packed_ring;      /* reserved, must be false */
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
	uint32_t reactor_core;
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
};

int sb_vhost_get_info(const char *name, struct sb_vhost_ctrlr_info *info);
/** \return 0; *count is the total even when it exceeds max. */
int sb_vhost_list(struct sb_vhost_ctrlr_info *out, uint32_t max, uint32_t *count);

#ifdef __cplusplus
}
#endif
#endif /* SB_VHOST_H */
