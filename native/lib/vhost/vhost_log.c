/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dirty page log for live migration (vhost-user.rst "Migration" and
 * "Log").  The front-end hands over a memfd with SET_LOG_BASE; while
 * VHOST_F_LOG_ALL is negotiated the reactor marks every guest page it
 * writes (IN data, status bytes, used ring) so that the front-end sends
 * those pages to the destination again.  The front-end reads and clears
 * bits concurrently: bits are only ever set, with an atomic OR.
 */
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t
sb_vhost_log_bytes_needed(const struct sb_vhost_mem *mem)
{
	uint64_t end = 0, pages;
	uint32_t i;

	if (mem == NULL) {
		return 0;
	}
	for (i = 0; i < mem->nregions; i++) {
		/* sb_vhost_mem_add refused regions whose end wraps. */
		if (mem->regions[i].gpa + mem->regions[i].size > end) {
			end = mem->regions[i].gpa + mem->regions[i].size;
		}
	}
	pages = (end + SB_VHOST_LOG_PAGE - 1) / SB_VHOST_LOG_PAGE;
	return (pages + 7) / 8;
}

int
sb_vhost_log_map(int fd, uint64_t mmap_size, uint64_t mmap_offset,
		 const struct sb_vhost_mem *mem, struct sb_vhost_log **out, const char **why)
{
	struct sb_vhost_log *log;
	struct stat st;
	uint64_t need = sb_vhost_log_bytes_needed(mem);
	void *addr;
	int rc;

	*out = NULL;
	if (need == 0) {
		*why = "no guest memory table yet (SET_LOG_BASE before SET_MEM_TABLE)";
		return -EINVAL;
	}
	if (mmap_size == 0 || mmap_size > SB_VHOST_LOG_MAX || mmap_offset > SB_VHOST_LOG_MAX) {
		*why = "log size or offset out of range";
		return -EINVAL;
	}
	if (mmap_size < need) {
		*why = "log smaller than guest memory needs";
		return -EINVAL;
	}
	/*
	 * QEMU allocates the log with memfd_create and seals it; a file a
	 * front-end could swap or grow behind us (a pipe, a device, a file
	 * on disk) is refused.  F_GET_SEALS answers only on shmem files
	 * (memfd; tmpfs and hugetlbfs files too, which the SIGBUS guard
	 * covers like a memfd).
	 */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || fcntl(fd, F_GET_SEALS) < 0) {
		*why = "log fd is not a memfd";
		return -EINVAL;
	}
	if ((uint64_t)st.st_size < mmap_offset || (uint64_t)st.st_size - mmap_offset < mmap_size) {
		*why = "log region extends past the end of its file";
		return -EINVAL;
	}
	log = calloc(1, sizeof(*log));
	if (log == NULL) {
		return -ENOMEM;
	}
	/* Map from offset 0: mmap wants a page-aligned offset, the message need not have one. */
	log->mmap_size = mmap_offset + mmap_size;
	addr = mmap(NULL, log->mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (addr == MAP_FAILED) {
		rc = -errno;
		free(log);
		*why = "mmap of the log failed";
		return rc;
	}
	log->mmap_addr = addr;
	log->bits = (uint8_t *)addr + mmap_offset;
	log->size = mmap_size;
	log->drop = getenv("SB_VHOST_TEST_DROP_DIRTY_LOG") != NULL;
	/* A front-end that shrinks the memfd later is caught like guest RAM. */
	sb_vhost_sigbus_watch(addr, log->mmap_size, (size_t)st.st_blksize);
	*out = log;
	return 0;
}

void
sb_vhost_log_unmap(struct sb_vhost_log *log)
{
	if (log == NULL) {
		return;
	}
	sb_vhost_sigbus_unwatch(log->mmap_addr);
	munmap(log->mmap_addr, log->mmap_size);
	free(log);
}

void
sb_vhost_log_write(struct sb_vhost_log *log, uint64_t gpa, uint64_t len)
{
	uint64_t page, last;

	if (len == 0 || log->drop) {
		return;
	}
	page = gpa / SB_VHOST_LOG_PAGE;
	last = (gpa + len - 1) / SB_VHOST_LOG_PAGE;
	if (gpa + len - 1 < gpa) {
		last = UINT64_MAX / SB_VHOST_LOG_PAGE;
	}
	for (; page <= last; page++) {
		if (page / 8 >= log->size) {
			/* Memory grew past the log without a new SET_LOG_BASE: count, never write out. */
			__atomic_fetch_add(&log->outside, last - page + 1, __ATOMIC_RELAXED);
			return;
		}
		/*
		 * Release: the front-end clears a bit and then copies the page, so
		 * the data must be visible before the bit is.
		 */
		__atomic_fetch_or(&log->bits[page / 8], (uint8_t)(1u << (page % 8)), __ATOMIC_RELEASE);
	}
}
