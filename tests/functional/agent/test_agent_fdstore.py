"""The agent survives a crash (SIGKILL) through the service manager's fd store.

A real agent (tests/support/agent_proc.py) with the real engine, started
by ``tests/support/fdstore.py``'s ServiceManager: systemd is not PID 1 on
the test machines, so that class plays systemd's part at the socket level
(the notify socket with SO_PASSCRED checks, FDSTORE=1/FDSTOREREMOVE=1
keyed by FDNAME, restarts passing the store as LISTEN_FDS/LISTEN_FDNAMES/
LISTEN_PID).  The C initiator plays QEMU's part (randrw with --verify: it
exits non-zero on any I/O error, verify mismatch or stall); --inflight
gives the target an inflight region as QEMU does, which a crash restore
needs (vhost_fdstore.c).

Kept light (qd 8, 8 MiB ranges, one reactor): the machine has 2 cores and
may run other tests meanwhile.
"""

import os
import re
import signal
import time

import pytest

from spdk_backend.agent import client as agent_client
from tests.support import agent_proc
from tests.support import fdstore
from tests.support.initiator import BackgroundInitiator, make_uring_controller
from tests.support.pidhandle import ProcessHandle
from tests.support.polling import wait_for

MB = 1 << 20
IMAGE_BYTES = 64 * MB

# --verify writes its 8 MiB range first, runs randrw checking every read,
# then reads the range back.
KEPT_WORKLOAD = ["--rw", "randrw", "--verify", "--qd", "8", "--interrupt", "--json",
                 "--size-limit", "8M", "--io-timeout", "20", "--timeout-ms", "20000",
                 "--inflight"]
# A front-end whose session does not survive: it only notices through its
# I/O timeout (the initiator does not watch its socket during a run).
LOST_WORKLOAD = ["--rw", "randrw", "--verify", "--qd", "8", "--interrupt", "--json",
                 "--size-limit", "8M", "--io-timeout", "3", "--timeout-ms", "20000",
                 "--time", "30"]
# A short run on a fresh connection: the controller serves.
CHECK_WORKLOAD = ["--rw", "randrw", "--verify", "--qd", "8", "--interrupt", "--json",
                  "--size-limit", "8M", "--time", "1"]

STATE_READ_WHY = {
    "garbage": "the stored state is not one this agent reads",
    "torn": "the stored state is torn",
}


class Service:
    """An agent run by the stand-in service manager, as systemd runs the
    shipped unit (Type=notify, FileDescriptorStoreMax=, Restart=on-failure).
    ``close()`` stops the agent (SIGTERM, then SIGKILL) and closes the
    manager with every fd it still stores."""

    def __init__(self, base_dir, **options):
        self.agent = agent_proc.AgentProcess(base_dir, **options)
        self.sm = fdstore.ServiceManager()
        self.starts = 0

    def start(self):
        # As AgentProcess.start does, but through the manager (the
        # AgentProcess is used for its config file, paths, log and client).
        with open(self.agent.log_file, "ab") as log:
            self.agent.proc = self.sm.start(
                agent_proc.agent_command() + ["--config-file", self.agent.conf_file],
                stdout=log)
        self.agent.wait_ready()
        self.starts += 1
        self.sm.wait_for("READY", count=self.starts)
        return self

    def crash(self):
        """SIGKILL: nothing of the agent runs after it (no cleanup)."""
        proc = self.sm.proc
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # After an upgrade the main process is not ours to reap (pidhandle.py).
        assert proc.returncode in (-signal.SIGKILL, ProcessHandle.UNKNOWN)

    def restart(self):
        self.crash()
        return self.start()

    def call(self, method, timeout=30, **params):
        with agent_client.AgentClient(self.agent.rpc_socket, timeout=timeout,
                                      connect_timeout=10) as c:
            return c.call(method, **params)

    def names(self, ctrlr=None):
        """Stored names; with ctrlr, its state and every file (files are
        stored once for the whole agent: "sb/fd/<gen>")."""
        names = self.sm.names()
        if ctrlr is not None:
            names = [n for n in names
                     if n.startswith("sb/%s/" % ctrlr) or n.startswith("sb/fd/")]
        return sorted(names)

    def stored_fd(self, name_prefix):
        """The fd the manager keeps under the newest name starting with name_prefix."""
        with self.sm._lock:
            found = [(int(n.rsplit("/", 1)[1]), fd) for n, fd in self.sm.store
                     if n.startswith(name_prefix)]
        assert found, "nothing stored as %s*: %s" % (name_prefix, self.sm.names())
        return max(found)[1]

    def log(self):
        return self.agent.log()

    def close(self):
        try:
            self.agent.stop()
        finally:
            self.agent.kill9()
            self.sm.close()


