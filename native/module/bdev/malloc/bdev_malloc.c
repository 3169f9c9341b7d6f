/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Memory-backed bdevs: calloc'd memory, or MAP_HUGETLB pages when asked.
 * I/O is a memcpy on the submitting reactor; the core defers the inline
 * completion so the caller never sees it inside its submit call.
 */
#include "bdev_malloc.h"

#include "sb/bdev_module.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define HUGEPAGE_2M (2ULL * 1024 * 1024)

struct malloc_disk {
	struct sb_bdev bdev;
	char name[SB_BDEV_NAME_MAX];
	uint8_t *buf;
	size_t len;     /* bytes mapped/allocated */
	bool hugepages;
};

static struct sb_bdev_module g_malloc_module;
/* Malloc I/O needs no per-reactor state, but the core wants a channel per reactor. */
static int g_malloc_io_device;

static int
_malloc_destruct(void *ctx)
{
	struct malloc_disk *d = ctx;

	if (d->hugepages) {
		munmap(d->buf, d->len);
	} else {
		free(d->buf);
	}
	free(d);
	return 0;
}

static void
_malloc_copy(struct sb_bdev_io *io, uint8_t *base, bool to_disk)
{
	int i;

	for (i = 0; i < io->u.iovcnt; i++) {
		if (to_disk) {
			memcpy(base, io->u.iovs[i].iov_base, io->u.iovs[i].iov_len);
		} else {
			memcpy(io->u.iovs[i].iov_base, base, io->u.iovs[i].iov_len);
		}
		base += io->u.iovs[i].iov_len;
	}
}

static void
_malloc_submit(struct sb_io_channel *ch, struct sb_bdev_io *io)
{
	struct malloc_disk *d = io->bdev->ctxt;
	uint64_t off = io->u.offset_blocks * d->bdev.blocklen;
	uint64_t len = io->u.num_blocks * d->bdev.blocklen;

	switch (io->type) {
	case SB_BDEV_IO_READ:
		_malloc_copy(io, d->buf + off, false);
		break;
	case SB_BDEV_IO_WRITE:
		_malloc_copy(io, d->buf + off, true);
		break;
	case SB_BDEV_IO_UNMAP:
	case SB_BDEV_IO_WRITE_ZEROES:
		/* Unmapped blocks read back as zeroes, like SPDK's malloc. */
		memset(d->buf + off, 0, len);
		break;
	case SB_BDEV_IO_FLUSH:
	case SB_BDEV_IO_RESET:
		break;
	default:
		sb_bdev_io_complete(io, -EINVAL);
		return;
	}
	sb_bdev_io_complete(io, 0);
}

static bool
_malloc_io_type_supported(void *ctx, enum sb_bdev_io_type type)
{
	return type < SB_BDEV_IO_NUM_TYPES;
}

static struct sb_io_channel *
_malloc_get_io_channel(void *ctx)
{
	return sb_get_io_channel(&g_malloc_io_device);
}

static void
_malloc_dump_info_json(void *ctx, char *buf, size_t len)
{
	struct malloc_disk *d = ctx;

	snprintf(buf, len, "{\"malloc\": {\"hugepages\": %s}}", d->hugepages ? "true" : "false");
}

static const struct sb_bdev_fn_table g_malloc_fn_table = {
	.destruct = _malloc_destruct,
	.submit_request = _malloc_submit,
	.io_type_supported = _malloc_io_type_supported,
	.get_io_channel = _malloc_get_io_channel,
	.dump_info_json = _malloc_dump_info_json,
};

static int
_malloc_ch_create(void *io_device, void *ctx_buf)
{
	return 0;
}

static void
_malloc_ch_destroy(void *io_device, void *ctx_buf)
{
}

static int
_malloc_init(void)
{
	sb_io_device_register(&g_malloc_io_device, _malloc_ch_create, _malloc_ch_destroy, 0,
			      "bdev_malloc");
	return 0;
}

