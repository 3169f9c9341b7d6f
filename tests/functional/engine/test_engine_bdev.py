"""The bdev layer through the Python face, against each backend."""

import os
import subprocess
import time

import pytest

from spdk_backend import exception

MiB = 1 << 20


def pattern(n, seed=1):
    return bytes((i * 131 + seed * 7 + (i >> 9)) & 0xFF for i in range(n))


# ---- malloc ----

def test_malloc_round_trip(engine):
    engine.bdev_malloc_create("m0", 8192, 512)
    data = pattern(64 * 1024)
    engine.bdev_io("m0", "write", 4096, data=data)
    assert engine.bdev_io("m0", "read", 4096, len(data)) == data
    assert engine.bdev_io("m0", "read", 0, 4096) == bytes(4096)


def test_malloc_unmap_and_write_zeroes_read_back_zero(engine):
    engine.bdev_malloc_create("m0", 2048, 4096)
    engine.bdev_io("m0", "write", 0, data=pattern(8 * 4096))
    engine.bdev_io("m0", "unmap", 0, 4096)
    engine.bdev_io("m0", "write_zeroes", 4 * 4096, 4096)
    got = engine.bdev_io("m0", "read", 0, 8 * 4096)
    assert got[:4096] == bytes(4096)
    assert got[4 * 4096:5 * 4096] == bytes(4096)
    assert got[4096:4 * 4096] == pattern(8 * 4096)[4096:4 * 4096]


def test_bdev_get_bdevs_shape(engine):
    engine.bdev_malloc_create("m0", 1024, 4096, uuid="3b1ec8e2-3a9f-4e4f-9d52-0f2b9d8a7c10")
    (b,) = engine.bdev_get_bdevs("m0")
    assert b["name"] == "m0" and b["block_size"] == 4096 and b["num_blocks"] == 1024
    assert b["uuid"] == "3b1ec8e2-3a9f-4e4f-9d52-0f2b9d8a7c10"
    assert b["product_name"]
    assert b["supported_io_types"]["read"] and b["supported_io_types"]["write"]
    assert set(b["assigned_rate_limits"]) == {"rw_ios_per_sec", "rw_mbytes_per_sec",
                                              "r_mbytes_per_sec", "w_mbytes_per_sec"}
    # lookup by UUID works too
    assert engine.bdev_get_bdevs(b["uuid"])[0]["name"] == "m0"


@pytest.mark.parametrize("block_size", [0, 100, 768, 256, 4097])
def test_bad_block_size_is_refused(engine, block_size):
    with pytest.raises(exception.InvalidArgument):
        engine.bdev_malloc_create("bad", 1024, block_size)
    assert engine.bdev_get_bdevs() == []


def test_size_overflow_is_refused(engine):
    with pytest.raises(exception.EngineError):
        engine.bdev_malloc_create("huge", (1 << 64) - 1, 4096)
    with pytest.raises(exception.EngineError):
        engine.bdev_null_create("huge", (1 << 63), 4096)


def test_duplicate_name_is_refused(engine):
    engine.bdev_malloc_create("m0", 1024, 512)
    with pytest.raises(exception.AlreadyExists):
        engine.bdev_null_create("m0", 1024, 512)


def test_unknown_names(engine):
    with pytest.raises(exception.NotFound):
        engine.bdev_malloc_delete("nope")
    with pytest.raises(exception.NotFound):
        engine.bdev_get_bdevs("nope")
    with pytest.raises(exception.NotFound):
        engine.bdev_io("nope", "read", 0, 512)


def test_delete_with_the_wrong_module_is_refused(engine):
    engine.bdev_null_create("n0", 1024, 512)
    with pytest.raises(exception.NotFound):
        engine.bdev_malloc_delete("n0")
    engine.bdev_null_delete("n0")


def test_io_beyond_the_end_is_refused(engine):
    engine.bdev_malloc_create("m0", 16, 512)
    with pytest.raises(exception.InvalidArgument):
        engine.bdev_io("m0", "read", 16 * 512, 512)
    with pytest.raises(exception.InvalidArgument):
        engine.bdev_io("m0", "write", 15 * 512, data=bytes(1024))
    # still serving
    engine.bdev_io("m0", "write", 15 * 512, data=bytes(512))


# ---- null ----

