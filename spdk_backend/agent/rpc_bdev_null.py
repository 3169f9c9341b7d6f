"""bdev_null_create / delete / resize: bdevs that drop writes, read zeroes."""

from spdk_backend.agent import rpc
from spdk_backend.agent import rpc_bdev
from spdk_backend.agent.rpc import BOOL, NAME, UINT32, UINT64, Param

_NO_MD = "metadata and DIF are not implemented"
_NOT_IMPL = "not implemented"


@rpc.method("bdev_null_create",
            Param("name", NAME, required=True),
            Param("num_blocks", UINT64, required=True),
            Param("block_size", UINT32, required=True),
            Param("physical_block_size", UINT32),
            rpc_bdev.UUID,
            Param("md_size", UINT32, only=(0,), why=_NO_MD),
            Param("dif_type", UINT32, only=(0,), why=_NO_MD),
            Param("dif_is_head_of_md", BOOL, only=(False,), why=_NO_MD),
            Param("dif_pi_format", UINT32, only=(0,), why=_NO_MD),
            *(Param(k, UINT32, only=(0,), why=_NOT_IMPL) for k in (
                "preferred_write_alignment", "preferred_write_granularity",
                "optimal_write_size", "preferred_unmap_alignment",
                "preferred_unmap_granularity")),
            mutates=True)
def bdev_null_create(ctx, p):
    ctx.engine.bdev_null_create(p["name"], p["num_blocks"], p["block_size"], uuid=p["uuid"],
                                physical_block_size=p["physical_block_size"] or 0)
    saved = {k: p[k] for k in ("num_blocks", "block_size", "physical_block_size") if p[k]}
    return rpc_bdev.record_created(ctx, p["name"], "bdev_null_create", saved, p["uuid"])


@rpc.method("bdev_null_delete", Param("name", NAME, required=True), mutates=True)
def bdev_null_delete(ctx, p):
    return rpc_bdev.delete_bdev(ctx, p["name"], ctx.engine.bdev_null_delete)


@rpc.method("bdev_null_resize", Param("name", NAME, required=True),
            Param("new_size", UINT64, required=True), mutates=True)
def bdev_null_resize(ctx, p):
    """New size in MiB (SPDK's unit for this call)."""
    ctx.engine.bdev_null_resize(p["name"], p["new_size"])
    info = ctx.engine.bdev_get_bdevs(p["name"])[0]
    ctx.state.update_bdev(p["name"], num_blocks=info["num_blocks"])
    return True
