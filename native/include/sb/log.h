/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Engine logging.  Lines go to stderr (or a file) with a level, the
 * reporting thread and the source location; the last lines are also kept
 * in a ring that Python can read (tests check *why* something was refused).
 */
#ifndef SB_LOG_H
#define SB_LOG_H

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
 * Copy the most recent log lines (oldest first, '\n'-separated) into buf.
 * \return bytes written (without the NUL).
 */
uint32_t sb_log_get_recent(char *buf, uint32_t len);
/** Forget the ring's lines. */
void sb_log_clear_recent(void);

#define SB_ERRLOG(...) sb_log(SB_LOG_ERROR, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define SB_WARNLOG(...) sb_log(SB_LOG_WARN, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define SB_NOTICELOG(...) sb_log(SB_LOG_NOTICE, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define SB_INFOLOG(...) sb_log(SB_LOG_INFO, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define SB_DEBUGLOG(...) sb_log(SB_LOG_DEBUG, __FILE__, __LINE__, __func__, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif /* SB_LOG_H */
