"""Agent restarts under a running guest: no disconnect, no lost write.

The agent runs as systemd runs it (``Type=notify``, an fd store), through
tests/support/fdstore.py: systemd is not PID 1 on the test machines, so a
faithful socket-level stand-in keeps the fds the agent stores and passes
them to the restarted agent (LISTEN_FDS) as systemd does.

Each guest (TCG, memfd memory, 2 vCPUs) has two vhost-user disks from the
agent: one in its definition when it starts and one hot-plugged with
``attach --live`` (the Nova path; libvirt 9.0 gives that one no reconnect,
docs/support.md).  While the guest writes both disks (O_DIRECT, a copy of
what it wrote kept in the guest):

* upgrades: the agent hands itself over to a new process UPGRADES times,
  alternately by ``spdk-backend upgrade`` (``framework_upgrade``) and
  SIGHUP (the unit's reload); the new process becomes the service's main
  process (``MAINPID=``), and a crash after an upgrade finds the fd store
  filled by the new process;
* crashes: the agent is SIGKILLed KILLS times and started again with its fd
  store, as ``Restart=on-failure`` does; the disk from the definition has
  two queues written from both vCPUs, and both queues resubmit requests
  that were in flight when it died (the agent's log says so).

Each time the same sessions are taken over (``adopted``), the agent never
logs a front-end disconnect, and both disks complete I/O again; at the end
the guest saw no I/O error and the volume files hold exactly what the
guest wrote last.  Printed per event (bench/RESULTS.md): the time from the
event to the first completion on each disk (an upper bound: for an upgrade
it includes the new process's start, during which the old one still
serves), and for upgrades the time the rings were not served (from the old
process stopping them to the new one resuming them, the engine's log).
"""

import datetime
import hashlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

import pytest

from spdk_backend.agent import client as agent_client
from spdk_backend.cmd import _common
from tests.support import agent_proc
from tests.support import fdstore
from tests.support import hugepages
from tests.support import libvirt_domain as lvd
from tests.support.guest import guest_disks, new_guest_disk
from tests.support.pidhandle import ProcessHandle

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

MB = 1 << 20
UPGRADES = 5
KILLS = 20
MEMFD = "<source type='memfd'/><access mode='shared'/>"


