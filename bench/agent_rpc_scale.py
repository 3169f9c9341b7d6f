#!/usr/bin/env python3
"""Agent RPC at scale: N bdevs and N vhost-blk controllers through the client.

Starts a real spdk-backend-agent in a temp dir, then through AgentClient
creates N malloc bdevs, lists them, creates N controllers on them, lists
them, deletes the controllers and the bdevs, and restarts the agent once to
time the replay of the full configuration.  Prints the time per call of each
phase (every state-changing call includes the atomic, fsynced state write).

    python bench/agent_rpc_scale.py --count 1000 [--json] [--record bench/RESULTS.md]
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
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
    total = time.perf_counter() - start
    lat.sort()
    return {"calls": len(items), "total_s": round(total, 3),
            "mean_ms": round(1000 * statistics.mean(lat), 3),
            "p50_ms": round(1000 * lat[len(lat) // 2], 3),
            "p99_ms": round(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3),
            "max_ms": round(1000 * lat[-1], 3)}


def run(count):
    base = tempfile.mkdtemp(prefix="sbb-", dir="/tmp")
    phases = {}
    try:
        agent = agent_proc.AgentProcess(base)
        agent.start()
        try:
            names = ["bdev%04d" % i for i in range(count)]
            with agent.client(timeout=120) as c:
                phases["bdev_malloc_create"] = timed(
                    lambda n: c.call("bdev_malloc_create", name=n, num_blocks=256,
                                     block_size=512), names)
                listed = {}
                phases["bdev_get_bdevs (all)"] = timed(
                    lambda _: listed.update(n=len(c.call("bdev_get_bdevs"))), [0])
                assert listed["n"] == count, listed
                phases["bdev_get_bdevs (one)"] = timed(
                    lambda n: c.call("bdev_get_bdevs", name=n), names[:100])
                phases["vhost_create_blk_controller"] = timed(
                    lambda n: c.call("vhost_create_blk_controller", ctrlr="c" + n,
                                     dev_name=n), names)
                phases["vhost_get_controllers (all)"] = timed(
                    lambda _: listed.update(c=len(c.call("vhost_get_controllers"))), [0])
                assert listed["c"] == count, listed
                sockets = len(os.listdir(agent.vhost_socket_dir))
                assert sockets == count, sockets
            state_bytes = os.path.getsize(agent.state_file)
            assert agent.stop() == 0
            t0 = time.perf_counter()
            agent.start(timeout=600)
            phases["restart with full state (replay)"] = {
                "calls": 1, "total_s": round(time.perf_counter() - t0, 3)}
            with agent.client(timeout=120) as c:
                assert len(c.call("vhost_get_controllers")) == count
                phases["vhost_delete_controller"] = timed(
                    lambda n: c.call("vhost_delete_controller", ctrlr="c" + n), names)
                phases["bdev_malloc_delete"] = timed(
                    lambda n: c.call("bdev_malloc_delete", name=n), names)
                assert c.call("bdev_get_bdevs") == []
        finally:
            agent.stop()
            agent.kill9()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"count": count, "state_file_bytes": state_bytes, "phases": phases}


def markdown(result, command):
    lines = ["## Agent RPC scale", "",
             "`%s` (%s, %s, %d CPUs; real agent process, core_mask 0x1, one "
             "connection; every state-changing call includes the fsynced state "
             "write; state file at %d entries: %d bytes)." % (
                 command, time.strftime("%Y-%m-%d", time.gmtime()), platform.machine(),
                 os.cpu_count(), result["count"], result["state_file_bytes"]), "",
             "| phase | calls | total s | mean ms | p50 ms | p99 ms | max ms |",
             "|---|---|---|---|---|---|---|"]
    for name, p in result["phases"].items():
        lines.append("| %s | %d | %s | %s | %s | %s | %s |" % (
            name, p["calls"], p["total_s"], p.get("mean_ms", "-"), p.get("p50_ms", "-"),
            p.get("p99_ms", "-"), p.get("max_ms", "-")))
    lines += ["", "The restart replays all %d calls without writing the state file, in "
              "the time shown: most of a state-changing call is the atomic, fsynced "
              "rewrite of the whole state file, which grows with the configuration."
              % (2 * result["count"])]
    return "\n".join(lines) + "\n"


def record(path, section):
    """Replace the "Agent RPC scale" section of ``path`` (or append it)."""
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    head = "## Agent RPC scale"
    if head in text:
        start = text.index(head)
        nxt = text.find("\n## ", start + len(head))
        text = text[:start] + section + ("" if nxt < 0 else text[nxt:])
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--record", metavar="RESULTS_MD")
    args = parser.parse_args()
    result = run(args.count)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(markdown(result, "python bench/agent_rpc_scale.py --count %d" % args.count))
    if args.record:
        record(args.record, markdown(
            result, "python bench/agent_rpc_scale.py --count %d" % args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
