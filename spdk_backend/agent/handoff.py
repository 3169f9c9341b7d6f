"""Restart without a disconnect: the agent hands itself over to a new process.

On ``SIGHUP`` or the ``framework_upgrade`` RPC the agent starts a
*successor*: its own command line again (the program on disk now, so a
package upgrade takes effect), with one end of a socketpair.  The successor
imports everything, parses its options and starts its engine while the old
process still serves; then it says ``ready``.  Only then does the old
process stop its rings (in-flight requests finish), write what each
vhost-user session needs to go on (sb/vhost.h, "Restart without a
disconnect") into a memfd and send it, with every fd the sessions use (the
listening and connected sockets, guest memory, eventfds, inflight
regions), the RPC listening socket and the state directory's lock, over
the socketpair (SCM_RIGHTS).  The successor says ``taken``; the old process
makes it the service's main process (``MAINPID=``) and says ``go``, then
exits.  The successor replays its saved configuration as at any start, and
each controller it re-creates takes over its session and resumes its rings.
QEMU sees a pause (the handover alone, not a process start), never a
disconnect.  When the successor fails before ``taken`` (it cannot start,
does not answer, or dies) the old process keeps serving, with its sessions.

The memfd holds JSON::

    {"format": "spdk-backend-handoff", "version": 1, "agent_version": "...",
     "pid": 123, "rpc_fd": 5, "lock_fd": 4, "fds": [...every fd...],
     "controllers": [{record}, ...]}

fd numbers are the sender's; the receiver renumbers them (``remap``) from
the order they arrived in, which is the order of ``fds``.  An agent of an
earlier release hands over by ``exec`` instead, with the memfd's number in
``SPDK_BACKEND_HANDOFF_FD`` and the fds kept open across the exec: ``take``
reads that.  A process that cannot read the document (another format or
version) closes every fd in ``fds`` and starts as after a crash: its
controllers listen anew and QEMU reconnects where it was told to
(docs/agent.md).
"""

import json
import logging
import os
import select
import socket
import subprocess
import sys
import time

from spdk_backend import __version__
from spdk_backend import exception

LOG = logging.getLogger(__name__)

ENV = "SPDK_BACKEND_HANDOFF_FD"
SUCCESSOR_ENV = "SPDK_BACKEND_SUCCESSOR_FD"
FORMAT = "spdk-backend-handoff"
VERSION = 1
MAX_BYTES = 64 << 20


class HandoffError(exception.SpdkBackendException):
    msg_fmt = "cannot take over from the previous agent process: %(reason)s"


class Handoff:
    """What a previous agent process handed over."""

    def __init__(self, controllers, rpc_fd=None, lock_fd=None, fds=(), pid=None,
                 agent_version=None):
        self.controllers = controllers
        self.rpc_fd = rpc_fd
        self.lock_fd = lock_fd
        self.fds = list(fds)
        self.pid = pid
        self.agent_version = agent_version

    def all_fds(self):
        """Every fd the controllers, the RPC socket and the lock hold."""
        fds = {fd for rec in self.controllers for fd in record_fds(rec)}
        fds |= {fd for fd in (self.rpc_fd, self.lock_fd) if fd is not None}
        return sorted(fds)

    @property
    def sessions(self):
        """Names of the controllers whose session was handed over."""
        return [c["name"] for c in self.controllers if c.get("conn_fd", -1) >= 0]


def record_fds(rec):
    """Every fd a controller record holds."""
    fds = [rec.get(k, -1) for k in ("listen_fd", "conn_fd", "slave_fd", "inflight_fd")]
    fds += [r.get("fd", -1) for r in rec.get("regions", ())]
    for vq in rec.get("vqs", ()):
        fds += [vq.get("kickfd", -1), vq.get("callfd", -1)]
    return [fd for fd in fds if isinstance(fd, int) and fd >= 0]


def _set_inheritable(fds):
    for fd in fds:
        os.set_inheritable(fd, True)


def write(controllers, rpc_fd=None, lock_fd=None, inheritable=True):
    """Write the handoff into a memfd; returns its fd.  With ``inheritable``
    it and every fd it names survive an exec."""
    fds = sorted({fd for rec in controllers for fd in record_fds(rec)} |
                 {fd for fd in (rpc_fd, lock_fd) if fd is not None})
    doc = {"format": FORMAT, "version": VERSION, "agent_version": __version__,
           "pid": os.getpid(), "rpc_fd": rpc_fd, "lock_fd": lock_fd, "fds": fds,
           "controllers": [{k: v for k, v in rec.items() if k != "why"}
                           for rec in controllers]}
    data = json.dumps(doc, separators=(",", ":")).encode()
    mfd = os.memfd_create("spdk-backend-handoff", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(mfd, view):]
    if inheritable:
        _set_inheritable(fds + [mfd])
    return mfd


def read_doc(mfd):
    """The JSON document in a handoff memfd (raw, fds not renumbered)."""
    try:
        data = os.pread(mfd, MAX_BYTES, 0)
    except OSError as exc:
        raise HandoffError(reason="fd %d: %s" % (mfd, exc.strerror)) from None
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise HandoffError(reason="not JSON (%s)" % exc) from None
    if not isinstance(doc, dict):
        raise HandoffError(reason="not a %s document" % FORMAT)
    return doc


