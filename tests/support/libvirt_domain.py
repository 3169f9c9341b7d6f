"""A small TCG test guest run by a real libvirtd, for end-to-end tests.

``ensure_libvirtd()`` starts ``virtlogd -d`` and ``libvirtd -d`` when nothing
answers on ``qemu:///system`` (as root) and returns a :class:`Daemons` whose
``stop()`` ends only what it started.

``domain_xml(name, image, workdir, ...)`` is the domain: type ``qemu`` (TCG),
q35 with ACPI (needed for PCIe hotplug), ``root_ports`` free
``pcie-root-port`` controllers, no USB controller and no memory balloon (so
they take no port), the busybox initramfs of :mod:`tests.support.guest`, and
its serial console on a unix socket in ``workdir``.  ``memory_backing`` is
None (private memory) or the inner XML of ``<memoryBacking>``.

``TestDomain`` defines it, starts it, connects a
:class:`~tests.support.guest.SerialShell` to the console, and destroys and
undefines it on ``cleanup()``.

``VhostTarget(workdir, name, size, num_queues)`` is the vhost-user-blk
server the tests attach, over a raw file (``.image``), its socket
(``.socket_path``) open to QEMU, which libvirt runs as an unprivileged user
(``libvirt-qemu`` on Debian).  ``$SB_VHOST_TARGET`` picks it: ``engine``
(default) is the project's own target, a ``spdk-backend-agent`` process
serving the file through a uring bdev and a vhost-blk controller
(:class:`EngineVhostTarget`); ``qsd`` is the peer, qemu-storage-daemon
(:class:`QsdVhostTarget`).

``make_workdir()`` returns a fresh directory under /tmp that the QEMU user
can traverse (pytest's tmp_path is 0700 under /tmp/pytest-of-root).
"""

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import libvirt

from tests.support import guest as guest_support
from tests.support import hugepages
from tests.support.qsd import QsdExport, file_blockdev

URI = "qemu:///system"
NAME_PREFIX = "sbtest-lv-"


class Daemons:
    """libvirtd/virtlogd processes this test session started (maybe none)."""

    def __init__(self, pids=()):
        self.pids = list(pids)

    def stop(self, timeout=15):
        for pid in self.pids:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + timeout
        for pid in self.pids:
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        self.pids = []


def _answers(uri=URI):
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


def _read_pid(path):
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def ensure_libvirtd(timeout=30):
    """Make ``qemu:///system`` answer; start the daemons if needed."""
    if _answers():
        return Daemons()
    if os.geteuid() != 0:
        raise RuntimeError("libvirtd is not running and only root can start "
                           "it here")
    started = []
    for daemon, pidfile in (("virtlogd", "/run/virtlogd.pid"),
                            ("libvirtd", "/run/libvirtd.pid")):
        if subprocess.run(["pgrep", "-x", daemon],
                          stdout=subprocess.DEVNULL).returncode == 0:
            continue
        if daemon == "libvirtd":
            # Before libvirtd starts, as on a host where systemd mounted it.
            hugepages.ensure_system_mount()
        subprocess.run([daemon, "-d"], check=True, timeout=30)
        deadline = time.monotonic() + 10
        pid = None
        while pid is None and time.monotonic() < deadline:
            pid = _read_pid(pidfile)
            if pid is None:
                time.sleep(0.1)
        if pid is not None:
            started.append(pid)
    daemons = Daemons(started)
    deadline = time.monotonic() + timeout
    while not _answers():
        if time.monotonic() > deadline:
            daemons.stop()
            raise RuntimeError("libvirtd did not answer on %s" % URI)
        time.sleep(0.2)
    return daemons


def make_workdir(prefix="sbtest-lv-"):
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    return path


@contextlib.contextmanager
def domain_factory(conn, workdir, image):
    """``make(tag, **kw)`` makes a TestDomain on ``conn``; ``make.made``
    lists them, and each is destroyed and undefined on exit."""
    made = []

    def make(tag, **kw):
        d = TestDomain(conn, workdir, tag=tag, image=image, **kw)
        made.append(d)
        return d

    make.made = made
    try:
        yield make
    finally:
        for d in made:
            d.cleanup()


def unique_name(tag):
    return "%s%s-%s" % (NAME_PREFIX, tag, uuid.uuid4().hex[:8])


def domain_xml(name, kernel, initrd, console_path, memory_mib=256, vcpus=2,
               memory_backing=None, root_ports=4):
    backing = ("<memoryBacking>%s</memoryBacking>" % memory_backing
               if memory_backing else "")
    ports = "\n".join("<controller type='pci' model='pcie-root-port'/>"
                      for _ in range(root_ports))
    return """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{mem}</memory>
  {backing}
  <vcpu>{vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='pci' model='pcie-root'/>
    {ports}
    <controller type='usb' model='none'/>
    <serial type='unix'>
      <source mode='bind' path='{console}'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>""".format(name=name, mem=memory_mib, backing=backing, vcpus=vcpus,
                    kernel=kernel, initrd=initrd, console=console_path,
                    ports=ports)


