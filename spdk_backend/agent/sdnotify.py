"""The service manager's side channel: sd_notify(3) and sd_listen_fds(3).

Written from systemd's documented protocol (sd_notify(3),
sd_listen_fds_with_names(3), systemd.service(5)): datagrams of
``KEY=VALUE`` lines to the unix socket in ``$NOTIFY_SOCKET`` (a path, or
``@name`` in the abstract namespace), fds attached with SCM_RIGHTS; fds
passed to a started service from fd 3 on, ``$LISTEN_FDS`` of them, named
by ``$LISTEN_FDNAMES`` (colon-separated), for the process ``$LISTEN_PID``.

The agent says ``READY=1`` once it serves (``Type=notify``); an upgrading
agent makes its successor the main process (``MAINPID=``) with
``RELOADING=1`` in the same datagram, and the engine keeps the
guests' sessions in the fd store (vhost_fdstore.c sends its own
``FDSTORE=1`` datagrams).
"""

import array
import logging
import os
import socket
import time

LOG = logging.getLogger(__name__)

LISTEN_FDS_START = 3


def notify_socket(environ=None):
    """The service manager's notify socket, or None."""
    environ = os.environ if environ is None else environ
    path = environ.get("NOTIFY_SOCKET")
    if not path or path[0] not in "/@":
        return None
    return path


def notify(text, fds=(), environ=None):
    """Send one notification; False when there is no manager or it failed."""
    path = notify_socket(environ)
    if path is None:
        return False
    addr = "\0" + path[1:] if path[0] == "@" else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            anc = ([(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
                   if fds else [])
            sock.sendmsg([text.encode()], anc, 0, addr)
        except OSError as exc:
            LOG.warning("cannot notify the service manager at %s: %s", path, exc)
            return False
    return True


def ready(status=None):
    return notify("READY=1" + ("\nSTATUS=%s" % status if status else ""))


def _reloading():
    # systemd.service(5): RELOADING=1 carries the CLOCK_MONOTONIC time it was sent.
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return "RELOADING=1\nMONOTONIC_USEC=%d" % usec


def reloading(status=None):
    return notify(_reloading() + ("\nSTATUS=%s" % status if status else ""))


def handed_over(pid, status=None):
    """Make ``pid`` (this service's process that took over) the main
    process, and say the service reloads until it sends ``READY=1``.  One
    datagram: once the main pid changes, the manager takes nothing more
    from this process (``NotifyAccess=main``)."""
    return notify("MAINPID=%d\n" % pid + _reloading() +
                  ("\nSTATUS=%s" % status if status else ""))


def listen_fds(environ=None, unset=True):
    """The fds the manager passed this process: [(fd, name)].

    Empty unless ``$LISTEN_PID`` is this process.  With ``unset`` the
    variables go, so nothing this process runs (or execs) sees them again.
    """
    environ = os.environ if environ is None else environ
    pid, count = environ.get("LISTEN_PID"), environ.get("LISTEN_FDS")
    names = environ.get("LISTEN_FDNAMES", "")
    if unset:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            environ.pop(key, None)
    try:
        if pid is None or count is None or int(pid) != os.getpid():
            return []
        count = int(count)
    except ValueError:
        return []
    split = names.split(":") if names else []
    out = []
    for i in range(max(count, 0)):
        fd = LISTEN_FDS_START + i
        try:
            os.set_inheritable(fd, False)
        except OSError:
            continue
        out.append((fd, split[i] if i < len(split) else "unknown"))
    return out
