"""Cinder's own volume managers over backends of ours, in one test process.

Cinder moves data itself (backups, migration, generic revert, image
copies) in its VolumeManager and driver base class; the tests run that code
for real: a sqlite database with Cinder's schema, one VolumeManager per
backend section, os-brick's privileged calls in this (root) process.
Cinder's RPC is the one thing replaced: what a manager would send to
another backend's manager is routed to it in this process.

Imports cinder: only for the cinder test group's process.
"""

import contextlib
import os
import uuid

from cinder import context
from cinder import coordination
from cinder import objects

objects.register_all()  # before the modules below use the classes

from cinder.backup import rpcapi as backup_rpcapi  # noqa: E402
from cinder.objects import base as objects_base  # noqa: E402
from cinder import rpc  # noqa: E402
from cinder.db import api as db_api  # noqa: E402
from cinder.db import migration  # noqa: E402
from cinder.volume import manager as volume_manager  # noqa: E402
from cinder.volume import rpcapi as volume_rpcapi  # noqa: E402
from cinder.volume import volume_types  # noqa: E402
from cinder.volume import volume_utils  # noqa: E402
from oslo_config import cfg  # noqa: E402
import oslo_messaging  # noqa: E402

from tests.support import vhost_io  # noqa: E402

HOST = "host1"
DRIVER = "spdk_backend.cinder.driver.SpdkVhostDriver"
#: A compute host's connector (Nova's get_volume_connector adds the flag).
COMPUTE = {"host": "compute1", "vhost_user_blk": True}


@contextlib.contextmanager
def database(conf, path):
    """Cinder's schema in the sqlite file ``path``, as Cinder's tests make it."""
    conf.config(group="database", connection="sqlite:///%s" % path)
    db_api.get_engine().dispose()
    migration.db_sync()
    try:
        yield
    finally:
        db_api.get_engine().dispose()


@contextlib.contextmanager
def privileges_in_process():
    """The tests run as root: os-brick's and Cinder's privileged calls (dd,
    qemu-img) run in this process instead of through sudo + privsep-helper."""
    from cinder import privsep
    from os_brick import privileged

    privileged.default.set_client_mode(False)
    privsep.sys_admin_pctxt.set_client_mode(False)
    try:
        yield
    finally:
        privileged.default.set_client_mode(True)
        privsep.sys_admin_pctxt.set_client_mode(True)


def db_path():
    """The sqlite file of :func:`database`."""
    return cfg.CONF.database.connection[len("sqlite:///"):]


def backend_of(host):
    """``spdk-a`` of ``host1@spdk-a#pool``."""
    return volume_utils.extract_host(host, "backend").split("@", 1)[1]


class InProcessRpc:
    """What Cinder's volume RPC API would ask another backend's manager
    (casts run to completion before they return), and what a volume
    manager would ask the backup manager (``continue_backup``)."""

    def __init__(self, managers):
        self.managers = managers
        self.backup_manager = None

    def _manager(self, volume):
        return self.managers[backend_of(volume.host)]

    def create_volume(self, ctxt, volume, request_spec, filter_properties,
                      allow_reschedule=True):
        self._manager(volume).create_volume(ctxt, volume, request_spec, filter_properties,
                                            allow_reschedule=allow_reschedule)

    def delete_volume(self, ctxt, volume, unmanage_only=False, cascade=False):
        self._manager(volume).delete_volume(ctxt, volume, unmanage_only=unmanage_only,
                                            cascade=cascade)

    def delete_snapshot(self, ctxt, snapshot, unmanage_only=False):
        self._manager(snapshot.volume).delete_snapshot(ctxt, snapshot,
                                                       unmanage_only=unmanage_only)

    def update_migrated_volume(self, ctxt, volume, new_volume, original_volume_status):
        self._manager(new_volume).update_migrated_volume(ctxt, volume, new_volume,
                                                         original_volume_status)

    def get_backup_device(self, ctxt, backup, volume):
        self._manager(volume).get_backup_device(ctxt, backup, want_objects=True,
                                                async_call=True)

    def secure_file_operations_enabled(self, ctxt, volume):
        return self._manager(volume).secure_file_operations_enabled(ctxt, volume)

    def initialize_connection_snapshot(self, ctxt, snapshot, connector):
        return self._manager(snapshot.volume).initialize_connection_snapshot(
            ctxt, snapshot.id, connector)

    def terminate_connection_snapshot(self, ctxt, snapshot, connector, force=False):
        self._manager(snapshot.volume).terminate_connection_snapshot(
            ctxt, snapshot.id, connector, force=force)

    def remove_export_snapshot(self, ctxt, snapshot, sync=False):
        self._manager(snapshot.volume).remove_export_snapshot(ctxt, snapshot.id)

    def continue_backup(self, ctxt, backup, backup_device):
        self.backup_manager.continue_backup(ctxt, backup, backup_device)

    def initialize_connection(self, ctxt, volume, connector):
        return self._manager(volume).initialize_connection(ctxt, volume, connector)

    def terminate_connection(self, ctxt, volume, connector, force=False):
        self._manager(volume).terminate_connection(ctxt, volume.id, connector, force=force)

    def remove_export(self, ctxt, volume, sync=False):
        self._manager(volume).remove_export(ctxt, volume.id)

    def get_capabilities(self, ctxt, backend_id, discover):
        return self.managers[backend_of(backend_id)].driver.get_volume_stats(
            refresh=discover)


