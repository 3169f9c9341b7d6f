#!/usr/bin/env python3
"""Soak test: a long mixed run against one agent; its RSS and fds stay flat.

    python bench/soak.py [--minutes 30] [--sample 10] [--out bench/out/soak.json]

One real agent (which hosts the engine) serves:

* ``g0``: a QEMU guest (TCG, tests/support/guest.py) whose shell loops
  ``dd`` reads and writes on its vhost-user disk; every few minutes QEMU is
  stopped and started again (a front-end reconnect with a new memory
  table), and now and then the guest is reset (the driver restarts the
  rings);
* ``i0``, ``i1``: the C initiator in a loop of short verified randrw runs
  (every run is a new session: connect, negotiate, map, run, disconnect);
* ``t*``: a churn thread that creates and deletes bdevs and controllers
  (malloc, null) at random, connects an initiator to some of them, and
  resizes the null bdev behind ``n0`` (a controller with a live session).

Every ``--sample`` seconds the agent's RSS (/proc/PID/status VmRSS) and open
file descriptors (/proc/PID/fd) are recorded.  At the end the script prints
a summary and a verdict: after a warm-up (the first 10% of the run) the
RSS of the last quarter is within 10% + 16 MiB of the first quarter's and
the fd count at the end, with the workloads stopped and the churned
controllers deleted, equals the count right after setup (+2 for RPC
connections in progress); fds in between follow the number of controllers
and sessions.  Exit status 0 when both
hold and no workload failed, 1 otherwise.  Not run in CI.
"""

import argparse
import json
import os
import pathlib
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import agent_proc  # noqa: E402
from tests.support import guest as guest_mod  # noqa: E402

