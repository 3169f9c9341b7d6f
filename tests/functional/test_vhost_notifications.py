"""Guest kicks: off while the engine polls, back on before its reactor sleeps.

A polling target does not need the driver's kicks (each one is a VM exit for
a KVM guest), but a sleeping reactor does: if a kick is suppressed when the
reactor goes to sleep, the request waits forever.  The C initiator counts
the kicks it really sent (the device did not suppress them).
"""

import pytest

from tests.support.initiator import run_initiator

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20


def _engine(tmp_path, spin_us):
    from spdk_backend.engine import Engine

    eng = Engine(core_mask="0x1", vhost_socket_dir=str(tmp_path),
                 spin_us=spin_us)
    eng.start()
    eng.bdev_malloc_create("m0", 16 * MB // 512, 512)
    eng.vhost_create_blk_controller("c0", "m0")
    return eng


@pytest.mark.parametrize("mode", [[], ["--event-idx"]],
                         ids=["no-notify-flag", "event-idx"])
def test_kicks_suppressed_while_polling(tmp_path, native_tools, mode):
    eng = _engine(tmp_path, spin_us=0)  # default spin window
    try:
        res = run_initiator(native_tools / "vhost_initiator", tmp_path / "c0",
                            "--rw", "randread", "--qd", "32", "--time", "1",
                            "--size-limit", "8M", "--json", *mode)
    finally:
        eng.stop()
    assert res.rc == 0, res.stdout + res.stderr
    main = res.json["main"]
    assert main["ios"] > 1000, main
    # Nearly every request found the reactor awake: no kick needed.
    assert main["kicks"] * 10 < main["ios"], main
    # A busy-polling initiator does not block: its "sleeps" count stays near 0.
    assert main["sleeps"] * 10 < main["ios"], main


@pytest.mark.parametrize("mode", [[], ["--event-idx"]],
                         ids=["no-notify-flag", "event-idx"])
def test_kicks_wake_a_sleeping_reactor(tmp_path, native_tools, mode):
    # spin_us=1: the reactor sleeps as soon as it has nothing to do, i.e.
    # between every two requests of an interrupt-driven QD 1 initiator.
    eng = _engine(tmp_path, spin_us=1)
    try:
        before = eng.reactors()[0]["sleeps"]
        res = run_initiator(native_tools / "vhost_initiator", tmp_path / "c0",
                            "--rw", "randrw", "--qd", "1", "--ios", "5000",
                            "--interrupt", "--io-timeout", "5",
                            "--size-limit", "8M", "--json", *mode)
        sleeps = eng.reactors()[0]["sleeps"] - before
    finally:
        eng.stop()
    # A lost kick would leave a request waiting until --io-timeout fails it.
    assert res.rc == 0, res.stdout + res.stderr
    main = res.json["main"]
    assert main["ios"] == 5000 and main["errors"] == 0, main
    assert sleeps > 100, sleeps
    assert main["kicks"] > 100, main
    # The initiator blocked in its wait for the call (the reactor was asleep).
    assert main["sleeps"] > 100, main
