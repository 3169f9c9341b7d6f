"""Volumes as Ceph RBD images, served by the agent's rbd bdev.

Snapshots and clones are Ceph's own copy-on-write objects: a snapshot is an
RBD snapshot of the volume's image (protected, so it can be cloned), a
volume made from a snapshot is an RBD clone of it, and a clone of a volume
is a clone of a snapshot taken for it (``clone-<new volume>``), removed with
the clone.  Nothing is copied; any host whose agent reaches the cluster can
serve any volume.

The base interface names snapshots without their volume, so the pool keeps a
small index (the omap of object ``spdk_backend.snapshots``): snapshot name ->
volume image.

python3-rbd / python3-rados are Debian's modules for /usr/bin/python3; when
the running interpreter (a venv) cannot import them, they are loaded from
/usr/lib/python3/dist-packages, and only them.
"""

import errno
import functools
import importlib
import json
import logging
import os
import sys
import threading
import urllib.parse

from spdk_backend import connector
from spdk_backend import exception
from spdk_backend.volume.backends import base

LOG = logging.getLogger(__name__)

SYSTEM_DIST_PACKAGES = "/usr/lib/python3/dist-packages"
INDEX_OBJECT = "spdk_backend.snapshots"
CLONE_SNAP_PREFIX = "clone-"
# Ceph's cluster name (its files' prefix, /etc/ceph/<cluster>.conf), which
# os-brick needs; not the agent's registered cluster name.
CEPH_CLUSTER = "ceph"
# Bytes per librbd read or write of an image copy.
IO_CHUNK = 4 << 20


def import_ceph():
    """The ``(rados, rbd)`` modules, from the system's Python if needed."""
    try:
        return importlib.import_module("rados"), importlib.import_module("rbd")
    except ImportError:
        pass
    sys.path.append(SYSTEM_DIST_PACKAGES)
    try:
        return importlib.import_module("rados"), importlib.import_module("rbd")
    except ImportError as exc:
        raise exception.ConfigurationError(
            reason="the rbd volume backend needs python3-rados and python3-rbd "
                   "(apt-get install python3-rbd python3-rados): %s" % exc) from exc
    finally:
        # Only these two modules come from there; nothing else should.
        sys.path.remove(SYSTEM_DIST_PACKAGES)


def _ceph_errors(method):
    """Turn a librados/librbd exception out of ``method`` into ours.

    The callers (the Cinder driver, the CLI) know the project's exceptions,
    not Ceph's.  Ceph's ETIMEDOUT (an operation timeout) is the cluster's
    answer: a plain EngineError, not EngineTimeout.
    """
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (self._rados_mod.Error, self._rbd_mod.Error) as exc:
            code = getattr(exc, "errno", None)
            op = " ".join([method.__name__.replace("_", " ")] + [str(a) for a in args])
            LOG.error("rbd backend: %s: %s", op, exc)
            if code and code != errno.ETIMEDOUT:
                raise exception.from_errno(code, op=op, reason=str(exc)) from exc
            raise exception.EngineError(op=op, reason=str(exc), errno=code) from exc
    return wrapper


