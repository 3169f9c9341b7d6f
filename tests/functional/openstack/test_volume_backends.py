"""Volume backends against a real spdk-backend-agent."""

import os

import pytest

from spdk_backend import exception
from spdk_backend.volume import manager
from tests.support.openstack_agent import running_agent

MiB = 1 << 20


@pytest.fixture(scope="module")
def agent():
    with running_agent() as agent:
        yield agent


@pytest.fixture
def client(agent):
    with agent.client() as c:
        yield c


@pytest.fixture
def file_backend(client, tmp_path):
    backend = manager.load_backend("file", client, volume_dir=str(tmp_path))
    yield backend
    for name in os.listdir(tmp_path):
        backend.unexport(name)


def test_export_is_idempotent_and_exact(file_backend, client):
    file_backend.create("volume-1", 4 * MiB)
    file_backend.create("volume-10", 8 * MiB)
    bdev = file_backend.export("volume-1")
    assert bdev["name"] == "volume-1" and bdev["num_blocks"] == 4 * MiB // 512
    assert file_backend.export("volume-1")["uuid"] == bdev["uuid"]
    # "volume-1" is a prefix of "volume-10": each is found by its own name only.
    assert file_backend.get_bdev("volume-10") is None
    assert file_backend.export("volume-10")["num_blocks"] == 8 * MiB // 512
    assert file_backend.get_bdev("volume-1")["num_blocks"] == 4 * MiB // 512


def test_export_recreates_a_lost_bdev(file_backend, client):
    file_backend.create("volume-2", 4 * MiB)
    file_backend.export("volume-2")
    client.call("bdev_uring_delete", name="volume-2")  # what a state loss looks like
    assert file_backend.get_bdev("volume-2") is None
    assert file_backend.export("volume-2")["name"] == "volume-2"


def test_export_of_missing_volume(file_backend):
    with pytest.raises(exception.NotFound):
        file_backend.export("volume-missing")


def test_extend_exported_volume_rescans(file_backend):
    file_backend.create("volume-3", 4 * MiB)
    file_backend.export("volume-3")
    file_backend.extend("volume-3", 12 * MiB)
    assert file_backend.get_bdev("volume-3")["num_blocks"] == 12 * MiB // 512
    with pytest.raises(exception.InvalidInput):
        file_backend.extend("volume-3", 4 * MiB)


def test_delete_unexports_and_tolerates_missing(file_backend, tmp_path):
    file_backend.create("volume-4", 4 * MiB)
    file_backend.export("volume-4")
    file_backend.delete("volume-4")
    assert file_backend.get_bdev("volume-4") is None
    assert not (tmp_path / "volume-4").exists()
    file_backend.delete("volume-4")


def test_delete_of_volume_in_use_is_busy(file_backend, client):
    file_backend.create("volume-5", 4 * MiB)
    file_backend.export("volume-5")
    client.call("vhost_create_blk_controller", ctrlr="busy5", dev_name="volume-5")
    try:
        with pytest.raises(exception.Busy) as info:
            file_backend.delete("volume-5")
        assert "busy5" in str(info.value)
        with pytest.raises(exception.Busy):
            file_backend.unexport("volume-5")
        assert file_backend.get_bdev("volume-5") is not None
        assert file_backend.exists("volume-5")
    finally:
        client.call("vhost_delete_controller", ctrlr="busy5")
    file_backend.delete("volume-5")


def test_snapshot_of_exported_volume(file_backend, tmp_path):
    file_backend.create("volume-6", 4 * MiB)
    file_backend.export("volume-6")
    with open(tmp_path / "volume-6", "r+b") as f:
        f.write(b"s" * 512)
    file_backend.create_snapshot("volume-6", "snapshot-6")
    assert (tmp_path / "snapshot-6").read_bytes()[:512] == b"s" * 512


def test_malloc_backend(client):
    backend = manager.load_backend("malloc", client)
    backend.check()
    backend.create("volume-m", 2 * MiB)
    try:
        assert backend.exists("volume-m")
        assert backend.size("volume-m") == 2 * MiB
        assert backend.export("volume-m")["name"] == "volume-m"
        assert backend.provisioned_bytes() >= 2 * MiB
        with pytest.raises(exception.InvalidInput):
            backend.create_snapshot("volume-m", "snapshot-m")
    finally:
        backend.delete("volume-m")
    assert not backend.exists("volume-m")
    backend.delete("volume-m")