INITIATOR = ROOT / "native" / "build" / "tools" / "vhost_initiator"
MB = 1 << 20


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Soak:
    def __init__(self, args, base):
        self.args = args
        self.base = pathlib.Path(base)
        self.stop = threading.Event()
        self.errors = []
        self.counts = {"initiator_runs": 0, "guest_io_loops": 0, "qemu_restarts": 0,
                       "guest_resets": 0, "creates": 0, "deletes": 0, "resizes": 0,
                       "churn_initiator_runs": 0}
        self.lock = threading.Lock()
        self.samples = []
        self.agent = agent_proc.AgentProcess(str(self.base), max_delay_us=1000)

    def count(self, key, n=1):
        with self.lock:
            self.counts[key] += n

    def fail(self, what):
        with self.lock:
            self.errors.append("%.0fs %s" % (time.monotonic() - self.t0, what))
        print("FAIL:", what, flush=True)

    def call(self, method, **params):
        with self.agent.client(timeout=60) as c:
            return c.call(method, **params)

    # ---- workloads ----

    def initiator_loop(self, ctrlr, seed):
        sock = os.path.join(self.agent.vhost_socket_dir, ctrlr)
        n = 0
        while not self.stop.is_set():
            n += 1
            res = subprocess.run([str(INITIATOR), "--socket", sock, "--rw", "randrw",
                                  "--verify", "--size-limit", "8M", "--time", "3",
                                  "--qd", "8", "--interrupt", "--seed", str(seed + n)],
                                 capture_output=True, text=True, timeout=120)
            if res.returncode != 0:
                self.fail("initiator on %s: rc %d %s" % (ctrlr, res.returncode,
                                                        res.stderr[-300:]))
                time.sleep(1)
            else:
                self.count("initiator_runs")

    def guest_loop(self, image):
        sock = os.path.join(self.agent.vhost_socket_dir, "g0")
        rng = random.Random(7)
        workdir = self.base / "vm"
        workdir.mkdir(exist_ok=True)
        while not self.stop.is_set():
            try:
                with guest_mod.QemuGuest(image, str(workdir),
                                         disks=[guest_mod.VhostDisk(sock, num_queues=2)],
                                         mem_mb=256) as vm:
                    self.count("qemu_restarts")
                    until = time.monotonic() + rng.uniform(120, 240)
                    while not self.stop.is_set() and time.monotonic() < until:
                        vm.shell.check("dd if=/dev/urandom of=/dev/vda bs=64k count=64 "
                                       "seek=%d conv=fsync 2>/dev/null && "
                                       "dd if=/dev/vda of=/dev/null bs=64k count=256 "
                                       "iflag=direct 2>/dev/null" % rng.randrange(16),
                                       timeout=120)
                        self.count("guest_io_loops")
                        if rng.random() < 0.03:
                            vm.reset()
                            self.count("guest_resets")
            except Exception as exc:  # keep soaking; the failure is recorded
                self.fail("guest: %s" % "".join(traceback.format_exception_only(exc))[-400:])
                time.sleep(5)

    def churn_loop(self):
        rng = random.Random(11)
        n = 0
        live = []
        size_mb = 64
        while not self.stop.is_set():
            n += 1
            try:
                op = rng.random()
                if (op < 0.45 or not live) and len(live) < 8:
                    name = "t%d" % n
                    kind = rng.choice(["malloc", "null"])
                    self.call("bdev_%s_create" % kind, name=name + "b", num_blocks=2048,
                              block_size=512)
                    self.call("vhost_create_blk_controller", ctrlr=name, dev_name=name + "b")
                    live.append((name, kind))
                    self.count("creates")
                    if rng.random() < 0.5:
                        sock = os.path.join(self.agent.vhost_socket_dir, name)
                        res = subprocess.run([str(INITIATOR), "--socket", sock, "--rw",
                                              "randread", "--ios", "2000"],
                                             capture_output=True, text=True, timeout=60)
                        if res.returncode != 0:
                            self.fail("churn initiator: %s" % res.stderr[-300:])
                        self.count("churn_initiator_runs")
                elif op < 0.9 and live:
                    name, kind = live.pop(rng.randrange(len(live)))
                    self.call("vhost_delete_controller", ctrlr=name)
                    self.call("bdev_%s_delete" % kind, name=name + "b")
                    self.count("deletes")
                else:
                    # Grow only (a bdev never shrinks under a guest).
                    size_mb += 1
                    self.call("bdev_null_resize", name="n0", new_size=size_mb)
                    self.count("resizes")
            except Exception as exc:
                self.fail("churn: %s" % exc)
            self.stop.wait(rng.uniform(0.5, 3))
        for name, kind in live:
            try:
                self.call("vhost_delete_controller", ctrlr=name)
                self.call("bdev_%s_delete" % kind, name=name + "b")
            except Exception as exc:
                self.fail("churn cleanup: %s" % exc)

    # ---- run ----

    def sample(self):
        pid = self.agent.proc.pid
        s = {"t": round(time.monotonic() - self.t0, 1), "rss_kb": _rss_kb(pid),
             "fds": _nfds(pid)}
        with self.lock:
            s.update(self.counts)
        self.samples.append(s)
        print(json.dumps(s), flush=True)

    def run(self):
        image = guest_mod.build_guest_image()
        self.agent.start()
        self.t0 = time.monotonic()
        try:
            for name in ("m0", "m1", "m2"):
                self.call("bdev_malloc_create", name=name, num_blocks=64 * MB // 512,
                          block_size=512)
            self.call("bdev_null_create", name="n0", num_blocks=64 * MB // 512,
                      block_size=512)
            self.call("vhost_create_blk_controller", ctrlr="g0", dev_name="m0")
            self.call("vhost_create_blk_controller", ctrlr="i0", dev_name="m1")
            self.call("vhost_create_blk_controller", ctrlr="i1", dev_name="m2")
            self.call("vhost_create_blk_controller", ctrlr="n0", dev_name="n0")
            threads = [threading.Thread(target=self.guest_loop, args=(image,)),
                       threading.Thread(target=self.initiator_loop, args=("i0", 1000)),
                       threading.Thread(target=self.initiator_loop, args=("i1", 5000)),
                       threading.Thread(target=self.churn_loop)]
            for t in threads:
                t.start()
            # SIGINT/SIGTERM end the run early, with the usual cleanup and summary.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.stop.set())
            end = self.t0 + self.args.minutes * 60
            while (time.monotonic() < end and not self.stop.is_set()
                   and self.agent.proc.poll() is None):
                self.sample()
                self.stop.wait(min(self.args.sample, max(0, end - time.monotonic())))
            if self.agent.proc.poll() is not None:
                self.fail("agent died: rc %s" % self.agent.proc.returncode)
            self.stop.set()
            for t in threads:
                t.join(300)
            if self.agent.proc.poll() is None:
                time.sleep(2)
                self.sample()
        finally:
            self.stop.set()
            self.agent.stop()
            self.agent.kill9()
        return self.verdict()

    def verdict(self):
        s = self.samples
        n = len(s)
        warm = [x for x in s if x["t"] >= s[-1]["t"] * 0.1] or s
        q = max(1, len(warm) // 4)
        first, last = warm[:q], warm[-q:]
        rss_first = statistics.mean(x["rss_kb"] for x in first)
        rss_last = statistics.mean(x["rss_kb"] for x in last)
        fds_first = max(x["fds"] for x in first)
        fds_last = max(x["fds"] for x in last)
        summary = {
            "minutes": self.args.minutes, "samples": n,
            "rss_kb": {"min": min(x["rss_kb"] for x in s), "max": max(x["rss_kb"] for x in s),
                       "first_quarter_mean": round(rss_first),
                       "last_quarter_mean": round(rss_last)},
            "fds": {"min": min(x["fds"] for x in s), "max": max(x["fds"] for x in s),
                    "first_quarter_max": fds_first, "last_quarter_max": fds_last,
                    "end": s[-1]["fds"]},
            "counts": self.counts, "errors": self.errors,
        }
        summary["rss_flat"] = rss_last <= rss_first * 1.10 + 16 * 1024
        # Quiet at both ends (same controllers, nobody connected): the same fds.
        summary["fds"]["start"] = s[0]["fds"]
        summary["fds_flat"] = s[-1]["fds"] <= s[0]["fds"] + 2
        summary["ok"] = summary["rss_flat"] and summary["fds_flat"] and not self.errors
        return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--sample", type=float, default=10, help="seconds between samples")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "soak.json"))
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="sbsoak-", dir="/tmp")
    try:
        soak = Soak(args, base)
        summary = soak.run()
    finally:
        subprocess.run(["rm", "-rf", base])
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"summary": summary, "samples": soak.samples}, f, indent=1)
    print(json.dumps(summary, indent=1))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
