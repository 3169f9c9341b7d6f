"""XML config classes: parse, format, round trips on real-world domains."""

import pathlib

import pytest
from lxml import etree

from spdk_backend import exception
from spdk_backend.virt.libvirt import config

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.xml"))


def load(name):
    return (FIXTURES / name).read_text()


def canon(xml_or_el):
    """Canonical form: parsed without blank text, C14N."""
    if not isinstance(xml_or_el, (str, bytes)):
        xml_or_el = etree.tostring(xml_or_el)
    el = config.parse_xml(xml_or_el)
    return etree.tostring(el, method="c14n")


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_domain_round_trip_is_exact(name):
    xml = load(name)
    dom = config.Domain.from_xml(xml)
    assert canon(dom.to_xml()) == canon(xml)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_domain_round_trip_after_noop_edit_of_owned_nodes(name):
    # Re-assigning parsed values through the owned classes changes nothing.
    xml = load(name)
    dom = config.Domain.from_xml(xml)
    if dom.memory_backing is not None:
        mb = dom.memory_backing
        mb.access_mode = mb.access_mode
    for cell in dom.numa_cells:
        cell.mem_access = cell.mem_access
    assert canon(dom.to_xml()) == canon(xml)


def test_parse_private_memory_domain():
    dom = config.Domain.from_xml(load("private_memory.xml"))
    assert dom.name == "web01"
    assert dom.virt_type == "kvm"
    assert dom.memory_kib == 2 * 1024 * 1024
    assert dom.vcpus == 2          # current='2' of 4
    assert dom.machine == "pc-q35-7.2" and dom.is_q35
    assert dom.acpi
    assert dom.memory_backing is None
    assert dom.numa_cells == []
    assert [(d.source_type, d.source_device, d.target_dev)
            for d in dom.disks] == [("file", "disk", "vda"),
                                    ("file", "cdrom", "sda")]
    assert dom.disks[0].source_path == "/var/lib/libvirt/images/web01.qcow2"
    assert dom.disks[0].address.bus == 4
    assert dom.disks[1].source_path is None
    ports = [c.index for c in dom.controllers if c.model == "pcie-root-port"]
    assert ports == [1, 2, 3, 4, 5, 6]
    assert sorted({a.bus for a in dom.pci_addresses}) == [0, 1, 2, 3, 4, 5, 6]


def test_parse_hugepages_numa_domain():
    dom = config.Domain.from_xml(load("hugepages_numa.xml"))
    assert dom.memory_kib == 8 * 1024 * 1024
    assert dom.vcpus == 4
    assert not dom.is_q35
    mb = dom.memory_backing
    assert mb.hugepages
    assert [(p.size, p.unit, p.nodeset, p.size_kib) for p in mb.pages] == \
        [(2048, "KiB", "0-1", 2048)]
    assert mb.source_type is None and mb.access_mode is None
    assert [(c.id, c.cpus, c.memory_kib, c.mem_access)
            for c in dom.numa_cells] == [(0, "0-1", 4194304, "private"),
                                         (1, "2-3", 4194304, None)]
    net, blk = dom.disks
    assert (net.source_type, net.source_protocol, net.source_path) == \
        ("network", "rbd",
         "volumes/volume-2f4e6a8c-1b3d-4e5f-9a7b-8c6d4e2f0a1b")
    assert blk.source_path.startswith("/dev/disk/by-path/")
    assert (net.alias, blk.alias) == ("virtio-disk0", "virtio-disk1")


def test_parse_existing_vhostuser_disk():
    dom = config.Domain.from_xml(load("vhostuser_present.xml"))
    assert dom.memory_kib == 512 * 1024
    vu = dom.disks[1]
    assert isinstance(vu, config.VhostUserDisk)
    assert not isinstance(dom.disks[0], config.VhostUserDisk)
    assert vu.source_path == "/var/run/spdk-backend/vhost/vhost.0"
    assert vu.source_unix_type == "unix"
    assert (vu.queues, vu.queue_size) == (4, 256)
    assert (vu.reconnect_enabled, vu.reconnect_timeout) == (True, 10)
    assert (vu.target_dev, vu.target_bus, vu.alias) == ("vdb", "virtio",
                                                        "ua-sb-vhost_0")
    assert vu.address.fields["bus"] == "0x02"
    assert dom.memory_backing.source_type == "memfd"
    assert dom.memory_backing.access_mode == "shared"