@pytest.fixture(scope="module")
def workdir():
    path = lvd.make_workdir("sbrst-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def manager():
    sm = fdstore.ServiceManager()
    yield sm
    sm.close()


@pytest.fixture(scope="module")
def agent(workdir, manager):
    base = workdir / "agent"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    proc = agent_proc.AgentProcess(str(base), vhost_socket_group="kvm",
                                   vhost_socket_mode="0660")
    proc.start(service_manager=manager)
    try:
        yield proc
    finally:
        try:
            proc.stop()
        finally:
            proc.kill9()


@pytest.fixture(scope="module")
def domains(conn, workdir, image):
    with lvd.domain_factory(conn, workdir, image) as make:
        yield make


def _command():
    exe = shutil.which("spdk-backend")
    return [exe] if exe else [sys.executable, "-m", "spdk_backend.cmd.cli"]


def sb(agent, *args, timeout=120):
    env = dict(os.environ, SPDK_BACKEND_LIBVIRT_URI=lvd.URI,
               SPDK_BACKEND_VOLUME_DIR=os.path.join(agent.base_dir, "volumes"))
    proc = subprocess.run(_command() + ["--rpc-socket", agent.rpc_socket] + list(args),
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError("spdk-backend %s failed (%d):\n%s%s" % (
            " ".join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


def controllers(agent):
    with agent_client.AgentClient(agent.rpc_socket, timeout=30) as c:
        return {x["ctrlr"]: x for x in c.call("vhost_get_controllers")}


class Writer:
    """A guest loop rewriting chunks [first, first + count) (1 MiB each) of
    one disk with O_DIRECT, alternating two random patterns, on one vCPU
    (``cpu``: the queue of that vCPU) or any; the guest keeps a copy of
    what each chunk holds in /tmp/w-<name>/chunk<k>."""

    def __init__(self, name, dev, first, count, cpu=None):
        self.name, self.dev, self.first, self.count, self.cpu = name, dev, first, count, cpu
        self.dir = "/tmp/w-%s" % name

    def start(self, shell):
        d = self.dir
        shell.check("mkdir -p {d}; rm -f {d}/stop {d}/err; "
                    "dd if=/dev/urandom of={d}/p0 bs=64k count=16 2>/dev/null; "
                    "dd if=/dev/urandom of={d}/p1 bs=64k count=16 2>/dev/null".format(d=d))
        pin = "taskset -c %d " % self.cpu if self.cpu is not None else ""
        shell.job_start(
            "w-" + self.name,
            "n=0; while [ ! -e {d}/stop ]; do k=$(({first} + n % {count})); p=$((n % 2)); "
            "{pin}dd if={d}/p$p of=/dev/{dev} bs=1M seek=$k oflag=direct conv=notrunc "
            "2>/dev/null && cp {d}/p$p {d}/chunk$k || echo write-$n >> {d}/err; "
            "n=$((n+1)); done".format(d=d, first=self.first, count=self.count, pin=pin,
                                      dev=self.dev))

    def stop(self, shell):
        shell.check("touch %s/stop" % self.dir)
        shell.job_wait("w-" + self.name, 120)
        assert shell.check("cat %s/err 2>/dev/null; true" % self.dir).strip() == "", self.name


def guest_md5(shell, writers, chunks):
    """md5 of the disk's first ``chunks`` MiB as the guest wrote them last."""
    paths = []
    for k in range(chunks):
        owner = [w for w in writers if w.first <= k < w.first + w.count]
        path = "%s/chunk%d" % (owner[0].dir, k) if owner else "/tmp/zero-chunk"
        paths.append(path)
    shell.check("[ -e /tmp/zero-chunk ] || dd if=/dev/zero of=/tmp/zero-chunk bs=64k "
                "count=16 2>/dev/null; for p in %s; do [ -e $p ] || cp /tmp/zero-chunk $p; "
                "done" % " ".join(paths))
    return shell.check("cat %s | md5sum" % " ".join(paths), timeout=60).split()[0]


def file_md5(path, chunks):
    with open(path, "rb") as f:
        return hashlib.md5(f.read(chunks * MB)).hexdigest()


def guest_with_two_disks(agent, domains, tag, queues, memory_backing=MEMFD):
    """A started guest with disk vda (in the definition, ``queues`` queues)
    and a hot-plugged one; (domain, shell, [(dev, vol, ctrlr)])."""
    d = domains(tag, memory_backing=memory_backing)
    vols = ["%sa-%s" % (tag[:2], d.name[-8:]), "%sb-%s" % (tag[:2], d.name[-8:])]
    for vol in vols:
        sb(agent, "volume", "create", vol, "--size", "16M")
    sb(agent, "attach", d.name, vols[0], "--queues", str(queues))
    d.start()
    shell = d.shell
    shell.check("(i=0; until [ -e /sys/block/vda ]; do i=$((i+1)); [ $i -gt 300 ] && "
                "exit 1; sleep 0.1; done)", timeout=45)
    before = guest_disks(shell)
    sb(agent, "attach", d.name, vols[1], "--live", "--queues", "1")
    devs = ["vda", new_guest_disk(shell, before)]
    return d, shell, [(dev, vol, _common.ctrlr_name(d.name, vol))
                      for dev, vol in zip(devs, vols)]


def wait_completions(agent, ctrlrs, since, timeout=90):
    """Until every controller completed I/O after ``since`` counts; when
    each first did (time.monotonic())."""
    deadline = time.monotonic() + timeout
    first = {}
    while len(first) < len(ctrlrs):
        info = controllers(agent)
        for c in ctrlrs:
            if c not in first and info[c]["completed_ios"] > since.get(c, 0):
                first[c] = time.monotonic()
        assert time.monotonic() < deadline, "no I/O on %s:\n%s" % (
            sorted(set(ctrlrs) - set(first)), agent.log()[-4000:])
        time.sleep(0.01)
    return first


def _stamp(line):
    # The agent's format (engine lines included): local time to the microsecond.
    m = re.match(r"\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", line)
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()


def ring_stall(log, ctrlrs):
    """Seconds the rings of ``ctrlrs`` were not served in the last upgrade in
    ``log``: from the old process stopping them (the export) to the new one
    resuming them, from the engine's log stamps; the longest over ctrlrs."""
    worst = 0.0
    for ctrlr in ctrlrs:
        stopped = [_stamp(x) for x in log.splitlines()
                   if "vhost %s: session handed over" % ctrlr in x]
        resumed = [_stamp(x) for x in log.splitlines()
                   if "vhost %s: session taken over from the previous process" % ctrlr in x]
        assert stopped and resumed and resumed[-1] > stopped[-1], (ctrlr, stopped, resumed)
        worst = max(worst, resumed[-1] - stopped[-1])
    return worst


def verify(agent, shell, disks, writers):
    """Stop the writers: no I/O error, and each volume file holds what the guest wrote."""
    for w in writers:
        w.stop(shell)
    for dev, vol, _ in disks:
        mine = [w for w in writers if w.dev == dev]
        assert guest_md5(shell, mine, 8) == file_md5(
            os.path.join(agent.base_dir, "volumes", vol), 8), dev


def remove(agent, d, disks):
    d.destroy()
    for _, vol, ctrlr in disks:
        with agent.client() as c:
            c.call("vhost_delete_controller", {"ctrlr": ctrlr})
        sb(agent, "volume", "delete", vol)


def report(kind, pauses):
    print("%s pause per event (s): %s; median %.3f, worst %.3f" % (
        kind, " ".join("%.3f" % p for p in pauses), statistics.median(pauses), max(pauses)))


def crash(agent, manager):
    """SIGKILL the agent and start it as systemd would (its fd store passed)."""
    agent.kill9()
    agent.start(service_manager=manager)


def upgrade(agent, how, manager):
    """Upgrade the agent; returns once the new process serves."""
    old = agent.proc
    with agent.client() as c:
        started_at = c.call("framework_get_process")["started_at"]
    if how == "cli":
        out = sb(agent, "upgrade")
        assert "upgraded to" in out, out
    else:
        os.kill(old.pid, signal.SIGHUP)
    new = agent.wait_upgraded(started_at)["pid"]
    assert new != old.pid
    # The old process exited once it had handed over (its status is ours to
    # read only when we started it); the service manager follows the new one.
    assert old.wait(30) in (0, ProcessHandle.UNKNOWN), agent.log()[-4000:]
    assert "session(s) handed to process %d; this process exits" % new in agent.log()
    assert manager.proc.pid == agent.proc.pid and manager.refused_pids == 0


def test_upgrades_keep_guest_disks_connected(agent, manager, domains):
    d, shell, disks = guest_with_two_disks(agent, domains, "upg", queues=1)
    ctrlrs = [c for _, _, c in disks]
    writers = [Writer("u%d" % i, dev, 0, 4) for i, (dev, _, _) in enumerate(disks)]
    for w in writers:
        w.start(shell)
    log_start = len(agent.log())
    pauses, stalls = [], []
    for i in range(UPGRADES):
        t0 = time.monotonic()
        upgrade(agent, "cli" if i % 2 == 0 else "sighup", manager)
        info = controllers(agent)
        for ctrlr in ctrlrs:
            assert info[ctrlr]["connected"] and info[ctrlr]["adopted"], info[ctrlr]
        pauses.append(max(wait_completions(agent, ctrlrs, {}).values()) - t0)
        stalls.append(ring_stall(agent.log()[log_start:], ctrlrs))
    report("UPGRADE (command to first completion in the new process)", pauses)
    report("UPGRADE (rings stopped to resumed, agent log)", stalls)
    verify(agent, shell, disks, writers)
    log = agent.log()[log_start:]
    remove(agent, d, disks)
    assert log.count("took over 2 session(s) without a disconnect") == UPGRADES
    assert "front-end disconnected" not in log
    assert "session not handed over" not in log
    # systemd's protocol: a reload is announced, and each new process is ready.
    assert manager.count("RELOADING") >= UPGRADES and manager.rejected == 0


def test_crashes_keep_guest_disks_connected(agent, manager, domains):
    d, shell, disks = guest_with_two_disks(agent, domains, "crash", queues=2)
    ctrlrs = [c for _, _, c in disks]
    (dev_a, vol_a, ctrlr_a), (dev_b, _, ctrlr_b) = disks
    # Two writers per vCPU on the two-queue disk, throttled by a QoS limit
    # (requests wait in the agent): both queues have requests in flight
    # most of the time, so the kills find some to resubmit on each.
    sb(agent, "rpc", "bdev_set_qos_limit", "name=%s" % vol_a, "rw_mbytes_per_sec=4")
    writers = [Writer("a0", dev_a, 0, 2, cpu=0), Writer("a1", dev_a, 2, 2, cpu=0),
               Writer("a2", dev_a, 4, 2, cpu=1), Writer("a3", dev_a, 6, 2, cpu=1),
               Writer("b0", dev_b, 0, 4)]
    for w in writers:
        w.start(shell)
    wait_completions(agent, ctrlrs, {})
    log_start = len(agent.log())
    pauses = []
    for i in range(KILLS):
        time.sleep(0.2 + (i % 5) * 0.15)    # kills land at varied points of the writes
        t0 = time.monotonic()
        crash(agent, manager)
        info = controllers(agent)
        for ctrlr in ctrlrs:
            if not (info[ctrlr]["connected"] and info[ctrlr]["adopted"]):
                open("/tmp/sbrst-fail.log", "w").write(agent.log())
            assert info[ctrlr]["connected"] and info[ctrlr]["adopted"], info[ctrlr]
        with agent.client() as c:
            took = c.call("framework_get_process")["takeover"]
        assert took["source"] == "fd store" and sorted(took["adopted"]) == sorted(ctrlrs)
        # The pause: until the unthrottled disk completes again.
        pauses.append(wait_completions(agent, ctrlrs, {})[ctrlr_b] - t0)
    report("CRASH", pauses)
    verify(agent, shell, disks, writers)
    log = agent.log()[log_start:]
    remove(agent, d, disks)
    assert log.count("took over 2 session(s) without a disconnect") == KILLS
    assert "front-end disconnected" not in log
    # Requests in flight when the agent died were resubmitted, on both queues.
    for q in (0, 1):
        assert "vhost %s: queue %d resubmits" % (ctrlr_a, q) in log, "\n".join(
            line for line in log.splitlines() if "resubmits" in line or "started (" in line)
    assert manager.rejected == 0


def test_hugepage_guest_survives_crashes_and_upgrades(agent, manager, domains):
    """The same with the guest's RAM in huge pages (hugetlbfs files, which
    the agent maps again from the fds it gets back): three crashes and two
    upgrades."""
    with hugepages.reserve(256 // 2 + 16):
        d, shell, disks = guest_with_two_disks(
            agent, domains, "huge", queues=1,
            memory_backing="<hugepages/><access mode='shared'/>")
        try:
            ctrlrs = [c for _, _, c in disks]
            writers = [Writer("h%d" % i, dev, 0, 4) for i, (dev, _, _) in enumerate(disks)]
            for w in writers:
                w.start(shell)
            log_start = len(agent.log())
            for event in ("crash", "upgrade", "crash", "upgrade", "crash"):
                if event == "crash":
                    crash(agent, manager)
                else:
                    upgrade(agent, "sighup", manager)
                info = controllers(agent)
                assert all(info[c]["adopted"] for c in ctrlrs), info
                wait_completions(agent, ctrlrs, {})
            verify(agent, shell, disks, writers)
            log = agent.log()[log_start:]
            assert log.count("took over 2 session(s) without a disconnect") == 5
            assert "front-end disconnected" not in log
        finally:
            remove(agent, d, disks)
