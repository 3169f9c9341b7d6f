#!/usr/bin/env python3
"""vhost-user-blk target benchmark: our target against qemu-storage-daemon.

    python bench/vhost_bench.py [--time 5] [--rounds 3] [--size-mb 256]
        [--engine null|malloc|uring] [--target 'NAME=SHELL COMMAND'] ...
        [--file PATH] [--buffered] [--like-qemu VERSION | --polling]
        [--qsd null|uring] ... [--compare-inflight]

The initiator (native/build/tools/vhost_initiator) runs pinned to CPU 1 and
each target pinned to CPU 0 (``taskset -c 0``), 4 KiB random reads, one
queue, at QD1 and QD32.  It is what guests use: ``--like-qemu VERSION``
(default: the installed QEMU's version) negotiates exactly what that QEMU's
vhost-user-blk negotiated with our target under a real guest (recorded by
tests/e2e/test_vhost_guest.py in tests/data/qemu_vhost_features.json),
waits on the call eventfds and gives the target an inflight region.
``--polling`` is the earlier busy-polling profile.  Built-in targets:

* ``qsd-null``: qemu-storage-daemon, null-co (read-zeroes=off, size in bytes)
* ``qsd-uring``: qemu-storage-daemon, a prefilled file with aio=io_uring
  and cache.direct=on (``--buffered``: through the page cache)

``--qsd null|uring`` (repeatable) keeps only those built-in targets.

``--engine null|malloc|uring`` (repeatable) adds our engine (reactor on
CPU 0, ``--spin-us``) with a null or malloc bdev of the same size or a
uring bdev on the same file, each behind a vhost-blk controller.
``--compare-inflight`` adds, for each of them, the same engine target
driven the other way round as to the inflight region, in the same rounds,
so the region's cost is a paired ratio: with --like-qemu (which gives the
target a region) ``engine-null/no-inflight`` runs the initiator with
``--no-inflight`` (the profile minus INFLIGHT_SHMFD); with --polling
(no region) ``engine-null/inflight`` runs it with ``--inflight``.

``--target 'NAME=CMD'`` adds a target: CMD runs under ``sh -c`` in its own
process group and must serve vhost-user-blk on ``{socket}``; ``{file}``
(the prefilled file), ``{size}`` (bytes) and ``{size_mb}`` are substituted.
Every target is started fresh for every run, and runs alternate
A B C A B C ... so drift on a shared machine hits all of them.

Prints the commit, the qemu-storage-daemon version (each QEMU/libvirt stack
ships its own: scripts/install-deps.sh, ``SB_STACK``) and the load average
(at the start and the end), what each target negotiated (features, protocol
features, interrupt mode, inflight region), then a markdown table: medians
with min-max spread; each target's IOPS over the first target's in the same
round, every round's ratio and their median (min-max); the target's CPU cost
per I/O: our engine's reactor busy time per completed I/O (busy ticks of
framework_get_reactors before and after the timed run) and, in interrupt
mode, the CPU seconds per million I/Os of the target's processes
(/proc/<pid>/stat utime + stime over its process group); and the
notifications per I/O, counted by the initiator: calls (the target's call
eventfd writes, interrupt mode; with EVENT_IDX a target that completes
several requests per look at the ring makes fewer calls than completions)
and kicks (the initiator's kick eventfd writes, which the target's
notification suppression saves).  ``--pair A/B`` (repeatable) adds a table
of target A's per-round ratios to target B's: IOPS, p50, CPU per I/O.
"""

import argparse
import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
INITIATOR = ROOT / "native" / "build" / "tools" / "vhost_initiator"


