/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crash survival: every controller's fds live in the service manager's
 * file-descriptor store too (systemd's FileDescriptorStoreMax=, sd_notify
 * "FDSTORE=1"), with the session's state, so that an agent restarted after
 * a crash gets them back (LISTEN_FDS) and takes each session over as after
 * a planned hand-over (vhost_handoff.c): QEMU never sees a disconnect.
 *
 * What is stored: each distinct open file the controllers use, once, named
 * "sb/fd/<generation>" (systemd keeps one entry per open file and drops a
 * second FDSTORE of the same one, and QEMU gives the same guest memory
 * file to every disk of a guest, so nothing is ever stored twice: kcmp(2)
 * tells whether an fd is a file already stored), and per controller a
 * state memfd "sb/<controller>/state/<generation>" holding a checksummed
 * blob: the session record and, for every slot (connection, memory
 * regions, eventfds, inflight region...), the generation of the entry
 * that holds its file.  A change stores the new files, rewrites the blob,
 * then removes the entries no slot names any more, so a crash at any point
 * leaves the blob and the files it names in the store.  The ring indexes
 * are not in the blob: the inflight region (which QEMU keeps) says which
 * requests were in flight, and they are resubmitted (vhost_inflight.c); a
 * session without one is not restored.
 *
 * Control thread only, like everything it reads.
 */
#include "vhost/vhost_dev.h"
#include "sb/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define SLOT_LISTEN 0
#define SLOT_CONN 1
#define SLOT_SLAVE 2
#define SLOT_INFLIGHT 3
#define SLOT_MEM0 4
#define SLOT_KICK0 (SLOT_MEM0 + SB_VHOST_MAX_MEM_SLOTS)
#define SLOT_CALL0 (SLOT_KICK0 + SB_VHOST_MAX_QUEUES)
#define SLOT_STATE (SLOT_CALL0 + SB_VHOST_MAX_QUEUES)
#define NSLOTS (SLOT_STATE + 1)

#define FDSTORE_MAGIC "SBFDST\n"
#define FDSTORE_VERSION 1u
#define NAME_MAX_LEN 256

struct item {
	uint32_t gen;
	int fd;        /* our own copy of the stored file (kcmp compares against it) */
};

struct sb_vhost_fdstore_slots {
	uint32_t gen[NSLOTS];        /* the entry of each slot's file, as in the state */
	int state_fd;
	uint32_t state_gen;          /* 0: not stored yet */
	uint32_t old_state[8];       /* state entries a restart got back, removed after ours */
	uint32_t nold_state;
};

/* The state's layout is FDSTORE_VERSION's: a change to the record must bump it. */
_Static_assert(sizeof(struct sb_vhost_handoff_vq) == 56, "fd store state layout");

struct fdstore_blob {
	char magic[8];
	uint32_t version;
	uint32_t size;
	uint32_t gen[NSLOTS];        /* entry holding each slot's file (0: none) */
	uint32_t running;
	uint32_t padding;
	struct sb_vhost_handoff rec;
	uint64_t checksum;     /* FNV-1a of every byte before it */
};

/* A state entry a restart got back, until its controller is created (or finish). */
struct restored {
	char ctrlr[SB_VHOST_NAME_MAX];
	uint32_t gen;
	int fd;                 /* -1 once claimed */
};

static struct {
	int sock;
	struct sockaddr_un addr;
	socklen_t addrlen;
	bool on;
	bool warned;
	/* One counter for every name: above whatever a restart got back. */
	uint32_t next_gen;
	/* Every file in the store (all controllers), restored ones included. */
	struct item *items;
	uint32_t nitems;
	uint32_t cap;
	struct restored *restored;
	uint32_t nrestored;
} g_store = { .sock = -1, .next_gen = 1 };

static void
_name(char *buf, const char *ctrlr, bool state, uint32_t gen)
{
	if (state) {
		snprintf(buf, NAME_MAX_LEN, "sb/%s/state/%u", ctrlr, gen);
	} else {
		snprintf(buf, NAME_MAX_LEN, "sb/fd/%u", gen);
	}
}

