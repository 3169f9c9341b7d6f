"""Volumes as sparse files in one directory, served by the uring bdev.

Snapshots and clones are reflinks (``FICLONE``) on file systems that share
extents (XFS, btrfs); elsewhere they are copies that skip holes, so a thin
volume stays thin: nothing here ever writes zeroes a reader could not tell
from a hole.
"""

import errno
import fcntl
import logging
import os
import re
import socket

from spdk_backend import exception
from spdk_backend.volume.backends import base

LOG = logging.getLogger(__name__)

# linux/fs.h: #define FICLONE _IOW(0x94, 9, int)
FICLONE = 0x40049409
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
_COPY_CHUNK = 1 << 20
# errno values that mean "this file system cannot reflink", not "it failed".
_NO_REFLINK = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EXDEV,
               errno.ENOSYS, errno.EPERM)


def _reflink(src_fd, dst_fd):
    """Share every extent of ``src_fd`` with ``dst_fd``; False if unsupported."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as exc:
        if exc.errno in _NO_REFLINK:
            return False
        raise
    return True


def _data_extents(fd, size):
    """(offset, length) of the data regions of ``fd``: holes are skipped."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data past offset
                return
            raise
        try:
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                end = size
            else:
                raise
        end = min(end, size)
        if end > start:
            yield start, end - start
        offset = end


def _copy_range(src_fd, dst_fd, offset, length, share=True):
    """Copy one data extent; copy_file_range first, pread/pwrite if refused.

    Without ``share`` only pread/pwrite: copy_file_range on XFS and btrfs
    may itself share the extents (Linux 5.19+ remaps within one file system),
    which is what turning reflinks off must avoid.
    """
    done = 0
    while done < length:
        count = min(_COPY_CHUNK * 64, length - done)
        n = None
        if share:
            try:
                n = os.copy_file_range(src_fd, dst_fd, count, offset + done, offset + done)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
        if n is None:
            n = _copy_range_rw(src_fd, dst_fd, offset + done, count)
        if n == 0:
            break  # the source shrank under us; the hole stays a hole
        done += n


def _copy_range_rw(src_fd, dst_fd, offset, count):
    copied = 0
    while copied < count:
        buf = os.pread(src_fd, min(_COPY_CHUNK, count - copied), offset + copied)
        if not buf:
            break
        os.pwrite(dst_fd, buf, offset + copied)
        copied += len(buf)
    return copied


