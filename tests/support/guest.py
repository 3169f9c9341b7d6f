"""A tiny QEMU guest for end-to-end tests of vhost-user-blk targets.

The guest is built only from Debian packages installed on the host: the
kernel of ``linux-image-cloud-amd64`` (``/boot/vmlinuz-<ver>`` plus the
virtio modules from ``/lib/modules/<ver>``) and ``busybox-static``
(``/bin/busybox``).  No network, no disk image, no root needed.

API
---
``build_guest_image(cache_dir=None, extra_binaries=()) -> GuestImage(kernel, initrd)``
    Writes (once, then reused until an input changes) a copy of the kernel
    and a gzip'd cpio (newc) initramfs into ``cache_dir`` (default
    ``$SB_GUEST_CACHE`` or ``~/.cache/spdk-backend/guest``).  The initramfs'
    ``/init`` mounts proc, sysfs and devtmpfs, ``insmod``s virtio_ring,
    virtio, virtio_pci_modern_dev, virtio_pci_legacy_dev, virtio_pci,
    virtio_blk, prints a ready marker and runs a shell on the serial
    console (echo off, empty prompt).  For libvirt, whose QEMU runs as
    ``libvirt-qemu``, pass a cache dir that user can traverse and read.
    ``build_guest_image(extra_binaries=[host paths])`` adds host programs
    (e.g. util-linux's ``/usr/sbin/blkdiscard`` for ``-z``) as
    ``/extra/bin/<name>`` with the shared libraries ``ldd`` lists; such
    images live in their own subdirectory of the cache.

``SerialShell(sock_path, log_path=None)``
    Connects to the guest's serial port exposed as a unix socket whose
    server is QEMU (``-chardev socket,...,server=on,wait=off -serial
    chardev:ID`` or libvirt ``<serial type='unix'><source mode='bind'
    path='...'/>``).  ``wait_ready(timeout)`` waits for the ready marker;
    ``run(cmd, timeout=30) -> (exit_status, output)`` runs one shell command
    framed by unique start/end markers; ``check(cmd, timeout=30) -> output``
    raises :class:`GuestCommandError` on a non-zero status.  A timeout raises
    :class:`GuestTimeout` carrying the console tail, after sending Ctrl-C so
    the shell takes the next command (``interrupt()`` does that alone).
    ``job_start(name, script)`` / ``job_wait(name, timeout) -> log`` run a
    script in the background (a plain ``&`` job that ends while the shell
    is idle makes BusyBox's ash exit, and init with it).  ``console_text()`` is
    everything read so far.

``VhostDisk(socket, num_queues=1, queue_size=128, reconnect=1, serial=None,
packed=False)``
    One ``vhost-user-blk-pci`` device (``/dev/vda``, ``/dev/vdb``... in order);
    ``packed=True`` gives it packed virtqueues (``packed=on``).

``QemuGuest(image, workdir, disks=(), mem_mb=256, mem_backend='memfd',
hugepage_path=None, smp=1, extra_args=(), boot_timeout=90, no_reboot=False)``
    Context manager (or ``start()``/``stop()``) running qemu-system-x86_64
    with TCG, q35, shared guest memory (memfd, or a file on a hugetlbfs
    mount for ``mem_backend='hugepages'``), the serial console and a QMP
    socket in ``workdir``.  ``start()`` returns once the shell is ready
    (bounded by ``boot_timeout``; on failure the console and QEMU's log are
    in the exception).  ``.shell`` is the :class:`SerialShell`, ``.qmp`` a
    :class:`Qmp` (``execute(cmd, **args)``), ``.boot_seconds`` the boot time,
    ``incoming=URI`` starts it paused on ``-incoming URI`` (a migration
    destination: ``start()`` does not wait for a boot).
    ``reset()`` a QMP ``system_reset`` that waits for the shell again (a guest
    panic reboots too, unless ``no_reboot=True``: then QEMU exits).
    ``stop(keep_logs=False)`` sends QMP ``quit``, SIGKILLs QEMU after a
    timeout and removes the files it created (logs are kept when the
    ``with`` block raised, for triage).

``guest_disks(shell)``, ``new_guest_disk(shell, before)``,
``wait_guest_disks(shell, present=None, absent=None)``
    The guest's vd* disks; wait for a new one (usable: its /dev node
    exists) or for a name to appear or go away (hot-plug and unplug).

Example::

    image = build_guest_image()
    with QemuGuest(image, tmp_path, disks=[VhostDisk(sock)]) as vm:
        rc, out = vm.shell.run("dd if=/dev/vda bs=4096 count=1 | md5sum")
"""

