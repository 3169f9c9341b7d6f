/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bdev registry and lifecycle: register/unregister, name / alias / UUID
 * lookup, descriptors, claims and events.
 *
 * The registry belongs to the app reactor (reactor 0): every change runs
 * there.  Descriptors can be opened and closed on any reactor, so lookups
 * and the descriptor lists also take g_bdev_lock (never on the I/O path).
 */
#include "bdev_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

pthread_mutex_t g_bdev_lock = PTHREAD_MUTEX_INITIALIZER;
static TAILQ_HEAD(sb_bdev_list_head, sb_bdev) g_bdevs = TAILQ_HEAD_INITIALIZER(g_bdevs);

struct sb_bdev_event {
	struct sb_bdev_desc *desc;
	enum sb_bdev_event_type type;
};

/* ---- UUIDs ---- */

static void
_uuid_generate(uint8_t uuid[16])
{
	size_t got = 0;

	while (got < 16) {
		ssize_t n = getrandom(uuid + got, 16 - got, 0);

		if (n <= 0) {
			/* getrandom() on Linux >= 3.17 only fails on EINTR; fall back anyway. */
			for (; got < 16; got++) {
				uuid[got] = (uint8_t)rand();
			}
			break;
		}
		got += (size_t)n;
	}
	uuid[6] = (uuid[6] & 0x0f) | 0x40; /* RFC 4122 §4.4: version 4 */
	uuid[8] = (uuid[8] & 0x3f) | 0x80; /* variant 10 */
}

static void
_uuid_fmt(const uint8_t u[16], char out[SB_UUID_STR_LEN])
{
	snprintf(out, SB_UUID_STR_LEN,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
		 u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
		 u[15]);
}

int
sb_uuid_parse(const char *str, uint8_t uuid[16])
{
	int i, n = 0;

	if (str == NULL || strlen(str) != SB_UUID_STR_LEN - 1) {
		return -EINVAL;
	}
	for (i = 0; i < SB_UUID_STR_LEN - 1; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (str[i] != '-') {
				return -EINVAL;
			}
			continue;
		}
		if (!isxdigit((unsigned char)str[i]) || !isxdigit((unsigned char)str[i + 1])) {
			return -EINVAL;
		}
		sscanf(&str[i], "%2hhx", &uuid[n++]);
		i++;
	}
	return 0;
}

/* ---- registry ---- */

static bool
_bdev_has_name(struct sb_bdev *bdev, const char *name)
{
	uint32_t i;

	if (strcmp(sb_bdev_get_name(bdev), name) == 0 ||
	    strcasecmp(bdev->internal->uuid_str, name) == 0) {
		return true;
	}
	for (i = 0; i < bdev->internal->num_aliases; i++) {
		if (strcmp(bdev->internal->aliases[i], name) == 0) {
			return true;
		}
	}
	return false;
}

struct sb_bdev *
_bdev_lookup_locked(const char *name)
{
	struct sb_bdev *bdev;

	if (name == NULL) {
		return NULL;
	}
	TAILQ_FOREACH(bdev, &g_bdevs, internal->link) {
		if (_bdev_has_name(bdev, name)) {
			return bdev;
		}
	}
	return NULL;
}

struct sb_bdev *
sb_bdev_get_by_name(const char *name)
{
	struct sb_bdev *bdev;

	pthread_mutex_lock(&g_bdev_lock);
	bdev = _bdev_lookup_locked(name);
	pthread_mutex_unlock(&g_bdev_lock);
	return bdev;
}

struct sb_bdev *
_bdev_last(void)
{
	struct sb_bdev *bdev;

	pthread_mutex_lock(&g_bdev_lock);
	bdev = TAILQ_LAST(&g_bdevs, sb_bdev_list_head);
	pthread_mutex_unlock(&g_bdev_lock);
	return bdev;
}

void
_bdev_foreach(void (*fn)(struct sb_bdev *bdev, void *ctx), void *ctx)
{
	struct sb_bdev *bdev;

	pthread_mutex_lock(&g_bdev_lock);
	TAILQ_FOREACH(bdev, &g_bdevs, internal->link) {
		fn(bdev, ctx);
	}
	pthread_mutex_unlock(&g_bdev_lock);
}

