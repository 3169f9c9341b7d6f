/* SPDX-License-Identifier: Apache-2.0 */
/*
 * I/O generator: fixed request slots per queue (3 descriptors each: header,
 * data, status), busy-polled or interrupt-driven used rings, a log-linear
 * latency histogram, and block-level data verification.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "sb/thread.h"
#include "vhost_initiator.h"

/* Histogram: values < 64 ns exact, then 32 linear buckets per power of two
 * (~3% resolution), no allocation per I/O. */
#define H_SUB_BITS 5
#define H_BUCKETS ((64 - H_SUB_BITS) << H_SUB_BITS)

struct histogram {
	uint64_t b[H_BUCKETS];
	uint64_t count;
	uint64_t sum;
	uint64_t max;
};

static unsigned
_h_index(uint64_t v)
{
	unsigned msb, e;

	if (v < (1u << (H_SUB_BITS + 1))) {
		return (unsigned)v;
	}
	msb = 63u - (unsigned)__builtin_clzll(v);
	e = msb - H_SUB_BITS;
	return (e << H_SUB_BITS) + (unsigned)(v >> e);
}

static double
_h_value(unsigned idx)
{
	unsigned e, mant;

	if (idx < (1u << (H_SUB_BITS + 1))) {
		return idx;
	}
	e = (idx >> H_SUB_BITS) - 1;
	mant = idx - (e << H_SUB_BITS);
	/* midpoint of [mant << e, (mant + 1) << e) */
	return ((double)mant + 0.5) * (double)(1ull << e);
}

static void
_h_add(struct histogram *h, uint64_t v)
{
	h->b[_h_index(v)]++;
	h->count++;
	h->sum += v;
	if (v > h->max) {
		h->max = v;
	}
}

static double
_h_percentile(const struct histogram *h, double p)
{
	uint64_t target, seen = 0;
	unsigned i;

	if (h->count == 0) {
		return 0;
	}
	target = (uint64_t)ceil(p * (double)h->count);
	if (target == 0) {
		target = 1;
	}
	for (i = 0; i < H_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= target) {
			double v = _h_value(i);

			return v > (double)h->max ? (double)h->max : v;
		}
	}
	return (double)h->max;
}

/* The engine's clock (ns, TSC-based where the kernel trusts the TSC): cheap enough per I/O. */
static inline uint64_t
_now_ns(void)
{
	return sb_get_ticks();
}

static inline uint64_t
_rand(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static inline uint64_t
_mix(uint64_t z)
{
	/* splitmix64 finaliser */
	z += 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

#define PATTERN_MAGIC 0x524f54494e494256ull  /* "VBINITOR" */
/* --verify-read: any generation, as long as each sector is self-consistent */
#define VI_GEN_ANY UINT32_MAX

/* Each 512-byte sector carries its own address, generation and seed, so a
 * misdirected, stale or torn write is told apart on read-back. */
static void
_fill_pattern(uint8_t *buf, uint32_t len, uint64_t sector, uint32_t gen, uint64_t seed)
{
	uint32_t s, j;

	for (s = 0; s < len / 512; s++) {
		uint64_t *w = (uint64_t *)(buf + (size_t)s * 512);
		uint64_t sec = sector + s;
		uint64_t base = seed ^ (sec * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)gen << 40);

		w[0] = PATTERN_MAGIC;
		w[1] = sec;
		w[2] = gen;
		w[3] = seed;
		for (j = 4; j < 64; j++) {
			w[j] = _mix(base + j);
		}
	}
}

static bool
_check_pattern(const uint8_t *buf, uint32_t len, uint64_t sector, uint32_t gen, uint64_t seed,
	       char *why, size_t why_len)
{
	uint32_t s, j;

	for (s = 0; s < len / 512; s++) {
		const uint64_t *w = (const uint64_t *)(buf + (size_t)s * 512);
		uint64_t sec = sector + s;
		uint32_t g = gen == VI_GEN_ANY ? (uint32_t)w[2] : gen;
		uint64_t base = seed ^ (sec * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)g << 40);

		if (w[0] != PATTERN_MAGIC) {
			snprintf(why, why_len, "sector %" PRIu64 ": not our pattern "
				 "(word0 0x%016" PRIx64 ")", sec, w[0]);
			return false;
		}
		if (w[3] != seed) {
			snprintf(why, why_len, "sector %" PRIu64 ": written with seed %" PRIu64
				 ", expected %" PRIu64, sec, w[3], seed);
			return false;
		}
		if (w[1] != sec) {
			snprintf(why, why_len, "sector %" PRIu64 ": holds sector %" PRIu64
				 "'s data (misdirected)", sec, w[1]);
			return false;
		}
		if (w[2] != g) {
			snprintf(why, why_len, "sector %" PRIu64 ": generation %" PRIu64
				 ", expected %u (stale/lost write)", sec, w[2], gen);
			return false;
		}
		for (j = 4; j < 64; j++) {
			if (w[j] != _mix(base + j)) {
				snprintf(why, why_len, "sector %" PRIu64 ": word %u corrupt", sec, j);
				return false;
			}
		}
	}
	return true;
}

