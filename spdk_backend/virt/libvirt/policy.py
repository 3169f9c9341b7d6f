"""What to change in a libvirt domain for vhost-user disks, and when.

Public entry points (the CLI and the OpenStack drivers call these):

- :func:`prepare_domain` makes a domain's persistent definition vhost-user
  ready: shared guest memory (huge pages when the host has enough free ones
  of a size, memfd otherwise) and ``memAccess='shared'`` on every NUMA cell.
- :func:`attach_vhost_disk` / :func:`detach_vhost_disk` add and remove a
  ``<disk type='vhostuser'>`` live and/or persistently.

The decisions themselves are pure functions of config objects
(:func:`plan_prepare`, :func:`memory_is_shared`, :func:`pick_target`,
:func:`default_queues`, :func:`free_hotplug_ports`, :func:`find_vhost_disk`)
so they are tested on XML alone.
"""

import collections
import copy
import grp
import logging
import os
import pwd
import re
import stat

from spdk_backend import exception
from spdk_backend.virt.libvirt import config as vconfig

LOG = logging.getLogger(__name__)

# A user alias must start with "ua-" for libvirt to keep it (formatdomain,
# "Devices": user aliases); QEMU ids allow only these characters.
ALIAS_PREFIX = "ua-sb-"
_ALIAS_BAD = re.compile(r"[^A-Za-z0-9_-]")
DEFAULT_RECONNECT_TIMEOUT = 10
# How long a live attach may take before it is reported as stuck.
DEFAULT_ATTACH_TIMEOUT = 60.0

PrepareResult = collections.namedtuple(
    "PrepareResult", "changed changes restart_required memory")
PrepareResult.__doc__ = """What :func:`prepare_domain` did.

``changed``: the persistent definition was rewritten; ``changes``: one line
per change, for people; ``restart_required``: the domain runs with memory
that is not shared, so the change takes effect only after a full stop and
start (a reboot from inside the guest is not enough); ``memory``: how guest
memory is backed now ('hugepages:<KiB>', 'hugepages', 'memfd', 'file',
'anonymous' or 'default')."""

# The oldest libvirt seen to give a hot-plugged vhostuser disk the reconnect
# timeout of its XML (chardev-add with "reconnect-ms"); libvirt 9.0 sends
# "reconnect": 0 on that path, so QEMU never reconnects such a disk after its
# back-end restarts.  Versions in between are untested and count as old.
HOTPLUG_RECONNECT_LIBVIRT = (11, 3, 0)

QemuCredentials = collections.namedtuple("QemuCredentials", "uid gid groups")
QemuCredentials.__doc__ = """Whom a domain's QEMU runs as: ``uid``, ``gid``
and the set of ``groups`` (the supplementary ones and ``gid``)."""

DiskInfo = collections.namedtuple(
    "DiskInfo", "target_dev alias socket_path queues live config")
DiskInfo.__doc__ = """A vhost-user disk of a domain: its target (``vdb``),
alias, socket, queue count, and whether it is in the running domain
(``live``) and in the persistent definition (``config``)."""


# -- pure decisions on config objects ---------------------------------------

def memory_is_shared(dom):
    """Whether ``dom`` (config.Domain) gives QEMU shareable guest memory.

    libvirt's rule for vhost-user devices: every NUMA cell must be shared,
    by its own ``memAccess`` or, when that is unset, by
    ``<memoryBacking><access mode='shared'/>``; without NUMA cells the
    memoryBacking access decides.
    """
    default = (dom.memory_backing is not None and
               dom.memory_backing.access_mode == "shared")
    if not dom.numa_cells:
        return default
    for cell in dom.numa_cells:
        mode = cell.mem_access
        if mode is None and not default:
            return False
        if mode is not None and mode != "shared":
            return False
    return True


def describe_memory(dom):
    backing = dom.memory_backing
    if backing is None:
        return "default"
    if backing.hugepages:
        sizes = sorted({p.size_kib for p in backing.pages if p.size})
        return "hugepages" + "".join(":%dKiB" % s for s in sizes)
    return backing.source_type or "default"


