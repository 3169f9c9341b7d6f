/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhost_target - the engine as a plain vhost-user-blk target process.
 *
 * Starts the engine, creates bdevs and controllers from the command line,
 * prints READY and serves until SIGTERM or SIGINT, then deletes the
 * controllers and bdevs and stops the engine, so that a sanitizer build
 * (make SANITIZE=1) reports leaks of a clean shutdown.  Used by the
 * sanitizer and crash tests (a process that can be killed) and handy for
 * benchmarks without Python in the loop.
 *
 *   vhost_target --socket-dir DIR [--cpumask MASK]
 *                [--malloc NAME:BLOCKS:BLOCK_SIZE]...
 *                [--null NAME:BLOCKS:BLOCK_SIZE]...
 *                [--uring NAME:FILE]...
 *                [--ctrlr NAME:BDEV[:QUEUES[:ro|packed]]]...
 *
 * Exit status: 0 clean shutdown, 1 setup failure, 2 usage.
 */
#include "sb/bdev.h"
#include "sb/log.h"
#include "sb/thread.h"
#include "sb/vhost.h"
#include "bdev_malloc.h"
#include "bdev_null.h"
#include "bdev_uring.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OBJS 64

struct _bdev {
	char kind;   /* 'm', 'n', 'u' */
	char *spec;  /* strdup'ed argument, split in place */
	char *name;
};

static struct _bdev g_bdevs[MAX_OBJS];
static char *g_ctrlrs[MAX_OBJS];
static unsigned g_nbdevs, g_nctrlrs;

static void
_usage(FILE *f)
{
	fprintf(f, "usage: vhost_target --socket-dir DIR [--cpumask MASK] [--no-pin]\n"
		   "       [--malloc NAME:BLOCKS:BS]... [--null NAME:BLOCKS:BS]...\n"
		   "       [--uring NAME:FILE]... [--ctrlr NAME:BDEV[:QUEUES[:ro|packed]]]...\n");
}

/* Split s at ':' into at most max fields; returns the count. */
static int
_split(char *s, char **out, int max)
{
	int n = 0;

	while (n < max) {
		out[n++] = s;
		s = strchr(s, ':');
		if (s == NULL) {
			break;
		}
		*s++ = '\0';
	}
	return n;
}

static int
_create_bdev(struct _bdev *b)
{
	char *f[3];
	int n = _split(b->spec, f, 3);

	b->name = f[0];
	switch (b->kind) {
	case 'm': {
		struct sb_malloc_opts o = { .name = f[0] };

		if (n != 3) {
			return -EINVAL;
		}
		o.num_blocks = strtoull(f[1], NULL, 0);
		o.block_size = (uint32_t)strtoul(f[2], NULL, 0);
		return sb_bdev_malloc_create(&o);
	}
	case 'n': {
		struct sb_null_opts o = { .name = f[0] };

		if (n != 3) {
			return -EINVAL;
		}
		o.num_blocks = strtoull(f[1], NULL, 0);
		o.block_size = (uint32_t)strtoul(f[2], NULL, 0);
		return sb_bdev_null_create(&o);
	}
	default: {
		struct sb_uring_opts o = { .name = f[0] };

		if (n < 2) {
			return -EINVAL;
		}
		/* A file name may contain ':'; rejoin the rest. */
		if (n == 3) {
			f[2][-1] = ':';
		}
		o.filename = f[1];
		return sb_bdev_uring_create(&o);
	}
	}
}

static int
_create_ctrlr(char *spec)
{
	struct sb_vhost_blk_opts o = { 0 };
	char *f[4];
	int n = _split(spec, f, 4);

	if (n < 2) {
		return -EINVAL;
	}
	o.name = f[0];
	o.bdev_name = f[1];
	o.max_queues = n > 2 ? (uint16_t)strtoul(f[2], NULL, 0) : 0;
	o.readonly = n > 3 && strcmp(f[3], "ro") == 0;
	/* packed: offer packed virtqueues (the agent's packed_ring). */
	o.packed_ring = n > 3 && strcmp(f[3], "packed") == 0;
	return sb_vhost_blk_create(&o);
}

