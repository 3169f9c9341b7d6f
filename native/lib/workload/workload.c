/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Built-in I/O generators (see sb/workload.h).
 *
 * A workload fans out from the app reactor to one job per reactor of its
 * core mask; each job keeps qd I/Os outstanding on its own slice of the
 * bdev, resubmitting from the completion callback, and the last job to
 * finish sums the result up and completes the caller's sb_call_owned().
 * The run (options copied, buffers, jobs) is handed to the call, which
 * frees it once both the waiter and the last job let go; a waiter that gave
 * up leaves nothing of its own in use.  Nothing here allocates per I/O.
 */
#include "sb/workload.h"
#include "sb/histogram.h"
#include "sb/log.h"
#include "sb/thread.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum wl_pattern { WL_RANDREAD, WL_RANDWRITE, WL_RANDRW, WL_READ, WL_WRITE, WL_VERIFY };

struct wl_task {
	struct wl_job *job;
	struct iovec iov;
	uint64_t slot;
	uint64_t submit_tsc;
	bool is_read;
};

struct wl_run;

/* One reactor's share of a workload; owned by that reactor. */
struct wl_job {
	struct wl_run *run;
	struct sb_reactor *reactor;
	struct sb_bdev_desc *desc;
	struct sb_io_channel *ch;
	struct sb_poller *retry_poller;
	struct wl_task *tasks;
	uint32_t *nomem_list;
	uint32_t nomem_pending;
	void *buffers;
	size_t buf_len;
	uint64_t first_slot;    /* slice of io_size slots */
	uint64_t num_slots;
	uint64_t next_seq;      /* sequential and verify cursor */
	uint64_t rand_state;
	uint64_t start_tsc;
	uint64_t end_tsc;
	uint32_t outstanding;
	bool verify_reading;    /* verify: second pass */
	bool stopping;
	uint64_t ios, read_ios, write_ios, errors, verify_failures;
	int first_error;
	struct sb_histogram hist;
};

struct wl_run {
	struct sb_workload_opts opts;   /* a copy; strings not used on reactors are NULL */
	char bdev_name[SB_BDEV_NAME_MAX];
	enum wl_pattern pattern;
	uint64_t blocks_per_io;
	uint64_t run_ticks;
	uint32_t block_size;
	uint32_t num_jobs;
	struct wl_job jobs[SB_MAX_REACTORS];
	atomic_uint remaining;   /* jobs, plus one for _fan_out itself */
	int start_rc;
	struct sb_completion *done;
	struct sb_histogram hist; /* the jobs' merged, by the last one */
};

static uint64_t
_xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

/* The verify pattern: every 8-byte word names its absolute byte offset and the seed. */
static inline uint64_t
_pattern_word(uint64_t seed, uint64_t byte_offset)
{
	return (byte_offset * 0x9e3779b97f4a7c15ULL) ^ seed;
}

static void
_fill_pattern(void *buf, size_t len, uint64_t seed, uint64_t byte_offset)
{
	uint64_t *w = buf;

	for (size_t i = 0; i < len / 8; i++) {
		w[i] = _pattern_word(seed, byte_offset + i * 8);
	}
}

static bool
_check_pattern(const void *buf, size_t len, uint64_t seed, uint64_t byte_offset)
{
	const uint64_t *w = buf;

	for (size_t i = 0; i < len / 8; i++) {
		if (w[i] != _pattern_word(seed, byte_offset + i * 8)) {
			return false;
		}
	}
	return true;
}

static void _job_submit(struct wl_job *job, struct wl_task *task);

