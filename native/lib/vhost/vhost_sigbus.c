/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest memory a front-end shrinks under us.
 *
 * Guest RAM and the inflight area are MAP_SHARED mappings of files the
 * front-end owns (memfd, hugetlbfs).  SET_MEM_TABLE checks that each file
 * covers its region, but nothing stops the front-end from truncating the
 * file afterwards (an unsealed memfd, any hugetlbfs file), and then the next
 * access to a page past the new end raises SIGBUS in whichever engine thread
 * touches it: a reactor reading a ring, a bdev module copying data, a librbd
 * thread filling a read buffer.  A guest must not be able to kill the engine
 * that way.
 *
 * Every such mapping is watched here.  The SIGBUS handler looks the faulting
 * address up; inside a watched mapping it puts a private zero page over the
 * faulting page (the access is retried and succeeds), records the hit and
 * wakes the control thread, which cuts that front-end off.  Anything else is
 * handed to the handler that was installed before (or the default action:
 * a genuine bug still dumps core).
 *
 * The table is fixed-size and lock-free for readers: the handler may run on
 * any thread at any time and must neither lock nor allocate.
 */
#include "vhost/vhost_dev.h"
#include "sb/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* 32 regions + 1 inflight area for 240 connected front-ends. */
#define SB_VHOST_SIGBUS_SLOTS 8192

struct _watch {
	uintptr_t start;        /* 0: free; published last, cleared first */
	uintptr_t len;
	uintptr_t page;         /* the mapping's page size (huge pages) */
	uintptr_t hit;          /* first faulting address, 0: none */
};

static struct _watch g_watch[SB_VHOST_SIGBUS_SLOTS];
static uint32_t g_watch_top;            /* slots in use are below this */
static pthread_mutex_t g_watch_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_hits;                 /* faults handled, ever */
static struct sigaction g_prev_action;
static pthread_once_t g_install_once = PTHREAD_ONCE_INIT;
static int g_install_rc;

static struct _watch *
_lookup(uintptr_t addr)
{
	uint32_t top = __atomic_load_n(&g_watch_top, __ATOMIC_ACQUIRE), i;

	for (i = 0; i < top; i++) {
		struct _watch *w = &g_watch[i];
		uintptr_t start = __atomic_load_n(&w->start, __ATOMIC_ACQUIRE);

		if (start != 0 && addr >= start && addr - start < w->len) {
			return w;
		}
	}
	return NULL;
}

static void
_forward(int sig, siginfo_t *si, void *uc)
{
	if (g_prev_action.sa_flags & SA_SIGINFO) {
		g_prev_action.sa_sigaction(sig, si, uc);
	} else if (g_prev_action.sa_handler != SIG_DFL && g_prev_action.sa_handler != SIG_IGN) {
		g_prev_action.sa_handler(sig);
	} else {
		/* Returning re-executes the access, which now takes the default action. */
		signal(sig, SIG_DFL);
	}
}

static void
_on_sigbus(int sig, siginfo_t *si, void *uc)
{
	int saved_errno = errno;
	uintptr_t addr = (uintptr_t)si->si_addr;
	struct _watch *w = _lookup(addr);
	uintptr_t page, none = 0;
	void *p;

	if (w == NULL) {
		errno = saved_errno;
		_forward(sig, si, uc);
		return;
	}
	page = addr & ~(w->page - 1);
	p = mmap((void *)page, w->page, PROT_READ | PROT_WRITE,
		 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		errno = saved_errno;
		_forward(sig, si, uc);
		return;
	}
	__atomic_compare_exchange_n(&w->hit, &none, addr, false, __ATOMIC_RELEASE,
				    __ATOMIC_RELAXED);
	__atomic_fetch_add(&g_hits, 1, __ATOMIC_RELEASE);
	sb_vhost_ctl_wake();
	errno = saved_errno;
}

static void
_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = _on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	g_install_rc = sigaction(SIGBUS, &sa, &g_prev_action) == 0 ? 0 : -errno;
	if (g_install_rc != 0) {
		SB_ERRLOG("vhost: cannot install the SIGBUS handler: %s\n", strerror(-g_install_rc));
	}
}

int
sb_vhost_sigbus_install(void)
{
	pthread_once(&g_install_once, _install);
	return g_install_rc;
}

void
sb_vhost_sigbus_watch(void *addr, size_t len, size_t page)
{
	uint32_t i;

	if (page < (size_t)sysconf(_SC_PAGESIZE) || (page & (page - 1)) != 0) {
		page = (size_t)sysconf(_SC_PAGESIZE);
	}
	pthread_mutex_lock(&g_watch_lock);
	for (i = 0; i < SB_VHOST_SIGBUS_SLOTS; i++) {
		struct _watch *w = &g_watch[i];

		if (__atomic_load_n(&w->start, __ATOMIC_RELAXED) == 0) {
			w->len = len;
			w->page = page;
			w->hit = 0;
			__atomic_store_n(&w->start, (uintptr_t)addr, __ATOMIC_RELEASE);
			if (i >= g_watch_top) {
				__atomic_store_n(&g_watch_top, i + 1, __ATOMIC_RELEASE);
			}
			pthread_mutex_unlock(&g_watch_lock);
			return;
		}
	}
	pthread_mutex_unlock(&g_watch_lock);
	SB_WARNLOG("vhost: more than %d guest mappings: %p is not protected against a "
		   "front-end that truncates its file\n", SB_VHOST_SIGBUS_SLOTS, addr);
}

static struct _watch *
_find(const void *addr)
{
	uint32_t top = __atomic_load_n(&g_watch_top, __ATOMIC_ACQUIRE), i;

	for (i = 0; i < top; i++) {
		if (__atomic_load_n(&g_watch[i].start, __ATOMIC_ACQUIRE) == (uintptr_t)addr) {
			return &g_watch[i];
		}
	}
	return NULL;
}

void
sb_vhost_sigbus_unwatch(void *addr)
{
	struct _watch *w;

	pthread_mutex_lock(&g_watch_lock);
	w = _find(addr);
	if (w != NULL) {
		__atomic_store_n(&w->start, 0, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&g_watch_lock);
}

void *
sb_vhost_sigbus_hit(const void *addr)
{
	struct _watch *w = _find(addr);

	return w != NULL ? (void *)__atomic_load_n(&w->hit, __ATOMIC_ACQUIRE) : NULL;
}

uint64_t
sb_vhost_sigbus_hits(void)
{
	return __atomic_load_n(&g_hits, __ATOMIC_ACQUIRE);
}
