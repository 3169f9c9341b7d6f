"""A minimal vhost-user-blk front-end in Python, for isolation tests.

The C initiator (native/tools/vhost_initiator) covers workloads and a fixed
list of hostile cases; isolation tests need descriptors built by hand (an
address that is valid in another controller's guest memory, an address of
the backend's own memory), so this front-end does the QEMU part of the
protocol (vhost-user.rst) with guest RAM in a memfd at a chosen guest
physical address, one split ring, and lets the test write any descriptor.

    fe = Frontend(sock_path, gpa=0x0, size=1 << 20)
    fe.connect()          # negotiation, memory table, ring 0 started
    fe.connect(log=True)  # the same with dirty logging on (a migration)
    status = fe.request(VIRTIO_BLK_T_IN, sector=0, data_gpa=..., length=512)
    fe.close()

``request`` returns the status byte, or None when the device did not
complete the request within the timeout (a refused chain breaks the
device: the request never completes).
"""

import ctypes
import mmap
import os
import select
import socket
import struct
import time

GET_FEATURES, SET_FEATURES, SET_OWNER, SET_MEM_TABLE = 1, 2, 3, 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL = 12, 13
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, SET_VRING_ENABLE = 15, 16, 18
SET_LOG_BASE = 6

F_LOG_ALL = 1 << 26
PROTOCOL_F_LOG_SHMFD = 1 << 1
VRING_F_LOG = 1
LOG_PAGE = 4096

F_PROTOCOL_FEATURES = 1 << 30
F_VERSION_1 = 1 << 32
PROTOCOL_F_REPLY_ACK = 1 << 3
NEED_REPLY = 1 << 3

VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT = 0, 1
DESC_F_NEXT, DESC_F_WRITE = 1, 2

QSIZE = 64
# Layout of guest RAM (offsets from the region start).
DESC, AVAIL, USED, HDR, STATUS, DATA = 0x0, 0x1000, 0x2000, 0x3000, 0x3100, 0x4000
UVA_BASE = 0x7f1000000000  # what we claim as our virtual address of RAM


class ProtocolError(Exception):
    pass


def _u16(buf, offset):
    """An aligned 16-bit cell of the ring: loads and stores are one
    instruction, so the device never sees half of an index update (a
    two-byte copy could be torn, e.g. 255 -> 256 read as 511)."""
    return ctypes.c_uint16.from_buffer(buf, offset)


