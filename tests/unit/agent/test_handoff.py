"""agent/handoff.py: the memfd a re-executing agent hands to its next process.

Real fds throughout (pipes, memfds): what is checked is which of them are
open, closed or inheritable afterwards.
"""

import json
import os
import sys

import pytest

from spdk_backend.agent import handoff

pytestmark = pytest.mark.timeout(30)


def is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def pipes():
    """Real fds to list in a handoff; whatever is still open is closed afterwards."""
    made = []

    def make(count=1):
        fds = []
        for _ in range(count):
            fds += os.pipe()
        made.extend(fds)
        return fds

    yield make
    handoff.close_fds(made)


def doc(**fields):
    d = {"format": handoff.FORMAT, "version": handoff.VERSION, "agent_version": "0.0.1",
         "pid": 4242, "rpc_fd": None, "lock_fd": None, "fds": [], "controllers": []}
    d.update(fields)
    return json.dumps(d).encode()


def record(name, listen_fd, conn_fd=-1, kick=-1, call=-1, region_fd=-1):
    return {"name": name, "socket": "/run/x/" + name, "listen_fd": listen_fd,
            "conn_fd": conn_fd, "slave_fd": -1, "inflight_fd": -1,
            "regions": [] if region_fd < 0 else [{"gpa": 0, "size": 4096, "uva": 0,
                                                   "mmap_offset": 0, "fd": region_fd}],
            "vqs": [{"kickfd": kick, "callfd": call}]}


def test_other_version_is_refused_and_its_fds_closed(pipes):
    fds = pipes(2)
    with pytest.raises(handoff.HandoffError) as err:
        handoff.parse(doc(version=99, agent_version="9.9", fds=fds))
    assert "version 99 of agent 9.9" in str(err.value)
    assert "this agent reads version %d" % handoff.VERSION in str(err.value)
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_refusal_never_closes_stdio(pipes):
    fds = pipes()
    with pytest.raises(handoff.HandoffError):
        handoff.parse(doc(version=2, fds=[0, 1, 2, "7", None] + fds))
    assert all(is_open(fd) for fd in (0, 1, 2))
    assert not any(is_open(fd) for fd in fds)


def test_no_controller_list_is_refused_and_its_fds_closed(pipes):
    fds = pipes()
    with pytest.raises(handoff.HandoffError) as err:
        handoff.parse(doc(fds=fds, controllers={"c0": {}}))
    assert "no controller list" in str(err.value)
    assert not any(is_open(fd) for fd in fds)


@pytest.mark.parametrize("data", [b"\x00garbage", b"[1, 2]",
                                  json.dumps({"format": "other", "version": 1}).encode()])
def test_not_a_handoff_leaves_the_fds_alone(pipes, data):
    """A document that is not ours does not say which fds are ours: none is closed."""
    fds = pipes()
    if data.startswith(b"{"):
        data = json.dumps(dict(json.loads(data), fds=fds)).encode()
    with pytest.raises(handoff.HandoffError):
        handoff.parse(data)
    assert all(is_open(fd) for fd in fds)


def test_record_fds():
    rec = record("c0", listen_fd=10, conn_fd=11, kick=12, call=-1, region_fd=13)
    rec["vqs"].append({"kickfd": 14, "callfd": 15})
    assert sorted(handoff.record_fds(rec)) == [10, 11, 12, 13, 14, 15]
    assert handoff.record_fds({"name": "idle", "listen_fd": 3, "conn_fd": -1}) == [3]


def test_write_then_take(pipes):
    listen, conn, kick, call, region, rpc, lock = pipes(4)[:7]
    for fd in (listen, conn, kick, call, region, rpc, lock):
        os.set_inheritable(fd, False)
    idle_listen = pipes()[0]
    recs = [dict(record("c0", listen, conn, kick, call, region), why=None),
            dict(record("c1", idle_listen), why="no front-end is connected")]
    mfd = handoff.write(recs, rpc_fd=rpc, lock_fd=lock)
    try:
        every = [listen, conn, kick, call, region, rpc, lock, idle_listen]
        # Everything survives an exec: the memfd and each fd it lists.
        assert os.get_inheritable(mfd)
        assert all(os.get_inheritable(fd) for fd in every)
        environ = {handoff.ENV: str(mfd), "OTHER": "1"}
        got = handoff.take(environ)
    finally:
        handoff.close_fds([mfd])
    assert environ == {"OTHER": "1"}           # not passed on to children
    assert not is_open(mfd)                     # read and closed
    assert got.pid == os.getpid()
    assert got.rpc_fd == rpc and got.lock_fd == lock
    assert sorted(got.fds) == sorted(every)
    assert got.sessions == ["c0"]
    assert got.controllers == [{k: v for k, v in r.items() if k != "why"} for r in recs]
    # Ours now: still open, no longer inherited by what this process runs.
    assert all(is_open(fd) and not os.get_inheritable(fd) for fd in every)


def test_take_without_a_handoff():
    assert handoff.take({}) is None


def test_take_bad_variable():
    environ = {handoff.ENV: "five"}
    with pytest.raises(handoff.HandoffError) as err:
        handoff.take(environ)
    assert "not an fd number" in str(err.value)
    assert environ == {}


def test_take_closed_fd(pipes):
    r, w = pipes()
    os.close(r)
    with pytest.raises(handoff.HandoffError) as err:
        handoff.take({handoff.ENV: str(r)})
    assert "fd %d" % r in str(err.value)


def test_take_refused_version_closes_memfd_and_fds(pipes):
    fds = pipes()
    mfd = os.memfd_create("handoff-test")
    os.write(mfd, doc(version=99, fds=fds))
    with pytest.raises(handoff.HandoffError) as err:
        handoff.take({handoff.ENV: str(mfd)})
    assert "version 99" in str(err.value)
    assert not is_open(mfd)
    assert not any(is_open(fd) for fd in fds)


def test_exec_failure_raises_and_forgets_the_variable(monkeypatch, tmp_path):
    """A real execv of a program that is not there: OSError, and the
    variable meant for the new process is gone again."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    monkeypatch.delenv(handoff.ENV, raising=False)
    mfd = os.memfd_create("handoff-test")
    try:
        with pytest.raises(FileNotFoundError):
            handoff.exec_self(mfd)
    finally:
        os.close(mfd)
    assert handoff.ENV not in os.environ
