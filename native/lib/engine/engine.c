/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Engine lifecycle: reactors first, then the layers that run on them, torn
 * down in reverse order.  Kept apart from lib/thread so that the thread
 * library does not depend on the bdev and vhost layers above it.
 */
#include "sb/thread.h"
#include "sb/log.h"
#include "sb_internal/subsystem.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

static pthread_mutex_t g_engine_lock = PTHREAD_MUTEX_INITIALIZER;
static bool g_engine_running;

int
sb_engine_start(const struct sb_engine_opts *opts)
{
	int rc;

	if (sb_reactor_current() != NULL) {
		return -EPERM;
	}
	pthread_mutex_lock(&g_engine_lock);
	if (g_engine_running) {
		rc = -EALREADY;
		goto out;
	}
	rc = sb_reactors_start(opts);
	if (rc != 0) {
		goto out;
	}
	rc = sb_bdev_subsystem_init();
	if (rc != 0) {
		SB_ERRLOG("bdev layer failed to start: %d\n", rc);
		sb_reactors_stop();
		goto out;
	}
	rc = sb_vhost_subsystem_init();
	if (rc != 0) {
		SB_ERRLOG("vhost layer failed to start: %d\n", rc);
		sb_bdev_subsystem_fini();
		sb_reactors_stop();
		goto out;
	}
	g_engine_running = true;
out:
	pthread_mutex_unlock(&g_engine_lock);
	return rc;
}

void
sb_engine_stop(void)
{
	pthread_mutex_lock(&g_engine_lock);
	if (g_engine_running) {
		sb_vhost_subsystem_fini();
		sb_bdev_subsystem_fini();
		sb_reactors_stop();
		g_engine_running = false;
	}
	pthread_mutex_unlock(&g_engine_lock);
}

bool
sb_engine_is_running(void)
{
	bool running;

	pthread_mutex_lock(&g_engine_lock);
	running = g_engine_running;
	pthread_mutex_unlock(&g_engine_lock);
	return running;
}
