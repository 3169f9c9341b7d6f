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
    drv.create_export(ctx, vol, {"host": "h", "vhost_user_blk": True})
    info = drv.initialize_connection(vol, {"host": "h", "vhost_user_blk": True})
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
    drv.create_export(ctx, src, {"host": "h", "vhost_user_blk": True})
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
    drv.create_export(ctx, from_snap, {"host": "h", "vhost_user_blk": True})
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
    drv.create_export(ctx, vol, {"host": "h", "vhost_user_blk": True})
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
        d.create_export(ctx, vol, {"host": "h", "vhost_user_blk": True})
        clusters = {c["cluster_name"] for c in client.call("bdev_rbd_get_clusters_info")}
        assert "ceph-t" in clusters
        (bdev,) = client.call("bdev_get_bdevs", name=name)
        assert bdev["driver_specific"]["rbd"]["cluster_name"] == "ceph-t"
        data = d.initialize_connection(vol, {"host": "h", "vhost_user_blk": True})["data"]
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


# -- Cinder's own data paths: os-brick's rbd connector, images ---------------------------


@pytest.fixture
def in_process_privileges():
    from tests.support import cinder_services

    with cinder_services.privileges_in_process():
        yield


@pytest.fixture
def brick_rbd(ceph_cluster, monkeypatch):
    """os-brick's rbd connector as on a cinder-volume host of this cluster.

    That host's Python has python3-rados and python3-rbd (this venv has
    not: os-brick gets the system's modules the backend loaded) and
    /etc/ceph/ceph.client.<user>.keyring, where os-brick reads the keyring
    (here: the test cluster's keyring file).
    """
    from os_brick.initiator import linuxrbd
    from os_brick.initiator.connectors import rbd as brick_rbd_connector

    from spdk_backend.volume.backends import rbd as rbd_backend

    rados_mod, rbd_mod = rbd_backend.import_ceph()
    monkeypatch.setattr(linuxrbd, "rados", rados_mod)
    monkeypatch.setattr(linuxrbd, "rbd", rbd_mod)
    read_keyring = brick_rbd_connector.RBDConnector._check_or_get_keyring_contents

    def keyring(keyring, cluster_name, user):
        if keyring is None:
            assert (cluster_name, user) == ("ceph", "admin")
            with open(ceph_cluster.keyring) as f:
                return f.read()
        return read_keyring(keyring, cluster_name, user)

    monkeypatch.setattr(brick_rbd_connector.RBDConnector, "_check_or_get_keyring_contents",
                        staticmethod(keyring))


def test_other_connectors_get_os_brick_rbd_info(drv, ctx, client, ceph_cluster,
                                                in_process_privileges, brick_rbd):
    """A connector without the vhost_user_blk flag (cinder-volume or
    cinder-backup moving data) gets Cinder's RBD connection info, which
    os-brick's own rbd connector opens with librbd."""
    import socket

    from cinder.volume import volume_utils

    vol = _volume(ctx)
    name = "volume-%s" % vol.id
    drv.create_volume(vol)
    data = os.urandom(128 * 1024)
    drv.create_export(ctx, vol, {"host": "h", "vhost_user_blk": True})
    with vhost_io.served(client, name) as fe:
        vhost_io.write(fe, MiB, data)
    drv.remove_export(ctx, vol)

    other = drv.initialize_connection(vol, {"host": "elsewhere"})
    assert other["driver_volume_type"] == "rbd"
    info = other["data"]
    assert info["name"] == "%s/%s" % (ceph_cluster.pool, name)
    # The monitor's v1 address, as Cinder's RBD driver hands it out.
    assert (info["hosts"], info["ports"]) == (["127.0.0.1"], [str(ceph_cluster.mon_ports[1])])
    assert info["auth_username"] == "admin" and info["cluster_name"] == "ceph"
    # Never the keyring (any caller of initialize_connection would get it),
    # not even for this host's own connector.
    own = drv.initialize_connection(vol, {"host": socket.gethostname()})["data"]
    assert "keyring" not in info and "keyring" not in own
    assert drv.backend.get_bdev(name) is None  # no agent bdev for os-brick

    brick = volume_utils.brick_get_connector("rbd")
    device = brick.connect_volume(own)
    try:
        handle = device["path"]
        assert brick.check_valid_device(handle)
        handle.seek(MiB)
        assert handle.read(len(data)) == data
    finally:
        brick.disconnect_volume(own, device)
    drv.delete_volume(vol)


def _image_service():
    from cinder.tests.unit.image import fake as fake_image

    class ImageService(fake_image._FakeImageService):
        """Cinder's fake, keeping what an upload streams (its update drops it)."""

        uploads = {}

        def update(self, context, image_id, metadata, data=None, **kwargs):
            image = super().update(context, image_id, metadata, **kwargs)
            if data is not None:
                self.uploads[image_id] = b"".join(iter(lambda: data.read(MiB), b""))
            return image

    service = ImageService()
    service.temp_images = None  # a MagicMock in the fake: use Cinder's real cache
    return service


