/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest memory files shrunk under our mappings: the SIGBUS handler absorbs
 * faults inside watched mappings (zero page, hit recorded) and hands every
 * other SIGBUS to the handler that was there before.
 */
#include "ut.h"
#include "vhost/vhost_internal.h"

#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static sigjmp_buf g_jmp;
static volatile sig_atomic_t g_prev_calls;

static void
_prev_handler(int sig, siginfo_t *si, void *uc)
{
	g_prev_calls++;
	siglongjmp(g_jmp, 1);
}

/* 1 if reading *p went to the previous handler, 0 if the read returned. */
static __attribute__((noinline)) int
_faults_to_prev(volatile uint8_t *p)
{
	if (sigsetjmp(g_jmp, 1) == 0) {
		(void)*p;
		return 0;
	}
	return 1;
}

/* A 4-page memfd mapped MAP_SHARED, each page filled with its number + 1. */
static uint8_t *
_map(int *fd_out, size_t *page_out)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int fd = memfd_create("sigbus-ut", MFD_CLOEXEC);
	uint8_t *p;
	int i;

	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, (off_t)(4 * page)), 0);
	p = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED);
	for (i = 0; i < 4; i++) {
		memset(p + i * page, i + 1, page);
	}
	*fd_out = fd;
	*page_out = page;
	return p;
}

static void
test_fault_in_a_watched_mapping_is_absorbed(void)
{
	volatile uint8_t *p;
	uint64_t hits = sb_vhost_sigbus_hits();
	size_t page;
	int fd;

	p = _map(&fd, &page);
	sb_vhost_sigbus_watch((void *)p, 4 * page, page);
	CHECK(sb_vhost_sigbus_hit((void *)p) == NULL);
	/* The front-end keeps one page and a half. */
	CHECK_EQ(ftruncate(fd, (off_t)(page + page / 2)), 0);
	CHECK_EQ(p[0], 1);
	CHECK_EQ(p[page + 10], 2);
	/* Past the end of the file: a zero page instead of a dead process. */
	CHECK_EQ(p[2 * page + 17], 0);
	CHECK(sb_vhost_sigbus_hit((void *)p) == (void *)(p + 2 * page + 17));
	CHECK_EQ(sb_vhost_sigbus_hits(), hits + 1);
	/* The replacement page is private and writable. */
	p[2 * page] = 0x5a;
	CHECK_EQ(p[2 * page], 0x5a);
	/* Each faulting page is replaced once; the first address is kept. */
	p[3 * page + 1] = 7;
	CHECK_EQ(p[3 * page + 1], 7);
	CHECK_EQ(sb_vhost_sigbus_hits(), hits + 2);
	CHECK(sb_vhost_sigbus_hit((void *)p) == (void *)(p + 2 * page + 17));
	/* The file itself did not grow back. */
	CHECK_EQ(lseek(fd, 0, SEEK_END), (off_t)(page + page / 2));
	sb_vhost_sigbus_unwatch((void *)p);
	CHECK(sb_vhost_sigbus_hit((void *)p) == NULL);
	munmap((void *)p, 4 * page);
	close(fd);
}

static void
test_other_faults_reach_the_previous_handler(void)
{
	volatile uint8_t *p, *q;
	size_t page;
	int fd, fd2;

	p = _map(&fd, &page);
	q = _map(&fd2, &page);
	/* A watched mapping elsewhere does not cover this one. */
	sb_vhost_sigbus_watch((void *)q, 4 * page, page);
	CHECK_EQ(ftruncate(fd, 0), 0);
	g_prev_calls = 0;
	CHECK_EQ(_faults_to_prev(p + page), 1);
	CHECK_EQ(g_prev_calls, 1);
	/* A mapping no longer watched is not protected either. */
	sb_vhost_sigbus_unwatch((void *)q);
	CHECK_EQ(ftruncate(fd2, 0), 0);
	CHECK_EQ(_faults_to_prev(q), 1);
	CHECK_EQ(g_prev_calls, 2);
	munmap((void *)p, 4 * page);
	munmap((void *)q, 4 * page);
	close(fd);
	close(fd2);
}

static void
test_many_mappings(void)
{
	static uint8_t *maps[64];
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int fds[64], i;

	for (i = 0; i < 64; i++) {
		fds[i] = memfd_create("sigbus-many", MFD_CLOEXEC);
		CHECK_EQ(ftruncate(fds[i], (off_t)page), 0);
		maps[i] = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
		CHECK(maps[i] != MAP_FAILED);
		sb_vhost_sigbus_watch(maps[i], page, page);
	}
	/* Freed slots are reused; the one that faults is the one recorded. */
	for (i = 0; i < 64; i += 2) {
		sb_vhost_sigbus_unwatch(maps[i]);
	}
	CHECK_EQ(ftruncate(fds[33], 0), 0);
	CHECK_EQ(((volatile uint8_t *)maps[33])[5], 0);
	for (i = 0; i < 64; i++) {
		CHECK(sb_vhost_sigbus_hit(maps[i]) == (i == 33 ? maps[33] + 5 : NULL));
		if (i % 2) {
			sb_vhost_sigbus_unwatch(maps[i]);
		}
		munmap(maps[i], page);
		close(fds[i]);
	}
}

int
main(int argc, char **argv)
{
	struct sigaction sa;

	UT_INIT(argc, argv);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = _prev_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	CHECK_EQ(sigaction(SIGBUS, &sa, NULL), 0);
	CHECK_EQ(sb_vhost_sigbus_install(), 0);
	CHECK_EQ(sb_vhost_sigbus_install(), 0);  /* once */

	RUN_TEST(test_fault_in_a_watched_mapping_is_absorbed);
	RUN_TEST(test_other_faults_reach_the_previous_handler);
	RUN_TEST(test_many_mappings);
	return UT_SUMMARY();
}
