#!/usr/bin/env python3
"""Agent RPC at scale: N bdevs and N vhost-blk controllers through the client.

Starts a real spdk-backend-agent in a temp dir, then through AgentClient
creates N malloc bdevs, lists them, creates N controllers on them, lists
them, deletes the controllers and the bdevs, and restarts the agent once to
time the replay of the full configuration.  Prints the time per call of each
phase (every state-changing call is answered once the fdatasynced log
append that includes it is done).  With --clients K the creates and deletes
come from K connections at once (as from several compute services), so
changes that arrive while one append runs share the next (group commit).

The state directory is on the disk (under /tmp), as /var/lib is on a host.
The controllers' sockets go where --socket-parent says, by default
/dev/shm (a tmpfs), as the agent's default vhost_socket_dir /run/... is on a
host: binding a socket on a disk file system is a journaled metadata change
whose time here follows whatever else writes to the disk.

    python bench/agent_rpc_scale.py --count 1000 [--clients 1 8] [--runs 5] [--json]
                                    [--socket-parent DIR] [--restart-prefix CMD]
                                    [--record bench/RESULTS.md]

The restart's steps come from the time stamps of the agent's log (process
start, imports and engine start; the replay; the compaction and the RPC
socket; the first answer).
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from spdk_backend import exception  # noqa: E402
from spdk_backend.agent import client as agent_client  # noqa: E402
from spdk_backend.agent import state as agent_state  # noqa: E402
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


def first_answer(agent, method, timeout):
    """The first answer to ``method`` of the agent starting (polled every 5 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(agent.rpc_socket):
            try:
                with agent_client.AgentClient(agent.rpc_socket, timeout=120,
                                              connect_timeout=0) as c:
                    return c.call(method)
            except exception.AgentUnavailable:
                pass
        if agent.proc.poll() is not None:
            raise RuntimeError("agent exited with %s:\n%s" % (agent.proc.poll(), agent.log()))
        time.sleep(0.005)
    raise RuntimeError("no answer in %ss" % timeout)


# The restarted agent's log lines that end each step of its start.
_STEPS = (("restart: process start, imports, options, engine start", "engine started on"),
          ("restart: replay of the state files", "restored "),
          ("restart: compaction, RPC socket", " ready (pid "))


def restart_steps(agent, wall0, wall_end):
    """The restart's steps, from the time stamps of its log (millisecond, local time)."""
    marks = {}
    tag = " %d " % agent.proc.pid
    with open(agent.log_file, errors="replace") as f:
        for line in f:
            if tag not in line:
                continue
            for _, needle in _STEPS:
                if needle in line and needle not in marks:
                    day, clock = line.split()[:2]
                    whole, _, frac = clock.partition(".")
                    marks[needle] = time.mktime(time.strptime(
                        day + " " + whole, "%Y-%m-%d %H:%M:%S")) + float("0." + frac)
    steps, last = {}, wall0
    for name, needle in _STEPS:
        if needle not in marks:
            return {}
        steps[name] = {"calls": 1, "total_s": round(marks[needle] - last, 3)}
        last = marks[needle]
    steps["restart: first answer (vhost_get_controllers of all)"] = {
        "calls": 1, "total_s": round(wall_end - last, 3)}
    return steps


def fs_type(path):
    """The file system type of ``path`` (/proc/self/mounts)."""
    path, best, kind = os.path.realpath(path), "", "?"
    with open("/proc/self/mounts") as f:
        for line in f:
            _, mnt, typ = line.split()[:3]
            inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) > len(best):
                best, kind = mnt, typ
    return kind


def _children(pid):
    out = []
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, task)) as f:
            out += [int(c) for c in f.read().split()]
    return out


