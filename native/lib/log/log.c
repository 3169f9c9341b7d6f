/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Engine log: one formatted line per call, to stderr and/or a file and/or
 * a pipe (the agent forwards those records into Python's logging), and a
 * ring of the most recent lines that Python reads back (tests assert on
 * why a request was refused).  Logging is a cold path, so one mutex keeps
 * lines whole and the ring consistent; the pipe is never waited for.
 */
#include "sb/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RING_LINES 256
#define LINE_MAX_LEN 512

static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int g_level = SB_LOG_NOTICE;
static _Atomic int g_stderr = 1;
static FILE *g_file;
static int g_pipe = -1;
static uint64_t g_pipe_dropped; /* since the start */
static uint64_t g_pipe_pending; /* dropped and not yet reported */

static char g_ring[RING_LINES][LINE_MAX_LEN];
/* Index of the next line to write; g_ring_count lines end just before it. */
static uint32_t g_ring_next;
static uint32_t g_ring_count;

static const char *const g_level_names[] = {
	[SB_LOG_ERROR] = "ERROR",
	[SB_LOG_WARN] = "WARN",
	[SB_LOG_NOTICE] = "NOTICE",
	[SB_LOG_INFO] = "INFO",
	[SB_LOG_DEBUG] = "DEBUG",
};

void
sb_log_set_level(enum sb_log_level level)
{
	if (level < SB_LOG_ERROR) {
		level = SB_LOG_ERROR;
	} else if (level > SB_LOG_DEBUG) {
		level = SB_LOG_DEBUG;
	}
	atomic_store(&g_level, (int)level);
}

enum sb_log_level
sb_log_get_level(void)
{
	return (enum sb_log_level)atomic_load(&g_level);
}

void
sb_log_set_stderr(int enabled)
{
	atomic_store(&g_stderr, enabled ? 1 : 0);
}

int
sb_log_open(const char *path)
{
	FILE *f = NULL;
	int rc = 0;

	if (path != NULL) {
		f = fopen(path, "ae");
		if (f == NULL) {
			rc = -errno;
			goto out;
		}
		setvbuf(f, NULL, _IOLBF, 0);
	}
	pthread_mutex_lock(&g_log_lock);
	if (g_file != NULL) {
		fclose(g_file);
	}
	g_file = f;
	pthread_mutex_unlock(&g_log_lock);
out:
	return rc;
}

static const char *
_basename(const char *file)
{
	const char *slash = file ? strrchr(file, '/') : NULL;

	return slash ? slash + 1 : (file ? file : "?");
}

void
sb_log_set_pipe(int fd)
{
	pthread_mutex_lock(&g_log_lock);
	g_pipe = fd;
	pthread_mutex_unlock(&g_log_lock);
}

uint64_t
sb_log_pipe_dropped(void)
{
	uint64_t n;

	pthread_mutex_lock(&g_log_lock);
	n = g_pipe_dropped;
	pthread_mutex_unlock(&g_log_lock);
	return n;
}

/* One record to the pipe, whole or not at all (a pipe write of at most
 * PIPE_BUF bytes is atomic).  Called with g_log_lock held. */
static bool
_pipe_write(const char *rec, size_t len)
{
	ssize_t n;

	do {
		n = write(g_pipe, rec, len);
	} while (n < 0 && errno == EINTR);
	return n == (ssize_t)len;
}

static void
_pipe_record(enum sb_log_level level, const struct timespec *ts, const char *thread,
	     const char *file, int line, const char *func, const char *msg)
{
	char rec[LINE_MAX_LEN + 128];
	int n;

	if (g_pipe_pending > 0) {
		n = snprintf(rec, sizeof(rec),
			     "%d\t%lld.%06ld\t%s\t%s:%d\t%s\t%llu engine log line(s) dropped: "
			     "the reader was behind\n",
			     SB_LOG_WARN, (long long)ts->tv_sec, ts->tv_nsec / 1000, thread,
			     _basename(__FILE__), __LINE__, __func__,
			     (unsigned long long)g_pipe_pending);
		if (n < 0 || !_pipe_write(rec, (size_t)n)) {
			g_pipe_dropped++;
			g_pipe_pending++;
			return;
		}
		g_pipe_pending = 0;
	}
	n = snprintf(rec, sizeof(rec), "%d\t%lld.%06ld\t%s\t%s:%d\t%s\t%s\n", level,
		     (long long)ts->tv_sec, ts->tv_nsec / 1000, thread, _basename(file), line,
		     func ? func : "?", msg);
	if (n < 0) {
		return;
	}
	if ((size_t)n >= sizeof(rec)) {
		n = sizeof(rec) - 1;
		rec[n - 1] = '\n';
	}
	if (!_pipe_write(rec, (size_t)n)) {
		g_pipe_dropped++;
		g_pipe_pending++;
	}
}

static void
_vlog(enum sb_log_level level, const char *file, int line, const char *func, const char *fmt,
      va_list ap)
{
	char line_buf[LINE_MAX_LEN];
	char thread[16] = "?";
	struct timespec ts;
	struct tm tm;
	size_t len, head;
	char *p;
	int n;

	pthread_getname_np(pthread_self(), thread, sizeof(thread));
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line_buf, sizeof(line_buf),
		     "[%04d-%02d-%02d %02d:%02d:%02d.%06ld] %s %s %s:%d %s: ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		     tm.tm_sec, ts.tv_nsec / 1000, thread, g_level_names[level], _basename(file),
		     line, func ? func : "?");
	if (n < 0) {
		return;
	}
	head = len = (size_t)n < sizeof(line_buf) ? (size_t)n : sizeof(line_buf) - 1;
	vsnprintf(line_buf + len, sizeof(line_buf) - len, fmt, ap);
	len = strlen(line_buf);
	/* Callers end messages with '\n' SPDK-style, or not: store exactly one line. */
	while (len > 0 && (line_buf[len - 1] == '\n' || line_buf[len - 1] == '\r')) {
		line_buf[--len] = '\0';
	}
	for (p = line_buf; *p; p++) {
		if (*p == '\n' || *p == '\r') {
			*p = ' ';
		}
	}

	pthread_mutex_lock(&g_log_lock);
	memcpy(g_ring[g_ring_next], line_buf, len + 1);
	g_ring_next = (g_ring_next + 1) % RING_LINES;
	if (g_ring_count < RING_LINES) {
		g_ring_count++;
	}
	if (atomic_load_explicit(&g_stderr, memory_order_relaxed)) {
		fprintf(stderr, "%s\n", line_buf);
	}
	if (g_file != NULL) {
		fprintf(g_file, "%s\n", line_buf);
	}
	if (g_pipe >= 0) {
		_pipe_record(level, &ts, thread, file, line, func,
			     line_buf + (head < len ? head : len));
	}
	pthread_mutex_unlock(&g_log_lock);
}

