"""``spdk-backend rpc METHOD [key=value ...|JSON]``: any agent method."""

import json

from spdk_backend import exception
from spdk_backend.cmd import _common
from spdk_backend.cmd import cli


def parse_params(items):
    """A params dict from ``key=value`` words or one JSON object.

    A value is JSON if it parses as JSON (``size=64``, ``readonly=true``,
    ``names=["a","b"]``), a string otherwise (``name=vol0``).
    """
    if len(items) == 1 and items[0].lstrip().startswith("{"):
        try:
            params = json.loads(items[0])
        except ValueError as exc:
            raise exception.InvalidInput(reason="params are not valid JSON: %s" % exc)
        if not isinstance(params, dict):
            raise exception.InvalidInput(reason="params must be a JSON object")
        return params
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise exception.InvalidInput(
                reason="%r is not key=value (or give one JSON object)" % item)
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def _run(args):
    params = parse_params(args.params)
    result = args.client.call(args.method, params)
    if args.json or not isinstance(result, (str, bool, int, float)) or result is None:
        cli.print_json(result)
    else:
        print(result)


def add_parser(subparsers):
    p = _common.add_command(
        subparsers, "rpc", help="call an agent JSON-RPC method",
        description="Call METHOD with key=value params (values parsed as JSON when "
                    "they are JSON) or one JSON object, and print the result (a "
                    "string, number or boolean as it is, anything else as JSON; "
                    "--json: always JSON).  Options go before the params or after all of them.",
        examples=["spdk-backend rpc bdev_get_bdevs name=vol1 --json",
                  "spdk-backend rpc bdev_malloc_create name=m0 num_blocks=2048 "
                  "block_size=512",
                  "spdk-backend rpc bdev_get_bdevs '{\"name\": \"vol1\"}'"])
    p.add_argument("method", metavar="METHOD")
    p.add_argument("params", nargs="*", metavar="key=value|JSON")
    _common.add_common_options(p)
    p.set_defaults(func=_run)