/* One sd_notify datagram, with fd when >= 0.  \return 0 or -errno. */
static int
_notify(const char *text, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = (void *)text, .iov_len = strlen(text) };
	struct msghdr mh = {
		.msg_name = &g_store.addr, .msg_namelen = g_store.addrlen,
		.msg_iov = &iov, .msg_iovlen = 1,
	};
	struct cmsghdr *cm;

	if (fd >= 0) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	/*
	 * Never block the control thread on a busy service manager: wait for
	 * room in its queue a little (every guest's protocol waits on this
	 * thread), then give up on this datagram.
	 */
	for (int tries = 0; sendmsg(g_store.sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0; tries++) {
		int rc = -errno;

		if (rc == -EAGAIN && tries < 20) {
			usleep(5000); /* an unconnected datagram socket cannot be polled for room */
			continue;
		}
		if (!g_store.warned) {
			SB_ERRLOG("fd store: cannot notify the service manager: %s; a crash will "
				  "disconnect guests (they reconnect where QEMU was told to)\n",
				  strerror(-rc));
			g_store.warned = true;
		}
		return rc;
	}
	return 0;
}

static int
_store(const char *ctrlr, bool state, uint32_t gen, int fd)
{
	char name[NAME_MAX_LEN], text[NAME_MAX_LEN + 64];

	_name(name, ctrlr, state, gen);
	/* FDPOLL=0: systemd must not drop an entry because it polls as hung up. */
	snprintf(text, sizeof(text), "FDSTORE=1\nFDPOLL=0\nFDNAME=%s", name);
	return _notify(text, fd);
}

static void
_remove(const char *ctrlr, bool state, uint32_t gen)
{
	char name[NAME_MAX_LEN], text[NAME_MAX_LEN + 32];

	_name(name, ctrlr, state, gen);
	snprintf(text, sizeof(text), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	_notify(text, -1);
}

/* Whether fds a and b are the same open file: 1 yes, 0 no, -1 unknown. */
static int
_same_file(int a, int b)
{
	pid_t pid = getpid();
	long rc = syscall(SYS_kcmp, pid, pid, 0 /* KCMP_FILE */, a, b);

	return rc == 0 ? 1 : rc > 0 ? 0 : -1;
}

static uint64_t
_fnv1a(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < len; i++) {
		h = (h ^ b[i]) * 1099511628211ull;
	}
	return h;
}

/* The fd c uses in each slot now (state excepted). */
static uint32_t
_current(const struct sb_vhost_ctrlr *c, struct sb_vhost_handoff *h, int cur[NSLOTS])
{
	uint32_t running = 0, i;
	uint16_t q;

	for (q = 0; q < c->max_queues; q++) {
		running |= c->vqs[q].started ? 1u << q : 0;
	}
	sb_vhost_handoff_fill(c, h, running);
	for (i = 0; i < NSLOTS; i++) {
		cur[i] = -1;
	}
	cur[SLOT_LISTEN] = h->listen_fd;
	cur[SLOT_CONN] = h->conn_fd;
	cur[SLOT_SLAVE] = h->slave_fd;
	cur[SLOT_INFLIGHT] = h->inflight_fd;
	for (i = 0; i < h->nregions; i++) {
		cur[SLOT_MEM0 + i] = h->regions[i].fd;
	}
	for (q = 0; q < h->nvqs; q++) {
		cur[SLOT_KICK0 + q] = h->vqs[q].kickfd;
		cur[SLOT_CALL0 + q] = h->vqs[q].callfd;
	}
	return running;
}

/* The state entries a restart got back for c: removed once c stored its own. */
static void
_claim_restored(struct sb_vhost_ctrlr *c, struct sb_vhost_fdstore_slots *s)
{
	uint32_t i;

	for (i = 0; i < g_store.nrestored; i++) {
		struct restored *r = &g_store.restored[i];

		if (r->fd < 0 || strcmp(r->ctrlr, c->name) != 0) {
			continue;
		}
		if (s->nold_state < 8) {
			s->old_state[s->nold_state++] = r->gen;
		} else {
			_remove(c->name, true, r->gen);
		}
		close(r->fd);
		r->fd = -1;
	}
}

static int
_item_add(uint32_t gen, int fd)
{
	if (g_store.nitems == g_store.cap) {
		uint32_t cap = g_store.cap ? 2 * g_store.cap : 64;
		struct item *v = realloc(g_store.items, cap * sizeof(*v));

		if (v == NULL) {
			return -ENOMEM;
		}
		g_store.items = v;
		g_store.cap = cap;
	}
	g_store.items[g_store.nitems++] = (struct item){ .gen = gen, .fd = fd };
	return 0;
}

/* The generation of the stored entry holding fd's file, storing it if none does (0: failed). */
static uint32_t
_item_for(int fd)
{
	uint32_t i, gen;
	int same, copy;

	for (i = 0; i < g_store.nitems; i++) {
		same = _same_file(fd, g_store.items[i].fd);
		if (same < 0) {
			SB_ERRLOG("fd store: kcmp(2) is not available (%s): fds cannot be stored "
				  "without duplicates; crash survival is off\n", strerror(errno));
			g_store.on = false;
			return 0;
		}
		if (same) {
			return g_store.items[i].gen;
		}
	}
	copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (copy < 0) {
		return 0;
	}
	gen = g_store.next_gen++;
	if (_store(NULL, false, gen, copy) != 0 || _item_add(gen, copy) != 0) {
		close(copy);
		return 0;
	}
	return gen;
}

/* Whether any controller's state names entry gen. */
static bool
_referenced(uint32_t gen)
{
	struct sb_vhost_ctrlr *c;
	int slot;

	LIST_FOREACH(c, &g_sb_vhost_ctrlrs, link) {
		for (slot = 0; c->fdstore != NULL && slot < NSLOTS; slot++) {
			if (c->fdstore->gen[slot] == gen) {
				return true;
			}
		}
	}
	return false;
}

/* Remove the entry gen from the store unless a controller still names it. */
static void
_release(uint32_t gen)
{
	uint32_t i;

	if (gen == 0 || _referenced(gen)) {
		return;
	}
	for (i = 0; i < g_store.nitems; i++) {
		if (g_store.items[i].gen == gen) {
			if (g_store.on) {
				_remove(NULL, false, gen);
			}
			close(g_store.items[i].fd);
			g_store.items[i] = g_store.items[--g_store.nitems];
			return;
		}
	}
}

void
sb_vhost_fdstore_sync(struct sb_vhost_ctrlr *c)
{
	struct sb_vhost_fdstore_slots *s = c->fdstore;
	uint32_t old[NSLOTS], i;
	struct fdstore_blob *blob;
	int cur[NSLOTS], slot;

	if (!g_store.on || c->handed_off) {
		return;
	}
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL) {
			return;
		}
		s->state_fd = memfd_create("sb-vhost-state", MFD_CLOEXEC);
		if (s->state_fd < 0) {
			SB_ERRLOG("vhost %s: fd store: no state memfd: %s\n", c->name, strerror(errno));
			free(s);
			return;
		}
		c->fdstore = s;
		_claim_restored(c, s);
	}
	blob = calloc(1, sizeof(*blob));
	if (blob == NULL) {
		return;
	}
	blob->running = _current(c, &blob->rec, cur);
	for (slot = 0; slot < NSLOTS && g_store.on; slot++) {
		blob->gen[slot] = cur[slot] >= 0 ? _item_for(cur[slot]) : 0;
	}
	if (!g_store.on) {
		free(blob);
		return;
	}
	if (s->state_gen == 0) {
		uint32_t gen = g_store.next_gen++;

		if (_store(c->name, true, gen, s->state_fd) == 0) {
			s->state_gen = gen;
		}
	}
	memcpy(blob->magic, FDSTORE_MAGIC, sizeof(blob->magic));
	blob->version = FDSTORE_VERSION;
	blob->size = sizeof(*blob);
	blob->rec.why = NULL;
	blob->checksum = _fnv1a(blob, offsetof(struct fdstore_blob, checksum));
	if (pwrite(s->state_fd, blob, sizeof(*blob), 0) != (ssize_t)sizeof(*blob)) {
		SB_ERRLOG("vhost %s: fd store: state not written: %s\n", c->name, strerror(errno));
	}
	/* Only now that the state names what it needs may the rest go. */
	memcpy(old, s->gen, sizeof(old));
	memcpy(s->gen, blob->gen, sizeof(s->gen));
	for (slot = 0; slot < NSLOTS; slot++) {
		_release(old[slot]);
	}
	if (s->state_gen != 0) {
		for (i = 0; i < s->nold_state; i++) {
			_remove(c->name, true, s->old_state[i]);
		}
		s->nold_state = 0;
	}
	free(blob);
}

void
sb_vhost_fdstore_forget(struct sb_vhost_ctrlr *c)
{
	struct sb_vhost_fdstore_slots *s = c->fdstore;
	uint32_t old[NSLOTS], i;
	int slot;

	if (s == NULL) {
		return;
	}
	memcpy(old, s->gen, sizeof(old));
	memset(s->gen, 0, sizeof(s->gen));
	for (slot = 0; slot < NSLOTS; slot++) {
		_release(old[slot]);
	}
	if (g_store.on && s->state_gen != 0) {
		_remove(c->name, true, s->state_gen);
	}
	for (i = 0; g_store.on && i < s->nold_state; i++) {
		_remove(c->name, true, s->old_state[i]);
	}
	close(s->state_fd);
	free(s);
	c->fdstore = NULL;
}

/* ---- enable ---- */

struct _enable_args {
	const char *path;
	int rc;
};

static void
_do_enable(void *arg)
{
	struct _enable_args *a = arg;
	size_t len = strlen(a->path);
	struct sb_vhost_ctrlr *c;

	if (len == 0 || len >= sizeof(g_store.addr.sun_path) ||
	    (a->path[0] != '/' && a->path[0] != '@')) {
		a->rc = -EINVAL;
		return;
	}
	if (g_store.sock < 0) {
		g_store.sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (g_store.sock < 0) {
			a->rc = -errno;
			return;
		}
	}
	memset(&g_store.addr, 0, sizeof(g_store.addr));
	g_store.addr.sun_family = AF_UNIX;
	memcpy(g_store.addr.sun_path, a->path, len);
	if (a->path[0] == '@') {
		g_store.addr.sun_path[0] = '\0'; /* abstract namespace */
	}
	g_store.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
				      (a->path[0] == '@' ? 0 : 1));
	g_store.on = true;
	g_store.warned = false;
	LIST_FOREACH(c, &g_sb_vhost_ctrlrs, link) {
		sb_vhost_fdstore_sync(c);
	}
	a->rc = 0;
}

int
sb_vhost_fdstore_enable(const char *notify_socket)
{
	struct _enable_args a = { .path = notify_socket };
	int rc;

	if (notify_socket == NULL) {
		return -EINVAL;
	}
	rc = sb_vhost_ctl_run(_do_enable, &a);
	return rc != 0 ? rc : a.rc;
}

/* ---- restore after a crash ---- */

struct _in_fd {
	char ctrlr[SB_VHOST_NAME_MAX];
	bool state;
	uint32_t gen;
};

