"""Front-ends other than QEMU against the real engine (issue 15, part 3).

The C initiator's ``--frontend`` speaks the vhost-user message shapes of
SPDK's virtio-user, DPDK's virtio-user PMD and rust-vmm's ``vhost`` crate
(as cloud-hypervisor drives it): their message order, payload sizes and
header flags (see native/tools/vhost_initiator/frontends.c), with the same
verified virtio-blk workload as for QEMU.  The GET_CONFIG edge cases are
sent by hand: any window inside the 256-byte vhost-user config limit is
answered (bytes past ``struct virtio_blk_config`` read as zero), a window
past it is refused with an empty reply, and a message shorter than its
header + size, or a size over the limit, cuts that connection only.
"""

import socket
import struct
import time

import pytest

from tests.support.initiator import run_initiator

pytestmark = pytest.mark.timeout(300)

MB = 1 << 20
GET_FEATURES, GET_CONFIG = 1, 24
CONFIG_HDR, CONFIG_MAX = 12, 256
BLK_CONFIG_SIZE = 60  # struct virtio_blk_config up to write_zeroes_may_unmap + pad

FRONTENDS = {
    "qemu": [],
    "spdk": ["--frontend", "spdk"],
    "dpdk": ["--frontend", "dpdk"],            # 2 queues: rings enabled in pairs
    "rust-vmm": ["--frontend", "rust-vmm"],
}


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """One engine: c0 for the workloads, cfg for hand-made GET_CONFIGs."""
    from spdk_backend.engine import Engine

    sock_dir = tmp_path_factory.mktemp("vhost")
    eng = Engine(core_mask="0x1", vhost_socket_dir=str(sock_dir),
                 max_delay_us=1000)
    eng.start()
    try:
        eng.bdev_malloc_create("m0", 16 * MB // 512, 512)
        eng.bdev_malloc_create("m1", 16 * MB // 4096, 4096)
        eng.vhost_create_blk_controller("c0", "m0", max_queues=4)
        eng.vhost_create_blk_controller("cfg", "m1", max_queues=2)
        yield eng, sock_dir
    finally:
        eng.stop()


def _wait_disconnected(eng, name, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        (info,) = eng.vhost_get_controllers(name)
        if not info["connected"] or time.monotonic() > deadline:
            return info
        time.sleep(0.02)


def _refusals(eng, name):
    return [line for line in eng.log_recent().splitlines()
            if " ERROR " in line and "vhost %s:" % name in line]


# ---- each front-end's shapes, with verified I/O ----

@pytest.mark.parametrize("queues", [1, 4], ids=["1-queue", "4-queues"])
@pytest.mark.parametrize("frontend", list(FRONTENDS))
def test_frontend_verify(target, initiator, frontend, queues):
    eng, sock_dir = target
    if frontend == "dpdk" and queues == 1:
        queues = 2  # DPDK enables rings in pairs
    eng.log_clear()
    res = run_initiator(initiator, sock_dir / "c0", *FRONTENDS[frontend],
                        "--queues", queues, "--qd", "8", "--rw", "randrw",
                        "--verify", "--time", "1", "--size-limit", "8M",
                        "--json", "-v")
    assert res.rc == 0, res.stdout + res.stderr
    assert "connected as %s" % frontend in res.stderr, res.stderr
    assert res.json["main"]["verified"] > 0, res.json
    assert res.json["readback"]["verified"] == 8 * MB // 4096, res.json
    # The initiator's data is in the bdev, where it put it.
    block = eng.bdev_io("m0", "read", offset=4096 * 100, length=512)
    assert int.from_bytes(block[8:16], "little") == 800  # sector number
    # Nothing it sent was refused, and its stop sequence ended the session.
    assert _refusals(eng, "c0") == [], eng.log_recent()
    assert not _wait_disconnected(eng, "c0")["connected"]


@pytest.mark.parametrize("writer,reader", [("spdk", "rust-vmm"),
                                           ("rust-vmm", "dpdk"),
                                           ("dpdk", "qemu")])
def test_written_by_one_read_by_another(target, initiator, writer, reader):
    """What one front-end wrote, the next (another shape, another memory
    layout) reads back: sessions leave nothing of one shape behind."""
    _, sock_dir = target
    common = ["--bs", "4096", "--size-limit", "4M", "--seed", "1515",
              "--queues", "2", "--json"]
    res = run_initiator(initiator, sock_dir / "c0", *FRONTENDS[writer],
                        "--verify", "--rw", "randwrite", "--time", "0.5",
                        *common)
    assert res.rc == 0, res.stdout + res.stderr
    res = run_initiator(initiator, sock_dir / "c0", *FRONTENDS[reader],
                        "--verify-read", *common)
    assert res.rc == 0, res.stdout + res.stderr
    assert res.json["readback"]["verified"] == 4 * MB // 4096, res.json


# ---- GET_CONFIG by hand ----

class _Raw:
    """A bare connection: vhost-user messages with any size field."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(3)
        self.sock.connect(str(path))

    def send(self, req, payload, size=None, flags=0x1):
        size = len(payload) if size is None else size
        self.sock.sendall(struct.pack("<III", req, flags, size) + payload)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionResetError("the engine closed the connection")
            buf += chunk
        return buf

    def reply(self, req):
        rid, flags, size = struct.unpack("<III", self._exact(12))
        assert (rid, flags) == (req, 0x5)
        return self._exact(size)

    def get_config(self, offset, size, msg_size=None, flags=0):
        """GET_CONFIG for (offset, size) in a message of msg_size payload
        bytes (header + size unless given); the reply's payload."""
        msg_size = CONFIG_HDR + size if msg_size is None else msg_size
        payload = struct.pack("<III", offset, size, flags)
        payload += bytes(max(0, msg_size - CONFIG_HDR))
        self.send(GET_CONFIG, payload[:msg_size])
        return self.reply(GET_CONFIG)

    def alive(self):
        self.send(GET_FEATURES, b"")
        return len(self.reply(GET_FEATURES)) == 8

    def closed_by_peer(self):
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


@pytest.fixture
def raw(target):
    eng, sock_dir = target
    _wait_disconnected(eng, "cfg")
    eng.log_clear()
    conn = _Raw(sock_dir / "cfg")
    yield conn
    conn.close()
    assert not _wait_disconnected(eng, "cfg")["connected"]


def _image(raw):
    rep = raw.get_config(0, CONFIG_MAX)
    assert len(rep) == CONFIG_HDR + CONFIG_MAX
    assert struct.unpack("<III", rep[:12]) == (0, CONFIG_MAX, 0)
    return rep[CONFIG_HDR:]


def test_get_config_whole_space(raw):
    """SPDK's shape: all 256 bytes, zero past struct virtio_blk_config."""
    img = _image(raw)
    capacity, = struct.unpack_from("<Q", img, 0)
    blk_size, = struct.unpack_from("<I", img, 20)
    num_queues, = struct.unpack_from("<H", img, 34)
    assert (capacity, blk_size, num_queues) == (16 * MB // 512, 4096, 2)
    assert img[BLK_CONFIG_SIZE:] == bytes(CONFIG_MAX - BLK_CONFIG_SIZE)
    assert raw.alive()


@pytest.mark.parametrize("offset,size", [(0, 60), (20, 4), (34, 2),
                                         (56, 8), (60, 196), (100, 156),
                                         (255, 1), (256, 0), (0, 0)])
def test_get_config_windows(raw, offset, size):
    """Any window inside the 256 bytes, answered as long as it was asked."""
    img = _image(raw)
    rep = raw.get_config(offset, size, flags=1)   # rust-vmm's WRITABLE flag
    assert len(rep) == CONFIG_HDR + size
    assert struct.unpack("<III", rep[:12]) == (offset, size, 1)
    assert rep[CONFIG_HDR:] == img[offset:offset + size]
    assert raw.alive()


def test_get_config_longer_message(raw):
    """A message longer than header + size (SPDK sends its whole struct)
    is taken; the reply is as long as the message, zero past the window."""
    img = _image(raw)
    rep = raw.get_config(20, 8, msg_size=CONFIG_HDR + CONFIG_MAX)
    assert len(rep) == CONFIG_HDR + CONFIG_MAX
    assert struct.unpack("<III", rep[:12]) == (20, 8, 0)
    assert rep[CONFIG_HDR:CONFIG_HDR + 8] == img[20:28]
    assert rep[CONFIG_HDR + 8:] == bytes(CONFIG_MAX - 8)
    assert raw.alive()


@pytest.mark.parametrize("offset,size", [(200, 57), (1, 256), (257, 0),
                                         (0xfffffff0, 57), (0xffffffff, 1)],
                         ids=["end-257", "1+256", "offset-257", "wraps",
                              "offset-max"])
def test_get_config_past_the_limit(target, raw, offset, size):
    """Past the 256 bytes: an empty reply ("failed"), the session lives."""
    eng, _ = target
    rep = raw.get_config(offset, size, msg_size=CONFIG_HDR + CONFIG_MAX)
    assert rep == b""
    assert raw.alive()
    assert any("outside config space" in line for line in _refusals(eng, "cfg"))


@pytest.mark.parametrize("size,msg_size,why", [
    (60, CONFIG_HDR + 59, "shorter than its size field"),
    (256, CONFIG_HDR + 255, "shorter than its size field"),
    (4, 8, "bad config message size"),
    (4, CONFIG_HDR + CONFIG_MAX + 4, "bad config message size"),
    (257, CONFIG_HDR + CONFIG_MAX, "config size too large"),
    (4096, CONFIG_HDR + CONFIG_MAX, "config size too large"),
])
def test_get_config_malformed(target, initiator, raw, size, msg_size, why):
    """A size field the message does not hold, or over the limit: that
    connection is cut, the engine lives and serves the next front-end."""
    eng, sock_dir = target
    payload = struct.pack("<III", 0, size, 0) + bytes(msg_size)
    raw.send(GET_CONFIG, payload[:msg_size])
    assert raw.closed_by_peer()
    assert any(why in line for line in _refusals(eng, "cfg")), eng.log_recent()
    assert not _wait_disconnected(eng, "cfg")["connected"]
    res = run_initiator(initiator, sock_dir / "cfg", "--frontend", "spdk",
                        "--verify", "--size-limit", "1M", "--queues", "2")
    assert res.rc == 0, res.stdout + res.stderr
