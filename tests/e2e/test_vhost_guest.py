"""Our vhost-user-blk target serving a real QEMU 7.2 guest (TCG).

The guest is Debian's cloud kernel with a busybox initramfs
(tests/support/guest.py) plus util-linux's ``blkdiscard`` (for ``-z``,
BLKZEROOUT).  The engine runs as a separate process
(tests/support/vhost_target.py, or the real ``spdk-backend-agent``) so
that it can be SIGKILLed and started again under a running guest.

* One guest (2 vCPUs) with five disks, served by an engine on cores 0
  and 1, serves the data, 2-queue, read-only, resize, discard/write-zeroes,
  FLUSH and serial tests:
  vda = c0 (uring on a 64 MiB file, 2 queues, a serial given at creation),
  vdb = ro (read-only uring on a file of host-made random data), vdc = rz
  (uring, grown later), vdd = nl (a null bdev: no volatile cache, so no
  VIRTIO_BLK_F_FLUSH), all four on reactor 0 (no cpumask), and vde = mq
  (uring, 2 queues on cpumask 0x3: queue 0 on reactor 0, queue 1 on 1).
* The kill tests boot their own guest: 4 guest writers fill a 64 MiB disk
  while the serving process is SIGKILLed at least 3 times and restarted;
  QEMU (reconnect=1) re-attaches and the target resubmits what was in
  flight (inflight tracking), so the guest sees no error and the data,
  read back by the guest and in the host file, is exactly what it wrote.

Guest data is 64 MiB of /dev/urandom kept in the guest's tmpfs; the guest
reports its MD5 (and per MiB), the host computes the same on the backing
file.
"""

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
import zlib

import pytest

from tests.support import agent_proc, guest, qemu_features
from tests.support.vhost_target import EngineTarget

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

MB = 1 << 20
DISK_MB = 64
RO_MB = 16
RZ_MB = 16
RZ_GROWN_MB = 48
NULL_MB = 16
MQ_MB = 16
C0_SERIAL = "SB-E2E-SERIAL-C0-20c"  # 20 bytes: all of virtio-blk's ID field
# What a guest kernel prints when I/O on a disk failed or stalled.
DMESG_ERRORS = (r"I/O error|blk_update_request|Buffer I/O|critical (medium|target)"
                r"|virtio_blk.*(error|timeout|reset)|hung_task|blocked for more")


def _blkdiscard():
    """util-linux's blkdiscard (busybox's has no -z)."""
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        path = os.path.join(d, "blkdiscard")
        if os.path.isfile(path) and not os.path.islink(path):
            return path
    raise AssertionError("util-linux blkdiscard not found on the host")


@pytest.fixture(scope="module")
def image():
    return guest.build_guest_image(extra_binaries=[_blkdiscard()])


