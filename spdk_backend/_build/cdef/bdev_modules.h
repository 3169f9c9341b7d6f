/* cdef: native/module/bdev/<x>/bdev_<x>.h */
struct sb_malloc_opts {
	const char *name;
	const char *uuid;
	uint64_t num_blocks;
	uint32_t block_size;
	uint32_t physical_block_size;
	bool hugepages;
	...;
};
int sb_bdev_malloc_create(const struct sb_malloc_opts *opts);
int sb_bdev_malloc_delete(const char *name);
struct sb_null_opts {
	const char *name;
	const char *uuid;
	uint64_t num_blocks;
	uint32_t block_size;
	uint32_t physical_block_size;
	...;
};
int sb_bdev_null_create(const struct sb_null_opts *opts);
int sb_bdev_null_delete(const char *name);
int sb_bdev_null_resize(const char *name, uint64_t new_size_mb);
struct sb_uring_opts {
	const char *name;
	const char *filename;
	uint32_t block_size;
	const char *uuid;
	bool shared;
	...;
};
int sb_bdev_uring_create(const struct sb_uring_opts *opts);
int sb_bdev_uring_delete(const char *name);
int sb_bdev_uring_rescan(const char *name);