class Target:
    """One target command, started pinned to the target CPU.

    An engine target (``engine=True``: ``--serve-engine``) answers "stats"
    on its stdin with its reactors' busy ticks, as framework_get_reactors
    reports them.
    """

    def __init__(self, name, argv, sock, log, engine=False):
        self.name = name
        self.argv = argv
        self.sock = sock
        self.log = log
        self.engine = engine
        self.proc = None

    def __enter__(self):
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE if self.engine else log,
                stderr=log if self.engine else subprocess.STDOUT,
                stdin=subprocess.PIPE if self.engine else subprocess.DEVNULL,
                start_new_session=True, text=self.engine)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None:
                with open(self.log, errors="replace") as f:
                    tail = f.read()[-2000:]
                raise RuntimeError("target %s exited %d:\n%s"
                                   % (self.name, self.proc.returncode, tail))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("target %s: no socket %s"
                                   % (self.name, self.sock))
            time.sleep(0.02)
        return self

    def reactor_stats(self):
        """(busy ticks summed over reactors, ticks per second); None for a
        target that is not our engine."""
        if not self.engine:
            return None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("target %s exited" % self.name)
        st = json.loads(line)
        return st["busy"], st["tick_rate"]

    def cpu_seconds(self):
        """User + system CPU seconds of every process of the target's group
        (a shell wrapper's children too), from /proc/<pid>/stat."""
        hz = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % pid) as f:
                    stat = f.read()
            except OSError:
                continue
            # Fields after the parenthesised command: 3 state, 5 pgrp,
            # 14 utime, 15 stime (proc(5)).
            rest = stat[stat.rindex(")") + 2:].split()
            if int(rest[2]) == self.proc.pid:
                total += int(rest[11]) + int(rest[12])
        return total / hz

    def stop(self):
        if self.proc and self.proc.poll() is None:
            # The whole group: a shell wrapper's children too.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        try:
            # Our engine removes its socket itself when it stops.
            os.unlink(self.sock)
        except FileNotFoundError:
            pass

    def __exit__(self, *exc):
        self.stop()
        return False


def qsd_argv(sock, blockdev):
    export = ("type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,"
              "addr.path=%s,writable=on,num-queues=1" % sock)
    return ["taskset", "-c", "0", "qemu-storage-daemon",
            "--blockdev", blockdev + ",node-name=n0", "--export", export]


def run_initiator(initiator, sock, qd, seconds, cpu, like_qemu=None, extra=()):
    cmd = [str(initiator), "--socket", sock, "--rw", "randread", "--bs",
           "4096", "--qd", str(qd), "--queues", "1", "--time", str(seconds),
           "--cpu", str(cpu), "--json"]
    if like_qemu:
        cmd += ["--like-qemu", like_qemu]
    cmd += list(extra)
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError("initiator failed (%d): %s %s"
                           % (proc.returncode, proc.stdout, proc.stderr))
    out = json.loads(proc.stdout[proc.stdout.find("{"):])
    res = out["main"]
    return {"iops": res["iops"], "p50": res["p50_us"], "p99": res["p99_us"],
            "ios": res["ios"], "seconds": res["seconds"],
            "calls": res["calls"], "kicks": res["kicks"], "sleeps": res.get("sleeps"),
            "features": out["features"], "protocol_features": out["protocol_features"],
            "interrupts": out["interrupts"], "inflight": out["inflight"]}


def measured_run(target, args, qd, extra=()):
    """One timed initiator run with the target's CPU cost around it:
    reactor busy time per completed I/O (our engine) and, in interrupt mode,
    the target's CPU seconds per million I/Os."""
    busy0 = target.reactor_stats()
    cpu0 = target.cpu_seconds()
    res = run_initiator(args.initiator, target.sock, qd, args.time,
                        args.initiator_cpu, args.like_qemu, extra)
    cpu1 = target.cpu_seconds()
    busy1 = target.reactor_stats()
    ios = res["ios"]
    res["busy_ns_per_io"] = ((busy1[0] - busy0[0]) * 1e9 / busy1[1] / ios
                             if busy0 is not None and ios else None)
    res["cpu_s_per_mio"] = ((cpu1 - cpu0) * 1e6 / ios
                            if res["interrupts"] and ios else None)
    res["calls_per_io"] = res["calls"] / ios if res["interrupts"] and ios else None
    res["kicks_per_io"] = res["kicks"] / ios if ios else None
    res["sleeps_per_io"] = (res["sleeps"] / ios if res["interrupts"] and ios
                            and res["sleeps"] is not None else None)
    return res


