"""``spdk-backend volume create|list|delete|resize``: the agent's volumes.

A volume is an agent bdev of the same name, made by a volume backend
(:mod:`spdk_backend.volume.backends`): ``file`` is a sparse file in
``--volume-dir`` served by the uring bdev, ``malloc`` lives in the agent's
memory.  The agent records the bdev in its state file, so a file volume is
served again after an agent restart.
"""

import errno
import os

from spdk_backend import exception
from spdk_backend.cmd import _common
from spdk_backend.cmd import cli
from spdk_backend.volume import manager

_BACKENDS = ("file", "malloc")


def _volume_dict(vol, users=()):
    return {"name": vol.name, "backend": vol.backend, "size": vol.size,
            "path": vol.path, "controllers": list(users)}


def _backend(client, name, volume_dir=None, block_size=512, shared=False):
    kwargs = {"block_size": block_size}
    if name == "file":
        kwargs["volume_dir"] = volume_dir
        kwargs["shared"] = shared
    return manager.load_backend(name, client, **kwargs)


def _backend_of(client, vol):
    """The backend that manages an existing volume, rooted where it lives."""
    if vol.backend == "file":
        shared = vol.bdev.get("driver_specific", {}).get("uring", {}).get("shared", False)
        return _backend(client, "file", os.path.dirname(vol.path), vol.bdev["block_size"],
                        shared=shared)
    return _backend(client, vol.backend, block_size=vol.bdev["block_size"])


def _create(args):
    client = args.client
    try:
        _common.get_volume(client, args.name)
    except _common.VolumeNotFound:
        pass
    else:
        raise exception.AlreadyExists(op="volume create", errno=errno.EEXIST,
                                      reason="volume %s already exists" % args.name)
    if args.size % args.block_size:
        raise exception.InvalidInput(reason="the size is not a multiple of the %d-byte "
                                            "block size" % args.block_size)
    if args.shared and args.backend != "file":
        raise exception.InvalidInput(reason="--shared is for file volumes")
    backend = _backend(client, args.backend, args.volume_dir, args.block_size,
                       shared=args.shared)
    if args.backend == "file":
        os.makedirs(args.volume_dir, mode=0o750, exist_ok=True)
        backend.check()
    backend.create(args.name, args.size)
    try:
        backend.export(args.name)
    except BaseException:
        # The bdev was not made: do not leave an orphan file behind.
        path = backend.local_path(args.name)
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        raise
    vol = _common.get_volume(client, args.name)
    if args.json:
        cli.print_json(_volume_dict(vol))
        return
    where = " at %s" % vol.path if vol.path else " in the agent's memory"
    print("Created %s volume %s (%s)%s" % (vol.backend, vol.name,
                                           _common.format_size(vol.size), where))


def _list(args):
    ctrlrs = _common.controllers(args.client)
    rows = []
    for vol in _common.list_volumes(args.client):
        users = sorted(n for n, c in ctrlrs.items() if _common.controller_bdev(c) == vol.name)
        rows.append(_volume_dict(vol, users))
    if args.json:
        cli.print_json(rows)
        return
    if not rows:
        print("No volumes.")
        return
    cli.print_table(["NAME", "BACKEND", "SIZE", "CONTROLLERS", "PATH"],
                    [[r["name"], r["backend"], _common.format_size(r["size"]),
                      ",".join(r["controllers"]) or "-", r["path"] or "-"] for r in rows])


def _delete(args):
    client = args.client
    vol = _common.get_volume(client, args.name)
    _common.refuse_in_use(client, vol.name)
    kept = None
    if vol.backend == "file" and os.path.basename(vol.path) != vol.name:
        # Served from a file this tool did not name: stop serving, keep it.
        client.call("bdev_uring_delete", name=vol.name)
        kept = vol.path
    else:
        _backend_of(client, vol).delete(vol.name)
    if args.json:
        cli.print_json({"name": vol.name, "deleted": True, "kept_file": kept})
        return
    print("Deleted volume %s%s" % (vol.name, " (kept its file %s)" % kept if kept else ""))


def _resize(args):
    client = args.client
    vol = _common.get_volume(client, args.name)
    if args.size < vol.size:
        raise exception.InvalidInput(
            reason="volume %s is %s; volumes can only grow" % (
                vol.name, _common.format_size(vol.size)))
    if args.size % vol.bdev["block_size"]:
        raise exception.InvalidInput(reason="the size is not a multiple of the %d-byte "
                                            "block size" % vol.bdev["block_size"])
    if args.size != vol.size:
        _backend_of(client, vol).extend(vol.name, args.size)
    new = _common.get_volume(client, args.name)
    if args.json:
        cli.print_json(_volume_dict(new))
        return
    print("Volume %s: %s -> %s" % (vol.name, _common.format_size(vol.size),
                                   _common.format_size(new.size)))


def add_parser(subparsers):
    p = _common.add_command(
        subparsers, "volume", help="create, list, delete and resize volumes",
        description="Volumes are agent bdevs made by a volume backend: 'file' (a sparse "
                    "file served by the uring bdev, kept across agent restarts) or "
                    "'malloc' (in the agent's memory).",
        examples=["spdk-backend volume create vol1 --size 10G",
                  "spdk-backend volume list --json"])
    _common.add_common_options(p)
    sub = p.add_subparsers(dest="volume_command", metavar="ACTION")
    sub.required = True

    c = _common.add_command(
        sub, "create", help="create a volume",
        description="Create an empty volume and have the agent serve it.",
        examples=["spdk-backend volume create vol1 --size 10G",
                  "spdk-backend volume create vol2 --size 20G --shared   # for live "
                  "migration"])
    c.add_argument("name", metavar="NAME")
    c.add_argument("--size", required=True, type=_common.size_arg,
                   help="size with an optional K, M, G or T suffix (powers of 1024), "
                        "e.g. 10G")
    c.add_argument("--backend", choices=_BACKENDS, default="file",
                   help="volume backend (default: %(default)s)")
    c.add_argument("--volume-dir", metavar="DIR",
                   default=os.environ.get(_common.ENV_VOLUME_DIR, _common.DEFAULT_VOLUME_DIR),
                   help="directory of file volumes (default: $%s or %%(default)s)"
                        % _common.ENV_VOLUME_DIR)
    c.add_argument("--block-size", type=int, choices=(512, 4096), default=512,
                   help="logical block size the guest sees (default: %(default)s)")
    c.add_argument("--shared", action="store_true",
                   help="the file is on storage other hosts see: serve it with a shared "
                        "lock, so that a guest using it can live-migrate (the "
                        "destination's agent serves it too)")
    _common.add_common_options(c)
    c.set_defaults(func=_create)

    ls = _common.add_command(
        sub, "list", help="list volumes", description="List the volumes the agent serves.",
        examples=["spdk-backend volume list --json"])
    _common.add_common_options(ls)
    ls.set_defaults(func=_list)

    d = _common.add_command(
        sub, "delete", help="delete a volume and its data",
        description="Stop serving a volume and delete its data; refused while it is "
                    "attached.",
        examples=["spdk-backend volume delete vol1"])
    d.add_argument("name", metavar="NAME")
    _common.add_common_options(d)
    d.set_defaults(func=_delete)

    r = _common.add_command(
        sub, "resize", help="grow a volume",
        description="Grow a volume; an attached guest sees the new size.",
        examples=["spdk-backend volume resize vol1 --size 20G"])
    r.add_argument("name", metavar="NAME")
    r.add_argument("--size", required=True, type=_common.size_arg,
                   help="new size, e.g. 20G")
    _common.add_common_options(r)
    r.set_defaults(func=_resize)
