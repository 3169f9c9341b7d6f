"""Framework methods: discovery, version, reactors, subsystem configs."""

import os

from spdk_backend.agent import jsonrpc
from spdk_backend.agent import rpc
from spdk_backend.agent import state as agent_state
from spdk_backend.agent.rpc import BOOL, NAME, Param


@rpc.method("rpc_get_methods",
            Param("current", BOOL), Param("include_aliases", BOOL), inline=True)
def rpc_get_methods(ctx, p):
    """Names of the methods this agent serves.

    With ``current``, only those callable now: the agent is always past
    initialization, so startup-only methods are left out (SPDK's
    ``load_config`` relies on that to stop calling ``framework_start_init``).
    """
    return [m.name for m in rpc.REGISTRY.values()
            if not (p["current"] and m.startup_only)]


@rpc.method("spdk_get_version", inline=True)
def spdk_get_version(ctx, p):
    major, minor, patch = (ctx.version.split(".") + ["0", "0"])[:3]
    return {"version": "spdk-backend v%s" % ctx.version,
            "fields": {"major": int(major), "minor": int(minor), "patch": int(patch),
                       "suffix": ""}}


@rpc.method("framework_get_reactors")
def framework_get_reactors(ctx, p):
    reactors = []
    for idx, r in enumerate(ctx.engine.reactors()):
        entry = {
            "lcore": r["lcore"],
            "busy": r["busy"],
            "idle": r["idle"],
            "in_interrupt": False,
            "irq_counter": 0,
            "sys_stat": 0,
            "usr_stat": 0,
            "lw_threads": [{"name": r["name"], "id": idx + 1,
                            "cpumask": "%x" % (1 << r["lcore"]),
                            "elapsed": r["busy"] + r["idle"]}],
        }
        for extra in ("name", "sleeps", "wakeups", "msgs", "pollers"):
            entry[extra] = r.get(extra)
        reactors.append(entry)
    return {"tick_rate": ctx.engine.tick_rate, "pid": os.getpid(), "reactors": reactors}


@rpc.method("framework_get_subsystems", inline=True)
def framework_get_subsystems(ctx, p):
    return [dict(s, depends_on=list(s["depends_on"])) for s in agent_state.SUBSYSTEMS]


@rpc.method("framework_get_config", Param("name", NAME, required=True),
            Param("with_batches", BOOL), inline=True)
def framework_get_config(ctx, p):
    """The calls that rebuild subsystem ``name`` (SPDK's save_config uses it)."""
    calls = ctx.state.subsystem_config(p["name"])
    if calls is None:
        raise jsonrpc.InvalidParams("Subsystem '%s' not found (known: %s)" % (
            p["name"], ", ".join(s["subsystem"] for s in agent_state.SUBSYSTEMS)))
    return calls


@rpc.method("framework_start_init", inline=True, startup_only=True)
def framework_start_init(ctx, p):
    """Accepted for SPDK tools; the agent initializes itself at start."""
    return True


@rpc.method("framework_wait_init", inline=True)
def framework_wait_init(ctx, p):
    return True


@rpc.method("framework_upgrade")
def framework_upgrade(ctx, p):
    """Hand the agent over to a new process (the program on disk now)
    without disconnecting any guest: every vhost-user session goes to it
    (agent/handoff.py).  The reply comes first; the new process then
    answers with another pid.  Refused while a live migration logs dirty
    pages."""
    if ctx.request_upgrade is None:
        raise jsonrpc.RpcError(jsonrpc.INTERNAL_ERROR, "this process cannot hand itself over")
    busy = [c["ctrlr"] for c in ctx.engine.vhost_get_controllers() if c.get("dirty_logging")]
    if busy:
        raise jsonrpc.RpcError(-16, "a live migration is logging dirty pages on %s; upgrade "
                                    "after it ends" % ", ".join(busy))
    sessions = [c["ctrlr"] for c in ctx.engine.vhost_get_controllers() if c["connected"]]
    ctx.request_upgrade()
    return {"pid": os.getpid(), "started_at": ctx.started_at, "sessions": sessions}


@rpc.method("framework_get_process", inline=True)
def framework_get_process(ctx, p):
    """This agent process: pid, version, when it started (each process that
    takes over starts anew), what it took over from the previous one (null
    after a plain start) and the last upgrade that failed (null if none):
    the agent went on serving then."""
    return {"pid": os.getpid(), "version": ctx.version, "started_at": ctx.started_at,
            "takeover": ctx.takeover, "upgrade_failed": ctx.upgrade_failed}