/* Every job finished: sum them up into the call's results and complete it. */
static void
_run_summarize(struct wl_run *run, struct sb_workload_result *res)
{
	struct sb_histogram *hist = &run->hist;
	uint64_t start = UINT64_MAX, end = 0;

	memset(res, 0, sizeof(*res));
	sb_histogram_init(hist);
	for (uint32_t i = 0; i < run->num_jobs; i++) {
		struct wl_job *job = &run->jobs[i];

		res->ios += job->ios;
		res->read_ios += job->read_ios;
		res->write_ios += job->write_ios;
		res->errors += job->errors;
		res->verify_failures += job->verify_failures;
		if (res->first_error == 0) {
			res->first_error = job->first_error;
		}
		if (job->start_tsc && job->start_tsc < start) {
			start = job->start_tsc;
		}
		if (job->end_tsc > end) {
			end = job->end_tsc;
		}
		sb_histogram_merge(hist, &job->hist);
	}
	if (end > start) {
		double us_per_tick = 1e6 / (double)sb_get_ticks_hz();

		res->seconds = (double)(end - start) / (double)sb_get_ticks_hz();
		res->iops = (double)res->ios / res->seconds;
		res->lat_mean_us = sb_histogram_mean(hist) * us_per_tick;
		res->lat_p50_us = sb_histogram_percentile(hist, 50) * us_per_tick;
		res->lat_p99_us = sb_histogram_percentile(hist, 99) * us_per_tick;
		res->lat_p999_us = sb_histogram_percentile(hist, 99.9) * us_per_tick;
	}
}

/* Drop one of run->remaining; the last one completes the call (run may be freed after). */
static void
_run_put(struct wl_run *run)
{
	if (atomic_fetch_sub(&run->remaining, 1) == 1) {
		_run_summarize(run, sb_call_results(run->done));
		sb_complete(run->done, 0);
	}
}

static void
_job_finish(struct wl_job *job)
{
	struct wl_run *run = job->run;

	if (job->outstanding != 0 || job->nomem_pending != 0) {
		return;
	}
	if (job->end_tsc == 0) {
		job->end_tsc = sb_get_ticks();
	}
	sb_poller_unregister(&job->retry_poller);
	if (job->ch != NULL) {
		sb_put_io_channel(job->ch);
		job->ch = NULL;
	}
	if (job->desc != NULL) {
		sb_bdev_close(job->desc);
		job->desc = NULL;
	}
	_run_put(run);
}

static uint64_t
_slot_byte_offset(struct wl_job *job, uint64_t slot)
{
	return (job->run->opts.offset_blocks + slot * job->run->blocks_per_io) *
	       job->run->block_size;
}

static void
_io_done(struct sb_bdev_io *io, int status, void *cb_arg)
{
	struct wl_task *task = cb_arg;
	struct wl_job *job = task->job;
	struct wl_run *run = job->run;
	uint64_t now = sb_get_ticks();

	sb_bdev_free_io(io);
	job->outstanding--;
	if (status != 0) {
		if (job->errors++ == 0) {
			job->first_error = status;
		}
	} else {
		job->ios++;
		if (task->is_read) {
			job->read_ios++;
			if (run->pattern == WL_VERIFY &&
			    !_check_pattern(task->iov.iov_base, task->iov.iov_len, run->opts.seed,
					    _slot_byte_offset(job, task->slot))) {
				if (job->verify_failures++ == 0) {
					SB_ERRLOG("verify: %s slot %lu has the wrong content\n",
						  run->opts.bdev_name, (unsigned long)task->slot);
				}
			}
		} else {
			job->write_ios++;
		}
		sb_histogram_add(&job->hist, now - task->submit_tsc);
	}
	if (run->pattern != WL_VERIFY && now - job->start_tsc >= run->run_ticks) {
		job->stopping = true;
	}
	if (job->stopping) {
		_job_finish(job);
		return;
	}
	_job_submit(job, task);
}

