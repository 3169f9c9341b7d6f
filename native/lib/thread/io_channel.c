/* SPDX-License-Identifier: Apache-2.0 */
/*
 * I/O devices and their per-reactor channels (SPDK's io_device idea).
 *
 * The device registry is control-path state shared by all threads and sits
 * behind a mutex.  A reactor's channel list is touched only by that
 * reactor, so the data path (sb_get_io_channel on an existing channel,
 * sb_io_channel_get_ctx) takes no lock once the device lookup is done.
 * A device outlives its unregistration until its last channel and its last
 * sb_for_each_channel() are gone; only then does done() run.
 */
#include "sb/thread.h"
#include "sb/log.h"
#include "thread_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct io_device {
	void *io_device;
	sb_io_channel_create_cb create_cb;
	sb_io_channel_destroy_cb destroy_cb;
	uint32_t ctx_size;
	char name[32];
	/* Under g_devs_lock: */
	uint32_t channels;
	uint32_t holds;
	bool unregistered;
	void (*unreg_done)(void *io_device);
	struct sb_reactor *unreg_reactor;
	TAILQ_ENTRY(io_device) link;
};

struct sb_io_channel {
	struct io_device *dev;
	struct sb_reactor *reactor;
	uint32_t ref;
	bool destroy_queued;
	/* Destroyed by a reactor teardown; memory kept until its end, puts ignored. */
	bool zombie;
	TAILQ_ENTRY(sb_io_channel) link;
	/* ctx_size bytes of the device's per-channel context follow at CTX_OFFSET. */
};

#define CTX_OFFSET ((sizeof(struct sb_io_channel) + SB_CACHE_LINE - 1) & ~(size_t)(SB_CACHE_LINE - 1))

static pthread_mutex_t g_devs_lock = PTHREAD_MUTEX_INITIALIZER;
static TAILQ_HEAD(, io_device) g_devs = TAILQ_HEAD_INITIALIZER(g_devs);

/* Registered (not unregistered) device of this pointer; g_devs_lock held. */
static struct io_device *
_find_dev(void *io_device)
{
	struct io_device *dev;

	TAILQ_FOREACH(dev, &g_devs, link) {
		if (dev->io_device == io_device) {
			return dev;
		}
	}
	return NULL;
}

void
sb_io_device_register(void *io_device, sb_io_channel_create_cb create_cb,
		      sb_io_channel_destroy_cb destroy_cb, uint32_t ctx_size, const char *name)
{
	struct io_device *dev;

	if (io_device == NULL) {
		SB_ERRLOG("NULL io_device\n");
		return;
	}
	dev = calloc(1, sizeof(*dev));
	if (dev == NULL) {
		SB_ERRLOG("io_device %s: no memory\n", name ? name : "?");
		return;
	}
	dev->io_device = io_device;
	dev->create_cb = create_cb;
	dev->destroy_cb = destroy_cb;
	dev->ctx_size = ctx_size;
	snprintf(dev->name, sizeof(dev->name), "%s", name ? name : "io_device");
	pthread_mutex_lock(&g_devs_lock);
	if (_find_dev(io_device) != NULL) {
		pthread_mutex_unlock(&g_devs_lock);
		SB_ERRLOG("io_device %p (%s) is already registered\n", io_device, dev->name);
		free(dev);
		return;
	}
	TAILQ_INSERT_TAIL(&g_devs, dev, link);
	pthread_mutex_unlock(&g_devs_lock);
}

static void
_unreg_done_msg(void *arg)
{
	struct io_device *dev = arg;

	dev->unreg_done(dev->io_device);
	free(dev);
}

/* Last channel and last hold of an unregistered device are gone. */
static void
_finish_unregister(struct io_device *dev)
{
	if (dev->unreg_done == NULL) {
		free(dev);
		return;
	}
	if (dev->unreg_reactor != NULL &&
	    sb_send_msg_retry(dev->unreg_reactor, _unreg_done_msg, dev) == 0) {
		return;
	}
	/* Unregistered from a non-reactor thread (or its reactor is gone): report here. */
	_unreg_done_msg(dev);
}

/* Drop a channel or hold count; fin tells whether the device is finished. */
static void
_dev_release(struct io_device *dev, bool hold)
{
	bool fin;

	pthread_mutex_lock(&g_devs_lock);
	if (hold) {
		dev->holds--;
	} else {
		dev->channels--;
	}
	fin = dev->unregistered && dev->channels == 0 && dev->holds == 0;
	pthread_mutex_unlock(&g_devs_lock);
	if (fin) {
		_finish_unregister(dev);
	}
}

