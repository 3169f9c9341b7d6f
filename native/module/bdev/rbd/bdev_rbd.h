/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Ceph RBD images served through librbd (SPDK's bdev_rbd).
 *
 * These functions always exist: on a host built without librbd they log why
 * and return -ENOTSUP.  All of them are control-path calls for non-reactor
 * threads; they may block on the cluster (connect, open, resize).
 */
#ifndef SB_BDEV_RBD_H
#define SB_BDEV_RBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** How to reach a cluster: the fields librados needs to connect. */
struct sb_rbd_cluster_opts {
	/** Registered name (sb_bdev_rbd_register_cluster); ignored by sb_bdev_rbd_create. */
	const char *name;
	/** Ceph user without "client." (NULL = librados' default, "admin"). */
	const char *user_id;
	/** ceph.conf to read (NULL = librados' search path unless config is given). */
	const char *config_file;
	/** Keyring file (NULL = from the configuration). */
	const char *key_file;
	/** Options set with rados_conf_set: key, value, key, value, ..., NULL. May be NULL. */
	const char *const *config;
};

struct sb_rbd_opts {
	const char *name;
	const char *pool_name;
	const char *rbd_name;
	/** Logical block size the bdev shows (512 .. 64 KiB, a power of two). */
	uint32_t block_size;
	/** A registered cluster; when set, cluster.* must be empty. */
	const char *cluster_name;
	/** Connection to share with other bdevs of the same (config, user). */
	struct sb_rbd_cluster_opts cluster;
	const char *uuid;       /* NULL or "" = generate */
	bool read_only;
};

/**
 * Open image pool_name/rbd_name and register it as a bdev.
 * \return 0, -EEXIST (name taken), -ENOENT (no such pool or image),
 *         -EINVAL (options, or an image smaller than one block),
 *         -ENOTSUP (built without librbd), or librados' -errno.
 */
int sb_bdev_rbd_create(const struct sb_rbd_opts *opts);
/** Unregister and close (the close finishes in the background). \return 0, -ENODEV. */
int sb_bdev_rbd_delete(const char *name);
/**
 * Grow the image to new_size_mb MiB (SPDK's unit); open descriptors get
 * SB_BDEV_EVENT_RESIZE.  \return 0, -ENODEV, -EINVAL (shrinking), -errno.
 */
int sb_bdev_rbd_resize(const char *name, uint64_t new_size_mb);
/**
 * Re-read the image size (after a resize by another client) and notify
 * open descriptors of a change.  Writable bdevs also learn such resizes by
 * themselves (librbd's update watch); read-only opens get no header
 * notifications from librbd, so they need this.  \return 0, -ENODEV, -errno.
 */
int sb_bdev_rbd_rescan(const char *name);

/** Connect to a cluster and keep the connection under opts->name. \return 0, -EEXIST, -errno. */
int sb_bdev_rbd_register_cluster(const struct sb_rbd_cluster_opts *opts);
/** Drop a registered cluster. \return 0, -ENOENT, -EBUSY (bdevs use it). */
int sb_bdev_rbd_unregister_cluster(const char *name);
/**
 * Registered clusters as a JSON array (SPDK's bdev_rbd_get_clusters_info
 * objects plus "bdevs": users of the connection), or the one named.
 * \return the length of the full text (may exceed len: call again with a
 *         bigger buffer), -ENOENT (no such cluster), -ENOTSUP.
 */
int sb_bdev_rbd_get_clusters_info(const char *name, char *buf, size_t len);

#endif
