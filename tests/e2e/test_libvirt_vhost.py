"""vhost-user disks in libvirt domains, end to end.

A real libvirtd (started here when none runs) and the TCG test guest of
tests/support: prepare a domain defined with private memory, attach a
vhost-user-blk disk live and persistently, do I/O from the guest, verify it
on the host, detach, and check the errors for guests that cannot take one.
"""

import hashlib
import os
import shutil
import time

import pytest
from lxml import etree

from spdk_backend import exception
from spdk_backend.virt.libvirt import config
from spdk_backend.virt.libvirt import host as host_mod
from spdk_backend.virt.libvirt import policy
from tests.support import hugepages
from tests.support.guest import guest_disks, new_guest_disk, wait_guest_disks
from tests.support import libvirt_domain as lvd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def host(daemons):
    h = host_mod.Host(lvd.URI, events=True)
    h.get_connection()
    yield h
    h.close()


@pytest.fixture(scope="module")
def workdir():
    path = lvd.make_workdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def domains(conn, workdir, image):
    """Factory of test domains; all are destroyed and undefined."""
    with lvd.domain_factory(conn, workdir, image) as make:
        yield make


@pytest.fixture(scope="module")
def targets(workdir):
    """Factory of vhost-user-blk targets; all are stopped."""
    made = []

    def make(name, **kw):
        t = lvd.VhostTarget(workdir, name, **kw).start()
        made.append(t)
        return t

    yield make
    for t in made:
        t.stop()


@pytest.fixture(scope="module")
def running(host, domains):
    """One prepared, running test guest shared by the I/O tests."""
    d = domains("io", vcpus=2)
    guest = host.get_guest(d.name)
    assert not policy.memory_is_shared(guest.get_config(inactive=True))
    assert policy.prepare_domain(host, d.name).changed
    d.start()
    assert policy.memory_is_shared(guest.get_config())
    return d


def without_owned(xml):
    el = config.parse_xml(xml)
    for node in el.findall("memoryBacking"):
        el.remove(node)
    for cell in el.findall("cpu/numa/cell"):
        cell.attrib.pop("memAccess", None)
    return etree.tostring(el, method="c14n")


def write_and_verify(shell, dev, target, offset_blocks=16, blocks=256):
    """Guest writes random data to ``dev``, reads it back uncached; the host
    finds the same bytes in the target's backing file."""
    out = shell.check(
        "dd if=/dev/urandom of=/tmp/pat bs=4096 count=%d 2>/dev/null && "
        "dd if=/tmp/pat of=/dev/%s bs=4096 seek=%d conv=fsync 2>/dev/null "
        "&& md5sum /tmp/pat" % (blocks, dev, offset_blocks), timeout=60)
    written = out.split()[0]
    out = shell.check(
        "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/%s bs=4096 skip=%d "
        "count=%d 2>/dev/null | md5sum" % (dev, offset_blocks, blocks),
        timeout=60)
    assert out.split()[0] == written
    with open(target.image, "rb") as f:
        f.seek(offset_blocks * 4096)
        on_host = hashlib.md5(f.read(blocks * 4096)).hexdigest()
    assert on_host == written
    return written


# -- prepare ------------------------------------------------------------------

def test_prepare_domain_private_memory(host, domains):
    d = domains("prep")
    guest = host.get_guest(d.name)
    before = guest.get_xml_desc(inactive=True)
    assert not policy.memory_is_shared(config.Domain.from_xml(before))

    result = policy.prepare_domain(host, d.name)
    assert result.changed and result.changes
    assert not result.restart_required          # not running
    after = guest.get_xml_desc(inactive=True)
    dom = config.Domain.from_xml(after)
    assert policy.memory_is_shared(dom)
    assert dom.memory_backing.access_mode == "shared"
    if result.memory == "memfd":
        assert dom.memory_backing.source_type == "memfd"
    else:
        assert dom.memory_backing.hugepages
    # Nothing else in the definition moved.
    assert without_owned(after) == without_owned(before)

    again = policy.prepare_domain(host, d.name)
    assert not again.changed and again.changes == []
    assert not again.restart_required
    assert guest.get_xml_desc(inactive=True) == after


def test_prepare_unknown_domain(host):
    with pytest.raises(exception.DomainNotFound):
        policy.prepare_domain(host, lvd.unique_name("missing"))


# -- live attach, I/O, detach -------------------------------------------------

