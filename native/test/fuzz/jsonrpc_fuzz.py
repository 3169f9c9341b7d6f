#!/usr/bin/env python3
"""atheris (libFuzzer for Python) harness: the agent's JSON-RPC path.

One input is one client connection: a byte stream cut into reads, through
:class:`jsonrpc.FrameSplitter`, :func:`jsonrpc.loads`, the envelope check
and the dispatcher's parameter decoding, into the real RPC handlers over
the in-memory engine of the unit tests (tests/support/fake_engine.py) and a
real :class:`AgentState`.  The server object is the agent's own
(``RpcServer.handle_obj``), so batches, notifications and error mapping
are the production code.

Findings, besides an exception escaping: a reply that is not a JSON-RPC
2.0 reply object, a reply that cannot be encoded, an "Internal error"
reply (a handler failed in a way its parameter checks should have
prevented), or a state that no longer round-trips through the state file's
validator.

The first input byte chooses how the stream is cut into reads (1..255
bytes per read, 0 = all at once).  Run with the libFuzzer flags
(``-max_total_time=N corpus_dir``); bench/fuzz.sh does.
"""

import asyncio
import concurrent.futures
import os
import sys
import tempfile

import atheris

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, ROOT)

with atheris.instrument_imports(include=["spdk_backend"]):
    from spdk_backend.agent import dispatcher
    from spdk_backend.agent import jsonrpc
    from spdk_backend.agent import methods  # noqa: F401  (registers the methods)
    from spdk_backend.agent import server
    from spdk_backend.agent import state as agent_state

from spdk_backend.agent import rpc_bdev  # noqa: E402
from tests.support import fake_engine  # noqa: E402


class _FastClock:
    """bdev_get_bdevs' ``timeout`` (up to 2^32 ms) retries until a deadline:
    a clock that leaps makes every wait end after a few rounds."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        self.now += 1e6
        return self.now

    def time(self):
        return self.now


dispatcher.time = rpc_bdev.time = _FastClock()
dispatcher.RETRY_INTERVAL = 0

# The allowed backing directory the uring/aio methods are configured with.
# libFuzzer ends the process with exit(), so a directory made here would
# outlive the run: callers that can clean up pass their own.
VOLUMES = os.environ.get("SB_FUZZ_VOLUMES") or tempfile.mkdtemp(prefix="sb-fuzz-vol-")


class _Inline(concurrent.futures.Executor):
    """Runs engine work at once in the loop thread: deterministic and fast."""

    def submit(self, fn, *args, **kwargs):
        fut = concurrent.futures.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: B902 - handed to the awaiting caller
            fut.set_exception(exc)
        return fut


_LOOP = asyncio.new_event_loop()
_EXECUTOR = _Inline()


class Finding(Exception):
    pass


def _check_reply(reply):
    if reply is None:
        return
    if isinstance(reply, list):
        if not reply:
            raise Finding("empty batch reply")
        for one in reply:
            _check_reply(one)
        return
    if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0" or "id" not in reply:
        raise Finding("not a JSON-RPC reply: %r" % (reply,))
    if ("result" in reply) == ("error" in reply):
        raise Finding("reply needs exactly one of result/error: %r" % (reply,))
    if "error" in reply:
        err = reply["error"]
        if not isinstance(err.get("code"), int) or not isinstance(err.get("message"), str):
            raise Finding("malformed error object: %r" % (err,))
        if err["code"] == jsonrpc.INTERNAL_ERROR and "Internal error" in err["message"] \
                and "'FakeEngine' object has no attribute" not in err["message"]:
            # (The stand-in engine lacks a few methods, e.g. rbd: not a finding.)
            raise Finding("handler crashed: %s" % err["message"])
    jsonrpc.dumps(reply)  # must encode


def _context():
    ctx = dispatcher.Context(fake_engine.FakeEngine().start(), agent_state.AgentState(None),
                             vhost_socket_dir="/tmp/sb-fuzz-vhost")
    # The agent configures these from its options (spdk_backend/conf/agent.py).
    ctx.allowed_backing_dirs = [VOLUMES]
    ctx.allow_block_devices = False
    return ctx


def TestOneInput(data):
    if not data:
        return
    step, stream = data[0], data[1:]
    ctx = _context()
    srv = server.RpcServer(dispatcher.Dispatcher(ctx, _EXECUTOR), "/nonexistent")
    splitter = jsonrpc.FrameSplitter(max_request=64 * 1024)
    pos = 0
    step = step or len(stream) or 1
    while pos < len(stream):
        chunk, pos = stream[pos:pos + step], pos + step
        for item in splitter.feed(chunk):
            if not isinstance(item, jsonrpc.ParseError):
                try:
                    item = jsonrpc.loads(item)
                except jsonrpc.ParseError as exc:
                    item = exc
            if isinstance(item, jsonrpc.ParseError):
                _check_reply(jsonrpc.error_reply(None, item.code, item.message))
                return  # the server closes the connection here
            _check_reply(_LOOP.run_until_complete(srv.handle_obj(item)))
    # What the agent would persist must load back.
    config = ctx.state.to_config()
    agent_state.validate_config(jsonrpc.loads(jsonrpc.dumps(config).decode()))


def main():
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
