"""One libvirt domain, wrapped: the only place that calls virDomain methods.

Config objects go in (``to_xml()`` -> ``attachDeviceFlags``), config objects
come out (``XMLDesc`` -> :class:`~spdk_backend.virt.libvirt.config.Domain`),
and every ``libvirt.libvirtError`` leaves as one of the project's exceptions
(:func:`map_libvirt_error`).
"""

import logging
import re
import threading
import time

from spdk_backend import exception
from spdk_backend import utils
from spdk_backend.virt.libvirt import config as vconfig

try:
    import libvirt
except ImportError:  # pragma: no cover - install_requires has it
    libvirt = None

LOG = logging.getLogger(__name__)

# libvirt reports a full PCIe topology like this on q35 ("No more available
# PCI slots"), and an i440fx/pc machine without ACPI hotplug like that.
_NO_SLOT_MESSAGES = ("No more available PCI slots",
                     "does not support hotplugging")
_SHARED_MEMORY_MESSAGES = ("requires shared memory",)
# QEMU's chardev-add, as libvirt relays it.
_CONNECT_FAILED = re.compile(r"Failed to connect to '(?P<path>[^']+)': "
                             r"(?P<reason>[^\n]+)")


def map_libvirt_error(exc, name, op=None):
    """The project's exception for ``libvirt.libvirtError`` ``exc``.

    :param name: the domain the call was about (for the message).
    :param op: what was being done, e.g. "attach".
    """
    msg = exc.get_error_message() or str(exc)
    code = exc.get_error_code()
    if libvirt is not None and code == libvirt.VIR_ERR_NO_DOMAIN:
        return exception.DomainNotFound(name=name)
    connect = _CONNECT_FAILED.search(msg)
    if connect:
        err = exception.VhostSocketUnreachable(
            name=name, path=connect.group("path"),
            reason=connect.group("reason").rstrip("."))
    elif any(m in msg for m in _NO_SLOT_MESSAGES):
        err = exception.NoFreeHotplugSlot(name=name)
    elif any(m in msg for m in _SHARED_MEMORY_MESSAGES):
        err = exception.SharedMemoryRequired(name=name)
    else:
        return exception.LibvirtError(
            reason="%s%s: %s" % (op or "call", " on domain %s" % name
                                 if name else "", msg))
    # Keep libvirt's own words next to the explanation.
    err.message = "%s (libvirt: %s)" % (err.message, msg)
    err.args = (err.message,)
    return err


class _StillPresent(Exception):
    pass


