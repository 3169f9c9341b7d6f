"""Restart without a disconnect: the agent re-executes itself.

On ``SIGHUP`` or the ``framework_upgrade`` RPC the agent stops its rings
(in-flight requests finish), writes what each vhost-user session needs to
go on (sb/vhost.h, "Restart without a disconnect") into a memfd, and
``exec``\\ s its own command line: the program on disk now, so a package
upgrade takes effect.  Every fd the sessions use (the listening and
connected sockets, guest memory, eventfds, inflight regions), the RPC
listening socket and the state directory's lock survive the exec; the new
process reads the memfd (its number is in ``SPDK_BACKEND_HANDOFF_FD``),
replays its saved configuration as at any start, and each controller it
re-creates takes over its session and resumes its rings.  QEMU sees a
pause, never a disconnect.

The memfd holds JSON::

    {"format": "spdk-backend-handoff", "version": 1, "agent_version": "...",
     "pid": 123, "rpc_fd": 5, "lock_fd": 4, "fds": [...every fd...],
     "controllers": [{record}, ...]}

A process that cannot read it (another format or version) closes every fd
in ``fds`` and starts as after a crash: its controllers listen anew and
QEMU reconnects where it was told to (docs/agent.md).
"""

import json
import logging
import os
import sys

from spdk_backend import __version__
from spdk_backend import exception

LOG = logging.getLogger(__name__)

ENV = "SPDK_BACKEND_HANDOFF_FD"
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


def write(controllers, rpc_fd=None, lock_fd=None):
    """Write the handoff into a memfd that survives exec; returns its fd."""
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
    _set_inheritable(fds + [mfd])
    return mfd


def close_fds(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def parse(data):
    """The Handoff in ``data`` (bytes); HandoffError when it is not one we read."""
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


def take(environ=None):
    """The handoff this process was started with (and forget the variable), or None."""
    environ = os.environ if environ is None else environ
    value = environ.pop(ENV, None)
    if value is None:
        return None
    try:
        mfd = int(value)
    except ValueError:
        raise HandoffError(reason="%s=%r is not an fd number" % (ENV, value)) from None
    try:
        data = os.pread(mfd, MAX_BYTES, 0)
    except OSError as exc:
        raise HandoffError(reason="fd %d: %s" % (mfd, exc.strerror)) from None
    finally:
        close_fds([mfd])
    handoff = parse(data)
    # Ours now: nothing this process runs inherits them.
    for fd in handoff.fds:
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass
    return handoff


def command_line():
    """How this process was started (the program on disk now)."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv)
    return sys.executable, argv


def exec_self(mfd):
    """Replace this process with a fresh start of its command line; raises OSError."""
    exe, argv = command_line()
    os.environ[ENV] = str(mfd)
    sys.stdout.flush()
    sys.stderr.flush()
    for handler in logging.getLogger().handlers:
        handler.flush()
    try:
        os.execv(exe, argv)
    finally:
        # Only reached when the exec failed.
        os.environ.pop(ENV, None)
