"""vhost-user-blk controllers whose queues run on more than one reactor.

The engine runs on cores 0 and 1.  A controller's queue q runs on the
(q % n)-th reactor of its cpumask's n (mask order); the C initiator
(native/tools/vhost_initiator) plays QEMU's part with verified random
reads and writes (--verify: every byte read is checked, the whole range is
read back at the end).  Where the queues run is checked twice: in what
vhost_get_controllers reports, and in the reactors' pollers (a busy
"vhost_<ctrlr>" poller on every reactor that runs one of its queues, none
on the others).  The last two tests run a real agent on cores 0 and 1: an
upgrade and SIGKILLs (the fd store played by tests/support/fdstore.py)
under a 2-queue --inflight --verify front-end with a queue on each reactor.

Kept light (8 MiB ranges, short runs): the machine has 2 cores and may run
other tests meanwhile; the reactors are not pinned.
"""

import os
import re
import shutil
import signal
import tempfile
import time

import pytest

from spdk_backend import exception
from spdk_backend.agent import client as agent_client
from spdk_backend.engine import Engine
from tests.support import agent_proc
from tests.support import fdstore
from tests.support.initiator import BackgroundInitiator, run_initiator
from tests.support.polling import wait_for

pytestmark = pytest.mark.timeout(240)

MB = 1 << 20


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    if len(os.sched_getaffinity(0)) < 2 or not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("needs CPUs 0 and 1")
    sock_dir = tmp_path_factory.mktemp("vr")
    eng = Engine(core_mask="0x3", vhost_socket_dir=str(sock_dir), max_delay_us=1000,
                 no_pin=True)
    eng.start()
    try:
        yield eng, sock_dir
    finally:
        eng.stop()


