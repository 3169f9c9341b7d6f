/* SPDX-License-Identifier: Apache-2.0 */
/*
 * librados connections: registered (named) clusters and connections shared
 * per (user, configuration).  One connection per cluster is what librados
 * wants: each one runs its own messenger and timer threads.
 *
 * Control path only (Python threads, the background close threads); the
 * list is guarded by a mutex because those threads are not reactors.
 */
#include "bdev_rbd_internal.h"
#include "sb/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t g_rbd_cluster_lock = PTHREAD_MUTEX_INITIALIZER;
static TAILQ_HEAD(, rbd_cluster) g_rbd_clusters = TAILQ_HEAD_INITIALIZER(g_rbd_clusters);

/* librados waits 300 s for the monitors by default: too long for an RPC. */
#define RBD_DEFAULT_MOUNT_TIMEOUT "30"

static char *
_dup(const char *s)
{
	return (s != NULL && s[0] != '\0') ? strdup(s) : NULL;
}

static bool
_str_eq(const char *a, const char *b)
{
	return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

static void
_cluster_free(struct rbd_cluster *c)
{
	char **kv;

	if (c == NULL) {
		return;
	}
	for (kv = c->config; kv != NULL && *kv != NULL; kv++) {
		free(*kv);
	}
	free(c->config);
	free(c->name);
	free(c->user_id);
	free(c->config_file);
	free(c->key_file);
	free(c->key);
	free(c);
}

static size_t
_config_count(const char *const *config)
{
	size_t n = 0;

	while (config != NULL && config[n] != NULL) {
		n++;
	}
	return n;
}

/* The sharing key: every field, separated by a byte no option contains. */
static char *
_make_key(const struct sb_rbd_cluster_opts *o)
{
	size_t len = 64, n = _config_count(o->config), i;
	char *key, *p;

	len += o->user_id ? strlen(o->user_id) : 0;
	len += o->config_file ? strlen(o->config_file) : 0;
	len += o->key_file ? strlen(o->key_file) : 0;
	for (i = 0; i < n; i++) {
		len += strlen(o->config[i]) + 1;
	}
	key = calloc(1, len);
	if (key == NULL) {
		return NULL;
	}
	p = key + sprintf(key, "%s\x1f%s\x1f%s", o->user_id ? o->user_id : "",
			  o->config_file ? o->config_file : "", o->key_file ? o->key_file : "");
	for (i = 0; i < n; i++) {
		p += sprintf(p, "\x1f%s", o->config[i]);
	}
	return key;
}

static int
_cluster_connect(struct rbd_cluster *c)
{
	const char *what = "rados_create";
	char val[32];
	char **kv;
	int rc;

	rc = rados_create(&c->rados, c->user_id);
	if (rc < 0) {
		c->rados = NULL;
		goto out;
	}
	if (c->config_file != NULL || c->config == NULL) {
		/* NULL reads librados' own search path ($CEPH_CONF, /etc/ceph/ceph.conf). */
		what = "reading the configuration file";
		rc = rados_conf_read_file(c->rados, c->config_file);
		if (rc < 0 && c->config_file != NULL) {
			goto out;
		}
	}
	for (kv = c->config; kv != NULL && kv[0] != NULL; kv += 2) {
		rc = rados_conf_set(c->rados, kv[0], kv[1]);
		if (rc < 0) {
			SB_ERRLOG("rbd: bad cluster option %s = %s: %s\n", kv[0], kv[1],
				  strerror(-rc));
			goto out;
		}
	}
	if (c->key_file != NULL) {
		what = "setting the keyring";
		rc = rados_conf_set(c->rados, "keyring", c->key_file);
		if (rc < 0) {
			goto out;
		}
	}
	if (rados_conf_get(c->rados, "client_mount_timeout", val, sizeof(val)) == 0 &&
	    strtod(val, NULL) == 300.0) {
		rados_conf_set(c->rados, "client_mount_timeout", RBD_DEFAULT_MOUNT_TIMEOUT);
	}
	what = "rados_connect";
	rc = rados_connect(c->rados);
out:
	if (rc < 0) {
		SB_ERRLOG("rbd: cannot connect to the cluster (user %s, config %s): %s: %s\n",
			  c->user_id ? c->user_id : "admin",
			  c->config_file ? c->config_file : "default", what, strerror(-rc));
		if (c->rados != NULL) {
			rados_shutdown(c->rados);
			c->rados = NULL;
		}
	}
	return rc;
}

static struct rbd_cluster *
_cluster_new(const struct sb_rbd_cluster_opts *o)
{
	struct rbd_cluster *c = calloc(1, sizeof(*c));
	size_t n = _config_count(o->config), i;

	if (c == NULL) {
		return NULL;
	}
	if (n % 2 != 0) {
		SB_ERRLOG("rbd: cluster options must come as key/value pairs\n");
		free(c);
		return NULL;
	}
	c->name = _dup(o->name);
	c->user_id = _dup(o->user_id);
	c->config_file = _dup(o->config_file);
	c->key_file = _dup(o->key_file);
	c->key = _make_key(o);
	if (n > 0) {
		c->config = calloc(n + 1, sizeof(char *));
		for (i = 0; c->config != NULL && i < n; i++) {
			c->config[i] = strdup(o->config[i]);
			if (c->config[i] == NULL) {
				break;
			}
		}
		if (c->config == NULL || i < n) {
			_cluster_free(c);
			return NULL;
		}
	}
	if (c->key == NULL || (o->name != NULL && o->name[0] != '\0' && c->name == NULL)) {
		_cluster_free(c);
		return NULL;
	}
	return c;
}

int
_rbd_cluster_get(const struct sb_rbd_cluster_opts *opts, struct rbd_cluster **out)
{
	struct sb_rbd_cluster_opts anon = *opts;
	struct rbd_cluster *c;
	char *key = _make_key(opts);
	int rc = 0;

	if (key == NULL) {
		return -ENOMEM;
	}
	pthread_mutex_lock(&g_rbd_cluster_lock);
	TAILQ_FOREACH(c, &g_rbd_clusters, link) {
		if (c->name == NULL && strcmp(c->key, key) == 0) {
			c->refs++;
			c->bdevs++;
			goto out;
		}
	}
	anon.name = NULL;
	c = _cluster_new(&anon);
	if (c == NULL) {
		rc = -EINVAL;
		goto out;
	}
	/* Connecting under the lock keeps two creates from opening two connections. */
	rc = _cluster_connect(c);
	if (rc < 0) {
		_cluster_free(c);
		c = NULL;
		goto out;
	}
	c->refs = 1;
	c->bdevs = 1;
	TAILQ_INSERT_TAIL(&g_rbd_clusters, c, link);
out:
	pthread_mutex_unlock(&g_rbd_cluster_lock);
	free(key);
	*out = c;
	return rc;
}

int
_rbd_cluster_get_by_name(const char *name, struct rbd_cluster **out)
{
	struct rbd_cluster *c;

	pthread_mutex_lock(&g_rbd_cluster_lock);
	TAILQ_FOREACH(c, &g_rbd_clusters, link) {
		if (c->name != NULL && strcmp(c->name, name) == 0) {
			c->refs++;
			c->bdevs++;
			break;
		}
	}
	pthread_mutex_unlock(&g_rbd_cluster_lock);
	*out = c;
	if (c == NULL) {
		SB_ERRLOG("rbd: no registered cluster %s (bdev_rbd_register_cluster)\n", name);
		return -ENOENT;
	}
	return 0;
}

static void
_cluster_put(struct rbd_cluster *c, bool bdev)
{
	bool last;

	pthread_mutex_lock(&g_rbd_cluster_lock);
	if (bdev) {
		c->bdevs--;
	}
	last = --c->refs == 0;
	if (last) {
		TAILQ_REMOVE(&g_rbd_clusters, c, link);
	}
	pthread_mutex_unlock(&g_rbd_cluster_lock);
	if (last) {
		/* Outside the lock: shutting librados down waits for its threads. */
		rados_shutdown(c->rados);
		_cluster_free(c);
	}
}

void
_rbd_cluster_put(struct rbd_cluster *c)
{
	_cluster_put(c, true);
}

/* ---- registered clusters ---- */

int
sb_bdev_rbd_register_cluster(const struct sb_rbd_cluster_opts *opts)
{
	struct rbd_cluster *c, *other;
	int rc;

	if (opts == NULL || opts->name == NULL || opts->name[0] == '\0') {
		SB_ERRLOG("rbd: a cluster name is required\n");
		return -EINVAL;
	}
	c = _cluster_new(opts);
	if (c == NULL) {
		return -EINVAL;
	}
	pthread_mutex_lock(&g_rbd_cluster_lock);
	TAILQ_FOREACH(other, &g_rbd_clusters, link) {
		if (other->name != NULL && strcmp(other->name, opts->name) == 0) {
			SB_ERRLOG("rbd: cluster %s is already registered\n", opts->name);
			rc = -EEXIST;
			goto out;
		}
	}
	rc = _cluster_connect(c);
	if (rc == 0) {
		c->refs = 1;
		TAILQ_INSERT_TAIL(&g_rbd_clusters, c, link);
		SB_NOTICELOG("rbd: cluster %s registered\n", c->name);
	}
out:
	pthread_mutex_unlock(&g_rbd_cluster_lock);
	if (rc != 0) {
		_cluster_free(c);
	}
	return rc;
}

int
sb_bdev_rbd_unregister_cluster(const char *name)
{
	struct rbd_cluster *c;
	int rc = -ENOENT;

	if (name == NULL) {
		return -EINVAL;
	}
	pthread_mutex_lock(&g_rbd_cluster_lock);
	TAILQ_FOREACH(c, &g_rbd_clusters, link) {
		if (c->name != NULL && strcmp(c->name, name) == 0) {
			rc = c->bdevs > 0 ? -EBUSY : 0;
			break;
		}
	}
	pthread_mutex_unlock(&g_rbd_cluster_lock);
	if (rc == -ENOENT) {
		SB_ERRLOG("rbd: no registered cluster %s\n", name);
	} else if (rc == -EBUSY) {
		SB_ERRLOG("rbd: cluster %s is used by %u bdev(s); delete them first\n", name,
			  c->bdevs);
	} else {
		/* The list lock is not held: registered clusters are only dropped here. */
		_cluster_put(c, false);
		SB_NOTICELOG("rbd: cluster %s unregistered\n", name);
	}
	return rc;
}

/* Append JSON text of s (escaped) to buf at *o, counting what does not fit. */
static void
_put_str(char *buf, size_t len, size_t *o, const char *s)
{
	char tmp[8];
	const char *piece;
	size_t n;

	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			snprintf(tmp, sizeof(tmp), "\\%c", ch);
		} else if (ch < 0x20) {
			snprintf(tmp, sizeof(tmp), "\\u%04x", ch);
		} else {
			tmp[0] = (char)ch;
			tmp[1] = '\0';
		}
		piece = tmp;
		n = strlen(piece);
		if (*o + n < len) {
			memcpy(buf + *o, piece, n);
		}
		*o += n;
	}
}

