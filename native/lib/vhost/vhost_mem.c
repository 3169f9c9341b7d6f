/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest memory table: regions mapped from the fds of SET_MEM_TABLE /
 * ADD_MEM_REG, and the two translators the data path uses (guest physical
 * and front-end virtual addresses).  Every translation clamps its length
 * to the region so a guest address can never reach past a mapping.
 */
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct sb_vhost_mem *
sb_vhost_mem_alloc(void)
{
	return calloc(1, sizeof(struct sb_vhost_mem));
}

static void
_region_unmap(struct sb_vhost_mem_region *r)
{
	if (r->mmap_addr != NULL) {
		sb_vhost_sigbus_unwatch(r->mmap_addr);
		munmap(r->mmap_addr, r->mmap_size);
		r->mmap_addr = NULL;
		if (r->fd >= 0) {
			close(r->fd);
		}
		r->fd = -1;
	}
}

void
sb_vhost_mem_free(struct sb_vhost_mem *mem)
{
	uint32_t i;

	if (mem == NULL) {
		return;
	}
	for (i = 0; i < mem->nregions; i++) {
		_region_unmap(&mem->regions[i]);
	}
	free(mem);
}

void
sb_vhost_mem_forget(struct sb_vhost_mem *mem)
{
	mem->nregions = 0;
}

struct sb_vhost_mem *
sb_vhost_mem_dup(const struct sb_vhost_mem *mem)
{
	struct sb_vhost_mem *copy = sb_vhost_mem_alloc();

	if (copy != NULL && mem != NULL) {
		memcpy(copy, mem, sizeof(*copy));
	}
	return copy;
}

static bool
_ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	/* Both ranges are known not to wrap. */
	return a < b + blen && b < a + alen;
}

int
sb_vhost_mem_add(struct sb_vhost_mem *mem, const struct vhost_user_mem_region *r, int fd,
		 uint8_t *host)
{
	struct sb_vhost_mem_region *nr;
	uint64_t map_size;
	struct stat st;
	void *addr;
	uint32_t i;

	if (r->memory_size == 0 || r->guest_phys_addr + r->memory_size < r->guest_phys_addr ||
	    r->userspace_addr + r->memory_size < r->userspace_addr ||
	    r->mmap_offset + r->memory_size < r->mmap_offset) {
		return -EINVAL;
	}
	if (mem->nregions >= SB_VHOST_MAX_MEM_SLOTS) {
		return -ENOSPC;
	}
	for (i = 0; i < mem->nregions; i++) {
		const struct sb_vhost_mem_region *o = &mem->regions[i];

		if (_ranges_overlap(o->gpa, o->size, r->guest_phys_addr, r->memory_size) ||
		    _ranges_overlap(o->uva, o->size, r->userspace_addr, r->memory_size)) {
			return -EINVAL;
		}
	}
	nr = &mem->regions[mem->nregions];
	memset(nr, 0, sizeof(*nr));
	nr->gpa = r->guest_phys_addr;
	nr->size = r->memory_size;
	nr->uva = r->userspace_addr;
	nr->mmap_offset = r->mmap_offset;
	if (fd >= 0) {
		/*
		 * Ring and indirect-table alignment is checked on guest and
		 * front-end addresses; it holds for our pointers only if the
		 * region keeps them congruent (QEMU's are page aligned).
		 */
		if (((r->guest_phys_addr | r->userspace_addr | r->mmap_offset) & 15) != 0) {
			return -EINVAL;
		}
		/*
		 * Map from file offset 0 so that hugetlbfs (whose mappings must
		 * start at a huge page boundary) and memfd behave the same; the
		 * region starts mmap_offset bytes in.
		 */
		map_size = r->mmap_offset + r->memory_size;
		if (map_size > (uint64_t)SIZE_MAX) {
			return -EINVAL;
		}
		/*
		 * Touching a shared mapping beyond the end of its file raises
		 * SIGBUS: the file must cover the whole region (memfd and
		 * hugetlbfs files are regular files with a real size).  A
		 * front-end that shrinks it later is caught by vhost_sigbus.c.
		 */
		if (fstat(fd, &st) != 0) {
			return -errno;
		}
		if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < map_size) {
			return -EINVAL;
		}
		addr = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
		if (addr == MAP_FAILED) {
			return -errno;
		}
		/* Kept so that a restart can hand the region to the next process. */
		nr->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (nr->fd < 0) {
			int rc = -errno;

			munmap(addr, map_size);
			return rc;
		}
		/* st_blksize: the huge page size on hugetlbfs. */
		sb_vhost_sigbus_watch(addr, map_size, (size_t)st.st_blksize);
		nr->mmap_addr = addr;
		nr->mmap_size = map_size;
		nr->host = (uint8_t *)addr + r->mmap_offset;
	} else {
		if (host == NULL) {
			return -EINVAL;
		}
		nr->fd = -1;
		nr->host = host;
	}
	mem->nregions++;
	return 0;
}

