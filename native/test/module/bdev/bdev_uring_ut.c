/* SPDX-License-Identifier: Apache-2.0 */
/* uring bdevs on real files through the real engine. */
#include "bdev_uring.h"
#include "bdev_uring_internal.h"
#include "bdev_engine_ut.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>

static char g_dir[64];

static void
_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", g_dir, name);
}

static int
_make_file(const char *path, off_t size)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);

	if (fd < 0) {
		return -errno;
	}
	if (ftruncate(fd, size) != 0) {
		close(fd);
		return -errno;
	}
	close(fd);
	return 0;
}

static void
test_create_errors(void)
{
	struct sb_uring_opts o = {.name = "u_bad"};
	char path[128], small[128];

	_path(path, sizeof(path), "missing");
	o.filename = path;
	CHECK_EQ(sb_bdev_uring_create(&o), -ENOENT);
	o.filename = g_dir; /* a directory */
	CHECK(sb_bdev_uring_create(&o) < 0);
	_path(small, sizeof(small), "small");
	CHECK_EQ(_make_file(small, 100), 0);
	o.filename = small;
	CHECK_EQ(sb_bdev_uring_create(&o), -EINVAL); /* less than one block */
	_path(path, sizeof(path), "f_bs");
	CHECK_EQ(_make_file(path, 1 << 20), 0);
	o.filename = path;
	o.block_size = 1000;
	CHECK_EQ(sb_bdev_uring_create(&o), -EINVAL);
	o.block_size = 0;
	o.filename = NULL;
	CHECK_EQ(sb_bdev_uring_create(&o), -EINVAL);
	CHECK_EQ(sb_bdev_uring_delete("u_none"), -ENODEV);
	unlink(small);
	unlink(path);
}

