"""Policy decisions on domain XML alone (no libvirt)."""

import copy
import os
import pathlib

import pytest
from lxml import etree

from spdk_backend import exception
from spdk_backend.virt.libvirt import config
from spdk_backend.virt.libvirt import policy
from spdk_backend.virt.libvirt.host import HugePagePool

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.xml"))


def dom_of(name):
    return config.Domain.from_xml((FIXTURES / name).read_text())


def without_owned(el):
    """The domain minus what prepare may touch, canonicalised."""
    el = copy.deepcopy(el)
    for node in el.findall("memoryBacking"):
        el.remove(node)
    for cell in el.findall("cpu/numa/cell"):
        cell.attrib.pop("memAccess", None)
    return etree.tostring(config.parse_xml(etree.tostring(el)),
                          method="c14n")


POOL_2M_PLENTY = HugePagePool(size_kib=2048, total=8192, free=8192,
                              mounted=True)
POOL_1G_TWO = HugePagePool(size_kib=1048576, total=2, free=2, mounted=True)


# -- memory_is_shared ------------------------------------------------------

def test_memory_is_shared_cases():
    assert not policy.memory_is_shared(dom_of("private_memory.xml"))
    assert policy.memory_is_shared(dom_of("vhostuser_present.xml"))
    assert not policy.memory_is_shared(dom_of("hugepages_numa.xml"))
    assert not policy.memory_is_shared(dom_of("pc_anonymous.xml"))


def test_memory_is_shared_numa_rules():
    dom = dom_of("hugepages_numa.xml")
    # Cell 0 private, cell 1 unset, no global access.
    dom.numa_cells[0].mem_access = "shared"
    assert not policy.memory_is_shared(dom)      # cell 1 falls back: private
    dom.memory_backing.access_mode = "shared"
    assert policy.memory_is_shared(dom)          # cell 1 inherits shared
    dom.numa_cells[0].mem_access = "private"
    assert not policy.memory_is_shared(dom)      # explicit private wins
    dom.memory_backing.access_mode = None
    dom.numa_cells[0].mem_access = "shared"
    dom.numa_cells[1].mem_access = "shared"
    assert policy.memory_is_shared(dom)          # every cell shared


# -- plan_prepare -----------------------------------------------------------

def test_prepare_private_memory_uses_memfd_without_hugepages():
    dom = dom_of("private_memory.xml")
    new, changes = policy.plan_prepare(dom, pools=[])
    assert changes == ["memory source memfd", "memory access shared"]
    assert new.memory_backing.source_type == "memfd"
    assert new.memory_backing.access_mode == "shared"
    assert not new.memory_backing.hugepages
    assert policy.memory_is_shared(new)
    assert dom.memory_backing is None            # argument left alone
    assert without_owned(new.format_dom()) == without_owned(dom.format_dom())


def test_prepare_uses_free_hugepages():
    dom = dom_of("private_memory.xml")           # 2 GiB
    new, changes = policy.plan_prepare(dom, pools=[POOL_2M_PLENTY,
                                                   POOL_1G_TWO])
    mb = new.memory_backing
    assert mb.hugepages and [p.size_kib for p in mb.pages] == [1048576]
    assert mb.source_type is None and mb.access_mode == "shared"
    assert "memory backed by 1048576 KiB huge pages" in changes


@pytest.mark.parametrize("pool", [
    HugePagePool(2048, 512, 512, mounted=True),          # 1 GiB free only
    HugePagePool(2048, 8192, 8192, mounted=False),       # no hugetlbfs
    HugePagePool(1048576, 3, 1, mounted=True),           # 1 free of 2 needed
])
def test_prepare_falls_back_to_memfd(pool):
    new, changes = policy.plan_prepare(dom_of("private_memory.xml"),
                                       pools=[pool])
    assert new.memory_backing.source_type == "memfd"
    assert not new.memory_backing.hugepages


def test_prepare_hugepages_false_and_true():
    dom = dom_of("private_memory.xml")
    new, _ = policy.plan_prepare(dom, pools=[POOL_2M_PLENTY],
                                 hugepages=False)
    assert new.memory_backing.source_type == "memfd"
    with pytest.raises(exception.InvalidInput, match="huge page"):
        policy.plan_prepare(dom, pools=[], hugepages=True)


