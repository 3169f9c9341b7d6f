"""Configuration objects for libvirt domain XML.

These classes only convert between Python objects and XML elements, one
class per element: ``parse_dom(element)`` reads one, ``format_dom()`` writes
one.  They hold no policy (what to add to a domain, and when, lives in
:mod:`spdk_backend.virt.libvirt.policy`) and never call libvirt.

Round trips keep what a class does not model.  ``parse_dom`` keeps a copy of
the element it read and ``format_dom`` starts from that copy, changing only
the attributes and children the class owns, so unknown elements, attributes,
metadata and comments of a real domain survive a parse/edit/format cycle
untouched.  :class:`Domain` goes further: it rewrites only the
``<memoryBacking>`` element and the NUMA ``<cell>`` elements; everything
else in the document is the original tree.
"""

import copy
import os

from lxml import etree

from spdk_backend import exception

# Multipliers to KiB for libvirt's scaled integers (docs: formatdomain
# "Memory Allocation"): 'k'/'KiB' = 1024 bytes, 'KB' = 1000 bytes, etc.
_UNIT_BYTES = {
    "b": 1, "bytes": 1,
    "kb": 1000, "k": 1024, "kib": 1024,
    "mb": 1000 ** 2, "m": 1024 ** 2, "mib": 1024 ** 2,
    "gb": 1000 ** 3, "g": 1024 ** 3, "gib": 1024 ** 3,
    "tb": 1000 ** 4, "t": 1024 ** 4, "tib": 1024 ** 4,
}


def to_kib(value, unit=None):
    """``value`` in libvirt ``unit`` (default KiB) as whole KiB."""
    if value is None:
        return None
    key = (unit or "KiB").lower()
    if key not in _UNIT_BYTES:
        raise exception.InvalidInput(reason="unknown memory unit %r" % unit)
    return int(value) * _UNIT_BYTES[key] // 1024


def _parser():
    # Domain XML may come from a file an operator wrote: no entities, no
    # network, and blank text dropped so inserted elements pretty-print.
    return etree.XMLParser(resolve_entities=False, no_network=True,
                           remove_blank_text=True, huge_tree=False)


def parse_xml(xmlstr):
    """Parse an XML document (str or bytes) into an lxml element."""
    if isinstance(xmlstr, str):
        xmlstr = xmlstr.encode("utf-8")
    try:
        return etree.fromstring(xmlstr, _parser())
    except etree.XMLSyntaxError as exc:
        raise exception.InvalidInput(reason="malformed XML: %s" % exc)


def _int(text, base=10):
    if text is None:
        return None
    try:
        return int(text, base)
    except ValueError:
        raise exception.InvalidInput(reason="not an integer: %r" % text)


def _pci_int(text):
    """libvirt PCI address fields are hex with 0x, or decimal."""
    if text is None:
        return None
    text = text.strip()
    return _int(text, 16) if text.lower().startswith("0x") else _int(text)


def _set(el, name, value):
    """Set attribute ``name`` (str() of value), or remove it for None."""
    if value is None:
        el.attrib.pop(name, None)
    else:
        el.set(name, str(value))


def _yes_no(value):
    if value is None:
        return None
    return "yes" if value else "no"


def _child(el, tag):
    """Existing child ``tag`` of ``el``, or a new one appended to it."""
    found = el.find(tag)
    if found is None:
        found = etree.SubElement(el, tag)
    return found


def _drop_if_empty(el, existed=False):
    """Remove ``el`` if this format call created it and left it empty."""
    if el is not None and not existed and not el.attrib and len(el) == 0 \
            and not (el.text or "").strip():
        el.getparent().remove(el)


def _put_child(el, tag, new):
    """Replace child ``tag`` of ``el`` with ``new`` in place (append if
    absent; remove if ``new`` is None)."""
    old = el.find(tag)
    if new is None:
        if old is not None:
            el.remove(old)
    elif old is not None:
        new.tail = old.tail
        el.replace(old, new)
    else:
        el.append(new)