class RbdBackend(base.VolumeBackend):
    """RBD images in ``pool``; volume ``NAME`` is image ``pool/NAME``.

    :param pool: the RBD pool (must exist and be initialised with ``rbd pool init``).
    :param ceph_conf: ceph.conf path (librados' default search when None).
    :param user_id: Ceph user without ``client.``.
    :param keyring: keyring path (from the configuration when None).
    :param cluster_name: the name of the cluster connection the bdevs use,
        which each agent registers (``bdev_rbd_register_cluster``) with the
        settings above; when None a name derived from those settings
        (:func:`spdk_backend.connector.rbd_cluster_name`).
    :param connect_timeout: seconds to wait for the monitors.
    """

    name = "rbd"

    def __init__(self, client, block_size=512, pool="rbd", ceph_conf=None, user_id="admin",
                 keyring=None, cluster_name=None, connect_timeout=20, **kwargs):
        super().__init__(client, block_size=block_size)
        if not pool:
            raise exception.ConfigurationError(reason="the rbd volume backend needs a pool")
        self.pool = pool
        self.ceph_conf = ceph_conf or None
        self.user_id = user_id or "admin"
        self.keyring = keyring or None
        self.cluster_name = cluster_name or None
        self.connect_timeout = connect_timeout
        self._rados_mod, self._rbd_mod = import_ceph()
        self._cluster = None
        self._lock = threading.Lock()

    # -- connection ----------------------------------------------------------------

    def _connect(self):
        with self._lock:
            if self._cluster is None:
                conf = {"client_mount_timeout": str(self.connect_timeout),
                        "rados_mon_op_timeout": str(self.connect_timeout)}
                if self.keyring:
                    conf["keyring"] = self.keyring
                cluster = None
                try:
                    # conffile "" is librados' search path ($CEPH_CONF, /etc/ceph).
                    cluster = self._rados_mod.Rados(rados_id=self.user_id,
                                                    conffile=self.ceph_conf or "", conf=conf)
                    cluster.connect(timeout=self.connect_timeout)
                except self._rados_mod.Error as exc:
                    if cluster is not None:
                        cluster.shutdown()
                    raise exception.ConfigurationError(
                        reason="cannot connect to the Ceph cluster (conf %s, user %s): %s"
                               % (self.ceph_conf or "default", self.user_id, exc)) from exc
                self._cluster = cluster
            return self._cluster

    def close(self):
        with self._lock:
            if self._cluster is not None:
                self._cluster.shutdown()
                self._cluster = None

    def _ioctx(self):
        try:
            return self._connect().open_ioctx(self.pool)
        except self._rados_mod.ObjectNotFound as exc:
            raise exception.ConfigurationError(
                reason="Ceph pool %s does not exist" % self.pool) from exc

    def _image(self, ioctx, name, snapshot=None, read_only=False):
        try:
            return self._rbd_mod.Image(ioctx, name, snapshot=snapshot, read_only=read_only)
        except self._rbd_mod.ImageNotFound:
            raise exception.NotFound(op="volume %s" % name,
                                     reason="no RBD image %s/%s" % (self.pool, name),
                                     errno=errno.ENOENT) from None

    # -- snapshot index ----------------------------------------------------------------

    def _index_get(self, ioctx, snapshot_name):
        rados = self._rados_mod
        with rados.ReadOpCtx() as op:
            vals, _ = ioctx.get_omap_vals_by_keys(op, (snapshot_name,))
            try:
                ioctx.operate_read_op(op, INDEX_OBJECT)
            except rados.ObjectNotFound:
                return None
            found = dict(vals)
        value = found.get(snapshot_name)
        return value.decode("utf-8") if value is not None else None

    def _index_set(self, ioctx, snapshot_name, volume_name):
        with self._rados_mod.WriteOpCtx() as op:
            ioctx.set_omap(op, (snapshot_name,), (volume_name.encode("utf-8"),))
            ioctx.operate_write_op(op, INDEX_OBJECT)

    def _index_del(self, ioctx, snapshot_name):
        with self._rados_mod.WriteOpCtx() as op:
            ioctx.remove_omap_keys(op, (snapshot_name,))
            try:
                ioctx.operate_write_op(op, INDEX_OBJECT)
            except self._rados_mod.ObjectNotFound:
                pass

    def _snapshot_parent(self, ioctx, snapshot_name):
        parent = self._index_get(ioctx, snapshot_name)
        if parent is None:
            raise exception.NotFound(op="snapshot %s" % snapshot_name,
                                     reason="no such snapshot in pool %s" % self.pool,
                                     errno=errno.ENOENT)
        return parent

    # -- checks and capacity -----------------------------------------------------------

    @_ceph_errors
    def check(self):
        with self._ioctx() as ioctx:
            self._rbd_mod.RBD().list(ioctx)

    @_ceph_errors
    def capacity(self):
        stats = self._connect().get_cluster_stats()
        return stats["kb"] * 1024, stats["kb_avail"] * 1024

    @_ceph_errors
    def provisioned_bytes(self):
        total = 0
        with self._ioctx() as ioctx:
            for name in self._rbd_mod.RBD().list(ioctx):
                try:
                    with self._image(ioctx, name, read_only=True) as img:
                        total += img.size()
                        total += sum(s["size"] for s in img.list_snaps())
                except exception.NotFound:
                    continue  # removed while we listed
        return total

    # -- volumes -------------------------------------------------------------------------

    def _check_size(self, size):
        if size <= 0 or size % self.block_size:
            raise exception.InvalidInput(
                reason="size %d is not a positive multiple of the block size %d"
                       % (size, self.block_size))

    @_ceph_errors
    def exists(self, name):
        with self._ioctx() as ioctx:
            if name in self._rbd_mod.RBD().list(ioctx):
                return True
            return self._index_get(ioctx, name) is not None

    @_ceph_errors
    def size(self, name):
        with self._ioctx() as ioctx, self._image(ioctx, name, read_only=True) as img:
            return img.size()

    @_ceph_errors
    def create(self, name, size):
        self._check_size(size)
        with self._ioctx() as ioctx:
            try:
                self._rbd_mod.RBD().create(ioctx, name, size, old_format=False)
            except self._rbd_mod.ImageExists:
                raise exception.AlreadyExists(
                    op="create volume %s" % name,
                    reason="RBD image %s/%s exists" % (self.pool, name),
                    errno=errno.EEXIST) from None

    @_ceph_errors
    def delete(self, name):
        self.unexport(name)
        with self._ioctx() as ioctx:
            try:
                img = self._image(ioctx, name)
            except exception.NotFound:
                return
            with img:
                parent = self._parent_of(img)
                for snap in list(img.list_snaps()):
                    self._remove_snap(ioctx, img, name, snap["name"])
            self._rbd_mod.RBD().remove(ioctx, name)
            if parent is not None and parent[1] == CLONE_SNAP_PREFIX + name:
                # The snapshot this volume was cloned from exists only for it.
                try:
                    with self._image(ioctx, parent[0]) as pimg:
                        self._remove_snap(ioctx, pimg, parent[0], parent[1])
                except exception.NotFound:
                    pass

    def _parent_of(self, img):
        try:
            info = img.parent_info()  # (pool, image, snapshot)
        except self._rbd_mod.ImageNotFound:
            return None
        return info[1], info[2]

    def _remove_snap(self, ioctx, img, image_name, snap):
        rbd = self._rbd_mod
        try:
            if img.is_protected_snap(snap):
                img.unprotect_snap(snap)
        except rbd.ImageBusy:
            raise exception.Busy(op="delete snapshot %s of %s" % (snap, image_name),
                                 reason="volumes were cloned from it; delete them first",
                                 errno=errno.EBUSY) from None
        img.remove_snap(snap)
        self._index_del(ioctx, snap)

    @_ceph_errors
    def extend(self, name, size):
        self._check_size(size)
        with self._ioctx() as ioctx, self._image(ioctx, name) as img:
            current = img.size()
            if size < current:
                raise exception.InvalidInput(
                    reason="volume %s is %d bytes; shrinking to %d is not supported"
                           % (name, current, size))
            img.resize(size)
        if self.get_bdev(name) is not None and connector.has_extensions(self.client):
            # The bdev's update watch sees it too (SPDK's has nothing else);
            # the agent's rescan makes it synchronous.
            self.client.call("bdev_rbd_rescan", name=name)

    # -- snapshots and clones ------------------------------------------------------------

    @_ceph_errors
    def create_snapshot(self, volume_name, snapshot_name):
        with self._ioctx() as ioctx:
            if self._index_get(ioctx, snapshot_name) is not None:
                raise exception.AlreadyExists(op="snapshot %s" % snapshot_name,
                                              reason="a snapshot of that name exists",
                                              errno=errno.EEXIST)
            with self._image(ioctx, volume_name) as img:
                # The agent's librbd owns the image's exclusive lock: librbd
                # has the owner take the snapshot, after it flushed its cache,
                # so every write a guest got acknowledged is in the snapshot.
                img.create_snap(snapshot_name)
                img.protect_snap(snapshot_name)
            self._index_set(ioctx, snapshot_name, volume_name)
        LOG.info("snapshot %s of volume %s taken (RBD snapshot)", snapshot_name, volume_name)

    @_ceph_errors
    def delete_snapshot(self, snapshot_name):
        with self._ioctx() as ioctx:
            parent = self._index_get(ioctx, snapshot_name)
            if parent is None:
                return
            try:
                img = self._image(ioctx, parent)
            except exception.NotFound:
                self._index_del(ioctx, snapshot_name)
                return
            with img:
                if snapshot_name in {s["name"] for s in img.list_snaps()}:
                    self._remove_snap(ioctx, img, parent, snapshot_name)
                else:
                    self._index_del(ioctx, snapshot_name)

    def _clone(self, ioctx, parent, snap, volume_name, size):
        rbd = self._rbd_mod
        try:
            rbd.RBD().clone(ioctx, parent, snap, ioctx, volume_name,
                            features=rbd.RBD_FEATURE_LAYERING)
        except rbd.ImageExists:
            raise exception.AlreadyExists(op="clone to %s" % volume_name,
                                          reason="RBD image %s/%s exists"
                                                 % (self.pool, volume_name),
                                          errno=errno.EEXIST) from None
        with self._image(ioctx, volume_name) as img:
            if size is not None and size > img.size():
                img.resize(size)
            elif size is not None and size < img.size():
                raise exception.InvalidInput(reason="cannot clone into %d bytes, less "
                                                    "than the source" % size)

    @_ceph_errors
    def create_from_snapshot(self, snapshot_name, volume_name, size):
        self._check_size(size)
        with self._ioctx() as ioctx:
            parent = self._snapshot_parent(ioctx, snapshot_name)
            self._clone(ioctx, parent, snapshot_name, volume_name, size)

    @_ceph_errors
    def clone(self, src_name, volume_name, size):
        self._check_size(size)
        snap = CLONE_SNAP_PREFIX + volume_name
        with self._ioctx() as ioctx:
            with self._image(ioctx, src_name) as img:
                img.create_snap(snap)
                img.protect_snap(snap)
            try:
                self._clone(ioctx, src_name, snap, volume_name, size)
            except BaseException:
                with self._image(ioctx, src_name) as img:
                    img.unprotect_snap(snap)
                    img.remove_snap(snap)
                raise

    # -- raw data in and out (image copies) ------------------------------------------------

    @_ceph_errors
    def import_raw(self, name, path, chunk=IO_CHUNK):
        """Write the raw file ``path`` into volume ``name`` from offset 0.

        Runs of zeroes are skipped: a new image reads them as zeroes anyway
        and stays thin.
        """
        with self._ioctx() as ioctx, self._image(ioctx, name) as img, \
                open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > img.size():
                raise exception.InvalidInput(
                    reason="%s holds %d bytes, more than volume %s (%d)"
                           % (path, size, name, img.size()))
            offset = 0
            while True:
                data = f.read(chunk)
                if not data:
                    break
                if data.count(0) != len(data):
                    img.write(data, offset)
                offset += len(data)
            img.flush()

    @_ceph_errors
    def export_raw(self, name, path):
        """Volume ``name``'s bytes into the new sparse file ``path``: only
        the extents librbd reports as allocated are read and written."""
        with self._ioctx() as ioctx, self._image(ioctx, name, read_only=True) as img, \
                open(path, "wb") as f:
            size = img.size()
            extents = []
            img.diff_iterate(0, size, None,
                             lambda off, length, exists: exists and extents.append(
                                 (off, length)))
            for off, length in extents:
                for pos in range(off, off + length, IO_CHUNK):
                    n = min(IO_CHUNK, off + length - pos)
                    f.seek(pos)
                    f.write(img.read(pos, n))
            f.truncate(size)

    def clone_from_location(self, location, volume_name, size):
        # Glance's RBD store: rbd://<fsid>/<pool>/<image>/<snapshot>, each
        # part URL-quoted.  Only an image of this cluster that this user
        # can open is cloned.
        prefix = "rbd://"
        if not isinstance(location, str) or not location.startswith(prefix):
            return False
        parts = [urllib.parse.unquote(p) for p in location[len(prefix):].split("/")]
        if len(parts) != 4 or not all(parts):
            LOG.debug("not an rbd image location: %s", location)
            return False
        fsid, pool, image, snapshot = parts
        if fsid != self._fsid():
            LOG.debug("%s is in another Ceph cluster", location)
            return False
        if not self._can_open(pool, image, snapshot):
            return False
        self._clone_foreign(pool, image, snapshot, volume_name, size)
        LOG.info("volume %s cloned from %s/%s@%s", volume_name, pool, image, snapshot)
        return True

    @_ceph_errors
    def _fsid(self):
        return self._connect().get_fsid()

    @_ceph_errors
    def _clone_foreign(self, pool, image, snapshot, volume_name, size):
        """Volume ``volume_name`` as a copy-on-write clone of another
        image's snapshot (a Glance image in this cluster), grown to ``size``."""
        self._check_size(size)
        rbd = self._rbd_mod
        try:
            src_ioctx = self._connect().open_ioctx(pool)
        except self._rados_mod.ObjectNotFound as exc:
            raise exception.NotFound(op="clone from %s/%s@%s" % (pool, image, snapshot),
                                     reason="no pool %s" % pool,
                                     errno=errno.ENOENT) from exc
        with src_ioctx, self._ioctx() as ioctx:
            try:
                rbd.RBD().clone(src_ioctx, image, snapshot, ioctx, volume_name,
                                features=rbd.RBD_FEATURE_LAYERING)
            except rbd.ImageExists:
                raise exception.AlreadyExists(op="clone to %s" % volume_name,
                                              reason="RBD image %s/%s exists"
                                                     % (self.pool, volume_name),
                                              errno=errno.EEXIST) from None
            with self._image(ioctx, volume_name) as img:
                if size > img.size():
                    img.resize(size)

    def _can_open(self, pool, image, snapshot):
        """Whether ``pool/image@snapshot`` opens (read-only) for this user."""
        try:
            with self._connect().open_ioctx(pool) as ioctx:
                self._rbd_mod.Image(ioctx, image, snapshot=snapshot, read_only=True).close()
            return True
        except (self._rados_mod.Error, self._rbd_mod.Error,
                exception.SpdkBackendException) as exc:
            LOG.debug("cannot open %s/%s@%s: %s", pool, image, snapshot, exc)
            return False

    # -- serving -------------------------------------------------------------------------

    @property
    def agent_cluster_name(self):
        """The cluster the bdevs name: ``cluster_name``, else one named
        after the connection settings."""
        return self.cluster_name or connector.rbd_cluster_name(
            user_id=self.user_id, config_file=self.ceph_conf, key_file=self.keyring)

    def cluster_spec(self):
        """The ``bdev_rbd_register_cluster`` call of the bdevs' cluster."""
        return connector.rbd_cluster_call(self.agent_cluster_name, user_id=self.user_id,
                                          config_file=self.ceph_conf,
                                          key_file=self.keyring)

    def bdev_prerequisites(self, name):
        # The bdev names a cluster, which its agent needs registered: the
        # compute host's agent may never have heard of it.
        return [self.cluster_spec()]

    def connection_extras(self, name):
        return {"rbd": {"pool": self.pool, "image": name, "user_id": self.user_id,
                        "cluster_name": self.agent_cluster_name}}

    def supports_live_migration(self):
        return True     # every host's librbd opens the image; its lock moves

    @_ceph_errors
    def monitors(self):
        """``(hosts, ports)`` of the cluster's monitors, from its monmap."""
        ret, out, err = self._connect().mon_command(
            json.dumps({"prefix": "mon dump", "format": "json"}), b"")
        if ret:
            raise exception.from_errno(abs(ret), op="mon dump", reason=err)
        hosts, ports = [], []
        for mon in json.loads(out)["mons"]:
            # "addr" is "IP:PORT/NONCE" (v1), an IPv6 IP in brackets.
            host, port = mon["addr"].rsplit("/", 1)[0].rsplit(":", 1)
            hosts.append(host.strip("[]"))
            ports.append(port)
        return hosts, ports

    def native_connection(self, name):
        # os-brick's rbd connector (librbd in the caller's process): the
        # data Cinder's own RBD driver hands out.  Never the keyring: any
        # caller of initialize_connection would get it (OSSN-0085); os-brick
        # reads /etc/ceph/ceph.client.<user>.keyring on its host.
        hosts, ports = self.monitors()
        return "rbd", {"name": "%s/%s" % (self.pool, name),
                       "hosts": hosts, "ports": ports,
                       "cluster_name": CEPH_CLUSTER,
                       "auth_enabled": True,
                       "auth_username": self.user_id,
                       "secret_type": "ceph",
                       "secret_uuid": None,
                       "discard": True}

    @_ceph_errors
    def location_info(self):
        return "rbd:%s:%s" % (self._connect().get_fsid(), self.pool)

    def bdev_spec(self, name):
        # SPDK's bdev_rbd_create names a registered cluster for the
        # connection (it has no config_file or key_file).
        return {"method": "bdev_rbd_create",
                "params": {"name": name, "pool_name": self.pool, "rbd_name": name,
                           "block_size": self.block_size,
                           "cluster_name": self.agent_cluster_name}}

    @_ceph_errors
    def export(self, name):
        with self._ioctx() as ioctx:
            if name not in self._rbd_mod.RBD().list(ioctx):
                raise exception.NotFound(op="export %s" % name,
                                         reason="no RBD image %s/%s" % (self.pool, name),
                                         errno=errno.ENOENT)
        return super().export(name)

    def unexport(self, name):
        self._refuse_if_in_use(name)
        try:
            self.client.call("bdev_rbd_delete", name=name)
        except exception.AgentNotFound:
            pass
