"""The method registry: each RPC method and its parameters, described once.

A handler module registers its methods with :func:`method` right under their
definitions (SPDK's ``SPDK_RPC_REGISTER``).  :func:`decode` checks a request's
``params`` against that description, so every method rejects missing,
unknown and wrong-typed parameters the same way, with a ``-32602`` message
naming the parameter and the problem.
"""

import collections

from spdk_backend.agent import jsonrpc

_UINT16_MAX = (1 << 16) - 1
_UINT32_MAX = (1 << 32) - 1
_UINT64_MAX = (1 << 64) - 1

Method = collections.namedtuple(
    "Method", "name func params mutates inline startup_only doc")

REGISTRY = collections.OrderedDict()


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class _Type:
    def __init__(self, name, check):
        self.name = name
        self.check = check

    def __call__(self, param, value):
        problem = self.check(value)
        if problem:
            raise jsonrpc.InvalidParams(
                "%s: %s must be %s, got %s" % (param, _show(value), self.name, problem))
        return value


def _show(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _uint(limit):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            return _json_type(value)
        if value < 0 or value > limit:
            return "a value out of range"
        return None
    return check


def _is(pytype):
    def check(value):
        if isinstance(value, pytype) and not (pytype is int and isinstance(value, bool)):
            return None
        return _json_type(value)
    return check


def _string_list(value):
    if not isinstance(value, list):
        return _json_type(value)
    if not all(isinstance(v, str) for v in value):
        return "an array with a non-string element"
    return None


def _nonempty_string(value):
    if not isinstance(value, str):
        return _json_type(value)
    if not value:
        return "an empty string"
    if "\0" in value:
        return "a string with a NUL character"
    return None


STRING = _Type("a string", _is(str))
NAME = _Type("a non-empty string", _nonempty_string)
BOOL = _Type("a boolean", _is(bool))
INT = _Type("an integer", _is(int))
UINT16 = _Type("an integer from 0 to %d" % _UINT16_MAX, _uint(_UINT16_MAX))
UINT32 = _Type("an integer from 0 to %d" % _UINT32_MAX, _uint(_UINT32_MAX))
UINT64 = _Type("an integer from 0 to 2^64-1", _uint(_UINT64_MAX))
STRING_LIST = _Type("an array of strings", _string_list)


class Param:
    """One named parameter.

    ``only`` lists the accepted values of a parameter SPDK has but the engine
    does not implement (so SPDK's client, which sends defaults, still works,
    while asking for the feature fails clearly); ``check`` is a domain check
    returning a problem string or None.
    """

    __slots__ = ("name", "type", "required", "only", "check", "why")

    def __init__(self, name, ptype, required=False, only=None, check=None, why=None):
        self.name = name
        self.type = ptype
        self.required = required
        self.only = only
        self.check = check
        self.why = why

    def decode(self, value):
        value = self.type(self.name, value)
        if self.only is not None and value not in self.only:
            raise jsonrpc.InvalidParams(
                "%s: %s is not supported (only %s)%s"
                % (self.name, _show(value), " or ".join(_show(v) for v in self.only),
                   "; " + self.why if self.why else ""))
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise jsonrpc.InvalidParams("%s: %s" % (self.name, problem))
        return value


def method(name, *params, mutates=False, inline=False, startup_only=False):
    """Register the decorated ``handler(ctx, params)`` as RPC method ``name``.

    ``mutates``: a successful call changes the configuration, which is then
    persisted.  ``inline``: the handler does not touch the engine and runs on
    the server's event loop.  ``startup_only``: callable only before init
    (``rpc_get_methods`` with ``current`` leaves it out, as SPDK does).
    """
    if mutates and inline:
        # Changes happen in the worker thread only: the state file's
        # snapshots then follow the order of the changes (state.StateWriter).
        raise RuntimeError("RPC method %s: a method that changes the configuration "
                           "cannot run inline" % name)

    def register(func):
        if name in REGISTRY:
            raise RuntimeError("RPC method %s registered twice" % name)
        REGISTRY[name] = Method(name, func, tuple(params), mutates, inline, startup_only,
                                (func.__doc__ or "").strip())
        return func
    return register


def decode(meth, raw):
    """Validate ``raw`` params against ``meth``; a dict with every param name."""
    if raw is None:
        raw = {}
    if isinstance(raw, list):
        if not raw:
            raw = {}
        else:
            raise jsonrpc.InvalidParams(
                "%s takes named parameters (a JSON object), not an array" % meth.name)
    known = {p.name: p for p in meth.params}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise jsonrpc.InvalidParams(
            "%s: unknown parameter%s %s (accepted: %s)"
            % (meth.name, "s" if len(unknown) > 1 else "", ", ".join(unknown),
               ", ".join(known) or "none"))
    out = {}
    for param in meth.params:
        if param.name in raw:
            out[param.name] = param.decode(raw[param.name])
        elif param.required:
            raise jsonrpc.InvalidParams("%s: missing required parameter %s"
                                        % (meth.name, param.name))
        else:
            out[param.name] = None
    return out


def present(params):
    """The params that were given (drops the None of absent ones)."""
    return {k: v for k, v in params.items() if v is not None}
