"""Generic bdev methods: listing, I/O statistics, QoS; helpers for backends."""

import errno
import time
import uuid as uuidlib

from spdk_backend import exception
from spdk_backend.agent import dispatcher
from spdk_backend.agent import rpc
from spdk_backend.agent.rpc import BOOL, NAME, STRING, STRING_LIST, UINT32, UINT64, Param

QOS_KEYS = ("rw_ios_per_sec", "rw_mbytes_per_sec", "r_mbytes_per_sec", "w_mbytes_per_sec")


def _uuid_check(value):
    try:
        uuidlib.UUID(value)
    except ValueError:
        return "%r is not a UUID" % value
    return None


UUID = Param("uuid", STRING, check=_uuid_check)


def record_created(ctx, name, method, params, uuid=None):
    """Remember a created bdev with the UUID the engine gave it (``uuid``:
    the one the call gave, which the engine took)."""
    params = rpc.present(params)
    params["name"] = name
    if uuid:
        # A replay passes the saved one: its canonical form, as the engine
        # shows it, without a round trip to ask.
        params["uuid"] = str(uuidlib.UUID(uuid))
    else:
        info = ctx.engine.bdev_get_bdevs(name)[0]
        if info.get("uuid"):
            params["uuid"] = info["uuid"]
    ctx.state.add_bdev(name, method, params)
    return name


def delete_bdev(ctx, name, engine_delete):
    """Delete through the backend's engine call and forget the bdev.

    A bdev a controller exposes is refused (EBUSY): deleting it would leave
    the controller, and the saved configuration, pointing at nothing.
    """
    users = [c for c, (_, params) in ctx.state.ctrlrs.items()
             if params.get("dev_name") == name]
    if users:
        raise exception.Busy(errno=errno.EBUSY, op="delete bdev %s" % name,
                             reason="bdev %s is exposed by controller(s) %s; delete "
                                    "them first (vhost_delete_controller)"
                                    % (name, ", ".join(users)))
    try:
        engine_delete(name)
    except exception.NotFound:
        # A bdev whose replay failed at start exists only in the record.
        if ctx.state.drop_pending(name):
            return True
        raise
    ctx.state.remove_bdev(name)
    return True


@rpc.method("bdev_get_bdevs", Param("name", NAME), Param("timeout", UINT32))
def bdev_get_bdevs(ctx, p):
    """All bdevs, or the one named; ``timeout`` (ms) waits for it to appear."""
    if p["name"] is None:
        return ctx.engine.bdev_get_bdevs()
    try:
        return ctx.engine.bdev_get_bdevs(p["name"])
    except exception.NotFound as exc:
        if p["timeout"]:
            deadline = p.setdefault("_deadline", time.monotonic() + p["timeout"] / 1000.0)
            raise dispatcher.RetryLater(deadline, exc)
        raise


@rpc.method("bdev_get_iostat", Param("name", NAME), Param("names", STRING_LIST),
            Param("per_channel", BOOL, only=(False,),
                  why="per-channel statistics are not collected"),
            Param("reset_mode", STRING, only=("none",),
                  why="statistics are never reset by a read"))
def bdev_get_iostat(ctx, p):
    names = list(p["names"] or [])
    if p["name"] is not None:
        names.append(p["name"])
    if not names:
        return ctx.engine.bdev_get_iostat()
    out = None
    for name in names:
        stat = ctx.engine.bdev_get_iostat(name)
        if out is None:
            out = stat
        else:
            out["bdevs"].extend(stat["bdevs"])
    return out


@rpc.method("bdev_set_qos_limit", Param("name", NAME, required=True),
            *(Param(key, UINT64) for key in QOS_KEYS), mutates=True)
def bdev_set_qos_limit(ctx, p):
    """Rate limits of a bdev; 0 removes a limit, an absent key keeps it."""
    limits = {k: p[k] for k in QOS_KEYS if p[k] is not None}
    if not limits:
        raise exception.InvalidInput(
            reason="bdev_set_qos_limit: give at least one of %s" % ", ".join(QOS_KEYS))
    ctx.engine.bdev_set_qos_limit(p["name"], **limits)
    if p["name"] in ctx.state.bdevs:
        ctx.state.set_qos(p["name"], limits)
    return True


@rpc.method("bdev_wait_for_examine", inline=True)
def bdev_wait_for_examine(ctx, p):
    """Accepted for SPDK configs: bdevs are usable as soon as they are created."""
    return True
