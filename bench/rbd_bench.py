#!/usr/bin/env python3
"""The engine on an rbd bdev side by side with fio's rbd engine, same image.

    python bench/rbd_bench.py [--seconds 8] [--rounds 2] [--size-mb 1024]
        [--layout split|shared|float] [--spin-us N]
        [--workload randread:4096:32 --workload randwrite:4096:32 ...]

Starts a single-node Ceph cluster (tests/support/ceph.py: 1 mon, 1 OSD on
127.0.0.1), writes the whole image once (so reads hit real objects), then
for every workload runs, alternating A B C A B C ... (``--rounds``):

* ``fio-rbd``: ``fio --ioengine=rbd`` (librbd directly, no engine);
* ``engine``: the engine's workload generator on the rbd bdev (the bdev
  layer + the librbd completion hand-off, in this process);
* ``vhost``: the native vhost_initiator (a vhost-user-blk driver in another
  process, CPU 1) through a vhost-blk controller of the engine on that bdev:
  the whole data path a guest uses, driven as a guest does
  (``--like-qemu VERSION``, default the installed QEMU's: that QEMU's
  negotiated features, interrupt mode, the inflight region;
  ``--interrupt-only``: the earlier profile).

Besides IOPS and latency, each round's IOPS over fio-rbd's in the same
round (and their median, min-max), the reactor busy time per completed I/O
(framework_get_reactors' busy ticks around the run) for the engine rows,
and the CPU seconds per million I/Os of this process (the engine and its
librbd threads) for the interrupt-mode vhost row.  The header gives the
commit and the load average, and what the vhost runs negotiated.

``--layout`` says where they run.  ``split`` (the default) gives the Ceph
daemons CPU 0 and the client side CPU 1: fio with its librbd threads, or the
engine (reactor and librbd threads) with the initiator.  That is a
deployment in miniature (the cluster on other hosts, the client side with
its own CPU), and both sides get the same CPU budget.  ``shared`` pins only
the reactor (CPU 0) and the initiator (CPU 1) and lets the OSD and fio go
anywhere; ``float`` pins nothing.  On two CPUs the OSD needs most of one,
so in those two layouts the result depends on how the scheduler places it.

Same block size, queue depth, image and librbd configuration for all
(``rbd_cache = false``: fio never flushes, so librbd's cache would stay in
writethrough for fio but go writeback for a workload that flushes).  The
overhead is ``1 - engine IOPS / fio IOPS`` on the medians.  Prints a
markdown table; ``--append`` adds it to bench/RESULTS.md.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import ceph  # noqa: E402
from bench.vhost_bench import provenance, qemu_version  # noqa: E402

IMAGE = "bench"

# Where the Ceph daemons, the client side (fio, or the engine with its
# librbd threads), the reactor and the initiator run.  None: not pinned.
LAYOUTS = {
    "split": {"ceph": {0}, "client": {1}, "reactor": 1, "pin_reactor": True, "initiator": 1,
              "doc": "the Ceph daemons on CPU 0 (their own hosts in a deployment), "
                     "fio or the engine, its librbd threads and the initiator on CPU 1"},
    "shared": {"ceph": None, "client": None, "reactor": 0, "pin_reactor": True,
               "initiator": 1,
               "doc": "the reactor pinned to CPU 0, the initiator to CPU 1, the Ceph "
                      "daemons, librbd threads and fio on either"},
    "float": {"ceph": None, "client": None, "reactor": 0, "pin_reactor": False,
              "initiator": None,
              "doc": "nothing pinned: the scheduler places every thread"},
}


def fio_rbd(cluster, rw, bs, qd, seconds):
    env = dict(os.environ, CEPH_CONF=cluster.conf)
    cmd = ["fio", "--name=rbd", "--ioengine=rbd", "--clientname=admin",
           "--pool=%s" % cluster.pool, "--rbdname=%s" % IMAGE, "--rw=%s" % rw,
           "--bs=%d" % bs, "--iodepth=%d" % qd, "--time_based", "--runtime=%d" % seconds,
           "--ramp_time=1", "--direct=1", "--output-format=json", "--numjobs=1",
           "--invalidate=0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          timeout=seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError("fio failed: %s %s" % (proc.stdout[-2000:], proc.stderr[-2000:]))
    job = json.loads(proc.stdout[proc.stdout.find("{"):])["jobs"][0]
    side = job["read"] if job["read"]["io_bytes"] else job["write"]
    pct = side["clat_ns"].get("percentile", {})
    return {"iops": side["iops"], "p50": pct.get("50.000000", 0) / 1000.0,
            "p99": pct.get("99.000000", 0) / 1000.0}


def _busy(eng):
    return sum(r["busy"] for r in eng.reactors())


def _cpu_seconds():
    """This process's user + system CPU seconds (the engine, its librbd
    threads; not fio or the initiator, which are other processes)."""
    t = os.times()
    return t.user + t.system


def engine_run(eng, rw, bs, qd, seconds):
    busy0 = _busy(eng)
    res = eng.run_workload("rbd0", rw=rw, io_size=bs, qd=qd, seconds=seconds)
    busy1 = _busy(eng)
    if res["errors"]:
        raise RuntimeError("engine workload errors: %s" % res)
    ios = res["ios"]
    return {"iops": res["iops"], "p50": res["lat_p50_us"], "p99": res["lat_p99_us"],
            "busy_ns_per_io": (busy1 - busy0) * 1e9 / eng.tick_rate / ios if ios else None}


def vhost_run(eng, initiator, sock, rw, bs, qd, seconds, cpu, like_qemu):
    # The controller claims the bdev for writing: it lives only for this run.
    eng.vhost_create_blk_controller(os.path.basename(sock), "rbd0")
    try:
        busy0, cpu0 = _busy(eng), _cpu_seconds()
        res = _initiator(initiator, sock, rw, bs, qd, seconds, cpu, like_qemu)
        busy1, cpu1 = _busy(eng), _cpu_seconds()
    finally:
        eng.vhost_delete_controller(os.path.basename(sock))
    ios = res["ios"]
    res["busy_ns_per_io"] = (busy1 - busy0) * 1e9 / eng.tick_rate / ios if ios else None
    # Interrupt mode: the target's CPU seconds per million I/Os.
    res["cpu_s_per_mio"] = (cpu1 - cpu0) * 1e6 / ios if ios else None
    return res


def _initiator(initiator, sock, rw, bs, qd, seconds, cpu, like_qemu):
    # As a QEMU guest drives the target: that QEMU's negotiated features,
    # interrupt mode, the inflight region (vhost_initiator --like-qemu).
    cmd = [str(initiator), "--socket", sock, "--rw", rw, "--bs", str(bs), "--qd", str(qd),
           "--queues", "1", "--time", str(seconds), "--json"]
    cmd += ["--like-qemu", like_qemu] if like_qemu else ["--interrupt"]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError("initiator failed (%d): %s %s"
                           % (proc.returncode, proc.stdout, proc.stderr))
    out = json.loads(proc.stdout[proc.stdout.find("{"):])
    res = out["main"]
    return {"iops": res["iops"], "p50": res["p50_us"], "p99": res["p99_us"],
            "ios": res["ios"], "features": out["features"],
            "protocol_features": out["protocol_features"]}


def parse_workload(text):
    rw, bs, qd = text.split(":")
    return rw, int(bs), int(qd)


def fmt(vals, digits=0):
    return "%.*f" % (digits, statistics.median(vals))


def fmt_range(vals, digits=0):
    return "%.*f (%.*f-%.*f)" % (digits, statistics.median(vals), digits, min(vals),
                                 digits, max(vals))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--workload", action="append", type=parse_workload,
                    help="rw:bs:qd (default randread:4096:32, randwrite:4096:32, "
                         "randread:4096:1)")
    ap.add_argument("--no-vhost", action="store_true", help="skip the vhost initiator runs")
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="split",
                    help="where everything runs (see the module docstring)")
    ap.add_argument("--spin-us", type=int, default=0,
                    help="reactor spin after work (0 = the engine's default)")
    prof = ap.add_mutually_exclusive_group()
    prof.add_argument("--like-qemu", metavar="VERSION",
                      help="the vhost initiator's --like-qemu profile (default: the "
                      "installed qemu-system-x86_64's version)")
    prof.add_argument("--interrupt-only", action="store_true",
                      help="the vhost initiator with --interrupt and its default "
                      "features (the profile of the runs before 2026-12-07)")
    ap.add_argument("--append", action="store_true", help="append to bench/RESULTS.md")
    args = ap.parse_args(argv)
    if not args.no_vhost and not args.like_qemu and not args.interrupt_only:
        args.like_qemu = qemu_version()
    workloads = args.workload or [("randread", 4096, 32), ("randwrite", 4096, 32),
                                  ("randread", 4096, 1)]

    initiator = ROOT / "native" / "build" / "tools" / "vhost_initiator"
    if not args.no_vhost:
        subprocess.run(["make", "-C", str(ROOT / "native"), "-j2", "tools"], check=True,
                       stdout=subprocess.DEVNULL, timeout=600)

    from spdk_backend.engine import Engine

    rows = []
    negotiated = set()
    load_before = os.getloadavg()[0]
    layout = LAYOUTS[args.layout]
    cpus = os.sched_getaffinity(0)
    if not {0, 1} <= cpus and args.layout != "float":
        ap.error("--layout %s uses CPUs 0 and 1 (this process may use %s): use --layout float"
                 % (args.layout, sorted(cpus)))
    with ceph.CephCluster(client_options={"rbd_cache": "false"}) as cluster:
        if layout["ceph"] is not None:
            for pid in cluster.daemon_pids():
                pin_process(pid, layout["ceph"])
        if layout["client"] is not None:
            # fio, the engine and every librbd thread they start inherit this.
            os.sched_setaffinity(0, layout["client"])
        cluster.rbd("create", "--size", "%dM" % args.size_mb, "%s/%s" % (cluster.pool, IMAGE))
        # Real data everywhere, so reads are not answered from unallocated objects.
        subprocess.run(["fio", "--name=fill", "--ioengine=rbd", "--clientname=admin",
                        "--pool=%s" % cluster.pool, "--rbdname=%s" % IMAGE, "--rw=write",
                        "--bs=4m", "--iodepth=8", "--size=%dM" % args.size_mb],
                       check=True, capture_output=True, timeout=900,
                       env=dict(os.environ, CEPH_CONF=cluster.conf))
        vdir = tempfile.mkdtemp(prefix="rbdb-", dir="/tmp")
        eng = Engine(core_mask=hex(1 << layout["reactor"]), vhost_socket_dir=vdir,
                     no_pin=not layout["pin_reactor"], spin_us=args.spin_us)
        eng.start()
        try:
            eng.bdev_rbd_create("rbd0", cluster.pool, IMAGE, block_size=512,
                                config_file=cluster.conf)
            sock = None if args.no_vhost else os.path.join(vdir, "vhost.rbd")
            for rw, bs, qd in workloads:
                res = {"fio-rbd": [], "engine": [], "vhost": []}
                for _ in range(args.rounds):
                    res["fio-rbd"].append(fio_rbd(cluster, rw, bs, qd, args.seconds))
                    res["engine"].append(engine_run(eng, rw, bs, qd, args.seconds))
                    if sock:
                        v = vhost_run(eng, initiator, sock, rw, bs, qd, args.seconds,
                                      layout["initiator"], args.like_qemu)
                        negotiated.add((v["features"], v["protocol_features"]))
                        res["vhost"].append(v)
                base = statistics.median(r["iops"] for r in res["fio-rbd"])
                base_iops = [r["iops"] for r in res["fio-rbd"]]
                for name, runs in res.items():
                    if not runs:
                        continue
                    iops = [r["iops"] for r in runs]
                    over = 100.0 * (1 - statistics.median(iops) / base) if base else 0.0
                    # Each round's IOPS over fio-rbd's of the same round.
                    ratios = [a / b for a, b in zip(iops, base_iops) if b]
                    busy = [r["busy_ns_per_io"] for r in runs
                            if r.get("busy_ns_per_io") is not None]
                    cpu = [r["cpu_s_per_mio"] for r in runs
                           if r.get("cpu_s_per_mio") is not None]
                    rows.append("| %s %d QD%d | %s | %s | %.0f-%.0f | %s | %s | %s | %s | "
                                "%s | %s | %s |" % (
                                    rw, bs, qd, name, fmt(iops), min(iops), max(iops),
                                    fmt([r["p50"] for r in runs], 1),
                                    fmt([r["p99"] for r in runs], 1),
                                    "-" if name == "fio-rbd" else "%+.1f%%" % over,
                                    " ".join("%.2f" % r for r in ratios),
                                    fmt_range(ratios, 2) if ratios else "-",
                                    fmt_range(busy) if busy else "-",
                                    fmt_range(cpu, 1) if cpu else "-"))
                    print(rows[-1], flush=True)
        finally:
            eng.stop()
            shutil.rmtree(vdir, ignore_errors=True)

    cmd = "python bench/rbd_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = ["", "## Ceph RBD: engine vs fio's rbd engine", "",
            "`%s` (%s, %s, %d CPUs; Ceph %s single-node cluster on 127.0.0.1, one "
            "bluestore OSD on a sparse file, rbd_cache off; %d x %d s per target, A B C "
            "alternating, medians; the vhost initiator in interrupt mode; layout %s: %s; "
            "reactor spin %s). Load average (1 min) %.1f before, %.1f after; %s." % (
                cmd.strip(), datetime.date.today().isoformat(), platform.machine(),
                os.cpu_count(), _ceph_version(), args.rounds, args.seconds, args.layout,
                layout["doc"], "%d us" % args.spin_us if args.spin_us else "default",
                load_before, os.getloadavg()[0], provenance()),
            ""]
    for feat, proto in sorted(negotiated):
        text.append("vhost: %s, negotiated features %s, protocol features %s "
                    "(interrupt mode)." % ("`--like-qemu %s`" % args.like_qemu
                                           if args.like_qemu else "`--interrupt`",
                                           feat, proto))
    text += ["",
             "| workload | target | IOPS | IOPS range | p50 us | p99 us | overhead vs fio-rbd "
             "| IOPS / fio-rbd per round | median (min-max) | reactor busy ns/IO "
             "| target CPU s / M IOs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"] + rows + [""]
    print("\n".join(text))
    if args.append:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write("\n".join(text))
    return 0


def pin_process(pid, cpus):
    """Pin every thread of ``pid`` (threads it starts later inherit it)."""
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:
            pass


def _ceph_version():
    try:
        out = subprocess.run(["ceph", "--version"], capture_output=True, text=True,
                             timeout=30).stdout
        return out.split()[2]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