#: The volume RPC calls routed in process.
VOLUME_RPC = ("initialize_connection", "terminate_connection", "remove_export",
              "get_capabilities", "create_volume", "delete_volume", "delete_snapshot",
              "update_migrated_volume", "get_backup_device",
              "secure_file_operations_enabled", "initialize_connection_snapshot",
              "terminate_connection_snapshot", "remove_export_snapshot")


class Managers(dict):
    """``{backend name: VolumeManager}``; ``rpc`` routes their calls."""

    rpc = None


@contextlib.contextmanager
def running_managers(conf, monkeypatch, backends):
    """:class:`Managers` ``{name: VolumeManager}``, one per ``{name:
    {option: value}}`` backend section (volume_driver is ours), set up and
    initialized, each with its service row."""
    oslo_messaging.set_transport_defaults("cinder")
    oslo_messaging.get_rpc_transport(cfg.CONF)  # registers transport_url
    # oslo.messaging's in-memory driver: the managers need a transport to
    # be built; every call between them goes through InProcessRpc.
    conf.config(host=HOST, transport_url="fake:/")
    rpc.init(cfg.CONF)
    # The managers' locks (delete_volume, delete_snapshot) are tooz file
    # locks, in the database's directory.
    conf.config(group="coordination",
                backend_url="file://%s" % os.path.dirname(db_path()))
    coordination.COORDINATOR.start()
    conf.config(group="oslo_concurrency", lock_path=os.path.dirname(db_path()))
    mgrs = Managers()
    try:
        for name, options in backends.items():
            # The manager registers the section's options; the driver reads
            # them in do_setup.
            mgr = volume_manager.VolumeManager(volume_driver=DRIVER, service_name=name,
                                               host="%s@%s" % (HOST, name))
            mgrs[name] = mgr
            conf.config(group=name, volume_backend_name=name, **options)
            mgr.driver.do_setup(context.get_admin_context())
            mgr.driver.check_for_setup_error()
            mgr.driver.set_initialized()
            # What init_host counts before a volume is created.
            mgr.stats.update(pools={}, allocated_capacity_gb=0)
            # The service row a migration's destination is looked up by.
            objects.Service(context.get_admin_context(), host=mgr.host,
                            binary="cinder-volume", topic="cinder-volume",
                            availability_zone="nova",
                            rpc_current_version=volume_rpcapi.VolumeAPI.RPC_API_VERSION,
                            object_current_version=objects_base.OBJ_VERSIONS.get_current(),
                            ).create()
        router = InProcessRpc(mgrs)
        for method in VOLUME_RPC:
            monkeypatch.setattr(volume_rpcapi.VolumeAPI, method,
                                lambda self, *a, _m=method, **kw: getattr(router, _m)(*a, **kw))
        monkeypatch.setattr(backup_rpcapi.BackupAPI, "continue_backup",
                            lambda self, *a, **kw: router.continue_backup(*a, **kw))
        mgrs.rpc = router
        yield mgrs
    finally:
        for mgr in mgrs.values():
            if getattr(mgr.driver, "backend", None) is not None and hasattr(
                    mgr.driver.backend, "close"):
                mgr.driver.backend.close()
            if mgr.driver.client is not None:
                mgr.driver.client.close()
        coordination.COORDINATOR.stop()
        rpc.cleanup()