@pytest.fixture
def malloc(target):
    """Make malloc bdevs (16 MiB) that are deleted after the test."""
    eng, _ = target
    made = []

    def make(name):
        eng.bdev_malloc_create(name, 16 * MB // 512, 512)
        made.append(name)
        return name

    yield make
    for name in made:
        if any(b["name"] == name for b in eng.bdev_get_bdevs()):
            eng.bdev_malloc_delete(name)


@pytest.fixture
def ctrlrs(target):
    """Create controllers that are deleted (forced) after the test."""
    eng, sock_dir = target
    made = []

    def create(name, bdev, cpumask, max_queues):
        eng.vhost_create_blk_controller(name, bdev, cpumask=cpumask, max_queues=max_queues)
        made.append(name)
        return sock_dir / name

    yield create
    for name in made:
        if any(c["ctrlr"] == name for c in eng.vhost_get_controllers()):
            eng.vhost_delete_controller(name, force=True)


def _info(eng, name):
    (info,) = eng.vhost_get_controllers(name)
    return info


def _vhost_busy(eng, name):
    """{reactor core: busy count of the controller's poller} (reactors without one: absent)."""
    out = {}
    for r in eng.reactors():
        for p in r["pollers"]:
            if p["name"] == "vhost_" + name:
                out[r["lcore"]] = p["busy_count"]
    return out


def _poller_busy(eng, poller):
    return {r["lcore"]: sum(p["busy_count"] for p in r["pollers"] if p["name"] == poller)
            for r in eng.reactors()}


def _watch_pollers(eng, name, ini, seconds=1.0):
    """The controller's pollers (_vhost_busy) `seconds` after every queue started."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and ini.proc.poll() is None:
        if all(q["started"] for q in _info(eng, name)["queues"]):
            break
        time.sleep(0.05)
    time.sleep(seconds)
    return _vhost_busy(eng, name)


def _wait_stopped(eng, name, timeout=10):
    """Until the engine saw the front-end go (its hang-up is handled a little later)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = _info(eng, name)
        if not info["connected"]:
            return info
        time.sleep(0.02)
    return _info(eng, name)


def _check_verified(res, blocks):
    assert res is not None
    assert res["errors"] == 0 and res["verify_mismatches"] == 0 and not res["fatal"], res
    assert res["main"]["verified"] > 0, res
    assert res["readback"]["verified"] == blocks, res


VERIFY = ["--rw", "randrw", "--verify", "--size-limit", "8M", "--qd", "8", "--json"]


def test_default_and_one_core_masks_keep_every_queue_on_one_reactor(target, malloc, ctrlrs):
    eng, _ = target
    malloc("one")
    ctrlrs("dflt", "one", None, 4)
    (info,) = eng.vhost_get_controllers("dflt")
    assert info["reactor_core"] == 0
    assert [q["reactor_core"] for q in info["queues"]] == [0, 0, 0, 0]
    eng.vhost_delete_controller("dflt")
    for mask, core in (("0x1", 0), ("0x2", 1), ("[1]", 1)):
        ctrlrs("one" + str(core), "one", mask, 3)
        info = _info(eng, "one" + str(core))
        assert info["reactor_core"] == core and info["cpumask"] == mask, info
        assert [q["reactor_core"] for q in info["queues"]] == [core] * 3, info
        eng.vhost_delete_controller("one" + str(core))


def test_masks_naming_more_reactors_than_queues_or_none(target, malloc, ctrlrs):
    eng, _ = target
    malloc("few")
    # A one-queue controller on "0x3": its only queue on the first reactor.
    ctrlrs("q1", "few", "0x3", 1)
    info = _info(eng, "q1")
    assert info["reactor_core"] == 0 and [q["reactor_core"] for q in info["queues"]] == [0]
    eng.vhost_delete_controller("q1")
    # CPUs the engine does not run on are skipped; none at all is refused.
    ctrlrs("skip", "few", "0x6", 2)
    assert [q["reactor_core"] for q in _info(eng, "skip")["queues"]] == [1, 1]
    eng.vhost_delete_controller("skip")
    with pytest.raises(exception.InvalidArgument):
        eng.vhost_create_blk_controller("none", "few", cpumask="0x4")
    assert not any(c["ctrlr"] == "none" for c in eng.vhost_get_controllers())


def test_controller_on_reactor_1_only(target, initiator, malloc, ctrlrs):
    eng, _ = target
    malloc("m1")
    sock = ctrlrs("r1", "m1", "0x2", 4)
    info = _info(eng, "r1")
    assert info["reactor_core"] == 1
    assert [q["reactor_core"] for q in info["queues"]] == [1, 1, 1, 1]
    with BackgroundInitiator(initiator, sock, *VERIFY, "--queues", "4", "--time", "3") as ini:
        busy = _watch_pollers(eng, "r1", ini)
        assert ini.wait(60) == 0, ini.describe()
    # One poller, on reactor 1, did the work; reactor 0 has none of this controller.
    assert list(busy) == [1] and busy[1] > 0, busy
    _check_verified(ini.result(), 2048)
    res = ini.result()
    assert _info(eng, "r1")["completed_ios"] == (res["prefill"]["ios"] + res["main"]["ios"]
                                                 + res["readback"]["ios"])
    # Once the front-end is gone, no poller is left on any reactor.
    info = _wait_stopped(eng, "r1")
    assert not info["connected"] and not any(q["started"] for q in info["queues"]), info
    assert _vhost_busy(eng, "r1") == {}


@pytest.mark.parametrize("queues", [2, 4])
def test_controller_on_both_reactors(target, initiator, malloc, ctrlrs, queues):
    eng, _ = target
    malloc("mb%d" % queues)
    sock = ctrlrs("both%d" % queues, "mb%d" % queues, "0x3", queues)
    name = "both%d" % queues
    info = _info(eng, name)
    assert info["reactor_core"] == 0
    assert [q["reactor_core"] for q in info["queues"]] == [0, 1] * (queues // 2)
    args = VERIFY + ["--queues", str(queues), "--time", "3"]
    with BackgroundInitiator(initiator, sock, *args, "--interrupt", "--event-idx") as ini:
        first = _watch_pollers(eng, name, ini, 0.5)
        running = _info(eng, name)
        second = _watch_pollers(eng, name, ini, 0.5)
        assert ini.wait(60) == 0, ini.describe()
    # Both reactors poll their queues, and both keep finding work.
    assert sorted(first) == [0, 1], first
    assert all(second[core] > first[core] for core in (0, 1)), (first, second)
    assert all(q["started"] for q in running["queues"]), running
    _check_verified(ini.result(), 2048)
    res = ini.result()
    assert _info(eng, name)["completed_ios"] == (res["prefill"]["ios"] + res["main"]["ios"]
                                                 + res["readback"]["ios"])
    # What the initiator wrote is in the bdev: sector n's pattern carries n.
    block = eng.bdev_io("mb%d" % queues, "read", offset=4096 * 100, length=512)
    assert int.from_bytes(block[8:16], "little") == 800


def test_uring_bdev_served_from_reactor_1(target, initiator, ctrlrs, tmp_path):
    eng, _ = target
    img = tmp_path / "u.img"
    with open(img, "wb") as f:
        f.truncate(32 * MB)
    eng.bdev_uring_create("u1", str(img))
    try:
        before = _poller_busy(eng, "uring")
        sock = ctrlrs("ur1", "u1", "0x2", 2)
        assert [q["reactor_core"] for q in _info(eng, "ur1")["queues"]] == [1, 1]
        with BackgroundInitiator(initiator, sock, *VERIFY, "--queues", "2", "--time", "2") as ini:
            busy = _watch_pollers(eng, "ur1", ini)
            assert ini.wait(60) == 0, ini.describe()
        after = _poller_busy(eng, "uring")
        assert list(busy) == [1], busy
        # The file's io_uring instance of reactor 1 did the I/O, reactor 0 had none.
        assert after[1] > before.get(1, 0) and after[0] == before.get(0, 0), (before, after)
        _check_verified(ini.result(), 2048)
        eng.vhost_delete_controller("ur1")
        # The initiator's pattern reached the file: sector n carries n.
        with open(img, "rb") as f:
            f.seek(4096 * 100)
            assert int.from_bytes(f.read(512)[8:16], "little") == 800
    finally:
        if any(c["ctrlr"] == "ur1" for c in eng.vhost_get_controllers()):
            eng.vhost_delete_controller("ur1", force=True)
        eng.bdev_uring_delete("u1")


def test_verify_while_another_controller_is_deleted_and_recreated(target, initiator, malloc,
                                                                  ctrlrs):
    """A verified 2-queue workload (a queue on each reactor) runs on one
    controller while another, also on both reactors, is created, used,
    and deleted again and again: with its front-end gone, and forced while
    its front-end is still running I/O."""
    eng, sock_dir = target
    malloc("steady")
    malloc("churn")
    sock = ctrlrs("steady", "steady", "0x3", 2)
    with BackgroundInitiator(initiator, sock, *VERIFY, "--queues", "2", "--time", "6",
                             "--io-timeout", "20") as ini:
        wait_for(lambda: _info(eng, "steady")["completed_ios"] > 2048, 30, "the main phase")
        for i in range(8):
            eng.vhost_create_blk_controller("churn", "churn", cpumask="0x3", max_queues=2)
            assert [q["reactor_core"] for q in _info(eng, "churn")["queues"]] == [0, 1]
            if i % 2 == 0:
                res = run_initiator(initiator, sock_dir / "churn", "--rw", "randrw",
                                    "--queues", "2", "--ios", "2000", "--size-limit", "4M",
                                    "--json", timeout=60)
                assert res.rc == 0, res.stdout + res.stderr
                eng.vhost_delete_controller("churn")
            else:
                with BackgroundInitiator(initiator, sock_dir / "churn", "--rw", "randrw",
                                         "--queues", "2", "--time", "30",
                                         "--size-limit", "4M") as gone:
                    # Delete it under running I/O (both queues started, on both reactors).
                    done = _info(eng, "churn")["completed_ios"]
                    wait_for(lambda: all(q["started"] for q in _info(eng, "churn")["queues"])
                             and _info(eng, "churn")["completed_ios"] > done + 1000, 10,
                             "I/O on both queues of churn")
                    assert gone.proc.poll() is None, gone.describe()
                    eng.vhost_delete_controller("churn", force=True)
            # The steady front-end was running throughout.
            assert ini.proc.poll() is None, "round %d: %s" % (i, ini.describe())
        assert ini.wait(60) == 0, ini.describe()
    _check_verified(ini.result(), 2048)


def test_hot_remove_of_a_bdev_served_from_both_reactors(target, initiator, malloc, ctrlrs):
    """Deleting the bdev under a running controller: each reactor stops
    submitting and lets go of its channel, the home reactor then closes the
    descriptor, so the delete finishes; the guest gets I/O errors, not a
    hang, and the controller can still be deleted."""
    eng, _ = target
    malloc("gone")
    sock = ctrlrs("hr", "gone", "0x3", 2)
    with BackgroundInitiator(initiator, sock, "--rw", "randrw", "--queues", "2", "--qd", "8",
                             "--time", "3", "--size-limit", "8M", "--json") as ini:
        deadline = time.monotonic() + 10
        while _info(eng, "hr")["completed_ios"] < 1000 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(_vhost_busy(eng, "hr")) == [0, 1]
        started = time.monotonic()
        eng.bdev_malloc_delete("gone")
        assert time.monotonic() - started < 5
        assert not any(b["name"] == "gone" for b in eng.bdev_get_bdevs())
        rc = ini.wait(60)
    res = ini.result()
    # Requests after the removal failed (I/O errors) instead of hanging.
    assert rc == 1 and res["errors"] > 0 and not res["fatal"], ini.describe()
    assert re.search(r"vhost hr: bdev gone hot-removed", eng.log_recent())
    eng.vhost_delete_controller("hr")


@pytest.mark.parametrize("queues,cores", [(1, [0]), (3, [0, 1])])
def test_sessions_with_fewer_queues_than_the_controller(target, initiator, malloc, ctrlrs,
                                                        queues, cores):
    """A front-end using some of the queues: only their reactors poll, and
    every stop reaches the queue's own reactor (a poller left behind, or a
    ring still started, would show)."""
    eng, _ = target
    bdev = malloc("few%d" % queues)
    name = "few%d" % queues
    sock = ctrlrs(name, bdev, "0x3", 4)
    for _ in range(3):
        with BackgroundInitiator(initiator, sock, *VERIFY, "--queues", str(queues),
                                 "--time", "0.5") as ini:
            wait_for(lambda: all(q["started"] for q in _info(eng, name)["queues"][:queues]),
                     10, "%d queues started" % queues)
            busy = _vhost_busy(eng, name)
            assert ini.wait(60) == 0, ini.describe()
        assert sorted(busy) == cores, busy
        _check_verified(ini.result(), 2048)
        info = _wait_stopped(eng, name)
        assert not info["connected"] and not any(q["started"] for q in info["queues"]), info
        assert _vhost_busy(eng, name) == {}


# ---- upgrade and crash survival with queues on two reactors ----


def _agent_call(agent, method, **params):
    with agent_client.AgentClient(agent.rpc_socket, timeout=30, connect_timeout=10) as c:
        return c.call(method, **params)


def _agent_controller(agent, base, name, **extra):
    """A uring bdev u-<name> over a new 64 MiB file and a 2-queue controller
    on cores 0 and 1 (extra: more vhost_create_blk_controller parameters);
    its info."""
    img = os.path.join(base, name + ".img")
    with open(img, "wb") as f:
        f.truncate(64 * MB)
    _agent_call(agent, "bdev_uring_create", name="u-" + name, filename=img)
    _agent_call(agent, "vhost_create_blk_controller", ctrlr=name, dev_name="u-" + name,
                cpumask="0x3", max_queues=2, **extra)
    (info,) = _agent_call(agent, "vhost_get_controllers", name=name)
    assert [q["reactor_core"] for q in info["queues"]] == [0, 1], info
    return info


def _agent_ios(agent, name):
    (st,) = _agent_call(agent, "bdev_get_iostat", name="u-" + name)["bdevs"]
    return st["num_read_ops"] + st["num_write_ops"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ring", [[], ["--packed"]], ids=["split", "packed"])
def test_upgrade_hands_over_queues_on_both_reactors(initiator, ring):
    """framework_upgrade of an agent on cores 0 and 1 while a 2-queue
    --verify front-end runs on a controller with a queue on each reactor:
    the new process resumes each ring on its reactor, no disconnect
    (packed rings: at both indexes and wrap counters the old one stopped
    them at)."""
    base = tempfile.mkdtemp(prefix="sbv-", dir="/tmp")
    try:
        with agent_proc.AgentProcess(base, core_mask="0x3") as agent:
            info = _agent_controller(agent, base, "up2", packed_ring=bool(ring))
            before = _agent_call(agent, "framework_get_process")
            args = VERIFY + ["--queues", "2", "--time", "5", "--interrupt", "--io-timeout",
                             "20", "--timeout-ms", "20000"] + ring
            with BackgroundInitiator(initiator, info["socket"], *args) as ini:
                wait_for(lambda: _agent_ios(agent, "up2") > 4096, 30, "the main phase")
                assert _agent_call(agent, "framework_upgrade")["sessions"] == ["up2"]
                after = agent.wait_upgraded(before["started_at"])
                assert after["takeover"]["adopted"] == ["up2"], after
                (info,) = _agent_call(agent, "vhost_get_controllers", name="up2")
                assert info["connected"] and info["adopted"], info
                assert [(q["reactor_core"], q["started"]) for q in info["queues"]] == \
                    [(0, True), (1, True)], info
                done = _agent_ios(agent, "up2")
                wait_for(lambda: _agent_ios(agent, "up2") > done, 15, "I/O after the upgrade")
                assert ini.wait(60) == 0, ini.describe() + agent.log()
            _check_verified(ini.result(), 2048)
            assert "vhost up2: session taken over from the previous process (2 rings " \
                "resumed)" in agent.log()
    finally:
        shutil.rmtree(base, ignore_errors=True)

KEPT_WORKLOAD = ["--rw", "randrw", "--verify", "--qd", "8", "--interrupt", "--json",
                 "--size-limit", "8M", "--io-timeout", "20", "--timeout-ms", "20000",
                 "--inflight", "--queues", "2"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ring", [[], ["--packed"]], ids=["split", "packed"])
def test_inflight_resubmitted_on_both_reactors_after_crashes(initiator, ring):
    """An agent on cores 0 and 1 serves a 2-queue --inflight --verify
    front-end from a controller whose queues run on both reactors; three to
    six SIGKILLs (until each queue had requests in flight at one): each restart takes the session over from the fd store
    (tests/support/fdstore.py plays systemd's part, as in
    tests/functional/agent/test_agent_fdstore.py), puts the queues back on
    their reactors and resubmits what was in flight on each of them.

    Packed rings: the restarted process finds its ring positions in the
    packed inflight region (the base it kept is stale) and resubmits from
    the region's copies of the descriptors."""
    base = tempfile.mkdtemp(prefix="sbv-", dir="/tmp")
    agent = agent_proc.AgentProcess(base, core_mask="0x3")
    sm = fdstore.ServiceManager()
    starts = 0

    def call(method, **params):
        return _agent_call(agent, method, **params)

    def start():
        nonlocal starts
        with open(agent.log_file, "ab") as log:
            agent.proc = sm.start(agent_proc.agent_command()
                                  + ["--config-file", agent.conf_file], stdout=log)
        agent.wait_ready()
        starts += 1
        sm.wait_for("READY", count=starts)

    def ios():
        return _agent_ios(agent, "v2")

    try:
        start()
        info = _agent_controller(agent, base, "v2", packed_ring=bool(ring))
        resubmitted = [re.compile(r"vhost v2: queue %d resubmits [1-9]\d* inflight requests" % q)
                       for q in (0, 1)]
        crashes = 0
        with BackgroundInitiator(initiator, info["socket"], *KEPT_WORKLOAD, *ring,
                                 "--time", "14") as ini:
            wait_for(lambda: ios() > 4096, 30, "the verify run's main phase")
            # At least three crashes, and more (up to six) until each queue
            # had requests in flight at one of them: a kill can find a queue
            # with none in flight (on a loaded machine, now and then).
            for i in range(6):
                if i >= 3 and all(r.search(agent.log()) for r in resubmitted):
                    break
                assert ini.proc.poll() is None, ini.describe() + agent.log()
                crashes += 1
                os.kill(sm.proc.pid, signal.SIGKILL)
                sm.proc.wait(10)
                start()
                took = call("framework_get_process")["takeover"]
                assert took is not None and took["adopted"] == ["v2"], took
                (info,) = call("vhost_get_controllers", name="v2")
                assert info["connected"] and info["adopted"], info
                assert [(q["reactor_core"], q["started"]) for q in info["queues"]] == \
                    [(0, True), (1, True)], info
                done = ios()
                wait_for(lambda: ios() > done, 15, "I/O after crash %d" % (i + 1))
                time.sleep(0.8)
            assert ini.wait(90) == 0, ini.describe() + agent.log()
        _check_verified(ini.result(), 2048)
        log = agent.log()
        assert log.count("vhost v2: session restored from the fd store") == crashes, log
        for r in resubmitted:
            assert r.search(log), log
    finally:
        try:
            agent.stop()
        finally:
            agent.kill9()
            sm.close()
            shutil.rmtree(base, ignore_errors=True)
