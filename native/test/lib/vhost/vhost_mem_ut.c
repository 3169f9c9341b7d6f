/* SPDX-License-Identifier: Apache-2.0 */
/* Guest memory table: region checks and the two address translators. */
#include "ut.h"
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint8_t g_a[0x10000], g_b[0x10000];

static struct vhost_user_mem_region
_r(uint64_t gpa, uint64_t size, uint64_t uva)
{
	struct vhost_user_mem_region r = { .guest_phys_addr = gpa, .memory_size = size,
					   .userspace_addr = uva };
	return r;
}

/* Two regions adjacent in guest physical space, far apart in our memory. */
static struct sb_vhost_mem *
_two_regions(void)
{
	struct sb_vhost_mem *mem = sb_vhost_mem_alloc();
	struct vhost_user_mem_region a = _r(0x100000, sizeof(g_a), 0x7f0000000000ull);
	struct vhost_user_mem_region b = _r(0x110000, sizeof(g_b), 0x7f1000000000ull);

	CHECK_EQ(sb_vhost_mem_add(mem, &a, -1, g_a), 0);
	CHECK_EQ(sb_vhost_mem_add(mem, &b, -1, g_b), 0);
	return mem;
}

static void
test_region_checks(void)
{
	struct sb_vhost_mem *mem = _two_regions();
	struct vhost_user_mem_region r;

	r = _r(0x108000, 0x1000, 0x1000);  /* inside region a */
	CHECK_EQ(sb_vhost_mem_add(mem, &r, -1, g_a), -EINVAL);
	r = _r(0x0ff000, 0x2000, 0x1000);  /* straddles the start of a */
	CHECK_EQ(sb_vhost_mem_add(mem, &r, -1, g_a), -EINVAL);
	r = _r(0x200000, 0x1000, 0x7f0000000800ull);  /* overlaps a in front-end VA */
	CHECK_EQ(sb_vhost_mem_add(mem, &r, -1, g_a), -EINVAL);
	r = _r(0x200000, 0, 0x1000);
	CHECK_EQ(sb_vhost_mem_add(mem, &r, -1, g_a), -EINVAL);
	r = _r(UINT64_MAX - 0xfff, 0x2000, 0x1000);  /* wraps */
	CHECK_EQ(sb_vhost_mem_add(mem, &r, -1, g_a), -EINVAL);
	r = _r(0x200000, 0x1000, 0x1000);
	CHECK_EQ(sb_vhost_mem_add(mem, &r, -1, NULL), -EINVAL);
	CHECK_EQ(mem->nregions, 2);
	sb_vhost_mem_forget(mem);
	sb_vhost_mem_free(mem);
}

static void
test_gpa_to_va(void)
{
	struct sb_vhost_mem *mem = _two_regions();
	uint64_t len;
	void *p;

	len = 16;
	p = sb_vhost_gpa_to_va(mem, 0x100010, &len);
	CHECK(p == g_a + 0x10);
	CHECK_EQ(len, 16);
	/* Clamped at the end of region a. */
	len = 0x100;
	p = sb_vhost_gpa_to_va(mem, 0x10fff0, &len);
	CHECK(p == g_a + 0xfff0);
	CHECK_EQ(len, 0x10);
	len = 4;
	CHECK(sb_vhost_gpa_to_va(mem, 0x120000, &len) == NULL);
	CHECK(sb_vhost_gpa_to_va(mem, 0xfffff, &len) == NULL);
	CHECK(sb_vhost_gpa_to_va(NULL, 0x100000, &len) == NULL);
	sb_vhost_mem_forget(mem);
	sb_vhost_mem_free(mem);
}

static void
test_gpa_to_iov(void)
{
	struct sb_vhost_mem *mem = _two_regions();
	struct iovec iov[4];
	uint32_t n = 0;

	/* Spanning the two adjacent regions gives two pieces. */
	CHECK_EQ(sb_vhost_gpa_to_iov(mem, 0x10fff0, 0x20, iov, &n, 4), 0);
	CHECK_EQ(n, 2);
	CHECK(iov[0].iov_base == g_a + 0xfff0 && iov[0].iov_len == 0x10);
	CHECK(iov[1].iov_base == g_b && iov[1].iov_len == 0x10);
	/* Running off the end of mapped memory. */
	n = 0;
	CHECK_EQ(sb_vhost_gpa_to_iov(mem, 0x11fff0, 0x20, iov, &n, 4), -EFAULT);
	n = 0;
	CHECK_EQ(sb_vhost_gpa_to_iov(mem, 0x0ffff0, 0x20, iov, &n, 4), -EFAULT);
	/* Address + length overflowing 64 bits. */
	n = 0;
	CHECK_EQ(sb_vhost_gpa_to_iov(mem, UINT64_MAX - 4, 0x20, iov, &n, 4), -EFAULT);
	/* Not enough iovecs. */
	n = 0;
	CHECK_EQ(sb_vhost_gpa_to_iov(mem, 0x10fff0, 0x20, iov, &n, 1), -E2BIG);
	/* Zero length is nothing. */
	n = 0;
	CHECK_EQ(sb_vhost_gpa_to_iov(mem, 0x100000, 0, iov, &n, 4), 0);
	CHECK_EQ(n, 0);
	sb_vhost_mem_forget(mem);
	sb_vhost_mem_free(mem);
}

