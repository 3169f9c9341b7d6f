/* cdef: sb/bdev.h (control path) */
#define SB_BDEV_NAME_MAX 128
#define SB_BDEV_MAX_ALIASES 8
#define SB_UUID_STR_LEN 37
enum sb_bdev_io_type { SB_BDEV_IO_READ = 0, SB_BDEV_IO_WRITE, SB_BDEV_IO_FLUSH, SB_BDEV_IO_UNMAP,
	SB_BDEV_IO_WRITE_ZEROES, SB_BDEV_IO_RESET, SB_BDEV_IO_NUM_TYPES };
enum sb_qos_limit { SB_QOS_RW_IOPS = 0, SB_QOS_RW_MBPS, SB_QOS_R_MBPS, SB_QOS_W_MBPS, SB_QOS_NUM_LIMITS };
struct sb_bdev_info {
	char name[128];
	char aliases[8][128];
	uint32_t num_aliases;
	char uuid[37];
	char product_name[64];
	char module[32];
	uint32_t block_size;
	uint32_t physical_block_size;
	uint64_t num_blocks;
	bool claimed;
	char claimed_by[64];
	bool supported_io_types[6];
	uint64_t qos_limits[4];
	uint32_t open_descs;
	char driver_specific[512];
	...;
};
int sb_bdev_ctl_get_info(const char *name, struct sb_bdev_info *info);
int sb_bdev_ctl_list(struct sb_bdev_info *out, uint32_t max, uint32_t *count);
struct sb_bdev_iostat {
	char name[128];
	uint64_t bytes_read, num_read_ops;
	uint64_t bytes_written, num_write_ops;
	uint64_t bytes_unmapped, num_unmap_ops;
	uint64_t bytes_copied, num_copy_ops;
	uint64_t read_latency_ticks, max_read_latency_ticks, min_read_latency_ticks;
	uint64_t write_latency_ticks, max_write_latency_ticks, min_write_latency_ticks;
	uint64_t unmap_latency_ticks, max_unmap_latency_ticks, min_unmap_latency_ticks;
	uint64_t copy_latency_ticks, max_copy_latency_ticks, min_copy_latency_ticks;
	uint64_t num_write_zeroes_ops, bytes_write_zeroes;
	uint64_t num_flush_ops, num_reset_ops;
	uint64_t num_io_errors;
	uint64_t queue_depth;
	uint64_t io_time;
	uint64_t weighted_io_time;
	...;
};
int sb_bdev_ctl_get_iostat(const char *name, struct sb_bdev_iostat *stat);
int sb_bdev_ctl_set_qos(const char *name, const uint64_t limits[4]);
int sb_bdev_ctl_alias_add(const char *name, const char *alias);
int sb_bdev_ctl_alias_del(const char *name, const char *alias);
uint64_t sb_bdev_ticks_hz(void);
