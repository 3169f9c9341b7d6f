/* SPDX-License-Identifier: Apache-2.0 */
/* Engine log: levels, line format, recent-lines ring, file output, thread safety. */
#include "sb/log.h"
#include "ut.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_buf[256 * 1024];

static int
_count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++) {
		n += *s == '\n';
	}
	return n;
}

static void
test_levels_and_format(void)
{
	uint32_t len;

	sb_log_clear_recent();
	CHECK_EQ(sb_log_get_level(), SB_LOG_NOTICE);
	SB_ERRLOG("error %d\n", 1);
	SB_WARNLOG("warn %s", "two");
	SB_NOTICELOG("notice\n");
	SB_INFOLOG("info is dropped\n");
	SB_DEBUGLOG("debug is dropped\n");
	len = sb_log_get_recent(g_buf, sizeof(g_buf));
	CHECK_EQ(len, strlen(g_buf));
	CHECK_EQ(_count_lines(g_buf), 3);
	CHECK(strstr(g_buf, "ERROR log_ut.c:") != NULL);
	CHECK(strstr(g_buf, "test_levels_and_format: error 1\n") != NULL);
	CHECK(strstr(g_buf, "WARN") != NULL && strstr(g_buf, "warn two\n") != NULL);
	CHECK(strstr(g_buf, "NOTICE") != NULL);
	CHECK(strstr(g_buf, "dropped") == NULL);
	/* The thread name is in the line. */
	CHECK(strstr(g_buf, " log_ut ") != NULL);
	/* Oldest first. */
	CHECK(strstr(g_buf, "error 1") < strstr(g_buf, "notice"));

	sb_log_set_level(SB_LOG_DEBUG);
	CHECK_EQ(sb_log_get_level(), SB_LOG_DEBUG);
	SB_DEBUGLOG("now debug shows\n");
	sb_log_set_level(SB_LOG_ERROR);
	SB_WARNLOG("warn hidden\n");
	sb_log_get_recent(g_buf, sizeof(g_buf));
	CHECK(strstr(g_buf, "DEBUG") != NULL && strstr(g_buf, "now debug shows") != NULL);
	CHECK(strstr(g_buf, "warn hidden") == NULL);
	/* Out-of-range levels clamp. */
	sb_log_set_level((enum sb_log_level)99);
	CHECK_EQ(sb_log_get_level(), SB_LOG_DEBUG);
	sb_log_set_level(SB_LOG_NOTICE);

	sb_log_clear_recent();
	CHECK_EQ(sb_log_get_recent(g_buf, sizeof(g_buf)), 0);
	CHECK_EQ(g_buf[0], '\0');
	CHECK_EQ(sb_log_get_recent(NULL, 10), 0);
}

static void
test_ring_keeps_newest(void)
{
	char small[200];
	uint32_t len;
	int i;

	sb_log_clear_recent();
	sb_log_set_stderr(0);
	for (i = 0; i < 1000; i++) {
		SB_ERRLOG("line %04d\n", i);
	}
	sb_log_get_recent(g_buf, sizeof(g_buf));
	CHECK_EQ(_count_lines(g_buf), 256);
	CHECK(strstr(g_buf, "line 0743") == NULL);
	CHECK(strstr(g_buf, "line 0744") != NULL);
	CHECK(strstr(g_buf, "line 0999\n") != NULL);

	/* A small buffer gets the newest lines that fit, whole. */
	len = sb_log_get_recent(small, sizeof(small));
	CHECK(len < sizeof(small));
	CHECK_EQ(len, strlen(small));
	CHECK(len > 0 && small[len - 1] == '\n');
	CHECK(strstr(small, "line 0999\n") != NULL);
	CHECK(strstr(small, "line 0990") == NULL);
	/* Each line is whole: it starts with the timestamp bracket. */
	CHECK_EQ(small[0], '[');

	/* A very long message is truncated, not overflowing. */
	memset(small, 'x', sizeof(small) - 1);
	small[sizeof(small) - 1] = '\0';
	for (i = 0; i < 5; i++) {
		SB_ERRLOG("%s%s%s\n", small, small, small);
	}
	len = sb_log_get_recent(g_buf, sizeof(g_buf));
	CHECK_EQ(len, strlen(g_buf));
	sb_log_set_stderr(1);
	sb_log_clear_recent();
}

static void
test_file(void)
{
	char path[] = "/tmp/sb_log_ut_XXXXXX";
	char line[1024];
	int fd, found = 0;
	FILE *f;

	fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	CHECK_EQ(sb_log_open(path), 0);
	sb_log_set_stderr(0);
	SB_ERRLOG("to the file %d\n", 7);
	sb_log_set_stderr(1);
	CHECK_EQ(sb_log_open(NULL), 0);
	SB_ERRLOG("not in the file\n");
	f = fopen(path, "r");
	CHECK(f != NULL);
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, "to the file 7\n") != NULL) {
			found++;
		}
		CHECK(strstr(line, "not in the file") == NULL);
	}
	if (f != NULL) {
		fclose(f);
	}
	CHECK_EQ(found, 1);
	unlink(path);
	CHECK_EQ(sb_log_open("/nonexistent-dir/x.log"), -ENOENT);
}