void
sb_io_device_unregister(void *io_device, void (*done)(void *io_device))
{
	struct io_device *dev;
	bool fin;

	pthread_mutex_lock(&g_devs_lock);
	dev = _find_dev(io_device);
	if (dev == NULL) {
		pthread_mutex_unlock(&g_devs_lock);
		SB_ERRLOG("io_device %p is not registered\n", io_device);
		return;
	}
	TAILQ_REMOVE(&g_devs, dev, link);
	dev->unregistered = true;
	dev->unreg_done = done;
	dev->unreg_reactor = sb_reactor_current();
	fin = dev->channels == 0 && dev->holds == 0;
	pthread_mutex_unlock(&g_devs_lock);
	if (fin) {
		_finish_unregister(dev);
	}
}

struct sb_io_channel *
sb_get_io_channel(void *io_device)
{
	struct sb_reactor *r = sb_reactor_current();
	struct sb_io_channel *ch;
	struct io_device *dev;
	int rc;

	if (r == NULL) {
		SB_ERRLOG("sb_get_io_channel outside a reactor\n");
		return NULL;
	}
	pthread_mutex_lock(&g_devs_lock);
	dev = _find_dev(io_device);
	if (dev == NULL) {
		pthread_mutex_unlock(&g_devs_lock);
		SB_ERRLOG("io_device %p is not registered\n", io_device);
		return NULL;
	}
	TAILQ_FOREACH(ch, &r->channels, link) {
		if (ch->dev == dev && !ch->zombie) {
			/* Also revives a channel whose destroy message is still queued. */
			ch->ref++;
			pthread_mutex_unlock(&g_devs_lock);
			return ch;
		}
	}
	/* Counted before the unlock: the device cannot be finished while we build it. */
	dev->channels++;
	pthread_mutex_unlock(&g_devs_lock);

	ch = aligned_alloc(SB_CACHE_LINE, (CTX_OFFSET + dev->ctx_size + SB_CACHE_LINE - 1) &
			   ~(size_t)(SB_CACHE_LINE - 1));
	if (ch == NULL) {
		SB_ERRLOG("io_device %s: no memory for a channel\n", dev->name);
		goto fail;
	}
	memset(ch, 0, CTX_OFFSET + dev->ctx_size);
	ch->dev = dev;
	ch->reactor = r;
	ch->ref = 1;
	/* Listed before create_cb so that a nested get of the same device finds it. */
	TAILQ_INSERT_TAIL(&r->channels, ch, link);
	if (dev->create_cb != NULL) {
		rc = dev->create_cb(io_device, sb_io_channel_get_ctx(ch));
		if (rc != 0) {
			SB_ERRLOG("io_device %s: channel create failed on %s: %d\n", dev->name,
				  r->name, rc);
			TAILQ_REMOVE(&r->channels, ch, link);
			free(ch);
			goto fail;
		}
	}
	return ch;
fail:
	_dev_release(dev, false);
	return NULL;
}

static void
_destroy_channel(struct sb_io_channel *ch)
{
	struct io_device *dev = ch->dev;

	TAILQ_REMOVE(&ch->reactor->channels, ch, link);
	if (dev->destroy_cb != NULL) {
		dev->destroy_cb(dev->io_device, sb_io_channel_get_ctx(ch));
	}
	free(ch);
	_dev_release(dev, false);
}

static void
_destroy_msg(void *arg)
{
	struct sb_io_channel *ch = arg;

	ch->destroy_queued = false;
	if (ch->ref == 0) {
		_destroy_channel(ch);
	}
}

static void
_put_msg(void *arg)
{
	sb_put_io_channel(arg);
}

void
sb_put_io_channel(struct sb_io_channel *ch)
{
	if (ch == NULL) {
		return;
	}
	if (ch->zombie) {
		return;
	}
	if (ch->reactor != sb_reactor_current()) {
		SB_ERRLOG("channel of %s put outside its reactor %s\n", ch->dev->name,
			  ch->reactor->name);
		sb_send_msg_retry(ch->reactor, _put_msg, ch);
		return;
	}
	if (ch->ref == 0) {
		SB_ERRLOG("channel of %s put more often than got\n", ch->dev->name);
		return;
	}
	if (--ch->ref > 0 || ch->destroy_queued) {
		return;
	}
	/* Deferred so that the caller's stack may still use the channel. */
	ch->destroy_queued = true;
	if (sb_send_msg_retry(ch->reactor, _destroy_msg, ch) != 0) {
		ch->destroy_queued = false;
		_destroy_channel(ch);
	}
}

