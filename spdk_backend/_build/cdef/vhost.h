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
	bool adopted;
	uint32_t queue_core[16];
	uint32_t queues_started;
	...;
};
int sb_vhost_get_info(const char *name, struct sb_vhost_ctrlr_info *info);
int sb_vhost_list(struct sb_vhost_ctrlr_info *out, uint32_t max, uint32_t *count);
int sb_vhost_parked_count(uint32_t *count);
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
	uint16_t base;
	uint32_t addr_flags;
	uint64_t desc_addr;
	uint64_t avail_addr;
	uint64_t used_addr;
	uint64_t log_addr;
	int kickfd;
	int callfd;
	bool addr_set;
	bool kick_set;
	bool enabled;
	bool running;
	uint16_t base_used;
};
struct sb_vhost_handoff {
	char name[128];
	char socket[108];
	int listen_fd;
	int conn_fd;
	int slave_fd;
	uint64_t features;
	uint64_t protocol_features;
	bool features_set;
	uint32_t nregions;
	struct sb_vhost_handoff_region regions[32];
	int inflight_fd;
	uint64_t inflight_size;
	uint64_t inflight_offset;
	uint16_t inflight_qsize;
	uint16_t inflight_nq;
	uint16_t nvqs;
	struct sb_vhost_handoff_vq vqs[16];
	const char *why;
};
int sb_vhost_handoff_export(struct sb_vhost_handoff *out, uint32_t max, uint32_t *count);
int sb_vhost_handoff_stage(const struct sb_vhost_handoff *in, uint32_t count);
int sb_vhost_handoff_finish(char *names, uint32_t len, uint32_t *count);
int sb_vhost_fdstore_enable(const char *notify_socket);
int sb_vhost_fdstore_restore(const int *fds, const char *const *names, uint32_t n, char *restored, uint32_t len, uint32_t *sessions);
