"""The LibvirtDriver subclass that registers the vhost_user_blk volume driver."""

import os
import shutil
import tempfile
import uuid
import warnings

import pytest

warnings.simplefilter("ignore", DeprecationWarning)

import nova.conf  # noqa: E402
from nova import context  # noqa: E402
from nova import exception as nova_exception  # noqa: E402
from nova import objects  # noqa: E402
from nova.tests.unit import fake_instance  # noqa: E402
from nova.virt.libvirt import driver as nova_libvirt_driver  # noqa: E402
from nova.virt.libvirt.volume import volume as nova_volume  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

from spdk_backend.nova import driver  # noqa: E402
from spdk_backend.nova import volume  # noqa: E402
from tests.support.openstack_agent import running_agent  # noqa: E402

objects.register_all()
MiB = 1 << 20


@pytest.fixture
def libvirt_driver():
    # read_only: no libvirt connection is opened until one is needed.
    return driver.LibvirtDriver(None, read_only=True)


def test_is_nova_libvirt_driver(libvirt_driver):
    assert isinstance(libvirt_driver, nova_libvirt_driver.LibvirtDriver)
    # Nova's own table is left alone.
    assert "vhost_user_blk" not in nova_libvirt_driver.VOLUME_DRIVERS


def test_volume_driver_lookup(libvirt_driver):
    ours = libvirt_driver._get_volume_driver({"driver_volume_type": "vhost_user_blk"})
    assert isinstance(ours, volume.LibvirtVhostUserBlkVolumeDriver)
    assert isinstance(ours, nova_volume.LibvirtBaseVolumeDriver)
    assert libvirt_driver._get_volume_driver(
        {"driver_volume_type": "vhost_user_blk"}) is ours
    local = libvirt_driver._get_volume_driver({"driver_volume_type": "local"})
    assert isinstance(local, nova_volume.LibvirtVolumeDriver)
    with pytest.raises(nova_exception.VolumeDriverNotFound):
        libvirt_driver._get_volume_driver({"driver_volume_type": "nosuch"})


def test_volume_connector_says_it_attaches_vhost_user_blk(libvirt_driver):
    """Cinder hands vhost_user_blk connection info only to a connector with
    the flag; the rest is os-brick's connector properties, as Nova's."""
    from os_brick import privileged

    # The tests run as root: os-brick's privileged reads (the iSCSI
    # initiator name...) run in this process, not through privsep-helper.
    privileged.default.set_client_mode(False)
    try:
        _check_volume_connector(libvirt_driver)
    finally:
        privileged.default.set_client_mode(True)


def _check_volume_connector(libvirt_driver):
    props = libvirt_driver.get_volume_connector(None)
    assert props["vhost_user_blk"] is True
    nova_props = nova_libvirt_driver.LibvirtDriver.get_volume_connector(libvirt_driver, None)
    assert "vhost_user_blk" not in nova_props
    assert {k: v for k, v in props.items() if k != "vhost_user_blk"} == nova_props


def test_extend_resizes_through_the_agent_not_qemu(libvirt_driver):
    """No block_resize on the guest: the agent's rescan is the whole resize."""
    fixture = config_fixture.Config(nova.conf.CONF)
    fixture.setUp()
    voldir = tempfile.mkdtemp(prefix="sb-novaext-", dir="/tmp")
    try:
        with running_agent() as agent, agent.client() as client:
            fixture.config(group="spdk_vhost", agent_socket=agent.rpc_socket)
            name = "volume-%s" % uuid.uuid4()
            path = os.path.join(voldir, name)
            with open(path, "wb") as f:
                f.truncate(4 * MiB)
            spec = {"method": "bdev_uring_create",
                    "params": {"name": name, "filename": path, "block_size": 512}}
            client.call(spec["method"], **spec["params"])
            info = {"driver_volume_type": "vhost_user_blk",
                    "data": {"volume_id": name[7:], "bdev_name": name, "bdev": spec}}
            os.truncate(path, 8 * MiB)
            # An instance libvirt does not know: Nova's own extend_volume
            # would look the guest up and fail.
            inst = fake_instance.fake_instance_obj(context.get_admin_context())
            assert libvirt_driver.extend_volume(None, info, inst, 8 * MiB) == 8 * MiB
            assert client.call("bdev_get_bdevs", name=name)[0]["num_blocks"] == 8 * MiB // 512
            info["data"]["bdev"] = None  # a backend that cannot be resized
            with pytest.raises(nova_exception.ExtendVolumeNotSupported):
                libvirt_driver.extend_volume(None, info, inst, 8 * MiB)
    finally:
        fixture.cleanUp()
        shutil.rmtree(voldir, ignore_errors=True)
