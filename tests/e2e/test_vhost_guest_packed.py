"""Packed virtqueues (virtio 1.2 §2.8) with a real QEMU guest (TCG).

QEMU's ``vhost-user-blk-pci,packed=on`` makes the guest's virtio driver use
packed rings, and QEMU hands the engine the packed ring's addresses and
both indexes with their wrap counters (SET/GET_VRING_BASE).  One guest
(2 vCPUs) has one disk of 2 queues on a uring bdev, the queues on reactors
0 and 1:

* the driver negotiated VIRTIO_F_RING_PACKED (the guest's own feature
  bits say so) and the whole disk takes a random pattern the guest reads
  back and the host file holds, MiB by MiB;
* one writer per vCPU: each queue's interrupt fires and the data lands;
* the engine is SIGKILLed at least 3 times under 4 guest writers and
  restarted; QEMU (reconnect=1) re-attaches and the engine resubmits what
  was in flight from the packed inflight region (its ring positions come
  from there too: QEMU's base is stale after a crash), so the guest sees
  no error and the data is exactly what it wrote.

The helpers are test_vhost_guest.py's: the same checks as the split rings'.
"""

import os
import shutil
import tempfile

import pytest

from tests.e2e import test_vhost_guest as split
from tests.support import guest
from tests.support.vhost_target import EngineTarget

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

MB = split.MB
DISK_MB = split.DISK_MB
VIRTIO_F_RING_PACKED = 34


class PackedGuest:
    """The target + guest of this module (what split._two_writers expects)."""


@pytest.fixture(scope="module")
def bench(image):
    b = PackedGuest()
    b.dir = tempfile.mkdtemp(prefix="sb-e2e-")
    b.data = os.path.join(b.dir, "data.img")
    split._sparse(b.data, DISK_MB)
    sock_dir = os.path.join(b.dir, "vhost")
    config = {"socket_dir": sock_dir, "core_mask": "0x3", "max_delay_us": 100,
              "bdevs": [{"type": "uring", "name": "u0", "filename": b.data}],
              "controllers": [{"ctrlr": "c0", "dev_name": "u0", "max_queues": 2,
                               "cpumask": "0x3", "packed_ring": True}]}
    b.target = EngineTarget(config, b.dir)
    b.vm = None
    try:
        b.target.start()
        b.vm = guest.QemuGuest(
            image, b.dir, mem_mb=384, smp=2, boot_timeout=150,
            disks=[guest.VhostDisk(os.path.join(sock_dir, "c0"), num_queues=2,
                                   reconnect=1, packed=True)])
        b.vm.start()
        b.sh = b.vm.shell
        yield b
    finally:
        if b.vm is not None:
            b.vm.stop()
        b.target.stop()
        print("--- target log:\n" + b.target.log())
        shutil.rmtree(b.dir, ignore_errors=True)


def test_packed_negotiated_and_whole_disk_pattern(bench):
    sh = bench.sh
    vdev = sh.check("basename $(readlink /sys/block/vda/device)").strip()
    # One character per feature bit, bit 0 first (drivers/virtio/virtio.c).
    features = sh.check("cat /sys/bus/virtio/devices/%s/features" % vdev).strip()
    assert features[VIRTIO_F_RING_PACKED] == "1", features
    (info,) = bench.target.call("vhost_get_controllers", name="c0")
    assert info["connected"] and info["num_queues"] == 2, info

    want = split._make_pattern(sh, DISK_MB)
    per_mib = [split._md5_of(line) for line in sh.check(
        "i=0; while [ $i -lt %d ]; do dd if=/tmp/pat bs=1M skip=$i count=1 2>/dev/null"
        " | md5sum; i=$((i+1)); done" % DISK_MB, timeout=180).splitlines() if line.strip()]
    assert len(set(per_mib)) == DISK_MB
    out = sh.check("dd if=/tmp/pat of=/dev/vda bs=1M oflag=direct 2>&1", timeout=180)
    assert "%d+0 records out" % DISK_MB in out, out
    assert split._guest_md5(sh, "/dev/vda", DISK_MB) == want
    assert split._md5_per_mib(bench.data, DISK_MB) == per_mib
    assert split._dmesg_errors(sh) == []
    # Nothing the engine refused on the way.
    assert "guest violation" not in bench.target.log(), bench.target.log()


def test_packed_two_queues(bench):
    split._two_writers(bench, "vda", "c0", bench.data)


def test_packed_sigkill_target_during_guest_writes(bench):
    sh, target = bench.sh, bench.target
    want = split._make_pattern(sh, DISK_MB)
    starts = target.starts

    def writes():
        return split._writes_since_start(target.call("bdev_get_iostat", name="u0"))

    status, out, kills = split._kill_during_writes(
        sh, target.kill9, target.start, writes, lambda: split._resubmitted(target.log()))
    assert kills >= split.MIN_KILLS and target.starts == starts + kills
    # At least one restart had requests in flight, and resubmitted them.
    assert split._resubmitted(target.log()) > 0, target.log(8000)
    split._check_after_kills(sh, status, out, want, bench.data)
    (info,) = target.call("vhost_get_controllers", name="c0")
    assert info["connected"] and not info["broken"], info
    assert "guest violation" not in target.log(), target.log(8000)
