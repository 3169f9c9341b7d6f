"""agent/sdnotify.py: sd_notify(3) datagrams and sd_listen_fds(3) fds.

Against real sockets: the notifications go to a unix datagram socket
bound here (a path and the abstract namespace), as systemd's notify
socket; fds passed with a started process are real fds put at 3.. in a
child process (tests/support/fdstore.py's launcher, as systemd passes them).
systemd is not PID 1 here, so these sockets are the faithful socket-level
stand-in for it.
"""

import json
import os
import socket
import struct
import subprocess
import sys
import time
import uuid

import pytest

from spdk_backend.agent import sdnotify
from tests.support import fdstore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def notify_sock(short_tmp):
    """A bound notify socket (with SO_PASSCRED) and its $NOTIFY_SOCKET value."""
    path = os.path.join(short_tmp, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(5)
    yield sock, path
    sock.close()


@pytest.fixture
def abstract_sock():
    name = "sb-test-notify-%s" % uuid.uuid4().hex
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    yield sock, "@" + name
    sock.close()


def receive(sock, maxfds=8):
    """(text, fds, sender pid or None) of one datagram."""
    creds = struct.calcsize("3i")
    data, anc, _flags, _addr = sock.recvmsg(
        4096, socket.CMSG_SPACE(maxfds * 4) + socket.CMSG_SPACE(creds))
    fds, pid = [], None
    for level, kind, cdata in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(struct.unpack("%di" % (len(cdata) // 4), cdata[:len(cdata) // 4 * 4]))
        elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("3i", cdata[:creds])[0]
    return data.decode(), fds, pid


# ---- notify_socket / notify ----

def test_no_notify_socket_means_no_manager():
    assert sdnotify.notify_socket({}) is None
    assert sdnotify.notify("READY=1", environ={}) is False
    assert sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": ""}) is False
    # Only an absolute path or an abstract name (sd_notify(3)).
    assert sdnotify.notify_socket({"NOTIFY_SOCKET": "relative/notify"}) is None
    assert sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": "relative/notify"}) is False
    assert sdnotify.notify_socket({"NOTIFY_SOCKET": "/run/x"}) == "/run/x"
    assert sdnotify.notify_socket({"NOTIFY_SOCKET": "@x"}) == "@x"


def test_ready_without_manager(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready("serving") is False
    assert sdnotify.reloading() is False


def test_notify_to_a_path(notify_sock):
    sock, path = notify_sock
    assert sdnotify.notify("READY=1\nSTATUS=up", environ={"NOTIFY_SOCKET": path}) is True
    text, fds, pid = receive(sock)
    assert text == "READY=1\nSTATUS=up"
    assert fds == []
    # The manager knows the sender (NotifyAccess=main relies on it).
    assert pid == os.getpid()


def test_notify_to_an_abstract_name(abstract_sock):
    sock, name = abstract_sock
    assert sdnotify.notify("STATUS=abstract", environ={"NOTIFY_SOCKET": name}) is True
    text, fds, _pid = receive(sock)
    assert (text, fds) == ("STATUS=abstract", [])


def test_notify_passes_fds(notify_sock):
    sock, path = notify_sock
    r, w = os.pipe()
    mfd = os.memfd_create("sdnotify-test")
    got = []
    try:
        os.write(mfd, b"state")
        assert sdnotify.notify("FDSTORE=1\nFDNAME=sb/x/conn/1", fds=[w, mfd],
                               environ={"NOTIFY_SOCKET": path}) is True
        text, got, pid = receive(sock)
        assert text == "FDSTORE=1\nFDNAME=sb/x/conn/1"
        assert pid == os.getpid()
        assert len(got) == 2 and not set(got) & {r, w, mfd}
        # New fds of the same open files: the pipe's write end, the memfd.
        os.write(got[0], b"through the store")
        assert os.read(r, 100) == b"through the store"
        assert os.pread(got[1], 5, 0) == b"state"
        # The sender keeps its own fds.
        os.fstat(w)
        os.fstat(mfd)
    finally:
        for fd in [r, w, mfd] + got:
            os.close(fd)


def test_notify_fds_to_an_abstract_name(abstract_sock):
    sock, name = abstract_sock
    mfd = os.memfd_create("sdnotify-test")
    try:
        assert sdnotify.notify("FDSTORE=1", fds=[mfd], environ={"NOTIFY_SOCKET": name})
        text, got, _pid = receive(sock)
        assert text == "FDSTORE=1" and len(got) == 1
        assert os.fstat(got[0]).st_ino == os.fstat(mfd).st_ino
        os.close(got[0])
    finally:
        os.close(mfd)


def test_notify_to_nobody_is_false(short_tmp, caplog):
    path = os.path.join(short_tmp, "gone")
    assert sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": path}) is False
    assert "cannot notify the service manager" in caplog.text
    assert sdnotify.notify("READY=1", environ={
        "NOTIFY_SOCKET": "@sb-test-nobody-%s" % uuid.uuid4().hex}) is False


def test_ready_and_reloading(notify_sock, monkeypatch):
    sock, path = notify_sock
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.ready() is True
    assert receive(sock)[0] == "READY=1"
    assert sdnotify.ready("serving /x") is True
    assert receive(sock)[0] == "READY=1\nSTATUS=serving /x"
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading("re-executing") is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    msg = dict(line.split("=", 1) for line in receive(sock)[0].split("\n"))
    assert msg["RELOADING"] == "1" and msg["STATUS"] == "re-executing"
    assert before <= int(msg["MONOTONIC_USEC"]) <= after
    assert set(msg) == {"RELOADING", "MONOTONIC_USEC", "STATUS"}


def test_handed_over_is_one_datagram(notify_sock, monkeypatch):
    """MAINPID= and RELOADING=1 together: once the main pid changes, a
    second datagram from the old process would be refused (NotifyAccess=main)."""
    sock, path = notify_sock
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.handed_over(4242, "handed over to process 4242") is True
    text, fds, pid = receive(sock)
    msg = dict(line.split("=", 1) for line in text.split("\n"))
    assert msg["MAINPID"] == "4242" and msg["RELOADING"] == "1"
    assert int(msg["MONOTONIC_USEC"]) > 0 and msg["STATUS"] == "handed over to process 4242"
    assert fds == [] and pid == os.getpid()


def test_service_manager_follows_mainpid_within_the_service(tmp_path):
    """tests/support/fdstore.py as systemd: MAINPID= from the main process
    names a process of the service (its session here, its cgroup there);
    from then on only that process is heard.  A pid outside the service is
    refused."""
    head = "import os, subprocess, sys, time\nsys.path.insert(0, %r)\n" \
           "from spdk_backend.agent import sdnotify\n" % os.getcwd()
    child = tmp_path / "child.py"
    child.write_text(head + "time.sleep(0.3)\nsdnotify.ready('child')\ntime.sleep(30)\n")
    script = tmp_path / "svc.py"
    script.write_text(head + (
        "child = subprocess.Popen([sys.executable, %r])\n"
        "sdnotify.notify('MAINPID=%%d' %% os.getppid())\n"     # not in the service
        "sdnotify.handed_over(child.pid, 'to the child')\n"
        "sdnotify.ready('old')\n"                              # not main any more
        "time.sleep(30)\n" % str(child)))
    sm = fdstore.ServiceManager()
    first = sm.start([sys.executable, str(script)])
    try:
        sm.wait_for("READY", count=1, timeout=20)
        assert len(sm.main_pids) == 2 and sm.main_pids[0] == first.pid
        assert sm.proc.pid == sm.main_pids[1] != first.pid
        assert sm.refused_pids == 1
        assert [m.get("STATUS") for m in sm.messages] == [None, "to the child", "child"]
        assert sm.rejected == 1                         # the old process's READY=1
    finally:
        for proc in (sm.proc, first):
            proc.kill()
            proc.wait(10)
        sm.close()


# ---- listen_fds ----

def test_listen_fds_for_another_pid_is_empty_and_unset():
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "2",
           "LISTEN_FDNAMES": "a:b", "OTHER": "x"}
    assert sdnotify.listen_fds(environ=env) == []
    # Unset in any case: nothing this process runs sees them.
    assert env == {"OTHER": "x"}


@pytest.mark.parametrize("env", [
    {},
    {"LISTEN_FDS": "1"},                                    # no LISTEN_PID
    {"LISTEN_PID": "{pid}"},                                # no LISTEN_FDS
    {"LISTEN_PID": "{pid}", "LISTEN_FDS": "0"},
    {"LISTEN_PID": "{pid}", "LISTEN_FDS": "-3"},
    {"LISTEN_PID": "{pid}", "LISTEN_FDS": "two"},
    {"LISTEN_PID": "not-a-pid", "LISTEN_FDS": "1"},
])
def test_listen_fds_nothing_passed(env):
    env = {k: v.format(pid=os.getpid()) for k, v in env.items()}
    assert sdnotify.listen_fds(environ=env) == []
    assert not {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} & set(env)


def test_listen_fds_unset_false_keeps_the_variables():
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a"}
    assert sdnotify.listen_fds(environ=dict(env), unset=True) == []
    kept = dict(env)
    assert sdnotify.listen_fds(environ=kept, unset=False) == []
    assert kept == env


_CHILD = """
import fcntl, json, os, sys
from spdk_backend.agent import sdnotify
seen = {k: os.environ.get(k) for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")}
got = sdnotify.listen_fds()
out = {"got": got, "seen": seen, "pid": os.getpid(),
       "left": [k for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES") if k in os.environ],
       "cloexec": [bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC) for fd, _ in got],
       "data": os.read(3, 100).decode() if got else None,
       "memfd": os.pread(4, 5, 0).decode() if len(got) > 1 else None}
print(json.dumps(out))
"""


def _run_with_fds(fds, names, count=None):
    """Run _CHILD as the service manager starts a service: fds at 3..,
    $LISTEN_FDS, $LISTEN_FDNAMES and $LISTEN_PID (its own pid)."""
    env = dict(os.environ, LISTEN_FDS=str(len(fds) if count is None else count))
    env.pop("LISTEN_FDNAMES", None)
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    cmd = [sys.executable, "-c", fdstore._LAUNCHER, ",".join(map(str, fds)),
           sys.executable, "-c", _CHILD]
    res = subprocess.run(cmd, env=env, pass_fds=tuple(fds), capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_listen_fds_real_fds_in_a_started_process():
    """Real fds at 3.. of a started process, as systemd passes its fd store:
    tests/support/fdstore.py's launcher is a faithful socket-level stand-in
    for it, because systemd is not PID 1 here."""
    r, w = os.pipe()
    mfd = os.memfd_create("listen-test")
    try:
        os.write(w, b"passed")
        os.write(mfd, b"store")
        out = _run_with_fds([r, mfd], "sb/v0/conn/7:sb/v0/state/7")
    finally:
        for fd in (r, w, mfd):
            os.close(fd)
    assert out["seen"]["LISTEN_PID"] == str(out["pid"])
    assert out["got"] == [[3, "sb/v0/conn/7"], [4, "sb/v0/state/7"]]
    assert out["left"] == []
    # Not inherited by whatever the service runs.
    assert out["cloexec"] == [True, True]
    assert out["data"] == "passed" and out["memfd"] == "store"


def test_listen_fds_fewer_names_than_fds():
    """Names missing from $LISTEN_FDNAMES are "unknown" (sd_listen_fds_with_names(3));
    started by tests/support/fdstore.py's launcher, the stand-in for systemd
    (not PID 1 here)."""
    r, w = os.pipe()
    mfd = os.memfd_create("listen-test")
    try:
        os.write(w, b"x")       # each child reads what is in the pipe
        out = _run_with_fds([r, mfd], "only")
        os.write(w, b"x")
        nameless = _run_with_fds([r, mfd], None)
    finally:
        for fd in (r, w, mfd):
            os.close(fd)
    assert out["got"] == [[3, "only"], [4, "unknown"]]
    assert nameless["got"] == [[3, "unknown"], [4, "unknown"]]


def test_listen_fds_skips_fds_that_are_not_open():
    """$LISTEN_FDS larger than what was passed: the missing fds are skipped."""
    r, w = os.pipe()
    try:
        os.write(w, b"y")
        out = _run_with_fds([r], "a:b:c", count=3)
    finally:
        os.close(r)
        os.close(w)
    # fd 4 and 5 are not open in the child (the launcher passes only fd 3).
    assert out["got"] == [[3, "a"]]
