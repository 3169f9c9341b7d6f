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


def test_agent_errno_errors_are_the_engine_classes_too():
    # One class to catch whether the engine or the agent said it.
    for code, agent_cls, engine_cls in (
            (-errno.ENODEV, exception.AgentNotFound, exception.NotFound),
            (-errno.ENOENT, exception.AgentNotFound, exception.NotFound),
            (-errno.EEXIST, exception.AgentAlreadyExists, exception.AlreadyExists),
            (-errno.EBUSY, exception.AgentBusy, exception.Busy),
            (-errno.EINVAL, exception.AgentInvalidArgument, exception.InvalidArgument)):
        exc = exception.agent_error(code, "the agent's reason")
        assert type(exc) is agent_cls
        assert isinstance(exc, engine_cls) and isinstance(exc, exception.AgentError)
        assert exc.errno == -code and exc.code == code
        assert str(exc) == "agent error %d: the agent's reason" % code
    raised = exception.AgentNotFound(code=-19, reason="controller c0 vanished")
    assert isinstance(raised, exception.NotFound) and raised.errno == errno.ENODEV


def test_agent_protocol_errors_are_no_engine_errors():
    for code in (-32700, -32600, -32601, -32602, -errno.EIO, None):
        exc = exception.agent_error(code, "why")
        assert isinstance(exc, exception.AgentError)
        assert not isinstance(exc, exception.EngineError)
        assert exc.errno == (errno.EIO if code == -errno.EIO else None)
    # An engine error is never an agent error: the engine said it, no agent.
    assert not isinstance(exception.from_errno(-errno.ENODEV, "x"), exception.AgentError)