def test_vhostuser_disk_format():
    disk = config.VhostUserDisk(source_path="/tmp/sb/vhost.1",
                                target_dev="vdc", queues=2, queue_size=128,
                                alias="ua-sb-vhost_1")
    expected = """
      <disk type='vhostuser' device='disk'>
        <driver name='qemu' type='raw' queues='2' queue_size='128'/>
        <source type='unix' path='/tmp/sb/vhost.1'>
          <reconnect enabled='yes' timeout='10'/>
        </source>
        <target dev='vdc' bus='virtio'/>
        <alias name='ua-sb-vhost_1'/>
      </disk>"""
    assert canon(disk.to_xml()) == canon(expected)


def test_vhostuser_disk_minimal_format_and_reparse():
    disk = config.VhostUserDisk(source_path="/s", target_dev="vdb",
                                reconnect_timeout=None)
    el = disk.format_dom()
    assert el.find("source/reconnect") is None
    assert el.find("alias") is None
    assert el.find("driver").attrib == {"name": "qemu", "type": "raw"}
    again = config.VhostUserDisk.from_dom(el)
    assert (again.source_path, again.target_dev, again.queues,
            again.reconnect_enabled) == ("/s", "vdb", None, None)


def test_vhostuser_disk_with_address_round_trip():
    disk = config.VhostUserDisk(
        source_path="/s", target_dev="vdb", queues=1,
        address=config.DeviceAddress(type="pci", domain="0x0000",
                                     bus="0x05", slot="0x00",
                                     function="0x0"))
    again = config.VhostUserDisk.from_xml(disk.to_xml())
    assert again.address.type == "pci"
    assert (again.address.bus, again.address.slot,
            again.address.function) == (5, 0, 0)
    assert canon(again.to_xml()) == canon(disk.to_xml())


def test_vhostuser_disk_edit_keeps_unknown_parts():
    xml = """
      <disk type='vhostuser' device='disk' snapshot='no' model='virtio'>
        <driver name='qemu' type='raw' queues='2' iommu='on'/>
        <source type='unix' path='/old'>
          <reconnect enabled='yes' timeout='5'/>
        </source>
        <target dev='vdb' bus='virtio'/>
        <boot order='2'/>
        <alias name='ua-x'/>
      </disk>"""
    disk = config.VhostUserDisk.from_xml(xml)
    disk.source_path = "/new"
    disk.driver_queues = 4
    el = disk.format_dom()
    assert el.get("snapshot") == "no" and el.get("model") == "virtio"
    assert el.find("driver").get("iommu") == "on"
    assert el.find("driver").get("queues") == "4"
    assert el.find("source").get("path") == "/new"
    assert el.find("boot").get("order") == "2"


def test_vhostuser_disk_rejects_other_types():
    with pytest.raises(exception.InvalidInput):
        config.VhostUserDisk.from_xml("<disk type='file'/>")
    with pytest.raises(exception.InvalidInput):
        config.GuestDisk.from_xml("<controller/>")


def test_reconnect_disabled_has_no_timeout():
    disk = config.VhostUserDisk(source_path="/s", target_dev="vdb")
    disk.reconnect_enabled = False
    el = disk.format_dom()
    assert el.find("source/reconnect").attrib == {"enabled": "no"}


def test_memory_backing_format_new():
    mb = config.MemoryBacking(
        hugepages=True, pages=[config.MemoryBackingPage(size=1, unit="G")],
        access_mode="shared")
    expected = """<memoryBacking><hugepages><page size='1' unit='G'/>
        </hugepages><access mode='shared'/></memoryBacking>"""
    assert canon(mb.to_xml()) == canon(expected)
    assert mb.pages[0].size_kib == 1024 * 1024


