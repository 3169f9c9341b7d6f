"""Runs RPC methods: decode params, call the handler, map errors, persist.

Engine calls are synchronous (the C side waits for the owning reactor), so
handlers that touch the engine run in one worker thread: state changes are
serialized and the server's event loop never waits on the engine.  After a
successful state-changing call the whole configuration goes to the state
file's writer (group commit, state.StateWriter) and the reply goes out once
a write that includes the change is on disk; the worker thread runs the
next call meanwhile.
"""

import asyncio
import errno
import logging
import time

from spdk_backend import exception
from spdk_backend.agent import jsonrpc
from spdk_backend.agent import rpc

LOG = logging.getLogger(__name__)

# A handler raises this to be called again after ``interval`` seconds, until
# ``deadline`` (time.monotonic()); the worker thread is free meanwhile.
RETRY_INTERVAL = 0.05


class RetryLater(Exception):
    def __init__(self, deadline, error):
        super().__init__(error)
        self.deadline = deadline
        self.error = error


class Context:
    """What handlers see: the engine, the configuration record, the options."""

    def __init__(self, engine, state, vhost_socket_dir=None, version="0.1.0",
                 allowed_backing_dirs=None, allowed_block_devices=()):
        self.engine = engine
        self.state = state
        self.vhost_socket_dir = vhost_socket_dir
        # None: no restriction (library use); the agent passes its options.
        self.allowed_backing_dirs = allowed_backing_dirs
        self.allowed_block_devices = tuple(allowed_block_devices or ())
        self.version = version
        self.started_at = time.time()
        # Set by the agent: asks it to hand itself over to a new process
        # (framework_upgrade).
        self.request_upgrade = None
        # What this process took over from the previous one (framework_get_process).
        self.takeover = None
        # The last upgrade this agent could not do: {"at", "reason"} (framework_get_process).
        self.upgrade_failed = None


def error_from_exception(exc):
    """The RpcError a handler exception becomes."""
    if isinstance(exc, jsonrpc.RpcError):
        return exc
    if isinstance(exc, exception.EngineError):
        code = -(exc.errno or errno.EIO)
        if exc.errno == exception.WAITER_GAVE_UP:
            # Not an errno: JSON-RPC clients (SPDK's) get ETIMEDOUT, the message says which.
            code = -errno.ETIMEDOUT
        return jsonrpc.RpcError(code, exc.message)
    if isinstance(exc, exception.InvalidInput):
        return jsonrpc.InvalidParams(exc.message)
    if isinstance(exc, exception.SpdkBackendException):
        return jsonrpc.RpcError(jsonrpc.INTERNAL_ERROR, exc.message)
    LOG.error("RPC handler failed", exc_info=exc)
    return jsonrpc.RpcError(jsonrpc.INTERNAL_ERROR, "Internal error: %s: %s"
                            % (type(exc).__name__, exc))


class Dispatcher:
    def __init__(self, ctx, executor=None):
        self.ctx = ctx
        self.executor = executor

    @staticmethod
    def lookup(name):
        meth = rpc.REGISTRY.get(name)
        if meth is None:
            raise jsonrpc.RpcError(jsonrpc.METHOD_NOT_FOUND,
                                   "Method not found: %s (rpc_get_methods lists the "
                                   "methods this agent serves)" % name)
        return meth

    def run_sync(self, name, raw_params, persist=True):
        """Decode and run one call in the calling thread; the result or RpcError."""
        meth = self.lookup(name)
        params = rpc.decode(meth, raw_params)
        try:
            result, saved = self._run(meth, params, persist)
        except RetryLater as again:
            raise error_from_exception(again.error) from None
        if meth.mutates and saved is not None:
            self._check_saved(meth, saved, saved.exception())
        return result

    def _run(self, meth, params, persist=True):
        """Run the handler: (result, Future of the state write or None)."""
        try:
            result = meth.func(self.ctx, params)
        except RetryLater:
            raise
        except Exception as exc:  # every failure becomes a JSON-RPC error
            raise error_from_exception(exc) from None
        saved = None
        if meth.mutates and persist:
            saved = self.ctx.state.save_later()
        elif not meth.inline:
            # A read answers after the changes it may show are on disk.
            saved = self.ctx.state.pending_write()
        return result, saved

    @staticmethod
    def _check_saved(meth, saved, exc):
        """The RpcError for a change whose state write failed (exc), if any."""
        if saved is None or exc is None:
            return
        LOG.error("%s succeeded but the state file could not be written: %s", meth.name, exc)
        raise jsonrpc.RpcError(
            -(getattr(exc, "errno", None) or errno.EIO),
            "%s succeeded but the agent could not save its state (%s); the change "
            "is lost on restart unless the state directory is fixed"
            % (meth.name, getattr(exc, "strerror", None) or exc)) from None

    async def call(self, name, raw_params):
        """Run one call from the event loop; the result or RpcError."""
        meth = self.lookup(name)
        params = rpc.decode(meth, raw_params)
        if meth.inline:
            result, saved = self._run(meth, params)
        else:
            loop = asyncio.get_running_loop()
            while True:
                try:
                    result, saved = await loop.run_in_executor(self.executor, self._run,
                                                               meth, params)
                    break
                except RetryLater as again:
                    if time.monotonic() >= again.deadline:
                        raise error_from_exception(again.error) from None
                    await asyncio.sleep(RETRY_INTERVAL)
        if saved is not None:
            # Answered once the change is on disk; other calls run meanwhile.
            # Shielded: a connection that goes away must not cancel the
            # write's future, which other calls' replies wait on too.
            try:
                await asyncio.shield(asyncio.wrap_future(saved))
                exc = None
            except Exception as err:
                exc = err
            if meth.mutates:
                self._check_saved(meth, saved, exc)
        return result
