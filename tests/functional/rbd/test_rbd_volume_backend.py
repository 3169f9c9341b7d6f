"""The ``rbd`` volume backend: images, snapshots and clones as Ceph COW objects."""

import os

import pytest

from spdk_backend import exception
from spdk_backend.volume import manager
from spdk_backend.volume.backends import rbd as rbd_backend
from tests.support import agent_proc

MiB = 1 << 20


@pytest.fixture
def agent(base_dir):
    with agent_proc.AgentProcess(base_dir) as proc:
        yield proc


@pytest.fixture
def backend(agent, ceph_cluster):
    with agent.client() as client:
        be = manager.load_backend("rbd", client, block_size=512, pool=ceph_cluster.pool,
                                  ceph_conf=ceph_cluster.conf, keyring=ceph_cluster.keyring,
                                  volume_dir="/ignored", reflink=True)
        yield be
        be.close()


def write(backend, name, offset, data):
    """Write through another librbd client (the test's own)."""
    with backend._ioctx() as ioctx, backend._image(ioctx, name) as img:
        img.write(data, offset)
        img.flush()


def read(backend, name, offset, length):
    with backend._ioctx() as ioctx, backend._image(ioctx, name, read_only=True) as img:
        return img.read(offset, length)


def parent(backend, name):
    with backend._ioctx() as ioctx, backend._image(ioctx, name, read_only=True) as img:
        return backend._parent_of(img)


def test_python_bindings_load_in_this_interpreter():
    rados, rbd = rbd_backend.import_ceph()
    assert hasattr(rbd, "Image") and hasattr(rados, "Rados")
    assert rbd_backend.SYSTEM_DIST_PACKAGES not in __import__("sys").path


def test_volume_snapshot_clone_lifecycle(backend, agent, ceph_cluster):
    be = backend
    assert be.name == "rbd"
    be.check()
    be.create("vol-a", 64 * MiB)
    with pytest.raises(exception.AlreadyExists):
        be.create("vol-a", 64 * MiB)
    with pytest.raises(exception.InvalidInput):
        be.create("vol-odd", 1000)
    assert be.exists("vol-a") and not be.exists("vol-zz")
    assert be.size("vol-a") == 64 * MiB
    a1, a2 = os.urandom(MiB), os.urandom(MiB)
    write(be, "vol-a", 4 * MiB, a1)

    be.create_snapshot("vol-a", "snap-1")
    assert be.exists("snap-1")
    with pytest.raises(exception.AlreadyExists):
        be.create_snapshot("vol-a", "snap-1")
    write(be, "vol-a", 4 * MiB, a2)

    # From the snapshot: a COW child holding the old data, bigger than its parent.
    be.create_from_snapshot("snap-1", "vol-b", 96 * MiB)
    assert parent(be, "vol-b") == ("vol-a", "snap-1")
    assert be.size("vol-b") == 96 * MiB
    assert read(be, "vol-b", 4 * MiB, MiB) == a1
    # A clone of the volume: the current data, through a snapshot of its own.
    be.clone("vol-a", "vol-c", 64 * MiB)
    assert parent(be, "vol-c") == ("vol-a", "clone-vol-c")
    assert read(be, "vol-c", 4 * MiB, MiB) == a2
    with pytest.raises(exception.NotFound):
        be.create_from_snapshot("snap-none", "vol-d", 64 * MiB)

    # Served by the agent: an rbd bdev any host could create from the spec.
    spec = be.bdev_spec("vol-b")
    cluster = be.agent_cluster_name
    assert spec == {"method": "bdev_rbd_create",
                    "params": {"name": "vol-b", "pool_name": "rbd", "rbd_name": "vol-b",
                               "block_size": 512, "cluster_name": cluster}}
    # ... after the registration of the cluster it names (SPDK's
    # bdev_rbd_create takes no Ceph files).
    assert be.bdev_prerequisites("vol-b") == [
        {"method": "bdev_rbd_register_cluster",
         "params": {"name": cluster, "user_id": "admin", "config_file": ceph_cluster.conf,
                    "key_file": ceph_cluster.keyring}}]
    bdev = be.export("vol-b")
    assert bdev["module"] == "rbd" and bdev["num_blocks"] == 96 * MiB // 512
    assert be.export("vol-b")["uuid"] == bdev["uuid"]  # idempotent
    be.extend("vol-b", 128 * MiB)
    assert be.get_bdev("vol-b")["num_blocks"] == 128 * MiB // 512
    with pytest.raises(exception.InvalidInput):
        be.extend("vol-b", 64 * MiB)

    total, free = be.capacity()
    assert total > free > 0
    assert be.provisioned_bytes() >= (64 + 128 + 64 + 64 + 64) * MiB

    # The snapshot has a child: it stays until the child is gone.
    with pytest.raises(exception.Busy):
        be.delete_snapshot("snap-1")
    with agent.client() as c:
        c.call("vhost_create_blk_controller", ctrlr="vhost.b", dev_name="vol-b")
        with pytest.raises(exception.Busy):
            be.delete("vol-b")  # a guest may be using it
        c.call("vhost_delete_controller", ctrlr="vhost.b")
    be.delete("vol-b")
    assert be.get_bdev("vol-b") is None and not be.exists("vol-b")
    be.delete_snapshot("snap-1")
    assert not be.exists("snap-1")
    be.delete_snapshot("snap-1")  # gone already: fine
    be.delete("vol-c")  # also drops vol-a's clone-vol-c snapshot
    with be._ioctx() as ioctx, be._image(ioctx, "vol-a") as img:
        assert [s["name"] for s in img.list_snaps()] == []
    be.delete("vol-a")
    be.delete("vol-a")  # gone already: fine
    assert not be.exists("vol-a")
    assert "vol-" not in ceph_cluster.rbd("ls", "rbd")


def test_bad_configuration_is_reported(agent, ceph_cluster):
    with agent.client() as client:
        be = manager.load_backend("rbd", client, pool="no-such-pool",
                                  ceph_conf=ceph_cluster.conf)
        with pytest.raises(exception.ConfigurationError) as err:
            be.check()
        assert "no-such-pool" in str(err.value)
        be.close()
        be = manager.load_backend("rbd", client, ceph_conf="/nonexistent.conf",
                                  connect_timeout=3)
        with pytest.raises(exception.ConfigurationError) as err:
            be.check()
        assert "cannot connect" in str(err.value)
        be.close()
