"""``spdk-backend attach|detach DOMAIN VOLUME``: give a VM a volume, take it back.

Attach = a vhost-blk controller for the volume in the agent (named by
:func:`~spdk_backend.cmd._common.ctrlr_name`, so detach finds it again),
then a ``<disk type='vhostuser'>`` on its socket in the libvirt domain.
Detach undoes both, domain first.  A failure half way leaves nothing
behind: a controller this attach made (or an earlier, interrupted one left
unused) is deleted again when libvirt refuses the disk.
"""

import argparse
import logging
import os

from spdk_backend import connector
from spdk_backend import exception
from spdk_backend.cmd import _common
from spdk_backend.cmd import _progress
from spdk_backend.cmd import cli
from spdk_backend.virt.libvirt import host as libvirt_host
from spdk_backend.virt.libvirt import policy

LOG = logging.getLogger(__name__)

# How long a detached guest's QEMU may take to close the controller socket.
BUSY_WAIT = 15.0


def _scopes(args):
    """virsh semantics: neither flag = where the domain allows, else what is named."""
    if not args.live and not args.config:
        return None, None
    return bool(args.live), bool(args.config)


def _socket_in_use(host, domain, socket_path):
    """Whether any vhost-user disk of ``domain`` (live or defined) uses the socket."""
    return any(d.socket_path == socket_path for d in policy.list_vhost_disks(host, domain))


def _delete_controller(client, name, wait=BUSY_WAIT):
    """Delete controller ``name``; waits while QEMU still has it open
    (asked every 0.1 s for ``wait`` seconds; 0: asked once)."""
    with _progress.waiting("QEMU to close the socket of controller %s" % name, limit=wait):
        connector.delete_controller(client, name, attempts=1 << 30, interval=0.1,
                                    backoff=1.0, max_interval=0.1, timeout=wait)


def attach(client, host, domain, volume, queues=None, live=None, config=None,
           readonly=False, timeout=policy.DEFAULT_ATTACH_TIMEOUT):
    """Serve ``volume`` to libvirt domain ``domain``; returns a dict of what was done.

    :param timeout: seconds the live attach may take in libvirt and QEMU.
    """
    vol = _common.get_volume(client, volume)
    host.get_guest(domain)                       # DomainNotFound before any change
    name = _common.ctrlr_name(domain, volume)
    ctrlr, created = connector.create_or_adopt_controller(
        client, name, vol.name, readonly=readonly, max_queues=queues)
    socket_path = ctrlr["socket"]
    try:
        was_live = any(d.live for d in policy.list_vhost_disks(host, domain)
                       if d.socket_path == socket_path)
        with _progress.waiting("libvirt and QEMU to attach volume %s to domain %s"
                               % (vol.name, domain), limit=timeout):
            info = policy.attach_vhost_disk(host, domain, socket_path, queues=queues,
                                            max_queues=ctrlr.get("max_queues") or None,
                                            live=live, config=config, timeout=timeout)
    except BaseException as exc:
        _roll_back(client, host, domain, vol.name, name, socket_path, created, exc)
        raise
    out = {"domain": domain, "volume": vol.name, "ctrlr": name, "socket": socket_path,
           "created_ctrlr": created}
    out.update(info._asdict())
    out["hotplugged"] = bool(info.live and not was_live)
    out["reconnects"] = _reconnects(host, out["hotplugged"], was_live)
    return out


def _reconnects(host, hotplugged, was_live):
    """Whether QEMU reconnects the disk when the agent restarts: True for a
    disk QEMU gets when the domain starts, and for a hot-plugged one where
    libvirt passes the reconnect timeout on the hot-plug path; None when it
    cannot be told (a disk already live before this call, which may have been
    hot-plugged, or libvirt's version unreadable)."""
    try:
        if policy.hotplug_reconnects(host.versions()):
            return True
    except exception.LibvirtError as exc:
        LOG.warning("cannot tell whether the disk reconnects: %s", exc)
        return None
    if hotplugged:
        return False
    return None if was_live else True


