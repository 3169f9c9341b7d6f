"""vhost-user-blk controller methods."""

import re

from spdk_backend import exception
from spdk_backend.agent import rpc
from spdk_backend.agent.rpc import BOOL, NAME, STRING, UINT16, UINT32, Param

# The controller name is the socket's file name in vhost_socket_dir.
_CTRLR_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SUN_PATH_MAX = 107


def _ctrlr_name(value):
    if not _CTRLR_RE.match(value):
        return ("%r is not a valid controller name: it names a socket file, so use "
                "letters, digits, '_', '.' or '-', not starting with '.' or '-'"
                % value)
    return None


CTRLR = Param("ctrlr", NAME, required=True, check=_ctrlr_name)


@rpc.method("vhost_create_blk_controller",
            CTRLR,
            Param("dev_name", NAME, required=True),
            Param("cpumask", NAME),
            Param("readonly", BOOL),
            Param("packed_ring", BOOL),
            Param("transport", STRING, only=("vhost_user_blk",)),
            Param("max_queues", UINT16),
            Param("serial", STRING),
            mutates=True)
def vhost_create_blk_controller(ctx, p):
    """A controller exposing bdev ``dev_name`` on socket <vhost_socket_dir>/<ctrlr>."""
    if ctx.vhost_socket_dir:
        path = "%s/%s" % (ctx.vhost_socket_dir.rstrip("/"), p["ctrlr"])
        if len(path) > _SUN_PATH_MAX:
            raise exception.InvalidInput(
                reason="ctrlr: the socket path %s is longer than the %d bytes a unix "
                       "socket allows; use a shorter name or vhost_socket_dir"
                       % (path, _SUN_PATH_MAX))
    ctx.engine.vhost_create_blk_controller(
        p["ctrlr"], p["dev_name"], cpumask=p["cpumask"], readonly=bool(p["readonly"]),
        max_queues=p["max_queues"] or 0, serial=p["serial"],
        packed_ring=bool(p["packed_ring"]))
    saved = {"ctrlr": p["ctrlr"], "dev_name": p["dev_name"], "readonly": bool(p["readonly"])}
    for key in ("cpumask", "max_queues", "serial", "packed_ring"):
        if p[key]:
            saved[key] = p[key]
    ctx.state.add_ctrlr(p["ctrlr"], saved)
    return True


@rpc.method("vhost_delete_controller", CTRLR, Param("force", BOOL), mutates=True)
def vhost_delete_controller(ctx, p):
    """Delete a controller; EBUSY while a front-end is connected unless ``force``."""
    try:
        ctx.engine.vhost_delete_controller(p["ctrlr"], force=bool(p["force"]))
    except exception.NotFound:
        if ctx.state.drop_pending(p["ctrlr"]):
            return True
        raise
    ctx.state.remove_ctrlr(p["ctrlr"])
    return True


@rpc.method("vhost_get_controllers", Param("name", NAME))
def vhost_get_controllers(ctx, p):
    return ctx.engine.vhost_get_controllers(p["name"])


@rpc.method("vhost_controller_set_coalescing", CTRLR,
            Param("delay_base_us", UINT32, required=True),
            Param("iops_threshold", UINT32, required=True), mutates=True)
def vhost_controller_set_coalescing(ctx, p):
    ctx.engine.vhost_controller_set_coalescing(p["ctrlr"], p["delay_base_us"],
                                               p["iops_threshold"])
    if p["ctrlr"] in ctx.state.ctrlrs:
        ctx.state.set_coalescing(p["ctrlr"], p["delay_base_us"], p["iops_threshold"])
    return True
