"""Live migration of a libvirt domain with a vhost-user disk, end to end.

Two "hosts" on this machine: host A is the machine's libvirtd with agent A;
host B is a second libvirtd in its own mount namespace
(tests/support/libvirt_pair.py) with agent B.  Both agents serve the same
file (storage both hosts see; created ``shared``).
The operator workflow of docs/cli.md ("Live migration"):

1. on A: ``spdk-backend attach DOMAIN VOL`` (the test guest, memfd memory);
2. on B: ``spdk-backend prepare-incoming DOMAIN VOL --file F --xml src.xml
   --output dest.xml`` (bdev + controller on B, the disk's socket rewritten
   to B's: the two agents' socket dirs differ here);
3. ``virsh migrate --live --persistent --undefinesource --xml dest.xml``
   (libvirt-python ``migrate3``, throttled: the guest's I/O runs while its
   RAM is copied);
4. on A: ``spdk-backend detach DOMAIN VOL --after-migration``.

While it migrates the guest writes its disk with O_DIRECT and fills its
page cache with buffered reads (pages written by the back-end, which only
its dirty log reports to QEMU).  Afterwards the domain runs on B, a direct
read matches what the guest wrote, the page cache read again without disk
I/O (/sys/block/vdX/stat) matches too, and so do the backing file's bytes.
(That page cache was refilled on B by the loop's last round: that the
dirty log carries the back-end's pages across is shown, and shown able to
fail, by tests/e2e/test_migration_qemu.py.)
prepare-incoming refuses what cannot migrate (no file on this host, a
malloc volume).  A destination without the controller is tested with QEMU
alone (tests/e2e/test_migration_qemu.py): through libvirt 9.0's migrate3
that case did not return within 180 s here (docs/cli.md, "Live migration").
"""

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time

import libvirt
import pytest
from lxml import etree

from spdk_backend.agent import client as agent_client
from spdk_backend.cmd import _common
from spdk_backend.virt.libvirt import config as sb_vconfig
from tests.support import agent_proc
from tests.support import guest as guest_support
from tests.support import libvirt_domain as lvd
from tests.support import libvirt_pair
from tests.support.guest import guest_disks, new_guest_disk

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

MB = 1 << 20
DISK_MB = 16
CHUNKS = 8                      # the guest rewrites 1 MiB chunks 0..7
GUEST_MB = 256
# libvirt's migration bandwidth, MiB/s: none (as fast as it goes).  QEMU
# before 9.0 under TCG loses vCPU writes now and then while it syncs the dirty
# bitmap (docs/support.md); each sync is a chance, and a throttled
# migration of this guest took ~9 s of them.
BANDWIDTH_MIB = None
MIGRATE_TIMEOUT = 240
MEMFD = "<source type='memfd'/><access mode='shared'/>"
ACCESS = {"vhost_socket_group": "kvm", "vhost_socket_mode": "0660"}


