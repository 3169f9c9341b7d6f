"""A service manager with a file-descriptor store, for tests.

systemd is not PID 1 on the test machines, so ``systemd-run`` cannot start
a unit here.  ``ServiceManager`` does, at the socket level, what systemd
does for a ``Type=notify`` service with ``NotifyAccess=main`` and
``FileDescriptorStoreMax=`` (systemd.service(5), sd_notify(3),
sd_listen_fds(3)):

* it listens on a datagram socket passed as ``$NOTIFY_SOCKET`` and takes
  only messages whose sender (SO_PASSCRED) is the main process;
* ``READY=1``, ``RELOADING=1`` and ``STATUS=`` are recorded;
* ``MAINPID=`` makes another process the main one, as systemd does
  (``service_notify_message``: the rest of that datagram still counts as
  the old main's) when the new pid belongs to the service: systemd asks
  its cgroup, this asks its session (``start()`` gives the service a
  session of its own, as systemd does); ``main_pids`` keeps the history;
* ``FDSTORE=1`` with ``FDNAME=`` keeps the attached fds under that name
  (up to ``max_fds``, more are closed and counted); as systemd
  (``service_add_fd_store``), an fd whose open file is already stored is
  dropped ("Suppressing duplicate fd", counted in ``duplicates``), and a
  name systemd would refuse (over 255 bytes, not printable ASCII, or with
  ':') is counted in ``bad_names`` and its fds dropped; ``FDSTOREREMOVE=1``
  closes every fd of that name;
* ``start()`` runs the command with the stored fds from fd 3 on,
  ``$LISTEN_FDS``, ``$LISTEN_FDNAMES`` and ``$LISTEN_PID`` (the started
  process's own pid), as systemd does when it restarts a service that
  crashed (``Restart=on-failure``): the store survives that restart.
"""

import array
import ctypes
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from tests.support.pidhandle import ProcessHandle

_LAUNCHER = """
import fcntl, os, sys
src = [int(x) for x in sys.argv[1].split(",") if x]
tmp = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3 + len(src) + 64) for fd in src]
for fd in src:
    os.close(fd)
for i, fd in enumerate(tmp):
    os.dup2(fd, 3 + i, inheritable=True)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execvp(sys.argv[2], sys.argv[2:])
"""


_libc = ctypes.CDLL(None, use_errno=True)
_SYS_KCMP = 312          # x86_64
_KCMP_FILE = 0


def _same_file(a, b):
    """Whether two of our fds are the same open file (kcmp(2), as systemd's same_fd)."""
    pid = os.getpid()
    rc = _libc.syscall(_SYS_KCMP, pid, pid, _KCMP_FILE, a, b)
    if rc < 0:
        raise OSError(ctypes.get_errno(), "kcmp")
    return rc == 0


def _fdname_valid(name):
    """systemd's fdname_is_valid(): 1-255 printable ASCII bytes, no ':'."""
    return (0 < len(name) <= 255 and ":" not in name
            and all(0x20 <= ord(ch) < 0x7f for ch in name))