/* "sb/fd/<gen>" (a file) or "sb/<controller>/state/<gen>" (a state memfd). */
static bool
_parse_name(const char *name, struct _in_fd *out)
{
	char buf[NAME_MAX_LEN], *gen_s, *kind, *end;
	unsigned long gen;

	if (strncmp(name, "sb/", 3) != 0 || strlen(name) >= sizeof(buf)) {
		return false;
	}
	snprintf(buf, sizeof(buf), "%s", name + 3);
	gen_s = strrchr(buf, '/');
	if (gen_s == NULL) {
		return false;
	}
	*gen_s++ = '\0';
	gen = strtoul(gen_s, &end, 10);
	if (*gen_s == '\0' || *end != '\0' || gen == 0 || gen >= UINT32_MAX) {
		return false;
	}
	out->gen = (uint32_t)gen;
	out->ctrlr[0] = '\0';
	if (strcmp(buf, "fd") == 0) {
		out->state = false;
		return true;
	}
	kind = strrchr(buf, '/');
	if (kind == NULL || strcmp(kind + 1, "state") != 0) {
		return false;
	}
	*kind = '\0';
	if (buf[0] == '\0' || strlen(buf) >= sizeof(out->ctrlr)) {
		return false;
	}
	out->state = true;
	snprintf(out->ctrlr, sizeof(out->ctrlr), "%s", buf);
	return true;
}

/* The newest state entry a restart got back for ctrlr. */
static struct restored *
_find_state(const char *ctrlr)
{
	struct restored *best = NULL;
	uint32_t i;

	for (i = 0; i < g_store.nrestored; i++) {
		struct restored *r = &g_store.restored[i];

		if (r->fd >= 0 && strcmp(r->ctrlr, ctrlr) == 0 && (best == NULL || r->gen > best->gen)) {
			best = r;
		}
	}
	return best;
}

/* A copy of the file of slot for a field of the record; false when it was not stored. */
static bool
_take(const struct fdstore_blob *b, int slot, int *field)
{
	uint32_t i;

	if (*field < 0) {
		return true;
	}
	*field = -1;
	for (i = 0; b->gen[slot] != 0 && i < g_store.nitems; i++) {
		if (g_store.items[i].gen == b->gen[slot]) {
			/* The entry stays in the store: the controller's first sync finds it. */
			*field = fcntl(g_store.items[i].fd, F_DUPFD_CLOEXEC, 3);
			return *field >= 0;
		}
	}
	return false;
}

