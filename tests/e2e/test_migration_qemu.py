"""Live migration of a QEMU guest with vhost-user-blk disks between two agents.

Two "hosts" on this machine (tests/support/migration.py): agents A and B,
each with its own state dir, RPC socket and vhost socket dir, serve the
same backing file (created with ``shared``: the file is on storage both
hosts see).  A TCG guest boots on A; the destination QEMU waits with
``-incoming unix:...`` on B's controller; QMP ``migrate`` copies the RAM,
throttled so that the guest's I/O runs while it is copied:

* the guest overwrites a MiB of its disk per round (O_DIRECT, data made in
  its tmpfs) and then reads the whole disk through its page cache
  (drop_caches first): every page of that cache is written by the
  back-end (vhost-user IN requests), not by a vCPU, so only our dirty log
  tells QEMU to send it again;
* after the switch-over the guest hashes its disk again: the read counter
  of /sys/block/vda/stat proves it came from the page cache (no disk I/O),
  and the hash must equal the host's hash of the backing file;
* the same migration with the back-end's marks dropped (test hook
  SB_VHOST_TEST_DROP_DIRTY_LOG) must fail that check: the check can fail.

Also: a migration cancelled half-way (the guest keeps running on A), a
destination without the controller (clear error, the guest keeps running
on A), two disks one of them with two queues, hugepage guest memory.
QEMU's downtime and the longest gap between completions seen on the hosts
are printed as "MIGRATION-RESULT" lines (bench/RESULTS.md quotes them).
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
import time

import pytest

from tests.support import ceph
from tests.support import guest as guest_support
from tests.support import hugepages
from tests.support import migration

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

MB = 1 << 20
DISK_MB = 32
GUEST_MB = 256
# Debian's kernel zeroes every page it allocates (init_on_alloc): a vCPU
# write that QEMU tracks, just before the back-end fills the page.  Off, so
# that the page cache's pages are written by the back-end alone.
GUEST_CMDLINE = "console=ttyS0 quiet panic=-1 init_on_alloc=0"
MIGRATE_BANDWIDTH = 32 << 20
# What a guest kernel prints when I/O on a disk failed or stalled.
DMESG_ERRORS = (r"I/O error|blk_update_request|Buffer I/O|critical (medium|target)"
                r"|virtio_blk.*(error|timeout|reset)|hung_task|blocked for more")


@pytest.fixture(scope="module")
def workdir():
    # Short paths (unix sockets), removed whatever happened.
    path = tempfile.mkdtemp(prefix="sb-mig-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _hosts(workdir, tag, env_a=None, **options):
    a = migration.Host(os.path.join(workdir, tag + "-a"), env=env_a, **options).start()
    try:
        b = migration.Host(os.path.join(workdir, tag + "-b"), **options).start()
    except Exception:
        a.stop()
        raise
    return a, b


@pytest.fixture(scope="module")
def hosts(workdir):
    """Agents A and B shared by the tests that need no test hook."""
    a, b = _hosts(workdir, "h")
    try:
        yield a, b
    finally:
        for h in (a, b):
            h.stop()


def _volume(workdir, name, mb=DISK_MB):
    """A backing file full of host-made random data."""
    path = os.path.join(workdir, name + ".img")
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(MB))
    return path


class RbdVolume:
    """An RBD image of the test cluster, filled with random data; both
    hosts open it (the real shared storage of a migration)."""

    def __init__(self, cluster, workdir, name, mb=DISK_MB):
        self.cluster, self.name = cluster, name
        self.spec = "%s/%s" % (ceph.POOL, name)
        self.export = os.path.join(workdir, name + ".export")
        seed = _volume(workdir, name + "-seed", mb)
        cluster.rbd("import", "--no-progress", seed, self.spec)
        os.unlink(seed)

    def serve(self, host, ctrlr, max_queues=None):
        # No librbd cache: what the guest reads comes from the OSD.
        config = dict(self.cluster.client_config(), rbd_cache="false")
        return host.serve_rbd(ctrlr, ceph.POOL, self.name, config, max_queues=max_queues)

    def contents(self):
        """A file holding the image's bytes now (rbd export)."""
        if os.path.exists(self.export):
            os.unlink(self.export)
        self.cluster.rbd("export", "--no-progress", self.spec, self.export)
        return self.export

    def lockers(self):
        """Who holds the image's exclusive lock (rbd lock ls)."""
        out = json.loads(self.cluster.rbd("lock", "ls", "--format", "json", self.spec) or "[]")
        if isinstance(out, dict):       # older rbd: {lock id: {locker, address}}
            out = [dict(v, id=k) for k, v in out.items()]
        return sorted((x["locker"], x["address"]) for x in out)

    def remove(self):
        self.cluster.rbd("rm", "--no-progress", self.spec)


