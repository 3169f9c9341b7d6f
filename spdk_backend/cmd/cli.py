"""``spdk-backend``: the operator's command line.

Each command group is a module of this package that exposes
``add_parser(subparsers)``; it adds its sub-parser(s) and sets
``func(args)`` on them (made with :func:`_common.add_command`, so that
its help ends with an example, and taking :func:`_common.add_common_options`,
so that ``--json`` works after its name too).  Modules are found by name, so
a new group is a new file, nothing else.  ``args.client`` is an
:class:`~spdk_backend.agent.client.AgentClient` on ``--rpc-socket`` that
shows progress on a terminal while it waits for the agent
(:func:`_progress.waiting`).
"""

import argparse
import importlib
import json
import os
import pkgutil
import sys

from spdk_backend import __version__
from spdk_backend import exception
from spdk_backend.agent import client as agent_client
from spdk_backend.cmd import _common
from spdk_backend.cmd import _progress

_NOT_COMMANDS = {"cli"}
ENV_SOCKET = "SPDK_BACKEND_RPC_SOCKET"


def command_modules():
    """The command-group modules of this package, by name."""
    package = sys.modules[__package__]
    mods = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in _NOT_COMMANDS:
            continue
        mod = importlib.import_module("%s.%s" % (__package__, info.name))
        if hasattr(mod, "add_parser"):
            mods.append(mod)
    return mods


def build_parser():
    parser = argparse.ArgumentParser(
        prog="spdk-backend",
        description="Manage the spdk-backend agent of this host.  'spdk-backend "
                    "COMMAND --help' shows a command's options and an example.",
        epilog=_common.example_epilog(
            "spdk-backend volume create vol1 --size 10G",
            "spdk-backend attach vm1 vol1",
            "spdk-backend status --json"),
        formatter_class=_common.HelpFormatter)
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--rpc-socket", metavar="PATH",
        default=os.environ.get(ENV_SOCKET, agent_client.DEFAULT_SOCKET),
        help="the agent's JSON-RPC socket (default: $%s or %%(default)s)" % ENV_SOCKET)
    parser.add_argument("--json", action="store_true",
                        help="print machine-readable JSON instead of tables (also "
                             "accepted after the command)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for the agent (default: %(default)s)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for mod in command_modules():
        mod.add_parser(subparsers)
    return parser


class ProgressClient(agent_client.AgentClient):
    """An agent client that shows, on a terminal, that it waits for the
    agent (to accept the connection, then to answer)."""

    def connect(self):
        if self._sock is not None:
            return
        with _progress.waiting("the agent at %s" % self.socket_path,
                               limit=self.connect_timeout):
            super().connect()

    def call(self, method, _params=None, **params):
        self.connect()
        with _progress.waiting("the agent to answer %s" % method, limit=self.timeout):
            return super().call(method, _params, **params)


def print_json(value):
    print(json.dumps(value, indent=2, sort_keys=False))


def print_table(headers, rows):
    """A plain text table; every cell is str()-ed."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    line = "  ".join("%%-%ds" % w for w in widths)
    print((line % tuple(headers)).rstrip())
    for row in rows:
        print((line % tuple(row)).rstrip())


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.client = ProgressClient(args.rpc_socket, timeout=args.timeout,
                                 connect_timeout=min(args.timeout, 5.0))
    try:
        return args.func(args) or 0
    except exception.AgentError as exc:
        print("spdk-backend: %s" % exc, file=sys.stderr)
        return 1
    except exception.AgentUnavailable as exc:
        print("spdk-backend: %s (is spdk-backend-agent running?)" % exc, file=sys.stderr)
        return 2
    except exception.SpdkBackendException as exc:
        print("spdk-backend: %s" % exc, file=sys.stderr)
        return 1
    finally:
        args.client.close()


if __name__ == "__main__":
    sys.exit(main())
