"""Nova's live migration of an instance with a vhost_user_blk volume, between
two "hosts" on this machine, with the real nova package.

Host A is the machine's libvirtd with agent A (which also serves Cinder:
cinder-volume runs on host A, in its own process, ../cinder_side.py); host B
is a second libvirtd in its own mount namespace (tests/support/
libvirt_pair.py) with agent B.  Each host has its own Nova LibvirtDriver
(spdk_backend.nova.driver) on its own libvirtd; the two share this process'
oslo.config, so ``[spdk_vhost] agent_socket`` is switched to the host whose
driver is called.  The volume's file is in a directory both "hosts" see,
with ``spdk_vhost_volume_dir_shared = true``; an rbd volume is an image of
a single-node Ceph cluster on 127.0.0.1 that both agents open.

Nova's ComputeManager cannot run here (no database, no message bus), so the
driver methods are called in the order it calls them
(nova/compute/manager.py, nova/virt/libvirt/driver.py):

1. attach on A: Cinder's initialize_connection, ``connect_volume`` and
   ``get_config`` of the volume driver, the disk hot-plugged as Nova does;
2. A: ``check_can_live_migrate_source`` (the destination's check has made
   its shared-storage test file, as ``check_can_live_migrate_destination``
   does);
3. B: Cinder's initialize_connection for the destination (attachment_create)
   while A is attached, then ``pre_live_migration`` with that connection
   info: Nova connects the volume, the controller appears on agent B;
4. A: ``_live_migration_operation`` (what ``live_migration`` runs in its
   thread; the monitor loop around it is the manager's): Nova builds the
   destination XML (``get_updated_guest_xml``) and migrates peer to peer
   to B's libvirtd; the disk's socket in that XML is B's;
5. A: ``post_live_migration`` with the source's connection info.

On failure the manager calls, on the destination, ``remove_volume_connection``
(``detach_volume``, which ends in ``disconnect_volume``) and then
``rollback_live_migration_at_destination`` without volumes; an instance's
``cleanup`` with its volumes disconnects them too.  Those run against agent
B after ``pre_live_migration`` without a guest.
"""

import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import uuid
import warnings

import pytest

warnings.simplefilter("ignore", DeprecationWarning)

import libvirt  # noqa: E402
from lxml import etree  # noqa: E402
import nova.conf  # noqa: E402
from nova import context as nova_context  # noqa: E402
from nova import exception as nova_exception  # noqa: E402
from nova.network import model as network_model  # noqa: E402
from nova import objects  # noqa: E402
from nova.tests.unit import fake_block_device  # noqa: E402
from nova.tests.unit import fake_instance  # noqa: E402
from nova.virt import block_device as driver_block_device  # noqa: E402
from nova.virt.libvirt import guest as nova_guest  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402
from oslo_serialization import jsonutils  # noqa: E402

from spdk_backend.nova import driver as sb_driver  # noqa: E402
from spdk_backend.nova import volume as sb_volume  # noqa: E402
from tests.support import ceph  # noqa: E402
from tests.support import guest as guest_support  # noqa: E402
from tests.support import libvirt_domain as lvd  # noqa: E402
from tests.support import libvirt_pair  # noqa: E402
from tests.support.agent_proc import AgentProcess  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
objects.register_all()
CINDER_SIDE = pathlib.Path(__file__).resolve().parents[1] / "cinder_side.py"
CINDER_RBD_SIDE = pathlib.Path(__file__).resolve().parents[1] / "cinder_rbd_side.py"
ACCESS = {"vhost_socket_group": "kvm", "vhost_socket_mode": "0660"}
MIGRATE_TIMEOUT = 240
# What Nova writes for [libvirt] file_backed_memory (and keeps across a
# migration when the destination has it: dst_wants_file_backed_memory).
FILE_BACKED = ("<source type='file'/><access mode='shared'/>"
               "<allocation mode='immediate'/><discard/>")


