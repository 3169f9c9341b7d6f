/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Reactors, pollers, message rings and per-reactor I/O channels.
 *
 * The engine runs one pinned pthread ("reactor") per CPU of its core mask.
 * Every piece of engine state has exactly one owning reactor; other threads
 * change it only by sending (fn, ctx) messages to that reactor.  Reactor 0
 * is the "app reactor": it owns the bdev registry and the vhost controller
 * table, and the synchronous control-plane helpers run their work there.
 */
#ifndef SB_THREAD_H
#define SB_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Most reactors one engine can run. */
#define SB_MAX_REACTORS 64
/** Highest CPU number (exclusive) a core mask may name. */
#define SB_MAX_CORES 1024

/** Poller return values. */
#define SB_POLLER_IDLE 0
#define SB_POLLER_BUSY 1

struct sb_reactor;
struct sb_poller;
struct sb_io_channel;
struct sb_completion;

/** A message: runs fn(ctx) on the target reactor. */
typedef void (*sb_msg_fn)(void *ctx);
/** A poller body: returns SB_POLLER_BUSY when it did work, SB_POLLER_IDLE otherwise. */
typedef int (*sb_poller_fn)(void *ctx);
/** An event-driven poller's arm callback (sb_poller_set_arm_fn). */
typedef bool (*sb_poller_arm_fn)(void *ctx);
/** Work run by sb_call(): finish it (now or later, on any reactor) with sb_complete(). */
typedef void (*sb_call_fn)(void *ctx, struct sb_completion *done);

struct sb_engine_opts {
	/** SPDK-style core mask: "0x3", "3", "[0,1]", "[0-3,6]". Required. */
	const char *core_mask;
	/** Longest an idle reactor sleeps before re-checking timed pollers (us). 0 = default 1000. */
	uint64_t max_delay_us;
	/** How long a reactor keeps spinning after its last busy iteration (us). 0 = default 200. */
	uint64_t spin_us;
	/** Message ring entries per reactor, power of two. 0 = default 4096. */
	uint32_t msg_ring_size;
	/** Do not pin reactor threads to their CPUs (tests on busy CI hosts). */
	bool no_pin;
};

/** Fill opts with defaults (core_mask "0x1"). */
void sb_engine_opts_init(struct sb_engine_opts *opts);

/**
 * Parse an SPDK-style core mask.
 * \param mask "0x3", "3" (hex), "[0,1]", "[0-3,6]".
 * \param cores out: CPU numbers, ascending.
 * \param max capacity of cores.
 * \param count out: number of CPUs.
 * \return 0, or -EINVAL (malformed, empty, CPU >= SB_MAX_CORES), -E2BIG (more than max).
 */
int sb_parse_core_mask(const char *mask, uint32_t *cores, uint32_t max, uint32_t *count);

/**
 * Start the engine: one reactor thread per CPU of the mask, then the bdev
 * layer and the vhost layer.  Not callable from a reactor.
 * \return 0, -EINVAL (bad mask or a CPU that is not online), -EALREADY, -errno.
 */
int sb_engine_start(const struct sb_engine_opts *opts);

/** Stop everything started by sb_engine_start (vhost, bdevs, reactors). Idempotent. */
void sb_engine_stop(void);

bool sb_engine_is_running(void);

uint32_t sb_reactor_count(void);
/** Reactor by index (0 .. count-1), or NULL. */
struct sb_reactor *sb_reactor_get(uint32_t index);
/** Reactor running on CPU core, or NULL. */
struct sb_reactor *sb_reactor_get_by_core(uint32_t core);
/** Reactor of the calling thread, or NULL on a non-reactor thread. */
struct sb_reactor *sb_reactor_current(void);
uint32_t sb_reactor_index(const struct sb_reactor *r);
uint32_t sb_reactor_core(const struct sb_reactor *r);

/**
 * Queue fn(ctx) on reactor r.  Lock-free, no allocation, callable from any
 * thread.  Wakes the reactor if it sleeps.
 * \return 0, -EAGAIN (ring full), -ESHUTDOWN (engine stopping), -EINVAL.
 */
int sb_send_msg(struct sb_reactor *r, sb_msg_fn fn, void *ctx);

/**
 * "The waiter gave up": sb_call_owned(), sb_call() (and every blocking
 * control call built on them) return -SB_EWAITER_GAVE_UP when the timeout
 * passed before the work completed.  It is not an errno, so it is never confused with a
 * real -ETIMEDOUT the work completes with (librados returns one).  The work
 * may still run; the memory it uses is owned by the call, not the caller.
 */