static void
test_round_trip(void)
{
	struct sb_uring_opts o = {.name = "u0", .block_size = 4096};
	struct sb_bdev_info info;
	struct sb_bdev_iostat st;
	char path[128];
	uint8_t *wbuf = NULL, *rbuf = NULL, *raw;
	struct iovec iov[3];
	uint32_t r = ut_io_reactor();
	int fd;

	_path(path, sizeof(path), "disk0");
	CHECK_EQ(_make_file(path, 8 << 20), 0);
	o.filename = path;
	CHECK_EQ(sb_bdev_uring_create(&o), 0);
	CHECK_EQ(sb_bdev_uring_create(&o), -EEXIST);
	{
		/* The file is locked while u0 serves it: alone, shared or not. */
		struct sb_uring_opts o2 = o;

		o2.name = "u1";
		CHECK_EQ(sb_bdev_uring_create(&o2), -EBUSY);
		o2.shared = true;
		CHECK_EQ(sb_bdev_uring_create(&o2), -EBUSY);
		CHECK(sb_bdev_ctl_get_info("u1", &info) != 0);
	}
	CHECK_EQ(sb_bdev_ctl_get_info("u0", &info), 0);
	CHECK(strcmp(info.module, "uring") == 0);
	CHECK_EQ(info.block_size, 4096);
	CHECK_EQ(info.num_blocks, 2048);
	CHECK(strstr(info.driver_specific, path) != NULL);
	CHECK(strstr(info.driver_specific, "\"o_direct\": true") != NULL);
	CHECK(info.supported_io_types[SB_BDEV_IO_FLUSH]);

	CHECK_EQ(posix_memalign((void **)&wbuf, 4096, 64 << 10), 0);
	CHECK_EQ(posix_memalign((void **)&rbuf, 4096, 64 << 10), 0);
	ut_fill_pattern(wbuf, 64 << 10, 7);

	/* Aligned, three iovecs straight into one writev. */
	iov[0] = (struct iovec){wbuf, 8192};
	iov[1] = (struct iovec){wbuf + 8192, 4096};
	iov[2] = (struct iovec){wbuf + 12288, 53248};
	CHECK_EQ(ut_io(r, "u0", SB_BDEV_IO_WRITE, 16, 16, iov, 3), 0);
	memset(rbuf, 0, 64 << 10);
	CHECK_EQ(ut_rw1(0, "u0", SB_BDEV_IO_READ, rbuf, 16, 16, 4096), 0);
	CHECK(memcmp(wbuf, rbuf, 64 << 10) == 0);

	/* The data is really in the file. */
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	memset(rbuf, 0, 4096);
	CHECK_EQ(pread(fd, rbuf, 4096, 16 * 4096 + 8192), 4096);
	CHECK(memcmp(rbuf, wbuf + 8192, 4096) == 0);
	close(fd);

	/* Unaligned buffers still work under O_DIRECT (bounced). */
	raw = malloc((64 << 10) + 1);
	CHECK(raw != NULL);
	ut_fill_pattern(raw + 1, 64 << 10, 9);
	CHECK_EQ(ut_rw1(r, "u0", SB_BDEV_IO_WRITE, raw + 1, 100, 16, 4096), 0);
	CHECK_EQ(ut_rw1(r, "u0", SB_BDEV_IO_READ, rbuf, 100, 16, 4096), 0);
	CHECK(memcmp(raw + 1, rbuf, 64 << 10) == 0);
	memset(raw, 0, (64 << 10) + 1);
	CHECK_EQ(ut_rw1(r, "u0", SB_BDEV_IO_READ, raw + 1, 16, 16, 4096), 0);
	CHECK(memcmp(raw + 1, wbuf, 64 << 10) == 0);
	/* Bigger than a pooled bounce buffer. */
	free(raw);
	raw = malloc((512 << 10) + 3);
	ut_fill_pattern(raw + 3, 512 << 10, 11);
	CHECK_EQ(ut_rw1(r, "u0", SB_BDEV_IO_WRITE, raw + 3, 1024, 128, 4096), 0);
	free(rbuf);
	CHECK_EQ(posix_memalign((void **)&rbuf, 4096, 512 << 10), 0);
	CHECK_EQ(ut_rw1(r, "u0", SB_BDEV_IO_READ, rbuf, 1024, 128, 4096), 0);
	CHECK(memcmp(raw + 3, rbuf, 512 << 10) == 0);
	free(raw);

	/* Flush; unmap and write-zeroes read back zero, neighbours intact. */
	CHECK_EQ(ut_io(r, "u0", SB_BDEV_IO_FLUSH, 0, 0, NULL, 0), 0);
	CHECK_EQ(ut_io(r, "u0", SB_BDEV_IO_UNMAP, 16, 4, NULL, 0), 0);
	CHECK_EQ(ut_io(r, "u0", SB_BDEV_IO_WRITE_ZEROES, 28, 4, NULL, 0), 0);
	CHECK_EQ(ut_rw1(r, "u0", SB_BDEV_IO_READ, rbuf, 16, 16, 4096), 0);
	CHECK(ut_all_bytes(rbuf, 0, 4 * 4096));
	CHECK(memcmp(rbuf + 4 * 4096, wbuf + 4 * 4096, 8 * 4096) == 0);
	CHECK(ut_all_bytes(rbuf + 12 * 4096, 0, 4 * 4096));
	CHECK_EQ(ut_rw1(r, "u0", SB_BDEV_IO_READ, rbuf, 2047, 2, 4096), -EINVAL);

	/* Without any fallocate zeroing: zeroes are written, 1 MiB at a time. */
	struct uring_disk *d = sb_bdev_get_by_name("u0")->ctxt;
	d->no_zero_range = true;
	d->no_punch_hole = true;
	ut_fill_pattern(wbuf, 64 << 10, 5);
	for (int i = 0; i < 48; i++) {
		CHECK_EQ(ut_rw1(r, "u0", SB_BDEV_IO_WRITE, wbuf, 1000 + (uint64_t)i * 16, 16, 4096),
			 0);
	}
	CHECK_EQ(ut_io(r, "u0", SB_BDEV_IO_WRITE_ZEROES, 1001, 766, NULL, 0), 0);
	CHECK_EQ(ut_io(r, "u0", SB_BDEV_IO_UNMAP, 1767, 1, NULL, 0), 0);
	for (int i = 0; i < 48; i++) {
		CHECK_EQ(ut_rw1(r, "u0", SB_BDEV_IO_READ, rbuf, 1000 + (uint64_t)i * 16, 16, 4096),
			 0);
		if (i == 0) {
			CHECK(memcmp(rbuf, wbuf, 4096) == 0);
			CHECK(ut_all_bytes(rbuf + 4096, 0, 15 * 4096));
		} else {
			CHECK(ut_all_bytes(rbuf, 0, 16 * 4096));
		}
	}

	CHECK_EQ(sb_bdev_ctl_get_iostat("u0", &st), 0);
	CHECK_EQ(st.num_write_ops, 3 + 48);
	CHECK_EQ(st.num_read_ops, 5 + 48);
	CHECK_EQ(st.num_unmap_ops, 2);
	CHECK_EQ(st.num_write_zeroes_ops, 2);
	CHECK_EQ(st.num_flush_ops, 1);
	CHECK_EQ(st.num_io_errors, 0);

	/* Rescan sees a grown file and tells open descriptors. */
	struct ut_events ev = {.bdev = "u0"};
	CHECK_EQ(sb_call(sb_reactor_get(r), _ut_open_events, &ev, 5000000), 0);
	CHECK_EQ(sb_bdev_uring_rescan("u0"), 0);
	CHECK_EQ(ev.resize, 0);
	CHECK_EQ(truncate(path, 16 << 20), 0);
	CHECK_EQ(sb_bdev_uring_rescan("u0"), 0);
	CHECK(ut_wait_counter(&ev.resize, 1));
	CHECK_EQ(sb_bdev_ctl_get_info("u0", &info), 0);
	CHECK_EQ(info.num_blocks, 4096);
	CHECK_EQ(ut_rw1(r, "u0", SB_BDEV_IO_WRITE, wbuf, 4000, 16, 4096), 0);
	CHECK_EQ(sb_call(sb_reactor_get(r), _ut_close_events, &ev, 5000000), 0);
	CHECK_EQ(sb_bdev_uring_rescan("nope"), -ENODEV);

	CHECK_EQ(sb_bdev_uring_delete("u0"), 0);
	CHECK_EQ(sb_bdev_ctl_get_info("u0", &info), -ENODEV);
	free(wbuf);
	free(rbuf);
	unlink(path);
}

