/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Null bdevs (SPDK's bdev_null): reads complete without touching the
 * caller's buffers, writes are dropped.  For benchmarks of everything above
 * the backend.
 */
#include "bdev_null.h"

#include "sb/bdev_module.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

struct null_disk {
	struct sb_bdev bdev;
	char name[SB_BDEV_NAME_MAX];
};

static struct sb_bdev_module g_null_module;
static int g_null_io_device;

static int
_null_destruct(void *ctx)
{
	free(ctx);
	return 0;
}

static void
_null_submit(struct sb_io_channel *ch, struct sb_bdev_io *io)
{
	sb_bdev_io_complete(io, 0);
}

static bool
_null_io_type_supported(void *ctx, enum sb_bdev_io_type type)
{
	/* Nothing is ever cached, so nothing to flush (as SPDK's null bdev). */
	return type < SB_BDEV_IO_NUM_TYPES && type != SB_BDEV_IO_FLUSH;
}

static struct sb_io_channel *
_null_get_io_channel(void *ctx)
{
	return sb_get_io_channel(&g_null_io_device);
}

static const struct sb_bdev_fn_table g_null_fn_table = {
	.destruct = _null_destruct,
	.submit_request = _null_submit,
	.io_type_supported = _null_io_type_supported,
	.get_io_channel = _null_get_io_channel,
};

static int
_null_ch_create(void *io_device, void *ctx_buf)
{
	return 0;
}

static void
_null_ch_destroy(void *io_device, void *ctx_buf)
{
}

static int
_null_init(void)
{
	sb_io_device_register(&g_null_io_device, _null_ch_create, _null_ch_destroy, 0,
			      "bdev_null");
	return 0;
}

static void
_null_io_device_gone(void *io_device)
{
}

static void
_null_fini(void)
{
	sb_io_device_unregister(&g_null_io_device, _null_io_device_gone);
}

int
sb_bdev_null_create(const struct sb_null_opts *opts)
{
	struct null_disk *d;
	int rc;

	if (opts == NULL || opts->name == NULL || opts->name[0] == '\0' ||
	    strlen(opts->name) >= SB_BDEV_NAME_MAX) {
		SB_ERRLOG("null bdev: a name of 1..%d bytes is required\n", SB_BDEV_NAME_MAX - 1);
		return -EINVAL;
	}
	rc = sb_bdev_check_geometry(opts->name, opts->block_size, opts->num_blocks);
	if (rc != 0) {
		return rc;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		return -ENOMEM;
	}
	if (opts->uuid != NULL && opts->uuid[0] != '\0' &&
	    sb_uuid_parse(opts->uuid, d->bdev.uuid) != 0) {
		SB_ERRLOG("null bdev %s: bad uuid '%s' (want 8-4-4-4-12 hex)\n", opts->name,
			  opts->uuid);
		free(d);
		return -EINVAL;
	}
	snprintf(d->name, sizeof(d->name), "%s", opts->name);
	d->bdev.name = d->name;
	d->bdev.product_name = "Null disk";
	d->bdev.blocklen = opts->block_size;
	d->bdev.phys_blocklen = opts->physical_block_size;
	d->bdev.blockcnt = opts->num_blocks;
	d->bdev.ctxt = d;
	d->bdev.fn_table = &g_null_fn_table;
	d->bdev.module = &g_null_module;
	rc = sb_bdev_ctl_register(&d->bdev);
	if (rc != 0 && rc != -SB_EWAITER_GAVE_UP) {
		free(d); /* after a gave-up wait d belongs to the engine */
	}
	return rc;
}

static struct sb_bdev *
_null_find(const char *name)
{
	struct sb_bdev *bdev = sb_bdev_get_by_name(name);

	if (bdev == NULL || bdev->module != &g_null_module) {
		SB_ERRLOG("no null bdev %s\n", name);
		return NULL;
	}
	return bdev;
}

int
sb_bdev_null_delete(const char *name)
{
	return sb_bdev_ctl_unregister(name, &g_null_module);
}

void
sb_bdev_null_resize_async(const char *name, uint64_t new_size_mb,
			  void (*cb)(void *cb_arg, int rc), void *cb_arg)
{
	struct sb_bdev *bdev = _null_find(name);
	uint64_t blocks;

	if (bdev == NULL) {
		cb(cb_arg, -ENODEV);
		return;
	}
	if (new_size_mb > UINT64_MAX / (1024 * 1024)) {
		SB_ERRLOG("null bdev %s: %lu MiB overflows\n", name, (unsigned long)new_size_mb);
		cb(cb_arg, -EINVAL);
		return;
	}
	blocks = new_size_mb * 1024 * 1024 / bdev->blocklen;
	/* SPDK's bdev_null_resize only grows. */
	if (blocks < sb_bdev_get_num_blocks(bdev)) {
		SB_ERRLOG("null bdev %s: the new size must not be smaller than the current one\n",
			  name);
		cb(cb_arg, -EINVAL);
		return;
	}
	if (blocks == sb_bdev_get_num_blocks(bdev)) {
		cb(cb_arg, 0);
		return;
	}
	cb(cb_arg, sb_bdev_notify_blockcnt_change(bdev, blocks));
}

struct null_resize_args {
	char name[SB_BDEV_NAME_MAX];
	uint64_t new_size_mb;
};

static void
_null_resize_call(void *arg, struct sb_completion *done)
{
	struct null_resize_args *args = arg;

	sb_bdev_null_resize_async(args->name, args->new_size_mb, sb_call_done_cb, done);
}

int
sb_bdev_null_resize(const char *name, uint64_t new_size_mb)
{
	struct null_resize_args args = {.new_size_mb = new_size_mb};

	if (name == NULL) {
		return -EINVAL;
	}
	if (strlen(name) >= sizeof(args.name)) {
		SB_ERRLOG("no null bdev %s\n", name);
		return -ENODEV;
	}
	snprintf(args.name, sizeof(args.name), "%s", name);
	return sb_bdev_app_call(_null_resize_call, &args, sizeof(args), NULL, 0);
}

static size_t
_null_ctx_size(void)
{
	return 0;
}

static struct sb_bdev_module g_null_module = {
	.name = "null",
	.module_init = _null_init,
	.module_fini = _null_fini,
	.get_ctx_size = _null_ctx_size,
};
SB_BDEV_MODULE_REGISTER(null, &g_null_module)