def test_memory_backing_edit_keeps_other_children():
    xml = load("pc_anonymous.xml")
    el = config.parse_xml(xml).find("memoryBacking")
    mb = config.MemoryBacking.from_dom(el)
    assert (mb.hugepages, mb.source_type, mb.access_mode) == \
        (False, "anonymous", None)
    mb.source_type = "memfd"
    mb.access_mode = "shared"
    out = mb.format_dom()
    assert [c.tag for c in out] == ["nosharepages", "source", "allocation",
                                    "access"]
    assert out.find("allocation").get("mode") == "immediate"
    assert out.find("source").get("type") == "memfd"


def test_memory_backing_drop_hugepages_and_source():
    el = config.parse_xml(
        "<memoryBacking><hugepages><page size='2048'/></hugepages>"
        "<source type='file'/><locked/></memoryBacking>")
    mb = config.MemoryBacking.from_dom(el)
    mb.hugepages = False
    mb.source_type = None
    assert canon(mb.to_xml()) == canon("<memoryBacking><locked/>"
                                       "</memoryBacking>")


def test_memory_backing_default_hugepages_has_no_pages():
    mb = config.MemoryBacking.from_xml(
        "<memoryBacking><hugepages/></memoryBacking>")
    assert mb.hugepages and mb.pages == []
    assert canon(mb.to_xml()) == canon(
        "<memoryBacking><hugepages/></memoryBacking>")


def test_numa_cell_edit_keeps_children():
    dom = config.Domain.from_xml(load("hugepages_numa.xml"))
    dom.numa_cells[1].mem_access = "shared"
    out = dom.format_dom()
    cell = out.findall("cpu/numa/cell")[1]
    assert cell.get("memAccess") == "shared"
    assert len(cell.findall("distances/sibling")) == 2
    assert out.findall("cpu/numa/cell")[0].get("memAccess") == "private"


def test_domain_inserts_memory_backing_after_memory():
    dom = config.Domain.from_xml(load("private_memory.xml"))
    dom.memory_backing = config.MemoryBacking(source_type="memfd",
                                              access_mode="shared")
    out = dom.format_dom()
    tags = [c.tag for c in out if isinstance(c.tag, str)]
    assert tags.index("memoryBacking") == tags.index("currentMemory") + 1
    # Everything else is byte-for-byte the original.
    out.remove(out.find("memoryBacking"))
    assert canon(out) == canon(load("private_memory.xml"))


def test_domain_removes_memory_backing():
    dom = config.Domain.from_xml(load("vhostuser_present.xml"))
    dom.memory_backing = None
    assert dom.format_dom().find("memoryBacking") is None


def test_domain_keeps_namespaced_and_comment_nodes():
    dom = config.Domain.from_xml(load("vhostuser_present.xml"))
    dom.memory_backing.access_mode = "private"
    xml = dom.to_xml()
    assert "<!-- operators leave notes in here -->" in xml
    assert "ICH9-LPC.disable_s3=1" in xml
    assert "vhost-user test guest &amp; friends" in xml
    assert "<access mode=\"private\"/>" in xml


def test_domain_cannot_change_cell_count():
    dom = config.Domain.from_xml(load("hugepages_numa.xml"))
    dom.numa_cells.pop()
    with pytest.raises(exception.InvalidInput):
        dom.format_dom()


def test_domain_must_be_parsed_to_format():
    with pytest.raises(exception.InvalidInput):
        config.Domain().format_dom()


def test_wrong_root_element():
    with pytest.raises(exception.InvalidInput, match="expected <domain>"):
        config.Domain.from_xml("<disk/>")


def test_malformed_xml():
    with pytest.raises(exception.InvalidInput, match="malformed XML"):
        config.Domain.from_xml("<domain><name>x</domain>")


