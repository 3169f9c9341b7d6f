"""Control calls whose waiter gives up leave nothing of the caller's in use.

A test hook (``sb_test_stall_reactor``, allowed by ``SB_TEST_HOOKS``) makes
a reactor sleep in a message, and ``sb_test_set_call_timeout`` shortens the
wait of every control call, so each call below is queued behind the stall
and raises EngineTimeout.  The test then drops everything it handed to the
call (names, options, the read buffer), fills freed memory of the same size
with a marker, and lets the reactor resume: the work completes into memory
the call owns.  Without a sanitizer the markers must survive; under
AddressSanitizer (tests/functional/test_sanitizers.py runs this file on an
ASan extension) any write into freed memory is a report.
"""

import gc
import os
import time

import pytest

from spdk_backend import exception
from spdk_backend._native import ffi, lib

STALL_S = 0.6
# What the hooks fixture (conftest.py) caps every control call wait at.
WAIT_US = 150_000
MiB = 1 << 20


def _churn(size, count=64):
    """Allocate freed-memory-sized blocks with a marker (reused by malloc)."""
    gc.collect()
    return [ffi.new("char[]", b"\x5a" * size) for _ in range(count)]


def _intact(blocks, size):
    return all(ffi.buffer(b, size)[:] == b"\x5a" * size for b in blocks)


def _timed_out(engine, call, reactor=0):
    """Run call() behind a stall of reactor; it must give up, then let the reactor go."""
    assert lib.sb_test_stall_reactor(reactor, int(STALL_S * 1e6)) == 0
    t0 = time.monotonic()
    with pytest.raises(exception.EngineTimeout) as err:
        call()
    assert time.monotonic() - t0 < STALL_S, "the call waited for the stalled reactor"
    assert err.value.errno == lib.SB_EWAITER_GAVE_UP == exception.WAITER_GAVE_UP
    assert "did not answer in time" in str(err.value)
    return err.value


def _resume(engine):
    """Wait (normal timeout again) until the stalled reactor has run everything queued."""
    lib.sb_test_set_call_timeout(0)
    engine.bdev_get_bdevs()
    lib.sb_test_set_call_timeout(WAIT_US)


def test_hooks_need_the_environment(engine, monkeypatch):
    monkeypatch.delenv("SB_TEST_HOOKS", raising=False)
    assert lib.sb_test_stall_reactor(0, 1000) == -1  # -EPERM
    assert lib.sb_test_set_call_timeout(1000) == -1


def test_waiter_gave_up_is_not_an_errno():
    assert lib.SB_EWAITER_GAVE_UP == exception.WAITER_GAVE_UP
    exc = exception.from_errno(-lib.SB_EWAITER_GAVE_UP, "bdev_null_resize")
    assert type(exc) is exception.EngineTimeout
    io = exception.from_io_errno(-lib.SB_EWAITER_GAVE_UP, "m0", "read", 0)
    assert type(io) is exception.EngineTimeout
    # A storage ETIMEDOUT on an I/O stays the I/O's own error.
    assert type(exception.from_io_errno(-110, "r0", "read", 0)) is exception.BdevIOError


def test_create_calls_hand_the_bdev_over(engine, hooks):
    _timed_out(engine, lambda: engine.bdev_null_create("n0", 2048, 512))
    _timed_out(engine, lambda: engine.bdev_malloc_create("m0", 2048, 512))
    _resume(engine)
    # Handed to the engine: they registered late, and are the engine's.
    assert {b["name"] for b in engine.bdev_get_bdevs()} == {"n0", "m0"}
    engine.bdev_null_delete("n0")
    engine.bdev_malloc_delete("m0")


def test_uring_create_and_rescan(engine, hooks, tmp_path):
    path = tmp_path / "u0.img"
    path.write_bytes(b"\0" * MiB)
    _timed_out(engine, lambda: engine.bdev_uring_create("u0", str(path), block_size=512))
    _resume(engine)
    assert engine.bdev_get_bdevs() == []
    engine.bdev_uring_create("u0", str(path), block_size=512)
    os.truncate(path, 2 * MiB)
    _timed_out(engine, lambda: engine.bdev_uring_rescan("u0"))
    _resume(engine)
    assert engine.bdev_get_bdevs("u0")[0]["num_blocks"] == 2 * MiB // 512
    _timed_out(engine, lambda: engine.bdev_uring_delete("u0"))
    _resume(engine)
    assert engine.bdev_get_bdevs() == []


