"""Live migration of a libvirt domain with vhost-user disks to another host.

QEMU on the destination host connects to the destination's agent, so the
volume must be served there, by a controller, before ``virsh migrate``
starts the destination QEMU:

``spdk-backend prepare-incoming DOMAIN VOLUME`` (on the destination)
    serves VOLUME in this host's agent (a file volume from the same file:
    ``--file``, else ``<volume-dir>/VOLUME``; an rbd or file bdev the agent
    already has is used as it is) and creates its controller under the name
    ``attach`` gives it (:func:`~spdk_backend.cmd._common.ctrlr_name`).
    With ``--xml`` it also writes the domain XML for ``virsh migrate
    --xml``, the disk's ``<source path>`` pointing at this host's socket
    (only needed when the two hosts' ``vhost_socket_dir`` differ).

``spdk-backend detach DOMAIN VOLUME --after-migration`` (on the source
after the migration, or on the destination after one that failed)
    removes the controller and stops serving the volume in this agent,
    without touching libvirt (the domain runs elsewhere); refused while the
    domain still runs on this host.  The volume's data (the shared file or
    image) is never deleted.
"""

import errno
import logging
import os
import sys

from lxml import etree

from spdk_backend import connector
from spdk_backend import exception
from spdk_backend.cmd import _common
from spdk_backend.cmd import attach as attach_cmd
from spdk_backend.cmd import cli
from spdk_backend.virt.libvirt import config
from spdk_backend.virt.libvirt import policy

LOG = logging.getLogger(__name__)

# bdev module -> the method that stops serving it (the data stays).
_DELETE_METHODS = {"uring": "bdev_uring_delete", "rbd": "bdev_rbd_delete"}


def _bdev(client, name):
    return connector.get_bdev(client, name, invalid_is_missing=True)


def _serve_file(client, volume, path):
    """A uring bdev ``volume`` on ``path``, opened as shared storage (the
    source host's agent serves the same file until the switch-over); whether
    the agent took ``shared`` (an SPDK target locks nothing)."""
    params = connector.spdk_params(client, "bdev_uring_create",
                                   {"name": volume, "filename": path, "shared": True})
    client.call("bdev_uring_create", **params)
    return bool(params.get("shared"))


def rewrite_xml(xml, domain, volume, socket_path):
    """``xml`` (a domain's XML, from ``virsh dumpxml --migratable``) with
    VOLUME's disk on ``socket_path``; returns (new_xml, old_path, disk).

    :raises InvalidInput: not DOMAIN's XML, or no disk of VOLUME in it.
    """
    root = config.parse_xml(xml)
    name = root.findtext("name")
    if name != domain:
        raise exception.InvalidInput(
            reason="the XML is of domain %r, not %s" % (name, domain))
    ctrlr = _common.ctrlr_name(domain, volume)
    disk = config.find_vhost_disk_element(root, ctrlr)
    if disk is None:
        raise exception.InvalidInput(
            reason="domain %s's XML has no vhost-user disk of volume %s (a socket "
                   "named %s); was it attached with 'spdk-backend attach'?"
                   % (domain, volume, ctrlr))
    source = disk.find("source")
    old = source.get("path")
    source.set("path", socket_path)
    parsed = config.disk_from_dom(disk)
    parsed.readonly = disk.find("readonly") is not None
    return etree.tostring(root, encoding="unicode"), old, parsed


