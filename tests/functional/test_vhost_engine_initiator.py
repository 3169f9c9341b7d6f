"""Our vhost-user-blk target driven by the C initiator (workload + hostile).

The initiator plays QEMU's part of the protocol; the same tool passes its
workload and verification against qemu-storage-daemon
(test_vhost_initiator_qsd.py), so a failure here is the engine's.

Hostile cases: after each one the engine must still be running, another
controller must have kept serving verified I/O meanwhile, the attacked
controller must serve a new, well-behaved front-end, the malformed input
must not have been accepted, and the engine must have logged why.
"""

import re
import subprocess
import time

import pytest

from tests.support import qemu_features
from tests.support.initiator import BackgroundInitiator, hostile_cases, run_initiator

pytestmark = pytest.mark.timeout(300)

MB = 1 << 20
DESCRIPTOR_CASES = ["desc-loop", "addr-outside", "len-cross-region",
                    "addr-overflow", "indirect-nested", "indirect-next",
                    "indirect-len", "chain-too-long", "head-oob",
                    "avail-jump"]
MESSAGE_CASES = ["truncated-header", "short-payload", "oversized-size",
                 "mem-table-fds", "kick-no-fd", "vring-num-0",
                 "vring-num-npot", "vring-num-big", "vring-index-oob",
                 "config-oversize", "config-offset", "unknown-request",
                 "mem-overlap"]
IO_CASES = ["write-readonly", "sector-oob"]
# The front-end truncates its guest RAM file under the engine's mapping.
MEMORY_CASES = ["shrink-data", "shrink-rings"]
# Packed virtqueues (virtio 1.2 §2.8): descriptors a driver may not write.
PACKED_CASES = ["packed-wrap", "packed-id-oob", "packed-chain-too-long",
                "packed-indirect-next", "packed-id-dup", "packed-addr-outside"]
