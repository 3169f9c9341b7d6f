/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bdev layer's place in the engine: the module list, the start/stop
 * hooks engine.c calls, and the app-reactor call helper of the control path.
 */
#include "bdev_internal.h"
#include "sb_internal/subsystem.h"

#include <errno.h>
#include <stdlib.h>

static TAILQ_HEAD(, sb_bdev_module) g_bdev_modules = TAILQ_HEAD_INITIALIZER(g_bdev_modules);
static bool g_bdev_modules_inited;

/* Time the engine stop waits for bdevs whose users do not close them. */
#define SB_BDEV_FINI_TIMEOUT_US (10ULL * 1000 * 1000)

void
sb_bdev_module_list_add(struct sb_bdev_module *module)
{
	TAILQ_INSERT_TAIL(&g_bdev_modules, module, link);
}

bool
_bdev_on_app_reactor(void)
{
	struct sb_reactor *r = sb_reactor_current();

	return r != NULL && sb_reactor_index(r) == 0;
}

int
sb_bdev_app_call(sb_call_fn fn, const void *args, size_t args_size, void *results,
		 size_t results_size)
{
	struct sb_reactor *app = sb_reactor_get(0);

	if (app == NULL) {
		SB_ERRLOG("the engine is not running\n");
		return -ESHUTDOWN;
	}
	return sb_call_owned(app, fn, args, args_size, results, results_size, NULL,
			     SB_CALL_TIMEOUT_US);
}

/* ---- subsystem ---- */

static void
_bdev_modules_init(void *ctx, struct sb_completion *done)
{
	struct sb_bdev_module *m;
	int rc = 0;

	TAILQ_FOREACH(m, &g_bdev_modules, link) {
		if (m->module_init != NULL) {
			rc = m->module_init();
			if (rc != 0) {
				SB_ERRLOG("bdev module %s failed to start: %d\n", m->name, rc);
				break;
			}
		}
	}
	if (rc != 0) {
		/* Undo the ones that started. */
		struct sb_bdev_module *failed = m;

		TAILQ_FOREACH(m, &g_bdev_modules, link) {
			if (m == failed) {
				break;
			}
			if (m->module_fini != NULL) {
				m->module_fini();
			}
		}
	}
	sb_complete(done, rc);
}

int
sb_bdev_subsystem_init(void)
{
	int rc = sb_bdev_app_call(_bdev_modules_init, NULL, 0, NULL, 0);

	g_bdev_modules_inited = rc == 0;
	return rc;
}

struct bdev_fini_ctx {
	struct sb_poller *poller;
	struct sb_completion *done;
};

/* Unregister bdevs one at a time, newest first (stacked bdevs go before their base). */
static int
_bdev_fini_poll(void *arg)
{
	struct bdev_fini_ctx *ctx = arg;
	struct sb_bdev_module *m;
	struct sb_bdev *bdev;

	bdev = _bdev_last();
	if (bdev != NULL) {
		if (!bdev->internal->removing) {
			sb_bdev_unregister(bdev, NULL, NULL);
		}
		return SB_POLLER_BUSY;
	}
	TAILQ_FOREACH(m, &g_bdev_modules, link) {
		if (m->module_fini != NULL) {
			m->module_fini();
		}
	}
	sb_poller_unregister(&ctx->poller);
	sb_complete(ctx->done, 0);
	free(ctx);
	return SB_POLLER_BUSY;
}

static void
_bdev_fini(void *arg, struct sb_completion *done)
{
	struct bdev_fini_ctx *ctx = calloc(1, sizeof(*ctx));

	if (ctx == NULL) {
		sb_complete(done, -ENOMEM);
		return;
	}
	ctx->done = done;
	ctx->poller = sb_poller_register(_bdev_fini_poll, ctx, 1000, "bdev_fini");
	if (ctx->poller == NULL) {
		free(ctx);
		sb_complete(done, -ENOMEM);
	}
}

void
sb_bdev_subsystem_fini(void)
{
	int rc;

	if (!g_bdev_modules_inited) {
		return;
	}
	rc = sb_call(sb_reactor_get(0), _bdev_fini, NULL, SB_BDEV_FINI_TIMEOUT_US);
	if (rc != 0) {
		SB_ERRLOG("bdev layer did not stop cleanly (%d): a descriptor was left open\n", rc);
	}
	g_bdev_modules_inited = false;
}