def prefill(path, size):
    """Real data, so reads are not served from holes."""
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size // len(chunk)):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def serve_engine(kind, sock, file, size, spin_us):
    """Run our engine as a vhost-blk target on `sock` until SIGTERM."""
    sys.path.insert(0, str(ROOT))
    from spdk_backend.engine import Engine

    def _term(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _term)
    eng = Engine(core_mask="0x1", vhost_socket_dir=os.path.dirname(sock),
                 spin_us=spin_us)
    eng.start()
    try:
        if kind == "null":
            eng.bdev_null_create("b0", size // 512, 512)
        elif kind == "malloc":
            eng.bdev_malloc_create("b0", size // 512, 512)
        elif kind == "uring":
            eng.bdev_uring_create("b0", file)
        else:
            raise SystemExit("unknown engine bdev %r" % kind)
        # The controller's socket is <socket dir>/<name>.
        eng.vhost_create_blk_controller(os.path.basename(sock), "b0")
        # "stats": the reactors' busy ticks (framework_get_reactors).
        for line in sys.stdin:
            if line.strip() == "stats":
                busy = sum(r["busy"] for r in eng.reactors())
                print(json.dumps({"busy": busy, "tick_rate": eng.tick_rate}),
                      flush=True)
        # No stdin (a --target command): serve until SIGTERM.
        while True:
            signal.pause()
    finally:
        eng.stop()


def provenance():
    """The commit, qemu-storage-daemon's version and the load average."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    try:
        qsd = subprocess.run(["qemu-storage-daemon", "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        qsd = "qemu-storage-daemon: not installed"
    return "commit %s%s; %s; load average %s" % (
        commit or "unknown", " (modified)" if dirty else "", qsd,
        " ".join("%.2f" % x for x in os.getloadavg()))


def loadavg():
    return " ".join("%.2f" % x for x in os.getloadavg())


def qemu_version():
    """major.minor of the installed QEMU: the guests' QEMU on this stack."""
    line = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                          text=True, check=True).stdout.splitlines()[0]
    m = re.search(r"version (\d+)\.(\d+)", line)
    if m is None:
        raise SystemExit("no version in %r" % line)
    return "%s.%s" % m.groups()


def print_negotiated(targets, qds, samples):
    """What each target negotiated with the initiator (every run's)."""
    print("| target | features | protocol features | interrupts | inflight |")
    print("|---|---|---|---|---|")
    for name, _ in targets:
        runs = [x for qd in qds for x in samples[(name, qd)]]
        seen = sorted({(x["features"], x["protocol_features"], x["interrupts"],
                        x["inflight"]) for x in runs})
        for feat, proto, intr, infl in seen:
            print("| %s | %s | %s | %s | %s |" % (name, feat, proto, intr, infl))
    print()


def print_table(targets, qds, samples):
    base = targets[0][0]
    print("| target | QD | IOPS | p50 us | p99 us | IOPS spread %% | "
          "IOPS / %s per round | median (min-max) | reactor busy ns/IO | "
          "target CPU s / M IOs | calls / IO | initiator sleeps / IO | kicks / IO |"
          % base)
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for qd in qds:
        base_iops = [x["iops"] for x in samples[(base, qd)]]
        for name, _ in targets:
            s = samples[(name, qd)]
            iops = [x["iops"] for x in s]
            med = statistics.median(iops)
            spread = 100.0 * (max(iops) - min(iops)) / med if med else 0
            ratios = [a / b for a, b in zip(iops, base_iops) if b]
            busy = [x["busy_ns_per_io"] for x in s if x["busy_ns_per_io"] is not None]
            cpu = [x["cpu_s_per_mio"] for x in s if x["cpu_s_per_mio"] is not None]
            calls = [x["calls_per_io"] for x in s if x["calls_per_io"] is not None]
            kicks = [x["kicks_per_io"] for x in s if x["kicks_per_io"] is not None]
            sleeps = [x["sleeps_per_io"] for x in s if x.get("sleeps_per_io") is not None]
            print("| %s | %d | %s | %s | %s | %.1f | %s | %s | %s | %s | %s | %s | %s |"
                  % (name, qd, fmt(iops), fmt([x["p50"] for x in s], 1),
                     fmt([x["p99"] for x in s], 1), spread,
                     " ".join("%.2f" % r for r in ratios) if ratios else "-",
                     fmt(ratios, 2) if ratios else "-",
                     fmt(busy) if busy else "-", fmt(cpu, 2) if cpu else "-",
                     fmt(calls, 3) if calls else "-",
                     fmt(sleeps, 3) if sleeps else "-",
                     fmt(kicks, 3) if kicks else "-"))


def print_pairs(pairs, qds, samples):
    """Per-round ratios of two targets: IOPS, p50 and CPU per I/O."""
    print("| pair | QD | IOPS ratio per round | median (min-max) | "
          "p50 ratio median (min-max) | CPU s/M IOs ratio median (min-max) |")
    print("|---|---|---|---|---|---|")
    for a, b in pairs:
        for qd in qds:
            sa, sb = samples[(a, qd)], samples[(b, qd)]

            def ratios(key):
                return [x[key] / y[key] for x, y in zip(sa, sb)
                        if x[key] is not None and y[key]]
            iops = ratios("iops")
            p50, cpu = ratios("p50"), ratios("cpu_s_per_mio")
            print("| %s / %s | %d | %s | %s | %s | %s |"
                  % (a, b, qd, " ".join("%.2f" % r for r in iops) or "-",
                     fmt(iops, 2) if iops else "-", fmt(p50, 2) if p50 else "-",
                     fmt(cpu, 2) if cpu else "-"))
    print()


def fmt(vals, digits=0):
    med = statistics.median(vals)
    return "%.*f (%.*f-%.*f)" % (digits, med, digits, min(vals), digits,
                                 max(vals))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--time", type=float, default=5, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--qd", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--file", help="backing file (default: a temp file)")
    ap.add_argument("--buffered", action="store_true",
                    help="qsd-uring through the page cache (default "
                    "cache.direct=on, like the engine's uring bdev)")
    ap.add_argument("--target", action="append", default=[],
                    metavar="NAME=CMD", help="extra target (repeatable)")
    ap.add_argument("--no-builtin", action="store_true",
                    help="only the --target targets")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--initiator", default=str(INITIATOR))
    ap.add_argument("--initiator-cpu", type=int, default=1)
    ap.add_argument("--json-out", help="write every sample here")
    ap.add_argument("--pair", action="append", default=[], metavar="A/B",
                    help="also print target A's per-round ratios to target B's "
                         "(IOPS, p50, CPU per I/O); repeatable")
    ap.add_argument("--engine", action="append", default=[],
                    choices=["null", "malloc", "uring"], help="add our engine")
    ap.add_argument("--qsd", action="append", default=[],
                    choices=["null", "uring"],
                    help="only these built-in qemu-storage-daemon targets "
                    "(default: both)")
    ap.add_argument("--compare-inflight", action="store_true",
                    help="each engine target also without an inflight region "
                    "(--like-qemu) or with one (--polling)")
    ap.add_argument("--spin-us", type=int, default=0,
                    help="engine reactor spin after work (0 = default)")
    prof = ap.add_mutually_exclusive_group()
    prof.add_argument("--like-qemu", metavar="VERSION",
                      help="the initiator's --like-qemu profile of this QEMU "
                      "version (default: the installed qemu-system-x86_64's)")
    prof.add_argument("--polling", action="store_true",
                      help="the initiator busy-polls with MQ/CONFIG/REPLY_ACK "
                      "only (the profile of the runs before 2026-12-07)")
    ap.add_argument("--serve-engine", help=argparse.SUPPRESS)
    ap.add_argument("--socket", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_engine:
        return serve_engine(args.serve_engine, args.socket, args.file,
                            args.size_mb << 20, args.spin_us)

    if not args.polling and not args.like_qemu:
        args.like_qemu = qemu_version()
    if args.polling:
        args.like_qemu = None
    if not os.path.exists(args.initiator):
        subprocess.run(["make", "-C", str(ROOT / "native"), "-j2", "tools"],
                       check=True, stdout=subprocess.DEVNULL)
    size = args.size_mb << 20
    with tempfile.TemporaryDirectory(prefix="vhost-bench-") as tmp:
        sock = os.path.join(tmp, "vu.sock")
        file = args.file or os.path.join(tmp, "disk.img")
        if not args.file or not os.path.exists(file):
            prefill(file, size)
        targets = []
        engines = set()
        # The initiator's extra arguments per target (--compare-inflight).
        extra = {}
        qsds = args.qsd or ["null", "uring"]
        if not args.no_builtin and "null" in qsds:
            targets.append(("qsd-null", qsd_argv(
                sock, "driver=null-co,size=%d,read-zeroes=off" % size)))
        if not args.no_builtin and "uring" in qsds:
            targets.append(("qsd-uring", qsd_argv(
                sock, "driver=file,filename=%s,aio=io_uring%s"
                % (file, "" if args.buffered else ",cache.direct=on"))))
        for kind in args.engine:
            argv = ["taskset", "-c", "0", sys.executable, os.path.abspath(__file__),
                    "--serve-engine", kind, "--socket", sock, "--file", file,
                    "--size-mb", str(args.size_mb), "--spin-us",
                    str(args.spin_us)]
            engines.add("engine-" + kind)
            targets.append(("engine-" + kind, argv))
            if args.compare_inflight:
                name = "engine-%s/%s" % (kind, "no-inflight" if args.like_qemu
                                         else "inflight")
                engines.add(name)
                targets.append((name, argv))
                extra[name] = ["--no-inflight" if args.like_qemu else "--inflight"]
        for spec in args.target:
            name, _, cmd = spec.partition("=")
            if not cmd:
                ap.error("--target wants NAME=CMD")
            cmd = cmd.format(socket=sock, file=file, size=size,
                             size_mb=args.size_mb)
            targets.append((name, ["taskset", "-c", "0", "sh", "-c", cmd]))
        if not targets:
            ap.error("no targets")
        names = [n for n, _ in targets]
        pairs = [tuple(p.split("/", 1)) for p in args.pair]
        for p in pairs:
            if len(p) != 2 or not all(n in names for n in p):
                ap.error("--pair %s: two of %s, as A/B" % ("/".join(p), ", ".join(names)))

        samples = {(n, qd): [] for n, _ in targets for qd in args.qd}
        log = os.path.join(tmp, "target.log")
        load_start = loadavg()
        for rnd in range(args.rounds):
            for qd in args.qd:
                for name, targv in targets:
                    with Target(name, targv, sock, log,
                                engine=name in engines) as target:
                        if args.warmup > 0:
                            run_initiator(args.initiator, sock, qd,
                                          args.warmup, args.initiator_cpu,
                                          args.like_qemu, extra.get(name, ()))
                        res = measured_run(target, args, qd,
                                           extra.get(name, ()))
                    samples[(name, qd)].append(res)
                    print("round %d qd %d %-12s %8.0f IOPS p50 %.1f p99 %.1f"
                          " features %s protocol %s%s%s calls/IO %s kicks/IO %.3f"
                          % (rnd + 1, qd, name, res["iops"], res["p50"],
                             res["p99"], res["features"],
                             res["protocol_features"],
                             "" if res["busy_ns_per_io"] is None else
                             " busy %.0f ns/IO" % res["busy_ns_per_io"],
                             "" if res["cpu_s_per_mio"] is None else
                             " cpu %.2f s/M IOs" % res["cpu_s_per_mio"],
                             "-" if res["calls_per_io"] is None else
                             "%.3f" % res["calls_per_io"],
                             res["kicks_per_io"] or 0),
                          file=sys.stderr)

    print("\n%s; load average at the start %s" % (provenance(), load_start))
    print("4 KiB randread, 1 queue, initiator on CPU %d (%s), targets on CPU 0,"
          " fresh for every run, alternating; %d rounds x %gs; median (min-max)\n"
          % (args.initiator_cpu,
             "--like-qemu %s: interrupt mode, inflight region" % args.like_qemu
             if args.like_qemu else "busy-polling, MQ/CONFIG/REPLY_ACK only",
             args.rounds, args.time))
    print_negotiated(targets, args.qd, samples)
    print_table(targets, args.qd, samples)
    if args.pair:
        print()
        print_pairs(pairs, args.qd, samples)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"%s/qd%d" % k: v for k, v in samples.items()}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
