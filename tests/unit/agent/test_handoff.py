"""agent/handoff.py: the memfd an upgrading agent hands to its next process,
and the socket protocol between the two.

Real fds throughout (pipes, memfds): what is checked is which of them are
open, closed or inheritable afterwards.
"""

import json
import os
import socket
import threading

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


# ---- between two live processes ----

def test_remap_renumbers_every_fd_field():
    rec = record("c0", listen_fd=10, conn_fd=11, kick=12, call=13, region_fd=14)
    rec["slave_fd"], rec["inflight_fd"] = 15, 16
    rec["vqs"].append({"kickfd": 17, "callfd": -1})
    raw = json.loads(doc(rpc_fd=20, lock_fd=21, fds=list(range(10, 18)) + [20, 21],
                         controllers=[rec]))
    table = {fd: fd + 100 for fd in raw["fds"]}
    del table[17]                        # not sent: no fd here
    got = handoff.remap(raw, table)
    (out,) = got["controllers"]
    assert (out["listen_fd"], out["conn_fd"], out["slave_fd"], out["inflight_fd"]) == \
        (110, 111, 115, 116)
    assert out["regions"][0]["fd"] == 114 and out["regions"][0]["gpa"] == 0
    assert out["vqs"] == [{"kickfd": 112, "callfd": 113}, {"kickfd": -1, "callfd": -1}]
    assert (got["rpc_fd"], got["lock_fd"]) == (120, 121)
    assert got["fds"] == sorted(table.values())
    assert raw["controllers"][0]["listen_fd"] == 10        # the input is left alone
    assert handoff.remap(json.loads(doc(rpc_fd=5)), {})["rpc_fd"] is None


class _Exited:
    """The successor's process, for handing over to a thread of this one."""

    pid = 4343

    def wait(self, timeout=None):
        return 0

    def poll(self):
        return 0

    def kill(self):
        pass


def _pair():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return handoff.Successor(_Exited(), ours), handoff.Predecessor(theirs)


def _inode(fd):
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


@pytest.fixture
def many_fds():
    """A soft fd limit with room for 1500 more fds (an agent with many guests)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = len(os.listdir("/proc/self/fd")) + 1600
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip("the hard fd limit (%d) is below %d" % (hard, want))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_hand_over_more_fds_than_one_message_carries(pipes, many_fds):
    """Over a real socketpair, as the two processes do: 1300 fds (six
    SCM_RIGHTS messages), renumbered on arrival, each the same open file;
    the socketpair itself sits past fd 1024 (select() could not wait on it)."""
    fds = pipes(650)
    half = len(fds) // 2
    recs = [dict(record("c%d" % i, listen_fd=fds[i], conn_fd=fds[half + i]), why=None)
            for i in range(half)]
    mfd = handoff.write(recs, inheritable=False)
    sent = handoff.read_doc(mfd)["fds"]
    assert len(sent) == 1300 > 5 * handoff.FDS_PER_MESSAGE
    old, new = _pair()
    assert old.sock.fileno() > 1024 and new.sock.fileno() > 1024
    result = {}

    def successor():
        new.ready()
        result["handoff"] = new.receive(timeout=10)
        new.wait_go()

    t = threading.Thread(target=successor)
    t.start()
    try:
        old.wait_ready(timeout=10)
        old.hand(mfd, sent, timeout=10)
        old.go()
    finally:
        t.join(10)
        handoff.close_fds([mfd])
    got = result["handoff"]
    try:
        assert got.sessions == ["c%d" % i for i in range(half)]
        assert len(got.fds) == 1300 and not set(got.fds) & set(fds)
        for i, rec in enumerate(got.controllers):
            assert _inode(rec["listen_fd"]) == _inode(fds[i])
            assert _inode(rec["conn_fd"]) == _inode(fds[half + i])
        assert not any(os.get_inheritable(fd) for fd in got.fds)
    finally:
        handoff.close_fds(got.fds)


def test_a_successor_reading_another_version_is_refused_before_the_export():
    old, new = _pair()
    new.sock.sendall(b"ready 2 3")
    with pytest.raises(handoff.HandoffError) as err:
        old.wait_ready(timeout=5)
    assert "reads handoff version(s) [2, 3], not %d" % handoff.VERSION in str(err.value)
    old.sock.close()
    new.sock.close()


def test_a_successor_that_exits_before_it_is_ready():
    old, new = _pair()
    new.sock.close()
    with pytest.raises(handoff.HandoffError) as err:
        old.wait_ready(timeout=5)
    assert "exited before it was ready (exit status 0)" in str(err.value)


def test_a_silent_successor_times_out():
    old, new = _pair()
    with pytest.raises(handoff.HandoffError) as err:
        old.wait_ready(timeout=0.2)
    assert "no answer" in str(err.value)
    new.sock.close()


def test_the_successor_refuses_a_handoff_it_cannot_read_and_says_why(pipes):
    fds = pipes()
    mfd = os.memfd_create("handoff-test")
    os.write(mfd, doc(version=99, agent_version="9.9", fds=fds))
    old, new = _pair()
    errors = []

    def successor():
        try:
            new.receive(timeout=10)
        except handoff.HandoffError as exc:
            errors.append(exc)

    t = threading.Thread(target=successor)
    t.start()
    try:
        with pytest.raises(handoff.HandoffError) as err:
            old.hand(mfd, fds, timeout=10)
    finally:
        t.join(10)
        os.close(mfd)
    assert "refused the handoff" in str(err.value) and "version 99" in str(err.value)
    assert len(errors) == 1
    # The sender's fds are its own still; the successor closed its copies.
    assert all(is_open(fd) for fd in fds)


def test_the_successor_is_told_when_the_old_process_keeps_its_sessions():
    old, new = _pair()
    old.sock.close()
    with pytest.raises(handoff.HandoffError) as err:
        new.receive(timeout=5)
    assert "the old process kept its sessions" in str(err.value)


def test_predecessor_from_environ():
    assert handoff.Predecessor.from_environ({}) is None
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    environ = {handoff.SUCCESSOR_ENV: str(b.detach())}
    pred = handoff.Predecessor.from_environ(environ)
    assert environ == {}
    assert not pred.sock.get_inheritable()
    pred.ready()
    assert a.recv(16) == b"ready %d" % handoff.VERSION
    pred.sock.close()
    a.close()
    with pytest.raises(handoff.HandoffError):
        handoff.Predecessor.from_environ({handoff.SUCCESSOR_ENV: "x"})
