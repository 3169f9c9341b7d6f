#!/usr/bin/env python3
"""Write the hand-made seeds of the fuzz corpus (native/test/fuzz/corpus/).

Seeds are well-formed inputs that reach deep into each harness: a whole
QEMU-like vhost-user session whose guest RAM holds a ring with requests, a
ring image with every virtio-blk request type, and valid JSON-RPC calls of
every registered method.  libFuzzer mutates from there.  Re-running this
script rewrites the seed-* files only.
"""

import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

# ---- a guest RAM image with one split ring (shared by two harnesses) ----

QSIZE = 8
DESC, AVAIL, USED = 0x100, 0x200, 0x300
REQ = 0x400        # request headers, 16 bytes apart
STATUS = 0x600     # status bytes
INDIRECT = 0x700   # an indirect table
DATA = 0x800       # data buffers, 512 bytes apart

F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4
T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WZ = 0, 1, 4, 8, 11, 13


def ring_image(requests, indirect_at=None):
    """RAM bytes with `requests` (type, sector, data_len) queued in the ring."""
    ram = bytearray(DATA + 512 * 8)
    descs = []

    def desc(addr, length, flags, nxt=0):
        descs.append((addr, length, flags, nxt))
        return len(descs) - 1

    heads = []
    for i, (rtype, sector, dlen) in enumerate(requests):
        hdr = REQ + 16 * i
        struct.pack_into("<IIQ", ram, hdr, rtype, 0, sector)
        if rtype == T_DISCARD:
            struct.pack_into("<QII", ram, DATA + 512 * i, sector, 8, 0)
        write = rtype in (T_IN, T_GET_ID)
        n = len(descs)
        if dlen:
            desc(hdr, 16, F_NEXT, n + 1)
            desc(DATA + 512 * i, dlen, F_NEXT | (F_WRITE if write else 0), n + 2)
        else:
            desc(hdr, 16, F_NEXT, n + 1)
        desc(STATUS + i, 1, F_WRITE)
        heads.append(n)
    if indirect_at is not None:
        # One more request through an indirect table at indirect_at.
        table = [(REQ + 0x80, 16, F_NEXT, 1), (DATA + 0xe00, 512, F_NEXT | F_WRITE, 2),
                 (STATUS + 0x40, 1, F_WRITE, 0)]
        struct.pack_into("<IIQ", ram, REQ + 0x80, T_IN, 0, 7)
        for j, d in enumerate(table):
            struct.pack_into("<QIHH", ram, indirect_at + 16 * j, *d)
        heads.append(desc(indirect_at, 16 * len(table), F_INDIRECT))
    assert len(descs) <= QSIZE
    for j, d in enumerate(descs):
        struct.pack_into("<QIHH", ram, DESC + 16 * j, *d)
    struct.pack_into("<HH", ram, AVAIL, 0, len(heads))
    for j, h in enumerate(heads):
        struct.pack_into("<H", ram, AVAIL + 4 + 2 * j, h)
    return bytes(ram)


REQUEST_SETS = [
    [(T_OUT, 0, 512), (T_IN, 0, 512)],
    [(T_FLUSH, 0, 0), (T_GET_ID, 0, 20)],
    [(T_DISCARD, 0, 16), (T_WZ, 0, 16)],
    [(T_IN, 2047, 512), (T_OUT, 4096, 512)],
]

# ---- vring harness ----


def vring_seed(requests, feat, indirect_at=None):
    qsel = QSIZE.bit_length() - 1
    head = struct.pack("<BBHIIIH", qsel, feat, 0, DESC, AVAIL, USED, 0xFFFF)
    return head + ring_image(requests, indirect_at)


F_AVAIL, F_USED = 1 << 7, 1 << 15
# feature byte of the vring harness: packed ring (4), its inflight region (8)
PACKED, PACKED_INFLIGHT = 4, 8


