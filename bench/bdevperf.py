#!/usr/bin/env python3
"""Engine benchmark: bdevperf on null and malloc bdevs at several queue
depths, and the uring backend side by side with fio's io_uring engine on
the same file, same block size and queue depth, in the same run.

    python bench/bdevperf.py [--time 5] [--repeat 3] [--file PATH] [--size-mb 1024]

Both tools run pinned to CPU 0 (bdevperf's reactor, ``taskset -c 0`` for
fio) and the runs alternate A B A B so that drift on this shared machine
hits both.  Prints a markdown table (medians, with min-max spread).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
BDEVPERF = ROOT / "native" / "build" / "tools" / "bdevperf"


def run_bdevperf(bdev, qd, seconds, rw="randread", file=None, size_mb=1024, core=0):
    cmd = [str(BDEVPERF), "--bdev", bdev, "--rw", rw, "--bs", "4096", "--qd", str(qd),
           "--time", str(seconds), "--core-mask", "[%d]" % core, "--json",
           "--size-mb", str(size_mb)]
    if file:
        cmd += ["--file", file]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         timeout=seconds + 120).stdout
    res = json.loads(out.strip().splitlines()[-1])
    return {"iops": res["iops"], "p50": res["lat_p50_us"], "p99": res["lat_p99_us"]}


def run_fio(file, qd, seconds, rw="randread", core=0):
    cmd = ["taskset", "-c", str(core), "fio", "--name=job", "--filename=" + file,
           "--ioengine=io_uring", "--direct=1", "--rw=" + rw, "--bs=4096",
           "--iodepth=%d" % qd, "--numjobs=1", "--time_based", "--runtime=%s" % seconds,
           "--norandommap", "--randrepeat=0", "--output-format=json", "--group_reporting"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         timeout=seconds + 120).stdout
    job = json.loads(out)["jobs"][0]
    side = job["read"] if "read" in rw else job["write"]
    pct = side["clat_ns"].get("percentile", {})
    return {"iops": side["iops"], "p50": pct.get("50.000000", 0) / 1000.0,
            "p99": pct.get("99.000000", 0) / 1000.0}


def summarize(samples, key):
    vals = [s[key] for s in samples]
    return statistics.median(vals), min(vals), max(vals)


def fmt(samples, key, digits=0):
    med, lo, hi = summarize(samples, key)
    return "%.*f (%.*f-%.*f)" % (digits, med, digits, lo, digits, hi)


def make_file(path, size_mb):
    """A fully allocated file, so reads hit real blocks and not holes."""
    if os.path.exists(path) and os.path.getsize(path) == size_mb << 20:
        return
    subprocess.run(["fio", "--name=fill", "--filename=" + path, "--rw=write",
                    "--bs=1M", "--size=%dM" % size_mb, "--ioengine=psync", "--direct=1",
                    "--output=/dev/null"], check=True, timeout=600)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", type=float, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--file", help="file for the uring/fio comparison (created, 1 GiB)")
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--qds", default="1,32,128")
    args = ap.parse_args(argv)
    if not BDEVPERF.exists():
        subprocess.run(["make", "-C", str(ROOT / "native"), "-j2", "tools"], check=True)
    qds = [int(q) for q in args.qds.split(",")]

    print("## bdevperf, 4 KiB random read, one reactor on CPU 0\n")
    print("| bdev | QD | IOPS median (min-max) | p50 us | p99 us |")
    print("|---|---|---|---|---|")
    for bdev in ("null", "malloc"):
        for qd in qds:
            samples = [run_bdevperf(bdev, qd, args.time, size_mb=args.size_mb)
                       for _ in range(args.repeat)]
            print("| %s | %d | %s | %s | %s |" % (bdev, qd, fmt(samples, "iops"),
                                                  fmt(samples, "p50", 2),
                                                  fmt(samples, "p99", 2)))
    sys.stdout.flush()

    tmpdir = None
    path = args.file
    if path is None:
        tmpdir = tempfile.mkdtemp(prefix="sb-bench-", dir=str(ROOT / "bench"))
        path = os.path.join(tmpdir, "data.img")
    try:
        make_file(path, args.size_mb)
        print("\n## uring bdev vs fio --ioengine=io_uring (O_DIRECT), same file, CPU 0\n")
        print("| rw | QD | engine IOPS | fio IOPS | ratio | engine p50/p99 us | "
              "fio p50/p99 us |")
        print("|---|---|---|---|---|---|---|")
        for rw in ("randread", "randwrite"):
            for qd in qds:
                eng, fio = [], []
                for _ in range(args.repeat):  # A B A B
                    eng.append(run_bdevperf("uring", qd, args.time, rw=rw, file=path))
                    fio.append(run_fio(path, qd, args.time, rw=rw))
                ratio = summarize(eng, "iops")[0] / max(summarize(fio, "iops")[0], 1)
                print("| %s | %d | %s | %s | %.2f | %.1f / %.1f | %.1f / %.1f |" % (
                    rw, qd, fmt(eng, "iops"), fmt(fio, "iops"), ratio,
                    summarize(eng, "p50")[0], summarize(eng, "p99")[0],
                    summarize(fio, "p50")[0], summarize(fio, "p99")[0]))
                sys.stdout.flush()
    finally:
        if tmpdir:
            for f in os.listdir(tmpdir):
                os.unlink(os.path.join(tmpdir, f))
            os.rmdir(tmpdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