def sparse_copy(src_path, dst_path, size=None, reflink=True):
    """Copy ``src_path`` to a new file ``dst_path`` without inflating it.

    Reflinks when ``reflink`` and the file system allow it, otherwise copies
    only the data extents.  The copy is ``size`` bytes long (the source's
    size when None; larger means a hole at the end).  Returns "reflink" or
    "copy".  A partial destination is removed on error.
    """
    src_fd = os.open(src_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        src_size = os.fstat(src_fd).st_size
        size = src_size if size is None else size
        if size < src_size:
            raise exception.InvalidInput(
                reason="cannot copy %s (%d bytes) into %d bytes" % (src_path, src_size, size))
        dst_fd = os.open(dst_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            how = "copy"
            if reflink and src_size and _reflink(src_fd, dst_fd):
                how = "reflink"
            else:
                for offset, length in _data_extents(src_fd, src_size):
                    _copy_range(src_fd, dst_fd, offset, length, share=reflink)
            os.ftruncate(dst_fd, size)
            os.fsync(dst_fd)
        except BaseException:
            os.close(dst_fd)
            _unlink_quiet(dst_path)
            raise
        os.close(dst_fd)
        return how
    finally:
        os.close(src_fd)


def _unlink_quiet(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class FileBackend(base.VolumeBackend):
    """Sparse files in ``volume_dir``; volume ``NAME`` is ``<volume_dir>/NAME``.

    :param volume_dir: the directory; must exist and be writable.
    :param reflink: try FICLONE for snapshots and clones (falls back to a
        sparse copy on file systems without shared extents).
    """

    name = "file"
    snapshot_connections = True

    def __init__(self, client, volume_dir=None, block_size=512, reflink=True, shared=False,
                 **kwargs):
        super().__init__(client, block_size=block_size)
        # The directory is on storage other hosts see (NFS...): the bdev
        # takes a shared lock, so the agent of a live migration's
        # destination may serve the file too.
        self.shared = bool(shared)
        if not volume_dir:
            raise exception.ConfigurationError(
                reason="the file volume backend needs a volume directory")
        self.volume_dir = os.path.abspath(volume_dir)
        self.reflink = reflink

    def path(self, name):
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise exception.InvalidInput(reason="%r is not a valid volume name" % (name,))
        return os.path.join(self.volume_dir, name)

    local_path = path

    def check(self):
        if not os.path.isdir(self.volume_dir):
            raise exception.ConfigurationError(
                reason="volume directory %s does not exist" % self.volume_dir)
        if not os.access(self.volume_dir, os.W_OK | os.X_OK):
            raise exception.ConfigurationError(
                reason="volume directory %s is not writable" % self.volume_dir)

    def capacity(self):
        st = os.statvfs(self.volume_dir)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def provisioned_bytes(self):
        total = 0
        with os.scandir(self.volume_dir) as entries:
            for entry in entries:
                if _NAME_RE.match(entry.name) and entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
        return total

    def exists(self, name):
        return os.path.isfile(self.path(name))

    def size(self, name):
        try:
            return os.stat(self.path(name)).st_size
        except FileNotFoundError:
            raise exception.NotFound(op="volume %s" % name, reason="no such volume file",
                                     errno=errno.ENOENT)

    def _check_size(self, size):
        if size <= 0 or size % self.block_size:
            raise exception.InvalidInput(
                reason="size %d is not a positive multiple of the block size %d"
                       % (size, self.block_size))

    def create(self, name, size):
        self._check_size(size)
        path = self.path(name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise exception.AlreadyExists(op="create volume %s" % name,
                                          reason="%s already exists" % path,
                                          errno=errno.EEXIST)
        try:
            os.ftruncate(fd, size)  # sparse: no block is allocated
        except BaseException:
            os.close(fd)
            _unlink_quiet(path)
            raise
        os.close(fd)

    def delete(self, name):
        path = self.path(name)
        self.unexport(name)
        _unlink_quiet(path)

    def extend(self, name, size):
        self._check_size(size)
        path = self.path(name)
        current = self.size(name)
        if size < current:
            raise exception.InvalidInput(
                reason="volume %s is %d bytes; shrinking to %d is not supported"
                       % (name, current, size))
        os.truncate(path, size)
        if self.get_bdev(name) is not None:
            self.client.call("bdev_uring_rescan", name=name)

    def _flush(self, name):
        # The uring bdev writes through the page cache; fsync makes a copy
        # taken now see every write the guest has completed.
        fd = os.open(self.path(name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def create_snapshot(self, volume_name, snapshot_name):
        self._flush(volume_name)
        how = self._copy(volume_name, snapshot_name, None)
        LOG.info("snapshot %s of volume %s taken by %s", snapshot_name, volume_name, how)

    def delete_snapshot(self, snapshot_name):
        _unlink_quiet(self.path(snapshot_name))

    def create_from_snapshot(self, snapshot_name, volume_name, size):
        self._check_size(size)
        how = self._copy(snapshot_name, volume_name, size)
        LOG.info("volume %s made from snapshot %s by %s", volume_name, snapshot_name, how)

    def clone(self, src_name, volume_name, size):
        self._check_size(size)
        self._flush(src_name)
        how = self._copy(src_name, volume_name, size)
        LOG.info("volume %s cloned from %s by %s", volume_name, src_name, how)

    def _copy(self, src, dst, size):
        src_path, dst_path = self.path(src), self.path(dst)
        if not os.path.isfile(src_path):
            raise exception.NotFound(op="copy %s" % src, reason="no such file %s" % src_path,
                                     errno=errno.ENOENT)
        try:
            return sparse_copy(src_path, dst_path, size, reflink=self.reflink)
        except FileExistsError:
            raise exception.AlreadyExists(op="copy to %s" % dst,
                                          reason="%s already exists" % dst_path,
                                          errno=errno.EEXIST)

    def bdev_spec(self, name):
        params = {"name": name, "filename": self.path(name), "block_size": self.block_size}
        if self.shared:
            params["shared"] = True
        return {"method": "bdev_uring_create", "params": params}

    def supports_live_migration(self):
        return self.shared

    def native_connection(self, name):
        # os-brick's local connector: the file itself.
        if not self.exists(name):
            raise exception.NotFound(op="connect %s" % name, reason="no such volume file",
                                     errno=errno.ENOENT)
        return "local", {"device_path": self.path(name)}

    def native_snapshot_connection(self, snapshot_name):
        # A snapshot is a file of its own: os-brick's local connector reads it.
        if not self.exists(snapshot_name):
            raise exception.NotFound(op="connect %s" % snapshot_name,
                                     reason="no such snapshot file", errno=errno.ENOENT)
        return "local", {"device_path": self.path(snapshot_name)}

    def location_info(self):
        # A directory on shared storage is the same place from every host.
        host = "shared" if self.shared else socket.gethostname()
        return "file:%s:%s" % (host, self.volume_dir)

    def export(self, name):
        if not self.exists(name):
            raise exception.NotFound(op="export %s" % name, reason="no such volume file",
                                     errno=errno.ENOENT)
        return super().export(name)

    def unexport(self, name):
        self._refuse_if_in_use(name)
        try:
            self.client.call("bdev_uring_delete", name=name)
        except exception.AgentNotFound:
            pass