def packed_ring_image(requests, indirect_at=None):
    """RAM bytes with `requests` made available in a packed ring at DESC
    (virtio 1.2 §2.8: buffer id = request number, first lap: AVAIL set);
    the driver event structure at AVAIL, the device's at USED."""
    ram = bytearray(ring_image([]))
    slot = 0

    def put(addr, length, flags, buf_id):
        nonlocal slot
        struct.pack_into("<QIHH", ram, DESC + 16 * slot, addr, length, buf_id, flags | F_AVAIL)
        slot += 1

    for i, (rtype, sector, dlen) in enumerate(requests):
        hdr = REQ + 16 * i
        struct.pack_into("<IIQ", ram, hdr, rtype, 0, sector)
        if rtype == T_DISCARD:
            struct.pack_into("<QII", ram, DATA + 512 * i, sector, 8, 0)
        write = rtype in (T_IN, T_GET_ID)
        put(hdr, 16, F_NEXT, i)
        if dlen:
            put(DATA + 512 * i, dlen, F_NEXT | (F_WRITE if write else 0), i)
        put(STATUS + i, 1, F_WRITE, i)
    if indirect_at is not None:
        # One more request through an indirect table (§2.8.7: no NEXT inside).
        n = len(requests)
        struct.pack_into("<IIQ", ram, REQ + 0x80, T_IN, 0, 7)
        table = [(REQ + 0x80, 16, 0, 0), (DATA + 0xe00, 512, 0, F_WRITE),
                 (STATUS + 0x40, 1, 0, F_WRITE)]
        for j, d in enumerate(table):
            struct.pack_into("<QIHH", ram, indirect_at + 16 * j, *d)
        put(indirect_at, 16 * len(table), F_INDIRECT, n)
    assert slot <= QSIZE
    return bytes(ram)


def packed_vring_seed(requests, feat, indirect_at=None):
    qsel = QSIZE.bit_length() - 1
    # base: avail index 0 with wrap counter 1 (the harness uses it for used too)
    head = struct.pack("<BBHIIIH", qsel, PACKED | feat, 0x8000, DESC, AVAIL, USED, 0xFFFF)
    return head + packed_ring_image(requests, indirect_at)


# ---- vhost_msg harness ----

GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE = 1, 2, 3, 4, 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 12, 13, 14
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM = 15, 16, 17
SET_VRING_ENABLE, SET_SLAVE_REQ_FD, GET_CONFIG, SET_CONFIG = 18, 21, 24, 25
GET_INFLIGHT_FD, SET_INFLIGHT_FD, RESET_DEVICE = 31, 32, 34
GET_MAX_MEM_SLOTS, ADD_MEM_REG, REM_MEM_REG = 36, 37, 38
SET_LOG_BASE, SET_LOG_FD = 6, 7
LOG_ALL, LOG_SHMFD = 1 << 26, 1 << 1
FD_RAM, FD_EVENT, FD_SOCK, FD_SMALL = 0, 1, 2, 3
UVA = 0x7f0000000000
RAM_SIZE = 256 * 1024
NEED_REPLY = 0x8
PROTO = (1 << 0) | (1 << 3) | (1 << 5) | (1 << 9) | (1 << 12) | (1 << 13) | (1 << 15)
FEATURES = (1 << 32) | (1 << 30) | (1 << 28) | (1 << 29) | (1 << 9) | (1 << 12)


def msg(req, payload=b"", fds=(), flags=0x1):
    return (bytes([len(fds)]) + bytes(fds)
            + struct.pack("<III", req, flags, len(payload)) + payload)


def u64(v):
    return struct.pack("<Q", v)


def state(index, num):
    return struct.pack("<II", index, num)


def vring_addr(index, base=UVA, log=False):
    return struct.pack("<IIQQQQ", index, 1 if log else 0, base + DESC, base + USED, base + AVAIL,
                       USED if log else 0)


def region(gpa, size, uva, off):
    return struct.pack("<QQQQ", gpa, size, uva, off)


