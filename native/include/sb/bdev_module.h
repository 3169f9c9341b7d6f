/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * What a bdev backend author needs, and nothing more.
 *
 * A backend is one folder under native/module/bdev/<name>/ with a static
 * struct sb_bdev_fn_table and one SB_BDEV_MODULE_REGISTER() line.  The
 * core never switches on backend type.
 */
#ifndef SB_BDEV_MODULE_H
#define SB_BDEV_MODULE_H

#include "sb/bdev.h"
#include "sb/log.h"
#include "sb/thread.h"

#include <sys/queue.h>

#ifdef __cplusplus
extern "C" {
#endif

struct sb_bdev_module {
	const char *name;
	/** Called once on the app reactor at engine start. 0 or -errno. */
	int (*module_init)(void);
	/** Called once on the app reactor at engine stop, after every bdev is gone. */
	void (*module_fini)(void);
	/** Bytes of per-I/O driver context the core reserves in each sb_bdev_io. */
	size_t (*get_ctx_size)(void);
	TAILQ_ENTRY(sb_bdev_module) link;
};

struct sb_bdev_fn_table {
	/**
	 * Free the backend's resources; runs on the app reactor after every
	 * descriptor closed.  Return 0 when done, 1 when finishing
	 * asynchronously with sb_bdev_destruct_done().
	 */
	int (*destruct)(void *ctx);
	/** Run the I/O on ch's reactor; finish with sb_bdev_io_complete(). */
	void (*submit_request)(struct sb_io_channel *ch, struct sb_bdev_io *io);
	bool (*io_type_supported)(void *ctx, enum sb_bdev_io_type type);
	/** Channel of the backend's io_device for the calling reactor. */
	struct sb_io_channel *(*get_io_channel)(void *ctx);
	/** Optional: write a JSON object into buf (driver_specific). */
	void (*dump_info_json)(void *ctx, char *buf, size_t len);
};

/** Core-private part of a bdev; backends never touch it. */
struct sb_bdev_internal;

struct sb_bdev {
	/** Unique name (the core copies it at registration). */
	char *name;
	/** Shown as product_name. */
	const char *product_name;
	/** 16 bytes; all zero = the core generates one. */
	uint8_t uuid[16];
	uint32_t blocklen;
	/** 0 = same as blocklen. */
	uint32_t phys_blocklen;
	uint64_t blockcnt;
	/** Volatile write cache present (FLUSH means something). */
	bool write_cache;
	/** Largest I/O the backend takes at once, in blocks (0 = none); the core splits bigger ones. */
	uint32_t max_transfer_blocks;
	/** Backend context passed to every fn_table call. */
	void *ctxt;
	const struct sb_bdev_fn_table *fn_table;
	struct sb_bdev_module *module;
	/** Owned by the core. */
	struct sb_bdev_internal *internal;
};

enum sb_bdev_io_status_internal { SB_BDEV_IO_PENDING = 1 };

struct sb_bdev_io {
	struct sb_bdev *bdev;
	enum sb_bdev_io_type type;
	struct {
		struct iovec *iovs;
		int iovcnt;
		uint64_t offset_blocks;
		uint64_t num_blocks;
	} u;
	/** Core-private bookkeeping (callbacks, timestamps, pool links). */
	struct sb_bdev_io_internal_fields {
		struct sb_bdev_desc *desc;
		struct sb_io_channel *ch;
		sb_bdev_io_cb cb;
		void *cb_arg;
		uint64_t submit_tsc;
		int status;
		TAILQ_ENTRY(sb_bdev_io) link;
		void *core_ctx;
	} internal;
	/** Backend context, get_ctx_size() bytes, 64-byte aligned. */
	char driver_ctx[] __attribute__((aligned(64)));
};

/** Register a bdev (app reactor). \return 0, -EEXIST (name/alias/uuid taken), -EINVAL. */
int sb_bdev_register(struct sb_bdev *bdev);

/**
 * Hot-remove: every open descriptor gets SB_BDEV_EVENT_REMOVE; when the
 * last one closes, destruct runs, then cb(cb_arg, rc).  App reactor.
 */
void sb_bdev_unregister(struct sb_bdev *bdev, void (*cb)(void *cb_arg, int rc), void *cb_arg);

/** For asynchronous destruct. */
void sb_bdev_destruct_done(struct sb_bdev *bdev, int rc);

/**
 * Change blockcnt (app reactor) and send SB_BDEV_EVENT_RESIZE to every
 * open descriptor.  Shrinking below a claimed size is allowed only when
 * no descriptor is open (-EBUSY otherwise).
 */
int sb_bdev_notify_blockcnt_change(struct sb_bdev *bdev, uint64_t blockcnt);

/** Complete an I/O on the reactor it was submitted on. status 0 or -errno. */
void sb_bdev_io_complete(struct sb_bdev_io *io, int status);

/** Look a bdev up by name, alias or UUID (app reactor). */
struct sb_bdev *sb_bdev_get_by_name(const char *name);

/**
 * Run fn on the app reactor and wait: sb_call_owned() with the default
 * timeout (the one blocking wrapper of every module's control calls).
 * args are copied into the call (put names in arrays, not pointers); fn
 * answers through sb_call_results(done), copied to results on success.
 * \return fn's rc, -SB_EWAITER_GAVE_UP, -ESHUTDOWN (engine not running).
 */
int sb_bdev_app_call(sb_call_fn fn, const void *args, size_t args_size, void *results,
		     size_t results_size);

/**
 * Control path (non-reactor thread): register bdev on the app reactor and wait.
 * The bdev is handed over when the call is queued: on -SB_EWAITER_GAVE_UP
 * it belongs to the engine (it registers late, or stays allocated if that
 * fails), on any other rc the caller still owns it if it failed.
 * \return sb_bdev_register()'s result, -SB_EWAITER_GAVE_UP.
 */
int sb_bdev_ctl_register(struct sb_bdev *bdev);

/**
 * Control path: hot-remove the bdev called name if it belongs to module,
 * and wait until it is destroyed (descriptors closed, destruct done).
 * \return 0, -ENODEV (no such bdev of that module, logged), -EINVAL, -ENOMEM.
 */
int sb_bdev_ctl_unregister(const char *name, struct sb_bdev_module *module);

/** The bdev called name (or alias/UUID) if it belongs to module, else NULL (app reactor). */
struct sb_bdev *sb_bdev_get_by_name_module(const char *name, const struct sb_bdev_module *module);

/**
 * Check a geometry the way sb_bdev_register() does (logs why it is bad).
 * \return 0 or -EINVAL (block size zero / not a power of two / not a
 *         multiple of 512, zero blocks, byte size overflowing 64 bits).
 */
int sb_bdev_check_geometry(const char *name, uint32_t block_size, uint64_t num_blocks);

/** Parse "8-4-4-4-12" hex text into 16 bytes. \return 0 or -EINVAL. */
int sb_uuid_parse(const char *str, uint8_t uuid[16]);

/** The bdev's UUID as text (set at registration). */
const char *sb_bdev_get_uuid_str(const struct sb_bdev *bdev);

/** Registration of a module; one line per backend. */
void sb_bdev_module_list_add(struct sb_bdev_module *module);
#define SB_BDEV_MODULE_REGISTER(_name, _module)                                              \
	static void __attribute__((constructor)) _sb_bdev_module_register_##_name(void)      \
	{                                                                                     \
		sb_bdev_module_list_add(_module);                                             \
	}

#ifdef __cplusplus
}
#endif
#endif /* SB_BDEV_MODULE_H */
