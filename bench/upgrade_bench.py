#!/usr/bin/env python3
"""The I/O stall of an agent upgrade or crash, per event.

    python bench/upgrade_bench.py [--event upgrade|crash] [--rounds 10]
        [--seconds 3] [--qd 8] [--queues 2]

One agent process serves one controller (a uring bdev on a file); per round, alternating, the C
front-end (native/build/tools/vhost_initiator, which speaks vhost-user as
QEMU does) runs a verified random read/write workload for ``--seconds``:

* ``upgrade`` (``--event upgrade``): one second in, ``framework_upgrade``:
  the agent re-executes itself and hands the session over (docs/agent.md);
* ``crash`` (``--event crash``): one second in, SIGKILL; the agent runs
  under tests/support/fdstore.py (a socket-level stand-in for systemd's
  notify socket and fd store) and is started again at once with the fds
  it stored, as ``Restart=on-failure`` does; the requests in flight are
  resubmitted from the inflight region (the initiator sets one up, as
  QEMU does);
* ``steady``: the same run without the event.

The longest request latency of a run (the initiator's ``max_us`` over all
its phases) is the longest stall its rings saw: no completion arrives
while the agent changes process.  Reported: median and worst over the rounds for each
kind, the per-round ratio upgrade / steady (median, min-max), the
initiator's error count (must be 0) and the agent's own timeline of the
last upgrade (export to resume, from its log).  No peer can be measured
side by side: neither SPDK nor qemu-storage-daemon restarts without
disconnecting its front-ends.  Prints the commit and the load average.
"""

import argparse
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import agent_proc  # noqa: E402
from tests.support import fdstore  # noqa: E402

INITIATOR = ROOT / "native" / "build" / "tools" / "vhost_initiator"


def _run(agent, sock, args, event, manager):
    cmd = [str(INITIATOR), "--socket", sock, "--rw", "randrw", "--verify", "--time",
           str(args.seconds), "--qd", str(args.qd), "--queues", str(args.queues),
           "--size-limit", "32M", "--io-timeout", "30", "--inflight", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if event == "upgrade":
        time.sleep(1.0)
        with agent.client() as c:
            c.call("framework_upgrade")
        time.sleep(0.3)
        agent.wait_ready()
    elif event == "crash":
        time.sleep(1.0)
        agent.kill9()
        agent.start(service_manager=manager)
    out, err = proc.communicate(timeout=args.seconds + 60)
    if proc.returncode != 0:
        raise SystemExit("initiator failed (%d): %s%s" % (proc.returncode, out, err))
    res = json.loads(out)
    worst = max(res[phase]["max_us"] for phase in ("prefill", "main", "readback")
                if phase in res)
    return worst / 1000.0, res["errors"] + res["verify_mismatches"]


def _timeline(log):
    """Milliseconds from the last export to the last resume (agent log stamps)."""
    stamp = r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)"
    ex = re.findall(stamp + r".*session handed over", log, re.M)
    re_ = re.findall(stamp + r".*session taken over from the previous process", log, re.M)
    if not ex or not re_:
        return None
    from datetime import datetime
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    return (datetime.strptime(re_[-1], fmt) - datetime.strptime(ex[-1], fmt)
            ).total_seconds() * 1000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--event", choices=("upgrade", "crash"), default="upgrade")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--qd", type=int, default=8)
    ap.add_argument("--queues", type=int, default=2)
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="sbupgbench-")
    agent = agent_proc.AgentProcess(base)
    manager = fdstore.ServiceManager()
    try:
        agent.start(service_manager=manager)
        img = os.path.join(base, "disk.img")
        with open(img, "wb") as f:
            f.truncate(64 << 20)
        with agent.client() as c:
            c.call("bdev_uring_create", {"name": "u0", "filename": img})
            c.call("vhost_create_blk_controller", {"ctrlr": "v0", "dev_name": "u0",
                                                   "max_queues": args.queues})
        sock = os.path.join(agent.vhost_socket_dir, "v0")
        ev = args.event
        stalls = {ev: [], "steady": []}
        errors = 0
        for r in range(args.rounds):
            for kind in ((ev, "steady") if r % 2 == 0 else ("steady", ev)):
                ms, err = _run(agent, sock, args, kind, manager)
                stalls[kind].append(ms)
                errors += err
                print("round %d %-8s max latency %8.1f ms" % (r, kind, ms), flush=True)
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        print("\ncommit %s, load average %s" % (commit, os.getloadavg()))
        print("%s: %d rounds, %s s each, qd %d x %d queues, uring bdev on %s" % (
            ev, args.rounds, args.seconds, args.qd, args.queues, base))
        for kind, vals in stalls.items():
            print("%-8s max latency: median %.1f ms, worst %.1f ms" % (
                kind, statistics.median(vals), max(vals)))
        ratios = [u / s for u, s in zip(stalls[ev], stalls["steady"])]
        print("%s / steady per round: median %.1f (%.1f-%.1f)" % (
            ev, statistics.median(ratios), min(ratios), max(ratios)))
        print("initiator errors + verify mismatches: %d" % errors)
        tl = _timeline(agent.log()) if ev == "upgrade" else None
        if tl is not None:
            print("last upgrade in the agent's log: export to resume %.1f ms" % tl)
        if ev == "crash":
            print("resubmissions logged: %d" % agent.log().count("resubmits"))
    finally:
        agent.stop()
        agent.kill9()
        manager.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