def test_prepare_keeps_existing_hugepages_and_shares_cells():
    dom = dom_of("hugepages_numa.xml")
    new, changes = policy.plan_prepare(dom, pools=[])
    mb = new.memory_backing
    assert mb.hugepages and [(p.size, p.nodeset) for p in mb.pages] == \
        [(2048, "0-1")]
    assert mb.source_type is None and mb.access_mode == "shared"
    assert [c.mem_access for c in new.numa_cells] == ["shared", "shared"]
    assert changes == ["memory access shared",
                       "NUMA cell 0 memAccess private -> shared",
                       "NUMA cell 1 memAccess shared"]
    el = new.format_dom()
    assert el.find("memoryBacking/locked") is not None
    assert without_owned(el) == without_owned(dom.format_dom())
    assert policy.memory_is_shared(new)


def test_prepare_replaces_anonymous_source_keeps_the_rest():
    dom = dom_of("pc_anonymous.xml")
    new, changes = policy.plan_prepare(dom, pools=[])
    el = new.format_dom().find("memoryBacking")
    assert [c.tag for c in el] == ["nosharepages", "source", "allocation",
                                   "access"]
    assert el.find("source").get("type") == "memfd"


def test_prepare_anonymous_to_hugepages_drops_source():
    dom = dom_of("pc_anonymous.xml")             # 1 GiB
    new, _ = policy.plan_prepare(dom, pools=[POOL_2M_PLENTY])
    el = new.format_dom().find("memoryBacking")
    assert el.find("source") is None
    assert el.find("hugepages/page").get("size") == "2048"


def test_prepare_ready_domain_is_untouched():
    dom = dom_of("vhostuser_present.xml")
    new, changes = policy.plan_prepare(dom, pools=[POOL_2M_PLENTY])
    assert changes == []
    assert etree.tostring(new.format_dom(), method="c14n") == \
        etree.tostring(dom.format_dom(), method="c14n")


@pytest.mark.parametrize("name", ALL_FIXTURES)
@pytest.mark.parametrize("pools", [[], [POOL_2M_PLENTY]])
def test_prepare_is_idempotent(name, pools):
    dom = dom_of(name)
    first, _ = policy.plan_prepare(dom, pools=pools)
    # Through XML, as libvirt would hand it back.
    reread = config.Domain.from_xml(first.to_xml())
    second, changes = policy.plan_prepare(reread, pools=pools)
    assert changes == []
    assert policy.memory_is_shared(second)
    assert etree.tostring(second.format_dom(), method="c14n") == \
        etree.tostring(reread.format_dom(), method="c14n")


def test_describe_memory():
    assert policy.describe_memory(dom_of("private_memory.xml")) == "default"
    assert policy.describe_memory(dom_of("hugepages_numa.xml")) == \
        "hugepages:2048KiB"
    assert policy.describe_memory(dom_of("vhostuser_present.xml")) == "memfd"


def test_choose_hugepage_size():
    pools = [POOL_2M_PLENTY, POOL_1G_TWO]
    assert policy.choose_hugepage_size(2 * 1048576, pools) == 1048576
    assert policy.choose_hugepage_size(3 * 1048576, pools) == 2048
    assert policy.choose_hugepage_size(1048576 + 2048, pools) == 2048
    assert policy.choose_hugepage_size(1025, pools) is None   # not aligned
    assert policy.choose_hugepage_size(None, pools) is None
    assert policy.choose_hugepage_size(2048, []) is None
    # Two 1 GiB cells of a 2 GiB guest fit 1 GiB pages; 1.5 + 0.5 do not.
    assert policy.choose_hugepage_size(
        2 * 1048576, pools, [1048576, 1048576]) == 1048576
    assert policy.choose_hugepage_size(
        2 * 1048576, pools, [1572864, 524288]) == 2048


def test_prepare_numa_guest_hugepage_size_fits_cells():
    dom = dom_of("hugepages_numa.xml")
    dom.memory_backing = None               # as if it had none
    new, changes = policy.plan_prepare(dom, pools=[POOL_2M_PLENTY])
    assert [p.size_kib for p in new.memory_backing.pages] == [2048]
    big = HugePagePool(size_kib=1048576, total=8, free=8, mounted=True)
    new, changes = policy.plan_prepare(dom, pools=[POOL_2M_PLENTY, big])
    assert [p.size_kib for p in new.memory_backing.pages] == [1048576]


# -- targets, queues, slots, lookups -----------------------------------------

def test_pick_target_first_free():
    assert policy.pick_target(dom_of("private_memory.xml")) == "vdb"
    assert policy.pick_target(dom_of("pc_anonymous.xml")) == "vdc"
    assert policy.pick_target(dom_of("hugepages_numa.xml")) == "vdc"


def test_pick_target_union_of_live_and_config():
    live = dom_of("private_memory.xml")       # vda
    cfg = dom_of("pc_anonymous.xml")          # vda vdb vdd
    assert policy.pick_target(live, cfg) == "vdc"
    assert policy.pick_target(None, live) == "vdb"


