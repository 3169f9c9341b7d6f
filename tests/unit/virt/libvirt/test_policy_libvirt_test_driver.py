"""Policy through the Host/Guest wrapper on libvirt's in-process test driver
(``test:///default``: real libvirt, no daemon, no QEMU; it cannot attach
devices, which tests/e2e/test_libvirt_vhost.py covers with libvirtd)."""

import pathlib
import re
import threading
import uuid

import libvirt
import pytest
from lxml import etree

from spdk_backend import exception
from spdk_backend.virt.libvirt import config
from spdk_backend.virt.libvirt import host as host_mod
from spdk_backend.virt.libvirt import policy

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
URI = "test:///default"


def without_owned(xml):
    el = config.parse_xml(xml)
    for node in el.findall("memoryBacking"):
        el.remove(node)
    for cell in el.findall("cpu/numa/cell"):
        cell.attrib.pop("memAccess", None)
    return etree.tostring(el, method="c14n")


@pytest.fixture
def host():
    h = host_mod.Host(URI)
    yield h
    h.close()


@pytest.fixture
def define(host):
    """Define a fixture domain under a unique name; undefined afterwards."""
    conn = host.get_connection()
    made = []

    def _define(fixture):
        xml = (FIXTURES / fixture).read_text()
        name = "sbunit-%s" % uuid.uuid4().hex[:8]
        xml = re.sub(r"type='(kvm|qemu)'", "type='test'", xml, count=1)
        xml = re.sub(r"<name>[^<]*</name>", "<name>%s</name>" % name, xml)
        xml = re.sub(r"<uuid>[^<]*</uuid>", "", xml)
        dom = conn.defineXML(xml)
        made.append(dom)
        return dom

    yield _define
    for dom in made:
        try:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError:
            pass


@pytest.mark.parametrize("fixture", ["private_memory.xml",
                                     "hugepages_numa.xml",
                                     "pc_anonymous.xml"])
def test_prepare_domain(host, define, fixture):
    dom = define(fixture)
    guest = host.get_guest(dom.name())
    before = guest.get_xml_desc(inactive=True)
    assert not policy.memory_is_shared(guest.get_config(inactive=True))
    result = policy.prepare_domain(host, dom.name(), hugepages=False)
    assert result.changed and result.changes
    assert not result.restart_required
    after = guest.get_xml_desc(inactive=True)
    assert without_owned(after) == without_owned(before)
    assert policy.memory_is_shared(guest.get_config(inactive=True))
    again = policy.prepare_domain(host, dom.name(), hugepages=False)
    assert again == policy.PrepareResult(False, [], False, result.memory)
    assert guest.get_xml_desc(inactive=True) == after


def test_prepare_ready_domain_changes_nothing(host, define):
    dom = define("vhostuser_present.xml")
    before = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    result = policy.prepare_domain(host, dom.name())
    assert not result.changed and result.memory == "memfd"
    assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before


def test_prepare_running_domain_needs_restart(host, define):
    dom = define("private_memory.xml")
    dom.create()
    result = policy.prepare_domain(host, dom.name(), hugepages=False)
    assert result.changed and result.restart_required
    guest = host.get_guest(dom.name())
    assert not policy.memory_is_shared(guest.get_config())
    assert policy.memory_is_shared(guest.get_config(inactive=True))
    # Still true on a second call: the running guest has not changed.
    again = policy.prepare_domain(host, dom.name(), hugepages=False)
    assert not again.changed and again.restart_required


def test_attach_to_running_private_domain_refused(host, define):
    dom = define("private_memory.xml")
    dom.create()
    with pytest.raises(exception.SharedMemoryRequired,
                       match="spdk-backend domain prepare %s" % dom.name()):
        policy.attach_vhost_disk(host, dom.name(), "/tmp/nowhere.sock")


def test_attach_live_to_stopped_domain_refused(host, define):
    dom = define("vhostuser_present.xml")
    with pytest.raises(exception.InvalidInput, match="not running"):
        policy.attach_vhost_disk(host, dom.name(), "/tmp/x.sock", live=True)


def test_transient_domain(host, define):
    dom = define("vhostuser_present.xml")
    dom.create()
    dom.undefine()      # running, no definition left
    with pytest.raises(exception.InvalidInput, match="transient"):
        policy.prepare_domain(host, dom.name())
    with pytest.raises(exception.InvalidInput, match="transient"):
        policy.attach_vhost_disk(host, dom.name(), "/tmp/x.sock",
                                 config=True)


def test_list_and_detach_lookups(host, define):
    dom = define("vhostuser_present.xml")
    disks = policy.list_vhost_disks(host, dom.name())
    assert disks == [policy.DiskInfo(
        target_dev="vdb", alias="ua-sb-vhost_0",
        socket_path="/var/run/spdk-backend/vhost/vhost.0", queues=4,
        live=False, config=True)]
    assert policy.detach_vhost_disk(host, dom.name(), alias="ua-sb-nope",
                                    missing_ok=True) is None
    with pytest.raises(exception.InvalidInput):
        policy.detach_vhost_disk(host, dom.name())


def test_unknown_domain(host):
    name = "sbunit-missing-%s" % uuid.uuid4().hex[:8]
    with pytest.raises(exception.DomainNotFound, match=name):
        host.get_guest(name)
    with pytest.raises(exception.DomainNotFound):
        policy.prepare_domain(host, name)


def test_lookup_by_uuid(host, define):
    dom = define("private_memory.xml")
    assert host.get_guest(dom.UUIDString()).name == dom.name()


def test_define_error_is_mapped(host):
    with pytest.raises(exception.LibvirtError):
        host.define_guest("<domain type='test'><name>x</name></domain>")


def test_connect_error_is_mapped():
    h = host_mod.Host("test:///nonexistent/file.xml")
    with pytest.raises(exception.LibvirtError, match="cannot connect"):
        h.get_connection()


def test_event_loop_is_shared_and_stopped():
    def loops():
        return [t for t in threading.enumerate()
                if t.name == "libvirt-events"]
    h1 = host_mod.Host(URI, events=True)
    h2 = host_mod.Host(URI, events=True)
    try:
        h1.get_connection()
        h2.get_connection()
        assert h1.has_events and h2.has_events
        assert len(loops()) == 1
        h1.close()
        assert len(loops()) == 1      # h2 still uses it
    finally:
        h1.close()
        h2.close()
    for t in loops():
        t.join(5)
    assert loops() == []


def test_host_over_a_borrowed_connection(define):
    conn = libvirt.open(URI)
    try:
        h = host_mod.Host(conn=conn)
        dom = conn.defineXML(
            "<domain type='test'><name>sbunit-%s</name><memory>131072"
            "</memory><os><type>hvm</type></os></domain>"
            % uuid.uuid4().hex[:8])
        try:
            assert policy.prepare_domain(h, dom.name(),
                                         hugepages=False).changed
            h.close()
            assert conn.isAlive()         # not ours to close
        finally:
            dom.undefine()
    finally:
        conn.close()
