"""FileBackend's storage side: sparse files, copies that never inflate."""

import errno
import os

import pytest

from spdk_backend import exception
from spdk_backend.volume.backends import file as file_backend

MiB = 1 << 20


def _allocated(path):
    return os.stat(path).st_blocks * 512


@pytest.fixture
def backend(tmp_path):
    # No agent: these tests only touch files (the agent side is in
    # tests/functional/openstack/test_volume_backends.py).
    return file_backend.FileBackend(None, volume_dir=str(tmp_path))


def test_create_is_sparse(backend, tmp_path):
    backend.create("volume-a", 64 * MiB)
    path = tmp_path / "volume-a"
    assert path.stat().st_size == 64 * MiB
    assert _allocated(path) == 0
    assert backend.exists("volume-a")
    assert backend.size("volume-a") == 64 * MiB


def test_create_twice_is_an_error(backend):
    backend.create("volume-a", MiB)
    with pytest.raises(exception.AlreadyExists):
        backend.create("volume-a", MiB)


@pytest.mark.parametrize("size", [0, -512, 1000])
def test_create_rejects_bad_sizes(backend, size):
    with pytest.raises(exception.InvalidInput):
        backend.create("volume-a", size)


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "", "-x", None])
def test_names_cannot_escape_the_directory(backend, name):
    with pytest.raises(exception.InvalidInput):
        backend.create(name, MiB)


def _write(path, offset, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def _read(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


@pytest.mark.parametrize("reflink", [True, False])
def test_snapshot_copies_data_and_keeps_holes(tmp_path, reflink):
    backend = file_backend.FileBackend(None, volume_dir=str(tmp_path), reflink=reflink)
    backend.create("volume-a", 256 * MiB)
    src = tmp_path / "volume-a"
    _write(src, 0, b"A" * 4096)
    _write(src, 100 * MiB, b"B" * 8192)
    _write(src, 256 * MiB - 4096, b"C" * 4096)
    backend.create_snapshot("volume-a", "snapshot-1")
    snap = tmp_path / "snapshot-1"
    assert snap.stat().st_size == 256 * MiB
    assert _read(snap, 0, 4096) == b"A" * 4096
    assert _read(snap, 100 * MiB, 8192) == b"B" * 8192
    assert _read(snap, 256 * MiB - 4096, 4096) == b"C" * 4096
    assert _read(snap, 50 * MiB, 4096) == b"\0" * 4096
    # Never inflated: far less than the apparent size is allocated.
    assert _allocated(snap) < 4 * MiB
    # A snapshot is independent of later writes to the volume.
    _write(src, 0, b"Z" * 4096)
    assert _read(snap, 0, 4096) == b"A" * 4096


def test_clone_and_volume_from_snapshot_can_be_larger(backend, tmp_path):
    backend.create("volume-a", 8 * MiB)
    _write(tmp_path / "volume-a", 4096, b"x" * 512)
    backend.clone("volume-a", "volume-b", 16 * MiB)
    assert backend.size("volume-b") == 16 * MiB
    assert _read(tmp_path / "volume-b", 4096, 512) == b"x" * 512
    backend.create_snapshot("volume-a", "snapshot-1")
    backend.create_from_snapshot("snapshot-1", "volume-c", 32 * MiB)
    assert backend.size("volume-c") == 32 * MiB
    assert _read(tmp_path / "volume-c", 4096, 512) == b"x" * 512
    assert _allocated(tmp_path / "volume-c") < 2 * MiB


def test_copy_refuses_to_shrink_and_leaves_nothing_behind(backend, tmp_path):
    backend.create("volume-a", 8 * MiB)
    with pytest.raises(exception.InvalidInput):
        backend.clone("volume-a", "volume-b", 4 * MiB)
    assert not (tmp_path / "volume-b").exists()


def test_copy_from_missing_source(backend):
    with pytest.raises(exception.NotFound):
        backend.create_from_snapshot("snapshot-gone", "volume-b", MiB)


def test_delete_snapshot_is_idempotent(backend):
    backend.create("volume-a", MiB)
    backend.create_snapshot("volume-a", "snapshot-1")
    backend.delete_snapshot("snapshot-1")
    backend.delete_snapshot("snapshot-1")
    assert not backend.exists("snapshot-1")


def test_capacity_and_provisioned(backend, tmp_path):
    backend.create("volume-a", 10 * MiB)
    backend.create("volume-b", 20 * MiB)
    (tmp_path / ".tmp-not-a-volume").write_bytes(b"x" * 100)
    assert backend.provisioned_bytes() == 30 * MiB
    total, free = backend.capacity()
    st = os.statvfs(tmp_path)
    assert total == st.f_blocks * st.f_frsize
    assert 0 < free <= total


def test_check(tmp_path):
    file_backend.FileBackend(None, volume_dir=str(tmp_path)).check()
    with pytest.raises(exception.ConfigurationError):
        file_backend.FileBackend(None, volume_dir=str(tmp_path / "missing")).check()
    with pytest.raises(exception.ConfigurationError):
        file_backend.FileBackend(None, volume_dir="")


def test_sparse_copy_falls_back_when_reflink_is_refused(tmp_path, monkeypatch):
    src = tmp_path / "src"
    with open(src, "wb") as f:
        f.truncate(4 * MiB)
    _write(src, MiB, b"d" * 4096)

    def refuse(fd, req, arg):
        raise OSError(errno.EOPNOTSUPP, "no reflink here")

    monkeypatch.setattr(file_backend.fcntl, "ioctl", refuse)
    assert file_backend.sparse_copy(str(src), str(tmp_path / "dst")) == "copy"
    assert _read(tmp_path / "dst", MiB, 4096) == b"d" * 4096


def test_sparse_copy_reports_what_it_did(tmp_path):
    # ext4 and tmpfs have no reflink: "copy"; XFS and btrfs: "reflink".
    src = tmp_path / "src"
    src.write_bytes(b"q" * 8192)
    how = file_backend.sparse_copy(str(src), str(tmp_path / "dst"))
    assert how in ("copy", "reflink")
    assert (tmp_path / "dst").read_bytes() == b"q" * 8192


def test_sparse_copy_real_errors_propagate(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.write_bytes(b"q" * 8192)

    def broken(fd, req, arg):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(file_backend.fcntl, "ioctl", broken)
    with pytest.raises(OSError):
        file_backend.sparse_copy(str(src), str(tmp_path / "dst"))
    assert not (tmp_path / "dst").exists()


def test_shared_volume_dir_makes_volumes_migratable(tmp_path):
    own = file_backend.FileBackend(None, volume_dir=str(tmp_path))
    assert not own.supports_live_migration()
    assert "shared" not in own.bdev_spec("v")["params"]
    shared = file_backend.FileBackend(None, volume_dir=str(tmp_path), shared=True)
    assert shared.supports_live_migration()
    assert shared.bdev_spec("v")["params"]["shared"] is True
