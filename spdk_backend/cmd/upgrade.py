"""``spdk-backend upgrade``: restart the agent without disconnecting a guest.

The agent re-executes its own command line (the program on disk now, so a
package upgrade takes effect) and hands every vhost-user session to the new
process (docs/agent.md, "Upgrades and restarts").  This command asks for it
(``framework_upgrade``), waits until the new process answers, and says how
many sessions it took over; it fails when one was lost (that guest's disk
then depends on QEMU reconnecting).
"""

import time

from spdk_backend import exception
from spdk_backend.agent import client as agent_client
from spdk_backend.cmd import cli


def _wait_new_process(args, started_at, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with agent_client.AgentClient(args.rpc_socket, timeout=10,
                                          connect_timeout=5) as c:
                proc = c.call("framework_get_process")
            if proc["started_at"] != started_at:
                return proc
        except (exception.AgentUnavailable, exception.AgentError):
            pass
        if time.monotonic() > deadline:
            raise exception.AgentUnavailable(
                path=args.rpc_socket, reason="the agent did not come back within %ss" % timeout)
        time.sleep(0.1)


def _run(args):
    asked = args.client.call("framework_upgrade")
    args.client.close()
    proc = _wait_new_process(args, asked["started_at"], args.timeout)
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
    p = subparsers.add_parser(
        "upgrade", help="restart the agent (new version on disk) keeping every guest connected",
        description="Re-execute the agent, handing every vhost-user session to the new "
                    "process; wait until it answers and report the sessions it took over.")
    p.set_defaults(func=_run)