def run(count, clients=1, socket_parent=None, restart_prefix=None):
    base = tempfile.mkdtemp(prefix="sbb-", dir="/tmp")
    sockets_dir = (tempfile.mkdtemp(prefix="sbb-vhost-", dir=socket_parent)
                   if socket_parent else None)
    phases = {}
    try:
        agent = agent_proc.AgentProcess(
            base, **({"vhost_socket_dir": sockets_dir} if sockets_dir else {}))
        if sockets_dir:
            agent.vhost_socket_dir = sockets_dir
        agent.start()
        wal = os.path.join(agent.state_dir, agent_state.LOG_FILE)
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
            state_bytes = {"config.json": os.path.getsize(agent.state_file),
                           "config.wal": os.path.getsize(wal)}
            assert agent.stop() == 0
            state_bytes["config.json after the stop"] = os.path.getsize(agent.state_file)
            t0, wall0 = time.perf_counter(), time.time()
            agent.start(wait=False, prefix=shlex.split(restart_prefix or ""))
            listed = first_answer(agent, "vhost_get_controllers", 600)
            phases["restart with full state, to the first answer"] = {
                "calls": 1, "total_s": round(time.perf_counter() - t0, 3)}
            if not restart_prefix:
                phases.update(restart_steps(agent, wall0, time.time()))
            assert len(listed) == count
            if restart_prefix:
                # A profiler's run ends at the first answer: the agent goes,
                # the profiler (its parent) writes what it recorded.
                for pid in _children(agent.proc.pid):
                    os.kill(pid, signal.SIGKILL)
                agent.proc.wait(60)
                return {"count": count, "clients": clients, "phases": phases}
            agent.wait_ready()
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
        if sockets_dir:
            shutil.rmtree(sockets_dir, ignore_errors=True)
    return {"count": count, "clients": clients, "state_file_bytes": state_bytes,
            "state_fs": fs_type(base),
            "socket_fs": fs_type(socket_parent or base), "phases": phases}


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def markdown(results, command):
    """One table for the runs of one client count: the median of each phase."""
    first = results[0]
    sizes = "; ".join("%s %d bytes" % kv for kv in first["state_file_bytes"].items())
    lines = ["`%s` (commit %s, %s, %s, %d CPUs, load average %.2f at the end; real agent "
             "process, core_mask 0x1, %d connection%s for the creates and deletes; "
             "state directory on %s, controller sockets on %s; every state-changing "
             "call is answered after the fdatasync of the log append that includes "
             "it; %d run%s, medians; state files at %d entries: %s)." % (
                 command, _commit(), time.strftime("%Y-%m-%d", time.gmtime()),
                 platform.machine(), os.cpu_count(), os.getloadavg()[0], first["clients"],
                 "s" if first["clients"] > 1 else "", first["state_fs"], first["socket_fs"],
                 len(results), "s" if len(results) > 1 else "", 2 * first["count"], sizes),
             "",
             "| phase | calls | total s (median) | total s of each run | mean ms | p50 ms "
             "| p99 ms | max ms |",
             "|---|---|---|---|---|---|---|---|"]

    def med(name, key):
        vals = [r["phases"][name].get(key) for r in results]
        if any(v is None for v in vals):
            return "-"
        return round(statistics.median(vals), 3)

    for name, p in first["phases"].items():
        lines.append("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
            name, p["calls"], med(name, "total_s"),
            " ".join(str(r["phases"][name]["total_s"]) for r in results),
            med(name, "mean_ms"), med(name, "p50_ms"), med(name, "p99_ms"),
            med(name, "max_ms")))
    return "\n".join(lines) + "\n"


HEAD = "## Agent RPC scale"
NOTE = ("Every state-changing call is answered once the log record that includes it "
        "is on disk (docs/agent.md, \"Persistence\"): changes that arrive while one "
        "append runs share the next.  The restart replays every call and folds the "
        "log into config.json; its time runs from the process start to the first "
        "answer listing all controllers (polled every 5 ms).")


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
                             "--runs runs each")
    parser.add_argument("--runs", type=int, default=1,
                        help="runs per client count; the tables give the medians")
    parser.add_argument("--socket-parent", default="/dev/shm" if os.path.isdir("/dev/shm")
                        else None,
                        help="where the controllers' socket directory goes (default "
                             "/dev/shm: a tmpfs, as /run on a host)")
    parser.add_argument("--restart-prefix", metavar="CMD",
                        help="run the restarted agent under CMD (a profiler: 'py-spy "
                             "record --threads --idle --format raw -o restart.raw --'); "
                             "the run ends at the restart's first answer")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--record", metavar="RESULTS_MD")
    args = parser.parse_args()
    command = "python bench/agent_rpc_scale.py --count %d --clients %s --runs %d" % (
        args.count, " ".join(str(k) for k in args.clients), args.runs)
    if args.socket_parent != parser.get_default("socket_parent"):
        command += " --socket-parent %s" % args.socket_parent
    sections = []
    for clients in args.clients:
        results = []
        for _ in range(args.runs):
            result = run(args.count, clients, args.socket_parent, args.restart_prefix)
            if args.restart_prefix:
                print("restart under %s: %s s" % (args.restart_prefix, result["phases"][
                    "restart with full state, to the first answer"]["total_s"]))
                return 0
            if args.json:
                print(json.dumps(result, indent=2))
            results.append(result)
        sections.append(markdown(results, command))
    if not args.json:
        print("\n".join(sections))
    if args.record:
        record(args.record, sections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
