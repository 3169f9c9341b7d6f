"""How handler exceptions become JSON-RPC errors."""

import errno

from spdk_backend import exception
from spdk_backend.agent import dispatcher


def test_engine_errno_is_the_code():
    err = dispatcher.error_from_exception(exception.from_errno(-errno.ENODEV, "bdev_x"))
    assert err.code == -errno.ENODEV


def test_a_gave_up_wait_is_etimedout_on_the_wire():
    exc = exception.from_errno(-exception.WAITER_GAVE_UP, "bdev_null_resize")
    err = dispatcher.error_from_exception(exc)
    assert err.code == -errno.ETIMEDOUT
    assert "did not answer in time" in err.message
