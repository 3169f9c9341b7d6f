"""SpdkVhostDriver with the rbd backend: real cinder, a real agent, a real Ceph.

Volumes, snapshots and clones go through the Cinder driver; data goes
through the agent's rbd bdev behind a vhost-user-blk controller (what a
guest does) and is read back from the clones, through the agent and with
``rbd export``.
"""

import json
import os
import uuid
import warnings

import pytest

warnings.simplefilter("ignore", DeprecationWarning)

from cinder import context  # noqa: E402
from cinder import exception as cinder_exception  # noqa: E402
from cinder import objects  # noqa: E402
from cinder.tests.unit import fake_snapshot  # noqa: E402
from cinder.tests.unit import fake_volume  # noqa: E402
from cinder.volume import configuration  # noqa: E402
from cinder.volume import driver as cinder_driver  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

from spdk_backend.cinder import driver  # noqa: E402
from tests.support import vhost_io  # noqa: E402
from tests.support.openstack_agent import running_agent  # noqa: E402

pytestmark = pytest.mark.timeout(300)
objects.register_all()
GiB = 1 << 30
MiB = 1 << 20
BACKEND = "spdk-rbd"


@pytest.fixture(scope="module")
def agent():
    with running_agent() as agent:
        yield agent


@pytest.fixture
def client(agent):
    with agent.client() as c:
        yield c


@pytest.fixture
def conf():
    fixture = config_fixture.Config(cfg.CONF)
    fixture.setUp()
    yield fixture
    fixture.cleanUp()


@pytest.fixture
def ctx():
    return context.get_admin_context()


def _make_driver(conf, agent, ceph_cluster, **options):
    config = configuration.Configuration(cinder_driver.volume_opts, config_group=BACKEND)
    drv = driver.SpdkVhostDriver(configuration=config, host="host1@%s" % BACKEND)
    opts = {"spdk_vhost_agent_socket": agent.rpc_socket,
            "spdk_vhost_volume_backend": "rbd",
            "spdk_vhost_rbd_pool": ceph_cluster.pool,
            "spdk_vhost_rbd_ceph_conf": ceph_cluster.conf,
            "spdk_vhost_rbd_keyring": ceph_cluster.keyring,
            "volume_backend_name": "ceph-vhost"}
    opts.update(options)
    conf.config(group=BACKEND, **opts)
    drv.do_setup(None)
    drv.check_for_setup_error()
    return drv


@pytest.fixture
def drv(conf, agent, ceph_cluster):
    d = _make_driver(conf, agent, ceph_cluster)
    yield d
    d.backend.close()
    d.client.close()


def _volume(ctx, size=1, **kw):
    kw.setdefault("id", str(uuid.uuid4()))
    return fake_volume.fake_volume_obj(ctx, size=size, **kw)


def _snapshot(ctx, volume):
    return fake_snapshot.fake_snapshot_obj(ctx, id=str(uuid.uuid4()), volume_id=volume.id,
                                           volume=volume, volume_size=volume.size)


def _images(ceph_cluster):
    return set(json.loads(ceph_cluster.rbd("ls", "--format", "json", ceph_cluster.pool)))


def _export(ceph_cluster, image, path, offset, length):
    """Bytes of ``image`` at ``offset`` as ``rbd export`` writes them."""
    ceph_cluster.rbd("export", "--no-progress", "%s/%s" % (ceph_cluster.pool, image), path)
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)
    finally:
        os.unlink(path)


def test_options_select_and_configure_the_rbd_backend(drv, ceph_cluster):
    names = {o.name for o in driver.SpdkVhostDriver.get_driver_options()}
    assert {"spdk_vhost_rbd_pool", "spdk_vhost_rbd_ceph_conf", "spdk_vhost_rbd_user",
            "spdk_vhost_rbd_keyring", "spdk_vhost_rbd_cluster_name"} <= names
    be = drv.backend
    assert be.name == "rbd" and be.pool == ceph_cluster.pool
    assert be.ceph_conf == ceph_cluster.conf and be.keyring == ceph_cluster.keyring
    assert be.user_id == "admin" and be.cluster_name is None