struct slot {
	uint16_t head;
	bool busy;
	bool write;
	uint32_t gen;
	uint64_t block;
	uint64_t t0;
	struct virtio_blk_outhdr *hdr;
	uint8_t *buf;
	uint8_t *status;
};

struct qstate {
	struct vq *vq;
	struct slot *slots;
	uint32_t inflight;
};

enum phase { PH_PREFILL, PH_MAIN, PH_READBACK };

struct run {
	struct vi_dev *d;
	const struct vi_workload *w;
	struct qstate qs[VI_MAX_QUEUES];
	uint64_t nblocks;
	uint32_t *gens;           /* verify: generation per block, 0 = unknown */
	uint8_t *busy;            /* verify: block has a request in flight */
	uint64_t rng;
	enum phase phase;
	uint64_t next_seq;        /* sequential cursor */
	uint64_t submitted;
	uint64_t limit;           /* requests to submit in this phase, 0 = time */
	uint64_t deadline_ns;
	/* results of the phase */
	struct histogram hist;
	uint64_t reads, writes, errors, mismatches, checked, unchecked;
	uint64_t t_start, t_end;
	uint64_t kicks;           /* kick eventfd writes during the phase */
	uint64_t calls;           /* --interrupt: call eventfd writes of the target we read */
	uint64_t call_timeouts;   /* --interrupt: 100 ms waits for a call that none ended */
	uint64_t sleeps;          /* times the thread blocked (voluntary context switches) */
	char first_error[256];
	bool fatal;
};

static void
_note_error(struct run *r, const char *fmt, const char *detail)
{
	if (r->first_error[0] == '\0') {
		snprintf(r->first_error, sizeof(r->first_error), fmt, detail);
	}
}

/* Pick the next request; false when nothing can be issued right now. */
static bool
_next_op(struct run *r, uint64_t *block, bool *write)
{
	const struct vi_workload *w = r->w;
	uint64_t b, tries;

	if (r->limit != 0 && r->submitted >= r->limit) {
		return false;
	}
	if (r->phase != PH_MAIN) {
		if (r->next_seq >= r->nblocks) {
			return false;
		}
		*block = r->next_seq++;
		*write = r->phase == PH_PREFILL;
		return true;
	}
	switch (w->rw) {
	case VI_RW_READ:
	case VI_RW_WRITE:
		b = r->next_seq++ % r->nblocks;
		*write = w->rw == VI_RW_WRITE;
		break;
	default:
		b = _rand(&r->rng) % r->nblocks;
		if (w->rw == VI_RW_RANDRW) {
			*write = (int)(_rand(&r->rng) % 100) >= w->rwmixread;
		} else {
			*write = w->rw == VI_RW_RANDWRITE;
		}
		break;
	}
	if (r->busy != NULL) {
		/* Never two requests on one block: the expected content of a
		 * block must be known when its read completes. */
		for (tries = 0; r->busy[b] && tries < r->nblocks; tries++) {
			b = (b + 1) % r->nblocks;
		}
		if (r->busy[b]) {
			return false;
		}
	}
	*block = b;
	return true;
}

