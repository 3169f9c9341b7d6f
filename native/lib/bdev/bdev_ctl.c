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

/*
 * Every call below goes through sb_bdev_app_call() (sb_call_owned()): its
 * arguments, names included, are copied into the call, its answer comes
 * back through the call's results area, and a caller whose wait gave up
 * (-SB_EWAITER_GAVE_UP) has nothing the app reactor could still write.
 */

/* Copy a name into a call's arguments; a name that cannot fit names no bdev. */
static int
_ctl_name(char dst[SB_BDEV_NAME_MAX], const char *name, int too_long_rc)
{
	size_t len = strlen(name);

	if (len >= SB_BDEV_NAME_MAX) {
		SB_ERRLOG("bdev name longer than %d bytes\n", SB_BDEV_NAME_MAX - 1);
		return too_long_rc;
	}
	memcpy(dst, name, len + 1);
	return 0;
}

struct ctl_name_args {
	char name[SB_BDEV_NAME_MAX];
};

static void
_ctl_get_info(void *arg, struct sb_completion *done)
{
	struct ctl_name_args *args = arg;
	struct sb_bdev *bdev;
	int rc = 0;

	pthread_mutex_lock(&g_bdev_lock);
	bdev = _bdev_lookup_locked(args->name);
	if (bdev == NULL) {
		rc = -ENODEV;
	} else {
		_bdev_fill_info(bdev, sb_call_results(done));
	}
	pthread_mutex_unlock(&g_bdev_lock);
	sb_complete(done, rc);
}

int
sb_bdev_ctl_get_info(const char *name, struct sb_bdev_info *info)
{
	struct ctl_name_args args;
	int rc;

	if (name == NULL || info == NULL) {
		return -EINVAL;
	}
	rc = _ctl_name(args.name, name, -ENODEV);
	if (rc == 0) {
		rc = sb_bdev_app_call(_ctl_get_info, &args, sizeof(args), info, sizeof(*info));
	}
	if (rc == -ENODEV) {
		SB_INFOLOG("bdev %s not found\n", name);
	}
	return rc;
}

struct ctl_list_results {
	uint32_t count;
	struct sb_bdev_info info[];
};

struct ctl_list_walk {
	struct ctl_list_results *res;
	uint32_t max;
};

static void
_ctl_list_one(struct sb_bdev *bdev, void *arg)
{
	struct ctl_list_walk *w = arg;

	if (w->res->count < w->max) {
		_bdev_fill_info(bdev, &w->res->info[w->res->count]);
	}
	w->res->count++;
}

static void
_ctl_list(void *arg, struct sb_completion *done)
{
	struct ctl_list_walk w = {.res = sb_call_results(done), .max = *(uint32_t *)arg};

	_bdev_foreach(_ctl_list_one, &w);
	sb_complete(done, 0);
}

int
sb_bdev_ctl_list(struct sb_bdev_info *out, uint32_t max, uint32_t *count)
{
	struct ctl_list_results *res;
	size_t size;
	int rc;

	if (count == NULL) {
		return -EINVAL;
	}
	if (out == NULL) {
		max = 0;
	}
	size = sizeof(*res) + (size_t)max * sizeof(res->info[0]);
	res = calloc(1, size);
	if (res == NULL) {
		return -ENOMEM;
	}
	rc = sb_bdev_app_call(_ctl_list, &max, sizeof(max), res, size);
	*count = rc == 0 ? res->count : 0;
	if (rc == 0 && max > 0) {
		memcpy(out, res->info, (size_t)(res->count < max ? res->count : max) *
		       sizeof(res->info[0]));
	}
	free(res);
	return rc;
}

/* ---- iostat ---- */

static void
_ctl_get_iostat(void *arg, struct sb_completion *done)
{
	struct ctl_name_args *args = arg;
	struct sb_bdev *bdev = sb_bdev_get_by_name(args->name);

	if (bdev == NULL || bdev->internal->destructing) {
		sb_complete(done, -ENODEV);
		return;
	}
	/* The walk writes into the call's results area, never the caller's stat. */
	_bdev_iostat_collect(bdev, sb_call_results(done), sb_call_done_cb, done);
}

int
sb_bdev_ctl_get_iostat(const char *name, struct sb_bdev_iostat *stat)
{
	struct ctl_name_args args;
	int rc;

	if (name == NULL || stat == NULL) {
		return -EINVAL;
	}
	rc = _ctl_name(args.name, name, -ENODEV);
	if (rc != 0) {
		return rc;
	}
	return sb_bdev_app_call(_ctl_get_iostat, &args, sizeof(args), stat, sizeof(*stat));
}

