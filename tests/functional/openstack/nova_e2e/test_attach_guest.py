"""Cinder to Nova to a running guest: a volume attached as a vhost-user-blk disk.

The Cinder driver (in its own process, see ../cinder_side.py) creates and
exports the volume; the Nova volume driver connects it and builds the disk;
libvirt hot-plugs it into a running TCG guest with shared memory the way
Nova does; the guest writes, the host reads the volume's file; an extend
reaches the running guest; then detach, disconnect and delete.
"""

import hashlib
import json
import pathlib
import shutil
import subprocess
import sys
import time
import uuid
import warnings

import pytest

warnings.simplefilter("ignore", DeprecationWarning)

import libvirt  # noqa: E402
from lxml import etree  # noqa: E402
from nova import context  # noqa: E402
from nova import exception as nova_exception  # noqa: E402
from nova import objects  # noqa: E402
from nova.tests.unit import fake_instance  # noqa: E402
from nova.virt.libvirt import config as vconfig  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402
import nova.conf  # noqa: E402

from spdk_backend.nova import driver as sb_driver  # noqa: E402
from tests.support import guest as guest_support  # noqa: E402
from tests.support import libvirt_domain as lvd  # noqa: E402
from tests.support.agent_proc import AgentProcess  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
objects.register_all()
CINDER_SIDE = pathlib.Path(__file__).resolve().parents[1] / "cinder_side.py"
GiB = 1 << 30