def test_pick_target_past_vdz():
    dom = dom_of("private_memory.xml")
    proto = dom.disks[0]
    dom.disks = []
    for i in range(26):
        d = copy.deepcopy(proto)
        d.target_dev = "vd" + chr(ord("a") + i)
        dom.disks.append(d)
    assert policy.pick_target(dom) == "vdaa"
    d = copy.deepcopy(proto)
    d.target_dev = "vdaa"
    dom.disks.append(d)
    assert policy.pick_target(dom) == "vdab"


@pytest.mark.parametrize("index,name", [(0, "vda"), (25, "vdz"),
                                        (26, "vdaa"), (51, "vdaz"),
                                        (52, "vdba"), (701, "vdzz"),
                                        (702, "vdaaa")])
def test_target_names(index, name):
    assert policy._target_name(index) == name
    assert policy._target_index(name) == index


def test_default_queues():
    assert policy.default_queues(dom_of("private_memory.xml")) == 2
    assert policy.default_queues(dom_of("vhostuser_present.xml")) == 8
    assert policy.default_queues(dom_of("vhostuser_present.xml"),
                                 max_queues=4) == 4
    assert policy.default_queues(dom_of("pc_anonymous.xml"),
                                 max_queues=16) == 1


def test_free_hotplug_ports():
    # Six root ports, devices on buses 1..6: none free.
    assert policy.free_hotplug_ports(dom_of("private_memory.xml")) == 0
    # Two root ports, both used (vda on 1, the vhostuser disk on 2).
    dom = dom_of("vhostuser_present.xml")
    assert policy.free_hotplug_ports(dom) == 0
    dom.disks.pop()
    dom.pci_addresses = [a for a in dom.pci_addresses if a.bus != 2]
    assert policy.free_hotplug_ports(dom) == 1
    # pc machines hotplug into pci.0: not counted.
    assert policy.free_hotplug_ports(dom_of("hugepages_numa.xml")) is None


def test_free_hotplug_ports_from_libvirt_style_xml():
    xml = """<domain type='qemu'><name>x</name><memory>1</memory>
      <os><type machine='pc-q35-7.2'>hvm</type></os><devices>
      <controller type='pci' index='0' model='pcie-root'/>
      <controller type='pci' index='1' model='pcie-root-port'>
        <address type='pci' domain='0x0000' bus='0x00' slot='0x01'
                 function='0x0' multifunction='on'/></controller>
      <controller type='pci' index='2' model='pcie-root-port'>
        <address type='pci' domain='0x0000' bus='0x00' slot='0x01'
                 function='0x1'/></controller>
      <controller type='pci' index='3' model='pcie-root-port'>
        <address type='pci' domain='0x0000' bus='0x00' slot='0x01'
                 function='0x2'/></controller>
      <controller type='usb' index='0' model='qemu-xhci'>
        <address type='pci' domain='0x0000' bus='0x01' slot='0x00'
                 function='0x0'/></controller>
      </devices></domain>"""
    assert policy.free_hotplug_ports(config.Domain.from_xml(xml)) == 2


def test_find_vhost_disk():
    dom = dom_of("vhostuser_present.xml")
    by_sock = policy.find_vhost_disk(
        dom, socket_path="/var/run/spdk-backend/vhost/../vhost/vhost.0")
    assert by_sock is dom.disks[1]
    assert policy.find_vhost_disk(dom, alias="ua-sb-vhost_0") is by_sock
    assert policy.find_vhost_disk(dom, target_dev="vdb") is by_sock
    # A file disk is never a match, even by target.
    assert policy.find_vhost_disk(dom, target_dev="vda") is None
    assert policy.find_vhost_disk(dom, socket_path="/other") is None
    assert policy.find_vhost_disk(None, alias="x") is None


@pytest.mark.parametrize("path,alias", [
    ("/var/run/spdk-backend/vhost/vhost.0", "ua-sb-vhost_0"),
    ("/tmp/sb/vol-1.sock", "ua-sb-vol-1"),
    ("/tmp/sb/a b:c/", "ua-sb-a_b_c"),
])
def test_alias_for_socket(path, alias):
    assert policy.alias_for_socket(path) == alias


# -- whom QEMU runs as, and what its permissions allow ---------------------

def _live_dom(label):
    seclabel = ("<seclabel type='dynamic' model='dac' relabel='yes'>"
                "<label>%s</label><imagelabel>%s</imagelabel></seclabel>"
                % (label, label)) if label else ""
    return config.Domain.from_xml(
        "<domain type='qemu'><name>d</name>"
        "<seclabel type='none' model='apparmor'/>%s</domain>" % seclabel)