import collections
import fcntl
import glob
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev",
           "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk")
READY_MARKER = "SBGUEST-READY"
# Bump when the initramfs layout or /init changes, to invalidate caches.
_IMAGE_VERSION = "4"

_INIT_SCRIPT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {modules}; do
    insmod /lib/modules/$m.ko || echo "SBGUEST-MODFAIL $m"
done
# Keep kernel messages off the console so they never interleave with
# command output; tests read them with dmesg.
echo 1 > /proc/sys/kernel/printk
export PS1='' PS2='' PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/
stty -echo -onlcr 2>/dev/null
echo {ready}
# cttyhack gives the shell the console as controlling tty (job control,
# Ctrl-C); if the shell ever exits, init dies and panic=-1 reboots.
exec setsid cttyhack sh
""".format(modules=" ".join(MODULES), ready=READY_MARKER)


class GuestError(Exception):
    """The guest could not be built, booted or driven."""


class GuestTimeout(GuestError):
    """A bounded wait on the guest expired; the message has the console."""


class GuestCommandError(GuestError):
    """A command run in the guest exited non-zero."""

    def __init__(self, cmd, status, output):
        super().__init__("guest command %r exited %d:\n%s"
                         % (cmd, status, output))
        self.cmd = cmd
        self.status = status
        self.output = output


class GuestImage(collections.namedtuple("GuestImage", "kernel initrd")):
    """Paths of the kernel and initramfs produced by build_guest_image()."""


def _default_cache_dir():
    env = os.environ.get("SB_GUEST_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "spdk-backend" / "guest"


def _find_kernel():
    """Newest /boot/vmlinuz-<ver> whose /lib/modules/<ver> has virtio_blk."""
    candidates = []
    for path in glob.glob("/boot/vmlinuz-*"):
        ver = path[len("/boot/vmlinuz-"):]
        moddir = Path("/lib/modules") / ver
        if list(moddir.glob("kernel/drivers/block/virtio_blk.ko*")):
            candidates.append((os.stat(path).st_mtime, ver, Path(path)))
    if not candidates:
        raise GuestError("no /boot/vmlinuz-* with a matching "
                         "/lib/modules/<ver>/.../virtio_blk.ko; install "
                         "linux-image-cloud-amd64")
    candidates.sort()
    _, ver, path = candidates[-1]
    return ver, path


def _find_module(ver, name):
    found = sorted(Path("/lib/modules", ver, "kernel").rglob(name + ".ko*"))
    if not found:
        raise GuestError("module %s not found under /lib/modules/%s"
                         % (name, ver))
    return found[0]


def _read_module(path):
    """Module bytes, decompressed: busybox insmod wants a plain ELF."""
    data = path.read_bytes()
    name = path.name
    if name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if name.endswith(".ko.zst"):
        try:
            return subprocess.run(["zstd", "-dc", str(path)], check=True,
                                  capture_output=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise GuestError("cannot decompress %s: %s" % (path, exc))
    return data


class _Cpio:
    """Minimal writer of the cpio 'newc' format the kernel unpacks."""

    def __init__(self):
        self._buf = io.BytesIO()
        self._ino = 1

    def _entry(self, name, mode, data=b"", rdev=(0, 0), nlink=1):
        name_b = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0,
                  rdev[0], rdev[1], len(name_b), 0)
        self._ino += 1
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._buf.write(hdr + name_b)
        self._buf.write(b"\0" * (-(len(hdr) + len(name_b)) % 4))
        self._buf.write(data)
        self._buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name):
        self._entry(name, 0o040755, nlink=2)

    def file(self, name, data, perm=0o644):
        self._entry(name, 0o100000 | perm, data)

    def chardev(self, name, major, minor):
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return self._buf.getvalue()


def _shared_libs(binary):
    """Host paths of the shared libraries (and loader) `binary` needs."""
    try:
        out = subprocess.run(["ldd", str(binary)], check=True, text=True,
                             capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise GuestError("ldd %s failed: %s" % (binary, exc))
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def build_guest_image(cache_dir=None, extra_binaries=()):
    """Build (or reuse) the guest kernel + initramfs.

    :param cache_dir: where to keep them; default $SB_GUEST_CACHE or
        ~/.cache/spdk-backend/guest.
    :param extra_binaries: host programs copied to /extra/bin/ in the
        guest, with their shared libraries at the same paths.
    :returns: GuestImage(kernel, initrd)
    """
    cache = Path(cache_dir) if cache_dir else _default_cache_dir()
    extras = [Path(b) for b in extra_binaries]
    libs = []
    for binary in extras:
        if not binary.is_file():
            raise GuestError("extra binary %s not found" % binary)
        libs += [lib for lib in _shared_libs(binary) if lib not in libs]
    if extras:
        # Their own directory: building one flavour must not delete the
        # other's files while a test is about to boot them.
        cache = cache / ("extra-" + hashlib.sha256(
            " ".join(map(str, extras)).encode()).hexdigest()[:12])
    cache.mkdir(parents=True, exist_ok=True)
    ver, kernel_src = _find_kernel()
    busybox = Path(shutil.which("busybox", path="/bin:/usr/bin") or
                   "/bin/busybox")
    if not busybox.exists():
        raise GuestError("busybox not found; install busybox-static")
    mods = [_find_module(ver, m) for m in MODULES]

    key = hashlib.sha256(_IMAGE_VERSION.encode() + _INIT_SCRIPT.encode())
    for p in [kernel_src, busybox] + mods + extras + libs:
        st = p.stat()
        key.update(("%s:%d:%d\n" % (p, st.st_size, st.st_mtime_ns)).encode())
    digest = key.hexdigest()[:16]
    kernel = cache / ("vmlinuz-%s-%s" % (ver, digest))
    initrd = cache / ("initramfs-%s-%s.cpio.gz" % (ver, digest))

    with open(cache / ".lock", "w") as lock:
        # Several test processes may build at once: one builds, others wait.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if kernel.exists() and initrd.exists():
            return GuestImage(kernel, initrd)
        for old in list(cache.glob("vmlinuz-*")) + \
                list(cache.glob("initramfs-*")):
            old.unlink()
        cpio = _Cpio()
        for d in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"):
            cpio.dir(d)
        # The kernel opens /dev/console for init before devtmpfs exists.
        cpio.chardev("dev/console", 5, 1)
        cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
        cpio.file("init", _INIT_SCRIPT.encode(), 0o755)
        for name, path in zip(MODULES, mods):
            cpio.file("lib/modules/%s.ko" % name, _read_module(path))
        made = {"lib"}
        for path in [lib.parent for lib in libs] + \
                ([Path("/extra/bin")] if extras else []):
            parts = path.relative_to("/").parts
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in made:
                    cpio.dir(d)
                    made.add(d)
        for lib in libs:
            cpio.file(str(lib.relative_to("/")), lib.read_bytes(), 0o755)
        for binary in extras:
            cpio.file("extra/bin/" + binary.name, binary.read_bytes(), 0o755)
        tmp = initrd.with_suffix(".tmp%d" % os.getpid())
        tmp.write_bytes(gzip.compress(cpio.finish(), compresslevel=6))
        os.chmod(tmp, 0o644)
        os.replace(tmp, initrd)
        tmp = kernel.with_suffix(".tmp%d" % os.getpid())
        shutil.copyfile(kernel_src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, kernel)
    return GuestImage(kernel, initrd)


def _connect_unix(path, timeout, what, alive=None):
    """Connect to a unix socket that another process is about to create."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            if alive is not None and not alive():
                raise GuestError("%s: process exited before %s appeared"
                                 % (what, path))
            if time.monotonic() > deadline:
                raise GuestTimeout("%s: cannot connect to %s: %s"
                                   % (what, path, exc))
            time.sleep(0.05)