def test_missing_pool_fails_the_setup_check(conf, agent, ceph_cluster):
    with pytest.raises(cinder_exception.VolumeBackendAPIException) as info:
        _make_driver(conf, agent, ceph_cluster, spdk_vhost_rbd_pool="nosuchpool")
    assert "nosuchpool" in str(info.value)


def test_volume_lifecycle_and_connection(drv, ctx, client, ceph_cluster):
    vol = _volume(ctx)
    name = "volume-%s" % vol.id
    drv.create_volume(vol)
    assert name in _images(ceph_cluster)
    drv.create_export(ctx, vol, {"host": "h"})
    info = drv.initialize_connection(vol, {"host": "h"})
    assert info["driver_volume_type"] == "vhost_user_blk"
    data = info["data"]
    # Everything another host needs to serve the image: pool, image, and the
    # cluster (user, files) to register first; SPDK's bdev_rbd_create names
    # a cluster, never the files.
    cluster = drv.backend.agent_cluster_name
    assert cluster.startswith("spdk-backend-")
    assert data["bdev"] == {"method": "bdev_rbd_create",
                            "params": {"name": name, "pool_name": ceph_cluster.pool,
                                       "rbd_name": name, "block_size": 512,
                                       "cluster_name": cluster}}
    assert data["bdev_requires"] == [{
        "method": "bdev_rbd_register_cluster",
        "params": {"name": cluster, "user_id": "admin", "config_file": ceph_cluster.conf,
                   "key_file": ceph_cluster.keyring}}]
    assert data["rbd"] == {"pool": ceph_cluster.pool, "image": name, "user_id": "admin",
                           "cluster_name": cluster}
    assert data["num_blocks"] * data["block_size"] == GiB
    (bdev,) = client.call("bdev_get_bdevs", name=name)
    rbd = bdev["driver_specific"]["rbd"]
    assert (rbd["pool_name"], rbd["rbd_name"]) == (ceph_cluster.pool, name)

    drv.extend_volume(vol, 2)
    (bdev,) = client.call("bdev_get_bdevs", name=name)
    assert bdev["num_blocks"] * bdev["block_size"] == 2 * GiB
    info = ceph_cluster.rbd("info", "--format", "json", "%s/%s" % (ceph_cluster.pool, name))
    assert json.loads(info)["size"] == 2 * GiB

    drv.remove_export(ctx, vol)
    assert name not in {b["name"] for b in client.call("bdev_get_bdevs")}
    drv.delete_volume(vol)
    assert name not in _images(ceph_cluster)
    drv.delete_volume(vol)  # already gone: fine


def test_snapshot_and_clones_hold_the_data_written_through_the_bdev(
        drv, ctx, client, ceph_cluster, short_tmp):
    src = _volume(ctx)
    src_name = "volume-%s" % src.id
    drv.create_volume(src)
    drv.create_export(ctx, src, {"host": "h"})
    old, new = os.urandom(256 * 1024), os.urandom(256 * 1024)
    off = 3 * MiB + 4096

    with vhost_io.served(client, src_name) as fe:
        vhost_io.write(fe, off, old)
        snap = _snapshot(ctx, src)
        # Taken while the agent holds the image open (and its exclusive lock).
        drv.create_snapshot(snap)
        vhost_io.write(fe, off, new)
        assert vhost_io.read(fe, off, len(new)) == new

    from_snap, clone = _volume(ctx, size=2), _volume(ctx)
    drv.create_volume_from_snapshot(from_snap, snap)
    drv.create_cloned_volume(clone, src)
    snap_vol_name = "volume-%s" % from_snap.id
    clone_name = "volume-%s" % clone.id

    # Copy-on-write children of the source image, nothing copied.
    for child, snap_name in ((snap_vol_name, "snapshot-%s" % snap.id),
                             (clone_name, "clone-%s" % clone_name)):
        info = json.loads(ceph_cluster.rbd("info", "--format", "json",
                                           "%s/%s" % (ceph_cluster.pool, child)))
        assert info["parent"]["image"] == src_name
        assert info["parent"]["snapshot"] == snap_name
    assert json.loads(ceph_cluster.rbd(
        "info", "--format", "json", "%s/%s" % (ceph_cluster.pool, snap_vol_name)))[
            "size"] == 2 * GiB

    # The data, as the storage has it and as the agent serves it.
    path = os.path.join(short_tmp, "export")
    assert _export(ceph_cluster, snap_vol_name, path, off, len(old)) == old
    assert _export(ceph_cluster, clone_name, path, off, len(new)) == new
    drv.create_export(ctx, from_snap, {"host": "h"})
    with vhost_io.served(client, snap_vol_name) as fe:
        assert vhost_io.read(fe, off, len(old)) == old
        # The child is writable and its writes stay its own.
        vhost_io.write(fe, 0, new[:4096])
    assert _export(ceph_cluster, src_name, path, 0, 4096) != new[:4096]

    # A snapshot with children cannot go; once they are gone it can.
    with pytest.raises((cinder_exception.VolumeIsBusy, cinder_exception.SnapshotIsBusy)):
        drv.delete_snapshot(snap)
    drv.remove_export(ctx, from_snap)
    drv.delete_volume(from_snap)
    drv.delete_snapshot(snap)
    drv.delete_snapshot(snap)  # already gone: fine
    drv.delete_volume(clone)  # takes its clone- snapshot of the source along
    drv.remove_export(ctx, src)
    drv.delete_volume(src)
    assert not _images(ceph_cluster) & {src_name, snap_vol_name, clone_name}