@pytest.fixture
def service_factory(base_dir):
    made = []

    def factory(**options):
        svc = Service(base_dir, **options)
        made.append(svc)
        return svc.start()

    yield factory
    for svc in made:
        svc.close()


def make_controller(svc, base_dir, name, max_queues=2):
    return make_uring_controller(svc, base_dir, name, max_queues, IMAGE_BYTES)


def controller(svc, name):
    (info,) = svc.call("vhost_get_controllers", name=name)
    return info


def io_ops(svc, name):
    stats = svc.call("bdev_get_iostat", name="u-" + name)["bdevs"][0]
    return stats["num_read_ops"], stats["num_write_ops"]


def wait_io(svc, name, timeout=30):
    """Until the front-end of `name` is connected, its rings run and its
    verify run's initial fill is over (reads are being done: the randrw
    phase).  The ring check matters after an earlier front-end: the bdev's
    read count is the process's, so reads alone may be the earlier one's,
    with the new front-end still in its handshake."""
    def going():
        c = controller(svc, name)
        return (c["connected"] and any(q["started"] for q in c["queues"])
                and io_ops(svc, name)[0] > 0)
    wait_for(going, timeout, "I/O on %s" % name)


def kinds(names):
    """{(ctrlr, kind): [gen, ...]} of stored names: "sb/fd/<gen>" (ctrlr
    None: a file, stored once for every controller using it) and
    "sb/<ctrlr>/state/<gen>"."""
    out = {}
    for n in names:
        parts = n.split("/")
        if len(parts) == 3:
            out.setdefault((None, "fd"), []).append(int(parts[2]))
        else:
            out.setdefault((parts[1], parts[2]), []).append(int(parts[3]))
    return out


def count(names, kind):
    return sum(len(g) for (_, k), g in kinds(names).items() if k == kind)


def wait_settled(svc, ctrlr, timeout=10):
    """The store's names of ctrlr once one state entry is left (the
    datagrams are handled by the manager's thread, a little later)."""
    def settled():
        names = svc.names(ctrlr)
        return names if names and count(names, "state") == 1 else None
    return wait_for(settled, timeout, "one state entry of %s" % ctrlr)


def wait_names(svc, ctrlr, fds=1, timeout=20):
    """Until the store holds exactly ``fds`` files and one state of ctrlr
    (a controller without a front-end: its listening socket only)."""
    def exact():
        names = svc.names(ctrlr)
        return names if count(names, "fd") == fds and count(names, "state") == 1 else None
    try:
        return wait_for(exact, timeout, "the store to hold %d file(s) and a state of %s"
                        % (fds, ctrlr))
    except AssertionError as exc:
        raise AssertionError("%s; it holds %s" % (exc, svc.names())) from None


def agent_fd_targets(svc):
    pid = svc.sm.proc.pid
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except FileNotFoundError:
            pass
    return out


def check_result(ini):
    res = ini.result()
    assert res is not None, ini.describe()
    assert res["errors"] == 0 and res["verify_mismatches"] == 0 and not res["fatal"], res
    assert res["main"]["verified"] > 0 and res["readback"]["verified"] == res["blocks"], res
    return res


