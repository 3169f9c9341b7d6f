"""``spdk-backend status``: reactors, bdevs and controllers at a glance,
and the libvirt and QEMU versions of the host.

Busy % and IOPS are rates, so they come from two samples ``--interval``
seconds apart (busy/idle ticks of each reactor, I/O counters of each bdev,
completed requests of each controller).
"""

import time

from spdk_backend import exception
from spdk_backend.cmd import _common
from spdk_backend.cmd import _progress
from spdk_backend.cmd import cli
from spdk_backend.virt.libvirt import host as libvirt_host
from spdk_backend.virt.libvirt import policy

_OP_COUNTERS = ("num_read_ops", "num_write_ops", "num_unmap_ops", "num_flush_ops",
                "num_write_zeroes_ops")


def _sample(client):
    return {
        "reactors": client.call("framework_get_reactors"),
        "iostat": client.call("bdev_get_iostat"),
        "controllers": client.call("vhost_get_controllers"),
        "time": time.monotonic(),
    }


def _ops(stat):
    return sum(stat.get(k, 0) or 0 for k in _OP_COUNTERS)


def collect(client, interval):
    """The status as a dict (what --json prints)."""
    first = _sample(client)
    if interval > 0:
        with _progress.waiting("the second sample", limit=interval):
            time.sleep(interval)
    second = _sample(client)
    bdevs = client.call("bdev_get_bdevs")

    before = {r["lcore"]: r for r in first["reactors"]["reactors"]}
    reactors = []
    for r in second["reactors"]["reactors"]:
        old = before.get(r["lcore"], {"busy": 0, "idle": 0})
        busy, idle = r["busy"] - old["busy"], r["idle"] - old["idle"]
        if busy + idle <= 0:  # no time passed between samples: use totals
            busy, idle = r["busy"], r["idle"]
        total = busy + idle
        reactors.append({"lcore": r["lcore"], "name": r.get("name") or "",
                         "busy_pct": round(100.0 * busy / total, 1) if total else 0.0,
                         "pollers": len(r.get("pollers") or [])})

    io1, io2 = first["iostat"], second["iostat"]
    dt = (io2.get("ticks", 0) - io1.get("ticks", 0)) / float(io2.get("tick_rate") or 1)
    if dt <= 0:
        dt = second["time"] - first["time"]
    old_ops = {s["name"]: _ops(s) for s in io1.get("bdevs", [])}
    iops = {s["name"]: (max(0, _ops(s) - old_ops.get(s["name"], _ops(s))) / dt
                        if dt > 0 else 0.0)
            for s in io2.get("bdevs", [])}
    bdev_rows = [{"name": b["name"], "product_name": b.get("product_name", ""),
                  "block_size": b["block_size"], "num_blocks": b["num_blocks"],
                  "size_mib": b["block_size"] * b["num_blocks"] / 1048576.0,
                  "claimed": b.get("claimed", False), "iops": round(iops.get(b["name"], 0), 1)}
                 for b in bdevs]

    old_done = {c["ctrlr"]: c.get("completed_ios") for c in first["controllers"]}
    ctrl_dt = second["time"] - first["time"]
    controllers = []
    for c in second["controllers"]:
        bdev = c.get("backend_specific", {}).get("block", {}).get("bdev")
        before_ios, now_ios = old_done.get(c["ctrlr"]), c.get("completed_ios")
        if before_ios is not None and now_ios is not None and ctrl_dt > 0:
            rate = max(0, now_ios - before_ios) / ctrl_dt
        else:
            rate = iops.get(bdev, 0.0)
        controllers.append({
            "ctrlr": c["ctrlr"], "bdev": bdev, "socket": c.get("socket"),
            "connected": bool(c.get("connected", c.get("sessions"))),
            "num_queues": c.get("num_queues", 0), "cpumask": c.get("cpumask"),
            "iops": round(rate, 1)})
    return {"interval": interval, "reactors": reactors, "bdevs": bdev_rows,
            "controllers": controllers}


def stack(uri):
    """The libvirt and hypervisor versions at ``uri`` and what follows from
    them, as a dict; ``error`` says why when libvirt cannot be reached (an
    agent may serve a host without libvirt)."""
    out = {"uri": uri, "libvirt": None, "hypervisor": None, "hypervisor_version": None,
           "libvirt_client": None, "hotplug_reconnects": None, "error": None}
    try:
        with libvirt_host.Host(uri) as host:
            v = host.versions()
    except exception.LibvirtError as exc:
        out["error"] = str(exc)
        return out
    out.update(libvirt=libvirt_host.format_version(v.libvirt), hypervisor=v.hypervisor,
               hypervisor_version=libvirt_host.format_version(v.hypervisor_version),
               libvirt_client=libvirt_host.format_version(v.client),
               hotplug_reconnects=policy.hotplug_reconnects(v))
    return out


def _run(args):
    status = collect(args.client, args.interval)
    status["stack"] = stack(args.libvirt_uri)
    if args.json:
        cli.print_json(status)
        return
    st = status["stack"]
    print("Virtualization stack (%s)" % st["uri"])
    if st["error"]:
        print("  not reachable: %s" % st["error"])
    else:
        print("  libvirt %s (this client: %s), %s %s" % (
            st["libvirt"], st["libvirt_client"], st["hypervisor"], st["hypervisor_version"]))
        print("  hot-plugged disks reconnect after an agent restart: %s" % (
            "yes" if st["hotplug_reconnects"] else
            "no (only disks the domain had when it started)"))
    print()
    print("Reactors")
    cli.print_table(["LCORE", "NAME", "BUSY%", "POLLERS"],
                    [[r["lcore"], r["name"], "%.1f" % r["busy_pct"], r["pollers"]]
                     for r in status["reactors"]])
    print("\nBdevs")
    cli.print_table(["NAME", "PRODUCT", "BLOCK", "SIZE(MiB)", "CLAIMED", "IOPS"],
                    [[b["name"], b["product_name"], b["block_size"], "%.1f" % b["size_mib"],
                      "yes" if b["claimed"] else "no", "%.0f" % b["iops"]]
                     for b in status["bdevs"]])
    print("\nControllers")
    cli.print_table(["CTRLR", "BDEV", "CONNECTED", "QUEUES", "IOPS", "SOCKET"],
                    [[c["ctrlr"], c["bdev"], "yes" if c["connected"] else "no",
                      c["num_queues"], "%.0f" % c["iops"], c["socket"]]
                     for c in status["controllers"]])


def add_parser(subparsers):
    p = _common.add_command(
        subparsers, "status", help="reactors, bdevs and controllers with live load",
        description="Show the libvirt and QEMU versions of the host, reactors (busy %), "
                    "bdevs and vhost controllers (connection state, queues, live IOPS "
                    "from two samples).",
        examples=["spdk-backend status --interval 5",
                  "spdk-backend status --json --libvirt-uri qemu:///system"])
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="time between the two samples (default: %(default)s)")
    _common.add_common_options(p, libvirt=True)
    p.set_defaults(func=_run)
