/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parking a controller whose reactor did not answer a control call.
 *
 * The control thread hands a reactor pointers into the controller (its
 * queues, slots, the controller itself) with sb_call().  When the reactor
 * does not answer in time (it stalls, or in-flight requests never finish)
 * the waiter returns, but the call is still queued there and will run: so
 * will the queue it starts or keeps draining, with pointers into guest
 * memory, the request array, the dirty log, the inflight region and the
 * call fd.  Freeing any of those would let a reactor write into freed
 * memory, or signal an fd number reused by something else.
 *
 * So the controller is parked (vhost_dev.h): it makes no more reactor
 * calls, its session is cut, and every release of something a reactor may
 * use goes through sb_vhost_release_*(), which keeps it on the
 * controller's list instead.  A catch-up message goes to each of its
 * reactors (vhost_session.c); it runs after everything queued before it,
 * stops the queues that still run there and reports once they drained.
 * When every reactor reported, the kept resources are released and the
 * controller takes front-ends again.  A controller deleted meanwhile is a
 * zombie: out of the table (its name is free), freed when it recovers.
 * Control thread only, except slots_caught_up.
 */
#include "vhost/vhost_dev.h"
#include "sb/log.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum _res_kind { _RES_FD, _RES_MEM, _RES_MEM_TABLE, _RES_LOG, _RES_MAPPING, _RES_PTR };

struct sb_vhost_parked_res {
	enum _res_kind kind;
	int fd;
	void *ptr;
	size_t len;
	struct sb_vhost_parked_res *next;
};

static LIST_HEAD(, sb_vhost_ctrlr) g_zombies = LIST_HEAD_INITIALIZER(g_zombies);
static uint32_t g_nzombies;

static void
_release_now(const struct sb_vhost_parked_res *r)
{
	switch (r->kind) {
	case _RES_FD:
		close(r->fd);
		break;
	case _RES_MEM:
		sb_vhost_mem_free(r->ptr);
		break;
	case _RES_MEM_TABLE:
		free(r->ptr); /* its regions live on in the new table */
		break;
	case _RES_LOG:
		sb_vhost_log_unmap(r->ptr);
		break;
	case _RES_MAPPING:
		sb_vhost_sigbus_unwatch(r->ptr);
		munmap(r->ptr, r->len);
		if (r->fd >= 0) {
			close(r->fd);
		}
		break;
	case _RES_PTR:
		free(r->ptr);
		break;
	}
}

static void
_release(struct sb_vhost_ctrlr *c, enum _res_kind kind, int fd, void *ptr, size_t len)
{
	struct sb_vhost_parked_res r = { .kind = kind, .fd = fd, .ptr = ptr, .len = len };
	struct sb_vhost_parked_res *keep;

	if (!c->parked) {
		_release_now(&r);
		return;
	}
	keep = malloc(sizeof(*keep));
	if (keep == NULL) {
		/* Leaked: safer than releasing what a reactor may still use. */
		SB_ERRLOG("vhost %s: no memory to keep a resource of a parked controller; "
			  "leaked\n", c->name);
		return;
	}
	*keep = r;
	keep->next = c->parked_res;
	c->parked_res = keep;
}

void
sb_vhost_release_fd(struct sb_vhost_ctrlr *c, int fd)
{
	if (fd >= 0) {
		_release(c, _RES_FD, fd, NULL, 0);
	}
}

void
sb_vhost_release_mem(struct sb_vhost_ctrlr *c, struct sb_vhost_mem *mem, bool unmap)
{
	if (mem != NULL) {
		_release(c, unmap ? _RES_MEM : _RES_MEM_TABLE, -1, mem, 0);
	}
}

void
sb_vhost_release_log(struct sb_vhost_ctrlr *c, struct sb_vhost_log *log)
{
	if (log != NULL) {
		_release(c, _RES_LOG, -1, log, 0);
	}
}

void
sb_vhost_release_mapping(struct sb_vhost_ctrlr *c, void *addr, size_t len, int fd)
{
	if (addr != NULL) {
		_release(c, _RES_MAPPING, fd, addr, len);
	}
}

void
sb_vhost_release_ptr(struct sb_vhost_ctrlr *c, void *p)
{
	if (p != NULL) {
		_release(c, _RES_PTR, -1, p, 0);
	}
}

