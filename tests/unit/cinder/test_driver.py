"""SpdkVhostDriver against the real cinder package and a real agent."""

import inspect
import os
import socket
import uuid
import warnings

import pytest

warnings.simplefilter("ignore", DeprecationWarning)

from cinder import context  # noqa: E402
from cinder import exception as cinder_exception  # noqa: E402
from cinder import interface  # noqa: E402
from cinder import objects  # noqa: E402
from cinder.interface import util as interface_util  # noqa: E402
from cinder.interface import volume_driver as volume_interface  # noqa: E402
from cinder.tests.unit import fake_snapshot  # noqa: E402
from cinder.tests.unit import fake_volume  # noqa: E402
from cinder.volume import configuration  # noqa: E402
from cinder.volume import driver as cinder_driver  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

from spdk_backend import exception  # noqa: E402
from spdk_backend.cinder import driver  # noqa: E402
from tests.support.openstack_agent import running_agent  # noqa: E402

objects.register_all()
GiB = 1 << 30
BACKEND = "spdk-1"


@pytest.fixture(scope="module")
def agent():
    with running_agent() as agent:
        yield agent


@pytest.fixture
def conf():
    fixture = config_fixture.Config(cfg.CONF)
    fixture.setUp()
    yield fixture
    fixture.cleanUp()


@pytest.fixture
def ctx():
    return context.get_admin_context()


def _make_driver(conf, **options):
    config = configuration.Configuration(cinder_driver.volume_opts, config_group=BACKEND)
    drv = driver.SpdkVhostDriver(configuration=config, host="host1@%s" % BACKEND)
    for key, value in options.items():
        conf.config(group=BACKEND, **{key: value})
    return drv


@pytest.fixture
def drv(conf, agent, tmp_path):
    d = _make_driver(conf, spdk_vhost_agent_socket=agent.rpc_socket,
                     spdk_vhost_volume_dir=str(tmp_path),
                     volume_backend_name="fast-vhost")
    d.do_setup(None)
    d.check_for_setup_error()
    yield d
    with agent.client() as c:
        for name in os.listdir(tmp_path):
            try:
                c.call("bdev_uring_delete", name=name)
            except Exception:
                pass
    d.client.close()


def _volume(ctx, size=1, **kw):
    # fake_volume_obj's default id is a constant: every test volume gets its own.
    kw.setdefault("id", str(uuid.uuid4()))
    return fake_volume.fake_volume_obj(ctx, size=size, **kw)


# -- the interface ------------------------------------------------------------------