@pytest.mark.timeout(150)
def test_ten_crashes_under_a_two_queue_verify_run(service_factory, base_dir, initiator):
    """Ten SIGKILLs of the agent while a 2-queue --inflight randrw --verify
    front-end runs: every restart takes the session over from the fd store
    (no disconnect), resubmits what was in flight on both queues, and the
    store does not grow with the number of crashes.

    The fd store is tests/support/fdstore.py's ServiceManager: a faithful
    socket-level stand-in for systemd's notify socket and fd store
    (sd_notify(3) datagrams, SCM_RIGHTS, SO_PASSCRED, LISTEN_FDS), because
    systemd is not PID 1 here.
    """
    svc = service_factory()
    sock = make_controller(svc, base_dir, "v0")
    assert wait_names(svc, "v0")
    assert svc.call("framework_get_process")["takeover"] is None
    kills = 10
    spacing = 1.2
    after_first = after_last = None
    takeovers = []
    with BackgroundInitiator(initiator, sock, *KEPT_WORKLOAD, "--queues", "2", "--time", "17") as ini:
        wait_io(svc, "v0")
        stored = wait_settled(svc, "v0")
        # One entry per distinct file: the listening and connected sockets,
        # the inflight region, guest memory, two kick and two call eventfds.
        assert count(stored, "fd") >= 8 and count(stored, "state") == 1, stored
        for i in range(kills):
            started = time.monotonic()
            assert ini.proc.poll() is None, \
                "the workload ended before crash %d\n%s" % (i + 1, svc.log())
            svc.restart()
            took = svc.call("framework_get_process")["takeover"]
            takeovers.append(took)
            assert took is not None and took["source"] == "fd store", took
            assert took["handed"] == ["v0"] and took["adopted"] == ["v0"], took
            assert took["lost"] == [], took
            info = controller(svc, "v0")
            assert info["connected"] and info["adopted"] is True, info
            # The session goes on in the new process.
            wait_for(lambda: sum(io_ops(svc, "v0")) > 0, 15,
                     "I/O in the process started after crash %d" % (i + 1))
            names = wait_settled(svc, "v0")
            if i == 0:
                after_first = names
            after_last = names
            time.sleep(max(0.0, spacing - (time.monotonic() - started)))
        assert ini.wait(90) == 0, ini.describe() + svc.log()
    check_result(ini)
    assert svc.sm.rejected == 0
    assert svc.sm.overflow == 0
    # The store does not grow with the number of crashes: each file once
    # (listen, conn, inflight, memory, kick0/1, call0/1, maybe slave) and one
    # state; each new process stores its own state entry.
    assert len(after_last) <= len(after_first), (after_first, after_last)
    assert 9 <= len(after_last) <= 10, after_last
    assert max(kinds(after_last)[("v0", "state")]) > max(kinds(after_first)[("v0", "state")])
    # No file was ever offered twice (systemd would drop the second copy).
    assert svc.sm.duplicates == 0 and svc.sm.bad_names == 0
    log = svc.log()
    assert log.count("vhost v0: session restored from the fd store") == kills, log
    assert log.count("took over 1 session(s) without a disconnect: v0") == kills, log
    assert re.search(r"vhost v0: queue 0 resubmits [1-9]\d* inflight requests", log), log
    assert re.search(r"vhost v0: queue 1 resubmits [1-9]\d* inflight requests", log), log
    assert "session not restored" not in log, log
    # Once the front-end is gone, the store keeps the controller only.
    wait_names(svc, "v0")


@pytest.mark.timeout(120)
def test_front_end_without_inflight_region_is_not_restored(service_factory, base_dir,
                                                           initiator):
    """A front-end that did not negotiate INFLIGHT_SHMFD: after a SIGKILL
    its session is not restored (what was in flight could not be
    resubmitted), it notices through its I/O timeout; the controller keeps
    its listening socket and a new front-end is served.

    The fd store is tests/support/fdstore.py's ServiceManager: a faithful
    socket-level stand-in for systemd's notify socket and fd store, because
    systemd is not PID 1 here.
    """
    svc = service_factory()
    sock = make_controller(svc, base_dir, "nf", max_queues=1)
    inode = os.stat(sock).st_ino
    with BackgroundInitiator(initiator, sock, *LOST_WORKLOAD) as lost:
        wait_io(svc, "nf")
        stored = wait_settled(svc, "nf")
        # The listening and connected sockets, guest memory, one kick and
        # one call eventfd: no inflight region.
        assert count(stored, "fd") == 5, stored
        svc.restart()
        took = svc.call("framework_get_process")["takeover"]
        assert took is not None and took["source"] == "fd store", took
        assert took["handed"] == [] and took["adopted"] == [], took
        assert not controller(svc, "nf")["connected"]
        assert lost.wait(30) != 0, lost.describe()
    assert "target stopped completing requests" in lost.describe(), lost.describe()
    log = svc.log()
    assert "vhost nf: session not restored from the fd store" in log, log
    assert "no inflight region" in log, log
    assert "took over 0 session(s) without a disconnect" in log, log
    # The same listening socket (from the store), never re-bound.
    assert os.stat(sock).st_ino == inode
    with BackgroundInitiator(initiator, sock, *CHECK_WORKLOAD) as again:
        assert again.wait(60) == 0, again.describe() + svc.log()
    check_result(again)
    wait_names(svc, "nf")
    assert svc.sm.rejected == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", sorted(STATE_READ_WHY))