class ConfigObject:
    """Base of every config class: one XML element each."""

    root_name = None

    def __init__(self):
        self._orig = None

    def parse_dom(self, xmldoc):
        if xmldoc.tag != self.root_name:
            raise exception.InvalidInput(
                reason="expected <%s>, got <%s>"
                % (self.root_name, xmldoc.tag))
        self._orig = copy.deepcopy(xmldoc)
        self._orig.tail = None

    def parse_str(self, xmlstr):
        self.parse_dom(parse_xml(xmlstr))

    @classmethod
    def from_dom(cls, xmldoc):
        obj = cls()
        obj.parse_dom(xmldoc)
        return obj

    @classmethod
    def from_xml(cls, xmlstr):
        return cls.from_dom(parse_xml(xmlstr))

    def _new_dom(self):
        """The element to format into: a copy of the parsed one, or new."""
        if self._orig is not None:
            return copy.deepcopy(self._orig)
        return etree.Element(self.root_name)

    def format_dom(self):
        return self._new_dom()

    def to_xml(self, pretty_print=True):
        return etree.tostring(self.format_dom(), encoding="unicode",
                              pretty_print=pretty_print)


class DeviceAddress(ConfigObject):
    """``<address type='pci' domain=.. bus=.. slot=.. function=../>`` etc.

    ``fields`` holds every attribute but ``type`` as strings, in libvirt's
    spelling; :attr:`bus` and friends read the PCI ones as integers.
    """

    root_name = "address"

    def __init__(self, type=None, **fields):
        super().__init__()
        self.type = type
        self.fields = {k: str(v) for k, v in fields.items()}

    def parse_dom(self, xmldoc):
        super().parse_dom(xmldoc)
        self.type = xmldoc.get("type")
        self.fields = {k: v for k, v in xmldoc.attrib.items() if k != "type"}

    def format_dom(self):
        el = self._new_dom()
        el.attrib.clear()
        _set(el, "type", self.type)
        for k, v in self.fields.items():
            _set(el, k, v)
        return el

    def _pci(self, name):
        return _pci_int(self.fields.get(name))

    @property
    def bus(self):
        return self._pci("bus")

    @property
    def slot(self):
        return self._pci("slot")

    @property
    def function(self):
        return self._pci("function")


# disk@type -> the <source> attribute naming what backs it.
_DISK_SOURCE_ATTR = {
    "file": "file",
    "block": "dev",
    "dir": "dir",
    "network": "name",
    "vhostuser": "path",
}


class GuestDisk(ConfigObject):
    """``<disk>`` of any type.

    The vhost-user fields (``source_unix_type``, reconnect, queues,
    queue_size) are what :class:`VhostUserDisk` needs; the others are common
    to every disk so the policy can see which targets and aliases are taken.
    """

    root_name = "disk"

    def __init__(self, source_type=None, source_device="disk",
                 driver_name=None, driver_type=None, driver_queues=None,
                 driver_queue_size=None, source_path=None,
                 source_protocol=None, source_unix_type=None,
                 reconnect_enabled=None, reconnect_timeout=None,
                 target_dev=None, target_bus=None, alias=None, address=None):
        super().__init__()
        self.source_type = source_type
        self.source_device = source_device
        self.driver_name = driver_name
        self.driver_type = driver_type
        self.driver_queues = driver_queues
        self.driver_queue_size = driver_queue_size
        self.source_path = source_path
        self.source_protocol = source_protocol
        self.source_unix_type = source_unix_type
        self.reconnect_enabled = reconnect_enabled
        self.reconnect_timeout = reconnect_timeout
        self.target_dev = target_dev
        self.target_bus = target_bus
        self.alias = alias
        self.address = address

    def parse_dom(self, xmldoc):
        # Start from nothing: a subclass's constructor defaults must not
        # leak into what the element says.
        GuestDisk.__init__(self, source_device=None)
        super().parse_dom(xmldoc)
        self.source_type = xmldoc.get("type")
        self.source_device = xmldoc.get("device")
        driver = xmldoc.find("driver")
        if driver is not None:
            self.driver_name = driver.get("name")
            self.driver_type = driver.get("type")
            self.driver_queues = _int(driver.get("queues"))
            self.driver_queue_size = _int(driver.get("queue_size"))
        source = xmldoc.find("source")
        if source is not None:
            attr = _DISK_SOURCE_ATTR.get(self.source_type)
            self.source_path = source.get(attr) if attr else None
            self.source_protocol = source.get("protocol")
            if self.source_type == "vhostuser":
                self.source_unix_type = source.get("type")
            reconnect = source.find("reconnect")
            if reconnect is not None:
                self.reconnect_enabled = reconnect.get("enabled") == "yes"
                self.reconnect_timeout = _int(reconnect.get("timeout"))
        target = xmldoc.find("target")
        if target is not None:
            self.target_dev = target.get("dev")
            self.target_bus = target.get("bus")
        alias = xmldoc.find("alias")
        if alias is not None:
            self.alias = alias.get("name")
        address = xmldoc.find("address")
        if address is not None:
            self.address = DeviceAddress.from_dom(address)

    def format_dom(self):
        el = self._new_dom()
        existed = {c.tag for c in el}
        _set(el, "type", self.source_type)
        _set(el, "device", self.source_device)

        driver = _child(el, "driver")
        _set(driver, "name", self.driver_name)
        _set(driver, "type", self.driver_type)
        _set(driver, "queues", self.driver_queues)
        _set(driver, "queue_size", self.driver_queue_size)
        _drop_if_empty(driver, "driver" in existed)

        source = _child(el, "source")
        attr = _DISK_SOURCE_ATTR.get(self.source_type)
        if attr:
            _set(source, attr, self.source_path)
        if self.source_type == "vhostuser":
            _set(source, "type", self.source_unix_type)
        _set(source, "protocol", self.source_protocol)
        if self.reconnect_enabled is None:
            old = source.find("reconnect")
            if old is not None:
                source.remove(old)
        else:
            reconnect = _child(source, "reconnect")
            _set(reconnect, "enabled", _yes_no(self.reconnect_enabled))
            # libvirt rejects a timeout on a disabled reconnect.
            _set(reconnect, "timeout",
                 self.reconnect_timeout if self.reconnect_enabled else None)
        _drop_if_empty(source, "source" in existed)

        target = _child(el, "target")
        _set(target, "dev", self.target_dev)
        _set(target, "bus", self.target_bus)
        _drop_if_empty(target, "target" in existed)

        old = el.find("alias")
        if self.alias is None:
            if old is not None:
                el.remove(old)
        else:
            _set(_child(el, "alias"), "name", self.alias)

        _put_child(el, "address", self.address.format_dom()
                   if self.address is not None else None)
        return el