class Guest:
    """A libvirt domain.

    :param host: the :class:`~spdk_backend.virt.libvirt.host.Host` it came
        from (for events and redefinition).
    :param domain: the ``libvirt.virDomain``.
    """

    def __init__(self, host, domain):
        self._host = host
        self._domain = domain

    def __repr__(self):
        return "<Guest %s>" % self.name

    @property
    def name(self):
        return self._domain.name()

    @property
    def uuid(self):
        return self._domain.UUIDString()

    def _call(self, op, fn, *args):
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise map_libvirt_error(exc, self.name, op)

    # -- state -----------------------------------------------------------
    def is_active(self):
        return bool(self._call("query state", self._domain.isActive))

    def is_persistent(self):
        return bool(self._call("query state", self._domain.isPersistent))

    def get_xml_desc(self, inactive=False):
        """Domain XML: the persistent definition if ``inactive``, else the
        running one (the same thing for a stopped domain)."""
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        return self._call("dumpxml", self._domain.XMLDesc, flags)

    def get_config(self, inactive=False):
        """The XML of :meth:`get_xml_desc` as a config.Domain."""
        return vconfig.Domain.from_xml(self.get_xml_desc(inactive))

    # -- lifecycle (operators and tests) -----------------------------------
    def define(self, domain_conf):
        """Replace the persistent definition with ``domain_conf`` (a
        config.Domain or XML string)."""
        xml = domain_conf if isinstance(domain_conf, str) else \
            domain_conf.to_xml()
        try:
            self._host.get_connection().defineXML(xml)
        except libvirt.libvirtError as exc:
            raise map_libvirt_error(exc, self.name, "define")

    def start(self):
        self._call("start", self._domain.create)

    def destroy(self):
        """Stop the domain now (like pulling the plug); no-op if stopped."""
        if self.is_active():
            self._call("destroy", self._domain.destroy)

    def undefine(self):
        """Remove the persistent definition (the domain keeps running if it
        is active, as a transient one)."""
        flags = 0
        for name in ("VIR_DOMAIN_UNDEFINE_NVRAM",
                     "VIR_DOMAIN_UNDEFINE_MANAGED_SAVE",
                     "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA",
                     "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA"):
            flags |= getattr(libvirt, name, 0)
        self._call("undefine", self._domain.undefineFlags, flags)

    # -- devices -----------------------------------------------------------
    def _flags(self, live, config_):
        if not (live or config_):
            raise exception.InvalidInput(
                reason="neither the live domain nor its persistent "
                       "definition was chosen")
        flags = 0
        if live:
            if not self.is_active():
                raise exception.InvalidInput(
                    reason="domain %s is not running; a live change needs a "
                           "running domain" % self.name)
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        if config_:
            if not self.is_persistent():
                raise exception.InvalidInput(
                    reason="domain %s is transient; it has no persistent "
                           "definition to change" % self.name)
            flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
        return flags

    def attach_device(self, conf, live=False, config=False, timeout=None):
        """Attach device ``conf`` (a config object) to the running domain
        (``live``) and/or its persistent definition (``config``).

        With both, libvirt changes the definition only if the live attach
        worked.

        :param timeout: seconds a live attach may take.  libvirt waits for
            QEMU's ``device_add`` without a limit, and QEMU can block in it
            (a vhost-user chardev with ``reconnect`` retries its connect for
            ever inside the device's realize), so the call runs in a thread
            and is given up after ``timeout``; it goes on in libvirt.
        :raises HotplugTimeout: the live attach did not return in time.
        """
        flags = self._flags(live, config)
        xml = conf.to_xml()
        LOG.debug("attaching to %s (flags %d): %s", self.name, flags, xml)
        if not live or timeout is None:
            self._call("attach", self._domain.attachDeviceFlags, xml, flags)
            return
        done = threading.Event()
        failure = []

        def _attach():
            try:
                self._domain.attachDeviceFlags(xml, flags)
            except BaseException as exc:    # re-raised in the caller's thread
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=_attach, daemon=True,
                         name="libvirt-attach").start()
        if not done.wait(timeout):
            raise exception.HotplugTimeout(
                name=self.name, device=getattr(conf, "alias", None) or "the device",
                timeout=timeout,
                reason="libvirt is still waiting for QEMU, and the domain "
                       "cannot be managed until QEMU answers")
        if failure:
            if isinstance(failure[0], libvirt.libvirtError):
                raise map_libvirt_error(failure[0], self.name, "attach")
            raise failure[0]

    def detach_device(self, conf, live=False, config=False, wait=True,
                      timeout=30.0):
        """Detach device ``conf`` (as read from the domain's XML).

        A live detach asks the guest to release the device; with ``wait``
        this returns only once the device is gone from the running domain
        (device-removed event, else polling the live XML).

        :raises DeviceDetachFailed: the guest did not release it in time.
        """
        flags = self._flags(live, config)
        alias = getattr(conf, "alias", None)
        target = getattr(conf, "target_dev", None)
        waiter = None
        if live and wait and alias:
            waiter = self._host.expect_device_removed(self.uuid, alias)
        try:
            xml = conf.to_xml()
            LOG.debug("detaching from %s (flags %d): %s", self.name, flags,
                      xml)
            self._call("detach", self._domain.detachDeviceFlags, xml, flags)
            if live and wait:
                self._wait_removed(alias, target, timeout, waiter)
        finally:
            if waiter is not None:
                self._host.forget_device_removed(self.uuid, alias)

    def _live_disk_present(self, alias, target):
        if not self.is_active():
            return False
        for disk in self.get_config().disks:
            if (alias and disk.alias == alias) or \
                    (target and disk.target_dev == target):
                return True
        return False

    def _wait_removed(self, alias, target, timeout, waiter):
        device = alias or target
        deadline = time.monotonic() + timeout
        if waiter is not None:
            # The event says QEMU and libvirt let go; the XML check below
            # confirms it (and covers a missed event).
            waiter.wait(timeout)

        @utils.retry(_StillPresent, attempts=1000000, interval=0.05,
                     max_interval=1.0,
                     timeout=max(deadline - time.monotonic(), 0.1))
        def _check():
            if self._live_disk_present(alias, target):
                raise _StillPresent()

        try:
            _check()
        except _StillPresent:
            raise exception.DeviceDetachFailed(
                device=device, name=self.name,
                reason="the guest did not release it within %ss (is its OS "
                       "up, with PCIe hotplug support?)" % timeout)