static bool
_enabled(enum sb_log_level level)
{
	return (int)level >= SB_LOG_ERROR &&
	       (int)level <= atomic_load_explicit(&g_level, memory_order_relaxed);
}

void
sb_log(enum sb_log_level level, const char *file, int line, const char *func,
       const char *fmt, ...)
{
	va_list ap;

	if (!_enabled(level)) {
		return;
	}
	va_start(ap, fmt);
	_vlog(level, file, line, func, fmt, ap);
	va_end(ap);
}

/*
 * Lock-free (reactors call it on the data path, a guest can make them call
 * it often): counts are approximate when reactors race at a second's turn.
 */
bool
sb_log_ratelimit_ok(struct sb_log_ratelimit *rl, uint64_t *suppressed)
{
	struct timespec ts;
	uint64_t now, sec;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now = (uint64_t)ts.tv_sec;
	sec = __atomic_load_n(&rl->second, __ATOMIC_RELAXED);
	if (sec != now && __atomic_compare_exchange_n(&rl->second, &sec, now, false,
						      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		__atomic_store_n(&rl->lines, 0, __ATOMIC_RELAXED);
	}
	if (__atomic_fetch_add(&rl->lines, 1, __ATOMIC_RELAXED) < SB_LOG_BURST) {
		*suppressed = __atomic_exchange_n(&rl->suppressed, 0, __ATOMIC_RELAXED);
		return true;
	}
	__atomic_fetch_add(&rl->suppressed, 1, __ATOMIC_RELAXED);
	return false;
}

void
sb_log_suppressed(enum sb_log_level level, const char *file, int line, const char *func,
		  uint64_t suppressed, const char *fmt, ...)
{
	char msg[LINE_MAX_LEN];
	size_t len;
	va_list ap;

	if (!_enabled(level)) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	len = strlen(msg);
	while (len > 0 && msg[len - 1] == '\n') {
		msg[--len] = '\0';
	}
	if (suppressed > 0) {
		snprintf(msg + len, sizeof(msg) - len, " (%llu similar line(s) suppressed)",
			 (unsigned long long)suppressed);
	}
	sb_log(level, file, line, func, "%s", msg);
}

uint32_t
sb_log_get_recent(char *buf, uint32_t len)
{
	uint32_t first, skip, i, idx;
	size_t used = 0, need = 0, l;

	if (buf == NULL || len == 0) {
		return 0;
	}
	pthread_mutex_lock(&g_log_lock);
	first = (g_ring_next + RING_LINES - g_ring_count) % RING_LINES;
	/* Drop the oldest lines until the newest ones fit (plus the NUL). */
	for (i = 0; i < g_ring_count; i++) {
		need += strlen(g_ring[(first + i) % RING_LINES]) + 1;
	}
	for (skip = 0; skip < g_ring_count && need + 1 > len; skip++) {
		need -= strlen(g_ring[(first + skip) % RING_LINES]) + 1;
	}
	for (i = skip; i < g_ring_count; i++) {
		idx = (first + i) % RING_LINES;
		l = strlen(g_ring[idx]);
		memcpy(buf + used, g_ring[idx], l);
		used += l;
		buf[used++] = '\n';
	}
	buf[used] = '\0';
	pthread_mutex_unlock(&g_log_lock);
	return (uint32_t)used;
}

void
sb_log_clear_recent(void)
{
	pthread_mutex_lock(&g_log_lock);
	g_ring_next = 0;
	g_ring_count = 0;
	pthread_mutex_unlock(&g_log_lock);
}
