/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhost_initiator - a vhost-user-blk front-end for tests and benchmarks.
 *
 * Exit status: 0 success (hostile: every case ran), 1 I/O errors or verify
 * mismatches, 2 usage, 3 connection/protocol failure.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vhost_initiator.h"

static void
_usage(FILE *f)
{
	fprintf(f,
		"usage: vhost_initiator --socket PATH [options]\n"
		"  --rw MODE          read|write|randread|randwrite|randrw (default randread)\n"
		"  --rwmixread N      percent reads for randrw (default 50)\n"
		"  --bs BYTES         block size, multiple of 512 (default 4096)\n"
		"  --qd N             requests in flight per queue (default 32)\n"
		"  --queues N         virtqueues (default 1)\n"
		"  --queue-size N     descriptors per queue (default: >= 3*qd, min 128)\n"
		"  --time SECONDS     run time (default 5 unless --ios or --verify)\n"
		"  --ios N            stop after N requests\n"
		"  --size-limit BYTES use only the first BYTES of the device (K/M/G)\n"
		"  --verify           write the whole range, run the workload checking\n"
		"                     every read, then read back the whole range\n"
		"  --verify-read      only read back and check a range that an earlier\n"
		"                     --verify run wrote with the same --seed\n"
		"  --seed N           pattern/random seed (default: time)\n"
		"  --cpu N            pin to CPU N\n"
		"  --interrupt        wait on the call eventfd instead of busy polling\n"
		"                     (the JSON output counts the calls, \"calls\",\n"
		"                     and the times it blocked, \"sleeps\")\n"
		"  --event-idx        negotiate VIRTIO_F_EVENT_IDX (kick/call suppression)\n"
		"  --indirect         negotiate VIRTIO_F_INDIRECT_DESC (hostile cases always do)\n"
		"  --packed           packed virtqueues (VIRTIO_F_RING_PACKED, virtio 1.2 §2.8)\n"
		"  --mem-mb N         guest memory size (default 64)\n"
		"  --ack-all          NEED_REPLY on every set message (QEMU: mem table only)\n"
		"  --no-reply-ack     do not negotiate REPLY_ACK\n"
		"  --inflight         negotiate INFLIGHT_SHMFD and give the target an inflight region\n"
		"  --no-inflight      with --like-qemu: leave INFLIGHT_SHMFD out (what it costs)\n"
		"  --io-timeout S     fail when nothing completes for S seconds (default 10)\n"
		"  --timeout-ms N     protocol reply timeout (default 5000)\n"
		"  --frontend NAME    whose vhost-user message shapes to use: qemu (default),\n"
		"                     spdk, dpdk (even --queues, default 2; needs\n"
		"                     --size-limit: it reads no config) or rust-vmm\n"
		"  --like-qemu VER    be QEMU VER's vhost-user-blk as it was under a real\n"
		"                     guest (recorded by the e2e tests; 'list' shows them):\n"
		"                     exactly its features and protocol features where\n"
		"                     offered, its messages for them, the inflight region,\n"
		"                     interrupt mode (waits on the call eventfds)\n"
		"  --hostile CASE     run a hostile case, 'all', or 'list'\n"
		"  --stall-step STEP  start a queue, print 'ready', wait for a line on stdin,\n"
		"                     then send one control message (call, log-addr,\n"
		"                     log-base, stop, kick) and report what the target did\n"
		"  --json             machine-readable output\n"
		"  -v                 verbose (twice: trace messages)\n");
}