def test_image_copies_both_ways(drv, ctx, conf, client, ceph_cluster, tmp_path,
                                in_process_privileges):
    """Glance image -> rbd volume -> Glance image, each byte checked: in
    the volume through the agent (what the guest booted from the volume
    reads) and with ``rbd export``, in the upload as streamed."""
    import io

    conf.config(image_conversion_dir=str(tmp_path / "conversion"))
    service = _image_service()
    payload = os.urandom(MiB) + b"\0" * (3 * MiB) + b"tail" * 1024
    image = service.create(ctx, {"name": "img", "disk_format": "raw",
                                 "container_format": "bare", "size": len(payload),
                                 "status": "active"}, data=io.BytesIO(payload))
    vol = _volume(ctx, size=1)
    name = "volume-%s" % vol.id
    drv.create_volume(vol)
    drv.copy_image_to_volume(ctx, vol, service, image["id"])
    assert drv.backend.size(name) == GiB
    assert _export(ceph_cluster, name, str(tmp_path / "e"), 0, len(payload)) == payload
    drv.create_export(ctx, vol, {"host": "h", "vhost_user_blk": True})
    with vhost_io.served(client, name) as fe:
        assert vhost_io.read(fe, 0, len(payload)) == payload
        assert vhost_io.read(fe, 512 * MiB, 4096) == b"\0" * 4096
        vhost_io.write(fe, 700 * MiB, b"late" * 1024)
    drv.remove_export(ctx, vol)
    # Thin: the image's zero run and the rest of the volume hold no objects.
    du = json.loads(ceph_cluster.rbd("du", "--format", "json",
                                     "%s/%s" % (ceph_cluster.pool, name)))
    assert du["images"][0]["used_size"] <= 12 * MiB

    vol.volume_type = fake_volume.fake_volume_type_obj(ctx)
    vol.glance_metadata = {}  # loaded from the database in a real cinder-volume
    meta = service.create(ctx, {"name": "from-volume", "disk_format": "raw",
                                "container_format": "bare"})
    drv.copy_volume_to_image(ctx, vol, service, meta)
    uploaded = service.uploads[meta["id"]]
    assert len(uploaded) == GiB
    assert uploaded[:len(payload)] == payload
    assert uploaded[700 * MiB:700 * MiB + 4096] == b"late" * 1024
    assert uploaded.count(0, len(payload), 700 * MiB) == 700 * MiB - len(payload)
    assert not os.listdir(tmp_path / "conversion")  # temporary files removed
    drv.delete_volume(vol)


def _glance_image(ceph_cluster, tmp_path, payload):
    """An image as Glance's RBD store keeps it: ``<pool>/<id>@snap``, protected."""
    image_id = str(uuid.uuid4())
    src = tmp_path / "glance.raw"
    src.write_bytes(payload)
    spec = "%s/%s" % (ceph_cluster.pool, image_id)
    ceph_cluster.rbd("import", "--no-progress", str(src), spec)
    ceph_cluster.rbd("snap", "create", spec + "@snap")
    ceph_cluster.rbd("snap", "protect", spec + "@snap")
    return image_id, "rbd://%s/%s/%s/snap" % (ceph_cluster.fsid, ceph_cluster.pool, image_id)


def _remove_glance_image(ceph_cluster, image_id):
    spec = "%s/%s" % (ceph_cluster.pool, image_id)
    ceph_cluster.rbd("snap", "unprotect", spec + "@snap")
    ceph_cluster.rbd("snap", "rm", spec + "@snap")
    ceph_cluster.rbd("rm", "--no-progress", spec)


def test_clone_image_from_the_same_cluster(drv, ctx, client, ceph_cluster, tmp_path):
    """Boot from image on rbd: the volume is a copy-on-write clone of the
    Glance image's snapshot, nothing copied, and the guest reads the image."""
    payload = os.urandom(2 * MiB)
    image_id, url = _glance_image(ceph_cluster, tmp_path, payload)
    service = _image_service()
    raw = {"id": image_id, "disk_format": "raw", "container_format": "bare"}
    try:
        # Not cloneable: another cluster, another format, no location.
        vol = _volume(ctx, size=1)
        other = url.replace(ceph_cluster.fsid, str(uuid.uuid4()))
        assert drv.clone_image(ctx, vol, (other, None), raw, service) == ({}, False)
        assert drv.clone_image(ctx, vol, (url, None), dict(raw, disk_format="qcow2"),
                               service) == ({}, False)
        assert drv.clone_image(ctx, vol, (None, None), raw, service) == ({}, False)
        missing = url.replace(image_id, str(uuid.uuid4()))
        assert drv.clone_image(ctx, vol, (missing, None), raw, service) == ({}, False)
        assert "volume-%s" % vol.id not in _images(ceph_cluster)

        # Glance's locations list (show_multiple_locations) wins over direct_url.
        update, cloned = drv.clone_image(
            ctx, vol, (other, [{"url": other, "metadata": {}}, {"url": url, "metadata": {}}]),
            raw, service)
        assert cloned and update == {"provider_location": None}
        name = "volume-%s" % vol.id
        info = json.loads(ceph_cluster.rbd("info", "--format", "json",
                                           "%s/%s" % (ceph_cluster.pool, name)))
        assert info["parent"]["image"] == image_id and info["parent"]["snapshot"] == "snap"
        assert info["size"] == GiB
        drv.create_export(ctx, vol, {"host": "h", "vhost_user_blk": True})
        with vhost_io.served(client, name) as fe:
            assert vhost_io.read(fe, 0, len(payload)) == payload
            vhost_io.write(fe, 0, b"\1" * 4096)
        drv.remove_export(ctx, vol)
        drv.delete_volume(vol)
        # The image is untouched by the clone's writes and its deletion.
        assert _export(ceph_cluster, image_id, str(tmp_path / "e"), 0, 4096) == payload[:4096]
    finally:
        _remove_glance_image(ceph_cluster, image_id)