/* Pick the next slot and direction; false when a verify pass has nothing left. */
static bool
_next_io(struct wl_job *job, struct wl_task *task)
{
	struct wl_run *run = job->run;

	switch (run->pattern) {
	case WL_VERIFY:
		if (job->next_seq == job->num_slots) {
			if (job->verify_reading || job->outstanding != 0) {
				return false; /* wait for the writes before reading back */
			}
			job->verify_reading = true;
			job->next_seq = 0;
		}
		task->slot = job->first_slot + job->next_seq++;
		task->is_read = job->verify_reading;
		return true;
	case WL_READ:
	case WL_WRITE:
		task->slot = job->first_slot + job->next_seq++ % job->num_slots;
		task->is_read = run->pattern == WL_READ;
		return true;
	case WL_RANDREAD:
	case WL_RANDWRITE:
	case WL_RANDRW:
		task->slot = job->first_slot + _xorshift(&job->rand_state) % job->num_slots;
		task->is_read = run->pattern == WL_RANDREAD ||
				(run->pattern == WL_RANDRW &&
				 _xorshift(&job->rand_state) % 100 < run->opts.rwmixread);
		return true;
	}
	return false;
}

static void
_job_submit(struct wl_job *job, struct wl_task *task)
{
	struct wl_run *run = job->run;
	uint64_t offset_blocks;
	int rc;

	if (!_next_io(job, task)) {
		if (job->next_seq == job->num_slots && job->verify_reading) {
			job->stopping = true;
			_job_finish(job);
		} else {
			/* Parked until the write pass drains; the retry poller restarts it. */
			job->nomem_list[job->nomem_pending++] = (uint32_t)(task - job->tasks);
		}
		return;
	}
	offset_blocks = run->opts.offset_blocks + task->slot * run->blocks_per_io;
	if (!task->is_read && run->pattern == WL_VERIFY) {
		_fill_pattern(task->iov.iov_base, task->iov.iov_len, run->opts.seed,
			      _slot_byte_offset(job, task->slot));
	}
	task->submit_tsc = sb_get_ticks();
	if (task->is_read) {
		rc = sb_bdev_readv_blocks(job->desc, job->ch, &task->iov, 1, offset_blocks,
					  run->blocks_per_io, _io_done, task);
	} else {
		rc = sb_bdev_writev_blocks(job->desc, job->ch, &task->iov, 1, offset_blocks,
					   run->blocks_per_io, _io_done, task);
	}
	if (rc == 0) {
		job->outstanding++;
		return;
	}
	if (rc == -ENOMEM) {
		/* Undo the cursor step so a verify pass does not skip the slot. */
		if (run->pattern == WL_VERIFY || run->pattern == WL_READ || run->pattern == WL_WRITE) {
			job->next_seq--;
		}
		job->nomem_list[job->nomem_pending++] = (uint32_t)(task - job->tasks);
		return;
	}
	if (job->errors++ == 0) {
		job->first_error = rc;
	}
	job->stopping = true;
	_job_finish(job);
}

static int
_retry_poll(void *ctx)
{
	struct wl_job *job = ctx;
	uint32_t n = job->nomem_pending;

	if (n == 0) {
		return SB_POLLER_IDLE;
	}
	if (job->run->pattern == WL_VERIFY && !job->verify_reading &&
	    job->next_seq == job->num_slots && job->outstanding != 0) {
		return SB_POLLER_IDLE; /* still waiting for the write pass */
	}
	job->nomem_pending = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (job->stopping) {
			break;
		}
		_job_submit(job, &job->tasks[job->nomem_list[i]]);
	}
	if (job->stopping) {
		job->nomem_pending = 0;
		_job_finish(job);
	}
	return SB_POLLER_BUSY;
}

