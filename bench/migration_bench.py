#!/usr/bin/env python3
"""Live-migration downtime: a vhost-user-blk disk against QEMU's own disk.

    python bench/migration_bench.py [--rounds 5] [--bandwidth-mib 64]
        [--downtime-limit-ms 300] [--disk-mb 32] [--guest-mb 256]

Per round, alternating, the same TCG guest (tests/support/guest.py) with a
disk on the same prefilled file migrates over a unix socket to a second
QEMU on this machine, while the guest writes a 1 MiB O_DIRECT chunk and
reads its whole disk through the page cache once a second (more and the
migration would not converge at this bandwidth), and a ticker reads 4 KiB
O_DIRECT blocks back to back (completions keep coming, so that the longest
gap between them is the stall the migration caused):

* ``vhost``: the file served by two spdk-backend agents (A for the source,
  B for the destination; ``shared``), a vhost-user-blk-pci disk;
* ``qemu-file``: QEMU's own virtio-blk-pci on the file (``aio=io_uring``,
  ``cache.direct=on``), as a migration with storage both hosts share.

Reported per target: QEMU's downtime and total time (query-migrate), the
RAM it sent, and for ``vhost`` the longest gap between completions the
agents counted (the guest-visible stall; for QEMU's disk there is no such
counter).  Ratios are vhost / qemu-file of each round's pair (median,
min-max).  Prints the commit, the QEMU version and the load average.
"""

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import guest as guest_support  # noqa: E402
from tests.support import migration  # noqa: E402

MB = 1 << 20
CMDLINE = "console=ttyS0 quiet panic=-1"


def _workload(shell, disk, mb):
    shell.check("exec 7</dev/%s; rm -f /tmp/stop" % disk)
    shell.job_start(
        "wl",
        "i=0; while [ ! -e /tmp/stop ]; do m=$((i %% %d)); "
        "dd if=/dev/urandom of=/tmp/w bs=64k count=16 2>/dev/null; "
        "dd if=/tmp/w of=/dev/%s bs=64k seek=$((m*16)) oflag=direct 2>/dev/null; "
        "echo 3 > /proc/sys/vm/drop_caches; "
        "dd if=/dev/%s of=/dev/null bs=64k 2>/dev/null; i=$((i+1)); sleep 1; done"
        % (mb, disk, disk))
    shell.job_start(
        "tick",
        "while [ ! -e /tmp/stop ]; do "
        "dd if=/dev/%s of=/dev/null bs=4k count=256 iflag=direct 2>/dev/null; done" % disk)


def _stop_workload(shell):
    shell.check("touch /tmp/stop")
    shell.job_wait("wl", 120)
    shell.job_wait("tick", 120)


def _qemu_disk(path):
    return ["-blockdev", "driver=file,filename=%s,node-name=f0,aio=io_uring,"
            "cache.direct=on" % path,
            "-blockdev", "driver=raw,file=f0,node-name=d0",
            "-device", "virtio-blk-pci,drive=d0,id=vd0"]


def run_vhost(image, work, hosts, path, args, n):
    a, b = hosts
    ctrlr = "bm%d" % n
    sock_a = a.serve_file(ctrlr, path)
    sock_b = b.serve_file(ctrlr, path)
    uri = "unix:%s/mig-v%d.sock" % (work, n)
    kw = dict(mem_mb=args.guest_mb, cmdline=CMDLINE)
    src = dst = None
    try:
        src = guest_support.QemuGuest(image, work, disks=[guest_support.VhostDisk(sock_a)],
                                      **kw).start()
        dst = migration.incoming_guest(image, work, [guest_support.VhostDisk(sock_b)], uri,
                                       **kw)
        _workload(src.shell, "vda", args.disk_mb)
        time.sleep(1)
        with migration.CompletionWatch([(a, ctrlr), (b, ctrlr)]) as watch:
            t0 = time.monotonic()
            info = migration.migrate(src, uri, max_bandwidth=args.bandwidth_mib * MB,
                                     downtime_limit_ms=args.downtime_limit_ms)
            t1 = time.monotonic()
            time.sleep(1)
        assert info["status"] == "completed", info
        _stop_workload(dst.shell)
        return info, watch.longest_gap(t0, t1 + 1.0)
    finally:
        for g in (dst, src):
            if g is not None:
                g.stop()
        for h in (a, b):
            try:
                h.remove(ctrlr)
            except Exception:
                pass


def run_qemu_file(image, work, path, args, n):
    uri = "unix:%s/mig-q%d.sock" % (work, n)
    kw = dict(mem_mb=args.guest_mb, cmdline=CMDLINE, extra_args=_qemu_disk(path))
    src = dst = None
    try:
        src = guest_support.QemuGuest(image, work, **kw).start()
        dst = migration.incoming_guest(image, work, [], uri, **kw)
        _workload(src.shell, "vda", args.disk_mb)
        time.sleep(1)
        info = migration.migrate(src, uri, max_bandwidth=args.bandwidth_mib * MB,
                                 downtime_limit_ms=args.downtime_limit_ms)
        assert info["status"] == "completed", info
        _stop_workload(dst.shell)
        return info, None
    finally:
        for g in (dst, src):
            if g is not None:
                g.stop()


def fmt(vals, digits=0):
    return "%.*f (%.*f-%.*f)" % (digits, statistics.median(vals), digits, min(vals),
                                 digits, max(vals))


def provenance():
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                            "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                          text=True).stdout.splitlines()[0]
    return "commit %s%s; %s; load average %s" % (
        commit, " (modified)" if dirty else "", qemu,
        " ".join("%.2f" % x for x in os.getloadavg()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bandwidth-mib", type=int, default=64)
    ap.add_argument("--downtime-limit-ms", type=int, default=300)
    ap.add_argument("--disk-mb", type=int, default=32)
    ap.add_argument("--guest-mb", type=int, default=256)
    args = ap.parse_args(argv)
    print(provenance(), flush=True)
    image = guest_support.build_guest_image()
    work = tempfile.mkdtemp(prefix="sb-migb-")
    hosts = []
    try:
        path = os.path.join(work, "disk.img")
        with open(path, "wb") as f:
            for _ in range(args.disk_mb):
                f.write(os.urandom(MB))
        hosts = [migration.Host(os.path.join(work, h)).start() for h in ("a", "b")]
        res = {"vhost": [], "qemu-file": []}
        for n in range(args.rounds):
            res["vhost"].append(run_vhost(image, work, hosts, path, args, n))
            res["qemu-file"].append(run_qemu_file(image, work, path, args, n))
            print("round %d: vhost downtime %s ms, qemu-file %s ms" % (
                n, res["vhost"][-1][0].get("downtime"),
                res["qemu-file"][-1][0].get("downtime")), flush=True)
        print(provenance())
        print()
        print("| target | downtime ms | total ms | RAM sent MiB | stall ms |")
        print("|---|---|---|---|---|")
        for name, runs in res.items():
            down = [r[0]["downtime"] for r in runs]
            total = [r[0]["total-time"] for r in runs]
            ram = [r[0]["ram"]["transferred"] / MB for r in runs]
            stall = [r[1] * 1000 for r in runs if r[1] is not None]
            print("| %s | %s | %s | %s | %s |" % (name, fmt(down), fmt(total), fmt(ram),
                                                  fmt(stall) if stall else "n/a"))
        ratios = [v[0]["downtime"] / max(q[0]["downtime"], 1)
                  for v, q in zip(res["vhost"], res["qemu-file"])]
        print()
        print("downtime vhost / qemu-file, paired per round: %s" % fmt(ratios, 2))
    finally:
        for h in hosts:
            h.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