def choose_hugepage_size(memory_kib, pools, cell_kibs=()):
    """The largest huge page size whose free pages can back ``memory_kib``
    (and that divides it and every NUMA cell's memory, as QEMU needs), or
    None.  Free pages are counted host-wide, not per host NUMA node.

    :param pools: host.HugePagePool list; a pool counts only if a hugetlbfs
        of its size is mounted.
    :param cell_kibs: memory of each guest NUMA cell in KiB.
    """
    if not memory_kib:
        return None
    best = None
    for pool in pools:
        if not pool.mounted or pool.size_kib <= 0:
            continue
        if any((kib or 0) % pool.size_kib
               for kib in [memory_kib] + list(cell_kibs)):
            continue
        if pool.free * pool.size_kib < memory_kib:
            continue
        if best is None or pool.size_kib > best:
            best = pool.size_kib
    return best


def plan_prepare(dom, pools=(), hugepages=None):
    """Plan the edits that make ``dom`` vhost-user ready.

    :param dom: config.Domain of the persistent definition (edited in a
        copy; the argument is left alone).
    :param pools: the host's huge page pools (host.discover_hugepages()).
    :param hugepages: None to use huge pages when ``pools`` can back the
        guest, False never, True to require them.
    :returns: (new config.Domain, list of change descriptions); no changes
        means the definition is already ready.
    :raises InvalidInput: ``hugepages=True`` and no pool fits.
    """
    new = copy.deepcopy(dom)
    changes = []
    backing = new.memory_backing
    if backing is None:
        backing = vconfig.MemoryBacking()
        new.memory_backing = backing
    if not backing.hugepages and backing.source_type in (None, "anonymous"):
        # vhost-user needs an fd for guest RAM: anonymous memory has none.
        # An existing file/memfd source or huge pages already give one.
        size = None
        if hugepages is not False:
            size = choose_hugepage_size(
                dom.memory_kib, pools,
                [c.memory_kib for c in dom.numa_cells])
            if size is None and hugepages:
                raise exception.InvalidInput(
                    reason="no mounted huge page size has %s KiB free for "
                           "domain %s" % (dom.memory_kib, dom.name))
        if size is not None:
            backing.hugepages = True
            backing.pages = [vconfig.MemoryBackingPage(size=size, unit="KiB")]
            if backing.source_type == "anonymous":
                backing.source_type = None
            changes.append("memory backed by %d KiB huge pages" % size)
        else:
            backing.source_type = "memfd"
            changes.append("memory source memfd")
    if backing.access_mode != "shared":
        backing.access_mode = "shared"
        changes.append("memory access shared")
    for cell in new.numa_cells:
        if cell.mem_access not in (None, "shared"):
            changes.append("NUMA cell %s memAccess %s -> shared"
                           % (cell.id, cell.mem_access))
            cell.mem_access = "shared"
        elif cell.mem_access is None:
            # Explicit, so a later global access change cannot undo it.
            changes.append("NUMA cell %s memAccess shared" % cell.id)
            cell.mem_access = "shared"
    return new, changes


def _target_index(dev):
    """'vda' -> 0, 'vdz' -> 25, 'vdaa' -> 26 (libvirt's disk name order)."""
    m = re.match(r"^vd([a-z]+)$", dev or "")
    if not m:
        return None
    idx = 0
    for ch in m.group(1):
        idx = idx * 26 + (ord(ch) - ord("a") + 1)
    return idx - 1


def _target_name(index):
    letters = ""
    index += 1
    while index > 0:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return "vd" + letters


def pick_target(*doms):
    """The first ``vdX`` not used by a disk of any of ``doms`` (typically
    the live and the persistent XML of one domain)."""
    used = set()
    for dom in doms:
        if dom is None:
            continue
        for disk in dom.disks:
            idx = _target_index(disk.target_dev)
            if idx is not None:
                used.add(idx)
    i = 0
    while i in used:
        i += 1
    return _target_name(i)


