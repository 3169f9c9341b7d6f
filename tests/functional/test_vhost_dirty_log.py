"""Dirty logging and the migration switch-over against the real engine.

A front-end built by hand (tests/support/vhost_frontend.py) turns logging
on as QEMU does for a live migration (VHOST_F_LOG_ALL, a log memfd through
SET_LOG_BASE, VHOST_VRING_F_LOG on the ring): every page the back-end
writes - the data of a read, the status byte, the used ring - is marked in
the log, pages it only reads are not; GET_VRING_BASE on the last ring then
flushes the bdev before it answers, so the destination host reads what
this one acknowledged.  Without logging, the same stop sends no flush.
(The guest-visible result of all this: tests/e2e/test_migration_qemu.py.)
"""

import os

import pytest

from tests.support.vhost_frontend import (DATA, HDR, LOG_PAGE, STATUS, USED, Frontend,
                                          VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT)

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20
GPA = 64 * MB     # guest RAM at [64 MiB, 65 MiB): the log covers pages from 0


@pytest.fixture
def target(tmp_path):
    from spdk_backend.engine import Engine

    eng = Engine(core_mask="0x1", vhost_socket_dir=str(tmp_path), max_delay_us=1000,
                 no_pin=True)
    eng.start()
    try:
        eng.bdev_malloc_create("m0", 4 * MB // 512, 512)
        eng.vhost_create_blk_controller("c0", "m0")
        yield eng, str(tmp_path / "c0")
    finally:
        eng.stop()


def _flushes(eng):
    (b,) = eng.bdev_get_iostat("m0")["bdevs"]
    return b["num_flush_ops"]


def _page(offset):
    return (GPA + offset) // LOG_PAGE


def test_back_end_writes_are_logged_and_the_stop_flushes(target):
    eng, sock = target
    with Frontend(sock, gpa=GPA, size=MB) as fe:
        fe.connect(log=True)
        assert eng.vhost_get_controllers("c0")[0]["dirty_logging"]
        data = os.urandom(3 * LOG_PAGE)
        fe.fill(DATA, data)
        assert fe.request(VIRTIO_BLK_T_OUT, 8, GPA + DATA, len(data)) == 0
        # A write only reads guest memory: status byte and used ring only.
        assert fe.dirty_pages() == {_page(STATUS), _page(USED)}
        fe.fill(DATA + 8 * LOG_PAGE, bytes(3 * LOG_PAGE))
        assert fe.request(VIRTIO_BLK_T_IN, 8, GPA + DATA + 8 * LOG_PAGE + 100,
                          2 * LOG_PAGE) == 0
        assert fe.read(DATA + 8 * LOG_PAGE + 100, 2 * LOG_PAGE) == data[:2 * LOG_PAGE]
        # 8 KiB from offset 100 of a page touch three pages.
        first = _page(DATA + 8 * LOG_PAGE)
        assert fe.dirty_pages() == {first, first + 1, first + 2, _page(STATUS), _page(USED)}
        assert _page(HDR) == _page(STATUS)      # the header page is read, not written
        before = _flushes(eng)
        assert fe.stop() == 2
        assert _flushes(eng) == before + 1
        # Stopping writes nothing but the ring's notification fields.
        assert fe.dirty_pages() <= {_page(USED)}


def test_without_logging_nothing_is_marked_and_the_stop_does_not_flush(target):
    eng, sock = target
    with Frontend(sock, gpa=GPA, size=MB) as fe:
        fe.connect()
        assert not eng.vhost_get_controllers("c0")[0]["dirty_logging"]
        assert fe.request(VIRTIO_BLK_T_IN, 0, GPA + DATA, LOG_PAGE) == 0
        before = _flushes(eng)
        assert fe.stop() == 1
        assert _flushes(eng) == before


def test_reset_owner_turns_logging_off(target):
    """RESET_OWNER forgets the negotiated features, VHOST_F_LOG_ALL with
    them: nothing is marked any more and the next stop does not flush."""
    eng, sock = target
    reset_owner = 4     # VHOST_USER_RESET_OWNER
    with Frontend(sock, gpa=GPA, size=MB) as fe:
        fe.connect(log=True)
        assert eng.vhost_get_controllers("c0")[0]["dirty_logging"]
        fe._call(reset_owner)
        assert not eng.vhost_get_controllers("c0")[0]["dirty_logging"]
        assert fe.alive()
