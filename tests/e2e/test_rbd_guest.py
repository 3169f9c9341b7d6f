"""A QEMU guest on an RBD image through the engine's vhost-user-blk controller.

Real Ceph cluster on 127.0.0.1 (tests/support/ceph.py), the engine in this
process with an rbd bdev behind a vhost-blk controller, and the TCG test
guest of tests/support/guest.py: data written by the guest is in the image
as ``rbd export`` reads it; FLUSH is offered (the guest says "write back")
and the guest's fsync reaches librbd as one flush; a resize reaches the
guest's disk; a stopped OSD gives the guest I/O errors within a bounded
time, and I/O works again once the OSD is back, with no reconnect.
"""

import hashlib
import re
import time

import pytest

from tests.support import ceph
from tests.support import guest as guest_support

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

MiB = 1 << 20


def guest_blocks(vm):
    return int(vm.shell.check("cat /sys/block/vda/size").strip())


def test_guest_round_trip_resize_and_osd_outage(engine, cluster, image, tmp_path):
    cluster.rbd("create", "--size", "64M", "rbd/guestimg")
    e = engine
    # No librbd cache: a read of written data must go to the OSD.
    e.bdev_rbd_create("rbd0", "rbd", "guestimg", block_size=512, config_file=cluster.conf,
                      config={"rbd_cache": "false"})
    try:
        e.vhost_create_blk_controller("vhost.rbd", "rbd0")
        sock = tmp_path / "vhost" / "vhost.rbd"
        with guest_support.QemuGuest(image, tmp_path,
                                     disks=[guest_support.VhostDisk(sock)]) as vm:
            assert guest_blocks(vm) == 64 * MiB // 512
            assert vm.shell.check("cat /sys/block/vda/queue/write_cache").strip() \
                == "write back"

            # Guest writes 1 MiB at 3 MiB, bypassing its page cache; its
            # fsync is one FLUSH of the image.
            vm.shell.check("dd if=/dev/urandom of=/tmp/d bs=4096 count=256 2>/dev/null")
            want = vm.shell.check("md5sum /tmp/d").split()[0]
            flushes = e.bdev_get_iostat("rbd0")["bdevs"][0]["num_flush_ops"]
            vm.shell.check("dd if=/tmp/d of=/dev/vda bs=4096 seek=768 oflag=direct "
                           "conv=fsync 2>/dev/null", timeout=120)
            assert e.bdev_get_iostat("rbd0")["bdevs"][0]["num_flush_ops"] == flushes + 1
            back = vm.shell.check("dd if=/dev/vda bs=4096 skip=768 count=256 iflag=direct "
                                  "2>/dev/null | md5sum", timeout=120).split()[0]
            assert back == want
            raw = tmp_path / "export.raw"
            cluster.rbd("export", "--no-progress", "rbd/guestimg", str(raw))
            data = raw.read_bytes()
            raw.unlink()
            assert hashlib.md5(data[3 * MiB:4 * MiB]).hexdigest() == want
            assert data[:3 * MiB] == bytes(3 * MiB)

            # Grow the image: the guest's disk grows (virtio config change).
            e.bdev_rbd_resize("rbd0", 96)
            deadline = time.monotonic() + 30
            while guest_blocks(vm) != 96 * MiB // 512:
                assert time.monotonic() < deadline, "the guest never saw the resize"
                time.sleep(0.5)
            vm.shell.check("dd if=/tmp/d of=/dev/vda bs=4096 seek=%d oflag=direct "
                           "conv=fsync 2>/dev/null" % (90 * 256), timeout=120)

            # OSD down: the guest's direct read fails, within a bounded time.
            # (Data it wrote: librbd answers reads of never-written objects
            # from its object map, without the OSD.)
            cluster.stop_osd()
            try:
                t0 = time.monotonic()
                status, out = vm.shell.run("dd if=/dev/vda of=/dev/null bs=4096 skip=800 "
                                           "count=1 iflag=direct", timeout=6 * ceph.OP_TIMEOUT)
                took = time.monotonic() - t0
                assert status != 0, out
                assert re.search(r"I/O error|Input/output error", out), out
                assert took < 5 * ceph.OP_TIMEOUT, took
                # The engine still answers its control plane meanwhile.
                assert e.bdev_get_bdevs("rbd0")[0]["num_blocks"] == 96 * MiB // 512
            finally:
                cluster.start_osd()
            back = vm.shell.check("dd if=/dev/vda bs=4096 skip=%d count=256 iflag=direct "
                                  "2>/dev/null | md5sum" % (90 * 256), timeout=120).split()[0]
            assert back == want
            vm.shell.check("dd if=/tmp/d of=/dev/vda bs=4096 seek=1024 oflag=direct "
                           "conv=fsync 2>/dev/null", timeout=120)
        e.vhost_delete_controller("vhost.rbd")
    finally:
        e.bdev_rbd_delete("rbd0")
        cluster.rbd("rm", "--no-progress", "rbd/guestimg")
