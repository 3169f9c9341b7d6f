"""The ``file`` volume backend's reflink path, on a real XFS with reflink=1.

The rest of the suite runs on ext4/tmpfs, where snapshots and clones are
sparse copies.  Here a small XFS image is made and loop-mounted, and the
backend, driven against a real agent, must share extents instead of copying:
the backend says "reflink" in its log, ``filefrag`` flags every extent of the
copy "shared", and the file system's used space barely moves.  A control copy
with ``reflink=False`` on the same file system shows that the measurement
would catch a real copy.
"""

import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from spdk_backend.volume import manager
from tests.support import vhost_io
from tests.support.openstack_agent import running_agent

pytestmark = pytest.mark.timeout(300)

MiB = 1 << 20
IMAGE_SIZE = 512 * MiB  # mkfs.xfs refuses file systems under 300 MiB
VOLUME_SIZE = 64 * MiB
# A reflinked 64 MiB file costs a few metadata blocks, a copy costs 64 MiB.
SHARED_SLACK = 4 * MiB
LOGGER = "spdk_backend.volume.backends.file"


def _run(*argv, timeout=60, check=True):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)


def _detach_loops(image):
    """Detach any loop device still backed by ``image`` (mount normally autoclears)."""
    out = _run("losetup", "-j", image, check=False).stdout
    for line in out.splitlines():
        dev = line.split(":", 1)[0]
        if dev:
            _run("losetup", "-d", dev, check=False)


@contextlib.contextmanager
def _xfs_mount():
    """A freshly made XFS (reflink=1) on a sparse image, loop-mounted; yields the mount point."""
    workdir = tempfile.mkdtemp(prefix="sb-xfs-", dir="/tmp")
    image = os.path.join(workdir, "xfs.img")
    mnt = os.path.join(workdir, "mnt")
    mounted = False
    try:
        with open(image, "wb") as f:
            f.truncate(IMAGE_SIZE)
        os.mkdir(mnt)
        _run("mkfs.xfs", "-q", "-m", "reflink=1", image)
        _run("mount", "-o", "loop", "-t", "xfs", image, mnt)
        mounted = True
        yield mnt
    finally:
        if mounted:
            if _run("umount", mnt, check=False).returncode != 0:
                # Something still holds a file open: do not leave the mount behind.
                _run("umount", "-l", mnt, check=False)
        _detach_loops(image)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def xfs_dir():
    with _xfs_mount() as mnt:
        info = _run("xfs_info", mnt).stdout
        assert re.search(r"\breflink=1\b", info), info
        yield mnt


@pytest.fixture(scope="module")
def agent(xfs_dir):
    # Depends on xfs_dir so that the agent (and every file it holds open)
    # is gone before the file system is unmounted.
    with running_agent() as agent:
        yield agent


@pytest.fixture
def client(agent):
    with agent.client() as c:
        yield c


@pytest.fixture
def volume_dir(xfs_dir):
    path = tempfile.mkdtemp(prefix="vols-", dir=xfs_dir)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _backend(client, volume_dir, reflink):
    return manager.load_backend("file", client, volume_dir=volume_dir, reflink=reflink)


@pytest.fixture
def backend(client, volume_dir):
    be = _backend(client, volume_dir, reflink=True)
    yield be
    for name in os.listdir(volume_dir):
        be.unexport(name)


def _used(path):
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _extents(path):
    """[(length_in_blocks, flags)] of ``path`` from ``filefrag -v``."""
    out = _run("filefrag", "-v", path).stdout
    extents = []
    for line in out.splitlines():
        m = re.match(r"^\s*\d+:\s+\d+\.\.\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+):\s*(?:\d+:)?\s*(.*)$",
                     line)
        if m:
            extents.append((int(m.group(1)), m.group(2)))
    assert extents, out
    return extents


