"""Huge pages for tests: reserve them, mount hugetlbfs, give everything back.

* ``with reserve(pages):`` raises ``vm.nr_hugepages`` by ``pages`` (2 MiB)
  and restores the previous value on exit.
* ``with hugetlbfs(pages) as path:`` does that and mounts a private
  hugetlbfs on a new directory, unmounted and removed on exit.
* ``ensure_system_mount()`` mounts hugetlbfs on /dev/hugepages, as systemd
  does on a normal Debian host: libvirt looks for hugetlbfs mounts when it
  starts, so this must happen before libvirtd starts
  (scripts/start-services.sh and tests/support/libvirt_domain.py do it).
* ``huge_mappings(pid, under)``: what a process maps from hugetlbfs files.

Needs root.  Anything mapping the pages must be gone before the block ends,
or they stay in use (surplus) until it is.
"""

import contextlib
import os
import re
import subprocess
import tempfile

NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages"
PAGE_KB = 2048
SYSTEM_MOUNT = "/dev/hugepages"


def _meminfo(field):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def nr_hugepages():
    with open(NR_HUGEPAGES) as f:
        return int(f.read())


def _write_nr(n):
    with open(NR_HUGEPAGES, "w") as f:
        f.write("%d\n" % n)


def hugetlbfs_mounts():
    """Mount points of hugetlbfs file systems."""
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[2] == "hugetlbfs"]


def ensure_system_mount():
    """Mount hugetlbfs on /dev/hugepages unless one is there (root only)."""
    if SYSTEM_MOUNT in hugetlbfs_mounts() or os.geteuid() != 0:
        return
    os.makedirs(SYSTEM_MOUNT, exist_ok=True)
    subprocess.run(["mount", "-t", "hugetlbfs", "hugetlbfs", SYSTEM_MOUNT], check=True,
                   capture_output=True, timeout=30)


@contextlib.contextmanager
def reserve(pages):
    if os.geteuid() != 0:
        raise PermissionError("reserving huge pages needs root")
    if _meminfo("Hugepagesize") != PAGE_KB:
        raise OSError("the default huge page size is not 2 MiB")
    before = nr_hugepages()
    free_before = _meminfo("HugePages_Free")
    _write_nr(before + pages)
    try:
        got = _meminfo("HugePages_Free") - free_before
        if got < pages:
            raise OSError("only %d of %d huge pages could be reserved (memory too "
                          "fragmented?)" % (got, pages))
        yield
    finally:
        _write_nr(before)


@contextlib.contextmanager
def hugetlbfs(pages):
    with reserve(pages):
        path = tempfile.mkdtemp(prefix="sb-huge-")
        try:
            subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M,mode=0777",
                            "nodev", path], check=True, capture_output=True, timeout=30)
            try:
                yield path
            finally:
                subprocess.run(["umount", path], check=False, capture_output=True,
                               timeout=30)
        finally:
            os.rmdir(path)


def huge_mappings(pid, under="/"):
    """[path, size kB, kernel page size kB] of pid's mappings of files below
    ``under`` that use huge pages."""
    found, cur = [], None
    prefix = under.rstrip("/") + "/"
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            fields = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                path = fields[5] if len(fields) > 5 else ""
                cur = [path, 0, 0] if path.startswith(prefix) else None
                if cur:
                    found.append(cur)
            elif cur and fields[0] == "Size:":
                cur[1] = int(fields[1])
            elif cur and fields[0] == "KernelPageSize:":
                cur[2] = int(fields[1])
    return [m for m in found if m[2] > 4]