def test_null_semantics_and_resize(engine):
    engine.bdev_null_create("n0", 2048, 512)
    engine.bdev_io("n0", "write", 0, data=pattern(4096))
    assert len(engine.bdev_io("n0", "read", 0, 4096)) == 4096
    watch = engine.bdev_watch("n0")
    engine.bdev_null_resize("n0", 4)
    deadline = time.monotonic() + 5
    while watch.events()["resize"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    ev = watch.events()
    assert ev["resize"] == 1
    assert ev["num_blocks"] == 4 * 1024 * 1024 // 512
    assert engine.bdev_get_bdevs("n0")[0]["num_blocks"] == 8192
    watch.close()


def test_null_cannot_shrink(engine):
    engine.bdev_null_create("n0", 8192, 512)
    with pytest.raises(exception.InvalidArgument):
        engine.bdev_null_resize("n0", 1)


# ---- hot remove ----

def test_delete_hot_removes_open_descriptors(engine):
    engine.bdev_malloc_create("m0", 1024, 512)
    watch = engine.bdev_watch("m0")
    engine.bdev_malloc_delete("m0")
    assert watch.events()["remove"] == 1
    assert engine.bdev_get_bdevs() == []
    watch.close()


# ---- uring ----

def test_uring_round_trip_on_a_file(engine, tmp_path):
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate(16 * MiB)
    engine.bdev_uring_create("u0", str(path))
    (b,) = engine.bdev_get_bdevs("u0")
    assert b["num_blocks"] * b["block_size"] == 16 * MiB
    data = pattern(256 * 1024, seed=3)
    engine.bdev_io("u0", "write", MiB, data=data)
    engine.bdev_io("u0", "flush")
    assert engine.bdev_io("u0", "read", MiB, len(data)) == data
    with open(path, "rb") as f:
        f.seek(MiB)
        assert f.read(len(data)) == data


def test_uring_unmap_and_write_zeroes_reach_the_file(engine, tmp_path):
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.write(pattern(4 * MiB, seed=5))
    engine.bdev_uring_create("u0", str(path), block_size=4096)
    engine.bdev_io("u0", "unmap", 0, 64 * 1024)
    engine.bdev_io("u0", "write_zeroes", MiB, 128 * 1024)
    with open(path, "rb") as f:
        content = f.read()
    assert content[:64 * 1024] == bytes(64 * 1024)
    assert content[MiB:MiB + 128 * 1024] == bytes(128 * 1024)
    assert content[64 * 1024:MiB] == pattern(4 * MiB, seed=5)[64 * 1024:MiB]


def test_uring_file_is_locked_against_a_second_server(engine, tmp_path):
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate(MiB)
    engine.bdev_uring_create("u0", str(path))
    with pytest.raises(exception.Busy) as exc:
        engine.bdev_uring_create("u1", str(path))
    assert "served already" in str(exc.value) and "shared" in str(exc.value)
    # An exclusive holder keeps shared servers out too, and another
    # process (another agent) the same way: flock(2) is per open file.
    with pytest.raises(exception.Busy) as exc:
        engine.bdev_uring_create("u1", str(path), shared=True)
    assert "did not create it with shared" in str(exc.value)
    other = subprocess.run(["flock", "-n", "-s", str(path), "true"])
    assert other.returncode != 0
    assert [b["name"] for b in engine.bdev_get_bdevs()] == ["u0"]
    engine.bdev_uring_delete("u0")
    # The lock goes with the bdev (its file is closed once the reactors
    # have let go of it, just after the call returns).
    assert subprocess.run(["flock", "-w", "5", str(path), "true"]).returncode == 0


def _hold_lock(path, seconds):
    """flock(1) in another process holds ``path`` for ``seconds``; returns
    once it has the lock.  It waits for the lock: a bdev just deleted may
    hold it a little longer (its ring lets go of the file after the call)."""
    holder = subprocess.Popen(["flock", "-w", "5", str(path), "sleep", str(seconds)])
    deadline = time.monotonic() + 5
    while subprocess.run(["flock", "-n", "-s", str(path), "true"]).returncode == 0:
        if time.monotonic() > deadline:
            holder.kill()
            holder.wait(10)
            raise AssertionError("flock(1) never took the lock")
        time.sleep(0.01)
    return holder


def test_uring_waits_for_a_server_that_is_going_away(engine, tmp_path):
    """A killed agent holds its file's lock until the kernel has finished its
    in-flight I/O (io_uring tears a dead process's rings down after it is
    gone): a restart waits for that, a live second server is refused."""
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate(MiB)
    # Another process holds the lock and lets go 0.5 s later.
    holder = _hold_lock(path, 0.5)
    try:
        t0 = time.monotonic()
        engine.bdev_uring_create("u0", str(path))
        waited = time.monotonic() - t0
    finally:
        holder.wait(10)
    assert holder.returncode == 0
    assert waited > 0.1, waited
    engine.bdev_uring_delete("u0")
    # One that stays is refused once the bound (2 s) has passed, and the
    # error still says why.
    holder = _hold_lock(path, 30)
    try:
        t0 = time.monotonic()
        with pytest.raises(exception.Busy) as exc:
            engine.bdev_uring_create("u0", str(path))
        waited = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait(10)
    assert "served already" in str(exc.value)
    assert 1.5 < waited < 10, waited
    assert engine.bdev_get_bdevs() == []


def test_uring_shared_file_may_be_served_twice(engine, tmp_path):
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate(MiB)
    engine.bdev_uring_create("u0", str(path), shared=True)
    engine.bdev_uring_create("u1", str(path), shared=True)
    (b,) = engine.bdev_get_bdevs("u0")
    assert b["driver_specific"]["uring"]["shared"] is True
    # Another process may share it, not take it alone.
    assert subprocess.run(["flock", "-n", "-s", str(path), "true"]).returncode == 0
    assert subprocess.run(["flock", "-n", str(path), "true"]).returncode != 0
    with pytest.raises(exception.Busy):
        engine.bdev_uring_create("u2", str(path))
    data = pattern(4096, seed=9)
    engine.bdev_io("u0", "write", 0, data=data)
    engine.bdev_io("u0", "flush")
    assert engine.bdev_io("u1", "read", 0, 4096) == data
    engine.bdev_uring_delete("u0")
    engine.bdev_uring_delete("u1")
    assert subprocess.run(["flock", "-w", "5", str(path), "true"]).returncode == 0


def test_uring_missing_file(engine, tmp_path):
    with pytest.raises(exception.NotFound):
        engine.bdev_uring_create("u0", str(tmp_path / "missing.img"))
    assert engine.bdev_get_bdevs() == []


def test_uring_rescan_after_growth_notifies(engine, tmp_path):
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate(MiB)
    engine.bdev_uring_create("u0", str(path), block_size=512)
    watch = engine.bdev_watch("u0")
    with open(path, "r+b") as f:
        f.truncate(3 * MiB)
    engine.bdev_uring_rescan("u0")
    deadline = time.monotonic() + 5
    while watch.events()["resize"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watch.events()["num_blocks"] == 3 * MiB // 512
    assert engine.bdev_get_bdevs("u0")[0]["num_blocks"] == 3 * MiB // 512
    watch.close()


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_uring_enospc_is_an_io_error_and_the_engine_keeps_serving(engine, small_tmpfs):
    path = small_tmpfs / "sparse.img"
    with open(path, "wb") as f:
        f.truncate(16 * MiB)  # sparse: larger than the file system
    engine.bdev_uring_create("u0", str(path), block_size=4096)
    with pytest.raises(exception.EngineError) as err:
        for off in range(0, 16 * MiB, 256 * 1024):
            engine.bdev_io("u0", "write", off, data=pattern(256 * 1024))
    assert err.value.errno in (28, 5)  # ENOSPC or EIO
    # the engine still serves this bdev (reads) and others
    engine.bdev_io("u0", "read", 0, 4096)
    engine.bdev_malloc_create("m0", 1024, 512)
    engine.bdev_io("m0", "write", 0, data=pattern(512))
    engine.bdev_uring_delete("u0")


# ---- concurrency, stats, QoS ----

def test_multi_reactor_concurrent_verify(engine_factory, tmp_path):
    eng = engine_factory("[0,1]")
    eng.bdev_malloc_create("m0", 32768, 512)
    res = eng.run_workload("m0", rw="verify", io_size=4096, qd=16, core_mask="[0,1]", seed=11)
    assert res["errors"] == 0 and res["verify_failures"] == 0
    assert res["write_ios"] == res["read_ios"] == 32768 * 512 // 4096
    path = tmp_path / "d.img"
    with open(path, "wb") as f:
        f.truncate(32 * MiB)
    eng.bdev_uring_create("u0", str(path))
    res = eng.run_workload("u0", rw="verify", io_size=4096, qd=32, core_mask="[0,1]", seed=12)
    assert res["errors"] == 0 and res["verify_failures"] == 0


def test_randrw_on_two_reactors_then_iostat(engine_factory):
    eng = engine_factory("[0,1]")
    eng.bdev_malloc_create("m0", 8192, 512)
    res = eng.run_workload("m0", rw="randrw", qd=16, seconds=0.5, core_mask="[0,1]")
    assert res["errors"] == 0 and res["ios"] > 0
    st = eng.bdev_get_iostat("m0")
    (b,) = st["bdevs"]
    assert b["num_read_ops"] == res["read_ios"]
    assert b["num_write_ops"] == res["write_ios"]
    assert b["bytes_read"] == 4096 * res["read_ios"]
    assert b["read_latency_ticks"] > 0 and b["max_read_latency_ticks"] >= b["min_read_latency_ticks"]
    assert b["queue_depth"] == 0
    assert st["tick_rate"] > 0


@pytest.mark.parametrize("limit,key,per_io", [
    ("rw_ios_per_sec", 3000, 1),
    ("rw_mbytes_per_sec", 8, 4096),
])
def test_qos_limit_holds_within_10_percent(engine, limit, key, per_io):
    engine.bdev_malloc_create("m0", 8192, 512)
    engine.bdev_set_qos_limit("m0", **{limit: key})
    assert engine.bdev_get_bdevs("m0")[0]["assigned_rate_limits"][limit] == key
    res = engine.run_workload("m0", rw="randread", qd=32, seconds=3.0)
    expected = key if per_io == 1 else key * 1024 * 1024 / per_io
    assert res["errors"] == 0
    assert abs(res["iops"] - expected) / expected < 0.10, res


def test_qos_iops_must_be_a_multiple_of_1000(engine):
    engine.bdev_malloc_create("m0", 1024, 512)
    with pytest.raises(exception.InvalidArgument):
        engine.bdev_set_qos_limit("m0", rw_ios_per_sec=1500)
