"""The rbd bdev in the real engine against a real Ceph cluster on 127.0.0.1."""

import errno
import os
import threading
import time

import pytest

from spdk_backend import exception
from tests.support import ceph

MiB = 1 << 20


def export(cluster, image, tmp_path):
    """The image's bytes as ``rbd export`` (librbd in another process) sees them."""
    out = tmp_path / ("%s.raw" % image)
    cluster.rbd("export", "--no-progress", "%s/%s" % (cluster.pool, image), str(out))
    data = out.read_bytes()
    out.unlink()
    return data


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    pytest.fail("timed out waiting for %s" % what)


def test_round_trip_checked_with_rbd_export(engine, ceph_cluster, rbd_image, tmp_path):
    e = engine
    assert e.bdev_rbd_create("r0", "rbd", rbd_image, block_size=4096,
                             config_file=ceph_cluster.conf) == "r0"
    (b,) = e.bdev_get_bdevs("r0")
    assert b["module"] == "rbd" and b["block_size"] == 4096 and b["num_blocks"] == 16384
    assert b["driver_specific"]["rbd"]["rbd_name"] == rbd_image
    assert b["supported_io_types"]["write"] and b["supported_io_types"]["unmap"]

    # The engine's own pattern check over 8 MiB at QD 16.
    res = e.run_workload("r0", rw="verify", io_size=4096, qd=16, num_blocks=2048)
    assert res["errors"] == 0 and res["verify_failures"] == 0 and res["ios"] >= 4096

    # Then data of our own past that range, scattered and multi-object.
    chunks = {9 * MiB: os.urandom(MiB), 20 * MiB - 4096: os.urandom(3 * 4096),
              63 * MiB: os.urandom(MiB)}
    for off, data in chunks.items():
        e.bdev_io("r0", "write", off, data=data)
    for off, data in chunks.items():
        assert e.bdev_io("r0", "read", off, len(data)) == data
    e.bdev_io("r0", "write_zeroes", 9 * MiB, 8192)
    e.bdev_io("r0", "unmap", 63 * MiB + 65536, 65536)
    e.bdev_io("r0", "flush")
    e.bdev_rbd_delete("r0")
    with pytest.raises(exception.NotFound):
        e.bdev_get_bdevs("r0")

    img = export(ceph_cluster, rbd_image, tmp_path)
    assert len(img) == 64 * MiB
    assert img[9 * MiB:9 * MiB + 8192] == bytes(8192)
    assert img[9 * MiB + 8192:10 * MiB] == chunks[9 * MiB][8192:]
    assert img[20 * MiB - 4096:20 * MiB + 8192] == chunks[20 * MiB - 4096]
    last = chunks[63 * MiB]
    assert img[63 * MiB:63 * MiB + 65536] == last[:65536]
    assert img[63 * MiB + 65536:63 * MiB + 131072] == bytes(65536)
    assert img[63 * MiB + 131072:] == last[131072:]


def test_config_without_conf_file_shares_one_connection(engine, ceph_cluster, rbd_image):
    """``config`` pairs (mon_host, key) alone reach the cluster; 512-byte blocks."""
    e = engine
    cfg = ceph_cluster.client_config()
    e.bdev_rbd_create("a", "rbd", rbd_image, block_size=512, config=cfg, user_id="admin")
    e.bdev_rbd_create("b", "rbd", rbd_image, block_size=512, config=cfg, user_id="admin",
                      read_only=True)
    try:
        data = os.urandom(4096 * 3)
        e.bdev_io("a", "write", 512 * 7, data=data)
        e.bdev_io("a", "flush")
        assert e.bdev_io("b", "read", 512 * 7, len(data)) == data
        (rb,) = e.bdev_get_bdevs("b")
        assert rb["supported_io_types"]["write"] is False
        assert rb["driver_specific"]["rbd"]["read_only"] is True
        with pytest.raises(exception.InvalidArgument):
            e.bdev_io("b", "write", 0, data=bytes(512))
    finally:
        e.bdev_rbd_delete("b")
        e.bdev_rbd_delete("a")


