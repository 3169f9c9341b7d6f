/* cdef: sb/log.h */
enum sb_log_level { SB_LOG_ERROR = 0, SB_LOG_WARN = 1, SB_LOG_NOTICE = 2, SB_LOG_INFO = 3, SB_LOG_DEBUG = 4 };
void sb_log_set_level(enum sb_log_level level);
enum sb_log_level sb_log_get_level(void);
int sb_log_open(const char *path);
void sb_log_set_stderr(int enabled);
uint32_t sb_log_get_recent(char *buf, uint32_t len);
void sb_log_clear_recent(void);
void sb_log_set_pipe(int fd);
uint64_t sb_log_pipe_dropped(void);
