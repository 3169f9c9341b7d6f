"""Typed exceptions: an I/O's ETIMEDOUT is an I/O error, not an engine timeout."""

import errno

from spdk_backend import exception


def test_io_timeout_is_an_io_error_not_an_engine_timeout():
    exc = exception.from_io_errno(-errno.ETIMEDOUT, "r0", "read", 4096)
    assert type(exc) is exception.BdevIOError
    assert isinstance(exc, exception.EngineError)
    assert not isinstance(exc, exception.EngineTimeout)
    assert exc.errno == errno.ETIMEDOUT
    assert str(exc) == "bdev r0 read at offset 4096 failed: %s" % (
        __import__("os").strerror(errno.ETIMEDOUT))


def test_io_status_classes():
    assert type(exception.from_io_errno(-errno.EIO, "u0", "write", 0)) \
        is exception.BdevIOError
    assert type(exception.from_io_errno(-errno.ENOSPC, "u0", "write", 0)) \
        is exception.BdevIOError
    # What describes the request keeps its class.
    missing = exception.from_io_errno(-errno.ENODEV, "nope", "read", 0)
    assert type(missing) is exception.NotFound and "nope" in str(missing)
    assert type(exception.from_io_errno(-errno.EINVAL, "m0", "read", 8192)) \
        is exception.InvalidArgument


def test_control_call_timeout_stays_an_engine_timeout():
    exc = exception.from_errno(-errno.ETIMEDOUT, "bdev_rbd_create")
    assert type(exc) is exception.EngineTimeout
    assert "did not answer in time" in str(exc)


def test_waiter_gave_up_is_an_engine_timeout_never_an_io_error():
    # SB_EWAITER_GAVE_UP: the control call stopped waiting; not an errno.
    exc = exception.from_errno(-exception.WAITER_GAVE_UP, "bdev_null_resize")
    assert type(exc) is exception.EngineTimeout
    assert exc.errno == exception.WAITER_GAVE_UP
    io = exception.from_io_errno(-exception.WAITER_GAVE_UP, "m0", "read", 0)
    assert type(io) is exception.EngineTimeout
    assert "bdev m0 read at offset 0" in str(io)