class TestDomain:
    """One libvirt domain of the test guest (defined, not started)."""

    __test__ = False  # not a pytest class

    def __init__(self, conn, workdir, tag="guest", image=None, **xml_kw):
        self.conn = conn
        self.workdir = Path(workdir)
        self.name = unique_name(tag)
        image = image or guest_support.build_guest_image()
        # Copies the QEMU user can read (libvirt relabels them while the
        # domain runs; the shared cache is left alone).
        self.kernel = self.workdir / "vmlinuz"
        self.initrd = self.workdir / "initramfs.cpio.gz"
        for src, dst in ((image.kernel, self.kernel),
                         (image.initrd, self.initrd)):
            if not dst.exists():
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o644)
        self.console = self.workdir / ("%s.console" % self.name)
        self.xml = domain_xml(self.name, self.kernel, self.initrd,
                              self.console, **xml_kw)
        self.dom = conn.defineXML(self.xml)
        self.shell = None

    def start(self, wait_shell=True, timeout=90):
        """Start the domain; with ``wait_shell``, return once the guest's
        shell answers on the serial console."""
        self.close_shell()
        self.dom.create()
        if wait_shell:
            self.attach_shell(timeout)
        return self

    def attach_shell(self, timeout=90):
        """Connect to the console of the running guest and wait for its
        shell (after a start done elsewhere, e.g. with virsh)."""
        self.close_shell()
        self.shell = guest_support.SerialShell(
            str(self.console), connect_timeout=30,
            alive=lambda: bool(self.dom.isActive()))
        self.shell.wait_ready(timeout)
        return self.shell

    def virsh(self, *args, timeout=60):
        """Run ``virsh -c qemu:///system ARGS... NAME``; return stdout."""
        if any(a in ("destroy", "start", "shutdown", "reboot")
               for a in args):
            self.close_shell()
        proc = subprocess.run(["virsh", "-c", URI] + list(args) +
                              [self.name], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError("virsh %s failed: %s"
                               % (" ".join(args), proc.stderr.strip()))
        return proc.stdout

    def close_shell(self):
        if self.shell is not None:
            self.shell.close()
            self.shell = None

    def destroy(self):
        self.close_shell()
        try:
            if self.dom.isActive():
                self.dom.destroy()
        except libvirt.libvirtError:
            pass

    def cleanup(self):
        """Destroy and undefine; never raises."""
        self.destroy()
        try:
            self.dom.undefineFlags(
                getattr(libvirt, "VIR_DOMAIN_UNDEFINE_NVRAM", 0))
        except libvirt.libvirtError:
            pass
        try:
            self.console.unlink()
        except OSError:
            pass


TARGET_ENV = "SB_VHOST_TARGET"


def VhostTarget(workdir, name, size=64 * 1024 * 1024, num_queues=4, kind=None):
    """The vhost-user-blk target of ``kind`` (default ``$SB_VHOST_TARGET``
    or ``engine``); call ``start()`` on it."""
    kind = kind or os.environ.get(TARGET_ENV) or "engine"
    classes = {"engine": EngineVhostTarget, "qsd": QsdVhostTarget}
    if kind not in classes:
        raise ValueError("%s=%r: use one of %s" % (TARGET_ENV, kind,
                                                   ", ".join(sorted(classes))))
    return classes[kind](workdir, name, size=size, num_queues=num_queues)


class EngineVhostTarget:
    """The engine's vhost-blk controller over a raw image, served by its own
    spdk-backend-agent process (socket mode 0666 for QEMU)."""

    kind = "engine"

    def __init__(self, workdir, name, size=64 * 1024 * 1024, num_queues=4):
        from tests.support import agent_proc
        self.workdir = Path(workdir)
        self.name = name
        self.image = self.workdir / ("%s.img" % name)
        self.size = size
        self.num_queues = num_queues
        self.base = self.workdir / ("%s-agent" % name)
        self.base.mkdir(mode=0o755)
        os.chmod(self.base, 0o755)
        with open(self.image, "wb") as f:
            f.truncate(size)
        self._agent = agent_proc.AgentProcess(str(self.base), max_delay_us=1000,
                                              vhost_socket_mode="0666")
        self.socket_path = Path(self._agent.vhost_socket_dir) / name

    def start(self):
        self._agent.start()
        with self._agent.client() as c:
            c.call("bdev_uring_create", name=self.name,
                   filename=str(self.image), block_size=512)
            c.call("vhost_create_blk_controller", ctrlr=self.name,
                   dev_name=self.name, max_queues=self.num_queues)
        return self

    @property
    def pid(self):
        """The serving process (whose mappings of guest RAM tests look at)."""
        return self._agent.proc.pid

    def log(self):
        return self._agent.log()

    def stop(self):
        try:
            self._agent.stop()
        finally:
            self._agent.kill9()
            shutil.rmtree(self.base, ignore_errors=True)
            try:
                self.image.unlink()
            except FileNotFoundError:
                pass


class QsdVhostTarget:
    """A vhost-user-blk server over a raw image (qemu-storage-daemon), the
    peer the engine is compared with."""

    kind = "qsd"

    def __init__(self, workdir, name, size=64 * 1024 * 1024, num_queues=4):
        self.workdir = Path(workdir)
        self.image = self.workdir / ("%s.img" % name)
        self.socket_path = self.workdir / ("%s.sock" % name)
        self.size = size
        with open(self.image, "wb") as f:
            f.truncate(size)
        self._qsd = QsdExport(self.socket_path, file_blockdev(self.image),
                              writable=True, num_queues=num_queues,
                              log_path=self.workdir / ("%s.qsd.log" % name))

    def start(self):
        self._qsd.start()
        # QEMU runs as the libvirt QEMU user and connect() needs write
        # permission on the socket.
        os.chmod(self.socket_path, os.stat(self.socket_path).st_mode |
                 stat.S_IWOTH | stat.S_IROTH | stat.S_IWGRP | stat.S_IRGRP)
        return self

    @property
    def pid(self):
        return self._qsd.proc.pid

    def log(self):
        return self._qsd.log()

    def stop(self):
        self._qsd.stop()
        try:
            self.image.unlink()
        except FileNotFoundError:
            pass
