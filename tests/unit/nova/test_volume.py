"""LibvirtVhostUserBlkVolumeDriver against real nova, a real agent and libvirtd."""

import os
import uuid
import warnings

import pytest

warnings.simplefilter("ignore", DeprecationWarning)

import libvirt  # noqa: E402
from lxml import etree  # noqa: E402
import nova.conf  # noqa: E402
from nova import context  # noqa: E402
from nova import exception as nova_exception  # noqa: E402
from nova import objects  # noqa: E402
from nova.tests.unit import fake_instance  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

from spdk_backend import exception  # noqa: E402
from spdk_backend.nova import config as sb_config  # noqa: E402
from spdk_backend.nova import volume  # noqa: E402
from tests.support.openstack_agent import running_agent  # noqa: E402

objects.register_all()
MiB = 1 << 20
DISK_INFO = {"bus": "virtio", "dev": "vdb", "type": "disk"}


@pytest.fixture(scope="module")
def agent():
    with running_agent() as agent:
        yield agent


@pytest.fixture
def conf(agent):
    fixture = config_fixture.Config(nova.conf.CONF)
    fixture.setUp()
    fixture.config(group="spdk_vhost", agent_socket=agent.rpc_socket, agent_timeout=10)
    yield fixture
    fixture.cleanUp()


@pytest.fixture
def client(agent):
    with agent.client() as c:
        yield c


