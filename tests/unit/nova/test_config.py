"""The vhostuser disk config object, as Nova's libvirt driver uses it."""

import warnings

warnings.simplefilter("ignore", DeprecationWarning)

from lxml import etree  # noqa: E402
from nova.virt.libvirt import config as vconfig  # noqa: E402

from spdk_backend.nova import config  # noqa: E402


def _disk(**kw):
    disk = config.LibvirtConfigGuestVhostUserDisk()
    disk.source_path = "/run/sb/vhost/vhu-1"
    disk.target_dev = "vdb"
    for key, value in kw.items():
        setattr(disk, key, value)
    return disk


def _canon(xml):
    parser = etree.XMLParser(remove_blank_text=True)
    return etree.tostring(etree.fromstring(xml, parser), method="c14n").decode()


def test_is_a_nova_disk():
    assert isinstance(_disk(), vconfig.LibvirtConfigGuestDisk)


def test_format():
    xml = _disk(driver_queues=4).to_xml()
    assert _canon(xml) == _canon(
        "<disk type='vhostuser' device='disk'>"
        "<driver name='qemu' type='raw' queues='4'/>"
        "<source type='unix' path='/run/sb/vhost/vhu-1'>"
        "<reconnect enabled='yes' timeout='10'/></source>"
        "<target dev='vdb' bus='virtio'/></disk>")


def test_what_libvirt_rejects_is_never_written():
    # Nova's generic code may set these; libvirt refuses each one on a
    # vhostuser disk, so the subclass drops them.
    disk = _disk(driver_cache="none", driver_io="native", driver_discard="unmap",
                 serial="0123", readonly=True, shareable=True,
                 logical_block_size=4096, physical_block_size=4096,
                 disk_total_iops_sec=100)
    root = etree.fromstring(disk.to_xml())
    assert root.find("serial") is None
    assert root.find("iotune") is None
    assert root.find("blockio") is None
    assert root.find("readonly") is None
    assert root.find("shareable") is None
    drv = root.find("driver")
    assert set(drv.attrib) == {"name", "type"}


def test_alias_address_and_boot_order():
    disk = _disk(alias="ua-1234", boot_order="2")
    addr = vconfig.LibvirtConfigGuestDeviceAddressPCI()
    addr.domain, addr.bus, addr.slot, addr.function = 0, 5, 0, 0
    disk.device_addr = addr
    root = etree.fromstring(disk.to_xml())
    assert root.find("alias").get("name") == "ua-1234"
    assert root.find("boot").get("order") == "2"
    assert root.find("address").get("type") == "pci"


def test_parse_round_trip():
    xml = _disk(driver_queues=2, reconnect_timeout=5, alias="ua-x").to_xml()
    parsed = config.LibvirtConfigGuestVhostUserDisk()
    parsed.parse_str(xml)
    assert parsed.source_type == "vhostuser"
    assert parsed.source_path == "/run/sb/vhost/vhu-1"
    assert parsed.driver_queues == 2 and parsed.reconnect_timeout == 5
    assert parsed.target_dev == "vdb" and parsed.target_bus == "virtio"
    assert _canon(parsed.to_xml()) == _canon(xml)