class Frontend:
    def __init__(self, path, gpa=0, size=1 << 20, timeout=5.0):
        self.path = str(path)
        self.gpa = gpa
        self.size = size
        self.uva = UVA_BASE + gpa
        self.timeout = timeout
        self.sock = None
        self.log = None
        self.logfd = None
        self.memfd = os.memfd_create("sb-fe-ram", os.MFD_CLOEXEC)
        os.ftruncate(self.memfd, size)
        self.ram = mmap.mmap(self.memfd, size)
        self.kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.call = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.avail_idx = 0
        self.used_seen = 0
        self._avail_idx = _u16(self.ram, AVAIL + 2)
        self._used_idx = _u16(self.ram, USED + 2)

    # ---- wire ----

    def _send(self, req, payload=b"", fds=(), flags=0x1):
        data = struct.pack("<III", req, flags, len(payload)) + payload
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.sendall(data)

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionResetError("device closed the connection")
            buf += chunk
        return buf

    def _reply(self, req):
        req_id, flags, size = struct.unpack("<III", self._recv_exact(12))
        payload = self._recv_exact(size)
        if req_id != req or flags != 0x5:
            raise ProtocolError("reply %d flags %#x to request %d" % (req_id, flags, req))
        return payload

    def _call(self, req, payload=b"", fds=(), ack=True):
        """A set message with REPLY_ACK; raises if the device refused it."""
        self._send(req, payload, fds, flags=0x1 | (NEED_REPLY if ack else 0))
        if ack:
            (rc,) = struct.unpack("<Q", self._reply(req))
            if rc != 0:
                raise ProtocolError("request %d refused" % req)

    def _get_u64(self, req):
        self._send(req)
        return struct.unpack("<Q", self._reply(req))[0]

    # ---- session ----

    def open_socket(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)
        return self.sock

    def connect(self, log=False):
        """Negotiate, send the memory table, start ring 0.  With ``log``,
        dirty logging as QEMU turns it on for a migration: VHOST_F_LOG_ALL,
        a log memfd (SET_LOG_BASE) and VHOST_VRING_F_LOG on the ring."""
        self.open_socket()
        feats = self._get_u64(GET_FEATURES)
        want = F_VERSION_1 | F_PROTOCOL_FEATURES | (F_LOG_ALL if log else 0)
        self._send(SET_FEATURES, struct.pack("<Q", feats & want))
        self._get_u64(GET_PROTOCOL_FEATURES)
        self._send(SET_PROTOCOL_FEATURES, struct.pack(
            "<Q", PROTOCOL_F_REPLY_ACK | (PROTOCOL_F_LOG_SHMFD if log else 0)))
        self._send(SET_OWNER)
        region = struct.pack("<QQQQ", self.gpa, self.size, self.uva, 0)
        self._call(SET_MEM_TABLE, struct.pack("<II", 1, 0) + region, fds=[self.memfd])
        if log:
            # One bit per 4 KiB page of guest-physical address, from 0.
            size = -(-(self.gpa + self.size) // (LOG_PAGE * 8))
            size = -(-size // 4096) * 4096
            self.logfd = os.memfd_create("sb-fe-log", os.MFD_CLOEXEC)
            os.ftruncate(self.logfd, size)
            self.log = mmap.mmap(self.logfd, size)
            self._send(SET_LOG_BASE, struct.pack("<QQ", size, 0), fds=[self.logfd])
            if self._reply(SET_LOG_BASE) != b"":
                raise ProtocolError("SET_LOG_BASE reply carries a payload")
        self._call(SET_VRING_NUM, struct.pack("<II", 0, QSIZE))
        self._call(SET_VRING_BASE, struct.pack("<II", 0, 0))
        self._call(SET_VRING_ADDR, struct.pack("<IIQQQQ", 0, VRING_F_LOG if log else 0,
                                               self.uva + DESC, self.uva + USED,
                                               self.uva + AVAIL, self.gpa + USED))
        self._call(SET_VRING_CALL, struct.pack("<Q", 0), fds=[self.call])
        self._call(SET_VRING_KICK, struct.pack("<Q", 0), fds=[self.kick])
        self._call(SET_VRING_ENABLE, struct.pack("<II", 0, 1))
        return self

    def dirty_pages(self, clear=True):
        """Guest-physical page numbers marked in the log (then cleared,
        as QEMU does when it syncs the log)."""
        pages = set()
        for i, byte in enumerate(bytes(self.log)):
            for bit in range(8):
                if byte & (1 << bit):
                    pages.add(i * 8 + bit)
        if clear:
            self.log[:] = bytes(len(self.log))
        return pages

    def stop(self, q=0):
        """GET_VRING_BASE: the device stops the ring; its next avail index."""
        self._send(GET_VRING_BASE, struct.pack("<II", q, 0))
        _, base = struct.unpack("<II", self._reply(GET_VRING_BASE))
        return base

    def alive(self):
        """Whether the device still answers on this connection."""
        try:
            self._get_u64(GET_FEATURES)
            return True
        except (OSError, ProtocolError):
            return False

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def release(self):
        self.close()
        # The ctypes views pin the mapping: drop them first.
        self._avail_idx = self._used_idx = None
        self.ram.close()
        if self.log is not None:
            self.log.close()
            os.close(self.logfd)
        for fd in (self.memfd, self.kick, self.call):
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    # ---- ring ----

    def fill(self, offset, data):
        self.ram[offset:offset + len(data)] = data

    def read(self, offset, length):
        return bytes(self.ram[offset:offset + length])

    def used_idx(self):
        return self._used_idx.value

    def _publish(self):
        self._avail_idx.value = self.avail_idx

    def request(self, rtype, sector, data_gpa, length, wait=None, writable=None):
        """Queue header / data (at any guest address) / status; the status byte or None.
        ``writable``: whether the device may write the data buffer (default:
        only for VIRTIO_BLK_T_IN; GET_ID needs it too)."""
        struct.pack_into("<IIQ", self.ram, HDR, rtype, 0, sector)
        self.ram[STATUS] = 0xff
        if writable is None:
            writable = rtype == VIRTIO_BLK_T_IN
        data_flags = DESC_F_NEXT | (DESC_F_WRITE if writable else 0)
        descs = [(self.gpa + HDR, 16, DESC_F_NEXT, 1), (data_gpa, length, data_flags, 2),
                 (self.gpa + STATUS, 1, DESC_F_WRITE, 0)]
        for i, d in enumerate(descs):
            struct.pack_into("<QIHH", self.ram, DESC + 16 * i, *d)
        struct.pack_into("<H", self.ram, AVAIL + 4 + 2 * (self.avail_idx % QSIZE), 0)
        self.avail_idx = (self.avail_idx + 1) & 0xffff
        self._publish()
        os.eventfd_write(self.kick, 1)
        deadline = time.monotonic() + (self.timeout if wait is None else wait)
        while time.monotonic() < deadline:
            if self.used_idx() != self.used_seen:
                self.used_seen = self.used_idx()
                return self.ram[STATUS]
            select.select([self.call], [], [], 0.05)
        return None


# ---- several requests in flight (crash tests) ----

SLOT_BYTES = 0x2000  # header + status + up to 4 KiB of data, per slot
SLOTS_AT = 0x10000


class DeviceGone(Exception):
    """The device stopped answering (its process died or cut the session)."""


class Pipeline:
    """Up to ``qd`` block requests in flight on the ring of a connected
    :class:`Frontend`.  ``submit(rtype, sector, data, tag)`` queues one
    (``data``: bytes to write, or the length to read); ``reap()`` returns
    ``[(tag, status, data_read)]`` of what completed since the last call.
    Each slot has its own three descriptors and buffers."""

    def __init__(self, fe, qd=8):
        assert qd * 3 <= QSIZE and SLOTS_AT + qd * SLOT_BYTES <= fe.size
        self.fe = fe
        self.qd = qd
        self.free = list(range(qd))
        self.busy = {}

    def _base(self, slot):
        return SLOTS_AT + slot * SLOT_BYTES

    def submit(self, rtype, sector, data, tag):
        fe = self.fe
        slot = self.free.pop()
        base = self._base(slot)
        length = data if isinstance(data, int) else len(data)
        struct.pack_into("<IIQ", fe.ram, base, rtype, 0, sector)
        fe.ram[base + 16] = 0xff
        if not isinstance(data, int):
            fe.ram[base + 0x1000:base + 0x1000 + length] = data
        flags = DESC_F_NEXT | (DESC_F_WRITE if rtype == VIRTIO_BLK_T_IN else 0)
        head = slot * 3
        descs = [(fe.gpa + base, 16, DESC_F_NEXT, head + 1),
                 (fe.gpa + base + 0x1000, length, flags, head + 2),
                 (fe.gpa + base + 16, 1, DESC_F_WRITE, 0)]
        for i, d in enumerate(descs):
            struct.pack_into("<QIHH", fe.ram, DESC + 16 * (head + i), *d)
        struct.pack_into("<H", fe.ram, AVAIL + 4 + 2 * (fe.avail_idx % QSIZE), head)
        fe.avail_idx = (fe.avail_idx + 1) & 0xffff
        fe._publish()
        self.busy[slot] = (tag, rtype, length)
        os.eventfd_write(fe.kick, 1)

    def can_submit(self):
        return bool(self.free)

    def reap(self, timeout=0.05):
        fe = self.fe
        done = []
        deadline = time.monotonic() + timeout
        while True:
            used = fe.used_idx()
            while fe.used_seen != used:
                elem_id, _ = struct.unpack_from("<II", fe.ram,
                                                USED + 4 + 8 * (fe.used_seen % QSIZE))
                fe.used_seen = (fe.used_seen + 1) & 0xffff
                slot = elem_id // 3
                tag, rtype, length = self.busy.pop(slot)
                self.free.append(slot)
                base = self._base(slot)
                data = (bytes(fe.ram[base + 0x1000:base + 0x1000 + length])
                        if rtype == VIRTIO_BLK_T_IN else None)
                done.append((tag, fe.ram[base + 16], data))
            if done or time.monotonic() >= deadline:
                return done
            select.select([fe.call], [], [], 0.01)
            try:
                os.eventfd_read(fe.call)
            except BlockingIOError:
                pass
