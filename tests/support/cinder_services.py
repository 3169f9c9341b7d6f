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
import uuid

from cinder import context
from cinder import objects

objects.register_all()  # before the modules below use the classes

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


def backend_of(host):
    """``spdk-a`` of ``host1@spdk-a#pool``."""
    return volume_utils.extract_host(host, "backend").split("@", 1)[1]


class InProcessRpc:
    """What Cinder's volume RPC API would ask another backend's manager."""

    def __init__(self, managers):
        self.managers = managers

    def _manager(self, volume):
        return self.managers[backend_of(volume.host)]

    def initialize_connection(self, ctxt, volume, connector):
        return self._manager(volume).initialize_connection(ctxt, volume, connector)

    def terminate_connection(self, ctxt, volume, connector, force=False):
        self._manager(volume).terminate_connection(ctxt, volume.id, connector, force=force)

    def remove_export(self, ctxt, volume, sync=False):
        self._manager(volume).remove_export(ctxt, volume.id)

    def get_capabilities(self, ctxt, backend_id, discover):
        return self.managers[backend_of(backend_id)].driver.get_volume_stats(
            refresh=discover)


@contextlib.contextmanager
def running_managers(conf, monkeypatch, backends):
    """``{name: VolumeManager}``, one per ``{name: {option: value}}``
    backend section (volume_driver is ours), set up and initialized."""
    oslo_messaging.set_transport_defaults("cinder")
    oslo_messaging.get_rpc_transport(cfg.CONF)  # registers transport_url
    # oslo.messaging's in-memory driver: the managers need a transport to
    # be built; every call between them goes through InProcessRpc.
    conf.config(host=HOST, transport_url="fake:/")
    rpc.init(cfg.CONF)
    mgrs = {}
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
        router = InProcessRpc(mgrs)
        for method in ("initialize_connection", "terminate_connection", "remove_export",
                       "get_capabilities"):
            monkeypatch.setattr(volume_rpcapi.VolumeAPI, method,
                                lambda self, *a, _m=method, **kw: getattr(router, _m)(*a, **kw))
        yield mgrs
    finally:
        for mgr in mgrs.values():
            if getattr(mgr.driver, "backend", None) is not None and hasattr(
                    mgr.driver.backend, "close"):
                mgr.driver.backend.close()
            if mgr.driver.client is not None:
                mgr.driver.client.close()
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


def backup_and_restore(ctx, client, managers, src, dst, backup_dir):
    """Back up an attached volume of ``src`` the guest wrote (Cinder's way
    for an in-use volume: a temporary clone, attached through os-brick,
    read by the posix backup driver), restore it into a new volume of
    ``dst``.  Returns the os-brick connection types of the backup and the
    restore, and ``(expected, read)`` pairs the guest sees on the new
    volume."""
    from cinder.backup.drivers import posix
    from cinder.objects import fields

    drv = managers[src].driver
    vol = new_volume(ctx, managers, src, status="in-use")
    head, tail = _random(MiB), _random(256 * 1024)
    tail_at = 1024 * MiB - len(tail)
    backup = objects.Backup(ctx, volume_id=vol.id, status=fields.BackupStatus.CREATING,
                            size=vol.size, user_id=ctx.user_id, project_id=ctx.project_id,
                            host=HOST, display_name="b1", availability_zone="nova")
    backup.create()
    service = posix.PosixBackupDriver(ctx, backup_path=str(backup_dir))
    with guest(client, managers, vol) as fe:
        vhost_io.write(fe, 0, head)
        vhost_io.write(fe, tail_at, tail)
        vol.status, vol.previous_status = "backing-up", "in-use"
        vol.save()
        device, is_snapshot = drv.get_backup_device(ctx, backup)
        assert not is_snapshot and device.id != vol.id
        props = volume_utils.brick_get_connector_properties()
        attach_info, device = drv._attach_volume(ctx, device, props)
        kinds = [attach_info["conn"]["driver_volume_type"]]
        try:
            _use(attach_info, "rb", lambda f: service.backup(backup, f))
        finally:
            drv._detach_volume(ctx, attach_info, device, props)
        drv.delete_volume(device)
        # The guest keeps writing: the backup holds what was there before.
        vhost_io.write(fe, 0, b"\0" * len(head))
    backup.status = fields.BackupStatus.RESTORING  # the driver watches it
    backup.save()

    target = new_volume(ctx, managers, dst, status="restoring-backup")
    other = managers[dst].driver
    attach_info, target = other._attach_volume(ctx, target, props)
    try:
        _use(attach_info, "r+b", lambda f: service.restore(backup, target.id, f, True))
    finally:
        other._detach_volume(ctx, attach_info, target, props)
    with guest(client, managers, target) as fe:
        seen = [(head, vhost_io.read(fe, 0, len(head))),
                (tail, vhost_io.read(fe, tail_at, len(tail))),
                (b"\0" * 4096, vhost_io.read(fe, 512 * MiB, 4096))]
    kinds.append(attach_info["conn"]["driver_volume_type"])
    for v in (vol, target):
        delete_volume(managers, v)
    return tuple(kinds), seen


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


def migrate_data(ctx, client, managers, src, dst):
    """The data path of Cinder's generic migration (and of a retype that
    migrates): ``src``'s manager attaches its volume locally, the new
    volume through ``dst``'s manager, and copies.  Returns ``(expected,
    read)`` pairs the guest sees on the new volume and the new volume."""
    vol = new_volume(ctx, managers, src)
    data, far = _random(2 * MiB), _random(64 * 1024)
    with guest(client, managers, vol) as fe:
        vhost_io.write(fe, 0, data)
        vhost_io.write(fe, 900 * MiB, far)
    dest = new_volume(ctx, managers, dst, status="creating")
    managers[src]._copy_volume_data(ctx, vol, dest, remote="dest")
    with guest(client, managers, dest) as fe:
        seen = [(data, vhost_io.read(fe, 0, len(data))),
                (far, vhost_io.read(fe, 900 * MiB, len(far))),
                (b"\0" * 4096, vhost_io.read(fe, 600 * MiB, 4096))]
    delete_volume(managers, vol)
    return seen, dest


def _use(attach_info, mode, fn):
    """Call ``fn`` with the attached device: a path (local) is opened, a
    handle (os-brick's rbd: librbd behind a file-like object) used as is."""
    path = attach_info["device"]["path"]
    if isinstance(path, str):
        with open(path, mode) as f:
            return fn(f)
    return fn(path)


def _random(n):
    import os

    return os.urandom(n)