def test_qemu_credentials_from_numeric_dac_label():
    creds = policy.qemu_credentials(_live_dom("+4242:+4343"))
    assert (creds.uid, creds.gid) == (4242, 4343)
    assert creds.groups == frozenset({4343})     # no passwd entry, no extra groups


def test_qemu_credentials_from_names_with_the_users_groups():
    import grp
    import os
    import pwd
    root = pwd.getpwuid(0)
    creds = policy.qemu_credentials(_live_dom("%s:%s" % (root.pw_name,
                                                         grp.getgrgid(0).gr_name)))
    assert (creds.uid, creds.gid) == (0, 0)
    assert creds.groups == frozenset(os.getgrouplist(root.pw_name, root.pw_gid)) | {0}


def test_qemu_credentials_include_the_users_primary_group():
    """Debian's libvirt-qemu has kvm as its passwd group, and libvirt labels
    QEMU libvirt-qemu:libvirt-qemu: QEMU still has kvm (libvirt's group list
    starts from the passwd entry)."""
    import grp
    import pwd
    try:
        user = pwd.getpwnam("libvirt-qemu")
        label_gid = grp.getgrnam("libvirt-qemu").gr_gid
    except KeyError:
        pytest.skip("no libvirt-qemu user and group here")
    if user.pw_gid == label_gid:
        pytest.skip("libvirt-qemu's passwd group is its own group here")
    creds = policy.qemu_credentials(_live_dom("+%d:+%d" % (user.pw_uid, label_gid)))
    assert creds.gid == label_gid
    assert user.pw_gid in creds.groups      # only the passwd entry names it


def test_qemu_credentials_unknown():
    assert policy.qemu_credentials(_live_dom(None)) is None
    assert policy.qemu_credentials(None) is None
    assert policy.qemu_credentials(_live_dom("no-such-user-xyz:kvm")) is None
    assert policy.qemu_credentials(_live_dom("+12x:+1")) is None


def _creds(uid, gid, *groups):
    return policy.QemuCredentials(uid=uid, gid=gid, groups=frozenset((gid,) + groups))


@pytest.fixture
def open_dir():
    """A directory every user can search (pytest's tmp_path is 0700)."""
    import shutil
    import tempfile
    d = pathlib.Path(tempfile.mkdtemp(prefix="sbtest-access-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(str(d))


@pytest.mark.skipif(os.geteuid() != 0, reason="chowns files to other users")
def test_socket_access_by_mode_bits(open_dir):
    import os
    import socket
    tmp_path = open_dir
    d = tmp_path / "vhost"
    d.mkdir()
    path = str(d / "c0")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    try:
        os.chown(path, 0, 0)
        os.chown(str(d), 0, 0)
        os.chmod(str(tmp_path), 0o755)
        other = _creds(4242, 4343)
        in_group = _creds(4242, 4343, 0)
        os.chmod(str(d), 0o755)
        os.chmod(path, 0o600)
        why = policy.socket_access_denied(path, other)
        assert "no write permission on %s (mode 0600, owner 0:0)" % path in why
        assert "uid 4242 gid 4343" in why
        os.chmod(path, 0o660)
        assert policy.socket_access_denied(path, other) is not None
        assert policy.socket_access_denied(path, in_group) is None
        os.chmod(path, 0o666)
        assert policy.socket_access_denied(path, other) is None
        os.chmod(str(d), 0o750)
        why = policy.socket_access_denied(path, other)
        assert "no search permission on %s (mode 0750" % d in why
        assert policy.socket_access_denied(path, in_group) is None
        # The owner class decides for the owner, even with "other" bits set.
        os.chown(path, 4242, 0)
        os.chmod(path, 0o066)
        os.chmod(str(d), 0o755)
        assert "write permission" in policy.socket_access_denied(path, other)
    finally:
        s.close()


def test_socket_access_left_to_qemu_when_unknown(open_dir):
    # A path that does not exist (QEMU reports that itself) is not judged.
    assert policy.socket_access_denied(str(open_dir / "none"), _creds(4242, 4343)) is None


def test_hotplug_reconnects_by_libvirt_version():
    from spdk_backend.virt.libvirt.host import StackVersions

    def v(lib):
        return StackVersions(libvirt=lib, hypervisor="QEMU", hypervisor_version=(7, 2, 0),
                             client=lib)
    assert not policy.hotplug_reconnects(v((9, 0, 0)))
    assert not policy.hotplug_reconnects(v((11, 2, 99)))
    assert policy.hotplug_reconnects(v((11, 3, 0)))
    assert policy.hotplug_reconnects(v((12, 0, 0)))
    assert not policy.hotplug_reconnects(v(None))
    assert not policy.hotplug_reconnects(None)
