/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Engine logging.  Lines go to stderr (or a file) with a level, the
 * reporting thread and the source location; the last lines are also kept
 * in a ring that Python can read (tests check *why* something was refused).
 * A program with its own logging (the agent: Python's logging, one stream,
 * one format, one level) takes the lines from a pipe instead
 * (sb_log_set_pipe), written without ever blocking the caller.
 */
#ifndef SB_LOG_H
#define SB_LOG_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum sb_log_level {
	SB_LOG_ERROR = 0,
	SB_LOG_WARN = 1,
	SB_LOG_NOTICE = 2,
	SB_LOG_INFO = 3,
	SB_LOG_DEBUG = 4,
};

void sb_log(enum sb_log_level level, const char *file, int line, const char *func,
	    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/** Lines above level are dropped. Default SB_LOG_NOTICE. */
void sb_log_set_level(enum sb_log_level level);
enum sb_log_level sb_log_get_level(void);
/** Also append to path (NULL: stderr only). \return 0 or -errno. */
int sb_log_open(const char *path);
/** Do not print to stderr (the ring and the file still get lines). */
void sb_log_set_stderr(int enabled);

/**
 * Also write every line to fd (a pipe's write end, set O_NONBLOCK), one
 * record per line: "<level>\t<unix seconds>.<microseconds>\t<thread>\t
 * <file>:<line>\t<function>\t<message>\n" (the message has no newline and
 * may hold tabs).  A line the pipe has no room for is dropped, never waited
 * for; the next line that fits is preceded by a WARN record counting them.
 * fd -1 stops it.  The fd stays the caller's.
 */
void sb_log_set_pipe(int fd);
/** Lines dropped because the pipe was full, since the start. */
uint64_t sb_log_pipe_dropped(void);

/**
 * Copy the most recent log lines (oldest first, '\n'-separated) into buf.
 * \return bytes written (without the NUL).
 */
uint32_t sb_log_get_recent(char *buf, uint32_t len);
/** Forget the ring's lines. */
void sb_log_clear_recent(void);

/**
 * One call site's budget for SB_LOG_RATELIMITED: at most SB_LOG_BURST lines
 * per second; the first line of a later second says how many were
 * suppressed.  For the data path, where one failing device fails every
 * request.
 */
#define SB_LOG_BURST 8
struct sb_log_ratelimit {
	uint64_t second;     /* CLOCK_MONOTONIC second of the window */
	uint32_t lines;      /* lines logged in it */
	uint64_t suppressed; /* lines not logged since the last one that was */
};
/** Whether a line may go now; *suppressed: how many were held back before it. */
bool sb_log_ratelimit_ok(struct sb_log_ratelimit *rl, uint64_t *suppressed);
void sb_log_suppressed(enum sb_log_level level, const char *file, int line, const char *func,
		       uint64_t suppressed, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

#define SB_LOG_RATELIMITED(level, ...)                                                     \
	do {                                                                               \
		static struct sb_log_ratelimit _sb_rl;                                     \
		uint64_t _sb_held;                                                         \
		if (sb_log_ratelimit_ok(&_sb_rl, &_sb_held)) {                             \
			sb_log_suppressed(level, __FILE__, __LINE__, __func__, _sb_held,   \
					  __VA_ARGS__);                                    \
		}                                                                          \
	} while (0)
#define SB_ERRLOG_RATELIMITED(...) SB_LOG_RATELIMITED(SB_LOG_ERROR, __VA_ARGS__)

#define SB_ERRLOG(...) sb_log(SB_LOG_ERROR, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define SB_WARNLOG(...) sb_log(SB_LOG_WARN, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define SB_NOTICELOG(...) sb_log(SB_LOG_NOTICE, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define SB_INFOLOG(...) sb_log(SB_LOG_INFO, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define SB_DEBUGLOG(...) sb_log(SB_LOG_DEBUG, __FILE__, __LINE__, __func__, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif /* SB_LOG_H */
