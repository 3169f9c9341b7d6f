"""A private hugetlbfs mount with enough 2 MiB pages reserved, undone afterwards.

``with hugetlbfs(pages) as path:`` raises ``vm.nr_hugepages`` by ``pages``,
mounts hugetlbfs (2 MiB pages) on a new directory and yields it; on exit it
unmounts, removes the directory and gives the pages back (the previous
``nr_hugepages``).  Needs root.  Anything mapping files of the mount must be
gone before the block ends, or the pages stay in use.
"""

import contextlib
import os
import subprocess
import tempfile

NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages"
PAGE_KB = 2048


def _meminfo(field):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _read_nr():
    with open(NR_HUGEPAGES) as f:
        return int(f.read())


def _write_nr(n):
    with open(NR_HUGEPAGES, "w") as f:
        f.write("%d\n" % n)


@contextlib.contextmanager
def hugetlbfs(pages):
    if os.geteuid() != 0:
        raise PermissionError("reserving huge pages and mounting hugetlbfs needs root")
    if _meminfo("Hugepagesize") != PAGE_KB:
        raise OSError("the default huge page size is not 2 MiB")
    before = _read_nr()
    _write_nr(before + pages)
    path = None
    try:
        free = _meminfo("HugePages_Free")
        if free < pages:
            raise OSError("only %d of %d huge pages could be reserved (memory too "
                          "fragmented?)" % (free, pages))
        path = tempfile.mkdtemp(prefix="sb-huge-")
        subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M,mode=0777", "nodev",
                        path], check=True, capture_output=True, timeout=30)
        try:
            yield path
        finally:
            subprocess.run(["umount", path], check=False, capture_output=True, timeout=30)
    finally:
        if path is not None:
            os.rmdir(path)
        _write_nr(before)