int
sb_vhost_mem_remove(struct sb_vhost_mem *mem, const struct vhost_user_mem_region *r, bool unmap)
{
	uint32_t i;

	for (i = 0; i < mem->nregions; i++) {
		struct sb_vhost_mem_region *o = &mem->regions[i];

		if (o->gpa == r->guest_phys_addr && o->size == r->memory_size) {
			if (unmap) {
				_region_unmap(o);
			}
			memmove(o, o + 1, (mem->nregions - i - 1) * sizeof(*o));
			mem->nregions--;
			return 0;
		}
	}
	return -ENOENT;
}

static const struct sb_vhost_mem_region *
_find_gpa(const struct sb_vhost_mem *mem, uint64_t gpa)
{
	uint32_t i;

	for (i = 0; i < mem->nregions; i++) {
		const struct sb_vhost_mem_region *r = &mem->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size) {
			return r;
		}
	}
	return NULL;
}

void *
sb_vhost_gpa_to_va(const struct sb_vhost_mem *mem, uint64_t gpa, uint64_t *len)
{
	const struct sb_vhost_mem_region *r;
	uint64_t off;

	if (mem == NULL) {
		return NULL;
	}
	r = _find_gpa(mem, gpa);
	if (r == NULL) {
		return NULL;
	}
	off = gpa - r->gpa;
	if (*len > r->size - off) {
		*len = r->size - off;
	}
	return r->host + off;
}

int
sb_vhost_va_to_gpa(const struct sb_vhost_mem *mem, const void *va, uint64_t *gpa)
{
	uintptr_t p = (uintptr_t)va;
	uint32_t i;

	for (i = 0; mem != NULL && i < mem->nregions; i++) {
		const struct sb_vhost_mem_region *r = &mem->regions[i];
		uintptr_t base = (uintptr_t)r->host;

		if (p >= base && p - base < r->size) {
			*gpa = r->gpa + (p - base);
			return 0;
		}
	}
	return -EFAULT;
}

void *
sb_vhost_uva_to_va(const struct sb_vhost_mem *mem, uint64_t uva, uint64_t len)
{
	uint32_t i;

	if (mem == NULL || uva + len < uva) {
		return NULL;
	}
	for (i = 0; i < mem->nregions; i++) {
		const struct sb_vhost_mem_region *r = &mem->regions[i];

		if (uva >= r->uva && uva - r->uva < r->size && len <= r->size - (uva - r->uva)) {
			return r->host + (uva - r->uva);
		}
	}
	return NULL;
}

int
sb_vhost_gpa_to_iov_gpa(const struct sb_vhost_mem *mem, uint64_t gpa, uint64_t len,
			struct iovec *iov, uint64_t *gpas, uint32_t *iovcnt, uint32_t max)
{
	uint64_t chunk;
	void *va;

	if (gpa + len < gpa) {
		return -EFAULT;
	}
	while (len > 0) {
		chunk = len;
		va = sb_vhost_gpa_to_va(mem, gpa, &chunk);
		if (va == NULL) {
			return -EFAULT;
		}
		if (*iovcnt >= max) {
			return -E2BIG;
		}
		iov[*iovcnt].iov_base = va;
		iov[*iovcnt].iov_len = chunk;
		if (gpas != NULL) {
			gpas[*iovcnt] = gpa;
		}
		(*iovcnt)++;
		gpa += chunk;
		len -= chunk;
	}
	return 0;
}

int
sb_vhost_gpa_to_iov(const struct sb_vhost_mem *mem, uint64_t gpa, uint64_t len,
		    struct iovec *iov, uint32_t *iovcnt, uint32_t max)
{
	return sb_vhost_gpa_to_iov_gpa(mem, gpa, len, iov, NULL, iovcnt, max);
}
