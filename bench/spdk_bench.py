#!/usr/bin/env python3
"""vhost-user-blk: our engine against SPDK's vhost target, side by side.

    python bench/spdk_bench.py --spdk-dir DIR [--time 3] [--rounds 3]
        [--bdev null malloc] [--qd 1 32] [--initiators ours bdevperf]
        [--size-mb 64] [--like-qemu VERSION] [--json-out FILE] [--perf-dir DIR]

DIR is an SPDK build tree (``build/bin/spdk_tgt`` or ``build/bin/vhost``,
``build/examples/bdevperf``); bench/RESULTS.md ("SPDK as the anchor") says
how one was built.  The project ships no SPDK code: this script only starts
SPDK's programs and talks JSON-RPC to them over their unix sockets.

Both targets run pinned to CPU 0 (SPDK's with ``-m 0x1``, our engine as
bench/vhost_bench.py serves it: ``--serve-engine`` under ``taskset -c 0``),
each with a null or malloc bdev of ``--size-mb`` behind one vhost-blk
controller, started fresh for every run and alternating SPDK, ours, SPDK,
ours, ...  The initiators, on CPU 1, 4 KiB random reads at each QD:

* ``ours``: native/build/tools/vhost_initiator with the ``--like-qemu``
  profile (as vhost_bench.py: the installed QEMU's, interrupt mode);
* ``bdevperf``: SPDK's bdevperf (``-m 0x2``) with a virtio-user blk bdev on
  the controller's socket (``bdev_virtio_attach_controller``, trtype user,
  vq_count 2), driven by its ``perform_tests`` RPC (``-z``).

Per run: IOPS, p50 latency (ours: the initiator's; bdevperf: its ``-l``
latency summary), and the target's busy time per completed I/O:
``framework_get_reactors`` busy ticks before and after the timed run
(SPDK: over RPC; our engine: the same counters through ``--serve-engine``'s
"stats"), divided by tick_rate and the I/Os the initiator completed; with our
initiator also the target's calls per I/O (call eventfd writes it waited
on), the initiator's sleeps per I/O (times its thread blocked waiting for a
call: a call that finds it awake costs no wake-up) and the virtio features
negotiated (SPDK offers no EVENT_IDX).  Then,
per point, each round's ours/SPDK ratio of IOPS and of busy ns per I/O,
their median (min-max), and whether the point meets the goal (IOPS ratio
>= 1 and busy ratio <= 0.8, on the medians).

SPDK needs hugepages: ``--hugepages-mb`` more 2 MiB pages are added to
/proc/sys/vm/nr_hugepages for the run and the earlier count is written back
at the end; each SPDK process's hugepage files and DPDK runtime directory
are removed after it stops.  Every target and bdevperf runs in its own
process group and is killed on any exit (exception, Ctrl-C, SIGTERM).
"""

import argparse
import glob
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import vhost_bench  # noqa: E402  (bench/ is not a package)

GOAL_IOPS = 1.0     # ours / SPDK, at least
GOAL_BUSY = 0.8     # ours / SPDK busy ns per I/O, at most

NO_SPDK_DIR = """\
spdk_bench.py needs an SPDK build tree: --spdk-dir DIR.
Build one outside this project (bench/RESULTS.md, "SPDK as the anchor"), e.g.:
  git clone https://github.com/spdk/spdk /work/spdk-src && cd /work/spdk-src
  git checkout v25.09 && git submodule update --init isa-l isa-l-crypto
  apt-get install libdpdk-dev libnuma-dev libaio-dev libfuse3-dev nasm \\
      autoconf automake libtool uuid-dev libssl-dev python3-pyelftools
  # Debian's DPDK is 22.11.x: lib/env_dpdk/pci_dpdk.c accepts 22.11 minor
  # releases up to .4; raise that bound (`if (minor > 4)` -> `if (minor > 11)`)
  ./configure --with-dpdk --without-crypto --disable-tests --disable-unit-tests
  make -j2 CONFIG_IPSEC_MB=n
then: python bench/spdk_bench.py --spdk-dir /work/spdk-src"""


