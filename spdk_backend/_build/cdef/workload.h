/* cdef: sb/workload.h */
struct sb_workload_opts {
	const char *bdev_name;
	const char *core_mask;
	const char *rw;
	uint32_t rwmixread;
	uint32_t io_size;
	uint32_t qd;
	uint64_t run_us;
	uint64_t offset_blocks;
	uint64_t num_blocks;
	uint64_t seed;
	...;
};
struct sb_workload_result {
	uint64_t ios;
	uint64_t read_ios;
	uint64_t write_ios;
	uint64_t errors;
	int first_error;
	uint64_t verify_failures;
	double seconds;
	double iops;
	double lat_mean_us;
	double lat_p50_us;
	double lat_p99_us;
	double lat_p999_us;
	...;
};
int sb_workload_run(const struct sb_workload_opts *opts, struct sb_workload_result *result);
int sb_bdev_ctl_io(const char *name, uint32_t reactor, enum sb_bdev_io_type type,
		   uint64_t offset, uint64_t length, void *buf);
struct sb_bdev_watch;
int sb_bdev_watch_open(const char *name, uint32_t reactor, struct sb_bdev_watch **watch);
void sb_bdev_watch_get(struct sb_bdev_watch *watch, uint64_t *resize_events,
		       uint64_t *remove_events, uint64_t *num_blocks);
void sb_bdev_watch_close(struct sb_bdev_watch *watch);