def test_live_attach_io_live_detach(host, running, targets):
    target = targets("live", num_queues=4)
    shell = running.shell
    before = guest_disks(shell)

    info = policy.attach_vhost_disk(host, running.name,
                                    str(target.socket_path), max_queues=4,
                                    live=True, config=False)
    assert info.live and not info.config
    assert info.queues == 2                     # vCPUs, under the cap
    assert info.target_dev == "vda"
    assert info.alias == "ua-sb-live"
    guest = host.get_guest(running.name)
    live = guest.get_config()
    disk = policy.find_vhost_disk(live, socket_path=str(target.socket_path))
    assert disk.alias == info.alias and disk.driver_queues == 2
    assert policy.find_vhost_disk(guest.get_config(inactive=True),
                                  socket_path=str(target.socket_path)) is None

    dev = new_guest_disk(shell, before)
    size = int(shell.check("cat /sys/block/%s/size" % dev).strip())
    assert size * 512 == target.size
    nq = shell.check("ls /sys/block/%s/mq" % dev).split()
    assert len(nq) == 2
    write_and_verify(shell, dev, target)

    # Attaching the same socket again is a no-op returning the disk.
    again = policy.attach_vhost_disk(host, running.name,
                                     str(target.socket_path), live=True,
                                     config=False)
    assert again == info

    removed = policy.detach_vhost_disk(host, running.name,
                                       socket_path=str(target.socket_path))
    assert removed.alias == info.alias
    assert policy.find_vhost_disk(guest.get_config(),
                                  alias=info.alias) is None
    wait_guest_disks(shell, absent=dev)
    assert policy.detach_vhost_disk(host, running.name, alias=info.alias,
                                    missing_ok=True) is None
    with pytest.raises(exception.DeviceDetachFailed,
                       match="no such vhost-user disk"):
        policy.detach_vhost_disk(host, running.name, alias=info.alias)


def test_persistent_attach_survives_destroy_start(host, running, targets):
    target = targets("pers", num_queues=1)
    shell = running.shell
    before = guest_disks(shell)
    info = policy.attach_vhost_disk(host, running.name,
                                    str(target.socket_path), max_queues=1)
    assert info.live and info.config           # defaults for a running,
    assert info.queues == 1                    # persistent domain
    dev = new_guest_disk(shell, before)
    written = write_and_verify(shell, dev, target)

    guest = host.get_guest(running.name)
    running.virsh("destroy")
    assert not guest.is_active()
    running.virsh("start")
    shell = running.attach_shell()
    live = guest.get_config()
    disk = policy.find_vhost_disk(live, socket_path=str(target.socket_path))
    assert disk is not None and disk.target_dev == info.target_dev
    # The guest sees the disk at boot, with the data written before.
    wait_guest_disks(shell, present="vda")
    out = shell.check("dd if=/dev/vda bs=4096 skip=16 count=256 2>/dev/null"
                      " | md5sum", timeout=60)
    assert out.split()[0] == written

    removed = policy.detach_vhost_disk(host, running.name,
                                       socket_path=str(target.socket_path))
    assert removed.live and removed.config
    assert policy.find_vhost_disk(guest.get_config(), alias=info.alias) \
        is None
    assert policy.find_vhost_disk(guest.get_config(inactive=True),
                                  alias=info.alias) is None
    wait_guest_disks(shell, absent="vda")


def test_config_only_attach_to_running_guest(host, running, targets):
    target = targets("cfg")
    info = policy.attach_vhost_disk(host, running.name,
                                    str(target.socket_path), live=False,
                                    config=True)
    assert info.config and not info.live
    guest = host.get_guest(running.name)
    assert policy.find_vhost_disk(guest.get_config(),
                                  alias=info.alias) is None
    removed = policy.detach_vhost_disk(host, running.name, alias=info.alias)
    assert removed.config
    assert policy.find_vhost_disk(guest.get_config(inactive=True),
                                  alias=info.alias) is None


