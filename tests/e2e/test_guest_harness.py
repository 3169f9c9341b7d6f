"""The QEMU guest harness itself, against qemu-storage-daemon as target.

qemu-storage-daemon is an independent vhost-user-blk implementation, so a
failure here is the harness' fault, not the engine's.
"""

import hashlib

import pytest

from tests.support import guest
from tests.support.qsd import QsdExport, file_blockdev

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

DISK_MB = 16
# What the guest writes at 4 MiB (47104 bytes, 11.5 blocks).
DATA = b"".join(b"blk%05d-pattern-guest-" % i for i in range(2048))


@pytest.fixture
def backing(tmp_path):
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        # Host-side pattern at 1 MiB so the guest can prove it reads it.
        f.truncate(DISK_MB << 20)
        f.seek(1 << 20)
        f.write(b"HOSTDATA" * 512)
    return path


def test_build_is_cached(image):
    again = guest.build_guest_image()
    assert again == image
    assert image.kernel.stat().st_size > 1 << 20
    # gzip magic: the kernel only unpacks what it can decompress.
    assert image.initrd.read_bytes()[:2] == b"\x1f\x8b"


def test_guest_reads_and_writes_vhost_disk(image, tmp_path, backing):
    sock = tmp_path / "vu.sock"
    with QsdExport(sock, file_blockdev(backing)) as qsd, \
            guest.QemuGuest(image, tmp_path,
                            disks=[guest.VhostDisk(sock)]) as vm:
        sh = vm.shell
        size = int(sh.check("cat /sys/block/vda/size"))
        assert size * 512 == DISK_MB << 20

        # The guest sees what the host wrote.
        out = sh.check("dd if=/dev/vda bs=4096 skip=256 count=1 2>/dev/null"
                       " | md5sum")
        assert out.split()[0] == hashlib.md5(b"HOSTDATA" * 512).hexdigest()

        # 64 KiB at 4 MiB of a pattern made in the guest, bypassing the
        # guest page cache so it reaches the target.
        sh.check("i=0; while [ $i -lt 2048 ]; do "
                 "printf 'blk%05d-pattern-guest-' $i; i=$((i+1)); done "
                 "> /tmp/pat && ls -l /tmp/pat")
        sh.check("dd if=/tmp/pat of=/dev/vda bs=4096 seek=1024 "
                 "oflag=direct conv=fsync 2>&1", timeout=60)
        status, _ = sh.run("false")
        assert status == 1
        assert qsd.alive()

        # After a reset the guest re-initialises the vhost-user device and
        # reads back what it wrote.
        vm.reset()
        out = vm.shell.check("dd if=/dev/vda bs=4096 skip=1024 count=16 "
                             "iflag=direct 2>/dev/null | head -c %d | md5sum"
                             % len(DATA))
        assert out.split()[0] == hashlib.md5(DATA).hexdigest()

    with open(backing, "rb") as f:
        f.seek(4 << 20)
        assert f.read(len(DATA)) == DATA
    # stop() removed QEMU's sockets and logs.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.img"]


def test_command_timeout_reports_console(image, tmp_path):
    with guest.QemuGuest(image, tmp_path) as vm:
        assert vm.boot_seconds < 90
        with pytest.raises(guest.GuestTimeout) as err:
            vm.shell.run("echo still-here; sleep 30", timeout=2)
        assert "still-here" in str(err.value)
        # The timed-out command was interrupted: the shell answers again.
        assert vm.shell.check("echo back", timeout=10) == "back\n"
        # The QMP channel works (tests use it for system_reset etc.).
        assert vm.qmp.execute("query-status")["status"] == "running"