static void
_put_raw(char *buf, size_t len, size_t *o, const char *s)
{
	size_t n = strlen(s);

	if (*o + n < len) {
		memcpy(buf + *o, s, n);
	}
	*o += n;
}

static void
_put_field(char *buf, size_t len, size_t *o, const char *key, const char *val)
{
	_put_raw(buf, len, o, ", \"");
	_put_raw(buf, len, o, key);
	_put_raw(buf, len, o, "\": \"");
	_put_str(buf, len, o, val);
	_put_raw(buf, len, o, "\"");
}

int
sb_bdev_rbd_get_clusters_info(const char *name, char *buf, size_t len)
{
	struct rbd_cluster *c;
	size_t o = 0;
	bool first = true, found = false;
	char num[32];
	char **kv;

	_put_raw(buf, len, &o, "[");
	pthread_mutex_lock(&g_rbd_cluster_lock);
	TAILQ_FOREACH(c, &g_rbd_clusters, link) {
		if (c->name == NULL || (name != NULL && !_str_eq(name, c->name))) {
			continue;
		}
		found = true;
		_put_raw(buf, len, &o, first ? "{\"cluster_name\": \"" : ", {\"cluster_name\": \"");
		first = false;
		_put_str(buf, len, &o, c->name);
		_put_raw(buf, len, &o, "\"");
		if (c->user_id != NULL) {
			_put_field(buf, len, &o, "user_id", c->user_id);
		}
		if (c->config_file != NULL) {
			_put_field(buf, len, &o, "config_file", c->config_file);
		}
		if (c->key_file != NULL) {
			_put_field(buf, len, &o, "key_file", c->key_file);
		}
		if (c->config != NULL) {
			_put_raw(buf, len, &o, ", \"config_param\": {");
			for (kv = c->config; kv[0] != NULL; kv += 2) {
				_put_raw(buf, len, &o, kv == c->config ? "\"" : ", \"");
				_put_str(buf, len, &o, kv[0]);
				_put_raw(buf, len, &o, "\": \"");
				_put_str(buf, len, &o, kv[1]);
				_put_raw(buf, len, &o, "\"");
			}
			_put_raw(buf, len, &o, "}");
		}
		snprintf(num, sizeof(num), ", \"bdevs\": %u}", c->bdevs);
		_put_raw(buf, len, &o, num);
	}
	pthread_mutex_unlock(&g_rbd_cluster_lock);
	_put_raw(buf, len, &o, "]");
	if (len > 0) {
		buf[o < len ? o : len - 1] = '\0';
	}
	if (name != NULL && !found) {
		SB_ERRLOG("rbd: no registered cluster %s\n", name);
		return -ENOENT;
	}
	return (int)o;
}