def test_interface_compliance():
    # What cinder/tests/compliance/test_volume_drivers.py checks for in-tree
    # drivers, for this out-of-tree one.
    assert driver.SpdkVhostDriver in interface._volume_register
    info = interface_util.DriverInfo(driver.SpdkVhostDriver)
    assert info.version == "1.0.0" and info.ci_wiki_name
    assert issubclass(driver.SpdkVhostDriver, volume_interface.VolumeDriverCore)
    assert issubclass(driver.SpdkVhostDriver, cinder_driver.VolumeDriver)
    # Stricter than Cinder's own check (its subclasshook only sees
    # classmethods): every method of the core interface is implemented
    # taking the interface's positional parameters.
    for name, func in inspect.getmembers(volume_interface.VolumeDriverCore,
                                         inspect.isfunction):
        if name.startswith("_"):
            continue
        impl = getattr(driver.SpdkVhostDriver, name)
        if not callable(impl):  # properties such as "initialized"
            continue
        # Arity, not names: Cinder's own base class names some differently
        # (update_migrated_volume's ctxt/context).
        want = inspect.signature(func).parameters
        got = inspect.signature(impl).parameters
        required = [p for p in got.values() if p.default is p.empty
                    and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        assert len(required) <= len(want) <= len(got) or any(
            p.kind == p.VAR_POSITIONAL for p in got.values()), (name, got, want)


def test_driver_options_are_registered_and_listed(conf):
    names = {o.name for o in driver.SpdkVhostDriver.get_driver_options()}
    assert {"spdk_vhost_agent_socket", "spdk_vhost_volume_dir",
            "spdk_vhost_volume_backend", "spdk_vhost_block_size"} <= names
    d = _make_driver(conf, spdk_vhost_volume_dir="/srv/vols")
    assert d.configuration.spdk_vhost_volume_dir == "/srv/vols"


def test_options_read_from_the_backend_section_then_backend_defaults(conf):
    # As every Cinder driver: the backend's own section ([spdk-1]) first,
    # [backend_defaults] for what it leaves out; the group the sample
    # (etc/spdk-backend/cinder.conf.sample) lists the options under.
    d = _make_driver(conf, spdk_vhost_agent_socket="/run/section.sock")
    conf.config(group=configuration.SHARED_CONF_GROUP,
                spdk_vhost_agent_socket="/run/defaults.sock", spdk_vhost_queues=4)
    assert d.configuration.spdk_vhost_agent_socket == "/run/section.sock"
    assert d.configuration.spdk_vhost_queues == 4
    assert d.configuration.spdk_vhost_block_size == 512
    sample = os.path.join(os.path.dirname(__file__), "..", "..", "..",
                          "etc", "spdk-backend", "cinder.conf.sample")
    with open(sample) as f:
        text = f.read()
    assert "[%s]" % configuration.SHARED_CONF_GROUP in text
    for opt in driver.SpdkVhostDriver.get_driver_options():
        assert "\n#%s =" % opt.dest in text, opt.dest


# -- setup ----------------------------------------------------------------------------


def test_unknown_volume_backend_is_a_configuration_error(conf, tmp_path):
    d = _make_driver(conf, spdk_vhost_volume_backend="nosuch",
                     spdk_vhost_volume_dir=str(tmp_path))
    with pytest.raises(cinder_exception.InvalidConfigurationValue) as info:
        d.do_setup(None)
    assert "nosuch" in str(info.value)


def test_unreachable_agent_fails_the_setup_check(conf, tmp_path):
    d = _make_driver(conf, spdk_vhost_agent_socket=str(tmp_path / "no.sock"),
                     spdk_vhost_agent_timeout=1, spdk_vhost_volume_dir=str(tmp_path))
    d.do_setup(None)
    with pytest.raises(cinder_exception.VolumeBackendAPIException) as info:
        d.check_for_setup_error()
    assert "no.sock" in str(info.value)


def test_missing_volume_dir_fails_the_setup_check(conf, agent, tmp_path):
    d = _make_driver(conf, spdk_vhost_agent_socket=agent.rpc_socket,
                     spdk_vhost_volume_dir=str(tmp_path / "missing"))
    d.do_setup(None)
    with pytest.raises(cinder_exception.VolumeBackendAPIException):
        d.check_for_setup_error()
    d.client.close()


# -- lifecycle -------------------------------------------------------------------------


def test_create_delete(drv, ctx, tmp_path):
    vol = _volume(ctx, size=2)
    drv.create_volume(vol)
    path = tmp_path / ("volume-%s" % vol.id)
    assert path.stat().st_size == 2 * GiB
    assert path.stat().st_blocks == 0
    drv.delete_volume(vol)
    assert not path.exists()
    drv.delete_volume(vol)  # already gone: not an error


def test_names_are_exact_and_follow_name_id(drv, ctx):
    vol = _volume(ctx, _name_id="11111111-2222-3333-4444-555555555555")
    assert driver.volume_bdev_name(vol) == "volume-11111111-2222-3333-4444-555555555555"


def test_connection_and_exports(drv, ctx, agent):
    vol = _volume(ctx, size=1)
    drv.create_volume(vol)
    drv.create_export(ctx, vol, {"host": "compute1", "vhost_user_blk": True})
    info = drv.initialize_connection(vol, {"host": "compute1", "vhost_user_blk": True})
    assert info["driver_volume_type"] == "vhost_user_blk"
    data = info["data"]
    name = "volume-%s" % vol.id
    assert data["bdev_name"] == name and data["volume_id"] == vol.id
    assert data["access_mode"] == "rw"
    assert data["block_size"] == 512 and data["num_blocks"] == GiB // 512
    assert data["bdev"] == {"method": "bdev_uring_create",
                            "params": {"name": name, "filename": drv.backend.path(name),
                                       "block_size": 512}}
    # An agent that lost the bdev: ensure_export brings it back.
    with agent.client() as c:
        c.call("bdev_uring_delete", name=name)
        drv.ensure_export(ctx, vol)
        assert c.call("bdev_get_bdevs", name=name)[0]["name"] == name
        drv.terminate_connection(vol, {"host": "compute1"})
        drv.remove_export(ctx, vol)
        with pytest.raises(Exception):
            c.call("bdev_get_bdevs", name=name)
    drv.remove_export(ctx, vol)  # twice is fine
    drv.delete_volume(vol)


def test_readonly_volume_connects_ro(drv, ctx):
    vol = _volume(ctx, size=1)
    vol.admin_metadata = {"readonly": "True"}  # what "cinder readonly-mode-update" sets
    drv.create_volume(vol)
    assert drv.initialize_connection(vol, {"vhost_user_blk": True})["data"]["access_mode"] == "ro"
    drv.remove_export(ctx, vol)
    drv.delete_volume(vol)


@pytest.mark.parametrize("shared", [False, True])
def test_destination_connection_while_the_source_is_attached(conf, agent, ctx, tmp_path,
                                                             shared):
    """A live migration: Nova asks for the destination host's connection
    while the source host's controller still serves the volume.  The answer
    is the source's (the same bdev call), and says whether the destination's
    agent (a second, real agent) may serve the volume too: with
    spdk_vhost_volume_dir_shared it does, without it the file is locked."""
    d = _make_driver(conf, spdk_vhost_agent_socket=agent.rpc_socket,
                     spdk_vhost_volume_dir=str(tmp_path),
                     spdk_vhost_volume_dir_shared=shared)
    d.do_setup(None)
    vol = _volume(ctx, size=1)
    name = "volume-%s" % vol.id
    d.create_volume(vol)
    d.create_export(ctx, vol, {"host": "compute1", "vhost_user_blk": True})
    source = d.initialize_connection(vol, {"host": "compute1", "vhost_user_blk": True})
    with agent.client() as c, running_agent() as dest_agent, dest_agent.client() as dc:
        c.call("vhost_create_blk_controller", ctrlr="source", dev_name=name)
        try:
            dest = d.initialize_connection(vol, {"host": "compute2", "vhost_user_blk": True})
            assert dest == source
            data = dest["data"]
            assert data["supports_live_migration"] is shared
            assert data["bdev"]["params"].get("shared", False) is shared
            # The source keeps being served.
            assert c.call("vhost_get_controllers", name="source")[0]["ctrlr"] == "source"
            # The destination host's agent, from the connection info alone.
            spec = data["bdev"]
            if shared:
                dc.call(spec["method"], **spec["params"])
                assert dc.call("bdev_get_bdevs", name=name)[0]["name"] == name
                dc.call("bdev_uring_delete", name=name)
            else:
                with pytest.raises(exception.AgentBusy, match="is served already"):
                    dc.call(spec["method"], **spec["params"])
        finally:
            c.call("vhost_delete_controller", ctrlr="source")
    d.remove_export(ctx, vol)
    d.delete_volume(vol)
    d.client.close()


def test_delete_of_attached_volume_is_busy(drv, ctx, agent):
    vol = _volume(ctx, size=1)
    drv.create_volume(vol)
    drv.create_export(ctx, vol, {"vhost_user_blk": True})
    name = "volume-%s" % vol.id
    with agent.client() as c:
        c.call("vhost_create_blk_controller", ctrlr="attached", dev_name=name)
        try:
            with pytest.raises(cinder_exception.VolumeIsBusy):
                drv.delete_volume(vol)
        finally:
            c.call("vhost_delete_controller", ctrlr="attached")
    drv.delete_volume(vol)


def test_extend(drv, ctx, agent):
    vol = _volume(ctx, size=1)
    drv.create_volume(vol)
    drv.create_export(ctx, vol, {"vhost_user_blk": True})
    drv.extend_volume(vol, 3)
    name = "volume-%s" % vol.id
    assert os.stat(drv.backend.path(name)).st_size == 3 * GiB
    with agent.client() as c:
        assert c.call("bdev_get_bdevs", name=name)[0]["num_blocks"] == 3 * GiB // 512
    drv.remove_export(ctx, vol)
    drv.delete_volume(vol)


def test_extend_of_missing_volume_is_volume_not_found(drv, ctx):
    with pytest.raises(cinder_exception.VolumeNotFound):
        drv.extend_volume(_volume(ctx, size=1), 2)


def test_snapshot_clone_from_snapshot(drv, ctx, tmp_path):
    vol = _volume(ctx, size=1)
    drv.create_volume(vol)
    src = drv.backend.path("volume-%s" % vol.id)
    with open(src, "r+b") as f:
        f.seek(12345 * 512)
        f.write(b"snapshot me" * 10)
    snap = fake_snapshot.fake_snapshot_obj(ctx, id=str(uuid.uuid4()), volume=vol,
                                           volume_size=1)
    drv.create_snapshot(snap)
    snap_path = tmp_path / ("snapshot-%s" % snap.id)
    assert snap_path.stat().st_size == GiB
    assert snap_path.stat().st_blocks * 512 < 64 << 20  # not inflated

    new = _volume(ctx, size=2)
    drv.create_volume_from_snapshot(new, snap)
    clone = _volume(ctx, size=1)
    drv.create_cloned_volume(clone, vol)
    for v, size in ((new, 2 * GiB), (clone, GiB)):
        path = drv.backend.path("volume-%s" % v.id)
        assert os.stat(path).st_size == size
        with open(path, "rb") as f:
            f.seek(12345 * 512)
            assert f.read(110) == b"snapshot me" * 10

    drv.delete_snapshot(snap)
    drv.delete_snapshot(snap)
    assert not snap_path.exists()
    with pytest.raises(cinder_exception.SnapshotNotFound):
        drv.create_volume_from_snapshot(_volume(ctx, size=1), snap)
    for v in (vol, new, clone):
        drv.delete_volume(v)


def test_stats(drv, ctx, tmp_path):
    vols = [_volume(ctx, size=s) for s in (1, 2)]
    for v in vols:
        drv.create_volume(v)
    stats = drv.get_volume_stats(refresh=True)
    assert stats["volume_backend_name"] == "fast-vhost"
    assert stats["storage_protocol"] == "vhost-user-blk"
    assert stats["backend_state"] == "up"
    assert stats["location_info"] == "file:%s:%s" % (socket.gethostname(), tmp_path)
    assert stats["driver_version"] == "1.0.0"
    (pool,) = stats["pools"]
    assert pool["pool_name"] == "fast-vhost"
    st = os.statvfs(tmp_path)
    assert pool["total_capacity_gb"] == pytest.approx(st.f_blocks * st.f_frsize / GiB, abs=0.01)
    assert 0 < pool["free_capacity_gb"] <= pool["total_capacity_gb"]
    assert pool["provisioned_capacity_gb"] == 3.0
    assert pool["thin_provisioning_support"] is True
    assert pool["max_over_subscription_ratio"] > 0
    assert pool["backend_state"] == "up"
    assert pool["location_info"] == stats["location_info"]
    for v in vols:
        drv.delete_volume(v)


def test_stats_of_an_unusable_backend_say_it_is_down(conf, agent, tmp_path):
    voldir = tmp_path / "gone"
    voldir.mkdir()
    d = _make_driver(conf, spdk_vhost_agent_socket=agent.rpc_socket,
                     spdk_vhost_volume_dir=str(voldir))
    d.do_setup(None)
    voldir.rmdir()
    stats = d.get_volume_stats(refresh=True)
    assert stats["backend_state"] == "down"
    (pool,) = stats["pools"]
    assert pool["backend_state"] == "down"
    assert pool["free_capacity_gb"] == "unknown"
    assert "location_info" not in stats
    d.client.close()


def test_shared_volume_dir_location_names_no_host(conf, agent, tmp_path):
    d = _make_driver(conf, spdk_vhost_agent_socket=agent.rpc_socket,
                     spdk_vhost_volume_dir=str(tmp_path),
                     spdk_vhost_volume_dir_shared=True)
    d.do_setup(None)
    assert d.get_volume_stats(refresh=True)["location_info"] == "file:shared:%s" % tmp_path
    d.client.close()


# -- connectors that are not a vhost-user-blk compute host ------------------------------


@pytest.fixture
def brick_in_process():
    """The tests run as root: os-brick's privileged calls run in this
    process instead of through sudo + privsep-helper."""
    from os_brick import privileged

    privileged.default.set_client_mode(False)
    yield
    privileged.default.set_client_mode(True)


def test_other_connectors_get_os_brick_local_info(drv, ctx, agent, brick_in_process):
    """cinder-volume and cinder-backup move data through os-brick, which has
    no vhost_user_blk connector: their connectors (os-brick's own properties,
    without the flag Nova's driver adds) get the file through 'local'."""
    from cinder.volume import volume_utils
    from os_brick.initiator import connector as brick_connector

    vol = _volume(ctx, size=1)
    drv.create_volume(vol)
    name = "volume-%s" % vol.id
    with open(drv.backend.path(name), "r+b") as f:
        f.seek(4096)
        f.write(b"x" * 512)
    props = brick_connector.get_connector_properties(None, "127.0.0.1", False, False)
    assert "vhost_user_blk" not in props
    drv.create_export(ctx, vol, props)
    info = drv.initialize_connection(vol, props)
    assert info == {"driver_volume_type": "local",
                    "data": {"device_path": drv.backend.path(name), "volume_id": vol.id,
                             "access_mode": "rw"}}
    # No agent bdev: os-brick reads the storage itself.
    assert drv.backend.get_bdev(name) is None
    # Cinder's own way to a connector, and the bytes through it.
    brick = volume_utils.brick_get_connector(info["driver_volume_type"])
    device = brick.connect_volume(info["data"])
    with open(device["path"], "rb") as f:
        f.seek(4096)
        assert f.read(512) == b"x" * 512
    brick.disconnect_volume(info["data"], device)
    drv.terminate_connection(vol, props)
    drv.remove_export(ctx, vol)
    drv.delete_volume(vol)


def test_vhost_connector_gets_vhost_user_blk(drv, ctx):
    vol = _volume(ctx, size=1)
    drv.create_volume(vol)
    for connector, kind in (({"host": "c", "vhost_user_blk": True}, "vhost_user_blk"),
                            ({"host": "c", "vhost_user_blk": False}, "local"),
                            ({"host": "c"}, "local"),
                            ({}, "local"),
                            (None, "local")):
        assert drv.initialize_connection(vol, connector)["driver_volume_type"] == kind
    drv.remove_export(ctx, vol)
    drv.delete_volume(vol)


def test_native_readonly_volume_connects_ro(drv, ctx):
    vol = _volume(ctx, size=1)
    vol.admin_metadata = {"readonly": "True"}
    drv.create_volume(vol)
    assert drv.initialize_connection(vol, {"host": "c"})["data"]["access_mode"] == "ro"
    drv.delete_volume(vol)


def test_native_connection_of_a_missing_volume_is_volume_not_found(drv, ctx):
    with pytest.raises(cinder_exception.VolumeNotFound):
        drv.initialize_connection(_volume(ctx, size=1), {"host": "c"})


def test_backend_without_a_native_connector_says_so(conf, agent, ctx):
    d = _make_driver(conf, spdk_vhost_agent_socket=agent.rpc_socket,
                     spdk_vhost_volume_backend="malloc")
    d.do_setup(None)
    vol = _volume(ctx, size=1)
    d.create_volume(vol)
    try:
        with pytest.raises(cinder_exception.VolumeBackendAPIException,
                           match="no os-brick connector.*vhost_user_blk: True"):
            d.initialize_connection(vol, {"host": "c"})
    finally:
        d.delete_volume(vol)
        d.client.close()


def test_backup_use_temp_snapshot_where_snapshots_can_be_attached(conf, agent, tmp_path):
    """Cinder's backup_use_temp_snapshot is followed where os-brick can read
    a snapshot in place (file) and declined otherwise (Cinder then clones a
    temporary volume), as BaseVD asks of a driver that cannot."""
    for backend, honoured in (("file", True), ("malloc", False)):
        d = _make_driver(conf, spdk_vhost_agent_socket=agent.rpc_socket,
                         spdk_vhost_volume_backend=backend,
                         spdk_vhost_volume_dir=str(tmp_path))
        d.do_setup(None)
        try:
            assert d.backup_use_temp_snapshot() is False
            conf.config(group=BACKEND, backup_use_temp_snapshot=True)
            assert d.backup_use_temp_snapshot() is honoured
        finally:
            conf.config(group=BACKEND, backup_use_temp_snapshot=False)
            d.client.close()


def test_snapshot_connection_is_os_brick_local_and_read_only(drv, ctx, tmp_path):
    vol = _volume(ctx, size=1)
    drv.create_volume(vol)
    snap = fake_snapshot.fake_snapshot_obj(ctx, id=str(uuid.uuid4()), volume_id=vol.id,
                                           volume=vol, volume_size=1)
    drv.create_snapshot(snap)
    try:
        assert drv.create_export_snapshot(ctx, snap, {"host": "b"}) is None
        info = drv.initialize_connection_snapshot(snap, {"host": "b"})
        assert info == {"driver_volume_type": "local",
                        "data": {"device_path": str(tmp_path / ("snapshot-%s" % snap.id)),
                                 "snapshot_id": snap.id, "volume_id": vol.id,
                                 "access_mode": "ro"}}
        with pytest.raises(cinder_exception.VolumeBackendAPIException,
                           match="os-brick only"):
            drv.initialize_connection_snapshot(snap, {"host": "c", "vhost_user_blk": True})
        drv.terminate_connection_snapshot(snap, {"host": "b"})
        drv.remove_export_snapshot(ctx, snap)
    finally:
        drv.delete_snapshot(snap)
        drv.delete_volume(vol)
    with pytest.raises(cinder_exception.SnapshotNotFound):
        drv.initialize_connection_snapshot(snap, {"host": "b"})


def test_file_volumes_are_never_cloned_from_an_image_location(drv, ctx, tmp_path):
    """Cinder copies the image instead (copy_image_to_volume)."""
    vol = _volume(ctx, size=1)
    url = "rbd://fsid/pool/image/snap"
    for location in ((url, None), (url, [{"url": url, "metadata": {}}]), (None, None), None):
        assert drv.clone_image(ctx, vol, location, {"disk_format": "raw"}, None) == ({}, False)
    assert not os.listdir(tmp_path)


# -- encryption ----------------------------------------------------------------------


def test_encrypted_volume_types_are_refused_at_create(drv, ctx, tmp_path):
    """libvirt refuses <encryption> on a vhostuser disk: the volume would
    never attach, so it is not created."""
    src = _volume(ctx, size=1)
    drv.create_volume(src)
    snap = fake_snapshot.fake_snapshot_obj(ctx, id=str(uuid.uuid4()), volume=src,
                                           volume_size=1)
    drv.create_snapshot(snap)
    before = sorted(os.listdir(tmp_path))
    location = ("rbd://fsid/pool/image/snap", None)
    for create in (drv.create_volume,
                   lambda v: drv.create_volume_from_snapshot(v, snap),
                   lambda v: drv.create_cloned_volume(v, src),
                   lambda v: drv.clone_image(ctx, v, location, {"disk_format": "raw"}, None)):
        vol = _volume(ctx, size=1, encryption_key_id=str(uuid.uuid4()))
        with pytest.raises(cinder_exception.VolumeDriverException,
                           match="encrypted volume type.*<encryption> on a vhostuser disk"):
            create(vol)
    assert sorted(os.listdir(tmp_path)) == before
    drv.delete_snapshot(snap)
    drv.delete_volume(src)


def test_backend_name_defaults_to_the_section(conf, agent, tmp_path):
    d = _make_driver(conf, spdk_vhost_agent_socket=agent.rpc_socket,
                     spdk_vhost_volume_dir=str(tmp_path))
    d.do_setup(None)
    assert d.get_volume_stats(refresh=True)["volume_backend_name"] == BACKEND
    d.client.close()


# -- images ----------------------------------------------------------------------------


def test_image_round_trip(drv, ctx, conf, tmp_path):
    from cinder import privsep
    from cinder.tests.unit.image import fake as fake_image

    conf.config(image_conversion_dir=str(tmp_path / "conversion"))
    # The tests run as root: privileged helpers (qemu-img info) run in this
    # process instead of through sudo + privsep-helper.
    privsep.sys_admin_pctxt.set_client_mode(False)
    try:
        _image_round_trip(drv, ctx, fake_image)
    finally:
        privsep.sys_admin_pctxt.set_client_mode(True)


def _image_round_trip(drv, ctx, fake_image):
    import io

    class ImageService(fake_image._FakeImageService):
        """Cinder's fake, keeping what an upload streams (its update drops it)."""

        uploads = {}

        def update(self, context, image_id, metadata, data=None, **kwargs):
            image = super().update(context, image_id, metadata, **kwargs)
            if data is not None:
                head, total = b"", 0
                for chunk in iter(lambda: data.read(1 << 20), b""):
                    if len(head) < len(payload):
                        head += chunk[:len(payload) - len(head)]
                    total += len(chunk)
                self.uploads[image_id] = (head, total)
            return image

    service = ImageService()
    service.temp_images = None  # a MagicMock in the fake: use Cinder's real cache
    payload = os.urandom(1 << 20) + b"\0" * (3 << 20) + b"tail" * 1024
    image = service.create(ctx, {"name": "img", "disk_format": "raw",
                                 "container_format": "bare", "size": len(payload),
                                 "status": "active"}, data=io.BytesIO(payload))
    vol = _volume(ctx, size=1)
    drv.create_volume(vol)
    drv.copy_image_to_volume(ctx, vol, service, image["id"])
    path = drv.backend.path("volume-%s" % vol.id)
    assert os.stat(path).st_size == GiB
    with open(path, "rb") as f:
        assert f.read(len(payload)) == payload
        f.seek(512 << 20)
        assert f.read(4096) == b"\0" * 4096

    # Every real volume has a type (the default one at least).
    vol.volume_type = fake_volume.fake_volume_type_obj(ctx)
    vol.glance_metadata = {}  # loaded from the database in a real cinder-volume
    meta = service.create(ctx, {"name": "from-volume", "disk_format": "raw",
                                "container_format": "bare"})
    drv.copy_volume_to_image(ctx, vol, service, meta)
    head, total = service.uploads[meta["id"]]
    assert total == GiB
    assert head == payload
    drv.delete_volume(vol)


def test_concurrent_operations_share_the_connection_safely(drv):
    import threading

    errors, results = [], []

    def worker():
        try:
            for _ in range(25):
                results.append(drv.client.call("spdk_get_version")["version"])
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(results) == 200 and len(set(results)) == 1
