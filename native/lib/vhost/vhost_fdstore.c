/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crash survival: every controller's fds live in the service manager's
 * file-descriptor store too (systemd's FileDescriptorStoreMax=, sd_notify
 * "FDSTORE=1"), with the session's state, so that an agent restarted after
 * a crash gets them back (LISTEN_FDS) and takes each session over as after
 * a planned hand-over (vhost_handoff.c): QEMU never sees a disconnect.
 *
 * Each stored fd is named "sb/<controller>/<slot>/<generation>"; the
 * slot's state memfd ("state") holds a checksummed blob: the session record
 * and the generation of every slot it refers to.  A change pushes the new
 * fds under a new generation, rewrites the blob, then removes the old
 * generation, so a crash at any point leaves the blob and the fds it names
 * in the store.  The ring indexes are not in the blob: the inflight region
 * (which QEMU keeps) says which requests were in flight, and they are
 * resubmitted (vhost_inflight.c); a session without one is not restored.
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

struct sb_vhost_fdstore_slots {
	int fd[NSLOTS];        /* our fd stored in the slot (-1: none) */
	uint32_t gen[NSLOTS];  /* its generation (0: nothing stored) */
	int state_fd;
};

struct fdstore_blob {
	char magic[8];
	uint32_t version;
	uint32_t size;
	uint32_t gen[NSLOTS];
	uint32_t running;
	uint32_t padding;
	struct sb_vhost_handoff rec;
	uint64_t checksum;     /* FNV-1a of every byte before it */
};

/* Names a restart got back, removed once their controller stored anew. */
struct restored {
	char ctrlr[SB_VHOST_NAME_MAX];
	char name[NAME_MAX_LEN];
};

static struct {
	int sock;
	struct sockaddr_un addr;
	socklen_t addrlen;
	bool on;
	bool warned;
	/* One counter for every name: above whatever a restart got back. */
	uint32_t next_gen;
	struct restored *restored;
	uint32_t nrestored;
} g_store = { .sock = -1, .next_gen = 1 };

static const char *
_slot_name(int slot, char *buf, size_t len)
{
	if (slot == SLOT_LISTEN) {
		return "listen";
	} else if (slot == SLOT_CONN) {
		return "conn";
	} else if (slot == SLOT_SLAVE) {
		return "slave";
	} else if (slot == SLOT_INFLIGHT) {
		return "inflight";
	} else if (slot == SLOT_STATE) {
		return "state";
	} else if (slot < SLOT_KICK0) {
		snprintf(buf, len, "mem%d", slot - SLOT_MEM0);
	} else if (slot < SLOT_CALL0) {
		snprintf(buf, len, "kick%d", slot - SLOT_KICK0);
	} else {
		snprintf(buf, len, "call%d", slot - SLOT_CALL0);
	}
	return buf;
}

static int
_slot_parse(const char *s)
{
	static const char *fixed[] = { "listen", "conn", "slave", "inflight" };
	char *end;
	long i;
	int k;

	for (k = 0; k < 4; k++) {
		if (strcmp(s, fixed[k]) == 0) {
			return k;
		}
	}
	if (strcmp(s, "state") == 0) {
		return SLOT_STATE;
	}
	if (strncmp(s, "mem", 3) == 0 || strncmp(s, "kick", 4) == 0 ||
	    strncmp(s, "call", 4) == 0) {
		const char *num = s + (s[0] == 'm' ? 3 : 4);

		i = strtol(num, &end, 10);
		if (*num == '\0' || *end != '\0' || i < 0) {
			return -1;
		}
		if (s[0] == 'm') {
			return i < SB_VHOST_MAX_MEM_SLOTS ? SLOT_MEM0 + (int)i : -1;
		}
		if (i >= SB_VHOST_MAX_QUEUES) {
			return -1;
		}
		return (s[0] == 'k' ? SLOT_KICK0 : SLOT_CALL0) + (int)i;
	}
	return -1;
}

