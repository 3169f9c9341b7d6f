"""A minimal vhost-user-blk front-end in Python, for isolation tests.

The C initiator (native/tools/vhost_initiator) covers workloads and a fixed
list of hostile cases; isolation tests need descriptors built by hand (an
address that is valid in another controller's guest memory, an address of
the backend's own memory), so this front-end does the QEMU part of the
protocol (vhost-user.rst) with guest RAM in a memfd at a chosen guest
physical address, one split ring, and lets the test write any descriptor.

    fe = Frontend(sock_path, gpa=0x0, size=1 << 20)
    fe.connect()          # negotiation, memory table, ring 0 started
    status = fe.request(VIRTIO_BLK_T_IN, sector=0, data_gpa=..., length=512)
    fe.close()

``request`` returns the status byte, or None when the device did not
complete the request within the timeout (a refused chain breaks the
device: the request never completes).
"""

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

F_PROTOCOL_FEATURES = 1 << 30
F_VERSION_1 = 1 << 32
PROTOCOL_F_REPLY_ACK = 1 << 3
NEED_REPLY = 1 << 3

VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT = 0, 1
DESC_F_NEXT, DESC_F_WRITE = 1, 2

QSIZE = 16
# Layout of guest RAM (offsets from the region start).
DESC, AVAIL, USED, HDR, STATUS, DATA = 0x0, 0x1000, 0x2000, 0x3000, 0x3100, 0x4000
UVA_BASE = 0x7f1000000000  # what we claim as our virtual address of RAM


class ProtocolError(Exception):
    pass


class Frontend:
    def __init__(self, path, gpa=0, size=1 << 20, timeout=5.0):
        self.path = str(path)
        self.gpa = gpa
        self.size = size
        self.uva = UVA_BASE + gpa
        self.timeout = timeout
        self.sock = None
        self.memfd = os.memfd_create("sb-fe-ram", os.MFD_CLOEXEC)
        os.ftruncate(self.memfd, size)
        self.ram = mmap.mmap(self.memfd, size)
        self.kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.call = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.avail_idx = 0
        self.used_seen = 0

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

    def connect(self):
        self.open_socket()
        feats = self._get_u64(GET_FEATURES)
        self._send(SET_FEATURES, struct.pack("<Q", feats & (F_VERSION_1 | F_PROTOCOL_FEATURES)))
        self._get_u64(GET_PROTOCOL_FEATURES)
        self._send(SET_PROTOCOL_FEATURES, struct.pack("<Q", PROTOCOL_F_REPLY_ACK))
        self._send(SET_OWNER)
        region = struct.pack("<QQQQ", self.gpa, self.size, self.uva, 0)
        self._call(SET_MEM_TABLE, struct.pack("<II", 1, 0) + region, fds=[self.memfd])
        self._call(SET_VRING_NUM, struct.pack("<II", 0, QSIZE))
        self._call(SET_VRING_BASE, struct.pack("<II", 0, 0))
        self._call(SET_VRING_ADDR, struct.pack("<IIQQQQ", 0, 0, self.uva + DESC,
                                               self.uva + USED, self.uva + AVAIL, 0))
        self._call(SET_VRING_CALL, struct.pack("<Q", 0), fds=[self.call])
        self._call(SET_VRING_KICK, struct.pack("<Q", 0), fds=[self.kick])
        self._call(SET_VRING_ENABLE, struct.pack("<II", 0, 1))
        return self

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
        self.ram.close()
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
        return struct.unpack_from("<H", self.ram, USED + 2)[0]

    def request(self, rtype, sector, data_gpa, length, wait=None):
        """Queue header / data (at any guest address) / status; the status byte or None."""
        struct.pack_into("<IIQ", self.ram, HDR, rtype, 0, sector)
        self.ram[STATUS] = 0xff
        data_flags = DESC_F_NEXT | (DESC_F_WRITE if rtype == VIRTIO_BLK_T_IN else 0)
        descs = [(self.gpa + HDR, 16, DESC_F_NEXT, 1), (data_gpa, length, data_flags, 2),
                 (self.gpa + STATUS, 1, DESC_F_WRITE, 0)]
        for i, d in enumerate(descs):
            struct.pack_into("<QIHH", self.ram, DESC + 16 * i, *d)
        struct.pack_into("<H", self.ram, AVAIL + 4 + 2 * (self.avail_idx % QSIZE), 0)
        self.avail_idx = (self.avail_idx + 1) & 0xffff
        struct.pack_into("<HH", self.ram, AVAIL, 0, self.avail_idx)
        os.eventfd_write(self.kick, 1)
        deadline = time.monotonic() + (self.timeout if wait is None else wait)
        while time.monotonic() < deadline:
            if self.used_idx() != self.used_seen:
                self.used_seen = self.used_idx()
                return self.ram[STATUS]
            select.select([self.call], [], [], 0.05)
        return None