@pytest.fixture
def workdir():
    # Short paths (unix sockets), removed whatever happened.
    path = tempfile.mkdtemp(prefix="sb-e2e-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _sparse(path, mb):
    with open(path, "wb") as f:
        f.truncate(mb * MB)


def _md5_file(path, offset=0, length=None):
    h = hashlib.md5()
    with open(path, "rb") as f:
        f.seek(offset)
        left = length if length is not None else os.path.getsize(path) - offset
        while left > 0:
            chunk = f.read(min(left, MB))
            assert chunk, "short read of %s" % path
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def _md5_per_mib(path, mb):
    return [_md5_file(path, i * MB, MB) for i in range(mb)]


def _md5_of(out):
    """The first MD5 in md5sum output."""
    m = re.search(r"\b([0-9a-f]{32})\b", out)
    assert m, out
    return m.group(1)


def _make_pattern(sh, mb, path="/tmp/pat"):
    """`mb` MiB of /dev/urandom in the guest's tmpfs; its MD5."""
    sh.check("dd if=/dev/urandom of=%s bs=1M count=%d 2>/dev/null" % (path, mb),
             timeout=120)
    return _md5_of(sh.check("md5sum %s" % path, timeout=60))


def _guest_md5(sh, dev, mb, skip_mb=0):
    """MD5 of `mb` MiB of `dev` read by the guest with O_DIRECT."""
    return _md5_of(sh.check("dd if=%s bs=1M skip=%d count=%d iflag=direct 2>/dev/null"
                            " | md5sum" % (dev, skip_mb, mb), timeout=180))


def _dmesg_errors(sh):
    # Filtered in the guest: the TCG serial console is slow.
    _, out = sh.run("dmesg | grep -i -E '%s'" % DMESG_ERRORS, timeout=60)
    return [line for line in out.splitlines() if line.strip()]


def _iostat(stats, name):
    (bdev,) = [b for b in stats["bdevs"] if b["name"] == name]
    return bdev


# ---------------------------------------------------------------------------
# One guest, several disks
# ---------------------------------------------------------------------------

class SharedGuest:
    """The shared target + guest of the data/queues/ro/resize/discard tests."""


@pytest.fixture(scope="module")
def bench(image):
    b = SharedGuest()
    b.dir = tempfile.mkdtemp(prefix="sb-e2e-")
    b.data = os.path.join(b.dir, "data.img")
    b.ro_file = os.path.join(b.dir, "ro.img")
    b.rz_file = os.path.join(b.dir, "rz.img")
    b.mq_file = os.path.join(b.dir, "mq.img")
    _sparse(b.data, DISK_MB)
    _sparse(b.mq_file, MQ_MB)
    _sparse(b.rz_file, RZ_MB)
    with open(b.ro_file, "wb") as f:
        f.write(os.urandom(RO_MB * MB))
    b.ro_md5 = _md5_file(b.ro_file)
    sock_dir = os.path.join(b.dir, "vhost")
    config = {"socket_dir": sock_dir, "core_mask": "0x3",
              "bdevs": [{"type": "uring", "name": "u0", "filename": b.data},
                        {"type": "uring", "name": "r0", "filename": b.ro_file},
                        {"type": "uring", "name": "z0", "filename": b.rz_file},
                        {"type": "null", "name": "n0", "num_blocks": NULL_MB * MB // 512},
                        {"type": "uring", "name": "q0", "filename": b.mq_file}],
              "controllers": [{"ctrlr": "c0", "dev_name": "u0", "max_queues": 2,
                               "serial": C0_SERIAL},
                              {"ctrlr": "ro", "dev_name": "r0", "readonly": True},
                              {"ctrlr": "rz", "dev_name": "z0"},
                              {"ctrlr": "nl", "dev_name": "n0"},
                              {"ctrlr": "mq", "dev_name": "q0", "max_queues": 2,
                               "cpumask": "0x3"}]}
    b.target = EngineTarget(config, b.dir)
    b.vm = None
    try:
        b.target.start()
        b.vm = guest.QemuGuest(
            image, b.dir, mem_mb=384, smp=2, boot_timeout=150,
            disks=[guest.VhostDisk(os.path.join(sock_dir, "c0"), num_queues=2),
                   guest.VhostDisk(os.path.join(sock_dir, "ro")),
                   guest.VhostDisk(os.path.join(sock_dir, "rz")),
                   guest.VhostDisk(os.path.join(sock_dir, "nl")),
                   guest.VhostDisk(os.path.join(sock_dir, "mq"), num_queues=2)])
        b.vm.start()
        b.sh = b.vm.shell
        yield b
    finally:
        if b.vm is not None:
            b.vm.stop()
        b.target.stop()
        # Shown with the failure report of the last test of the module.
        print("--- target log:\n" + b.target.log())
        shutil.rmtree(b.dir, ignore_errors=True)


def test_guest_writes_whole_disk_and_host_file_matches(bench):
    sh = bench.sh
    assert int(sh.check("cat /sys/block/vda/size")) * 512 == DISK_MB * MB
    want = _make_pattern(sh, DISK_MB)
    # Per MiB, so a mismatch says where.
    per_mib = [_md5_of(line) for line in sh.check(
        "i=0; while [ $i -lt %d ]; do dd if=/tmp/pat bs=1M skip=$i count=1 2>/dev/null"
        " | md5sum; i=$((i+1)); done" % DISK_MB, timeout=180).splitlines() if line.strip()]
    assert len(per_mib) == DISK_MB
    assert len(set(per_mib)) == DISK_MB  # no two MiB alike: not a constant pattern

    out = sh.check("dd if=/tmp/pat of=/dev/vda bs=1M oflag=direct 2>&1", timeout=180)
    assert "%d+0 records out" % DISK_MB in out, out
    # The guest reads back what it wrote, from the device (O_DIRECT).
    assert _guest_md5(sh, "/dev/vda", DISK_MB) == want

    # The host file holds exactly those bytes, MiB by MiB.
    assert os.path.getsize(bench.data) == DISK_MB * MB
    assert _md5_per_mib(bench.data, DISK_MB) == per_mib
    assert _md5_file(bench.data) == want
    with open(bench.data, "rb") as f:
        first = f.read(MB)
    assert len(zlib.compress(first)) > 0.99 * MB  # random, incompressible
    assert _dmesg_errors(sh) == []


def _two_writers(bench, dev, ctrlr, host_file):
    """One writer per vCPU (so each hardware queue carries half the writes):
    both queues' interrupts fire and the data lands where it should."""
    sh = bench.sh
    assert sh.check("ls /sys/block/%s/mq" % dev).split() == ["0", "1"]
    (info,) = bench.target.call("vhost_get_controllers", name=ctrlr)
    assert info["connected"] and info["num_queues"] == 2, info

    vdev = sh.check("basename $(readlink /sys/block/%s/device)" % dev).strip()
    assert re.match(r"virtio\d+$", vdev), vdev

    def irqs():
        # One MSI-X vector per virtqueue: virtioN-req.0, virtioN-req.1.
        out = sh.check("grep ' %s-req' /proc/interrupts" % vdev)
        counts = {}
        for line in out.splitlines():
            fields = line.split()
            counts[fields[-1]] = sum(int(x) for x in fields[1:3])
        return counts

    before = irqs()
    assert sorted(before) == [vdev + "-req.0", vdev + "-req.1"], before
    want = _make_pattern(sh, 16, "/tmp/pat2")
    # One writer per vCPU, so each hardware queue carries half the writes.
    sh.check("taskset 1 dd if=/tmp/pat2 of=/dev/%s bs=64k count=128 oflag=direct "
             "2>/tmp/q0.log & taskset 2 dd if=/tmp/pat2 of=/dev/%s bs=64k skip=128 "
             "seek=128 count=128 oflag=direct 2>/tmp/q1.log & "
             "wait %%1 && wait %%2" % (dev, dev), timeout=180)
    after = irqs()
    for q in before:
        assert after[q] > before[q], (before, after)
    assert _guest_md5(sh, "/dev/" + dev, 16) == want
    assert _md5_file(host_file, 0, 16 * MB) == want
    assert _dmesg_errors(sh) == []


def test_two_queues(bench):
    _two_writers(bench, "vda", "c0", bench.data)


def _vhost_pollers(bench, ctrlr):
    """{reactor core: busy count of the controller's poller there}."""
    return {r["lcore"]: p["busy_count"] for r in bench.target.call("reactors")
            for p in r["pollers"] if p["name"] == "vhost_" + ctrlr}


def test_two_queues_on_two_reactors(bench):
    """vde's queue 0 runs on reactor 0 and queue 1 on reactor 1."""
    (info,) = bench.target.call("vhost_get_controllers", name="mq")
    assert [(q["reactor_core"], q["started"]) for q in info["queues"]] == \
        [(0, True), (1, True)], info
    before = _vhost_pollers(bench, "mq")
    assert sorted(before) == [0, 1], before
    _two_writers(bench, "vde", "mq", bench.mq_file)
    after = _vhost_pollers(bench, "mq")
    # Both reactors found work for their queue.
    assert all(after[core] > before[core] for core in (0, 1)), (before, after)


def _thread_cpu_seconds(pid, comm):
    """CPU time (user + system) of the threads of pid named comm."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                if f.read().strip() != comm:
                    continue
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def test_idle_guest_costs_no_reactor_cpu(bench):
    """Five connected, idle virtio-blk disks (one with a queue on each
    reactor): both reactors sleep, kicks wake them."""
    sh = bench.sh
    sh.check("sync")
    pid = bench.target.proc.pid
    time.sleep(1)
    reactors = ("reactor_0", "reactor_1")
    cpu0, t0 = [_thread_cpu_seconds(pid, r) for r in reactors], time.monotonic()
    time.sleep(4)
    cpu1, t1 = [_thread_cpu_seconds(pid, r) for r in reactors], time.monotonic()
    for name, before, after in zip(reactors, cpu0, cpu1):
        share = (after - before) / (t1 - t0)
        print("%s CPU with an idle guest: %.2f%%" % (name, 100 * share))
        # A reactor that kept polling would be near 100 %; sleeping, it is ~0.
        assert share < 0.05, (name, share)
    # And they still answer at once when the guest comes back (vde's queue 1,
    # the one of the guest's second vCPU, on reactor 1).
    out = sh.check("dd if=/dev/vda of=/dev/null bs=4k count=256 iflag=direct 2>&1",
                   timeout=60)
    assert "256+0 records in" in out, out
    out = sh.check("taskset 2 dd if=/dev/vde of=/dev/null bs=4k count=256 iflag=direct 2>&1",
                   timeout=60)
    assert "256+0 records in" in out, out


def test_readonly_controller(bench):
    sh = bench.sh
    assert sh.check("cat /sys/block/vdb/ro").strip() == "1"
    assert _guest_md5(sh, "/dev/vdb", RO_MB) == bench.ro_md5
    writes = ["dd if=/dev/zero of=/dev/vdb bs=4k count=1 oflag=direct",
              "dd if=/dev/zero of=/dev/vdb bs=1M count=2 seek=3 conv=fsync",
              "blkdiscard -o 0 -l 1048576 /dev/vdb",
              "/extra/bin/blkdiscard -z -o 0 -l 1048576 /dev/vdb"]
    for cmd in writes:
        status, out = sh.run(cmd + " 2>&1", timeout=60)
        assert status != 0, (cmd, out)
    (info,) = bench.target.call("vhost_get_controllers", name="ro")
    assert info["backend_specific"]["block"]["readonly"] is True
    stat = _iostat(bench.target.call("bdev_get_iostat", name="r0"), "r0")
    assert stat["num_write_ops"] == 0 and stat["num_unmap_ops"] == 0, stat
    assert stat["num_write_zeroes_ops"] == 0, stat
    # Nothing changed, on the host or as the guest reads it from the device.
    assert _md5_file(bench.ro_file) == bench.ro_md5
    sh.check("echo 3 > /proc/sys/vm/drop_caches")
    assert _guest_md5(sh, "/dev/vdb", RO_MB) == bench.ro_md5


def test_resize_seen_by_guest(bench):
    sh = bench.sh
    assert int(sh.check("cat /sys/block/vdc/size")) == RZ_MB * MB // 512
    os.truncate(bench.rz_file, RZ_GROWN_MB * MB)
    bench.target.call("bdev_uring_rescan", name="z0")
    deadline = time.monotonic() + 30
    while True:
        size = int(sh.check("cat /sys/block/vdc/size"))
        if size == RZ_GROWN_MB * MB // 512 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert size == RZ_GROWN_MB * MB // 512
    assert "[vdc] new size: %d 512-byte" % size in sh.check("dmesg | grep 'new size'")
    # The new space is usable: the guest writes its last MiB, the host sees it.
    want = _make_pattern(sh, 1, "/tmp/pat3")
    sh.check("dd if=/tmp/pat3 of=/dev/vdc bs=1M seek=%d count=1 oflag=direct"
             % (RZ_GROWN_MB - 1), timeout=60)
    assert _md5_file(bench.rz_file, (RZ_GROWN_MB - 1) * MB, MB) == want
    assert _guest_md5(sh, "/dev/vdc", 1, RZ_GROWN_MB - 1) == want
    assert _dmesg_errors(sh) == []


def test_discard_and_write_zeroes(bench):
    sh = bench.sh
    base = 32  # MiB: [32, 36) discarded, [36, 40) zeroed, [40, 44) kept
    assert int(sh.check("cat /sys/block/vda/queue/discard_max_bytes")) > 0
    assert int(sh.check("cat /sys/block/vda/queue/write_zeroes_max_bytes")) > 0
    _make_pattern(sh, 12, "/tmp/pat4")
    sh.check("dd if=/tmp/pat4 of=/dev/vda bs=1M seek=%d oflag=direct" % base, timeout=60)
    kept = _md5_of(sh.check("dd if=/tmp/pat4 bs=1M skip=8 count=4 2>/dev/null | md5sum"))
    zero4 = hashlib.md5(bytes(4 * MB)).hexdigest()
    assert _md5_file(bench.data, base * MB, 4 * MB) != zero4
    before = _iostat(bench.target.call("bdev_get_iostat", name="u0"), "u0")

    sh.check("blkdiscard -o %d -l %d /dev/vda" % (base * MB, 4 * MB), timeout=60)
    sh.check("/extra/bin/blkdiscard -z -o %d -l %d /dev/vda" % ((base + 4) * MB, 4 * MB),
             timeout=60)

    after = _iostat(bench.target.call("bdev_get_iostat", name="u0"), "u0")
    # They reached the bdev as DISCARD and WRITE_ZEROES, not as data writes.
    assert after["bytes_unmapped"] - before["bytes_unmapped"] == 4 * MB, (before, after)
    assert after["bytes_write_zeroes"] - before["bytes_write_zeroes"] == 4 * MB
    assert after["num_write_ops"] == before["num_write_ops"]
    # The host file: zeros in both ranges, a hole where discarded, the rest intact.
    assert _md5_file(bench.data, base * MB, 4 * MB) == zero4
    assert _md5_file(bench.data, (base + 4) * MB, 4 * MB) == zero4
    assert _md5_file(bench.data, (base + 8) * MB, 4 * MB) == kept
    fd = os.open(bench.data, os.O_RDONLY)
    try:
        assert os.lseek(fd, base * MB, os.SEEK_HOLE) == base * MB
        assert os.lseek(fd, base * MB, os.SEEK_DATA) >= (base + 4) * MB
    finally:
        os.close(fd)
    # And the guest reads zeros there.
    assert _guest_md5(sh, "/dev/vda", 4, base) == zero4
    assert _guest_md5(sh, "/dev/vda", 4, base + 4) == zero4
    assert _guest_md5(sh, "/dev/vda", 4, base + 8) == kept
    assert _dmesg_errors(sh) == []


def _flushes(bench, bdev):
    return _iostat(bench.target.call("bdev_get_iostat", name=bdev), bdev)["num_flush_ops"]


def test_flush_write_cache_seen_by_guest(bench):
    """A uring volume has a volatile cache (the host's page cache, the
    disk's): VIRTIO_BLK_F_FLUSH, Linux says "write back", and an fsync in
    the guest reaches the bdev as a flush.  A null bdev has none: no
    FLUSH feature, "write through", and the guest sends no flush at all."""
    sh = bench.sh
    assert sh.check("cat /sys/block/vda/queue/write_cache").strip() == "write back"
    assert sh.check("cat /sys/block/vdd/queue/write_cache").strip() == "write through"

    # O_DIRECT writes without fsync: data written, no flush asked for.
    before = _flushes(bench, "u0")
    sh.check("dd if=/dev/urandom of=/dev/vda bs=4k seek=4096 count=16 oflag=direct "
             "2>/dev/null", timeout=60)
    assert _flushes(bench, "u0") == before
    # conv=fsync: the guest's fsync of the disk becomes a FLUSH.
    out = sh.check("dd if=/dev/urandom of=/dev/vda bs=4k seek=4096 count=16 conv=fsync "
                   "2>&1", timeout=60)
    assert "16+0 records out" in out, out
    assert _flushes(bench, "u0") == before + 1

    out = sh.check("dd if=/dev/urandom of=/dev/vdd bs=4k count=16 conv=fsync 2>&1",
                   timeout=60)
    assert "16+0 records out" in out, out
    stat = _iostat(bench.target.call("bdev_get_iostat", name="n0"), "n0")
    assert stat["num_write_ops"] > 0, stat
    assert _dmesg_errors(sh) == []


def test_serial_from_controller_creation(bench):
    """GET_ID: the serial given to vhost_create_blk_controller, or the bdev name."""
    sh = bench.sh
    assert sh.check("cat /sys/block/vda/serial").strip() == C0_SERIAL
    assert sh.check("cat /sys/block/vdb/serial").strip() == "r0"
    assert sh.check("cat /sys/block/vdd/serial").strip() == "n0"


# ---------------------------------------------------------------------------
# SIGKILL of the serving process under guest writes
# ---------------------------------------------------------------------------

WRITERS = 4
WRITE_BS_KB = 16
# Guest writes the target must complete after each (re)start before the
# next kill, so every kill lands in the middle of the guest's writes.
WRITES_PER_KILL = 100
MIN_KILLS = 3
# A TCG guest leaves its queue empty much of the time, so only some kills
# catch requests in flight: CI once saw 8 kills in a row catch none (QEMU 10).
# Kills go on until one does; 24 x 100 writes stay within the 4096 the
# writers make.
MAX_KILLS = 24

_WRITE_CMD = (
    "rm -f /tmp/rc*; for i in %(ids)s; do (dd if=/tmp/pat of=/dev/vda bs=%(bs)dk "
    "skip=$((i*%(n)d)) seek=$((i*%(n)d)) count=%(n)d oflag=direct conv=notrunc "
    "2>/tmp/dd$i.log; echo $? >/tmp/rc$i) & done; wait; cat /tmp/rc*; cat /tmp/dd*.log"
    % {"ids": " ".join(str(i) for i in range(WRITERS)), "bs": WRITE_BS_KB,
       "n": DISK_MB * 1024 // WRITE_BS_KB // WRITERS})


def test_negotiated_features_match_recording(bench):
    """What this QEMU's vhost-user-blk (and the guest driver behind it)
    negotiated on c0 is what tests/data/qemu_vhost_features.json says for
    this QEMU version: the file vhost_initiator's --like-qemu profile is
    built from.  SB_RECORD_QEMU_FEATURES=1 records it instead."""
    version, line = qemu_features.qemu_version()
    c0 = bench.target.call("vhost_get_controllers", name="c0")[0]
    assert c0["connected"] and c0["num_queues"] == 2, c0
    seen = {"features": c0["features"], "protocol_features": c0["protocol_features"],
            "qemu": line,
            "setup": "tests/e2e/test_vhost_guest.py: c0, a uring bdev, 2 queues, "
                     "Debian cloud kernel guest"}
    print("QEMU %s negotiated features 0x%x protocol features 0x%x"
          % (version, seen["features"], seen["protocol_features"]))
    if os.environ.get(qemu_features.RECORD_ENV):
        qemu_features.save(version, seen)
        return
    recorded = qemu_features.load().get(version)
    assert recorded is not None, (
        "no recording for QEMU %s in %s; run this test with %s=1 and commit it"
        % (version, qemu_features.PATH, qemu_features.RECORD_ENV))
    assert (hex(seen["features"]), hex(seen["protocol_features"])) == \
        (hex(recorded["features"]), hex(recorded["protocol_features"])), (
        "QEMU %s negotiates differently from the recording: rebuild with %s=1"
        % (version, qemu_features.RECORD_ENV))


def _writes_since_start(stats):
    return _iostat(stats, "u0")["num_write_ops"]


def _kill_during_writes(sh, kill, restart, writes, resubmitted):
    """Run the guest writers; SIGKILL + restart the target under them.

    Kills at least MIN_KILLS times, and goes on (up to MAX_KILLS) until a
    restart actually had in-flight requests to resubmit.
    :returns: (guest exit status, output, number of kills)
    """
    result = {}

    def run():
        try:
            result["out"] = sh.run(_WRITE_CMD, timeout=300)
        except Exception as exc:  # reported below
            result["exc"] = exc

    writer = threading.Thread(target=run)
    t_start = time.monotonic()
    writer.start()
    kills = 0
    ok = False
    try:
        while kills < MAX_KILLS and (kills < MIN_KILLS or resubmitted() == 0):
            deadline = time.monotonic() + 120
            while writes() < WRITES_PER_KILL:
                assert writer.is_alive(), result
                assert time.monotonic() < deadline, "guest writes stalled"
                time.sleep(0.02)
            assert writer.is_alive(), "writes finished before kill %d" % (kills + 1)
            t0 = time.monotonic()
            kill()
            kills += 1
            restart()
            print("kill %d after %d writes, restarted in %.2fs"
                  % (kills, WRITES_PER_KILL, time.monotonic() - t0))
        ok = True
    finally:
        # On failure the caller stops QEMU, which ends the blocked reader.
        writer.join(330 if ok else 5)
    assert not writer.is_alive()
    if "exc" in result:
        raise result["exc"]
    status, out = result["out"]
    print("guest writes took %.1fs with %d kills, %d requests resubmitted"
          % (time.monotonic() - t_start, kills, resubmitted()))
    return status, out, kills


def _check_after_kills(sh, status, out, want, path):
    t0 = time.monotonic()
    assert status == 0, out
    rcs = out.split()[:WRITERS]
    assert rcs == ["0"] * WRITERS, out
    n = DISK_MB * 1024 // WRITE_BS_KB // WRITERS
    assert out.count("%d+0 records out" % n) == WRITERS, out
    assert _dmesg_errors(sh) == []
    assert _guest_md5(sh, "/dev/vda", DISK_MB) == want
    got = _md5_file(path)
    if got != want:
        bad = [i for i, m in enumerate(_md5_per_mib(path, DISK_MB))
               if m != _md5_of(sh.check("dd if=/tmp/pat bs=1M skip=%d count=1 "
                                        "2>/dev/null | md5sum" % i))]
        raise AssertionError("host file differs from the guest's data in MiB %s" % bad)
    print("verified in %.1fs" % (time.monotonic() - t0))


def _resubmitted(log):
    return sum(int(n) for n in re.findall(r"resubmits (\d+) inflight requests", log))


def test_sigkill_target_during_guest_writes(image, workdir):
    data = os.path.join(workdir, "data.img")
    _sparse(data, DISK_MB)
    sock_dir = os.path.join(workdir, "vhost")
    config = {"socket_dir": sock_dir, "max_delay_us": 100,
              "bdevs": [{"type": "uring", "name": "u0", "filename": data}],
              "controllers": [{"ctrlr": "c0", "dev_name": "u0"}]}
    target = EngineTarget(config, workdir)
    try:
        target.start()
        with guest.QemuGuest(image, workdir, mem_mb=384,
                             disks=[guest.VhostDisk(os.path.join(sock_dir, "c0"),
                                                    reconnect=1)]) as vm:
            sh = vm.shell
            print("guest booted in %.1fs" % vm.boot_seconds)
            want = _make_pattern(sh, DISK_MB)

            def writes():
                return _writes_since_start(target.call("bdev_get_iostat", name="u0"))

            status, out, kills = _kill_during_writes(
                sh, target.kill9, target.start, writes,
                lambda: _resubmitted(target.log()))
            assert kills >= MIN_KILLS and target.starts == kills + 1
            # At least one restart had requests in flight, and resubmitted them.
            assert _resubmitted(target.log()) > 0, target.log(8000)
            _check_after_kills(sh, status, out, want, data)
            (info,) = target.call("vhost_get_controllers", name="c0")
            assert info["connected"] and not info["broken"], info
    except BaseException:
        print("--- target log:\n" + target.log(8000))
        raise
    finally:
        target.stop()


def test_sigkill_agent_during_guest_writes(image, workdir):
    """issue 4: kill -9 of the real agent, which replays its state file."""
    data = os.path.join(workdir, "data.img")
    _sparse(data, DISK_MB)
    agent = agent_proc.AgentProcess(workdir)
    try:
        agent.start()
        with agent.client() as c:
            c.call("bdev_uring_create", name="u0", filename=data)
            c.call("vhost_create_blk_controller", ctrlr="vhost.0", dev_name="u0")
        sock = os.path.join(agent.vhost_socket_dir, "vhost.0")
        with guest.QemuGuest(image, workdir, mem_mb=384,
                             disks=[guest.VhostDisk(sock, reconnect=1)]) as vm:
            sh = vm.shell
            print("guest booted in %.1fs" % vm.boot_seconds)
            want = _make_pattern(sh, DISK_MB)

            def writes():
                with agent.client(timeout=10) as c:
                    return _writes_since_start(c.call("bdev_get_iostat", name="u0"))

            status, out, kills = _kill_during_writes(
                sh, agent.kill9, agent.start, writes, lambda: _resubmitted(agent.log()))
            assert kills >= MIN_KILLS
            assert _resubmitted(agent.log()) > 0, agent.log()
            _check_after_kills(sh, status, out, want, data)
            with agent.client() as c:
                (info,) = c.call("vhost_get_controllers", name="vhost.0")
                (bdev,) = c.call("bdev_get_bdevs", name="u0")
            assert info["socket"] == sock and info["connected"], info
            assert bdev["num_blocks"] * bdev["block_size"] == DISK_MB * MB
        assert agent.stop() == 0
    except BaseException:
        print("--- agent log:\n" + agent.log()[-8000:])
        raise
    finally:
        agent.kill9()