PACKED_WHY = {
    "packed-wrap": "not made available (wrap counter)",
    "packed-id-oob": "buffer id out of range",
    "packed-chain-too-long": "descriptor chain longer than the ring",
    "packed-indirect-next": "indirect descriptor with NEXT set",
    "packed-id-dup": "made available twice while in flight",
    "packed-addr-outside": "descriptor buffer outside guest memory",
}


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """One engine: c0 (attacked), c1 (bystander), ro (read-only)."""
    from spdk_backend.engine import Engine

    sock_dir = tmp_path_factory.mktemp("vhost")
    eng = Engine(core_mask="0x1", vhost_socket_dir=str(sock_dir),
                 max_delay_us=1000)
    eng.start()
    try:
        for name in ("m0", "m1", "m2"):
            eng.bdev_malloc_create(name, 16 * MB // 512, 512)
        # packed_ring: c0 offers packed virtqueues too (the --packed cases).
        eng.vhost_create_blk_controller("c0", "m0", max_queues=4, packed_ring=True)
        eng.vhost_create_blk_controller("c1", "m1")
        eng.vhost_create_blk_controller("ro", "m2", readonly=True)
        yield eng, sock_dir
    finally:
        eng.stop()


def _sock(target, name):
    return target[1] / name


def _wait_disconnected(eng, name, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        (info,) = eng.vhost_get_controllers(name)
        if not info["connected"] or time.monotonic() > deadline:
            return info
        time.sleep(0.02)


@pytest.mark.parametrize("mode", [[], ["--interrupt"],
                                  ["--interrupt", "--event-idx"],
                                  ["--queues", "4", "--qd", "16"],
                                  ["--packed"], ["--packed", "--interrupt"],
                                  ["--packed", "--interrupt", "--event-idx"],
                                  ["--packed", "--queues", "4", "--qd", "16"]],
                         ids=["poll", "interrupt", "event-idx", "4-queues",
                              "packed-poll", "packed-interrupt",
                              "packed-event-idx", "packed-4-queues"])
def test_verify_randrw(target, initiator, mode):
    eng, _ = target
    res = run_initiator(initiator, _sock(target, "c0"), "--rw", "randrw",
                        "--verify", "--time", "1", "--size-limit", "8M",
                        "--json", *mode)
    assert res.rc == 0, res.stdout + res.stderr
    assert res.json["main"]["verified"] > 0
    assert res.json["readback"]["verified"] == 8 * MB // 4096
    # The initiator's data is in the bdev, where it put it.
    block = eng.bdev_io("m0", "read", offset=4096 * 100, length=512)
    assert int.from_bytes(block[8:16], "little") == 800  # sector number


@pytest.mark.parametrize("version", sorted(qemu_features.load()))
def test_like_qemu_negotiates_the_recording(target, initiator, version):
    """--like-qemu VERSION takes exactly what that QEMU took from our target
    under a real guest (tests/data/qemu_vhost_features.json), where this
    controller offers it, waits for calls and fills the inflight region;
    the target sees the same, and verified I/O goes through it."""
    eng, _ = target
    rec = qemu_features.load()[version]
    listed = subprocess.run([str(initiator), "--like-qemu", "list"], check=True,
                            capture_output=True, text=True).stdout
    assert "%s features %s protocol_features %s" % (
        version, hex(rec["features"]), hex(rec["protocol_features"])) in listed
    with BackgroundInitiator(initiator, _sock(target, "c1"), "--like-qemu", version,
                             "--rw", "randrw", "--verify", "--time", "1",
                             "--size-limit", "8M", "--qd", "8", "--json") as run:
        # While it runs: what the target says was negotiated.
        info = _wait_started(eng, "c1")
        rc = run.wait()
        res = run.result()
    assert rc == 0, run.describe()
    assert int(res["features"], 16) == info["features"]
    assert int(res["protocol_features"], 16) == info["protocol_features"]
    # Nothing beyond the recording; all of it that this target offers (the
    # recording's controller had a write cache, so FLUSH may be missing here).
    flush = 1 << 9
    assert info["features"] & ~rec["features"] == 0
    assert info["features"] | flush == rec["features"] | flush
    assert info["protocol_features"] == rec["protocol_features"]
    assert res["like_qemu"] == version
    assert res["interrupts"] and res["inflight"], res
    assert res["indirect"] == bool(rec["features"] & (1 << 28))
    assert res["main"]["calls"] > 0
    assert res["readback"]["verified"] == 8 * MB // 4096


def test_like_qemu_unknown_version(initiator, tmp_path):
    res = run_initiator(initiator, tmp_path / "none", "--like-qemu", "0.1")
    assert res.rc == 2 and "no recorded profile for QEMU 0.1" in res.stderr


def _wait_started(eng, name, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        (info,) = eng.vhost_get_controllers(name)
        if info["connected"] and all(q["started"] for q in info["queues"][:1]):
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.01)


def test_packed_only_where_offered(target, initiator):
    """packed_ring is SPDK's opt-in: c1 was created without it, so a driver
    that wants packed rings finds VIRTIO_F_RING_PACKED missing."""
    res = run_initiator(initiator, _sock(target, "c1"), "--packed", "--rw", "randread",
                        "--ios", "10")
    assert res.rc != 0 and "VIRTIO_F_RING_PACKED" in res.stderr, res.stderr
    res = run_initiator(initiator, _sock(target, "c0"), "--packed", "--rw", "randread",
                        "--ios", "10", "--json")
    assert res.rc == 0, res.stderr


def test_readonly_controller(target, initiator):
    res = run_initiator(initiator, _sock(target, "ro"), "--rw", "randwrite",
                        "--ios", "10")
    assert res.rc == 2 and "read-only" in res.stderr
    res = run_initiator(initiator, _sock(target, "ro"), "--rw", "randread",
                        "--ios", "1000", "--json")
    assert res.rc == 0, res.stderr


def test_case_lists_match(initiator):
    assert hostile_cases(initiator) == (DESCRIPTOR_CASES + MESSAGE_CASES
                                        + IO_CASES + MEMORY_CASES
                                        + PACKED_CASES)


def _judge(case, info):
    """What a target must have done with each hostile input."""
    name = case["case"]
    if name == "packed-id-dup":
        # The first buffer under the id was valid and may complete; the
        # second breaks the device, which serves nothing more.
        assert case["good_io_after"] != 0, case
    elif name in DESCRIPTOR_CASES or name in PACKED_CASES:
        # The bad request must not complete as OK, and the queue is broken
        # from then on (no more service until a new session); if the
        # device cut the session, it says so.
        assert case["io_status"] != 0, case
        assert case["good_io_after"] != 0, case
        if case["disconnected"]:
            assert info["broken"], info
    elif name == "truncated-header":
        assert case["disconnected"], case
    elif name == "config-offset":
        # Well-formed (the message holds header + size bytes) but a window
        # past the 256-byte config space, and offset + size wraps in 32
        # bits: refused with an empty reply (vhost-user's "failed"), and the
        # session goes on (test_vhost_frontends.py has the edge cases).
        assert case["reply"] == "reply of 0 bytes", case
        assert case["answering"] and not case["disconnected"], case
    elif name in MESSAGE_CASES:
        # Refused: a failure ack, or the connection cut - never success.
        assert case["reply"] != "reply u64 0", case
        assert case["disconnected"] or case["reply"].startswith("reply u64"), \
            case
    elif name == "sector-oob":
        assert case["io_status"] == 1, case          # VIRTIO_BLK_S_IOERR
        assert case["good_io_after"] == 0, case
    elif name == "write-readonly":
        assert case["io_status"] != 0, case
    elif name in MEMORY_CASES:
        # The fault did not kill the engine (this test goes on using it):
        # the front-end that broke the memory contract is cut off.
        assert case["disconnected"], case
        assert info["broken"], info


@pytest.mark.parametrize("name", DESCRIPTOR_CASES + MESSAGE_CASES + IO_CASES
                         + MEMORY_CASES + PACKED_CASES)
def test_hostile(target, initiator, name):
    eng, _ = target
    attacked = "ro" if name == "write-readonly" else "c0"
    eng.log_clear()
    # A bystander keeps doing verified I/O on another controller meanwhile.
    bystander = subprocess.Popen(
        [str(initiator), "--socket", str(_sock(target, "c1")), "--rw",
         "randrw", "--verify", "--size-limit", "1M", "--time", "3",
         "--interrupt", "--qd", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        res = run_initiator(initiator, _sock(target, attacked), "--hostile",
                            name, "--json", timeout=60)
        out, _ = bystander.communicate(timeout=60)
    finally:
        if bystander.poll() is None:
            bystander.kill()
            bystander.wait()
    assert res.rc == 0, res.stdout + res.stderr
    (case,) = res.json
    assert case["ran"], case
    info = _wait_disconnected(eng, attacked)
    assert not info["connected"], info
    log = eng.log_recent()
    _judge(case, info)
    assert bystander.returncode == 0, out

    # The engine says why it refused (the write on a read-only device and
    # the out-of-range reads are ordinary I/O errors).
    if name not in IO_CASES:
        why = [line for line in log.splitlines()
               if re.search(r" (ERROR|WARN) .*vhost (controller )?%s:"
                            % attacked, line)]
        assert why, log
    if name in MEMORY_CASES:
        assert "shrank a guest memory file" in log, log
    if name in PACKED_CASES:
        # The packed walker's own reason, not a generic failure.
        assert PACKED_WHY[name] in log, log

    # The attacked controller serves the next, well-behaved front-end.
    if name == "write-readonly":
        data = eng.bdev_io("m2", "read", offset=0, length=4096)
        assert data != b"\xa5" * 4096
        res = run_initiator(initiator, _sock(target, "ro"), "--rw",
                            "randread", "--ios", "500", "--interrupt")
    else:
        res = run_initiator(initiator, _sock(target, "c0"), "--verify",
                            "--size-limit", "1M", "--interrupt")
    assert res.rc == 0, res.stdout + res.stderr


def test_delete_right_after_the_front_end_leaves(target, initiator):
    """A front-end that has closed its socket is gone, not busy.

    Deleting the controller the moment its front-end exits must not depend
    on whether the engine's control thread has read the hang-up yet (a
    scripted detach, or the benchmarks, do exactly this).  A front-end that
    is still connected keeps the controller busy.
    """
    import socket

    from spdk_backend import exception

    eng, sock_dir = target
    eng.bdev_malloc_create("gone", 16 * MB // 512, 512)
    try:
        for _ in range(10):
            eng.vhost_create_blk_controller("gone", "gone")
            res = run_initiator(initiator, sock_dir / "gone", "--rw", "randread",
                                "--qd", "4", "--ios", "200", "--size-limit", "8M", "--json")
            assert res.rc == 0, res.stdout + res.stderr
            eng.vhost_delete_controller("gone")

        for _ in range(10):
            eng.vhost_create_blk_controller("gone", "gone")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(sock_dir / "gone"))
            deadline = time.monotonic() + 10
            while not eng.vhost_get_controllers("gone")[0]["connected"]:
                assert time.monotonic() < deadline, "the engine never accepted"
                time.sleep(0.01)
            with pytest.raises(exception.Busy):
                eng.vhost_delete_controller("gone")
            sock.close()
            eng.vhost_delete_controller("gone")
    finally:
        if any(c["ctrlr"] == "gone" for c in eng.vhost_get_controllers()):
            eng.vhost_delete_controller("gone", force=True)
        eng.bdev_malloc_delete("gone")