static void
_job_start(void *ctx)
{
	struct wl_job *job = ctx;
	struct wl_run *run = job->run;
	uint32_t qd = run->opts.qd;
	int rc;

	rc = sb_bdev_open(run->opts.bdev_name, run->pattern != WL_READ &&
			  run->pattern != WL_RANDREAD, NULL, NULL, &job->desc);
	if (rc != 0) {
		job->desc = NULL;
		goto fail;
	}
	job->ch = sb_bdev_get_io_channel(job->desc);
	job->retry_poller = sb_poller_register(_retry_poll, job, 0, "workload_retry");
	if (job->ch == NULL || job->retry_poller == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	/* Parked tasks wait for a completion, which always wakes the reactor. */
	sb_poller_set_event_driven(job->retry_poller, true);
	if (qd > job->num_slots && run->pattern == WL_VERIFY) {
		qd = (uint32_t)job->num_slots;
	}
	job->start_tsc = sb_get_ticks();
	for (uint32_t i = 0; i < qd && !job->stopping; i++) {
		_job_submit(job, &job->tasks[i]);
	}
	return;
fail:
	job->first_error = rc;
	job->errors++;
	job->stopping = true;
	_job_finish(job);
}

static void
_fan_out(void *ctx, struct sb_completion *done)
{
	struct wl_run *run = *(struct wl_run **)ctx;

	run->done = done;
	for (uint32_t i = 0; i < run->num_jobs; i++) {
		int rc = sb_send_msg(run->jobs[i].reactor, _job_start, &run->jobs[i]);

		if (rc != 0) {
			SB_ERRLOG("workload: cannot reach reactor: %d\n", rc);
			run->jobs[i].first_error = rc;
			run->jobs[i].errors++;
			_run_put(run);
		}
	}
	/* Our own share last: no job can free run while this loop reads it. */
	_run_put(run);
}

static int
_parse_rw(const char *rw, enum wl_pattern *p)
{
	static const struct { const char *name; enum wl_pattern p; } names[] = {
		{"randread", WL_RANDREAD}, {"randwrite", WL_RANDWRITE}, {"randrw", WL_RANDRW},
		{"read", WL_READ}, {"write", WL_WRITE}, {"verify", WL_VERIFY},
	};

	for (size_t i = 0; rw != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(rw, names[i].name) == 0) {
			*p = names[i].p;
			return 0;
		}
	}
	return -EINVAL;
}

static void
_free_run(struct wl_run *run)
{
	for (uint32_t i = 0; i < run->num_jobs; i++) {
		struct wl_job *job = &run->jobs[i];

		free(job->tasks);
		free(job->nomem_list);
		if (job->buffers != NULL) {
			munmap(job->buffers, job->buf_len);
		}
	}
	free(run);
}

static void
_release_run(void *args)
{
	_free_run(*(struct wl_run **)args);
}