def test_resize_and_delete(engine, hooks):
    engine.bdev_null_create("n0", 2048, 512)
    _timed_out(engine, lambda: engine.bdev_null_resize("n0", 4))
    blocks = _churn(64)
    _resume(engine)
    assert _intact(blocks, 64)
    assert engine.bdev_get_bdevs("n0")[0]["num_blocks"] == 4 * MiB // 512
    _timed_out(engine, lambda: engine.bdev_null_delete("n0"))
    _resume(engine)
    assert engine.bdev_get_bdevs() == []


def test_queries_write_only_their_own_memory(engine, hooks):
    engine.bdev_malloc_create("m0", 2048, 512)
    size = ffi.sizeof("struct sb_bdev_info")
    _timed_out(engine, lambda: engine.bdev_get_bdevs("m0"))
    _timed_out(engine, lambda: engine.bdev_get_bdevs())
    _timed_out(engine, lambda: engine.bdev_get_iostat("m0"))
    blocks = _churn(size) + _churn(ffi.sizeof("struct sb_bdev_iostat"))
    _resume(engine)
    assert _intact(blocks[:64], size)
    assert engine.bdev_get_bdevs("m0")[0]["name"] == "m0"


def test_qos_and_alias(engine, hooks):
    engine.bdev_malloc_create("m0", 2048, 512)
    _timed_out(engine, lambda: engine.bdev_set_qos_limit("m0", rw_ios_per_sec=10000))
    rc = {}

    def alias():
        rc["add"] = lib.sb_bdev_ctl_alias_add(ffi.new("char[]", b"m0"),
                                              ffi.new("char[]", b"m0-alias"))
        raise exception.from_errno(rc["add"], "alias")
    _timed_out(engine, alias)
    _resume(engine)
    (b,) = engine.bdev_get_bdevs("m0")
    assert b["assigned_rate_limits"]["rw_ios_per_sec"] == 10000
    assert b["aliases"] == ["m0-alias"]


def test_read_lands_in_the_calls_memory(engine, hooks):
    engine.bdev_malloc_create("m0", 2048, 512)
    data = bytes(range(256)) * 256
    engine.bdev_io("m0", "write", 0, data=data)
    err = _timed_out(engine, lambda: engine.bdev_io("m0", "read", 0, len(data)))
    assert "bdev m0 read at offset 0" in str(err)
    del err
    # The read's bytearray is gone; a reactor writing there would change these.
    blocks = _churn(len(data), 16)
    _resume(engine)
    assert _intact(blocks, len(data))
    assert engine.bdev_io("m0", "read", 0, len(data)) == data


def test_write_data_is_copied(engine, hooks):
    engine.bdev_malloc_create("m0", 2048, 512)
    data = bytearray(b"\xa5" * 8192)
    _timed_out(engine, lambda: engine.bdev_io("m0", "write", 4096, data=data))
    data[:] = b"\x00" * 8192  # the caller reuses its buffer at once
    _resume(engine)
    assert engine.bdev_io("m0", "read", 4096, 8192) == b"\xa5" * 8192
    _timed_out(engine, lambda: engine.bdev_io("m0", "flush"))
    _resume(engine)


def test_workload_owns_its_options_and_result(engine, hooks):
    engine.bdev_malloc_create("m0", 4096, 512)
    _timed_out(engine, lambda: engine.run_workload("m0", rw="randrw", io_size=4096, qd=4,
                                                   seconds=0.2))
    blocks = _churn(ffi.sizeof("struct sb_workload_result"))
    # The run goes on after the stall; delete waits until its descriptor is closed.
    time.sleep(STALL_S + 0.4)
    _resume(engine)
    assert _intact(blocks, ffi.sizeof("struct sb_workload_result"))
    lib.sb_test_set_call_timeout(0)
    res = engine.run_workload("m0", rw="verify", io_size=4096, qd=4)
    assert res["verify_failures"] == 0 and res["errors"] == 0 and res["ios"] > 0
    engine.bdev_malloc_delete("m0")


def test_watch_open_after_a_gave_up_wait(engine, hooks):
    engine.bdev_null_create("n0", 2048, 512)
    _timed_out(engine, lambda: engine.bdev_watch("n0"))
    _resume(engine)
    # The watch the reactor opened late is the engine's; a delete still completes.
    engine.bdev_null_delete("n0")
    assert engine.bdev_get_bdevs() == []


def test_poller_snapshot(engine, hooks):
    _timed_out(engine, lambda: engine.reactors())
    blocks = _churn(ffi.sizeof("struct sb_poller_info") * 64, 8)
    _resume(engine)
    assert _intact(blocks, ffi.sizeof("struct sb_poller_info") * 64)
    assert engine.reactors()[0]["pollers"] is not None
