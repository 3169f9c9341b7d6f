"""Cinder moving data itself, through os-brick, for file volumes of ours.

Real cinder code does the work (see tests/support/cinder_services.py): a
VolumeManager per backend (its generic revert to snapshot, its
``migrate_volume`` and ``retype`` with the generic host-assisted
migration), Cinder's BackupManager with the posix backup driver into a
temp directory, os-brick's ``local`` connector and ``dd``.  Two file
backends of ours run side by side on a real agent; a volume is written the
way a guest writes it (through a vhost-user-blk controller) and read back
the same way.  The rbd backend's runs are in
tests/functional/openstack/cinder_rbd (its Ceph cluster).
"""

import os
import warnings

import pytest

warnings.simplefilter("ignore", DeprecationWarning)

from oslo_config import cfg  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

from tests.support import cinder_services  # noqa: E402
from tests.support.openstack_agent import running_agent  # noqa: E402

pytestmark = pytest.mark.timeout(300)
MiB = 1 << 20


@pytest.fixture(scope="module")
def agent():
    with running_agent() as agent:
        yield agent


@pytest.fixture(scope="module")
def client(agent):
    with agent.client() as c:
        yield c


@pytest.fixture(scope="module")
def conf():
    fixture = config_fixture.Config(cfg.CONF)
    fixture.setUp()
    yield fixture
    fixture.cleanUp()


@pytest.fixture(scope="module")
def managers(agent, conf, tmp_path_factory):
    backends = {name: {"spdk_vhost_agent_socket": agent.rpc_socket,
                       "spdk_vhost_volume_dir": str(tmp_path_factory.mktemp(name))}
                for name in ("spdk-a", "spdk-b")}
    db_path = tmp_path_factory.mktemp("db") / "cinder.sqlite"
    with pytest.MonkeyPatch.context() as mp, \
            cinder_services.database(conf, db_path), \
            cinder_services.privileges_in_process(), \
            cinder_services.running_managers(conf, mp, backends) as mgrs:
        yield mgrs


@pytest.fixture(scope="module")
def backup_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("backups")


@pytest.fixture(scope="module")
def backups(conf, managers, backup_dir):
    with cinder_services.backup_manager(conf, managers, backup_dir) as bm:
        yield bm


@pytest.fixture
def ctx():
    return cinder_services.request_context()


@pytest.fixture
def temp_snapshot(conf):
    """backup_use_temp_snapshot = True in backend spdk-a, for one test."""
    conf.config(group="spdk-a", backup_use_temp_snapshot=True)
    yield
    conf.config(group="spdk-a", backup_use_temp_snapshot=False)


def _volume_files(managers):
    return {name: sorted(os.listdir(m.driver.backend.volume_dir))
            for name, m in managers.items()}


def test_backup_manager_backs_up_an_in_use_written_volume(
        client, managers, backups, backup_dir, ctx, temp_snapshot):
    """create_backup / restore_backup of Cinder's BackupManager with
    backup_use_temp_snapshot: the backup device of the in-use volume is a
    temporary snapshot, attached with the driver's
    initialize_connection_snapshot and read in place, then deleted.  (The
    temporary clone, the default, runs on rbd in
    tests/functional/openstack/cinder_rbd; a backup takes ~10 s of the
    1 GiB volume's reads, hashes and writes, so each path runs once.)"""
    del backups.attached[:]
    seen, temps, left = cinder_services.backup_in_use(ctx, client, managers, backups,
                                                      "spdk-a", "spdk-b")
    for expected, read in seen:
        assert read == expected
    assert temps == {"volume": 0, "snapshot": 1}
    assert not left  # the temporary snapshot came and went
    assert backups.attached == ["local", "local"]  # backup, restore
    assert os.listdir(backup_dir)  # the backup's objects
    assert _volume_files(managers) == {"spdk-a": [], "spdk-b": []}