def cinder(action, agent, voldir, volume_id, size_gb=1):
    proc = subprocess.run([sys.executable, str(CINDER_SIDE), action, agent.rpc_socket,
                           str(voldir), volume_id, str(size_gb)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-5000:]
    return json.loads(proc.stdout) if action == "create" else None


@pytest.fixture(scope="module")
def env():
    daemons = lvd.ensure_libvirtd()
    workdir = lvd.make_workdir(prefix="sb-nova-e2e-")
    conn = libvirt.open(lvd.URI)
    # libvirt runs QEMU as libvirt-qemu:kvm; the agent opens the controller
    # sockets to that group, as a deployment configures it.
    agent = AgentProcess(str(workdir), vhost_socket_group="kvm")
    domain = None
    try:
        agent.start()
        image = guest_support.build_guest_image()
        domain = lvd.TestDomain(
            conn, workdir, tag="nova", image=image, vcpus=1,
            memory_backing="<source type='memfd'/><access mode='shared'/>")
        domain.start()
        yield agent, domain, workdir
    finally:
        if domain is not None:
            domain.cleanup()
        agent.stop()
        agent.kill9()
        conn.close()
        shutil.rmtree(workdir, ignore_errors=True)
        daemons.stop()


def test_attach_io_extend_detach(env):
    agent, domain, workdir = env
    fixture = config_fixture.Config(nova.conf.CONF)
    fixture.setUp()
    fixture.config(group="spdk_vhost", agent_socket=agent.rpc_socket)
    voldir = workdir / "volumes"
    voldir.mkdir()
    volume_id = str(uuid.uuid4())
    try:
        info = cinder("create", agent, voldir, volume_id)
        assert info["driver_volume_type"] == "vhost_user_blk"

        drv = sb_driver.LibvirtDriver(None, read_only=True)
        vol_driver = drv._get_volume_driver(info)
        flavor = objects.Flavor(name="m1.vhost", memory_mb=256, vcpus=1, root_gb=0,
                                ephemeral_gb=0, swap=0,
                                extra_specs={"hw:mem_page_size": "large"})
        inst = fake_instance.fake_instance_obj(context.get_admin_context(), flavor=flavor)
        inst.system_metadata = {}
        vol_driver.connect_volume(info, inst)
        conf = vol_driver.get_config(info, {"bus": "virtio", "dev": "vdb", "type": "disk"})

        shell = domain.shell
        before = set(shell.check("ls /sys/block").split())
        flags = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG
        domain.dom.attachDeviceFlags(conf.to_xml(), flags)
        dev = None
        for _ in range(300):
            new = set(shell.check("ls /sys/block").split()) - before
            if new:
                (dev,) = new
                break
            time.sleep(0.1)
        assert dev, "the guest never saw the disk"
        assert int(shell.check("cat /sys/block/%s/size" % dev)) * 512 == GiB

        # Guest writes; the bytes land in the Cinder volume's file.
        out = shell.check(
            "dd if=/dev/urandom of=/tmp/pat bs=4096 count=64 2>/dev/null && "
            "dd if=/tmp/pat of=/dev/%s bs=4096 seek=1000 conv=fsync 2>/dev/null && "
            "md5sum /tmp/pat" % dev, timeout=120)
        written = out.split()[0]
        with open(voldir / ("volume-%s" % volume_id), "rb") as f:
            f.seek(1000 * 4096)
            assert hashlib.md5(f.read(64 * 4096)).hexdigest() == written

        # Extend: Cinder grows the file, Nova's driver rescans the bdev.
        cinder("extend", agent, voldir, volume_id, 2)
        assert drv.extend_volume(None, info, inst, 2 * GiB) == 2 * GiB
        with agent.client() as c:
            bdev = c.call("bdev_get_bdevs", name=info["data"]["bdev_name"])[0]
        assert bdev["num_blocks"] * bdev["block_size"] == 2 * GiB
        # ... and the guest sees it live (the controller's config-change message).
        for _ in range(100):
            size = int(shell.check("cat /sys/block/%s/size" % dev)) * 512
            if size == 2 * GiB:
                break
            time.sleep(0.1)
        assert size == 2 * GiB

        # Detach as Nova does: its own disk class parsed from the live XML.
        parsed = next(d for d in _live_disks(domain.dom) if d.target_dev == "vdb")
        domain.dom.detachDeviceFlags(parsed.to_xml(), flags)
        for _ in range(300):
            if dev not in shell.check("ls /sys/block").split():
                break
            time.sleep(0.1)
        else:
            pytest.fail("the guest never lost the disk")
        vol_driver.disconnect_volume(info, inst)
        with agent.client() as c:
            assert not [x for x in c.call("vhost_get_controllers")
                        if x["ctrlr"] == info["data"]["vhost_ctrlr"]]
        cinder("delete", agent, voldir, volume_id)
        assert not (voldir / ("volume-%s" % volume_id)).exists()
    finally:
        fixture.cleanUp()


def test_connect_refuses_a_socket_qemu_cannot_open(env):
    """An agent whose sockets only root may open, and the instance's QEMU
    runs as libvirt-qemu: connect_volume fails with VolumeAttachFailed at
    once and deletes its controller, instead of handing Nova a disk whose
    hot-plug QEMU 10 would retry for ever (docs/support.md)."""
    _, domain, workdir = env
    base = workdir / "closed-agent"
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    fixture = config_fixture.Config(nova.conf.CONF)
    fixture.setUp()
    voldir = workdir / "closed-volumes"
    voldir.mkdir()
    volume_id = str(uuid.uuid4())
    try:
        with AgentProcess(str(base), vhost_socket_mode="0600") as closed:
            fixture.config(group="spdk_vhost", agent_socket=closed.rpc_socket)
            info = cinder("create", closed, voldir, volume_id)
            drv = sb_driver.LibvirtDriver(None, read_only=True)
            vol_driver = drv._get_volume_driver(info)
            flavor = objects.Flavor(name="m1.vhost", memory_mb=256, vcpus=1, root_gb=0,
                                    ephemeral_gb=0, swap=0,
                                    extra_specs={"hw:mem_page_size": "large"})
            inst = fake_instance.fake_instance_obj(
                context.get_admin_context(), flavor=flavor, uuid=domain.dom.UUIDString())
            inst.system_metadata = {}
            start = time.monotonic()
            with pytest.raises(nova_exception.VolumeAttachFailed,
                               match="Permission denied: QEMU runs as uid"):
                vol_driver.connect_volume(info, inst)
            assert time.monotonic() - start < 30
            with closed.client() as c:
                assert c.call("vhost_get_controllers") == []
            cinder("delete", closed, voldir, volume_id)
    finally:
        fixture.cleanUp()


def _live_disks(dom):
    root = etree.fromstring(dom.XMLDesc(0))
    disks = []
    for el in root.findall("devices/disk"):
        d = vconfig.LibvirtConfigGuestDisk()
        d.parse_dom(el)
        disks.append(d)
    return disks