def _serve(host, ctrlr, vol, max_queues=None, cpumask=None, packed=False):
    if isinstance(vol, str):
        return host.serve_file(ctrlr, vol, max_queues=max_queues, cpumask=cpumask,
                               packed_ring=packed)
    assert cpumask is None and not packed, "rbd volumes are served plainly here"
    return vol.serve(host, ctrlr, max_queues=max_queues)


def _contents(vol):
    return vol if isinstance(vol, str) else vol.contents()


def _md5(path, offset=0, length=None):
    h = hashlib.md5()
    with open(path, "rb") as f:
        f.seek(offset)
        left = length if length is not None else os.path.getsize(path) - offset
        while left > 0:
            chunk = f.read(min(left, 4 * MB))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def _reads(shell, disk="vda"):
    """Read requests the guest completed on disk (field 1 of its stat)."""
    return int(shell.check("cat /sys/block/%s/stat" % disk).split()[0])


def _start_workload(shell, disk="vda", mb=DISK_MB):
    """Background guest I/O for the migration.

    The writer, per round: 1 MiB of fresh data over the next MiB (O_DIRECT,
    its md5 appended to /tmp/w.md5), then drop_caches and a buffered read
    of the whole disk; rounds go on until /tmp/last exists, then one more
    round and the job ends (_finish_workload).  The ticker: small O_DIRECT
    reads until /tmp/stop exists, so that completions keep coming (the
    stall measure).
    """
    # The guest kernel drops a block device's page cache on its last
    # close: the console shell keeps the disk open (fd 7) so that what the
    # workload reads stays cached across the migration.
    shell.check("exec 7</dev/%s; rm -f /tmp/stop /tmp/last /tmp/w.md5" % disk)
    shell.job_start(
        "wl",
        "i=0; r() { m=$((i %% %d)); "
        "dd if=/dev/urandom of=/tmp/w bs=64k count=16 2>/dev/null; "
        "echo $m $(md5sum < /tmp/w) >> /tmp/w.md5; "
        "dd if=/tmp/w of=/dev/%s bs=64k seek=$((m*16)) oflag=direct conv=fsync 2>/dev/null "
        "|| echo WERR $i; "
        "echo 3 > /proc/sys/vm/drop_caches; "
        "dd if=/dev/%s of=/dev/null bs=64k count=%d 2>/dev/null || echo RERR $i; "
        "i=$((i+1)); }; while [ ! -e /tmp/last ]; do r; done; r" % (mb, disk, disk, mb * 16))
    shell.job_start(
        "tick",
        "n=0; while [ ! -e /tmp/stop ]; do "
        "dd if=/dev/%s of=/dev/null bs=4k count=1 skip=$((n %% 256)) iflag=direct "
        "2>/dev/null || echo TERR; n=$((n+1)); done" % disk)


def _finish_workload(shell, timeout=180):
    """Let the writer do its last round and wait for it."""
    shell.check("touch /tmp/last")
    log = shell.job_wait("wl", timeout)
    assert "ERR" not in log, log


def _stop_ticker(shell):
    shell.check("touch /tmp/stop")
    log = shell.job_wait("tick", 20)
    assert "ERR" not in log, log


def _written(shell):
    """{MiB index: md5} of what the guest wrote last at each MiB."""
    out = {}
    for line in shell.check("cat /tmp/w.md5").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            out[int(parts[0])] = parts[1]
    return out


def _page_cache_md5(shell, disk="vda", mb=DISK_MB):
    """md5 of the disk read through the page cache, and whether that read
    needed the disk at all."""
    before = _reads(shell, disk)
    out = shell.check("dd if=/dev/%s bs=64k count=%d 2>/dev/null | md5sum" % (disk, mb * 16),
                      timeout=120)
    return out.split()[0], _reads(shell, disk) - before


def _no_guest_errors(shell):
    # Filtered in the guest: the TCG serial console is slow.
    _, out = shell.run("dmesg | grep -i -E '%s'" % DMESG_ERRORS, timeout=60)
    assert not out.strip(), out


def _report(name, info, stall, extra=None):
    rec = {"test": name, "downtime_ms": info.get("downtime"),
           "total_ms": info.get("total-time"), "setup_ms": info.get("setup-time"),
           "stall_ms": round(stall * 1000, 1) if stall is not None else None,
           "ram_transferred_mb": round(info.get("ram", {}).get("transferred", 0) / MB, 1)}
    rec.update(extra or {})
    print("MIGRATION-RESULT " + json.dumps(rec, sort_keys=True))