# ---- the math (tests/unit/bench/test_spdk_bench.py) ----

def paired_ratios(ours, spdk):
    """Round-by-round ours/SPDK; a round where either side is missing or
    SPDK's value is 0 is left out."""
    return [a / b for a, b in zip(ours, spdk)
            if a is not None and b is not None and b]


def spread(vals):
    """(median, min, max), or None for no values."""
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def fmt(vals, digits=0):
    s = spread(vals)
    if s is None:
        return "-"
    return "%.*f (%.*f-%.*f)" % (digits, s[0], digits, s[1], digits, s[2])


def busy_ns_per_io(before, after, ios):
    """Busy ns per completed I/O from two (busy ticks, tick_rate) samples."""
    if before is None or after is None or not ios:
        return None
    return (after[0] - before[0]) * 1e9 / after[1] / ios


def goal(iops_ratios, busy_ratios):
    """"yes"/"no" on the medians of the paired ratios, "?" without them."""
    iops, busy = spread(iops_ratios), spread(busy_ratios)
    if iops is None or busy is None:
        return "?"
    return "yes" if iops[0] >= GOAL_IOPS and busy[0] <= GOAL_BUSY else "no"


def parse_bdevperf_p50(stdout):
    """The last 50th percentile of bdevperf's -l latency summary (us)."""
    hits = re.findall(r"^\s*50\.00000% :\s*([0-9.]+)us", stdout, re.M)
    return float(hits[-1]) if hits else None


# ---- SPDK's JSON-RPC ----

class RpcError(RuntimeError):
    pass


