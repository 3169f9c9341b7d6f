"""A client of the agent's JSON-RPC socket.

``AgentClient(path).call("bdev_get_bdevs", name="vol0")`` returns the result
or raises the typed :mod:`spdk_backend.exception` error for the JSON-RPC
error code.  Connecting is retried (with back-off, through
:func:`spdk_backend.utils.retry`) while the socket is missing or refuses
connections, which is what an agent that is starting or restarting looks like.
A request that was sent is never retried: it may have taken effect.
"""

import codecs
import itertools
import json
import socket
import time

from spdk_backend import exception
from spdk_backend import utils

DEFAULT_SOCKET = "/var/run/spdk-backend/agent.sock"

# What a starting/restarting agent looks like from here.
_NOT_READY = (FileNotFoundError, ConnectionRefusedError)


class AgentClient:
    def __init__(self, socket_path=DEFAULT_SOCKET, timeout=60.0, connect_timeout=30.0):
        self.socket_path = socket_path
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._sock = None
        self._reset_buffer()
        self._ids = itertools.count(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._reset_buffer()

    def _reset_buffer(self):
        self._text = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def _connect_once(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        return sock

    def connect(self):
        if self._sock is not None:
            return
        connect = utils.retry(_NOT_READY, attempts=1000, interval=0.05, max_interval=1.0,
                              timeout=self.connect_timeout)(self._connect_once)
        try:
            self._sock = connect()
        except OSError as exc:
            raise exception.AgentUnavailable(path=self.socket_path,
                                             reason=exc.strerror or str(exc)) from exc

    def call(self, method, _params=None, **params):
        """Call ``method``; params as keywords (or a dict in ``_params``)."""
        if _params:
            params = dict(_params, **params)
        request = {"jsonrpc": "2.0", "method": method, "id": next(self._ids)}
        if params:
            request["params"] = params
        data = json.dumps(request).encode("utf-8")
        self.connect()
        try:
            self._sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            # The agent went away since the last call, before reading this
            # request: reconnect (waiting for it to come back) and resend.
            self.close()
            self.connect()
            self._send_or_fail(data)
        reply = self._recv(request["id"])
        if "error" in reply:
            err = reply["error"] or {}
            raise exception.agent_error(err.get("code"), err.get("message", "no message"))
        return reply.get("result")

    def _send_or_fail(self, data):
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self.close()
            raise exception.AgentUnavailable(path=self.socket_path,
                                             reason=exc.strerror or str(exc)) from exc

    def _recv(self, req_id):
        decoder = json.JSONDecoder()
        deadline = time.monotonic() + self.timeout
        while True:
            text = self._text.lstrip()
            # A reply is a JSON object: parse only text that can end one (a
            # big reply comes in many chunks; parsing each prefix again made
            # reading it quadratic).
            if text and text.rstrip()[-1:] in ("}", "]"):
                try:
                    obj, end = decoder.raw_decode(text)
                except ValueError:
                    obj = None
                if obj is not None:
                    self._text = text[end:]
                    if isinstance(obj, dict) and obj.get("id") in (req_id, None):
                        return obj
                    continue  # a stray reply (e.g. to an earlier timed-out call)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise exception.AgentUnavailable(
                    path=self.socket_path, reason="no reply in %ss" % self.timeout)
            try:
                self._sock.settimeout(remaining)
                chunk = self._sock.recv(256 * 1024)
            except socket.timeout:
                continue
            except OSError as exc:
                self.close()
                raise exception.AgentUnavailable(path=self.socket_path,
                                                 reason=exc.strerror or str(exc)) from exc
            if not chunk:
                self.close()
                raise exception.AgentUnavailable(
                    path=self.socket_path,
                    reason="the agent closed the connection before replying")
            self._text += self._decoder.decode(chunk)