static void
_name(char *buf, const char *ctrlr, int slot, uint32_t gen)
{
	char tmp[16];

	snprintf(buf, NAME_MAX_LEN, "sb/%s/%s/%u", ctrlr, _slot_name(slot, tmp, sizeof(tmp)), gen);
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
_store(const char *ctrlr, int slot, uint32_t gen, int fd)
{
	char name[NAME_MAX_LEN], text[NAME_MAX_LEN + 64];

	_name(name, ctrlr, slot, gen);
	/* FDPOLL=0: systemd must not drop a slot's fd because it polls as hung up. */
	snprintf(text, sizeof(text), "FDSTORE=1\nFDPOLL=0\nFDNAME=%s", name);
	return _notify(text, fd);
}

static void
_remove_name(const char *name)
{
	char text[NAME_MAX_LEN + 32];

	snprintf(text, sizeof(text), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	_notify(text, -1);
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

static void
_remove_restored(const char *ctrlr)
{
	uint32_t i;

	for (i = 0; i < g_store.nrestored; i++) {
		if (ctrlr == NULL || strcmp(g_store.restored[i].ctrlr, ctrlr) == 0) {
			_remove_name(g_store.restored[i].name);
			g_store.restored[i].ctrlr[0] = '\0';
			g_store.restored[i].name[0] = '\0';
		}
	}
}

void
sb_vhost_fdstore_sync(struct sb_vhost_ctrlr *c, bool fds_changed)
{
	struct sb_vhost_fdstore_slots *s = c->fdstore;
	uint32_t newgen[NSLOTS], oldgen[NSLOTS];
	struct fdstore_blob *blob;
	char name[NAME_MAX_LEN];
	int cur[NSLOTS], slot;
	bool fresh = false;

	if (!g_store.on || c->handed_off) {
		return;
	}
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL) {
			return;
		}
		for (slot = 0; slot < NSLOTS; slot++) {
			s->fd[slot] = -1;
		}
		s->state_fd = memfd_create("sb-vhost-state", MFD_CLOEXEC);
		if (s->state_fd < 0) {
			SB_ERRLOG("vhost %s: fd store: no state memfd: %s\n", c->name, strerror(errno));
			free(s);
			return;
		}
		c->fdstore = s;
		fresh = true;
	}
	blob = calloc(1, sizeof(*blob));
	if (blob == NULL) {
		return;
	}
	blob->running = _current(c, &blob->rec, cur);
	cur[SLOT_STATE] = s->state_fd;
	for (slot = 0; slot < NSLOTS; slot++) {
		bool change = cur[slot] != s->fd[slot] ||
			      (fds_changed && cur[slot] >= 0 && slot != SLOT_LISTEN &&
			       slot != SLOT_STATE);

		oldgen[slot] = 0;
		newgen[slot] = s->gen[slot];
		if (!change) {
			continue;
		}
		oldgen[slot] = s->gen[slot];
		newgen[slot] = 0;
		if (cur[slot] >= 0 && _store(c->name, slot, g_store.next_gen, cur[slot]) == 0) {
			newgen[slot] = g_store.next_gen;
		}
	}
	memcpy(blob->magic, FDSTORE_MAGIC, sizeof(blob->magic));
	blob->version = FDSTORE_VERSION;
	blob->size = sizeof(*blob);
	memcpy(blob->gen, newgen, sizeof(newgen));
	blob->rec.why = NULL;
	blob->checksum = _fnv1a(blob, offsetof(struct fdstore_blob, checksum));
	if (pwrite(s->state_fd, blob, sizeof(*blob), 0) != (ssize_t)sizeof(*blob)) {
		SB_ERRLOG("vhost %s: fd store: state not written: %s\n", c->name, strerror(errno));
	}
	free(blob);
	/* Only now that the state names the new generation may the old one go. */
	for (slot = 0; slot < NSLOTS; slot++) {
		if (oldgen[slot] != 0) {
			_name(name, c->name, slot, oldgen[slot]);
			_remove_name(name);
		}
		s->fd[slot] = cur[slot];
		s->gen[slot] = newgen[slot];
	}
	g_store.next_gen++;
	if (fresh) {
		/* What a restart got back for this controller is stored anew. */
		_remove_restored(c->name);
	}
}

void
sb_vhost_fdstore_forget(struct sb_vhost_ctrlr *c)
{
	struct sb_vhost_fdstore_slots *s = c->fdstore;
	char name[NAME_MAX_LEN];
	int slot;

	if (s == NULL) {
		return;
	}
	for (slot = 0; slot < NSLOTS; slot++) {
		if (s->gen[slot] != 0 && g_store.on) {
			_name(name, c->name, slot, s->gen[slot]);
			_remove_name(name);
		}
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
		sb_vhost_fdstore_sync(c, true);
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
	int slot;
	uint32_t gen;
	int fd;
	bool used;
};

static bool
_parse_name(const char *name, struct _in_fd *out)
{
	char buf[NAME_MAX_LEN], *gen_s, *slot_s, *end;
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
	slot_s = strrchr(buf, '/');
	if (slot_s == NULL) {
		return false;
	}
	*slot_s++ = '\0';
	gen = strtoul(gen_s, &end, 10);
	if (*gen_s == '\0' || *end != '\0' || gen == 0 || gen > UINT32_MAX ||
	    buf[0] == '\0' || strlen(buf) >= sizeof(out->ctrlr)) {
		return false;
	}
	out->slot = _slot_parse(slot_s);
	out->gen = (uint32_t)gen;
	snprintf(out->ctrlr, sizeof(out->ctrlr), "%s", buf);
	return out->slot >= 0;
}

static struct _in_fd *
_find_in(struct _in_fd *in, uint32_t n, const char *ctrlr, int slot, uint32_t gen)
{
	struct _in_fd *best = NULL;
	uint32_t i;

	for (i = 0; i < n; i++) {
		if (in[i].fd < 0 || in[i].slot != slot || strcmp(in[i].ctrlr, ctrlr) != 0) {
			continue;
		}
		if (gen != 0 ? in[i].gen == gen : (best == NULL || in[i].gen > best->gen)) {
			best = &in[i];
		}
	}
	return best;
}

/* Take the fd of slot from in[] for a field of the record (-1 if the blob has none). */
static bool
_take(struct _in_fd *in, uint32_t n, const char *ctrlr, const struct fdstore_blob *b,
      int slot, int *field)
{
	struct _in_fd *f;

	if (*field < 0) {
		return true;
	}
	f = b->gen[slot] != 0 ? _find_in(in, n, ctrlr, slot, b->gen[slot]) : NULL;
	*field = -1;
	if (f == NULL) {
		return false;
	}
	f->used = true;
	*field = f->fd;
	return true;
}

/* Build the record of one controller; false when its session cannot be restored (*why). */
static bool
_restore_one(struct _in_fd *in, uint32_t n, const char *ctrlr, struct sb_vhost_handoff *h,
	     const char **why)
{
	struct _in_fd *st = _find_in(in, n, ctrlr, SLOT_STATE, 0);
	struct _in_fd *lst = _find_in(in, n, ctrlr, SLOT_LISTEN, 0);
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
	} else if (b->rec.conn_fd < 0) {
		*why = "no front-end was connected";
	} else if (b->rec.inflight_fd < 0) {
		*why = "the session has no inflight region: requests in flight could not be "
		       "resubmitted";
	}
	if (lst != NULL) {
		lst->used = true;
		h->listen_fd = lst->fd;
	}
	if (st != NULL) {
		st->used = true;
		close(st->fd);
		st->fd = -1;
	}
	if (*why != NULL) {
		free(b);
		return false;
	}
	*h = b->rec;
	h->why = NULL;
	h->listen_fd = lst != NULL ? lst->fd : -1;
	snprintf(h->socket, sizeof(h->socket), "%s", b->rec.socket);
	ok &= _take(in, n, ctrlr, b, SLOT_CONN, &h->conn_fd);
	ok &= _take(in, n, ctrlr, b, SLOT_SLAVE, &h->slave_fd);
	ok &= _take(in, n, ctrlr, b, SLOT_INFLIGHT, &h->inflight_fd);
	for (i = 0; i < h->nregions; i++) {
		ok &= _take(in, n, ctrlr, b, SLOT_MEM0 + (int)i, &h->regions[i].fd);
	}
	for (i = 0; i < h->nvqs; i++) {
		ok &= _take(in, n, ctrlr, b, SLOT_KICK0 + (int)i, &h->vqs[i].kickfd);
		ok &= _take(in, n, ctrlr, b, SLOT_CALL0 + (int)i, &h->vqs[i].callfd);
		h->vqs[i].running = (b->running & (1u << i)) != 0;
	}
	free(b);
	if (!ok) {
		*why = "an fd the session used was not stored";
	}
	return ok;
}

/* Close every fd of a record but its listening socket (the session is dropped). */
static void
_drop_session(struct sb_vhost_handoff *h)
{
	int listen_fd = h->listen_fd;
	uint32_t i;

	h->listen_fd = -1;
	if (h->conn_fd >= 0) {
		close(h->conn_fd);
	}
	if (h->slave_fd >= 0) {
		close(h->slave_fd);
	}
	if (h->inflight_fd >= 0) {
		close(h->inflight_fd);
	}
	for (i = 0; i < h->nregions; i++) {
		if (h->regions[i].fd >= 0) {
			close(h->regions[i].fd);
		}
	}
	for (i = 0; i < h->nvqs; i++) {
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
	uint32_t sessions;
	int rc;
};

static void
_do_restore(void *arg)
{
	struct _restore_args *a = arg;
	struct sb_vhost_handoff *recs = NULL;
	struct _in_fd *in;
	uint32_t i, j, nrec = 0;
	const char *why;

	in = calloc(a->n ? a->n : 1, sizeof(*in));
	recs = calloc(a->n ? a->n : 1, sizeof(*recs));
	free(g_store.restored);
	g_store.restored = calloc(a->n ? a->n : 1, sizeof(*g_store.restored));
	g_store.nrestored = 0;
	if (in == NULL || recs == NULL || g_store.restored == NULL) {
		for (i = 0; i < a->n; i++) {
			close(a->fds[i]);
		}
		a->rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < a->n; i++) {
		in[i].fd = a->fds[i];
		if (a->names[i] == NULL || !_parse_name(a->names[i], &in[i])) {
			SB_WARNLOG("fd store: fd named %s is not ours; closed\n",
				   a->names[i] ? a->names[i] : "(none)");
			close(in[i].fd);
			in[i].fd = -1;
			continue;
		}
		if (in[i].gen >= g_store.next_gen) {
			g_store.next_gen = in[i].gen + 1;
		}
		/* Each name goes from the store once its controller stored anew. */
		snprintf(g_store.restored[g_store.nrestored].ctrlr, SB_VHOST_NAME_MAX, "%s",
			 in[i].ctrlr);
		snprintf(g_store.restored[g_store.nrestored].name, NAME_MAX_LEN, "%s", a->names[i]);
		g_store.nrestored++;
	}
	for (i = 0; i < a->n; i++) {
		bool seen = false;

		if (in[i].fd < 0) {
			continue;
		}
		for (j = 0; j < nrec && !seen; j++) {
			seen = strcmp(recs[j].name, in[i].ctrlr) == 0;
		}
		if (seen) {
			continue;
		}
		if (_restore_one(in, a->n, in[i].ctrlr, &recs[nrec], &why)) {
			a->sessions++;
			SB_NOTICELOG("vhost %s: session restored from the fd store\n", in[i].ctrlr);
		} else {
			SB_WARNLOG("vhost %s: session not restored from the fd store: %s (its "
				   "front-end reconnects where it was told to)\n", in[i].ctrlr, why);
			_drop_session(&recs[nrec]);
		}
		nrec++;
	}
	/* Older generations and anything unused. */
	for (i = 0; i < a->n; i++) {
		if (in[i].fd >= 0 && !in[i].used) {
			close(in[i].fd);
		}
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
	free(in);
	free(recs);
}

int
sb_vhost_fdstore_restore(const int *fds, const char *const *names, uint32_t n,
			 uint32_t *sessions)
{
	struct _restore_args a = { .fds = fds, .names = names, .n = n };
	int rc;

	if ((fds == NULL || names == NULL) && n > 0) {
		return -EINVAL;
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
	if (g_store.on) {
		_remove_restored(NULL);
	}
	free(g_store.restored);
	g_store.restored = NULL;
	g_store.nrestored = 0;
}