def default_queues(dom, max_queues=None):
    """One queue per vCPU, at most ``max_queues`` (the vhost controller's
    limit), at least one."""
    queues = max(dom.vcpus or 1, 1)
    if max_queues:
        queues = min(queues, max_queues)
    return queues


# Controller models a PCIe device can be hot plugged into.
_HOTPLUG_PORT_MODELS = ("pcie-root-port", "pcie-switch-downstream-port")


def free_hotplug_ports(dom):
    """How many hotplug-capable PCIe ports of ``dom`` have nothing plugged
    in, or None when it is not a q35 machine (a pc machine hotplugs into
    pci.0's 31 slots; libvirt's error covers it)."""
    if not dom.is_q35:
        return None
    used = {a.bus for a in dom.pci_addresses if a.bus is not None}
    return sum(1 for c in dom.controllers
               if c.type == "pci" and c.model in _HOTPLUG_PORT_MODELS and
               c.index is not None and c.index not in used)


def find_vhost_disk(dom, socket_path=None, alias=None, target_dev=None):
    """The vhostuser disk of ``dom`` matching any given key, or None."""
    if dom is None:
        return None
    if socket_path is not None:
        socket_path = os.path.normpath(socket_path)
    for disk in dom.disks:
        if disk.source_type != "vhostuser":
            continue
        if socket_path is not None and disk.source_path and \
                os.path.normpath(disk.source_path) == socket_path:
            return disk
        if alias is not None and disk.alias == alias:
            return disk
        if target_dev is not None and disk.target_dev == target_dev:
            return disk
    return None


def alias_for_socket(socket_path):
    """A stable libvirt user alias for the disk served at ``socket_path``."""
    base = os.path.basename(os.path.normpath(socket_path))
    if base.endswith(".sock"):
        base = base[:-len(".sock")]
    return ALIAS_PREFIX + (_ALIAS_BAD.sub("_", base) or "disk")


def _used_aliases(*doms):
    return {d.alias for dom in doms if dom is not None
            for d in dom.disks if d.alias}


def hotplug_reconnects(versions):
    """Whether a vhost-user disk hot-plugged through the libvirt of
    ``versions`` (host.StackVersions) reconnects when its back-end restarts;
    disks in the domain's XML when it starts always do."""
    return bool(versions and versions.libvirt and
                versions.libvirt >= HOTPLUG_RECONNECT_LIBVIRT)


def _hotplug_reconnects(host):
    try:
        return hotplug_reconnects(host.versions())
    except exception.LibvirtError:
        return False


def _dac_id(text, lookup, field):
    """'+64055' -> 64055; a name through ``lookup`` (pwd/grp)."""
    if text.startswith("+"):
        return int(text[1:])
    if text.isdigit():
        return int(text)
    return getattr(lookup(text), field)


def qemu_credentials(dom):
    """The :class:`QemuCredentials` of the running ``dom``, from the DAC
    ``<seclabel>`` label of its live XML (``+64055:+64055`` on Debian, or
    ``libvirt-qemu:kvm``), or None when the XML does not say.

    libvirt gives QEMU the groups of the label's user, the primary group
    of its passwd entry included, plus the label's group (its DAC driver's
    group list), so those are looked up here.
    """
    label = dom.dac_label if dom is not None else None
    if not label or ":" not in label:
        return None
    user, _, group = label.partition(":")
    try:
        uid = _dac_id(user, pwd.getpwnam, "pw_uid")
        gid = _dac_id(group, grp.getgrnam, "gr_gid")
    except (KeyError, ValueError):
        return None
    groups = {gid}
    try:
        user = pwd.getpwuid(uid)
        groups.update(os.getgrouplist(user.pw_name, user.pw_gid))
    except KeyError:
        pass        # no passwd entry: no supplementary groups either
    return QemuCredentials(uid=uid, gid=gid, groups=frozenset(groups))


_ACL_XATTR = "system.posix_acl_access"


def _mode_allows(st, creds, bit):
    """Whether the owner/group/other class of ``creds`` has ``bit`` (4 r,
    2 w, 1 x) in ``st``, as the kernel decides without ACLs or
    capabilities (libvirt drops QEMU's capabilities, root's too)."""
    if creds.uid == st.st_uid:
        shift = 6
    elif st.st_gid in creds.groups:
        shift = 3
    else:
        shift = 0
    return bool((st.st_mode >> shift) & bit)


