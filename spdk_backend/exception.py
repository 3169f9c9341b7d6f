"""The project's exceptions.

Every exception carries a class-level message template filled from keyword
arguments, so a caller raises ``BdevNotFound(name="vol0")`` and the operator
reads "bdev vol0 does not exist".  Engine errors also carry the negative
errno the C layer returned (``.errno`` is positive, like OSError's).
"""

import errno as _errno
import os


class SpdkBackendException(Exception):
    """Base of every exception the project raises on purpose."""

    msg_fmt = "An unknown error occurred."
    code = None  # JSON-RPC error code when this crosses the agent's API

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError, ValueError):
                # A template/kwargs mismatch is our bug; never hide the real error.
                message = "%s (%r)" % (self.msg_fmt, kwargs)
        self.message = message
        super().__init__(message)


class InvalidInput(SpdkBackendException):
    msg_fmt = "Invalid input: %(reason)s"


class ConfigurationError(SpdkBackendException):
    msg_fmt = "Configuration error: %(reason)s"


class EngineError(SpdkBackendException):
    """A C engine call failed; ``errno`` says how."""

    msg_fmt = "%(op)s failed: %(reason)s"

    def __init__(self, message=None, errno=None, **kwargs):
        self.errno = errno
        if message is None and "reason" not in kwargs and errno is not None:
            kwargs["reason"] = strerror(errno)
        kwargs.setdefault("op", "engine call")
        kwargs.setdefault("reason", "unknown error")
        super().__init__(message, **kwargs)


class EngineNotRunning(EngineError):
    msg_fmt = "The engine is not running (%(op)s)"


class NotFound(EngineError):
    msg_fmt = "%(op)s: %(reason)s"


class AlreadyExists(EngineError):
    msg_fmt = "%(op)s: %(reason)s"


class Busy(EngineError):
    msg_fmt = "%(op)s: %(reason)s"


class InvalidArgument(EngineError):
    msg_fmt = "%(op)s: %(reason)s"


class PermissionDenied(EngineError):
    msg_fmt = "%(op)s: %(reason)s"


class EngineTimeout(EngineError):
    """A control call got no answer from the engine's reactor in time.

    The C side says so with its own code, ``SB_EWAITER_GAVE_UP``
    (:data:`WAITER_GAVE_UP`), never with an errno a bdev could return; the
    call may still complete on the reactor, with memory the call owns.
    """

    msg_fmt = "%(op)s: the engine did not answer in time"


# SB_EWAITER_GAVE_UP (sb/thread.h): "the waiter gave up", not an errno.
WAITER_GAVE_UP = 4096


class BdevIOError(EngineError):
    """An I/O the engine ran failed with ``errno`` (EIO, ENOSPC, ETIMEDOUT...).

    A bdev's ETIMEDOUT (e.g. a librados operation timeout) is the storage's
    answer, not the engine failing to answer: it is this, not EngineTimeout.
    """

    msg_fmt = "bdev %(name)s %(io)s at offset %(offset)s failed: %(reason)s"

    def __init__(self, message=None, errno=None, **kwargs):
        kwargs.setdefault("op", "bdev %s %s" % (kwargs.get("name"), kwargs.get("io")))
        super().__init__(message, errno=errno, **kwargs)


# errno -> exception class for engine results (anything else: EngineError).
ERRNO_CLASSES = {
    _errno.ENODEV: NotFound,
    _errno.ENOENT: NotFound,
    _errno.EEXIST: AlreadyExists,
    _errno.EBUSY: Busy,
    _errno.EINVAL: InvalidArgument,
    _errno.E2BIG: InvalidArgument,
    _errno.ERANGE: InvalidArgument,
    _errno.ENAMETOOLONG: InvalidArgument,
    _errno.EPERM: PermissionDenied,
    _errno.EACCES: PermissionDenied,
    # sb_call()'s own timeout, still used by the vhost control thread.
    _errno.ETIMEDOUT: EngineTimeout,
    _errno.ESHUTDOWN: EngineNotRunning,
    WAITER_GAVE_UP: EngineTimeout,
}


def strerror(errno):
    """os.strerror, and what SB_EWAITER_GAVE_UP (not an errno) means."""
    if errno == WAITER_GAVE_UP:
        return "the engine's reactor did not answer within the call timeout"
    return os.strerror(errno)


def from_errno(errno, op, reason=None):
    """The exception for a negative or positive errno from the engine."""
    errno = abs(errno)
    cls = ERRNO_CLASSES.get(errno, EngineError)
    return cls(errno=errno, op=op, reason=reason or strerror(errno))


# errno classes that describe the request rather than the I/O's outcome.
_IO_REQUEST_CLASSES = (NotFound, InvalidArgument, PermissionDenied, Busy,
                       EngineNotRunning)


