"""vhost-user-blk paths no other test walks (issue 15, part 6), against the
real engine in this process.

* virtio-blk request types the engine does not implement are answered
  VIRTIO_BLK_S_UNSUPP (status only, nothing reaches the bdev), and so are
  DISCARD / WRITE_ZEROES that the driver did not negotiate;
* GET_ID answers the serial given at controller creation (20 bytes, not
  NUL-terminated when it is that long; the bdev name by default);
* VIRTIO_BLK_F_FLUSH is offered only by a bdev with a volatile cache: a
  uring bdev offers it and its FLUSH reaches the bdev, a null bdev does not
  (a guest then says "write through") and a FLUSH sent anyway completes
  without reaching it;
* RESET_OWNER and RESET_DEVICE stop the rings, forget the negotiation and
  a broken mark, and the same connection can start again;
* SET_VRING_ERR is acknowledged, its fd not kept, the ring unaffected; a
  queue index out of range cuts the connection only;
* interrupt coalescing (vhost_controller_set_coalescing) with the C
  initiator waiting on its call eventfd (--interrupt): QD 32 gets far fewer
  calls than without coalescing, QD 1 gets a (delayed) call for every
  completion, and no request ever waits for a call that does not come.

The guest side of FLUSH and GET_ID (Linux's write_cache and serial):
tests/e2e/test_vhost_guest.py.
"""

import os
import struct

import pytest

from spdk_backend import exception
from tests.support import vhost_frontend as vf
from tests.support.initiator import run_initiator

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20
VIRTIO_BLK_S_OK, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP = 0, 1, 2
VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID = 4, 8
VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES = 11, 13
VIRTIO_BLK_F_FLUSH = 1 << 9
RESET_OWNER, SET_VRING_ERR, RESET_DEVICE = 4, 14, 34
PROTOCOL_F_RESET_DEVICE = 1 << 13
VRING_NOFD = 1 << 8


@pytest.fixture
def eng(engine_factory):
    return engine_factory("0x1", no_pin=True)


def _ctrlr(eng, name):
    (info,) = eng.vhost_get_controllers(name)
    return info


def _iostat(eng, bdev):
    (st,) = eng.bdev_get_iostat(bdev)["bdevs"]
    return st


def _ops(st):
    return {k: st[k] for k in ("num_read_ops", "num_write_ops", "num_unmap_ops",
                               "num_write_zeroes_ops", "num_flush_ops")}


def _last_used_len(fe):
    """The length the device put in the used element it returned last."""
    slot = (fe.used_seen - 1) % vf.QSIZE
    _, length = struct.unpack_from("<II", fe.ram, vf.USED + 4 + 8 * slot)
    return length


def _frontend(eng, ctrlr):
    fe = vf.Frontend(_ctrlr(eng, ctrlr)["socket"], gpa=0, size=MB, timeout=5.0)
    fe.connect()
    return fe


def _ack(fe, req, payload=b"", fds=()):
    """Send `req` with NEED_REPLY; the device's u64 answer (0 = done)."""
    fe._send(req, payload, fds, flags=0x1 | vf.NEED_REPLY)
    (rc,) = struct.unpack("<Q", fe._reply(req))
    return rc


def _read_works(fe, sector=16, keeps_data=True):
    fe.fill(vf.DATA, b"\x5a" * 512)
    assert fe.request(vf.VIRTIO_BLK_T_OUT, sector, fe.gpa + vf.DATA, 512) == VIRTIO_BLK_S_OK
    fe.fill(vf.DATA + 0x1000, bytes(512))
    assert fe.request(vf.VIRTIO_BLK_T_IN, sector, fe.gpa + vf.DATA + 0x1000,
                      512) == VIRTIO_BLK_S_OK
    if keeps_data:  # not a null bdev
        assert fe.read(vf.DATA + 0x1000, 512) == b"\x5a" * 512


# ---------------------------------------------------------------------------
# Request types
# ---------------------------------------------------------------------------

# Legacy SCSI_CMD (2), SCSI_CMD_OUT (3), GET_LIFETIME (10), SECURE_ERASE (14),
# ZONE_APPEND (15), ZONE_REPORT (16), types nobody defined.
UNKNOWN_TYPES = (2, 3, 5, 10, 14, 15, 16, 0x7fffffff, 0xffffffff)