def _remap_fd(value, table):
    if isinstance(value, int) and value >= 0:
        # An fd the sender did not send is no fd here.
        return table.get(value, -1)
    return value


def remap(doc, table):
    """``doc`` with every fd number renumbered by ``table`` (sender's -> ours)."""
    doc = dict(doc)
    for key in ("rpc_fd", "lock_fd"):
        if doc.get(key) is not None:
            got = _remap_fd(doc[key], table)
            doc[key] = got if got >= 0 else None
    doc["fds"] = sorted(table.values())
    controllers = []
    for rec in doc.get("controllers") or ():
        if not isinstance(rec, dict):
            controllers.append(rec)
            continue
        rec = dict(rec)
        for key in ("listen_fd", "conn_fd", "slave_fd", "inflight_fd"):
            if key in rec:
                rec[key] = _remap_fd(rec[key], table)
        rec["regions"] = [dict(r, fd=_remap_fd(r.get("fd", -1), table))
                          for r in rec.get("regions") or () if isinstance(r, dict)]
        rec["vqs"] = [dict(vq, kickfd=_remap_fd(vq.get("kickfd", -1), table),
                           callfd=_remap_fd(vq.get("callfd", -1), table))
                      for vq in rec.get("vqs") or () if isinstance(vq, dict)]
        controllers.append(rec)
    doc["controllers"] = controllers
    return doc


