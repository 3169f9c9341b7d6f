"""``spdk-backend upgrade``: restart the agent without disconnecting a guest.

The agent starts its own command line again (the program on disk now, so a
package upgrade takes effect) and hands every vhost-user session to the new
process (docs/agent.md, "Upgrades and restarts").  This command asks for it
(``framework_upgrade``), waits until the new process answers, and says how
many sessions it took over; it fails when one was lost (that guest's disk
then depends on QEMU reconnecting), and when the upgrade failed (the new
process could not start, for one): the agent then goes on serving as it
was, and this says why.
"""

import time

from spdk_backend import exception
from spdk_backend.agent import client as agent_client
from spdk_backend.cmd import _common
from spdk_backend.cmd import _progress
from spdk_backend.cmd import cli


class UpgradeFailed(exception.SpdkBackendException):
    msg_fmt = "the upgrade failed (the agent goes on serving in process %(pid)s): %(reason)s"


def _failed_since(proc, asked_at):
    failed = proc.get("upgrade_failed")
    return failed if failed and failed["at"] >= asked_at else None


def _wait_new_process(args, started_at, timeout, asked_at=0.0):
    with _progress.waiting("the agent's new process to answer", limit=timeout):
        return _poll_new_process(args, started_at, timeout, asked_at)


def _poll_new_process(args, started_at, timeout, asked_at):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with agent_client.AgentClient(args.rpc_socket, timeout=10,
                                          connect_timeout=5) as c:
                proc = c.call("framework_get_process")
            failed = _failed_since(proc, asked_at)
            if failed:
                raise UpgradeFailed(pid=proc["pid"], reason=failed["reason"])
            if proc["started_at"] != started_at:
                return proc
        except (exception.AgentUnavailable, exception.AgentError):
            pass
        if time.monotonic() > deadline:
            raise exception.AgentUnavailable(
                path=args.rpc_socket, reason="the agent did not come back within %ss" % timeout)
        time.sleep(0.1)


def _run(args):
    asked_at = time.time()
    asked = args.client.call("framework_upgrade")
    args.client.close()
    proc = _wait_new_process(args, asked["started_at"], args.timeout, asked_at)
    took = proc["takeover"] or {"handed": [], "adopted": [], "lost": []}
    missing = sorted(set(asked["sessions"]) - set(took["adopted"]))
    if args.json:
        cli.print_json({"pid": proc["pid"], "version": proc["version"],
                        "sessions": asked["sessions"], "adopted": took["adopted"],
                        "not_adopted": missing})
    else:
        print("Agent upgraded to %s (pid %d): %d of %d session(s) taken over without a "
              "disconnect" % (proc["version"], proc["pid"], len(took["adopted"]),
                              len(asked["sessions"])))
        for name in missing:
            print("  %s: not taken over; its guest's disk waits for QEMU to reconnect "
                  "(see the agent's log)" % name)
    return 1 if missing else 0


def add_parser(subparsers):
    p = _common.add_command(
        subparsers, "upgrade",
        help="restart the agent (new version on disk) keeping every guest connected",
        description="Start the agent again (the program on disk now) and hand every "
                    "vhost-user session to the new process; wait until it answers "
                    "(at most the global --timeout) and report the sessions it took "
                    "over, or why the upgrade failed.",
        examples=["spdk-backend upgrade --json"])
    _common.add_common_options(p)
    p.set_defaults(func=_run)