static void
_submit(struct run *r, struct qstate *q, struct slot *s, uint64_t block, bool write)
{
	const struct vi_workload *w = r->w;
	uint64_t sector = block * (w->bs / 512);
	struct guest_mem *m = &r->d->mem;
	struct vi_buf bufs[3];

	s->busy = true;
	s->write = write;
	s->block = block;
	s->hdr->type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
	s->hdr->ioprio = 0;
	s->hdr->sector = sector;
	*s->status = 0xff;  /* the target must overwrite it */
	if (r->gens != NULL) {
		r->busy[block] = 1;
		if (write) {
			s->gen = r->gens[block] + 1;
			if (s->gen == 0) {
				s->gen = 1;
			}
			_fill_pattern(s->buf, w->bs, sector, s->gen, w->seed);
		} else {
			s->gen = r->gens[block];
		}
	}
	bufs[0] = (struct vi_buf){ gm_gpa(m, s->hdr), sizeof(*s->hdr), false };
	bufs[1] = (struct vi_buf){ gm_gpa(m, s->buf), w->bs, !write };
	bufs[2] = (struct vi_buf){ gm_gpa(m, s->status), 1, true };
	s->t0 = _now_ns();
	vq_add(q->vq, s->head, bufs, 3);
	q->inflight++;
	r->submitted++;
}

static void
_complete(struct run *r, struct qstate *q, struct slot *s, uint64_t now)
{
	const struct vi_workload *w = r->w;
	uint8_t status = *(volatile uint8_t *)s->status;
	char why[200];

	s->busy = false;
	q->inflight--;
	_h_add(&r->hist, now - s->t0);
	if (s->write) {
		r->writes++;
	} else {
		r->reads++;
	}
	if (status != VIRTIO_BLK_S_OK) {
		r->errors++;
		snprintf(why, sizeof(why), "%s of block %" PRIu64 " completed with status %u",
			 s->write ? "write" : "read", s->block, status);
		_note_error(r, "%s", why);
		if (r->gens != NULL) {
			/* A failed write leaves the block's content unknown. */
			if (s->write) {
				r->gens[s->block] = 0;
			}
			r->busy[s->block] = 0;
		}
		return;
	}
	if (r->gens == NULL) {
		return;
	}
	r->busy[s->block] = 0;
	if (s->write) {
		r->gens[s->block] = s->gen;
		return;
	}
	if (s->gen == 0) {
		r->unchecked++;
		return;
	}
	r->checked++;
	if (!_check_pattern(s->buf, w->bs, s->block * (w->bs / 512), s->gen, w->seed, why,
			    sizeof(why))) {
		r->mismatches++;
		_note_error(r, "verify: %s", why);
	}
}

static int
_setup_slots(struct run *r)
{
	struct vi_dev *d = r->d;
	uint32_t qd = r->w->qd;
	uint16_t i;
	uint32_t j;

	for (i = 0; i < d->num_queues; i++) {
		struct qstate *q = &r->qs[i];

		q->vq = &d->vqs[i];
		q->slots = calloc(qd, sizeof(*q->slots));
		if (q->slots == NULL) {
			return -ENOMEM;
		}
		for (j = 0; j < qd; j++) {
			struct slot *s = &q->slots[j];

			s->head = (uint16_t)(3 * j);
			s->hdr = gm_alloc(&d->mem, sizeof(*s->hdr), 16);
			s->status = gm_alloc(&d->mem, 1, 1);
			s->buf = gm_alloc(&d->mem, r->w->bs, 4096);
			if (s->hdr == NULL || s->status == NULL || s->buf == NULL) {
				fprintf(stderr, "guest memory too small for qd %u x bs %u "
					"(use --mem-mb)\n", qd, r->w->bs);
				return -ENOMEM;
			}
		}
	}
	return 0;
}

/* Calls (call eventfd writes) the target made since the last read. */
static uint64_t
_read_calls(struct vq *vq)
{
	uint64_t cnt = 0;

	if (vq->call_fd < 0 || read(vq->call_fd, &cnt, sizeof(cnt)) != (ssize_t)sizeof(cnt)) {
		return 0; /* EAGAIN: none */
	}
	return cnt;
}

/* Run one phase to completion; false on a fatal (protocol) failure. */
static uint64_t
_voluntary_switches(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru) != 0) {
		return 0;
	}
	return (uint64_t)ru.ru_nvcsw;
}