class VhostUserDisk(GuestDisk):
    """``<disk type='vhostuser' device='disk'>`` served over a unix socket.

    ::

        <disk type='vhostuser' device='disk'>
          <driver name='qemu' type='raw' queues='4' queue_size='256'/>
          <source type='unix' path='/var/run/spdk-backend/vhost.0'>
            <reconnect enabled='yes' timeout='10'/>
          </source>
          <target dev='vdb' bus='virtio'/>
          <alias name='ua-sb-vhost.0'/>
        </disk>
    """

    def __init__(self, source_path=None, target_dev=None, queues=None,
                 queue_size=None, reconnect_timeout=10, alias=None,
                 address=None):
        super().__init__(
            source_type="vhostuser", source_device="disk",
            driver_name="qemu", driver_type="raw", driver_queues=queues,
            driver_queue_size=queue_size, source_path=source_path,
            source_unix_type="unix",
            reconnect_enabled=True if reconnect_timeout else None,
            reconnect_timeout=reconnect_timeout or None,
            target_dev=target_dev, target_bus="virtio", alias=alias,
            address=address)

    def parse_dom(self, xmldoc):
        if xmldoc.get("type") != "vhostuser":
            raise exception.InvalidInput(
                reason="not a vhostuser disk: type=%r" % xmldoc.get("type"))
        super().parse_dom(xmldoc)

    @property
    def queues(self):
        return self.driver_queues

    @property
    def queue_size(self):
        return self.driver_queue_size


def find_vhost_disk_element(root, ctrlr):
    """The ``<disk type='vhostuser'>`` element of domain XML ``root`` whose
    socket is controller ``ctrlr``'s (its file name), or None."""
    for disk in root.findall("devices/disk"):
        if disk.get("type") != "vhostuser":
            continue
        source = disk.find("source")
        path = source.get("path") if source is not None else None
        if path and os.path.basename(os.path.normpath(path)) == ctrlr:
            return disk
    return None


def disk_from_dom(xmldoc):
    """A :class:`VhostUserDisk` or :class:`GuestDisk` for a ``<disk>``."""
    cls = VhostUserDisk if xmldoc.get("type") == "vhostuser" else GuestDisk
    return cls.from_dom(xmldoc)


