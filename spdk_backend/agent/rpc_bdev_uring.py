"""bdev_uring_* and bdev_aio_*: file and block-device bdevs over io_uring.

SPDK's aio methods are served by the uring backend so that configurations
and scripts written for SPDK's aio bdev keep working; a bdev keeps the method
it was created with in the saved configuration.
"""

from spdk_backend.agent import rpc
from spdk_backend.agent import rpc_bdev
from spdk_backend.agent.rpc import BOOL, NAME, UINT32, Param


def _create(ctx, p, method):
    ctx.engine.bdev_uring_create(p["name"], p["filename"], block_size=p["block_size"] or 0,
                                 uuid=p["uuid"])
    saved = {"filename": p["filename"]}
    if p["block_size"]:
        saved["block_size"] = p["block_size"]
    return rpc_bdev.record_created(ctx, p["name"], method, saved)


@rpc.method("bdev_uring_create",
            Param("name", NAME, required=True),
            Param("filename", NAME, required=True),
            Param("block_size", UINT32),
            rpc_bdev.UUID,
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