static bool
_run_phase(struct run *r, enum phase ph)
{
	const struct vi_workload *w = r->w;
	struct vi_dev *d = r->d;
	uint64_t now, last_progress;
	uint64_t io_timeout = (uint64_t)(w->io_timeout_s > 0 ? w->io_timeout_s : 10) *
			      1000000000ull;
	uint32_t inflight;
	bool stopping = false;
	uint16_t i, q;
	uint32_t j, id, len;
	unsigned spins = 0;

	memset(&r->hist, 0, sizeof(r->hist));
	r->reads = r->writes = r->errors = r->mismatches = r->checked = r->unchecked = 0;
	r->phase = ph;
	r->next_seq = 0;
	r->submitted = 0;
	if (ph == PH_MAIN) {
		r->limit = w->ios;
		r->deadline_ns = w->ios == 0 ? (uint64_t)(w->seconds * 1e9) : 0;
	} else {
		r->limit = 0;
		r->deadline_ns = 0;
	}
	r->kicks = 0;
	for (q = 0; q < r->d->num_queues; q++) {
		r->kicks -= r->d->vqs[q].kicks;
		/* Calls of an earlier phase are not this one's. */
		(void)_read_calls(&r->d->vqs[q]);
	}
	r->calls = r->call_timeouts = 0;
	/* Blocked waits for a call: a call to a thread that is awake costs it nothing. */
	r->sleeps = _voluntary_switches();
	r->t_start = now = last_progress = _now_ns();
	if (r->deadline_ns) {
		r->deadline_ns += r->t_start;
	}

	for (;;) {
		bool progress = false;

		inflight = 0;
		for (i = 0; i < d->num_queues; i++) {
			struct qstate *q = &r->qs[i];
			bool pushed = false;

			while (vq_pop(q->vq, &id, &len)) {
				struct slot *s;

				if (id % 3 != 0 || id / 3 >= w->qd || !q->slots[id / 3].busy) {
					fprintf(stderr, "queue %u: target returned bogus used id %u\n",
						i, id);
					r->fatal = true;
					return false;
				}
				s = &q->slots[id / 3];
				if (!progress) {
					now = _now_ns();
				}
				_complete(r, q, s, now);
				progress = true;
			}
			if (!stopping) {
				for (j = 0; j < w->qd; j++) {
					uint64_t block;
					bool write;

					if (q->slots[j].busy) {
						continue;
					}
					if (!_next_op(r, &block, &write)) {
						break;
					}
					_submit(r, q, &q->slots[j], block, write);
					pushed = true;
				}
			}
			if (pushed) {
				vq_kick(q->vq, false);
			}
			inflight += q->inflight;
		}
		if (progress) {
			last_progress = now;
		}
		if ((++spins & 63) == 0 || !progress) {
			now = _now_ns();
			if (r->deadline_ns && now >= r->deadline_ns) {
				stopping = true;
			}
		}
		if (!stopping && r->limit && r->submitted >= r->limit) {
			stopping = true;
		}
		if (!stopping && ph != PH_MAIN && r->next_seq >= r->nblocks) {
			stopping = true;
		}
		if (stopping && inflight == 0) {
			break;
		}
		if (!progress && inflight > 0 && now - last_progress > io_timeout) {
			fprintf(stderr, "no completion for %d s with %u requests in flight\n",
				w->io_timeout_s > 0 ? w->io_timeout_s : 10, inflight);
			snprintf(r->first_error, sizeof(r->first_error),
				 "target stopped completing requests");
			r->fatal = true;
			return false;
		}
		if (d->event_idx && !d->interrupts && progress) {
			/* Keep used_event out of the target's way. */
			for (i = 0; i < d->num_queues; i++) {
				vq_want_call(&d->vqs[i], false);
			}
		}
		if (!progress && d->interrupts && inflight > 0) {
			struct pollfd pfd[VI_MAX_QUEUES];
			bool pending = false;

			for (i = 0; i < d->num_queues; i++) {
				pfd[i].fd = d->vqs[i].call_fd;
				pfd[i].events = POLLIN;
				/* Re-arm, then re-check: a completion that raced the
				 * re-arm may not have been signalled. */
				vq_want_call(&d->vqs[i], true);
				pending = pending || vq_has_used(&d->vqs[i]);
			}
			if (pending) {
				/* Completed meanwhile: no need to wait for a call. */
			} else if (poll(pfd, d->num_queues, 100) == 0) {
				/* Requests in flight and no call: a device that
				 * signals every completion never gets here (a
				 * guest would wait for ever). */
				r->call_timeouts++;
			} else {
				for (i = 0; i < d->num_queues; i++) {
					if (pfd[i].revents & POLLIN) {
						r->calls += _read_calls(&d->vqs[i]);
					}
				}
			}
		} else if (!progress && inflight == 0 && !stopping) {
			/* Nothing in flight and nothing issuable (verify: every
			 * block busy cannot happen with nothing in flight). */
			break;
		}
	}
	r->t_end = _now_ns();
	for (q = 0; q < r->d->num_queues; q++) {
		r->kicks += r->d->vqs[q].kicks;
		/* What the target signalled and we did not wait for (a delay
		 * of interrupt coalescing may still hold one call back). */
		r->calls += _read_calls(&r->d->vqs[q]);
	}
	r->sleeps = _voluntary_switches() - r->sleeps;
	return true;
}

