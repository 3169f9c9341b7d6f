/* SPDX-License-Identifier: Apache-2.0 */
/* Engine log: levels, line format, recent-lines ring, file output, thread safety. */
#include "sb/log.h"
#include "ut.h"

#include <errno.h>
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

int
main(int argc, char **argv)
{
	UT_INIT(argc, argv);
	RUN_TEST(test_levels_and_format);
	RUN_TEST(test_ring_keeps_newest);
	RUN_TEST(test_file);
	RUN_TEST(test_threads);
	return UT_SUMMARY();
}
