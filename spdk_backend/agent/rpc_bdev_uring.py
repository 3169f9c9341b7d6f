"""bdev_uring_* and bdev_aio_*: file and block-device bdevs over io_uring.

A file is flock(2)ed while served, exclusively unless created with
``shared`` (then other ``shared`` servers may serve it too: two agents
during a live migration, on storage both hosts see).  SPDK's aio methods
are served by the uring backend so that configurations
and scripts written for SPDK's aio bdev keep working; a bdev keeps the method
it was created with in the saved configuration.
"""

import errno
import fnmatch
import os
import stat

from spdk_backend import exception
from spdk_backend.agent import rpc
from spdk_backend.agent import rpc_bdev
from spdk_backend.agent.rpc import BOOL, NAME, UINT32, Param


def _refuse(method, reason):
    return exception.PermissionDenied(errno=errno.EACCES, op=method, reason=reason)


def backing_path(ctx, method, filename):
    """The resolved path the engine may open for ``filename``.

    The agent runs as root, so a client must not get it to serve an
    arbitrary file or disk: the path is resolved (symbolic links, ``..``)
    and must be a regular file under ``allowed_backing_dirs`` or a block
    device matching ``allowed_block_devices``.  The engine then opens the
    resolved path, so a link swapped in after the check is not followed.
    """
    real = os.path.realpath(filename)
    if ctx.allowed_backing_dirs is None:
        return real
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise _refuse(method, "%s: %s" % (filename, exc.strerror))
    if mode is not None and stat.S_ISBLK(mode):
        if any(fnmatch.fnmatchcase(real, pat) for pat in ctx.allowed_block_devices):
            return real
        raise _refuse(method, "block device %s (%s) is not in allowed_block_devices"
                      % (filename, real))
    if mode is not None and not stat.S_ISREG(mode):
        raise _refuse(method, "%s is neither a regular file nor a block device" % filename)
    for allowed in ctx.allowed_backing_dirs:
        root = os.path.realpath(allowed)
        if real != root and os.path.commonpath([root, real]) == root:
            return real
    raise _refuse(method, "%s resolves to %s, outside allowed_backing_dirs (%s)"
                  % (filename, real, ", ".join(ctx.allowed_backing_dirs) or "empty"))


def _create(ctx, p, method):
    path = backing_path(ctx, method, p["filename"])
    ctx.engine.bdev_uring_create(p["name"], path, block_size=p["block_size"] or 0,
                                 uuid=p["uuid"], shared=bool(p["shared"]))
    saved = {"filename": p["filename"]}
    if p["block_size"]:
        saved["block_size"] = p["block_size"]
    if p["shared"]:
        saved["shared"] = True
    return rpc_bdev.record_created(ctx, p["name"], method, saved, p["uuid"])


@rpc.method("bdev_uring_create",
            Param("name", NAME, required=True),
            Param("filename", NAME, required=True),
            Param("block_size", UINT32),
            rpc_bdev.UUID,
            Param("shared", BOOL),
            mutates=True)
def bdev_uring_create(ctx, p):
    return _create(ctx, p, "bdev_uring_create")


@rpc.method("bdev_uring_delete", Param("name", NAME, required=True), mutates=True)
def bdev_uring_delete(ctx, p):
    return rpc_bdev.delete_bdev(ctx, p["name"], ctx.engine.bdev_uring_delete)


@rpc.method("bdev_uring_rescan", Param("name", NAME, required=True))
def bdev_uring_rescan(ctx, p):
    """Pick up a new size of the backing file or device."""
    ctx.engine.bdev_uring_rescan(p["name"])
    return True


@rpc.method("bdev_aio_create",
            Param("name", NAME, required=True),
            Param("filename", NAME, required=True),
            Param("block_size", UINT32),
            rpc_bdev.UUID,
            Param("shared", BOOL),
            Param("readonly", BOOL, only=(False,),
                  why="read-only bdevs are not implemented; create the controller "
                      "with readonly instead"),
            Param("fallocate", BOOL, only=(False,), why="not implemented"),
            Param("nowait", BOOL, only=(False,), why="not implemented"),
            mutates=True)
def bdev_aio_create(ctx, p):
    return _create(ctx, p, "bdev_aio_create")


@rpc.method("bdev_aio_delete", Param("name", NAME, required=True), mutates=True)
def bdev_aio_delete(ctx, p):
    return rpc_bdev.delete_bdev(ctx, p["name"], ctx.engine.bdev_uring_delete)


@rpc.method("bdev_aio_rescan", Param("name", NAME, required=True))
def bdev_aio_rescan(ctx, p):
    ctx.engine.bdev_uring_rescan(p["name"])
    return True
