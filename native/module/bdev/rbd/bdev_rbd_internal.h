/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by bdev_rbd.c (bdevs, data path) and bdev_rbd_cluster.c (connections). */
#ifndef SB_BDEV_RBD_INTERNAL_H
#define SB_BDEV_RBD_INTERNAL_H

#include "bdev_rbd.h"

#include <rados/librados.h>
#include <stdint.h>
#include <sys/queue.h>

/*
 * One librados connection.  Registered clusters hold one reference of
 * their own; anonymous ones are shared by every bdev created with the same
 * (user, config file, key file, options) and go away with their last bdev.
 * Only control-path threads touch these, under g_rbd_cluster_lock.
 */
struct rbd_cluster {
	char *name;        /* registered name, NULL when anonymous */
	char *user_id;
	char *config_file;
	char *key_file;
	char **config;     /* key, value, ..., NULL */
	char *key;         /* what anonymous connections are shared by */
	rados_t rados;
	uint32_t refs;
	uint32_t bdevs;    /* bdevs using it */
	TAILQ_ENTRY(rbd_cluster) link;
};

/* A reference to the connection for opts (connects on first use). */
int _rbd_cluster_get(const struct sb_rbd_cluster_opts *opts, struct rbd_cluster **out);
/* A reference to registered cluster name. */
int _rbd_cluster_get_by_name(const char *name, struct rbd_cluster **out);
/* Drop a reference; the last one shuts the connection down (blocks). */
void _rbd_cluster_put(struct rbd_cluster *c);

#endif