class MemoryBackingPage(ConfigObject):
    """``<page size='2048' unit='KiB' nodeset='0'/>`` under ``<hugepages>``."""

    root_name = "page"

    def __init__(self, size=None, unit="KiB", nodeset=None):
        super().__init__()
        self.size = size
        self.unit = unit
        self.nodeset = nodeset

    def parse_dom(self, xmldoc):
        super().parse_dom(xmldoc)
        self.size = _int(xmldoc.get("size"))
        self.unit = xmldoc.get("unit")
        self.nodeset = xmldoc.get("nodeset")

    def format_dom(self):
        el = self._new_dom()
        _set(el, "size", self.size)
        _set(el, "unit", self.unit)
        _set(el, "nodeset", self.nodeset)
        return el

    @property
    def size_kib(self):
        return to_kib(self.size, self.unit)


class MemoryBacking(ConfigObject):
    """``<memoryBacking>``: hugepages, memory source and access mode.

    ``hugepages`` says whether ``<hugepages>`` is present; ``pages`` are its
    ``<page>`` children (empty: the host's default huge page size).
    ``source_type`` is ``file``, ``anonymous`` or ``memfd``; ``access_mode``
    is ``shared`` or ``private``.  Other children (``nosharepages``,
    ``locked``, ``allocation``, ``discard``) are kept as they were.
    """

    root_name = "memoryBacking"

    def __init__(self, hugepages=False, pages=None, source_type=None,
                 access_mode=None):
        super().__init__()
        self.hugepages = hugepages
        self.pages = list(pages or [])
        self.source_type = source_type
        self.access_mode = access_mode

    def parse_dom(self, xmldoc):
        super().parse_dom(xmldoc)
        huge = xmldoc.find("hugepages")
        self.hugepages = huge is not None
        self.pages = ([MemoryBackingPage.from_dom(p)
                       for p in huge.findall("page")]
                      if huge is not None else [])
        source = xmldoc.find("source")
        self.source_type = source.get("type") if source is not None else None
        access = xmldoc.find("access")
        self.access_mode = access.get("mode") if access is not None else None

    def format_dom(self):
        el = self._new_dom()
        huge = el.find("hugepages")
        if not self.hugepages:
            if huge is not None:
                el.remove(huge)
        else:
            if huge is None:
                huge = etree.Element("hugepages")
                el.insert(0, huge)
            for old in huge.findall("page"):
                huge.remove(old)
            for page in self.pages:
                huge.append(page.format_dom())
        for tag, attr, value in (("source", "type", self.source_type),
                                 ("access", "mode", self.access_mode)):
            old = el.find(tag)
            if value is None:
                if old is not None:
                    el.remove(old)
            else:
                _set(_child(el, tag), attr, value)
        return el


class NumaCell(ConfigObject):
    """``<cell id='0' cpus='0-1' memory='512' unit='MiB' memAccess=../>``."""

    root_name = "cell"

    def __init__(self, id=None, cpus=None, memory=None, unit=None,
                 mem_access=None):
        super().__init__()
        self.id = id
        self.cpus = cpus
        self.memory = memory
        self.unit = unit
        self.mem_access = mem_access

    def parse_dom(self, xmldoc):
        super().parse_dom(xmldoc)
        self.id = _int(xmldoc.get("id"))
        self.cpus = xmldoc.get("cpus")
        self.memory = _int(xmldoc.get("memory"))
        self.unit = xmldoc.get("unit")
        self.mem_access = xmldoc.get("memAccess")

    def format_dom(self):
        el = self._new_dom()
        _set(el, "id", self.id)
        _set(el, "cpus", self.cpus)
        _set(el, "memory", self.memory)
        _set(el, "unit", self.unit)
        _set(el, "memAccess", self.mem_access)
        return el

    @property
    def memory_kib(self):
        return to_kib(self.memory, self.unit)


class Controller(ConfigObject):
    """``<controller type='pci' index='3' model='pcie-root-port'>``."""

    root_name = "controller"

    def __init__(self, type=None, index=None, model=None, address=None):
        super().__init__()
        self.type = type
        self.index = index
        self.model = model
        self.address = address

    def parse_dom(self, xmldoc):
        super().parse_dom(xmldoc)
        self.type = xmldoc.get("type")
        self.index = _int(xmldoc.get("index"))
        self.model = xmldoc.get("model")
        address = xmldoc.find("address")
        self.address = (DeviceAddress.from_dom(address)
                        if address is not None else None)

    def format_dom(self):
        el = self._new_dom()
        _set(el, "type", self.type)
        _set(el, "index", self.index)
        _set(el, "model", self.model)
        _put_child(el, "address", self.address.format_dom()
                   if self.address is not None else None)
        return el


