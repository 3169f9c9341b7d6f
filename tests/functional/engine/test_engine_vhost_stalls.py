"""vhost control calls whose reactor does not answer: the controller is parked.

The vhost control thread hands a queue (or the controller) to a reactor
with a blocking call.  Here the reactor is stalled by a test hook
(``sb_test_stall_reactor``, allowed by ``SB_TEST_HOOKS``) and every call's
wait is capped short (``sb_test_set_call_timeout``), so each control call
below gives up while its work is still queued behind the stall.  The
work runs later, with pointers into the controller, its guest memory, its
request arrays and its fds: the controller must be parked (session cut,
front-ends refused, nothing freed), and released only after the reactor
caught up.  Then it serves again: a fresh front-end runs a verified
workload.  A controller deleted while parked is freed when it recovers,
and its bdev is released then.

Each control call is reached once: the queue start (a front-end that
connects during the stall), the call fd swap, the used-ring log switch,
the dirty log barrier, the queue stop, a kick fd change (stop + start),
the bdev open of a new controller and the bdev close of a delete.  Under
AddressSanitizer (tests/functional/test_sanitizers.py runs this directory
on an ASan extension) a late call touching freed memory is a report.
"""

import json
import subprocess
import time

import pytest

from spdk_backend import exception
from spdk_backend._native import ffi, lib
from tests.support.initiator import BackgroundInitiator, run_initiator
from tests.support.polling import wait_for

pytestmark = pytest.mark.timeout(180)

MiB = 1 << 20
STALL_S = 1.5
# What the hooks fixture (conftest.py) caps every control call wait at.
WAIT_US = 150_000


def _parked():
    n = ffi.new("uint32_t *")
    assert lib.sb_vhost_parked_count(n) == 0
    return n[0]


def _stall():
    assert lib.sb_test_stall_reactor(0, int(STALL_S * 1e6)) == 0
    return time.monotonic() + STALL_S


def _recovered(deadline):
    """The stall is over and the parked controller was released."""
    wait_for(lambda: _parked() == 0, timeout=STALL_S + 20, what="parked controllers released")
    assert time.monotonic() >= deadline - 0.2, "recovered before the reactor could run"


@pytest.fixture
def vc(engine, hooks):
    engine.bdev_malloc_create("m0", 32 * MiB // 512, 512)
    engine.vhost_create_blk_controller("vc0", "m0")
    return engine.vhost_get_controllers("vc0")[0]["socket"]


def _serves(initiator, sock, seed):
    """A fresh front-end's verified workload passes."""
    lib.sb_test_set_call_timeout(0)
    res = run_initiator(initiator, sock, "--rw", "randrw", "--verify", "--time", "1",
                        "--size-limit", "8M", "--qd", "8", "--seed", seed, "--json",
                        timeout=60)
    lib.sb_test_set_call_timeout(WAIT_US)
    # rc 0: no I/O error and no mismatch; every block of the range read back.
    assert res.rc == 0, res.stderr
    assert res.json["main"]["verified"] > 0, res.json
    assert res.json["readback"]["verified"] == 8 * MiB // 4096, res.json


def _step(initiator, sock, step):
    """Run --stall-step: the message goes out while reactor 0 is stalled."""
    proc = subprocess.Popen([str(initiator), "--socket", str(sock), "--stall-step", step,
                             "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", line + proc.stderr.read()
        deadline = _stall()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), deadline


@pytest.mark.parametrize("step", ["call", "log-addr", "log-base", "stop", "kick"])
def test_a_running_queue_control_call(engine, vc, initiator, step):
    res, deadline = _step(initiator, vc, step)
    # No reply can tell the front-end what happened: the session is cut.
    assert res["disconnected"], res
    assert res["reply"] != "reply of 8 bytes" or step != "stop", res
    assert _parked() == 1
    # Front-ends are refused until the reactor caught up.
    early = run_initiator(initiator, vc, "--ios", "8", "--timeout-ms", "500", timeout=30)
    if time.monotonic() < deadline - 0.3:
        assert early.rc == 3, early.stderr
    _recovered(deadline)
    _serves(initiator, vc, 11)


def test_queue_start_during_the_stall(engine, vc, initiator):
    deadline = _stall()
    res = run_initiator(initiator, vc, "--ios", "64", "--timeout-ms", "3000", timeout=30)
    assert res.rc != 0, res.stdout
    _recovered(deadline)
    _serves(initiator, vc, 12)


def test_delete_while_parked_frees_it_later(engine, vc, initiator):
    fe = BackgroundInitiator(initiator, vc, "--rw", "randrw", "--time", "20", "--qd", "8",
                             "--size-limit", "8M", "--io-timeout", "30")
    try:
        wait_for(lambda: engine.vhost_get_controllers("vc0")[0]["connected"], timeout=10,
                 what="front-end connected")
        deadline = _stall()
        # The stop behind the stall times out; the controller leaves the
        # table at once (its name is free) and waits as a zombie.
        t0 = time.monotonic()
        engine.vhost_delete_controller("vc0", force=True)
        assert time.monotonic() - t0 < STALL_S
        assert engine.vhost_get_controllers() == []
        assert _parked() == 1
        _recovered(deadline)
    finally:
        fe.kill()
    _serves_again(engine, initiator, 14)


def _serves_again(engine, initiator, seed):
    """The deleted controller's bdev claim was released: the name and bdev take a new one."""
    lib.sb_test_set_call_timeout(0)
    engine.vhost_create_blk_controller("vc0", "m0")
    _serves(initiator, engine.vhost_get_controllers("vc0")[0]["socket"], seed)
    engine.vhost_delete_controller("vc0", force=True)
    engine.bdev_malloc_delete("m0")
    assert engine.bdev_get_bdevs() == []


def test_delete_without_session_during_the_stall(engine, vc, initiator):
    deadline = _stall()
    engine.vhost_delete_controller("vc0")
    assert engine.vhost_get_controllers() == []
    assert _parked() == 1
    _recovered(deadline)
    _serves_again(engine, initiator, 15)


def test_create_during_the_stall(engine, hooks, initiator):
    engine.bdev_malloc_create("m0", 32 * MiB // 512, 512)
    deadline = _stall()
    with pytest.raises(exception.EngineTimeout):
        engine.vhost_create_blk_controller("vc0", "m0")
    assert engine.vhost_get_controllers() == []
    assert _parked() == 1
    _recovered(deadline)
    # The late open was closed by the recovery: the name and the bdev are free.
    _serves_again(engine, initiator, 13)


def test_parked_count_needs_a_pointer(engine):
    assert lib.sb_vhost_parked_count(ffi.NULL) == -22
    assert _parked() == 0