void
sb_vhost_park(struct sb_vhost_ctrlr *c, const char *what)
{
	if (c->parked) {
		return;
	}
	SB_ERRLOG("vhost %s: a reactor did not answer a %s in time; the controller is parked "
		  "(session cut, memory kept) until its reactors catch up\n", c->name, what);
	c->parked = true;
	c->park_refusal_logged = false;
	c->catchup_sent = 0;
	__atomic_store_n(&c->slots_caught_up, 0, __ATOMIC_RELAXED);
	sb_vhost_catchup_send(c);
}

/* Every reactor caught up: nothing of c runs anywhere; release what was kept. */
static void
_recover(struct sb_vhost_ctrlr *c)
{
	struct sb_vhost_parked_res *r;
	uint32_t n = 0;
	uint16_t q;

	for (q = 0; q < SB_VHOST_MAX_QUEUES; q++) {
		sb_vhost_vq_forget(&c->vqs[q]);
	}
	c->parked = false;
	/* The session's reset, skipped while parked (its fds, memory, log, inflight). */
	sb_vhost_session_reset(c);
	while ((r = c->parked_res) != NULL) {
		c->parked_res = r->next;
		_release_now(r);
		free(r);
		n++;
	}
	SB_NOTICELOG("vhost %s: its reactors caught up; %u kept resources released%s\n", c->name,
		     n, c->zombie ? "" : ", front-ends are taken again");
}

static bool
_caught_up(struct sb_vhost_ctrlr *c)
{
	if (c->catchup_sent < c->nslots) {
		sb_vhost_catchup_send(c);
	}
	return c->catchup_sent == c->nslots &&
	       __atomic_load_n(&c->slots_caught_up, __ATOMIC_ACQUIRE) == c->nslots;
}

void
sb_vhost_ctrlr_free(struct sb_vhost_ctrlr *c)
{
	if (!c->parked && (sb_vhost_bdev_close(c) == 0 || !c->parked)) {
		/* Closed, or a call that never reached a reactor failed (no memory,
		 * the engine stopping): nothing of c is queued anywhere. */
		free(c);
		return;
	}
	/* Parked now or before: a reactor may still run a call that uses c. */
	if (!c->zombie) {
		c->zombie = true;
		LIST_INSERT_HEAD(&g_zombies, c, link);
		g_nzombies++;
		SB_NOTICELOG("vhost %s: freed once its reactors catch up\n", c->name);
	}
}

void
sb_vhost_park_poll(void)
{
	struct sb_vhost_ctrlr *c, *next;

	LIST_FOREACH(c, &g_sb_vhost_ctrlrs, link) {
		if (!c->parked) {
			continue;
		}
		if (c->conn_fd >= 0) {
			sb_vhost_ctl_disconnect(c, "a reactor did not answer in time");
		}
		if (_caught_up(c)) {
			_recover(c);
		}
	}
	for (c = LIST_FIRST(&g_zombies); c != NULL; c = next) {
		next = LIST_NEXT(c, link);
		if (!_caught_up(c)) {
			continue;
		}
		_recover(c);
		LIST_REMOVE(c, link);
		g_nzombies--;
		c->zombie = false;
		/* Its bdev is closed now; a reactor that stalls again parks it again. */
		sb_vhost_ctrlr_free(c);
	}
}

void
sb_vhost_park_drain(uint64_t timeout_us)
{
	struct timespec pause = { .tv_sec = 0, .tv_nsec = 10 * 1000 * 1000 };
	uint64_t waited = 0;
	struct sb_vhost_ctrlr *c;

	while (g_nzombies > 0 && waited < timeout_us) {
		sb_vhost_park_poll();
		if (g_nzombies == 0) {
			break;
		}
		nanosleep(&pause, NULL);
		waited += 10000;
	}
	LIST_FOREACH(c, &g_zombies, link) {
		SB_ERRLOG("vhost %s: its reactor never caught up; the controller is left in "
			  "memory\n", c->name);
	}
	/* Leaked on purpose: an engine started again in this process must not see them. */
	LIST_INIT(&g_zombies);
	g_nzombies = 0;
}

static void
_count(void *arg)
{
	struct sb_vhost_ctrlr *c;
	uint32_t *n = arg;

	*n = g_nzombies;
	LIST_FOREACH(c, &g_sb_vhost_ctrlrs, link) {
		*n += c->parked;
	}
}

int
sb_vhost_parked_count(uint32_t *count)
{
	if (count == NULL) {
		return -EINVAL;
	}
	*count = 0;
	return sb_vhost_ctl_run(_count, count);
}