def socket_access_denied(path, creds):
    """Why ``creds`` may not connect to the unix socket ``path``, or None.

    connect(2) on a unix socket needs search permission on every directory
    of the path and write permission on the socket (unix(7)).  Only mode
    bits are judged: a file with a POSIX ACL, or one that cannot be
    stat'ed, is left for QEMU to try.
    """
    path = os.path.abspath(path)
    parts = path.split("/")[1:]
    checks = [("/" + "/".join(parts[:i]), 1, "search") for i in range(len(parts))]
    checks.append((path, 2, "write"))
    for node, bit, what in checks:
        try:
            st = os.stat(node)
            if _ACL_XATTR in os.listxattr(node):
                continue
        except OSError:
            continue
        if not _mode_allows(st, creds, bit):
            return ("QEMU runs as uid %d gid %d and has no %s permission on %s "
                    "(mode %04o, owner %d:%d)" % (
                        creds.uid, creds.gid, what, node, stat.S_IMODE(st.st_mode),
                        st.st_uid, st.st_gid))
    return None


def qemu_access_denied(dom, socket_path):
    """Why QEMU of the running ``dom`` (its live config.Domain) may not
    connect to ``socket_path`` (:func:`socket_access_denied` with
    :func:`qemu_credentials`), or None, also when the XML does not say
    whom QEMU runs as."""
    creds = qemu_credentials(dom)
    return socket_access_denied(socket_path, creds) if creds else None


# -- operations on a libvirt host ---------------------------------------------

def prepare_domain(host, name, hugepages=None):
    """Make domain ``name``'s persistent definition vhost-user ready.

    Idempotent; changes only ``<memoryBacking>`` and NUMA cells'
    ``memAccess``.

    :param host: a :class:`~spdk_backend.virt.libvirt.host.Host`.
    :param hugepages: see :func:`plan_prepare`.
    :returns: :class:`PrepareResult`.
    :raises DomainNotFound: no such domain.
    :raises InvalidInput: the domain is transient.
    """
    guest = host.get_guest(name)
    if not guest.is_persistent():
        raise exception.InvalidInput(
            reason="domain %s is transient: define it persistently first"
                   % name)
    dom = guest.get_config(inactive=True)
    pools = host.hugepage_pools() if hugepages is not False else ()
    new, changes = plan_prepare(dom, pools, hugepages)
    if changes:
        LOG.info("preparing domain %s for vhost-user: %s", name,
                 "; ".join(changes))
        guest.define(new)
    restart = guest.is_active() and not memory_is_shared(guest.get_config())
    return PrepareResult(changed=bool(changes), changes=changes,
                         restart_required=restart,
                         memory=describe_memory(new))


def _disk_info(disk, live_dom, cfg_dom):
    def has(dom):
        return find_vhost_disk(dom, socket_path=disk.source_path,
                               alias=disk.alias) is not None
    return DiskInfo(target_dev=disk.target_dev, alias=disk.alias,
                    socket_path=disk.source_path, queues=disk.driver_queues,
                    live=has(live_dom), config=has(cfg_dom))


def _scopes(guest, live, config_):
    active = guest.is_active()
    persistent = guest.is_persistent()
    if live is None:
        live = active
    if config_ is None:
        config_ = persistent
    if live and not active:
        raise exception.InvalidInput(
            reason="domain %s is not running: attach with the persistent "
                   "definition only, or start it" % guest.name)
    if config_ and not persistent:
        raise exception.InvalidInput(
            reason="domain %s is transient: it has no persistent definition"
                   % guest.name)
    if not (live or config_):
        raise exception.InvalidInput(
            reason="neither the running domain nor its definition chosen")
    return live, config_


