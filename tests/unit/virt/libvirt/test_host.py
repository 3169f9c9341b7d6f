"""Huge page discovery from a sysfs-shaped tree."""

from spdk_backend.virt.libvirt import host


def make_sysfs(root, pools):
    for size, total, free in pools:
        d = root / ("hugepages-%dkB" % size)
        d.mkdir(parents=True)
        (d / "nr_hugepages").write_text("%d\n" % total)
        (d / "free_hugepages").write_text("%d\n" % free)
    return root


def test_discover_hugepages(tmp_path):
    sysfs = make_sysfs(tmp_path / "hp", [(1048576, 2, 1), (2048, 512, 300)])
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "sysfs /sys sysfs rw,nosuid 0 0\n"
        "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 1 kB\nHugepagesize:       2048 kB\n")
    pools = host.discover_hugepages(str(sysfs), str(mounts), str(meminfo))
    assert pools == [
        host.HugePagePool(size_kib=2048, total=512, free=300, mounted=True),
        host.HugePagePool(size_kib=1048576, total=2, free=1, mounted=False),
    ]


def test_discover_hugepages_default_size_mount(tmp_path):
    sysfs = make_sysfs(tmp_path / "hp", [(2048, 4, 4), (1048576, 1, 1)])
    mounts = tmp_path / "mounts"
    mounts.write_text("hugetlbfs /dev/hugepages hugetlbfs rw,relatime 0 0\n"
                      "none /mnt/huge1g hugetlbfs rw,pagesize=1024M 0 0\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("Hugepagesize:       2048 kB\n")
    pools = host.discover_hugepages(str(sysfs), str(mounts), str(meminfo))
    assert [(p.size_kib, p.mounted) for p in pools] == [(2048, True),
                                                        (1048576, True)]


def test_discover_hugepages_without_support(tmp_path):
    assert host.discover_hugepages(str(tmp_path / "nope"),
                                   str(tmp_path / "nope2")) == []


def test_discover_hugepages_on_this_host():
    # The real sysfs: whatever it says, it parses into sane pools.
    for pool in host.discover_hugepages():
        assert pool.size_kib > 0 and 0 <= pool.free <= pool.total


def test_split_and_format_version():
    from spdk_backend.virt.libvirt import host
    assert host.split_version(11003000) == (11, 3, 0)
    assert host.split_version(7002000) == (7, 2, 0)
    assert host.split_version(10000002) == (10, 0, 2)
    assert host.split_version(0) is None
    assert host.format_version((9, 0, 0)) == "9.0.0"
    assert host.format_version(None) == "unknown"


def test_versions_of_the_test_driver():
    import libvirt

    from spdk_backend.virt.libvirt import host
    with host.Host("test:///default") as h:
        v = h.versions()
        assert v.hypervisor == "TEST"
        assert v.libvirt == host.split_version(libvirt.getVersion())
        assert v.client == v.libvirt
        assert h.versions() is v
        assert str(v).startswith("libvirt %d.%d.%d, TEST " % v.libvirt)
