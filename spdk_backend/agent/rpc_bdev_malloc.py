"""bdev_malloc_create / bdev_malloc_delete: RAM-backed bdevs."""

from spdk_backend.agent import rpc
from spdk_backend.agent import rpc_bdev
from spdk_backend.agent.rpc import BOOL, INT, NAME, UINT32, UINT64, Param

_NO_MD = "metadata and DIF are not implemented"


@rpc.method("bdev_malloc_create",
            Param("name", NAME),
            Param("num_blocks", UINT64, required=True),
            Param("block_size", UINT32, required=True),
            Param("physical_block_size", UINT32),
            rpc_bdev.UUID,
            Param("optimal_io_boundary", UINT32, only=(0,), why="not implemented"),
            Param("md_size", UINT32, only=(0,), why=_NO_MD),
            Param("md_interleave", BOOL, only=(False,), why=_NO_MD),
            Param("dif_type", UINT32, only=(0,), why=_NO_MD),
            Param("dif_is_head_of_md", BOOL, only=(False,), why=_NO_MD),
            Param("dif_pi_format", UINT32, only=(0,), why=_NO_MD),
            Param("numa_id", INT),
            Param("hugepages", BOOL),
            mutates=True)
def bdev_malloc_create(ctx, p):
    """A RAM bdev; without ``name`` the first free MallocN is used (as SPDK)."""
    name = p["name"]
    if name is None:
        taken = {b["name"] for b in ctx.engine.bdev_get_bdevs()}
        name = next("Malloc%d" % i for i in range(len(taken) + 1)
                    if "Malloc%d" % i not in taken)
    ctx.engine.bdev_malloc_create(name, p["num_blocks"], p["block_size"], uuid=p["uuid"],
                                  physical_block_size=p["physical_block_size"] or 0,
                                  hugepages=bool(p["hugepages"]))
    saved = {k: p[k] for k in ("num_blocks", "block_size", "physical_block_size",
                               "hugepages") if p[k]}
    return rpc_bdev.record_created(ctx, name, "bdev_malloc_create", saved, p["uuid"])


@rpc.method("bdev_malloc_delete", Param("name", NAME, required=True), mutates=True)
def bdev_malloc_delete(ctx, p):
    return rpc_bdev.delete_bdev(ctx, p["name"], ctx.engine.bdev_malloc_delete)
