"""A spinning reactor gives its CPU to threads that share it.

After its last work a reactor keeps polling for ``spin_us`` before it
sleeps.  On a CPU of its own that costs nothing; on a CPU it shares (with
librbd's threads, a guest, an io-wq worker) a reactor that merely spins must
not take half of that CPU from threads with real work: once it has been idle
for a few microseconds it yields between polls.
"""

import os
import threading
import time

import pytest

from tests.conftest import online_cpus

pytestmark = pytest.mark.timeout(60)


def _cpu_share_of_a_busy_thread(cpu, seconds):
    """CPU time / wall time of a CPU-bound thread pinned to ``cpu``."""
    result = {}

    def burn():
        os.sched_setaffinity(0, {cpu})
        t0, c0 = time.monotonic(), time.thread_time()
        x = 0
        while time.monotonic() - t0 < seconds:
            for _ in range(10000):
                x += 1
        result["share"] = (time.thread_time() - c0) / (time.monotonic() - t0)

    t = threading.Thread(target=burn)
    t.start()
    t.join(seconds + 30)
    return result["share"]


def test_a_spinning_reactor_yields_to_a_thread_on_its_cpu(engine_factory):
    cpu = online_cpus()[-1]
    # A 30 s spin window: the reactor never sleeps during this test.
    eng = engine_factory("[%d]" % cpu, spin_us=30 * 1000 * 1000)
    eng.bdev_null_create("n0", 1024, 512)     # some work, then nothing to do
    before = eng.reactors()[0]["sleeps"]
    share = _cpu_share_of_a_busy_thread(cpu, 1.5)
    assert eng.reactors()[0]["sleeps"] == before, "the reactor slept: no spin to test"
    # Without the yield the scheduler splits the CPU about evenly (~0.5).
    assert share > 0.8, share
