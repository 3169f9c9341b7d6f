/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Control path of the bdev layer (sb_bdev_ctl_*): synchronous calls from
 * non-reactor threads (Python) that run their work on the app reactor.
 */
#include "bdev_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t
sb_bdev_ticks_hz(void)
{
	return sb_get_ticks_hz();
}

/* g_bdev_lock held. */
static void
_bdev_fill_info(struct sb_bdev *bdev, struct sb_bdev_info *info)
{
	struct sb_bdev_internal *in = bdev->internal;
	int i;

	memset(info, 0, sizeof(*info));
	snprintf(info->name, sizeof(info->name), "%s", in->name);
	for (i = 0; i < (int)in->num_aliases; i++) {
		snprintf(info->aliases[i], sizeof(info->aliases[i]), "%s", in->aliases[i]);
	}
	info->num_aliases = in->num_aliases;
	snprintf(info->uuid, sizeof(info->uuid), "%s", in->uuid_str);
	snprintf(info->product_name, sizeof(info->product_name), "%s",
		 bdev->product_name ? bdev->product_name : "");
	snprintf(info->module, sizeof(info->module), "%s", bdev->module->name);
	info->block_size = bdev->blocklen;
	info->physical_block_size = sb_bdev_get_physical_block_size(bdev);
	info->num_blocks = sb_bdev_get_num_blocks(bdev);
	info->claimed = in->claim_desc != NULL;
	snprintf(info->claimed_by, sizeof(info->claimed_by), "%s", in->claimed_by);
	for (i = 0; i < SB_BDEV_IO_NUM_TYPES; i++) {
		info->supported_io_types[i] = sb_bdev_io_type_supported(bdev, i);
	}
	memcpy(info->qos_limits, in->qos_limits, sizeof(info->qos_limits));
	info->open_descs = in->num_descs;
	if (bdev->fn_table->dump_info_json != NULL) {
		bdev->fn_table->dump_info_json(bdev->ctxt, info->driver_specific,
					       sizeof(info->driver_specific));
	} else {
		snprintf(info->driver_specific, sizeof(info->driver_specific), "{}");
	}
}

struct ctl_info_ctx {
	const char *name;
	struct sb_bdev_info *info;
	uint32_t max;
	uint32_t count;
};

static void
_ctl_get_info(void *arg, struct sb_completion *done)
{
	struct ctl_info_ctx *ctx = arg;
	struct sb_bdev *bdev;
	int rc = 0;

	pthread_mutex_lock(&g_bdev_lock);
	bdev = _bdev_lookup_locked(ctx->name);
	if (bdev == NULL) {
		rc = -ENODEV;
	} else {
		_bdev_fill_info(bdev, ctx->info);
	}
	pthread_mutex_unlock(&g_bdev_lock);
	sb_complete(done, rc);
}

int
sb_bdev_ctl_get_info(const char *name, struct sb_bdev_info *info)
{
	struct ctl_info_ctx ctx = {.name = name, .info = info};
	int rc;

	if (name == NULL || info == NULL) {
		return -EINVAL;
	}
	rc = sb_bdev_app_call(_ctl_get_info, &ctx);
	if (rc == -ENODEV) {
		SB_INFOLOG("bdev %s not found\n", name);
	}
	return rc;
}

static void
_ctl_list_one(struct sb_bdev *bdev, void *arg)
{
	struct ctl_info_ctx *ctx = arg;

	if (ctx->count < ctx->max) {
		_bdev_fill_info(bdev, &ctx->info[ctx->count]);
	}
	ctx->count++;
}

static void
_ctl_list(void *arg, struct sb_completion *done)
{
	_bdev_foreach(_ctl_list_one, arg);
	sb_complete(done, 0);
}

int
sb_bdev_ctl_list(struct sb_bdev_info *out, uint32_t max, uint32_t *count)
{
	struct ctl_info_ctx ctx = {.info = out, .max = out ? max : 0};
	int rc;

	if (count == NULL) {
		return -EINVAL;
	}
	rc = sb_bdev_app_call(_ctl_list, &ctx);
	*count = ctx.count;
	return rc;
}

/* ---- iostat ---- */

struct ctl_iostat_call {
	const char *name;
	struct sb_bdev_iostat *out;
};

static void
_ctl_iostat_done(void *cb_arg, int rc)
{
	sb_complete(cb_arg, rc);
}

static void
_ctl_get_iostat(void *arg, struct sb_completion *done)
{
	struct ctl_iostat_call *call = arg;
	struct sb_bdev *bdev = sb_bdev_get_by_name(call->name);

	if (bdev == NULL || bdev->internal->destructing) {
		sb_complete(done, -ENODEV);
		return;
	}
	_bdev_iostat_collect(bdev, call->out, _ctl_iostat_done, done);
}