def test_delete_of_a_served_volume_is_busy(drv, ctx, client):
    vol = _volume(ctx)
    name = "volume-%s" % vol.id
    drv.create_volume(vol)
    drv.create_export(ctx, vol, {"host": "h"})
    with vhost_io.served(client, name):
        with pytest.raises(cinder_exception.VolumeIsBusy):
            drv.delete_volume(vol)
    drv.delete_volume(vol)


def test_named_cluster_is_registered_and_handed_to_the_compute_host(
        conf, agent, client, ctx, ceph_cluster):
    d = _make_driver(conf, agent, ceph_cluster, spdk_vhost_rbd_cluster_name="ceph-t")
    vol = _volume(ctx)
    name = "volume-%s" % vol.id
    try:
        d.create_volume(vol)
        d.create_export(ctx, vol, {"host": "h"})
        clusters = {c["cluster_name"] for c in client.call("bdev_rbd_get_clusters_info")}
        assert "ceph-t" in clusters
        (bdev,) = client.call("bdev_get_bdevs", name=name)
        assert bdev["driver_specific"]["rbd"]["cluster_name"] == "ceph-t"
        data = d.initialize_connection(vol, {"host": "h"})["data"]
        assert data["bdev"]["params"]["cluster_name"] == "ceph-t"
        assert "config_file" not in data["bdev"]["params"]
        assert data["bdev_requires"] == [{
            "method": "bdev_rbd_register_cluster",
            "params": {"name": "ceph-t", "user_id": "admin",
                       "config_file": ceph_cluster.conf,
                       "key_file": ceph_cluster.keyring}}]
        assert data["rbd"]["cluster_name"] == "ceph-t"
        # A second export (another volume) finds the cluster registered.
        d.ensure_export(ctx, vol)
    finally:
        d.remove_export(ctx, vol)
        d.delete_volume(vol)
        client.call("bdev_rbd_unregister_cluster", name="ceph-t")
        d.backend.close()
        d.client.close()


def test_ceph_errors_become_cinder_errors(drv, ctx, ceph_cluster):
    vol = _volume(ctx)
    drv.create_volume(vol)
    snap = _snapshot(ctx, vol)
    # The RBD snapshot exists behind the driver's back: librbd says EEXIST.
    ceph_cluster.rbd("snap", "create", "%s/volume-%s@snapshot-%s"
                     % (ceph_cluster.pool, vol.id, snap.id))
    with pytest.raises(cinder_exception.VolumeBackendAPIException) as info:
        drv.create_snapshot(snap)
    assert "snapshot-%s" % snap.id in str(info.value)
    assert "exists" in str(info.value).lower()
    drv.delete_volume(vol)  # its snapshots go with it
    assert "volume-%s" % vol.id not in _images(ceph_cluster)