@pytest.fixture
def voldir():
    # Short, like the agent's own directory, and removed at the end.
    import shutil
    import tempfile
    path = tempfile.mkdtemp(prefix="sb-novavol-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _instance(page_size="large", **kw):
    specs = {"hw:mem_page_size": page_size} if page_size else {}
    flavor = objects.Flavor(name="m1.vhost", memory_mb=256, vcpus=1, root_gb=0,
                            ephemeral_gb=0, swap=0, extra_specs=specs)
    inst = fake_instance.fake_instance_obj(context.get_admin_context(), flavor=flavor, **kw)
    inst.system_metadata = {}  # the image properties live there; no image here
    return inst


def _connection_info(client, voldir, size=4 * MiB, create_bdev=True, **data):
    vol_id = str(uuid.uuid4())
    name = "volume-%s" % vol_id
    path = os.path.join(voldir, name)
    with open(path, "wb") as f:
        f.truncate(size)
    spec = {"method": "bdev_uring_create",
            "params": {"name": name, "filename": path, "block_size": 512}}
    if create_bdev:
        client.call(spec["method"], **spec["params"])
    info = {"volume_id": vol_id, "name": name, "bdev_name": name, "bdev": spec,
            "block_size": 512, "num_queues": 2, "access_mode": "rw", "discard": False}
    info.update(data)
    return {"driver_volume_type": "vhost_user_blk", "data": info, "serial": vol_id}


@pytest.fixture
def drv(conf):
    return volume.LibvirtVhostUserBlkVolumeDriver(host=None)


def _controllers(client):
    return {c["ctrlr"]: c for c in client.call("vhost_get_controllers")}


def _cleanup_bdev(client, name):
    try:
        client.call("bdev_uring_delete", name=name)
    except exception.AgentNotFound:
        pass


def test_connect_get_config_disconnect(drv, client, voldir):
    inst = _instance()
    info = _connection_info(client, voldir)
    data = info["data"]
    drv.connect_volume(info, inst)
    ctrlr = data["vhost_ctrlr"]
    assert ctrlr == "vhu-%s-%s" % (inst.uuid[:8], data["volume_id"])
    found = _controllers(client)[ctrlr]
    assert found["backend_specific"]["block"] == {"bdev": data["bdev_name"],
                                                  "readonly": False}
    assert data["vhost_socket"] == found["socket"] and os.path.exists(found["socket"])
    assert "bdev_created" not in data

    conf = drv.get_config(info, DISK_INFO)
    assert isinstance(conf, sb_config.LibvirtConfigGuestVhostUserDisk)
    root = etree.fromstring(conf.to_xml())
    assert root.get("type") == "vhostuser" and root.get("device") == "disk"
    assert root.find("driver").attrib == {"name": "qemu", "type": "raw", "queues": "2"}
    assert root.find("source").attrib == {"type": "unix", "path": found["socket"]}
    assert root.find("source/reconnect").attrib == {"enabled": "yes", "timeout": "10"}
    assert root.find("target").attrib == {"dev": "vdb", "bus": "virtio"}
    for rejected in ("serial", "iotune", "blockio", "readonly", "shareable"):
        assert root.find(rejected) is None

    # Connecting again (a retried attach) is fine.
    drv.connect_volume(info, inst)
    drv.disconnect_volume(info, inst)
    assert ctrlr not in _controllers(client)
    drv.disconnect_volume(info, inst)  # already gone: fine
    # The bdev belongs to Cinder's export: the compute side leaves it.
    assert client.call("bdev_get_bdevs", name=data["bdev_name"])
    _cleanup_bdev(client, data["bdev_name"])


def test_readonly_controller(drv, client, voldir):
    inst = _instance()
    info = _connection_info(client, voldir, access_mode="ro")
    drv.connect_volume(info, inst)
    try:
        ctrlr = _controllers(client)[info["data"]["vhost_ctrlr"]]
        assert ctrlr["backend_specific"]["block"]["readonly"] is True
        # libvirt rejects <readonly/> on a vhostuser disk: the controller enforces it.
        assert etree.fromstring(drv.get_config(info, DISK_INFO).to_xml()).find(
            "readonly") is None
    finally:
        drv.disconnect_volume(info, inst)
        _cleanup_bdev(client, info["data"]["bdev_name"])


def test_missing_bdev_is_recreated_and_removed_again(drv, client, voldir):
    inst = _instance()
    info = _connection_info(client, voldir, create_bdev=False)
    name = info["data"]["bdev_name"]
    drv.connect_volume(info, inst)
    assert info["data"]["bdev_created"] is True
    assert client.call("bdev_get_bdevs", name=name)[0]["num_blocks"] == 4 * MiB // 512
    drv.disconnect_volume(info, inst)
    with pytest.raises(exception.AgentNotFound):
        client.call("bdev_get_bdevs", name=name)


def test_missing_bdev_that_cannot_be_recreated(drv, client, voldir):
    info = _connection_info(client, voldir, create_bdev=False)
    info["data"]["bdev"] = None
    with pytest.raises(nova_exception.VolumeAttachFailed) as err:
        drv.connect_volume(info, _instance())
    assert "cannot recreate" in str(err.value)


@pytest.mark.parametrize("page_size,why", [
    (None, "its flavor has no hw:mem_page_size"),
    # Nova gives small pages no memAccess='shared': refused here, not by libvirt.
    ("small", "hw:mem_page_size=small: Nova keeps small pages private"),
])
def test_instance_without_shared_memory_gets_a_clear_error(drv, client, voldir,
                                                           page_size, why):
    info = _connection_info(client, voldir, create_bdev=False)
    with pytest.raises(nova_exception.VolumeAttachFailed) as err:
        drv.connect_volume(info, _instance(page_size=page_size))
    assert "has no shared guest memory" in str(err.value) and why in str(err.value)
    assert "hw:mem_page_size=large" in str(err.value)
    # Refused before the agent made anything.
    assert not _controllers(client)
    with pytest.raises(exception.AgentNotFound):
        client.call("bdev_get_bdevs", name=info["data"]["bdev_name"])


def test_unknown_bdev_method_is_refused_before_the_agent(drv, client, voldir):
    info = _connection_info(client, voldir, create_bdev=False)
    info["data"]["bdev"]["method"] = "bdev_malloc_create"
    info["data"]["bdev"]["params"] = {"name": info["data"]["bdev_name"],
                                      "num_blocks": 8, "block_size": 512}
    with pytest.raises(nova_exception.VolumeAttachFailed) as err:
        drv.connect_volume(info, _instance())
    assert "names agent method 'bdev_malloc_create'" in str(err.value)
    assert not _controllers(client)
    with pytest.raises(exception.AgentNotFound):
        client.call("bdev_get_bdevs", name=info["data"]["bdev_name"])


def test_file_backed_memory_counts_as_shared(drv, conf, client, voldir):
    conf.config(group="libvirt", file_backed_memory=1024)
    inst = _instance(page_size=None)
    info = _connection_info(client, voldir)
    drv.connect_volume(info, inst)
    drv.disconnect_volume(info, inst)
    _cleanup_bdev(client, info["data"]["bdev_name"])


def test_agent_errors_become_nova_errors(drv, client, voldir):
    inst = _instance()
    info = _connection_info(client, voldir)
    info["data"]["bdev_name"] = "no-such-bdev"
    info["data"]["bdev"] = {"method": "bdev_uring_create",
                            "params": {"name": "no-such-bdev",
                                       "filename": "/nonexistent/file"}}
    try:
        with pytest.raises(nova_exception.VolumeAttachFailed):
            drv.connect_volume(info, inst)
    finally:
        _cleanup_bdev(client, "volume-%s" % info["data"]["volume_id"])


def test_unconnected_volume_has_no_config(drv):
    with pytest.raises(nova_exception.InvalidVolume):
        drv.get_config({"data": {"volume_id": "x"}}, DISK_INFO)
    with pytest.raises(nova_exception.InvalidVolume):
        drv.get_config({"data": {"vhost_socket": "/x"}}, dict(DISK_INFO, bus="scsi"))


def test_extend(drv, client, voldir):
    inst = _instance()
    info = _connection_info(client, voldir)
    drv.connect_volume(info, inst)
    try:
        name = info["data"]["bdev_name"]
        os.truncate(info["data"]["bdev"]["params"]["filename"], 16 * MiB)  # Cinder's part
        assert drv.extend_volume(info, inst, 16 * MiB) == 16 * MiB
        assert client.call("bdev_get_bdevs", name=name)[0]["num_blocks"] == 16 * MiB // 512
    finally:
        drv.disconnect_volume(info, inst)
        _cleanup_bdev(client, info["data"]["bdev_name"])


def test_disk_is_accepted_by_libvirtd(drv, client, voldir):
    """The generated disk, in a domain defined in the real libvirtd."""
    inst = _instance()
    info = _connection_info(client, voldir)
    drv.connect_volume(info, inst)
    conn = libvirt.open("qemu:///system")
    name = "sb-nova-test-%s" % uuid.uuid4().hex[:8]
    disk_xml = drv.get_config(info, DISK_INFO).to_xml()
    domain_xml = (
        "<domain type='qemu'><name>%s</name><memory unit='MiB'>128</memory>"
        "<memoryBacking><hugepages/><access mode='shared'/></memoryBacking>"
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='q35'>hvm</type></os>"
        "<devices>%s</devices></domain>" % (name, disk_xml))
    dom = None
    try:
        try:
            dom = conn.defineXML(domain_xml)
        except libvirt.libvirtError:
            # Hosts without hugepages configured: memfd gives the same sharing.
            dom = conn.defineXML(domain_xml.replace("<hugepages/>",
                                                    "<source type='memfd'/>"))
        root = etree.fromstring(dom.XMLDesc(0))
        (disk,) = root.findall("devices/disk")
        assert disk.get("type") == "vhostuser"
        assert disk.find("source").get("path") == info["data"]["vhost_socket"]
        assert disk.find("source/reconnect").get("timeout") == "10"
        assert disk.find("driver").get("queues") == "2"
        assert disk.find("target").get("dev") == "vdb"
        assert disk.find("alias").get("name") == "ua-%s" % info["data"]["volume_id"]
        # What Nova does on detach: parse the live disk with its own class,
        # format it again and hand it to libvirt.
        from nova.virt.libvirt import config as vconfig
        parsed = vconfig.LibvirtConfigGuestDisk()
        parsed.parse_dom(disk)
        dom.detachDeviceFlags(parsed.to_xml(), libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        assert etree.fromstring(dom.XMLDesc(0)).find("devices/disk") is None
    finally:
        if dom is not None:
            dom.undefine()
        conn.close()
        drv.disconnect_volume(info, inst)
        _cleanup_bdev(client, info["data"]["bdev_name"])


def test_hugepages_from_the_image_count_as_shared(drv, client, voldir):
    # Nova takes the image's page size under a flavor that says large or any.
    inst = _instance(page_size="any")
    inst.system_metadata = {"image_hw_mem_page_size": "2048"}
    info = _connection_info(client, voldir)
    drv.connect_volume(info, inst)
    drv.disconnect_volume(info, inst)
    _cleanup_bdev(client, info["data"]["bdev_name"])