/* Build the record of one controller; false when its session cannot be restored (*why). */
static bool
_restore_one(const char *ctrlr, struct sb_vhost_handoff *h, const char **why)
{
	struct restored *st = _find_state(ctrlr);
	struct fdstore_blob *b;
	bool ok = true;
	uint32_t i;

	memset(h, 0, sizeof(*h));
	snprintf(h->name, sizeof(h->name), "%s", ctrlr);
	h->listen_fd = h->conn_fd = h->slave_fd = h->inflight_fd = -1;
	*why = NULL;
	b = calloc(1, sizeof(*b));
	if (b == NULL) {
		*why = "out of memory";
		return false;
	}
	if (st == NULL) {
		*why = "no state was stored";
	} else if (pread(st->fd, b, sizeof(*b), 0) != (ssize_t)sizeof(*b) ||
		   memcmp(b->magic, FDSTORE_MAGIC, sizeof(b->magic)) != 0) {
		*why = "the stored state is not one this agent reads";
	} else if (b->version != FDSTORE_VERSION || b->size != sizeof(*b)) {
		*why = "the stored state has another format version";
	} else if (b->checksum != _fnv1a(b, offsetof(struct fdstore_blob, checksum))) {
		*why = "the stored state is torn";
	} else if (strcmp(b->rec.name, ctrlr) != 0 || b->rec.nregions > SB_VHOST_MAX_MEM_SLOTS ||
		   b->rec.nvqs > SB_VHOST_MAX_QUEUES) {
		*why = "the stored state is inconsistent";
	}
	if (*why != NULL) {
		free(b);
		return false;
	}
	/* The listening socket comes back even when the session does not. */
	h->listen_fd = b->rec.listen_fd;
	_take(b, SLOT_LISTEN, &h->listen_fd);
	snprintf(h->socket, sizeof(h->socket), "%s", b->rec.socket);
	if (b->rec.conn_fd < 0) {
		*why = "no front-end was connected";
	} else if (b->rec.inflight_fd < 0) {
		*why = "the session has no inflight region: requests in flight could not be "
		       "resubmitted";
	}
	if (*why != NULL) {
		free(b);
		return false;
	}
	{
		int listen_fd = h->listen_fd;

		*h = b->rec;
		h->why = NULL;
		h->listen_fd = listen_fd;
	}
	ok &= _take(b, SLOT_CONN, &h->conn_fd);
	ok &= _take(b, SLOT_SLAVE, &h->slave_fd);
	ok &= _take(b, SLOT_INFLIGHT, &h->inflight_fd);
	for (i = 0; i < h->nregions; i++) {
		ok &= _take(b, SLOT_MEM0 + (int)i, &h->regions[i].fd);
	}
	for (i = 0; i < h->nvqs; i++) {
		ok &= _take(b, SLOT_KICK0 + (int)i, &h->vqs[i].kickfd);
		ok &= _take(b, SLOT_CALL0 + (int)i, &h->vqs[i].callfd);
		h->vqs[i].running = (b->running & (1u << i)) != 0;
	}
	for (i = h->nregions; i < SB_VHOST_HANDOFF_MAX_REGIONS; i++) {
		h->regions[i].fd = -1;
	}
	for (i = h->nvqs; i < SB_VHOST_MAX_QUEUES; i++) {
		h->vqs[i].kickfd = h->vqs[i].callfd = -1;
	}
	free(b);
	if (!ok) {
		*why = "a file the session used was not stored";
	}
	return ok;
}

/* Close every fd of a record but its listening socket (the session is dropped). */
static void
_drop_session(struct sb_vhost_handoff *h)
{
	int listen_fd = h->listen_fd;
	uint32_t i;

	if (h->conn_fd >= 0) {
		close(h->conn_fd);
	}
	if (h->slave_fd >= 0) {
		close(h->slave_fd);
	}
	if (h->inflight_fd >= 0) {
		close(h->inflight_fd);
	}
	for (i = 0; i < h->nregions && i < SB_VHOST_HANDOFF_MAX_REGIONS; i++) {
		if (h->regions[i].fd >= 0) {
			close(h->regions[i].fd);
		}
	}
	for (i = 0; i < h->nvqs && i < SB_VHOST_MAX_QUEUES; i++) {
		if (h->vqs[i].kickfd >= 0) {
			close(h->vqs[i].kickfd);
		}
		if (h->vqs[i].callfd >= 0) {
			close(h->vqs[i].callfd);
		}
	}
	memset(h->regions, 0, sizeof(h->regions));
	memset(h->vqs, 0, sizeof(h->vqs));
	h->nregions = 0;
	h->nvqs = 0;
	h->conn_fd = h->slave_fd = h->inflight_fd = -1;
	h->listen_fd = listen_fd;
}

struct _restore_args {
	const int *fds;
	const char *const *names;
	uint32_t n;
	char *restored;
	uint32_t len;
	size_t used;
	uint32_t sessions;
	int rc;
};