def request_context():
    return context.RequestContext(user_id="u-%s" % uuid.uuid4().hex[:8],
                                  project_id="p-1", is_admin=True)


def new_volume(ctx, managers, backend, size=1, **kw):
    """A volume in the database and in ``backend``'s storage."""
    vol = objects.Volume(ctx, size=size, host="%s@%s#%s" % (HOST, backend, backend),
                         status=kw.pop("status", "available"),
                         volume_type_id=volume_types.get_default_volume_type(ctx)["id"],
                         user_id=ctx.user_id, project_id=ctx.project_id,
                         availability_zone="nova", attach_status="detached", **kw)
    vol.create()
    managers[backend].driver.create_volume(vol)
    return vol


def delete_volume(managers, vol):
    managers[backend_of(vol.host)].driver.delete_volume(vol)


@contextlib.contextmanager
def guest(client, managers, vol):
    """The volume attached as a guest has it: exported and behind a
    vhost-user-blk controller; yields the front-end to read and write."""
    drv = managers[backend_of(vol.host)].driver
    ctx = context.get_admin_context()
    drv.create_export(ctx, vol, COMPUTE)
    info = drv.initialize_connection(vol, COMPUTE)
    assert info["driver_volume_type"] == "vhost_user_blk"
    with vhost_io.served(client, info["data"]["bdev_name"]) as fe:
        yield fe
    drv.remove_export(ctx, vol)


# -- the scenarios, for any pair of backends ------------------------------------------

MiB = 1 << 20


@contextlib.contextmanager
def backup_manager(conf, managers, backup_dir):
    """Cinder's BackupManager with the posix backup driver writing into
    ``backup_dir``; the volume managers' ``continue_backup`` reaches it."""
    from cinder.backup.drivers import posix  # noqa: F401 (registers its options)
    from cinder.backup import manager as backup_mgr

    conf.config(backup_driver="cinder.backup.drivers.posix.PosixBackupDriver",
                backup_posix_path=str(backup_dir),
                # The bytes are what the tests look at, not their compression.
                backup_compression_algorithm="none")
    bm = backup_mgr.BackupManager(host=HOST, service_name="backup")
    # What init_host's setup loop does, without the looping call.
    bm.service(context=context.get_admin_context()).check_for_setup_error()
    bm.is_initialized = True
    bm.attached = []  # driver_volume_type of each os-brick attachment
    connect = bm._connect_device

    def recording_connect(conn):
        bm.attached.append(conn["driver_volume_type"])
        return connect(conn)

    bm._connect_device = recording_connect
    managers.rpc.backup_manager = bm
    try:
        yield bm
    finally:
        managers.rpc.backup_manager = None


def new_backup(ctx, vol, snapshot=None):
    from cinder.objects import fields

    backup = objects.Backup(ctx, volume_id=vol.id, status=fields.BackupStatus.CREATING,
                            size=vol.size, user_id=ctx.user_id, project_id=ctx.project_id,
                            host=HOST, display_name="b", availability_zone="nova",
                            snapshot_id=snapshot.id if snapshot else None)
    backup.create()
    return backup


def new_snapshot(ctx, managers, vol, status="available"):
    snap = objects.Snapshot(ctx, volume_id=vol.id, volume_size=vol.size, status=status,
                            user_id=ctx.user_id, project_id=ctx.project_id,
                            volume_type_id=vol.volume_type_id)
    snap.create()
    managers[backend_of(vol.host)].driver.create_snapshot(snap)
    return snap