class SerialShell:
    """Drive the busybox shell on the guest's serial console."""

    def __init__(self, sock_path, log_path=None, connect_timeout=10,
                 alive=None):
        self._sock = _connect_unix(sock_path, connect_timeout,
                                   "serial console", alive)
        self._sock.setblocking(False)
        self._buf = ""          # unread part of the console
        self._all = []          # everything read, for diagnostics
        self._log = open(log_path, "ab") if log_path else None
        self.ready = False

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def console_text(self):
        """Everything the guest printed since we connected."""
        return "".join(self._all)

    def tail(self, n=3000):
        return self.console_text()[-n:]

    def _read(self, wait):
        """Read what is available, waiting at most `wait` seconds."""
        r, _, _ = select.select([self._sock], [], [], max(wait, 0))
        if not r:
            return False
        try:
            data = self._sock.recv(65536)
        except BlockingIOError:
            return False
        if not data:
            raise GuestError("serial console closed (QEMU exited?); "
                             "console tail:\n" + self.tail())
        if self._log:
            self._log.write(data)
            self._log.flush()
        text = data.decode("utf-8", "replace").replace("\r", "")
        self._all.append(text)
        self._buf += text
        return True

    def _send(self, text):
        data = text.encode()
        while data:
            _, w, _ = select.select([], [self._sock], [], 10)
            if not w:
                raise GuestTimeout("serial console not writable; tail:\n"
                                   + self.tail())
            n = self._sock.send(data)
            data = data[n:]

    def _wait_for(self, pattern, timeout, what):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.S)
        while True:
            m = rx.search(self._buf)
            if m:
                self._buf = self._buf[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise GuestTimeout("timed out after %ss waiting for %s; "
                                   "console tail:\n%s"
                                   % (timeout, what, self.tail()))
            self._read(min(left, 1.0))

    def wait_ready(self, timeout=90, probe_after=10):
        """Wait for the init's ready marker (or the answer to a probe, sent
        after ``probe_after`` seconds and every 10 s then)."""
        deadline = time.monotonic() + timeout
        probe_at = time.monotonic() + probe_after
        rx = re.compile(READY_MARKER)
        while not rx.search(self._buf):
            if "SBGUEST-MODFAIL" in self._buf:
                raise GuestError("guest could not load a virtio module; "
                                 "console tail:\n" + self.tail())
            now = time.monotonic()
            if now > deadline:
                raise GuestTimeout("guest not ready after %ss; console "
                                   "tail:\n%s" % (timeout, self.tail()))
            if now > probe_at:
                # We may have connected after the marker was printed (the
                # chardev drops output while nobody listens): ask again.
                # The quotes keep the echoed command from matching.
                self._send("\necho SBGUEST-''READY\n")
                probe_at = now + 10
            self._read(min(deadline - now, 0.5))
        self._buf = ""
        self.ready = True

    def run(self, cmd, timeout=30):
        """Run `cmd` in the guest shell.

        :returns: (exit_status, output) with output's \\r removed.
        :raises GuestTimeout: with the console tail.
        """
        tag = uuid.uuid4().hex[:12]
        start, end = "SBS-" + tag, "SBE-" + tag
        # 'SB''S-' in the command text never equals 'SBS-' in the output,
        # so an echoed command line cannot fake a marker.
        self._send("echo SB''S-%s; { %s\n} </dev/null; echo SB''E-%s $?\n"
                   % (tag, cmd, tag))
        try:
            self._wait_for(re.escape(start) + r"\n", timeout,
                           "start of %r" % cmd)
            m = self._wait_for(r"(.*?)" + re.escape(end) + r" (\d+)\n",
                               timeout, "end of %r" % cmd)
        except GuestTimeout:
            # Ctrl-C the command so the shell takes the next one.
            self.interrupt()
            raise
        return int(m.group(2)), m.group(1)

    def interrupt(self):
        """Send Ctrl-C to the guest shell's foreground job."""
        self._send("\x03")

    def check(self, cmd, timeout=30):
        """Run `cmd`; raise GuestCommandError unless it exits 0."""
        status, out = self.run(cmd, timeout)
        if status != 0:
            raise GuestCommandError(cmd, status, out)
        return out

    # The guest's ash (BusyBox 1.35, interactive on the serial console)
    # exits when a background job ends while it waits for a command line,
    # and as PID 1 that panics the guest.  A bare `cmd &` followed by
    # `wait` only works if `wait` is typed before cmd ends (scripts/demo.py
    # lost its guest that way when a host step took longer than the job).  So a job started here runs its
    # script, prints JOB-DONE, then holds until job_wait() releases it and
    # reaps it with a foreground `wait`.

    def job_start(self, name, script):
        """Run shell `script` in the background; output in /tmp/<name>.log."""
        self.check("rm -f /tmp/{n}.log /tmp/{n}.release; ({s}; echo JOB-DONE $?; "
                   "while [ ! -e /tmp/{n}.release ]; do sleep 0.1; done) "
                   "</dev/null >/tmp/{n}.log 2>&1 & echo $! > /tmp/{n}.pid"
                   .format(n=name, s=script))

    def job_wait(self, name, timeout=60):
        """Wait for job `name` to finish its script; its log."""
        self.check("(i=0; until grep -q JOB-DONE /tmp/{n}.log; do i=$((i+1)); "
                   "[ $i -gt {t} ] && exit 1; sleep 0.1; done) && "
                   "touch /tmp/{n}.release && wait $(cat /tmp/{n}.pid)"
                   .format(n=name, t=int(timeout * 10)), timeout=timeout + 15)
        return self.check("cat /tmp/%s.log" % name)


class Qmp:
    """Synchronous QMP client (events are kept in .events)."""

    def __init__(self, sock_path, timeout=10, alive=None):
        self._sock = _connect_unix(sock_path, timeout, "QMP", alive)
        self._sock.settimeout(timeout)
        self._file = self._sock.makefile("rb")
        self.events = []
        self._recv()  # greeting
        self.execute("qmp_capabilities")

    def _recv(self):
        line = self._file.readline()
        if not line:
            raise GuestError("QMP connection closed")
        return json.loads(line)

    def execute(self, command, **arguments):
        """Run a QMP command; return its 'return' value or raise."""
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self._sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            resp = self._recv()
            if "event" in resp:
                self.events.append(resp)
                continue
            if "error" in resp:
                raise GuestError("QMP %s failed: %s" % (command,
                                                         resp["error"]))
            return resp.get("return")

    def close(self):
        self._file.close()
        self._sock.close()


class VhostDisk(collections.namedtuple(
        "VhostDisk", "socket num_queues queue_size reconnect serial packed")):
    """A vhost-user-blk-pci disk served at unix socket `socket`
    (``packed=True``: packed virtqueues, QEMU's ``packed=on``)."""

    def __new__(cls, socket, num_queues=1, queue_size=128, reconnect=1,
                serial=None, packed=False):
        return super().__new__(cls, str(socket), num_queues, queue_size,
                               reconnect, serial, packed)


class QemuGuest:
    """A qemu-system-x86_64 TCG guest with vhost-user-blk disks."""

    def __init__(self, image, workdir, disks=(), mem_mb=256,
                 mem_backend="memfd", hugepage_path=None, smp=1,
                 extra_args=(), boot_timeout=90, no_reboot=False,
                 cmdline="console=ttyS0 quiet panic=-1",
                 qemu="qemu-system-x86_64", incoming=None):
        if mem_backend not in ("memfd", "hugepages"):
            raise ValueError("mem_backend must be 'memfd' or 'hugepages'")
        if mem_backend == "hugepages" and not hugepage_path:
            raise ValueError("mem_backend='hugepages' needs hugepage_path "
                             "(a hugetlbfs mount)")
        self.image = image
        self.workdir = Path(workdir)
        self.disks = list(disks)
        self.mem_mb = mem_mb
        self.mem_backend = mem_backend
        self.hugepage_path = hugepage_path
        self.smp = smp
        self.extra_args = list(extra_args)
        self.boot_timeout = boot_timeout
        self.no_reboot = no_reboot
        self.cmdline = cmdline
        self.qemu = qemu
        self.incoming = incoming
        self.proc = None
        self.shell = None
        self.qmp = None
        self.boot_seconds = None
        tag = uuid.uuid4().hex[:8]
        self.console_sock = self.workdir / ("console-%s.sock" % tag)
        self.qmp_sock = self.workdir / ("qmp-%s.sock" % tag)
        self.log_path = self.workdir / ("qemu-%s.log" % tag)
        self.console_log = self.workdir / ("console-%s.log" % tag)

    def command(self):
        """The QEMU command line (list of str)."""
        mem = "%dM" % self.mem_mb
        if self.mem_backend == "memfd":
            backend = "memory-backend-memfd,id=mem,size=%s,share=on" % mem
        else:
            backend = ("memory-backend-file,id=mem,size=%s,mem-path=%s,"
                       "share=on,prealloc=on" % (mem, self.hugepage_path))
        args = [self.qemu, "-accel", "tcg", "-machine", "q35", "-cpu", "max",
                "-smp", str(self.smp), "-m", mem,
                "-object", backend, "-numa", "node,memdev=mem",
                "-nodefaults", "-no-user-config", "-display", "none",
                "-kernel", str(self.image.kernel),
                "-initrd", str(self.image.initrd),
                "-append", self.cmdline,
                "-chardev", "socket,id=ser0,path=%s,server=on,wait=off"
                % self.console_sock,
                "-serial", "chardev:ser0",
                "-qmp", "unix:%s,server=on,wait=off" % self.qmp_sock]
        if self.no_reboot:
            # Also turns QMP system_reset into a shutdown.
            args.append("-no-reboot")
        for i, d in enumerate(self.disks):
            chardev = "socket,id=vu%d,path=%s" % (i, d.socket)
            if d.reconnect:
                chardev += ",reconnect=%d" % d.reconnect
            dev = ("vhost-user-blk-pci,id=vblk%d,chardev=vu%d,num-queues=%d,"
                   "queue-size=%d" % (i, i, d.num_queues, d.queue_size))
            if d.serial:
                dev += ",serial=%s" % d.serial
            if d.packed:
                dev += ",packed=on"
            args += ["-chardev", chardev, "-device", dev]
        if self.incoming:
            args += ["-incoming", self.incoming]
        return args + self.extra_args

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def qemu_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self):
        """Start QEMU and wait for the guest shell (bounded)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        try:
            self.shell = SerialShell(self.console_sock, self.console_log,
                                     connect_timeout=self.boot_timeout,
                                     alive=self.alive)
            self.qmp = Qmp(self.qmp_sock, alive=self.alive)
            if self.incoming:
                # A migration destination: its shell arrives with the RAM.
                self.shell.ready = True
            else:
                self.shell.wait_ready(
                    max(1, self.boot_timeout - (time.monotonic() - t0)))
        except Exception as exc:
            console = self.shell.tail() if self.shell else ""
            self.stop(keep_logs=True)
            raise GuestError("guest failed to boot: %s\n--- QEMU log:\n%s\n"
                             "--- console tail:\n%s"
                             % (exc, self.qemu_log(), console)) from exc
        self.boot_seconds = time.monotonic() - t0
        return self

    def reset(self, timeout=None):
        """QMP system_reset, then wait until the shell is back (bounded)."""
        self.shell.ready = False
        self.shell._buf = ""  # an old marker must not count
        t0 = time.monotonic()
        self.qmp.execute("system_reset")
        self.shell.wait_ready(timeout or self.boot_timeout)
        return time.monotonic() - t0

    def stop(self, timeout=15, keep_logs=False):
        """Quit QEMU (QMP quit, then SIGKILL) and remove its files.

        The QEMU and console logs are kept when `keep_logs` is true (the
        context manager keeps them when the block raised).
        """
        if self.proc is not None and self.proc.poll() is None:
            try:
                if self.qmp is not None:
                    self.qmp.execute("quit")
            except (OSError, GuestError, ValueError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(10)
        for closable in (self.qmp, self.shell):
            if closable is not None:
                try:
                    closable.close()
                except OSError:
                    pass
        self.qmp = None
        paths = [self.console_sock, self.qmp_sock]
        if not keep_logs:
            paths += [self.log_path, self.console_log]
        for path in paths:
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop(keep_logs=exc_type is not None)
        return False


# ---- virtio disks seen from the guest's shell ----

def guest_disks(shell):
    """The guest's virtio disks (vd*) by name."""
    out = shell.check("ls /sys/block")
    return {n for n in out.split() if n.startswith("vd")}