static void
_do_restore(void *arg)
{
	struct _restore_args *a = arg;
	struct sb_vhost_handoff *recs = NULL;
	struct _in_fd in;
	uint32_t i, j, nrec = 0;
	const char *why;

	sb_vhost_fdstore_restored_done();
	recs = calloc(a->n ? a->n : 1, sizeof(*recs));
	g_store.restored = calloc(a->n ? a->n : 1, sizeof(*g_store.restored));
	if (recs == NULL || g_store.restored == NULL) {
		for (i = 0; i < a->n; i++) {
			close(a->fds[i]);
		}
		free(g_store.restored);
		g_store.restored = NULL;
		a->rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < a->n; i++) {
		if (a->names[i] == NULL || !_parse_name(a->names[i], &in)) {
			SB_WARNLOG("fd store: an fd named %s is not ours; closed\n",
				   a->names[i] ? a->names[i] : "(none)");
			close(a->fds[i]);
			continue;
		}
		if (in.gen >= g_store.next_gen) {
			g_store.next_gen = in.gen + 1;
		}
		fcntl(a->fds[i], F_SETFD, FD_CLOEXEC);
		if (!in.state) {
			/* Stored already: the controllers' first syncs find it here. */
			if (_item_add(in.gen, a->fds[i]) != 0) {
				close(a->fds[i]);
			}
			continue;
		}
		g_store.restored[g_store.nrestored] = (struct restored){ .gen = in.gen,
									 .fd = a->fds[i] };
		snprintf(g_store.restored[g_store.nrestored].ctrlr, SB_VHOST_NAME_MAX, "%s",
			 in.ctrlr);
		g_store.nrestored++;
	}
	for (i = 0; i < g_store.nrestored; i++) {
		const char *ctrlr = g_store.restored[i].ctrlr;
		bool seen = false;

		for (j = 0; j < nrec && !seen; j++) {
			seen = strcmp(recs[j].name, ctrlr) == 0;
		}
		if (seen) {
			continue;
		}
		if (_restore_one(ctrlr, &recs[nrec], &why)) {
			if (a->restored != NULL && a->used + 1 < a->len) {
				int w = snprintf(a->restored + a->used, a->len - a->used, "%s%s",
						 a->sessions ? "," : "", ctrlr);

				a->used = w > 0 && a->used + (size_t)w < a->len ? a->used + (size_t)w
										  : a->len - 1;
			}
			a->sessions++;
			SB_NOTICELOG("vhost %s: session restored from the fd store\n", ctrlr);
		} else {
			SB_WARNLOG("vhost %s: session not restored from the fd store: %s (its "
				   "front-end reconnects where it was told to)\n", ctrlr, why);
			_drop_session(&recs[nrec]);
		}
		nrec++;
	}
	a->rc = sb_vhost_handoff_stage_locked(recs, nrec);
	if (a->rc != 0) {
		for (j = 0; j < nrec; j++) {
			_drop_session(&recs[j]);
			if (recs[j].listen_fd >= 0) {
				close(recs[j].listen_fd);
			}
		}
		a->sessions = 0;
	}
out:
	free(recs);
}

int
sb_vhost_fdstore_restore(const int *fds, const char *const *names, uint32_t n,
			 char *restored, uint32_t len, uint32_t *sessions)
{
	struct _restore_args a = { .fds = fds, .names = names, .n = n, .restored = restored,
				   .len = len };
	int rc;

	if ((fds == NULL || names == NULL) && n > 0) {
		return -EINVAL;
	}
	if (restored != NULL && len > 0) {
		restored[0] = '\0';
	}
	rc = sb_vhost_ctl_run(_do_restore, &a);
	if (sessions != NULL) {
		*sessions = a.sessions;
	}
	return rc != 0 ? rc : a.rc;
}

void
sb_vhost_fdstore_restored_done(void)
{
	uint32_t i;

	/* State entries no controller claimed: out of the store, and closed. */
	for (i = 0; i < g_store.nrestored; i++) {
		struct restored *r = &g_store.restored[i];

		if (r->fd < 0) {
			continue;
		}
		if (g_store.on) {
			_remove(r->ctrlr, true, r->gen);
		}
		close(r->fd);
		r->fd = -1;
	}
	free(g_store.restored);
	g_store.restored = NULL;
	g_store.nrestored = 0;
	/* Files no controller names (a restart's leftovers). */
	for (i = 0; i < g_store.nitems;) {
		uint32_t before = g_store.nitems;

		_release(g_store.items[i].gen);
		if (g_store.nitems == before) {
			i++;
		}
	}
}
