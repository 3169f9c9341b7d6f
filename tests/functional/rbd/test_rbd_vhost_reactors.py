"""An rbd bdev served by a vhost controller whose queues run on reactor 1
of an engine on cores 0 and 1 (the real Ceph cluster of this folder's
conftest; tests/functional/test_vhost_reactors.py has the rest)."""

import os
import time

import pytest

from tests.support.initiator import BackgroundInitiator

pytestmark = pytest.mark.timeout(180)


def _busy(eng, poller):
    return {r["lcore"]: sum(p["busy_count"] for p in r["pollers"] if p["name"] == poller)
            for r in eng.reactors()}


def test_rbd_bdev_served_from_reactor_1(engine_factory, ceph_cluster, rbd_image, native_tools,
                                        tmp_path):
    if not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("needs CPUs 0 and 1")
    eng = engine_factory("0x3", no_pin=True)
    eng.bdev_rbd_create("rv", "rbd", rbd_image, block_size=512, config_file=ceph_cluster.conf)
    try:
        eng.vhost_create_blk_controller("rv1", "rv", cpumask="0x2", max_queues=2)
        (info,) = eng.vhost_get_controllers("rv1")
        assert info["reactor_core"] == 1
        assert [q["reactor_core"] for q in info["queues"]] == [1, 1], info
        before = _busy(eng, "rbd")
        with BackgroundInitiator(native_tools / "vhost_initiator", info["socket"], "--rw",
                                 "randrw", "--verify", "--queues", "2", "--qd", "8",
                                 "--time", "2", "--size-limit", "8M", "--io-timeout", "30",
                                 "--json") as ini:
            deadline = time.monotonic() + 30
            while eng.vhost_get_controllers("rv1")[0]["completed_ios"] < 2048 \
                    and ini.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            vhost = _busy(eng, "vhost_rv1")
            assert ini.wait(90) == 0, ini.describe()
        after = _busy(eng, "rbd")
        res = ini.result()
        assert res["errors"] == 0 and res["verify_mismatches"] == 0 and not res["fatal"], res
        assert res["main"]["verified"] > 0 and res["readback"]["verified"] == res["blocks"]
        # Reactor 1 polled the queues and librbd's completions; reactor 0 neither.
        assert vhost[1] > 0 and vhost[0] == 0, vhost
        assert after[1] > before[1] and after[0] == before[0], (before, after)
        eng.vhost_delete_controller("rv1")
        # librbd in another process reads what the guest wrote: sector n carries n.
        out = tmp_path / "rv.raw"
        ceph_cluster.rbd("export", "--no-progress", "%s/%s" % (ceph_cluster.pool, rbd_image),
                         str(out))
        with open(out, "rb") as f:
            f.seek(4096 * 100)
            assert int.from_bytes(f.read(512)[8:16], "little") == 800
    finally:
        if eng.vhost_get_controllers():
            eng.vhost_delete_controller("rv1", force=True)
        eng.bdev_rbd_delete("rv")