/* ---- QoS and aliases ---- */

struct ctl_qos_args {
	char name[SB_BDEV_NAME_MAX];
	uint64_t limits[SB_QOS_NUM_LIMITS];
};

static void
_ctl_set_qos(void *arg, struct sb_completion *done)
{
	struct ctl_qos_args *args = arg;
	struct sb_bdev *bdev = sb_bdev_get_by_name(args->name);

	if (bdev == NULL || bdev->internal->removing) {
		SB_ERRLOG("set QoS: no bdev %s\n", args->name);
		sb_complete(done, -ENODEV);
		return;
	}
	sb_complete(done, _bdev_qos_set(bdev, args->limits));
}

int
sb_bdev_ctl_set_qos(const char *name, const uint64_t limits[SB_QOS_NUM_LIMITS])
{
	struct ctl_qos_args args;
	int rc;

	if (name == NULL || limits == NULL) {
		return -EINVAL;
	}
	rc = _ctl_name(args.name, name, -ENODEV);
	if (rc != 0) {
		return rc;
	}
	memcpy(args.limits, limits, sizeof(args.limits));
	return sb_bdev_app_call(_ctl_set_qos, &args, sizeof(args), NULL, 0);
}

struct ctl_alias_args {
	char name[SB_BDEV_NAME_MAX];
	char alias[SB_BDEV_NAME_MAX];
	bool del;
};

static void
_ctl_alias(void *arg, struct sb_completion *done)
{
	struct ctl_alias_args *args = arg;
	struct sb_bdev *bdev = sb_bdev_get_by_name(args->name);

	if (bdev == NULL) {
		SB_ERRLOG("alias: no bdev %s\n", args->name);
		sb_complete(done, -ENODEV);
		return;
	}
	sb_complete(done, args->del ? _bdev_alias_del(bdev, args->alias)
				    : _bdev_alias_add(bdev, args->alias));
}

static int
_ctl_alias_call(const char *name, const char *alias, bool del)
{
	struct ctl_alias_args args = {.del = del};
	int rc;

	if (name == NULL || alias == NULL) {
		return -EINVAL;
	}
	rc = _ctl_name(args.name, name, -ENODEV);
	if (rc == 0) {
		rc = _ctl_name(args.alias, alias, del ? -ENOENT : -EINVAL);
	}
	if (rc != 0) {
		return rc;
	}
	return sb_bdev_app_call(_ctl_alias, &args, sizeof(args), NULL, 0);
}

int
sb_bdev_ctl_alias_add(const char *name, const char *alias)
{
	return _ctl_alias_call(name, alias, false);
}

int
sb_bdev_ctl_alias_del(const char *name, const char *alias)
{
	return _ctl_alias_call(name, alias, true);
}

/* ---- module create/delete helpers ---- */

static void
_ctl_register(void *arg, struct sb_completion *done)
{
	sb_complete(done, sb_bdev_register(*(struct sb_bdev **)arg));
}

int
sb_bdev_ctl_register(struct sb_bdev *bdev)
{
	/* The bdev itself is handed over: see bdev_module.h for who owns it after. */
	return sb_bdev_app_call(_ctl_register, &bdev, sizeof(bdev), NULL, 0);
}

struct sb_bdev *
sb_bdev_get_by_name_module(const char *name, const struct sb_bdev_module *module)
{
	struct sb_bdev *bdev = sb_bdev_get_by_name(name);

	return (bdev != NULL && bdev->module == module) ? bdev : NULL;
}

struct ctl_unregister_args {
	char name[SB_BDEV_NAME_MAX];
	struct sb_bdev_module *module;
};

static void
_ctl_unregister(void *arg, struct sb_completion *done)
{
	struct ctl_unregister_args *u = arg;
	struct sb_bdev *bdev = sb_bdev_get_by_name_module(u->name, u->module);

	if (bdev == NULL) {
		SB_ERRLOG("no %s bdev %s\n", u->module->name, u->name);
		sb_complete(done, -ENODEV);
		return;
	}
	sb_bdev_unregister(bdev, sb_call_done_cb, done);
}

int
sb_bdev_ctl_unregister(const char *name, struct sb_bdev_module *module)
{
	struct ctl_unregister_args u = {.module = module};
	int rc;

	if (name == NULL || module == NULL) {
		return -EINVAL;
	}
	rc = _ctl_name(u.name, name, -ENODEV);
	if (rc != 0) {
		SB_ERRLOG("no %s bdev %s\n", module->name, name);
		return rc;
	}
	return sb_bdev_app_call(_ctl_unregister, &u, sizeof(u), NULL, 0);
}