def attach_vhost_disk(host, name, socket_path, queues=None, max_queues=None,
                      queue_size=None, live=None, config=None, alias=None,
                      target_dev=None,
                      reconnect_timeout=DEFAULT_RECONNECT_TIMEOUT,
                      timeout=DEFAULT_ATTACH_TIMEOUT):
    """Attach the vhost-user-blk device served at ``socket_path``.

    :param host: a :class:`~spdk_backend.virt.libvirt.host.Host`.
    :param queues: virtqueues; default one per vCPU, capped by
        ``max_queues`` (the vhost controller's limit).
    :param live: attach to the running domain (default: if it runs).
    :param config: add to the persistent definition (default: if it has
        one).
    :param alias: libvirt alias (``ua-`` prefix); default from the socket.
    :param target_dev: ``vdX``; default the first free one.
    :param timeout: seconds a live attach may take (None: no limit).
    :returns: :class:`DiskInfo`.  Attaching a socket that is already
        attached in every chosen place returns it unchanged.
    :raises SharedMemoryRequired: guest memory is not shared (the message
        says how to fix it).
    :raises NoFreeHotplugSlot: no free PCIe port for a live attach.
    :raises VhostSocketUnreachable: a live attach and the socket is missing
        or QEMU cannot open it.
    :raises HotplugTimeout: QEMU did not finish the live attach in time.
    """
    socket_path = os.path.abspath(socket_path)
    guest = host.get_guest(name)
    live, config_ = _scopes(guest, live, config)
    live_dom = guest.get_config() if guest.is_active() else None
    cfg_dom = guest.get_config(inactive=True) if guest.is_persistent() \
        else None

    if live and not memory_is_shared(live_dom):
        raise exception.SharedMemoryRequired(name=name)
    if config_ and not memory_is_shared(cfg_dom):
        raise exception.SharedMemoryRequired(name=name)

    existing_live = find_vhost_disk(live_dom, socket_path=socket_path)
    existing_cfg = find_vhost_disk(cfg_dom, socket_path=socket_path)
    existing = existing_live or existing_cfg
    if existing is not None:
        # Finish a half-done attach with the same identity.
        alias = alias or existing.alias
        target_dev = target_dev or existing.target_dev
        queues = queues or existing.driver_queues
    if live and existing_live is not None:
        live = False
    if config_ and existing_cfg is not None:
        config_ = False
    if not (live or config_):
        return _disk_info(existing, live_dom, cfg_dom)

    if alias is None:
        alias = alias_for_socket(socket_path)
        base, n = alias, 1
        while alias in _used_aliases(live_dom, cfg_dom):
            n += 1
            alias = "%s-%d" % (base, n)
    elif not alias.startswith("ua-"):
        raise exception.InvalidInput(
            reason="alias %r must start with 'ua-'" % alias)
    if target_dev is None:
        target_dev = pick_target(live_dom, cfg_dom)
    if queues is None:
        queues = default_queues(live_dom or cfg_dom, max_queues)

    if live:
        # QEMU connects while libvirt attaches; say why it cannot, early.
        # (Never probe-connect: the server would take it for QEMU.)
        try:
            is_sock = stat.S_ISSOCK(os.stat(socket_path).st_mode)
        except OSError as exc:
            raise exception.VhostSocketUnreachable(
                name=name, path=socket_path, reason=exc.strerror)
        if not is_sock:
            raise exception.VhostSocketUnreachable(
                name=name, path=socket_path, reason="not a unix socket")
        # A QEMU that cannot connect fails the hot-plug at once only when
        # libvirt leaves out the disk's reconnect timeout (libvirt 9.0); with
        # it (libvirt 11.3) QEMU retries inside device_add for ever, and the
        # domain is stuck.  So refuse what its permissions already forbid.
        denied = qemu_access_denied(live_dom, socket_path)
        if denied:
            raise exception.VhostSocketUnreachable(
                name=name, path=socket_path,
                reason="Permission denied: %s" % denied)
        free = free_hotplug_ports(live_dom)
        if free == 0:
            raise exception.NoFreeHotplugSlot(name=name)

    disk = vconfig.VhostUserDisk(
        source_path=socket_path, target_dev=target_dev, queues=queues,
        queue_size=queue_size, reconnect_timeout=reconnect_timeout,
        alias=alias)
    LOG.info("attaching vhost-user disk %s (%s) to %s (live=%s config=%s)",
             target_dev, socket_path, name, live, config_)
    try:
        guest.attach_device(disk, live=live, config=config_, timeout=timeout)
    except exception.HotplugTimeout as exc:
        if reconnect_timeout and _hotplug_reconnects(host):
            exc.message = (
                "%s; QEMU retries connecting to %s every %ss inside the "
                "hot-plug and finishes it once it can connect (make the "
                "socket reachable for the user QEMU runs as), or stop the "
                "domain" % (exc.message, socket_path, reconnect_timeout))
            exc.args = (exc.message,)
        raise

    live_dom = guest.get_config() if guest.is_active() else None
    cfg_dom = guest.get_config(inactive=True) if guest.is_persistent() \
        else None
    attached = find_vhost_disk(live_dom, socket_path=socket_path) or \
        find_vhost_disk(cfg_dom, socket_path=socket_path)
    if attached is None:
        raise exception.LibvirtError(
            reason="disk %s was attached to %s but is not in its XML"
                   % (socket_path, name))
    return _disk_info(attached, live_dom, cfg_dom)


def list_vhost_disks(host, name):
    """Every vhost-user disk of domain ``name`` as :class:`DiskInfo`."""
    guest = host.get_guest(name)
    live_dom = guest.get_config() if guest.is_active() else None
    cfg_dom = guest.get_config(inactive=True) if guest.is_persistent() \
        else None
    seen, out = set(), []
    for dom in (live_dom, cfg_dom):
        if dom is None:
            continue
        for disk in dom.disks:
            if disk.source_type != "vhostuser" or disk.source_path in seen:
                continue
            seen.add(disk.source_path)
            out.append(_disk_info(disk, live_dom, cfg_dom))
    return out


def detach_vhost_disk(host, name, socket_path=None, alias=None, live=None,
                      config=None, timeout=30.0, missing_ok=False):
    """Detach the vhost-user disk with ``socket_path`` or ``alias``.

    :param live: detach from the running domain (default: where present).
    :param config: remove from the persistent definition (default: where
        present).
    :param timeout: seconds to wait for the guest to release the device.
    :param missing_ok: return None instead of raising when the disk is in
        neither place.
    :returns: :class:`DiskInfo` of the removed disk, as it was.
    :raises DeviceDetachFailed: not found, or the guest kept it.
    """
    if socket_path is None and alias is None:
        raise exception.InvalidInput(reason="give a socket path or an alias")
    guest = host.get_guest(name)
    active, persistent = guest.is_active(), guest.is_persistent()
    live_dom = guest.get_config() if active else None
    cfg_dom = guest.get_config(inactive=True) if persistent else None
    in_live = find_vhost_disk(live_dom, socket_path=socket_path, alias=alias)
    in_cfg = find_vhost_disk(cfg_dom, socket_path=socket_path, alias=alias)
    if in_live is None and in_cfg is None:
        if missing_ok:
            return None
        raise exception.DeviceDetachFailed(
            device=socket_path or alias, name=name,
            reason="no such vhost-user disk")
    info = _disk_info(in_live or in_cfg, live_dom, cfg_dom)
    do_live = in_live is not None and live is not False
    do_cfg = in_cfg is not None and config is not False
    if live and in_live is None:
        LOG.info("disk %s is not in the running domain %s", alias or
                 socket_path, name)
    if config and in_cfg is None:
        LOG.info("disk %s is not in the definition of %s", alias or
                 socket_path, name)
    if not (do_live or do_cfg):
        return info
    if do_live and do_cfg and \
            in_live.target_dev == in_cfg.target_dev:
        # One call: libvirt matches the disk by target in both places.
        guest.detach_device(in_live, live=True, config=True, timeout=timeout)
    else:
        if do_cfg:
            guest.detach_device(in_cfg, config=True)
        if do_live:
            guest.detach_device(in_live, live=True, timeout=timeout)
    LOG.info("detached vhost-user disk %s from %s", info.target_dev, name)
    return info