def wait_guest_disks(shell, present=None, absent=None, timeout=30):
    """Poll /sys/block in the guest until ``present`` shows up (any new vd*
    if it is a set of names to exclude) or ``absent`` is gone."""
    cond = []
    if present:
        # The /dev node too: devtmpfs creates it a little after sysfs.
        cond.append("[ -e /sys/block/%s ] && [ -b /dev/%s ]" % (present, present))
    if absent:
        cond.append("[ ! -e /sys/block/%s ]" % absent)
    test = " && ".join(cond)
    tries = int(timeout * 10)
    # A subshell: 'exit' in the console's own shell would end init.
    shell.check("(i=0; until %s; do i=$((i+1)); [ $i -gt %d ] && exit 1; "
                "sleep 0.1; done)" % (test, tries), timeout=timeout + 15)


def new_guest_disk(shell, before, timeout=30):
    """Wait for a vd* disk not in ``before``; its name."""
    tries = int(timeout * 10)
    excl = " ".join(sorted(before)) or "none"
    # A name only once sysfs has it (an unmatched glob stays "vd*") and its
    # /dev node exists (devtmpfs creates it a little later): writing to a
    # missing /dev/vdX would create a plain file instead.
    out = shell.check(
        "(i=0; while :; do for d in /sys/block/vd*; do [ -e \"$d\" ] || continue; "
        "n=${d##*/}; case ' %s ' in *\" $n \"*) ;; *) [ -b /dev/$n ] && "
        "echo NEW=$n && exit 0;; esac; done; i=$((i+1)); [ $i -gt %d ] && exit 1; "
        "sleep 0.1; done)" % (excl, tries), timeout=timeout + 15)
    return out.split("NEW=")[1].split()[0]