def test_registered_cluster(engine, ceph_cluster, rbd_image):
    e = engine
    e.bdev_rbd_register_cluster("c1", user_id="admin", config_file=ceph_cluster.conf,
                                key_file=ceph_cluster.keyring,
                                config_param={"rados_osd_op_timeout": "8"})
    with pytest.raises(exception.AlreadyExists):
        e.bdev_rbd_register_cluster("c1", config_file=ceph_cluster.conf)
    e.bdev_rbd_create("rc", "rbd", rbd_image, block_size=4096, cluster_name="c1")
    (info,) = e.bdev_rbd_get_clusters_info("c1")
    assert info == {"cluster_name": "c1", "user_id": "admin",
                    "config_file": ceph_cluster.conf, "key_file": ceph_cluster.keyring,
                    "config_param": {"rados_osd_op_timeout": "8"}, "bdevs": 1}
    assert e.bdev_rbd_get_clusters_info() == [info]
    with pytest.raises(exception.Busy):
        e.bdev_rbd_unregister_cluster("c1")
    data = os.urandom(8192)
    e.bdev_io("rc", "write", 0, data=data)
    assert e.bdev_io("rc", "read", 0, 8192) == data
    # cluster_name excludes per-bdev connection settings.
    with pytest.raises(exception.InvalidArgument):
        e.bdev_rbd_create("rx", "rbd", rbd_image, cluster_name="c1",
                          config_file=ceph_cluster.conf)
    e.bdev_rbd_delete("rc")
    e.bdev_rbd_unregister_cluster("c1")
    assert e.bdev_rbd_get_clusters_info() == []
    with pytest.raises(exception.NotFound):
        e.bdev_rbd_unregister_cluster("c1")
    with pytest.raises(exception.NotFound):
        e.bdev_rbd_create("rc", "rbd", rbd_image, cluster_name="c1")


def test_bad_requests_fail_clearly(engine, ceph_cluster, rbd_image):
    e = engine
    conf = ceph_cluster.conf
    with pytest.raises(exception.NotFound):
        e.bdev_rbd_create("x", "rbd", "no-such-image", config_file=conf)
    with pytest.raises(exception.NotFound):
        e.bdev_rbd_create("x", "no-such-pool", rbd_image, config_file=conf)
    for bs in (0, 1000, 1 << 20):
        with pytest.raises(exception.InvalidArgument):
            e.bdev_rbd_create("x", "rbd", rbd_image, block_size=bs, config_file=conf)
    with pytest.raises(exception.EngineError):
        e.bdev_rbd_create("x", "rbd", rbd_image, config_file="/nonexistent/ceph.conf")
    with pytest.raises(exception.InvalidArgument):
        e.bdev_rbd_create("x", "rbd", rbd_image, config_file=conf, uuid="not-a-uuid")
    e.bdev_malloc_create("taken", 8, 512)
    with pytest.raises(exception.AlreadyExists):
        e.bdev_rbd_create("taken", "rbd", rbd_image, config_file=conf)
    with pytest.raises(exception.NotFound):
        e.bdev_rbd_delete("taken")  # not an rbd bdev
    with pytest.raises(exception.NotFound):
        e.bdev_rbd_resize("nope", 128)
    assert [b["name"] for b in e.bdev_get_bdevs()] == ["taken"]
    e.bdev_malloc_delete("taken")