static void
test_uva_to_va(void)
{
	struct sb_vhost_mem *mem = _two_regions();

	CHECK(sb_vhost_uva_to_va(mem, 0x7f0000000100ull, 0x100) == g_a + 0x100);
	CHECK(sb_vhost_uva_to_va(mem, 0x7f1000000000ull, sizeof(g_b)) == g_b);
	/* One byte past the region end. */
	CHECK(sb_vhost_uva_to_va(mem, 0x7f0000000100ull, sizeof(g_a)) == NULL);
	CHECK(sb_vhost_uva_to_va(mem, 0x7f2000000000ull, 1) == NULL);
	CHECK(sb_vhost_uva_to_va(mem, UINT64_MAX - 1, 4) == NULL);
	sb_vhost_mem_forget(mem);
	sb_vhost_mem_free(mem);
}

static void
test_remove_and_dup(void)
{
	struct sb_vhost_mem *mem = _two_regions(), *copy;
	struct vhost_user_mem_region a = _r(0x100000, sizeof(g_a), 0x7f0000000000ull);
	struct vhost_user_mem_region bogus = _r(0x300000, 0x1000, 0);
	uint64_t len = 1;

	copy = sb_vhost_mem_dup(mem);
	CHECK(copy != NULL && copy->nregions == 2);
	CHECK_EQ(sb_vhost_mem_remove(copy, &bogus, false), -ENOENT);
	CHECK_EQ(sb_vhost_mem_remove(copy, &a, false), 0);
	CHECK(sb_vhost_gpa_to_va(copy, 0x100000, &len) == NULL);
	CHECK(sb_vhost_gpa_to_va(copy, 0x110000, &len) == g_b);
	/* The original is untouched. */
	CHECK(sb_vhost_gpa_to_va(mem, 0x100000, &len) == g_a);
	free(copy);
	sb_vhost_mem_forget(mem);
	sb_vhost_mem_free(mem);
}

static void
test_mmap_memfd(void)
{
	struct sb_vhost_mem *mem = sb_vhost_mem_alloc();
	struct vhost_user_mem_region r = _r(0x40000000, 0x4000, 0x7e0000000000ull);
	uint8_t buf[4] = { 0 };
	uint64_t len = 4;
	uint8_t *p;
	int fd = memfd_create("ut", MFD_CLOEXEC);

	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, 0x6000), 0);
	r.mmap_offset = 0x2000;
	CHECK_EQ(sb_vhost_mem_add(mem, &r, fd, NULL), 0);
	close(fd);
	p = sb_vhost_gpa_to_va(mem, 0x40000010, &len);
	CHECK(p != NULL);
	if (p != NULL) {
		memcpy(p, "abcd", 4);
		/* Visible through the mapping at mmap_offset + 0x10. */
		memcpy(buf, (uint8_t *)mem->regions[0].mmap_addr + 0x2010, 4);
		CHECK(memcmp(buf, "abcd", 4) == 0);
	}
	/* A region reaching past the end of its file would SIGBUS on access: refused. */
	fd = memfd_create("ut2", MFD_CLOEXEC);
	CHECK_EQ(ftruncate(fd, 0x1000), 0);
	r = _r(0x50000000, 0x2000, 0x7d0000000000ull);
	CHECK_EQ(sb_vhost_mem_add(mem, &r, fd, NULL), -EINVAL);
	r.memory_size = 0x1000;
	r.mmap_offset = 0x1000;
	CHECK_EQ(sb_vhost_mem_add(mem, &r, fd, NULL), -EINVAL);
	close(fd);
	/* Not a regular file, or not a file at all. */
	CHECK_EQ(sb_vhost_mem_add(mem, &r, 0, NULL) < 0, 1);
	CHECK_EQ(sb_vhost_mem_add(mem, &r, 1000, NULL), -EBADF);
	CHECK_EQ(mem->nregions, 1);
	sb_vhost_mem_free(mem);
}

int
main(void)
{
	RUN_TEST(test_region_checks);
	RUN_TEST(test_gpa_to_va);
	RUN_TEST(test_gpa_to_iov);
	RUN_TEST(test_uva_to_va);
	RUN_TEST(test_remove_and_dup);
	RUN_TEST(test_mmap_memfd);
	return UT_SUMMARY();
}
