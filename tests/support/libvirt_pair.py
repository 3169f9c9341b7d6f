"""A second libvirtd on this machine: host "B" for live-migration tests.

libvirt refuses to migrate a domain to the daemon that runs it (it compares
the host UUIDs), and two daemons cannot share their state directories, so
``second_libvirtd()`` starts one in a mount namespace of its own
(``unshare --mount --propagation private``) in which private directories
under a temporary root are bind-mounted over

    /etc/libvirt        libvirtd.conf (its own host_uuid, log file, its
                        sockets in ``<root>/sock``), qemu.conf (no cgroups:
                        both daemons would name a domain's cgroup
                        qemu-<id>-<name>), virtlogd.conf; no domains,
                        networks or pools of the main daemon
    /run/libvirt        its runtime state and virtlogd's socket
    /var/lib/libvirt    domain directories (monitor sockets, ...)
    /var/log/libvirt    QEMU's logs (its own virtlogd writes them)
    /var/cache/libvirt  its capability cache

Everything else (/tmp with the test's guest files and vhost sockets,
/dev/hugepages, memfd, the network) is the machine's, as for a second
host on shared storage.  The daemon's sockets are in ``<root>/sock``,
outside the namespace' private mounts, so the tests (in the machine's
namespace) reach it at ``qemu+unix:///system?socket=<root>/sock/libvirt-sock``.
It runs its own ``virtlogd`` in the namespace.  QEMU processes it starts
live in the namespace too and run as the same ``libvirt-qemu`` user.

    with second_libvirtd() as pair:
        conn_b = libvirt.open(pair.uri)

On exit every domain of the second daemon is destroyed, libvirtd and
virtlogd are stopped (SIGTERM, then SIGKILL after a bound), any process left
in the namespace is killed and the root is removed; the namespace and its
mounts go away with its last process.

``python -m tests.support.libvirt_pair`` starts one, prints its URI and
keeps it until Ctrl-C (for the by-hand walk-through in docs/cli.md).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import libvirt

_PRIVATE = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt",
            "/var/log/libvirt", "/var/cache/libvirt")
# Copied from the machine's /etc/libvirt (the rest of its tree holds the
# main daemon's domains, networks, pools and secrets).
_CONF_FILES = ("libvirt.conf", "libvirt-admin.conf", "virtlogd.conf",
               "qemu-lockd.conf", "virtlockd.conf")


class PairError(RuntimeError):
    pass


class SecondLibvirtd:
    """A running second libvirtd; ``uri`` reaches it from this namespace."""

    def __init__(self, root):
        self.root = Path(root)
        self.sock_dir = self.root / "sock"
        self.socket = self.sock_dir / "libvirt-sock"
        self.uri = "qemu+unix:///system?socket=%s" % self.socket
        self.host_uuid = str(uuid.uuid4())
        self.log_file = self.root / "libvirtd.log"
        self.out_file = self.root / "libvirtd.out"
        self.proc = None
        self.ns = None          # the mount namespace, once unshare made it

    # -- setup ---------------------------------------------------------------

    def _tree(self, path):
        return self.root / "ns" / path.strip("/").replace("/", "_")

    def _write_config(self):
        etc = self._tree("/etc/libvirt")
        for path in _PRIVATE:
            self._tree(path).mkdir(parents=True, mode=0o755)
        for name in _CONF_FILES:
            src = Path("/etc/libvirt") / name
            if src.exists():
                shutil.copyfile(src, etc / name)
        with open(etc / "libvirtd.conf", "w") as f:
            f.write('unix_sock_dir = "%s"\n' % self.sock_dir)
            f.write('unix_sock_group = "root"\nunix_sock_rw_perms = "0770"\n')
            f.write('auth_unix_rw = "none"\nauth_unix_ro = "none"\n')
            f.write('host_uuid = "%s"\n' % self.host_uuid)
            f.write('log_outputs = "3:file:%s"\n' % self.log_file)
        qemu_conf = Path("/etc/libvirt/qemu.conf")
        text = qemu_conf.read_text() if qemu_conf.exists() else ""
        with open(etc / "qemu.conf", "w") as f:
            f.write(text)
            f.write("\n# second libvirtd of tests/support/libvirt_pair.py\n"
                    "cgroup_controllers = [ ]\n")
        self.sock_dir.mkdir(mode=0o755)

    def _script(self):
        lines = ["set -e"]
        for path in _PRIVATE:
            lines.append("mkdir -p %s" % path)
            lines.append("mount --bind %s %s" % (self._tree(path), path))
        lines.append("virtlogd -d -p %s -f /etc/libvirt/virtlogd.conf"
                     % (self.root / "virtlogd.pid"))
        lines.append("exec libvirtd -p %s -f /etc/libvirt/libvirtd.conf"
                     % (self.root / "libvirtd.pid"))
        return "\n".join(lines) + "\n"

    def start(self, timeout=60):
        if os.geteuid() != 0:
            raise PairError("a second libvirtd needs root (mount namespace)")
        self._write_config()
        out = open(self.out_file, "wb")
        try:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private",
                 "sh", "-c", self._script()],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while True:
            self._note_namespace()
            if self.proc.poll() is not None:
                raise PairError("second libvirtd exited with %s:\n%s"
                                % (self.proc.returncode, self.log()))
            if self.socket.exists() and self._answers():
                return self
            if time.monotonic() > deadline:
                raise PairError("second libvirtd did not answer on %s in %ss:\n%s"
                                % (self.uri, timeout, self.log()))
            time.sleep(0.2)

    def _answers(self):
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError:
            return False
        conn.close()
        return True

    # -- inspection ------------------------------------------------------------

    def log(self, tail=6000):
        text = ""
        for path in (self.out_file, self.log_file):
            try:
                text += "== %s\n%s\n" % (path, path.read_text(errors="replace")[-tail:])
            except OSError:
                pass
        return text

    def qemu_log(self, domain):
        """QEMU's log of ``domain`` on this daemon (its private /var/log)."""
        path = self._tree("/var/log/libvirt") / "qemu" / ("%s.log" % domain)
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def _note_namespace(self):
        """Remember the daemon's mount namespace once unshare has made it
        (so that its processes can be found after libvirtd has died)."""
        if self.ns is not None or self.proc is None:
            return
        try:
            ns = os.readlink("/proc/%d/ns/mnt" % self.proc.pid)
        except OSError:
            return
        if ns != os.readlink("/proc/self/ns/mnt"):
            self.ns = ns

    def namespace_pids(self):
        """Processes in the daemon's mount namespace (libvirtd, virtlogd, QEMU)."""
        self._note_namespace()
        ns = self.ns
        if ns is None:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink("/proc/%s/ns/mnt" % entry) == ns:
                    pids.append(int(entry))
            except OSError:
                continue
        return pids

    # -- teardown --------------------------------------------------------------

    def _destroy_domains(self):
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError:
            return
        try:
            for dom in conn.listAllDomains():
                try:
                    if dom.isActive():
                        dom.destroy()
                except libvirt.libvirtError:
                    pass
                try:
                    dom.undefine()
                except libvirt.libvirtError:
                    pass
        finally:
            conn.close()

    def stop(self, timeout=20):
        """Never raises; ends only the processes of its own namespace."""
        if self.proc is None:
            return
        self._destroy_domains()
        pids = self.namespace_pids()
        for pid in pids:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            self.proc.poll()
            time.sleep(0.1)
        for pid in pids:
            if _alive(pid):
                _kill(pid, signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def second_libvirtd(timeout=60):
    """A second libvirtd for the duration of the block; yields it
    (``.uri``, ``.log()``, ``.qemu_log(domain)``)."""
    root = tempfile.mkdtemp(prefix="sb-lvb-", dir="/tmp")
    os.chmod(root, 0o755)
    daemon = SecondLibvirtd(root)
    try:
        daemon.start(timeout)
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


def main():
    with second_libvirtd() as daemon:
        print(daemon.uri, flush=True)
        print("host_uuid %s; Ctrl-C stops it (and destroys its domains)"
              % daemon.host_uuid, flush=True)
        try:
            while daemon.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        if daemon.proc.poll() is not None:
            print(daemon.log(), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