static void
_print_phase(const struct run *r, const char *name, bool json, bool last)
{
	const struct vi_workload *w = r->w;
	double secs = (double)(r->t_end - r->t_start) / 1e9;
	uint64_t ios = r->reads + r->writes;
	double iops = secs > 0 ? (double)ios / secs : 0;
	double mbps = secs > 0 ? (double)ios * w->bs / secs / 1e6 : 0;
	const struct histogram *h = &r->hist;

	if (json) {
		printf("\"%s\": {\"seconds\": %.6f, \"ios\": %" PRIu64 ", \"reads\": %" PRIu64
		       ", \"writes\": %" PRIu64 ", \"iops\": %.1f, \"mbps\": %.3f, "
		       "\"mean_us\": %.3f, \"p50_us\": %.3f, \"p99_us\": %.3f, "
		       "\"p999_us\": %.3f, \"max_us\": %.3f, \"errors\": %" PRIu64
		       ", \"verify_mismatches\": %" PRIu64 ", \"verified\": %" PRIu64
		       ", \"kicks\": %" PRIu64 ", \"calls\": %" PRIu64
		       ", \"call_timeouts\": %" PRIu64 ", \"sleeps\": %" PRIu64 "}%s\n",
		       name, secs, ios, r->reads, r->writes, iops, mbps,
		       h->count ? (double)h->sum / (double)h->count / 1e3 : 0.0,
		       _h_percentile(h, 0.50) / 1e3, _h_percentile(h, 0.99) / 1e3,
		       _h_percentile(h, 0.999) / 1e3, (double)h->max / 1e3, r->errors,
		       r->mismatches, r->checked, r->kicks, r->calls,
		       r->call_timeouts, r->sleeps, last ? "" : ",");
		return;
	}
	printf("%-9s %8" PRIu64 " ios in %.2fs: %.0f IOPS, %.1f MB/s, lat us mean %.1f "
	       "p50 %.1f p99 %.1f p99.9 %.1f max %.1f, errors %" PRIu64, name, ios, secs, iops,
	       mbps, h->count ? (double)h->sum / (double)h->count / 1e3 : 0.0,
	       _h_percentile(h, 0.50) / 1e3, _h_percentile(h, 0.99) / 1e3,
	       _h_percentile(h, 0.999) / 1e3, (double)h->max / 1e3, r->errors);
	if (r->gens != NULL) {
		printf(", verified %" PRIu64 " mismatches %" PRIu64, r->checked, r->mismatches);
	}
	printf("\n");
}

static const char *
_rw_name(int rw)
{
	static const char *names[] = { "read", "write", "randread", "randwrite", "randrw" };

	return names[rw];
}