class ServiceManager:
    def __init__(self, max_fds=4096):
        self.dir = tempfile.mkdtemp(prefix="sbfdstore-")
        self.path = os.path.join(self.dir, "notify")
        self.max_fds = max_fds
        self.store = []          # [(name, fd)], in arrival order
        self.messages = []       # accepted, as dicts
        self.rejected = 0        # datagrams from another process
        self.overflow = 0        # fds refused for max_fds
        self.duplicates = 0      # fds of an open file already stored
        self.bad_names = 0       # FDNAMEs systemd refuses
        self.proc = None
        self.main_pids = []      # every main pid, in order
        self.refused_pids = 0    # MAINPID= of a process not the main one's child
        self._replaced = []      # earlier main processes we started, to reap
        self._sid = None         # the service's session
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    # ---- the notify socket ----

    def _run(self):
        fd_size = array.array("i").itemsize
        creds_size = struct.calcsize("3i")
        while not self._stop.is_set():
            try:
                data, anc, _flags, _addr = self._sock.recvmsg(
                    4096, socket.CMSG_SPACE(253 * fd_size) + socket.CMSG_SPACE(creds_size))
            except socket.timeout:
                continue
            except OSError:
                return
            fds, pid = [], None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(cdata[:len(cdata) - len(cdata) % fd_size])
                    fds.extend(a)
                elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", cdata[:creds_size])[0]
            self._handle(data.decode(errors="replace"), fds, pid)

    def _handle(self, text, fds, pid):
        with self._lock:
            main = self.proc.pid if self.proc is not None else None
            if pid is None or pid != main:
                self.rejected += 1
                for fd in fds:
                    os.close(fd)
                return
            msg = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
            self.messages.append(msg)
            if "MAINPID" in msg:
                self._set_main(msg["MAINPID"], pid)
            if msg.get("FDSTOREREMOVE") == "1":
                name = msg.get("FDNAME", "")
                keep = []
                for n, fd in self.store:
                    if n == name:
                        os.close(fd)
                    else:
                        keep.append((n, fd))
                self.store = keep
            if msg.get("FDSTORE") == "1":
                name = msg.get("FDNAME", "stored")
                if not _fdname_valid(name):
                    self.bad_names += 1
                    for fd in fds:
                        os.close(fd)
                    return
                for fd in fds:
                    if len(self.store) >= self.max_fds:
                        os.close(fd)
                        self.overflow += 1
                    elif any(_same_file(fd, held) for _, held in self.store):
                        os.close(fd)
                        self.duplicates += 1
                    else:
                        self.store.append((name, fd))
                fds = []
            for fd in fds:
                os.close(fd)

    def _set_main(self, value, sender):
        try:
            new = int(value)
            ours = os.getsid(new) == self._sid
        except (ValueError, OSError):
            ours = False
        if not ours:
            self.refused_pids += 1
            return
        if new == sender:
            return
        if isinstance(self.proc, subprocess.Popen):
            self._replaced.append(self.proc)
        self.proc = ProcessHandle(new)
        self.main_pids.append(new)

    def names(self):
        with self._lock:
            return [n for n, _ in self.store]

    def count(self, key, value="1"):
        with self._lock:
            return sum(1 for m in self.messages if m.get(key) == value)

    def wait_for(self, key, value="1", count=1, timeout=30):
        deadline = time.monotonic() + timeout
        while self.count(key, value) < count:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("the service exited with %s" % self.proc.returncode)
            if time.monotonic() > deadline:
                raise TimeoutError("no %s=%s (%d of %d) in %ss" % (
                    key, value, self.count(key, value), count, timeout))
            time.sleep(0.02)

    # ---- the service ----

    def start(self, argv, env=None, stdout=None):
        """Start the service with the store passed as systemd passes it."""
        with self._lock:
            stored = list(self.store)
        n = len(stored)
        env = dict(os.environ if env is None else env, NOTIFY_SOCKET=self.path)
        env.pop("LISTEN_PID", None)
        if n:
            env["LISTEN_FDS"] = str(n)
            env["LISTEN_FDNAMES"] = ":".join(name for name, _ in stored)
        else:
            env.pop("LISTEN_FDS", None)
            env.pop("LISTEN_FDNAMES", None)
        sources = [fd for _, fd in stored]
        # A fresh interpreter puts the stored fds at 3.. n+2 (through copies
        # above them all: a source may sit where a target goes), sets
        # $LISTEN_PID to its own pid and execs the service: its pid is the
        # service's, as systemd's forked child is.
        cmd = [sys.executable, "-c", _LAUNCHER, ",".join(map(str, sources))] + list(argv)
        with self._lock:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                                         stderr=subprocess.STDOUT, pass_fds=tuple(sources),
                                         start_new_session=True)
            self._sid = self.proc.pid
            self.main_pids.append(self.proc.pid)
        return self.proc

    def close(self):
        for proc in self._replaced:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        with self._lock:
            for _, fd in self.store:
                os.close(fd)
            self.store = []
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass
