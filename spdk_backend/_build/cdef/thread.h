/* cdef: sb/thread.h (control-plane subset) */
#define SB_MAX_REACTORS 64
#define SB_MAX_CORES 1024
struct sb_reactor;
struct sb_engine_opts {
	const char *core_mask;
	uint64_t max_delay_us;
	uint64_t spin_us;
	uint32_t msg_ring_size;
	bool no_pin;
	...;
};
void sb_engine_opts_init(struct sb_engine_opts *opts);
int sb_parse_core_mask(const char *mask, uint32_t *cores, uint32_t max, uint32_t *count);
int sb_engine_start(const struct sb_engine_opts *opts);
void sb_engine_stop(void);
bool sb_engine_is_running(void);
uint32_t sb_reactor_count(void);
uint64_t sb_get_ticks(void);
uint64_t sb_get_ticks_hz(void);
struct sb_reactor_stats {
	uint32_t index;
	uint32_t core;
	char name[16];
	uint64_t busy_ticks;
	uint64_t idle_ticks;
	uint64_t sleeps;
	uint64_t wakeups;
	uint64_t msgs;
	uint32_t poller_count;
	...;
};
int sb_reactor_get_stats(uint32_t index, struct sb_reactor_stats *st);
struct sb_poller_info {
	char name[32];
	uint64_t period_us;
	uint64_t run_count;
	uint64_t busy_count;
	...;
};
int sb_reactor_get_pollers(uint32_t index, struct sb_poller_info *out, uint32_t max, uint32_t *count);
/* The waiter gave up (not an errno); test hooks, refused unless SB_TEST_HOOKS is set. */
#define SB_EWAITER_GAVE_UP 4096
int sb_test_set_call_timeout(uint64_t timeout_us);
int sb_test_stall_reactor(uint32_t index, uint64_t stall_us);