static void
_malloc_io_device_gone(void *io_device)
{
}

static void
_malloc_fini(void)
{
	sb_io_device_unregister(&g_malloc_io_device, _malloc_io_device_gone);
}

int
sb_bdev_malloc_create(const struct sb_malloc_opts *opts)
{
	struct malloc_disk *d = NULL;
	uint64_t bytes;
	int rc;

	if (opts == NULL || opts->name == NULL || opts->name[0] == '\0' ||
	    strlen(opts->name) >= SB_BDEV_NAME_MAX) {
		SB_ERRLOG("malloc bdev: a name of 1..%d bytes is required\n", SB_BDEV_NAME_MAX - 1);
		return -EINVAL;
	}
	rc = sb_bdev_check_geometry(opts->name, opts->block_size, opts->num_blocks);
	if (rc != 0) {
		return rc;
	}
	bytes = opts->num_blocks * opts->block_size;
	if (bytes > SIZE_MAX - HUGEPAGE_2M) {
		SB_ERRLOG("malloc bdev %s: %lu bytes do not fit in memory\n", opts->name,
			  (unsigned long)bytes);
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		return -ENOMEM;
	}
	if (opts->uuid != NULL && opts->uuid[0] != '\0' &&
	    sb_uuid_parse(opts->uuid, d->bdev.uuid) != 0) {
		SB_ERRLOG("malloc bdev %s: bad uuid '%s' (want 8-4-4-4-12 hex)\n", opts->name,
			  opts->uuid);
		rc = -EINVAL;
		goto out;
	}
	/* Allocate on the caller's thread: a big calloc must not stall the app reactor. */
	if (opts->hugepages) {
		d->len = (bytes + HUGEPAGE_2M - 1) & ~(HUGEPAGE_2M - 1);
		d->buf = mmap(NULL, d->len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		if (d->buf == MAP_FAILED) {
			d->buf = NULL;
			SB_ERRLOG("malloc bdev %s: no %lu bytes of free 2 MiB hugepages\n", opts->name,
				  (unsigned long)d->len);
			rc = -ENOMEM;
			goto out;
		}
		d->hugepages = true;
	} else {
		d->len = bytes;
		d->buf = calloc(1, bytes);
		if (d->buf == NULL) {
			SB_ERRLOG("malloc bdev %s: cannot allocate %lu bytes\n", opts->name,
				  (unsigned long)bytes);
			rc = -ENOMEM;
			goto out;
		}
	}
	snprintf(d->name, sizeof(d->name), "%s", opts->name);
	d->bdev.name = d->name;
	d->bdev.product_name = "Malloc disk";
	d->bdev.blocklen = opts->block_size;
	d->bdev.phys_blocklen = opts->physical_block_size;
	d->bdev.blockcnt = opts->num_blocks;
	d->bdev.ctxt = d;
	d->bdev.fn_table = &g_malloc_fn_table;
	d->bdev.module = &g_malloc_module;
	rc = sb_bdev_ctl_register(&d->bdev);
	if (rc == -SB_EWAITER_GAVE_UP) {
		d = NULL; /* handed to the engine: it may still register */
	}
out:
	if (rc != 0 && d != NULL) {
		if (d->buf != NULL) {
			if (d->hugepages) {
				munmap(d->buf, d->len);
			} else {
				free(d->buf);
			}
		}
		free(d);
	}
	return rc;
}

int
sb_bdev_malloc_delete(const char *name)
{
	return sb_bdev_ctl_unregister(name, &g_malloc_module);
}

static size_t
_malloc_ctx_size(void)
{
	return 0;
}

static struct sb_bdev_module g_malloc_module = {
	.name = "malloc",
	.module_init = _malloc_init,
	.module_fini = _malloc_fini,
	.get_ctx_size = _malloc_ctx_size,
};
SB_BDEV_MODULE_REGISTER(malloc, &g_malloc_module)