/* Many I/Os in flight on one ring: more than its SQ depth. */
struct deep_ctx {
	struct sb_bdev_desc *desc;
	struct sb_io_channel *ch;
	struct sb_completion *done;
	uint8_t *buf;
	struct iovec iov[1000];
	int left;
	int errors;
};

static void
_deep_cb(struct sb_bdev_io *io, int status, void *arg)
{
	struct deep_ctx *c = arg;

	sb_bdev_free_io(io);
	if (status != 0) {
		c->errors++;
	}
	if (--c->left == 0) {
		sb_put_io_channel(c->ch);
		sb_bdev_close(c->desc);
		sb_complete(c->done, c->errors);
	}
}

static void
_deep_start(void *arg, struct sb_completion *done)
{
	struct deep_ctx *c = arg;
	int i, rc;

	c->done = done;
	rc = sb_bdev_open("u1", true, NULL, NULL, &c->desc);
	if (rc != 0) {
		sb_complete(done, rc);
		return;
	}
	c->ch = sb_bdev_get_io_channel(c->desc);
	c->left = 1000;
	for (i = 0; i < 1000; i++) {
		c->iov[i].iov_base = c->buf + (size_t)i * 4096;
		c->iov[i].iov_len = 4096;
		rc = sb_bdev_writev_blocks(c->desc, c->ch, &c->iov[i], 1, (uint64_t)i, 1, _deep_cb,
					   c);
		if (rc != 0) {
			c->errors++;
			c->left--;
		}
	}
}

static void
test_deep_queue(void)
{
	struct sb_uring_opts o = {.name = "u1"};
	struct deep_ctx c = {0};
	char path[128];
	uint8_t *check;
	int fd;

	_path(path, sizeof(path), "disk1");
	CHECK_EQ(_make_file(path, 4 << 20), 0);
	o.filename = path;
	CHECK_EQ(sb_bdev_uring_create(&o), 0);
	CHECK_EQ(posix_memalign((void **)&c.buf, 4096, 1000 * 4096), 0);
	ut_fill_pattern(c.buf, 1000 * 4096, 3);
	/* A file's detected block size is 512; this test wants 4 KiB blocks. */
	struct sb_bdev_info info;
	CHECK_EQ(sb_bdev_ctl_get_info("u1", &info), 0);
	CHECK_EQ(info.block_size, 512);
	CHECK_EQ(sb_bdev_uring_delete("u1"), 0);
	o.block_size = 4096;
	CHECK_EQ(sb_bdev_uring_create(&o), 0);
	CHECK_EQ(sb_call(sb_reactor_get(ut_io_reactor()), _deep_start, &c, 10000000), 0);
	check = malloc(1000 * 4096);
	fd = open(path, O_RDONLY);
	CHECK_EQ(pread(fd, check, 1000 * 4096, 0), 1000 * 4096);
	close(fd);
	CHECK(memcmp(check, c.buf, 1000 * 4096) == 0);
	free(check);
	free(c.buf);
	CHECK_EQ(sb_bdev_uring_delete("u1"), 0);
	unlink(path);
}