def test_resize_through_bdev_and_from_outside(engine, ceph_cluster, rbd_image):
    e = engine
    e.bdev_rbd_create("rz", "rbd", rbd_image, block_size=4096, config_file=ceph_cluster.conf)
    watch = e.bdev_watch("rz")
    try:
        e.bdev_rbd_resize("rz", 96)
        assert e.bdev_get_bdevs("rz")[0]["num_blocks"] == 96 * MiB // 4096
        wait_for(lambda: watch.events()["num_blocks"] == 96 * MiB // 4096, 10, "RESIZE")
        assert watch.events()["resize"] >= 1
        info = ceph_cluster.rbd("info", "--format", "json", "rbd/%s" % rbd_image)
        assert '"size":%d' % (96 * MiB) in info.replace(" ", "")
        # Data past the old end goes where it should.
        data = os.urandom(8192)
        e.bdev_io("rz", "write", 95 * MiB, data=data)
        assert e.bdev_io("rz", "read", 95 * MiB, 8192) == data
        with pytest.raises(exception.InvalidArgument):
            e.bdev_rbd_resize("rz", 32)  # shrinking would cut off guest data

        # Another client grows the image: the update watch notices.
        ceph_cluster.rbd("resize", "--no-progress", "--size", "128M", "rbd/%s" % rbd_image)
        wait_for(lambda: e.bdev_get_bdevs("rz")[0]["num_blocks"] == 128 * MiB // 4096, 15,
                 "the watched resize")
        wait_for(lambda: watch.events()["num_blocks"] == 128 * MiB // 4096, 10, "RESIZE")
        e.bdev_rbd_rescan("rz")  # no change: harmless
        assert e.bdev_get_bdevs("rz")[0]["num_blocks"] == 128 * MiB // 4096
    finally:
        watch.close()
        e.bdev_rbd_delete("rz")


def test_control_calls_whose_wait_gave_up(engine, ceph_cluster, rbd_image, monkeypatch):
    """A stalled app reactor: create, resize and rescan give up with their own code."""
    from spdk_backend._native import lib

    e = engine
    monkeypatch.setenv("SB_TEST_HOOKS", "1")
    assert lib.sb_test_set_call_timeout(200_000) == 0
    try:
        def gave_up(call, stall_us=1_500_000):
            assert lib.sb_test_stall_reactor(0, stall_us) == 0
            with pytest.raises(exception.EngineTimeout) as err:
                call()
            assert err.value.errno == lib.SB_EWAITER_GAVE_UP
            lib.sb_test_set_call_timeout(0)
            e.bdev_get_bdevs()  # the reactor ran everything queued
            lib.sb_test_set_call_timeout(200_000)

        # The image opened on this thread is handed over and registers late.
        gave_up(lambda: e.bdev_rbd_create("gu", "rbd", rbd_image, block_size=4096,
                                          config_file=ceph_cluster.conf),
                stall_us=5_000_000)  # longer than connecting and opening
        assert [b["name"] for b in e.bdev_get_bdevs()] == ["gu"]
        gave_up(lambda: e.bdev_rbd_resize("gu", 96))
        gave_up(lambda: e.bdev_rbd_rescan("gu"))
        lib.sb_test_set_call_timeout(0)
        e.bdev_rbd_resize("gu", 96)
        assert e.bdev_get_bdevs("gu")[0]["num_blocks"] == 96 * MiB // 4096
    finally:
        lib.sb_test_set_call_timeout(0)
        e.bdev_rbd_delete("gu")


def test_osd_stopped_mid_io_bounded_errors_then_recovery(engine, ceph_cluster, rbd_image):
    """Dead OSD: I/O fails within the librados timeouts, the engine lives, then recovers."""
    e = engine
    e.bdev_rbd_create("ro", "rbd", rbd_image, block_size=4096, config_file=ceph_cluster.conf)
    try:
        e.bdev_io("ro", "write", 0, data=os.urandom(MiB))
        e.bdev_io("ro", "flush")
        result = {}

        def load():
            result["res"] = e.run_workload("ro", rw="randrw", io_size=4096, qd=16,
                                           seconds=3 * ceph.OP_TIMEOUT)

        worker = threading.Thread(target=load)
        worker.start()
        try:
            time.sleep(1.5)
            ceph_cluster.stop_osd()
            t0 = time.monotonic()
            with pytest.raises(exception.EngineError) as err:
                e.bdev_io("ro", "read", 8 * MiB, 4096)
            took = time.monotonic() - t0
            assert err.value.errno in (errno.ETIMEDOUT, errno.EIO, errno.ENOTCONN), err.value
            # The I/O failed; the engine answered (not "did not answer in time").
            assert isinstance(err.value, exception.BdevIOError), repr(err.value)
            assert took < 3 * ceph.OP_TIMEOUT, took
            # The engine answers control calls while I/O hangs in librados.
            assert e.bdev_get_bdevs("ro")[0]["name"] == "ro"
            assert e.bdev_malloc_create("alive", 8, 512) == "alive"
            e.bdev_malloc_delete("alive")
        finally:
            ceph_cluster.start_osd()
            worker.join(6 * ceph.OP_TIMEOUT)
        assert not worker.is_alive()
        res = result["res"]
        assert res["errors"] > 0 and res["first_error"] in (-errno.ETIMEDOUT, -errno.EIO,
                                                          -errno.ENOTCONN)
        assert res["ios"] > res["errors"]  # it ran before the stop

        # Back: I/O works again on the same bdev, no re-create needed.
        data = os.urandom(65536)
        e.bdev_io("ro", "write", 4 * MiB, data=data)
        assert e.bdev_io("ro", "read", 4 * MiB, len(data)) == data
        res = e.run_workload("ro", rw="verify", io_size=4096, qd=16, offset_blocks=4096,
                             num_blocks=1024)
        assert res["errors"] == 0 and res["verify_failures"] == 0
    finally:
        e.bdev_rbd_delete("ro")


def test_two_reactors_share_an_image(engine_factory, ceph_cluster, rbd_image, tmp_path):
    """Completions go back to the submitting reactor on both reactors."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    e = engine_factory("[%d,%d]" % (cpus[0], cpus[1]), no_pin=True)
    e.bdev_rbd_create("r2", "rbd", rbd_image, block_size=4096, config_file=ceph_cluster.conf)
    try:
        res = e.run_workload("r2", rw="verify", io_size=8192, qd=8,
                             core_mask="[%d,%d]" % (cpus[0], cpus[1]), num_blocks=4096)
        assert res["errors"] == 0 and res["verify_failures"] == 0
        data = os.urandom(4096)
        e.bdev_io("r2", "write", 0, data=data, reactor=1)
        assert e.bdev_io("r2", "read", 0, 4096, reactor=0) == data
    finally:
        e.bdev_rbd_delete("r2")