#define SB_EWAITER_GAVE_UP 4096

/** Frees what a sb_call_owned() argument copy refers to; runs once, after both sides let go. */
typedef void (*sb_call_release_fn)(void *args);

/**
 * The control-plane boundary: a non-reactor thread runs fn(args, done) on
 * r and waits until sb_complete(done, rc) is called or timeout_us passes.
 *
 * The call owns its memory, so nothing the caller owns is ever handed to a
 * reactor: args_size bytes of args are copied into the refcounted
 * completion and fn gets that copy (strings go in as arrays inside the
 * copy, never as pointers to the caller's memory); fn writes its answer
 * into sb_call_results(done), results_size bytes that the waiter copies to
 * results only if it is still waiting when the work completes.  After the
 * last of waiter and worker lets go, release(args copy) runs (may be NULL)
 * on that thread, to free what the work still referred to; when the call
 * fails before it copies anything, release(args) runs before it returns.
 * \param timeout_us 0 = SB_CALL_TIMEOUT_US.
 * \return the rc given to sb_complete(), -SB_EWAITER_GAVE_UP (timed out;
 *         results untouched), -EPERM (called on a reactor thread),
 *         -ESHUTDOWN, -EINVAL, -ENOMEM.
 */
int sb_call_owned(struct sb_reactor *r, sb_call_fn fn, const void *args, size_t args_size,
		  void *results, size_t results_size, sb_call_release_fn release,
		  uint64_t timeout_us);

/** The results area of a sb_call_owned() (NULL for sb_call()); valid until sb_complete(). */
void *sb_call_results(struct sb_completion *done);

/**
 * The raw form of sb_call_owned(): ctx is the caller's and must stay valid
 * until fn completes, even after the waiter gave up.  For callers that
 * hand over objects they manage themselves and keep alive until the
 * reactor is done with them (lib/vhost parks a controller: vhost_park.c).
 * \return the rc given to sb_complete(), -SB_EWAITER_GAVE_UP (timed out;
 *         fn still runs later), -EPERM (called on a reactor thread),
 *         -ESHUTDOWN.
 */
int sb_call(struct sb_reactor *r, sb_call_fn fn, void *ctx, uint64_t timeout_us);

/** Finish an sb_call(); callable from any thread, exactly once. */
void sb_complete(struct sb_completion *done, int rc);

/** A cb(cb_arg, rc) completing the sb_completion cb_arg: runs an async API under a call. */
void sb_call_done_cb(void *cb_arg, int rc);

/** Default timeout for control-plane calls (us). */
#define SB_CALL_TIMEOUT_US (30ULL * 1000 * 1000)

/**
 * Test hooks, refused (-EPERM) unless SB_TEST_HOOKS is set in the
 * environment.  sb_test_set_call_timeout caps every later sb_call_owned()
 * and sb_call() wait at timeout_us (0 = no cap); sb_test_stall_reactor makes reactor
 * index sleep stall_us in a message, so calls queued behind it time out.
 */
int sb_test_set_call_timeout(uint64_t timeout_us);
int sb_test_stall_reactor(uint32_t index, uint64_t stall_us);

/**
 * Register a poller on the calling reactor.
 * \param period_us 0 = run every iteration, otherwise at most once per period.
 * \param name shown in statistics (copied).
 * \return the poller, or NULL (not on a reactor, no memory).
 */
struct sb_poller *sb_poller_register(sb_poller_fn fn, void *ctx, uint64_t period_us,
				     const char *name);
/** Unregister a poller of the calling reactor; *p becomes NULL. Safe from inside the poller. */
void sb_poller_unregister(struct sb_poller **p);

/**
 * Mark an active (period 0) poller of the calling reactor as event-driven:
 * it only finds work after a message to its reactor, after one of the
 * reactor's wake fds (sb_reactor_add_wake_fd) fires, or right after a busy
 * iteration of the reactor.  An idle reactor whose active pollers are all
 * event-driven sleeps until such an event (or its next timed poller)
 * instead of waking every max_delay_us, so an idle engine with open
 * devices costs no CPU.  Pollers that poll memory nobody signals (a
 * virtqueue without kicks) must stay periodic (the default).
 * \return 0, -EINVAL (timed poller), -EPERM (not the poller's reactor).
 */