def restore(ctx, client, managers, bm, backup, dst, reads):
    """Restore ``backup`` into a new volume of ``dst`` through the backup
    manager; returns ``(expected, read)`` for each ``(offset, expected)``
    in ``reads`` as a guest reads the new volume, and deletes it."""
    from cinder.objects import fields

    target = new_volume(ctx, managers, dst, status="restoring-backup")
    backup.status = fields.BackupStatus.RESTORING
    backup.save()
    bm.restore_backup(ctx, backup, target.id, True)
    target.refresh()
    backup.refresh()
    assert (target.status, backup.status) == ("available", "available")
    with guest(client, managers, target) as fe:
        seen = [(data, vhost_io.read(fe, at, len(data))) for at, data in reads]
    delete_volume(managers, target)
    return seen


def backup_in_use(ctx, client, managers, bm, src, dst):
    """Cinder's backup of an in-use volume the guest wrote, run by the
    backup manager (``create_backup``: the volume manager's backup device,
    os-brick, the posix driver, the cleanup of the temporary snapshot or
    volume), restored into a new volume of ``dst`` (``restore_backup``).
    Returns ``(expected, read)`` pairs and what is left of the backup's
    temporary snapshot or volume (database rows, storage)."""
    vol = new_volume(ctx, managers, src, status="in-use")
    head, tail = _random(MiB), _random(256 * 1024)
    tail_at = 1024 * MiB - len(tail)
    backup = new_backup(ctx, vol)
    before = _rows(ctx)
    with guest(client, managers, vol) as fe:
        vhost_io.write(fe, 0, head)
        vhost_io.write(fe, tail_at, tail)
        # What the backup API does before it casts to the backup manager.
        vol.status, vol.previous_status = "backing-up", "in-use"
        vol.save()
        bm.create_backup(ctx, backup)
        # The guest keeps writing: the backup holds what was there before.
        vhost_io.write(fe, 0, b"\0" * len(head))
    vol.refresh()
    backup.refresh()
    assert (vol.status, backup.status) == ("in-use", "available")
    temps, left = _temporaries(ctx, managers, vol, before)
    seen = restore(ctx, client, managers, bm, backup, dst,
                   [(0, head), (tail_at, tail), (512 * MiB, b"\0" * 4096)])
    delete_volume(managers, vol)
    return seen, temps, left


def backup_of_snapshot(ctx, client, managers, bm, src, dst):
    """A backup of a snapshot (``snapshot_id``) of a volume the guest
    wrote before and after the snapshot, through the backup manager,
    restored into ``dst``: returns ``(expected, read)`` pairs (the
    snapshot's bytes) and what is left of temporaries."""
    from cinder.objects import fields

    vol = new_volume(ctx, managers, src)
    old, new = _random(512 * 1024), _random(512 * 1024)
    with guest(client, managers, vol) as fe:
        vhost_io.write(fe, 8 * MiB, old)
        snap = new_snapshot(ctx, managers, vol, status=fields.SnapshotStatus.BACKING_UP)
        vhost_io.write(fe, 8 * MiB, new)
    backup = new_backup(ctx, vol, snapshot=snap)
    before = _rows(ctx)
    bm.create_backup(ctx, backup)
    snap.refresh()
    backup.refresh()
    assert (snap.status, backup.status) == ("available", "available")
    temps, left = _temporaries(ctx, managers, vol, before)
    seen = restore(ctx, client, managers, bm, backup, dst,
                   [(8 * MiB, old), (0, b"\0" * 4096)])
    managers[src].driver.delete_snapshot(snap)
    delete_volume(managers, vol)
    return seen, temps, left


def _rows(ctx):
    """Ids of every volume and snapshot row, deleted ones too."""
    admin = ctx.elevated(read_deleted="yes")
    return ({v.id for v in objects.VolumeList.get_all(admin)},
            {s.id for s in objects.SnapshotList.get_all(admin, None)})


def _temporaries(ctx, managers, vol, before):
    """``({"volume": n, "snapshot": m}, left)``: the volumes and snapshots
    made since ``before`` (:func:`_rows`) and what is left of them (a row
    not deleted, storage in ``vol``'s backend)."""
    backend = managers[backend_of(vol.host)].driver.backend
    vols, snaps = (now - then for now, then in zip(_rows(ctx), before))
    live_vols = {v.id for v in objects.VolumeList.get_all(ctx.elevated())}
    live_snaps = {s.id for s in objects.SnapshotList.get_all(ctx.elevated(), None)}
    left = ["volume row %s" % v for v in vols & live_vols]
    left += ["snapshot row %s" % s for s in snaps & live_snaps]
    left += ["volume-%s" % v for v in vols if backend.exists("volume-%s" % v)]
    left += ["snapshot-%s" % s for s in snaps if backend.exists("snapshot-%s" % s)]
    return {"volume": len(vols), "snapshot": len(snaps)}, left