def cinder(action, agent, voldir, volume_id):
    proc = subprocess.run([sys.executable, str(CINDER_SIDE), action, agent.rpc_socket,
                           str(voldir), volume_id, "1", "shared"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-5000:]
    return json.loads(proc.stdout) if action in ("create", "connect") else None


class FileVolumes:
    """Cinder's file volumes in the directory both hosts see."""

    kind = "file"

    def __init__(self, hosts):
        self.hosts = hosts

    def create(self, volume_id):
        return cinder("create", self.hosts.agent_a, self.hosts.voldir, volume_id)

    def connect(self, volume_id):
        """Cinder's connection for the destination, while A is attached."""
        return cinder("connect", self.hosts.agent_a, self.hosts.voldir, volume_id)

    def read(self, info, offset, length):
        with open(self.hosts.voldir / info["data"]["bdev_name"], "rb") as f:
            f.seek(offset)
            return f.read(length)

    def delete(self, volume_id):
        subprocess.run([sys.executable, str(CINDER_SIDE), "delete",
                        self.hosts.agent_a.rpc_socket, str(self.hosts.voldir), volume_id,
                        "1", "shared"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)


class RbdVolumes:
    """Cinder's rbd volumes: images of one Ceph cluster both agents reach."""

    kind = "rbd"

    def __init__(self, hosts, cluster):
        self.hosts = hosts
        self.cluster = cluster

    def _cinder(self, action, volume_id):
        opts = {"spdk_vhost_agent_socket": self.hosts.agent_a.rpc_socket,
                "spdk_vhost_rbd_pool": self.cluster.pool,
                "spdk_vhost_rbd_ceph_conf": self.cluster.conf,
                "spdk_vhost_rbd_keyring": self.cluster.keyring}
        proc = subprocess.run([sys.executable, str(CINDER_RBD_SIDE), action,
                               json.dumps(opts), volume_id], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()[-5000:]
        return json.loads(proc.stdout) if action in ("create", "connect") else None

    def create(self, volume_id):
        return self._cinder("create", volume_id)

    def connect(self, volume_id):
        return self._cinder("connect", volume_id)

    def read(self, info, offset, length):
        path = self.hosts.workdir / "rbd-export"
        self.cluster.rbd("export", "--no-progress", "%s/%s" % (
            self.cluster.pool, info["data"]["rbd"]["image"]), str(path))
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(length)
        finally:
            path.unlink()

    def delete(self, volume_id):
        with contextlib.suppress(AssertionError, subprocess.SubprocessError):
            self._cinder("delete", volume_id)


class Hosts:
    """Both hosts: libvirt connections, agents, Nova drivers, CONF."""

    def __init__(self, stack):
        self.daemons = lvd.ensure_libvirtd()
        stack.callback(self.daemons.stop)
        self.workdir = lvd.make_workdir(prefix="sb-novamig-")
        stack.callback(shutil.rmtree, self.workdir, True)
        self.voldir = self.workdir / "shared-volumes"
        self.voldir.mkdir()
        self.instances = self.workdir / "instances"
        self.instances.mkdir()
        self.agent_a = self._agent(stack, "host-a")
        self.agent_b = self._agent(stack, "host-b")
        self.pair = stack.enter_context(libvirt_pair.second_libvirtd())
        # Host B's address is 127.0.0.1 ([libvirt] live_migration_inbound_addr:
        # QEMU's migration stream goes there); its libvirtd is reached through
        # live_migration_uri, here a unix socket named after that address.
        by_address = self.workdir / "libvirtd-by-address"
        by_address.mkdir()
        (by_address / "127.0.0.1").symlink_to(self.pair.socket)
        self.conn_a = libvirt.open(lvd.URI)
        stack.callback(self.conn_a.close)
        self.conn_b = libvirt.open(self.pair.uri)
        stack.callback(self.conn_b.close)
        self.conf = config_fixture.Config(nova.conf.CONF)
        self.conf.setUp()
        stack.callback(self.conf.cleanUp)
        self.conf.config(group="libvirt", virt_type="qemu", file_backed_memory=1024,
                         live_migration_inbound_addr="127.0.0.1",
                         live_migration_uri="qemu+unix:///system?socket=%s/%%s"
                                            % by_address)
        self.conf.config(instances_path=str(self.instances))
        self.drv_a = self._driver(lvd.URI)
        self.drv_b = self._driver(self.pair.uri)
        self.ctx = nova_context.get_admin_context()

    def _agent(self, stack, name):
        base = self.workdir / name
        base.mkdir(mode=0o755)
        agent = AgentProcess(str(base), **ACCESS)
        agent.start()
        stack.callback(agent.kill9)
        stack.callback(agent.stop)
        return agent

    def _driver(self, uri):
        self.conf.config(group="libvirt", connection_uri=uri)
        drv = sb_driver.LibvirtDriver(None, read_only=False)
        drv._parse_migration_flags()      # what init_host does
        return drv

    def on(self, agent):
        """The next driver calls are on ``agent``'s host."""
        self.conf.config(group="spdk_vhost", agent_socket=agent.rpc_socket,
                         agent_timeout=30)

    def controllers(self, agent):
        with agent.client() as c:
            return {x["ctrlr"] for x in c.call("vhost_get_controllers")}

    def bdevs(self, agent):
        with agent.client() as c:
            return {x["name"] for x in c.call("bdev_get_bdevs")}


@pytest.fixture(scope="module")
def hosts():
    with contextlib.ExitStack() as stack:
        yield Hosts(stack)


@pytest.fixture(scope="module")
def ceph_cluster():
    with ceph.running_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["file", "rbd"])
def volumes(request, hosts):
    """The volume kinds that migrate: a shared file, an rbd image (its
    cluster is started only for the rbd case)."""
    if request.param == "rbd":
        return RbdVolumes(hosts, request.getfixturevalue("ceph_cluster"))
    return FileVolumes(hosts)


def _instance(ctx, uuid_=None):
    flavor = objects.Flavor(name="m1.vhost", memory_mb=256, vcpus=1, root_gb=0,
                            ephemeral_gb=0, swap=0, extra_specs={})
    kw = {"uuid": uuid_} if uuid_ else {}
    inst = fake_instance.fake_instance_obj(ctx, flavor=flavor, vm_state="active", **kw)
    inst.system_metadata = {}
    # What the manager's instance has loaded (no database here).
    inst.numa_topology = None
    inst.migration_context = None
    inst.resources = None
    return inst


def _block_device_info(ctx, inst, info):
    """block_device_info as the manager builds it: one DriverVolumeBlockDevice
    whose connection_info is ``info`` (the same dict: the driver's changes
    show in it, as Nova saves them)."""
    bdm = objects.BlockDeviceMapping(ctx, **fake_block_device.FakeDbBlockDeviceDict({
        "id": 1, "instance_uuid": inst.uuid, "volume_id": info["data"]["volume_id"],
        "source_type": "volume", "destination_type": "volume",
        "device_name": "/dev/vdb", "disk_bus": "virtio", "device_type": "disk",
        "boot_index": None, "connection_info": jsonutils.dumps(info),
        "attachment_id": str(uuid.uuid4())}))
    dbdm = driver_block_device.convert_volume(bdm)
    dbdm["connection_info"] = info
    return {"block_device_mapping": [dbdm], "root_device_name": None,
            "ephemerals": [], "swap": None}


def _dest_check_data(hosts, inst):
    """What the destination's check_can_live_migrate_destination returns
    (its shared-storage test file made by driver B)."""
    return objects.LibvirtLiveMigrateData(
        filename=hosts.drv_b._create_shared_storage_test_file(inst),
        image_type=nova.conf.CONF.libvirt.images_type,
        graphics_listen_addr_vnc="127.0.0.1", graphics_listen_addr_spice="127.0.0.1",
        serial_listen_addr=None, is_volume_backed=True, disk_over_commit=False,
        disk_available_mb=1024, block_migration=False,
        dst_wants_file_backed_memory=True, dst_cpu_shared_set_info=set())


class _ConsoleGuest(nova_guest.Guest):
    """Both "hosts" share /tmp: B's QEMU binds the console at another path
    (on two machines the same path would do)."""

    def __init__(self, domain, console):
        super().__init__(domain)
        self.console = console

    def get_xml_desc(self, dump_inactive=False, dump_sensitive=False,
                     dump_migratable=False):
        xml = super().get_xml_desc(dump_inactive, dump_sensitive, dump_migratable)
        if not dump_migratable:
            return xml
        root = etree.fromstring(xml.encode())
        for src in root.findall("devices/serial/source"):
            src.set("path", str(self.console))
        return etree.tostring(root, encoding="unicode")


def migrate(hosts, inst, md, guest):
    """Driver A's _live_migration_operation, bounded: the job is aborted
    after MIGRATE_TIMEOUT."""
    result = {}

    def run():
        try:
            hosts.drv_a._live_migration_operation(
                hosts.ctx, inst, "host-b", False, md, guest, [])
        except Exception as exc:   # noqa: BLE001 - reported below
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(MIGRATE_TIMEOUT)
    if thread.is_alive():
        try:
            guest._domain.abortJob()
        except libvirt.libvirtError:
            pass
        thread.join(60)
        pytest.fail("the migration did not finish in %ss" % MIGRATE_TIMEOUT)
    if "error" in result:
        raise AssertionError("migration failed: %s\n%s" % (
            result["error"], hosts.pair.qemu_log(guest._domain.name())[-3000:]))
    return time.monotonic() - start


def test_live_migration_through_the_nova_driver(hosts, volumes):
    ctx = hosts.ctx
    volume_id = str(uuid.uuid4())
    info_a = volumes.create(volume_id)
    bdev = info_a["data"]["bdev_name"]
    assert info_a["data"]["supports_live_migration"] is True
    d = lvd.TestDomain(hosts.conn_a, hosts.workdir, tag="novamig", vcpus=1,
                       memory_backing=FILE_BACKED)
    console_b = hosts.workdir / ("%s.console-b" % d.name)
    dom_b = None
    try:
        d.start()
        inst = _instance(ctx, d.dom.UUIDString())
        ctrlr = sb_volume.controller_name(inst, volume_id)

        # 1. The attach on A, as Nova makes it.
        hosts.on(hosts.agent_a)
        vol_a = hosts.drv_a._get_volume_driver(info_a)
        vol_a.connect_volume(info_a, inst)
        conf = vol_a.get_config(info_a, {"bus": "virtio", "dev": "vdb", "type": "disk"})
        shell = d.shell
        before = guest_support.guest_disks(shell)
        d.dom.attachDeviceFlags(conf.to_xml(), libvirt.VIR_DOMAIN_AFFECT_LIVE |
                                libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        dev = guest_support.new_guest_disk(shell, before)
        written = shell.check(
            "dd if=/dev/urandom of=/tmp/pat bs=4096 count=64 2>/dev/null && "
            "dd if=/tmp/pat of=/dev/%s bs=4096 seek=100 oflag=direct 2>/dev/null && "
            "md5sum /tmp/pat" % dev, timeout=120).split()[0]
        bdi_a = _block_device_info(ctx, inst, info_a)

        # 2. The source's pre-flight check passes for a shared file volume.
        md = _dest_check_data(hosts, inst)
        md = hosts.drv_a.check_can_live_migrate_source(ctx, inst, md, bdi_a)
        hosts.drv_b.cleanup_live_migration_destination_check(ctx, md)
        assert md.is_shared_block_storage and md.block_migration is False

        # 3. B: Cinder answers for the destination while A is attached, and
        # Nova's pre_live_migration connects the volume there.
        info_b = volumes.connect(volume_id)
        info_b["serial"] = volume_id        # Nova's refresh_connection_info
        assert info_b["data"]["bdev"] == info_a["data"]["bdev"]
        hosts.on(hosts.agent_b)
        md = hosts.drv_b.pre_live_migration(ctx, inst, _block_device_info(ctx, inst, info_b),
                                            network_model.NetworkInfo([]), None, md)
        assert hosts.controllers(hosts.agent_b) == {ctrlr}
        assert hosts.bdevs(hosts.agent_b) == {bdev}
        socket_b = os.path.join(hosts.agent_b.vhost_socket_dir, ctrlr)
        (bdmi,) = md.bdms
        assert bdmi.connection_info["data"]["vhost_socket"] == socket_b
        assert info_b["data"]["bdev_created"] is True

        # 4. A migrates it: the XML Nova sends names B's socket.
        ios_a = _completed(hosts.agent_a, ctrlr)
        d.close_shell()
        guest = _ConsoleGuest(d.dom, console_b)
        seconds = migrate(hosts, inst, md, guest)
        print("NOVA-MIGRATION %s seconds=%.1f" % (volumes.kind, seconds))
        dom_b = hosts.conn_b.lookupByUUIDString(inst.uuid)
        assert dom_b.isActive() and dom_b.isPersistent()
        with pytest.raises(libvirt.libvirtError):
            hosts.conn_a.lookupByUUIDString(inst.uuid)
        xml_b = etree.fromstring(dom_b.XMLDesc(0))
        (disk,) = [x for x in xml_b.findall("devices/disk") if x.get("type") == "vhostuser"]
        assert disk.find("source").get("path") == socket_b
        assert _completed(hosts.agent_a, ctrlr) >= ios_a > 0

        # 5. A: post_live_migration with the source's connection info: its
        # controller goes; the bdev is Cinder's export (A serves Cinder).
        hosts.on(hosts.agent_a)
        hosts.drv_a.post_live_migration(ctx, inst, bdi_a, md)
        assert hosts.controllers(hosts.agent_a) == set()
        assert hosts.bdevs(hosts.agent_a) == {bdev}

        # The guest runs on B, its disk served by agent B.
        shell = guest_support.SerialShell(str(console_b), connect_timeout=30,
                                          alive=lambda: bool(dom_b.isActive()))
        try:
            # Probe until the shell answers: a first command line sent right
            # after the switch-over was once lost on QEMU 7.2.
            shell.wait_ready(timeout=90, probe_after=0)
            out = shell.check("dd if=/dev/%s bs=4096 skip=100 count=64 iflag=direct "
                              "2>/dev/null | md5sum" % dev, timeout=120)
            assert out.split()[0] == written
            assert _completed(hosts.agent_b, ctrlr) > 0
            new = shell.check(
                "dd if=/dev/urandom of=/tmp/z bs=4096 count=16 2>/dev/null && "
                "dd if=/tmp/z of=/dev/%s bs=4096 seek=3000 oflag=direct 2>/dev/null && "
                "md5sum /tmp/z" % dev, timeout=120).split()[0]
        finally:
            shell.close()
        assert hashlib.md5(volumes.read(info_a, 3000 * 4096, 16 * 4096)).hexdigest() == new

        # Done on B: the instance goes, then its volume connection there.
        dom_b.destroy()
        dom_b.undefine()
        dom_b = None
        hosts.on(hosts.agent_b)
        hosts.drv_b._get_volume_driver(info_b).disconnect_volume(info_b, inst)
        assert hosts.controllers(hosts.agent_b) == set()
        assert hosts.bdevs(hosts.agent_b) == set()
    finally:
        if dom_b is not None:
            _destroy(dom_b)
        try:
            _destroy(hosts.conn_b.lookupByName(d.name))
        except libvirt.libvirtError:
            pass
        d.cleanup()
        with contextlib.suppress(OSError):
            console_b.unlink()
        _forget(hosts, volumes, volume_id)


def test_destination_is_cleaned_after_a_failed_migration(hosts):
    """pre_live_migration on B, then Nova's rollback: remove_volume_connection
    (detach_volume) and rollback_live_migration_at_destination; then
    pre_live_migration again and ``cleanup`` with the volumes (the path of an
    instance that is deleted on B).  B is left as it was; A keeps serving."""
    ctx = hosts.ctx
    volume_id = str(uuid.uuid4())
    bdev = "volume-%s" % volume_id
    info_a = cinder("create", hosts.agent_a, hosts.voldir, volume_id)
    inst = _instance(ctx)
    ctrlr = sb_volume.controller_name(inst, volume_id)
    try:
        hosts.on(hosts.agent_a)
        hosts.drv_a._get_volume_driver(info_a).connect_volume(info_a, inst)
        for how in ("rollback", "cleanup"):
            info_b = cinder("connect", hosts.agent_a, hosts.voldir, volume_id)
            info_b["serial"] = volume_id
            bdi_b = _block_device_info(ctx, inst, info_b)
            md = objects.LibvirtLiveMigrateData(
                is_shared_block_storage=True, is_shared_instance_path=True,
                block_migration=False, serial_listen_addr=None)
            hosts.on(hosts.agent_b)
            md = hosts.drv_b.pre_live_migration(ctx, inst, bdi_b,
                                                network_model.NetworkInfo([]), None, md)
            assert hosts.controllers(hosts.agent_b) == {ctrlr}
            assert hosts.bdevs(hosts.agent_b) == {bdev}
            if how == "rollback":
                hosts.drv_b.detach_volume(ctx, info_b, inst, "/dev/vdb")
                without = dict(bdi_b, block_device_mapping=[])
                hosts.drv_b.rollback_live_migration_at_destination(
                    ctx, inst, network_model.NetworkInfo([]), without,
                    destroy_disks=False, migrate_data=md)
            else:
                hosts.drv_b.cleanup(ctx, inst, network_model.NetworkInfo([]),
                                    block_device_info=bdi_b, destroy_disks=False,
                                    migrate_data=md)
            assert hosts.controllers(hosts.agent_b) == set(), how
            assert hosts.bdevs(hosts.agent_b) == set(), how
            assert hosts.controllers(hosts.agent_a) == {ctrlr}, how
        hosts.on(hosts.agent_a)
        hosts.drv_a._get_volume_driver(info_a).disconnect_volume(info_a, inst)
    finally:
        _forget(hosts, FileVolumes(hosts), volume_id)


def test_source_refuses_a_volume_on_local_storage(hosts):
    """A file volume of a backend without spdk_vhost_volume_dir_shared:
    the source's check refuses before anything happens on B."""
    ctx = hosts.ctx
    volume_id = str(uuid.uuid4())
    voldir = hosts.workdir / "local-volumes"
    voldir.mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, str(CINDER_SIDE), "create",
                           hosts.agent_a.rpc_socket, str(voldir), volume_id, "1"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-5000:]
    info = json.loads(proc.stdout)
    assert info["data"]["supports_live_migration"] is False
    inst = _instance(ctx)
    try:
        hosts.on(hosts.agent_a)
        vol = hosts.drv_a._get_volume_driver(info)
        vol.connect_volume(info, inst)
        md = objects.LibvirtLiveMigrateData(is_volume_backed=True, filename="none")
        with pytest.raises(nova_exception.MigrationPreCheckError,
                           match="volume %s is a file volume.*"
                                 "spdk_vhost_volume_dir_shared = true" % volume_id):
            hosts.drv_a.check_can_live_migrate_source(ctx, inst, md,
                                                      _block_device_info(ctx, inst, info))
        assert hosts.controllers(hosts.agent_b) == set()
        vol.disconnect_volume(info, inst)
    finally:
        subprocess.run([sys.executable, str(CINDER_SIDE), "delete",
                        hosts.agent_a.rpc_socket, str(voldir), volume_id, "1"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)


def _completed(agent, ctrlr):
    with agent.client() as c:
        return c.call("vhost_get_controllers", name=ctrlr)[0]["completed_ios"]


def _destroy(dom):
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isActive():
            dom.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefine()


def _forget(hosts, volumes, volume_id):
    """Whatever a failed test left on either agent, then the volume."""
    for agent in (hosts.agent_a, hosts.agent_b):
        with agent.client() as c:
            for x in c.call("vhost_get_controllers"):
                if volume_id in x["ctrlr"]:
                    with contextlib.suppress(Exception):
                        c.call("vhost_delete_controller", ctrlr=x["ctrlr"], force=True)
            if agent is hosts.agent_b:
                for method in ("bdev_uring_delete", "bdev_rbd_delete"):
                    with contextlib.suppress(Exception):
                        c.call(method, name="volume-%s" % volume_id)
    volumes.delete(volume_id)