static void
_delete_bdev(struct _bdev *b)
{
	switch (b->kind) {
	case 'm':
		sb_bdev_malloc_delete(b->name);
		break;
	case 'n':
		sb_bdev_null_delete(b->name);
		break;
	default:
		sb_bdev_uring_delete(b->name);
		break;
	}
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket-dir", required_argument, NULL, 's' },
		{ "cpumask", required_argument, NULL, 'c' },
		{ "no-pin", no_argument, NULL, 'P' },
		{ "malloc", required_argument, NULL, 'm' },
		{ "null", required_argument, NULL, 'n' },
		{ "uring", required_argument, NULL, 'u' },
		{ "ctrlr", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sb_engine_opts eo;
	const char *sock_dir = NULL;
	sigset_t sigs;
	unsigned i, made_bdevs = 0, made_ctrlrs = 0;
	int opt, sig, rc, status = 0;

	sb_engine_opts_init(&eo);
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			sock_dir = optarg;
			break;
		case 'c':
			eo.core_mask = optarg;
			break;
		case 'P':
			eo.no_pin = true;
			break;
		case 'm':
		case 'n':
		case 'u':
			if (g_nbdevs == MAX_OBJS) {
				fprintf(stderr, "too many bdevs\n");
				return 2;
			}
			g_bdevs[g_nbdevs].kind = (char)opt;
			g_bdevs[g_nbdevs++].spec = strdup(optarg);
			break;
		case 'C':
			if (g_nctrlrs == MAX_OBJS) {
				fprintf(stderr, "too many controllers\n");
				return 2;
			}
			g_ctrlrs[g_nctrlrs++] = strdup(optarg);
			break;
		case 'h':
			_usage(stdout);
			return 0;
		default:
			_usage(stderr);
			return 2;
		}
	}
	if (sock_dir == NULL || optind != argc) {
		_usage(stderr);
		return 2;
	}
	/* Signals are taken synchronously by this thread; reactors inherit the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	rc = sb_vhost_set_socket_dir(sock_dir);
	if (rc == 0) {
		rc = sb_engine_start(&eo);
	}
	if (rc != 0) {
		fprintf(stderr, "vhost_target: engine: %s\n", strerror(-rc));
		status = 1;
		goto out;
	}
	for (i = 0; i < g_nbdevs; i++, made_bdevs++) {
		rc = _create_bdev(&g_bdevs[i]);
		if (rc != 0) {
			fprintf(stderr, "vhost_target: bdev %s: %s\n", g_bdevs[i].spec, strerror(-rc));
			status = 1;
			goto stop;
		}
	}
	for (i = 0; i < g_nctrlrs; i++, made_ctrlrs++) {
		rc = _create_ctrlr(g_ctrlrs[i]);
		if (rc != 0) {
			fprintf(stderr, "vhost_target: controller %s: %s\n", g_ctrlrs[i], strerror(-rc));
			status = 1;
			goto stop;
		}
	}
	printf("READY\n");
	fflush(stdout);
	do {
		rc = sigwait(&sigs, &sig);
	} while (rc != 0);
	fprintf(stderr, "vhost_target: signal %d, shutting down\n", sig);
stop:
	for (i = made_ctrlrs; i-- > 0;) {
		sb_vhost_delete(g_ctrlrs[i], true);
	}
	for (i = made_bdevs; i-- > 0;) {
		_delete_bdev(&g_bdevs[i]);
	}
	sb_engine_stop();
out:
	for (i = 0; i < g_nbdevs; i++) {
		free(g_bdevs[i].spec);
	}
	for (i = 0; i < g_nctrlrs; i++) {
		free(g_ctrlrs[i]);
	}
	return status;
}