def migrate_through_manager(ctx, client, managers, src, dst, retype_to=None):
    """Cinder's generic (host-assisted) migration run by ``src``'s volume
    manager, as the scheduler hands it over: ``migrate_volume`` (the driver
    declines to move the volume itself), the new volume created by
    ``dst``'s manager, the copy, ``migrate_volume_completion`` with
    ``update_migrated_volume``, the old storage deleted by ``src``'s
    manager.  With ``retype_to`` (a volume type id) through ``retype``
    instead.  Returns ``(expected, read)`` pairs a guest reads on the
    migrated volume (same id), the volume, and the temporary volume's id."""
    vol = new_volume(ctx, managers, src)
    data, far = _random(2 * MiB), _random(64 * 1024)
    with guest(client, managers, vol) as fe:
        vhost_io.write(fe, 0, data)
        vhost_io.write(fe, 900 * MiB, far)
    host = {"host": "%s@%s#%s" % (HOST, dst, dst), "cluster_name": None,
            "capabilities": managers[dst].driver.get_volume_stats(refresh=True)}
    before = {v.id for v in objects.VolumeList.get_all(ctx.elevated(read_deleted="yes"))}
    # What the API does before it asks the scheduler.
    if retype_to:
        vol.update({"status": "retyping", "previous_status": "available"})
        vol.save()
        managers[src].retype(ctx, vol, retype_to, host, migration_policy="on-demand")
    else:
        vol.update({"migration_status": "starting", "previous_status": "available"})
        vol.save()
        managers[src].migrate_volume(ctx, vol, host)
    after = {v.id for v in objects.VolumeList.get_all(ctx.elevated(read_deleted="yes"))}
    temps = after - before
    vol = objects.Volume.get_by_id(ctx, vol.id)
    with guest(client, managers, vol) as fe:
        seen = [(data, vhost_io.read(fe, 0, len(data))),
                (far, vhost_io.read(fe, 900 * MiB, len(far))),
                (b"\0" * 4096, vhost_io.read(fe, 600 * MiB, 4096))]
    return seen, vol, temps


def revert_generic(ctx, client, managers, backend):
    """Cinder's generic revert to snapshot on a volume the guest wrote;
    returns ``(expected, read)`` pairs and the temporary volumes left."""
    from cinder.objects import fields

    mgr = managers[backend]
    vol = new_volume(ctx, managers, backend)
    old, new = _random(512 * 1024), _random(512 * 1024)
    with guest(client, managers, vol) as fe:
        vhost_io.write(fe, 4 * MiB, old)
    snap = objects.Snapshot(ctx, volume_id=vol.id, volume_size=vol.size,
                            status=fields.SnapshotStatus.AVAILABLE, user_id=ctx.user_id,
                            project_id=ctx.project_id, volume_type_id=vol.volume_type_id)
    snap.create()
    mgr.driver.create_snapshot(snap)
    with guest(client, managers, vol) as fe:
        vhost_io.write(fe, 4 * MiB, new)
        vhost_io.write(fe, 100 * MiB, new)
    before = {v.id for v in objects.VolumeList.get_all(ctx.elevated(read_deleted="yes"))}
    mgr._revert_to_snapshot_generic(ctx, vol, snap)
    with guest(client, managers, vol) as fe:
        seen = [(old, vhost_io.read(fe, 4 * MiB, len(old))),
                # Written after the snapshot: the snapshot's zeroes again.
                (b"\0" * len(new), vhost_io.read(fe, 100 * MiB, len(new)))]
    temps = {v.id for v in objects.VolumeList.get_all(ctx.elevated(read_deleted="yes"))}
    left = [t for t in temps - before
            if mgr.driver.backend.exists("volume-%s" % t)]
    mgr.driver.delete_snapshot(snap)
    mgr.driver.delete_volume(vol)
    return seen, temps - before, left


def _random(n):
    import os

    return os.urandom(n)
