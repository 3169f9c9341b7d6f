"""The libvirt connection, its event loop, and host facts.

:class:`Host` opens the connection lazily, looks domains up as
:class:`~spdk_backend.virt.libvirt.guest.Guest` objects, and (when asked)
runs libvirt's default event loop in a daemon thread so a guest can wait for
``VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED`` instead of polling.

:func:`discover_hugepages` reads the host's huge page pools from sysfs.
"""

import collections
import logging
import os
import threading

from spdk_backend import exception
from spdk_backend.virt.libvirt import guest as guest_mod

try:
    import libvirt
except ImportError:  # pragma: no cover - install_requires has it
    libvirt = None

LOG = logging.getLogger(__name__)

DEFAULT_URI = "qemu:///system"
SYSFS_HUGEPAGES = "/sys/kernel/mm/hugepages"
PROC_MOUNTS = "/proc/mounts"
PROC_MEMINFO = "/proc/meminfo"


class StackVersions(collections.namedtuple(
        "StackVersions", "libvirt hypervisor hypervisor_version client")):
    """The virtualization stack a connection talks to: the libvirt of the
    daemon (``getLibVersion``), the hypervisor driver's name and version
    (``getType``/``getVersion``: QEMU's for qemu:///), and the libvirt
    library of this process (``libvirt.getVersion``).  Versions are
    ``(major, minor, micro)`` tuples."""

    def __str__(self):
        return "libvirt %s, %s %s" % (format_version(self.libvirt), self.hypervisor,
                                      format_version(self.hypervisor_version))