/* A file on a 1 MiB tmpfs: ENOSPC comes back as the I/O status; zeroing falls back. */
static void
test_tmpfs_enospc(void)
{
	struct sb_uring_opts o = {.name = "u_tmp"};
	struct sb_bdev_info info;
	char mnt[128], path[160];
	uint8_t *buf = NULL;
	uint32_t r = ut_io_reactor();
	int i, rc = 0;

	_path(mnt, sizeof(mnt), "tmpfs");
	CHECK_EQ(mkdir(mnt, 0700), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0) {
		fprintf(stderr, "cannot mount a tmpfs (%s)\n", strerror(errno));
		CHECK(false);
		rmdir(mnt);
		return;
	}
	snprintf(path, sizeof(path), "%s/disk", mnt);
	CHECK_EQ(_make_file(path, 4 << 20), 0);
	o.filename = path;
	CHECK_EQ(sb_bdev_uring_create(&o), 0);
	CHECK_EQ(sb_bdev_ctl_get_info("u_tmp", &info), 0);
	CHECK_EQ(info.num_blocks, 8192);
	CHECK_EQ(posix_memalign((void **)&buf, 4096, 256 << 10), 0);
	memset(buf, 0xee, 256 << 10);

	/* tmpfs has no FALLOC_FL_ZERO_RANGE: write-zeroes must still zero. */
	CHECK_EQ(ut_rw1(r, "u_tmp", SB_BDEV_IO_WRITE, buf, 0, 16, 512), 0);
	CHECK_EQ(ut_io(r, "u_tmp", SB_BDEV_IO_WRITE_ZEROES, 4, 8, NULL, 0), 0);
	CHECK_EQ(ut_rw1(r, "u_tmp", SB_BDEV_IO_READ, buf, 0, 16, 512), 0);
	CHECK(ut_all_bytes(buf, 0xee, 2048));
	CHECK(ut_all_bytes(buf + 2048, 0, 4096));
	CHECK(ut_all_bytes(buf + 6144, 0xee, 2048));

	memset(buf, 0xee, 256 << 10);
	for (i = 0; i < 16 && rc == 0; i++) {
		rc = ut_rw1(r, "u_tmp", SB_BDEV_IO_WRITE, buf, (uint64_t)i * 512, 512, 512);
	}
	CHECK_EQ(rc, -ENOSPC);
	CHECK(i <= 5);
	/* The engine lives on: reads still work. */
	CHECK_EQ(ut_rw1(r, "u_tmp", SB_BDEV_IO_READ, buf, 0, 16, 512), 0);
	struct sb_bdev_iostat st;
	CHECK_EQ(sb_bdev_ctl_get_iostat("u_tmp", &st), 0);
	CHECK(st.num_io_errors >= 1);

	CHECK_EQ(sb_bdev_uring_delete("u_tmp"), 0);
	free(buf);
	unlink(path);
	CHECK_EQ(umount(mnt), 0);
	rmdir(mnt);
}

int
main(void)
{
	sb_log_set_stderr(getenv("SB_UT_VERBOSE") != NULL);
	snprintf(g_dir, sizeof(g_dir), "/tmp/sb_uring_ut.XXXXXX");
	if (mkdtemp(g_dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	CHECK_EQ(ut_engine_start(), 0);
	RUN_TEST(test_create_errors);
	RUN_TEST(test_round_trip);
	RUN_TEST(test_deep_queue);
	RUN_TEST(test_tmpfs_enospc);
	sb_engine_stop();
	rmdir(g_dir);
	return UT_SUMMARY();
}