def prepare_incoming(client, domain, volume, path=None, xml=None, queues=None,
                     readonly=None):
    """Serve ``volume`` to the incoming ``domain`` in this agent; a dict of
    what was done (``xml``: the rewritten domain XML when ``xml`` was given).

    Nothing half done: what this call created is removed again on failure.
    """
    name = _common.ctrlr_name(domain, volume)
    disk = None
    new_xml = old_path = None
    if xml is not None:
        # Checked before any change; the socket path is filled in below.
        _, old_path, disk = rewrite_xml(xml, domain, volume, "/")
    if queues is None and disk is not None:
        queues = disk.driver_queues
    if readonly is None:
        readonly = bool(disk is not None and disk.readonly)
    created_bdev = created_ctrlr = False
    shared = None
    bdev = _bdev(client, volume)
    if bdev is not None and bdev.get("module") == "malloc":
        raise exception.InvalidInput(
            reason="volume %s is a malloc volume: it lives in one agent's memory and "
                   "cannot migrate" % volume)
    ctrlr = _common.controllers(client).get(name)
    if ctrlr is not None and _common.controller_bdev(ctrlr) != volume:
        raise exception.AlreadyExists(
            op="prepare-incoming", reason="controller %s exists and serves bdev %s, "
                                          "not %s" % (name, _common.controller_bdev(ctrlr),
                                                      volume))
    try:
        if bdev is None:
            if path is None:
                raise exception.InvalidInput(
                    reason="this agent does not serve volume %s and no file was given: "
                           "pass --file PATH (the volume's file on storage both hosts "
                           "share), or create the bdev first (rbd: 'spdk-backend rpc "
                           "bdev_rbd_create ...')" % volume)
            if not os.path.exists(path):
                raise exception.InvalidInput(
                    reason="%s does not exist on this host: a file volume migrates only "
                           "when its file is on storage both hosts share" % path)
            shared = _serve_file(client, volume, path)
            created_bdev = True
            bdev = _bdev(client, volume)
        if ctrlr is None:
            ctrlr, created_ctrlr = connector.create_or_adopt_controller(
                client, name, volume, readonly=readonly, max_queues=queues)
        elif queues and (ctrlr.get("max_queues") or queues) < queues:
            raise exception.InvalidInput(
                reason="controller %s has %s queues, the disk uses %d: delete it "
                       "('spdk-backend detach %s %s --after-migration') and prepare "
                       "again" % (name, ctrlr.get("max_queues"), queues, domain, volume))
        socket_path = ctrlr["socket"]
        if xml is not None:
            new_xml, old_path, _ = rewrite_xml(xml, domain, volume, socket_path)
            # QEMU on this host must be able to connect: the same check as a
            # live attach, with the user the domain's XML says QEMU runs as.
            denied = policy.qemu_access_denied(config.Domain.from_xml(xml), socket_path)
            if denied:
                raise exception.PermissionDenied(
                    op="prepare-incoming", errno=errno.EACCES,
                    reason="Permission denied: %s (see vhost_socket_group in "
                           "docs/cli.md)" % denied)
    except BaseException:
        _undo(client, name, volume, created_ctrlr, created_bdev, bdev)
        raise
    vol = _common.volume_from_bdev(bdev) if bdev else None
    return {"domain": domain, "volume": volume, "ctrlr": name, "socket": socket_path,
            "bdev_module": (bdev or {}).get("module"),
            "path": vol.path if vol else (path if created_bdev else None),
            "shared": shared, "created_bdev": created_bdev,
            "created_ctrlr": created_ctrlr, "queues": ctrlr.get("max_queues"),
            "readonly": bool(readonly), "source_socket": old_path,
            "xml_rewritten": bool(xml is not None and old_path != socket_path),
            "xml": new_xml}


def _undo(client, name, volume, created_ctrlr, created_bdev, bdev):
    if created_ctrlr:
        try:
            connector.delete_controller(client, name, attempts=1, force=True)
        except exception.SpdkBackendException as err:
            LOG.error("could not delete controller %s again: %s", name, err)
    if created_bdev and bdev is not None:
        try:
            client.call(_DELETE_METHODS.get(bdev.get("module"), "bdev_uring_delete"),
                        name=volume)
        except exception.SpdkBackendException as err:
            LOG.error("could not stop serving %s again: %s", volume, err)


def _domain_state(host, domain):
    """'running' (active on this host), 'defined' (inactive) or 'absent'."""
    try:
        guest = host.get_guest(domain)
    except exception.DomainNotFound:
        return "absent"
    return "running" if guest.is_active() else "defined"


def detach_after_migration(client, host, domain, volume, keep_volume=False,
                           wait=attach_cmd.BUSY_WAIT):
    """Free ``volume``'s controller for ``domain`` (and the volume's bdev)
    in this agent once the domain runs elsewhere; a dict of what was done."""
    state = _domain_state(host, domain)
    if state == "running":
        raise exception.InvalidInput(
            reason="domain %s still runs on this host: --after-migration is for a "
                   "domain that migrated away (or, on the destination, for a "
                   "migration that failed); use 'spdk-backend detach %s %s' to take "
                   "the volume from it" % (domain, domain, volume))
    name = _common.ctrlr_name(domain, volume)
    ctrlr = _common.controllers(client).get(name)
    bdev = _bdev(client, volume)
    if ctrlr is None and bdev is None:
        raise _common.VolumeNotFound(name=volume)
    deleted_ctrlr = False
    if ctrlr is not None:
        # The source QEMU closes the socket when it exits after the switch-over.
        attach_cmd._delete_controller(client, name, wait=wait)
        deleted_ctrlr = True
    deleted_bdev = False
    kept_reason = None
    if bdev is not None:
        users = _common.users_of(client, volume)
        method = _DELETE_METHODS.get(bdev.get("module"))
        if keep_volume:
            kept_reason = "--keep-volume"
        elif users:
            kept_reason = "still served through %s" % ", ".join(users)
        elif method is None:
            kept_reason = "a %s bdev holds its data in this agent" % bdev.get("module")
        else:
            client.call(method, name=volume)
            deleted_bdev = True
    return {"domain": domain, "volume": volume, "ctrlr": name,
            "deleted_ctrlr": deleted_ctrlr, "deleted_bdev": deleted_bdev,
            "kept_volume": kept_reason, "domain_here": state}


