#!/usr/bin/env python3
"""Agent RPC at scale: N bdevs and N vhost-blk controllers through the client.

Starts a real spdk-backend-agent in a temp dir, then through AgentClient
creates N malloc bdevs, lists them, creates N controllers on them, lists
them, deletes the controllers and the bdevs, and restarts the agent once to
time the replay of the full configuration.  Prints the time per call of each
phase (every state-changing call is answered once the fsynced state write
that includes it is done).  With --clients K the creates and deletes come
from K connections at once (as from several compute services), so changes
that arrive while one state write runs share the next (group commit).

    python bench/agent_rpc_scale.py --count 1000 [--clients 8] [--json]
                                    [--record bench/RESULTS.md]
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.support import agent_proc  # noqa: E402


def timed(fn, items):
    lat = []
    start = time.perf_counter()
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        lat.append(time.perf_counter() - t0)
    return _stats(lat, time.perf_counter() - start)


def timed_clients(agent, clients, method, params_of, items):
    """items[i::clients] from connection i, all at once; every call must succeed."""
    if clients <= 1:
        with agent.client(timeout=120) as c:
            return timed(lambda n: c.call(method, **params_of(n)), items)
    lats, errors = [[] for _ in range(clients)], []
    barrier = threading.Barrier(clients + 1)

    def worker(i):
        try:
            with agent.client(timeout=120) as c:
                barrier.wait()
                for n in items[i::clients]:
                    t0 = time.perf_counter()
                    c.call(method, **params_of(n))
                    lats[i].append(time.perf_counter() - t0)
        except Exception as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return _stats([x for lat in lats for x in lat], time.perf_counter() - start)


def _stats(lat, total):
    lat.sort()
    return {"calls": len(lat), "total_s": round(total, 3),
            "mean_ms": round(1000 * statistics.mean(lat), 3),
            "p50_ms": round(1000 * lat[len(lat) // 2], 3),
            "p99_ms": round(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3),
            "max_ms": round(1000 * lat[-1], 3)}


def run(count, clients=1):
    base = tempfile.mkdtemp(prefix="sbb-", dir="/tmp")
    phases = {}
    try:
        agent = agent_proc.AgentProcess(base)
        agent.start()
        try:
            names = ["bdev%04d" % i for i in range(count)]
            t_pairs = time.perf_counter()
            phases["bdev_malloc_create"] = timed_clients(
                agent, clients, "bdev_malloc_create",
                lambda n: {"name": n, "num_blocks": 256, "block_size": 512}, names)
            phases["vhost_create_blk_controller"] = timed_clients(
                agent, clients, "vhost_create_blk_controller",
                lambda n: {"ctrlr": "c" + n, "dev_name": n}, names)
            phases["%d bdev + controller pairs" % count] = {
                "calls": 2 * count, "total_s": round(time.perf_counter() - t_pairs, 3)}
            with agent.client(timeout=120) as c:
                listed = {}
                phases["bdev_get_bdevs (all)"] = timed(
                    lambda _: listed.update(n=len(c.call("bdev_get_bdevs"))), [0])
                assert listed["n"] == count, listed
                phases["bdev_get_bdevs (one)"] = timed(
                    lambda n: c.call("bdev_get_bdevs", name=n), names[:100])
                phases["vhost_get_controllers (all)"] = timed(
                    lambda _: listed.update(c=len(c.call("vhost_get_controllers"))), [0])
                assert listed["c"] == count, listed
                sockets = len(os.listdir(agent.vhost_socket_dir))
                assert sockets == count, sockets
            state_bytes = os.path.getsize(agent.state_file)
            assert agent.stop() == 0
            t0 = time.perf_counter()
            agent.start(timeout=600)
            with agent.client(timeout=120) as c:
                assert len(c.call("vhost_get_controllers")) == count
            phases["restart with full state, to the first answer"] = {
                "calls": 1, "total_s": round(time.perf_counter() - t0, 3)}
            phases["vhost_delete_controller"] = timed_clients(
                agent, clients, "vhost_delete_controller", lambda n: {"ctrlr": "c" + n},
                names)
            phases["bdev_malloc_delete"] = timed_clients(
                agent, clients, "bdev_malloc_delete", lambda n: {"name": n}, names)
            with agent.client(timeout=120) as c:
                assert c.call("bdev_get_bdevs") == []
        finally:
            agent.stop()
            agent.kill9()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"count": count, "clients": clients, "state_file_bytes": state_bytes,
            "phases": phases}


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def markdown(result, command):
    lines = ["`%s` (commit %s, %s, %s, %d CPUs, load average %.2f; real agent "
             "process, core_mask 0x1, %d connection%s for the creates and deletes; every "
             "state-changing call is answered after the fsynced state write that "
             "includes it; state file at %d entries: %d bytes)." % (
                 command, _commit(), time.strftime("%Y-%m-%d", time.gmtime()),
                 platform.machine(), os.cpu_count(), os.getloadavg()[0], result["clients"],
                 "s" if result["clients"] > 1 else "", 2 * result["count"],
                 result["state_file_bytes"]), "",
             "| phase | calls | total s | mean ms | p50 ms | p99 ms | max ms |",
             "|---|---|---|---|---|---|---|"]
    for name, p in result["phases"].items():
        lines.append("| %s | %d | %s | %s | %s | %s | %s |" % (
            name, p["calls"], p["total_s"], p.get("mean_ms", "-"), p.get("p50_ms", "-"),
            p.get("p99_ms", "-"), p.get("max_ms", "-")))
    return "\n".join(lines) + "\n"


HEAD = "## Agent RPC scale"
NOTE = ("Every state-changing call is answered once a write of the state file that "
        "includes it is on disk (docs/agent.md, \"State file\"): changes that arrive "
        "while one write runs share the next, and each write renders the file from "
        "lines cached per bdev and controller.  The restart replays every call "
        "without writing the state file; its time runs from the process start to "
        "the first answer listing all controllers.")


def record(path, sections):
    """Replace the "Agent RPC scale" section of ``path`` (or append it)."""
    section = "\n".join([HEAD, ""] + sections + [NOTE, ""])
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    if HEAD in text:
        start = text.index(HEAD)
        nxt = text.find("\n## ", start + len(HEAD))
        text = text[:start] + section + ("" if nxt < 0 else text[nxt:])
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1],
                        help="connections for the creates and deletes; several values: "
                             "one run each")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--record", metavar="RESULTS_MD")
    args = parser.parse_args()
    command = "python bench/agent_rpc_scale.py --count %d --clients %s" % (
        args.count, " ".join(str(k) for k in args.clients))
    sections = []
    for clients in args.clients:
        result = run(args.count, clients)
        if args.json:
            print(json.dumps(result, indent=2))
        sections.append(markdown(result, command))
    if not args.json:
        print("\n".join(sections))
    if args.record:
        record(args.record, sections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