static int
_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno != 0 || end == s) {
		return -EINVAL;
	}
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end != '\0') {
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static int
_parse_rw(const char *s)
{
	static const char *names[] = { "read", "write", "randread", "randwrite", "randrw" };
	int i;

	for (i = 0; i < 5; i++) {
		if (strcmp(s, names[i]) == 0) {
			return i;
		}
	}
	return -1;
}

int
main(int argc, char **argv)
{
	enum { O_RW = 256, O_MIX, O_BS, O_QD, O_QUEUES, O_QSIZE, O_TIME, O_IOS, O_LIMIT,
	       O_VERIFY, O_SEED, O_CPU, O_INTR, O_MEM, O_ACKALL, O_NOACK, O_INFLIGHT, O_IOTO, O_TMO,
	       O_HOSTILE, O_JSON, O_SOCKET, O_VREAD, O_EVIDX, O_INDIRECT, O_FRONTEND, O_STALL,
	       O_PACKED, O_LIKE_QEMU, O_NO_INFLIGHT };
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "rw", required_argument, NULL, O_RW },
		{ "rwmixread", required_argument, NULL, O_MIX },
		{ "bs", required_argument, NULL, O_BS },
		{ "qd", required_argument, NULL, O_QD },
		{ "queues", required_argument, NULL, O_QUEUES },
		{ "queue-size", required_argument, NULL, O_QSIZE },
		{ "time", required_argument, NULL, O_TIME },
		{ "ios", required_argument, NULL, O_IOS },
		{ "size-limit", required_argument, NULL, O_LIMIT },
		{ "verify", no_argument, NULL, O_VERIFY },
		{ "verify-read", no_argument, NULL, O_VREAD },
		{ "seed", required_argument, NULL, O_SEED },
		{ "cpu", required_argument, NULL, O_CPU },
		{ "interrupt", no_argument, NULL, O_INTR },
		{ "event-idx", no_argument, NULL, O_EVIDX },
		{ "indirect", no_argument, NULL, O_INDIRECT },
		{ "packed", no_argument, NULL, O_PACKED },
		{ "mem-mb", required_argument, NULL, O_MEM },
		{ "ack-all", no_argument, NULL, O_ACKALL },
		{ "no-reply-ack", no_argument, NULL, O_NOACK },
		{ "inflight", no_argument, NULL, O_INFLIGHT },
		{ "no-inflight", no_argument, NULL, O_NO_INFLIGHT },
		{ "io-timeout", required_argument, NULL, O_IOTO },
		{ "timeout-ms", required_argument, NULL, O_TMO },
		{ "hostile", required_argument, NULL, O_HOSTILE },
		{ "stall-step", required_argument, NULL, O_STALL },
		{ "frontend", required_argument, NULL, O_FRONTEND },
		{ "like-qemu", required_argument, NULL, O_LIKE_QEMU },
		{ "json", no_argument, NULL, O_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vi_dev_opts o = { .num_queues = 1, .mem_size = 64ull << 20, .timeout_ms = 5000 };
	struct vi_workload w = { .rw = VI_RW_RANDREAD, .rwmixread = 50, .bs = 4096, .qd = 32,
				 .io_timeout_s = 10 };
	const char *hostile = NULL;
	const char *stall = NULL;
	const char *like_qemu = NULL;
	bool time_set = false, seed_set = false, queues_set = false;
	uint64_t v;
	int cpu = -1, opt, rc;
	struct vi_dev d;

	while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (opt) {
		case O_SOCKET: o.socket = optarg; break;
		case O_RW:
			w.rw = _parse_rw(optarg);
			if (w.rw < 0) {
				fprintf(stderr, "bad --rw %s\n", optarg);
				return 2;
			}
			break;
		case O_MIX: w.rwmixread = atoi(optarg); break;
		case O_BS:
			if (_parse_size(optarg, &v) != 0 || v == 0 || v > (16u << 20)) {
				fprintf(stderr, "bad --bs\n");
				return 2;
			}
			w.bs = (uint32_t)v;
			break;
		case O_QD: w.qd = (uint32_t)atoi(optarg); break;
		case O_QUEUES: o.num_queues = (uint16_t)atoi(optarg); queues_set = true; break;
		case O_QSIZE: o.queue_size = (uint16_t)atoi(optarg); break;
		case O_TIME: w.seconds = atof(optarg); time_set = true; break;
		case O_IOS: w.ios = strtoull(optarg, NULL, 0); break;
		case O_LIMIT:
			if (_parse_size(optarg, &w.size_limit) != 0) {
				fprintf(stderr, "bad --size-limit\n");
				return 2;
			}
			break;
		case O_VERIFY: w.verify = true; break;
		case O_VREAD: w.verify_read = true; break;
		case O_SEED: w.seed = strtoull(optarg, NULL, 0); seed_set = true; break;
		case O_CPU: cpu = atoi(optarg); break;
		case O_INTR: o.interrupts = true; break;
		case O_EVIDX: o.event_idx = true; break;
		case O_INDIRECT: o.indirect = true; break;
		case O_PACKED: o.packed = true; break;
		case O_MEM: o.mem_size = strtoull(optarg, NULL, 0) << 20; break;
		case O_ACKALL: o.ack_all = true; break;
		case O_NOACK: o.no_reply_ack = true; break;
		case O_INFLIGHT: o.inflight = true; break;
		case O_NO_INFLIGHT: o.no_inflight = true; break;
		case O_IOTO: w.io_timeout_s = atoi(optarg); break;
		case O_TMO: o.timeout_ms = atoi(optarg); break;
		case O_HOSTILE: hostile = optarg; break;
		case O_STALL: stall = optarg; break;
		case O_FRONTEND:
			o.frontend = vi_frontend_parse(optarg);
			if (o.frontend < 0) {
				fprintf(stderr, "bad --frontend %s (qemu, spdk, dpdk, rust-vmm)\n",
					optarg);
				return 2;
			}
			break;
		case O_LIKE_QEMU: like_qemu = optarg; break;
		case O_JSON: w.json = true; break;
		case 'v': o.verbose++; break;
		case 'h': _usage(stdout); return 0;
		default: _usage(stderr); return 2;
		}
	}
	if (hostile != NULL && strcmp(hostile, "list") == 0) {
		vi_hostile_list();
		return 0;
	}
	if (like_qemu != NULL && strcmp(like_qemu, "list") == 0) {
		vi_qemu_profile_list(stdout);
		return 0;
	}
	if (o.no_inflight && like_qemu == NULL) {
		fprintf(stderr, "--no-inflight changes a --like-qemu profile: use it with --like-qemu\n");
		return 2;
	}
	if (like_qemu != NULL) {
		o.profile = vi_qemu_profile_find(like_qemu);
		if (o.profile == NULL) {
			fprintf(stderr, "no recorded profile for QEMU %s; recorded:\n", like_qemu);
			vi_qemu_profile_list(stderr);
			return 2;
		}
		if (o.frontend != VI_FE_QEMU || o.packed || o.indirect || o.event_idx ||
		    o.inflight || o.no_reply_ack || o.ack_all || hostile != NULL ||
		    stall != NULL) {
			fprintf(stderr, "--like-qemu sets the features and the message shapes: "
				"no --frontend, --packed, --indirect, --event-idx, --inflight, "
				"--no-reply-ack, --ack-all, --hostile or --stall-step with it\n");
			return 2;
		}
		/* A guest driver sleeps until the device calls. */
		o.interrupts = true;
	}
	if (o.socket == NULL || optind != argc) {
		_usage(stderr);
		return 2;
	}
	if (o.frontend != VI_FE_QEMU && o.packed) {
		fprintf(stderr, "--packed speaks as QEMU: no --frontend with it\n");
		return 2;
	}
	if (o.frontend != VI_FE_QEMU && hostile != NULL) {
		fprintf(stderr, "the hostile cases speak as QEMU: no --frontend with --hostile\n");
		return 2;
	}
	if (o.frontend == VI_FE_DPDK) {
		/* DPDK enables rings in pairs; it never reads the config space. */
		if (!queues_set) {
			o.num_queues = 2;
		}
		if (o.num_queues % 2 != 0 || w.size_limit == 0) {
			fprintf(stderr, "--frontend dpdk needs an even --queues and --size-limit\n");
			return 2;
		}
		o.capacity_bytes = w.size_limit;
	}
	if (w.qd == 0 || w.qd > 341 || o.num_queues == 0 || o.num_queues > VI_MAX_QUEUES ||
	    w.rwmixread < 0 || w.rwmixread > 100 || o.mem_size < (1u << 20)) {
		fprintf(stderr, "bad --qd (1..341), --queues (1..%d), --rwmixread or --mem-mb\n",
			VI_MAX_QUEUES);
		return 2;
	}
	if (o.queue_size == 0) {
		o.queue_size = 128;
		while (o.queue_size < 3 * w.qd) {
			o.queue_size *= 2;
		}
	}
	if (w.verify && w.verify_read) {
		fprintf(stderr, "--verify and --verify-read are exclusive\n");
		return 2;
	}
	if (w.verify_read && !seed_set) {
		fprintf(stderr, "--verify-read needs the --seed of the --verify run\n");
		return 2;
	}
	if (!time_set && w.ios == 0 && !w.verify && !w.verify_read) {
		w.seconds = 5;
	}
	if (!seed_set) {
		w.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	}
	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0) {
			fprintf(stderr, "cannot pin to CPU %d: %s\n", cpu, strerror(errno));
			return 2;
		}
	}
	if (hostile != NULL) {
		return vi_hostile_run(&o, hostile, w.json);
	}
	if (stall != NULL) {
		return vi_stall_step(&o, stall, w.json);
	}

	rc = vi_dev_open(&d, &o);
	if (rc != 0) {
		fprintf(stderr, "vhost_initiator: %s: %s\n", o.socket,
			d.conn.last_error[0] ? d.conn.last_error : strerror(-rc));
		vi_dev_close(&d, false);
		return 3;
	}
	if (o.verbose) {
		fprintf(stderr, "connected as %s%s%s: features 0x%" PRIx64 " protocol 0x%" PRIx64
			" capacity %" PRIu64 " sectors blk_size %u max_queues %u%s\n",
			vi_frontend_name(o.frontend), o.profile ? " like QEMU " : "",
			o.profile ? o.profile->version : "", d.conn.acked_features,
			d.conn.protocol_features, d.capacity, d.blk_size, d.max_queues,
			d.readonly ? " read-only" : "");
	}
	rc = vi_run_workload(&d, &w);
	if (vi_dev_close(&d, rc != 3) != 0 && rc == 0) {
		fprintf(stderr, "vhost_initiator: stop: %s\n", d.conn.last_error);
		rc = 3;
	}
	return rc;
}
