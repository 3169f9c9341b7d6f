"""JSON-RPC 2.0 framing and envelopes, as SPDK's server does them.

SPDK frames requests as JSON values concatenated on the stream: no length
prefix, no delimiter, newlines optional, a value may arrive split across reads
or many in one read.  A stream that stops being JSON cannot be resynchronised,
so a parse error is answered (``-32700``, ``id: null``) and the connection is
closed; every other error keeps the connection open.

Nothing here does I/O: the server feeds bytes in and writes bytes out.
"""

import codecs
import json
import re

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
INVALID_STATE = -1  # SPDK: the method exists but not in the current state

# One request (one JSON value) may not be larger than this.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
MAX_ID_LEN = 128  # SPDK's SPDK_JSONRPC_ID_MAX_LEN

_WHITESPACE = " \t\r\n"
_IN_CONTAINER = re.compile(r'[{}\[\]"]')
_IN_STRING = re.compile(r'["\\]')
_BARE_END = re.compile(r'[\s{}\[\],:"]')


class RpcError(Exception):
    """A JSON-RPC error reply: ``code`` and a message a person can act on."""

    def __init__(self, code, message, req_id=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.req_id = req_id


class ParseError(RpcError):
    def __init__(self, reason):
        super().__init__(PARSE_ERROR, "Parse error: %s" % reason)


class InvalidParams(RpcError):
    def __init__(self, message):
        super().__init__(INVALID_PARAMS, message)


class FrameSplitter:
    """Cuts a byte stream into the texts of complete top-level JSON values.

    :meth:`feed` returns, in stream order, the texts completed by the new
    bytes; if the stream stops being JSON, the last item is a
    :class:`ParseError` and nothing more should be fed.  The scan is
    incremental, so a request sent one byte at a time costs O(n).
    """

    def __init__(self, max_request=MAX_REQUEST_BYTES):
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._max = max_request
        self._buf = ""
        self._pos = 0        # where scanning resumes
        self._start = None   # start of the value being scanned
        self._kind = None    # "container", "string" or "bare"
        self._depth = 0
        self._in_string = False
        self._broken = False

    def feed(self, data):
        if self._broken:
            return [ParseError("stream already failed")]
        try:
            self._buf += self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            self._broken = True
            return [ParseError("invalid UTF-8 (%s)" % exc.reason)]
        out = []
        while True:
            text = self._scan()
            if text is None:
                break
            out.append(text)
            if isinstance(text, ParseError):
                self._broken = True
                break
        if not self._broken and self._start is not None \
                and len(self._buf) - self._start > self._max:
            self._broken = True
            out.append(ParseError("request larger than %d bytes" % self._max))
        return out

    def _take(self, end):
        text = self._buf[self._start:end]
        self._buf = self._buf[end:]
        self._pos = 0
        self._start = None
        self._kind = None
        self._depth = 0
        self._in_string = False
        return text

    def _scan(self):
        buf = self._buf
        if self._start is None:
            pos = self._pos
            while pos < len(buf) and buf[pos] in _WHITESPACE:
                pos += 1
            if pos == len(buf):
                # Only whitespace so far: drop it.
                self._buf = ""
                self._pos = 0
                return None
            self._start = pos
            char = buf[pos]
            if char in "{[":
                self._kind, self._depth, self._pos = "container", 1, pos + 1
            elif char == '"':
                self._kind, self._in_string, self._pos = "string", True, pos + 1
            elif char in "}]":
                return ParseError("unexpected %r at top level" % char)
            else:
                self._kind, self._pos = "bare", pos
        if self._kind == "bare":
            match = _BARE_END.search(buf, self._pos)
            if match is None:
                self._pos = len(buf)
                return None
            if match.start() == self._start:
                # "," or ":" at top level: an empty token would never consume it.
                return ParseError("unexpected %r at top level" % buf[self._start])
            return self._take(match.start())
        pos = self._pos
        while True:
            if self._in_string:
                match = _IN_STRING.search(buf, pos)
                if match is None:
                    self._pos = len(buf)
                    return None
                if match.group() == "\\":
                    if match.end() >= len(buf):
                        # The escaped character has not arrived yet.
                        self._pos = match.start()
                        return None
                    pos = match.end() + 1
                    continue
                self._in_string = False
                pos = match.end()
                if self._kind == "string":
                    return self._take(pos)
                continue
            match = _IN_CONTAINER.search(buf, pos)
            if match is None:
                self._pos = len(buf)
                return None
            char = match.group()
            pos = match.end()
            if char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    return self._take(pos)


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


def loads(text):
    """Decode one framed text; :class:`ParseError` if it is not valid JSON."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ParseError(str(exc)) from None


def dumps(obj):
    """Encode one reply as SPDK does: compact JSON and a newline."""
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


class Request:
    __slots__ = ("method", "params", "req_id", "notification")

    def __init__(self, method, params, req_id, notification):
        self.method = method
        self.params = params
        self.req_id = req_id
        self.notification = notification


_REQUEST_KEYS = frozenset(("jsonrpc", "method", "params", "id"))


def parse_request(obj):
    """Check the envelope of one request; ``RpcError(-32600)`` if invalid."""
    if not isinstance(obj, dict):
        raise RpcError(INVALID_REQUEST, "Invalid request: a request must be a JSON object")
    req_id = obj.get("id")
    if "id" in obj and (isinstance(req_id, bool)
                        or not isinstance(req_id, (str, int, float, type(None)))
                        or len(json.dumps(req_id)) > MAX_ID_LEN):
        raise RpcError(INVALID_REQUEST,
                       "Invalid request: id must be a string, a number or null "
                       "of at most %d characters" % MAX_ID_LEN)
    reply_id = req_id if "id" in obj else None
    extra = set(obj) - _REQUEST_KEYS
    if extra:
        raise RpcError(INVALID_REQUEST, "Invalid request: unknown member(s) %s"
                       % ", ".join(sorted(extra)), reply_id)
    if obj.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'Invalid request: "jsonrpc" must be "2.0"', reply_id)
    method = obj.get("method")
    if not isinstance(method, str):
        raise RpcError(INVALID_REQUEST, 'Invalid request: "method" must be a string',
                       reply_id)
    params = obj.get("params")
    if "params" in obj and not isinstance(params, (dict, list)):
        raise RpcError(INVALID_REQUEST,
                       'Invalid request: "params" must be an object or an array', reply_id)
    return Request(method, params, reply_id, "id" not in obj)


def result_reply(req_id, result):
    return {"jsonrpc": "2.0", "id": req_id, "result": result}


def error_reply(req_id, code, message):
    return {"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message}}
