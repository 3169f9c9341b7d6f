/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rbd bdev API on a host built without librbd (no
 * /usr/include/rbd/librbd.h): the build skips module/bdev/rbd/, and these
 * answer every call with -ENOTSUP and a log line saying how to get it, so
 * the RPCs fail clearly instead of the extension failing to load.
 */
#ifndef SB_HAVE_RBD
#include "bdev_rbd.h"
#include "sb/log.h"

#include <errno.h>

static int
_rbd_missing(const char *what)
{
	SB_ERRLOG("%s: this engine was built without librbd; install librbd-dev and "
		  "librados-dev and rebuild to serve Ceph RBD images\n", what);
	return -ENOTSUP;
}

int
sb_bdev_rbd_create(const struct sb_rbd_opts *opts)
{
	return _rbd_missing("bdev_rbd_create");
}

int
sb_bdev_rbd_delete(const char *name)
{
	return _rbd_missing("bdev_rbd_delete");
}

int
sb_bdev_rbd_resize(const char *name, uint64_t new_size_mb)
{
	return _rbd_missing("bdev_rbd_resize");
}

int
sb_bdev_rbd_rescan(const char *name)
{
	return _rbd_missing("bdev_rbd_rescan");
}

int
sb_bdev_rbd_register_cluster(const struct sb_rbd_cluster_opts *opts)
{
	return _rbd_missing("bdev_rbd_register_cluster");
}

int
sb_bdev_rbd_unregister_cluster(const char *name)
{
	return _rbd_missing("bdev_rbd_unregister_cluster");
}

int
sb_bdev_rbd_get_clusters_info(const char *name, char *buf, size_t len)
{
	return _rbd_missing("bdev_rbd_get_clusters_info");
}
#else
/* Built with librbd: module/bdev/rbd/ provides the API. */
typedef int sb_bdev_rbd_stub_unused;
#endif