def _roll_back(client, host, domain, volume, name, socket_path, created, exc):
    """Delete the controller unless the domain uses it (an earlier attach did)."""
    if isinstance(exc, exception.HotplugTimeout):
        # QEMU is still connecting to it inside the hot-plug: without the
        # socket it would retry for ever instead of finishing the attach.
        LOG.warning("controller %s kept: QEMU of domain %s is still attaching it",
                    name, domain)
        exc.message += ("; controller %s is kept for it ('spdk-backend detach %s %s' "
                        "removes both once the domain answers)" % (name, domain, volume))
        exc.args = (exc.message,)
        return
    try:
        keep = _socket_in_use(host, domain, socket_path)
    except exception.SpdkBackendException:
        keep = not created
    if keep:
        LOG.info("attach failed (%s); controller %s kept: domain %s uses it", exc, name,
                 domain)
        return
    try:
        # Only QEMU would connect; libvirt refused the disk, so force it
        # (where the agent can).
        connector.delete_controller(client, name, attempts=1, force=True)
    except exception.SpdkBackendException as err:
        LOG.error("attach failed and controller %s could not be deleted: %s", name, err)
        raise exception.SpdkBackendException(
            "%s; and the rollback could not delete controller %s (%s): delete it with "
            "'spdk-backend rpc vhost_delete_controller ctrlr=%s'" % (exc, name, err, name))
    LOG.info("attach failed (%s); controller %s deleted", exc, name)


def detach(client, host, domain, volume, live=None, config=None, timeout=30.0):
    """Take ``volume`` away from ``domain``; returns a dict of what was done."""
    name = _common.ctrlr_name(domain, volume)
    ctrlr = _common.controllers(client).get(name)
    socket_path = ctrlr["socket"] if ctrlr else None
    removed = None
    domain_gone = False
    try:
        if socket_path is None:
            # The agent lost the controller; the domain may still name it.
            for disk in policy.list_vhost_disks(host, domain):
                if os.path.basename(disk.socket_path) == name:
                    socket_path = disk.socket_path
        if socket_path is not None:
            with _progress.waiting("the guest of domain %s to release volume %s"
                                   % (domain, volume), limit=timeout):
                removed = policy.detach_vhost_disk(host, domain, socket_path=socket_path,
                                                   live=live, config=config,
                                                   timeout=timeout, missing_ok=True)
    except exception.DomainNotFound:
        if ctrlr is None:
            raise
        domain_gone = True       # undefined behind our back: free the controller
    if ctrlr is None and removed is None:
        _common.get_volume(client, volume)   # VolumeNotFound first, if that is it
        raise exception.InvalidInput(
            reason="volume %s is not attached to domain %s" % (volume, domain))
    still_used = (not domain_gone and socket_path is not None
                  and _socket_in_use(host, domain, socket_path))
    deleted = False
    if ctrlr is not None and not still_used:
        _delete_controller(client, name)
        deleted = True
    out = {"domain": domain, "volume": volume, "ctrlr": name, "socket": socket_path,
           "deleted_ctrlr": deleted, "domain_gone": domain_gone,
           "kept_in_domain": still_used}
    out.update(removed._asdict() if removed else
               {"target_dev": None, "alias": None, "queues": None, "live": False,
                "config": False})
    return out


def _where(live, config):
    return " and ".join(w for w, on in (("live", live), ("persistent", config)) if on)


def _attach(args):
    live, config = _scopes(args)
    host = _common.open_host(args)
    try:
        out = attach(args.client, host, args.domain, args.volume, queues=args.queues,
                     live=live, config=config, readonly=args.readonly,
                     timeout=args.attach_timeout)
        # reconnects False means the versions were read.
        host_stack = ("libvirt %s" % libvirt_host.format_version(host.versions().libvirt)
                      if out["reconnects"] is False else None)
    finally:
        host.close()
    if args.json:
        cli.print_json(out)
        return
    print("Attached volume %s to domain %s as %s (%s, %d queue%s)" % (
        out["volume"], out["domain"], out["target_dev"], _where(out["live"], out["config"]),
        out["queues"], "" if out["queues"] == 1 else "s"))
    print("  controller %s, socket %s" % (out["ctrlr"], out["socket"]))
    if out["reconnects"] is False:
        print("  note: %s does not give a hot-plugged disk its reconnect timeout: if the "
              "agent is stopped, or crashes outside systemd (no fd store), this disk stays "
              "disconnected until it is detached and attached again or the domain is "
              "restarted; 'spdk-backend upgrade' keeps it connected (docs/agent.md)"
              % host_stack)


def _detach(args):
    if args.after_migration:
        if args.live or args.config:
            raise exception.InvalidInput(
                reason="--after-migration does not touch libvirt: no --live or --config")
        from spdk_backend.cmd import migrate
        return migrate.run_detach(args)
    if args.keep_volume:
        raise exception.InvalidInput(reason="--keep-volume goes with --after-migration")
    live, config = _scopes(args)
    host = _common.open_host(args)
    try:
        out = detach(args.client, host, args.domain, args.volume, live=live, config=config,
                     timeout=args.wait)
    finally:
        host.close()
    if args.json:
        cli.print_json(out)
        return
    if out["target_dev"]:
        print("Detached volume %s (%s) from domain %s (%s)" % (
            out["volume"], out["target_dev"], out["domain"], _where(out["live"], out["config"])))
    elif out["domain_gone"]:
        print("Domain %s no longer exists" % out["domain"])
    else:
        print("Volume %s had no disk in domain %s" % (out["volume"], out["domain"]))
    if out["deleted_ctrlr"]:
        print("  controller %s deleted" % out["ctrlr"])
    elif out["kept_in_domain"]:
        print("  controller %s kept: the domain still uses it (detach with --live "
              "--config to remove it everywhere)" % out["ctrlr"])


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 0xffff:
        raise argparse.ArgumentTypeError("%r is not a queue count (1-65535)" % text)
    return value


def _positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError("%r is not a number of seconds above 0" % text)
    return value


def _scope_options(parser, verb):
    parser.add_argument("--live", action="store_true",
                        help="%s the running domain only (with --config: both)" % verb)
    parser.add_argument("--config", action="store_true",
                        help="%s the persistent definition only (with --live: both)" % verb)


def add_parser(subparsers):
    a = _common.add_command(
        subparsers, "attach", help="attach a volume to a libvirt domain",
        description="Create a vhost-blk controller for VOLUME in the agent and attach "
                    "it to DOMAIN as a vhost-user disk: to the running domain and its "
                    "definition by default (what the domain has).  The domain needs "
                    "shared memory: see 'spdk-backend domain prepare'.",
        examples=["spdk-backend attach vm1 vol1",
                  "spdk-backend attach vm1 vol1 --config --queues 2 --readonly"])
    a.add_argument("domain", metavar="DOMAIN")
    a.add_argument("volume", metavar="VOLUME")
    a.add_argument("--queues", type=_positive_int, metavar="N",
                   help="virtqueues (default: one per vCPU, at most the controller's)")
    a.add_argument("--readonly", action="store_true", help="a read-only disk")
    a.add_argument("--timeout", dest="attach_timeout", type=_positive_seconds,
                   default=policy.DEFAULT_ATTACH_TIMEOUT, metavar="SECONDS",
                   help="how long libvirt and QEMU may take for a live attach "
                        "(default: %(default)s)")
    _scope_options(a, "attach to")
    _common.add_common_options(a, libvirt=True)
    a.set_defaults(func=_attach)

    d = _common.add_command(
        subparsers, "detach", help="detach a volume from a libvirt domain",
        description="Detach VOLUME's disk from DOMAIN (waiting for the guest to release "
                    "it), then delete its controller in the agent.",
        examples=["spdk-backend detach vm1 vol1 --wait 60",
                  "spdk-backend detach vm1 vol1 --after-migration   # vm1 migrated away"])
    d.add_argument("domain", metavar="DOMAIN")
    d.add_argument("volume", metavar="VOLUME")
    d.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                   help="how long the guest may take to release the disk "
                        "(default: %(default)s)")
    _scope_options(d, "detach from")
    from spdk_backend.cmd import migrate
    migrate.add_detach_options(d)
    _common.add_common_options(d, libvirt=True)
    d.set_defaults(func=_detach)