def _shared_bytes(path):
    block = os.statvfs(path).f_bsize
    return sum(n for n, flags in _extents(path) if "shared" in flags.split(",")) * block


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(path, length=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = os.fstat(f.fileno()).st_size if length is None else length
        while left:
            buf = f.read(min(4 * MiB, left))
            assert buf
            h.update(buf)
            left -= len(buf)
    return h.hexdigest()


def _fill(path, size):
    """Write every byte of ``path`` (no hole left) and make it durable."""
    with open(path, "r+b") as f:
        for offset in range(0, size, 4 * MiB):
            f.write(os.urandom(min(4 * MiB, size - offset)))
        f.flush()
        os.fsync(f.fileno())


def _methods(caplog):
    return [r.getMessage().rsplit(" ", 1)[-1] for r in caplog.records if r.name == LOGGER]


def test_snapshot_and_clone_share_extents(backend, volume_dir, client, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    src = os.path.join(volume_dir, "volume-src")
    backend.create("volume-src", VOLUME_SIZE)
    backend.export("volume-src")
    _fill(src, VOLUME_SIZE)
    assert _shared_bytes(src) == 0
    src_digest = _digest(src)

    used = _used(volume_dir)
    backend.create_snapshot("volume-src", "snapshot-1")
    backend.clone("volume-src", "volume-clone", VOLUME_SIZE + 32 * MiB)
    backend.create_from_snapshot("snapshot-1", "volume-restored", VOLUME_SIZE)
    # Three 64 MiB copies: a real copy would use 192 MiB more.
    assert _used(volume_dir) - used < SHARED_SLACK
    assert _methods(caplog) == ["reflink", "reflink", "reflink"], caplog.text

    for name in ("volume-src", "snapshot-1", "volume-clone", "volume-restored"):
        path = os.path.join(volume_dir, name)
        assert _shared_bytes(path) == VOLUME_SIZE, _run("filefrag", "-v", path).stdout
        assert _digest(path, VOLUME_SIZE) == src_digest

    # The clone grew past the source: the tail is a hole that reads zeroes.
    clone = os.path.join(volume_dir, "volume-clone")
    assert backend.size("volume-clone") == VOLUME_SIZE + 32 * MiB
    with open(clone, "rb") as f:
        f.seek(VOLUME_SIZE)
        assert f.read() == bytes(32 * MiB)
    assert os.stat(clone).st_blocks * 512 <= VOLUME_SIZE

    # The copies serve through the agent like any volume.
    for name in ("snapshot-1", "volume-clone", "volume-restored"):
        assert backend.export(name)["name"] == name


def test_writing_the_clone_leaves_the_source_alone(backend, volume_dir, client, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    src = os.path.join(volume_dir, "volume-a")
    clone = os.path.join(volume_dir, "volume-b")
    backend.create("volume-a", VOLUME_SIZE)
    _fill(src, VOLUME_SIZE)
    backend.create_snapshot("volume-a", "snapshot-a")
    backend.clone("volume-a", "volume-b", VOLUME_SIZE)
    assert _methods(caplog) == ["reflink", "reflink"], caplog.text
    src_digest = _digest(src)
    with open(src, "rb") as f:
        f.seek(8 * MiB)
        old = f.read(MiB)

    # A guest's write to the clone, through the agent's vhost-user-blk path.
    new = os.urandom(MiB)
    assert new != old
    backend.export("volume-b")
    with vhost_io.served(client, "volume-b") as fe:
        vhost_io.write(fe, 8 * MiB, new)
        assert vhost_io.read(fe, 8 * MiB, MiB) == new
    _fsync(clone)

    with open(clone, "rb") as f:
        f.seek(8 * MiB)
        assert f.read(MiB) == new
    assert _digest(src) == src_digest
    assert _digest(os.path.join(volume_dir, "snapshot-a")) == src_digest
    # Copy on write: the rewritten MiB is the clone's own, the rest stays shared.
    assert _shared_bytes(clone) == VOLUME_SIZE - MiB, _run("filefrag", "-v", clone).stdout

    # And the other way round: the source moving on does not reach the copies.
    with open(src, "r+b") as f:
        f.seek(0)
        f.write(b"\xa5" * MiB)
        os.fsync(f.fileno())
    with open(clone, "rb") as f:
        assert f.read(MiB) != b"\xa5" * MiB
    assert _digest(os.path.join(volume_dir, "snapshot-a")) == src_digest


def test_copy_without_reflink_really_copies(client, volume_dir, caplog):
    """Control: the same measurements catch a copy that shares nothing."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    backend = _backend(client, volume_dir, reflink=False)
    src = os.path.join(volume_dir, "volume-c")
    backend.create("volume-c", VOLUME_SIZE)
    _fill(src, VOLUME_SIZE)
    used = _used(volume_dir)
    backend.clone("volume-c", "volume-d", VOLUME_SIZE)
    assert _methods(caplog) == ["copy"], caplog.text
    assert _used(volume_dir) - used >= VOLUME_SIZE
    assert _shared_bytes(os.path.join(volume_dir, "volume-d")) == 0
    assert _digest(os.path.join(volume_dir, "volume-d")) == _digest(src)