def _disks(sockets, queues=None, packed=False):
    queues = queues or [1] * len(sockets)
    return [guest_support.VhostDisk(s, num_queues=q, packed=packed)
            for s, q in zip(sockets, queues)]


def _migrate_and_check(image, workdir, a, b, ctrlrs, queues=None, name="file",
                       mem_backend="memfd", hugepage_path=None, mem_mb=GUEST_MB,
                       expect_lost=False, booted=None, done=None, cpumask=None, smp=1,
                       packed=False):
    """Boot on A, migrate to B under guest I/O, check what the guest sees.

    ctrlrs: {ctrlr: backing file or RbdVolume}; the first is the disk the
    workload and the page-cache check use (vda).  booted(shell) runs on A
    before the migration, done(shell, src) on B after the checks; cpumask:
    every controller's, on both hosts; smp: the guest's vCPUs (Linux uses
    no more queues than it has CPUs); packed: packed virtqueues (controllers
    with packed_ring, disks with packed=on).  Returns
    (query-migrate, stall, whether the page cache matched).
    """
    names = list(ctrlrs)
    src_socks = [_serve(a, c, ctrlrs[c], (queues or {}).get(c), cpumask, packed)
                 for c in names]
    dst_socks = [_serve(b, c, ctrlrs[c], (queues or {}).get(c), cpumask, packed)
                 for c in names]
    qs = [(queues or {}).get(c, 1) for c in names]
    uri = "unix:%s/mig-%s.sock" % (workdir, name)
    kw = dict(mem_mb=mem_mb, mem_backend=mem_backend, hugepage_path=hugepage_path,
              cmdline=GUEST_CMDLINE, smp=smp)
    src = guest_support.QemuGuest(image, workdir, disks=_disks(src_socks, qs, packed),
                                  **kw).start()
    dst = None
    try:
        shell = src.shell
        assert guest_support.guest_disks(shell) >= {"vd" + chr(ord("a") + i)
                                                    for i in range(len(names))}
        if booted is not None:
            booted(shell)
        dst = migration.incoming_guest(image, workdir, _disks(dst_socks, qs, packed), uri,
                                       **kw)
        saw_logging = []

        def _active(info):
            if not saw_logging and a.controller(names[0])["dirty_logging"]:
                saw_logging.append(info.get("ram", {}).get("transferred"))

        with migration.CompletionWatch([(a, c) for c in names] + [(b, c) for c in names]) \
                as watch:
            _start_workload(shell)
            last_round = []

            def _after_first_pass(info):
                _active(info)
                if not last_round and info.get("ram", {}).get("dirty-sync-count", 0) >= 2:
                    # QEMU has copied all of RAM once.  The writer's last
                    # round fills the page cache now, by back-end writes
                    # only: from here on only our dirty log sends those
                    # pages to B again.  Then let the migration converge.
                    # A trickle of bandwidth meanwhile: with the back-end's
                    # pages not marked (the drop-log test) so little is
                    # dirty that even a 1 ms limit could let QEMU switch
                    # over under the running last round (seen: its shell
                    # then never answered on A).
                    last_round.append(info["ram"]["transferred"])
                    src.qmp.execute("migrate-set-parameters", **{"max-bandwidth": 4096})
                    _finish_workload(shell)
                    src.qmp.execute("migrate-set-parameters", **{
                        "downtime-limit": 300, "max-bandwidth": MIGRATE_BANDWIDTH})

            t0 = time.monotonic()
            # A downtime limit of 1 ms keeps QEMU iterating until the last
            # round is done.
            info = migration.migrate(src, uri, max_bandwidth=MIGRATE_BANDWIDTH,
                                     downtime_limit_ms=1, on_active=_after_first_pass)
            t1 = time.monotonic()
            assert info["status"] == "completed", info
            assert last_round, "the migration converged before its first pass ended: %s" % info
            shell = dst.shell
            # The ticker goes on on B.
            _stop_ticker(shell)
        stall = watch.longest_gap(t0, t1 + 1.0)
        assert saw_logging, "agent A never reported dirty logging during the migration"
        assert dst.qmp.execute("query-status")["status"] == "running"
        # The source QEMU stops its vhost device with logging still set;
        # the destination never logs.
        assert not b.controller(names[0])["dirty_logging"]

        got, reads = _page_cache_md5(shell)
        assert reads == 0, "the page-cache read needed %d disk reads" % reads
        contents = _contents(ctrlrs[names[0]])
        want = _md5(contents)
        if expect_lost:
            return info, stall, got == want
        assert got == want, "guest page cache differs from the volume after migration"
        for mib, md5 in _written(shell).items():
            assert _md5(contents, mib * MB, MB) == md5, mib
        # The disks work on B: direct I/O on each, seen in the files.
        for i, c in enumerate(names):
            disk = "vd" + chr(ord("a") + i)
            shell.check("dd if=/dev/urandom of=/tmp/z bs=4k count=16 2>/dev/null")
            md5 = shell.check("md5sum < /tmp/z").split()[0]
            shell.check("dd if=/tmp/z of=/dev/%s bs=4k seek=1000 oflag=direct conv=fsync "
                        "2>/dev/null" % disk, timeout=60)
            assert _md5(_contents(ctrlrs[c]), 1000 * 4096, 16 * 4096) == md5, c
        _no_guest_errors(shell)
        if done is not None:
            done(shell, src)
        assert b.controller(names[0])["completed_ios"] > 0
        _report(name, info, stall, {"disks": len(names), "queues": qs, "mem": mem_backend})
        return info, stall, True
    finally:
        for g in (dst, src):
            if g is not None:
                g.stop()
        for c in names:
            for h in (a, b):
                try:
                    h.remove(c)
                except Exception:
                    pass