def split_version(number):
    """libvirt's version integer (major * 1,000,000 + minor * 1,000 +
    micro) as a tuple; None for 0 or None (libvirt's "unknown")."""
    if not number:
        return None
    return (number // 1000000, number // 1000 % 1000, number % 1000)


def format_version(version):
    return ".".join(str(n) for n in version) if version else "unknown"


class HugePagePool(collections.namedtuple(
        "HugePagePool", "size_kib total free mounted")):
    """One huge page size: pages configured, free, and whether a hugetlbfs
    of that size is mounted (libvirt needs one to back guest memory)."""


def _read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


def _default_hugepage_kib(meminfo):
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("Hugepagesize:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _size_kib(text):
    """hugetlbfs 'pagesize=' option: '2M', '1G', '2048k'."""
    text = text.strip().upper()
    mult = {"K": 1, "M": 1024, "G": 1024 * 1024}
    if text and text[-1] in mult:
        return int(text[:-1]) * mult[text[-1]]
    return int(text) // 1024


def _mounted_sizes(mounts, meminfo):
    sizes = set()
    default = None
    try:
        with open(mounts) as f:
            lines = f.readlines()
    except OSError:
        return sizes
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or parts[2] != "hugetlbfs":
            continue
        size = None
        for opt in parts[3].split(","):
            if opt.startswith("pagesize="):
                try:
                    size = _size_kib(opt[len("pagesize="):])
                except ValueError:
                    size = None
        if size is None:
            if default is None:
                default = _default_hugepage_kib(meminfo)
            size = default
        if size:
            sizes.add(size)
    return sizes


def discover_hugepages(sysfs=SYSFS_HUGEPAGES, mounts=PROC_MOUNTS,
                       meminfo=PROC_MEMINFO):
    """The host's huge page pools, smallest page size first.

    :returns: a list of :class:`HugePagePool`; empty when the kernel has no
        huge page support.
    """
    pools = []
    try:
        names = os.listdir(sysfs)
    except OSError:
        return pools
    mounted = _mounted_sizes(mounts, meminfo)
    for name in names:
        if not (name.startswith("hugepages-") and name.endswith("kB")):
            continue
        try:
            size = int(name[len("hugepages-"):-len("kB")])
        except ValueError:
            continue
        base = os.path.join(sysfs, name)
        pools.append(HugePagePool(
            size_kib=size,
            total=_read_int(os.path.join(base, "nr_hugepages")),
            free=_read_int(os.path.join(base, "free_hugepages")),
            mounted=size in mounted))
    return sorted(pools)


class _EventLoop:
    """libvirt's default event implementation, run in a daemon thread.

    It must be registered before the connection is opened.  A periodic
    timeout wakes the loop so :meth:`stop` is honoured within a second.
    """

    _lock = threading.Lock()
    _instance = None

    def __init__(self):
        self._stopping = False
        self._thread = None
        self._timer = None
        self._users = 0

    @classmethod
    def get(cls):
        with cls._lock:
            if cls._instance is None:
                libvirt.virEventRegisterDefaultImpl()
                cls._instance = cls()
            return cls._instance

    def start(self):
        """Run the loop (reference counted: one per Host using events)."""
        with self._lock:
            self._users += 1
            if self._thread is not None and self._thread.is_alive():
                return
            self._start()

    def _start(self):
        self._stopping = False
        self._timer = libvirt.virEventAddTimeout(1000, lambda *a: None, None)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="libvirt-events")
        self._thread.start()

    def _run(self):
        while not self._stopping:
            if libvirt.virEventRunDefaultImpl() < 0:
                LOG.warning("libvirt event loop iteration failed")

    def stop(self):
        """Drop one user; the last one stops the thread (within ~1 s)."""
        with self._lock:
            self._users = max(self._users - 1, 0)
            if self._users:
                return
            self._stopping = True
            if self._thread is not None:
                self._thread.join(5)
                self._thread = None
            if self._timer is not None:
                libvirt.virEventRemoveTimeout(self._timer)
                self._timer = None


class Host:
    """One libvirt connection.

    :param uri: libvirt URI, default ``qemu:///system``.
    :param events: run the event loop so detaches wait on the
        device-removed event; without it they poll the live XML.
    :param conn: an open ``libvirt.virConnect`` to use instead of opening
        one (e.g. Nova's); :meth:`close` leaves it open.  ``events`` is
        ignored with it: whoever opened it owns its event loop.
    """

    def __init__(self, uri=DEFAULT_URI, events=False, conn=None):
        if libvirt is None:
            raise exception.LibvirtError(reason="libvirt-python is missing")
        self.uri = uri
        self._conn = conn
        self._own_conn = conn is None
        if conn is not None:
            events = False
        self._events = events
        self._event_loop = None
        self._callback_id = None
        self._removed_lock = threading.Lock()
        self._removed_waiters = {}   # (domain uuid, alias) -> threading.Event
        self._versions = None

    # -- connection -----------------------------------------------------------
    def get_connection(self):
        if self._conn is None:
            # Errors reach callers as exceptions; libvirt's default handler
            # would also print each one to stderr.
            libvirt.registerErrorHandler(lambda ctx, err: None, None)
            if self._events:
                self._event_loop = _EventLoop.get()
                self._event_loop.start()
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise exception.LibvirtError(
                    reason="cannot connect to %s: %s"
                    % (self.uri, exc.get_error_message()))
            if self._events:
                self._callback_id = self._conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                    self._device_removed, None)
        return self._conn

    def close(self):
        if self._conn is not None and not self._own_conn:
            self._conn = None
        if self._conn is not None:
            if self._callback_id is not None:
                try:
                    self._conn.domainEventDeregisterAny(self._callback_id)
                except libvirt.libvirtError:
                    pass
                self._callback_id = None
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None
        if self._event_loop is not None:
            self._event_loop.stop()
            self._event_loop = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- domains --------------------------------------------------------------
    def get_guest(self, name):
        """The :class:`Guest` for domain ``name`` (or its UUID string).

        :raises DomainNotFound:
        """
        conn = self.get_connection()
        try:
            try:
                dom = conn.lookupByName(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN or \
                        len(name) != 36:
                    raise
                dom = conn.lookupByUUIDString(name)
        except libvirt.libvirtError as exc:
            raise guest_mod.map_libvirt_error(exc, name)
        return guest_mod.Guest(self, dom)

    def define_guest(self, xml):
        """Define (or redefine) a persistent domain from ``xml``."""
        try:
            dom = self.get_connection().defineXML(xml)
        except libvirt.libvirtError as exc:
            raise guest_mod.map_libvirt_error(exc, "(new)")
        return guest_mod.Guest(self, dom)

    # -- host facts -----------------------------------------------------------
    def versions(self):
        """The :class:`StackVersions` of this connection (read once)."""
        if self._versions is None:
            conn = self.get_connection()
            try:
                self._versions = StackVersions(
                    libvirt=split_version(conn.getLibVersion()),
                    hypervisor=conn.getType(),
                    hypervisor_version=split_version(conn.getVersion()),
                    client=split_version(libvirt.getVersion()))
            except libvirt.libvirtError as exc:
                raise exception.LibvirtError(
                    reason="cannot read the versions of %s: %s"
                    % (self.uri, exc.get_error_message()))
        return self._versions

    def hugepage_pools(self):
        """See :func:`discover_hugepages` (local host only)."""
        return discover_hugepages()

    # -- device-removed events ------------------------------------------------
    @property
    def has_events(self):
        return self._callback_id is not None

    def _device_removed(self, conn, dom, dev_alias, opaque):
        key = (dom.UUIDString(), dev_alias)
        LOG.debug("device %s removed from %s", dev_alias, dom.name())
        with self._removed_lock:
            waiter = self._removed_waiters.get(key)
        if waiter is not None:
            waiter.set()

    def expect_device_removed(self, uuid, alias):
        """Register interest in ``alias`` leaving domain ``uuid``.

        :returns: a threading.Event set when libvirt reports the removal,
            or None without the event loop.  Call
            :meth:`forget_device_removed` when done.
        """
        if not self.has_events:
            return None
        ev = threading.Event()
        with self._removed_lock:
            self._removed_waiters[(uuid, alias)] = ev
        return ev

    def forget_device_removed(self, uuid, alias):
        with self._removed_lock:
            self._removed_waiters.pop((uuid, alias), None)