def from_io_errno(errno, name, io, offset):
    """The exception for a failed I/O on bdev ``name`` (errno of its status).

    A missing bdev or an out-of-range request keeps its class (NotFound,
    InvalidArgument...); every other status is a :class:`BdevIOError`.
    """
    errno = abs(errno)
    cls = ERRNO_CLASSES.get(errno)
    reason = strerror(errno)
    if errno == WAITER_GAVE_UP:
        # Not the I/O's status: nobody waited for it (it may still complete).
        return EngineTimeout(errno=errno, op="bdev %s %s at offset %s" % (name, io, offset),
                             reason=reason)
    if cls in _IO_REQUEST_CLASSES:
        return cls(errno=errno, op="bdev %s %s at offset %s" % (name, io, offset),
                   reason=reason)
    return BdevIOError(errno=errno, name=name, io=io, offset=offset, reason=reason)


class AgentError(SpdkBackendException):
    """The agent answered a call with a JSON-RPC ``error``.

    The subclasses for an errno the agent returned (-19, -17, -16, -22) are
    also the engine's class for that errno (:class:`NotFound`,
    :class:`AlreadyExists`, :class:`Busy`, :class:`InvalidArgument`), so a
    caller that works both with an engine and through an agent catches one
    class; ``errno`` is then the positive errno, as an engine error's.
    """

    msg_fmt = "agent error %(code)s: %(reason)s"

    def __init__(self, message=None, **kwargs):
        super().__init__(message, **kwargs)
        code = kwargs.get("code", type(self).code)
        self.errno = (-code if isinstance(code, int) and not isinstance(code, bool)
                      and -WAITER_GAVE_UP < code < 0 else None)


class AgentUnavailable(SpdkBackendException):
    msg_fmt = "cannot reach the agent at %(path)s: %(reason)s"


# Typed agent errors, keyed by the JSON-RPC error code the agent replied with.
# Those of an errno are the engine's class for it too (see AgentError).
class AgentNotFound(AgentError, NotFound):
    code = -_errno.ENODEV


class AgentAlreadyExists(AgentError, AlreadyExists):
    code = -_errno.EEXIST


class AgentBusy(AgentError, Busy):
    code = -_errno.EBUSY


class AgentInvalidArgument(AgentError, InvalidArgument):
    code = -_errno.EINVAL


class AgentParseError(AgentError):
    code = -32700


class AgentInvalidRequest(AgentError):
    code = -32600


class AgentMethodNotFound(AgentError):
    code = -32601


class AgentInvalidParams(AgentError):
    code = -32602


AGENT_ERROR_CLASSES = {
    -_errno.ENODEV: AgentNotFound,
    -_errno.ENOENT: AgentNotFound,
    -_errno.EEXIST: AgentAlreadyExists,
    -_errno.EBUSY: AgentBusy,
    -_errno.EINVAL: AgentInvalidArgument,
    -32700: AgentParseError,
    -32600: AgentInvalidRequest,
    -32601: AgentMethodNotFound,
    -32602: AgentInvalidParams,
}


def agent_error(code, message):
    """The typed exception for a JSON-RPC ``error`` object from the agent."""
    cls = AGENT_ERROR_CLASSES.get(code, AgentError)
    exc = cls(code=code, reason=message)
    exc.code = code
    return exc


class LibvirtError(SpdkBackendException):
    msg_fmt = "libvirt: %(reason)s"


class DomainNotFound(LibvirtError):
    msg_fmt = "domain %(name)s does not exist"


class SharedMemoryRequired(LibvirtError):
    msg_fmt = ("domain %(name)s does not have shared guest memory, which a "
               "vhost-user disk needs; run 'spdk-backend domain prepare %(name)s' "
               "and restart the domain (shared memory cannot be enabled on a "
               "running guest)")


class NoFreeHotplugSlot(LibvirtError):
    msg_fmt = ("domain %(name)s has no free PCIe hotplug slot for another disk; "
               "add pcie-root-port controllers to its definition and restart it")


class DeviceDetachFailed(LibvirtError):
    msg_fmt = "device %(device)s was not removed from domain %(name)s: %(reason)s"


class HotplugTimeout(LibvirtError):
    msg_fmt = ("QEMU of domain %(name)s did not finish hot-plugging %(device)s "
               "within %(timeout)ss: %(reason)s")


class VolumeBackendNotFound(ConfigurationError):
    msg_fmt = ("no such volume backend %(name)s (known: %(known)s); check the "
               "volume_backend option")


class VhostSocketUnreachable(LibvirtError):
    msg_fmt = ("QEMU of domain %(name)s cannot connect to the vhost-user "
               "socket %(path)s: %(reason)s; check that the controller "
               "exists and that the socket and its directories are "
               "accessible to the user QEMU runs as (libvirt-qemu on Debian)")