int
vi_run_workload(struct vi_dev *d, const struct vi_workload *w)
{
	struct run r;
	uint64_t range;
	bool has_writes = w->rw != VI_RW_READ && w->rw != VI_RW_RANDREAD;
	bool ran_main = false, ok = true, verify_ok = true;
	uint64_t total_errors = 0, total_mismatch = 0;
	int rc = 0;
	uint16_t i;

	memset(&r, 0, sizeof(r));
	r.d = d;
	r.w = w;
	r.rng = w->seed ? w->seed : 1;
	if (w->bs == 0 || w->bs % 512 != 0 || w->qd == 0 || 3ull * w->qd > d->queue_size) {
		fprintf(stderr, "bs must be a multiple of 512 and 3*qd <= queue size (%u)\n",
			d->queue_size);
		return 2;
	}
	if (w->verify_read) {
		has_writes = false;
	}
	if (d->readonly && (has_writes || w->verify)) {
		fprintf(stderr, "target is read-only\n");
		return 2;
	}
	range = d->capacity * 512;
	if (w->size_limit && w->size_limit < range) {
		range = w->size_limit;
	}
	r.nblocks = range / w->bs;
	if (r.nblocks == 0) {
		fprintf(stderr, "device (%" PRIu64 " bytes) smaller than one block\n", range);
		return 2;
	}
	if (w->verify || w->verify_read) {
		r.gens = calloc(r.nblocks, sizeof(*r.gens));
		r.busy = calloc(r.nblocks, 1);
		if (r.gens == NULL || r.busy == NULL) {
			fprintf(stderr, "out of memory for %" PRIu64 " blocks\n", r.nblocks);
			rc = 2;
			goto out;
		}
	}
	if (_setup_slots(&r) != 0) {
		rc = 2;
		goto out;
	}
	if (w->verify_read) {
		/* The range was written by an earlier --verify run (same seed). */
		for (uint64_t b = 0; b < r.nblocks; b++) {
			r.gens[b] = VI_GEN_ANY;
		}
	}

	if (w->json) {
		printf("{\"rw\": \"%s\", \"bs\": %u, \"qd\": %u, \"queues\": %u, "
		       "\"blocks\": %" PRIu64 ", \"seed\": %" PRIu64 ", \"verify\": %s,\n",
		       _rw_name(w->rw), w->bs, w->qd, d->num_queues, r.nblocks, w->seed,
		       w->verify || w->verify_read ? "true" : "false");
		/* What was negotiated, so every result says what it measured. */
		printf("\"frontend\": \"%s\", \"like_qemu\": %s%s%s, \"features\": \"0x%" PRIx64
		       "\", \"protocol_features\": \"0x%" PRIx64 "\", \"interrupts\": %s, "
		       "\"inflight\": %s, \"indirect\": %s, \"event_idx\": %s,\n",
		       vi_frontend_name(d->frontend), d->profile ? "\"" : "",
		       d->profile ? d->profile->version : "null", d->profile ? "\"" : "",
		       d->conn.acked_features, d->conn.protocol_features,
		       d->interrupts ? "true" : "false", d->inflight ? "true" : "false",
		       d->vqs[0].use_indirect ? "true" : "false",
		       d->event_idx ? "true" : "false");
	}
	if (w->verify) {
		ok = _run_phase(&r, PH_PREFILL);
		total_errors += r.errors;
		_print_phase(&r, "prefill", w->json, false);
	}
	if (ok && !w->verify_read && (w->seconds > 0 || w->ios > 0)) {
		ok = _run_phase(&r, PH_MAIN);
		total_errors += r.errors;
		total_mismatch += r.mismatches;
		_print_phase(&r, "main", w->json, false);
		ran_main = true;
	}
	if (ok && (w->verify || w->verify_read)) {
		ok = _run_phase(&r, PH_READBACK);
		total_errors += r.errors;
		total_mismatch += r.mismatches;
		if (r.unchecked > 0) {
			/* A block whose write failed has no known content. */
			verify_ok = false;
		}
		_print_phase(&r, "readback", w->json, false);
	}
	verify_ok = verify_ok && total_mismatch == 0;
	if (w->json) {
		printf("\"errors\": %" PRIu64 ", \"verify_mismatches\": %" PRIu64
		       ", \"fatal\": %s, \"first_error\": \"", total_errors, total_mismatch,
		       ok ? "false" : "true");
		for (const char *p = r.first_error; *p; p++) {
			if (*p == '"' || *p == '\\') {
				putchar('\\');
			}
			putchar(*p >= 0x20 ? *p : ' ');
		}
		printf("\", \"ran_main\": %s}\n", ran_main ? "true" : "false");
	} else if (r.first_error[0]) {
		printf("first error: %s\n", r.first_error);
	}
	fflush(stdout);
	if (!ok) {
		rc = 3;
	} else if (total_errors > 0 || !verify_ok) {
		rc = 1;
	}
out:
	for (i = 0; i < VI_MAX_QUEUES; i++) {
		free(r.qs[i].slots);
	}
	free(r.gens);
	free(r.busy);
	return rc;
}