def test_detach_times_out_while_guest_is_paused(running, targets):
    """The guest must release a hot-unplugged disk; a paused guest cannot,
    so the wait (polling the live XML here: no event loop) gives up with a
    clear error, and the removal completes once the guest runs again."""
    target = targets("paused", num_queues=1)
    polling = host_mod.Host(lvd.URI, events=False)
    try:
        shell = running.shell
        before = guest_disks(shell)
        info = policy.attach_vhost_disk(polling, running.name,
                                        str(target.socket_path), live=True,
                                        config=False, max_queues=1)
        dev = new_guest_disk(shell, before)
        running.dom.suspend()
        try:
            with pytest.raises(exception.DeviceDetachFailed,
                               match="did not release it"):
                policy.detach_vhost_disk(polling, running.name,
                                         alias=info.alias, timeout=2)
        finally:
            running.dom.resume()
        wait_guest_disks(shell, absent=dev)
        guest = polling.get_guest(running.name)
        for _ in range(100):
            if policy.find_vhost_disk(guest.get_config(),
                                      alias=info.alias) is None:
                break
            time.sleep(0.1)
        assert policy.find_vhost_disk(guest.get_config(),
                                      alias=info.alias) is None
    finally:
        polling.close()


def test_live_attach_of_missing_socket(host, running, workdir):
    missing = str(workdir / "missing.sock")
    with pytest.raises(exception.VhostSocketUnreachable,
                       match="No such file"):
        policy.attach_vhost_disk(host, running.name, missing)
    guest = host.get_guest(running.name)
    for inactive in (False, True):
        assert policy.find_vhost_disk(guest.get_config(inactive),
                                      socket_path=missing) is None


def test_live_attach_of_socket_qemu_cannot_open(host, running, targets):
    """Both flags: the live attach fails in QEMU, so libvirt leaves the
    definition alone too (nothing half done)."""
    target = targets("closed")
    os.chmod(target.socket_path, 0o600)     # QEMU does not run as root
    with pytest.raises(exception.VhostSocketUnreachable,
                       match="Permission denied"):
        policy.attach_vhost_disk(host, running.name,
                                 str(target.socket_path))
    guest = host.get_guest(running.name)
    for inactive in (False, True):
        assert policy.find_vhost_disk(guest.get_config(inactive),
                                      socket_path=str(target.socket_path)) \
            is None


