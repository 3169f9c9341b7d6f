"""Write and read a bdev through a vhost-user-blk controller of an agent.

What a guest does, without a guest: a short-lived controller on the bdev and
the Python front-end of tests/support/vhost_frontend.py on its socket.
"""

import contextlib
import uuid

from tests.support import vhost_frontend as vf

SECTOR = 512
MAX_IO = 64 * 1024  # fits the front-end's guest RAM after its ring


@contextlib.contextmanager
def served(client, bdev):
    """A connected Frontend on a fresh controller in front of ``bdev``."""
    ctrlr = "t-%s" % uuid.uuid4().hex[:12]
    client.call("vhost_create_blk_controller", ctrlr=ctrlr, dev_name=bdev)
    try:
        (info,) = client.call("vhost_get_controllers", name=ctrlr)
        with vf.Frontend(info["socket"], gpa=0, size=1 << 20, timeout=30.0) as fe:
            fe.connect()
            yield fe
    finally:
        client.call("vhost_delete_controller", ctrlr=ctrlr, force=True)


def write(fe, offset, data):
    """Write ``data`` at byte ``offset`` (sector aligned), 64 KiB per request."""
    for pos in range(0, len(data), MAX_IO):
        chunk = data[pos:pos + MAX_IO]
        fe.fill(vf.DATA, chunk)
        status = fe.request(vf.VIRTIO_BLK_T_OUT, (offset + pos) // SECTOR,
                            fe.gpa + vf.DATA, len(chunk))
        assert status == 0, "write at %d: status %r" % (offset + pos, status)


def read(fe, offset, length):
    out = bytearray()
    for pos in range(0, length, MAX_IO):
        n = min(MAX_IO, length - pos)
        status = fe.request(vf.VIRTIO_BLK_T_IN, (offset + pos) // SECTOR,
                            fe.gpa + vf.DATA, n)
        assert status == 0, "read at %d: status %r" % (offset + pos, status)
        out += fe.read(vf.DATA, n)
    return bytes(out)