def test_external_entities_are_not_resolved(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET")
    xml = ("<!DOCTYPE d [<!ENTITY x SYSTEM 'file://%s'>]>"
           "<domain><name>&x;</name></domain>" % secret)
    try:
        dom = config.Domain.from_xml(xml)
    except exception.InvalidInput:
        return
    assert "TOPSECRET" not in (dom.name or "")
    assert "TOPSECRET" not in dom.to_xml()


@pytest.mark.parametrize("value,unit,kib", [
    (512, "MiB", 524288), (512, "M", 524288), (1, "G", 1048576),
    (1, "GiB", 1048576), (2048, None, 2048), (2048, "KiB", 2048),
    (2048, "k", 2048), (1000, "KB", 976), (1048576, "b", 1024),
    (1, "T", 1024 ** 3), (2, "MB", 1953),
])
def test_to_kib(value, unit, kib):
    assert config.to_kib(value, unit) == kib


def test_to_kib_unknown_unit():
    with pytest.raises(exception.InvalidInput):
        config.to_kib(1, "furlongs")


def test_bad_integer_is_invalid_input():
    with pytest.raises(exception.InvalidInput):
        config.NumaCell.from_xml("<cell id='zero'/>")


def test_controller_round_trip():
    xml = ("<controller type='pci' index='3' model='pcie-root-port'>"
           "<model name='pcie-root-port'/><target chassis='3' port='0xa'/>"
           "<address type='pci' domain='0x0000' bus='0x00' slot='0x01' "
           "function='0x2'/></controller>")
    ctl = config.Controller.from_xml(xml)
    assert (ctl.type, ctl.index, ctl.model) == ("pci", 3, "pcie-root-port")
    assert (ctl.address.bus, ctl.address.slot, ctl.address.function) == \
        (0, 1, 2)
    assert canon(ctl.to_xml()) == canon(xml)


@pytest.mark.parametrize("xml", [
    "<domain><memory unit='MiB'/></domain>",
    "<domain><memory unit='MiB'>lots</memory></domain>",
    "<domain><vcpu/></domain>",
    "<domain><memory unit='parsecs'>1</memory></domain>",
])
def test_garbage_domain_is_invalid_input(xml):
    with pytest.raises(exception.InvalidInput):
        config.Domain.from_xml(xml)


def test_minimal_domain():
    dom = config.Domain.from_xml("<domain type='qemu'><name>m</name>"
                                 "</domain>")
    assert (dom.name, dom.memory_kib, dom.vcpus, dom.machine) == \
        ("m", None, None, None)
    assert dom.disks == [] and dom.numa_cells == [] and not dom.is_q35


@pytest.mark.parametrize("xml", [
    # An empty <source/> and <driver/> an operator wrote stay.
    "<disk type='file' device='cdrom'><driver/><source/>"
    "<target dev='sdb' bus='sata'/><readonly/></disk>",
    # <address> before other children keeps its place.
    "<disk type='file' device='disk'><source file='/a'/>"
    "<target dev='vdc' bus='virtio'/><address type='pci' domain='0x0000' "
    "bus='0x07' slot='0x00' function='0x0'/><boot order='1'/></disk>",
])
def test_disk_round_trip_keeps_layout(xml):
    disk = config.GuestDisk.from_xml(xml)
    assert canon(disk.to_xml()) == canon(xml)
    disk.target_dev = "vdz"
    out = disk.format_dom()
    assert [c.tag for c in out] == [c.tag for c in config.parse_xml(xml)]


def test_disk_address_replaced_in_place():
    xml = ("<disk type='file'><source file='/a'/><address type='pci' "
           "bus='0x07'/><boot order='1'/></disk>")
    disk = config.GuestDisk.from_xml(xml)
    disk.address = config.DeviceAddress(type="pci", bus="0x08")
    out = disk.format_dom()
    assert [c.tag for c in out] == ["source", "address", "boot"]
    assert out.find("address").get("bus") == "0x08"
    disk.address = None
    assert [c.tag for c in disk.format_dom()] == ["source", "boot"]