int sb_poller_set_event_driven(struct sb_poller *p, bool event_driven);

/**
 * Give an event-driven poller of the calling reactor an arm callback, for
 * event sources a poller switches off while it polls (a guest's virtqueue
 * kicks: every kick is a VM exit and an eventfd write the reactor does not
 * need while it is awake).  Right before the reactor sleeps it calls
 * arm(ctx) for each such poller: arm turns the source back on, then looks
 * for work that arrived while it was off and returns true if there is some
 * (the reactor then keeps polling instead of sleeping).  The poller switches
 * the source off again when it runs.  NULL removes the callback.
 * \return 0, -EINVAL (not an event-driven poller), -EPERM (not its reactor).
 */
int sb_poller_set_arm_fn(struct sb_poller *p, sb_poller_arm_fn arm);

/**
 * Ask the calling reactor not to sleep for longer than it takes fd to
 * become readable: the reactor adds fd (level-triggered) to the set it
 * waits on while idle, so event-driven completions (io_uring eventfd,
 * librbd, a guest's kick eventfd) wake it at once.
 * \param drain when true the fd is an eventfd the reactor reads (resets)
 *        itself when it wakes on it; pollers then just poll their rings.
 * \return 0 or -errno (-EPERM when not called on a reactor).
 * Remove the fd (sb_reactor_remove_wake_fd) before closing it.
 */
int sb_reactor_add_wake_fd(int fd, bool drain);
int sb_reactor_remove_wake_fd(int fd);

/* ---- per-reactor resources (SPDK's io_device / io_channel) ---- */

typedef int (*sb_io_channel_create_cb)(void *io_device, void *ctx_buf);
typedef void (*sb_io_channel_destroy_cb)(void *io_device, void *ctx_buf);

/** Register an I/O device: any pointer that identifies a per-reactor resource. Any thread. */
void sb_io_device_register(void *io_device, sb_io_channel_create_cb create_cb,
			   sb_io_channel_destroy_cb destroy_cb, uint32_t ctx_size,
			   const char *name);
/**
 * Unregister; done(io_device) runs on the calling reactor once every
 * channel of the device has been released (destroy_cb has run).
 */
void sb_io_device_unregister(void *io_device, void (*done)(void *io_device));

/** Channel of io_device for the calling reactor (refcounted; created on first get). NULL on failure. */
struct sb_io_channel *sb_get_io_channel(void *io_device);
/** Release a reference; the last one destroys the channel (deferred by a message). */
void sb_put_io_channel(struct sb_io_channel *ch);
void *sb_io_channel_get_ctx(struct sb_io_channel *ch);
void *sb_io_channel_get_io_device(struct sb_io_channel *ch);
struct sb_reactor *sb_io_channel_get_reactor(struct sb_io_channel *ch);

/**
 * Run fn on every reactor that holds a channel of io_device, one after the
 * other, then cpl(ctx, 0) on the calling reactor.
 */
void sb_for_each_channel(void *io_device, void (*fn)(struct sb_io_channel *ch, void *ctx),
			 void *ctx, void (*cpl)(void *ctx, int rc));

/* ---- time and statistics ---- */

/** Monotonic ticks (TSC or clock_gettime ns). */
uint64_t sb_get_ticks(void);
uint64_t sb_get_ticks_hz(void);

struct sb_reactor_stats {
	uint32_t index;
	uint32_t core;
	char name[16];       /* "reactor_N" */
	uint64_t busy_ticks; /* iterations in which something was BUSY */
	uint64_t idle_ticks;
	uint64_t sleeps;     /* times the reactor blocked */
	uint64_t wakeups;    /* eventfd wake-ups */
	uint64_t msgs;       /* messages run */
	uint32_t poller_count;
};

/** Counters of reactor index (read from any thread; values are tear-free 64-bit loads). */
int sb_reactor_get_stats(uint32_t index, struct sb_reactor_stats *st);

struct sb_poller_info {
	char name[32];
	uint64_t period_us;
	uint64_t run_count;
	uint64_t busy_count;
};

/** Snapshot of reactor index's pollers (a sync call to that reactor). */
int sb_reactor_get_pollers(uint32_t index, struct sb_poller_info *out, uint32_t max,
			   uint32_t *count);

#ifdef __cplusplus
}
#endif
#endif /* SB_THREAD_H */
