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

struct ctl_stat_ctx {
	struct sb_bdev_stat sum;
	uint64_t queue_depth;
	struct sb_bdev_iostat *out;
	char bdev_name[SB_BDEV_NAME_MAX];
	void (*cb)(void *cb_arg, int rc);
	void *cb_arg;
};

static void
_ctl_stat_channel(struct sb_io_channel *ch, void *arg)
{
	struct ctl_stat_ctx *ctx = arg;
	struct sb_bdev_channel *bch = sb_io_channel_get_ctx(ch);
	struct sb_bdev_stat st = bch->stat;
	uint64_t dt;

	/* Count the busy time up to now, not just up to the last queue-depth change. */
	if (bch->queue_depth > 0) {
		dt = sb_get_ticks() - bch->qd_change_tsc;
		st.io_time_ticks += dt;
		st.weighted_io_time_ticks += dt * bch->queue_depth;
	}
	_bdev_stat_add(&ctx->sum, &st);
	ctx->queue_depth += bch->queue_depth;
}

static uint64_t
_min_or_zero(uint64_t v)
{
	return v == UINT64_MAX ? 0 : v;
}

static void
_ctl_stat_done(void *arg, int rc)
{
	struct ctl_stat_ctx *ctx = arg;
	struct sb_bdev_iostat *o = ctx->out;
	struct sb_bdev_stat *s = &ctx->sum;
	uint64_t ticks_per_ms = sb_get_ticks_hz() / 1000;

	if (ticks_per_ms == 0) {
		ticks_per_ms = 1;
	}
	memset(o, 0, sizeof(*o));
	snprintf(o->name, sizeof(o->name), "%s", ctx->bdev_name);
	o->bytes_read = s->bytes_read;
	o->num_read_ops = s->num_read_ops;
	o->bytes_written = s->bytes_written;
	o->num_write_ops = s->num_write_ops;
	o->bytes_unmapped = s->bytes_unmapped;
	o->num_unmap_ops = s->num_unmap_ops;
	o->read_latency_ticks = s->read_latency_ticks;
	o->max_read_latency_ticks = s->max_read_latency_ticks;
	o->min_read_latency_ticks = _min_or_zero(s->min_read_latency_ticks);
	o->write_latency_ticks = s->write_latency_ticks;
	o->max_write_latency_ticks = s->max_write_latency_ticks;
	o->min_write_latency_ticks = _min_or_zero(s->min_write_latency_ticks);
	o->unmap_latency_ticks = s->unmap_latency_ticks;
	o->max_unmap_latency_ticks = s->max_unmap_latency_ticks;
	o->min_unmap_latency_ticks = _min_or_zero(s->min_unmap_latency_ticks);
	o->num_write_zeroes_ops = s->num_write_zeroes_ops;
	o->bytes_write_zeroes = s->bytes_write_zeroes;
	o->num_flush_ops = s->num_flush_ops;
	o->num_reset_ops = s->num_reset_ops;
	o->num_io_errors = s->num_io_errors;
	o->queue_depth = ctx->queue_depth;
	/* Summed over channels: overlapping busy time of two reactors counts twice. */
	o->io_time = s->io_time_ticks / ticks_per_ms;
	o->weighted_io_time = s->weighted_io_time_ticks / ticks_per_ms;
	ctx->cb(ctx->cb_arg, rc);
	free(ctx);
}

void
_bdev_iostat_collect(struct sb_bdev *bdev, struct sb_bdev_iostat *out,
		     void (*cb)(void *cb_arg, int rc), void *cb_arg)
{
	struct ctl_stat_ctx *ctx = calloc(1, sizeof(*ctx));

	if (ctx == NULL) {
		cb(cb_arg, -ENOMEM);
		return;
	}
	ctx->out = out;
	ctx->cb = cb;
	ctx->cb_arg = cb_arg;
	pthread_mutex_lock(&g_bdev_lock);
	ctx->sum = bdev->internal->stat_gone;
	snprintf(ctx->bdev_name, sizeof(ctx->bdev_name), "%s", bdev->internal->name);
	pthread_mutex_unlock(&g_bdev_lock);
	sb_for_each_channel(bdev, _ctl_stat_channel, ctx, _ctl_stat_done);
}

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
