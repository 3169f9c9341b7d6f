/* cdef: sb/vhost.h */
#define SB_VHOST_NAME_MAX 128
#define SB_VHOST_MAX_QUEUES 16
int sb_vhost_set_socket_dir(const char *dir);
struct sb_vhost_blk_opts {
	const char *name;
	const char *bdev_name;
	const char *cpumask;
	bool readonly;
	uint16_t max_queues;
	const char *serial;
	bool packed_ring;
	...;
};
int sb_vhost_blk_create(const struct sb_vhost_blk_opts *opts);
int sb_vhost_delete(const char *name, bool force);
int sb_vhost_set_coalescing(const char *name, uint32_t delay_base_us, uint32_t iops_threshold);
struct sb_vhost_ctrlr_info {
	char name[128];
	char bdev_name[128];
	char socket[108];
	char cpumask[64];
	uint32_t reactor_core;
	bool readonly;
	bool connected;
	bool started;
	bool broken;
	uint16_t max_queues;
	uint16_t num_queues;
	uint64_t features;
	uint64_t protocol_features;
	uint32_t delay_base_us;
	uint32_t iops_threshold;
	uint64_t completed_ios;
	bool dirty_logging;
	...;
};
int sb_vhost_get_info(const char *name, struct sb_vhost_ctrlr_info *info);
int sb_vhost_list(struct sb_vhost_ctrlr_info *out, uint32_t max, uint32_t *count);