int
sb_workload_run(const struct sb_workload_opts *opts, struct sb_workload_result *res)
{
	struct sb_bdev_info *info;
	struct wl_run *run;
	uint32_t cores[SB_MAX_REACTORS], ncores = 1;
	uint64_t num_blocks, total_slots;
	uint64_t timeout_us;
	int rc;

	memset(res, 0, sizeof(*res));
	if (opts == NULL || opts->bdev_name == NULL || opts->qd == 0 || opts->qd > 4096 ||
	    opts->io_size == 0 || opts->rwmixread > 100) {
		return -EINVAL;
	}
	if (strlen(opts->bdev_name) >= SB_BDEV_NAME_MAX) {
		return -ENODEV;
	}
	info = calloc(1, sizeof(*info));
	run = calloc(1, sizeof(*run));
	if (info == NULL || run == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	/* The jobs read the options on their reactors: a copy, with the name inside run. */
	run->opts = *opts;
	snprintf(run->bdev_name, sizeof(run->bdev_name), "%s", opts->bdev_name);
	run->opts.bdev_name = run->bdev_name;
	run->opts.core_mask = NULL;
	run->opts.rw = NULL;
	rc = _parse_rw(opts->rw, &run->pattern);
	if (rc != 0) {
		SB_ERRLOG("workload: unknown rw %s\n", opts->rw ? opts->rw : "(null)");
		goto out;
	}
	rc = sb_bdev_ctl_get_info(opts->bdev_name, info);
	if (rc != 0) {
		goto out;
	}
	if (opts->io_size % info->block_size != 0) {
		SB_ERRLOG("workload: io size %u is not a multiple of block size %u\n",
			  opts->io_size, info->block_size);
		rc = -EINVAL;
		goto out;
	}
	run->block_size = info->block_size;
	run->blocks_per_io = opts->io_size / info->block_size;
	num_blocks = opts->num_blocks ? opts->num_blocks : info->num_blocks - opts->offset_blocks;
	if (opts->offset_blocks > info->num_blocks ||
	    num_blocks > info->num_blocks - opts->offset_blocks) {
		rc = -EINVAL;
		goto out;
	}
	if (opts->core_mask != NULL) {
		rc = sb_parse_core_mask(opts->core_mask, cores, SB_MAX_REACTORS, &ncores);
		if (rc != 0) {
			goto out;
		}
	} else {
		cores[0] = sb_reactor_core(sb_reactor_get(0));
	}
	total_slots = num_blocks / run->blocks_per_io;
	if (total_slots < ncores) {
		rc = -EINVAL;
		goto out;
	}
	run->num_jobs = ncores;
	run->run_ticks = opts->run_us * (sb_get_ticks_hz() / 1000000ULL);
	atomic_init(&run->remaining, ncores + 1);
	for (uint32_t i = 0; i < ncores; i++) {
		struct wl_job *job = &run->jobs[i];

		job->run = run;
		job->reactor = sb_reactor_get_by_core(cores[i]);
		if (job->reactor == NULL) {
			SB_ERRLOG("workload: core %u has no reactor\n", cores[i]);
			rc = -EINVAL;
			goto out;
		}
		job->num_slots = total_slots / ncores;
		job->first_slot = job->num_slots * i;
		job->rand_state = (opts->seed ? opts->seed : 0x2545f4914f6cdd1dULL) + i * 7919;
		job->tasks = calloc(opts->qd, sizeof(*job->tasks));
		job->nomem_list = calloc(opts->qd, sizeof(*job->nomem_list));
		job->buf_len = (size_t)opts->qd * opts->io_size;
		job->buffers = mmap(NULL, job->buf_len, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (job->buffers == MAP_FAILED) {
			job->buffers = NULL;
		}
		if (job->tasks == NULL || job->nomem_list == NULL || job->buffers == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		sb_histogram_init(&job->hist);
		for (uint32_t t = 0; t < opts->qd; t++) {
			job->tasks[t].job = job;
			job->tasks[t].iov.iov_base = (char *)job->buffers + (size_t)t * opts->io_size;
			job->tasks[t].iov.iov_len = opts->io_size;
		}
	}

	timeout_us = run->pattern == WL_VERIFY ? 3600ULL * 1000000 : opts->run_us + 60000000ULL;
	/* From here the call owns run: _release_run frees it when the last side lets go. */
	rc = sb_call_owned(sb_reactor_get(0), _fan_out, &run, sizeof(run), res, sizeof(*res),
			   _release_run, timeout_us);
	run = NULL;
	if (rc != 0) {
		memset(res, 0, sizeof(*res));
		SB_ERRLOG("workload on %s did not finish: %d\n", opts->bdev_name, rc);
	}
out:
	if (run != NULL) {
		_free_run(run);
	}
	free(info);
	return rc;
}

/* ---- synchronous single I/O ---- */

/*
 * The call owns everything the I/O touches: the name and the data to write
 * are in its arguments, a read lands in its results area and is copied to
 * the caller's buffer only if the caller still waits.
 */
struct ctl_io {
	char name[SB_BDEV_NAME_MAX];
	enum sb_bdev_io_type type;
	uint64_t offset;
	uint64_t length;
	struct iovec iov;
	struct sb_bdev_desc *desc;
	struct sb_io_channel *ch;
	struct sb_completion *done;
	unsigned char data[]; /* WRITE: length bytes */
};

static void
_ctl_io_done(struct sb_bdev_io *io, int status, void *cb_arg)
{
	struct ctl_io *c = cb_arg;

	sb_bdev_free_io(io);
	sb_put_io_channel(c->ch);
	sb_bdev_close(c->desc);
	sb_complete(c->done, status);
}

static void
_ctl_io_start(void *ctx, struct sb_completion *done)
{
	struct ctl_io *c = ctx;
	struct sb_bdev *bdev;
	uint32_t bs;
	int rc;

	c->done = done;
	c->iov.iov_base = c->type == SB_BDEV_IO_READ ? sb_call_results(done) : (void *)c->data;
	c->iov.iov_len = c->length;
	rc = sb_bdev_open(c->name, c->type != SB_BDEV_IO_READ, NULL, NULL, &c->desc);
	if (rc != 0) {
		sb_complete(done, rc);
		return;
	}
	bdev = sb_bdev_desc_get_bdev(c->desc);
	bs = sb_bdev_get_block_size(bdev);
	if (c->offset % bs != 0 || c->length % bs != 0) {
		rc = -EINVAL;
		goto fail;
	}
	c->ch = sb_bdev_get_io_channel(c->desc);
	if (c->ch == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	switch (c->type) {
	case SB_BDEV_IO_READ:
		rc = sb_bdev_readv_blocks(c->desc, c->ch, &c->iov, 1, c->offset / bs, c->length / bs,
					  _ctl_io_done, c);
		break;
	case SB_BDEV_IO_WRITE:
		rc = sb_bdev_writev_blocks(c->desc, c->ch, &c->iov, 1, c->offset / bs,
					   c->length / bs, _ctl_io_done, c);
		break;
	case SB_BDEV_IO_FLUSH:
		rc = sb_bdev_flush(c->desc, c->ch, _ctl_io_done, c);
		break;
	case SB_BDEV_IO_UNMAP:
		rc = sb_bdev_unmap_blocks(c->desc, c->ch, c->offset / bs, c->length / bs,
					  _ctl_io_done, c);
		break;
	case SB_BDEV_IO_WRITE_ZEROES:
		rc = sb_bdev_write_zeroes_blocks(c->desc, c->ch, c->offset / bs, c->length / bs,
						 _ctl_io_done, c);
		break;
	case SB_BDEV_IO_RESET:
		rc = sb_bdev_reset(c->desc, c->ch, _ctl_io_done, c);
		break;
	default:
		rc = -EINVAL;
		break;
	}
	if (rc == 0) {
		return;
	}
	sb_put_io_channel(c->ch);
fail:
	sb_bdev_close(c->desc);
	sb_complete(done, rc);
}

int
sb_bdev_ctl_io(const char *name, uint32_t reactor, enum sb_bdev_io_type type, uint64_t offset,
	       uint64_t length, void *buf)
{
	struct sb_reactor *r = sb_reactor_get(reactor);
	bool is_read = type == SB_BDEV_IO_READ, is_write = type == SB_BDEV_IO_WRITE;
	size_t args_size = sizeof(struct ctl_io);
	struct ctl_io *c;
	int rc;

	if (r == NULL || name == NULL ||
	    ((is_read || is_write) && (buf == NULL || length == 0 || length > SIZE_MAX / 4))) {
		return -EINVAL;
	}
	if (strlen(name) >= SB_BDEV_NAME_MAX) {
		return -ENODEV;
	}
	if (is_write) {
		args_size += length;
	}
	c = calloc(1, args_size);
	if (c == NULL) {
		return -ENOMEM;
	}
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->type = type;
	c->offset = offset;
	c->length = length;
	if (is_write) {
		memcpy(c->data, buf, length);
	}
	rc = sb_call_owned(r, _ctl_io_start, c, args_size, is_read ? buf : NULL,
			   is_read ? length : 0, NULL, SB_CALL_TIMEOUT_US);
	free(c);
	return rc;
}

/* ---- event watchers ---- */

struct sb_bdev_watch {
	struct sb_reactor *reactor;
	struct sb_bdev_desc *desc;
	_Atomic uint64_t resize_events;
	_Atomic uint64_t remove_events;
	_Atomic uint64_t num_blocks;
};

/*
 * The watch itself is handed to its reactor (its descriptor's event
 * callback points at it); a call whose waiter gave up leaves it to the
 * reactor for good (leaked, never freed under it).
 */
struct watch_args {
	struct sb_bdev_watch *w;
	char name[SB_BDEV_NAME_MAX];
};

static void
_watch_event(enum sb_bdev_event_type type, struct sb_bdev *bdev, void *ctx)
{
	struct sb_bdev_watch *w = ctx;

	if (type == SB_BDEV_EVENT_RESIZE) {
		atomic_store(&w->num_blocks, sb_bdev_get_num_blocks(bdev));
		atomic_fetch_add(&w->resize_events, 1);
	} else if (type == SB_BDEV_EVENT_REMOVE) {
		atomic_fetch_add(&w->remove_events, 1);
		/* A removed bdev waits for its descriptors: close ours now. */
		sb_bdev_close(w->desc);
		w->desc = NULL;
	}
}

static void
_watch_open(void *ctx, struct sb_completion *done)
{
	struct watch_args *args = ctx;
	struct sb_bdev_watch *w = args->w;
	int rc;

	rc = sb_bdev_open(args->name, false, _watch_event, w, &w->desc);
	if (rc == 0) {
		atomic_store(&w->num_blocks, sb_bdev_get_num_blocks(sb_bdev_desc_get_bdev(w->desc)));
	}
	sb_complete(done, rc);
}

static void
_watch_close(void *ctx, struct sb_completion *done)
{
	struct sb_bdev_watch *w = ((struct watch_args *)ctx)->w;

	if (w->desc != NULL) {
		sb_bdev_close(w->desc);
		w->desc = NULL;
	}
	sb_complete(done, 0);
}

int
sb_bdev_watch_open(const char *name, uint32_t reactor, struct sb_bdev_watch **watch)
{
	struct watch_args args;
	struct sb_bdev_watch *w;
	int rc;

	if (name == NULL || watch == NULL) {
		return -EINVAL;
	}
	if (strlen(name) >= sizeof(args.name)) {
		return -ENODEV;
	}
	w = calloc(1, sizeof(*w));
	if (w == NULL) {
		return -ENOMEM;
	}
	w->reactor = sb_reactor_get(reactor);
	if (w->reactor == NULL) {
		free(w);
		return -EINVAL;
	}
	args.w = w;
	snprintf(args.name, sizeof(args.name), "%s", name);
	rc = sb_call_owned(w->reactor, _watch_open, &args, sizeof(args), NULL, 0, NULL,
			   SB_CALL_TIMEOUT_US);
	if (rc != 0) {
		if (rc != -SB_EWAITER_GAVE_UP) {
			free(w);
		}
		return rc;
	}
	*watch = w;
	return 0;
}

void
sb_bdev_watch_get(struct sb_bdev_watch *w, uint64_t *resize_events, uint64_t *remove_events,
		  uint64_t *num_blocks)
{
	*resize_events = atomic_load(&w->resize_events);
	*remove_events = atomic_load(&w->remove_events);
	*num_blocks = atomic_load(&w->num_blocks);
}

void
sb_bdev_watch_close(struct sb_bdev_watch *w)
{
	struct watch_args args = {.w = w};

	if (w == NULL) {
		return;
	}
	if (sb_engine_is_running() &&
	    sb_call_owned(w->reactor, _watch_close, &args, sizeof(args), NULL, 0, NULL,
			  SB_CALL_TIMEOUT_US) == -SB_EWAITER_GAVE_UP) {
		return; /* still referenced by the reactor */
	}
	free(w);
}