def test_stats_report_location_and_state(drv, ceph_cluster):
    stats = drv.get_volume_stats(refresh=True)
    assert stats["storage_protocol"] == "vhost-user-blk"
    assert stats["backend_state"] == "up"
    assert stats["location_info"] == "rbd:%s:%s" % (ceph_cluster.fsid, ceph_cluster.pool)
    assert stats["pools"][0]["location_info"] == stats["location_info"]


def test_cinder_data_paths_on_rbd(conf, agent, client, ceph_cluster, tmp_path, monkeypatch,
                                  brick_rbd):
    """Cinder's own data paths (tests/support/cinder_services.py) with rbd
    volumes, through os-brick's rbd connector (librbd): Cinder's
    BackupManager backing up an attached, written rbd volume (a temporary
    clone: os-brick's rbd connector cannot open a snapshot, so the driver
    declines backup_use_temp_snapshot) restored into a file volume, the
    generic revert to snapshot, and VolumeManager.migrate_volume rbd ->
    file and retype file -> rbd with the generic host-assisted migration."""
    from cinder import exception as cinder_exception
    from cinder.volume import volume_types

    from tests.support import cinder_services

    voldir = tmp_path / "files"
    voldir.mkdir()
    backends = {
        "ceph-a": {"spdk_vhost_agent_socket": agent.rpc_socket,
                   "spdk_vhost_volume_backend": "rbd",
                   "spdk_vhost_rbd_pool": ceph_cluster.pool,
                   "spdk_vhost_rbd_ceph_conf": ceph_cluster.conf,
                   "spdk_vhost_rbd_keyring": ceph_cluster.keyring,
                   "backup_use_temp_snapshot": True},
        "file-b": {"spdk_vhost_agent_socket": agent.rpc_socket,
                   "spdk_vhost_volume_dir": str(voldir)},
    }
    before = _images(ceph_cluster)
    ctx = cinder_services.request_context()
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    with cinder_services.database(conf, tmp_path / "cinder.sqlite"), \
            cinder_services.privileges_in_process(), \
            cinder_services.running_managers(conf, monkeypatch, backends) as managers, \
            cinder_services.backup_manager(conf, managers, backup_dir) as bm:
        rbd_drv = managers["ceph-a"].driver
        assert rbd_drv.backup_use_temp_snapshot() is False
        vol = cinder_services.new_volume(ctx, managers, "ceph-a")
        snap = cinder_services.new_snapshot(ctx, managers, vol)
        with pytest.raises(cinder_exception.VolumeBackendAPIException) as info:
            rbd_drv.initialize_connection_snapshot(snap, {"host": "backup1"})
        assert "cannot attach snapshots" in str(info.value)
        rbd_drv.delete_snapshot(snap)
        cinder_services.delete_volume(managers, vol)

        seen, temps, left = cinder_services.backup_in_use(ctx, client, managers, bm,
                                                          "ceph-a", "file-b")
        for expected, read in seen:
            assert read == expected
        assert temps == {"volume": 1, "snapshot": 0} and not left
        assert bm.attached == ["rbd", "local"]  # read with librbd, restored into a file
        assert os.listdir(backup_dir)

        seen, temps, left = cinder_services.revert_generic(ctx, client, managers, "ceph-a")
        for expected, read in seen:
            assert read == expected
        assert len(temps) == 1 and not left

        to_rbd = volume_types.create(ctx.elevated(), "ceph-a",
                                     {"volume_backend_name": "ceph-a"})["id"]
        for src, dst, retype_to in (("ceph-a", "file-b", None), ("file-b", "ceph-a", to_rbd)):
            seen, vol, (temp,) = cinder_services.migrate_through_manager(
                ctx, client, managers, src, dst, retype_to=retype_to)
            for expected, read in seen:
                assert read == expected, (src, dst)
            assert (vol.status, vol.migration_status) == ("available", "success")
            assert vol.host == "host1@%s#%s" % (dst, dst) and vol.name_id == temp
            if retype_to:
                assert vol.volume_type_id == retype_to
            # The source's storage is gone, the destination's is the volume's.
            assert not managers[src].driver.backend.exists("volume-%s" % vol.id)
            assert managers[dst].driver.backend.exists("volume-%s" % temp)
            cinder_services.delete_volume(managers, vol)
    assert _images(ceph_cluster) == before
    assert not os.listdir(voldir)