def close_fds(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def parse(data):
    """The Handoff in ``data`` (bytes, or the decoded document); HandoffError
    when it is not one we read."""
    if isinstance(data, dict):
        doc = data
    else:
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise HandoffError(reason="not JSON (%s)" % exc) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise HandoffError(reason="not a %s document" % FORMAT)
    fds = [fd for fd in doc.get("fds") or () if isinstance(fd, int) and fd > 2]
    if doc.get("version") != VERSION:
        # What we can still do: let go of every fd, so nothing leaks and
        # each front-end sees its disconnect and reconnects.
        close_fds(fds)
        raise HandoffError(reason="version %r of agent %s (this agent reads version %d); "
                                  "the sessions were closed, QEMU reconnects where it was "
                                  "told to" % (doc.get("version"), doc.get("agent_version"),
                                               VERSION))
    controllers = doc.get("controllers")
    if not isinstance(controllers, list) or not all(isinstance(c, dict) for c in controllers):
        close_fds(fds)
        raise HandoffError(reason="no controller list")
    return Handoff(controllers, rpc_fd=doc.get("rpc_fd"), lock_fd=doc.get("lock_fd"),
                   fds=fds, pid=doc.get("pid"), agent_version=doc.get("agent_version"))


def _own(handoff):
    # Ours now: nothing this process runs inherits them.
    for fd in handoff.fds:
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass
    return handoff


def take_fd(mfd):
    """The Handoff in memfd ``mfd`` (closed here), whose fds this process holds."""
    try:
        doc = read_doc(mfd)
    finally:
        close_fds([mfd])
    return _own(parse(doc))


def take(environ=None):
    """The handoff an earlier release's agent left by exec (and forget the
    variable), or None."""
    environ = os.environ if environ is None else environ
    value = environ.pop(ENV, None)
    if value is None:
        return None
    try:
        mfd = int(value)
    except ValueError:
        raise HandoffError(reason="%s=%r is not an fd number" % (ENV, value)) from None
    return take_fd(mfd)


def command_line():
    """How this process was started (the program on disk now)."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv)
    return sys.executable, argv


# ---- the handover between two live processes ----

# SCM_RIGHTS carries at most SCM_MAX_FD (253) fds per message.
FDS_PER_MESSAGE = 250
# How long the old process waits for its successor to start.
SUCCESSOR_START_S = 60.0


def _recv(sock, timeout, maxfds=FDS_PER_MESSAGE):
    """One message: (bytes, fds); (b"", []) at EOF; HandoffError on timeout."""
    if timeout is not None:
        # poll, not select: an agent with many guests holds fds past 1024.
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not poller.poll(max(timeout, 0) * 1000):
            raise HandoffError(reason="no answer in %.0f s" % timeout)
    try:
        msg, fds, flags, _ = socket.recv_fds(sock, 256, maxfds)
    except ConnectionResetError:
        # The peer went away with messages of ours unread.
        return b"", []
    except OSError as exc:
        raise HandoffError(reason="the handover socket: %s" % exc.strerror) from None
    if flags & socket.MSG_CTRUNC:
        close_fds(fds)
        raise HandoffError(reason="more fds in one message than %d" % maxfds)
    return msg, list(fds)


def _flush_logs():
    sys.stdout.flush()
    sys.stderr.flush()
    for handler in logging.getLogger().handlers:
        handler.flush()


class Successor:
    """The process this agent hands itself over to, seen from the old one."""

    def __init__(self, proc, sock):
        self.proc = proc
        self.sock = sock
        self.pid = proc.pid

    @classmethod
    def spawn(cls):
        """Start this agent's command line again, with one end of a socketpair."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        exe, argv = command_line()
        env = dict(os.environ)
        env.pop(ENV, None)
        env[SUCCESSOR_ENV] = str(theirs.fileno())
        _flush_logs()
        try:
            proc = subprocess.Popen(argv, executable=exe, env=env, stdin=subprocess.DEVNULL,
                                    pass_fds=(theirs.fileno(),))
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(proc, ours)

    def _died(self, what):
        try:
            rc = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            rc = "still running"
        return HandoffError(reason="the new process (pid %d) %s (exit status %s)"
                                   % (self.pid, what, rc))

    def wait_ready(self, timeout=SUCCESSOR_START_S):
        """Until the successor has started; it must read our handoff version."""
        deadline = time.monotonic() + timeout
        while True:
            msg, fds = _recv(self.sock, deadline - time.monotonic(), maxfds=1)
            close_fds(fds)
            if not msg:
                raise self._died("exited before it was ready")
            words = msg.decode("ascii", "replace").split()
            if words and words[0] == "ready":
                versions = {int(w) for w in words[1:] if w.isdigit()}
                if VERSION not in versions:
                    raise HandoffError(reason="the new process reads handoff version(s) %s, "
                                              "not %d" % (sorted(versions), VERSION))
                return

    def hand(self, mfd, fds, timeout=SUCCESSOR_START_S):
        """Send the handoff memfd and every fd it names (in its order) and wait
        until the successor has taken them."""
        try:
            socket.send_fds(self.sock, [b"handoff"], [mfd])
            for i in range(0, len(fds), FDS_PER_MESSAGE):
                socket.send_fds(self.sock, [b"fds"], fds[i:i + FDS_PER_MESSAGE])
        except OSError as exc:
            raise self._died("cannot be sent the handoff: %s" % exc.strerror) from None
        msg, extra = _recv(self.sock, timeout, maxfds=1)
        close_fds(extra)
        if msg == b"taken":
            return
        if not msg:
            raise self._died("exited before it took the handoff")
        raise HandoffError(reason="the new process (pid %d) refused the handoff: %s"
                                  % (self.pid, msg.decode("utf-8", "replace")))

    def go(self):
        """It is the service's process now: it may notify and serve."""
        try:
            self.sock.sendall(b"go")
        except OSError:
            pass  # it goes on at EOF as well
        self.sock.close()

    def abandon(self):
        """Stop a successor that is not taking over (killed before the socket
        closes: at EOF it would go on)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.sock.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


class Predecessor:
    """The process handing itself over to this one, seen from the new one."""

    def __init__(self, sock):
        self.sock = sock

    @classmethod
    def from_environ(cls, environ=None):
        environ = os.environ if environ is None else environ
        value = environ.pop(SUCCESSOR_ENV, None)
        if value is None:
            return None
        try:
            fd = int(value)
            sock = socket.socket(fileno=fd)
        except (ValueError, OSError) as exc:
            raise HandoffError(reason="%s=%r: %s" % (SUCCESSOR_ENV, value, exc)) from None
        sock.set_inheritable(False)
        return cls(sock)

    def ready(self):
        """Tell the old process this one has started (and which handoff versions it reads)."""
        self.sock.sendall(b"ready %d" % VERSION)

    def receive(self, timeout=None):
        """The Handoff, its fds renumbered to ours; says ``taken`` (or why not)."""
        try:
            msg, fds = _recv(self.sock, timeout, maxfds=1)
            if not msg:
                raise HandoffError(reason="the old process kept its sessions (it closed the "
                                          "handover socket)")
            if msg != b"handoff" or len(fds) != 1:
                close_fds(fds)
                raise HandoffError(reason="unexpected message %r" % msg[:32])
            try:
                doc = read_doc(fds[0])
            finally:
                close_fds(fds)
            want = doc.get("fds")
            if not isinstance(want, list) or not all(isinstance(fd, int) for fd in want):
                raise HandoffError(reason="no fd list")
            got = []
            while len(got) < len(want):
                msg, fds = _recv(self.sock, timeout)
                got += fds
                if msg != b"fds":
                    close_fds(got)
                    raise HandoffError(reason="%d of %d fds arrived" % (len(got), len(want)))
            if len(got) != len(want):
                close_fds(got)
                raise HandoffError(reason="%d fds arrived, %d expected" % (len(got), len(want)))
            handoff = _own(parse(remap(doc, dict(zip(want, got)))))
        except HandoffError as exc:
            try:
                self.sock.sendall(str(exc).encode())
            except OSError:
                pass
            raise
        self.sock.sendall(b"taken")
        return handoff

    def wait_go(self):
        """Until the old process has made this one the service's process and
        let go of its files ("go"), or is gone (EOF): never a timeout, since
        going on while it still holds the bdevs' files would fail them."""
        try:
            msg, fds = _recv(self.sock, None, maxfds=1)
            close_fds(fds)
        except HandoffError as exc:
            msg = str(exc).encode()
        if msg != b"go":
            LOG.warning("the old process did not say go (%r); going on", msg[:64])
        self.sock.close()