def _prepare(args):
    xml = None
    if args.xml:
        with (sys.stdin if args.xml == "-" else open(args.xml)) as f:
            xml = f.read()
    path = args.file
    if path is None and _bdev(args.client, args.volume) is None:
        path = os.path.join(args.volume_dir, args.volume)
    out = prepare_incoming(args.client, args.domain, args.volume, path=path, xml=xml,
                           queues=args.queues, readonly=True if args.readonly else None)
    if out["xml"] is not None and args.output not in (None, "-"):
        tmp = args.output + ".tmp"
        with open(tmp, "w") as f:
            f.write(out["xml"])
        os.replace(tmp, args.output)
    to_stdout = out["xml"] is not None and args.output in (None, "-")
    if args.json:
        if to_stdout:
            cli.print_json(out)
        else:
            cli.print_json(dict(out, xml=args.output))
        return
    report = sys.stderr if to_stdout else sys.stdout
    print("Volume %s is ready for incoming domain %s: controller %s, socket %s" % (
        out["volume"], out["domain"], out["ctrlr"], out["socket"]), file=report)
    if out["created_bdev"]:
        print("  serving %s%s" % (out["path"], " (shared)" if out["shared"] else ""),
              file=report)
    if out["xml"] is not None:
        if out["xml_rewritten"]:
            print("  the disk's socket %s -> %s in the XML for 'virsh migrate --xml'" % (
                out["source_socket"], out["socket"]), file=report)
        else:
            print("  the disk's socket is the same on both hosts", file=report)
        if to_stdout:
            sys.stdout.write(out["xml"])
        else:
            print("  wrote %s" % args.output, file=report)


def _detach(args):
    host = _common.open_host(args)
    try:
        out = detach_after_migration(args.client, host, args.domain, args.volume,
                                     keep_volume=args.keep_volume)
    finally:
        host.close()
    if args.json:
        cli.print_json(out)
        return
    if out["deleted_ctrlr"]:
        print("Controller %s deleted (domain %s is %s)" % (
            out["ctrlr"], out["domain"],
            "not on this host" if out["domain_here"] == "absent"
            else "only defined here, not running"))
    if out["deleted_bdev"]:
        print("  this agent no longer serves volume %s (its data is kept)" % out["volume"])
    elif out["kept_volume"]:
        print("  volume %s kept in this agent: %s" % (out["volume"], out["kept_volume"]))


def run_detach(args):
    """``detach --after-migration`` (called by the detach command)."""
    return _detach(args)


def add_parser(subparsers):
    p = _common.add_command(
        subparsers, "prepare-incoming",
        help="serve a volume to a domain that migrates to this host",
        description="On the destination host of a live migration: serve VOLUME in this "
                    "agent and create its controller for DOMAIN (the name 'attach' "
                    "gives it), so that the incoming QEMU finds it.  With --xml, write "
                    "DOMAIN's XML with the disk on this host's socket, for 'virsh "
                    "migrate --xml'.  Run once per vhost-user disk of the domain.",
        examples=["spdk-backend prepare-incoming vm1 vol1 --file /shared/volumes/vol1 \\",
                  "    --xml vm1.xml --output vm1.xml"])
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("volume", metavar="VOLUME")
    p.add_argument("--file", metavar="PATH",
                   help="the file volume's file on shared storage (default: "
                        "<volume-dir>/VOLUME, unless the agent serves VOLUME already)")
    p.add_argument("--volume-dir", metavar="DIR",
                   default=os.environ.get(_common.ENV_VOLUME_DIR, _common.DEFAULT_VOLUME_DIR),
                   help="directory of file volumes (default: $%s or %%(default)s)"
                        % _common.ENV_VOLUME_DIR)
    p.add_argument("--xml", metavar="FILE",
                   help="the domain's XML from the source host ('virsh dumpxml "
                        "--migratable DOMAIN'; - for stdin)")
    p.add_argument("--output", "-o", metavar="FILE",
                   help="where to write the XML for 'virsh migrate --xml' (default: "
                        "stdout; may be the --xml file itself)")
    p.add_argument("--queues", type=attach_cmd._positive_int, metavar="N",
                   help="the controller's queues (default: the disk's in --xml, else "
                        "the agent's default)")
    p.add_argument("--readonly", action="store_true",
                   help="a read-only controller (default: as the disk in --xml)")
    _common.add_common_options(p)
    p.set_defaults(func=_prepare)


def add_detach_options(parser):
    """The options ``detach`` takes for the migration case."""
    parser.add_argument("--after-migration", action="store_true",
                        help="the domain migrated away (or, on the destination, its "
                             "migration failed): delete the controller and stop serving "
                             "the volume here, without touching libvirt")
    parser.add_argument("--keep-volume", action="store_true",
                        help="with --after-migration: keep serving the volume")