# Children of <domain> that libvirt writes before <memoryBacking>; a new
# <memoryBacking> goes after the last of them that is present.
_BEFORE_MEMORY_BACKING = ("name", "uuid", "genid", "title", "description",
                          "metadata", "maxMemory", "memory", "currentMemory",
                          "blkiotune", "memtune")


class Domain(ConfigObject):
    """``<domain>``, read from libvirt's ``XMLDesc``.

    Read: the identity (``name``, ``uuid``, ``virt_type``), ``memory_kib``,
    ``vcpus`` (the current count), ``machine``, ``acpi``, ``dac_label``
    (the ``user:group`` of the DAC ``<seclabel>``: whom QEMU runs as, in
    the live XML), and views of ``disks``, ``controllers`` and every
    device's PCI ``pci_addresses``.
    Written back by :meth:`format_dom`: ``memory_backing`` (None removes
    it) and each of ``numa_cells`` (matched to ``<cpu><numa><cell>`` in
    order).  Devices are not written back: they are added and removed one
    by one through the guest wrapper.
    """

    root_name = "domain"

    def __init__(self):
        super().__init__()
        self.virt_type = None
        self.name = None
        self.uuid = None
        self.memory_kib = None
        self.vcpus = None
        self.machine = None
        self.acpi = False
        self.dac_label = None
        self.memory_backing = None
        self.numa_cells = []
        self.disks = []
        self.controllers = []
        self.pci_addresses = []

    def parse_dom(self, xmldoc):
        super().parse_dom(xmldoc)
        self.virt_type = xmldoc.get("type")
        self.name = xmldoc.findtext("name")
        self.uuid = xmldoc.findtext("uuid")
        memory = xmldoc.find("memory")
        if memory is not None:
            self.memory_kib = to_kib(_int((memory.text or "").strip()),
                                     memory.get("unit"))
        vcpu = xmldoc.find("vcpu")
        if vcpu is not None:
            self.vcpus = _int(vcpu.get("current") or
                              (vcpu.text or "").strip())
        ostype = xmldoc.find("os/type")
        self.machine = ostype.get("machine") if ostype is not None else None
        self.acpi = xmldoc.find("features/acpi") is not None
        label = xmldoc.findtext("seclabel[@model='dac']/label")
        self.dac_label = label.strip() if label else None
        backing = xmldoc.find("memoryBacking")
        self.memory_backing = (MemoryBacking.from_dom(backing)
                               if backing is not None else None)
        self.numa_cells = [NumaCell.from_dom(c)
                           for c in xmldoc.findall("cpu/numa/cell")]
        self.disks = [disk_from_dom(d) for d in xmldoc.findall("devices/disk")]
        self.controllers = [Controller.from_dom(c)
                            for c in xmldoc.findall("devices/controller")]
        self.pci_addresses = [DeviceAddress.from_dom(a) for a in
                              xmldoc.findall("devices/*/address[@type='pci']")]

    def format_dom(self):
        if self._orig is None:
            raise exception.InvalidInput(
                reason="a Domain is edited from libvirt's XML, not built")
        el = self._new_dom()
        old = el.find("memoryBacking")
        if self.memory_backing is None:
            if old is not None:
                el.remove(old)
        else:
            new = self.memory_backing.format_dom()
            if old is not None:
                el.replace(old, new)
            else:
                pos = 0
                for i, child in enumerate(el):
                    if child.tag in _BEFORE_MEMORY_BACKING:
                        pos = i + 1
                el.insert(pos, new)
        cells = el.findall("cpu/numa/cell")
        if len(cells) != len(self.numa_cells):
            raise exception.InvalidInput(
                reason="NUMA cells cannot be added or removed here")
        for old, cell in zip(cells, self.numa_cells):
            new = cell.format_dom()
            new.tail = old.tail
            old.getparent().replace(old, new)
        return el

    @property
    def is_q35(self):
        return bool(self.machine) and "q35" in self.machine