@pytest.fixture(scope="module")
def workdir():
    path = lvd.make_workdir("sbmig-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _agent(workdir, name):
    base = workdir / name
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    return agent_proc.AgentProcess(str(base), **ACCESS)


@pytest.fixture(scope="module")
def agents(workdir):
    """Agent A (source host) and agent B (destination host)."""
    a = _agent(workdir, "host-a")
    b = _agent(workdir, "host-b")
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        for ag in (a, b):
            try:
                ag.stop()
            finally:
                ag.kill9()


@pytest.fixture(scope="module")
def host_b(daemons):
    """The second libvirtd: host B."""
    with libvirt_pair.second_libvirtd() as pair:
        yield pair


@pytest.fixture(scope="module")
def conn_b(host_b):
    c = libvirt.open(host_b.uri)
    yield c
    c.close()


@pytest.fixture(scope="module")
def domains(conn, conn_b, workdir, image):
    with lvd.domain_factory(conn, workdir, image) as make:
        yield make
    # A domain that migrated lives on B.
    for d in make.made:
        try:
            dom = conn_b.lookupByName(d.name)
        except libvirt.libvirtError:
            continue
        try:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError:
            pass


def _command():
    exe = shutil.which("spdk-backend")
    return [exe] if exe else [sys.executable, "-m", "spdk_backend.cmd.cli"]


def sb(agent, uri, *args, check=True, timeout=120):
    """``spdk-backend --rpc-socket <agent> ARGS`` against libvirt ``uri``."""
    env = dict(os.environ, SPDK_BACKEND_LIBVIRT_URI=uri)
    proc = subprocess.run(_command() + ["--rpc-socket", agent.rpc_socket] + list(args),
                          capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError("spdk-backend %s failed (%d):\n%s%s" % (
            " ".join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc.returncode, proc.stdout, proc.stderr


def call(agent, method, **params):
    with agent_client.AgentClient(agent.rpc_socket, timeout=30) as c:
        return c.call(method, params or None)


def serve_shared(agent, name, path):
    """A file volume on storage both hosts see: ``shared``, so that the
    other host's agent may serve the file too."""
    call(agent, "bdev_uring_create", name=name, filename=str(path), shared=True)
    return True


def completed_ios(agent, ctrlr):
    return call(agent, "vhost_get_controllers", name=ctrlr)[0]["completed_ios"]


def reads_completed(shell, dev):
    return int(shell.check("cat /sys/block/%s/stat" % dev).split()[0])


def dest_console(xml, path):
    """The destination's console socket: both "hosts" share /tmp here (on
    two machines the same path would do)."""
    root = etree.fromstring(xml.encode())
    for serial in root.findall("devices/serial"):
        serial.find("source").set("path", str(path))
        # What the guest printed on B while no shell was connected (a
        # panic, say) is kept for a failure message.
        for old in serial.findall("log"):
            serial.remove(old)
        etree.SubElement(serial, "log", file=str(path) + ".log", append="off")
    return etree.tostring(root, encoding="unicode")


def console_log(path):
    try:
        with open(str(path) + ".log", errors="replace") as f:
            return f.read()[-4000:]
    except OSError as e:
        return "(no console log: %s)" % e


def start_io_loop(shell, dev):
    """In the background: per round, 1 MiB of fresh random data to chunk
    k (O_DIRECT; the guest keeps a copy in /tmp/chunk$k), drop_caches and a
    buffered read of the whole disk (the page cache is filled by the
    back-end).  /tmp/rounds counts finished rounds; touching /tmp/stop ends
    the loop after a complete round (stop_io_loop).  The console shell
    keeps the disk open (fd 7): the guest kernel drops a block device's
    page cache on its last close."""
    shell.check("exec 7</dev/%s; rm -f /tmp/stop /tmp/err; echo 0 > /tmp/rounds" % dev)
    # The disk starts as zeros: so do the guest's copies of its chunks.
    shell.check("k=0; while [ $k -lt %d ]; do dd if=/dev/zero of=/tmp/chunk$k bs=64k "
                "count=16 2>/dev/null; k=$((k+1)); done" % CHUNKS)
    shell.job_start(
        "io",
        "n=0; k=0; while [ ! -e /tmp/stop ]; do "
        "dd if=/dev/urandom of=/tmp/c bs=64k count=16 2>/dev/null; "
        "dd if=/tmp/c of=/dev/{dev} bs=64k seek=$((k*16)) oflag=direct conv=notrunc "
        "2>/dev/null || echo write-$n >> /tmp/err; "
        "mv /tmp/c /tmp/chunk$k; "
        "echo 3 > /proc/sys/vm/drop_caches; "
        "dd if=/dev/{dev} of=/dev/null bs=64k 2>/dev/null || echo read-$n >> /tmp/err; "
        "n=$((n+1)); k=$((n % {chunks})); echo $n > /tmp/rounds; sleep 1; "
        "done".format(dev=dev, chunks=CHUNKS))


def rounds(shell):
    return int(shell.check("cat /tmp/rounds").strip() or 0)


def io_loop_state(shell, dev):
    """What the guest's I/O loop and disk look like: for a failure message."""
    try:
        _, out = shell.run("echo rounds $(cat /tmp/rounds); cat /tmp/err /tmp/io.log; "
                           "echo inflight $(cat /sys/block/%s/inflight); "
                           "echo stat $(cat /sys/block/%s/stat); ps" % (dev, dev), timeout=30)
        return out
    except Exception as e:                                   # noqa: BLE001
        return "(the guest did not say: %s)" % e


def wait_rounds(shell, dev, after, timeout, why):
    """Until the I/O loop finished a round past `after`."""
    deadline = time.monotonic() + timeout
    while rounds(shell) <= after:
        if time.monotonic() > deadline:
            raise guest_support.GuestTimeout(
                "%s: no round of the guest's I/O loop in %d s\n%s"
                % (why(), timeout, io_loop_state(shell, dev)))
        time.sleep(0.5)


def stop_io_loop(shell, dev, timeout=90):
    shell.check("touch /tmp/stop")
    try:
        shell.job_wait("io", timeout)
    except guest_support.GuestCommandError as e:
        raise guest_support.GuestTimeout("the guest's I/O loop did not stop in %d s: %s\n%s"
                                         % (timeout, e, io_loop_state(shell, dev)))
    assert shell.check("cat /tmp/err 2>/dev/null; true").strip() == ""


def expected_md5(shell):
    """md5 of the first CHUNKS MiB as the guest wrote them."""
    return shell.check("cat %s | md5sum" % " ".join(
        "/tmp/chunk%d" % k for k in range(CHUNKS)), timeout=60).split()[0]


def file_md5(path, size=CHUNKS * MB):
    with open(path, "rb") as f:
        return hashlib.md5(f.read(size)).hexdigest()


def migrate(dom, conn_b, dest_xml, timeout=MIGRATE_TIMEOUT,
            bandwidth=BANDWIDTH_MIB):
    """``virsh migrate --live --persistent --undefinesource --xml`` through
    libvirt-python (the client talks to both daemons), over TCP on
    127.0.0.1; bounded: the job is aborted after ``timeout``.  Returns
    (the domain on B, seconds) or raises the libvirtError."""
    params = {libvirt.VIR_MIGRATE_PARAM_DEST_XML: dest_xml,
              libvirt.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.1"}
    if bandwidth:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = bandwidth
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST |
             libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
    result = {}

    def run():
        try:
            result["dom"] = dom.migrate3(conn_b, params, flags)
        except libvirt.libvirtError as exc:
            result["error"] = exc

    start = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        try:
            dom.abortJob()
        except libvirt.libvirtError:
            pass
        thread.join(60)
        raise AssertionError("migration did not finish in %ss" % timeout)
    if "error" in result:
        raise result["error"]
    return result["dom"], time.monotonic() - start


def migratable_xml(dom):
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE |
                       libvirt.VIR_DOMAIN_XML_SECURE)


class GuestBrokeOnB(AssertionError):
    """The guest misbehaved on B after the switch-over (gone, silent, or its
    I/O loop stuck): what QEMU's lost TCG dirty bits cause (docs/support.md)."""


def tcg_loses_dirty_bits(conn):
    """QEMU before 9.0 running TCG guests (all of them here: no KVM)."""
    return conn.getVersion() < 9000000


def _migrate_under_io(a, b, host_b, conn_b, domains, workdir):
    shared_dir = workdir / "shared"
    shared_dir.mkdir(exist_ok=True)
    d = domains("mig", memory_backing=MEMFD, vcpus=1, memory_mib=GUEST_MB)
    vol = "mv-" + d.name[-8:]
    path = shared_dir / vol
    with open(path, "wb") as f:
        f.truncate(DISK_MB * MB)
    shared = serve_shared(a, vol, path)
    ctrlr = _common.ctrlr_name(d.name, vol)

    d.start()
    shell = d.shell
    before = guest_disks(shell)
    sb(a, lvd.URI, "attach", d.name, vol, "--queues", "1")
    dev = new_guest_disk(shell, before)

    # Step 2 on host B: the controller, and the XML with B's socket.
    src_xml = workdir / "src.xml"
    dst_xml = workdir / "dest.xml"
    src_xml.write_text(migratable_xml(d.dom))
    rc, out, _ = sb(b, host_b.uri, "prepare-incoming", d.name, vol, "--file", str(path),
                    "--xml", str(src_xml), "--output", str(dst_xml))
    b_socket = os.path.join(b.vhost_socket_dir, ctrlr)
    assert "controller %s, socket %s" % (ctrlr, b_socket) in out
    assert os.path.join(a.vhost_socket_dir, ctrlr) in out        # rewritten from A's
    assert ctrlr in {c["ctrlr"] for c in call(b, "vhost_get_controllers")}
    disk_el = sb_vconfig.find_vhost_disk_element(etree.fromstring(dst_xml.read_bytes()), ctrlr)
    assert disk_el.find("source").get("path") == b_socket
    # Again: a no-op that reports the same socket.
    rc, out, _ = sb(b, host_b.uri, "--json", "prepare-incoming", d.name, vol,
                    "--xml", str(src_xml), "--output", str(dst_xml))
    assert '"created_ctrlr": false' in out and '"created_bdev": false' in out
    console_b = workdir / ("%s.console-b" % d.name)
    dest = dest_console(dst_xml.read_text(), console_b)

    start_io_loop(shell, dev)
    wait_rounds(shell, dev, 0, 60, lambda: "on A")
    ios_a = completed_ios(a, ctrlr)
    rounds_before = rounds(shell)
    shell.close()
    d.close_shell()

    dom_b, seconds = migrate(d.dom, conn_b, dest)
    print("MIGRATION-LIBVIRT seconds=%.1f bandwidth=%s MiB/s shared=%s"
          % (seconds, BANDWIDTH_MIB or "unlimited", shared))

    def broke(what):
        return GuestBrokeOnB("%s\nQEMU on B:\n%s\nagent B:\n%s\nagent A:\n%s\n"
                             "guest console on B:\n%s"
                             % (what, host_b.qemu_log(d.name)[-3000:], b.log()[-3000:],
                                a.log()[-2000:], console_log(console_b)))

    shell = None
    try:
        # The domain runs on B, no longer on A.
        if not dom_b.isActive():
            raise broke("the domain stopped on B")
        with pytest.raises(libvirt.libvirtError):
            d.conn.lookupByName(d.name)
        assert conn_b.lookupByName(d.name).isPersistent()
        assert completed_ios(a, ctrlr) > ios_a            # I/O ran while it migrated
        try:
            shell = guest_support.SerialShell(str(console_b), connect_timeout=30,
                                              alive=lambda: bool(dom_b.isActive()))
        except guest_support.GuestError as e:
            raise broke(str(e))
        # Ask until the shell answers (it re-sends the probe every 10 s):
        # one command line sent right after the switch-over was seen lost
        # on QEMU 7.2.
        try:
            shell.wait_ready(timeout=90, probe_after=0)
        except guest_support.GuestError as e:
            raise broke("the guest on B does not answer on its console (state %s): %s"
                        % (dom_b.state(), e))
        on_b = rounds(shell)
        assert on_b >= rounds_before
        try:
            # The loop goes on with B serving the disk: a whole round there.
            wait_rounds(shell, dev, on_b, 90, lambda: "on B")
            stop_io_loop(shell, dev)
        except guest_support.GuestError as e:
            raise broke(str(e))
        assert completed_ios(b, ctrlr) > 0             # the loop went on, on B
        expected = expected_md5(shell)

        # The page cache the last round filled, read again: no disk I/O.
        reads = reads_completed(shell, dev)
        out = shell.check("dd if=/dev/%s bs=64k count=%d 2>/dev/null | md5sum"
                          % (dev, CHUNKS * 16), timeout=60)
        assert reads_completed(shell, dev) == reads
        assert out.split()[0] == expected

        # A direct read through agent B, and the bytes in the file.
        out = shell.check("dd if=/dev/%s bs=64k count=%d iflag=direct 2>/dev/null | md5sum"
                          % (dev, CHUNKS * 16), timeout=60)
        assert out.split()[0] == expected
        assert reads_completed(shell, dev) > reads
        assert file_md5(path) == expected

        # Step 4 on host A: nothing left there, the file stays.
        rc, out, _ = sb(a, lvd.URI, "detach", d.name, vol, "--after-migration")
        assert "Controller %s deleted" % ctrlr in out
        assert call(a, "vhost_get_controllers") == []
        assert [x["name"] for x in call(a, "bdev_get_bdevs")] == []
        assert path.exists()

        # B serves the guest: a write now lands in the file.
        out = shell.check("dd if=/dev/urandom of=/tmp/z bs=4096 count=16 2>/dev/null && "
                          "dd if=/tmp/z of=/dev/%s bs=4096 seek=%d oflag=direct "
                          "2>/dev/null && md5sum /tmp/z" % (dev, 3000), timeout=60)
        with open(path, "rb") as f:
            f.seek(3000 * 4096)
            assert hashlib.md5(f.read(16 * 4096)).hexdigest() == out.split()[0]
        rc, out, _ = sb(b, host_b.uri, "--json", "domain", "disks", d.name)
        assert b_socket in out
    finally:
        if shell is not None:
            shell.close()
        # Done on B (or failed): the domain goes, then its controller and
        # bdev on both hosts, so that no later test finds them.
        if dom_b.isActive():
            dom_b.destroy()
        sb(a, lvd.URI, "detach", d.name, vol, "--after-migration", check=False)
        sb(b, host_b.uri, "detach", d.name, vol, "--after-migration", check=False)
    assert call(b, "vhost_get_controllers") == []
    assert call(b, "bdev_get_bdevs") == []
    dom_b.undefine()


def test_live_migration_with_guest_io(agents, host_b, conn_b, domains, workdir):
    a, b = agents
    try:
        _migrate_under_io(a, b, host_b, conn_b, domains, workdir)
    except GuestBrokeOnB as e:
        if not tcg_loses_dirty_bits(conn_b):
            raise
        # QEMU itself corrupted the guest (seen with qemu-storage-daemon
        # serving the disk and with no vhost disk at all): once more, with
        # a fresh guest; a second failure fails.
        print("QEMU %d under TCG broke the migrated guest; once more:\n%s"
              % (conn_b.getVersion(), e))
        _migrate_under_io(a, b, host_b, conn_b, domains, workdir)


def test_prepare_incoming_refuses_what_cannot_migrate(agents, host_b, workdir):
    a, b = agents
    dom = lvd.unique_name("nofile")
    rc, _, err = sb(b, host_b.uri, "prepare-incoming", dom, "novol", "--file",
                    str(workdir / "nosuchfile"), check=False)
    assert rc == 1 and "does not exist on this host" in err and "both hosts share" in err
    call(b, "bdev_malloc_create", name="mvol", num_blocks=2048, block_size=512)
    try:
        rc, _, err = sb(b, host_b.uri, "prepare-incoming", dom, "mvol", check=False)
        assert rc == 1 and "malloc volume" in err and "cannot migrate" in err
    finally:
        call(b, "bdev_malloc_delete", name="mvol")
    assert call(b, "vhost_get_controllers") == []