int
sb_bdev_ctl_get_iostat(const char *name, struct sb_bdev_iostat *stat)
{
	struct ctl_iostat_call *call;
	int rc;

	if (name == NULL || stat == NULL) {
		return -EINVAL;
	}
	call = calloc(1, sizeof(*call));
	if (call == NULL) {
		return -ENOMEM;
	}
	call->name = name;
	call->out = stat;
	rc = sb_bdev_app_call(_ctl_get_iostat, call);
	if (rc == -ETIMEDOUT) {
		return rc; /* the walk may still write: leak call deliberately */
	}
	free(call);
	return rc;
}

/* ---- QoS and aliases ---- */

struct ctl_qos_ctx {
	const char *name;
	const char *alias;
	const uint64_t *limits;
	bool del;
};

static void
_ctl_set_qos(void *arg, struct sb_completion *done)
{
	struct ctl_qos_ctx *ctx = arg;
	struct sb_bdev *bdev = sb_bdev_get_by_name(ctx->name);

	if (bdev == NULL || bdev->internal->removing) {
		SB_ERRLOG("set QoS: no bdev %s\n", ctx->name);
		sb_complete(done, -ENODEV);
		return;
	}
	sb_complete(done, _bdev_qos_set(bdev, ctx->limits));
}

int
sb_bdev_ctl_set_qos(const char *name, const uint64_t limits[SB_QOS_NUM_LIMITS])
{
	struct ctl_qos_ctx ctx = {.name = name, .limits = limits};

	if (name == NULL || limits == NULL) {
		return -EINVAL;
	}
	return sb_bdev_app_call(_ctl_set_qos, &ctx);
}

static void
_ctl_alias(void *arg, struct sb_completion *done)
{
	struct ctl_qos_ctx *ctx = arg;
	struct sb_bdev *bdev = sb_bdev_get_by_name(ctx->name);

	if (bdev == NULL) {
		SB_ERRLOG("alias: no bdev %s\n", ctx->name);
		sb_complete(done, -ENODEV);
		return;
	}
	sb_complete(done, ctx->del ? _bdev_alias_del(bdev, ctx->alias)
				   : _bdev_alias_add(bdev, ctx->alias));
}

int
sb_bdev_ctl_alias_add(const char *name, const char *alias)
{
	struct ctl_qos_ctx ctx = {.name = name, .alias = alias};

	if (name == NULL || alias == NULL) {
		return -EINVAL;
	}
	return sb_bdev_app_call(_ctl_alias, &ctx);
}

int
sb_bdev_ctl_alias_del(const char *name, const char *alias)
{
	struct ctl_qos_ctx ctx = {.name = name, .alias = alias, .del = true};

	if (name == NULL || alias == NULL) {
		return -EINVAL;
	}
	return sb_bdev_app_call(_ctl_alias, &ctx);
}

/* ---- module create/delete helpers ---- */

static void
_ctl_register(void *arg, struct sb_completion *done)
{
	sb_complete(done, sb_bdev_register(arg));
}

int
sb_bdev_ctl_register(struct sb_bdev *bdev)
{
	return sb_bdev_app_call(_ctl_register, bdev);
}

struct sb_bdev *
sb_bdev_get_by_name_module(const char *name, const struct sb_bdev_module *module)
{
	struct sb_bdev *bdev = sb_bdev_get_by_name(name);

	return (bdev != NULL && bdev->module == module) ? bdev : NULL;
}

struct ctl_unregister {
	char *name;
	struct sb_bdev_module *module;
};

static void
_ctl_unregister_done(void *cb_arg, int rc)
{
	sb_complete(cb_arg, rc);
}

static void
_ctl_unregister(void *arg, struct sb_completion *done)
{
	struct ctl_unregister *u = arg;
	struct sb_bdev *bdev = sb_bdev_get_by_name_module(u->name, u->module);

	if (bdev == NULL) {
		SB_ERRLOG("no %s bdev %s\n", u->module->name, u->name);
		sb_complete(done, -ENODEV);
		return;
	}
	sb_bdev_unregister(bdev, _ctl_unregister_done, done);
}

int
sb_bdev_ctl_unregister(const char *name, struct sb_bdev_module *module)
{
	struct ctl_unregister *u;
	int rc;

	if (name == NULL || module == NULL) {
		return -EINVAL;
	}
	/* The removal may outlive a timed-out wait: give it its own copy of the name. */
	u = calloc(1, sizeof(*u));
	if (u == NULL || (u->name = strdup(name)) == NULL) {
		free(u);
		return -ENOMEM;
	}
	u->module = module;
	rc = sb_bdev_app_call(_ctl_unregister, u);
	if (rc != -ETIMEDOUT) {
		free(u->name);
		free(u);
	}
	return rc;
}