def session(mem="table", inflight=False, event_idx=False, stop=True, log=False,
            config="qemu", packed=False):
    feats = FEATURES & ~((0 if event_idx else 1) << 29) | ((1 << 34) if packed else 0)
    proto = PROTO | (LOG_SHMFD if log else 0)
    m = [msg(GET_FEATURES), msg(GET_PROTOCOL_FEATURES), msg(SET_PROTOCOL_FEATURES, u64(proto)),
         msg(GET_QUEUE_NUM), msg(GET_MAX_MEM_SLOTS), msg(SET_OWNER),
         msg(SET_SLAVE_REQ_FD, fds=[FD_SOCK], flags=0x1 | NEED_REPLY),
         msg(GET_CONFIG, struct.pack("<III", 0, 60, 0) + bytes(60))]
    if config == "spdk":
        # SPDK's virtio-user: the whole 256-byte space in its fixed 268-byte
        # struct, then a window past virtio_blk_config, then one past 256.
        m += [msg(GET_CONFIG, struct.pack("<III", 0, 256, 0) + bytes(256)),
              msg(GET_CONFIG, struct.pack("<III", 200, 56, 0) + bytes(256)),
              msg(GET_CONFIG, struct.pack("<III", 250, 16, 0) + bytes(256))]
    m.append(msg(SET_FEATURES, u64(feats)))
    if inflight:
        m.append(msg(GET_INFLIGHT_FD, struct.pack("<QQHH", 0, 0, 2, QSIZE) + bytes(4)))
        m.append(msg(SET_INFLIGHT_FD, struct.pack("<QQHH", 4096, 0, 1, QSIZE) + bytes(4),
                     fds=[FD_SMALL]))
    if mem == "table":
        m.append(msg(SET_MEM_TABLE, struct.pack("<II", 1, 0)
                     + region(0, RAM_SIZE, UVA, 0), fds=[FD_RAM], flags=0x1 | NEED_REPLY))
    else:
        # Two halves of the same memfd through ADD_MEM_REG.
        half = RAM_SIZE // 2
        m.append(msg(ADD_MEM_REG, u64(0) + region(0, half, UVA, 0), fds=[FD_RAM]))
        m.append(msg(ADD_MEM_REG, u64(0) + region(half, half, UVA + half, half),
                     fds=[FD_RAM]))
    # A packed ring's base: both indexes 0 with their wrap counters 1.
    m += [msg(SET_VRING_NUM, state(0, QSIZE)),
          msg(SET_VRING_BASE, state(0, 0x80008000 if packed else 0)),
          msg(SET_VRING_ADDR, vring_addr(0)), msg(SET_VRING_CALL, u64(0), fds=[FD_EVENT]),
          msg(SET_VRING_ERR, u64(0), fds=[FD_EVENT]),
          msg(SET_VRING_KICK, u64(0), fds=[FD_EVENT]), msg(SET_VRING_ENABLE, state(0, 1))]
    if log:
        # Migration starts: a log (8 bytes cover 256 KiB of RAM) in the 4 KiB memfd, the
        # log eventfd, LOG_ALL, the live ring re-addressed with its used ring logged.
        m += [msg(SET_LOG_BASE, u64(8) + u64(0), fds=[FD_SMALL], flags=0x1 | NEED_REPLY),
              msg(SET_LOG_FD, u64(0), fds=[FD_EVENT]),
              msg(SET_FEATURES, u64(feats | LOG_ALL)),
              msg(SET_VRING_ADDR, vring_addr(0, log=True), flags=0x1 | NEED_REPLY),
              msg(SET_VRING_KICK, u64(0), fds=[FD_EVENT]),
              # A log too small, past its fd's end, on an eventfd: each cuts the session.
              msg(SET_LOG_BASE, u64(4) + u64(0), fds=[FD_SMALL]),
              msg(SET_LOG_BASE, u64(8) + u64(8192), fds=[FD_SMALL]),
              msg(SET_LOG_BASE, u64(8) + u64(0), fds=[FD_EVENT])]
    if mem != "table":
        m.append(msg(REM_MEM_REG, u64(0) + region(RAM_SIZE // 2, RAM_SIZE // 2,
                                                   UVA + RAM_SIZE // 2, RAM_SIZE // 2)))
    if stop:
        m += [msg(GET_VRING_BASE, state(0, 0)), msg(RESET_DEVICE)]
    return b"".join(m)


def vhost_msg_seed(requests, **kw):
    ram = packed_ring_image(requests) if kw.get("packed") else ring_image(requests)
    return struct.pack("<H", len(ram)) + ram + session(**kw)


# ---- jsonrpc harness ----

def jsonrpc_seeds():
    calls = [
        ("rpc_get_methods", {}),
        ("spdk_get_version", None),
        ("bdev_malloc_create", {"name": "m0", "num_blocks": 2048, "block_size": 512}),
        ("bdev_null_create", {"name": "n0", "num_blocks": 100, "block_size": 4096}),
        ("bdev_uring_create", {"name": "u0", "filename": "/var/lib/spdk-backend/volumes/a"}),
        ("bdev_aio_create", {"name": "a0", "filename": "/tmp/x", "block_size": 512}),
        ("bdev_get_bdevs", {"name": "m0"}),
        ("bdev_malloc_delete", {"name": "m0"}),
        ("bdev_set_qos_limit", {"name": "m0", "rw_ios_per_sec": 1000}),
        ("vhost_create_blk_controller", {"ctrlr": "c0", "dev_name": "m0", "cpumask": "0x1"}),
        ("vhost_get_controllers", {}),
        ("vhost_controller_set_coalescing",
         {"ctrlr": "c0", "delay_base_us": 10, "iops_threshold": 1000}),
        ("vhost_delete_controller", {"ctrlr": "c0"}),
        ("bdev_rbd_create", {"name": "r0", "pool_name": "p", "rbd_name": "i",
                             "block_size": 512}),
        ("framework_get_reactors", None),
        ("save_config", None),
    ]
    out = []
    for i, (method, params) in enumerate(calls):
        req = {"jsonrpc": "2.0", "method": method, "id": i}
        if params is not None:
            req["params"] = params
        out.append(json.dumps(req).encode())
    # A whole session in one stream, and a batch.
    out.append(b"\n".join(out[2:6]) + b'{"jsonrpc":"2.0","method":"bdev_get_bdevs"}')
    out.append(json.dumps([json.loads(out[2]), json.loads(out[9]),
                           {"jsonrpc": "2.0", "method": "x"}]).encode())
    # Prefix byte: how the stream is cut into reads (see jsonrpc_fuzz.py).
    return [bytes([7]) + o for o in out]


def write(name, seeds):
    d = os.path.join(CORPUS, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.unlink(os.path.join(d, f))
    for i, s in enumerate(seeds):
        with open(os.path.join(d, "seed-%02d" % i), "wb") as f:
            f.write(s)


def main():
    write("vring", [vring_seed(r, feat) for r in REQUEST_SETS for feat in (0, 2)]
          + [vring_seed(REQUEST_SETS[0], 1, indirect_at=INDIRECT)]
          + [packed_vring_seed(r, feat) for r in REQUEST_SETS
             for feat in (0, 2, PACKED_INFLIGHT)]
          + [packed_vring_seed(REQUEST_SETS[0], 1, indirect_at=INDIRECT),
             packed_vring_seed(REQUEST_SETS[1], 1 | PACKED_INFLIGHT, indirect_at=INDIRECT)])
    write("vhost_msg", [vhost_msg_seed(REQUEST_SETS[0]),
                        vhost_msg_seed(REQUEST_SETS[1], event_idx=True),
                        vhost_msg_seed(REQUEST_SETS[2], mem="add", inflight=True),
                        vhost_msg_seed(REQUEST_SETS[3], inflight=True, stop=False),
                        vhost_msg_seed(REQUEST_SETS[0], log=True, stop=False),
                        vhost_msg_seed(REQUEST_SETS[1], event_idx=True, inflight=True,
                                       log=True),
                        vhost_msg_seed(REQUEST_SETS[2], config="spdk"),
                        vhost_msg_seed(REQUEST_SETS[0], packed=True),
                        vhost_msg_seed(REQUEST_SETS[3], packed=True, event_idx=True,
                                       inflight=True, stop=False)])
    write("jsonrpc", jsonrpc_seeds())
    return 0


if __name__ == "__main__":
    sys.exit(main())