static void *
_writer(void *arg)
{
	int id = (int)(intptr_t)arg, i;

	pthread_setname_np(pthread_self(), id == 0 ? "writer_a" : "writer_b");
	for (i = 0; i < 2000; i++) {
		SB_ERRLOG("w%d %d\n", id, i);
	}
	return NULL;
}

static void
test_threads(void)
{
	pthread_t th[2];
	char *p, *line;
	int i, bad = 0, lines = 0;

	sb_log_clear_recent();
	sb_log_set_stderr(0);
	for (i = 0; i < 2; i++) {
		pthread_create(&th[i], NULL, _writer, (void *)(intptr_t)i);
	}
	for (i = 0; i < 200; i++) {
		sb_log_get_recent(g_buf, sizeof(g_buf));
	}
	for (i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
	}
	sb_log_set_stderr(1);
	sb_log_get_recent(g_buf, sizeof(g_buf));
	/* Every line is whole and names its writer thread. */
	for (line = strtok_r(g_buf, "\n", &p); line != NULL; line = strtok_r(NULL, "\n", &p)) {
		lines++;
		if (line[0] != '[' || (strstr(line, " writer_a ") == NULL) ==
					      (strstr(line, " writer_b ") == NULL)) {
			bad++;
		}
	}
	CHECK_EQ(lines, 256);
	CHECK_EQ(bad, 0);
	sb_log_clear_recent();
}

static void
test_pipe_records(void)
{
	char rec[4096];
	int fds[2], i;
	ssize_t n;
	uint64_t dropped;

	CHECK_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
	sb_log_set_level(SB_LOG_NOTICE);
	sb_log_set_stderr(0);
	sb_log_set_pipe(fds[1]);
	SB_WARNLOG("tab\there\nand a second line\n");
	n = read(fds[0], rec, sizeof(rec) - 1);
	CHECK(n > 0);
	rec[n > 0 ? n : 0] = '\0';
	/* level, seconds.micro, thread, file:line, function, message; one line. */
	CHECK(strncmp(rec, "1\t", 2) == 0);
	CHECK(strstr(rec, "\tlog_ut\tlog_ut.c:") != NULL);
	CHECK(strstr(rec, "\ttest_pipe_records\ttab\there and a second line\n") != NULL);
	CHECK_EQ(_count_lines(rec), 1);
	/* A full pipe drops lines, never blocks; the next line that fits says how many. */
	dropped = sb_log_pipe_dropped();
	for (i = 0; i < 4096; i++) {
		SB_NOTICELOG("filler %d\n", i);
	}
	CHECK(sb_log_pipe_dropped() > dropped);
	while (read(fds[0], rec, sizeof(rec)) > 0) {
	}
	SB_NOTICELOG("after the drain\n");
	n = read(fds[0], rec, sizeof(rec) - 1);
	CHECK(n > 0);
	rec[n > 0 ? n : 0] = '\0';
	CHECK(strncmp(rec, "1\t", 2) == 0 && strstr(rec, "line(s) dropped") != NULL);
	CHECK(strstr(rec, "after the drain\n") != NULL);
	sb_log_set_pipe(-1);
	SB_NOTICELOG("not piped\n");
	CHECK(read(fds[0], rec, sizeof(rec)) < 0 && errno == EAGAIN);
	sb_log_set_stderr(1);
	close(fds[0]);
	close(fds[1]);
	sb_log_clear_recent();
}

static void
_storm(int i)
{
	SB_ERRLOG_RATELIMITED("storm %d\n", i); /* one call site, one budget */
}

static void
test_ratelimited(void)
{
	int i;

	sb_log_clear_recent();
	sb_log_set_stderr(0);
	for (i = 0; i < 100; i++) {
		_storm(i);
	}
	sb_log_get_recent(g_buf, sizeof(g_buf));
	/* A burst per second: unless the second turned meanwhile, 8 lines. */
	CHECK(_count_lines(g_buf) >= SB_LOG_BURST && _count_lines(g_buf) <= 2 * SB_LOG_BURST);
	CHECK(strstr(g_buf, "storm 0\n") != NULL && strstr(g_buf, "storm 99\n") == NULL);
	/* The next second's first line counts what was held back. */
	sleep(1);
	sb_log_clear_recent();
	for (i = 100; i < 102; i++) {
		_storm(i);
	}
	sb_log_get_recent(g_buf, sizeof(g_buf));
	CHECK(strstr(g_buf, "storm 100 (") != NULL);
	CHECK(strstr(g_buf, "similar line(s) suppressed)") != NULL);
	CHECK(strstr(g_buf, "storm 101\n") != NULL);
	CHECK_EQ(_count_lines(g_buf), 2);
	sb_log_set_stderr(1);
	sb_log_clear_recent();
}

int
main(int argc, char **argv)
{
	UT_INIT(argc, argv);
	RUN_TEST(test_levels_and_format);
	RUN_TEST(test_ring_keeps_newest);
	RUN_TEST(test_file);
	RUN_TEST(test_threads);
	RUN_TEST(test_pipe_records);
	RUN_TEST(test_ratelimited);
	return UT_SUMMARY();
}