void *
sb_io_channel_get_ctx(struct sb_io_channel *ch)
{
	return (char *)ch + CTX_OFFSET;
}

void *
sb_io_channel_get_io_device(struct sb_io_channel *ch)
{
	return ch->dev->io_device;
}

struct sb_reactor *
sb_io_channel_get_reactor(struct sb_io_channel *ch)
{
	return ch->reactor;
}

void
sb_io_channels_free_all(struct sb_reactor *r)
{
	struct sb_io_channel *ch, *tmp;
	struct io_device *dev;

	/*
	 * Oldest first, so that a channel that took another one in its
	 * create_cb is destroyed before the inner one and can still put it.
	 * The memory of the destroyed channels stays until the end, so a
	 * destroy_cb that puts a channel destroyed earlier (other orders) is
	 * harmless.  Channels whose destroy message is queued are left to it.
	 */
	TAILQ_FOREACH(ch, &r->channels, link) {
		if (ch->destroy_queued || ch->zombie) {
			continue;
		}
		SB_WARNLOG("%s stopped holding a channel of %s (%u refs)\n", r->name,
			   ch->dev->name, ch->ref);
		dev = ch->dev;
		ch->zombie = true;
		ch->ref = 0;
		if (dev->destroy_cb != NULL) {
			dev->destroy_cb(dev->io_device, sb_io_channel_get_ctx(ch));
		}
		_dev_release(dev, false);
	}
	for (ch = TAILQ_FIRST(&r->channels); ch != NULL; ch = tmp) {
		tmp = TAILQ_NEXT(ch, link);
		if (ch->zombie) {
			TAILQ_REMOVE(&r->channels, ch, link);
			free(ch);
		}
	}
}

/* ---- sb_for_each_channel: a message hops from reactor to reactor ---- */

struct for_each {
	struct io_device *dev;
	void (*fn)(struct sb_io_channel *ch, void *ctx);
	void *ctx;
	void (*cpl)(void *ctx, int rc);
	struct sb_reactor *orig;
	uint32_t next;
	int rc;
};

static void
_for_each_done(void *arg)
{
	struct for_each *it = arg;

	if (it->dev != NULL) {
		_dev_release(it->dev, true);
	}
	if (it->cpl != NULL) {
		it->cpl(it->ctx, it->rc);
	}
	free(it);
}

static void
_for_each_step(void *arg)
{
	struct for_each *it = arg;
	struct sb_reactor *r = sb_reactor_current();
	struct sb_io_channel *ch;

	TAILQ_FOREACH(ch, &r->channels, link) {
		if (ch->dev == it->dev && ch->ref > 0) {
			it->fn(ch, it->ctx);
			break;
		}
	}
	it->next++;
	if (it->next < sb_reactor_count() &&
	    sb_send_msg_retry(sb_reactor_get(it->next), _for_each_step, it) == 0) {
		return;
	}
	if (it->next < sb_reactor_count()) {
		it->rc = -EAGAIN;
	}
	if (sb_send_msg_retry(it->orig, _for_each_done, it) != 0) {
		_for_each_done(it);
	}
}

void
sb_for_each_channel(void *io_device, void (*fn)(struct sb_io_channel *ch, void *ctx),
		    void *ctx, void (*cpl)(void *ctx, int rc))
{
	struct sb_reactor *r = sb_reactor_current();
	struct for_each *it;

	if (r == NULL || fn == NULL) {
		SB_ERRLOG("sb_for_each_channel needs a reactor thread and a function\n");
		if (cpl != NULL) {
			cpl(ctx, -EPERM);
		}
		return;
	}
	it = calloc(1, sizeof(*it));
	if (it == NULL) {
		if (cpl != NULL) {
			cpl(ctx, -ENOMEM);
		}
		return;
	}
	it->fn = fn;
	it->ctx = ctx;
	it->cpl = cpl;
	it->orig = r;
	pthread_mutex_lock(&g_devs_lock);
	it->dev = _find_dev(io_device);
	if (it->dev != NULL) {
		it->dev->holds++;
	}
	pthread_mutex_unlock(&g_devs_lock);
	if (it->dev == NULL) {
		SB_ERRLOG("sb_for_each_channel: io_device %p is not registered\n", io_device);
		it->rc = -ENODEV;
		if (sb_send_msg_retry(r, _for_each_done, it) != 0) {
			_for_each_done(it);
		}
		return;
	}
	if (sb_send_msg_retry(sb_reactor_get(0), _for_each_step, it) != 0) {
		it->rc = -EAGAIN;
		_for_each_done(it);
	}
}