def test_live_attach_of_socket_nobody_serves_is_bounded(host, domains, workdir):
    """A socket file whose server is gone (connect() is refused), with
    permissions QEMU passes.  libvirt 9.0 + QEMU 7.2 fail the hot-plug at
    once; libvirt 11.3 + QEMU 10 retry inside device_add without end, which
    only the attach's own timeout bounds: HotplugTimeout within it, and the
    domain can be destroyed afterwards (docs/support.md)."""
    import socket
    d = domains("stale", memory_backing="<source type='memfd'/>"
                                        "<access mode='shared'/>")
    d.start(wait_shell=False)
    stale_dir = workdir / "stale"
    stale_dir.mkdir(mode=0o755)
    os.chmod(str(stale_dir), 0o755)
    path = str(stale_dir / "gone.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    os.chmod(path, 0o666)
    s.close()                   # the file stays, nobody listens
    start = time.monotonic()
    if policy.hotplug_reconnects(host.versions()):
        with pytest.raises(exception.HotplugTimeout, match="within 5.0s") as err:
            policy.attach_vhost_disk(host, d.name, path, live=True, config=False,
                                     timeout=5.0)
        assert "retries connecting to %s every 10s" % path in str(err.value)
        assert time.monotonic() - start < 15
        d.destroy()             # what frees the domain; libvirt's call then ends
        assert not host.get_guest(d.name).is_active()
    else:
        with pytest.raises(exception.VhostSocketUnreachable,
                           match="Connection refused"):
            policy.attach_vhost_disk(host, d.name, path, live=True, config=False,
                                     timeout=5.0)
        assert time.monotonic() - start < 15
        assert policy.find_vhost_disk(host.get_guest(d.name).get_config(),
                                      socket_path=path) is None


# -- guests that cannot take a vhost-user disk --------------------------------

def test_attach_to_running_guest_without_shared_memory(host, domains,
                                                       targets):
    d = domains("private")
    d.start(wait_shell=False)
    target = targets("priv")
    with pytest.raises(exception.SharedMemoryRequired) as err:
        policy.attach_vhost_disk(host, d.name, str(target.socket_path))
    msg = str(err.value)
    assert "spdk-backend domain prepare %s" % d.name in msg
    assert "restart" in msg
    guest = host.get_guest(d.name)
    for inactive in (False, True):
        assert policy.find_vhost_disk(guest.get_config(inactive),
                                      socket_path=str(target.socket_path)) \
            is None

    # libvirt itself refuses too, and the wrapper maps its error.
    disk = config.VhostUserDisk(source_path=str(target.socket_path),
                                target_dev="vdb", queues=1,
                                alias="ua-sb-raw")
    with pytest.raises(exception.SharedMemoryRequired, match="libvirt: "):
        guest.attach_device(disk, live=True)

    # Preparing a running guest fixes the definition, not the running one.
    result = policy.prepare_domain(host, d.name)
    assert result.changed and result.restart_required
    assert not policy.memory_is_shared(guest.get_config())
    assert policy.memory_is_shared(guest.get_config(inactive=True))
    # Its definition can take the disk now, the running guest still not.
    with pytest.raises(exception.SharedMemoryRequired):
        policy.attach_vhost_disk(host, d.name, str(target.socket_path),
                                 live=True, config=False)


def test_no_free_hotplug_slot(host, domains, targets):
    d = domains("noslot", root_ports=0,
                memory_backing="<source type='memfd'/>"
                               "<access mode='shared'/>")
    d.start(wait_shell=False)
    target = targets("noslot")
    guest = host.get_guest(d.name)
    assert policy.free_hotplug_ports(guest.get_config()) == 0
    with pytest.raises(exception.NoFreeHotplugSlot, match="pcie-root-port"):
        policy.attach_vhost_disk(host, d.name, str(target.socket_path),
                                 live=True, config=False)
    # Without the check ahead, libvirt's own error maps to the same.
    disk = config.VhostUserDisk(source_path=str(target.socket_path),
                                target_dev="vdb", queues=1,
                                alias="ua-sb-raw")
    with pytest.raises(exception.NoFreeHotplugSlot,
                       match="No more available PCI slots"):
        guest.attach_device(disk, live=True)
    assert policy.find_vhost_disk(guest.get_config(), alias="ua-sb-raw") \
        is None


def test_live_attach_to_stopped_domain_is_refused(host, domains, targets):
    d = domains("stopped", memory_backing="<source type='memfd'/>"
                                          "<access mode='shared'/>")
    target = targets("stopped")
    with pytest.raises(exception.InvalidInput, match="not running"):
        policy.attach_vhost_disk(host, d.name, str(target.socket_path),
                                 live=True)
    # The default for a stopped domain is the definition only.
    info = policy.attach_vhost_disk(host, d.name, str(target.socket_path))
    assert info.config and not info.live and info.target_dev == "vda"
    assert info.queues == 2
    assert policy.list_vhost_disks(host, d.name) == [info]
    policy.detach_vhost_disk(host, d.name, socket_path=str(
        target.socket_path))
    assert policy.list_vhost_disks(host, d.name) == []


# -- huge pages ---------------------------------------------------------------

def test_hugepage_guest_takes_a_vhost_disk(host, domains, targets):
    """prepare_domain picks huge pages when the host has them; libvirt puts
    the guest's RAM on hugetlbfs, and a live-attached disk works with the
    engine mapping that RAM in 2 MiB pages."""
    mounts = hugepages.hugetlbfs_mounts()
    assert mounts, ("no hugetlbfs is mounted: scripts/start-services.sh mounts "
                    "/dev/hugepages before it starts libvirtd")
    before = hugepages.nr_hugepages()
    d = domains("huge", vcpus=1, memory_mib=256)
    target = targets("huge", num_queues=1)
    with hugepages.reserve(256 // 2 + 4):
        try:
            result = policy.prepare_domain(host, d.name)
            assert result.memory == "hugepages:2048KiB", result
            d.start()
            guest = host.get_guest(d.name)
            live = guest.get_config()
            assert live.memory_backing.hugepages and policy.memory_is_shared(live)

            shell = d.shell
            before_disks = guest_disks(shell)
            policy.attach_vhost_disk(host, d.name, str(target.socket_path), max_queues=1,
                                     live=True, config=False)
            dev = new_guest_disk(shell, before_disks)
            write_and_verify(shell, dev, target)
            maps = hugepages.huge_mappings(target.pid)
            assert maps and all(kpage == 2048 for _, _, kpage in maps), maps
            assert any(path.startswith(tuple(m + "/" for m in mounts))
                       for path, _, _ in maps), maps
        finally:
            d.destroy()
    assert hugepages.nr_hugepages() == before