class SpdkRpc:
    """JSON-RPC 2.0 over SPDK's unix socket, one request at a time."""

    def __init__(self, path, timeout=30):
        self.path = path
        self.timeout = timeout
        self._id = 0

    def call(self, method, params=None, timeout=None):
        self._id += 1
        req = {"jsonrpc": "2.0", "method": method, "id": self._id}
        if params is not None:
            req["params"] = params
        dec = json.JSONDecoder()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout or self.timeout)
            # SPDK binds its socket before it listens: a fresh target may
            # refuse the first connections.
            deadline = time.monotonic() + 10
            while True:
                try:
                    s.connect(self.path)
                    break
                except (ConnectionRefusedError, FileNotFoundError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            s.sendall(json.dumps(req).encode())
            buf = ""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    raise RpcError("%s: connection closed" % method)
                buf += chunk.decode()
                try:
                    resp, _ = dec.raw_decode(buf.lstrip())
                    break
                except ValueError:
                    continue
        if "error" in resp:
            raise RpcError("%s: %s" % (method, resp["error"]))
        return resp["result"]


def wait_for(path, proc, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise RuntimeError("%s exited %d before %s appeared"
                               % (what, proc.returncode, path))
        if time.monotonic() > deadline:
            raise RuntimeError("%s: no %s after %ds" % (what, path, timeout))
        time.sleep(0.02)


def stop_group(proc, timeout=15):
    """SIGTERM to the process group (SPDK apps shut down cleanly on it),
    SIGKILL if it does not exit."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def dpdk_cleanup(pid):
    """What an SPDK process of `pid` may leave behind (killed, or not
    cleaned by DPDK): hugepage files and the runtime directory."""
    for f in glob.glob("/dev/hugepages/spdk_pid%d*" % pid):
        try:
            os.unlink(f)
        except OSError:
            pass
    shutil.rmtree("/var/run/dpdk/spdk_pid%d" % pid, ignore_errors=True)


class Hugepages:
    """Adds `mb` of 2 MiB pages for the run; writes the earlier count back."""

    PATH = "/proc/sys/vm/nr_hugepages"

    def __init__(self, mb):
        self.pages = (mb + 1) // 2
        self.prev = None

    def __enter__(self):
        with open(self.PATH) as f:
            self.prev = int(f.read())
        with open(self.PATH, "w") as f:
            f.write(str(self.prev + self.pages))
        with open(self.PATH) as f:
            got = int(f.read())
        if got < self.prev + self.pages:
            self.__exit__()
            raise RuntimeError("only %d of %d hugepages could be allocated"
                               % (got - self.prev, self.pages))
        return self

    def __exit__(self, *exc):
        if self.prev is not None:
            with open(self.PATH, "w") as f:
                f.write(str(self.prev))
        return False


class SpdkTarget:
    """SPDK's spdk_tgt (or vhost) on CPU 0 with one bdev behind one
    vhost-blk controller whose socket is `sock`."""

    def __init__(self, binary, kind, sock, log, size_mb, mem_mb, env=None):
        self.name = "spdk-" + kind
        self.env = env
        self.binary = binary
        self.kind = kind
        self.sock = sock
        self.log = log
        self.size = size_mb << 20
        self.mem_mb = mem_mb
        self.rpc_path = os.path.join(os.path.dirname(sock), "spdk-tgt.rpc")
        self.rpc = SpdkRpc(self.rpc_path)
        self.proc = None

    def __enter__(self):
        for p in (self.sock, self.rpc_path):
            if os.path.exists(p):
                os.unlink(p)
        argv = ["taskset", "-c", "0", self.binary, "-m", "0x1", "-r",
                self.rpc_path, "-S", os.path.dirname(self.sock), "-s",
                str(self.mem_mb), "--no-pci", "--disable-cpumask-locks"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env,
                                         start_new_session=True)
        try:
            wait_for(self.rpc_path, self.proc, "spdk target")
            self.rpc.call("framework_wait_init")
            blocks = self.size // 512
            params = {"name": "b0", "num_blocks": blocks, "block_size": 512}
            self.rpc.call("bdev_%s_create" % self.kind, params)
            self.rpc.call("vhost_create_blk_controller",
                          {"ctrlr": os.path.basename(self.sock),
                           "dev_name": "b0", "cpumask": "0x1"})
            wait_for(self.sock, self.proc, "spdk target")
        except BaseException:
            self.stop()
            raise
        return self

    def version(self):
        return self.rpc.call("spdk_get_version")["version"]

    def reactor_stats(self):
        st = self.rpc.call("framework_get_reactors")
        return sum(r["busy"] for r in st["reactors"]), st["tick_rate"]

    def stop(self):
        if self.proc is not None:
            stop_group(self.proc)
            dpdk_cleanup(self.proc.pid)
        for p in (self.sock, self.rpc_path):
            if os.path.exists(p):
                os.unlink(p)

    def __exit__(self, *exc):
        self.stop()
        return False


def engine_target(kind, sock, log, size_mb):
    """Our engine as bench/vhost_bench.py serves it, on CPU 0."""
    argv = ["taskset", "-c", "0", sys.executable,
            str(ROOT / "bench" / "vhost_bench.py"), "--serve-engine", kind,
            "--socket", sock, "--size-mb", str(size_mb)]
    return vhost_bench.Target("ours-" + kind, argv, sock, log, engine=True)


# ---- the initiators ----

class Perf:
    """``perf record -g`` of a target's process over a timed run (--perf-dir):
    DIR/LABEL.data, and its reports by symbol, self time (LABEL.self.txt) and
    with callees (LABEL.children.txt)."""

    def __init__(self, args, pid, label):
        self.pid = pid
        self.path = (os.path.join(args.perf_dir, label + ".data")
                     if args.perf_dir else None)
        self.proc = None

    def __enter__(self):
        if self.path:
            self.proc = subprocess.Popen(
                ["perf", "record", "-F", "2999", "-g", "-q", "-o", self.path,
                 "-p", str(self.pid)], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(0.3)  # attached before the run starts
        return self

    def __exit__(self, *exc):
        if self.proc is None:
            return False
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        for kind in ("self", "children"):
            with open("%s.%s.txt" % (self.path[:-len(".data")], kind), "w") as out:
                subprocess.run(["perf", "report", "-i", self.path, "--stdio",
                                "--sort", "symbol", "-g", "none",
                                "--percent-limit", "0.5",
                                "--children" if kind == "children" else "--no-children"],
                               stdout=out, stderr=subprocess.DEVNULL, timeout=300)
        return False


def run_ours(args, target, qd, label="ours"):
    if args.warmup > 0:
        vhost_bench.run_initiator(args.initiator, target.sock, qd, args.warmup,
                                  args.initiator_cpu, args.like_qemu)
    with Perf(args, target.proc.pid, label):
        before = target.reactor_stats()
        res = vhost_bench.run_initiator(args.initiator, target.sock, qd, args.time,
                                        args.initiator_cpu, args.like_qemu)
        after = target.reactor_stats()
    return {"iops": res["iops"], "p50": res["p50"], "ios": res["ios"],
            "busy_ns_per_io": busy_ns_per_io(before, after, res["ios"]),
            "calls_per_io": res["calls"] / res["ios"] if res["ios"] else None,
            "sleeps_per_io": (res["sleeps"] / res["ios"]
                              if res["ios"] and res.get("sleeps") is not None else None),
            "features": res["features"]}


def run_bdevperf(args, target, qd, tmp, label="bdevperf"):
    """SPDK's bdevperf on the controller's socket through virtio-user."""
    conf = os.path.join(tmp, "bdevperf.json")
    with open(conf, "w") as f:
        json.dump({"subsystems": [{"subsystem": "bdev", "config": [
            {"method": "bdev_virtio_attach_controller",
             "params": {"name": "vu0", "trtype": "user", "traddr": target.sock,
                        "dev_type": "blk", "vq_count": 2, "vq_size": 512}}]}]}, f)
    rpc_path = os.path.join(tmp, "bdevperf.rpc")
    out_path = os.path.join(tmp, "bdevperf.out")
    argv = ["taskset", "-c", str(args.initiator_cpu), args.bdevperf, "-m",
            "0x%x" % (1 << args.initiator_cpu), "-r", rpc_path, "--json", conf,
            "-z", "-q", str(qd), "-o", "4096", "-w", "randread", "-t",
            str(int(args.time)), "-l", "-s", str(args.bdevperf_mem_mb), "-g", "--no-pci",
            "--disable-cpumask-locks"]
    rpc = SpdkRpc(rpc_path)
    proc = None
    try:
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=args.spdk_env,
                                    start_new_session=True)
        wait_for(rpc_path, proc, "bdevperf")
        rpc.call("framework_wait_init")
        if args.warmup > 0:
            rpc.call("perform_tests", {"time_in_sec": max(1, round(args.warmup))},
                     timeout=args.warmup + 60)
        with Perf(args, target.proc.pid, label):
            before = target.reactor_stats()
            res = rpc.call("perform_tests", {"time_in_sec": int(args.time)},
                           timeout=args.time + 60)
            after = target.reactor_stats()
    except BaseException:
        stop_group(proc)
        if proc is not None:
            dpdk_cleanup(proc.pid)
        with open(out_path, errors="replace") as f:
            sys.stderr.write(f.read()[-3000:])
        raise
    stop_group(proc)
    dpdk_cleanup(proc.pid)
    with open(out_path, errors="replace") as f:
        stdout = f.read()
    (job,) = res["results"]
    if job.get("io_failed"):
        raise RuntimeError("bdevperf: %d I/Os failed" % job["io_failed"])
    ios = job["iops"] * job["runtime"]
    return {"iops": job["iops"], "p50": parse_bdevperf_p50(stdout),
            "ios": ios, "avg_us": job["avg_latency_us"],
            "busy_ns_per_io": busy_ns_per_io(before, after, ios)}


# ---- report ----

def provenance(spdk_version):
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                            "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return "commit %s%s; %s" % (commit or "unknown", " (modified)" if dirty else "",
                                spdk_version or "SPDK: version unknown")


def print_tables(points, samples):
    print("| bdev | initiator | QD | target | IOPS | p50 us | busy ns/IO | "
          "calls/IO | initiator sleeps/IO | features |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for bdev, init, qd in points:
        for side in ("spdk", "ours"):
            s = samples[(bdev, init, qd, side)]
            p50 = [x["p50"] for x in s if x["p50"] is not None]
            busy = [x["busy_ns_per_io"] for x in s if x["busy_ns_per_io"] is not None]
            # Our initiator counts the target's calls (interrupt mode); bdevperf polls.
            calls = [x["calls_per_io"] for x in s if x.get("calls_per_io") is not None]
            sleeps = [x["sleeps_per_io"] for x in s if x.get("sleeps_per_io") is not None]
            feats = sorted({x["features"] for x in s if x.get("features")})
            print("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |"
                  % (bdev, init, qd, side, fmt([x["iops"] for x in s]),
                     fmt(p50, 1), fmt(busy), fmt(calls, 3), fmt(sleeps, 3),
                     " ".join(feats) or "-"))
    print()
    print("| bdev | initiator | QD | IOPS ours/SPDK per round | median (min-max) | "
          "busy/IO ours/SPDK per round | median (min-max) | goal |")
    print("|---|---|---|---|---|---|---|---|")
    for bdev, init, qd in points:
        ours, spdk = samples[(bdev, init, qd, "ours")], samples[(bdev, init, qd, "spdk")]
        ir = paired_ratios([x["iops"] for x in ours], [x["iops"] for x in spdk])
        br = paired_ratios([x["busy_ns_per_io"] for x in ours],
                           [x["busy_ns_per_io"] for x in spdk])
        print("| %s | %s | %d | %s | %s | %s | %s | %s |"
              % (bdev, init, qd, " ".join("%.2f" % r for r in ir) or "-",
                 fmt(ir, 2), " ".join("%.2f" % r for r in br) or "-",
                 fmt(br, 2), goal(ir, br)))


def spdk_env(spdk_dir):
    """The environment SPDK's programs run in: a --with-dpdk build links
    its own libraries as shared objects under build/lib."""
    libs = [str(pathlib.Path(spdk_dir) / "build" / "lib")]
    if os.environ.get("LD_LIBRARY_PATH"):
        libs.append(os.environ["LD_LIBRARY_PATH"])
    return dict(os.environ, LD_LIBRARY_PATH=":".join(libs))


def spdk_binaries(spdk_dir):
    d = pathlib.Path(spdk_dir)
    tgt = next((p for p in (d / "build/bin/vhost", d / "build/bin/spdk_tgt")
                if p.exists()), None)
    perf = d / "build/examples/bdevperf"
    return (str(tgt) if tgt else None), (str(perf) if perf.exists() else None)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spdk-dir", help="an SPDK build tree")
    ap.add_argument("--time", type=float, default=3, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--qd", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--bdev", nargs="+", default=["null", "malloc"],
                    choices=["null", "malloc"])
    ap.add_argument("--initiators", nargs="+", default=["ours", "bdevperf"],
                    choices=["ours", "bdevperf"])
    ap.add_argument("--size-mb", type=int, default=64, help="bdev size")
    ap.add_argument("--spdk-mem-mb", type=int, default=0,
                    help="spdk_tgt -s (default: bdev size + 256)")
    ap.add_argument("--bdevperf-mem-mb", type=int, default=512,
                    help="bdevperf -s (its bdev_io pool needs more than 256)")
    ap.add_argument("--hugepages-mb", type=int, default=0,
                    help="hugepages added for the run (default: what both "
                    "SPDK processes take, + 256)")
    ap.add_argument("--initiator", default=str(vhost_bench.INITIATOR))
    ap.add_argument("--initiator-cpu", type=int, default=1)
    ap.add_argument("--like-qemu", metavar="VERSION",
                    help="our initiator's profile (default: the installed "
                    "qemu-system-x86_64's)")
    ap.add_argument("--json-out", help="write every sample here")
    ap.add_argument("--perf-dir", help="profile each target over each timed run "
                    "with perf record -g into this directory (and its reports "
                    "by symbol); the profiler's cost is in that run's numbers")
    args = ap.parse_args(argv)
    if args.perf_dir:
        if shutil.which("perf") is None:
            ap.error("--perf-dir needs perf (Debian: linux-perf)")
        os.makedirs(args.perf_dir, exist_ok=True)
    if args.rounds < 1 or args.time < 1:
        ap.error("--rounds and --time must be at least 1")
    if not args.spdk_mem_mb:
        args.spdk_mem_mb = args.size_mb + 256
    if not args.hugepages_mb:
        args.hugepages_mb = args.spdk_mem_mb + args.bdevperf_mem_mb + 256
    return args


def main(argv=None):
    args = parse_args(argv)
    if not args.spdk_dir:
        print(NO_SPDK_DIR, file=sys.stderr)
        return 2
    args.target_bin, args.bdevperf = spdk_binaries(args.spdk_dir)
    args.spdk_env = spdk_env(args.spdk_dir)
    if args.target_bin is None or ("bdevperf" in args.initiators and
                                   args.bdevperf is None):
        print("%s is not an SPDK build tree (no build/bin/spdk_tgt or "
              "build/examples/bdevperf)\n\n%s" % (args.spdk_dir, NO_SPDK_DIR),
              file=sys.stderr)
        return 2
    if "ours" in args.initiators and not args.like_qemu:
        args.like_qemu = vhost_bench.qemu_version()
    if not os.path.exists(args.initiator):
        subprocess.run(["make", "-C", str(ROOT / "native"), "-j2", "tools"],
                       check=True, stdout=subprocess.DEVNULL)

    def _term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, _term)

    points = [(b, i, qd) for b in args.bdev for i in args.initiators for qd in args.qd]
    samples = {(b, i, qd, side): [] for b, i, qd in points for side in ("spdk", "ours")}
    spdk_version = None
    load_start = vhost_bench.loadavg()
    with tempfile.TemporaryDirectory(prefix="spdk-bench-") as tmp, \
            Hugepages(args.hugepages_mb):
        sock = os.path.join(tmp, "vu.sock")
        log = os.path.join(tmp, "target.log")
        try:
            for rnd in range(args.rounds):
                for bdev, init, qd in points:
                    for side in ("spdk", "ours"):
                        if side == "spdk":
                            target = SpdkTarget(args.target_bin, bdev, sock, log,
                                                args.size_mb, args.spdk_mem_mb,
                                                args.spdk_env)
                        else:
                            target = engine_target(bdev, sock, log, args.size_mb)
                        with target:
                            if side == "spdk" and spdk_version is None:
                                spdk_version = target.version()
                            label = "%s-%s-qd%d-%s-r%d" % (bdev, init, qd, side, rnd + 1)
                            if init == "ours":
                                res = run_ours(args, target, qd, label)
                            else:
                                res = run_bdevperf(args, target, qd, tmp, label)
                        samples[(bdev, init, qd, side)].append(res)
                        print("round %d %-6s %-8s qd %-3d %-4s %9.0f IOPS p50 %s"
                              " busy %s ns/IO"
                              % (rnd + 1, bdev, init, qd, side, res["iops"],
                                 "-" if res["p50"] is None else "%.1f" % res["p50"],
                                 "-" if res["busy_ns_per_io"] is None else
                                 "%.0f" % res["busy_ns_per_io"]), file=sys.stderr)
        except BaseException:
            if os.path.exists(log):
                with open(log, errors="replace") as f:
                    sys.stderr.write("target log (tail):\n" + f.read()[-3000:])
            raise

    print("\n%s; load average at the start %s, at the end %s"
          % (provenance(spdk_version), load_start, vhost_bench.loadavg()))
    print("4 KiB randread, 1 queue; targets on CPU 0 (SPDK: %s -m 0x1; our "
          "engine, reactor on core 0), fresh for every run, alternating SPDK, "
          "ours; initiators on CPU %d (ours: vhost_initiator --like-qemu %s; "
          "bdevperf: virtio-user, vq_count 2); %d MiB bdevs; %d rounds x %gs; "
          "median (min-max)\n"
          % (os.path.basename(args.target_bin), args.initiator_cpu,
             args.like_qemu or "-", args.size_mb, args.rounds, args.time))
    print_tables(points, samples)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"%s/%s/qd%d/%s" % k: v for k, v in samples.items()}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
