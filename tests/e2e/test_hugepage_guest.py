"""A guest whose RAM is on huge pages (hugetlbfs), served by the engine.

QEMU maps guest RAM from a file on a hugetlbfs mount (memory-backend-file,
share=on) and hands that file to the engine with SET_MEM_TABLE; the engine
must map it with the huge page size (a hugetlbfs mapping only works in whole
huge pages) and do zero-copy I/O in it.  The test reserves its own pages and
mount (tests/support/hugepages.py) and gives them back.
"""

import hashlib
import os
import re
import shutil
import tempfile

import pytest

from tests.support import guest
from tests.support import hugepages
from tests.support.vhost_target import EngineTarget

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MB = 1 << 20
DISK_MB = 32
GUEST_MB = 256


def test_guest_on_hugepages_reads_and_writes(image):
    before = hugepages.nr_hugepages()
    workdir = tempfile.mkdtemp(prefix="sb-e2e-")
    data = os.path.join(workdir, "data.img")
    with open(data, "wb") as f:
        f.truncate(DISK_MB * MB)
    sock_dir = os.path.join(workdir, "vhost")
    target = EngineTarget({"socket_dir": sock_dir,
                           "bdevs": [{"type": "uring", "name": "u0", "filename": data}],
                           "controllers": [{"ctrlr": "c0", "dev_name": "u0"}]}, workdir)
    vm = None
    try:
        with hugepages.hugetlbfs(GUEST_MB // 2 + 4) as mount:
            try:
                target.start()
                vm = guest.QemuGuest(image, workdir, mem_mb=GUEST_MB,
                                     mem_backend="hugepages", hugepage_path=mount,
                                     disks=[guest.VhostDisk(os.path.join(sock_dir, "c0"))])
                vm.start()
                sh = vm.shell

                # The engine maps the guest's RAM from the hugetlbfs file, in huge pages.
                maps = hugepages.huge_mappings(target.proc.pid, mount)
                assert maps, "the engine has no huge page mapping under %s" % mount
                assert all(kpage == 2048 for _, _, kpage in maps), maps
                assert sum(size for _, size, _ in maps) >= GUEST_MB * 1024, maps

                sh.check("dd if=/dev/urandom of=/tmp/pat bs=1M count=%d 2>/dev/null"
                         % DISK_MB, timeout=120)
                want = re.search(r"\b[0-9a-f]{32}\b",
                                 sh.check("md5sum /tmp/pat", timeout=60)).group(0)
                out = sh.check("dd if=/tmp/pat of=/dev/vda bs=1M oflag=direct 2>&1",
                               timeout=180)
                assert "%d+0 records out" % DISK_MB in out, out
                got = sh.check("dd if=/dev/vda bs=1M count=%d iflag=direct 2>/dev/null"
                               " | md5sum" % DISK_MB, timeout=180)
                assert want in got, got
                with open(data, "rb") as f:
                    assert hashlib.md5(f.read()).hexdigest() == want
                _, dmesg = sh.run("dmesg | grep -i -E 'I/O error|virtio_blk.*(error|reset)'",
                                  timeout=60)
                assert dmesg.strip() == "", dmesg
            finally:
                # Nothing may map the mount when it goes away.
                if vm is not None:
                    vm.stop()
                target.stop()
        # The reservation was given back.
        assert hugepages.nr_hugepages() == before
    finally:
        print("--- target log:\n" + target.log())
        shutil.rmtree(workdir, ignore_errors=True)