def test_migrate_file_two_disks_two_queues(image, workdir, hosts):
    a, b = hosts
    vols = {"m0": _volume(workdir, "m0"), "m1": _volume(workdir, "m1", 8)}
    _migrate_and_check(image, workdir, a, b, vols, queues={"m1": 2}, name="file-2disks")


def test_migrate_packed_rings(image, workdir, hosts):
    """Packed virtqueues (packed=on): QEMU moves the rings' indexes and wrap
    counters; A's dirty log marks the used descriptors it writes into the
    descriptor ring; the guest on B reads its page cache intact and its
    disks work, on two queues of the second disk too."""
    a, b = hosts
    vols = {"p0": _volume(workdir, "p0"), "p1": _volume(workdir, "p1", 8)}

    def booted(shell):
        vdev = shell.check("basename $(readlink /sys/block/vda/device)").strip()
        features = shell.check("cat /sys/bus/virtio/devices/%s/features" % vdev).strip()
        assert features[34] == "1", features   # VIRTIO_F_RING_PACKED

    _migrate_and_check(image, workdir, a, b, vols, queues={"p1": 2}, name="file-packed",
                       booted=booted, packed=True, smp=2)


def test_migrate_with_queues_on_two_reactors(image, workdir):
    """Both agents on cores 0 and 1, each disk's two queues on one reactor
    each: both reactors mark the dirty log, and the switch-over flush comes
    from the queue QEMU stops last, on the other reactor than queue 0."""
    a, b = _hosts(workdir, "r2", core_mask="0x3")
    try:
        vols = {"m0": _volume(workdir, "r2m0"), "m1": _volume(workdir, "r2m1", 8)}

        def booted(shell):
            for c in vols:
                info = a.controller(c)
                assert [(q["reactor_core"], q["started"]) for q in info["queues"]] == \
                    [(0, True), (1, True)], info

        _migrate_and_check(image, workdir, a, b, vols, queues={"m0": 2, "m1": 2},
                           cpumask="0x3", name="file-2reactors", booted=booted, smp=2)
    finally:
        for h in (a, b):
            h.stop()


