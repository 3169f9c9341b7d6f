/* cdef: native/module/bdev/rbd/bdev_rbd.h (always present; -ENOTSUP without librbd) */
struct sb_rbd_cluster_opts {
	const char *name;
	const char *user_id;
	const char *config_file;
	const char *key_file;
	const char *const *config;
	...;
};
struct sb_rbd_opts {
	const char *name;
	const char *pool_name;
	const char *rbd_name;
	uint32_t block_size;
	const char *cluster_name;
	struct sb_rbd_cluster_opts cluster;
	const char *uuid;
	bool read_only;
	...;
};
int sb_bdev_rbd_create(const struct sb_rbd_opts *opts);
int sb_bdev_rbd_delete(const char *name);
int sb_bdev_rbd_resize(const char *name, uint64_t new_size_mb);
int sb_bdev_rbd_rescan(const char *name);
int sb_bdev_rbd_register_cluster(const struct sb_rbd_cluster_opts *opts);
int sb_bdev_rbd_unregister_cluster(const char *name);
int sb_bdev_rbd_get_clusters_info(const char *name, char *buf, size_t len);
