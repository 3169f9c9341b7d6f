"""The vhostuser disk as a Nova libvirt config object.

Nova's :class:`LibvirtConfigGuestDisk` writes ``<source>`` only for file,
block, dir and network disks; this subclass writes the unix-socket source of
a vhostuser disk and leaves out what libvirt rejects on one (cache, io,
discard, serial, iotune, blockio, readonly, shareable, encryption).
"""

from lxml import etree

from nova.virt.libvirt import config as vconfig


class LibvirtConfigGuestVhostUserDisk(vconfig.LibvirtConfigGuestDisk):
    """``<disk type='vhostuser' device='disk'>`` served on a unix socket."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.source_type = "vhostuser"
        self.source_device = "disk"
        self.driver_name = "qemu"
        self.driver_format = "raw"
        self.driver_queues = None
        self.driver_queue_size = None
        self.reconnect_timeout = 10
        self.target_bus = "virtio"

    def format_dom(self):
        # LibvirtConfigGuestDevice's format_dom: the bare element, none of
        # LibvirtConfigGuestDisk's file/block assumptions.
        dev = vconfig.LibvirtConfigGuestDevice.format_dom(self)
        dev.set("type", "vhostuser")
        dev.set("device", self.source_device)
        drv = etree.SubElement(dev, "driver", name=self.driver_name or "qemu",
                               type=self.driver_format or "raw")
        if self.driver_queues:
            drv.set("queues", str(self.driver_queues))
        if self.driver_queue_size:
            drv.set("queue_size", str(self.driver_queue_size))
        src = etree.SubElement(dev, "source", type="unix", path=self.source_path)
        if self.reconnect_timeout:
            # libvirt refuses a reconnect timeout of 0 when enabled.
            etree.SubElement(src, "reconnect", enabled="yes",
                             timeout=str(self.reconnect_timeout))
        etree.SubElement(dev, "target", dev=self.target_dev, bus=self.target_bus or "virtio")
        if self.alias:
            etree.SubElement(dev, "alias", name=self.alias)
        if self.boot_order:
            etree.SubElement(dev, "boot", order=str(self.boot_order))
        if self.device_addr:
            dev.append(self.device_addr.format_dom())
        return dev

    def parse_dom(self, xmldoc):
        super().parse_dom(xmldoc)
        for c in xmldoc:
            if c.tag == "driver":
                self.driver_queues = _int_or_none(c.get("queues"))
                self.driver_queue_size = _int_or_none(c.get("queue_size"))
            elif c.tag == "source" and c.get("type") == "unix":
                self.source_path = c.get("path")
                rec = c.find("reconnect")
                self.reconnect_timeout = None
                if rec is not None and rec.get("enabled") == "yes":
                    self.reconnect_timeout = _int_or_none(rec.get("timeout"))
            elif c.tag == "alias":
                self.alias = c.get("name")


def _int_or_none(value):
    return int(value) if value is not None else None