def test_migrate_hugepage_memory(image, workdir, hosts):
    a, b = hosts
    mem_mb = 128
    # Both QEMUs hold the guest's RAM at the switch-over, plus slack.
    with hugepages.hugetlbfs(2 * mem_mb // 2 + 8) as path:
        _migrate_and_check(image, workdir, a, b, {"h0": _volume(workdir, "h0")},
                           name="file-hugepages", mem_backend="hugepages",
                           hugepage_path=path, mem_mb=mem_mb)


def test_migrate_rbd_the_exclusive_lock_moves_to_b(image, workdir, hosts, cluster):
    """Both agents open the image; A's librbd holds its exclusive lock
    while the guest writes there; B's first write after the switch-over
    takes it over (librbd's cooperative hand-over), with no I/O error on
    either side, and keeps it once A lets the image go."""
    a, b = hosts
    vol = RbdVolume(cluster, workdir, "mig-rbd")
    seen = {}

    def booted(shell):
        shell.check("dd if=/dev/urandom of=/dev/vda bs=4k count=1 seek=7000 oflag=direct "
                    "2>/dev/null")
        seen["before"] = vol.lockers()

    def done(shell, src):
        seen["after"] = vol.lockers()
        src.stop()          # the source QEMU quits, then A lets the volume go
        a.remove("r0")
        seen["after-a-closed"] = vol.lockers()

    try:
        _migrate_and_check(image, workdir, a, b, {"r0": vol}, name="rbd",
                           booted=booted, done=done)
        print("RBD-LOCKS %s" % json.dumps(seen))
        assert len(seen["before"]) == 1, seen
        assert len(seen["after"]) == 1 and seen["after"] != seen["before"], seen
        assert seen["after-a-closed"] == seen["after"], seen
        for host in (a, b):
            log = host.agent.log()
            assert not re.search(r"rbd bdev r0-bdev: .*failed", log), log[-3000:]
    finally:
        vol.remove()


def test_without_dirty_log_the_guest_sees_stale_pages(image, workdir):
    """The check above can fail: with the marks dropped on A, the pages the
    back-end wrote after QEMU had copied them reach B stale."""
    a, b = _hosts(workdir, "drop", env_a={"SB_VHOST_TEST_DROP_DIRTY_LOG": "1"})
    try:
        _, _, same = _migrate_and_check(image, workdir, a, b, {"d0": _volume(workdir, "d0")},
                                        name="drop-log", expect_lost=True)
        assert not same, "the guest's page cache survived without dirty logging"
        assert "SB_VHOST_TEST_DROP_DIRTY_LOG is set" in a.agent.log()
    finally:
        a.stop()
        b.stop()


def test_cancel_then_missing_controller_guest_stays_on_a(image, workdir, hosts):
    a, b = hosts
    path = _volume(workdir, "c0")
    sock_a = a.serve_file("c0", path)
    sock_b = b.serve_file("c0", path)
    src = guest_support.QemuGuest(image, workdir, disks=_disks([sock_a])).start()
    dst = None
    try:
        shell = src.shell
        # 1. Cancelled half-way: the guest goes on on A, no error anywhere.
        uri = "unix:%s/mig-cancel.sock" % workdir
        dst = migration.incoming_guest(image, workdir, _disks([sock_b]), uri)
        _start_workload(shell)
        cancelled = []

        def _cancel(info):
            if not cancelled and info.get("ram", {}).get("transferred", 0) > 8 * MB:
                assert a.controller("c0")["dirty_logging"]
                src.qmp.execute("migrate_cancel")
                cancelled.append(True)

        info = migration.migrate(src, uri, max_bandwidth=8 << 20, on_active=_cancel)
        assert info["status"] == "cancelled", info
        assert src.qmp.execute("query-status")["status"] == "running"
        _finish_workload(shell)
        _stop_ticker(shell)
        deadline = time.monotonic() + 10
        while a.controller("c0")["dirty_logging"]:
            assert time.monotonic() < deadline, "dirty logging still on after the cancel"
            time.sleep(0.1)
        got, _ = _page_cache_md5(shell)
        assert got == _md5(path)
        dst.stop()
        dst = None

        # 2. B has no controller: the destination QEMU cannot start, the
        # source's migrate fails with a clear error, the guest goes on on A.
        b.remove("c0")
        uri = "unix:%s/mig-none.sock" % workdir
        with pytest.raises(guest_support.GuestError) as exc:
            migration.incoming_guest(image, workdir,
                                     [guest_support.VhostDisk(sock_b, reconnect=0)], uri,
                                     boot_timeout=30)
        assert sock_b in str(exc.value), str(exc.value)
        with pytest.raises((migration.MigrationError, guest_support.GuestError)) as exc:
            migration.migrate(src, uri, timeout=30)
        assert "mig-none.sock" in str(exc.value) or "connect" in str(exc.value).lower(), \
            str(exc.value)
        assert src.qmp.execute("query-status")["status"] == "running"
        shell.check("dd if=/dev/urandom of=/tmp/z bs=4k count=8 2>/dev/null")
        md5 = shell.check("md5sum < /tmp/z").split()[0]
        shell.check("dd if=/tmp/z of=/dev/vda bs=4k seek=100 oflag=direct conv=fsync "
                    "2>/dev/null", timeout=60)
        assert _md5(path, 100 * 4096, 8 * 4096) == md5
        _no_guest_errors(shell)
    finally:
        for g in (dst, src):
            if g is not None:
                g.stop()
        for h in (a, b):
            try:
                h.remove("c0")
            except Exception:
                pass
