"""Engine start/stop, core masks, reactors and idle behaviour (real engine)."""

import resource
import time

import pytest

from spdk_backend import exception
from spdk_backend.engine import Engine, parse_core_mask


@pytest.mark.parametrize("mask,cores", [
    ("0x1", [0]), ("1", [0]), ("0x3", [0, 1]), ("[0,1]", [0, 1]), ("[0-1]", [0, 1]),
    ("[1]", [1]), ("0x2", [1]),
])
def test_core_mask_parses(mask, cores):
    assert parse_core_mask(mask) == cores


@pytest.mark.parametrize("mask", ["", "0x", "0x0", "zz", "[", "[0,", "[1-0]", "[a]",
                                  "0x1g", "[0,,1]", "[-1]", "[100000]", "-1"])
def test_bad_core_mask_is_refused(mask):
    with pytest.raises(exception.InvalidArgument):
        parse_core_mask(mask)


def test_core_mask_naming_an_offline_cpu_is_refused():
    with pytest.raises(exception.InvalidArgument):
        Engine(core_mask="[63]").start()
    assert not Engine._active


def test_start_stop_repeatedly(tmp_path):
    for _ in range(5):
        with Engine("0x3", vhost_socket_dir=str(tmp_path)) as eng:
            assert eng.running
            assert [r["name"] for r in eng.reactors()] == ["reactor_0", "reactor_1"]
        assert not eng.running


def test_second_engine_in_one_process_is_refused(engine):
    with pytest.raises(exception.AlreadyExists):
        Engine("0x1").start()


def test_calls_on_a_stopped_engine_raise():
    eng = Engine("0x1")
    with pytest.raises(exception.EngineNotRunning):
        eng.bdev_get_bdevs()


def test_reactor_counters_and_pollers(engine):
    engine.bdev_malloc_create("m0", 2048, 512)
    engine.run_workload("m0", rw="randread", qd=8, seconds=0.3)
    (r0,) = engine.reactors()
    assert r0["lcore"] == 0
    assert r0["busy"] > 0 and r0["idle"] >= 0
    assert r0["msgs"] > 0
    assert isinstance(r0["pollers"], list)


def test_idle_engine_sleeps(engine_factory):
    """Two idle reactors must cost well under 1% of a CPU."""
    eng = engine_factory("0x3", max_delay_us=1000)
    time.sleep(0.3)  # let start-up work settle
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    time.sleep(2.0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - t0
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu / wall < 0.01, "idle engine used %.2f%% of a CPU" % (100 * cpu / wall)
    assert all(r["sleeps"] > 0 for r in eng.reactors())


def test_message_to_sleeping_reactor_is_handled_at_once(engine_factory):
    eng = engine_factory("0x1", max_delay_us=500000)  # would sleep up to 0.5 s
    time.sleep(0.2)
    t0 = time.monotonic()
    for _ in range(20):
        eng.bdev_get_bdevs()
    per_call = (time.monotonic() - t0) / 20
    # A lost wake-up would cost max_delay_us (500 ms) per call.
    assert per_call < 0.1
