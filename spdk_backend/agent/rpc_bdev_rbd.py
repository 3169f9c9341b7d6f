"""bdev_rbd_*: Ceph RBD images through librbd, with SPDK's method names.

Registered clusters are saved in the bdev subsystem's configuration like the
bdevs, in creation order, so a cluster always comes back before the bdevs
that name it.  They share the bdev record under a key that no bdev name can
collide with (``CLUSTER_KEY``), which keeps them out of the bdev namespace.
"""

from spdk_backend.agent import rpc
from spdk_backend.agent import rpc_bdev
from spdk_backend.agent import state as agent_state
from spdk_backend.agent.rpc import BOOL, NAME, STRING, UINT32, UINT64, Param

# Prefix of the state record key of a registered cluster (a bdev name never
# contains NUL, so this cannot clash with one).
CLUSTER_KEY = agent_state.CLUSTER_KEY


def _config_check(value):
    if not isinstance(value, dict):
        return None  # the type check reports it
    for key, val in value.items():
        if not key or "\0" in key:
            return "option names must be non-empty strings without NUL"
        if not isinstance(val, str) or "\0" in val:
            return "the value of %s must be a string (Ceph option values are text)" % key
    return None


def _is_object(value):
    return None if isinstance(value, dict) else rpc._json_type(value)


OBJECT = rpc._Type("an object", _is_object)


def _block_size_check(value):
    if value < 512 or value > 65536 or value & (value - 1):
        return "%d is not a power of two from 512 to 65536" % value
    return None


def _name_for(ctx):
    """SPDK names an unnamed rbd bdev Ceph<N>."""
    n = 0
    while ("Ceph%d" % n) in ctx.state.bdevs:
        n += 1
    return "Ceph%d" % n


@rpc.method("bdev_rbd_register_cluster",
            Param("name", NAME, required=True),
            Param("user_id", NAME),
            Param("config_param", OBJECT, check=_config_check),
            Param("config_file", NAME),
            Param("key_file", NAME),
            Param("core_mask", STRING,
                  check=lambda v: "not supported: librados threads are not pinned"),
            mutates=True)
def bdev_rbd_register_cluster(ctx, p):
    """Connect to a cluster once; bdevs name it with ``cluster_name``."""
    ctx.engine.bdev_rbd_register_cluster(p["name"], user_id=p["user_id"],
                                         config_param=p["config_param"],
                                         config_file=p["config_file"],
                                         key_file=p["key_file"])
    saved = rpc.present({k: p[k] for k in ("name", "user_id", "config_param",
                                           "config_file", "key_file")})
    ctx.state.add_bdev(CLUSTER_KEY + p["name"], "bdev_rbd_register_cluster", saved)
    return p["name"]


@rpc.method("bdev_rbd_unregister_cluster", Param("name", NAME, required=True),
            mutates=True)
def bdev_rbd_unregister_cluster(ctx, p):
    """Drop a registered cluster; refused (EBUSY) while bdevs use it."""
    try:
        ctx.engine.bdev_rbd_unregister_cluster(p["name"])
    except Exception:
        # A cluster whose replay failed at start exists only in the record.
        if ctx.state.drop_pending(p["name"]):
            return True
        raise
    ctx.state.remove_bdev(CLUSTER_KEY + p["name"])
    return True


@rpc.method("bdev_rbd_get_clusters_info", Param("name", NAME))
def bdev_rbd_get_clusters_info(ctx, p):
    """Every registered cluster (an array), or the one named (an object)."""
    info = ctx.engine.bdev_rbd_get_clusters_info(p["name"])
    if p["name"] is not None:
        return info[0]
    return info


@rpc.method("bdev_rbd_create",
            Param("name", NAME),
            Param("user_id", NAME),
            Param("pool_name", NAME, required=True),
            Param("rbd_name", NAME, required=True),
            Param("block_size", UINT32, check=_block_size_check),
            Param("config", OBJECT, check=_config_check),
            Param("config_file", NAME),
            Param("key_file", NAME),
            Param("cluster_name", NAME),
            rpc_bdev.UUID,
            Param("read_only", BOOL),
            mutates=True)
def bdev_rbd_create(ctx, p):
    """Serve image ``pool_name/rbd_name``; returns the bdev name."""
    name = p["name"] or _name_for(ctx)
    block_size = p["block_size"] or 512
    ctx.engine.bdev_rbd_create(name, p["pool_name"], p["rbd_name"], block_size=block_size,
                               user_id=p["user_id"], config=p["config"],
                               config_file=p["config_file"], key_file=p["key_file"],
                               cluster_name=p["cluster_name"], uuid=p["uuid"],
                               read_only=bool(p["read_only"]))
    saved = {k: p[k] for k in ("user_id", "pool_name", "rbd_name", "config", "config_file",
                               "key_file", "cluster_name")}
    saved["block_size"] = block_size
    if p["read_only"]:
        saved["read_only"] = True
    return rpc_bdev.record_created(ctx, name, "bdev_rbd_create", saved, p["uuid"])


@rpc.method("bdev_rbd_delete", Param("name", NAME, required=True), mutates=True)
def bdev_rbd_delete(ctx, p):
    return rpc_bdev.delete_bdev(ctx, p["name"], ctx.engine.bdev_rbd_delete)


@rpc.method("bdev_rbd_resize", Param("name", NAME, required=True),
            Param("new_size", UINT64, required=True), mutates=True)
def bdev_rbd_resize(ctx, p):
    """Grow the image to ``new_size`` MiB (SPDK's unit); open users see the new size."""
    ctx.engine.bdev_rbd_resize(p["name"], p["new_size"])
    return True


@rpc.method("bdev_rbd_rescan", Param("name", NAME, required=True))
def bdev_rbd_rescan(ctx, p):
    """Pick up a size change another client of the image made (also watched)."""
    ctx.engine.bdev_rbd_rescan(p["name"])
    return True