def test_backup_manager_backs_up_a_snapshot(client, managers, backups, ctx, temp_snapshot):
    """A backup with a snapshot id holds the snapshot's bytes, not what the
    guest wrote later; with backup_use_temp_snapshot the snapshot itself is
    attached (initialize_connection_snapshot), no temporary volume."""
    del backups.attached[:]
    seen, temps, left = cinder_services.backup_of_snapshot(ctx, client, managers, backups,
                                                           "spdk-a", "spdk-b")
    for expected, read in seen:
        assert read == expected
    assert temps == {"volume": 0, "snapshot": 0} and not left
    assert backups.attached == ["local", "local"]
    assert _volume_files(managers) == {"spdk-a": [], "spdk-b": []}


def test_snapshot_connections(managers, ctx):
    """What the backup manager is handed for a snapshot: os-brick's local
    connector on the snapshot's file, read only; a vhost_user_blk
    connector is refused (no agent bdev serves a snapshot)."""
    from cinder import exception as cinder_exception

    drv = managers["spdk-a"].driver
    vol = cinder_services.new_volume(ctx, managers, "spdk-a")
    snap = cinder_services.new_snapshot(ctx, managers, vol)
    try:
        info = managers["spdk-a"].initialize_connection_snapshot(ctx, snap.id,
                                                                 {"host": "backup1"})
        assert info["driver_volume_type"] == "local"
        assert info["data"]["device_path"] == drv.backend.path("snapshot-%s" % snap.id)
        assert info["data"]["access_mode"] == "ro"
        with pytest.raises(cinder_exception.VolumeBackendAPIException):
            drv.initialize_connection_snapshot(snap, cinder_services.COMPUTE)
    finally:
        drv.delete_snapshot(snap)
        cinder_services.delete_volume(managers, vol)
    with pytest.raises(cinder_exception.SnapshotNotFound):
        drv.initialize_connection_snapshot(snap, {"host": "backup1"})


def test_generic_revert_to_snapshot(client, managers, ctx):
    seen, temps, left = cinder_services.revert_generic(ctx, client, managers, "spdk-a")
    for expected, read in seen:
        assert read == expected
    assert len(temps) == 1 and not left  # the temporary volume came and went
    volume_dir = managers["spdk-a"].driver.backend.volume_dir
    assert not os.listdir(volume_dir)


@pytest.mark.parametrize("how", ["migrate", "retype"])
def test_host_assisted_migration_through_the_volume_manager(client, managers, ctx, how):
    """VolumeManager.migrate_volume (or retype to a type of the other
    backend) with the generic host-assisted path, from one file backend of
    ours to another: the volume keeps its id, is on the other backend with
    the guest's bytes, copied sparsely (the destination reports
    sparse_copy_volume); the temporary volume's row and the old file are
    gone."""
    from cinder import exception as cinder_exception
    from cinder.volume import volume_types

    new_type = None
    if how == "retype":
        new_type = volume_types.create(
            ctx.elevated(), "spdk-b-%s" % ctx.user_id, {"volume_backend_name": "spdk-b"})["id"]
    seen, vol, temps = cinder_services.migrate_through_manager(
        ctx, client, managers, "spdk-a", "spdk-b", retype_to=new_type)
    for expected, read in seen:
        assert read == expected
    assert (vol.status, vol.migration_status) == ("available", "success")
    assert vol.host == "host1@spdk-b#spdk-b"
    if new_type:
        assert vol.volume_type_id == new_type
    # The volume took over the temporary volume's storage (Cinder's
    # default update_migrated_volume: _name_id).
    (temp,) = temps
    assert vol.name_id == temp != vol.id
    with pytest.raises(cinder_exception.VolumeNotFound):
        cinder_services.objects.Volume.get_by_id(ctx, temp)
    path = managers["spdk-b"].driver.backend.path("volume-%s" % vol.name_id)
    assert os.stat(path).st_blocks * 512 < 64 * MiB
    assert _volume_files(managers) == {"spdk-a": [], "spdk-b": ["volume-%s" % temp]}
    cinder_services.delete_volume(managers, vol)