def test_unknown_request_types_get_unsupp(eng):
    eng.bdev_malloc_create("m0", 4 * MB // 512, 512)
    eng.vhost_create_blk_controller("c0", "m0")
    fe = _frontend(eng, "c0")
    try:
        for rtype in UNKNOWN_TYPES:
            for writable in (False, True):
                status = fe.request(rtype, 0, fe.gpa + vf.DATA, 512, writable=writable)
                assert status == VIRTIO_BLK_S_UNSUPP, (rtype, writable, status)
                # Only the status byte was written.
                assert _last_used_len(fe) == 1, rtype
        # Not negotiated (this front-end takes only VERSION_1 and
        # PROTOCOL_FEATURES): the same answer.
        fe.fill(vf.DATA, struct.pack("<QII", 0, 8, 0))
        for rtype in (VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES):
            assert fe.request(rtype, 0, fe.gpa + vf.DATA, 16) == VIRTIO_BLK_S_UNSUPP, rtype
        # Nothing reached the bdev, the device is not broken and serves on.
        assert set(_ops(_iostat(eng, "m0")).values()) == {0}
        assert not _ctrlr(eng, "c0")["broken"]
        _read_works(fe)
    finally:
        fe.release()


# ---------------------------------------------------------------------------
# GET_ID
# ---------------------------------------------------------------------------

def _get_id(fe, length=20):
    fe.fill(vf.DATA, b"\xee" * length)
    status = fe.request(VIRTIO_BLK_T_GET_ID, 0, fe.gpa + vf.DATA, length, writable=True)
    return status, _last_used_len(fe), fe.read(vf.DATA, length)


def test_get_id_answers_the_serial_of_the_controller(eng):
    eng.bdev_malloc_create("m0", 4 * MB // 512, 512)
    eng.bdev_malloc_create("m1", 4 * MB // 512, 512)
    eng.bdev_malloc_create("bdev-name", 4 * MB // 512, 512)
    full = "SB-SERIAL-0123456789"          # 20 bytes: the whole field, no NUL
    assert len(full) == 20
    eng.vhost_create_blk_controller("c0", "m0", serial=full)
    eng.vhost_create_blk_controller("c1", "m1", serial="vol-7")
    eng.vhost_create_blk_controller("c2", "bdev-name")
    want = {"c0": full.encode(), "c1": b"vol-7" + bytes(15),
            "c2": b"bdev-name" + bytes(11)}
    for ctrlr, ident in want.items():
        fe = _frontend(eng, ctrlr)
        try:
            # 20 bytes (VIRTIO_BLK_ID_BYTES) plus the status byte.
            assert _get_id(fe) == (VIRTIO_BLK_S_OK, 21, ident), ctrlr
            # A larger buffer gets the 20 bytes and nothing more.
            status, used, data = _get_id(fe, 512)
            assert (status, used, data[:20]) == (VIRTIO_BLK_S_OK, 21, ident), ctrlr
            assert data[20:] == b"\xee" * 492, ctrlr
        finally:
            fe.release()
    for bdev in ("m0", "m1", "bdev-name"):
        assert _ops(_iostat(eng, bdev))["num_read_ops"] == 0


# ---------------------------------------------------------------------------
# FLUSH and the volatile cache
# ---------------------------------------------------------------------------

def test_flush_offered_only_with_a_volatile_cache(eng, tmp_path):
    img = tmp_path / "u0.img"
    with open(img, "wb") as f:
        f.truncate(4 * MB)
    eng.bdev_uring_create("u0", str(img))
    eng.bdev_null_create("n0", 4 * MB // 512, 512)
    eng.vhost_create_blk_controller("cu", "u0")
    eng.vhost_create_blk_controller("cn", "n0")
    assert eng.bdev_get_bdevs("u0")[0]["supported_io_types"]["flush"] is True
    assert eng.bdev_get_bdevs("n0")[0]["supported_io_types"]["flush"] is False

    for ctrlr, bdev, cache in (("cu", "u0", True), ("cn", "n0", False)):
        fe = _frontend(eng, ctrlr)
        try:
            offered = fe._get_u64(vf.GET_FEATURES)
            assert bool(offered & VIRTIO_BLK_F_FLUSH) is cache, (ctrlr, hex(offered))
            before = _iostat(eng, bdev)["num_flush_ops"]
            for _ in range(3):
                assert fe.request(VIRTIO_BLK_T_FLUSH, 0, fe.gpa + vf.DATA, 0) \
                    == VIRTIO_BLK_S_OK, ctrlr
            # One bdev flush per FLUSH where there is a cache; none where
            # there is nothing to flush (a driver that sends one anyway).
            assert _iostat(eng, bdev)["num_flush_ops"] - before == (3 if cache else 0)
            _read_works(fe, keeps_data=cache)
        finally:
            fe.release()


# ---------------------------------------------------------------------------
# RESET_OWNER / RESET_DEVICE
# ---------------------------------------------------------------------------

def _start_again(fe):
    """What QEMU does after a reset, on the same connection: clean rings,
    features, memory table, ring 0 started (Frontend.connect's sequence)."""
    fe.ram[vf.AVAIL:vf.HDR] = bytes(vf.HDR - vf.AVAIL)   # avail and used rings
    fe.avail_idx = fe.used_seen = 0
    sock = fe.sock
    fe.open_socket = lambda: sock
    try:
        fe.connect()
    finally:
        del fe.open_socket


@pytest.mark.parametrize("req", [RESET_OWNER, RESET_DEVICE], ids=["RESET_OWNER", "RESET_DEVICE"])
def test_reset_stops_rings_and_the_session_starts_again(eng, req):
    eng.bdev_malloc_create("m0", 4 * MB // 512, 512)
    eng.vhost_create_blk_controller("c0", "m0", max_queues=1)
    fe = _frontend(eng, "c0")
    try:
        assert fe._get_u64(vf.GET_PROTOCOL_FEATURES) & PROTOCOL_F_RESET_DEVICE
        _read_works(fe, sector=8)
        info = _ctrlr(eng, "c0")
        assert info["sessions"][0]["started"] and info["features"] != 0, info
        # A descriptor outside guest memory: the device is marked broken.
        assert fe.request(vf.VIRTIO_BLK_T_IN, 0, fe.gpa + 4 * MB, 512, wait=1.0) is None
        assert _ctrlr(eng, "c0")["broken"]

        assert _ack(fe, req) == 0
        info = _ctrlr(eng, "c0")
        assert info["connected"], info
        assert not info["broken"], info          # the reset forgot it
        assert not info["sessions"][0]["started"], info
        assert info["features"] == 0, info       # negotiation forgotten
        # Rings stopped: a request made now is not served.
        fe.fill(vf.DATA + 0x1000, bytes(512))
        assert fe.request(vf.VIRTIO_BLK_T_IN, 8, fe.gpa + vf.DATA + 0x1000, 512,
                          wait=0.5) is None

        # The same connection negotiates and starts again; the data is there.
        _start_again(fe)
        assert _ctrlr(eng, "c0")["sessions"][0]["started"]
        fe.fill(vf.DATA + 0x1000, bytes(512))
        assert fe.request(vf.VIRTIO_BLK_T_IN, 8, fe.gpa + vf.DATA + 0x1000, 512) == 0
        assert fe.read(vf.DATA + 0x1000, 512) == b"\x5a" * 512
        _read_works(fe, sector=24)
        assert not _ctrlr(eng, "c0")["broken"]
    finally:
        fe.release()


# ---------------------------------------------------------------------------
# SET_VRING_ERR
# ---------------------------------------------------------------------------

def _eventfds():
    """Eventfds open in this process (the engine runs in it)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + fd) == "anon_inode:[eventfd]":
                n += 1
        except OSError:
            pass
    return n


def test_set_vring_err_is_acked_and_its_fd_not_kept(eng):
    eng.bdev_malloc_create("m0", 4 * MB // 512, 512)
    eng.vhost_create_blk_controller("c0", "m0", max_queues=2)
    fe = _frontend(eng, "c0")
    try:
        before = _eventfds()
        for i in range(32):
            err = os.eventfd(0, os.EFD_CLOEXEC)
            try:
                # Queue 0 (started) and 1 (never set up): both accepted.
                assert _ack(fe, SET_VRING_ERR, struct.pack("<Q", i % 2), fds=[err]) == 0
            finally:
                os.close(err)
        # 32 fds received, none kept (a leak would show 32 more).
        assert _eventfds() == before
        # Without an fd (VHOST_USER_VRING_NOFD_MASK).
        assert _ack(fe, SET_VRING_ERR, struct.pack("<Q", VRING_NOFD)) == 0
        # The ring goes on as before.
        assert _ctrlr(eng, "c0")["sessions"][0]["started"]
        _read_works(fe)

        # A queue index past max_queues: a malformed message, the connection is cut.
        err = os.eventfd(0, os.EFD_CLOEXEC)
        try:
            fe._send(SET_VRING_ERR, struct.pack("<Q", 2), fds=[err],
                     flags=0x1 | vf.NEED_REPLY)
        finally:
            os.close(err)
        with pytest.raises(ConnectionResetError):
            fe._reply(SET_VRING_ERR)
    finally:
        fe.release()
    # The controller takes the next front-end.
    fe = _frontend(eng, "c0")
    try:
        _read_works(fe)
        assert not _ctrlr(eng, "c0")["broken"]
    finally:
        fe.release()


# ---------------------------------------------------------------------------
# Interrupt coalescing
# ---------------------------------------------------------------------------

DELAY_US = 1000
IOPS_THRESHOLD = 1000


def _interrupt_run(native_tools, sock, qd, seconds):
    res = run_initiator(native_tools / "vhost_initiator", sock, "--rw", "randrw",
                        "--qd", qd, "--time", seconds, "--interrupt", "--io-timeout", "5",
                        "--size-limit", "8M", "--json", timeout=60)
    assert res.rc == 0, res.stdout + res.stderr
    main = res.json["main"]
    print("qd %d: %s" % (qd, main))
    assert main["errors"] == 0 and main["ios"] > 0, main
    # Never did a request wait 100 ms for a call that did not come (a
    # guest would have waited for ever).
    assert main["call_timeouts"] == 0, main
    return main


def test_interrupt_coalescing(eng, native_tools):
    eng.bdev_malloc_create("m0", 16 * MB // 512, 512)
    eng.vhost_create_blk_controller("c0", "m0")
    sock = _ctrlr(eng, "c0")["socket"]
    with pytest.raises(exception.NotFound):
        eng.vhost_controller_set_coalescing("nope", DELAY_US, IOPS_THRESHOLD)

    # Without coalescing: one call per poll that completed something.
    plain = _interrupt_run(native_tools, sock, 32, 2)

    eng.vhost_controller_set_coalescing("c0", DELAY_US, IOPS_THRESHOLD)
    info = _ctrlr(eng, "c0")
    assert (info["delay_base_us"], info["iops_threshold"]) == (DELAY_US, IOPS_THRESHOLD)
    qd32 = _interrupt_run(native_tools, sock, 32, 2)
    assert qd32["calls"] < qd32["ios"], qd32
    # After the first 100 ms window (not coalesced: no rate measured yet)
    # at most one call per DELAY_US: far fewer calls per second.
    assert qd32["calls"] / qd32["seconds"] * 4 < plain["calls"] / plain["seconds"], \
        (plain, qd32)

    # QD 1 (the rate stays above the threshold, so calls stay delayed):
    # every completion still gets its call, one per request at most.
    qd1 = _interrupt_run(native_tools, sock, 1, 1)
    assert 0 < qd1["calls"] <= qd1["ios"], qd1
    # Some completion waited for a delayed call: coalescing was on.
    assert qd1["max_us"] >= 0.9 * DELAY_US, qd1

    eng.vhost_controller_set_coalescing("c0", 0, 0)
    assert _ctrlr(eng, "c0")["delay_base_us"] == 0


def test_flush_acked_by_a_guest_of_an_earlier_agent_is_accepted(eng):
    """A guest that acked FLUSH when every bdev offered it sends it back on a
    reconnect (QEMU does not ask again): SET_FEATURES takes it on a bdev
    without a cache, and FLUSH requests are answered; another bit the
    controller does not offer is still refused."""
    eng.bdev_null_create("n1", 4 * MB // 512, 512)
    eng.vhost_create_blk_controller("cn1", "n1")
    fe = vf.Frontend(_ctrlr(eng, "cn1")["socket"], gpa=0, size=MB, timeout=5.0)
    try:
        fe.open_socket()
        offered = fe._get_u64(vf.GET_FEATURES)
        assert not offered & VIRTIO_BLK_F_FLUSH
        fe._get_u64(vf.GET_PROTOCOL_FEATURES)
        fe._send(vf.SET_PROTOCOL_FEATURES, struct.pack("<Q", vf.PROTOCOL_F_REPLY_ACK))
        acked = vf.F_VERSION_1 | vf.F_PROTOCOL_FEATURES | VIRTIO_BLK_F_FLUSH
        assert _ack(fe, vf.SET_FEATURES, struct.pack("<Q", acked)) == 0
        assert _ctrlr(eng, "cn1")["features"] & VIRTIO_BLK_F_FLUSH
        assert _ack(fe, vf.SET_FEATURES, struct.pack("<Q", acked | (1 << 40))) != 0
    finally:
        fe.sock.close()