static bool
_is_pow2(uint64_t v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

int
sb_bdev_check_geometry(const char *name, uint32_t block_size, uint64_t num_blocks)
{
	if (block_size == 0 || !_is_pow2(block_size) || block_size % 512 != 0) {
		SB_ERRLOG("bdev %s: block size %u must be a non-zero power of two multiple of 512\n",
			  name ? name : "?", block_size);
		return -EINVAL;
	}
	if (num_blocks == 0) {
		SB_ERRLOG("bdev %s: size must be at least one block\n", name ? name : "?");
		return -EINVAL;
	}
	if (num_blocks > UINT64_MAX / block_size) {
		SB_ERRLOG("bdev %s: %lu blocks of %u bytes overflow 64 bits\n", name ? name : "?",
			  (unsigned long)num_blocks, block_size);
		return -EINVAL;
	}
	return 0;
}

static int
_bdev_validate(struct sb_bdev *bdev)
{
	int rc;

	if (bdev->name == NULL || bdev->name[0] == '\0' ||
	    strlen(bdev->name) >= SB_BDEV_NAME_MAX) {
		SB_ERRLOG("bdev name missing or longer than %d bytes\n", SB_BDEV_NAME_MAX - 1);
		return -EINVAL;
	}
	if (bdev->fn_table == NULL || bdev->module == NULL || bdev->fn_table->destruct == NULL ||
	    bdev->fn_table->submit_request == NULL || bdev->fn_table->get_io_channel == NULL ||
	    bdev->fn_table->io_type_supported == NULL) {
		SB_ERRLOG("bdev %s: incomplete module or fn_table\n", bdev->name);
		return -EINVAL;
	}
	rc = sb_bdev_check_geometry(bdev->name, bdev->blocklen, bdev->blockcnt);
	if (rc != 0) {
		return rc;
	}
	if (bdev->phys_blocklen != 0 &&
	    (!_is_pow2(bdev->phys_blocklen) || bdev->phys_blocklen < bdev->blocklen)) {
		SB_ERRLOG("bdev %s: physical block size %u must be a power of two >= %u\n",
			  bdev->name, bdev->phys_blocklen, bdev->blocklen);
		return -EINVAL;
	}
	return 0;
}

int
sb_bdev_register(struct sb_bdev *bdev)
{
	struct sb_bdev_internal *in;
	static const uint8_t zero[16];
	size_t ctx_size;
	int rc;

	if (bdev == NULL) {
		return -EINVAL;
	}
	if (!_bdev_on_app_reactor()) {
		SB_ERRLOG("bdev %s: register must run on the app reactor\n",
			  bdev->name ? bdev->name : "?");
		return -EPERM;
	}
	rc = _bdev_validate(bdev);
	if (rc != 0) {
		return rc;
	}
	in = calloc(1, sizeof(*in));
	if (in == NULL) {
		return -ENOMEM;
	}
	snprintf(in->name, sizeof(in->name), "%s", bdev->name);
	TAILQ_INIT(&in->descs);
	_bdev_stat_init(&in->stat_gone);
	if (memcmp(bdev->uuid, zero, sizeof(zero)) == 0) {
		_uuid_generate(bdev->uuid);
	}
	_uuid_fmt(bdev->uuid, in->uuid_str);
	ctx_size = bdev->module->get_ctx_size ? bdev->module->get_ctx_size() : 0;
	in->io_core_off = sizeof(struct sb_bdev_io) + ((ctx_size + 63) & ~(size_t)63);
	in->io_size = in->io_core_off +
		      ((sizeof(struct sb_bdev_io_core) + 63) & ~(size_t)63);

	pthread_mutex_lock(&g_bdev_lock);
	if (_bdev_lookup_locked(in->name) != NULL || _bdev_lookup_locked(in->uuid_str) != NULL) {
		pthread_mutex_unlock(&g_bdev_lock);
		SB_ERRLOG("bdev %s (uuid %s): name or uuid already exists\n", in->name,
			  in->uuid_str);
		free(in);
		return -EEXIST;
	}
	bdev->internal = in;
	TAILQ_INSERT_TAIL(&g_bdevs, bdev, internal->link);
	pthread_mutex_unlock(&g_bdev_lock);

	sb_io_device_register(bdev, _bdev_channel_create, _bdev_channel_destroy,
			      sizeof(struct sb_bdev_channel), in->name);
	SB_INFOLOG("bdev %s registered (%s, %lu x %u)\n", in->name, bdev->module->name,
		   (unsigned long)bdev->blockcnt, bdev->blocklen);
	return 0;
}

/* ---- aliases ---- */

int
_bdev_alias_add(struct sb_bdev *bdev, const char *alias)
{
	struct sb_bdev_internal *in = bdev->internal;
	int rc = 0;

	if (alias == NULL || alias[0] == '\0' || strlen(alias) >= SB_BDEV_NAME_MAX) {
		SB_ERRLOG("bdev %s: empty or too long alias\n", in->name);
		return -EINVAL;
	}
	pthread_mutex_lock(&g_bdev_lock);
	if (_bdev_lookup_locked(alias) != NULL) {
		SB_ERRLOG("bdev %s: alias %s already exists\n", in->name, alias);
		rc = -EEXIST;
		goto out;
	}
	if (in->num_aliases == SB_BDEV_MAX_ALIASES) {
		SB_ERRLOG("bdev %s: too many aliases (max %d)\n", in->name, SB_BDEV_MAX_ALIASES);
		rc = -EINVAL;
		goto out;
	}
	snprintf(in->aliases[in->num_aliases++], SB_BDEV_NAME_MAX, "%s", alias);
out:
	pthread_mutex_unlock(&g_bdev_lock);
	return rc;
}

int
_bdev_alias_del(struct sb_bdev *bdev, const char *alias)
{
	struct sb_bdev_internal *in = bdev->internal;
	uint32_t i;
	int rc = -EINVAL;

	pthread_mutex_lock(&g_bdev_lock);
	for (i = 0; alias != NULL && i < in->num_aliases; i++) {
		if (strcmp(in->aliases[i], alias) == 0) {
			memmove(in->aliases[i], in->aliases[i + 1],
				(in->num_aliases - i - 1) * SB_BDEV_NAME_MAX);
			in->num_aliases--;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&g_bdev_lock);
	if (rc != 0) {
		SB_ERRLOG("bdev %s has no alias %s\n", in->name, alias ? alias : "(null)");
	}
	return rc;
}

/* ---- getters ---- */

const char *
sb_bdev_get_name(const struct sb_bdev *bdev)
{
	return bdev->internal ? bdev->internal->name : bdev->name;
}

uint32_t
sb_bdev_get_block_size(const struct sb_bdev *bdev)
{
	return bdev->blocklen;
}

uint32_t
sb_bdev_get_physical_block_size(const struct sb_bdev *bdev)
{
	return bdev->phys_blocklen ? bdev->phys_blocklen : bdev->blocklen;
}

uint64_t
sb_bdev_get_num_blocks(const struct sb_bdev *bdev)
{
	return __atomic_load_n(&bdev->blockcnt, __ATOMIC_RELAXED);
}

bool
sb_bdev_io_type_supported(const struct sb_bdev *bdev, enum sb_bdev_io_type type)
{
	if ((unsigned)type >= SB_BDEV_IO_NUM_TYPES) {
		return false;
	}
	return bdev->fn_table->io_type_supported(bdev->ctxt, type);
}

uint32_t
sb_bdev_get_max_transfer_blocks(const struct sb_bdev *bdev)
{
	return bdev->max_transfer_blocks;
}

const char *
sb_bdev_get_uuid_str(const struct sb_bdev *bdev)
{
	return bdev->internal->uuid_str;
}

/* ---- descriptors ---- */

int
sb_bdev_open(const char *name, bool write, sb_bdev_event_cb event_cb, void *event_ctx,
	     struct sb_bdev_desc **_desc)
{
	struct sb_bdev_desc *desc;
	struct sb_bdev *bdev;
	int rc = 0;

	if (_desc == NULL) {
		return -EINVAL;
	}
	desc = calloc(1, sizeof(*desc));
	if (desc == NULL) {
		return -ENOMEM;
	}
	pthread_mutex_lock(&g_bdev_lock);
	bdev = _bdev_lookup_locked(name);
	if (bdev == NULL || bdev->internal->removing) {
		SB_ERRLOG("cannot open bdev %s: no such bdev\n", name ? name : "(null)");
		rc = -ENODEV;
		goto out;
	}
	if (write && bdev->internal->claim_desc != NULL) {
		SB_ERRLOG("cannot open bdev %s for writing: claimed by %s\n", bdev->internal->name,
			  bdev->internal->claimed_by);
		rc = -EPERM;
		goto out;
	}
	desc->bdev = bdev;
	desc->write = write;
	desc->event_cb = event_cb;
	desc->event_ctx = event_ctx;
	desc->reactor = sb_reactor_current();
	if (desc->reactor == NULL) {
		/* A non-reactor opener gets its events on the app reactor. */
		desc->reactor = sb_reactor_get(0);
	}
	desc->refs = 1;
	TAILQ_INSERT_TAIL(&bdev->internal->descs, desc, link);
	bdev->internal->num_descs++;
out:
	pthread_mutex_unlock(&g_bdev_lock);
	if (rc != 0) {
		free(desc);
	} else {
		*_desc = desc;
	}
	return rc;
}

void
_bdev_release_desc_ref(struct sb_bdev_desc *desc)
{
	if (__atomic_sub_fetch(&desc->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		free(desc);
	}
}

static void _bdev_unregister_continue(void *ctx);

void
sb_bdev_close(struct sb_bdev_desc *desc)
{
	struct sb_bdev *bdev;
	struct sb_bdev_internal *in;
	bool last;

	if (desc == NULL || desc->closed) {
		return;
	}
	bdev = desc->bdev;
	in = bdev->internal;
	pthread_mutex_lock(&g_bdev_lock);
	TAILQ_REMOVE(&in->descs, desc, link);
	in->num_descs--;
	if (in->claim_desc == desc) {
		in->claim_desc = NULL;
		in->claimed_by[0] = '\0';
	}
	last = in->removing && in->num_descs == 0;
	desc->closed = true;
	pthread_mutex_unlock(&g_bdev_lock);
	_bdev_release_desc_ref(desc);

	if (last) {
		if (_bdev_on_app_reactor()) {
			_bdev_unregister_continue(bdev);
		} else if (sb_send_msg(sb_reactor_get(0), _bdev_unregister_continue, bdev) != 0) {
			SB_ERRLOG("bdev %s: cannot reach the app reactor to finish removal\n",
				  in->name);
		}
	}
}

int
sb_bdev_claim(struct sb_bdev_desc *desc, const char *owner)
{
	struct sb_bdev_internal *in;
	struct sb_bdev_desc *d;
	int rc = 0;

	if (desc == NULL) {
		return -EINVAL;
	}
	in = desc->bdev->internal;
	if (!desc->write) {
		SB_ERRLOG("bdev %s: claim needs a descriptor opened for writing\n", in->name);
		return -EBADF;
	}
	pthread_mutex_lock(&g_bdev_lock);
	if (in->claim_desc != NULL && in->claim_desc != desc) {
		SB_ERRLOG("bdev %s already claimed by %s\n", in->name, in->claimed_by);
		rc = -EPERM;
		goto out;
	}
	TAILQ_FOREACH(d, &in->descs, link) {
		if (d != desc && d->write) {
			SB_ERRLOG("bdev %s: cannot claim for %s, another writer has it open\n",
				  in->name, owner ? owner : "?");
			rc = -EPERM;
			goto out;
		}
	}
	in->claim_desc = desc;
	snprintf(in->claimed_by, sizeof(in->claimed_by), "%s", owner ? owner : "unknown");
out:
	pthread_mutex_unlock(&g_bdev_lock);
	return rc;
}

struct sb_bdev *
sb_bdev_desc_get_bdev(struct sb_bdev_desc *desc)
{
	return desc->bdev;
}

struct sb_io_channel *
sb_bdev_get_io_channel(struct sb_bdev_desc *desc)
{
	return sb_get_io_channel(desc->bdev);
}

/* ---- events ---- */

static void
_bdev_event_msg(void *ctx)
{
	struct sb_bdev_event *ev = ctx;
	struct sb_bdev_desc *desc = ev->desc;

	/* Runs on the descriptor's reactor, like sb_bdev_close(): no race with it. */
	if (!desc->closed && desc->event_cb != NULL) {
		desc->event_cb(ev->type, desc->bdev, desc->event_ctx);
	}
	_bdev_release_desc_ref(desc);
	free(ev);
}

/* Queue type to every open descriptor; g_bdev_lock held. */
static void
_bdev_send_event_locked(struct sb_bdev *bdev, enum sb_bdev_event_type type)
{
	struct sb_bdev_desc *desc;
	struct sb_bdev_event *ev;

	TAILQ_FOREACH(desc, &bdev->internal->descs, link) {
		ev = calloc(1, sizeof(*ev));
		if (ev == NULL) {
			SB_ERRLOG("bdev %s: no memory for an event\n", bdev->internal->name);
			continue;
		}
		ev->desc = desc;
		ev->type = type;
		__atomic_add_fetch(&desc->refs, 1, __ATOMIC_ACQ_REL);
		if (sb_send_msg(desc->reactor, _bdev_event_msg, ev) != 0) {
			SB_ERRLOG("bdev %s: cannot deliver event %d\n", bdev->internal->name, type);
			__atomic_sub_fetch(&desc->refs, 1, __ATOMIC_ACQ_REL);
			free(ev);
		}
	}
}

int
sb_bdev_notify_blockcnt_change(struct sb_bdev *bdev, uint64_t blockcnt)
{
	struct sb_bdev_internal *in = bdev->internal;
	int rc;

	rc = sb_bdev_check_geometry(in->name, bdev->blocklen, blockcnt);
	if (rc != 0) {
		return rc;
	}
	pthread_mutex_lock(&g_bdev_lock);
	if (blockcnt < bdev->blockcnt && in->num_descs > 0) {
		pthread_mutex_unlock(&g_bdev_lock);
		SB_ERRLOG("bdev %s: cannot shrink from %lu to %lu blocks while open\n", in->name,
			  (unsigned long)bdev->blockcnt, (unsigned long)blockcnt);
		return -EBUSY;
	}
	__atomic_store_n(&bdev->blockcnt, blockcnt, __ATOMIC_RELEASE);
	_bdev_send_event_locked(bdev, SB_BDEV_EVENT_RESIZE);
	pthread_mutex_unlock(&g_bdev_lock);
	SB_NOTICELOG("bdev %s resized to %lu blocks\n", in->name, (unsigned long)blockcnt);
	return 0;
}

/* ---- unregister ---- */

static void
_bdev_unregister_finish(struct sb_bdev_internal *in, int rc)
{
	void (*cb)(void *cb_arg, int rc) = in->unregister_cb;
	void *cb_arg = in->unregister_cb_arg;

	SB_INFOLOG("bdev %s destroyed (%d)\n", in->name, rc);
	free(in);
	if (cb != NULL) {
		cb(cb_arg, rc);
	}
}

void
sb_bdev_destruct_done(struct sb_bdev *bdev, int rc)
{
	_bdev_unregister_finish(bdev->internal, rc);
}

static void
_bdev_io_device_gone(void *io_device)
{
	struct sb_bdev *bdev = io_device;
	struct sb_bdev_internal *in = bdev->internal;
	int rc;

	pthread_mutex_lock(&g_bdev_lock);
	TAILQ_REMOVE(&g_bdevs, bdev, internal->link);
	pthread_mutex_unlock(&g_bdev_lock);

	/* After destruct returns 0 the module may have freed bdev: only in is used. */
	rc = bdev->fn_table->destruct(bdev->ctxt);
	if (rc == 1) {
		return; /* sb_bdev_destruct_done() follows */
	}
	_bdev_unregister_finish(in, rc);
}

static void
_bdev_qos_gone(void *ctx)
{
	sb_io_device_unregister(ctx, _bdev_io_device_gone);
}

static void
_bdev_unregister_continue(void *ctx)
{
	struct sb_bdev *bdev = ctx;
	struct sb_bdev_internal *in = bdev->internal;

	if (in->destructing) {
		return;
	}
	in->destructing = true;
	_bdev_qos_destroy(bdev, _bdev_qos_gone, bdev);
}

void
sb_bdev_unregister(struct sb_bdev *bdev, void (*cb)(void *cb_arg, int rc), void *cb_arg)
{
	struct sb_bdev_internal *in;
	bool now;

	if (bdev == NULL || bdev->internal == NULL) {
		if (cb) {
			cb(cb_arg, -ENODEV);
		}
		return;
	}
	in = bdev->internal;
	if (!_bdev_on_app_reactor()) {
		SB_ERRLOG("bdev %s: unregister must run on the app reactor\n", in->name);
		if (cb) {
			cb(cb_arg, -EPERM);
		}
		return;
	}
	pthread_mutex_lock(&g_bdev_lock);
	if (in->removing) {
		pthread_mutex_unlock(&g_bdev_lock);
		SB_ERRLOG("bdev %s is already being removed\n", in->name);
		if (cb) {
			cb(cb_arg, -EBUSY);
		}
		return;
	}
	__atomic_store_n(&in->removing, true, __ATOMIC_RELEASE);
	in->unregister_cb = cb;
	in->unregister_cb_arg = cb_arg;
	now = in->num_descs == 0;
	_bdev_send_event_locked(bdev, SB_BDEV_EVENT_REMOVE);
	pthread_mutex_unlock(&g_bdev_lock);
	SB_INFOLOG("bdev %s: unregistering (%s)\n", in->name,
		   now ? "not open" : "waiting for descriptors to close");
	if (now) {
		_bdev_unregister_continue(bdev);
	}
}