def test_unreadable_stored_state_is_not_restored(service_factory, base_dir, initiator,
                                                 damage):
    """The stored session state (the "state" memfd) is damaged in the store
    before a SIGKILL: garbage over its header, or one byte flipped (its
    checksum no longer matches).  The session is not restored, the agent
    starts and serves, and nothing of the old session is kept: once the
    front-end is gone the store holds the controller's listen + state only
    and the agent no fd of the old guest memory.

    The fd store is tests/support/fdstore.py's ServiceManager: a faithful
    socket-level stand-in for systemd's notify socket and fd store, because
    systemd is not PID 1 here.
    """
    svc = service_factory()
    sock = make_controller(svc, base_dir, "cx", max_queues=1)
    with BackgroundInitiator(initiator, sock, *LOST_WORKLOAD, "--inflight") as lost:
        wait_io(svc, "cx")
        stored = wait_settled(svc, "cx")
        assert count(stored, "fd") == 6, stored     # the same and an inflight region
        state_fd = svc.stored_fd("sb/cx/state/")
        size = os.fstat(state_fd).st_size
        assert size > 64
        if damage == "garbage":
            os.pwrite(state_fd, b"\xa5" * 64, 0)
        else:
            (byte,) = os.pread(state_fd, 1, size // 2)
            os.pwrite(state_fd, bytes([byte ^ 0x40]), size // 2)
        svc.restart()
        took = svc.call("framework_get_process")["takeover"]
        assert took is not None and took["source"] == "fd store", took
        assert took["adopted"] == [], took
        assert lost.wait(30) != 0, lost.describe()
    log = svc.log()
    assert "vhost cx: session not restored from the fd store: %s" % STATE_READ_WHY[damage] \
        in log, log
    assert "took over 0 session(s) without a disconnect" in log, log
    with BackgroundInitiator(initiator, sock, *CHECK_WORKLOAD, "--inflight") as again:
        assert again.wait(60) == 0, again.describe() + svc.log()
    check_result(again)
    names = wait_names(svc, "cx")
    assert names == svc.names(), svc.names()
    # The old session's guest memory is closed in the agent.
    wait_for(lambda: not [t for t in agent_fd_targets(svc) if "vi-guest-ram" in t], 10,
             "the agent to close the old guest memory")
    assert svc.sm.rejected == 0
    # And the next crash is survived again, from the state the new process wrote.
    with BackgroundInitiator(initiator, sock, *KEPT_WORKLOAD, "--time", "3") as kept:
        wait_io(svc, "cx")
        wait_settled(svc, "cx")
        svc.restart()
        took = svc.call("framework_get_process")["takeover"]
        assert took["adopted"] == ["cx"], took
        assert kept.wait(60) == 0, kept.describe() + svc.log()
    check_result(kept)


@pytest.mark.timeout(90)
def test_fd_store_off_sends_only_ready_and_a_crash_disconnects(service_factory, base_dir,
                                                               initiator):
    """With ``fd_store = false`` the agent sends the manager nothing but
    READY=1 (no FDSTORE=1 datagram, so nothing is stored) and a SIGKILL
    disconnects the front-end: no takeover.

    The fd store is tests/support/fdstore.py's ServiceManager: a faithful
    socket-level stand-in for systemd's notify socket and fd store, because
    systemd is not PID 1 here.
    """
    svc = service_factory(fd_store="false")
    sock = make_controller(svc, base_dir, "off", max_queues=1)
    with BackgroundInitiator(initiator, sock, *LOST_WORKLOAD, "--inflight") as lost:
        wait_io(svc, "off")
        assert svc.names() == []
        svc.restart()
        assert svc.call("framework_get_process")["takeover"] is None
        assert lost.wait(30) != 0, lost.describe()
    with BackgroundInitiator(initiator, sock, *CHECK_WORKLOAD, "--inflight") as again:
        assert again.wait(60) == 0, again.describe() + svc.log()
    messages = list(svc.sm.messages)
    assert len(messages) == 2, messages
    assert all(m.get("READY") == "1" and set(m) <= {"READY", "STATUS"} for m in messages), \
        messages
    assert svc.sm.count("FDSTORE") == 0 and svc.sm.count("FDSTOREREMOVE") == 0
    assert svc.names() == []
    assert svc.sm.rejected == 0
    log = svc.log()
    assert "keeping every session in the service manager's fd store" not in log, log
    assert "session restored" not in log and "took over" not in log, log


@pytest.mark.timeout(90)
def test_deleted_controller_leaves_the_store(service_factory, base_dir):
    """vhost_delete_controller (no front-end) removes every name of that
    controller from the fd store and only those; a clean stop (SIGTERM)
    leaves the store empty, and the next start re-creates the remaining
    controller from the state file (no takeover) and stores it anew.

    The fd store is tests/support/fdstore.py's ServiceManager: a faithful
    socket-level stand-in for systemd's notify socket and fd store, because
    systemd is not PID 1 here.
    """
    svc = service_factory()
    for name in ("d0", "d1"):
        svc.call("bdev_malloc_create", name="m-" + name, num_blocks=2048, block_size=512)
        svc.call("vhost_create_blk_controller", ctrlr=name, dev_name="m-" + name,
                 max_queues=1)
    wait_names(svc, "d0", fds=2)                # the two listening sockets
    wait_names(svc, "d1", fds=2)
    both = svc.names()
    removes = svc.sm.count("FDSTOREREMOVE")
    assert svc.call("vhost_delete_controller", ctrlr="d0") is True
    kept = wait_names(svc, "d1", fds=1)
    assert [n for n in svc.names() if n.startswith("sb/d0/")] == []
    assert set(kept) < set(both)
    assert svc.sm.count("FDSTOREREMOVE") - removes == 2     # its socket and its state
    # A clean stop destroys the controllers, which takes them out of the
    # store (what the product does today); then a start from what is left.
    assert svc.agent.stop() == 0
    wait_for(lambda: svc.names() == [], 10, "a clean stop to empty the store")
    svc.start()
    assert [c["ctrlr"] for c in svc.call("vhost_get_controllers")] == ["d1"]
    took = svc.call("framework_get_process")["takeover"]
    assert took is None or took["adopted"] == [], took
    wait_names(svc, "d1")
    assert [n for n in svc.names() if n.startswith("sb/d0/")] == []
    assert svc.sm.rejected == 0


@pytest.mark.timeout(150)
def test_upgrade_makes_the_new_process_main_and_its_store_survives_a_crash(
        service_factory, base_dir, initiator):
    """An upgrade under the service manager: the old process names its
    successor the main process (MAINPID=, with RELOADING=1, in one
    datagram), the successor says READY=1 and stores the sessions again;
    a SIGKILL of the successor is then a crash like any other: the restart
    takes the session over from what the successor stored.  One 2-queue
    --inflight --verify front-end runs throughout."""
    svc = service_factory()
    sock = make_controller(svc, base_dir, "v0")
    first = svc.sm.proc.pid
    with BackgroundInitiator(initiator, sock, *KEPT_WORKLOAD, "--queues", "2",
                             "--time", "8") as ini:
        wait_io(svc, "v0")
        wait_settled(svc, "v0")
        before = svc.call("framework_get_process")
        svc.call("framework_upgrade")
        after = svc.agent.wait_upgraded(before["started_at"])
        second = after["pid"]
        assert second != first and after["takeover"]["adopted"] == ["v0"], after
        svc.sm.wait_for("READY", count=2)
        assert svc.sm.main_pids == [first, second] and svc.sm.proc.pid == second
        assert svc.sm.refused_pids == 0 and svc.sm.rejected == 0
        (handed,) = [m for m in svc.sm.messages if "MAINPID" in m]
        assert handed["MAINPID"] == str(second) and handed["RELOADING"] == "1", handed
        # The successor stored the session again: the export had taken it out.
        stored = wait_settled(svc, "v0")
        assert count(stored, "fd") >= 8 and count(stored, "state") == 1, stored
        wait_for(lambda: sum(io_ops(svc, "v0")) > 0, 15, "I/O in the new process")
        svc.restart()
        took = svc.call("framework_get_process")["takeover"]
        assert took["source"] == "fd store" and took["adopted"] == ["v0"], took
        assert svc.sm.main_pids[-1] == svc.sm.proc.pid not in (first, second)
        assert controller(svc, "v0")["connected"]
        assert ini.wait(60) == 0, ini.describe() + svc.log()
    check_result(ini)
    log = svc.log()
    assert "session restored from the fd store" in log, log
    # At most the front-end's own close at the end of its run.
    assert log.count("front-end disconnected") <= 1, log
